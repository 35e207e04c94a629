"""Where studies live: an embedded SQLite file by default, any SQLAlchemy URL (PostgreSQL) to share.

Every storage is Optuna's :class:`~optuna.storages.RDBStorage` with heartbeats, so a worker that
dies mid-trial (``kill -9``, a lost machine) has its trial marked failed after the grace period
and re-queued with the same parameters (:class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`).
SQLite is shared by local ``--jobs`` processes (a generous lock timeout serialises writes);
PostgreSQL is shared by any number of processes on any number of machines.
"""

from __future__ import annotations

import os
import random
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlkit.core.errors import RlkitError
from rlkit.core.paths import make_folder, missing_folders

if TYPE_CHECKING:
    import optuna

HEARTBEAT_S = 20
"""Seconds between a running trial's heartbeats."""

GRACE_S = 120
"""A running trial without a heartbeat for this long belongs to a dead worker."""

MAX_RETRY = 3
"""A dead worker's trial is re-queued at most this many times."""


def tune_root(runs_root: Path | None = None) -> Path:
    """``<runs>/tune``: the embedded study files, worker logs and plots."""
    from rlkit.training.rundir import default_root

    return (runs_root or default_root()) / "tune"


def default_url(study: str, runs_root: Path | None = None) -> str:
    """The embedded SQLite file for a study: ``sqlite:///runs/tune/<study>.db`` (absolute)."""
    return f"sqlite:///{(tune_root(runs_root) / f'{study}.db').resolve()}"


@dataclass(frozen=True)
class StorageUrl:
    """A parsed storage URL, with the password hidden for messages."""

    url: str
    shown: str
    dialect: str
    sqlite_path: Path | None


def parse(url: str) -> StorageUrl:
    """Check a storage URL's shape; a bare ``*.db`` path means an SQLite file."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    if "://" not in url and url.endswith((".db", ".sqlite", ".sqlite3")):
        url = f"sqlite:///{Path(url).resolve()}"
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise RlkitError(
            f"malformed storage URL '{url}'; expected e.g. postgresql://user:password@host:5432/db "
            "or sqlite:///path/to/study.db"
        ) from None
    dialect = parsed.get_backend_name()
    if dialect not in ("sqlite", "postgresql", "mysql"):
        raise RlkitError(
            f"unsupported storage '{dialect}' in '{url}'; valid: postgresql://..., sqlite:///..., mysql://..."
        )
    shown = parsed.render_as_string(hide_password=True)
    sqlite_path = None
    if dialect == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise RlkitError(f"storage '{url}': an SQLite storage needs a file path (sqlite:///path/to/study.db)")
        sqlite_path = Path(parsed.database)
    return StorageUrl(url=url, shown=shown, dialect=dialect, sqlite_path=sqlite_path)


def open_storage(
    url: StorageUrl,
    *,
    heartbeat_s: int = HEARTBEAT_S,
    grace_s: int = GRACE_S,
    create: bool = True,
    runs_root: Path | None = None,
) -> optuna.storages.RDBStorage:
    """Connect to the storage (with heartbeats and retries of dead workers' trials).

    ``create=False`` refuses to make a new SQLite file (for commands that only read a study).
    An SQLite file's folder must exist, except rlkit's own ``runs/tune/`` (:func:`tune_root`),
    which is made here: a mistyped URL never makes folders elsewhere (at the filesystem root).
    """
    import warnings

    import optuna
    from sqlalchemy.exc import IntegrityError, ProgrammingError, SQLAlchemyError

    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    made: list[Path] = []  # what a failed connection removes again: the new SQLite file, its new folder
    if url.sqlite_path is not None:
        if not create and not url.sqlite_path.is_file():
            raise RlkitError(f"no study database at {url.sqlite_path}")
        folder = url.sqlite_path.parent
        if not folder.is_dir():
            if not create:
                raise RlkitError(f"no study database at {url.sqlite_path}")
            if folder.resolve() != tune_root(runs_root).resolve():
                # Short: it fits one 80-column line for a short path (the default needs no --storage at all).
                raise RlkitError(f"--storage {url.shown}: its folder does not exist")
            made += missing_folders(folder)
            make_folder(folder, "study folder")
        if not url.sqlite_path.exists():
            made.insert(0, url.sqlite_path)
        if url.sqlite_path.exists() and not url.sqlite_path.is_file():
            raise RlkitError(f"storage {url.shown}: {url.sqlite_path} is not a file (a folder or a special file)")
        # Concurrent local workers: wait for the write lock rather than failing at once.
        engine_kwargs["connect_args"] = {"timeout": 60}
    elif url.dialect == "postgresql":
        engine_kwargs["connect_args"] = {"connect_timeout": 10}
    for attempt in range(3):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return optuna.storages.RDBStorage(
                    url.url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat_s,
                    grace_period=grace_s,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=MAX_RETRY
                    ),
                )
            except ImportError as exc:  # optuna re-raises the driver's ModuleNotFoundError as a bare ImportError
                missing = exc.name or getattr(exc.__cause__, "name", None) or "its Python module"
                hint = {"postgresql": " (pip install 'rlkit[postgres]')", "mysql": " (pip install mysqlclient)"}
                raise RlkitError(
                    f"storage {url.shown}: database driver missing: {missing}{hint.get(url.dialect, '')}"
                ) from None
            except (IntegrityError, ProgrammingError):
                # Workers starting together on an empty database race to create Optuna's tables.
                if attempt == 2:
                    raise
                time.sleep(0.5 + random.random())
            except (SQLAlchemyError, OSError) as exc:
                first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                _remove_empty(made)  # e.g. a full disk: no empty database or folder is left behind
                raise RlkitError(f"cannot open storage {url.shown}: {first}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _remove_empty(paths: list[Path]) -> None:
    """Remove each path that is still an empty file or folder (another worker may have filled it since)."""
    import contextlib

    for path in paths:
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_size == 0:
                path.unlink()
            elif path.is_dir():
                path.rmdir()  # innermost first: each is empty once the one inside it is gone


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    """Names of the studies in a storage."""
    return sorted(s.study_name for s in storage.get_all_studies())


def local_studies(runs_root: Path | None = None) -> list[str]:
    """Studies in the embedded storage folder (``runs/tune/*.db``)."""
    root = tune_root(runs_root)
    return sorted(p.stem for p in root.glob("*.db")) if root.is_dir() else []


def worker_name() -> str:
    """``host:pid`` of this process, recorded on each trial it runs."""
    return f"{socket.gethostname()}:{os.getpid()}"

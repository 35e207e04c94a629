"""Run directories: one folder per training run, never reused, holding everything about it.

Layout::

    runs/<alias>/<YYYYmmdd-HHMMSS>-s<seed>/
        config.yaml         fully resolved preset
        command.txt         the exact command line(s), one per start or resume
        meta.json           versions, device, threads, host, start time
        state.json          status, step counter, best evaluation, wall-clock
        monitor/            SB3 Monitor CSVs of the training episodes
        tb/                 TensorBoard logs
        evaluations.csv     periodic evaluation history
        best_model.zip      best model by mean evaluation return
        model.zip           final (or latest interrupted) model
        checkpoints/        step-<N>/ {model.zip, replay_buffer.npz, state.json, manifest.json}
        run.lock            held (flock) by the one process training this run; holds its pid

A checkpoint folder is written under ``.staging-<N>`` and renamed into place; its
``manifest.json`` (size and sha256 of every other file) is written last, so a checkpoint is
intact exactly when its manifest matches (:func:`verify_checkpoint`). Nothing in a run directory
is a pickle: models are SB3 zips (loaded without unpickling, see
:func:`rlkit.training.factory.load_model`), buffers are NumPy ``.npz`` read with
``allow_pickle=False``, the rest is YAML, JSON and CSV.
"""

from __future__ import annotations

import csv
import datetime as dt
import fcntl
import hashlib
import io
import json
import math
import os
import platform
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlkit.config.schema import Preset, to_plain, validate
from rlkit.core import atomic, safe_json, safe_yaml
from rlkit.core.errors import RlkitError
from rlkit.core.paths import check_folder, make_folder, outermost_missing

MANIFEST = "manifest.json"
BUFFER = "replay_buffer.npz"
RESUME = "resume.json"
"""A checkpoint's envs, random streams and pending step: what an exact resume needs (``rlkit.training.resume_state``)."""
LEGACY_BUFFER = "replay_buffer.pkl"
LOCK = "run.lock"
GONE = "stopped (process gone)"
"""What a run whose state says ``running`` but whose lock nobody holds is reported as."""

EVAL_FIELDS = [
    "timesteps",
    "mean_reward",
    "std_reward",
    "min_reward",
    "max_reward",
    "mean_ep_length",
    "q_start",
    "return_discounted",
    "return_discounted_std",
    "wall_s",
]
"""The columns of ``evaluations.csv`` (``wall_s`` stays last). ``OPTIONAL_EVAL_FIELDS`` (the mean
greedy Q at the episodes' start states, the mean and spread of the discounted returns they obtained)
came later: a run directory written before them reads without them, and its old rows stay blank
there when it resumes."""
OPTIONAL_EVAL_FIELDS = frozenset(EVAL_FIELDS[6:9])


def default_root() -> Path:
    """``$RLKIT_RUNS_DIR`` or ``./runs``; a variable naming a file (or a system folder) is one line."""
    value = os.environ.get("RLKIT_RUNS_DIR")
    if value is None:
        return Path("runs")
    if not value.strip():
        raise RlkitError("RLKIT_RUNS_DIR is set but empty; set it to a folder, or unset it for ./runs")
    check_folder(Path(value), "RLKIT_RUNS_DIR=", writable=False)
    return Path(value)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory."""

    path: Path
    made: Path | None = field(default=None, compare=False)
    """The outermost folder :meth:`create` made for this run (the run folder or one above it, e.g. the
    runs root); ``None`` when the folder already existed. A new run that fails removes up to it."""

    @property
    def config(self) -> Path:
        return self.path / "config.yaml"

    @property
    def command(self) -> Path:
        return self.path / "command.txt"

    @property
    def meta(self) -> Path:
        return self.path / "meta.json"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def monitor(self) -> Path:
        return self.path / "monitor"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tb"

    @property
    def evaluations(self) -> Path:
        return self.path / "evaluations.csv"

    @property
    def best_model(self) -> Path:
        return self.path / "best_model.zip"

    @property
    def final_model(self) -> Path:
        return self.path / "model.zip"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK

    # --- creation and opening ---------------------------------------------------------

    @classmethod
    def check_new(cls, alias: str, root: Path | None = None, path: Path | None = None) -> None:
        """What :meth:`create` refuses, checked without creating anything (a file or a used folder in the way)."""
        if path is not None:
            check_folder(path, "--run-dir")
            if path.is_dir() and any(path.iterdir()):
                raise RlkitError(
                    f"run directory {path} already exists and is not empty; "
                    f"continue it with --resume {path} or choose another --run-dir"
                )
            return
        check_folder((root or default_root()) / alias, "runs folder")

    @classmethod
    def create(cls, alias: str, seed: int, root: Path | None = None, path: Path | None = None) -> RunDir:
        """A brand-new run folder; an existing non-empty folder is never reused."""
        cls.check_new(alias, root, path)
        if path is not None:
            made = outermost_missing(path)
            return cls(make_folder(path, "--run-dir"), made)
        base = (root or default_root()) / alias
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            name = f"{stamp}-s{seed}" + ("" if n == 1 else f"-{n}")
            candidate = base / name
            made = outermost_missing(candidate)
            try:
                candidate.mkdir(parents=True, exist_ok=False)
            except FileExistsError:
                continue
            except OSError as exc:
                raise RlkitError(f"cannot create a run directory under {base}: {exc.strerror or exc}") from None
            return cls(candidate, made)
        raise RlkitError(f"could not create a run directory under {base}")

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run; anything else is a one-line error."""
        run = cls(path)
        if path.exists() and not path.is_dir():
            raise RlkitError(
                f"not a run directory: {path} is a file (a run directory is a folder made by rlkit train; "
                "a bare model .zip needs its env too, e.g. rlkit evaluate model.zip CartPole-v1)"
            )
        if not path.is_dir():
            raise RlkitError(f"not a run directory: {path} does not exist")
        if not run.config.is_file() or not run.meta.is_file():
            missing = " and ".join(f.name for f in (run.config, run.meta) if not f.is_file())
            seeds = sorted(p.name for p in path.glob("seed-*") if p.is_dir())
            hint = f"; a benchmark folder? its runs are {path}/seed-* ({len(seeds)} of them)" if seeds else ""
            raise RlkitError(f"not an rlkit run directory: {path} has no {missing}{hint}")
        return run

    # --- contents -----------------------------------------------------------------------

    def write_config(self, preset: Preset, alias: str, source: str, seed: int) -> None:
        header = f"# rlkit resolved config: preset '{alias}' from {source}, seed {seed}\n"
        body = yaml.safe_dump({"alias": alias, "seed": seed, "preset": to_plain(preset)}, sort_keys=False)
        atomic.write_text(self.config, header + body)

    def read_config(self) -> tuple[str, int, Preset]:
        """Alias, seed and validated preset of this run; a damaged file is one line."""
        damaged = f"{self.config}: damaged run config"
        try:
            data = safe_yaml.load_file(self.config)
        except safe_yaml.YamlMalformed as exc:
            where = f" at line {exc.line}" if exc.line is not None else ""
            raise RlkitError(f"{damaged} (malformed YAML{where}: {exc.problem})") from None
        except RlkitError as exc:  # unreadable, oversized, hostile: one line from the safe loader
            raise RlkitError(f"{damaged} ({str(exc).removeprefix(f'{self.config}:').strip()})") from None
        if not isinstance(data, dict) or not isinstance(data.get("preset"), dict):
            raise RlkitError(f"{damaged} (expected the keys alias, seed and preset)")
        try:
            return str(data["alias"]), int(data["seed"]), validate(data["preset"], str(self.config))
        except (KeyError, TypeError, ValueError) as exc:
            raise RlkitError(f"{damaged} (bad or missing {one_line(exc)})") from None

    def append_command(self, argv: list[str] | None = None) -> None:
        line = f"{now_iso()}  {shlex.join(argv if argv is not None else sys.argv)}\n"
        previous = self.command.read_text() if self.command.exists() else ""
        atomic.write_text(self.command, previous + line)

    def write_meta(self, extra: dict[str, Any]) -> None:
        atomic.write_json(self.meta, {**environment_info(), **extra})

    def read_meta(self) -> dict[str, Any]:
        return read_json_object(self.meta, "run metadata")

    def read_state(self) -> dict[str, Any]:
        """``state.json`` (empty before the first write); a damaged file or a value of the wrong kind is one line."""
        if not self.state_file.exists():
            return {}
        state = read_json_object(self.state_file, "run state")
        problem = _state_problem(state)
        if problem is not None:
            raise RlkitError(f"{self.state_file}: damaged run state ({problem})")
        return state

    def update_state(self, *, forget: tuple[str, ...] = (), **changes: Any) -> dict[str, Any]:
        """Merge ``changes`` into ``state.json``, dropping the keys in ``forget`` (atomically; in place when the disk is full)."""
        state = {k: v for k, v in self.read_state().items() if k not in forget}
        state = {**state, **changes, "updated": now_iso()}
        text = json.dumps(state, indent=2, default=str) + "\n"
        try:
            atomic.write_text(self.state_file, text)
        except OSError as exc:
            if exc.errno not in atomic.DISK_FULL or not self.state_file.exists():
                raise
            # No room for a temporary copy: rewriting the small file in place reuses its blocks.
            with open(self.state_file, "r+") as handle:
                handle.truncate(0)
                handle.write(text)
        return state

    def is_active(self) -> bool:
        """Whether a live process holds this run's lock (is training it now)."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except OSError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def status(self, state: dict[str, Any] | None = None) -> str:
        """The run's status as it really is: ``running`` only while its process lives.

        After ``kill -9`` (or a power cut) ``state.json`` still says ``running``; the kernel has
        released the lock then, so such a run is reported as :data:`GONE`.
        """
        status = str((self.read_state() if state is None else state).get("status", "unknown"))
        if status == "running" and not self.is_active():
            return GONE
        return status

    def lock(self) -> RunLock:
        """Take this run's writer lock (one writer per run); a run in use is a one-line error."""
        return RunLock.take(self)

    def remove_staging(self) -> list[Path]:
        """Delete half- or fully-written ``.staging-*`` checkpoint folders; returns them."""
        if not self.checkpoints.is_dir():
            return []
        leftovers = [p for p in self.checkpoints.glob(".staging-*")]
        for folder in leftovers:
            shutil.rmtree(folder, ignore_errors=True)
        return leftovers

    # --- evaluation history -------------------------------------------------------------

    def read_evaluations(self) -> list[dict[str, float]]:
        if not self.evaluations.exists():
            return []
        try:
            with open(self.evaluations, newline="") as handle:
                return [_eval_row(row) for row in csv.DictReader(handle)]
        except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as exc:
            raise RlkitError(f"{self.evaluations}: damaged evaluation history ({one_line(exc)})") from None

    def write_evaluations(self, rows: list[dict[str, float]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EVAL_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") if k in OPTIONAL_EVAL_FIELDS else row[k] for k in EVAL_FIELDS})
        atomic.write_text(self.evaluations, buffer.getvalue())

    # --- training episodes ---------------------------------------------------------------

    def training_episodes(self, up_to_step: int | None = None) -> list[dict[str, float]]:
        """The Monitor CSVs' episodes (``r``, ``l``, ``t``) in the order they ended, every env merged.

        A resumed session appends to the files with its clock restarting near zero, so times are
        made cumulative per file. With ``up_to_step`` only the episodes that ended within that many
        environment steps (those of steps a resume replays are left out). Torn lines are skipped.
        """
        episodes: list[dict[str, float]] = []
        files = sorted(self.monitor.glob("*.monitor.csv")) if self.monitor.is_dir() else []
        for path in files:
            offset = last = 0.0
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for line in lines:
                parts = line.split(",")
                try:
                    r, n, t = float(parts[0]), float(parts[1]), float(parts[2])
                except (ValueError, IndexError):
                    continue  # the JSON header, the column names, a torn line
                if t + offset < last:
                    offset = last
                last = t + offset
                episodes.append({"r": r, "l": n, "t": last})
        episodes.sort(key=lambda e: e["t"])
        if up_to_step is None:
            return episodes
        kept, steps = [], 0.0
        for episode in episodes:
            steps += episode["l"]
            if steps > up_to_step:
                break
            kept.append(episode)
        return kept

    def checkpoint_dirs(self) -> list[Path]:
        """Complete checkpoints, oldest first (half-written staging folders are ignored)."""
        if not self.checkpoints.is_dir():
            return []
        found = [
            p
            for p in self.checkpoints.glob("step-*")
            if p.is_dir() and p.name[5:].isdigit() and (p / "state.json").exists()
        ]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def _eval_row(row: dict[str, Any]) -> dict[str, float]:
    """One row of ``evaluations.csv`` as numbers; a blank optional column (an older row) is left out."""
    return {k: float(v) for k, v in row.items() if not (k in OPTIONAL_EVAL_FIELDS and v in ("", None))}


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (YAML and JSON errors span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


_STEP_KEYS = ("num_timesteps", "n_timesteps", "last_checkpoint", "reached")
_NUMBER_KEYS = ("wall_s", "steps_per_s", "best_mean_reward")


def _state_problem(state: dict[str, Any]) -> str | None:
    """What is wrong with the values of a run state that readers rely on, or ``None``."""
    import math

    for key in _STEP_KEYS:
        value = state.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f"{key} is {value!r:.30}, not a whole number of steps"
    for key in _NUMBER_KEYS:
        value = state.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
        ):
            return f"{key} is {value!r:.30}, not a finite number"
    status = state.get("status")
    if status is not None and not isinstance(status, str):
        return f"status is {status!r:.30}, not a word"
    return None


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; a truncated, corrupted or non-object file is one line."""
    try:
        data = safe_json.load_file(path)
    except OSError as exc:
        raise RlkitError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise RlkitError(f"{path}: damaged {what} (not valid JSON: {one_line(exc)})") from None
    if not isinstance(data, dict):
        raise RlkitError(f"{path}: damaged {what} (expected a JSON object, got {type(data).__name__})")
    return data


class RunLock:
    """An OS file lock (``flock``) on ``run.lock`` held for a whole training session.

    The file holds the holder's pid (for the message a second writer gets). The kernel releases
    the lock when its process dies, however it dies, so a lock left by ``kill -9`` never blocks.
    """

    def __init__(self, run: RunDir, fd: int) -> None:
        self.run = run
        self._fd: int | None = fd

    @classmethod
    def take(cls, run: RunDir) -> RunLock:
        try:
            fd = os.open(run.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RlkitError(f"cannot lock {run.path} for training: {exc.strerror} ({run.lock_file})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RlkitError(
                f"{run.path} is in use: rlkit process {holder} is training it; "
                f"wait for it to finish or stop it (kill {holder}) and then resume"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # a full disk: the lock holds all the same, the pid is only for messages
        return cls(run, fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


# --- checkpoint integrity -----------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Record the size and sha256 of every file in a checkpoint folder (written last)."""
    files = {
        p.name: {"size": p.stat().st_size, "sha256": sha256_of(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != MANIFEST
    }
    atomic.write_json(folder / MANIFEST, {"format": 1, "files": files})


@dataclass
class CheckpointInfo:
    """A checkpoint folder as resume sees it: intact or not, and why."""

    path: Path
    step: int
    state: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None
    """Why the model or state cannot be used (the checkpoint is skipped), or ``None``."""
    buffer_problem: str | None = None
    """Why its replay buffer cannot be restored (missing, damaged, an old pickle), or ``None``."""

    @property
    def label(self) -> str:
        return f"step-{self.step}"


def verify_checkpoint(folder: Path) -> CheckpointInfo:
    """Check a checkpoint against its manifest and its ``state.json`` against the expected fields."""
    step = int(folder.name.split("-")[1])
    info = CheckpointInfo(folder, step)
    try:
        info.state = _checkpoint_state(folder / "state.json", step)
    except ValueError as exc:
        info.problem = str(exc)
        return info
    wants_buffer = bool(info.state.get("replay_buffer"))
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        # Checkpoints of rlkit before manifests: usable model, but the buffer is a pickle.
        if not (folder / "model.zip").is_file():
            info.problem = "model.zip is missing"
        elif wants_buffer:
            legacy = (folder / LEGACY_BUFFER).is_file()
            info.buffer_problem = (
                f"its replay buffer is {LEGACY_BUFFER}, a pickle from an older rlkit (pickles can run code; "
                "rlkit never opens them)"
                if legacy
                else f"{BUFFER} is missing"
            )
        return info
    try:
        manifest = safe_json.load_file(manifest_path)
        files = manifest["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a mapping")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        info.problem = f"{MANIFEST} is damaged ({exc})"
        return info
    for name in ("model.zip", "state.json", *([BUFFER] if wants_buffer else [])):
        if name not in files:
            problem = f"{name} is not in its manifest"
            if name == BUFFER:
                info.buffer_problem = problem
            else:
                info.problem = problem
                return info
    for name, expected in files.items():
        mismatch = _file_problem(folder / str(name), expected)
        if mismatch is None:
            continue
        if name == BUFFER:
            info.buffer_problem = mismatch
        else:
            info.problem = mismatch
            return info
    return info


def _file_problem(path: Path, expected: Any) -> str | None:
    if not path.is_file():
        return f"{path.name} is missing"
    try:
        size, digest = int(expected["size"]), str(expected["sha256"])
    except (KeyError, TypeError, ValueError):
        return f"{MANIFEST} entry of {path.name} is damaged"
    actual = path.stat().st_size
    if actual != size:
        return f"{path.name} is {actual} bytes, {size} when written (truncated or altered)"
    if sha256_of(path) != digest:
        return f"{path.name} does not match its sha256 (damaged or altered)"
    return None


def _checkpoint_state(path: Path, step: int) -> dict[str, Any]:
    """A checkpoint's ``state.json``, every field checked (plain data, but never trusted)."""
    try:
        state = safe_json.load_file(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"state.json is unreadable ({exc})") from None
    if not isinstance(state, dict):
        raise ValueError("state.json is not a JSON object")
    steps = state.get("num_timesteps")
    if type(steps) is not int or steps != step:
        raise ValueError(f"state.json num_timesteps is {steps!r}, the folder says {step}")
    for key in ("wall_s", "best_mean_reward", "exploration_rate"):
        value = state.get(key)
        if value is not None and (type(value) not in (int, float) or not math.isfinite(value)):
            raise ValueError(f"state.json {key} is {value!r}, not a finite number")
    if type(state.get("replay_buffer", False)) is not bool:
        raise ValueError(f"state.json replay_buffer is {state.get('replay_buffer')!r}, not true/false")
    return state


def environment_info() -> dict[str, Any]:
    """Versions and machine facts recorded with every run."""
    from importlib import metadata

    versions: dict[str, str] = {}
    for dist in ("rlkit", "stable-baselines3", "sb3-contrib", "torch", "gymnasium", "ale-py", "numpy", "optuna"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }

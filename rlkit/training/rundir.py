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
        checkpoints/        step-<N>/ {model.zip, replay_buffer.pkl, state.json}
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import platform
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlkit.config.schema import Preset, to_plain, validate
from rlkit.core import atomic
from rlkit.core.errors import RlkitError
from rlkit.core.paths import check_folder, make_folder

EVAL_FIELDS = ["timesteps", "mean_reward", "std_reward", "min_reward", "max_reward", "mean_ep_length", "wall_s"]


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

    # --- creation and opening ---------------------------------------------------------

    @classmethod
    def create(cls, alias: str, seed: int, root: Path | None = None, path: Path | None = None) -> RunDir:
        """A brand-new run folder; an existing non-empty folder is never reused."""
        if path is not None:
            check_folder(path, "--run-dir")
            if path.is_dir() and any(path.iterdir()):
                raise RlkitError(
                    f"run directory {path} already exists and is not empty; "
                    f"continue it with --resume {path} or choose another --run-dir"
                )
            return cls(make_folder(path, "--run-dir"))
        base = (root or default_root()) / alias
        check_folder(base, "runs folder")
        stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        for n in range(1, 1000):
            name = f"{stamp}-s{seed}" + ("" if n == 1 else f"-{n}")
            candidate = base / name
            try:
                candidate.mkdir(parents=True, exist_ok=False)
            except FileExistsError:
                continue
            except OSError as exc:
                raise RlkitError(f"cannot create a run directory under {base}: {exc.strerror or exc}") from None
            return cls(candidate)
        raise RlkitError(f"could not create a run directory under {base}")

    @classmethod
    def open(cls, path: Path) -> RunDir:
        """An existing run; anything else is a one-line error."""
        run = cls(path)
        if not path.is_dir():
            raise RlkitError(f"not a run directory: {path} does not exist")
        if not run.config.is_file() or not run.meta.is_file():
            raise RlkitError(f"not an rlkit run directory: {path} has no config.yaml and meta.json")
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
            data = yaml.safe_load(self.config.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            raise RlkitError(f"{damaged} (unreadable: {one_line(exc)})") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "invalid YAML"
            raise RlkitError(f"{damaged} (malformed YAML{where}: {problem})") from None
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
        if not self.state_file.exists():
            return {}
        return read_json_object(self.state_file, "run state")

    def update_state(self, **changes: Any) -> dict[str, Any]:
        state = {**self.read_state(), **changes, "updated": now_iso()}
        atomic.write_json(self.state_file, state)
        return state

    # --- evaluation history -------------------------------------------------------------

    def read_evaluations(self) -> list[dict[str, float]]:
        if not self.evaluations.exists():
            return []
        try:
            with open(self.evaluations, newline="") as handle:
                return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
        except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as exc:
            raise RlkitError(f"{self.evaluations}: damaged evaluation history ({one_line(exc)})") from None

    def write_evaluations(self, rows: list[dict[str, float]]) -> None:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EVAL_FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row[k] for k in EVAL_FIELDS})
        atomic.write_text(self.evaluations, buffer.getvalue())

    def checkpoint_dirs(self) -> list[Path]:
        """Complete checkpoints, oldest first (half-written staging folders are ignored)."""
        if not self.checkpoints.is_dir():
            return []
        found = [p for p in self.checkpoints.glob("step-*") if p.is_dir() and (p / "state.json").exists()]
        return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (YAML and JSON errors span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; a truncated, corrupted or non-object file is one line."""
    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        raise RlkitError(f"{path}: cannot read the {what} ({exc.strerror})") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise RlkitError(f"{path}: damaged {what} (not valid JSON: {one_line(exc)})") from None
    if not isinstance(data, dict):
        raise RlkitError(f"{path}: damaged {what} (expected a JSON object, got {type(data).__name__})")
    return data


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

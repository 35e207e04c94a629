"""Experiment trackers: MLflow and Weights & Biases (``--track mlflow|wandb``).

A tracked run gets what the run directory gets: the resolved config (params), the scalars that go
to TensorBoard (an SB3 ``KVWriter`` added to the model's logger, so every ``logger.record`` /
``dump`` reaches the tracker too), and at the end the evaluation table (``evaluations.csv``) and
the final artefacts (model zips, videos when recorded). Both libraries are optional extras
(``pip install 'rlkit[mlflow]'`` / ``'rlkit[wandb]'``) and imported only when asked for.

Where the data goes is each library's own setting: ``MLFLOW_TRACKING_URI`` (default
``sqlite:///mlflow.db`` in the current folder) and ``MLFLOW_EXPERIMENT_NAME``; ``WANDB_MODE``
(``offline`` logs locally, ``wandb sync`` uploads later), ``WANDB_DIR``, ``WANDB_PROJECT``,
``WANDB_ENTITY``. Without an experiment or project name, runs go to ``rlkit-<alias>``.
"""

from __future__ import annotations

import csv
import math
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter

from rlkit.config.schema import flatten, to_plain
from rlkit.core import atomic, safe_json
from rlkit.core.errors import RlkitError

if TYPE_CHECKING:
    from rlkit.training.rundir import RunDir


Status = Literal["finished", "failed", "killed"]
TRACKING_FILE = "tracking.json"
"""In a run directory: the tracker and its run id, so a resumed run logs to the same tracked run."""

_PACKAGES = {"mlflow": "MLflow", "wandb": "Weights & Biases"}


def require(kind: str | None) -> None:
    """Fail in one line, before any work, when the tracker's package (or a W&B login) is missing."""
    if kind is None:
        return
    if kind not in _PACKAGES:
        raise RlkitError(f"unknown tracker '{kind}'; valid: {', '.join(_PACKAGES)}")
    try:
        __import__(kind)
    except ImportError:
        raise RlkitError(
            f"--track {kind} needs {_PACKAGES[kind]}, which is not installed: pip install 'rlkit[{kind}]'"
        ) from None
    if kind == "wandb" and not _wandb_can_log():
        raise RlkitError(
            "--track wandb: no W&B login found (WANDB_API_KEY or `wandb login`); "
            "set WANDB_MODE=offline to log locally and upload later with `wandb sync`"
        )


def prepare_store(kind: str | None, project: str) -> None:
    """Create the tracking store and experiment once, before parallel workers log to it.

    MLflow creates (and migrates) a new SQLite store on first use; two processes doing that at
    once collide (``table _alembic_tmp_experiments already exists``). W&B needs nothing.
    """
    require(kind)
    if kind != "mlflow":
        return
    try:
        _mlflow_experiment(_mlflow_client(), project)
    except RlkitError:
        raise
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RlkitError(f"--track mlflow: could not open the tracking store: {first}") from None


def _mlflow_client() -> Any:
    import logging

    from mlflow.tracking import MlflowClient

    for noisy in ("mlflow", "alembic"):  # table creation and migrations log at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return MlflowClient()


def _mlflow_experiment(client: Any, name: str) -> str:
    """The id of experiment ``MLFLOW_EXPERIMENT_NAME`` or ``name``, created when missing."""
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or name
    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # another process (a benchmark seed, a tuning worker) created it first
        again = client.get_experiment_by_name(name)
        if again is None:
            raise
        return str(again.experiment_id)


def _wandb_can_log() -> bool:
    """Offline or disabled modes need no login; online needs an API key (never an interactive prompt)."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun") or os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text() or "WANDB_BASE_URL" in os.environ
    except OSError:
        return False


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def _numbers(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numeric values (bools and strings are not metrics)."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if isinstance(value, (bool, str)) or value is None:
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            out[key] = number
    return out


def read_csv_table(path: Path) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of a small CSV, numbers as floats."""
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return [], []

    def cell(text: str) -> Any:
        try:
            return float(text)
        except ValueError:
            return text

    return rows[0], [[cell(c) for c in row] for row in rows[1:]]


# ----------------------------------------------------------------------------------------
# The trackers
# ----------------------------------------------------------------------------------------


class Tracker:
    """One tracked run; subclasses speak to MLflow or W&B."""

    kind: str = ""
    run_id: str = ""

    def log_params(self, params: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        raise NotImplementedError

    def log_summary(self, metrics: dict[str, Any]) -> None:
        """Final figures of the run (W&B summary; MLflow metrics without a step)."""
        raise NotImplementedError

    def log_table(self, name: str, path: Path) -> None:
        """A CSV file as a table (W&B) or an artifact (MLflow)."""
        raise NotImplementedError

    def log_files(self, name: str, paths: list[Path], kind: str) -> None:
        """Files kept with the run: ``kind`` is ``model``, ``videos`` or ``results``."""
        raise NotImplementedError

    def finish(self, status: Status) -> None:
        raise NotImplementedError


class MlflowTracker(Tracker):
    """An MLflow run through ``MlflowClient`` (no global active run, so several may be open)."""

    kind = "mlflow"

    def __init__(self, experiment: str, name: str, tags: dict[str, str], resume_id: str | None) -> None:
        self.client = _mlflow_client()
        self.pending: list[Any] = []
        self.last_step = 0
        if resume_id is not None:
            from mlflow.exceptions import MlflowException

            self.run_id = resume_id
            try:
                self.client.update_run(resume_id, status="RUNNING")
            except MlflowException:
                raise RlkitError(
                    f"MLflow run {resume_id} of this run directory is not in {self.client.tracking_uri}; "
                    "set MLFLOW_TRACKING_URI to the store the run was started with"
                ) from None
            return
        experiment_id = _mlflow_experiment(self.client, experiment)
        self.run_id = self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(key, str(value)[:6000]) for key, value in params.items()]
        for start in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[start : start + 100])

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        from mlflow.entities import Metric

        self.last_step = max(self.last_step, int(step))
        now = int(time.time() * 1000)
        items = [Metric(key, value, now, int(step)) for key, value in _numbers(metrics).items()]
        for start in range(0, len(items), 1000):  # queued: the training loop never waits on the store
            self.pending.append(
                self.client.log_batch(self.run_id, metrics=items[start : start + 1000], synchronous=False)
            )

    def log_summary(self, metrics: dict[str, Any]) -> None:
        self.log_metrics(metrics, self.last_step)  # at the run's last step (0 for a trial's objective)

    def log_table(self, name: str, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path))

    def log_files(self, name: str, paths: list[Path], kind: str) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), artifact_path=kind)

    def finish(self, status: Status) -> None:
        for operation in self.pending:
            if operation is not None:
                operation.wait()
        self.pending.clear()
        self.client.set_terminated(self.run_id, status=status.upper())


class WandbTracker(Tracker):
    """A W&B run (``WANDB_MODE=offline`` keeps it on disk for ``wandb sync``)."""

    kind = "wandb"

    def __init__(self, project: str, name: str, group: str | None, tags: dict[str, str], resume_id: str | None) -> None:
        import wandb

        self.name = name
        self.run = wandb.init(
            project=None if os.environ.get("WANDB_PROJECT") else project,
            name=name,
            group=group,
            tags=[f"{k}:{v}"[:64] for k, v in tags.items()],
            id=resume_id,
            resume="allow" if resume_id else None,
            reinit="create_new",
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.run_id = self.run.id
        # SB3 counts steps; a resumed run logs steps again from its checkpoint, which W&B's own
        # (strictly increasing) step would drop: every metric is plotted against `timesteps`.
        self.run.define_metric("timesteps")
        self.run.define_metric("*", step_metric="timesteps")

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
        numbers = _numbers(metrics)
        if numbers:
            self.run.log({**numbers, "timesteps": int(step)})

    def log_summary(self, metrics: dict[str, Any]) -> None:
        self.run.summary.update(_numbers(metrics))

    def log_table(self, name: str, path: Path) -> None:
        import wandb

        header, rows = read_csv_table(path)
        columns: list[str | int] = list(header)
        if columns:
            self.run.log({name: wandb.Table(columns=columns, data=rows)})

    def log_files(self, name: str, paths: list[Path], kind: str) -> None:
        import wandb

        artifact = wandb.Artifact(_safe_name(f"{self.name}-{name}"), type=kind)
        for path in paths:
            artifact.add_file(str(path), name=path.name)
        self.run.log_artifact(artifact)

    def finish(self, status: Status) -> None:
        self.run.finish(exit_code={"finished": 0, "failed": 1, "killed": 130}[status])


def open_tracker(
    kind: str,
    *,
    project: str,
    name: str,
    group: str | None = None,
    tags: dict[str, str] | None = None,
    resume_id: str | None = None,
) -> Tracker:
    """A new tracked run (or the run ``resume_id`` again) in ``project`` (MLflow: the experiment)."""
    require(kind)
    tags = {**(tags or {}), **({"rlkit.group": group} if group else {})}
    try:
        if kind == "mlflow":
            return MlflowTracker(project, name, tags, resume_id)
        return WandbTracker(project, name, group, tags, resume_id)
    except RlkitError:
        raise
    except Exception as exc:  # a bad store URI, an unreachable server: the library's own words, one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise RlkitError(f"--track {kind}: could not open a tracked run: {first}") from None


# ----------------------------------------------------------------------------------------
# SB3's logger -> tracker
# ----------------------------------------------------------------------------------------


class TrackerOutput(KVWriter):
    """An SB3 logger output format: what TensorBoard gets at each ``dump``, the tracker gets too."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        kept = {
            key: value
            for key, value in key_values.items()
            if not (key_excluded.get(key) is not None and "tensorboard" in key_excluded[key])
        }
        if _numbers(kept):
            self.tracker.log_metrics(kept, step)

    def close(self) -> None:
        """The tracker is finished by whoever opened it."""


class TrackingCallback(BaseCallback):
    """Adds a :class:`TrackerOutput` to the model's logger when training starts (SB3 makes a new
    logger at each ``learn``, so a resumed run is tracked too)."""

    def __init__(self, tracker: Tracker) -> None:
        super().__init__()
        self.output = TrackerOutput(tracker)

    def _on_training_start(self) -> None:
        formats = self.model.logger.output_formats
        if self.output not in formats:
            formats.append(self.output)

    def _on_step(self) -> bool:
        return True


# ----------------------------------------------------------------------------------------
# A run directory's tracked run
# ----------------------------------------------------------------------------------------


def recorded(run: RunDir) -> dict[str, Any]:
    """What ``tracking.json`` says about the run's tracked run (empty when it was not tracked)."""
    path = run.path / TRACKING_FILE
    if not path.exists():
        return {}
    try:
        data = safe_json.load_file(path)
    except (OSError, ValueError) as exc:
        raise RlkitError(f"{path}: damaged tracking record ({exc})") from None
    if not isinstance(data, dict):
        raise RlkitError(f"{path}: damaged tracking record (not a JSON object)")
    return data


def open_for_run(kind: str, run: RunDir) -> Tracker:
    """The tracked run of a run directory: created at start, the same one again at a resume.

    Named ``<alias>-<run folder>`` in project ``rlkit-<alias>``, grouped by the folder above the
    run (the alias, or a benchmark's results folder), with the resolved config, seed and alias
    as params.
    """
    alias, seed, preset = run.read_config()
    known = recorded(run)
    resume_id = known.get("run_id") if known.get("tracker") == kind else None
    tracker = open_tracker(
        kind,
        project=f"rlkit-{alias}",
        name=f"{alias}-{run.path.name}",
        group=run.path.parent.name,
        tags={"rlkit.alias": alias, "rlkit.run_dir": str(run.path.resolve())},
        resume_id=resume_id,
    )
    if resume_id is None:
        tracker.log_params({**flatten(to_plain(preset)), "seed": seed, "alias": alias})
        atomic.write_json(run.path / TRACKING_FILE, {"tracker": kind, "run_id": tracker.run_id})
    return tracker


def finish_run(tracker: Tracker, run: RunDir, status: Status, summary: dict[str, Any] | None = None) -> None:
    """Evaluation table, final figures and artefacts (models, videos), then the run's status."""
    if run.evaluations.exists():
        tracker.log_table("evaluations", run.evaluations)
    if summary:
        tracker.log_summary(summary)
    models = [path for path in (run.final_model, run.best_model) if path.exists()]
    if models:
        tracker.log_files("models", models, "model")
    videos = sorted((run.path / "videos").glob("*.mp4")) + sorted((run.path / "videos").glob("*.gif"))
    if videos:
        tracker.log_files("videos", videos, "videos")
    tracker.finish(status)


def log_finished(
    kind: str,
    *,
    project: str,
    name: str,
    group: str | None,
    params: dict[str, Any],
    steps: dict[int, dict[str, Any]] | None = None,
    summary: dict[str, Any] | None = None,
    files: list[Path] | None = None,
    tags: dict[str, str] | None = None,
    status: Status = "finished",
) -> str:
    """A tracked run logged in one go after the fact (a tuning trial, a benchmark's summary); its id."""
    tracker = open_tracker(kind, project=project, name=name, group=group, tags=tags)
    try:
        tracker.log_params(params)
        for step, metrics in sorted((steps or {}).items()):
            tracker.log_metrics(metrics, step)
        if summary:
            tracker.log_summary(summary)
        if files:
            tracker.log_files("results", files, "results")
    except BaseException:
        tracker.finish("failed")
        raise
    tracker.finish(status)
    return tracker.run_id

"""``rlkit doctor``: a run directory's evidence, read as data (no model is loaded, no code from it runs),
and the findings of :mod:`rlkit.training.findings` on it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlkit.core.errors import RlkitError
from rlkit.training.findings import RULES, Evidence, Finding, Series, diagnose, with_episodes


@dataclass
class Diagnosis:
    """The findings (worst first) and what was read."""

    run: str
    findings: list[Finding]
    read: dict[str, int]
    evidence: Evidence | None = field(default=None, repr=False, compare=False)
    """What the rules read (the report draws each finding from it); not in :meth:`to_dict`."""

    @property
    def healthy(self) -> bool:
        return not self.findings

    def to_dict(self) -> dict[str, Any]:
        findings = [f.to_dict() for f in self.findings]
        return {"run": self.run, "healthy": self.healthy, "read": self.read, "findings": findings}


def training_series(monitor: Path, frames_per_step: int = 1) -> Series | None:
    """Training episode returns at the step each ended, all envs in time order."""
    from rlkit.analysis.plots import read_monitor_csv

    parts = [read_monitor_csv(p) for p in sorted(monitor.glob("*.monitor.csv"))] if monitor.is_dir() else []
    if not parts or not sum(len(p[0]) for p in parts):
        return None
    returns, lengths, times = (np.concatenate([p[i] for p in parts]) for i in range(3))
    order = np.argsort(times, kind="stable")
    return Series(np.cumsum(lengths[order]) / max(1, frames_per_step), returns[order])


def diag_series(tensorboard: Path) -> dict[str, Series]:
    """The ``diag/*`` scalars of a run's TensorBoard logs (every session merged, by step)."""
    if not tensorboard.is_dir() or not any(tensorboard.rglob("events.out.tfevents*")):
        return {}
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, dict[int, float]] = {}
    for folder in sorted({p.parent for p in tensorboard.rglob("events.out.tfevents*")}):
        accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "histograms": 1, "tensors": 1})
        try:
            accumulator.Reload()
        except Exception as exc:  # a torn event file: the records before it stay readable
            raise RlkitError(f"{folder}: unreadable TensorBoard log ({type(exc).__name__}: {exc})") from None
        for tag in accumulator.Tags().get("scalars", []):
            if tag.startswith("diag/"):
                values = found.setdefault(tag[5:], {})
                for event in accumulator.Scalars(tag):
                    values[int(event.step)] = float(event.value)
    return {
        name: Series(np.asarray(sorted(v), float), np.asarray([v[s] for s in sorted(v)], float))
        for name, v in found.items()
    }


def read_evidence(path: Path) -> tuple[str, Evidence]:
    """A run directory's alias and what it recorded (nothing is loaded but data: no model, no code)."""
    from rlkit.training.rundir import RunDir

    run = RunDir.open(path)
    alias, _seed, preset = run.read_config()
    frames = preset.atari.frame_skip if preset.atari is not None else 1
    checkpoints = [int(folder.name.split("-")[1]) for folder in run.checkpoint_dirs()]
    evidence = Evidence(
        preset=preset,
        state=run.read_state(),
        evaluations=with_episodes(run.read_evaluations(), preset.eval_episodes),
        training=training_series(run.monitor, frames),
        diag=diag_series(run.tensorboard),
        checkpoints=checkpoints,
        run=path,
    )
    return alias, evidence


def examine(path: Path) -> Diagnosis:
    """``rlkit doctor RUN``: the findings of one run directory."""
    alias, evidence = read_evidence(path)
    read = {
        "evaluations": len(evidence.evaluations),
        "training_episodes": len(evidence.training) if evidence.training is not None else 0,
        "diagnostics_records": max((len(s) for s in evidence.diag.values()), default=0),
        "rules": len(RULES),
        "steps": evidence.steps,
    }
    return Diagnosis(str(path), diagnose(evidence, alias), read, evidence)

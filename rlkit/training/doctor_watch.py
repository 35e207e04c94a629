"""The run doctor during training: the rules of :mod:`rlkit.training.findings` after every evaluation,
on the run's figures kept in memory, and one history line for each finding the first time it fires.

Nothing is read back from disk: :class:`DiagCollector` is an SB3 logger output that keeps the
``diag/*`` scalars of each logger dump (the values TensorBoard gets, so ``rlkit doctor`` reads the
same series afterwards), :class:`DoctorWatch`'s ``_on_step`` keeps each training episode's return as
SB3's Monitor reports it, and the evaluations are the evaluator's own rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter

from rlkit.training.findings import Evidence, Finding, Series, diagnose, with_episodes

if TYPE_CHECKING:
    from rlkit.config.schema import Preset
    from rlkit.training.callbacks import Evaluator
    from rlkit.training.rundir import RunDir

OnFinding = Callable[[Finding, int], None]
"""Told of a finding the first time it fires, with the step of the evaluation that found it."""


class DiagCollector(KVWriter):
    """An SB3 logger output that keeps every ``diag/*`` scalar of each dump, by name without the prefix."""

    def __init__(self) -> None:
        self.values: dict[str, tuple[list[float], list[float]]] = {}
        self.seconds = 0.0

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0) -> None:
        started = time.perf_counter()
        for key, value in key_values.items():
            if key.startswith("diag/") and isinstance(value, (int, float)) and not isinstance(value, bool):
                steps, values = self.values.setdefault(key[5:], ([], []))
                steps.append(float(step))
                values.append(float(value))
        self.seconds += time.perf_counter() - started

    def series(self) -> dict[str, Series]:
        return {name: Series(np.asarray(s), np.asarray(v)) for name, (s, v) in self.values.items()}

    def close(self) -> None:
        """Nothing to close: the values stay for the last evaluation."""


class DoctorWatch(BaseCallback):
    """Collects the evidence while training (a callback) and diagnoses it after each evaluation
    (:meth:`after_eval`, one of the evaluator's ``callback_after_eval`` hooks).

    Each finding code is reported once (``on_finding``); on a resumed run, what the earlier
    evaluations already showed counts as reported. ``state`` gives the run's state as the rules read
    it (``solved``); ``run`` names the run directory in the advice and lists its checkpoints.
    ``seconds`` sums the time the watch took (the evidence kept, the rules run).
    """

    def __init__(
        self,
        preset: Preset,
        alias: str,
        on_finding: OnFinding,
        *,
        state: Callable[[], dict[str, Any]] = dict,
        run: RunDir | None = None,
        history: list[dict[str, float]] | None = None,
    ) -> None:
        super().__init__()
        self.preset, self.alias, self.on_finding = preset, alias, on_finding
        self.state, self.run = state, run
        self.collector = DiagCollector()
        self.episodes: tuple[list[float], list[float]] = ([], [])
        self.reported: set[str] = set()
        if history:
            self.reported = {f.code for f in diagnose(self._evidence(history), alias)}
        self._seconds = 0.0

    @property
    def seconds(self) -> float:
        return self._seconds + self.collector.seconds

    def _on_training_start(self) -> None:
        formats = self.model.logger.output_formats  # SB3 makes a new logger at each learn()
        if self.collector not in formats:
            formats.append(self.collector)

    def _on_step(self) -> bool:
        for info in self.locals.get("infos", ()):
            episode = info.get("episode")
            if episode is not None:
                self.episodes[0].append(float(self.num_timesteps))
                self.episodes[1].append(float(episode["r"]))
        return True

    def _evidence(self, rows: list[dict[str, float]]) -> Evidence:
        steps, returns = self.episodes
        return Evidence(
            preset=self.preset,
            state=self.state(),
            evaluations=with_episodes(rows, self.preset.eval_episodes),
            training=Series(np.asarray(steps), np.asarray(returns)) if steps else None,
            diag=self.collector.series(),
            checkpoints=[int(d.name.split("-")[1]) for d in self.run.checkpoint_dirs()] if self.run else [],
            run=self.run.path if self.run is not None else None,
        )

    def after_eval(self, evaluator: Evaluator, row: dict[str, float]) -> None:
        """The evaluator hook: diagnose the evidence so far; report each new finding once."""
        started = time.perf_counter()
        found = [f for f in diagnose(self._evidence(evaluator.history), self.alias) if f.code not in self.reported]
        self._seconds += time.perf_counter() - started
        for finding in found:
            self.reported.add(finding.code)
            self.on_finding(finding, int(row["timesteps"]))

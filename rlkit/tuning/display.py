"""The live view of a study: trials done, pruned and failed, the best value and its parameters, ETA."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table

from rlkit.core.console import PipeSafeConsole

if TYPE_CHECKING:
    import optuna

    from rlkit.tuning.space import SearchSpace
    from rlkit.tuning.study import Prepared


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def format_value(value: Any) -> str:
    """A parameter value, short: floats to 4 significant digits."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class TuneDisplay:
    """A rich ``Live`` table refreshed from the storage.

    ``quiet`` prints one line per finished trial instead: the trials of ``only_worker`` (this
    process, when it runs trials itself), or every trial (a ``--jobs`` parent).
    """

    def __init__(
        self,
        *,
        study_name: str,
        env_id: str,
        target: int,
        workers: int,
        space: SearchSpace,
        storage_shown: str,
        quiet: bool = False,
        only_worker: str | None = None,
        console: Console | None = None,
        objective: str = "objective",
    ) -> None:
        self.study_name = study_name
        self.env_id = env_id
        self.target = target
        self.workers = workers
        self.space = space
        self.storage_shown = storage_shown
        self.quiet = quiet
        self.only_worker = only_worker
        self.console = console or PipeSafeConsole()
        self.objective = objective
        self.counts: dict[str, int] = {}
        self.best: tuple[float, int, dict[str, Any]] | None = None
        self.mean_trial_s: float | None = None
        self.progress: tuple[int, int, int] | None = None
        self.started = time.monotonic()
        self._seen: set[int] = set()
        self._live: Live | None = None
        self._study: optuna.Study | None = None
        self._read_at = -math.inf

    def __enter__(self) -> TuneDisplay:
        if not self.quiet:
            self._live = Live(self, console=self.console, refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None
            if not self.console.is_terminal:
                self.console.line()

    REREAD_S = 2.0
    """While a trial trains, the storage is re-read at most this often (other workers' trials, states)."""

    def on_progress(self, trial: int, done: int, total: int) -> None:
        """Steps done in the trial running in this process; re-reads the study now and then.

        ``refresh`` is otherwise called between trials only, so the counts shown during a trial
        would be those from before it started: ``0 running`` while it runs.
        """
        new_trial = self.progress is None or self.progress[0] != trial
        self.progress = (trial, done, total)
        if self._study is not None and (new_trial or time.monotonic() - self._read_at >= self.REREAD_S):
            self.refresh(self._study)

    def refresh(self, study: optuna.Study) -> None:
        """Re-read the study's trials."""
        from rlkit.tuning.study import best_summary

        self._study = study
        self._read_at = time.monotonic()
        counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0, "RUNNING": 0, "WAITING": 0}
        durations = []
        for trial in study.get_trials(deepcopy=False):
            counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
            if trial.state.name in ("COMPLETE", "PRUNED") and trial.duration is not None:
                durations.append(trial.duration.total_seconds())
            if self.quiet and trial.state.is_finished() and trial.number not in self._seen:
                self._seen.add(trial.number)
                if self.only_worker is None or trial.user_attrs.get("worker") == self.only_worker:
                    self._print_trial(trial)
        self.counts = counts
        self.mean_trial_s = sum(durations) / len(durations) if durations else None
        self.best = best_summary(study, self.space)

    def _print_trial(self, trial: optuna.trial.FrozenTrial) -> None:
        state = trial.state.name.lower()
        value = "" if trial.value is None else f" objective {trial.value:.2f}"
        reason = trial.user_attrs.get("pruned_reason")
        extra = f" ({reason})" if reason and state == "pruned" else ""
        self.console.print(f"trial {trial.number} {state}{value}{extra}", highlight=False)

    def eta_s(self) -> float | None:
        """Seconds left: the mean finished trial's duration times the rounds of trials still to run."""
        if self.mean_trial_s is None:
            return None
        finished = self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)
        left = max(0, self.target - finished)
        parallel = max(1, self.workers, self.counts.get("RUNNING", 0))  # other machines' workers count too
        return self.mean_trial_s * math.ceil(left / parallel)

    def __rich__(self) -> Group:
        finished = self.counts.get("COMPLETE", 0) + self.counts.get("PRUNED", 0)
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("study", f"{self.study_name}  ({self.env_id}, {self.storage_shown})")
        table.add_row(
            "trials",
            f"{finished}/{self.target} done: {self.counts.get('COMPLETE', 0)} complete, "
            f"{self.counts.get('PRUNED', 0)} pruned, {self.counts.get('FAIL', 0)} failed, "
            f"{self.counts.get('RUNNING', 0)} running",
        )
        if self.progress is not None:
            trial, done, total = self.progress
            table.add_row("this worker", f"trial {trial}: {done:,}/{total:,} steps")
        table.add_row("elapsed / ETA", f"{_duration(time.monotonic() - self.started)} / {_duration(self.eta_s())}")
        table.add_row("objective", self.objective)
        if self.best is None:
            table.add_row("best", "-")
        else:
            value, number, params = self.best
            table.add_row("best", f"{value:.2f} (trial {number})")
            table.add_row("params", ", ".join(f"{k}={format_value(v)}" for k, v in params.items()))
        return Group(table)


def live_view(prepared: Prepared, *, quiet: bool = False, console: Console | None = None) -> TuneDisplay:
    """The study's live view, as ``rlkit tune`` shows it.

    ``quiet``: one line per finished trial instead of the live table.
    """
    from rlkit.tuning.storage import worker_name
    from rlkit.tuning.study import objective_label

    return TuneDisplay(
        study_name=prepared.study_name,
        env_id=prepared.env_id,
        target=prepared.request.trials,
        workers=prepared.request.jobs,
        space=prepared.space,
        storage_shown=prepared.url.shown,
        quiet=quiet,
        only_worker=worker_name() if prepared.request.jobs == 1 else None,
        console=console,
        objective=objective_label(prepared.record),
    )

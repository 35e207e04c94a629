"""The live training display: a rich progress bar with the figures that matter.

On a terminal it is a live bar (ETA, steps/s, recent return, epsilon, loss, last evaluation).
When output is not a terminal (CI logs, pipes) it prints one plain line per evaluation and
checkpoint instead, so logs stay readable.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


class TrainingDisplay:
    """Owns the console output of one training run."""

    def __init__(self, total: int, start: int = 0, *, quiet: bool = False, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.quiet = quiet
        self.total = total
        self.live = not quiet and self.console.is_terminal
        self._samples: deque[tuple[float, int]] = deque(maxlen=50)
        self._samples.append((time.perf_counter(), start))
        self._next_refresh = 0.0
        self.loss: float | None = None
        self.last_eval: str = "-"
        self.stats: dict[str, Any] = {}
        self.extra: dict[str, float] = {}
        self.progress: Progress | None = None
        if self.live:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[stats]}"),
                console=self.console,
                refresh_per_second=4,
            )
            self.task = self.progress.add_task("train", total=total, completed=start, stats="")

    def __enter__(self) -> TrainingDisplay:
        if self.progress is not None:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.stop()

    def steps_per_second(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 else None

    def maybe_update(self, model: Any) -> None:
        """Refresh at most four times a second (cheap to call every step)."""
        now = time.perf_counter()
        if now < self._next_refresh:
            return
        self._next_refresh = now + 0.25
        steps = int(model.num_timesteps)
        self._samples.append((now, steps))
        values = model.logger.name_to_value
        if "train/loss" in values:
            self.loss = float(values["train/loss"])
        # diag/ figures are logged every few gradient steps and cleared at each logger dump: keep the latest.
        self.extra.update({k: float(v) for k, v in values.items() if k.startswith("diag/") and isinstance(v, float)})
        episodes = list(model.ep_info_buffer)[-20:]
        ret = sum(e["r"] for e in episodes) / len(episodes) if episodes else None
        self.stats = {
            "steps": steps,
            "sps": self.steps_per_second(),
            "return": ret,
            "epsilon": float(model.exploration_rate),
            "loss": self.loss,
        }
        if self.progress is not None:
            line = (
                f"{_fmt(self.stats['sps'], '.0f')} steps/s  return {_fmt(ret)}  "
                f"eps {_fmt(self.stats['epsilon'], '.3f')}  loss {_fmt(self.loss, '.4f')}{self.diag_text()}  "
                f"eval {self.last_eval}"
            )
            self.progress.update(self.task, completed=steps, stats=line)

    def diag_text(self) -> str:
        """``  Q 12.3  td 0.45  |g| 3.2``: greedy Q mean, mean |TD error|, gradient norm (empty until logged)."""
        e = self.extra
        if "diag/q_greedy_mean" not in e:
            return ""
        return (
            f"  Q {e['diag/q_greedy_mean']:.1f}  td {e.get('diag/td_error_abs_mean', 0.0):.3f}"
            f"  |g| {e.get('diag/grad_norm', 0.0):.2f}"
        )

    def on_eval(self, row: dict[str, float], new_best: bool) -> None:
        star = " *best*" if new_best else ""
        self.last_eval = f"{row['mean_reward']:.1f}±{row['std_reward']:.1f}"
        if not self.live and not self.quiet:
            sps = self.steps_per_second()
            ret = self.stats.get("return")
            self.console.print(
                f"step {int(row['timesteps'])}/{self.total}: eval {self.last_eval}{star}  "
                f"train return {_fmt(ret)}  {_fmt(sps, '.0f')} steps/s  eps {_fmt(self.stats.get('epsilon'), '.3f')}"
                f"{self.diag_text()}",
                highlight=False,
                soft_wrap=True,
            )

    def on_checkpoint(self, steps: int) -> None:
        if not self.live and not self.quiet:
            self.console.print(f"step {steps}/{self.total}: checkpoint saved", highlight=False, soft_wrap=True)

    def message(self, text: str) -> None:
        """A line printed above the bar (or plainly), unless quiet."""
        if not self.quiet:
            self.console.print(text, highlight=False, soft_wrap=True)

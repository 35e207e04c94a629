"""The live training display: a progress line that fits the terminal, and a history above it.

On a terminal (rich ``Live``, redrawn four times a second, erased when training stops):

* a **live line** (two lines below ~150 columns) whose fields are chosen by the terminal's
  width. Always shown: the bar, step/budget, steps/s, ETA, the number of training episodes,
  the mean return of the last 20 episodes (``ret(20ep)``) and the last evaluation. Dropped
  first when columns run out, in this order: the gradient norm, the TD error, Q, the thread
  count, the elapsed time, the loss, epsilon, the best evaluation (see ``_OPTIONAL``).
* a **history** printed above it, one line per event that scrolls up and stays: every
  evaluation (step, mean ± std over its episodes, ``best`` when it saved a new best model, the
  training return at that step), every checkpoint, the thread tuner's first choice of torch's
  thread count and why (later changes show in the live line; one line at the end sums them up).

While an evaluation or the confirmation of a solve plays, the live line says so
(``evaluating 3/10 ep``, ``confirming 40/100 ep``; :meth:`TrainingDisplay.on_progress` is one of
the evaluator's progress hooks).

When output is not a terminal (CI logs, pipes) only the history is printed, as plain lines.
Epsilon is the model's exploration rate at the current step (the schedule evaluated at the
step counter, so it is never the value from before the schedule's first update); a NoisyNet
model shows ``noisy`` instead.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.text import Text

from rlkit.core.console import PipeSafeConsole

if TYPE_CHECKING:
    from rlkit.core.threads import ThreadTuner

RETURN_WINDOW = 20
"""Training episodes averaged in ``ret(20ep)``."""

SEP = "  "
BAR_MIN = 10
BAR_MAX = 40
MARGIN = 3
"""Columns left free at the right of the live line (see ``_Screen``)."""
ONE_LINE_BAR = 24
"""The bar width a single-line layout needs; below it the figures go to a second line."""


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def fmt_steps(steps: float) -> str:
    """``1.2M``, ``45.6k``, ``999``: a compact step count for tight fields."""
    if steps >= 1_000_000:
        return f"{steps / 1e6:.3g}M"
    if steps >= 10_000:
        return f"{steps / 1e3:.0f}k"
    if steps >= 1_000:
        return f"{steps / 1e3:.3g}k"
    return f"{steps:.0f}"


def fmt_clock(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "-:--:--"
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def fmt_epsilon(eps: float) -> str:
    """Three decimals, or two significant digits below 0.01 (so 0.0004 is not shown as 0.000)."""
    return f"{eps:.3f}" if eps >= 0.01 or eps == 0 else f"{eps:.2g}"


def short_path(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else as given."""
    try:
        return os.path.relpath(path) if path.resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except (OSError, ValueError):
        return str(path)


@dataclass
class Field:
    """One figure of the live line: its text and when it goes (``None``: never)."""

    text: Text
    drop: int | None = None
    """Optional fields are dropped from the highest number down when columns run out."""


_OPTIONAL = {"best": 1, "eps": 2, "loss": 3, "elapsed": 4, "threads": 5, "Q": 6, "td": 7, "grad": 8}


class _Screen:
    """The live line as a rich renderable: laid out anew for the console's width at each refresh."""

    def __init__(self, display: TrainingDisplay) -> None:
        self.display = display

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # A margin: the terminal echoes ^C at the cursor, and a full-width line would wrap and
        # leave the erased live line one row off (a stale copy above the interrupt message).
        yield from self.display.lines(options.max_width - MARGIN)


class TrainingDisplay:
    """Owns the console output of one training run (see the module docstring)."""

    def __init__(self, total: int, start: int = 0, *, quiet: bool = False, console: Console | None = None) -> None:
        self.console = console or PipeSafeConsole(stderr=True)
        self.quiet = quiet
        self.total = total
        self.start_steps = start
        self.live = not quiet and self.console.is_terminal
        self._t0 = time.perf_counter()
        self._samples: deque[tuple[float, int]] = deque(maxlen=50)
        self._samples.append((self._t0, start))
        self._next_refresh = 0.0
        self.steps = start
        self.loss: float | None = None
        self.episodes: int | None = None
        self.ret: float | None = None
        self.ret_n = 0
        self.epsilon: float | None = None
        self.noisy = False
        self.last_eval: dict[str, float] | None = None
        self.last_eval_best = False
        self.best: dict[str, float] | None = None
        self.eval_episodes: int | None = None
        self.extra: dict[str, float] = {}
        self.threads: int | None = None
        self.playing: str | None = None
        """``evaluating 3/10 ep`` or ``confirming 40/100 ep`` while an evaluation plays (see :meth:`on_progress`)."""
        self._tuner: ThreadTuner | None = None
        self._model: Any = None
        """The model the figures are read from (the last one given to :meth:`update`)."""
        self._measured_step = -1
        self.threads_seen: list[int] = []
        """Each count the tuner chose, in order, a new entry at every change (see :meth:`stop`)."""
        self._stopped = False
        self.screen = _Screen(self)
        """The live line(s) as a rich renderable (what ``Live`` redraws)."""
        self._live: Live | None = None
        if self.live:
            self._live = Live(
                self.screen,
                console=self.console,
                refresh_per_second=4,
                transient=True,  # erased when training stops: nothing stale above the next message
                redirect_stdout=True,
                redirect_stderr=True,
            )

    # ------------------------------------------------------------------------------------
    # Lifecycle
    # ------------------------------------------------------------------------------------

    def __enter__(self) -> TrainingDisplay:
        if self._live is not None:
            self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Erase the live line (idempotent); the history stays, with a line on the thread counts used."""
        if self._live is not None and self._live.is_started:
            self._live.stop()
        if not self._stopped:
            self._stopped = True
            self._thread_summary()

    # ------------------------------------------------------------------------------------
    # Feeding
    # ------------------------------------------------------------------------------------

    def watch_threads(self, tuner: ThreadTuner | None) -> None:
        """Report the thread tuner's decisions (a history line whenever the chosen count changes)."""
        self._tuner = tuner

    def steps_per_second(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, s0), (t1, s1) = self._samples[0], self._samples[-1]
        return (s1 - s0) / (t1 - t0) if t1 > t0 and s1 > s0 else None

    def eta(self) -> float | None:
        sps = self.steps_per_second()
        return (self.total - self.steps) / sps if sps else None

    def maybe_update(self, model: Any) -> None:
        """Refresh the figures at most four times a second (cheap to call every step)."""
        now = time.perf_counter()
        if now < self._next_refresh:
            return
        self._next_refresh = now + 0.25
        self.update(model, now)

    def update(self, model: Any, now: float | None = None) -> None:
        """Read the figures from the model now."""
        self._model = model
        self.steps = int(model.num_timesteps)
        if self.steps != self._samples[-1][1]:  # (an evaluation reads the figures again at the same step)
            self._samples.append((time.perf_counter() if now is None else now, self.steps))
        values = model.logger.name_to_value
        if "train/loss" in values:
            self.loss = float(values["train/loss"])
        # diag/ figures are logged every few gradient steps and cleared at each logger dump: keep the latest.
        self.extra.update({k: float(v) for k, v in values.items() if k.startswith("diag/") and isinstance(v, float)})
        recent = list(model.ep_info_buffer)[-RETURN_WINDOW:]
        self.ret_n = len(recent)
        self.ret = sum(e["r"] for e in recent) / len(recent) if recent else None
        self.episodes = int(getattr(model, "_episode_num", 0))
        self.noisy = bool(getattr(getattr(model, "policy", None), "noisy", False))
        self.epsilon = current_epsilon(model)
        self._check_threads()

    def _check_threads(self) -> None:
        """The first decision of the thread tuner is a history line saying why; later ones show in ``thr``.

        On a busy machine the count can change every few hundred cycles: :meth:`stop` sums them up
        in one line instead.
        """
        tuner = self._tuner
        if tuner is None:
            return
        self.threads = tuner.winner or tuner.current
        for m in [m for m in tuner.measurements if m["step"] > self._measured_step]:
            self._measured_step = m["step"]
            if not self.threads_seen:
                text = f"step {m['step']:,}/{self.total:,}  torch threads {m['threads']} ({thread_reason(m)})"
                self.history(self._if_room(text, thread_timings(m)))
            if not self.threads_seen or m["threads"] != self.threads_seen[-1]:
                self.threads_seen.append(m["threads"])

    def _thread_summary(self) -> None:
        """One line at the end when the measured count changed during the run: how the cycles were shared."""
        tuner = self._tuner
        if tuner is None or len(self.threads_seen) < 2 or not hasattr(tuner, "cycle_shares"):
            return
        shares = ", ".join(f"{c} in {f:.0%}" for c, f in sorted(tuner.cycle_shares().items()) if f > 0)
        changes = len(self.threads_seen) - 1
        self.history(f"torch threads: {shares} of cycles (changed {changes}x with the machine's load)")

    def on_progress(self, what: str, done: int, total: int) -> None:
        """An evaluator progress hook: the live line says what plays while training waits for it.

        At the start the figures are read anew, so the line shows the step being evaluated.
        """
        if self.playing is None and done < total and self._model is not None:
            self.update(self._model)
        self.playing = None if done >= total else f"{what} {done}/{total} ep"

    def restore(self, rows: list[dict[str, float]], episodes: int | None = None) -> None:
        """Earlier evaluations of a resumed run: the live line shows the last and the best (no history lines)."""
        self.eval_episodes = episodes or self.eval_episodes
        for row in rows:
            if self.best is None or row["mean_reward"] > self.best["mean_reward"]:
                self.best = row
        self.last_eval = rows[-1] if rows else None
        self.last_eval_best = bool(rows) and rows[-1] is self.best

    def on_eval(self, row: dict[str, float], new_best: bool, episodes: int | None = None) -> None:
        """A history line for an evaluation; ``new_best`` when it saved a new best model.

        The figures are read from the model first: the line's ``ret(20ep)`` is that of the
        evaluation's step, whenever the live line was last sampled (so a seed repeats it exactly).
        """
        if self._model is not None:
            self.update(self._model)
        self.last_eval, self.last_eval_best = row, new_best
        self.eval_episodes = episodes or self.eval_episodes
        if new_best or self.best is None or row["mean_reward"] > self.best["mean_reward"]:
            self.best = row
        over = f" over {self.eval_episodes} ep" if self.eval_episodes else ""
        text = (
            f"step {int(row['timesteps']):,}/{self.total:,}  eval {row['mean_reward']:.1f} ± {row['std_reward']:.1f}"
            f"{over}{'  best (best_model.zip)' if new_best else ''}"
        )
        if self.ret is not None:
            text = self._if_room(text, f"  ret({self.ret_n}ep) {self.ret:.1f}")
        self.history(text)

    def on_checkpoint(self, steps: int, path: Path | None = None) -> None:
        """A history line for a checkpoint (``path``: its folder, shown relative to the run directory)."""
        text = f"step {steps:,}/{self.total:,}  checkpoint saved"
        if path is not None:
            text = self._if_room(text, f": checkpoints/{path.name}")
        self.history(text)

    def on_finding(self, headline: str, step: int, advice: list[str]) -> None:
        """A history line for a doctor's finding the first time it fires (see :func:`finding_line`)."""
        self.history(finding_line(headline, step, advice, self.console.width))

    def _if_room(self, text: str, more: str) -> str:
        """``text + more`` when it fits the terminal's width (always when output is no terminal)."""
        return text + more if not self.live or len(text) + len(more) <= self.console.width else text

    def message(self, text: str) -> None:
        """A line printed above the live line (or plainly), unless quiet."""
        self.history(text)

    def history(self, text: str) -> None:
        """One line of history: above the live line on a terminal, plain otherwise; not when quiet.

        On a terminal a line longer than the window wraps between words (the terminal's own wrap
        cuts anywhere: ``99% lowe`` / ``r bound``); without one it stays whole, for logs and grep.
        """
        if not self.quiet:
            self.console.print(text, highlight=False, markup=False, soft_wrap=not self.live)

    # ------------------------------------------------------------------------------------
    # Layout
    # ------------------------------------------------------------------------------------

    def diag_text(self) -> str:
        """``  Q 12.3  td 0.45  |g| 3.2``: greedy Q mean, mean |TD error|, gradient norm (empty until logged)."""
        e = self.extra
        if "diag/q_greedy_mean" not in e:
            return ""
        return (
            f"  Q {e['diag/q_greedy_mean']:.1f}  td {e.get('diag/td_error_abs_mean', 0.0):.3f}"
            f"  |g| {e.get('diag/grad_norm', 0.0):.2f}"
        )

    def progress_fields(self) -> list[Field]:
        pct = 100.0 * self.steps / self.total if self.total else 100.0
        playing = [Field(Text(self.playing, style="bold yellow"))] if self.playing else []
        # While an evaluation plays, training's steps/s stands still: it goes first when columns run out.
        speed_drop = max(_OPTIONAL.values()) + 1 if self.playing else None
        return [
            Field(Text(f"{self.steps:,}/{self.total:,} {pct:3.0f}%", style="bold")),
            *playing,
            Field(Text(f"{_fmt(self.steps_per_second(), ',.0f')} steps/s"), speed_drop),
            Field(Text(f"{fmt_clock(time.perf_counter() - self._t0)} elapsed", style="dim"), _OPTIONAL["elapsed"]),
            Field(Text(f"eta {fmt_clock(self.eta())}", style="cyan")),
        ]

    def figure_fields(self) -> list[Field]:
        e = self.extra
        ep = "-" if self.episodes is None else f"{self.episodes:,}"
        window = f"{self.ret_n or RETURN_WINDOW}ep"
        fields = [Field(Text(f"ep {ep}")), Field(Text(f"ret({window}) {_fmt(self.ret)}", style="green"))]
        if self.last_eval is None:
            fields.append(Field(Text("eval -")))
        else:
            row = self.last_eval
            star = "*" if self.last_eval_best else ""
            fields.append(
                Field(
                    Text(
                        f"eval {row['mean_reward']:.1f}±{row['std_reward']:.1f}{star}@{fmt_steps(row['timesteps'])}",
                        style="magenta",
                    )
                )
            )
            if self.best is not None and self.best is not row:
                best = self.best
                fields.append(
                    Field(Text(f"best {best['mean_reward']:.1f}@{fmt_steps(best['timesteps'])}"), _OPTIONAL["best"])
                )
        if self.noisy:
            fields.append(Field(Text("noisy expl."), _OPTIONAL["eps"]))
        elif self.epsilon is not None:
            fields.append(Field(Text(f"eps {fmt_epsilon(self.epsilon)}"), _OPTIONAL["eps"]))
        if self.loss is not None:
            fields.append(Field(Text(f"loss {self.loss:.4g}"), _OPTIONAL["loss"]))
        if self.threads is not None:
            fields.append(Field(Text(f"thr {self.threads}"), _OPTIONAL["threads"]))
        if "diag/q_greedy_mean" in e:
            fields.append(Field(Text(f"Q {e['diag/q_greedy_mean']:.1f}"), _OPTIONAL["Q"]))
            fields.append(Field(Text(f"td {e.get('diag/td_error_abs_mean', 0.0):.3f}"), _OPTIONAL["td"]))
            fields.append(Field(Text(f"|g| {e.get('diag/grad_norm', 0.0):.2f}"), _OPTIONAL["grad"]))
        return fields

    def lines(self, width: int) -> list[Text]:
        """The live line(s) laid out for ``width`` columns: one line when all fits, else two."""
        progress, figures = self.progress_fields(), self.figure_fields()
        one = _fit(progress + figures, width - ONE_LINE_BAR - len(SEP))
        if one is not None and len(one) == len(progress) + len(figures):
            bar: list[Text | Field] = [self._bar(width - _width(one) - len(SEP))]
            return [_join([*bar, *one])]
        top = _fit(progress, width - BAR_MIN - len(SEP)) or [f for f in progress if f.drop is None]
        bottom = _fit(figures, width) or [f for f in figures if f.drop is None]
        head: list[Text | Field] = [self._bar(width - _width(top) - len(SEP))]
        return [_join([*head, *top]), _join(bottom)]

    def _bar(self, width: int) -> Text:
        width = max(BAR_MIN, min(BAR_MAX, width))
        filled = width * min(1.0, self.steps / self.total) if self.total else width
        full = int(filled)
        bar = Text("━" * full, style="bold magenta")
        if full < width:
            bar.append("╸" if filled - full >= 0.5 else "━", style="bold magenta" if filled - full >= 0.5 else "grey23")
            bar.append("━" * (width - full - 1), style="grey23")
        return bar


def finding_line(headline: str, step: int, advice: list[str], width: int) -> str:
    """``doctor: <headline> at step N — try: <advice>`` in ``width`` columns: the first advice whole
    when it fits, else its ``--set`` part alone (the alias is the run's own), else none (``rlkit doctor
    RUN`` has it all)."""
    head = f"doctor: {headline} at step {step:,}"
    hint = advice[0].split("#", 1)[0].strip() if advice else ""
    tries = [hint] + ([hint[hint.index("--set ") :]] if "--set " in hint else [])
    for text in (f"{head} — try: {t}" for t in tries if t):
        if len(text) <= width:
            return text
    return head


def thread_reason(measurement: dict[str, Any]) -> str:
    """Why the thread tuner chose its count, from one measurement (seconds per env step of each count timed).

    More threads are kept only when at least ``MIN_GAIN`` faster (they take cores from other work),
    so the count chosen may be one that timed a little slower: this says so.
    """
    from rlkit.core.threads import MIN_GAIN

    timed = {int(c): float(s) for c, s in (measurement.get("s_per_step") or {}).items() if s > 0}
    chosen = int(measurement["threads"])
    if chosen not in timed or len(timed) < 2:
        return "the other cores are busy"
    fastest = min(timed, key=lambda c: timed[c])
    if fastest != chosen:
        return (
            f"{fastest} only {_percent(timed[chosen] / timed[fastest] - 1.0)} faster; more threads need {MIN_GAIN:.0%}"
        )
    others = [c for c in timed if c != chosen]
    if chosen > min(timed):
        fewer = max(c for c in others if c < chosen)
        return f"{_percent(timed[fewer] / timed[chosen] - 1.0)} faster than {fewer}"
    runner_up = min(others, key=lambda c: timed[c])
    return f"{runner_up} timed {_percent(1.0 - timed[chosen] / timed[runner_up])} slower"


def _percent(fraction: float) -> str:
    """``1.1%`` below 10%, ``25%`` above."""
    return f"{fraction:.1%}" if abs(fraction) < 0.0995 else f"{fraction:.0%}"


def thread_timings(measurement: dict[str, Any]) -> str:
    """``  (1: 1,724, 2: 1,743 steps/s)``: the speed each count timed ('' when none was timed)."""
    timed = sorted((int(c), float(s)) for c, s in (measurement.get("s_per_step") or {}).items() if s > 0)
    if len(timed) < 2:
        return ""
    return "  (" + ", ".join(f"{c}: {1 / s:,.0f}" for c, s in timed) + " steps/s)"


def _width(fields: list[Field]) -> int:
    return sum(f.text.cell_len for f in fields) + len(SEP) * max(0, len(fields) - 1)


def _fit(fields: list[Field], width: int) -> list[Field] | None:
    """``fields`` less the optional ones that do not fit, highest ``drop`` first; None if even the rest does not."""
    kept = list(fields)
    while _width(kept) > width:
        optional = [f for f in kept if f.drop is not None]
        if not optional:
            return None
        kept.remove(max(optional, key=lambda f: f.drop or 0))
    return kept


def _join(parts: list[Text | Field] | list[Field]) -> Text:
    line = Text(no_wrap=True, overflow="ellipsis")
    for i, part in enumerate(parts):
        if i:
            line.append(SEP)
        line.append_text(part.text if isinstance(part, Field) else part)
    return line


def current_epsilon(model: Any) -> float | None:
    """The exploration rate at the model's current step.

    SB3 updates ``exploration_rate`` in the model's ``_on_step``, after the callbacks of that
    step ran (and it is 0.0 before the first one): a callback reading it sees a stale value.
    The schedule evaluated at the step counter is the value the next action uses.
    """
    schedule = getattr(model, "exploration_schedule", None)
    total = getattr(model, "_total_timesteps", 0)
    if callable(schedule) and total:
        remaining = 1.0 - float(model.num_timesteps) / float(total)
        return float(schedule(max(0.0, remaining)))
    rate = getattr(model, "exploration_rate", None)
    return None if rate is None else float(rate)

"""Learning curves of one or many runs (matplotlib, headless Agg backend).

Two panels: the periodic evaluation return (``evaluations.csv``, with the spread over the
evaluation episodes as error bars) and the training episode return (the SB3 Monitor CSVs in
``monitor/``, a trailing moving average whose window the panel states), against environment
steps or wall-clock time. Runs whose configs differ only by seed form one group: its seeds
are interpolated on a common grid over the range every seed covers and averaged. With fewer
than 5 seeds each seed is drawn thin beside the mean and no band (an interval from 2-4 seeds
says little); from 5 seeds a 95% percentile bootstrap band over seeds is drawn (seeds
resampled with replacement, as rliable does). Different configs get their own colours.

A seed that stopped once solved (``stop_on_solved``) counts as solved past its end: the
evaluation mean holds it at its last evaluation (:func:`carried_forward`), and a right-hand axis
counts the seeds solved. The legend below each panel names every line and band drawn; far-low
outliers (a very low first evaluation) are clipped off the y axis, with a note saying so.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from rlkit.config.schema import flatten
from rlkit.core import atomic
from rlkit.core.errors import RlkitError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

XAxis = Literal["steps", "time"]
Array = np.ndarray[Any, np.dtype[np.float64]]

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
GRID_POINTS = 200
BAND_MIN_SEEDS = 5
"""From this many seeds a group gets a bootstrap band; below it, every seed is drawn."""
BOOTSTRAP_SAMPLES = 2000


@dataclass
class Curve:
    """One series of one run: x as steps and as seconds, y, and y's spread (evaluation std)."""

    steps: Array
    seconds: Array
    values: Array
    spread: Array | None = None

    def x(self, axis: XAxis) -> Array:
        return self.steps if axis == "steps" else self.seconds


@dataclass
class Aggregate:
    """Several seeds' curves on one x grid: the mean, each seed, and a band when there is one."""

    xs: Array
    mean: Array
    seeds: Array
    """One row per seed, interpolated on ``xs``."""
    band: tuple[Array, Array] | None
    """95% bootstrap interval of the mean over seeds (from ``BAND_MIN_SEEDS`` seeds), else None."""
    interpolated: bool
    """Whether ``xs`` is a grid rather than the seeds' own (identical) x values."""
    spread: Array | None = None
    """Mean over seeds of the per-point spread (evaluation std), when every curve has one."""


@dataclass
class RunCurves:
    """Everything plotted for one run."""

    path: Path
    alias: str
    seed: int
    env_id: str
    config: dict[str, Any]
    """The resolved preset as plain data (the grouping key, seed excluded)."""
    solved_score: float | None
    evaluation: Curve | None
    training: Curve | None
    window: int = 1
    """The training curve's moving-average window, in episodes."""
    eval_episodes: int = 0
    solved_at: dict[str, float] | None = None
    """When the run was solved (``state.json``'s ``solved_at``: ``timesteps``, ``wall_s``), if it was."""
    stopped_solved: bool = False
    """Whether training stopped there (``stop_on_solved``): past its end the run counts as solved."""


@dataclass
class Group:
    """Runs of one configuration (different seeds)."""

    label: str
    runs: list[RunCurves] = field(default_factory=list)


# ----------------------------------------------------------------------------------------
# Reading a run
# ----------------------------------------------------------------------------------------


def read_monitor_csv(path: Path) -> tuple[Array, Array, Array]:
    """Returns, lengths and times of an SB3 Monitor CSV (``#{json}`` line, ``r,l,t`` header).

    A resumed run appends to the same file with times restarting near zero; times are made
    cumulative so they keep increasing. Torn or foreign lines are skipped.
    """
    returns: list[float] = []
    lengths: list[float] = []
    times: list[float] = []
    offset = 0.0
    last = 0.0
    for line in path.read_text().splitlines():
        if not line or line.startswith("#") or line.startswith("r,"):
            continue
        parts = line.split(",")
        try:
            r, n, t = float(parts[0]), float(parts[1]), float(parts[2])
        except (ValueError, IndexError):
            continue
        if t + offset < last:
            offset = last
        last = t + offset
        returns.append(r)
        lengths.append(n)
        times.append(last)
    return np.asarray(returns, float), np.asarray(lengths, float), np.asarray(times, float)


def smooth(values: Array, window: int) -> Array:
    """Trailing moving average (shorter at the start), same length as ``values``."""
    if window <= 1 or len(values) == 0:
        return values
    cumsum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(0, idx - window)
    return np.asarray((cumsum[idx] - cumsum[start]) / (idx - start), float)


def auto_window(n_episodes: int) -> int:
    """About a tenth of the episodes, between 1 and 100."""
    return max(1, min(100, n_episodes // 10))


def training_curve(monitor_dir: Path, window: int = 0, frames_per_step: int = 1) -> tuple[Curve | None, int]:
    """Smoothed training episode return and the window used; episodes of all envs merged in time order.

    Atari Monitors count emulator frames, not env steps: ``frames_per_step`` (the frame skip)
    turns their episode lengths into env steps, so both panels share one x axis.
    """
    files = sorted(monitor_dir.glob("*.monitor.csv")) if monitor_dir.is_dir() else []
    parts = [read_monitor_csv(path) for path in files]
    returns = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    if len(returns) == 0:
        return None, max(1, window)
    lengths = np.concatenate([p[1] for p in parts])
    times = np.concatenate([p[2] for p in parts])
    order = np.argsort(times, kind="stable")
    returns, lengths, times = returns[order], lengths[order], times[order]
    used = window or auto_window(len(returns))
    return Curve(np.cumsum(lengths) / max(1, frames_per_step), times, smooth(returns, used)), used


def evaluation_curve(rows: list[dict[str, float]]) -> Curve | None:
    """Mean evaluation return per evaluation, from ``evaluations.csv`` rows."""
    if not rows:
        return None
    return Curve(
        np.asarray([r["timesteps"] for r in rows], float),
        np.asarray([r["wall_s"] for r in rows], float),
        np.asarray([r["mean_reward"] for r in rows], float),
        np.asarray([r.get("std_reward", 0.0) for r in rows], float),
    )


def load_run(path: Path, window: int = 0) -> RunCurves:
    """Curves and identity of one run directory."""
    from rlkit.config.schema import to_plain
    from rlkit.training.rundir import RunDir

    run = RunDir.open(path)
    alias, seed, preset = run.read_config()
    try:
        rows = run.read_evaluations()
    except (ValueError, KeyError, OSError) as exc:
        raise RlkitError(f"{run.evaluations}: unreadable evaluation history ({exc})") from None
    frames = preset.atari.frame_skip if preset.atari is not None else 1
    training, used = training_curve(run.monitor, window, frames)
    state = run.read_state() if run.state_file.exists() else {}
    found = state.get("solved_at")
    solved_at = (
        {k: float(found[k]) for k in ("timesteps", "wall_s")}
        if isinstance(found, dict) and all(isinstance(found.get(k), (int, float)) for k in ("timesteps", "wall_s"))
        else None
    )
    stopped = solved_at is not None and preset.stop_on_solved and state.get("status") == "finished"
    return RunCurves(
        path=path,
        alias=alias,
        seed=seed,
        env_id=preset.env_id,
        config=to_plain(preset),
        solved_score=preset.solved_score,
        evaluation=evaluation_curve(rows),
        training=training,
        window=used,
        eval_episodes=preset.eval_episodes,
        solved_at=solved_at,
        stopped_solved=bool(stopped),
    )


# ----------------------------------------------------------------------------------------
# Grouping and aggregation
# ----------------------------------------------------------------------------------------


def group_runs(runs: list[RunCurves]) -> list[Group]:
    """Runs with the same alias and resolved config (seed aside) share a group, in first-seen order."""
    groups: dict[str, Group] = {}
    for run in runs:
        key = json.dumps([run.alias, run.config], sort_keys=True, default=str)
        groups.setdefault(key, Group(label=run.alias)).runs.append(run)
    by_alias: dict[str, list[Group]] = {}
    for group in groups.values():
        by_alias.setdefault(group.label, []).append(group)
    for same in by_alias.values():
        if len(same) > 1:
            flats = [flatten(g.runs[0].config) for g in same]
            keys = sorted({k for f in flats for k in f if len({json.dumps(x.get(k), default=str) for x in flats}) > 1})
            for group, flat in zip(same, flats, strict=True):
                shown = ", ".join(f"{k}={flat.get(k)}" for k in keys[:3])
                group.label = f"{group.label} ({shown}{', ...' if len(keys) > 3 else ''})"
    for group in groups.values():
        n = len(group.runs)
        group.label += f", seed {group.runs[0].seed}" if n == 1 else f", {n} seeds"
    return list(groups.values())


def bootstrap_band(ys: Array, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0) -> tuple[Array, Array]:
    """95% percentile bootstrap interval of the mean over seeds (rows of ``ys``), point by point.

    Whole seeds are resampled with replacement (a seed's curve stays together), as rliable does.
    """
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(ys), size=(samples, len(ys)))
    means = ys[picks].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return np.asarray(low, float), np.asarray(high, float)


def common_range(curves: list[Curve], axis: XAxis) -> tuple[float, float]:
    """The x range every curve covers: from the latest first point to the earliest last point."""
    return max(float(c.x(axis)[0]) for c in curves), min(float(c.x(axis)[-1]) for c in curves)


def aggregate(curves: list[Curve], axis: XAxis, grid_points: int = GRID_POINTS) -> Aggregate:
    """Seeds' curves on one x grid: their mean, each seed, and a bootstrap band from 5 seeds.

    When every curve has the very same x values (the evaluation steps of same-config runs)
    those are used as they are; otherwise all curves are interpolated on an even grid over the
    range every one of them covers (never extrapolated). One curve is returned as it is.
    """
    first = curves[0].x(axis)
    same_x = all(len(c.x(axis)) == len(first) and np.array_equal(c.x(axis), first) for c in curves)
    if same_x:
        xs = np.asarray(first, float)
        ys = np.stack([c.values for c in curves])
    else:
        lo, hi = common_range(curves, axis)
        xs = np.linspace(lo, hi, grid_points) if hi > lo else np.asarray([hi], float)
        ys = np.stack([np.interp(xs, c.x(axis), c.values) for c in curves])
    spread = None
    if all(c.spread is not None for c in curves):
        spreads = [c.spread for c in curves if c.spread is not None]
        spread = np.mean(
            [s if same_x else np.interp(xs, c.x(axis), s) for c, s in zip(curves, spreads, strict=True)], axis=0
        )
    band = bootstrap_band(ys) if len(curves) >= BAND_MIN_SEEDS else None
    return Aggregate(xs, ys.mean(axis=0), ys, band, interpolated=not same_x, spread=spread)


# ----------------------------------------------------------------------------------------
# Drawing and writing
# ----------------------------------------------------------------------------------------


def _time_scale(groups: list[Group]) -> tuple[float, str]:
    longest = 0.0
    for group in groups:
        for run in group.runs:
            for curve in (run.evaluation, run.training):
                if curve is not None and len(curve.seconds):
                    longest = max(longest, float(curve.seconds[-1]))
    return (3600.0, "wall-clock time (hours)") if longest > 2 * 3600 else (60.0, "wall-clock time (minutes)")


def _span(values: set[int], unit: str) -> str:
    low, high = min(values), max(values)
    if low == high:
        return f"{low} {unit.removesuffix('s') if low == 1 else unit}"
    return f"{low}-{high} {unit}"


def figure_title(groups: list[Group]) -> str:
    """``CartPole-v1 · preset cartpole`` (every env and preset plotted)."""
    envs = sorted({r.env_id for g in groups for r in g.runs})
    aliases = sorted({r.alias for g in groups for r in g.runs})
    return f"{', '.join(envs)} · preset{'s' if len(aliases) > 1 else ''} {', '.join(aliases)}"


def uneven(curves: list[Curve], axis: XAxis) -> bool:
    """Whether the seeds' runs end at clearly different points (more than 5% apart)."""
    ends = [float(c.x(axis)[-1]) for c in curves if len(c.values)]
    return len(ends) > 1 and min(ends) < 0.95 * max(ends)


STYLE = "#555555"
"""The colour of legend entries that name a kind of line or band (drawn in each group's colour)."""


class LegendEntries:
    """Everything a panel drew, once each, for its legend: label -> a handle that looks like it.

    Shown in the order of ``RANKS`` (the means first), then as added.
    """

    RANKS = ("mean", "std", "band", "seeds", "end", "held", "solved score", "seeds solved", "clipped")

    def __init__(self) -> None:
        self._entries: dict[str, tuple[int, int, Any]] = {}

    def add(self, label: str, handle: Any, kind: str = "mean") -> None:
        if label not in self._entries:
            self._entries[label] = (self.RANKS.index(kind), len(self._entries), handle)

    def line(self, label: str, kind: str, **style: Any) -> None:
        from matplotlib.lines import Line2D

        self.add(label, Line2D([], [], color=STYLE, **style), kind)

    @property
    def handles(self) -> dict[str, Any]:
        ordered = sorted(self._entries.items(), key=lambda item: item[1][:2])
        return {label: entry[2] for label, entry in ordered}


def carried_forward(curve: Curve, axis: XAxis, xs: Array) -> Curve:
    """``curve`` with its last value (and spread) repeated at those of ``xs`` past its end.

    A run that stopped once solved (``stop_on_solved``) is solved from then on: in a group's mean
    it counts with the last evaluation it made, not as missing (which would cut the mean short).
    """
    after = np.asarray(xs[xs > curve.x(axis)[-1]], float)
    if not len(after):
        return curve
    n = len(after)
    other = curve.seconds if axis == "steps" else curve.steps
    moved = np.concatenate([curve.x(axis), after])
    held = np.concatenate([other, np.full(n, other[-1])])
    values = np.concatenate([curve.values, np.full(n, curve.values[-1])])
    spread = None if curve.spread is None else np.concatenate([curve.spread, np.full(n, curve.spread[-1])])
    steps, seconds = (moved, held) if axis == "steps" else (held, moved)
    return Curve(steps, seconds, values, spread)


def _draw_group(
    ax: Any, group: Group, which: str, axis: XAxis, divide: float, color: str, legend: LegendEntries
) -> Aggregate | None:
    runs = [r for r in group.runs if getattr(r, which) is not None]
    curves: list[Curve] = [getattr(r, which) for r in runs]
    if not curves:
        return None
    n = len(curves)
    every_x = np.unique(np.concatenate([c.x(axis) for c in curves]))
    carry = (
        which == "evaluation"
        and n > 1
        and any(r.stopped_solved and c.x(axis)[-1] < every_x[-1] for r, c in zip(runs, curves, strict=True))
    )
    if carry:
        curves_in_mean = [
            carried_forward(c, axis, every_x) if r.stopped_solved else c for r, c in zip(runs, curves, strict=True)
        ]
    else:
        curves_in_mean = curves
    agg = aggregate(curves_in_mean, axis)
    xs = agg.xs / divide
    # Markers only on real evaluations, never on interpolated points or a time axis.
    marker = "o" if which == "evaluation" and axis == "steps" and not agg.interpolated else None
    if len(xs) == 1:  # the seeds share a single x (no common range): a line would be invisible
        marker = "o"
    ragged = n > 1 and uneven(curves, axis)
    if 1 < n < BAND_MIN_SEEDS or ragged:
        _draw_seeds(
            ax, runs, curves, axis, divide, color, legend, ragged=ragged, until=float(xs[-1]) if carry else None
        )
    if agg.band is not None:
        ax.fill_between(xs, agg.band[0], agg.band[1], color=color, alpha=0.2, linewidth=0)
        legend.add("95% bootstrap interval of the mean (band)", _patch(alpha=0.3), "band")
    label = group.label
    if n > 1:
        label += ": mean" + (
            ", stopped seeds held at their last evaluation" if carry else " where every seed has data" if ragged else ""
        )
    (line,) = ax.plot(xs, agg.mean, color=color, label=label, marker=marker, ms=3, linewidth=1.8 if n > 1 else 1.5)
    legend.add(label, line)
    if which == "evaluation" and agg.spread is not None:
        what = "± std over the evaluation episodes" + (", mean over seeds" if n > 1 else "")
        if marker is None:
            for sign in (-1.0, 1.0):
                ax.plot(xs, agg.mean + sign * agg.spread, color=color, linewidth=0.8, linestyle=":", alpha=0.8)
            legend.line(f"{what} (dotted)", "std", linewidth=0.8, linestyle=":")
        else:
            ax.errorbar(xs, agg.mean, yerr=agg.spread, fmt="none", ecolor=color, elinewidth=0.8, capsize=2, alpha=0.7)
            legend.line(f"{what} (error bars)", "std", marker="|", ms=8, linestyle="none")
    return agg


def _patch(alpha: float) -> Any:
    from matplotlib.patches import Patch

    return Patch(facecolor=STYLE, alpha=alpha, linewidth=0)


def _draw_seeds(
    ax: Any,
    runs: list[RunCurves],
    curves: list[Curve],
    axis: XAxis,
    divide: float,
    color: str,
    legend: LegendEntries,
    *,
    ragged: bool,
    until: float | None,
) -> None:
    """Each seed thin, over its whole run: below ``BAND_MIN_SEEDS`` always; above, when seeds end at
    different points (runs stopped once solved), which a mean over the common range would hide.

    On the steps axis a dot marks where such a run ended; a run that stopped solved goes on dashed at
    its last evaluation ``until`` the group's end (as it counts in the mean).
    """
    for run, curve in zip(runs, curves, strict=True):
        xs_seed = curve.x(axis) / divide
        ax.plot(xs_seed, curve.values, color=color, linewidth=0.8, alpha=0.35)
        if ragged and axis == "steps":
            ax.plot(xs_seed[-1:], curve.values[-1:], color=color, marker="o", ms=3, alpha=0.6, linestyle="none")
        if until is not None and run.stopped_solved and xs_seed[-1] < until:
            last = float(curve.values[-1])
            ax.plot([xs_seed[-1], until], [last, last], color=color, linewidth=0.8, alpha=0.5, linestyle="--")
            legend.line(
                "after a seed stopped solved: its last evaluation (dashed)", "held", linewidth=0.8, linestyle="--"
            )
    legend.line("single seeds (thin)", "seeds", linewidth=0.8, alpha=0.5)
    if ragged and axis == "steps":
        legend.line("end of a seed's run (dot)", "end", marker="o", ms=3, linestyle="none")


def _seeds_solved(
    ax: Any, groups: list[Group], colors: list[str], axis: XAxis, divide: float, legend: LegendEntries
) -> None:
    """How many seeds of each group are solved (confirmed, ``solved_at``) by each x, on a right-hand axis."""
    from matplotlib.ticker import MaxNLocator

    shown = [
        (g, c)
        for g, c in zip(groups, colors, strict=True)
        if len(g.runs) > 1 and g.runs[0].solved_score is not None and any(r.evaluation is not None for r in g.runs)
    ]
    if not shown:
        return
    right = ax.twinx()
    key = "timesteps" if axis == "steps" else "wall_s"
    most = 0
    for group, color in shown:
        times = sorted(r.solved_at[key] / divide for r in group.runs if r.solved_at is not None)
        end = max(float(r.evaluation.x(axis)[-1]) / divide for r in group.runs if r.evaluation is not None)
        xs = [0.0, *times, max([end, *times])]
        counts = [0, *range(1, len(times) + 1), len(times)]
        (line,) = right.step(xs, counts, where="post", color=color, linewidth=1.2, alpha=0.75, linestyle="-.")
        legend.add(f"seeds solved: {len(times)} of {len(group.runs)} (dash-dot, right axis)", line, "seeds solved")
        most = max(most, len(group.runs))
    right.set_ylim(0, most * 1.08)
    right.yaxis.set_major_locator(MaxNLocator(integer=True))
    right.set_ylabel("seeds solved (confirmed)")


def robust_bottom(values: Array) -> float | None:
    """A lower y limit that leaves out far outliers (below Q1 - 3 IQR, e.g. one very low first
    evaluation that would flatten the curve), or ``None`` when nothing is that far out."""
    finite = values[np.isfinite(values)]
    if len(finite) < 5:
        return None
    q1, q3 = np.percentile(finite, [25, 75])
    fence = q1 - 3.0 * max(q3 - q1, 1e-9)
    inside = finite[finite >= fence]
    if len(inside) == len(finite) or not len(inside):
        return None
    return float(inside.min())


def _clip_outliers(ax: Any, xs: Array, values: Array, legend: LegendEntries) -> None:
    """Clip the y axis above far-low outliers: a red mark at the bottom edge where each one is, and
    a legend entry saying how many and how low."""
    bottom = robust_bottom(values)
    if bottom is None:
        return
    top = float(np.nanmax(values))
    limit = bottom - 0.15 * max(top - bottom, 1e-9)
    below = values < limit
    if not below.any():
        return
    ax.set_ylim(limit, ax.get_ylim()[1])
    (marks,) = ax.plot(
        xs[below], np.full(int(below.sum()), limit), marker="v", ms=7, color="#b3261e", linestyle="none", clip_on=False
    )
    count = int(below.sum())
    legend.add(
        f"below the clipped y axis: {count} point{'s' if count > 1 else ''}, down to {float(values[below].min()):,.0f}",
        marks,
        "clipped",
    )


def build_figure(groups: list[Group], axis: XAxis = "steps") -> Figure:
    """The two-panel learning-curve figure, titled with the env(s) and preset(s)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    fig = Figure(figsize=(12, 7.2), layout="constrained")
    panels = fig.subplots(1, 2)
    scale, time_label = _time_scale(groups)
    divide = scale if axis == "time" else 1.0
    colors = [f"C{i % 10}" for i in range(len(groups))]
    runs = [r for g in groups for r in g.runs]
    eval_eps = {r.eval_episodes for r in runs if r.evaluation is not None and r.eval_episodes > 0}
    windows = {r.window for r in runs if r.training is not None}
    titles = {
        "evaluation": "Evaluation return (greedy"
        + (f", {_span(eval_eps, 'episodes')}" if eval_eps else "")
        + "; ± std over episodes)",
        "training": "Training episode return"
        + (f" (moving average of {_span(windows, 'episodes')})" if windows else ""),
    }
    interpolated = False
    for ax, which in zip(panels, ("evaluation", "training"), strict=True):
        legend = LegendEntries()
        drawn: list[Aggregate] = []
        for group, color in zip(groups, colors, strict=True):
            agg = _draw_group(ax, group, which, axis, divide, color, legend)
            if agg is not None:
                drawn.append(agg)
                interpolated = interpolated or (agg.interpolated and len(agg.seeds) > 1)
        if drawn:  # (each mean lies within its seeds)
            every_x = np.concatenate([np.tile(a.xs / divide, len(a.seeds)) for a in drawn])
            _clip_outliers(ax, every_x, np.concatenate([a.seeds.ravel() for a in drawn]), legend)
        solved = {r.solved_score for r in runs}
        if drawn and len(solved) == 1 and None not in solved:
            _solved_line(ax, float(solved.pop() or 0.0), legend)
        if drawn and which == "evaluation":
            _seeds_solved(ax, groups, colors, axis, divide, legend)
        if not drawn:
            ax.text(0.5, 0.5, f"no {which} data yet", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(titles[which], fontsize="medium")
        ax.set_xlabel("environment steps" if axis == "steps" else time_label)
        if axis == "steps" and drawn:
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
        if drawn:
            # Below the panel: every line and band it names stays visible.
            ax.legend(
                list(legend.handles.values()),
                list(legend.handles),
                fontsize="x-small",
                loc="upper center",
                bbox_to_anchor=(0.5, -0.13),
                frameon=False,
            )
    notes = []
    if interpolated:
        notes.append("seeds interpolated on the x range all of them cover")
    if any(r.config.get("atari") for r in runs if r.training is not None):
        notes.append("Atari training episodes: steps counted as emulator frames / frame skip (reset no-ops included)")
    fig.suptitle(figure_title(groups), fontsize="large", fontweight="bold")
    if notes:
        fig.supxlabel("; ".join(notes), fontsize="small", color="#555555")
    return fig


def _solved_line(ax: Any, score: float, legend: LegendEntries | None = None) -> None:
    """The solved score as a dashed line, or, when it lies far outside the data, a note at that edge.

    A line far away would squeeze the curves into a sliver (Breakout's 400 over returns of 1-20).
    """
    low, high = ax.get_ylim()
    span = max(high - low, 1e-9)
    if low - span <= score <= high + span:
        label = f"solved score ({score:g})"
        line = ax.axhline(score, color="grey", linestyle="--", linewidth=1, label=label)
        if legend is not None:
            legend.add(label, line, "solved score")
        return
    above = score > high
    ax.text(
        0.99,
        0.98 if above else 0.02,
        f"solved score {score:g} ({'above' if above else 'below'} the chart)",
        ha="right",
        va="top" if above else "bottom",
        transform=ax.transAxes,
        fontsize="small",
        color="grey",
    )


def load_groups(paths: list[Path], window: int = 0) -> list[Group]:
    """Read and group runs; a run with nothing to plot yet is a one-line error."""
    if not paths:
        raise RlkitError("give at least one run directory")
    runs = [load_run(path, window) for path in paths]
    for run in runs:
        if run.evaluation is None and run.training is None:
            raise RlkitError(
                f"nothing to plot for {run.path}: no evaluations.csv rows and no finished training episode"
            )
    return group_runs(runs)


def check_output(path: Path, force: bool) -> None:
    """A writable new image path (see :func:`rlkit.core.atomic.check_new_output`)."""
    atomic.check_new_output(path, force, PLOT_SUFFIXES, "image", "--out")


def figure_bytes(fig: Figure, fmt: str = "png") -> bytes:
    """The figure encoded in memory (for embedding in a report)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format=fmt, dpi=110)
    return buffer.getvalue()


def plot_runs(paths: list[Path], out: Path, *, axis: XAxis = "steps", window: int = 0, force: bool = False) -> Path:
    """Write the learning curves of ``paths`` to ``out`` atomically; returns ``out``."""
    check_output(out, force)
    data = figure_bytes(build_figure(load_groups(paths, window), axis), out.suffix.lower().lstrip("."))

    def write(tmp: Path) -> None:
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)

    atomic.write_with(out, write)
    return out

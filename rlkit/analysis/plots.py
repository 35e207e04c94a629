"""Learning curves of one or many runs (matplotlib, headless Agg backend).

Two panels: the periodic evaluation return (``evaluations.csv``) and the smoothed training
episode return (the SB3 Monitor CSVs in ``monitor/``), against environment steps or
wall-clock time. Runs whose configs differ only by seed form one group, drawn as the mean
with a 95% confidence band (Student t over seeds); different configs get their own lines.
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

# Two-sided 95% Student t quantiles by degrees of freedom (1..30); 1.96 beyond.
_T95 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131]
_T95 += [2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042]


@dataclass
class Curve:
    """One series of one run: x as steps and as seconds, and y."""

    steps: Array
    seconds: Array
    values: Array

    def x(self, axis: XAxis) -> Array:
        return self.steps if axis == "steps" else self.seconds


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


def training_curve(monitor_dir: Path, window: int = 0) -> Curve | None:
    """Smoothed training episode return; episodes of all envs merged in time order."""
    files = sorted(monitor_dir.glob("*.monitor.csv")) if monitor_dir.is_dir() else []
    parts = [read_monitor_csv(path) for path in files]
    returns = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    if len(returns) == 0:
        return None
    lengths = np.concatenate([p[1] for p in parts])
    times = np.concatenate([p[2] for p in parts])
    order = np.argsort(times, kind="stable")
    returns, lengths, times = returns[order], lengths[order], times[order]
    return Curve(np.cumsum(lengths), times, smooth(returns, window or auto_window(len(returns))))


def evaluation_curve(rows: list[dict[str, float]]) -> Curve | None:
    """Mean evaluation return per evaluation, from ``evaluations.csv`` rows."""
    if not rows:
        return None
    return Curve(
        np.asarray([r["timesteps"] for r in rows], float),
        np.asarray([r["wall_s"] for r in rows], float),
        np.asarray([r["mean_reward"] for r in rows], float),
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
    return RunCurves(
        path=path,
        alias=alias,
        seed=seed,
        env_id=preset.env_id,
        config=to_plain(preset),
        solved_score=preset.solved_score,
        evaluation=evaluation_curve(rows),
        training=training_curve(run.monitor, window),
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


def t95(n: int) -> float:
    """Two-sided 95% Student t quantile for ``n`` samples."""
    return _T95[n - 2] if 2 <= n <= len(_T95) + 1 else 1.96


def aggregate(curves: list[Curve], axis: XAxis, grid_points: int = GRID_POINTS) -> tuple[Array, Array, Array]:
    """x, mean and 95% CI half-width of several curves, interpolated over their common x range.

    One curve is returned as it is (half-width zero). Where all curves share x values (the
    evaluation steps of same-config runs) those exact points are used.
    """
    if len(curves) == 1:
        c = curves[0]
        return c.x(axis), c.values, np.zeros_like(c.values)
    lo = max(float(c.x(axis)[0]) for c in curves)
    hi = min(float(c.x(axis)[-1]) for c in curves)
    shared = set(curves[0].x(axis).tolist())
    for c in curves[1:]:
        shared &= set(c.x(axis).tolist())
    xs = np.asarray(sorted(shared), float) if len(shared) >= 2 else np.linspace(lo, hi, grid_points)
    if hi <= lo:
        xs = np.asarray([hi], float)
    ys = np.stack([np.interp(xs, c.x(axis), c.values) for c in curves])
    n = len(curves)
    mean = ys.mean(axis=0)
    half = t95(n) * ys.std(axis=0, ddof=1) / np.sqrt(n)
    return xs, mean, half


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


def build_figure(groups: list[Group], axis: XAxis = "steps") -> Figure:
    """The two-panel learning-curve figure."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    fig = Figure(figsize=(12, 4.6), layout="constrained")
    panels = fig.subplots(1, 2)
    scale, time_label = _time_scale(groups)
    colors = [f"C{i % 10}" for i in range(len(groups))]
    titles = ("Evaluation return (greedy policy)", "Training episode return (smoothed)")
    for ax, title, which in zip(panels, titles, ("evaluation", "training"), strict=True):
        drawn = False
        for group, color in zip(groups, colors, strict=True):
            curves = [getattr(r, which) for r in group.runs if getattr(r, which) is not None]
            if not curves:
                continue
            xs, mean, half = aggregate(curves, axis)
            if axis == "time":
                xs = xs / scale
            ax.plot(xs, mean, color=color, label=group.label, marker="o" if which == "evaluation" else None, ms=3)
            if len(curves) > 1:
                ax.fill_between(xs, mean - half, mean + half, color=color, alpha=0.2, linewidth=0)
            drawn = True
        solved = {r.solved_score for g in groups for r in g.runs}
        if len(solved) == 1 and None not in solved:
            ax.axhline(float(solved.pop() or 0.0), color="grey", linestyle="--", linewidth=1, label="solved score")
        if not drawn:
            ax.text(0.5, 0.5, f"no {which} data yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_xlabel("environment steps" if axis == "steps" else time_label)
        if axis == "steps":
            ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_ylabel("episode return")
        ax.grid(alpha=0.3)
        if drawn:
            ax.legend(fontsize="small", loc="best")
    if any(len(g.runs) > 1 for g in groups):
        fig.suptitle("mean over seeds, band: 95% confidence interval", fontsize="small")
    return fig


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

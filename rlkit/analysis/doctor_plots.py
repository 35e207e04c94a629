"""The plot that shows each finding of the run doctor (matplotlib, headless Agg backend).

One small figure per finding, drawn from the same evidence the rule read, with the rule's own
thresholds and the steps where the finding shows shaded: Q at the start states against the returns
obtained, |Q| against the returns, the dormant share, the evaluations around the epsilon floor, the
training against the evaluation returns, the evaluations' best and fall. A finding about settings
alone (``replay_and_targets``) has no plot.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from rlkit.training import findings as rules
from rlkit.training.findings import Evidence, Finding

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SPAN = "#f4b400"
"""The colour of the steps where a finding shows."""


def finding_figure(finding: Finding, evidence: Evidence) -> Figure | None:
    """The figure that shows ``finding``, or None when nothing recorded shows it (a setting)."""
    draw = DRAW.get(finding.code)
    if draw is None:
        return None
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import EngFormatter

    fig = Figure(figsize=(6.4, 3.4), layout="constrained")
    ax = fig.subplots()
    if not draw(ax, evidence, finding):
        return None
    first, last = finding.steps
    ax.axvspan(first, max(last, first + 1), color=SPAN, alpha=0.18, label="where it shows", zorder=0)
    ax.set_title(finding.title, fontsize="medium")
    ax.set_xlabel("environment steps")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="x-small", loc="best")
    return fig


def _evaluations(ax: Axes, evidence: Evidence, label: str = "evaluation (greedy)") -> bool:
    rows = evidence.evaluations
    if not rows:
        return False
    steps = [r["timesteps"] for r in rows]
    ax.plot(steps, [r["mean_reward"] for r in rows], "o-", color="C0", markersize=3, label=label)
    if evidence.preset.solved_score is not None:
        ax.axhline(evidence.preset.solved_score, color="grey", linestyle="--", linewidth=1, label="solved score")
    ax.set_ylabel("episode return")
    return True


def _q_overestimation(ax: Axes, evidence: Evidence, finding: Finding) -> bool:
    rows = [r for r in evidence.evaluations if np.isfinite(r.get("q_start", np.nan))]
    if not rows:
        return False
    steps = np.asarray([r["timesteps"] for r in rows])
    got = np.asarray([r["return_discounted"] for r in rows])
    std = np.asarray([r.get("return_discounted_std", 0.0) for r in rows])
    ax.plot(steps, [r["q_start"] for r in rows], "o-", color="C3", markersize=3, label="max Q at the start states")
    ax.plot(steps, got, "o-", color="C0", markersize=3, label="discounted return obtained")
    ax.fill_between(steps, got - std, got + std, color="C0", alpha=0.15, label="± std over episodes")
    limit = got + rules.OVERESTIMATE * np.maximum(np.abs(got), 1.0)
    ax.plot(steps, limit, ":", color="grey", linewidth=1, label=f"return + {rules.OVERESTIMATE:g} x |return|")
    ax.set_ylabel(f"value (gamma {evidence.preset.gamma:g})")
    return True


def _divergence(ax: Axes, evidence: Evidence, finding: Finding) -> bool:
    q = evidence.diag.get("q_greedy_max")
    if q is None or not len(q):
        return False
    q_min = evidence.diag.get("q_greedy_min")
    values = np.abs(q.values)
    if q_min is not None and len(q_min) == len(q):
        values = np.maximum(values, np.abs(q_min.values))
    ax.plot(q.steps, values, color="C3", label="largest |Q| of the batch")
    scale = float(finding.figures.get("largest_episode_return", 1.0))
    ax.axhline(scale, color="C0", linewidth=1, label="largest |episode return|")
    ax.axhline(rules.Q_SCALE * scale, color="grey", linestyle="--", linewidth=1, label=f"{rules.Q_SCALE:g} x that")
    ax.set_yscale("log")
    ax.set_ylabel("|Q|")
    return True


def _dormant(ax: Axes, evidence: Evidence, finding: Finding) -> bool:
    series = evidence.diag.get("dormant_fraction")
    if series is None or not len(series):
        return False
    ax.plot(series.steps, series.values, color="C3", label="dormant share of hidden units")
    ax.axhline(rules.DORMANT_LEVEL, color="grey", linestyle=":", linewidth=1, label="rising to this is a finding")
    ax.axhline(rules.DORMANT_DEAD, color="grey", linestyle="--", linewidth=1, label="a finding at any trend")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share")
    return True


def _exploration(ax: Axes, evidence: Evidence, finding: Finding) -> bool:
    drawn = _evaluations(ax, evidence)
    p = evidence.preset
    ax.axvline(p.exploration_fraction * p.n_timesteps, color="C2", linewidth=1.2, label="epsilon at its floor")
    ax.axvline(p.learning_starts, color="C1", linestyle="--", linewidth=1.2, label="learning starts")
    if not drawn:
        ax.set_yticks([])
    return True


def _mismatch(ax: Axes, evidence: Evidence, finding: Finding) -> bool:
    training = evidence.training
    if training is None or not len(training):
        return False
    ax.plot(training.steps, training.values, ".", color="C1", markersize=2, alpha=0.5, label="training episodes")
    return _evaluations(ax, evidence) or True


def _evaluation_story(ax: Axes, evidence: Evidence, finding: Finding) -> bool:
    if not _evaluations(ax, evidence):
        return False
    best = finding.figures.get("best_at")
    if isinstance(best, (int, float)) and "best_eval" in finding.figures:
        ax.plot([best], [float(finding.figures["best_eval"])], "*", color="C2", markersize=12, label="best")
    return True


DRAW: dict[str, Callable[[Any, Evidence, Finding], bool]] = {
    "q_overestimation": _q_overestimation,
    "divergence": _divergence,
    "dormant_units": _dormant,
    "exploration_ended_early": _exploration,
    "train_eval_mismatch": _mismatch,
    "collapse": _evaluation_story,
    "stalled": _evaluation_story,
}
"""How each finding is drawn; a code not here has no plot (a finding about the settings)."""

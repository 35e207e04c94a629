"""The run doctor's rules: what a run's figures say is wrong, with the evidence and what to try next.

Each rule is a function of a run's :class:`Evidence` (its preset, state, periodic evaluations with
the Q-value predicted at their start states and the discounted return obtained, training episodes
and ``diag/`` scalars) and returns a :class:`Finding` or nothing. ``rlkit doctor`` reads the
evidence from a run directory (:mod:`rlkit.analysis.doctor`); during training the same rules run
on the figures in memory after every evaluation (:class:`rlkit.training.doctor_watch.DoctorWatch`).
The live history line names a finding by its short ``headline`` (``HEADLINES``): it must fit 80
columns with the step and a hint.

Every threshold is a named constant below with the reason for its value. They are set so that
the shipped presets' healthy runs raise no finding (``tests/test_doctor.py`` trains them) and a
run provoked into each pathology raises that finding first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rlkit.config.schema import Preset

Severity = Literal["critical", "warning", "info"]
HEADLINES = {
    "divergence": "Q-values running away",
    "dormant_units": "dormant hidden units",
    "q_overestimation": "Q overestimates the returns",
    "exploration_ended_early": "exploration ended too early",
    "train_eval_mismatch": "training beats evaluation",
    "collapse": "performance collapsed",
    "stalled": "stalled: no real gain",
    "replay_and_targets": "replay or target settings",
}
"""Each finding in a few words (at most ``HEADLINE_MAX`` characters), for the live history line."""
HEADLINE_MAX = 27
"""``doctor: `` (8), a headline, `` at step 1,234,567`` (18): 53 columns, 27 left of 80 for a hint."""
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
Array = np.ndarray[Any, Any]

OVERESTIMATE = 0.5
"""Q at the start states above the discounted return they obtained by more than half its size (and by
more than 2 standard errors): Double DQN's bias on Atari was a few percent of the values, DQN's reached
several times them (van Hasselt et al. 2016); half is far past noise and well short of a blow-up."""
GROWTH_POINTS = 6
"""Diagnostics records the growth fit over the last third of a run needs (fewer would fit noise)."""
GROWTH_FIT = 0.5
"""R^2 of log |Q| against steps there: a rise that holds over the records, not one jump."""
Q_SCALE = 2.0
"""|Q| above this many times the largest |return| any episode got: values no return backs (a discounted
value is at most the undiscounted return when rewards keep one sign; a healthy net stays below it)."""
EXPLORATION_GAIN = 0.1
"""Epsilon at its floor while the evaluations gained less than this share of the way from the first
evaluation to ``solved_score`` (or, without one, of the first evaluation's own size): exploring ended
before anything was learned."""
DORMANT_RISE = 0.15
"""Dormant-unit share (ReDo's tau = 0.025) that rose by this much since the first tenth of the records:
Sokar et al. 2023 show it growing through DQN training as performance stalls. The level alone says
little on small nets: the shipped CartPole preset's healthy [64, 64] runs sit at 30-40% throughout."""
DORMANT_LEVEL = 0.4
"""...to at least this share (a rise among few units is noise)."""
DORMANT_DEAD = 0.6
"""Or this share, whatever the trend: most of the network no longer responds (a learning rate far too
high kills ReLU units in the first hundred gradient steps: 66-90% on CartPole at 100-200x)."""
COLLAPSE = 0.5
"""Evaluations fell back more than half of the way from the first evaluation to the best one..."""
COLLAPSE_GAIN = 0.25
"""...after the best had come at least this share of the way from the first evaluation to ``solved_score``
(without one: twice the best evaluation's standard deviation): a collapse of something learned, not noise."""
MISMATCH = 0.5
"""Training episodes return more than the greedy evaluations by half of the training mean's size."""
STALL = 0.3
"""No new best evaluation over this share of the steps trained (and at least 3 evaluations)."""
STALL_BUDGET = 0.1
"""...and over this share of the budget: early on, a noisy evaluation goes a while without a new best
(a healthy LunarLander run, 10 episodes spread by +-100, went from 20k to 45k steps without one), and
the doctor watching a run live must not call that a stall."""
STALL_GAIN = 0.05
"""A 'new best' must beat the old one by this share of the range seen, not by noise."""
REPLAY_SHARE = 0.01
"""A replay buffer under 1% of the budget forgets most of what was collected (DQN on Atari: 1M of 50M, 2%)."""
SYNC_MIN_UPDATES = 1.0
"""Gradient steps between two target syncs: under one, the target network is the online network."""
SYNC_MIN_COUNT = 10
"""Target syncs over the whole budget: fewer and the target network barely moves."""


@dataclass
class Series:
    """A scalar over env steps."""

    steps: Array
    values: Array

    def __len__(self) -> int:
        return len(self.steps)


@dataclass
class Evidence:
    """What one run recorded, as the rules read it."""

    preset: Preset
    state: dict[str, Any]
    evaluations: list[dict[str, float]]
    training: Series | None = None
    """Training episodes' returns at the step each ended (all envs, in time order)."""
    diag: dict[str, Series] = field(default_factory=dict)
    """``diag/*`` scalars from TensorBoard, by name without the prefix."""
    checkpoints: list[int] = field(default_factory=list)
    run: Path | None = None

    @property
    def steps(self) -> int:
        last = [int(self.state.get("num_timesteps") or 0)]
        last += [int(r["timesteps"]) for r in self.evaluations[-1:]]
        return max(last)


@dataclass(frozen=True)
class Finding:
    """One thing wrong with a run: how bad, where it shows, the figures behind it, what to try next."""

    code: str
    title: str
    severity: Severity
    steps: tuple[int, int]
    figures: dict[str, float | int | str]
    advice: list[str]

    @property
    def headline(self) -> str:
        """The finding in a few words (``HEADLINES``), for the live history line."""
        return HEADLINES.get(self.code, self.code)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def with_episodes(rows: list[dict[str, float]], episodes: int) -> list[dict[str, float]]:
    """Evaluation rows with the episodes each played (``evaluations.csv`` has no such column; the
    standard errors of the rules need it)."""
    return [{"episodes": float(episodes), **row} for row in rows]


Rule = Callable[[Evidence, str], "Finding | None"]


def _new(alias: str, *sets: str) -> str:
    """``rlkit train ALIAS --set ...``: a new run with other settings."""
    return " ".join([f"rlkit train {alias}", *(f"--set {s}" for s in sets)])


# ----------------------------------------------------------------------------------------
# The rules
# ----------------------------------------------------------------------------------------


def q_overestimation(evidence: Evidence, alias: str) -> Finding | None:
    """Q predicted at the evaluations' start states against the discounted return they then got."""
    rows = [r for r in evidence.evaluations if math.isfinite(r.get("q_start", math.nan))]
    rows = [r for r in rows if math.isfinite(r.get("return_discounted", math.nan))]
    if len(rows) < 2:
        return None
    over = []
    for r in rows:
        gap, got = r["q_start"] - r["return_discounted"], r["return_discounted"]
        noise = 2 * r.get("return_discounted_std", 0.0) / math.sqrt(max(1.0, r.get("episodes", 1.0)))
        over.append(gap > max(OVERESTIMATE * max(abs(got), 1.0), noise))
    if not (over[-1] and over[-2]):
        return None
    last = rows[-1]
    gaps = [r["q_start"] - r["return_discounted"] for r in rows]
    trend = "growing" if len(gaps) >= 3 and gaps[-1] > gaps[-2] > gaps[-3] else "steady"
    first = next(i for i in range(len(over)) if all(over[i:]))
    p = evidence.preset
    advice = [_new(alias, "double_q=true")] if not p.double_q else []
    advice.append(_new(alias, f"target_update_interval={max(1, p.target_update_interval * 2)}"))
    advice.append(_new(alias, f"learning_rate={p.learning_rate / 3:.3g}"))
    return Finding(
        "q_overestimation",
        "Q-values overestimate the returns they lead to",
        "warning",
        (int(rows[first]["timesteps"]), int(last["timesteps"])),
        {
            "q_at_start": round(last["q_start"], 3),
            "discounted_return": round(last["return_discounted"], 3),
            "gap": round(gaps[-1], 3),
            "trend": trend,
            "evaluations_over": sum(over),
        },
        advice[:2],
    )


def _growth(series: Series) -> tuple[float, float]:
    """Slope of log|value| per step over the last third of the records (at least GROWTH_POINTS), and R^2."""
    n = max(GROWTH_POINTS, len(series) // 3)
    steps, values = series.steps[-n:], np.abs(series.values[-n:])
    keep = values > 0
    steps, logs = steps[keep], np.log(values[keep])
    if len(steps) < 2 or np.ptp(steps) == 0:
        return 0.0, 0.0
    slope, intercept = np.polyfit(steps, logs, 1)
    total = float(((logs - logs.mean()) ** 2).sum())
    r2 = 1.0 - float(((logs - (slope * steps + intercept)) ** 2).sum()) / total if total > 0 else 0.0
    return float(slope), r2


def divergence_coming(evidence: Evidence, alias: str) -> Finding | None:
    """|Q| running away from every return the run obtained, and still growing (or the guard stopped it)."""
    q, q_min = evidence.diag.get("q_greedy_max"), evidence.diag.get("q_greedy_min")
    crashed = "diverged" in str(evidence.state.get("error", ""))
    if q is None or len(q) < (2 if crashed else GROWTH_POINTS):
        return None
    both = q_min is not None and len(q_min) == len(q)
    q_abs = Series(q.steps, np.maximum(np.abs(q.values), np.abs(q_min.values)) if both else np.abs(q.values))  # type: ignore[union-attr]
    returns = evidence.training.values if evidence.training is not None and len(evidence.training) else np.zeros(1)
    scale = max(1.0, float(np.abs(returns).max()))
    latest = float(q_abs.values[-3:].mean())
    slope, r2 = _growth(q_abs)
    if not crashed and (latest < Q_SCALE * scale or slope <= 0 or r2 < GROWTH_FIT):
        return None
    p = evidence.preset
    beyond = np.flatnonzero(q_abs.values >= Q_SCALE * scale)
    first = int(q_abs.steps[beyond[0]]) if len(beyond) else int(q_abs.steps[0])
    figures: dict[str, float | int | str] = {
        "largest_abs_q": round(float(q_abs.values.max()), 4),
        "times_the_largest_return": round(latest / scale, 2),
        "largest_episode_return": round(scale, 3),
        "fit_r2": round(r2, 3),
    }
    if slope > 0:
        figures["doubling_steps"] = int(math.log(2) / slope)
        figures["steps_to_the_guard"] = max(0, int(math.log(p.divergence_q_bound / max(latest, 1e-9)) / slope))
    return Finding(
        "divergence",
        "divergence: Q-values run away from every return obtained"
        + (" (the guard stopped the run)" if crashed else ""),
        "critical",
        (first, int(q_abs.steps[-1])),
        figures,
        [
            _new(alias, f"learning_rate={p.learning_rate / 10:.3g}"),
            _new(
                alias,
                f"gamma={min(p.gamma, 0.99):g}",
                f"target_update_interval={max(p.target_update_interval * 10, 1000)}",
            ),
        ],
    )


def exploration_ended_early(evidence: Evidence, alias: str) -> Finding | None:
    """Epsilon at its floor before learning started, or while the evaluations were still where they began."""
    p = evidence.preset
    if p.noisy:
        return None
    floor_at = int(p.exploration_fraction * p.n_timesteps)
    advice = [
        _new(alias, f"exploration_fraction={min(1.0, p.exploration_fraction * 4):.3g}"),
        _new(alias, f"learning_starts={max(0, min(p.learning_starts, floor_at // 4))}"),
    ]
    if p.learning_starts >= floor_at and p.exploration_final_eps < p.exploration_initial_eps:
        return Finding(
            "exploration_ended_early",
            "exploration ends before learning starts",
            "warning",
            (floor_at, p.learning_starts),
            {
                "epsilon_floor_at": floor_at,
                "learning_starts": p.learning_starts,
                "final_epsilon": p.exploration_final_eps,
            },
            advice,
        )
    rows = evidence.evaluations
    after = [r for r in rows if r["timesteps"] >= floor_at]
    if len(rows) < 2 or not after or after[0] is rows[0]:
        return None
    first = rows[0]["mean_reward"]
    target = p.solved_score if p.solved_score is not None and p.solved_score > first else first + max(abs(first), 1.0)
    at_floor = max(r["mean_reward"] for r in rows if r["timesteps"] <= after[0]["timesteps"])
    gained = (at_floor - first) / (target - first)
    later = max(r["mean_reward"] for r in after)
    if (
        gained >= EXPLORATION_GAIN
        or (later - first) / (target - first) >= EXPLORATION_GAIN
        or bool(evidence.state.get("solved"))
    ):
        return None
    return Finding(
        "exploration_ended_early",
        "exploration ended before anything was learned",
        "warning",
        (floor_at, int(after[-1]["timesteps"])),
        {
            "epsilon_floor_at": floor_at,
            "final_epsilon": p.exploration_final_eps,
            "first_eval": round(first, 3),
            "best_eval_since": round(later, 3),
            "share_of_the_way": round(max(gained, 0.0), 3),
        },
        advice,
    )


def dormant_units(evidence: Evidence, alias: str) -> Finding | None:
    """ReDo's dormant units: a large and growing share of hidden units that no longer respond."""
    series = evidence.diag.get("dormant_fraction")
    if series is None or len(series) < 5:
        return None
    early = float(series.values[: max(1, len(series) // 10)].mean())
    late = float(series.values[-max(3, len(series) // 10) :].mean())
    rising = late >= DORMANT_LEVEL and late - early >= DORMANT_RISE
    if not rising and late < DORMANT_DEAD:
        return None
    p = evidence.preset
    return Finding(
        "dormant_units",
        f"{late:.0%} of the hidden units are dormant" + (" and rising" if rising else ": most of the network is dead"),
        "warning",
        (int(series.steps[0]), int(series.steps[-1])),
        {"dormant_share_now": round(late, 3), "dormant_share_early": round(early, 3)},
        [
            _new(alias, f"learning_rate={p.learning_rate / 10:.3g}"),
            _new(alias, "policy_kwargs.activation_fn=leaky_relu"),
        ],
    )


def collapse_after_solving(evidence: Evidence, alias: str) -> Finding | None:
    """The evaluations fell well below their best (after solving, or after a good stretch)."""
    rows = evidence.evaluations
    if len(rows) < 3:
        return None
    means = np.asarray([r["mean_reward"] for r in rows])
    best_i = int(means.argmax())
    first, best, last = float(means[0]), float(means[best_i]), float(means[-1])
    solved = evidence.preset.solved_score
    reached = solved is not None and best >= solved
    needed = (
        COLLAPSE_GAIN * (solved - first)
        if solved is not None and solved > first
        else 2 * rows[best_i].get("std_reward", 0.0)
    )
    if best_i == len(rows) - 1 or best - first <= max(needed, 0.0) or (best - last) < COLLAPSE * (best - first):
        return None
    if solved is not None and last >= solved:
        return None
    best_step = int(rows[best_i]["timesteps"])
    near = min(evidence.checkpoints, key=lambda s: abs(s - best_step)) if evidence.checkpoints else None
    where = str(evidence.run) if evidence.run is not None else "RUN"
    advice = [f"rlkit evaluate {where} --model best    # best_model.zip: the evaluation at step {best_step:,}"]
    if near is not None:
        advice.append(f"rlkit train {alias} --init-from {where}/checkpoints/step-{near:012d}/model.zip")
    elif not evidence.preset.stop_on_solved and solved is not None:
        advice.append(_new(alias, "stop_on_solved=true"))
    return Finding(
        "collapse",
        "performance collapsed after " + ("solving" if reached else "its best evaluation"),
        "warning",
        (best_step, int(rows[-1]["timesteps"])),
        {"best_eval": round(best, 3), "best_at": best_step, "last_eval": round(last, 3), "first_eval": round(first, 3)},
        advice,
    )


def train_eval_mismatch(evidence: Evidence, alias: str) -> Finding | None:
    """Training episodes return far more than greedy evaluation episodes (the eval env plays another game)."""
    if evidence.training is None or len(evidence.training) < 20 or not evidence.evaluations:
        return None
    train = float(evidence.training.values[-20:].mean())
    last = evidence.evaluations[-1]
    gap = train - last["mean_reward"]
    if gap <= MISMATCH * max(abs(train), 1.0) or gap <= 2 * last.get("std_reward", 0.0):
        return None
    atari = evidence.preset.atari is not None
    advice = [f"rlkit record {evidence.run or 'RUN'} --episodes 2    # watch what the greedy policy does"]
    if atari:
        advice.insert(0, _new(alias, "atari.backend=sb3"))  # SB3's wrapper presses FIRE after a life loss
    return Finding(
        "train_eval_mismatch",
        "training returns far above the greedy evaluations" + (" (FIRE after a lost life?)" if atari else ""),
        "warning",
        (int(evidence.training.steps[-20]), int(last["timesteps"])),
        {"training_mean_last_20": round(train, 3), "eval_mean": round(last["mean_reward"], 3), "gap": round(gap, 3)},
        advice,
    )


def stalled(evidence: Evidence, alias: str) -> Finding | None:
    """No new best evaluation over a large share of the steps trained."""
    rows = evidence.evaluations
    if len(rows) < 4 or evidence.state.get("solved"):
        return None
    means = np.asarray([r["mean_reward"] for r in rows])
    steps = np.asarray([r["timesteps"] for r in rows])
    span = max(float(np.ptp(means)), 1e-9)
    best, best_step = means[0], steps[0]
    for m, s in zip(means[1:], steps[1:], strict=True):
        if m > best + STALL_GAIN * span:
            best, best_step = m, s
    total = float(steps[-1])
    flat = int(((steps > best_step) & (steps <= total)).sum())
    if total - best_step < max(STALL * total, STALL_BUDGET * evidence.preset.n_timesteps) or flat < 3:
        return None
    p = evidence.preset
    return Finding(
        "stalled",
        "stalled: no evaluation clearly better (by 5% of the range) for a long stretch",
        "info",
        (int(best_step), int(total)),
        {
            "best_eval": round(float(best), 3),
            "best_at": int(best_step),
            "share_without_gain": round((total - best_step) / total, 3),
        },
        [
            _new(alias, f"learning_rate={p.learning_rate / 3:.3g}"),
            _new(alias, f"n_steps={max(3, p.n_steps * 2)}"),
        ],
    )


def replay_and_targets(evidence: Evidence, alias: str) -> Finding | None:
    """Too little replay for the budget, or target syncs too frequent or too rare for the update rate."""
    p = evidence.preset
    grads = p.gradient_steps if p.gradient_steps > 0 else p.train_freq * p.n_envs
    updates_per_step = grads / (p.train_freq * p.n_envs)
    per_sync = p.target_update_interval * updates_per_step if p.tau >= 1.0 else math.inf
    syncs = p.n_timesteps / p.target_update_interval
    problems: list[tuple[str, dict[str, float | int | str], list[str]]] = []
    if p.buffer_size < REPLAY_SHARE * p.n_timesteps:
        problems.append(
            (
                "the replay buffer is under 1% of the budget",
                {"buffer_size": p.buffer_size, "n_timesteps": p.n_timesteps},
                [_new(alias, f"buffer_size={int(REPLAY_SHARE * 5 * p.n_timesteps)}")],
            )
        )
    if per_sync < SYNC_MIN_UPDATES:
        problems.append(
            (
                "target syncs come before one gradient step: the target is the online network",
                {"gradient_steps_per_sync": round(per_sync, 3), "target_update_interval": p.target_update_interval},
                [_new(alias, f"target_update_interval={math.ceil(p.train_freq * p.n_envs * 8 / max(grads, 1))}")],
            )
        )
    elif syncs < SYNC_MIN_COUNT and p.tau >= 1.0:
        problems.append(
            (
                "the target network syncs fewer than 10 times in the budget",
                {"target_syncs_in_budget": round(syncs, 2), "target_update_interval": p.target_update_interval},
                [_new(alias, f"target_update_interval={max(1, p.n_timesteps // 50)}")],
            )
        )
    if not problems:
        return None
    title, figures, advice = problems[0]
    return Finding("replay_and_targets", title, "info", (0, p.n_timesteps), figures, advice)


RULES: list[Rule] = [
    divergence_coming,
    dormant_units,
    q_overestimation,
    exploration_ended_early,
    train_eval_mismatch,
    collapse_after_solving,
    stalled,
    replay_and_targets,
]
"""Every rule, in the order a tie in severity is listed: causes (dead units, biased values, too little
exploration, a different evaluation env) before what they cause (a collapse, a stall)."""


def diagnose(evidence: Evidence, alias: str = "ALIAS") -> list[Finding]:
    """Every rule's finding on ``evidence``, worst first."""
    found = [f for rule in RULES if (f := rule(evidence, alias)) is not None]
    return sorted(found, key=lambda f: SEVERITY_ORDER[f.severity])

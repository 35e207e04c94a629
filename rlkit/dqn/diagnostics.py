"""What the Q-learning loop logs under ``diag/`` and the divergence guard.

The loop calls :meth:`Diagnostics.count_clip` every gradient step (one tensor op, no sync) and
:meth:`Diagnostics.record` every ``interval`` gradient steps: all statistics of that batch are
stacked into one tensor and copied to the host once. The guard runs once per training phase on
figures the loop syncs anyway (the mean loss it logs as ``train/loss``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch as th

from rlkit.core.errors import RlkitError

HISTOGRAM_EXCLUDE = ("stdout", "log", "json", "csv")
SCALARS = (
    "loss",
    "td_error_mean",
    "td_error_std",
    "td_error_abs_mean",
    "td_error_max_abs",
    "grad_norm",
    "q_taken_mean",
    "q_taken_min",
    "q_taken_max",
    "q_greedy_mean",
    "q_greedy_min",
    "q_greedy_max",
    "target_mean",
    "target_min",
    "target_max",
)


class DivergenceError(RlkitError):
    """Training stopped because the loss or the Q-values blew up; the last checkpoint is untouched."""


@dataclass
class BatchOutput:
    """What one gradient step computed, for the loss, priorities and diagnostics.

    ``loss`` is per sample ``(batch,)`` with gradients; the rest are detached: ``td`` (target minus
    estimate of the taken action, ``(batch,)``), ``q_all`` (Q-values of every action, ``(batch,
    n_actions)``; quantile means for QR-DQN), ``q_taken`` and ``target`` (``(batch, 1)``).
    """

    loss: th.Tensor | None
    td: th.Tensor | None
    """``None`` only from the written-out MLP step asked for no figures (its phase reduces them at the end)."""
    q_all: th.Tensor
    q_taken: th.Tensor
    target: th.Tensor


class Diagnostics:
    """Accumulators between two records; ``interval`` 0 turns recording off."""

    def __init__(self, interval: int, device: th.device) -> None:
        self.interval = interval
        self.clipped = th.zeros((), device=device)
        self.steps = 0

    def count_clip(self, fired: th.Tensor, steps: int = 1) -> None:
        """``fired``: how many of ``steps`` gradient steps were clipped (a tensor: no sync)."""
        if self.interval > 0:
            self.clipped += fired
            self.steps += steps

    def due(self, n_updates: int) -> bool:
        return self.interval > 0 and n_updates % self.interval == 0

    def record(
        self, logger: Any, out: BatchOutput, loss: th.Tensor, grad_norm: th.Tensor, extra: dict[str, float]
    ) -> None:
        """Log this batch's statistics (one host sync) and the given extra scalars under ``diag/``."""
        assert out.td is not None, "the step was asked for its figures"
        td = out.td.float()
        q_taken = out.q_taken.reshape(-1)
        q_greedy = out.q_all.max(dim=1).values
        target = out.target.reshape(-1)
        stats = th.stack(
            [
                loss.detach(),
                td.mean(),
                td.std() if td.numel() > 1 else td.new_zeros(()),
                td.abs().mean(),
                td.abs().max(),
                grad_norm.detach().to(td.dtype),
                q_taken.mean(),
                q_taken.min(),
                q_taken.max(),
                q_greedy.mean(),
                q_greedy.min(),
                q_greedy.max(),
                target.mean(),
                target.min(),
                target.max(),
                self.clipped.to(td.dtype),
            ]
        ).tolist()
        for name, value in zip(SCALARS, stats[:-1], strict=True):
            logger.record(f"diag/{name}", value)
        logger.record("diag/clip_fraction", stats[-1] / max(self.steps, 1))
        for name, value in extra.items():
            logger.record(f"diag/{name}", value)
        logger.record("diag/q_taken_hist", q_taken.cpu(), exclude=HISTOGRAM_EXCLUDE)
        logger.record("diag/q_greedy_hist", q_greedy.cpu(), exclude=HISTOGRAM_EXCLUDE)
        logger.record("diag/td_error_hist", td.cpu(), exclude=HISTOGRAM_EXCLUDE)
        self.clipped.zero_()
        self.steps = 0


def check_divergence(step: int, loss: float, q_abs_max: float, bound: float) -> None:
    """Raise :class:`DivergenceError` naming the step and the figure when training blew up."""
    advice = "the last checkpoint is intact; lower learning_rate or check the rewards, then train again"
    if not math.isfinite(loss):
        raise DivergenceError(f"training diverged at step {step}: the loss is {loss} ({advice})")
    if not math.isfinite(q_abs_max):
        raise DivergenceError(f"training diverged at step {step}: a Q-value is {q_abs_max} ({advice})")
    if q_abs_max > bound:
        raise DivergenceError(
            f"training diverged at step {step}: |Q| reached {q_abs_max:.4g}, "
            f"beyond divergence_q_bound={bound:g} ({advice})"
        )

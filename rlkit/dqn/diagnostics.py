"""What the Q-learning loop logs under ``diag/`` and the divergence guard.

The loop calls :meth:`Diagnostics.count_clip` every gradient step (one tensor op, no sync) and
:meth:`Diagnostics.record` every ``interval`` gradient steps: all statistics of that batch are
stacked into one tensor and copied to the host once. The guard runs once per training phase on
figures the loop syncs anyway (the mean loss it logs as ``train/loss``).
"""

from __future__ import annotations

import math
from typing import Any

import torch as th
from torch import nn

from rlkit.core.errors import RlkitError
from rlkit.dqn.loss import LossOut

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


ACTIVATIONS = (nn.ReLU, nn.Tanh, nn.ELU, nn.LeakyReLU, nn.GELU, nn.SiLU)
DORMANT_TAU = 0.025
"""A unit is dormant when its mean |activation| on a batch is at most this fraction of its layer's
mean (ReDo's tau-dormant score, Sokar et al. 2023, which reports 0.025 for value-based agents)."""


def dormant_fraction(net: nn.Module, obs: Any) -> float | None:
    """The fraction of the network's hidden units (channels of a CNN) that are dormant on ``obs``."""
    layers = [m for m in net.modules() if isinstance(m, ACTIVATIONS)]
    if not layers or not isinstance(obs, th.Tensor):
        return None
    outputs: list[th.Tensor] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: outputs.append(out)) for m in layers]
    try:
        with th.no_grad():
            net(obs)
    finally:
        for hook in hooks:
            hook.remove()
    counts = th.zeros(2)
    for out in outputs:
        score = out.abs().flatten(2).mean(dim=2) if out.dim() > 2 else out.abs()
        score = score.mean(dim=0)
        counts += th.tensor([float((score <= DORMANT_TAU * score.mean()).sum()), score.numel()])
    return float(counts[0] / counts[1])


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

    def dormant(self, net: nn.Module, obs: Any) -> dict[str, float]:
        """``dormant_fraction`` of the online network on this batch (an extra forward pass per record)."""
        fraction = dormant_fraction(net, obs)
        return {} if fraction is None else {"dormant_fraction": fraction}

    def record(self, logger: Any, out: LossOut, loss: th.Tensor, grad_norm: th.Tensor, extra: dict[str, float]) -> None:
        """Log this batch's statistics (one host sync) and the given extra scalars under ``diag/``."""
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

"""TD targets and per-sample losses: small pure tensor functions, tested against hand-computed values."""

from __future__ import annotations

from typing import Literal

import torch as th
import torch.nn.functional as F

LossName = Literal["huber", "mse"]


def td_targets(
    rewards: th.Tensor,
    dones: th.Tensor,
    discounts: th.Tensor | float,
    next_q_target: th.Tensor,
    next_q_online: th.Tensor | None = None,
) -> th.Tensor:
    """``r + (1 - done) * discount * Q'(s', a*)`` as a ``(batch, 1)`` tensor.

    ``a*`` is the argmax of the target network's values (vanilla DQN), or of ``next_q_online``
    when given (Double DQN: the online network picks the action, the target network values it).
    ``discounts`` is gamma, or gamma**k per sample for n-step returns (SB3's ``replay_data.discounts``);
    ``rewards`` are then the discounted k-step reward sums.
    """
    if next_q_online is None:
        next_values = next_q_target.max(dim=1, keepdim=True).values
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_values = next_q_target.gather(1, best)
    return rewards.reshape(-1, 1) + (1.0 - dones.reshape(-1, 1)) * discounts * next_values


def quantile_td_targets(
    rewards: th.Tensor,
    dones: th.Tensor,
    discounts: th.Tensor | float,
    next_quantiles_target: th.Tensor,
    next_quantiles_online: th.Tensor | None = None,
) -> th.Tensor:
    """QR-DQN targets ``(batch, n_quantiles)``: the greedy action's quantiles, picked by the mean.

    Quantiles are laid out ``(batch, n_quantiles, n_actions)`` as in sb3-contrib. With
    ``next_quantiles_online`` the online network picks the action (Double QR-DQN).
    """
    chooser = next_quantiles_target if next_quantiles_online is None else next_quantiles_online
    best = chooser.mean(dim=1).argmax(dim=1)  # (batch,)
    index = best.view(-1, 1, 1).expand(-1, next_quantiles_target.shape[1], 1)
    next_quantiles = next_quantiles_target.gather(2, index).squeeze(2)
    return rewards.reshape(-1, 1) + (1.0 - dones.reshape(-1, 1)) * discounts * next_quantiles


def elementwise_loss(current: th.Tensor, target: th.Tensor, kind: LossName) -> th.Tensor:
    """Per-sample loss ``(batch,)``: Huber (SB3's smooth L1, delta 1) or squared error."""
    if kind == "huber":
        loss = F.smooth_l1_loss(current, target, reduction="none")
    else:
        loss = F.mse_loss(current, target, reduction="none")
    return loss.reshape(loss.shape[0], -1).mean(dim=1)


def quantile_huber_per_sample(current: th.Tensor, target: th.Tensor) -> th.Tensor:
    """QR-DQN's quantile Huber loss per sample ``(batch,)``, summed over quantiles as in sb3-contrib.

    ``current`` is ``(batch, n_quantiles)``, ``target`` ``(batch, n_target_quantiles)``; averaging
    the result over the batch gives sb3-contrib's ``quantile_huber_loss(..., sum_over_quantiles=True)``.
    """
    n = current.shape[-1]
    cum_prob = ((th.arange(n, device=current.device, dtype=th.float) + 0.5) / n).view(1, -1, 1)
    diff = target.unsqueeze(-2) - current.unsqueeze(-1)  # (batch, n, n_target)
    abs_diff = diff.abs()
    huber = th.where(abs_diff > 1, abs_diff - 0.5, diff**2 * 0.5)
    loss = th.abs(cum_prob - (diff.detach() < 0).float()) * huber
    return loss.sum(dim=-2).mean(dim=-1)

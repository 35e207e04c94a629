"""The TD loss of every DQN rlkit trains, defined once: :func:`td_loss`.

In the spirit of sbx's ``update_qnetwork``: given a batch, the online network's output on its
observations, the target network's (and, for Double DQN, the online network's) output on its next
observations and the options, it returns the per-sample loss and what priorities and diagnostics
need. Vanilla DQN, Double DQN, n-step returns, C51 and QR-DQN are cases of it; every gradient path
(autograd, the written-out MLP backward) calls it, so a switch added here changes every path.

A network's raw output is read by its :class:`Head`: Q-values ``(batch, actions)``, C51 logits
``(batch, atoms, actions)`` over a fixed support, or QR-DQN quantiles ``(batch, quantiles, actions)``
(sb3-contrib's layout).

Adding a loss switch: a field of :class:`LossOptions` read in :func:`td_loss`, and a
:class:`rlkit.config.schema.Preset` field of the same name. Nothing else: the preset passes it by
name, the model saves it, and the fast gradient paths, which list the options they implement
(``SUPPORTS``), leave a model with an option they do not list to the reference path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Protocol

import torch as th
import torch.nn.functional as F

LossKind = Literal["huber", "mse"]
Distribution = Literal["none", "c51", "qr"]


@dataclass(frozen=True)
class LossOptions:
    """The switches that act on the loss alone (each one a preset key and a model keyword of the same name)."""

    double_q: bool = False
    """Double DQN targets: the online network picks the next action, the target network values it."""

    loss: LossKind = "huber"
    """``huber`` (SB3's smooth L1, delta 1) or ``mse``, for Q-value heads; C51 uses the cross-entropy of
    the projected target distribution and QR-DQN the quantile Huber loss."""

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


@dataclass(frozen=True)
class Head:
    """How a network's raw output reads: its kind and, for C51, the support of its atoms."""

    kind: Distribution = "none"
    support: th.Tensor | None = None

    def q_values(self, raw: th.Tensor) -> th.Tensor:
        """Expected Q-values ``(batch, actions)`` of a raw output."""
        if self.kind == "c51":
            assert self.support is not None
            return (raw.softmax(dim=1) * self.support.view(1, -1, 1)).sum(dim=1)
        return raw.mean(dim=1) if self.kind == "qr" else raw


class Transitions(Protocol):
    """The replay fields the loss reads (SB3's ``ReplayBufferSamples`` has them all)."""

    @property
    def actions(self) -> th.Tensor: ...
    @property
    def rewards(self) -> th.Tensor: ...
    @property
    def dones(self) -> th.Tensor: ...
    @property
    def discounts(self) -> th.Tensor | None: ...


@dataclass
class LossOut:
    """One batch's per-sample ``loss`` (with its graph when ``raw`` had one) and detached figures.

    ``priority`` is what prioritized replay stores: |TD error| for Q-value heads, the distributional
    loss itself for C51 (KL) and QR-DQN (quantile Huber), as Rainbow does. ``q_all`` are the expected
    Q-values of every action, ``q_taken`` and ``target`` expected values ``(batch, 1)``.
    """

    loss: th.Tensor | None
    priority: th.Tensor | None
    q_all: th.Tensor
    q_taken: th.Tensor
    target: th.Tensor

    @property
    def td(self) -> th.Tensor:
        """Target minus estimate of the taken action ``(batch,)``."""
        return (self.target - self.q_taken).reshape(-1)


def td_loss(
    raw: th.Tensor,
    next_target: th.Tensor,
    batch: Transitions,
    head: Head,
    options: LossOptions,
    gamma: float,
    next_online: th.Tensor | None = None,
    per_sample: bool = True,
) -> LossOut:
    """The loss of one batch: ``raw`` is the online output on its observations, ``next_target`` the
    target network's on its next observations, ``next_online`` the online network's there (Double DQN).

    The bootstrap discount is ``batch.discounts`` (``gamma**k`` of n-step returns) or ``gamma``.
    ``per_sample=False`` (Q-value heads, for a caller that writes its gradient itself and wants only
    the phase's mean loss): ``loss`` and ``priority`` are left ``None``, to be had later from the
    same ``q_taken`` and ``target`` with :func:`elementwise_loss` (:func:`phase_loss`).
    """
    discounts = batch.discounts if batch.discounts is not None else gamma
    rewards, dones = batch.rewards.reshape(-1, 1), batch.dones.reshape(-1, 1)
    actions = batch.actions.long().reshape(-1, 1)
    with th.no_grad():
        chooser = next_online if options.double_q and next_online is not None else next_target
        best = head.q_values(chooser).argmax(dim=1, keepdim=True)  # (batch, 1)
        if head.kind == "none":
            target = rewards + (1.0 - dones) * discounts * next_target.gather(1, best)
        elif head.kind == "qr":
            next_quantiles = next_target.gather(2, best.unsqueeze(1).expand(-1, next_target.shape[1], 1)).squeeze(2)
            target = rewards + (1.0 - dones) * discounts * next_quantiles
        else:
            assert head.support is not None
            next_probs = next_target.softmax(dim=1)
            next_probs = next_probs.gather(2, best.unsqueeze(1).expand(-1, next_probs.shape[1], 1)).squeeze(2)
            target = project_distribution(next_probs, rewards, (1.0 - dones) * discounts, head.support)
    if head.kind == "none":
        q_taken = raw.gather(1, actions)
        if not per_sample:
            return LossOut(None, None, raw.detach(), q_taken.detach(), target)
        loss = elementwise_loss(q_taken, target, options.loss)
        q_taken = q_taken.detach()
        priority = (target - q_taken).abs().reshape(-1)
        return LossOut(loss, priority, raw.detach(), q_taken, target)
    taken = raw.gather(2, actions.unsqueeze(1).expand(-1, raw.shape[1], 1)).squeeze(2)  # (batch, atoms)
    if head.kind == "qr":
        loss = quantile_huber_loss(taken, target)
        q_taken, target_mean = taken.detach().mean(dim=1, keepdim=True), target.mean(dim=1, keepdim=True)
    else:
        assert head.support is not None
        # KL(target || prediction): the cross-entropy's gradient, zero for a perfect prediction.
        loss = (th.xlogy(target, target) - target * taken.log_softmax(dim=1)).sum(dim=1)
        support = head.support.view(1, -1)
        q_taken = (taken.detach().softmax(dim=1) * support).sum(dim=1, keepdim=True)
        target_mean = (target * support).sum(dim=1, keepdim=True)
    return LossOut(loss, loss.detach(), head.q_values(raw.detach()), q_taken, target_mean)


def phase_loss(outs: list[LossOut], kind: LossKind) -> th.Tensor:
    """The summed mean losses of equal-sized uniform batches whose ``loss`` was left out, in one reduction."""
    taken = th.cat([out.q_taken for out in outs])
    return elementwise_loss(taken, th.cat([out.target for out in outs]), kind).mean() * len(outs)


def elementwise_loss(current: th.Tensor, target: th.Tensor, kind: LossKind) -> th.Tensor:
    """Per-sample loss ``(batch,)``: Huber (SB3's smooth L1, delta 1) or squared error."""
    if kind == "huber":
        loss = F.smooth_l1_loss(current, target, reduction="none")
    else:
        loss = F.mse_loss(current, target, reduction="none")
    return loss.reshape(loss.shape[0], -1).mean(dim=1)


def elementwise_grad(diff: th.Tensor, kind: LossKind) -> th.Tensor:
    """The derivative of :func:`elementwise_loss` in ``current`` at ``diff = current - target``
    (for the written-out backward; ``tests/test_dqn_loss.py`` checks it against autograd)."""
    return diff.clamp(-1.0, 1.0) if kind == "huber" else diff * 2.0


def quantile_huber_loss(current: th.Tensor, target: th.Tensor) -> th.Tensor:
    """QR-DQN's quantile Huber loss per sample ``(batch,)``, summed over quantiles as in sb3-contrib.

    ``current`` is ``(batch, n)``, ``target`` ``(batch, n_target)``; the batch mean is sb3-contrib's
    ``quantile_huber_loss(..., sum_over_quantiles=True)``.
    """
    n = current.shape[-1]
    cum_prob = ((th.arange(n, device=current.device, dtype=th.float) + 0.5) / n).view(1, -1, 1)
    diff = target.unsqueeze(-2) - current.unsqueeze(-1)  # (batch, n, n_target)
    abs_diff = diff.abs()
    huber = th.where(abs_diff > 1, abs_diff - 0.5, diff**2 * 0.5)
    loss = th.abs(cum_prob - (diff.detach() < 0).float()) * huber
    return loss.sum(dim=-2).mean(dim=-1)


def project_distribution(
    next_probs: th.Tensor, rewards: th.Tensor, discounts: th.Tensor | float, support: th.Tensor
) -> th.Tensor:
    """C51's projected Bellman target (Bellemare et al. 2017, Algorithm 1), ``(batch, atoms)``.

    Each atom ``z_j`` of the next distribution moves to ``r + discount * z_j`` (clipped to the
    support) and its probability is split between the two atoms around it, in proportion to
    closeness. ``discounts`` is ``(1 - done) * gamma**k`` per sample (0 at a terminal state).
    """
    atoms = support.shape[0]
    v_min, v_max = float(support[0]), float(support[-1])
    delta = (v_max - v_min) / (atoms - 1)
    moved = (rewards.reshape(-1, 1) + discounts * support.view(1, -1)).clamp(v_min, v_max)
    b = (moved - v_min) / delta
    lower, upper = b.floor().long(), b.ceil().long()
    projected = th.zeros_like(next_probs)
    # An atom landing exactly on z_l has lower == upper: its whole mass goes to that atom.
    projected.scatter_add_(1, lower, next_probs * (upper.float() - b + (lower == upper).float()))
    projected.scatter_add_(1, upper, next_probs * (b - lower.float()))
    return projected

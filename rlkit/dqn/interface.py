"""What the gradient engine trains: the interface an algorithm hands it, and one step's replay rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from torch import nn

from rlkit.dqn.loss import Head, LossOptions


@dataclass(frozen=True)
class Networks:
    """What the engine trains: the interface an algorithm hands it (no algorithm class needed)."""

    online: nn.Module
    target: nn.Module
    head: Head
    optimizer: th.optim.Optimizer
    options: LossOptions
    gamma: float
    max_grad_norm: float
    noisy: bool

    def raw(self, net: nn.Module, obs: th.Tensor) -> th.Tensor:
        """A network's output as the loss reads it (``raw`` where it differs from ``forward``)."""
        return net.raw(obs) if hasattr(net, "raw") else net(obs)  # type: ignore[operator]

    def settings(self) -> dict[str, Any]:
        """Every option of the model a fast part must implement to be taken."""
        return {**asdict(self.options), "distribution": self.head.kind, "noisy": self.noisy}


@dataclass
class Minibatch:
    """One gradient step's replay rows; ``next_target`` when the phase already computed it."""

    data: ReplayBufferSamples
    next_target: th.Tensor | None = None
    weights: th.Tensor | None = None
    leaves: Any = None


def weighted_mean(loss: th.Tensor, weights: th.Tensor | None) -> th.Tensor:
    return loss.mean() if weights is None else (loss * weights.reshape(-1)).mean()

"""Dueling and NoisyNet Q-networks as subclasses of SB3's ``QNetwork`` and ``DQNPolicy``.

- Dueling (Wang et al. 2016): ``Q = V + A - mean(A)``. The hidden layers ``net_arch[:-1]`` are
  shared; the value and advantage streams each get their own last hidden layer ``net_arch[-1]``
  (with CnnPolicy's default ``net_arch=[]`` both streams read NatureCNN's features directly).
- Noisy (Fortunato et al. 2018): every linear layer after the features extractor is a
  :class:`NoisyLinear` with factorised Gaussian noise. Noise is on for training and exploration
  (``deterministic=False``) and off for deterministic predictions (evaluation uses the means).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn
from torch.nn import functional as F


class NoisyLinear(nn.Module):
    """A linear layer with learnable factorised Gaussian noise on its weights and biases."""

    eps_in: th.Tensor
    eps_out: th.Tensor

    def __init__(self, in_features: int, out_features: int, sigma0: float = 0.5) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight_mu = nn.Parameter(th.empty(out_features, in_features).uniform_(-bound, bound))
        self.weight_sigma = nn.Parameter(th.full((out_features, in_features), sigma0 * bound))
        self.bias_mu = nn.Parameter(th.empty(out_features).uniform_(-bound, bound))
        self.bias_sigma = nn.Parameter(th.full((out_features,), sigma0 * bound))
        self.register_buffer("eps_in", th.zeros(in_features), persistent=False)
        self.register_buffer("eps_out", th.zeros(out_features), persistent=False)
        self.noise_enabled = True
        self.reset_noise()

    @staticmethod
    def _scaled(size: int, device: th.device) -> th.Tensor:
        x = th.randn(size, device=device)
        return x.sign() * x.abs().sqrt()

    def reset_noise(self) -> None:
        """Draw fresh factorised noise (one vector per input and per output)."""
        self.eps_in.copy_(self._scaled(self.in_features, self.eps_in.device))
        self.eps_out.copy_(self._scaled(self.out_features, self.eps_out.device))

    def forward(self, x: th.Tensor) -> th.Tensor:
        if not self.noise_enabled:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * th.outer(self.eps_out, self.eps_in)
        return F.linear(x, weight, self.bias_mu + self.bias_sigma * self.eps_out)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def noisy_layers(module: nn.Module) -> list[NoisyLinear]:
    return [m for m in module.modules() if isinstance(m, NoisyLinear)]


@contextmanager
def noise_off(module: nn.Module) -> Iterator[None]:
    """Use the noise-free means inside the block."""
    layers = noisy_layers(module)
    for layer in layers:
        layer.noise_enabled = False
    try:
        yield
    finally:
        for layer in layers:
            layer.noise_enabled = True


def mlp(
    in_dim: int,
    out_dim: int,
    hidden: list[int],
    activation_fn: type[nn.Module],
    linear: Callable[[int, int], nn.Module],
) -> list[nn.Module]:
    """Layers of an MLP (like SB3's ``create_mlp``) built from the given linear layer."""
    layers: list[nn.Module] = []
    last = in_dim
    for size in hidden:
        layers += [linear(last, size), activation_fn()]
        last = size
    if out_dim > 0:
        layers.append(linear(last, out_dim))
    return layers


class DuelingHead(nn.Module):
    """Shared hidden layers, then value and advantage streams combined as ``V + A - mean(A)``."""

    def __init__(self, trunk: list[nn.Module], value: list[nn.Module], advantage: list[nn.Module]) -> None:
        super().__init__()
        self.trunk = nn.Sequential(*trunk)
        self.value = nn.Sequential(*value)
        self.advantage = nn.Sequential(*advantage)

    def forward(self, features: th.Tensor) -> th.Tensor:
        hidden = self.trunk(features)
        advantage = self.advantage(hidden)
        return self.value(hidden) + advantage - advantage.mean(dim=1, keepdim=True)


class RlkitQNetwork(QNetwork):
    """SB3's ``QNetwork`` with an optional dueling head and NoisyNet layers."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        normalize_images: bool = True,
        dueling: bool = False,
        noisy: bool = False,
        noisy_sigma0: float = 0.5,
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor, features_dim, net_arch, activation_fn, normalize_images
        )
        self.dueling = dueling
        self.noisy = noisy
        self.noisy_sigma0 = noisy_sigma0

        def linear(n_in: int, n_out: int) -> nn.Module:
            return NoisyLinear(n_in, n_out, noisy_sigma0) if noisy else nn.Linear(n_in, n_out)

        n_actions = int(self.action_space.n)
        if dueling:
            trunk, last = self.net_arch[:-1], self.net_arch[-1:]
            trunk_dim = trunk[-1] if trunk else features_dim
            head = DuelingHead(
                mlp(features_dim, 0, trunk, activation_fn, linear),
                mlp(trunk_dim, 1, last, activation_fn, linear),
                mlp(trunk_dim, n_actions, last, activation_fn, linear),
            )
            self.q_net = nn.Sequential(head)
        elif noisy:
            self.q_net = nn.Sequential(*mlp(features_dim, n_actions, self.net_arch, activation_fn, linear))

    def reset_noise(self) -> None:
        for layer in noisy_layers(self):
            layer.reset_noise()

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        if self.noisy and deterministic:
            with noise_off(self):
                return super()._predict(observation, deterministic)
        return super()._predict(observation, deterministic)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(dueling=self.dueling, noisy=self.noisy, noisy_sigma0=self.noisy_sigma0)
        return data


class RlkitDQNPolicy(DQNPolicy):
    """SB3's MlpPolicy for DQN, building :class:`RlkitQNetwork` (dueling and/or noisy)."""

    q_net: RlkitQNetwork
    q_net_target: RlkitQNetwork

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        dueling: bool = False,
        noisy: bool = False,
        noisy_sigma0: float = 0.5,
    ) -> None:
        # Set before the parent's __init__, which builds the networks through make_q_net.
        self.dueling = dueling
        self.noisy = noisy
        self.noisy_sigma0 = noisy_sigma0
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
        )

    def make_q_net(self) -> RlkitQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        net = RlkitQNetwork(**net_args, dueling=self.dueling, noisy=self.noisy, noisy_sigma0=self.noisy_sigma0)
        return net.to(self.device)

    def reset_noise(self) -> None:
        """Fresh noise for the online and the target network (no-op without noisy layers)."""
        self.q_net.reset_noise()
        self.q_net_target.reset_noise()

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(dueling=self.dueling, noisy=self.noisy, noisy_sigma0=self.noisy_sigma0)
        return data


class RlkitCnnPolicy(RlkitDQNPolicy):
    """SB3's CnnPolicy for DQN (NatureCNN features), building :class:`RlkitQNetwork`."""

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        dueling: bool = False,
        noisy: bool = False,
        noisy_sigma0: float = 0.5,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
            dueling,
            noisy,
            noisy_sigma0,
        )

"""Q-networks with every head rlkit trains, as subclasses of SB3's and sb3-contrib's networks.

- Dueling (Wang et al. 2016): ``Q = V + A - mean(A)``. The hidden layers ``net_arch[:-1]`` are
  shared; the value and advantage streams each get their own last hidden layer ``net_arch[-1]``
  (with CnnPolicy's default ``net_arch=[]`` both streams read NatureCNN's features directly).
- Noisy (Fortunato et al. 2018): every linear layer after the features extractor is a
  :class:`NoisyLinear` with factorised Gaussian noise. Noise is on for training and exploration
  (``deterministic=False``) and off for deterministic predictions (evaluation uses the means).
- Distributional: C51 (Bellemare et al. 2017) outputs logits over ``n_atoms`` atoms per action,
  QR-DQN (Dabney et al. 2018) ``n_quantiles`` quantiles per action; both laid out
  ``(batch, atoms, actions)``. A dueling distributional head combines V and A per atom.

``forward`` always returns what SB3 expects of the network (Q-values; QR-DQN's quantiles), so
predict, evaluation and export work for every head; ``raw`` is what the loss reads.
With no extension on, SB3's own classes are used instead (``rlkit.training.factory``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch as th
from gymnasium import spaces
from sb3_contrib.qrdqn.policies import QRDQNPolicy, QuantileNetwork
from stable_baselines3.common.torch_layers import NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.dqn.policies import DQNPolicy, QNetwork
from torch import nn
from torch.nn import functional as F

from rlkit.dqn.loss import Head


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
    """Shared hidden layers, then value and advantage streams combined as ``V + A - mean(A)``.

    With ``atoms`` > 1 (a distributional head) each stream has one output per atom and they are
    combined atom by atom into ``(batch, atoms, actions)``.
    """

    def __init__(self, trunk: list[nn.Module], value: list[nn.Module], advantage: list[nn.Module], atoms: int = 1):
        super().__init__()
        self.trunk = nn.Sequential(*trunk)
        self.value = nn.Sequential(*value)
        self.advantage = nn.Sequential(*advantage)
        self.atoms = atoms

    def forward(self, features: th.Tensor) -> th.Tensor:
        hidden = self.trunk(features)
        value, advantage = self.value(hidden), self.advantage(hidden)
        if self.atoms > 1:
            value, advantage = (
                value.view(-1, self.atoms, 1),
                advantage.view(-1, self.atoms, advantage.shape[1] // self.atoms),
            )
            return value + advantage - advantage.mean(dim=-1, keepdim=True)
        return value + advantage - advantage.mean(dim=1, keepdim=True)


def head_layers(
    features_dim: int,
    n_actions: int,
    net_arch: list[int],
    activation_fn: type[nn.Module],
    atoms: int = 1,
    dueling: bool = False,
    noisy: bool = False,
    noisy_sigma0: float = 0.5,
) -> nn.Sequential:
    """The layers after the features: ``atoms * n_actions`` outputs, plain or dueling, linear or noisy."""

    def linear(n_in: int, n_out: int) -> nn.Module:
        return NoisyLinear(n_in, n_out, noisy_sigma0) if noisy else nn.Linear(n_in, n_out)

    if not dueling:
        return nn.Sequential(*mlp(features_dim, atoms * n_actions, net_arch, activation_fn, linear))
    trunk, last = net_arch[:-1], net_arch[-1:]
    trunk_dim = trunk[-1] if trunk else features_dim
    return nn.Sequential(
        DuelingHead(
            mlp(features_dim, 0, trunk, activation_fn, linear),
            mlp(trunk_dim, atoms, last, activation_fn, linear),
            mlp(trunk_dim, atoms * n_actions, last, activation_fn, linear),
            atoms,
        )
    )


class _Noisy:
    """What every rlkit network adds for NoisyNet: fresh noise, and its means for deterministic actions."""

    noisy: bool

    def reset_noise(self) -> None:
        for layer in noisy_layers(self):  # type: ignore[arg-type]
            layer.reset_noise()

    def _predict(self, observation: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        if self.noisy and deterministic:
            with noise_off(self):  # type: ignore[arg-type]
                return super()._predict(observation, deterministic)  # type: ignore[misc]
        return super()._predict(observation, deterministic)  # type: ignore[misc]


class RlkitQNetwork(_Noisy, QNetwork):
    """SB3's ``QNetwork`` (its arguments) with dueling and NoisyNet options and a Q-value or C51 head."""

    support: th.Tensor

    def __init__(
        self,
        *args: Any,
        dueling: bool = False,
        noisy: bool = False,
        noisy_sigma0: float = 0.5,
        distribution: str = "none",
        n_atoms: int = 51,
        v_min: float = -10.0,
        v_max: float = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.head_kwargs: dict[str, Any] = {"dueling": dueling, "noisy": noisy, "noisy_sigma0": noisy_sigma0}
        self.dueling, self.noisy, self.atoms = dueling, noisy, n_atoms if distribution == "c51" else 1
        if self.atoms > 1:  # a saved buffer: a bare model file names its support
            self.head_kwargs.update(distribution=distribution, n_atoms=n_atoms, v_min=v_min, v_max=v_max)
            self.register_buffer("support", th.linspace(v_min, v_max, n_atoms))
        if dueling or noisy or self.atoms > 1:
            n_actions = int(self.action_space.n)
            self.q_net = head_layers(
                self.features_dim,
                n_actions,
                self.net_arch,
                self.activation_fn,
                self.atoms,
                dueling,
                noisy,
                noisy_sigma0,
            )

    @property
    def head(self) -> Head:
        return Head("c51", self.support) if self.atoms > 1 else Head()

    def raw(self, obs: PyTorchObs) -> th.Tensor:
        """What the loss reads: Q-values, or C51 logits ``(batch, atoms, actions)``."""
        out = self.q_net(self.extract_features(obs, self.features_extractor))
        return out.view(out.shape[0], self.atoms, -1) if self.atoms > 1 else out

    def forward(self, obs: PyTorchObs) -> th.Tensor:
        return self.head.q_values(self.raw(obs))

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self.head_kwargs}


class RlkitQuantileNetwork(_Noisy, QuantileNetwork):
    """sb3-contrib's ``QuantileNetwork`` (its arguments) with dueling and NoisyNet options (same output layout)."""

    def __init__(
        self, *args: Any, dueling: bool = False, noisy: bool = False, noisy_sigma0: float = 0.5, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        self.head_kwargs = {"dueling": dueling, "noisy": noisy, "noisy_sigma0": noisy_sigma0}
        self.dueling, self.noisy = dueling, noisy
        if dueling or noisy:
            n_actions = int(self.action_space.n)
            self.quantile_net = head_layers(
                self.features_dim,
                n_actions,
                self.net_arch,
                self.activation_fn,
                self.n_quantiles,
                dueling,
                noisy,
                noisy_sigma0,
            )

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self.head_kwargs}


class _HeadPolicy:
    """Policies that build rlkit networks: ``head_kwargs`` go to the network and into saved parameters."""

    head_kwargs: dict[str, Any]

    @property
    def dueling(self) -> bool:
        return bool(self.head_kwargs.get("dueling", False))

    @property
    def noisy(self) -> bool:
        return bool(self.head_kwargs.get("noisy", False))

    def reset_noise(self) -> None:
        """Fresh noise for the online and the target network (no-op without noisy layers)."""
        for net in self.networks():
            net.reset_noise()

    def networks(self) -> list[Any]:
        raise NotImplementedError

    def _get_constructor_parameters(self) -> dict[str, Any]:
        return {**super()._get_constructor_parameters(), **self.head_kwargs}  # type: ignore[misc]


class RlkitDQNPolicy(_HeadPolicy, DQNPolicy):
    """SB3's MlpPolicy for DQN building :class:`RlkitQNetwork` (dueling, noisy, C51)."""

    q_net: RlkitQNetwork
    q_net_target: RlkitQNetwork

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule, **kwargs: Any
    ) -> None:
        names = ("dueling", "noisy", "noisy_sigma0", "distribution", "n_atoms", "v_min", "v_max")
        self.head_kwargs = {k: kwargs.pop(k) for k in names if k in kwargs}  # before the networks are built
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def make_q_net(self) -> RlkitQNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return RlkitQNetwork(**net_args, **self.head_kwargs).to(self.device)

    def networks(self) -> list[Any]:
        return [self.q_net, self.q_net_target]


class RlkitCnnPolicy(RlkitDQNPolicy):
    """:class:`RlkitDQNPolicy` on NatureCNN features (SB3's CnnPolicy)."""

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule, **kwargs: Any
    ):
        kwargs.setdefault("features_extractor_class", NatureCNN)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)


class RlkitQRDQNPolicy(_HeadPolicy, QRDQNPolicy):
    """sb3-contrib's QR-DQN MlpPolicy building :class:`RlkitQuantileNetwork` (dueling, noisy)."""

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule, **kwargs: Any
    ) -> None:
        self.head_kwargs = {k: kwargs.pop(k) for k in ("dueling", "noisy", "noisy_sigma0") if k in kwargs}
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def make_quantile_net(self) -> RlkitQuantileNetwork:
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return RlkitQuantileNetwork(**net_args, **self.head_kwargs).to(self.device)

    def networks(self) -> list[Any]:
        return [self.quantile_net, self.quantile_net_target]


class RlkitQRCnnPolicy(RlkitQRDQNPolicy):
    """:class:`RlkitQRDQNPolicy` on NatureCNN features."""

    def __init__(
        self, observation_space: spaces.Space, action_space: spaces.Discrete, lr_schedule: Schedule, **kwargs: Any
    ):
        kwargs.setdefault("features_extractor_class", NatureCNN)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

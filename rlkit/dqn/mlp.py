"""The gradient step of an MLP Q-network with its backward pass written out (no autograd).

For the small networks of classic control and Box2D (8-256-256-4 on LunarLander) a gradient step
is a handful of matrix products; autograd (graph recording, the backward engine, per-module calls)
costs about as much again. :class:`MlpGradient` runs the same step by hand:

1. forward through the online network keeping each layer's output (with Double DQN the next states
   ride along in the same products and only pick the greedy actions),
2. :func:`~rlkit.dqn.loss.td_loss`, the loss every path uses, on those Q-values, and its
   derivative in ``Q(s, a)`` (:func:`~rlkit.dqn.loss.elementwise_grad`), weighted, over the batch,
3. the backward products layer by layer into each parameter's ``.grad`` (a dueling head splits
   ``dQ`` into ``dV = sum(dQ)`` and ``dA = dQ - mean(dQ)``).

It implements the options in :attr:`MlpGradient.SUPPORTS` on ``[Linear, ReLU, ...]`` networks
(plain or dueling) over flat Box observations; :meth:`MlpGradient.create` says why not otherwise,
and the engine takes autograd. ``tests/test_dqn_engine.py`` checks it against autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

from rlkit.dqn.interface import Minibatch, Networks, weighted_mean
from rlkit.dqn.loss import LossOut, elementwise_grad, td_loss
from rlkit.dqn.private import relu_backward


@dataclass(frozen=True)
class Dense:
    """A linear layer's parameters, and whether a ReLU follows it."""

    weight: th.Tensor
    bias: th.Tensor
    relu: bool


class Stack:
    """A chain of :class:`Dense` layers: forward keeping each layer's output, backward into ``.grad``."""

    def __init__(self, layers: list[Dense]) -> None:
        self.layers = layers

    @classmethod
    def parse(cls, modules: list[nn.Module]) -> Stack | None:
        """``[Linear, ReLU, Linear, ...]`` ending in a Linear as a stack; ``None`` for anything else."""
        layers: list[Dense] = []
        for module in modules:
            if type(module) is nn.Linear and module.bias is not None:
                layers.append(Dense(module.weight, module.bias, relu=False))
            elif type(module) is nn.ReLU and layers and not layers[-1].relu:
                layers[-1] = Dense(layers[-1].weight, layers[-1].bias, relu=True)
            else:
                return None
        return cls(layers)

    def parameters(self) -> list[th.Tensor]:
        return [p for layer in self.layers for p in (layer.weight, layer.bias)]

    def forward(self, x: th.Tensor) -> list[th.Tensor]:
        """The input and every layer's output (after its ReLU): ``len(layers) + 1`` tensors."""
        outputs = [x]
        for layer in self.layers:
            x = th.addmm(layer.bias, x, layer.weight.t())
            if layer.relu:
                x.relu_()
            outputs.append(x)
        return outputs

    def backward(self, d_out: th.Tensor, outputs: list[th.Tensor], rows: int, input_grad: bool) -> th.Tensor | None:
        """Write every parameter's gradient from ``d_out`` (the loss gradient of the last output).

        Only the first ``rows`` rows of ``outputs`` carry gradient (the rest were Double DQN's next
        states). Returns the input's gradient when asked for.
        """
        d = d_out
        for k in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[k]
            if layer.relu:
                d = relu_backward(d, outputs[k + 1][:rows], 0.0)
            th.mm(d.t(), outputs[k][:rows], out=layer.weight.grad)
            th.sum(d, 0, out=layer.bias.grad)
            if k > 0 or input_grad:
                d = th.mm(d, layer.weight)
        return d if input_grad else None


class MlpNet:
    """A Q-network after its flat features: one stack, or a dueling trunk with value and advantage stacks."""

    def __init__(self, trunk: Stack, value: Stack | None = None, advantage: Stack | None = None) -> None:
        self.trunk, self.value, self.advantage = trunk, value, advantage

    @classmethod
    def of(cls, q_net: nn.Module) -> MlpNet | None:
        from rlkit.dqn.policies import DuelingHead

        if getattr(q_net, "atoms", 1) != 1:  # a C51 head's outputs are logits, not Q-values
            return None
        space = getattr(q_net, "observation_space", None)
        flat = isinstance(space, spaces.Box) and len(space.shape) == 1  # not one-hot, not images, not 2-D
        if not flat or type(getattr(q_net, "features_extractor", None)) is not FlattenExtractor:
            return None
        modules = list(getattr(q_net, "q_net", []))
        if len(modules) == 1 and type(modules[0]) is DuelingHead and modules[0].atoms == 1:
            parts = [Stack.parse(list(seq)) for seq in (modules[0].trunk, modules[0].value, modules[0].advantage)]
            if parts[0] is None or any(p is None or not p.layers or p.layers[-1].relu for p in parts[1:]):
                return None
            return cls(*parts)  # type: ignore[arg-type]
        stack = Stack.parse(modules)
        return cls(stack) if stack is not None and stack.layers and not stack.layers[-1].relu else None

    def parameters(self) -> list[th.Tensor]:
        return [p for s in (self.trunk, self.value, self.advantage) if s is not None for p in s.parameters()]

    def forward(self, x: th.Tensor) -> tuple[th.Tensor, list[list[th.Tensor]]]:
        """Q-values and what the backward pass needs."""
        trunk = self.trunk.forward(x)
        if self.value is None or self.advantage is None:
            return trunk[-1], [trunk]
        value, advantage = self.value.forward(trunk[-1]), self.advantage.forward(trunk[-1])
        a = advantage[-1]
        return value[-1] + a - a.mean(dim=1, keepdim=True), [trunk, value, advantage]

    def q_values(self, x: th.Tensor) -> th.Tensor:
        return self.forward(x)[0]

    def backward(self, d_q: th.Tensor, saved: list[list[th.Tensor]], rows: int) -> None:
        if self.value is None or self.advantage is None:
            self.trunk.backward(d_q, saved[0], rows, input_grad=False)
            return
        trunk, value, advantage = saved
        d_hidden = self.value.backward(d_q.sum(dim=1, keepdim=True), value, rows, input_grad=True)
        d_adv = self.advantage.backward(d_q - d_q.mean(dim=1, keepdim=True), advantage, rows, input_grad=True)
        assert d_hidden is not None and d_adv is not None
        if self.trunk.layers:
            self.trunk.backward(d_hidden + d_adv, trunk, rows, input_grad=False)


class MlpGradient:
    """The loss's gradient on an MLP Q-network, written into ``.grad`` without autograd (module docstring)."""

    name = "manual"
    SUPPORTS: ClassVar[dict[str, tuple[Any, ...]]] = {
        "double_q": (False, True),
        "loss": ("huber", "mse"),
        "distribution": ("none",),
        "noisy": (False,),
    }
    """Every model option this path implements, with the values it implements (``Networks.settings``)."""

    def __init__(self, nets: Networks, online: MlpNet, target: MlpNet) -> None:
        self.nets, self.online, self.target = nets, online, target
        self.params = online.parameters()
        trained = [p for group in nets.optimizer.param_groups for p in group["params"]]
        if {id(p) for p in self.params} != {id(p) for p in trained} or len(self.params) != len(trained):
            raise ValueError("the optimizer must train exactly the Q-network's parameters")

    @classmethod
    def create(cls, nets: Networks) -> MlpGradient | str:
        """The written-out gradient for these networks, or why it does not apply."""
        for key, value in nets.settings().items():
            if value not in cls.SUPPORTS.get(key, ()):
                return f"the written-out MLP backward does not implement {key}={value}"
        online, target = MlpNet.of(nets.online), MlpNet.of(nets.target)
        if online is None or target is None or (online.value is None) != (target.value is None):
            return "the network is not [Linear, ReLU, ...] on flat observations"
        try:
            return cls(nets, online, target)
        except ValueError as exc:
            return str(exc)

    def target_values(self, next_obs: th.Tensor) -> th.Tensor:
        """The target network's Q-values (as ``q_net_target(next_obs)``)."""
        with th.no_grad():
            return self.target.q_values(next_obs.float())

    lazy_loss = True
    """It needs no per-sample loss for its gradient: the engine may ask it for none (``per_sample=False``)."""

    def __call__(self, batch: Minibatch, per_sample: bool = True) -> tuple[LossOut, th.Tensor | None]:
        """One batch's loss (``None`` with ``per_sample=False``), with the gradient of its weighted mean written into ``.grad``."""
        nets, data, weights = self.nets, batch.data, batch.weights
        with th.no_grad():
            for p in self.params:
                if p.grad is None:
                    p.grad = th.empty_like(p)
            obs = data.observations.float()
            rows = obs.shape[0]
            if nets.options.double_q:
                q_both, saved = self.online.forward(th.cat([obs, data.next_observations.float()]))
                q_all, next_online = q_both[:rows], q_both[rows:]
            else:
                (q_all, saved), next_online = self.online.forward(obs), None
            next_target = (
                batch.next_target if batch.next_target is not None else self.target_values(data.next_observations)
            )
            out = td_loss(q_all, next_target, data, nets.head, nets.options, nets.gamma, next_online, per_sample)
            d_taken = elementwise_grad(out.q_taken - out.target, nets.options.loss)
            if weights is not None:
                d_taken = d_taken * weights.reshape(-1, 1)
            d_q = th.zeros_like(q_all).scatter_(1, data.actions.long(), d_taken.div_(rows))
            self.online.backward(d_q, saved, rows)
        return out, None if out.loss is None else weighted_mean(out.loss, weights)

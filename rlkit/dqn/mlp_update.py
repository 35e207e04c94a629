"""One DQN gradient step for an MLP Q-network, with the backward pass written out (no autograd).

For the small networks of classic control and Box2D (8-256-256-4 on LunarLander) a gradient step
is a handful of matrix products; PyTorch's autograd (graph recording, the backward engine, the
per-module calls) costs about as much again. :class:`MlpUpdate` computes the same step by hand:

1. forward through the online network, keeping each layer's input (with Double DQN the batch's
   next states ride along in the same products and only pick the greedy actions),
2. the loss gradient with respect to ``Q(s, a)``: ``clamp(Q - y, -1, 1)`` for Huber (SB3's
   smooth L1), ``2 (Q - y)`` for the squared error, times the importance weights, over the batch,
3. the backward products layer by layer, written straight into each parameter's ``.grad``
   (ReLU's derivative is the mask of its positive outputs; a dueling head splits ``dQ`` into
   ``dV = sum(dQ)`` and ``dA = dQ - mean(dQ)``).

The optimizer step that follows is the usual one (see ``algorithms.LeanFusedAdam``), so the
parameters, their gradients and the optimizer state are ordinary: saving, loading and the
autograd path see no difference. ``tests/test_dqn_mlp_update.py`` checks the gradients against
autograd for every supported shape. :meth:`MlpUpdate.create` returns ``None`` for anything
else (NoisyNet, CNN features, activations other than ReLU, non-flat observations), which then
takes the autograd path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from torch import nn

from rlkit.dqn.diagnostics import BatchOutput
from rlkit.dqn.targets import LossName, elementwise_loss, td_targets

_RELU_BACKWARD = th.ops.aten.threshold_backward.default


@dataclass(frozen=True)
class Dense:
    """A linear layer's parameters, and whether a ReLU follows it."""

    weight: th.Tensor
    bias: th.Tensor
    relu: bool


class Stack:
    """A chain of :class:`Dense` layers: forward keeping each layer's input, backward into ``.grad``."""

    def __init__(self, layers: list[Dense]) -> None:
        self.layers = layers

    @classmethod
    def parse(cls, modules: list[nn.Module]) -> Stack | None:
        """``[Linear, ReLU, Linear, ...]`` as a stack; ``None`` for any other module."""
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

    def backward(
        self, d_out: th.Tensor, outputs: list[th.Tensor], rows: int, need_input_grad: bool
    ) -> th.Tensor | None:
        """Write every parameter's gradient from ``d_out`` (the loss gradient of the last output).

        ``outputs`` come from :meth:`forward`; only their first ``rows`` rows carry gradient (the
        rest were Double DQN's next states). Returns the input's gradient when asked for.
        """
        d = d_out
        for k in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[k]
            if layer.relu:  # ReLU's backward as autograd computes it (one op, no mask tensor)
                d = _RELU_BACKWARD(d, outputs[k + 1][:rows], 0.0)
            x = outputs[k][:rows]
            th.mm(d.t(), x, out=layer.weight.grad)
            th.sum(d, 0, out=layer.bias.grad)
            if k > 0 or need_input_grad:
                d = th.mm(d, layer.weight)
        return d if need_input_grad else None


class Head:
    """The Q-network after the (flat) features: one stack, or a dueling trunk with two streams."""

    def __init__(self, trunk: Stack, value: Stack | None = None, advantage: Stack | None = None) -> None:
        self.trunk, self.value, self.advantage = trunk, value, advantage

    @classmethod
    def of(cls, q_net: nn.Module) -> Head | None:
        from rlkit.dqn.policies import DuelingHead

        modules = list(q_net.q_net)  # type: ignore[arg-type]
        if len(modules) == 1 and isinstance(modules[0], DuelingHead):
            dueling = modules[0]
            parts = [Stack.parse(list(seq)) for seq in (dueling.trunk, dueling.value, dueling.advantage)]
            if any(p is None or not p.layers or p.layers[-1].relu for p in parts[1:]) or parts[0] is None:
                return None
            return cls(parts[0], parts[1], parts[2])
        stack = Stack.parse(modules)
        if stack is None or not stack.layers or stack.layers[-1].relu:
            return None
        return cls(stack)

    @property
    def dueling(self) -> bool:
        return self.value is not None

    def parameters(self) -> list[th.Tensor]:
        stacks = [self.trunk, self.value, self.advantage]
        return [p for s in stacks if s is not None for p in s.parameters()]

    def forward(self, x: th.Tensor) -> tuple[th.Tensor, list[list[th.Tensor]]]:
        """Q-values and what the backward pass needs."""
        trunk = self.trunk.forward(x)
        if self.value is None or self.advantage is None:
            return trunk[-1], [trunk]
        value = self.value.forward(trunk[-1])
        advantage = self.advantage.forward(trunk[-1])
        a = advantage[-1]
        return value[-1] + a - a.mean(dim=1, keepdim=True), [trunk, value, advantage]

    def q_values(self, x: th.Tensor) -> th.Tensor:
        return self.forward(x)[0]

    def backward(self, d_q: th.Tensor, saved: list[list[th.Tensor]], rows: int) -> None:
        if self.value is None or self.advantage is None:
            self.trunk.backward(d_q, saved[0], rows, need_input_grad=False)
            return
        trunk, value, advantage = saved
        d_hidden = self.value.backward(d_q.sum(dim=1, keepdim=True), value, rows, need_input_grad=True)
        d_adv = self.advantage.backward(d_q - d_q.mean(dim=1, keepdim=True), advantage, rows, need_input_grad=True)
        assert d_hidden is not None and d_adv is not None
        if self.trunk.layers:
            self.trunk.backward(d_hidden + d_adv, trunk, rows, need_input_grad=False)


class MlpUpdate:
    """The gradient step of ``RlkitDQN`` on an MLP Q-network, without autograd (module docstring)."""

    def __init__(
        self, online: Head, target: Head, gamma: float, double_q: bool, loss: LossName, trained: list[nn.Parameter]
    ) -> None:
        self.online, self.target = online, target
        self.gamma = gamma
        self.double_q = double_q
        self.loss_kind = loss
        self.params = online.parameters()
        if {id(p) for p in self.params} != {id(p) for p in trained} or len(self.params) != len(trained):
            raise ValueError("the optimizer must train exactly the Q-network's parameters")

    @classmethod
    def create(cls, model: Any) -> MlpUpdate | None:
        """For an ``RlkitDQN`` whose Q-network this covers; ``None`` otherwise."""
        space = model.observation_space
        q_net, q_target = model.q_net, model.q_net_target
        if not isinstance(space, spaces.Box) or len(space.shape) != 1 or getattr(model.policy, "noisy", False):
            return None
        if type(q_net.features_extractor) is not FlattenExtractor:
            return None
        if model.loss_kind not in ("huber", "mse"):
            return None
        online, target = Head.of(q_net), Head.of(q_target)
        if online is None or target is None or online.dueling != target.dueling:
            return None
        trained = [p for group in model.policy.optimizer.param_groups for p in group["params"]]
        try:
            return cls(online, target, float(model.gamma), bool(model.double_q), model.loss_kind, trained)
        except ValueError:
            return None

    def target_values(self, next_observations: th.Tensor) -> th.Tensor:
        """The target network's Q-values (as ``q_net_target(next_obs)``)."""
        with th.no_grad():
            return self.target.q_values(next_observations.float())

    def step(
        self,
        data: ReplayBufferSamples,
        next_target: th.Tensor | None = None,
        weights: th.Tensor | None = None,
        figures: bool = True,
    ) -> BatchOutput:
        """Compute one batch's loss and write the gradient of its weighted mean into ``.grad``.

        ``next_target`` is the target network's output on the next states when already known;
        ``weights`` are prioritized replay's importance weights. The returned ``loss`` is per
        sample and carries no graph (the gradient is already in ``.grad``). Without ``figures``
        the per-sample loss and TD error are not computed (``None``): the gradient needs neither,
        and a phase that logs only their means reduces them once at its end.
        """
        with th.no_grad():
            for p in self.params:
                if p.grad is None:
                    p.grad = th.empty_like(p)
            obs = data.observations.float()
            rows = obs.shape[0]
            if self.double_q:
                q_both, saved = self.online.forward(th.cat([obs, data.next_observations.float()]))
                q_all, next_online = q_both[:rows], q_both[rows:]
            else:
                (q_all, saved), next_online = self.online.forward(obs), None
            if next_target is None:
                next_target = self.target.q_values(data.next_observations.float())
            discounts = data.discounts if data.discounts is not None else self.gamma
            target = td_targets(data.rewards, data.dones, discounts, next_target, next_online)
            actions = data.actions.long()
            q_taken = q_all.gather(1, actions)
            diff = q_taken - target
            d_taken = diff.clamp(-1.0, 1.0) if self.loss_kind == "huber" else diff * 2.0
            if weights is not None:
                d_taken = d_taken * weights.reshape(-1, 1)
            d_q = th.zeros_like(q_all).scatter_(1, actions, d_taken.div_(rows))
            self.online.backward(d_q, saved, rows)
            if not figures:
                return BatchOutput(None, None, q_all, q_taken, target)
            loss = elementwise_loss(q_taken, target, self.loss_kind)
        return BatchOutput(loss, (target - q_taken).reshape(-1), q_all, q_taken, target)

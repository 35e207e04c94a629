"""A training phase of ``RlkitDQN`` and ``RlkitQRDQN``: sample, target, loss, gradient, clip, step.

:meth:`GradientEngine.run` is the whole loop (a CleanRL reader follows it top to bottom). It is
built from three parts, each chosen once by :meth:`GradientEngine.create`:

- **batches**: one buffer draw per gradient step (:func:`per_step_batches`: the reference), a
  prioritized draw with importance weights, or, for the uniform buffers in
  :data:`PHASE_BUFFERS`, one draw of the whole phase and one target-network pass over it
  (:func:`phase_batches`);
- **gradients**: :class:`AutogradGradient` (:func:`~rlkit.dqn.loss.td_loss` and ``backward()``:
  the reference) or :class:`~rlkit.dqn.mlp.MlpGradient` (the same loss, the MLP's backward written out);
- **optimizer step**: ``clip_grad_norm_`` then ``optimizer.step()`` (the reference) or
  :class:`LeanAdam` (the same arithmetic in one call).

A fast part says what it implements (an allow-list: ``MlpGradient.SUPPORTS``, :data:`PHASE_BUFFERS`,
:data:`LEAN_ADAM_GROUP`); for anything outside it the engine takes the reference part, and
:meth:`GradientEngine.describe` says which parts it took and why. The engine knows no algorithm
class: it trains the :class:`Networks` it is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch as th
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from rlkit.dqn import private
from rlkit.dqn.diagnostics import Diagnostics
from rlkit.dqn.interface import Minibatch, Networks, weighted_mean
from rlkit.dqn.loss import LossOut, phase_loss, td_loss
from rlkit.dqn.mlp import MlpGradient
from rlkit.replay.buffers import DeviceFrameReplayBuffer, FrameReplayBuffer, PrioritizedReplayBuffer

MAX_PHASE_ROWS = 8192
"""At most this many replay rows are drawn at once by :func:`phase_batches`."""

PHASE_BUFFERS = (ReplayBuffer, NStepReplayBuffer, FrameReplayBuffer, DeviceFrameReplayBuffer)
"""Buffers whose draws are independent and uniform, so one draw can serve a whole phase (exact types)."""


@dataclass(frozen=True)
class EngineOptions:
    """Which fast parts the engine may take; every combination computes the same update."""

    batched_phases: bool = True
    """Uniform replay: draw a phase's minibatches at once and run the target network once over them."""

    lean_optimizer: bool = True
    """Fused Adam: clip and step without torch.optim's per-call bookkeeping (:class:`LeanAdam`)."""

    manual_backward: bool = True
    """MLP Q-networks: forward and backward written out, without autograd (:class:`MlpGradient`), and
    the forward pass of action selection too (``RlkitAlgorithm.predict``)."""

    @classmethod
    def reference(cls) -> EngineOptions:
        """The plain path: per-step draws, autograd, ``clip_grad_norm_`` and ``optimizer.step()``."""
        return cls(batched_phases=False, lean_optimizer=False, manual_backward=False)


class AutogradGradient:
    """:func:`~rlkit.dqn.loss.td_loss` on the networks' outputs, then ``backward()`` (the reference)."""

    name = "autograd"

    def __init__(self, nets: Networks) -> None:
        self.nets = nets

    def target_values(self, next_obs: th.Tensor) -> th.Tensor:
        return self.nets.raw(self.nets.target, next_obs)

    def __call__(self, batch: Minibatch, per_sample: bool = True) -> tuple[LossOut, th.Tensor | None]:
        """``per_sample`` is for gradients with ``lazy_loss``: autograd needs the loss, always."""
        nets, data = self.nets, batch.data
        obs, next_obs = data.observations, data.next_observations
        next_online = None
        if nets.options.double_q and isinstance(obs, th.Tensor) and isinstance(next_obs, th.Tensor):
            # One forward pass over both halves; the next-state half only picks actions (no gradient).
            both = nets.raw(nets.online, th.cat([obs, next_obs]))
            raw, next_online = both[: obs.shape[0]], both[obs.shape[0] :].detach()
        else:
            raw = nets.raw(nets.online, obs)
            if nets.options.double_q:
                with th.no_grad():
                    next_online = nets.raw(nets.online, next_obs)
        with th.no_grad():
            next_target = batch.next_target if batch.next_target is not None else self.target_values(next_obs)
        out = td_loss(raw, next_target, data, nets.head, nets.options, nets.gamma, next_online)
        assert out.loss is not None
        loss = weighted_mean(out.loss, batch.weights)
        nets.optimizer.zero_grad()
        loss.backward()
        return out, loss.detach()


LEAN_ADAM_GROUP: dict[str, tuple[Any, ...] | None] = {
    "lr": None,
    "betas": None,
    "eps": None,
    "weight_decay": None,
    "fused": (True,),
    "amsgrad": (False,),
    "maximize": (False,),
    "foreach": (None, False),
    "capturable": (False,),
    "differentiable": (False,),
    "decoupled_weight_decay": (False,),
}
"""The Adam settings :class:`LeanAdam` implements (``None``: any value); any other key or value declines it."""


class LeanAdam:
    """Clipping and a fused Adam step on the optimizer's own state, as one small call (:mod:`private`).

    The same arithmetic as ``clip_grad_norm_`` followed by ``Adam(fused=True).step()``, so saving,
    loading and a later ``optimizer.step()`` see an ordinary Adam. Only for the group settings in
    :data:`LEAN_ADAM_GROUP`, one group training every parameter on one device, no hooks, and state
    made by a first ordinary step; :meth:`create` returns ``None`` otherwise.
    """

    def __init__(self, group: dict[str, Any], params: list[th.Tensor], state: dict[str, list[th.Tensor]]) -> None:
        self.group, self.params, self.state = group, params, state

    @classmethod
    def create(cls, optimizer: th.optim.Optimizer, params: list[th.Tensor]) -> LeanAdam | None:
        if type(optimizer) is not th.optim.Adam or len(optimizer.param_groups) != 1:
            return None
        group = optimizer.param_groups[0]
        for key, value in group.items():
            allowed = LEAN_ADAM_GROUP.get(key, ())
            if key != "params" and (key not in LEAN_ADAM_GROUP or (allowed is not None and value not in allowed)):
                return None
        if isinstance(group["lr"], th.Tensor) or list(group["params"]) != list(params):
            return None
        if (
            len({p.device for p in params}) != 1
            or optimizer._optimizer_step_pre_hooks
            or optimizer._optimizer_step_post_hooks
        ):
            return None
        per_param = [optimizer.state.get(p, {}) for p in params]
        if not all({"exp_avg", "exp_avg_sq", "step"} <= set(s) for s in per_param):
            return None  # the first ordinary step creates the state
        return cls(group, params, {k: [s[k] for s in per_param] for k in ("exp_avg", "exp_avg_sq", "step")})

    def step(self, max_norm: float) -> th.Tensor:
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            raise RuntimeError("LeanAdam: a trained parameter has no gradient")
        norm = private.total_norm(grads)  # type: ignore[arg-type]
        private.clip_(grads, norm, max_norm)  # type: ignore[arg-type]
        private.fused_adam_(self.group, self.params, grads, self.state)  # type: ignore[arg-type]
        return norm


class OptimizerStep:
    """``clip_grad_norm_`` then ``optimizer.step()`` (the reference), or :class:`LeanAdam` once it applies."""

    def __init__(self, optimizer: th.optim.Optimizer, params: list[th.Tensor], lean: bool) -> None:
        self.optimizer, self.params, self.lean_allowed = optimizer, params, lean
        # Made at every phase: loading a checkpoint replaces the optimizer's state tensors.
        self.lean = LeanAdam.create(optimizer, params) if lean else None

    def __call__(self, max_norm: float) -> th.Tensor:
        if self.lean is not None:
            return self.lean.step(max_norm)
        norm = th.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.optimizer.step()
        if self.lean_allowed:
            self.lean = LeanAdam.create(self.optimizer, self.params)
        return norm


Gradient = AutogradGradient | MlpGradient


class PhaseTally:
    """The losses a phase left out (``td_loss(per_sample=False)``), reduced once at its end with the same
    :func:`~rlkit.dqn.loss.elementwise_loss`: a handful of tensor ops per phase instead of per step (about
    40 us a gradient step, 5% at the RL Zoo's LunarLander work). Only for equal-sized uniform batches."""

    def __init__(self, kind: Any) -> None:
        self.kind = kind
        self.outs: list[LossOut] = []

    def add(self, out: LossOut) -> None:
        self.outs.append(out)

    def total(self) -> th.Tensor:
        """The sum of the left-out batches' mean losses."""
        return phase_loss(self.outs, self.kind) if self.outs else th.zeros(())


class GradientEngine:
    """A model's training phase, from parts chosen once (module docstring)."""

    def __init__(
        self, nets: Networks, gradient: Gradient, phase: bool, lean: bool, why: list[str], prioritized: bool = False
    ) -> None:
        self.nets, self.gradient, self.phase, self.lean, self.why = nets, gradient, phase, lean, why
        self.prioritized = prioritized
        self.params: list[th.Tensor] = [p for g in nets.optimizer.param_groups for p in g["params"]]

    @classmethod
    def create(cls, nets: Networks, buffer: Any, options: EngineOptions) -> GradientEngine:
        """Take each fast part where ``options`` allow it and it implements everything the model uses."""
        why: list[str] = []
        gradient: Gradient = AutogradGradient(nets)
        if options.manual_backward:
            manual = MlpGradient.create(nets)
            if isinstance(manual, MlpGradient):
                gradient = manual
            else:
                why.append(f"autograd: {manual}")
        phase = options.batched_phases and type(buffer) in PHASE_BUFFERS and not nets.noisy
        if options.batched_phases and not phase and not isinstance(buffer, PrioritizedReplayBuffer):
            reason = "noisy nets draw new target noise every step" if nets.noisy else f"a {type(buffer).__name__}"
            why.append(f"per-step draws: {reason}")
        return cls(nets, gradient, phase, options.lean_optimizer, why, isinstance(buffer, PrioritizedReplayBuffer))

    @property
    def manual(self) -> MlpGradient | None:
        """The written-out MLP gradient when that is the path (the thread tuner needs it)."""
        return self.gradient if isinstance(self.gradient, MlpGradient) else None

    def describe(self) -> dict[str, str]:
        """Which part was taken for each choice, and why a fast one was not (``declined``)."""
        batches = "prioritized" if self.prioritized else "phase" if self.phase else "per-step"
        parts = {"batches": batches, "gradients": self.gradient.name}
        parts["optimizer"] = "lean" if self.lean else "plain"
        return {**parts, **({"declined": "; ".join(self.why)} if self.why else {})}

    def run(
        self,
        buffer: Any,
        steps: int,
        batch_size: int,
        *,
        beta: float,
        env: Any,
        diag: Diagnostics,
        logger: Any,
        first_update: int,
        figures: Callable[[], dict[str, float]],
    ) -> tuple[float, float]:
        """One training phase; returns its mean loss and largest |Q| (one host sync)."""
        nets = self.nets
        step = OptimizerStep(nets.optimizer, self.params, self.lean)
        prioritized = isinstance(buffer, PrioritizedReplayBuffer)
        # A gradient that writes its own backward needs no per-sample loss; without priorities to store
        # and between diagnostics records, the phase's loss is reduced once at its end (PhaseTally).
        tally = (
            PhaseTally(nets.options.loss) if getattr(self.gradient, "lazy_loss", False) and not prioritized else None
        )
        loss_sum = th.zeros((), device=self.params[0].device)
        q_alls: list[th.Tensor] = []
        norms: list[th.Tensor] = []
        for n, batch in enumerate(self._batches(buffer, steps, batch_size, beta, env), start=first_update + 1):
            if nets.noisy:
                for net in (nets.online, nets.target):
                    net.reset_noise()  # type: ignore[operator]
            due = diag.due(n)
            out, loss = self.gradient(batch) if tally is None or due else self.gradient(batch, per_sample=False)
            grad_norm = step(nets.max_grad_norm)
            q_alls.append(out.q_all)
            norms.append(grad_norm)
            if loss is None:
                assert tally is not None
                tally.add(out)
            else:
                loss_sum = loss_sum + loss
            if prioritized:
                assert out.priority is not None
                buffer.update_priorities(batch.leaves, out.priority.cpu().numpy())
            if due:
                assert loss is not None
                diag.count_clip((th.stack(norms) > nets.max_grad_norm).sum(), len(norms))
                norms = []
                diag.record(
                    logger, out, loss, grad_norm, {**figures(), **diag.dormant(nets.online, batch.data.observations)}
                )
        if norms:
            diag.count_clip((th.stack(norms) > nets.max_grad_norm).sum(), len(norms))
        if tally is not None:
            loss_sum = loss_sum + tally.total()
        mean_loss, largest = th.stack([loss_sum / steps, th.cat(q_alls).abs().max()]).tolist()
        return mean_loss, largest

    def _batches(self, buffer: Any, steps: int, batch_size: int, beta: float, env: Any) -> Iterator[Minibatch]:
        if isinstance(buffer, PrioritizedReplayBuffer):
            for _ in range(steps):
                data, weights, leaves = buffer.sample_prioritized(batch_size, beta, env=env)
                yield Minibatch(data, None, weights, leaves)
        elif self.phase:
            for data, next_target in phase_batches(buffer, steps, batch_size, self.gradient.target_values, env):
                yield Minibatch(data, next_target)
        else:
            for _ in range(steps):
                yield Minibatch(buffer.sample(batch_size, env=env))


def phase_batches(
    buffer: Any, steps: int, batch_size: int, target_fn: Callable[[th.Tensor], th.Tensor], env: Any = None
) -> Iterator[tuple[ReplayBufferSamples, th.Tensor]]:
    """A training phase's minibatches drawn at once, each with its target network output.

    Uniform replay draws every index independently, so one draw of ``steps * batch_size`` rows
    split into consecutive minibatches is the same distribution as one draw per step (with one env
    and SB3's buffer it is even the same random stream, hence the same minibatches). The target
    network does not change within a phase (SB3 syncs it between env steps), so its outputs for
    all minibatches come from one forward pass. At most :data:`MAX_PHASE_ROWS` rows at a time.
    """
    per_draw = max(1, MAX_PHASE_ROWS // batch_size)
    done = 0
    while done < steps:
        n = min(per_draw, steps - done)
        data = buffer.sample(n * batch_size, env=env)
        with th.no_grad():
            next_target = target_fn(data.next_observations)
        for k in range(n):
            rows = slice(k * batch_size, (k + 1) * batch_size)
            yield ReplayBufferSamples(*(None if t is None else t[rows] for t in data)), next_target[rows]  # type: ignore[arg-type]
        done += n

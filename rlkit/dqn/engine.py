"""The gradient step of ``RlkitDQN`` and ``RlkitQRDQN``, chosen once when the model is set up.

A training phase (``train()``: ``gradient_steps`` minibatches after ``train_freq`` env steps) is,
for every minibatch: sample, compute the TD targets and the loss, get the gradients, clip them
and step the optimizer; then update priorities and log diagnostics. :class:`GradientEngine`
runs that loop from three parts, each picked once from :class:`EngineOptions`, the model's
replay buffer and its Q-network:

- **batches**: :class:`PerStepBatches` (one buffer draw per gradient step: the reference),
  :class:`PhaseBatches` (uniform replay: one draw of the whole phase and one target-network pass
  over it, :func:`phase_minibatches`) or :class:`PrioritizedBatches` (sum-tree draws with
  importance weights, priorities updated after each step);
- **gradients**: :class:`AutogradGradients` (the algorithm's own loss and ``backward()``: the
  reference) or :class:`ManualGradients` (:class:`~rlkit.dqn.mlp_update.MlpUpdate`, the backward
  pass of an MLP Q-network written out);
- **optimizer step**: :class:`PlainStep` (``clip_grad_norm_`` then ``optimizer.step()``: the
  reference) or :class:`LeanStep` (:class:`LeanFusedAdam`: the same arithmetic in one call);
- **tally** of what the phase logs and guards (mean loss, largest |Q|, clip count):
  :class:`StepTally` (accumulated every gradient step: the reference) or :class:`PhaseTally`
  (the written-out path: each step's Q-values and targets kept, reduced once at the phase's end;
  the per-sample loss is then never computed step by step, since the gradient does not need it).

``EngineOptions.reference()`` is the readable path (a CleanRL reader follows it in
:meth:`GradientEngine.run`), and the tests check each fast part against it. Which parts a
model got is ``model.engine.describe()``. Every choice computes the same update; none is a
module global.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch as th
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from rlkit.dqn.buffers import PrioritizedReplayBuffer
from rlkit.dqn.diagnostics import BatchOutput, Diagnostics, check_divergence
from rlkit.dqn.mlp_update import MlpUpdate
from rlkit.dqn.targets import LossName, elementwise_loss

if TYPE_CHECKING:
    from rlkit.dqn.algorithms import RlkitAlgorithm

MAX_PHASE_ROWS = 8192
"""At most this many replay rows are drawn at once by :func:`phase_minibatches`."""

BatchFn = Callable[[ReplayBufferSamples, "th.Tensor | None"], BatchOutput]
TargetFn = Callable[[th.Tensor], th.Tensor]


@dataclass(frozen=True)
class EngineOptions:
    """Which fast paths the gradient step may take; every combination computes the same update."""

    batched_phases: bool = True
    """Uniform replay: draw a phase's minibatches at once and run the target network once over them."""

    lean_optimizer: bool = True
    """Fused Adam: clip and step without torch.optim's per-call bookkeeping (:class:`LeanFusedAdam`)."""

    manual_backward: bool = True
    """MLP Q-networks: forward and backward written out, without autograd (:class:`MlpUpdate`)."""

    phase_tally: bool = True
    """With the written-out backward and uniform replay: the phase's logged figures reduced once (:class:`PhaseTally`)."""

    @classmethod
    def reference(cls) -> EngineOptions:
        """The plain path: per-step draws, autograd, ``clip_grad_norm_`` and ``optimizer.step()``."""
        return cls(batched_phases=False, lean_optimizer=False, manual_backward=False, phase_tally=False)


# ----------------------------------------------------------------------------------------
# Batches: where a phase's minibatches come from
# ----------------------------------------------------------------------------------------


@dataclass
class Minibatch:
    """One gradient step's replay rows; ``next_target`` when the phase already computed it."""

    data: ReplayBufferSamples
    next_target: th.Tensor | None = None
    weights: th.Tensor | None = None
    leaves: Any = None


class PerStepBatches:
    """One buffer draw per gradient step (SB3's own way; the reference)."""

    name = "per-step"

    def phase(self, model: RlkitAlgorithm, steps: int, batch_size: int, beta: float) -> Iterator[Minibatch]:
        buffer, env = model.replay_buffer, model._vec_normalize_env
        for _ in range(steps):
            yield Minibatch(buffer.sample(batch_size, env=env))  # type: ignore[union-attr]


class PhaseBatches:
    """Uniform replay: the phase's minibatches in one draw, with one target-network pass."""

    name = "phase"

    def __init__(self, target_fn: TargetFn) -> None:
        self.target_fn = target_fn

    def phase(self, model: RlkitAlgorithm, steps: int, batch_size: int, beta: float) -> Iterator[Minibatch]:
        for data, next_target in phase_minibatches(
            model.replay_buffer, steps, batch_size, self.target_fn, model._vec_normalize_env
        ):
            yield Minibatch(data, next_target)


class PrioritizedBatches:
    """Proportional prioritized replay: sum-tree draws and importance weights."""

    name = "prioritized"

    def phase(self, model: RlkitAlgorithm, steps: int, batch_size: int, beta: float) -> Iterator[Minibatch]:
        buffer = model.replay_buffer
        assert isinstance(buffer, PrioritizedReplayBuffer)
        for _ in range(steps):
            data, weights, leaves = buffer.sample_prioritized(batch_size, beta, env=model._vec_normalize_env)
            yield Minibatch(data, None, weights, leaves)


Batches = PerStepBatches | PhaseBatches | PrioritizedBatches


# ----------------------------------------------------------------------------------------
# Gradients: the loss and its gradient in ``.grad``
# ----------------------------------------------------------------------------------------


class AutogradGradients:
    """The algorithm's loss (``batch_fn``) and autograd's ``backward()`` (the reference)."""

    name = "autograd"

    def __init__(self, batch_fn: BatchFn, optimizer: th.optim.Optimizer) -> None:
        self.batch_fn = batch_fn
        self.optimizer = optimizer

    def __call__(self, batch: Minibatch, figures: bool = True) -> tuple[BatchOutput, th.Tensor | None]:
        out = self.batch_fn(batch.data, batch.next_target)
        assert out.loss is not None
        loss = weighted_mean(out.loss, batch.weights)
        self.optimizer.zero_grad()
        loss.backward()
        return out, loss


class ManualGradients:
    """The MLP Q-network's backward pass written out (:class:`MlpUpdate`), no graph recorded."""

    name = "manual"

    def __init__(self, update: MlpUpdate) -> None:
        self.update = update

    def __call__(self, batch: Minibatch, figures: bool = True) -> tuple[BatchOutput, th.Tensor | None]:
        out = self.update.step(batch.data, batch.next_target, batch.weights, figures=figures)
        return out, None if out.loss is None else weighted_mean(out.loss, batch.weights)


Gradients = AutogradGradients | ManualGradients


def weighted_mean(loss: th.Tensor, weights: th.Tensor | None) -> th.Tensor:
    return loss.mean() if weights is None else (loss * weights.reshape(-1)).mean()


# ----------------------------------------------------------------------------------------
# Optimizer steps: clip, then step
# ----------------------------------------------------------------------------------------


class PlainStep:
    """``clip_grad_norm_`` then ``optimizer.step()`` (the reference)."""

    name = "plain"

    def __init__(self, optimizer: th.optim.Optimizer, params: list[th.nn.Parameter]) -> None:
        self.optimizer, self.params = optimizer, params

    def __call__(self, max_norm: float) -> th.Tensor:
        grad_norm = th.nn.utils.clip_grad_norm_(self.params, max_norm)
        self.optimizer.step()
        return grad_norm


class LeanStep(PlainStep):
    """:class:`LeanFusedAdam` once the optimizer has state (made by a first plain step).

    Rebuilt at every phase: loading a checkpoint replaces the optimizer's state tensors.
    """

    name = "lean"

    def __init__(self, optimizer: th.optim.Optimizer, params: list[th.nn.Parameter]) -> None:
        super().__init__(optimizer, params)
        self.lean = LeanFusedAdam.create(optimizer, params)

    def __call__(self, max_norm: float) -> th.Tensor:
        if self.lean is not None:
            return self.lean.step(max_norm)
        grad_norm = super().__call__(max_norm)
        self.lean = LeanFusedAdam.create(self.optimizer, self.params)
        return grad_norm


# ----------------------------------------------------------------------------------------
# Tallies: the phase's mean loss, largest |Q| and clip count
# ----------------------------------------------------------------------------------------


class StepTally:
    """Every gradient step adds its loss, its largest |Q| and whether it clipped (the reference)."""

    name = "step"
    figures_every_step = True

    def __init__(self, device: th.device, diag: Diagnostics, max_norm: float) -> None:
        self.diag, self.max_norm = diag, max_norm
        self.loss_sum = th.zeros((), device=device)
        self.q_abs_max = th.zeros((), device=device)

    def add(self, out: BatchOutput, loss: th.Tensor | None, grad_norm: th.Tensor) -> None:
        assert loss is not None
        self.loss_sum += loss.detach()
        self.q_abs_max = th.maximum(self.q_abs_max, out.q_all.abs().max())
        self.diag.count_clip(grad_norm > self.max_norm)

    def finish(self, steps: int) -> tuple[float, float]:
        """The phase's mean loss and largest |Q| (one host sync)."""
        mean_loss, q_max = th.stack([self.loss_sum / steps, self.q_abs_max]).tolist()
        return mean_loss, q_max


class PhaseTally:
    """Keeps each step's Q-values, targets and gradient norm; reduces them once at the phase's end.

    The mean loss over the phase is the loss of all its samples at once (uniform replay, no
    weights: the same mean as averaging the steps' means), so no step computes a per-sample loss.
    Clips are counted at the phase's end, so a ``diag/clip_fraction`` logged within a phase
    counts that phase's steps in the next record.
    """

    name = "phase"
    figures_every_step = False

    def __init__(self, loss_kind: LossName, device: th.device, diag: Diagnostics, max_norm: float) -> None:
        self.loss_kind, self.diag, self.max_norm = loss_kind, diag, max_norm
        self.q_all: list[th.Tensor] = []
        self.q_taken: list[th.Tensor] = []
        self.target: list[th.Tensor] = []
        self.norms: list[th.Tensor] = []

    def add(self, out: BatchOutput, loss: th.Tensor | None, grad_norm: th.Tensor) -> None:
        self.q_all.append(out.q_all)
        self.q_taken.append(out.q_taken)
        self.target.append(out.target)
        self.norms.append(grad_norm)

    def finish(self, steps: int) -> tuple[float, float]:
        loss = elementwise_loss(th.cat(self.q_taken), th.cat(self.target), self.loss_kind).mean()
        self.diag.count_clip((th.stack(self.norms) > self.max_norm).sum(), len(self.norms))
        mean_loss, q_max = th.stack([loss, th.cat(self.q_all).abs().max()]).tolist()
        return mean_loss, q_max


# ----------------------------------------------------------------------------------------
# The engine
# ----------------------------------------------------------------------------------------


class GradientEngine:
    """A model's training phase, from parts chosen once (module docstring)."""

    def __init__(
        self,
        batches: Batches,
        gradients: Gradients,
        lean_optimizer: bool,
        params: list[th.nn.Parameter],
        phase_tally: bool = False,
    ) -> None:
        self.batches = batches
        self.gradients = gradients
        self.lean_optimizer = lean_optimizer
        self.params = params
        """The parameters the optimizer trains."""
        self.phase_tally = (
            phase_tally and isinstance(gradients, ManualGradients) and not isinstance(batches, PrioritizedBatches)
        )
        """Reduce the phase's figures once (:class:`PhaseTally`): written-out gradients, uniform replay."""

    @property
    def manual(self) -> MlpUpdate | None:
        """The written-out MLP update when that is the gradient path (action selection uses it too)."""
        return self.gradients.update if isinstance(self.gradients, ManualGradients) else None

    @classmethod
    def create(
        cls, model: RlkitAlgorithm, options: EngineOptions, batch_fn: BatchFn, target_fn: TargetFn
    ) -> GradientEngine:
        """Pick the parts for ``model`` (its buffer class, head and network) under ``options``."""
        optimizer = model.policy.optimizer
        params = [p for group in optimizer.param_groups for p in group["params"]]
        manual = MlpUpdate.create(model) if options.manual_backward and model.rlkit_algo == "dqn" else None
        gradients: Gradients = ManualGradients(manual) if manual is not None else AutogradGradients(batch_fn, optimizer)
        buffer_class = model.replay_buffer_class
        noisy = bool(getattr(model.policy, "noisy", False))
        batches: Batches
        if buffer_class is not None and issubclass(buffer_class, PrioritizedReplayBuffer):
            batches = PrioritizedBatches()
        elif (
            options.batched_phases
            and not noisy
            and not (buffer_class is not None and issubclass(buffer_class, DictReplayBuffer))
        ):
            batches = PhaseBatches(manual.target_values if manual is not None else target_fn)
        else:
            batches = PerStepBatches()
        return cls(batches, gradients, options.lean_optimizer, params, options.phase_tally)

    def describe(self) -> dict[str, str]:
        """Which part was chosen for each of the three choices."""
        return {
            "batches": self.batches.name,
            "gradients": self.gradients.name,
            "optimizer": "lean" if self.lean_optimizer else "plain",
            "tally": "phase" if self.phase_tally else "step",
        }

    def run(self, model: RlkitAlgorithm, gradient_steps: int, batch_size: int, diag: Diagnostics) -> None:
        """One training phase: for each minibatch, targets, loss, gradients, clip, step."""
        policy = model.policy
        if not isinstance(self.gradients, ManualGradients):  # the manual path calls no module
            policy.set_training_mode(True)
        model._update_learning_rate(policy.optimizer)
        if gradient_steps <= 0:
            return
        prioritized = isinstance(self.batches, PrioritizedBatches)
        beta = per_beta(model) if prioritized else 1.0
        noisy = bool(getattr(policy, "noisy", False))
        clip: float | None = getattr(model, "max_grad_norm", None)  # DQN: a float; QR-DQN: optional
        max_norm = float(clip) if clip is not None else float("inf")
        step = (LeanStep if self.lean_optimizer else PlainStep)(policy.optimizer, self.params)
        tally: StepTally | PhaseTally
        if self.phase_tally:
            assert isinstance(self.gradients, ManualGradients)
            tally = PhaseTally(self.gradients.update.loss_kind, model.device, diag, max_norm)
        else:
            tally = StepTally(model.device, diag, max_norm)
        for batch in self.batches.phase(model, gradient_steps, batch_size, beta):
            if noisy:
                policy.reset_noise()  # type: ignore[operator]
            due = diag.due(model._n_updates + 1)
            out, loss = self.gradients(batch, figures=tally.figures_every_step or due)
            grad_norm = step(max_norm)
            model._n_updates += 1
            tally.add(out, loss, grad_norm)
            if prioritized:
                assert out.td is not None
                model.replay_buffer.update_priorities(batch.leaves, out.td.abs().cpu().numpy())  # type: ignore[union-attr]
            if due:
                assert loss is not None
                diag.record(model.logger, out, loss, grad_norm, _extra_figures(model, beta if prioritized else None))
        mean_loss, q_max = tally.finish(gradient_steps)
        check_divergence(int(model.num_timesteps), mean_loss, q_max, model.divergence_q_bound)
        model.logger.record("train/n_updates", model._n_updates, exclude="tensorboard")
        model.logger.record("train/loss", mean_loss)


def per_beta(model: RlkitAlgorithm) -> float:
    """Importance-sampling exponent, annealed linearly over ``per_beta_fraction`` of the budget."""
    progress = 1.0 - float(model._current_progress_remaining)
    frac = min(1.0, progress / model.per_beta_fraction) if model.per_beta_fraction > 0 else 1.0
    return float(model.per_beta0 + (model.per_beta_final - model.per_beta0) * frac)


class LeanFusedAdam:
    """Gradient clipping and a fused Adam step on the optimizer's own state, as one small call.

    ``torch.optim.Adam(fused=True).step()`` spends most of its time for a small network in
    per-call bookkeeping (grouping tensors by device, hooks, profiler records). This does the
    same arithmetic as ``clip_grad_norm_`` followed by that step (the same ``torch._fused_adam_``
    kernel on the same ``exp_avg``/``exp_avg_sq``/``step`` state tensors), so saving, loading and
    a later plain ``optimizer.step()`` see an ordinary Adam. It applies only to a fused Adam with
    one parameter group, all its parameters trained and on one device, its state already made by
    a first ordinary step, no AMSGrad, no maximize, no differentiable mode and no hooks;
    :meth:`create` returns ``None`` otherwise.
    """

    def __init__(self, group: dict[str, Any], params: list[th.nn.Parameter], state: list[dict[str, Any]]) -> None:
        self.group = group
        self.params = params
        self.exp_avgs = [s["exp_avg"] for s in state]
        self.exp_avg_sqs = [s["exp_avg_sq"] for s in state]
        self.steps = [s["step"] for s in state]
        self.beta1, self.beta2 = group["betas"]

    @classmethod
    def create(cls, optimizer: th.optim.Optimizer, params: list[th.nn.Parameter]) -> LeanFusedAdam | None:
        if type(optimizer) is not th.optim.Adam or len(optimizer.param_groups) != 1:
            return None
        group = optimizer.param_groups[0]
        flags = ("amsgrad", "maximize", "differentiable", "capturable", "decoupled_weight_decay")
        if not group.get("fused") or any(group.get(flag) for flag in flags) or isinstance(group["lr"], th.Tensor):
            return None
        if list(group["params"]) != list(params) or len({p.device for p in params}) != 1:
            return None
        if optimizer._optimizer_step_pre_hooks or optimizer._optimizer_step_post_hooks:
            return None
        state = [optimizer.state.get(p, {}) for p in params]
        if not all({"exp_avg", "exp_avg_sq", "step"} <= set(s) for s in state):
            return None  # the first ordinary step creates the state
        return cls(group, params, state)

    def step(self, max_norm: float) -> th.Tensor:
        """Clip the gradients to ``max_norm`` (as ``clip_grad_norm_``), take one Adam step; the norm."""
        grads = [p.grad for p in self.params]
        if any(g is None for g in grads):
            raise RuntimeError("LeanFusedAdam: a trained parameter has no gradient")
        total = th.linalg.vector_norm(th.stack(th._foreach_norm(grads)))  # type: ignore[arg-type]
        th._foreach_mul_(grads, th.clamp(max_norm / (total + 1e-6), max=1.0))  # type: ignore[arg-type]
        th._foreach_add_(self.steps, 1)
        group = self.group
        th._fused_adam_(
            self.params,  # type: ignore[arg-type]
            grads,  # type: ignore[arg-type]
            self.exp_avgs,
            self.exp_avg_sqs,
            [],
            self.steps,
            amsgrad=False,
            lr=float(group["lr"]),
            beta1=self.beta1,
            beta2=self.beta2,
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=False,
            grad_scale=None,
            found_inf=None,
        )
        return total


def phase_minibatches(
    buffer: Any,
    gradient_steps: int,
    batch_size: int,
    target_fn: Callable[[th.Tensor], th.Tensor],
    env: VecNormalize | None = None,
) -> Iterator[tuple[ReplayBufferSamples, th.Tensor]]:
    """A training phase's minibatches drawn at once, each with its target network output.

    Uniform replay draws every index independently, so one draw of ``gradient_steps * batch_size``
    rows split into consecutive minibatches is the same distribution as one draw per step (with
    one env and SB3's buffer it is even the same random stream, hence the same minibatches). The
    target network does not change within a training phase (SB3 syncs it between env steps), so
    its values for all minibatches come from one forward pass. At most :data:`MAX_PHASE_ROWS` rows
    are drawn at a time.
    """
    per_draw = max(1, MAX_PHASE_ROWS // batch_size)
    done = 0
    while done < gradient_steps:
        n = min(per_draw, gradient_steps - done)
        data = buffer.sample(n * batch_size, env=env)
        with th.no_grad():
            next_target = target_fn(data.next_observations)
        for k in range(n):
            rows = slice(k * batch_size, (k + 1) * batch_size)
            yield ReplayBufferSamples(*(None if t is None else t[rows] for t in data)), next_target[rows]  # type: ignore[arg-type]
        done += n


def _extra_figures(model: RlkitAlgorithm, beta: float | None) -> dict[str, float]:
    buffer: Any = model.replay_buffer
    figures = {
        "target_syncs": float(model._n_calls // max(model.target_update_interval // model.n_envs, 1)),
        "epsilon": float(model.exploration_rate),
        "buffer_fill": buffer.size() / buffer.buffer_size,
    }
    if beta is not None:
        figures["per_beta"] = beta
        figures["per_max_priority"] = float(buffer.max_priority)
    return figures

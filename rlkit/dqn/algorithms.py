"""``RlkitDQN`` and ``RlkitQRDQN``: SB3's DQN and sb3-contrib's QR-DQN with a richer ``train()``.

Only ``train()`` (and, for NoisyNet, ``_on_step``) is overridden; rollouts, schedules, target
syncs, saving and loading are the parents'. The switches are plain attributes, so SB3's
``save``/``load`` store and restore them. Per gradient step the loop:

1. samples a batch (proportionally to priority with prioritized replay, plus IS weights),
2. computes targets (Double DQN optional), the per-sample loss (Huber or MSE; quantile Huber for
   QR-DQN), weights and averages it, steps the optimizer with gradient clipping,
3. updates priorities from the TD errors, and every ``diagnostics_interval`` steps logs ``diag/``.

After the phase, one host sync fetches the mean loss and the largest |Q| for the divergence guard.

Speed (same algorithm, see ``bench/throughput.py`` and ``tests/test_dqn_speed.py``): with uniform
replay a phase's minibatches are drawn at once and the target network runs once over all of them
(:func:`phase_minibatches`); the optimizer is a fused Adam stepped by :class:`LeanFusedAdam`;
``RlkitDQN.predict`` has a lean epsilon-greedy path for batches of Box observations.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import QRDQN
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from rlkit.dqn.buffers import FrameReplayBuffer, PrioritizedReplayBuffer
from rlkit.dqn.diagnostics import BatchOutput, Diagnostics, check_divergence
from rlkit.dqn.mlp_update import MlpUpdate
from rlkit.dqn.targets import LossName, elementwise_loss, quantile_huber_per_sample, quantile_td_targets, td_targets
from rlkit.threads import ThreadTuner

# Attributes rebuilt by _setup_model, never saved (so a vanilla model stays loadable by plain SB3).
_RUNTIME = ["_diag", "_trained_params", "_mlp_update", "_thread_tuner"]

# Uniform replay: draw a training phase's minibatches at once and run the target network once
# over them (see phase_minibatches). False gives the per-step path (benchmarks and tests).
BATCHED_PHASES = True
MAX_PHASE_ROWS = 8192
# Fused Adam: clip and step without torch.optim's per-call bookkeeping (see LeanFusedAdam).
LEAN_OPTIMIZER_STEP = True
# MLP Q-networks: forward and backward written out, without autograd (see rlkit.dqn.mlp_update).
MANUAL_MLP_BACKWARD = True

BatchFn = Callable[[ReplayBufferSamples, th.Tensor | None], BatchOutput]


def extension_kwargs(
    *,
    double_q: bool = False,
    loss: LossName = "huber",
    per_beta0: float = 0.4,
    per_beta_final: float = 1.0,
    per_beta_fraction: float = 1.0,
    diagnostics_interval: int = 100,
    divergence_q_bound: float = 1e6,
) -> dict[str, Any]:
    """The switches both classes take, with their defaults."""
    return {
        "double_q": double_q,
        "loss": loss,
        "per_beta0": per_beta0,
        "per_beta_final": per_beta_final,
        "per_beta_fraction": per_beta_fraction,
        "diagnostics_interval": diagnostics_interval,
        "divergence_q_bound": divergence_q_bound,
    }


class _Extensions:
    """The switches as plain attributes (JSON-serialisable, so SB3 saves and restores them)."""

    double_q: bool
    loss_kind: LossName
    per_beta0: float
    per_beta_final: float
    per_beta_fraction: float
    diagnostics_interval: int
    divergence_q_bound: float
    rlkit_algo: str

    algo_name: str
    """``dqn`` or ``qrdqn``: saved with the model so loading picks the right class."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        options = {key: kwargs.pop(key) for key in list(kwargs) if key in extension_kwargs()}
        self._set_extensions(self.algo_name, options)
        super().__init__(*args, **kwargs)

    def _setup_model(self) -> None:
        model: Any = self
        _setup_with_per(super()._setup_model, model)  # type: ignore[misc]  # the SB3 class after this mixin
        self._diag = Diagnostics(self.diagnostics_interval, model.device)
        self._trained_params = [p for group in model.policy.optimizer.param_groups for p in group["params"]]
        self._mlp_update = MlpUpdate.create(model) if self.algo_name == "dqn" else None
        self._thread_tuner: ThreadTuner | None = None  # set by rlkit.model.attach_thread_tuner

    def _setup_learn(self, *args: Any, **kwargs: Any) -> Any:
        if self._thread_tuner is not None:
            self._thread_tuner.restart()  # the pause before this learn() call is no training cycle
        return super()._setup_learn(*args, **kwargs)  # type: ignore[misc]

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), *_RUNTIME]  # type: ignore[misc]

    def _store_transition(
        self,
        replay_buffer: Any,
        buffer_action: np.ndarray,
        new_obs: Any,
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """SB3's ``_store_transition``; for a :class:`FrameReplayBuffer` without SB3's defensive copy.

        SB3 deep-copies the whole next observation batch before ``add``; the frame buffer copies
        what it keeps itself, so only the rows of episode ends are replaced, in a copy made then.
        """
        model: Any = self
        if not isinstance(replay_buffer, FrameReplayBuffer) or model._vec_normalize_env is not None:
            super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)  # type: ignore[misc]
            return
        next_obs = new_obs
        ends = [i for i, done in enumerate(dones) if done and infos[i].get("terminal_observation") is not None]
        if ends:
            next_obs = np.array(new_obs)
            for i in ends:
                next_obs[i] = infos[i]["terminal_observation"]
        model._last_original_obs = model._last_obs
        replay_buffer.add(model._last_original_obs, next_obs, buffer_action, reward, dones, infos)
        model._last_obs = new_obs

    def _set_extensions(self, algo: str, options: dict[str, Any]) -> None:
        settings = extension_kwargs(**options)
        self.rlkit_algo = algo
        self.double_q = bool(settings["double_q"])
        self.loss_kind = settings["loss"]
        self.per_beta0 = float(settings["per_beta0"])
        self.per_beta_final = float(settings["per_beta_final"])
        self.per_beta_fraction = float(settings["per_beta_fraction"])
        self.diagnostics_interval = int(settings["diagnostics_interval"])
        self.divergence_q_bound = float(settings["divergence_q_bound"])


def _setup_with_per(setup: Callable[[], None], model: OffPolicyAlgorithm) -> None:
    """Run SB3's ``_setup_model``; a prioritized buffer gets n_steps and gamma itself."""
    cls = model.replay_buffer_class
    if cls is not None and issubclass(cls, PrioritizedReplayBuffer):
        model.replay_buffer_kwargs.update({"n_steps": model.n_steps, "gamma": model.gamma})
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is ignored because a custom `replay_buffer_class`")
            setup()
    else:
        setup()


def per_beta(model: Any) -> float:
    """Importance-sampling exponent, annealed linearly over ``per_beta_fraction`` of the budget."""
    progress = 1.0 - float(model._current_progress_remaining)
    frac = min(1.0, progress / model.per_beta_fraction) if model.per_beta_fraction > 0 else 1.0
    return float(model.per_beta0 + (model.per_beta_final - model.per_beta0) * frac)


def run_gradient_steps(
    model: Any,
    gradient_steps: int,
    batch_size: int,
    batch_fn: BatchFn,
    target_fn: Callable[[th.Tensor], th.Tensor] | None = None,
    manual: MlpUpdate | None = None,
) -> None:
    """The shared training phase of :class:`RlkitDQN` and :class:`RlkitQRDQN` (see module docstring).

    ``batch_fn(data, next_target)`` computes one gradient step's :class:`BatchOutput`;
    ``next_target`` is the target network's output on ``data.next_observations``, or ``None`` to
    let ``batch_fn`` compute it. With ``target_fn`` and uniform replay (no priorities, no noisy
    target network) the phase is batched: see :func:`phase_minibatches`. With ``manual`` the
    loss and gradients come from :class:`~rlkit.dqn.mlp_update.MlpUpdate` instead of ``batch_fn``
    and autograd (the same step, without the graph).
    """
    tuner: ThreadTuner | None = model._thread_tuner
    if tuner is not None:  # times the cycle that just ended, sets the threads for this one
        model.logger.record("time/torch_threads", tuner.cycle(int(model.num_timesteps)))
    policy = model.policy
    if manual is None:  # the manual path calls no module, so their mode does not matter
        policy.set_training_mode(True)
    model._update_learning_rate(policy.optimizer)
    if gradient_steps <= 0:
        return
    buffer = model.replay_buffer
    prioritized = isinstance(buffer, PrioritizedReplayBuffer)
    beta = per_beta(model) if prioritized else 1.0
    noisy = bool(getattr(policy, "noisy", False))
    diag: Diagnostics = model._diag
    params: list[th.nn.Parameter] = model._trained_params
    optimizer = policy.optimizer
    max_norm = float(model.max_grad_norm) if model.max_grad_norm is not None else float("inf")
    loss_sum = th.zeros((), device=model.device)
    q_abs_max = th.zeros((), device=model.device)
    lean = LeanFusedAdam.create(optimizer, params) if LEAN_OPTIMIZER_STEP else None
    batched = None
    if BATCHED_PHASES and target_fn is not None and not (prioritized or noisy or isinstance(buffer, DictReplayBuffer)):
        batched = phase_minibatches(buffer, gradient_steps, batch_size, target_fn, model._vec_normalize_env)
    for _ in range(gradient_steps):
        if noisy:
            policy.reset_noise()
        weights = None
        if batched is not None:
            data, next_target = next(batched)
        elif prioritized:
            data, weights, leaves = buffer.sample_prioritized(batch_size, beta, env=model._vec_normalize_env)
            next_target = None
        else:
            data, next_target = buffer.sample(batch_size, env=model._vec_normalize_env), None
        if manual is not None:
            out = manual.step(data, next_target, weights)
            loss = _weighted_mean(out.loss, weights)
        else:
            out = batch_fn(data, next_target)
            loss = _weighted_mean(out.loss, weights)
            optimizer.zero_grad()
            loss.backward()
        if lean is not None:
            grad_norm = lean.step(max_norm)
        else:
            grad_norm = th.nn.utils.clip_grad_norm_(params, max_norm)
            optimizer.step()
            lean = LeanFusedAdam.create(optimizer, params) if LEAN_OPTIMIZER_STEP else None
        model._n_updates += 1
        loss_sum += loss.detach()
        q_abs_max = th.maximum(q_abs_max, out.q_all.abs().max())
        diag.count_clip(grad_norm > max_norm)
        if prioritized:
            buffer.update_priorities(leaves, out.td.abs().cpu().numpy())
        if diag.due(model._n_updates):
            diag.record(model.logger, out, loss, grad_norm, _extra_figures(model, beta if prioritized else None))
    mean_loss, q_max = (th.stack([loss_sum / gradient_steps, q_abs_max])).tolist()
    check_divergence(int(model.num_timesteps), mean_loss, q_max, model.divergence_q_bound)
    model.logger.record("train/n_updates", model._n_updates, exclude="tensorboard")
    model.logger.record("train/loss", mean_loss)


def _weighted_mean(loss: th.Tensor, weights: th.Tensor | None) -> th.Tensor:
    return loss.mean() if weights is None else (loss * weights.reshape(-1)).mean()


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
    its values for all minibatches come from one forward pass. At most ``MAX_PHASE_ROWS`` rows
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


def _extra_figures(model: Any, beta: float | None) -> dict[str, float]:
    buffer = model.replay_buffer
    figures = {
        "target_syncs": float(model._n_calls // max(model.target_update_interval // model.n_envs, 1)),
        "epsilon": float(model.exploration_rate),
        "buffer_fill": buffer.size() / buffer.buffer_size,
    }
    if beta is not None:
        figures["per_beta"] = beta
        figures["per_max_priority"] = float(buffer.max_priority)
    return figures


class RlkitDQN(_Extensions, DQN):
    """SB3 DQN plus Double DQN, loss choice, prioritized replay, NoisyNet, diagnostics and the guard.

    With SB3's own policy classes and replay buffers (no extension switched on) a saved model
    loads in plain ``stable_baselines3.DQN.load``.
    """

    algo_name = "dqn"

    def _on_step(self) -> None:
        super()._on_step()
        if getattr(self.policy, "noisy", False):
            self.policy.q_net.reset_noise()  # type: ignore[operator]  # fresh exploration noise every env step

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's epsilon-greedy ``predict``, with a lean path for a batch of Box observations.

        Same random draws and the same actions as SB3's; the greedy branch skips SB3's per-call
        checks and conversions and runs the Q-network under ``inference_mode``. Anything else
        (dict or single observations, NoisyNet heads) goes through SB3's own code.
        """
        space = self.observation_space
        if (
            not isinstance(observation, np.ndarray)
            or not isinstance(space, spaces.Box)
            or observation.shape[1:] != space.shape
            or getattr(self.policy, "noisy", False)
        ):
            return super().predict(observation, state, episode_start, deterministic)
        if not deterministic and np.random.rand() < self.exploration_rate:
            return np.array([self.action_space.sample() for _ in range(observation.shape[0])]), state
        manual = self._mlp_update
        if manual is None and self.policy.training:
            self.policy.set_training_mode(False)
        with th.inference_mode():
            obs = th.as_tensor(observation, device=self.device)
            q_values = manual.online.q_values(obs.float()) if manual is not None else self.q_net(obs)
            return q_values.argmax(dim=1).cpu().numpy(), state

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        manual = self._mlp_update if MANUAL_MLP_BACKWARD else None
        target_fn = manual.target_values if manual is not None else self.q_net_target
        run_gradient_steps(self, gradient_steps, batch_size, self._batch, target_fn, manual)

    def _batch(self, data: ReplayBufferSamples, next_target: th.Tensor | None = None) -> BatchOutput:
        """One gradient step's loss and figures; ``next_target`` is ``q_net_target(next_obs)`` when known."""
        discounts = data.discounts if data.discounts is not None else self.gamma
        obs, next_obs = data.observations, data.next_observations
        if self.double_q and isinstance(obs, th.Tensor) and isinstance(next_obs, th.Tensor):
            # One forward pass over both halves; the next-state half only picks actions (no gradient).
            both = self.q_net(th.cat([obs, next_obs]))
            q_all, next_online = both[: obs.shape[0]], both[obs.shape[0] :].detach()
        else:
            q_all = self.q_net(obs)
            next_online = self.q_net(next_obs).detach() if self.double_q else None
        with th.no_grad():
            if next_target is None:
                next_target = self.q_net_target(next_obs)
            target = td_targets(data.rewards, data.dones, discounts, next_target, next_online)
        q_taken = q_all.gather(1, data.actions.long())
        loss = elementwise_loss(q_taken, target, self.loss_kind)
        q_taken = q_taken.detach()
        return BatchOutput(loss, (target - q_taken).reshape(-1), q_all.detach(), q_taken, target)


class RlkitQRDQN(_Extensions, QRDQN):
    """sb3-contrib QR-DQN with Double targets, prioritized replay, diagnostics and the guard.

    Q-values in diagnostics are quantile means; the TD error is the difference of means.
    """

    algo_name = "qrdqn"

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        run_gradient_steps(self, gradient_steps, batch_size, self._batch, self.quantile_net_target)

    def _batch(self, data: ReplayBufferSamples, next_target: th.Tensor | None = None) -> BatchOutput:
        """One gradient step's loss and figures; ``next_target`` is the target quantiles when known."""
        discounts = data.discounts if data.discounts is not None else self.gamma
        with th.no_grad():
            if next_target is None:
                next_target = self.quantile_net_target(data.next_observations)
            next_online = self.quantile_net(data.next_observations) if self.double_q else None
            target = quantile_td_targets(data.rewards, data.dones, discounts, next_target, next_online)
        current_all = self.quantile_net(data.observations)  # (batch, n_quantiles, n_actions)
        index = data.actions.long()[..., None].expand(-1, self.n_quantiles, 1)
        current = current_all.gather(2, index).squeeze(2)
        loss = quantile_huber_per_sample(current, target)
        q_taken = current.detach().mean(dim=1, keepdim=True)
        target_mean = target.mean(dim=1, keepdim=True)
        return BatchOutput(
            loss, (target_mean - q_taken).reshape(-1), current_all.detach().mean(dim=1), q_taken, target_mean
        )

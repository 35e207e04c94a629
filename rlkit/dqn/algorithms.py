"""``RlkitDQN`` and ``RlkitQRDQN``: SB3's DQN and sb3-contrib's QR-DQN with a richer ``train()``.

Rollouts, schedules, target syncs, saving and loading are the SB3 parents'. What rlkit adds is
in :class:`RlkitAlgorithm`: the extension switches, each a documented keyword parameter saved
with the model as a plain attribute (so SB3's ``save``/``load`` restore it), and ``train()``,
which hands each training phase to the model's :class:`~rlkit.dqn.engine.GradientEngine` (chosen
once in ``_setup_model``). Per gradient step the engine:

1. samples a batch (proportionally to priority with prioritized replay, plus IS weights),
2. computes targets (Double DQN optional), the per-sample loss (Huber or MSE; quantile Huber for
   QR-DQN), weights and averages it, steps the optimizer with gradient clipping,
3. updates priorities from the TD errors, and every ``diagnostics_interval`` steps logs ``diag/``.

After the phase, one host sync fetches the mean loss and the largest |Q| for the divergence guard.
Runtime-only state (the engine, its options, the diagnostics accumulator) is never saved
(``_excluded_save_params``), so a vanilla model stays loadable by plain SB3.

Adding a switch: a field in :class:`rlkit.config.schema.Preset` and a keyword parameter of
:meth:`RlkitAlgorithm.__init__` of the same name (used where it acts). ``rlkit.training.factory``
passes every such parameter from the preset by name (:func:`switch_names`).
"""

from __future__ import annotations

import inspect
import warnings
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib import QRDQN
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import ActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.type_aliases import ReplayBufferSamples, RolloutReturn, TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.vec_env import VecEnv

from rlkit.dqn.buffers import PrioritizedReplayBuffer
from rlkit.dqn.diagnostics import BatchOutput, Diagnostics
from rlkit.dqn.engine import EngineOptions, GradientEngine
from rlkit.dqn.targets import LossName, elementwise_loss, quantile_huber_per_sample, quantile_td_targets, td_targets

# Attributes rebuilt by _setup_model (or given at run time), never saved.
_RUNTIME = ["engine", "engine_options", "_diag"]


class RlkitAlgorithm(OffPolicyAlgorithm):
    """What :class:`RlkitDQN` and :class:`RlkitQRDQN` add to their SB3 class (placed before it)."""

    algo_name = "dqn"
    """``dqn`` or ``qrdqn``: saved with the model (as ``rlkit_algo``) so loading picks the right class."""

    engine: GradientEngine
    _diag: Diagnostics
    # Set by both SB3 parents (DQN and QRDQN), read by the engine.
    target_update_interval: int
    exploration_rate: float
    _n_calls: int

    def __init__(
        self,
        policy: Any,
        env: Any,
        *,
        double_q: bool = False,
        loss: LossName = "huber",
        per_beta0: float = 0.4,
        per_beta_final: float = 1.0,
        per_beta_fraction: float = 1.0,
        diagnostics_interval: int = 100,
        divergence_q_bound: float = 1e6,
        engine: EngineOptions | None = None,
        **sb3_kwargs: Any,
    ) -> None:
        """SB3's parameters (``sb3_kwargs``: ``learning_rate``, ``buffer_size``, ...) plus rlkit's:

        :param double_q: Double DQN targets: the online network picks the next action, the target
            network values it.
        :param loss: ``huber`` (SB3's smooth L1) or ``mse``; QR-DQN always uses the quantile Huber loss.
        :param per_beta0: prioritized replay's importance-sampling exponent at the start.
        :param per_beta_final: the exponent reached after ``per_beta_fraction`` of the budget.
        :param per_beta_fraction: fraction of the budget over which beta anneals linearly.
        :param diagnostics_interval: log ``diag/`` figures every this many gradient steps (0: never).
        :param divergence_q_bound: stop with :class:`~rlkit.dqn.diagnostics.DivergenceError` when
            any |Q| exceeds this or the loss is not finite.
        :param engine: which fast paths the gradient step may take (runtime only, never saved);
            ``None`` is :class:`~rlkit.dqn.engine.EngineOptions`' defaults.
        """
        self.rlkit_algo = self.algo_name
        self.double_q = bool(double_q)
        self.loss_kind: LossName = loss
        self.per_beta0 = float(per_beta0)
        self.per_beta_final = float(per_beta_final)
        self.per_beta_fraction = float(per_beta_fraction)
        self.diagnostics_interval = int(diagnostics_interval)
        self.divergence_q_bound = float(divergence_q_bound)
        self.engine_options = engine or EngineOptions()
        super().__init__(policy, env, **sb3_kwargs)

    def _setup_model(self) -> None:
        cls = self.replay_buffer_class
        if cls is not None and issubclass(cls, PrioritizedReplayBuffer):
            # The prioritized buffer does its own n-step returns: it needs n_steps and gamma.
            self.replay_buffer_kwargs.update({"n_steps": self.n_steps, "gamma": self.gamma})
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*is ignored because a custom `replay_buffer_class`")
                super()._setup_model()
        else:
            super()._setup_model()
        if not hasattr(self, "engine_options"):  # loading: __init__ ran with _init_setup_model=False
            self.engine_options = EngineOptions()
        self._diag = Diagnostics(self.diagnostics_interval, self.device)
        self.engine = GradientEngine.create(self, self.engine_options, self._batch, self._target_network())

    def use_engine(self, options: EngineOptions) -> None:
        """Rebuild the gradient-step engine with other fast paths (benchmarks and tests)."""
        self.engine_options = options
        self.engine = GradientEngine.create(self, options, self._batch, self._target_network())

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), *_RUNTIME]

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.engine.run(self, gradient_steps, batch_size, self._diag)

    def _batch(self, data: ReplayBufferSamples, next_target: th.Tensor | None = None) -> BatchOutput:
        """One gradient step's loss and figures (autograd); ``next_target`` when the phase computed it."""
        raise NotImplementedError

    def _target_network(self) -> Any:
        """The target network, called on next observations (one pass per phase when batched)."""
        raise NotImplementedError

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        train_freq: TrainFreq,
        replay_buffer: ReplayBuffer,
        action_noise: ActionNoise | None = None,
        learning_starts: int = 0,
        log_interval: int | None = None,
    ) -> RolloutReturn:
        """SB3's rollout, the last one shortened so that ``learn(N)`` stops at exactly N steps.

        SB3 collects whole ``train_freq`` rollouts and so overshoots a budget that is not a
        multiple of ``train_freq * n_envs``; here the final rollout takes only the steps left (with
        several envs, rounded up to a whole step of every env). Its training phase then takes
        the gradient steps of the steps collected (``gradient_steps: -1``) or its usual count.
        """
        left = self._total_timesteps - self.num_timesteps
        per_rollout = train_freq.frequency * env.num_envs
        if train_freq.unit == TrainFrequencyUnit.STEP and 0 < left < per_rollout:
            train_freq = TrainFreq(-(-left // env.num_envs), TrainFrequencyUnit.STEP)
        return super().collect_rollouts(
            env, callback, train_freq, replay_buffer, action_noise, learning_starts, log_interval
        )

    def _store_transition(
        self,
        replay_buffer: Any,
        buffer_action: np.ndarray,
        new_obs: Any,
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """SB3's ``_store_transition`` without its defensive copy for array observations.

        SB3 deep-copies the whole next observation batch before ``add`` so that it can write the
        terminal observations of episode ends into it; every replay buffer copies what it keeps
        itself (SB3's with ``np.array``, the frame buffer row by row), so the copy is made only
        when an episode ended, and only then are its rows replaced. Dict observations and
        VecNormalize take SB3's own path.
        """
        if not isinstance(new_obs, np.ndarray) or self._vec_normalize_env is not None:
            super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)
            return
        next_obs = new_obs
        ends = [i for i, done in enumerate(dones) if done and infos[i].get("terminal_observation") is not None]
        if ends:
            next_obs = np.array(new_obs)
            for i in ends:
                next_obs[i] = infos[i]["terminal_observation"]
        self._last_original_obs = self._last_obs
        replay_buffer.add(self._last_original_obs, next_obs, buffer_action, reward, dones, infos)
        self._last_obs = new_obs


def switch_names() -> list[str]:
    """rlkit's switches: the keyword parameters of :meth:`RlkitAlgorithm.__init__` (``engine`` aside).

    Each is also a :class:`~rlkit.config.schema.Preset` field of the same name.
    """
    params = inspect.signature(RlkitAlgorithm.__init__).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "engine"]


class RlkitDQN(RlkitAlgorithm, DQN):
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
        manual = self.engine.manual
        if manual is None and self.policy.training:
            self.policy.set_training_mode(False)
        with th.inference_mode():
            obs = th.as_tensor(observation, device=self.device)
            q_values = manual.online.q_values(obs.float()) if manual is not None else self.q_net(obs)
            return q_values.argmax(dim=1).cpu().numpy(), state

    def _target_network(self) -> Any:
        return self.q_net_target

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


class RlkitQRDQN(RlkitAlgorithm, QRDQN):
    """sb3-contrib QR-DQN with Double targets, prioritized replay, diagnostics and the guard.

    Q-values in diagnostics are quantile means; the TD error is the difference of means.
    """

    algo_name = "qrdqn"

    def _target_network(self) -> Any:
        return self.quantile_net_target

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

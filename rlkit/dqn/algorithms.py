"""``RlkitDQN`` and ``RlkitQRDQN``: SB3's DQN and sb3-contrib's QR-DQN with rlkit's ``train()``.

Rollouts, schedules, target syncs, saving and loading are the SB3 parents'. What rlkit adds is in
:class:`RlkitAlgorithm`: its switches, each a keyword argument saved with the model as a plain
attribute (so SB3's ``save``/``load`` restore it), and ``train()``, which hands each phase to a
:class:`~rlkit.dqn.engine.GradientEngine` over the model's :class:`~rlkit.dqn.interface.Networks`:

1. sample a batch (proportionally to priority with prioritized replay, plus IS weights),
2. :func:`~rlkit.dqn.loss.td_loss` (Double DQN, n-step, Huber/MSE, C51, QR-DQN), weighted mean,
   gradients, clipping, optimizer step,
3. priorities from the loss, and every ``diagnostics_interval`` steps the ``diag/`` figures;

then the divergence guard on the phase's mean loss and largest |Q|. Runtime-only state (the
engine and its options, the diagnostics accumulator) is never saved (``_excluded_save_params``),
so a vanilla model stays loadable by plain SB3 (and a vanilla QR-DQN by sb3-contrib).

The switches are the fields of :class:`~rlkit.dqn.loss.LossOptions` (documented there) and the
keyword-only parameters of :meth:`RlkitAlgorithm.__init__`: :func:`switch_names`.
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
from stable_baselines3.common.type_aliases import RolloutReturn, TrainFreq, TrainFrequencyUnit
from stable_baselines3.common.vec_env import VecEnv

from rlkit.dqn import private
from rlkit.dqn.diagnostics import Diagnostics, check_divergence
from rlkit.dqn.engine import EngineOptions, GradientEngine
from rlkit.dqn.interface import Networks
from rlkit.dqn.loss import Head, LossOptions
from rlkit.dqn.mlp import MlpNet
from rlkit.replay.buffers import PrioritizedReplayBuffer

_RUNTIME = ["_engine", "_engine_key", "_forward", "engine_options", "_diag", "_resume_pending"]
"""Attributes rebuilt by ``_setup_model`` (or given at run time), never saved."""
_RENAMED = {"loss_kind": "loss"}
"""Attributes saved under another name by rlkit before 0.2 (read when an old model is loaded)."""


class RlkitAlgorithm(OffPolicyAlgorithm):
    """What :class:`RlkitDQN` and :class:`RlkitQRDQN` add to their SB3 class (placed before it)."""

    algo_name = "dqn"
    """``dqn`` or ``qrdqn``: saved with the model (as ``rlkit_algo``) so loading picks the right class."""

    loss_kind: str | None = None  # models saved before 0.2 name the loss so (see _RENAMED)
    # Set by both SB3 parents (DQN and QRDQN).
    target_update_interval: int
    exploration_rate: float
    _n_calls: int

    def __init__(
        self,
        policy: Any,
        env: Any,
        *args: Any,
        per_beta0: float = 0.4,
        per_beta_final: float = 1.0,
        per_beta_fraction: float = 1.0,
        diagnostics_interval: int = 100,
        divergence_q_bound: float = 1e6,
        engine: EngineOptions | None = None,
        **kwargs: Any,
    ) -> None:
        """SB3's parameters (positional and keyword: ``learning_rate``, ``buffer_size``, ...), the
        loss switches (:class:`~rlkit.dqn.loss.LossOptions`' fields, by keyword), and rlkit's:

        :param per_beta0: prioritized replay's importance-sampling exponent at the start.
        :param per_beta_final: the exponent reached after ``per_beta_fraction`` of the budget.
        :param per_beta_fraction: fraction of the budget over which beta anneals linearly.
        :param diagnostics_interval: log ``diag/`` figures every this many gradient steps (0: never).
        :param divergence_q_bound: stop with :class:`~rlkit.dqn.diagnostics.DivergenceError` when
            any |Q| exceeds this or the loss is not finite.
        :param engine: which fast parts the gradient step may take (runtime only, never saved);
            ``None`` is :class:`~rlkit.dqn.engine.EngineOptions`' defaults.
        """
        self.rlkit_algo = self.algo_name
        for name, value in vars(LossOptions(**{k: kwargs.pop(k) for k in LossOptions.names() if k in kwargs})).items():
            setattr(self, name, value)
        self.per_beta0 = float(per_beta0)
        self.per_beta_final = float(per_beta_final)
        self.per_beta_fraction = float(per_beta_fraction)
        self.diagnostics_interval = int(diagnostics_interval)
        self.divergence_q_bound = float(divergence_q_bound)
        self.engine_options = engine or EngineOptions()
        super().__init__(policy, env, *args, **kwargs)

    def _setup_model(self) -> None:
        for old, new in _RENAMED.items():
            if self.__dict__.get(old) is not None:  # a model saved before 0.2
                setattr(self, new, self.__dict__.pop(old))
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
        self._engine: GradientEngine | None = None
        self._engine_key: tuple[Any, ...] = ()
        self._forward: tuple[Any, MlpNet | None] = (None, None)
        self._resume_pending: tuple[np.ndarray, np.ndarray, int] | None = None

    def resume_with(self, actions: np.ndarray, buffer_actions: np.ndarray, rollout_steps_before: int) -> None:
        """Continue a run inside the step a checkpoint interrupted (``rlkit.training.resume_state``).

        The next rollout first plays ``actions`` (their random draws are spent already) and takes
        the steps the interrupted rollout had left after its first ``rollout_steps_before``, so
        gradient steps and target updates fall where they would have.
        """
        self._resume_pending = (actions, buffer_actions, rollout_steps_before)

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1) -> Any:
        pending = getattr(self, "_resume_pending", None)
        if pending is not None and pending[0] is not None:
            actions, buffer_actions, before = pending
            self._resume_pending = (None, None, before)  # type: ignore[assignment]
            return actions, buffer_actions
        return super()._sample_action(learning_starts, action_noise, n_envs)

    @property
    def loss_options(self) -> LossOptions:
        return LossOptions(**{name: getattr(self, name) for name in LossOptions.names()})

    def networks(self) -> Networks:
        """The networks, head and options the engine trains (read afresh: ``policy`` may be replaced)."""
        raise NotImplementedError

    @property
    def engine(self) -> GradientEngine:
        """The gradient engine of the current policy and optimizer (rebuilt when either is replaced)."""
        nets = self.networks()
        key = (
            id(nets.online),
            id(nets.target),
            id(nets.optimizer),
            nets.options,
            nets.head.kind,
            type(self.replay_buffer),
        )
        if self._engine is None or self._engine_key != key:
            self._engine = GradientEngine.create(nets, self.replay_buffer, self.engine_options)
            self._engine_key = key
        return self._engine

    def use_engine(self, options: EngineOptions) -> None:
        """Rebuild the gradient engine with other fast parts (benchmarks and tests)."""
        self.engine_options = options
        self._engine = None

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), *_RUNTIME]

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        self.policy.set_training_mode(True)
        self._update_learning_rate(self.policy.optimizer)
        if gradient_steps <= 0:
            return
        beta = self.per_beta()
        mean_loss, q_max = self.engine.run(
            self.replay_buffer,
            gradient_steps,
            batch_size,
            beta=beta,
            env=self._vec_normalize_env,
            diag=self._diag,
            logger=self.logger,
            first_update=self._n_updates,
            figures=lambda: self._figures(beta),
        )
        self._n_updates += gradient_steps
        check_divergence(int(self.num_timesteps), mean_loss, q_max, self.divergence_q_bound)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/loss", mean_loss)

    def per_beta(self) -> float:
        """Importance-sampling exponent, annealed linearly over ``per_beta_fraction`` of the budget."""
        progress = 1.0 - float(self._current_progress_remaining)
        frac = min(1.0, progress / self.per_beta_fraction) if self.per_beta_fraction > 0 else 1.0
        return float(self.per_beta0 + (self.per_beta_final - self.per_beta0) * frac)

    def _figures(self, beta: float) -> dict[str, float]:
        buffer: Any = self.replay_buffer
        figures = {
            "target_syncs": float(self._n_calls // max(self.target_update_interval // self.n_envs, 1)),
            "epsilon": float(self.exploration_rate),
            "buffer_fill": buffer.size() / buffer.buffer_size,
        }
        if isinstance(buffer, PrioritizedReplayBuffer):
            figures.update(per_beta=beta, per_max_priority=float(buffer.max_priority))
        return figures

    def _on_step(self) -> None:
        super()._on_step()
        networks = getattr(self.policy, "networks", None)  # rlkit's policies (SB3's have no noise)
        if networks is not None and networks()[0].noisy:
            networks()[0].reset_noise()  # fresh exploration noise every env step

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's epsilon-greedy ``predict`` (the same draws and actions) from the current policy.

        A batch of Box observations skips ``policy.predict``'s per-call checks and conversions.
        """
        space = self.observation_space
        batch = isinstance(observation, np.ndarray) and isinstance(space, spaces.Box)
        if not batch or observation.shape[1:] != space.shape:  # type: ignore[union-attr]
            return super().predict(observation, state, episode_start, deterministic)
        if not deterministic and np.random.rand() < self.exploration_rate:
            return np.array([self.action_space.sample() for _ in range(len(observation))]), state
        if self.policy.training:
            self.policy.set_training_mode(False)
        with th.inference_mode():
            obs = th.as_tensor(observation, device=self.device)
            return self._greedy(obs, deterministic).cpu().numpy(), state

    def _greedy(self, obs: th.Tensor, deterministic: bool) -> th.Tensor:
        """The current policy's greedy actions: its Q-network written out when that is a ReLU MLP of Q-values
        (:class:`~rlkit.dqn.mlp.MlpNet`: the same products as its modules without their per-call cost),
        else the policy's own ``_predict``. The network is the policy's at this call (parsed once per network)."""
        q_net = getattr(self.policy, "q_net", None)
        if q_net is not None and self.engine_options.manual_backward:
            if self._forward[0] is not q_net:
                self._forward = (q_net, MlpNet.of(q_net))
            if self._forward[1] is not None:
                return self._forward[1].q_values(obs.float()).argmax(dim=1)
        return private.greedy_actions(self.policy, obs, deterministic)

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
        several envs, rounded up to a whole step of every env). Its training phase then takes the
        gradient steps of the steps collected (``gradient_steps: -1``) or its usual count.
        """
        before = 0
        if self._resume_pending is not None:  # the first rollout of an exact resume: the interrupted one's rest
            before = self._resume_pending[2]
            if train_freq.unit == TrainFrequencyUnit.STEP and before > 0:
                train_freq = TrainFreq(max(1, train_freq.frequency - before), TrainFrequencyUnit.STEP)
        left = self._total_timesteps - self.num_timesteps
        if train_freq.unit == TrainFrequencyUnit.STEP and 0 < left < train_freq.frequency * env.num_envs:
            train_freq = TrainFreq(-(-left // env.num_envs), TrainFrequencyUnit.STEP)
        rollout = super().collect_rollouts(
            env, callback, train_freq, replay_buffer, action_noise, learning_starts, log_interval
        )
        if self._resume_pending is not None:
            self._resume_pending = None
            rollout = rollout._replace(episode_timesteps=rollout.episode_timesteps + before * env.num_envs)
        return rollout

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
        terminal observations of episode ends into it; every replay buffer copies what it keeps,
        so the copy is made only when an episode ended. Dict observations and VecNormalize take
        SB3's own path.
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
    """rlkit's switches: :class:`~rlkit.dqn.loss.LossOptions`' fields and the keyword-only parameters
    of :meth:`RlkitAlgorithm.__init__` (``engine`` aside); each is a preset field of the same name."""
    params = inspect.signature(RlkitAlgorithm.__init__).parameters.values()
    return [*LossOptions.names(), *(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "engine")]


class RlkitDQN(RlkitAlgorithm, DQN):
    """SB3 DQN with every rlkit switch; dueling, NoisyNet and C51 heads come with rlkit's policies.

    With SB3's own policy classes and replay buffers (no extension switched on) a saved model
    loads in plain ``stable_baselines3.DQN.load``.
    """

    algo_name = "dqn"

    def networks(self) -> Networks:
        policy: Any = self.policy
        return Networks(
            policy.q_net,
            policy.q_net_target,
            getattr(policy.q_net, "head", Head()),
            self.policy.optimizer,
            self.loss_options,
            float(self.gamma),
            float(self.max_grad_norm),
            bool(getattr(policy.q_net, "noisy", False)),
        )


class RlkitQRDQN(RlkitAlgorithm, QRDQN):
    """sb3-contrib QR-DQN with every rlkit switch; dueling and NoisyNet heads come with rlkit's policies.

    Q-values in diagnostics are quantile means; the TD error is the difference of means.
    """

    algo_name = "qrdqn"

    def networks(self) -> Networks:
        clip, policy = getattr(self, "max_grad_norm", None), self.policy  # sb3-contrib's default: None
        return Networks(
            policy.quantile_net,
            policy.quantile_net_target,
            Head("qr"),
            self.policy.optimizer,
            self.loss_options,
            float(self.gamma),
            float(clip) if clip is not None else float("inf"),
            bool(getattr(policy.quantile_net, "noisy", False)),
        )

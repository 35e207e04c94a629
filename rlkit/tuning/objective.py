"""One trial, top to bottom: sample, lay over the preset, train K seeds, evaluate M times each.

The objective is the mean over the K seeds of each seed's final evaluation (deterministic
policy, separate env, SB3's ``evaluate_policy``). Seeds are trained one after the other; each
evaluation is reported to the pruner at ``step = k * budget + timesteps``, so a step always means
"seed k, after this many steps" and trials are compared like with like. Every trial records its
full configuration and seeds in ``user_attrs`` so it can be re-trained exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from stable_baselines3.common.callbacks import BaseCallback

from rlkit.errors import RlkitError
from rlkit.train import EVAL_SEED_OFFSET
from rlkit.tuning.space import SearchSpace, build_preset
from rlkit.tuning.storage import worker_name

if TYPE_CHECKING:
    import optuna
    from stable_baselines3 import DQN
    from stable_baselines3.common.vec_env import VecEnv

    from rlkit.config import Preset

Q_LIMIT = 1e6
"""|Q| above this means the network has diverged (no sane return is this large)."""


class Diverged(Exception):
    """Training blew up (NaN or exploding values); the trial is pruned with this reason."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM during a trial: the trial fails and is re-queued for the next run."""


@dataclass
class StopFlag:
    """Set by the signal handler; checked at every environment step."""

    signal: int | None = None


@dataclass
class TrialSettings:
    """What every trial of a study shares (stored with the study)."""

    base: dict[str, Any]
    """The resolved preset mapping the sampled values are laid over."""

    steps: int
    """Training budget per seed."""

    seeds: list[int]
    """Training seeds; the same for every trial (common random numbers)."""

    evals: int
    """Evaluations per seed, reported to the pruner."""

    device: str = "cpu"
    """Torch device for the trial's models."""

    progress: Any = field(default=None, repr=False)
    """Optional ``callable(trial_number, done_steps, total_steps)`` for a live display."""


def diverged(model: DQN) -> str | None:
    """Why the model has diverged, or None: NaN/inf loss, weights or Q-values, or |Q| > Q_LIMIT."""
    import torch

    logger = getattr(model, "_logger", None)  # set once learn() has started
    loss = logger.name_to_value.get("train/loss") if logger is not None else None
    if loss is not None and not math.isfinite(float(loss)):
        return f"loss is {loss}"
    for name, param in model.q_net.named_parameters():
        if not torch.isfinite(param).all():
            return f"non-finite weights in {name}"
    obs = _recent_observations(model)
    if obs is None:
        return None
    with torch.no_grad():
        q = model.q_net(obs)
    if not torch.isfinite(q).all():
        return "non-finite Q-values"
    peak = float(q.abs().max())
    if peak > Q_LIMIT:
        return f"Q-values exploded (|Q| = {peak:.3g} > {Q_LIMIT:.0e})"
    return None


def _recent_observations(model: DQN, n: int = 256) -> Any:
    """The newest ``n`` observations in the replay buffer, as a tensor, without touching any RNG.

    (Sampling the buffer would consume numpy's global RNG and change the training that follows,
    so a trial would no longer be reproduced by ``rlkit train`` of its config.)
    """
    import numpy as np

    buffer = model.replay_buffer
    observations = getattr(buffer, "observations", None)
    if buffer is None or not isinstance(observations, np.ndarray) or buffer.size() == 0:
        return None
    size = buffer.buffer_size if buffer.full else buffer.pos
    idx = np.arange(buffer.pos - min(n, size), buffer.pos) % buffer.buffer_size
    batch = observations[idx].reshape(-1, *observations.shape[2:])
    return buffer.to_torch(batch)


class TrialReporter(BaseCallback):
    """Evaluates ``evals`` times over the budget, reports to Optuna, prunes, watches for divergence."""

    def __init__(
        self,
        trial: optuna.Trial,
        eval_env: VecEnv,
        *,
        eval_freq: int,
        n_episodes: int,
        offset: int,
        stop: StopFlag,
        progress: Any = None,
        total: int = 0,
    ) -> None:
        super().__init__()
        self.trial = trial
        self.eval_env = eval_env
        self.eval_freq = eval_freq
        self.n_episodes = n_episodes
        self.offset = offset
        self.stop = stop
        self.progress = progress
        self.total = total
        self.last_mean: float | None = None
        self.last_step = 0

    def _on_step(self) -> bool:
        if self.stop.signal is not None:
            raise Interrupted(f"signal {self.stop.signal}")
        if self.progress is not None and self.num_timesteps % 256 == 0:
            self.progress(self.trial.number, self.offset + self.num_timesteps, self.total)
        # The same schedule as rlkit.callbacks.Evaluator, so `rlkit train` of the exported config
        # evaluates at the same steps on the same episodes, and reproduces the trial's numbers.
        if self.num_timesteps // self.eval_freq > self.last_step // self.eval_freq:
            self.evaluate()
        return True

    def evaluate(self) -> float:
        """Check for divergence, evaluate, report, and prune if the pruner says so."""
        import optuna
        from stable_baselines3.common.evaluation import evaluate_policy

        model = cast("DQN", self.model)
        reason = diverged(model)
        if reason is not None:
            raise Diverged(f"{reason} at step {self.num_timesteps}")
        result = evaluate_policy(model, self.eval_env, n_eval_episodes=self.n_episodes, deterministic=True)
        mean = float(cast("float", result[0]))
        step = self.offset + self.num_timesteps
        self.trial.report(mean, step)
        self.last_mean, self.last_step = mean, self.num_timesteps
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: evaluation {mean:.2f} below the pruner's bar")
        return mean


class Objective:
    """Callable Optuna objective for a study's settings and search space."""

    def __init__(self, space: SearchSpace, settings: TrialSettings, stop: StopFlag) -> None:
        self.space = space
        self.settings = settings
        self.stop = stop

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        values = self.space.sample(trial)
        trial.set_user_attr("worker", worker_name())
        try:
            preset = build_preset(self.settings.base, values, f"trial {trial.number}")
        except RlkitError as exc:
            trial.set_user_attr("pruned_reason", f"invalid combination: {exc}")
            raise optuna.TrialPruned(f"invalid combination: {exc}") from None
        steps, evals = self.settings.steps, self.settings.evals
        # eval_freq makes `rlkit train` of this config evaluate exactly when the trial did.
        preset = preset.model_copy(update={"n_timesteps": steps, "eval_freq": max(1, steps // evals)})
        from rlkit.config import to_plain

        trial.set_user_attr("config", to_plain(preset))
        trial.set_user_attr("seeds", list(self.settings.seeds))
        finals: list[float] = []
        try:
            for k, seed in enumerate(self.settings.seeds):
                finals.append(self._train_seed(trial, preset, k, seed))
                trial.set_user_attr("seed_scores", finals)
        except Diverged as exc:
            trial.set_user_attr("pruned_reason", f"diverged: {exc}")
            raise optuna.TrialPruned(f"diverged: {exc}") from None
        except optuna.TrialPruned as exc:
            trial.set_user_attr("pruned_reason", str(exc))
            raise
        except Interrupted:
            trial.set_user_attr("interrupted", True)
            raise
        return sum(finals) / len(finals)

    def _train_seed(self, trial: optuna.Trial, preset: Preset, k: int, seed: int) -> float:
        from rlkit.environments import make_env, policy_name
        from rlkit.model import attach_thread_tuner, build_model, configure_threads, threads_label

        budget = self.settings.steps
        env = make_env(preset, n_envs=preset.n_envs, seed=seed)
        eval_env = make_env(preset, n_envs=1, seed=seed + EVAL_SEED_OFFSET, train=False)
        try:
            threads = configure_threads(preset, policy_name(preset, env.observation_space), self.settings.device)
            model = build_model(preset, env, seed=seed, device=self.settings.device, tensorboard_log=None)
            tuner = attach_thread_tuner(preset, model)
            if k == 0:  # fixed, or chosen by measuring (a --jobs worker gets its share of the cores)
                trial.set_user_attr("torch_threads", threads_label(threads, tuner))
            reporter = TrialReporter(
                trial,
                eval_env,
                eval_freq=preset.eval_freq,
                n_episodes=preset.eval_episodes,
                offset=k * budget,
                stop=self.stop,
                progress=self.settings.progress,
                total=budget * len(self.settings.seeds),
            )
            model.learn(total_timesteps=budget, callback=reporter)
            if reporter.last_step != model.num_timesteps:
                reporter.evaluate()
            assert reporter.last_mean is not None
            return reporter.last_mean
        finally:
            env.close()
            eval_env.close()

"""One trial, top to bottom: sample, lay over the preset, train K seeds, evaluate M times each.

The objective is the mean over the K seeds of each seed's final evaluation (deterministic
policy, separate env, SB3's ``evaluate_policy``). Seeds are trained one after the other; each
evaluation is reported to the pruner at ``step = k * budget + timesteps``, so a step always means
"seed k, after this many steps" and trials are compared like with like. Every trial records its
full configuration and seeds in ``user_attrs`` so it can be re-trained exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.callbacks import BaseCallback

from rlkit.core.errors import Interrupted, RlkitError
from rlkit.dqn.diagnostics import DivergenceError
from rlkit.tuning.space import SearchSpace, build_preset
from rlkit.tuning.storage import worker_name

if TYPE_CHECKING:
    import optuna

    from rlkit.config.schema import Preset
    from rlkit.training.callbacks import Evaluator, StopOnSignal


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

    target: int | None = None
    """The study's number of finished trials: a trial started beyond it is surplus (see :class:`Surplus`)."""


class Surplus(Exception):
    """A trial that workers on the same study started at the same moment, beyond the study's target.

    Two workers whose trials end together may both start one more: the one with the higher number
    is surplus (counting finished trials and running ones with lower numbers). It ends at once,
    marked ``surplus`` (stored as failed, never counted as a finished trial), so a study of N
    trials holds exactly N complete or pruned ones however many workers share it.
    """


def is_surplus(trial: optuna.Trial, target: int) -> bool:
    """Whether finished trials plus running ones with lower numbers already make ``target``."""
    import optuna

    done = optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED
    taken = 0
    for other in trial.study.get_trials(deepcopy=False):
        if other.state in done or (other.state == optuna.trial.TrialState.RUNNING and other.number < trial.number):
            taken += 1
    return taken >= target


class OptunaReport:
    """Evaluator hook: report each evaluation to Optuna at ``offset + step``, and prune when told."""

    def __init__(self, trial: optuna.Trial, offset: int) -> None:
        self.trial = trial
        self.offset = offset

    def __call__(self, evaluator: Evaluator, row: dict[str, float]) -> None:
        import optuna

        step = self.offset + int(row["timesteps"])
        self.trial.report(row["mean_reward"], step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(
                f"pruned at step {step}: evaluation {row['mean_reward']:.2f} below the pruner's bar"
            )


class TrialProgress(BaseCallback):
    """Feeds the tuning display: ``progress(trial, done, total)`` every 256 env steps."""

    def __init__(self, progress: Any, trial: int, offset: int, total: int) -> None:
        super().__init__()
        self.progress, self.trial, self.offset, self.total = progress, trial, offset, total

    def _on_step(self) -> bool:
        if self.num_timesteps % 256 == 0:
            self.progress(self.trial, self.offset + self.num_timesteps, self.total)
        return True


class Objective:
    """Callable Optuna objective for a study's settings and search space."""

    def __init__(self, space: SearchSpace, settings: TrialSettings, stop: StopOnSignal) -> None:
        self.space = space
        self.settings = settings
        self.stop = stop

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        trial.set_user_attr("worker", worker_name())
        if self.settings.target is not None and is_surplus(trial, self.settings.target):
            trial.set_user_attr("surplus", True)
            raise Surplus(f"trial {trial.number} is beyond the study's {self.settings.target} trials")
        values = self.space.sample(trial)
        try:
            preset = build_preset(self.settings.base, values, f"trial {trial.number}")
        except RlkitError as exc:
            trial.set_user_attr("pruned_reason", f"invalid combination: {exc}")
            raise optuna.TrialPruned(f"invalid combination: {exc}") from None
        steps, evals = self.settings.steps, self.settings.evals
        # eval_freq makes `rlkit train` of this config evaluate exactly when the trial did.
        preset = preset.model_copy(update={"n_timesteps": steps, "eval_freq": max(1, steps // evals)})
        from rlkit.config.schema import to_plain

        trial.set_user_attr("config", to_plain(preset))
        trial.set_user_attr("seeds", list(self.settings.seeds))
        finals: list[float] = []
        try:
            for k, seed in enumerate(self.settings.seeds):
                finals.append(self._train_seed(trial, preset, k, seed))
                trial.set_user_attr("seed_scores", finals)
        except DivergenceError as exc:
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
        """Seed ``k`` of the trial through rlkit's one learn loop, evaluations reported to Optuna."""
        from rlkit.core.seeds import derive_seed
        from rlkit.environments.factory import make_env
        from rlkit.training import loop
        from rlkit.training.callbacks import Evaluator
        from rlkit.training.factory import build

        budget = self.settings.steps
        trainee = build(preset, seed=seed, device=self.settings.device)
        eval_env = make_env(preset, n_envs=preset.eval_envs, seed=derive_seed(seed, loop.EVAL_SEED_OFFSET), train=False)
        try:
            if k == 0:  # fixed, or chosen by measuring (a --jobs worker gets its share of the cores)
                trial.set_user_attr("torch_threads", trainee.threads_label)
            # The evaluator of `rlkit train`: the exported config evaluates at the same steps on
            # the same episodes, and so reproduces the trial's numbers.
            evaluator = Evaluator(
                eval_env,
                eval_freq=preset.eval_freq,
                n_episodes=preset.eval_episodes,
                callback_after_eval=[OptunaReport(trial, offset=k * budget)],
            )
            extra: list[BaseCallback] = []
            if self.settings.progress is not None:
                total = budget * len(self.settings.seeds)
                extra.append(TrialProgress(self.settings.progress, trial.number, k * budget, total))
            learned = loop.learn(trainee, evaluator, total_steps=budget, stopper=self.stop, callbacks=extra)
            if learned.signal is not None:
                raise Interrupted(f"trial {trial.number} interrupted by signal {learned.signal}", learned.signal)
            assert evaluator.last is not None
            return evaluator.last["mean_reward"]
        finally:
            trainee.env.close()
            eval_env.close()

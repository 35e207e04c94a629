"""SB3 callbacks that make a run trustworthy: evaluation, checkpoints, signals, live display."""

from __future__ import annotations

import math
import shutil
import signal
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from rlkit import atomic
from rlkit.rundir import RunDir

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

    from rlkit.display import TrainingDisplay


class Clock:
    """Wall-clock seconds of a run, summed over every start and resume."""

    def __init__(self, already: float = 0.0) -> None:
        self.already = already
        self.started = time.perf_counter()

    def seconds(self) -> float:
        return self.already + time.perf_counter() - self.started


def _crossed(previous: int, now: int, every: int) -> bool:
    """Whether a multiple of ``every`` lies in ``(previous, now]``."""
    return every > 0 and now // every > previous // every


class StopOnSignal(BaseCallback):
    """Turns the first Ctrl-C or SIGTERM into a clean stop at the next environment step.

    A second Ctrl-C aborts at once (the last checkpoint is still intact).
    """

    def __init__(self) -> None:
        super().__init__()
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def _on_step(self) -> bool:
        return self.received is None


class Evaluator(BaseCallback):
    """Every ``eval_freq`` environment steps: deterministic evaluation on a separate env.

    Uses SB3's ``evaluate_policy``; appends to ``evaluations.csv``, keeps ``best_model.zip``
    (written atomically) and can stop training once the solved score is reached.
    """

    def __init__(
        self,
        run: RunDir,
        eval_env: VecEnv,
        *,
        eval_freq: int,
        n_episodes: int,
        clock: Clock,
        best_mean_reward: float = -math.inf,
        solved_score: float | None = None,
        stop_on_solved: bool = False,
        display: TrainingDisplay | None = None,
    ) -> None:
        super().__init__()
        self.run = run
        self.eval_env = eval_env
        self.eval_freq = eval_freq
        self.n_episodes = n_episodes
        self.clock = clock
        self.best_mean_reward = best_mean_reward
        self.solved_score = solved_score
        self.stop_on_solved = stop_on_solved
        self.display = display
        self.solved = False
        self.history = run.read_evaluations()
        self._last = self.history[-1]["timesteps"] if self.history else 0

    def _on_step(self) -> bool:
        now = self.num_timesteps
        if not _crossed(int(self._last), now, self.eval_freq):
            return True
        self._last = now
        return self.evaluate()

    def evaluate(self) -> bool:
        """Run one evaluation now; False when training should stop (solved)."""
        rewards, lengths = evaluate_policy(
            self.model, self.eval_env, n_eval_episodes=self.n_episodes, deterministic=True, return_episode_rewards=True
        )
        assert isinstance(rewards, list) and isinstance(lengths, list)
        n = len(rewards)
        mean = sum(rewards) / n
        std = math.sqrt(sum((r - mean) ** 2 for r in rewards) / n)
        row = {
            "timesteps": float(self.num_timesteps),
            "mean_reward": mean,
            "std_reward": std,
            "min_reward": min(rewards),
            "max_reward": max(rewards),
            "mean_ep_length": sum(lengths) / n,
            "wall_s": self.clock.seconds(),
        }
        self.history.append(row)
        self.run.write_evaluations(self.history)
        self.logger.record("eval/mean_reward", mean)
        self.logger.record("eval/mean_ep_length", row["mean_ep_length"])
        new_best = mean > self.best_mean_reward
        if new_best:
            self.best_mean_reward = mean
            atomic.write_with(self.run.best_model, self.model.save)
        if self.display is not None:
            self.display.on_eval(row, new_best)
        if self.solved_score is not None and mean >= self.solved_score:
            self.solved = True
            return not self.stop_on_solved
        return True


class Checkpointer(BaseCallback):
    """Every ``every`` environment steps: a complete, resumable checkpoint, published atomically.

    ``checkpoints/step-<N>/`` holds the model (with optimizer state), the replay buffer and a
    ``state.json``; the folder is written under a staging name and renamed into place, so a
    crash mid-save leaves the previous checkpoint untouched. Only the newest ``keep`` remain.
    """

    def __init__(
        self,
        run: RunDir,
        *,
        every: int,
        keep: int,
        save_buffer: bool,
        clock: Clock,
        evaluator: Evaluator | None,
        display: TrainingDisplay | None = None,
    ) -> None:
        super().__init__()
        self.run = run
        self.every = every
        self.keep = keep
        self.save_buffer = save_buffer
        self.clock = clock
        self.evaluator = evaluator
        self.display = display
        self._last = 0

    def _init_callback(self) -> None:
        self._last = self.model.num_timesteps

    def _on_step(self) -> bool:
        if _crossed(self._last, self.num_timesteps, self.every):
            self._last = self.num_timesteps
            self.save()
        return True

    def save(self) -> Path:
        """Write a checkpoint of the current state now; returns its folder."""
        model = self.model
        assert isinstance(model, OffPolicyAlgorithm)
        steps = model.num_timesteps
        final = self.run.checkpoints / f"step-{steps:012d}"
        staging = self.run.checkpoints / f".staging-{steps:012d}"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        model.save(staging / "model.zip")
        if self.save_buffer:
            model.save_replay_buffer(staging / "replay_buffer.pkl")
        best = self.evaluator.best_mean_reward if self.evaluator is not None else -math.inf
        atomic.write_json(
            staging / "state.json",
            {
                "num_timesteps": steps,
                "best_mean_reward": best if math.isfinite(best) else None,
                "wall_s": self.clock.seconds(),
                "exploration_rate": float(getattr(model, "exploration_rate", 0.0)),
                "replay_buffer": self.save_buffer,
            },
        )
        atomic.publish_dir(staging, final)
        for old in self.run.checkpoint_dirs()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        if self.display is not None:
            self.display.on_checkpoint(steps)
        return final


class DisplayUpdater(BaseCallback):
    """Feeds the live display with steps/s, episode return, epsilon and loss."""

    def __init__(self, display: TrainingDisplay) -> None:
        super().__init__()
        self.display = display

    def _on_step(self) -> bool:
        self.display.maybe_update(self.model)
        return True

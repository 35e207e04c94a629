"""SB3 callbacks of rlkit's one learn loop: signals, evaluation (with hooks), checkpoints, threads, display."""

from __future__ import annotations

import math
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from rlkit.core import atomic
from rlkit.training.buffer_store import buffer_nbytes, save_buffer
from rlkit.training.run_state import RunState
from rlkit.training.rundir import BUFFER, MANIFEST, RESUME, RunDir, write_manifest
from rlkit.training.start_values import StartValues

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

    from rlkit.core.threads import ThreadTuner
    from rlkit.training.display import TrainingDisplay


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
    """Turns the first Ctrl-C, SIGTERM or SIGHUP into a clean stop at the next environment step.

    The one signal handler of rlkit: ``rlkit train`` installs it around a run, ``rlkit tune``
    around a whole worker (each trial's learn loop gets it as a callback). ``received`` is the
    signal number once one arrived. A second Ctrl-C aborts at once (the last checkpoint is
    still intact). Use as a context manager, or :meth:`install` / :meth:`uninstall`.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        super().__init__()
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def uninstall(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> StopOnSignal:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.uninstall()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def _on_step(self) -> bool:
        return self.received is None

    def keep_evaluating(self, what: str, done: int, total: int) -> bool:
        """An evaluator progress hook: ``False`` (stop the evaluation now) once a signal arrived."""
        return self.received is None


EvalRow = dict[str, float]
EvalHook = Callable[["Evaluator", EvalRow], "bool | None"]
"""Called with the evaluator and the new row; ``False`` stops training (as an SB3 callback does)."""

StepHook = Callable[[dict[str, Any], dict[str, Any]], None]
"""``evaluate_policy``'s per-step callback: the loop's locals and globals."""

ProgressHook = Callable[[str, int, int], "bool | None"]
"""Called while an evaluation plays: what it is (``evaluating``, ``confirming``), the episodes ended
so far and the episodes in all; first with 0, last with all of them. ``False`` stops the evaluation
(and training) at once."""


class EvaluationStopped(Exception):
    """A progress hook stopped an evaluation (a signal arrived while it played)."""


class Evaluator(BaseCallback):
    """Every ``eval_freq`` environment steps: a deterministic evaluation on a separate env.

    The one evaluator of rlkit (training, tuning trials and benchmark seeds alike), on SB3's
    ``evaluate_policy``. What happens with a result hooks onto it, as with SB3's
    ``EvalCallback``: ``callback_on_new_best`` runs when the mean beats every earlier one,
    ``callback_after_eval`` after every evaluation (a run directory's CSV and best model, the
    live display, stopping once solved, Optuna's report and pruner). While episodes play,
    ``callback_on_progress`` hooks hear how many have ended (through ``evaluate_policy``'s
    per-step ``callback``): the live display shows it, and the signal handler stops an evaluation
    at once (training then stops as at any step). Every evaluation, the confirmation of a solve
    included, plays through :meth:`play`. Evaluations fall on the multiples of ``eval_freq``;
    ``history`` holds every row (those of earlier sessions too).
    """

    def __init__(
        self,
        eval_env: VecEnv,
        *,
        eval_freq: int,
        n_episodes: int,
        clock: Clock | None = None,
        history: list[EvalRow] | None = None,
        best_mean_reward: float = -math.inf,
        callback_on_new_best: list[EvalHook] | None = None,
        callback_after_eval: list[EvalHook] | None = None,
        callback_on_progress: list[ProgressHook] | None = None,
        clip_reward: bool = False,
    ) -> None:
        super().__init__()
        self.eval_env = eval_env
        self.clip_reward = clip_reward
        """Training clips rewards to their sign (Atari): the discounted returns of the rows do too."""
        self.eval_freq = eval_freq
        self.n_episodes = n_episodes
        self.clock = clock or Clock()
        self.best_mean_reward = best_mean_reward
        self.callback_on_new_best = list(callback_on_new_best or [])
        self.callback_after_eval = list(callback_after_eval or [])
        self.callback_on_progress = list(callback_on_progress or [])
        self.history: list[EvalRow] = list(history or [])
        self.last_played: tuple[str, list[float], list[int]] | None = None
        """What :meth:`play` played last: its kind, the episodes' returns and lengths."""
        self._last = int(self.history[-1]["timesteps"]) if self.history else 0

    @property
    def last(self) -> EvalRow | None:
        return self.history[-1] if self.history else None

    def _on_step(self) -> bool:
        now = self.num_timesteps
        if not _crossed(self._last, now, self.eval_freq):
            return True
        self._last = now
        return self.evaluate()

    def play(
        self, env: VecEnv, episodes: int, what: str = "evaluating", observe: StepHook | None = None
    ) -> tuple[list[float], list[int]]:
        """``episodes`` deterministic episodes on ``env`` with SB3's ``evaluate_policy``: returns and lengths.

        The progress hooks hear of each episode's end; one answering ``False`` raises
        :class:`EvaluationStopped` at the next environment step. ``observe`` sees every step's locals.
        """
        self._progress(what, 0, episodes)
        rewards, lengths = evaluate_policy(
            self.model,
            env,
            n_eval_episodes=episodes,
            deterministic=True,
            return_episode_rewards=True,
            callback=self._progress_callback(what, episodes, observe) if self.callback_on_progress or observe else None,
        )
        assert isinstance(rewards, list) and isinstance(lengths, list)
        self.last_played = (what, list(rewards), list(lengths))
        for hook in self.callback_on_progress:  # the end: played whole, whatever a hook answers now
            hook(what, episodes, episodes)
        return rewards, lengths

    def _progress(self, what: str, done: int, total: int) -> None:
        answers = [hook(what, done, total) for hook in self.callback_on_progress]
        if any(answer is False for answer in answers):
            raise EvaluationStopped(what)

    def _progress_callback(self, what: str, total: int, observe: StepHook | None = None) -> StepHook:
        """``evaluate_policy``'s callback (called at every env step of every env still playing): ``observe``
        each time; the progress hooks once every ``n_envs`` calls (a vector step) and at each episode's end.

        The hooks (the live display, the signal check) cost about 12 us a call: once per env step they
        were a tenth of a CartPole run's confirmation; once per vector step a signal still stops it within a step.
        """
        hooks = bool(self.callback_on_progress)
        calls = [0]

        def callback(locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
            if observe is not None:
                observe(locals_, globals_)
            calls[0] += 1
            if hooks and (calls[0] % locals_["n_envs"] == 0 or locals_["done"]):
                self._progress(what, int(locals_["episode_counts"].sum()), total)

        return callback

    def evaluate(self) -> bool:
        """Run one evaluation now; False when a hook asks training to stop (or a signal stopped it)."""
        try:
            return self._evaluate()
        except EvaluationStopped:
            return False

    def _evaluate(self) -> bool:
        values = StartValues(float(getattr(self.model, "gamma", 1.0)), clip_reward=self.clip_reward)
        rewards, lengths = self.play(self.eval_env, self.n_episodes, observe=values.step)
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
            **values.row(self.model),  # the Q-values' evidence: predicted at the start states, and obtained
        }
        self._last = self.num_timesteps
        self.history.append(row)
        self.logger.record("eval/mean_reward", mean)
        self.logger.record("eval/std_reward", std)
        self.logger.record("eval/mean_ep_length", row["mean_ep_length"])
        # Written now, at the evaluation's own step: TensorBoard and evaluations.csv agree step for step.
        self.logger.dump(self.num_timesteps)
        hooks = list(self.callback_after_eval)
        if mean > self.best_mean_reward:
            self.best_mean_reward = mean
            hooks = self.callback_on_new_best + hooks
        go_on = [hook(self, row) for hook in hooks]
        return all(answer is not False for answer in go_on)


class RunRecorder:
    """Evaluator hooks for a run directory: ``evaluations.csv``, ``best_model.zip``, the display."""

    def __init__(self, run: RunDir, display: TrainingDisplay | None = None) -> None:
        self.run = run
        self.display = display
        self._best_at: float | None = None

    def on_new_best(self, evaluator: Evaluator, row: EvalRow) -> None:
        self._best_at = row["timesteps"]
        atomic.write_with(self.run.best_model, evaluator.model.save)

    def after_eval(self, evaluator: Evaluator, row: EvalRow) -> None:
        self.run.write_evaluations(evaluator.history)
        if self.display is not None:
            self.display.on_eval(row, self._best_at == row["timesteps"], evaluator.n_episodes)


SolvedAt = dict[str, float]


class StopWhenSolved:
    """Evaluator hook: a run is solved when an evaluation reaches ``score`` and a confirmation holds:
    ``confirm_episodes`` more deterministic episodes on ``confirm_env()`` (made at the first need)
    whose mean is at the score with a margin, the lower bound of a one-sided ``confidence`` interval
    (:func:`lower_bound`; ``confidence`` 0 asks only the mean).

    Each confirmation plays from env seeds of its own (``confirm_seed(k)`` for the k-th of the run,
    earlier sessions' included: ``confirmed_before``), never those of the periodic evaluations, so a
    run that confirms again and again does not replay the starts that passed or failed before. The
    margin keeps the chance that a model below the score passes small even over many confirmations
    (a stopping rule that stops at the first pass otherwise selects a lucky one).

    The moment is kept in ``solved_at`` (steps, wall-clock seconds, the confirming mean, its episodes
    and lower bound) and handed to ``on_solved``; with ``stop`` training then stops, so the final model
    is the confirmed one. A confirmation that falls short is kept in ``confirmations`` and training goes
    on. ``solved_at`` given: an earlier session already solved the run.
    """

    def __init__(
        self,
        score: float | None,
        stop: bool,
        *,
        confirm_episodes: int = 0,
        confirm_env: Callable[[], VecEnv] | None = None,
        confirm_seed: Callable[[int], int] | None = None,
        confidence: float = 0.0,
        rounds: int = 1,
        confirmed_before: int = 0,
        solved_at: SolvedAt | None = None,
        on_solved: Callable[[SolvedAt], None] | None = None,
        on_confirmation: Callable[[SolvedAt, bool], None] | None = None,
    ) -> None:
        self.score = score
        self.stop = stop
        self.confirm_episodes = confirm_episodes if confirm_env is not None else 0
        self.confidence = confidence
        self.rounds = rounds
        self._make_env = confirm_env
        self._seed = confirm_seed
        self._env: VecEnv | None = None
        self._done = confirmed_before
        self.solved_at = solved_at
        self.on_solved = on_solved
        self.on_confirmation = on_confirmation
        self.confirmations: list[SolvedAt] = []

    @property
    def solved(self) -> bool:
        return self.solved_at is not None

    def __call__(self, evaluator: Evaluator, row: EvalRow) -> bool:
        if self.score is None or row["mean_reward"] < self.score:
            return True
        if self.solved:
            return not self.stop
        at: SolvedAt = {
            "timesteps": int(row["timesteps"]),
            "wall_s": evaluator.clock.seconds(),
            "mean_reward": row["mean_reward"],
            "episodes": evaluator.n_episodes,
        }
        if self.confirm_episodes > 0:
            at.update(self._confirm(evaluator))
            at["wall_s"] = evaluator.clock.seconds()
            self.confirmations.append(at)
            held = at["lower_bound"] >= self.score
            if self.on_confirmation is not None:
                self.on_confirmation(at, held)
            if not held:
                return True
        self.solved_at = at
        if self.on_solved is not None:
            self.on_solved(at)
        return not self.stop

    def _confirm(self, evaluator: Evaluator) -> SolvedAt:
        """A confirmation: rounds of episodes, each from the run's next seed stream, while the bound over all
        the episodes so far clears the score (up to ``rounds``). Its mean, lower bound, confidence, rounds
        played and first env seed; ``Evaluator.last_played`` holds every episode of it."""
        if self._env is None:
            assert self._make_env is not None
            self._env = self._make_env()
        figures: SolvedAt = {}
        rewards: list[float] = []
        lengths: list[int] = []
        played = 0
        while played < self.rounds:
            if self._seed is not None:
                seed = self._seed(self._done)
                figures.setdefault("seed", seed)
                self._env.seed(int(seed))  # applied at the reset that starts the episodes
            self._done += 1
            more, more_lengths = evaluator.play(self._env, self.confirm_episodes, "confirming")
            rewards, lengths, played = rewards + list(more), lengths + list(more_lengths), played + 1
            if self.score is None or lower_bound(rewards, self.confidence) < self.score:
                break  # short already: no further round can be needed to say so
        evaluator.last_played = ("confirming", rewards, lengths)
        mean = sum(rewards) / len(rewards)
        low = lower_bound(rewards, self.confidence)
        evaluator.logger.record("eval/confirm_mean_reward", mean)
        evaluator.logger.record("eval/confirm_lower_bound", low)
        figures.update(
            mean_reward=mean, episodes=len(rewards), lower_bound=low, confidence=self.confidence, rounds=played
        )
        return figures

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None


def lower_bound(returns: list[float], confidence: float) -> float:
    """The lower end of a one-sided ``confidence`` interval for the mean of ``returns``: ``mean - z * s / sqrt(n)``.

    ``z`` is the normal quantile (the confirmation's 100 episodes make Student's t within 1% of it) and
    ``s`` the sample standard deviation; ``confidence`` 0 (or a single episode) gives the mean itself.
    """
    import statistics

    mean = statistics.fmean(returns)
    if confidence <= 0.0 or len(returns) < 2:
        return mean
    z = statistics.NormalDist().inv_cdf(confidence)
    return mean - z * statistics.stdev(returns) / math.sqrt(len(returns))


class ThreadTuning(BaseCallback):
    """Lets a :class:`~rlkit.core.threads.ThreadTuner` time training cycles and set torch's threads.

    At the end of each rollout that a training phase follows, the tuner times the cycle that
    just ended and sets the count for the next; the pause before each ``learn()`` is no cycle.
    """

    def __init__(self, tuner: ThreadTuner) -> None:
        super().__init__()
        self.tuner = tuner

    def _on_training_start(self) -> None:
        self.tuner.restart()

    def _on_rollout_end(self) -> None:
        model = self.model
        if model.num_timesteps > 0 and model.num_timesteps > getattr(model, "learning_starts", 0):
            self.logger.record("time/torch_threads", self.tuner.cycle(int(model.num_timesteps)))

    def _on_step(self) -> bool:
        return True


class Checkpointer(BaseCallback):
    """Every ``every`` environment steps: a complete, resumable checkpoint, published atomically.

    ``checkpoints/step-<N>/`` holds the model (with optimizer state), the replay buffer
    (``replay_buffer.npz``), a ``state.json`` and, written last, ``manifest.json`` (size and
    sha256 of each file); the folder is written under a staging name and renamed into place, so
    a crash mid-save leaves the previous checkpoint untouched. Only the newest ``keep`` remain.
    After each checkpoint the run's ``state.json`` records its step (``last_checkpoint``), so even
    after ``kill -9`` the state says how far the run can be resumed.
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
        stopping: Callable[[], bool] | None = None,
        start: int = 0,
    ) -> None:
        super().__init__()
        self.run = run
        self.start = start
        """The step a resumed session starts from: its checkpoint exists (an exact resume replays the step it was taken in)."""
        self._in_step = False
        self._step_at = 0
        self.stopping = stopping
        """Whether training is stopping at this step (a signal): the stop saves its own checkpoint,
        at the step counter it leaves (SB3 counts a step it does not store when a callback stops it)."""
        self.every = every
        self.keep = keep
        self.save_buffer = save_buffer
        self.clock = clock
        self.evaluator = evaluator
        self.display = display
        self._last = 0
        self.last_saved: int | None = None
        """The step of the newest checkpoint this session wrote."""

    def _init_callback(self) -> None:
        self._last = max(self.model.num_timesteps, self.start)

    def _on_rollout_end(self) -> None:
        self._in_step = False  # between rollouts: no step pending

    def _on_step(self) -> bool:
        self._in_step, self._step_at = True, self.num_timesteps  # a save from here on describes the state before it
        if _crossed(self._last, self.num_timesteps, self.every):
            self._last = self.num_timesteps
            if self.stopping is None or not self.stopping():
                self.save()
        return True

    def save(self) -> Path:
        """Write a checkpoint of the current state now; returns its folder.

        Whatever stops the save (an error, a full disk, a second Ctrl-C) removes the staging
        folder before it propagates, so only complete checkpoints ever exist. A full disk is a
        one-line :class:`RlkitError` naming the file and the space needed.
        """
        model = self.model
        assert isinstance(model, OffPolicyAlgorithm)
        steps = model.num_timesteps
        final = self.run.checkpoints / f"step-{steps:012d}"
        staging = self.run.checkpoints / f".staging-{steps:012d}"
        current = staging
        try:
            if staging.exists():
                shutil.rmtree(staging)
            staging.mkdir(parents=True)
            current = staging / "model.zip"
            model.save(current)
            if self.save_buffer and model.replay_buffer is not None:
                current = staging / BUFFER
                save_buffer(model.replay_buffer, current)
            current = staging / RESUME
            atomic.write_json(current, self._resume_state(model))
            best = self.evaluator.best_mean_reward if self.evaluator is not None else -math.inf
            current = staging / "state.json"
            atomic.write_json(
                current,
                {
                    "num_timesteps": steps,
                    "best_mean_reward": best if math.isfinite(best) else None,
                    "wall_s": self.clock.seconds(),
                    "exploration_rate": float(getattr(model, "exploration_rate", 0.0)),
                    "replay_buffer": self.save_buffer,
                },
            )
            current = staging / MANIFEST
            write_manifest(staging)  # last: a checkpoint with a matching manifest is complete
            current = final
            atomic.publish_dir(staging, final)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if atomic.is_disk_full(exc):
                raise atomic.DiskFull(atomic.disk_full_message(current, self._needed_bytes())) from None
            raise
        self.last_saved = steps
        for old in self.run.checkpoint_dirs()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        RunState(self.run).checkpointed(steps, self.clock.seconds())
        if self.display is not None:
            self.display.on_checkpoint(steps, final)
        return final

    def _resume_state(self, model: OffPolicyAlgorithm) -> dict[str, Any]:
        from rlkit.training import resume_state

        pending = None
        if self._in_step:
            pending = resume_state.pending_from(self.locals, self._step_at, model.n_envs)
        return resume_state.capture(model, pending, self.evaluator.eval_env if self.evaluator is not None else None)

    def _needed_bytes(self) -> int:
        """What a checkpoint takes: the last one's size, else the buffer's arrays plus the model's weights."""
        done = self.run.checkpoint_dirs()
        if done:
            return sum(p.stat().st_size for p in done[-1].iterdir() if p.is_file())
        model = self.model
        assert isinstance(model, OffPolicyAlgorithm)
        weights = sum(p.numel() * p.element_size() for p in model.policy.parameters())
        buffer = buffer_nbytes(model.replay_buffer) if self.save_buffer and model.replay_buffer is not None else 0
        return buffer + 3 * weights  # weights, target network and Adam's two moments, roughly


class DisplayUpdater(BaseCallback):
    """Feeds the live display with steps/s, episode return, epsilon and loss."""

    def __init__(self, display: TrainingDisplay) -> None:
        super().__init__()
        self.display = display

    def _on_step(self) -> bool:
        self.display.maybe_update(self.model)
        return True

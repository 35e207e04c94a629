"""Training in a run directory, start to finish, and resuming an interrupted run.

Read top to bottom: resolve the device, create the run directory and record the config,
build the env, model and thread tuner (:func:`rlkit.training.factory.build`), hook the run
directory onto the evaluator (evaluations CSV, best model, display, solved), add checkpoints,
learn (:func:`rlkit.training.loop.learn`, the loop tuning trials use too), then save the final
model and state. ``resume`` rebuilds the same pieces from the run directory's newest intact
checkpoint and continues the same step counter. One process at a time trains a run (an OS lock
on ``run.lock``); every way a session ends that Python sees (finish, Ctrl-C, a second Ctrl-C,
SIGTERM, SIGHUP, an exception, a full disk) leaves ``state.json`` saying what happened and the
last good checkpoint intact.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, NoReturn

from rlkit.config.presets import Resolved
from rlkit.config.schema import Preset, to_plain, validate
from rlkit.core import atomic
from rlkit.core.errors import Interrupted, RlkitError
from rlkit.core.seeds import check_seed, derive_seed, stream_seed
from rlkit.training import resume_state
from rlkit.training.loop import CONFIRM_ENVS, EVAL_SEED_OFFSET
from rlkit.training.run_state import RunState
from rlkit.training.rundir import BUFFER, RESUME, CheckpointInfo, RunDir, RunLock, now_iso, verify_checkpoint

if TYPE_CHECKING:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecEnv

    from rlkit.training.callbacks import Evaluator, StopWhenSolved
    from rlkit.training.display import TrainingDisplay
    from rlkit.training.doctor_watch import DoctorWatch
    from rlkit.training.factory import Trainee
    from rlkit.training.tracking import Tracker


@dataclass
class TrainResult:
    """What a finished (or early-stopped) run reports."""

    run_dir: Path
    num_timesteps: int
    wall_s: float
    steps_per_s: float
    best_mean_reward: float | None
    final_eval: dict[str, float] | None
    solved: bool
    solved_at: dict[str, float] | None = None
    """When the run was solved: ``timesteps``, ``wall_s`` (time to solve), the confirming ``mean_reward``, ``episodes``
    and (with a confirmation) ``lower_bound``, ``confidence`` and the first env ``seed`` it played."""
    session_start: int = 0
    """The step this session started at (0 for a new run; the checkpoint's step for a resume)."""
    session_wall_s: float | None = None
    """Training wall-clock of this session alone (``wall_s`` sums every session); ``steps_per_s`` is this session's."""


@dataclass(frozen=True)
class Request:
    """What a caller asks of a training session beyond its preset and seed, carried whole through the
    session (one typed object, not a parameter per option in every step)."""

    device: str = "auto"
    """The resolved torch device."""
    quiet: bool = False
    """No live display (its history lines and the summary stay)."""
    argv: list[str] | None = None
    """The command line recorded in ``command.txt``."""
    callbacks: tuple[BaseCallback, ...] = ()
    """Extra SB3 callbacks, after rlkit's own."""
    tracker: Tracker | None = None
    """The experiment tracker the run mirrors to (opened for this run), or ``None``."""


def start(
    resolved: Resolved,
    *,
    seed: int,
    device: str = "auto",
    run_dir: Path | None = None,
    runs_root: Path | None = None,
    quiet: bool = False,
    argv: list[str] | None = None,
    callbacks: list[BaseCallback] | None = None,
    init_from: Path | None = None,
    track: str | None = None,
) -> TrainResult:
    """Train a new run from a resolved preset; ``callbacks`` are extra SB3 callbacks.

    ``track`` (``mlflow`` or ``wandb``) mirrors the run to an experiment tracker
    (:mod:`rlkit.training.tracking`).

    ``init_from`` (a run directory or a model ``.zip``) starts from trained weights: the Q-network
    and target network of that model, with a fresh optimizer, replay buffer and schedules.

    The run directory is locked for the whole run (one writer). A failure before training
    begins (a full disk, an env that cannot be built) removes the run directory it created.
    """
    from rlkit.core.threads import available_cores
    from rlkit.training import tracking
    from rlkit.training.factory import resolve_device

    check_seed(seed)
    torch_device = resolve_device(device)  # fails before anything is written
    available_cores()  # so does a malformed RLKIT_CORES
    tracking.require(track)  # and a tracker that is not installed
    preset = resolved.preset
    weights = read_weights(init_from) if init_from is not None else None  # so does an unreadable source
    existed = run_dir is not None and run_dir.exists()
    run = RunDir.create(resolved.alias, seed, root=runs_root, path=run_dir)
    lock: RunLock | None = None
    tracker: Tracker | None = None
    try:
        with _signals_raise():  # SIGTERM/SIGHUP before training begins: clean up, do not just die
            lock, trainee, eval_env = _set_up(run, resolved, seed, torch_device, argv, weights, init_from)
            tracker = tracking.open_for_run(track, run) if track else None
    except BaseException as exc:
        if lock is not None:
            lock.release()
        if tracker is not None:
            with contextlib.suppress(Exception):
                tracker.finish("failed")
        _discard_new_run(run, keep_folder=existed)
        if atomic.is_disk_full(exc):
            where = Path(getattr(exc, "filename", None) or run.path)
            raise RlkitError(atomic.disk_full_message(where) + "; nothing was kept") from None
        if isinstance(exc, (KeyboardInterrupt, _Stopped)):
            signum = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
            raise Interrupted("stopped before training began; the new run directory was removed", signum) from None
        raise
    request = Request(torch_device, quiet, argv, tuple(callbacks or ()), tracker)
    with lock:
        session = _Session(run, preset, trainee, eval_env, seed=seed, request=request)
        return session.train(discard=lambda: _discard_new_run(run, keep_folder=existed))


def _set_up(
    run: RunDir,
    resolved: Resolved,
    seed: int,
    torch_device: str,
    argv: list[str] | None,
    weights: Weights | None,
    init_from: Path | None,
) -> tuple[RunLock, Trainee, VecEnv]:
    """A new run's lock, recorded config, command, meta and state; its model and evaluation env."""
    from rlkit.environments.factory import make_env
    from rlkit.training.factory import build

    preset = resolved.preset
    lock = run.lock()
    trainee: Trainee | None = None
    try:
        run.write_config(preset, resolved.alias, resolved.source, seed)
        run.append_command(argv)
        trainee = build(
            preset, seed=seed, device=torch_device, monitor_dir=run.monitor, tensorboard_log=run.tensorboard
        )
        if weights is not None and init_from is not None:
            _check_weights(trainee, weights, init_from)
        run.write_meta(
            {
                "device": _device_name(torch_device),
                "torch_threads": trainee.threads_label,
                "policy": trainee.policy,
                "gradient_step": _gradient_step(trainee.model),
                "created": now_iso(),
                **({"init_from": str(weights.source)} if weights is not None else {}),
            }
        )
        RunState(run).started(preset.n_timesteps)
        eval_env = make_env(preset, n_envs=preset.eval_envs, seed=derive_seed(seed, EVAL_SEED_OFFSET), train=False)
    except BaseException:
        if trainee is not None:
            trainee.env.close()  # subprocess envs: their workers end with the failed start
        lock.release()
        raise
    return lock, trainee, eval_env


def resume(
    run_path: Path,
    *,
    device: str = "auto",
    quiet: bool = False,
    argv: list[str] | None = None,
    callbacks: list[BaseCallback] | None = None,
    without_buffer: bool = False,
    notify: Callable[[str], None] | None = None,
    total_steps: int | None = None,
    track: str | None = None,
) -> TrainResult | None:
    """Continue a run from its newest intact checkpoint; ``None`` when it had already finished.

    With ``total_steps`` the run (finished or not) trains on to that new budget: see :func:`extend`.

    Checkpoints are checked against their manifests; a damaged one is skipped (``notify`` says
    which and why) for the one before it. A replay buffer that cannot be restored is an error
    unless ``without_buffer``: the run then continues with an empty buffer and its state records
    that the resume was not exact. Nothing is written (command.txt included) until the resume is
    known to proceed; the run is locked against a second writer throughout.

    A run started with a tracker (``--track``) logs to the same tracked run again, unless
    ``track`` names another tracker.
    """
    from rlkit.environments.factory import make_env
    from rlkit.training import tracking
    from rlkit.training.factory import resolve_device

    say = notify or _stderr
    run = RunDir.open(run_path)
    torch_device = resolve_device(device)
    track = track or tracking.recorded(run).get("tracker")
    tracking.require(track)
    _alias, seed, preset = run.read_config()
    with run.lock():
        try:
            with _signals_raise():  # SIGTERM/SIGHUP before the resume proceeds: the run stays as it was
                extending = _extended(run, preset, total_steps) if total_steps is not None else None
                if extending is not None:
                    preset = extending.preset
                    for note in extending.notes:
                        say(note)
                restored = _restore(
                    run,
                    preset,
                    seed,
                    torch_device,
                    without_buffer=without_buffer,
                    extending=extending is not None,
                    say=say,
                )
        except (KeyboardInterrupt, _Stopped) as exc:
            signum = exc.signum if isinstance(exc, _Stopped) else signal.SIGINT
            raise Interrupted(f"stopped before the resume began; {run_path} is unchanged", signum) from None
        if restored is None:
            return None
        state, ckpt, trainee, exact, resumed = restored
        steps = ckpt.step
        history = run.read_evaluations()  # a damaged history fails here, before anything is written
        # The resume proceeds: from here on the run directory changes.
        tracker = tracking.open_for_run(track, run) if track else None  # the same tracked run again
        if extending is not None:
            extending.write(run)
        run.append_command(argv)
        # Evaluations logged after the checkpoint belong to steps that will be replayed.
        run.write_evaluations([row for row in history if row["timesteps"] <= steps])
        wall = float(ckpt.state.get("wall_s") or 0.0)
        solved_at = _solved_before(state, steps)
        RunState(run).resumed(state, steps, wall, exact=exact, solved_at=solved_at)
        eval_env = make_env(
            preset, n_envs=preset.eval_envs, seed=derive_seed(seed, EVAL_SEED_OFFSET, steps), train=False
        )
        if exact:
            resume_state.restore_eval(eval_env, resumed)
        best = ckpt.state.get("best_mean_reward")
        request = Request(torch_device, quiet, argv, tuple(callbacks or ()), tracker)
        resumed_from = (steps, wall, -math.inf if best is None else float(best))
        session = _Session(
            run, preset, trainee, eval_env, seed=seed, request=request, solved_at=solved_at, resumed_from=resumed_from
        )
        return session.train()


def _restore(
    run: RunDir,
    preset: Preset,
    seed: int,
    device: str,
    *,
    without_buffer: bool,
    extending: bool,
    say: Callable[[str], None],
) -> tuple[dict[str, Any], CheckpointInfo, Trainee, bool, dict[str, Any]] | None:
    """Everything a resume needs, read and checked without writing: ``None`` for a finished run
    (unless ``extending`` it to a larger budget).

    Returns the run's state, the checkpoint chosen, the rebuilt model (replay buffer, envs and
    random streams restored) and whether the resume is exact, and the checkpoint's resume state
    (the evaluation env's part is restored once it exists).
    """
    from rlkit.training.buffer_store import load_buffer
    from rlkit.training.factory import build

    state = run.read_state()
    if state.get("status") == "finished" and not extending:
        return None
    if state.get("status") == "running":  # we hold the lock: its process is gone (kill -9, power cut)
        say(f"{run.path}: its last session stopped without recording it (killed?); resuming from its checkpoints")
    run.remove_staging()
    ckpt = _choose_checkpoint(run, without_buffer=without_buffer, notify=say)
    steps = ckpt.step
    trainee = build(
        preset,
        seed=seed,
        device=device,
        env_seed=derive_seed(seed, steps),
        monitor_dir=run.monitor,
        checkpoint=ckpt.path,
    )
    model = trainee.model
    apply_schedules(model, preset)  # a budget extended by `extend` re-anchors them
    exact = True
    if ckpt.state.get("replay_buffer") and model.replay_buffer is not None:
        problem = ckpt.buffer_problem
        if problem is None:
            try:
                load_buffer(model.replay_buffer, ckpt.path / BUFFER)
            except RlkitError as exc:
                problem = str(exc)
        if problem is not None:
            if not without_buffer:
                raise RlkitError(f"{run.path} checkpoint {ckpt.label}: {problem}; {_WITHOUT_BUFFER_HINT}")
            model.replay_buffer.reset()
            say(f"{ckpt.label}: {problem}; continuing with an empty replay buffer (--without-buffer)")
            exact = False
    model.set_random_seed(derive_seed(seed, steps))
    _restore_episode_window(model, run, steps, preset)
    model.tensorboard_log = str(run.tensorboard)
    resumed = _resume_state(ckpt)
    try:
        why = resume_state.restore(model, resumed, steps) if exact else "its replay buffer was not restored"
    except (KeyError, TypeError, ValueError, IndexError) as exc:  # a resume.json of the wrong shape
        why = f"resume.json is damaged ({type(exc).__name__}: {exc})"
    if why is not None:
        model._last_obs = None  # the fresh env must be reset
        model.num_timesteps = steps
        if exact:
            say(f"{ckpt.label}: resuming from a reset of the envs, not exactly: {why}")
        exact = False
    return state, ckpt, trainee, exact, resumed


def _resume_state(ckpt: CheckpointInfo) -> dict[str, Any]:
    """The checkpoint's ``resume.json`` (checked by its manifest), or a note that it has none."""
    from rlkit.core import safe_json

    path = ckpt.path / RESUME
    if not path.is_file():
        return {"exact": False, "why": "the checkpoint is from before exact resumes (no resume.json)", "format": 1}
    try:
        found = safe_json.load_file(path)
    except (OSError, ValueError) as exc:
        return {"exact": False, "why": f"resume.json cannot be read ({exc})", "format": 1}
    return found if isinstance(found, dict) else {"exact": False, "why": "resume.json is not an object", "format": 1}


def _restore_episode_window(model: Any, run: RunDir, steps: int, preset: Preset) -> None:
    """SB3's window of recent training episodes (``ret(20ep)``, ``rollout/ep_rew_mean``) as the run left it.

    It is runtime state, not in a checkpoint; the Monitor CSVs hold those episodes. Atari Monitors
    count emulator frames, so there the window is filled without the step filter.
    """
    from collections import deque

    episodes = run.training_episodes(None if preset.atari is not None else steps)
    window = int(getattr(model, "_stats_window_size", 100))
    model.ep_info_buffer = deque(episodes[-window:], maxlen=window)
    if getattr(model, "ep_success_buffer", None) is None:
        model.ep_success_buffer = deque(maxlen=window)


"""State keys that describe how the previous session ended; a resumed session drops them."""

_WITHOUT_BUFFER_HINT = (
    "resume with --without-buffer to continue from this checkpoint with an empty replay buffer "
    "(the resume is then not exact, and the run records it)"
)


def _choose_checkpoint(run: RunDir, *, without_buffer: bool, notify: Callable[[str], None]) -> CheckpointInfo:
    """The newest checkpoint that verifies (and whose buffer does, unless ``without_buffer``)."""
    folders = run.checkpoint_dirs()
    if not folders:
        raise RlkitError(f"{run.path} has no checkpoint to resume from (it stopped before the first one)")
    skipped: list[str] = []
    no_buffer: CheckpointInfo | None = None
    for folder in reversed(folders):
        info = verify_checkpoint(folder)
        if info.problem is not None:
            skipped.append(f"{info.label} ({info.problem})")
            continue
        if info.buffer_problem is not None and not without_buffer:
            no_buffer = no_buffer or info
            skipped.append(f"{info.label} (replay buffer: {info.buffer_problem})")
            continue
        for line in skipped:
            notify(f"skipped checkpoint {line}; resuming from {info.label}")
        return info
    if no_buffer is not None:
        raise RlkitError(f"{run.path} checkpoint {no_buffer.label}: {no_buffer.buffer_problem}; {_WITHOUT_BUFFER_HINT}")
    raise RlkitError(f"{run.path}: no intact checkpoint to resume from: {'; '.join(skipped)}")


class _Stopped(BaseException):
    """SIGTERM or SIGHUP while a run is being set up (before the learn loop's own handler)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`_Stopped` (Ctrl-C is KeyboardInterrupt already), so cleanup runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _Stopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _discard_new_run(run: RunDir, *, keep_folder: bool) -> None:
    """Remove what a start that failed before training wrote (the folder too, unless it was given empty),
    and the empty folders above it that the start made (``runs/<alias>/``, the runs root)."""
    path = run.path
    if not path.is_dir():
        return
    if keep_folder:
        for child in path.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        return
    shutil.rmtree(path, ignore_errors=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # runs/<alias>/ when this was its only run
    if run.made is not None:
        _remove_empty_up_to(Path(os.path.abspath(path)).parent, run.made)


def _remove_empty_up_to(folder: Path, top: Path) -> None:
    """Remove ``folder`` and its parents while they are empty, up to and including ``top``."""
    while folder == top or top in folder.parents:
        try:
            folder.rmdir()
        except FileNotFoundError:
            pass
        except OSError:  # not empty (another run), or not ours to remove
            return
        folder = folder.parent


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _solved_before(state: dict[str, Any], steps: int) -> dict[str, float] | None:
    """The checkpoint's record of when the run was solved, if it was by then (later steps are replayed)."""
    at = state.get("solved_at")
    if not isinstance(at, dict):
        return None
    if not all(isinstance(at.get(k), (int, float)) for k in ("timesteps", "wall_s", "mean_reward", "episodes")):
        return None
    if at["timesteps"] > steps:
        return None
    whole = ("timesteps", "episodes", "seed", "rounds")
    keys = [k for k in SOLVED_KEYS if isinstance(at.get(k), (int, float))]  # runs before the margin lack the last three
    return {k: int(at[k]) if k in whole else float(at[k]) for k in keys}


SOLVED_KEYS = ("timesteps", "wall_s", "mean_reward", "episodes", "lower_bound", "confidence", "seed", "rounds")
"""What ``solved_at`` records: the step and time, the confirming mean and episodes, its lower bound, confidence and first env seed."""


def record_confirmation(
    run: RunDir, at: dict[str, float], held: bool, played: tuple[str, list[float], list[int]] | None
) -> None:
    """Keep a confirmation (the extra episodes that check an evaluation at the solved score) in ``state.json``.

    ``confirmations``: step, wall-clock, episodes, mean, whether it held and, from the episodes
    played (``Evaluator.last_played``), std, min, max and mean length; the report shows them.
    """
    row: dict[str, Any] = {**at, "held": held}
    if played is not None and played[0] == "confirming" and played[1]:
        returns, lengths = played[1], played[2]
        mean = sum(returns) / len(returns)
        row.update(
            std_reward=math.sqrt(sum((r - mean) ** 2 for r in returns) / len(returns)),
            min_reward=min(returns),
            max_reward=max(returns),
            mean_ep_length=sum(lengths) / len(lengths),
        )
    RunState(run).confirmed(row)


def confirm_env(preset: Preset, seed: int, episodes: int) -> Callable[[], VecEnv]:
    """The confirming evaluation's env, made when first needed: up to ``CONFIRM_ENVS`` evaluation envs.

    Each confirmation reseeds it from its own stream (:func:`confirm_seed`); the seed it is made with is never played.
    """
    from rlkit.environments.factory import make_env

    return lambda: make_env(
        preset, n_envs=max(1, min(CONFIRM_ENVS, episodes)), seed=confirm_seed(seed, -1), train=False
    )


def confirm_seed(seed: int, k: int) -> int:
    """The first env seed of a run's k-th confirmation: a stream no periodic evaluation (nor benchmark re-scoring) draws from."""
    return stream_seed(seed, "confirm", k)


def _doctor_watch(
    run: RunDir, preset: Preset, display: TrainingDisplay, evaluator: Evaluator, solved: StopWhenSolved
) -> DoctorWatch:
    """The run doctor after every evaluation: a history line for each finding the first time it fires."""
    from rlkit.training.doctor_watch import DoctorWatch

    watch = DoctorWatch(
        preset,
        run.read_config()[0],
        lambda finding, step: display.on_finding(finding.headline, step, finding.advice),
        state=lambda: {"solved": solved.solved},
        run=run,
        history=evaluator.history,
    )
    evaluator.callback_after_eval.append(watch.after_eval)
    return watch


def _confirmed_before(state: dict[str, Any]) -> int:
    """The seed streams the run's confirmations have used: one per round played (one for rows before rounds)."""
    found = state.get("confirmations")
    rows = [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []
    return sum(int(c["rounds"]) if isinstance(c.get("rounds"), int) else 1 for c in rows)


def solved_line(at: dict[str, float], score: float | None) -> str:
    """How a confirmation came out, in words: its mean, episodes and, with a margin, the lower bound against the score."""
    text = f"mean {at['mean_reward']:.1f} over {int(at['episodes'])}"
    if "lower_bound" not in at:
        return f"{text} episodes"
    text += " fresh episodes"
    confidence = at.get("confidence", 0.0)
    if confidence > 0 and score is not None:
        sign = ">=" if at["lower_bound"] >= score else "<"
        text += f", {confidence:.0%} lower bound {at['lower_bound']:.1f} {sign} {score:g}"
    return text


class _Session:
    """One training session of a run: its hooks on the one evaluator, its ``learn``, and how it ends.

    It ends finished (:meth:`_finish`), stopped by a signal at a checkpoint it saves
    (:meth:`_stop_by_signal`), abandoned by a second Ctrl-C (:meth:`_abandon`) or crashed
    (:meth:`_crash`); each records itself through :class:`RunState`, the one writer of ``state.json``.
    """

    def __init__(
        self,
        run: RunDir,
        preset: Preset,
        trainee: Trainee,
        eval_env: VecEnv,
        *,
        seed: int,
        request: Request,
        solved_at: dict[str, float] | None = None,
        resumed_from: tuple[int, float, float] | None = None,
    ) -> None:
        from rlkit.training.callbacks import Checkpointer, Clock, Evaluator, RunRecorder, StopOnSignal
        from rlkit.training.display import TrainingDisplay, short_path

        self.run, self.preset, self.trainee, self.model = run, preset, trainee, trainee.model
        self.request, self.tracker = request, request.tracker
        self.state = RunState(run)
        self.resumed = resumed_from is not None
        self.start_steps, self.wall_before, best = resumed_from or (0, 0.0, -math.inf)
        self.clock = Clock(self.wall_before)
        self.display = TrainingDisplay(preset.n_timesteps, self.start_steps, quiet=request.quiet)
        self.solved = self._stopping_rule(seed, solved_at)
        recorder = RunRecorder(run, self.display)
        self.evaluator = Evaluator(
            eval_env,
            eval_freq=preset.eval_freq,
            n_episodes=preset.eval_episodes,
            clock=self.clock,
            history=run.read_evaluations(),
            best_mean_reward=best,
            callback_on_new_best=[recorder.on_new_best],
            callback_after_eval=[recorder.after_eval, self.solved],
            callback_on_progress=[self.display.on_progress],
            clip_reward=preset.atari is not None and preset.atari.clip_reward,
        )
        self.watch = None if request.quiet else _doctor_watch(run, preset, self.display, self.evaluator, self.solved)
        self.stopper = StopOnSignal()  # installed around learning
        self.checkpointer = Checkpointer(
            run,
            every=preset.checkpoint_freq,
            keep=preset.keep_checkpoints,
            save_buffer=preset.checkpoint_replay_buffer,
            clock=self.clock,
            evaluator=self.evaluator,
            display=self.display,
            stopping=lambda: self.stopper.received is not None,
            start=self.start_steps,
        )
        self.resume_cmd = f"rlkit train --resume {shlex.quote(short_path(run.path))}"
        self.saving = False
        """Whether a checkpoint is being saved after a signal (a second Ctrl-C then abandons it)."""

    def _stopping_rule(self, seed: int, solved_at: dict[str, float] | None) -> StopWhenSolved:
        from rlkit.training.callbacks import StopWhenSolved

        preset = self.preset
        return StopWhenSolved(
            preset.solved_score,
            preset.stop_on_solved
            and solved_at is None,  # stops a run once: trained further, it trains all it was asked
            confirm_episodes=preset.solved_episodes,
            confirm_env=confirm_env(preset, seed, preset.solved_episodes) if preset.solved_episodes > 0 else None,
            confirm_seed=lambda k: confirm_seed(seed, k),
            confidence=preset.solved_confidence,
            rounds=preset.solved_rounds,
            confirmed_before=_confirmed_before(self.run.read_state()),
            solved_at=solved_at,
            on_solved=self._on_solved,
            on_confirmation=self._on_confirmation,
        )

    def _on_solved(self, at: dict[str, float]) -> None:
        self.state.solved(at)
        self.display.message(
            f"solved at step {int(at['timesteps']):,} after {at['wall_s']:.1f} s: "
            f"{solved_line(at, self.preset.solved_score)}"
        )

    def _on_confirmation(self, at: dict[str, float], held: bool) -> None:
        record_confirmation(self.run, at, held, self.evaluator.last_played)
        if not held:
            line = solved_line(at, self.preset.solved_score)
            self.display.message(f"step {int(at['timesteps']):,}: not confirmed: {line}")

    def _announce(self) -> None:
        from rlkit.training.display import short_path

        preset, display, solved_at = self.preset, self.display, self.solved.solved_at
        display.watch_threads(self.trainee.tuner)
        display.restore(self.evaluator.history, preset.eval_episodes)
        verb = f"resuming at step {self.start_steps:,}" if self.resumed else "training"
        display.message(f"{verb}: {preset.env_id} for {preset.n_timesteps:,} steps")
        display.message(f"run directory: {short_path(self.run.path)}")
        if solved_at is not None and preset.stop_on_solved:
            display.message(
                f"already solved at step {int(solved_at['timesteps']):,}; stop_on_solved stops once: "
                f"on to {preset.n_timesteps:,} steps"
            )

    def train(self, *, discard: Callable[[], None] | None = None) -> TrainResult:
        """Train the session and record how it ended; ``discard`` removes a new run that a full disk
        stops before its first checkpoint. The tracker mirrors the logger's scalars while training and
        gets the run's artefacts at the end."""
        from rlkit.training import loop, tracking
        from rlkit.training.callbacks import DisplayUpdater

        self._announce()
        tracker = self.tracker
        tracked: list[BaseCallback] = [tracking.TrackingCallback(tracker)] if tracker is not None else []
        _install_thread_hook()
        with self.stopper, contextlib.closing(self.solved):
            try:
                with self.display:
                    learned = loop.learn(
                        self.trainee,
                        self.evaluator,
                        total_steps=self.preset.n_timesteps,
                        stopper=self.stopper,
                        callbacks=[
                            self.checkpointer,
                            DisplayUpdater(self.display),
                            *tracked,
                            *([self.watch] if self.watch else []),
                            *self.request.callbacks,
                        ],
                        continue_counter=self.resumed,
                    )
                if learned.signal is not None:
                    self._stop_by_signal(learned.steps, learned.signal)
                final_eval = self.evaluator.last
                self._final_save(learned.steps)
            except Interrupted:
                raise
            except KeyboardInterrupt:  # a second Ctrl-C: stop now, keep what is intact, say so
                self._abandon()
            except BaseException as exc:
                self._crash(exc, discard)
        return self._finish(learned.steps, final_eval)

    def _stop_by_signal(self, steps: int, signum: int) -> NoReturn:
        """A signal stopped training: save a checkpoint at the step it stopped, and say how to resume."""
        from rlkit.training import tracking

        self.saving = True
        self.display.message(f"stopping at step {steps:,}: saving a checkpoint (Ctrl-C again abandons it)")
        if self.checkpointer.last_saved != steps:  # not just written by the periodic checkpoint
            self.checkpointer.save()
        atomic.write_with(self.run.final_model, self.model.save)
        self.state.interrupted(steps, self.clock.seconds())
        self.run.remove_staging()
        if self.tracker is not None:
            tracking.finish_run(self.tracker, self.run, "killed")
        raise Interrupted(
            # The command on a line of its own: it does not wrap at 80 columns, and copies whole.
            f"interrupted at step {steps:,}/{self.preset.n_timesteps:,}; checkpoint saved. Resume with:\n  {self.resume_cmd}",
            signum,
        )

    def _final_save(self, steps: int) -> None:
        """The final model, and a checkpoint at the last step so the run can be extended exactly
        (``rlkit train --resume RUN --steps N``)."""
        done = self.run.checkpoint_dirs()
        if self.preset.checkpoint_freq > 0 and (not done or not done[-1].name.endswith(f"-{steps:012d}")):
            self.checkpointer.save()
        atomic.write_with(self.run.final_model, self.model.save)

    def _abandon(self) -> NoReturn:
        good = _last_good(self.run)
        self.run.remove_staging()
        what = "the checkpoint being saved was abandoned" if self.saving else "stopped without saving"
        with contextlib.suppress(OSError):  # a state that cannot be written must not hide what happened
            self.state.abandoned(good, int(self.model.num_timesteps), f"second Ctrl-C: {what}", self.clock.seconds())
        if self.tracker is not None:  # no uploads now: the user wants out
            with contextlib.suppress(Exception):
                self.tracker.finish("killed")
        then = (
            f"the run resumes from step {good}. Resume with: {self.resume_cmd}"
            if good is not None
            else "it has no checkpoint yet, so it cannot be resumed: start it again"
        )
        raise Interrupted(f"second Ctrl-C: {what}; {then}", 2) from None

    def _crash(self, exc: BaseException, discard: Callable[[], None] | None) -> NoReturn:
        """Record the crash and re-raise it as the one line the user needs (a full disk, an env's failure)."""
        from rlkit.environments.subproc import EnvProcessError
        from rlkit.training import tracking

        run, good = self.run, _last_good(self.run)
        run.remove_staging()
        full = atomic.is_disk_full(exc) or isinstance(exc, atomic.DiskFull)
        if atomic.is_disk_full(exc):
            message = atomic.disk_full_message(Path(getattr(exc, "filename", None) or run.path))
        else:
            message = str(exc) if isinstance(exc, RlkitError) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError):
            self.state.crashed(good, int(self.model.num_timesteps), message, self.clock.seconds())
        if self.tracker is not None:
            with contextlib.suppress(Exception):  # never hide the error itself
                tracking.finish_run(self.tracker, run, "failed")
        if full and good is None and discard is not None:
            discard()  # nothing to resume: keep no half-made run (and free what it took)
            raise RlkitError(f"{message}; the new run had no checkpoint yet and was removed") from None
        if full:
            kept = f"the last good checkpoint (step {good}) is intact" if good is not None else "no checkpoint yet"
            raise RlkitError(f"{message}; {kept}; free some space, then: {self.resume_cmd}") from None
        if isinstance(exc, EnvProcessError):  # the env failed, not the run: say how it goes on
            then = f"resume from step {good:,}: {self.resume_cmd}" if good is not None else "no checkpoint yet"
            raise EnvProcessError(f"{message}; {then}") from None
        raise exc

    def _finish(self, steps: int, final_eval: dict[str, float] | None) -> TrainResult:
        from rlkit.training import tracking

        wall = self.clock.seconds()
        sps = (steps - self.start_steps) / (wall - self.wall_before) if wall > self.wall_before else 0.0
        best = self.evaluator.best_mean_reward
        best_value = best if math.isfinite(best) else None
        tuner = self.trainee.tuner
        shares = {str(c): round(f, 4) for c, f in tuner.cycle_shares().items()} if tuner is not None else None
        self.state.finished(
            steps,
            wall,
            torch_thread_shares=shares,
            steps_per_s=sps,
            best_mean_reward=best_value,
            final_eval=final_eval,
            solved=self.solved.solved,
        )
        self.run.remove_staging()
        if self.tracker is not None:
            summary = {
                "steps_per_s": sps,
                "wall_s": wall,
                "best_mean_reward": best_value,
                "solved": float(self.solved.solved),
            }
            if final_eval is not None:
                summary.update({f"final_{key}": value for key, value in final_eval.items()})
            tracking.finish_run(self.tracker, self.run, "finished", summary)
        return TrainResult(
            self.run.path,
            steps,
            wall,
            sps,
            best_value,
            final_eval,
            self.solved.solved,
            self.solved.solved_at,
            session_start=self.start_steps,
            session_wall_s=wall - self.wall_before,
        )


def _install_thread_hook() -> None:
    """Make a full disk in a library's writer thread (TensorBoard's) one line on stderr, not a traceback.

    Installed once per process (those threads outlive a run) and passing every other exception
    to the hook that was there before.
    """
    previous = threading.excepthook
    if getattr(previous, "rlkit_disk_full", False):
        return

    def handle(args: threading.ExceptHookArgs) -> Any:
        if args.exc_value is None or not atomic.is_disk_full(args.exc_value):
            return previous(args)
        name = args.thread.name if args.thread is not None else "?"
        filename = getattr(args.exc_value, "filename", None)
        where = f" writing {filename}" if filename else ""
        _stderr(f"warning: background writer thread {name}: no space left on the device{where}")
        return None

    handle.rlkit_disk_full = True  # type: ignore[attr-defined]
    threading.excepthook = handle


def finished_result(run_path: Path) -> TrainResult:
    """The result of a run that already finished, read from its ``state.json``."""
    run = RunDir.open(run_path)
    state = run.read_state()
    if state.get("status") != "finished":
        raise RlkitError(f"{run_path} has not finished (status {state.get('status', 'unknown')})")
    return TrainResult(
        run.path,
        int(state.get("num_timesteps", 0)),
        float(state.get("wall_s", 0.0)),
        float(state.get("steps_per_s", 0.0)),
        state.get("best_mean_reward"),
        state.get("final_eval"),
        bool(state.get("solved", False)),
        _solved_before(state, int(state.get("num_timesteps", 0))),
        session_start=int(state.get("num_timesteps", 0)),  # this call trained nothing
        session_wall_s=0.0,
    )


def extend(
    run_path: Path,
    total_steps: int,
    *,
    device: str = "auto",
    quiet: bool = False,
    argv: list[str] | None = None,
    callbacks: list[BaseCallback] | None = None,
    without_buffer: bool = False,
    notify: Callable[[str], None] | None = None,
    track: str | None = None,
) -> TrainResult:
    """Train a run (finished or interrupted) on to a new total budget of ``total_steps``.

    The run continues from its newest checkpoint (a finished run saved one at its last step)
    with the same step counter, replay buffer and evaluation history. Schedules are anchored in
    absolute steps, so extending changes nothing already scheduled: epsilon still reaches its
    final value at ``exploration_fraction`` x the *original* budget (never rises again), and
    prioritized replay's beta likewise; ``exploration_fraction`` and ``per_beta_fraction`` in
    the run's config are rescaled to the new total to say so. A ``linear`` learning-rate
    schedule is stretched over the new total (it was at zero at the old end).
    """
    result = resume(
        run_path,
        device=device,
        quiet=quiet,
        argv=argv,
        callbacks=callbacks,
        without_buffer=without_buffer,
        notify=notify,
        total_steps=total_steps,
        track=track,
    )
    assert result is not None
    return result


@dataclass
class _Extension:
    """A run's config over a new total budget, written once the resume is known to proceed."""

    preset: Preset
    alias: str
    seed: int
    source: str
    history: list[int]
    notes: list[str]
    """What the new total changes beyond the budget (a schedule ending earlier), said before training."""

    def write(self, run: RunDir) -> None:
        run.write_config(self.preset, self.alias, self.source, self.seed)
        RunState(run).budget(self.preset.n_timesteps, self.history)


def _extended(run: RunDir, preset: Preset, total_steps: int) -> _Extension:
    """Check that ``total_steps`` is more than the run trained, and rescale its schedules to it."""
    alias, seed, _ = run.read_config()
    checkpoints = run.checkpoint_dirs()
    if not checkpoints:
        raise RlkitError(f"{run.path} has no checkpoint to continue from (it stopped before the first one)")
    at = int(checkpoints[-1].name.split("-")[1])  # the folder names its step (its state.json is checked later)
    try:
        trained = int(run.read_state().get("num_timesteps", at))
    except (TypeError, ValueError):
        raise RlkitError(f"{run.state_file}: damaged run state (num_timesteps is not a number)") from None
    if total_steps <= max(at, trained):
        raise RlkitError(
            f"--steps {total_steps}: the run has already trained {max(at, trained)} steps; "
            "give a larger total budget (--steps is the new total, not the steps to add)"
        )
    if at < trained:
        raise RlkitError(
            f"{run.path} trained {trained} steps but its newest checkpoint is at step {at} "
            "(it finished before rlkit saved a final checkpoint, or with checkpoint_freq 0); it cannot be "
            f"continued exactly: start a new run from its weights with rlkit train {alias} --init-from {run.path}"
        )
    old_total = preset.n_timesteps
    fractions, notes = _rescaled_fractions(preset, old_total, total_steps)
    extended = validate({**to_plain(preset), "n_timesteps": total_steps, **fractions}, f"--steps {total_steps}")
    source = f"{_config_source(run)}, budget extended from {old_total} to {total_steps}"
    history = [*run.read_state().get("budget_history", [old_total]), total_steps]
    return _Extension(extended, alias, seed, source, history, notes)


def _rescaled_fractions(preset: Preset, old_total: int, total_steps: int) -> tuple[dict[str, float], list[str]]:
    """The schedules' fractions over a new total, anchored at the same absolute steps.

    A total below the run's budget (a run that stopped once solved, or one cut short) gives a
    fraction above 1: the schedule is still on its way when the new total ends, exactly where the
    first run's would have been; a note says so.
    """
    scale = old_total / total_steps
    fractions: dict[str, float] = {}
    notes: list[str] = []
    for key, what in (("exploration_fraction", "epsilon"), ("per_beta_fraction", "PER's beta")):
        value = getattr(preset, key) * scale
        fractions[key] = value
        if value > 1.0 and (key != "per_beta_fraction" or preset.prioritized_replay):
            ends = int(getattr(preset, key) * old_total)
            notes.append(f"budget cut to {total_steps:,}: {what} keeps its schedule (its end at step {ends:,})")
    return fractions, notes


def apply_schedules(model: Any, preset: Preset) -> None:
    """Set the model's epsilon schedule and beta anneal from ``preset`` (as ``build_model`` does)."""
    from stable_baselines3.common.utils import LinearSchedule

    if hasattr(model, "exploration_schedule"):
        model.exploration_fraction = preset.exploration_fraction
        model.exploration_schedule = LinearSchedule(
            model.exploration_initial_eps, model.exploration_final_eps, preset.exploration_fraction
        )
    if hasattr(model, "per_beta_fraction"):
        model.per_beta_fraction = float(preset.per_beta_fraction)


def _config_source(run: RunDir) -> str:
    first = run.config.read_text().splitlines()[0] if run.config.is_file() else ""
    marker = " from "
    if marker in first:
        return first.split(marker, 1)[1].rsplit(", seed ", 1)[0]
    return "the run's config"


@dataclass
class Weights:
    """A trained model's Q-network weights, read without unpickling anything."""

    source: Path
    state: dict[str, Any]


def read_weights(source: Path) -> Weights:
    """The policy weights of a model ``.zip``, or of a run directory's final (else best) model.

    Only ``policy.pth`` is read, with ``torch.load(weights_only=True)``: tensors, never code.
    """
    import io
    import pickle
    import zipfile

    import torch

    path = source
    if source.is_dir():
        candidates = [source / "model.zip", source / "best_model.zip"]
        found = [c for c in candidates if c.is_file()]
        if not found:
            raise RlkitError(f"--init-from {source}: no model.zip or best_model.zip in that folder")
        path = found[0]
    elif not source.is_file():
        raise RlkitError(f"--init-from {source}: no such file or run directory")
    try:
        with zipfile.ZipFile(path) as archive:
            raw = archive.read("policy.pth")
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        # weights_only refuses any pickle that names code (UnpicklingError); say so in one line
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RlkitError(f"--init-from {path}: not a readable SB3 model ({first})") from None
    if not isinstance(state, dict):
        raise RlkitError(f"--init-from {path}: policy.pth holds no state dict")
    return Weights(path, state)


def _check_weights(trainee: Trainee, weights: Weights, given: Path) -> None:
    """Copy ``weights`` into the new model's networks; a network that does not fit is one line."""
    problem = _misfit(weights.state, trainee.model.policy.state_dict())
    if problem is not None:
        raise RlkitError(
            f"--init-from {given}: its network does not fit this preset and env ({problem}); "
            "use the same env, policy_kwargs, dueling, noisy and algo"
        )
    trainee.model.policy.load_state_dict(weights.state)


def _misfit(source: dict[str, Any], own: dict[str, Any]) -> str | None:
    """The first difference between two state dicts (shape or names), said briefly; ``None`` when they fit."""
    for key, value in own.items():
        theirs = source.get(key)
        if theirs is not None and tuple(theirs.shape) != tuple(value.shape):
            return f"{key} is {tuple(theirs.shape)} there, {tuple(value.shape)} here"
    missing = [k for k in own if k not in source]
    extra = [k for k in source if k not in own]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} tensors missing there, e.g. {missing[0]}")
        if extra:
            parts.append(f"{len(extra)} unknown here, e.g. {extra[0]}")
        return "; ".join(parts)
    return None


def _last_good(run: RunDir) -> int | None:
    """The step of the newest complete checkpoint, or ``None``."""
    folders = run.checkpoint_dirs()
    return int(folders[-1].name.split("-")[1]) if folders else None


def _gradient_step(model: Any) -> dict[str, str] | None:
    """Which parts of the gradient step the model's engine took, and why a fast one was declined."""
    engine = getattr(model, "engine", None)
    return engine.describe() if engine is not None else None


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return "cpu"

"""Training in a run directory, start to finish, and resuming an interrupted run.

Read top to bottom: resolve the device, create the run directory and record the config,
build the env, model and thread tuner (:func:`rlkit.training.factory.build`), hook the run
directory onto the evaluator (evaluations CSV, best model, display, solved), add checkpoints,
learn (:func:`rlkit.training.loop.learn`, the loop tuning trials use too), then save the final
model and state. ``resume`` rebuilds the same pieces from the run directory's newest checkpoint
and continues the same step counter.
"""

from __future__ import annotations

import contextlib
import math
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlkit.config.presets import Resolved
from rlkit.config.schema import Preset
from rlkit.core import atomic
from rlkit.core.errors import Interrupted, RlkitError
from rlkit.core.seeds import check_seed, derive_seed
from rlkit.training.loop import EVAL_SEED_OFFSET
from rlkit.training.rundir import RunDir, now_iso

if TYPE_CHECKING:
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import VecEnv

    from rlkit.training.factory import Trainee


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
) -> TrainResult:
    """Train a new run from a resolved preset; ``callbacks`` are extra SB3 callbacks.

    ``init_from`` (a run directory or a model ``.zip``) starts from trained weights: the Q-network
    and target network of that model, with a fresh optimizer, replay buffer and schedules.
    """
    from rlkit.core.threads import available_cores
    from rlkit.environments.factory import make_env
    from rlkit.training.factory import build, resolve_device

    check_seed(seed)
    torch_device = resolve_device(device)  # fails before anything is written
    available_cores()  # so does a malformed RLKIT_CORES
    preset = resolved.preset
    weights = read_weights(init_from) if init_from is not None else None  # so does an unreadable source
    run = RunDir.create(resolved.alias, seed, root=runs_root, path=run_dir)
    run.write_config(preset, resolved.alias, resolved.source, seed)
    run.append_command(argv)
    trainee = build(preset, seed=seed, device=torch_device, monitor_dir=run.monitor, tensorboard_log=run.tensorboard)
    if weights is not None and init_from is not None:
        _load_weights(trainee, weights, init_from, run)
    run.write_meta(
        {
            "device": _device_name(torch_device),
            "torch_threads": trainee.threads_label,
            "policy": trainee.policy,
            "created": now_iso(),
            **({"init_from": str(weights.source)} if weights is not None else {}),
        }
    )
    run.update_state(status="running", num_timesteps=0, n_timesteps=preset.n_timesteps, wall_s=0.0)
    eval_env = make_env(preset, n_envs=1, seed=derive_seed(seed, EVAL_SEED_OFFSET), train=False)
    return _learn(run, preset, trainee, eval_env, resumed_from=None, quiet=quiet, extra=callbacks)


def resume(
    run_path: Path,
    *,
    device: str = "auto",
    quiet: bool = False,
    argv: list[str] | None = None,
    callbacks: list[BaseCallback] | None = None,
) -> TrainResult | None:
    """Continue a run from its newest checkpoint; ``None`` when it had already finished."""
    from rlkit.environments.factory import make_env
    from rlkit.training.factory import build, resolve_device

    run = RunDir.open(run_path)
    torch_device = resolve_device(device)
    _alias, seed, preset = run.read_config()
    state = run.read_state()
    if state.get("status") == "finished":
        return None
    checkpoints = run.checkpoint_dirs()
    if not checkpoints:
        raise RlkitError(f"{run_path} has no checkpoint to resume from (it stopped before the first one)")
    ckpt = checkpoints[-1]
    ckpt_state = _read_json(ckpt / "state.json")
    steps = ckpt_state.get("num_timesteps")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise RlkitError(f"{ckpt / 'state.json'}: damaged checkpoint state (num_timesteps {steps!r})")
    try:
        wall_before = float(ckpt_state.get("wall_s", 0.0))
        best = ckpt_state.get("best_mean_reward")
        best_before = -math.inf if best is None else float(best)
    except (TypeError, ValueError):
        raise RlkitError(f"{ckpt / 'state.json'}: damaged checkpoint state (wall_s or best_mean_reward)") from None
    history = run.read_evaluations()  # a damaged history fails here, before anything is written
    run.append_command(argv)
    trainee = build(
        preset,
        seed=seed,
        device=torch_device,
        env_seed=derive_seed(seed, steps),
        monitor_dir=run.monitor,
        checkpoint=ckpt,
    )
    model = trainee.model
    apply_schedules(model, preset)  # a budget extended by `extend` re-anchors them
    if (ckpt / "replay_buffer.pkl").exists():
        model.load_replay_buffer(ckpt / "replay_buffer.pkl", truncate_last_traj=False)
    model.set_random_seed(derive_seed(seed, steps))
    model.tensorboard_log = str(run.tensorboard)
    model._last_obs = None  # the fresh env must be reset
    # Evaluations logged after the checkpoint belong to steps that will be replayed.
    run.write_evaluations([row for row in history if row["timesteps"] <= steps])
    run.update_state(status="running", num_timesteps=steps, wall_s=wall_before)
    eval_env = make_env(preset, n_envs=1, seed=derive_seed(seed, EVAL_SEED_OFFSET, steps), train=False)
    return _learn(
        run,
        preset,
        trainee,
        eval_env,
        resumed_from=(steps, wall_before, best_before),
        quiet=quiet,
        extra=callbacks,
    )


def _learn(
    run: RunDir,
    preset: Preset,
    trainee: Trainee,
    eval_env: VecEnv,
    *,
    resumed_from: tuple[int, float, float] | None,
    quiet: bool,
    extra: list[BaseCallback] | None = None,
) -> TrainResult:
    from rlkit.training import loop
    from rlkit.training.callbacks import (
        Checkpointer,
        Clock,
        DisplayUpdater,
        Evaluator,
        RunRecorder,
        StopOnSignal,
        StopWhenSolved,
    )
    from rlkit.training.display import TrainingDisplay

    model = trainee.model
    start_steps, wall_before, best = resumed_from or (0, 0.0, -math.inf)
    clock = Clock(wall_before)
    display = TrainingDisplay(preset.n_timesteps, start_steps, quiet=quiet)
    recorder = RunRecorder(run, display)
    solved = StopWhenSolved(preset.solved_score, preset.stop_on_solved)
    evaluator = Evaluator(
        eval_env,
        eval_freq=preset.eval_freq,
        n_episodes=preset.eval_episodes,
        clock=clock,
        history=run.read_evaluations(),
        best_mean_reward=best,
        callback_on_new_best=[recorder.on_new_best],
        callback_after_eval=[recorder.after_eval, solved],
    )
    checkpointer = Checkpointer(
        run,
        every=preset.checkpoint_freq,
        keep=preset.keep_checkpoints,
        save_buffer=preset.checkpoint_replay_buffer,
        clock=clock,
        evaluator=evaluator,
        display=display,
    )
    verb = f"resuming at step {start_steps}" if resumed_from else "training"
    display.message(f"{verb}: {preset.env_id} for {preset.n_timesteps} steps -> {run.path}")
    with StopOnSignal() as stopper:
        try:
            with display:
                learned = loop.learn(
                    trainee,
                    evaluator,
                    total_steps=preset.n_timesteps,
                    stopper=stopper,
                    callbacks=[checkpointer, DisplayUpdater(display), *(extra or [])],
                    continue_counter=resumed_from is not None,
                )
        except BaseException as exc:
            run.update_state(status="crashed", error=f"{type(exc).__name__}: {exc}", wall_s=clock.seconds())
            raise

    steps = learned.steps
    if learned.signal is not None:
        checkpointer.save()
        atomic.write_with(run.final_model, model.save)
        run.update_state(status="interrupted", num_timesteps=steps, wall_s=clock.seconds())
        resume_cmd = f"rlkit train --resume {shlex.quote(str(run.path))}"
        raise Interrupted(
            f"interrupted at step {steps}/{preset.n_timesteps}; checkpoint saved. Resume with: {resume_cmd}",
            learned.signal,
        )

    final_eval = evaluator.last
    done_ckpts = run.checkpoint_dirs()
    if preset.checkpoint_freq > 0 and (not done_ckpts or not done_ckpts[-1].name.endswith(f"-{steps:012d}")):
        checkpointer.save()  # the run can be extended exactly: `rlkit train --resume RUN --steps N`
    atomic.write_with(run.final_model, model.save)
    wall = clock.seconds()
    done = steps - start_steps
    sps = done / (wall - wall_before) if wall > wall_before else 0.0
    best_value = evaluator.best_mean_reward if math.isfinite(evaluator.best_mean_reward) else None
    tuner = trainee.tuner
    shares = {str(c): round(f, 4) for c, f in tuner.cycle_shares().items()} if tuner is not None else None
    run.update_state(
        torch_thread_shares=shares,
        status="finished",
        num_timesteps=steps,
        wall_s=wall,
        steps_per_s=sps,
        best_mean_reward=best_value,
        final_eval=final_eval,
        solved=solved.solved,
        finished=now_iso(),
    )
    return TrainResult(run.path, steps, wall, sps, best_value, final_eval, solved.solved)


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
    )


def extend(
    run_path: Path,
    total_steps: int,
    *,
    device: str = "auto",
    quiet: bool = False,
    argv: list[str] | None = None,
    callbacks: list[BaseCallback] | None = None,
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
    run = RunDir.open(run_path)
    alias, seed, preset = run.read_config()
    checkpoints = run.checkpoint_dirs()
    if not checkpoints:
        raise RlkitError(f"{run_path} has no checkpoint to continue from (it stopped before the first one)")
    at = int(_read_json(checkpoints[-1] / "state.json")["num_timesteps"])
    trained = int(run.read_state().get("num_timesteps", at))
    if total_steps <= max(at, trained):
        raise RlkitError(
            f"--steps {total_steps}: the run has already trained {max(at, trained)} steps; "
            "give a larger total budget (--steps is the new total, not the steps to add)"
        )
    if at < trained:
        raise RlkitError(
            f"{run_path} trained {trained} steps but its newest checkpoint is at step {at} "
            "(it finished before rlkit saved a final checkpoint, or with checkpoint_freq 0); it cannot be "
            f"continued exactly: start a new run from its weights with rlkit train {alias} --init-from {run_path}"
        )
    old_total = preset.n_timesteps
    scale = old_total / total_steps
    extended = preset.model_copy(
        update={
            "n_timesteps": total_steps,
            "exploration_fraction": preset.exploration_fraction * scale,
            "per_beta_fraction": preset.per_beta_fraction * scale,
        }
    )
    run.write_config(extended, alias, f"{_config_source(run)}, budget extended from {old_total} to {total_steps}", seed)
    history = [*run.read_state().get("budget_history", [old_total]), total_steps]
    run.update_state(status="interrupted", n_timesteps=total_steps, budget_history=history)
    result = resume(run_path, device=device, quiet=quiet, argv=argv, callbacks=callbacks)
    assert result is not None
    return result


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
    except (zipfile.BadZipFile, KeyError, OSError, RuntimeError, EOFError) as exc:
        raise RlkitError(f"--init-from {path}: not a readable SB3 model ({exc})") from None
    if not isinstance(state, dict):
        raise RlkitError(f"--init-from {path}: policy.pth holds no state dict")
    return Weights(path, state)


def _load_weights(trainee: Trainee, weights: Weights, given: Path, run: RunDir) -> None:
    """Copy ``weights`` into the new model's networks; a network that does not fit is one line."""
    own = trainee.model.policy.state_dict()
    problem = _misfit(weights.state, own)
    if problem is not None:
        import shutil

        shutil.rmtree(run.path, ignore_errors=True)  # nothing of this run was trained
        with contextlib.suppress(OSError):
            run.path.parent.rmdir()  # runs/<alias>/ when this was its only run
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


def _device_name(device: str) -> str:
    if device.startswith("cuda"):
        import torch

        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return "cpu"


def _read_json(path: Path) -> dict[str, Any]:
    from rlkit.training.rundir import read_json_object

    return read_json_object(path, "checkpoint state")

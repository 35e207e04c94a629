"""Training in a run directory, start to finish, and resuming an interrupted run.

Read top to bottom: resolve the device, create the run directory and record the config,
build the env, model and thread tuner (:func:`rlkit.training.factory.build`), hook the run
directory onto the evaluator (evaluations CSV, best model, display, solved), add checkpoints,
learn (:func:`rlkit.training.loop.learn`, the loop tuning trials use too), then save the final
model and state. ``resume`` rebuilds the same pieces from the run directory's newest checkpoint
and continues the same step counter.
"""

from __future__ import annotations

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
) -> TrainResult:
    """Train a new run from a resolved preset; ``callbacks`` are extra SB3 callbacks."""
    from rlkit.core.threads import available_cores
    from rlkit.environments.factory import make_env
    from rlkit.training.factory import build, resolve_device

    check_seed(seed)
    torch_device = resolve_device(device)  # fails before anything is written
    available_cores()  # so does a malformed RLKIT_CORES
    preset = resolved.preset
    run = RunDir.create(resolved.alias, seed, root=runs_root, path=run_dir)
    run.write_config(preset, resolved.alias, resolved.source, seed)
    run.append_command(argv)
    trainee = build(preset, seed=seed, device=torch_device, monitor_dir=run.monitor, tensorboard_log=run.tensorboard)
    run.write_meta(
        {
            "device": _device_name(torch_device),
            "torch_threads": trainee.threads_label,
            "policy": trainee.policy,
            "created": now_iso(),
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


def _device_name(device: str) -> str:
    if device == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(0)})"
    return "cpu"


def _read_json(path: Path) -> dict[str, Any]:
    from rlkit.training.rundir import read_json_object

    return read_json_object(path, "checkpoint state")

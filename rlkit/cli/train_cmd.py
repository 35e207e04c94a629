"""``rlkit train``: train a preset, or resume an interrupted run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from rlkit.cli.common import (
    DeviceOpt,
    ImportOption,
    TrackOpt,
    err,
    explain_resolved,
    fail,
    one_line_errors,
    out,
    seed_value,
    track_name,
)

if TYPE_CHECKING:
    from rlkit.training.train import TrainResult


@one_line_errors
def train(
    env: Annotated[
        Optional[str],
        typer.Argument(
            help="Preset alias (see `rlkit envs`), a gymnasium id (pkg.module:EnvId-v0 imports pkg.module), "
            "or a preset .yaml file."
        ),
    ] = None,
    seed: Annotated[
        Optional[int],
        typer.Option(
            parser=seed_value,
            metavar="SEED",
            help="Random seed, 0 to 4294967295 (2**32 - 1); a random one is drawn and recorded if unset.",
        ),
    ] = None,
    steps: Annotated[
        Optional[int], typer.Option(min=1, help="Training budget in environment steps (overrides the preset).")
    ] = None,
    set_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="Override a preset key: key=value (YAML value; dotted keys for nesting). Repeatable.",
        ),
    ] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML file of overrides laid over the preset.")] = None,
    device: DeviceOpt = "auto",
    run_dir: Annotated[
        Optional[Path], typer.Option(help="Run directory (default runs/<alias>/<time>-s<seed>).")
    ] = None,
    resume: Annotated[
        Optional[Path],
        typer.Option(help="Continue an interrupted run; with --steps N, train a run on to a new total of N steps."),
    ] = None,
    init_from: Annotated[
        Optional[Path],
        typer.Option(help="Start a new run from trained weights: a run directory (its final model) or a model .zip."),
    ] = None,
    without_buffer: Annotated[
        bool,
        typer.Option(
            "--without-buffer",
            help="With --resume: continue even when the checkpoint's replay buffer cannot be restored "
            "(empty buffer; the run records that the resume was not exact).",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live display; only the summary.")] = False,
    track: TrackOpt = None,
    import_: ImportOption = None,
) -> None:
    """Train DQN on an environment, with evaluation, checkpoints and a live display."""
    from rlkit import api

    if resume is not None:
        if env is not None or set_ or config is not None or run_dir is not None or seed is not None or init_from:
            raise fail(
                "--resume continues a run with its saved config; give no env, --seed, --set, --config, --run-dir "
                "or --init-from (only --steps N, a new total budget)"
            )
        if import_:
            raise fail("--resume imports the modules the run recorded (env_imports in its config.yaml); drop --import")
        argv = ["rlkit", "train", "--resume", str(resume), "--device", device, *(["--quiet"] if quiet else [])]
        argv += ["--track", track.value] if track is not None else []
        if without_buffer:
            argv.append("--without-buffer")
        if steps is not None:
            argv[4:4] = ["--steps", str(steps)]
        elif _finished(resume):
            out.print(
                f"{resume}: this run already finished; nothing to do "
                f"(train it further with: rlkit train --resume {resume} --steps N)"
            )
            return
        result = api.resume(
            resume,
            steps=steps,
            device=device,
            quiet=quiet,
            track=track_name(track),
            without_buffer=without_buffer,
            notify=lambda m: err.print(
                f"[yellow]warning:[/] {escape(m)}", markup=True, soft_wrap=True, highlight=False
            ),
            command=argv,
        )
    else:
        if without_buffer:
            raise fail("--without-buffer only applies to --resume RUN_DIR")
        if env is None:
            raise fail("missing environment: rlkit train ENV (see `rlkit envs`) or rlkit train --resume RUN_DIR")
        from rlkit.core.seeds import choose_seed

        chosen_seed = choose_seed(seed)  # drawn here, once: the command line recorded names it
        argv = _command_line(env, chosen_seed, steps, set_ or [], config, device, run_dir, quiet, import_ or [])
        if init_from is not None:
            argv += ["--init-from", str(init_from)]
        argv += ["--track", track.value] if track is not None else []
        result = api.train(
            env,
            seed=chosen_seed,
            steps=steps,
            overrides=list(set_ or []),
            config=config,
            device=device,
            run_dir=run_dir,
            init_from=init_from,
            quiet=quiet,
            track=track_name(track),
            imports=import_ or [],
            command=argv,
            on_resolved=explain_resolved,
        )
    out.print(summary_text(result, quiet))
    from rlkit.training.display import short_path

    out.print(f"run directory: {short_path(result.run_dir)}", soft_wrap=True)


def summary_text(result: TrainResult, quiet: bool) -> str:
    """What ``rlkit train`` prints when a run ends: steps, time, speed, evaluations, solved; short lines.

    A resumed run's speed is the session's, and says so. The solved sentence is the display's
    history line; without a display (``--quiet``) or when an earlier session solved it, it is here.
    """
    final = result.final_eval
    final_text = "-" if final is None else f"{final['mean_reward']:.1f} ± {final['std_reward']:.1f}"
    best_text = "-" if result.best_mean_reward is None else f"{result.best_mean_reward:.1f}"
    solved = ""
    at = result.solved_at
    if at is not None:
        from rlkit.training.train import solved_line  # loaded already: the run trained in this process

        earlier = at["timesteps"] <= result.session_start and result.session_start > 0
        sentence = (
            f"\nsolved{' earlier:' if earlier else ''} at step {int(at['timesteps']):,} "
            f"after {at['wall_s']:.1f} s ({solved_line(at, _solved_score(result.run_dir))})"
        )
        solved = sentence if quiet or earlier else f"; solved at step {int(at['timesteps']):,}"
    elif result.solved:
        score = _solved_score(result.run_dir)
        solved = "; solved" if score is None else f"; solved (evaluation mean >= {score:g})"
    session = result.num_timesteps - result.session_start
    if result.session_start > 0 and result.session_wall_s is not None:
        done = (
            f"done: {result.num_timesteps:,} steps ({session:,} this session: {result.session_wall_s:.0f} s, "
            f"{result.steps_per_s:,.0f} steps/s; {result.wall_s:.0f} s in all)"
        )
    else:
        done = f"done: {result.num_timesteps:,} steps in {result.wall_s:.0f} s ({result.steps_per_s:,.0f} steps/s)"
    # Short lines: each fits 80 columns whole.
    return f"{done}\nfinal eval {final_text}; best eval {best_text}{solved}"


def _finished(run_dir: Path) -> bool:
    """Whether a run's state says it finished (an unreadable run is left to the resume to report)."""
    from rlkit.core.errors import RlkitError
    from rlkit.training.rundir import RunDir

    try:
        return RunDir.open(run_dir).read_state().get("status") == "finished"
    except RlkitError:
        return False


def _solved_score(run_dir: Path) -> float | None:
    """The run's ``solved_score``, from its saved config."""
    from rlkit.core.errors import RlkitError
    from rlkit.training.rundir import RunDir

    try:
        score = RunDir(Path(run_dir)).read_config()[2].solved_score
    except RlkitError:
        return None
    return None if score is None else float(score)


def _command_line(
    env: str,
    seed: int,
    steps: int | None,
    sets: list[str],
    config: Path | None,
    device: str,
    run_dir: Path | None,
    quiet: bool,
    imports: list[str],
) -> list[str]:
    """The command that reproduces this run, with the seed actually used."""
    argv = ["rlkit", "train", env, "--seed", str(seed)]
    for module in imports:
        argv += ["--import", module]
    if steps is not None:
        argv += ["--steps", str(steps)]
    for pair in sets:
        argv += ["--set", pair]
    if config is not None:
        argv += ["--config", str(config)]
    argv += ["--device", device]
    if run_dir is not None:
        argv += ["--run-dir", str(run_dir)]
    if quiet:
        argv.append("--quiet")
    return argv

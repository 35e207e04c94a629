"""``rlkit evaluate``: the score of a trained run, with its spread, saved beside the run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from rlkit.cli.common import (
    DeviceOpt,
    EnvArg,
    ModelOpt,
    SourceArg,
    err,
    one_line_errors,
    out,
    prose,
    seed_value,
    show_table,
)
from rlkit.cli.progress import episode_progress

if TYPE_CHECKING:
    from rlkit.analysis.evaluation import EvalResult


@one_line_errors
def evaluate(
    run_dir: SourceArg,
    env: EnvArg = None,
    episodes: Annotated[int, typer.Option(help="Number of full evaluation episodes.")] = 50,
    model: ModelOpt = "auto",
    stochastic: Annotated[
        bool, typer.Option("--stochastic", help="Epsilon-greedy instead of the greedy (deterministic) policy.")
    ] = False,
    epsilon: Annotated[Optional[float], typer.Option(help="Epsilon of --stochastic (default 0.05).")] = None,
    seed: Annotated[
        Optional[int],
        typer.Option(
            parser=seed_value,
            metavar="SEED",
            help="Seed of the evaluation episodes, 0 to 2**32-1 (default 100000, the same for every run).",
        ),
    ] = None,
    device: DeviceOpt = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON (nothing else on stdout).")] = False,
) -> None:
    """Evaluate a trained model: mean, std, median, min, max return, mean length, solved fraction.

    RUN_DIR is a run directory, or a bare SB3 model file with the env it plays: `rlkit evaluate model.zip CartPole-v1`.
    """
    from rlkit import api
    from rlkit.analysis.evaluation import DEFAULT_EPSILON, save_result
    from rlkit.core.errors import RlkitError
    from rlkit.core.seeds import check_seed

    if epsilon is not None and not stochastic:
        raise RlkitError("--epsilon only applies to --stochastic evaluation; add --stochastic or drop --epsilon")
    eps = (DEFAULT_EPSILON if epsilon is None else epsilon) if stochastic else None
    if seed is not None:
        check_seed(seed)
    _note_status(run_dir)
    with episode_progress(episodes, "evaluate", enabled=not as_json) as on_episode:
        result = api.evaluate(
            run_dir, env, model=model, episodes=episodes, seed=seed, epsilon=eps, device=device, save=False,
            on_episode=on_episode,
        )  # fmt: skip
    path = save_result(result)
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "saved_to": str(path)}, indent=2))
        return
    _print_table(result)
    out.print(f"saved: {path}")


def _note_status(run_dir: Path) -> None:
    """Say so when the run is still training, or its process died without recording it."""
    from rlkit.training.rundir import GONE, RunDir

    if not (run_dir / "state.json").is_file():
        return
    run = RunDir(run_dir)
    status = run.status()
    if status == GONE:
        step = run.read_state().get("last_checkpoint")
        err.print(
            f"note: {run_dir} {GONE}: its training was killed without recording it"
            + (f" (last checkpoint at step {step}); " if step is not None else "; ")
            + f"continue it with rlkit train --resume {run_dir}",
            soft_wrap=True,
        )
    elif status == "running":
        err.print(f"note: {run_dir} is still training; evaluating the models it has saved so far", soft_wrap=True)


def _print_table(result: EvalResult) -> None:
    from rich.table import Table

    policy = "greedy (deterministic)" if result.epsilon is None else f"epsilon-greedy, epsilon={result.epsilon:g}"
    table = Table(title=f"{result.alias} ({result.env_id}) · model {result.model} ({result.model_path})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = [
        ("episodes", f"{result.episodes}"),
        ("mean return", f"{result.mean:.2f}"),
        ("std", f"{result.std:.2f}"),
        ("median", f"{result.median:.2f}"),
        ("min", f"{result.min:.2f}"),
        ("max", f"{result.max:.2f}"),
        (f"mean episode length ({result.length_unit})", f"{result.mean_length:.1f}"),
    ]
    if result.solved_score is not None and result.solved_fraction is not None:
        rows.append((f"episodes >= {result.solved_score:g} (solved)", f"{result.solved_fraction:.0%}"))
    for name, value in rows:
        table.add_row(name, value)
    show_table(table)
    prose(f"score: {result.score_kind}; policy: {policy}; seed {result.seed}")

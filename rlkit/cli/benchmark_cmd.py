"""``rlkit benchmark``: train and evaluate several seeds of one configuration."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Annotated, Optional

import typer

from rlkit.cli.common import ImportOption, explain_resolved, one_line_errors, out


@one_line_errors
def benchmark(
    env: Annotated[
        str,
        typer.Argument(
            help="Preset alias, gymnasium id (pkg.module:EnvId-v0 imports pkg.module) or preset .yaml file."
        ),
    ],
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds (0..K-1).")] = 5,
    steps: Annotated[
        Optional[int], typer.Option(min=1, help="Training budget per seed (overrides the preset).")
    ] = None,
    jobs: Annotated[int, typer.Option(min=1, help="Seeds trained at once, each in its own process.")] = max(
        1, os.cpu_count() or 1
    ),
    episodes: Annotated[int, typer.Option(min=1, help="Evaluation episodes per final and best model.")] = 100,
    set_: Annotated[
        Optional[list[str]], typer.Option("--set", help="Override a preset key: key=value. Repeatable.")
    ] = None,
    config: Annotated[Optional[Path], typer.Option(help="YAML file of overrides laid over the preset.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda.")] = "auto",
    out_dir: Annotated[
        Optional[Path], typer.Option("--out", help="Results folder (default runs/benchmarks/<alias>-<steps>-<hash>).")
    ] = None,
    import_: ImportOption = None,
) -> None:
    """Train every seed, evaluate final and best models, report mean/median/IQM with 95% CIs and solve times.

    Seeds that already finished in the results folder are reused; interrupted ones are resumed.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from rlkit.analysis.benchmark import benchmark as run_benchmark
    from rlkit.environments.resolve import resolve

    overrides = list(set_ or [])
    if steps is not None:
        overrides.append(f"n_timesteps={steps}")
    resolved = resolve(env, config_file=config, overrides=overrides, imports=import_ or [])
    explain_resolved(resolved)
    argv = ["rlkit", "benchmark", env, "--seeds", str(seeds), "--episodes", str(episodes)]
    for module in import_ or []:
        argv += ["--import", module]
    if steps is not None:
        argv += ["--steps", str(steps)]
    for pair in set_ or []:
        argv += ["--set", pair]
    if config is not None:
        argv += ["--config", str(config)]
    command = shlex.join(argv)
    with Progress(
        TextColumn("[bold]benchmark"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=out,
        disable=not out.is_terminal,
    ) as progress:
        task = progress.add_task("steps", total=resolved.preset.n_timesteps * seeds)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        folder, doc = run_benchmark(
            resolved,
            seeds=seeds,
            jobs=jobs,
            episodes=episodes,
            device=device,
            out=out_dir,
            command=command,
            on_progress=on_progress,
        )
    from rlkit.analysis.benchmark import markdown

    out.print(markdown(doc, command))
    out.print(f"results: {folder}/benchmark.json, benchmark.md, curves.png")

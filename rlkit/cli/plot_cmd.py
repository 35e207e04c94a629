"""``rlkit plot``: learning curves of one or many runs as an image."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from rlkit.cli.common import one_line_errors, out


class XChoice(str, Enum):
    steps = "steps"
    time = "time"


@one_line_errors
def plot(
    run_dirs: Annotated[
        list[Path], typer.Argument(metavar="RUN", help="Run directories; seeds of one config are averaged.")
    ],
    x: Annotated[XChoice, typer.Option("--x", help="Horizontal axis: environment steps or wall-clock time.")] = (
        XChoice.steps
    ),
    out_path: Annotated[
        Optional[Path],
        typer.Option(
            "--out",
            "-o",
            help="Output .png, .svg or .pdf (default RUN_DIR/learning-curve.png for one run, "
            "./learning-curves.png for several).",
        ),
    ] = None,
    smooth: Annotated[
        int, typer.Option(help="Moving-average window of training episodes (0: about a tenth of them).", min=0)
    ] = 0,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
) -> None:
    """Plot evaluation return and smoothed training return against steps or time."""
    from rlkit.analysis.plots import plot_runs

    if out_path is None:
        out_path = run_dirs[0] / "learning-curve.png" if len(run_dirs) == 1 else Path("learning-curves.png")
    written = plot_runs(run_dirs, out_path, axis=x.value, window=smooth, force=force)
    out.print(f"wrote {written}")

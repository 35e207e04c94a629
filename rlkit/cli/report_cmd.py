"""``rlkit report``: one self-contained HTML page of one or many runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rlkit.cli.common import err, one_line_errors, out


@one_line_errors
def report(
    run_dirs: Annotated[
        list[Path], typer.Argument(metavar="RUN", help="Run directories; several make a comparison table.")
    ],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="Output .html file.")] = Path("report.html"),
    episodes: Annotated[
        int, typer.Option(help="Episodes of the evaluation made for a run that has no saved one.", min=1)
    ] = 20,
    video: Annotated[
        bool, typer.Option(help="Embed each run's newest video (one episode is recorded if it has none).")
    ] = True,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
) -> None:
    """Write an offline HTML report: config, versions, wall-clock, evaluations, learning curve, video."""
    from rlkit.analysis.report import build_report

    written = build_report(
        run_dirs, out_path, episodes=episodes, video=video, force=force, notify=lambda m: err.print(m, soft_wrap=True)
    )
    size = written.stat().st_size / 2**20
    out.print(f"wrote {written} ({size:.1f} MiB, self-contained)")

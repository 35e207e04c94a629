"""``rlkit doctor``: what a run's own diagnostics say is wrong, with the evidence and what to try next."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from rlkit.cli.common import one_line_errors, out, show_table

STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


@one_line_errors
def doctor(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (runs/<alias>/<time>-s<seed>).", metavar="RUN")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the findings as JSON instead of a table.")] = False,
) -> None:
    """Read a run's evaluations, training episodes and diag/ figures; list what is wrong, worst first."""
    from rlkit.analysis.doctor import examine

    diagnosis = examine(run_dir)
    if as_json:
        out.print_json(json.dumps(diagnosis.to_dict()))
        return
    read = diagnosis.read
    scope = (
        f"{read['rules']} rules over {read['evaluations']} evaluations, {read['training_episodes']:,} training "
        f"episodes and {read['diagnostics_records']:,} diagnostics records, {read['steps']:,} steps"
    )
    if diagnosis.healthy:
        out.print(f"healthy: no finding in {run_dir} ({scope})", soft_wrap=not out.is_terminal, markup=False)
        return
    from rich.table import Table

    table = Table(title=f"rlkit doctor {run_dir}", caption=scope, show_lines=True, expand=True)
    table.add_column("severity", no_wrap=True)
    table.add_column("finding, evidence and what to try", ratio=1)
    for finding in diagnosis.findings:
        first, last = finding.steps
        figures = " · ".join(f"{k.replace('_', ' ')} {_fmt(v)}" for k, v in finding.figures.items())
        body = [f"[bold]{finding.title}[/bold]", f"steps {first:,}-{last:,} · {figures}"]
        body += [f"try: {line}" for line in finding.advice]
        table.add_row(f"[{STYLE[finding.severity]}]{finding.severity}[/]", "\n".join(body))
    show_table(table)


def _fmt(value: float | int | str) -> str:
    if isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.4g}"

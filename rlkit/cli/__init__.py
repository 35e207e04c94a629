"""The ``rlkit`` command line: one module per command, composed here.

Only typer is imported at start-up; torch, SB3 and gymnasium load inside the commands, so
``rlkit --help`` answers at once.
"""

from __future__ import annotations

from typing import Annotated

import typer

from rlkit.cli import (
    benchmark_cmd,
    doctor_cmd,
    envs_cmd,
    evaluate_cmd,
    export_cmd,
    plot_cmd,
    presets_cmd,
    record_cmd,
    report_cmd,
    train_cmd,
    tune_cmd,
    watch_cmd,
)
from rlkit.cli.common import OneLineGroup, out

app = typer.Typer(
    name="rlkit",
    cls=OneLineGroup,
    help="Train, tune, evaluate and record DQN agents (Stable-Baselines3).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def version_line() -> str:
    """``rlkit X (Stable-Baselines3 Y, torch Z, gymnasium W, Python V)``, from package metadata (no imports)."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from rlkit import __version__

    parts = []
    for label, dist in (("Stable-Baselines3", "stable-baselines3"), ("torch", "torch"), ("gymnasium", "gymnasium")):
        try:
            parts.append(f"{label} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{label} missing")
    return f"rlkit {__version__} ({', '.join(parts)}, Python {platform.python_version()})"


def _print_version(value: bool) -> None:
    if value:
        out.print(version_line())
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", is_eager=True, callback=_print_version, help="Print the versions and exit."),
    ] = False,
) -> None:
    """Train, tune, evaluate and record DQN agents (Stable-Baselines3)."""


app.command("train")(train_cmd.train)
app.command("envs")(envs_cmd.envs)
app.add_typer(tune_cmd.app, name="tune")
app.command("evaluate")(evaluate_cmd.evaluate)
app.command("record")(record_cmd.record)
app.command("watch")(watch_cmd.watch)
app.command("export")(export_cmd.export)
app.command("plot")(plot_cmd.plot)
app.command("report")(report_cmd.report)
app.command("doctor")(doctor_cmd.doctor)
app.command("benchmark")(benchmark_cmd.benchmark)
app.add_typer(presets_cmd.app, name="presets")


def main() -> None:
    """Console-script entry point (a ``tune --jobs`` worker also follows its parent's end here)."""
    from rlkit.core.processes import follow_parent

    follow_parent()
    app(prog_name="rlkit")

"""What every command shares: one-line errors and the console."""

from __future__ import annotations

import functools
from collections.abc import Callable
from enum import Enum
from typing import Annotated, Optional, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from rlkit.core.errors import Interrupted, RlkitError

P = ParamSpec("P")
R = TypeVar("R")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


class Track(str, Enum):
    """Experiment trackers (``rlkit.training.tracking``), each an optional extra."""

    mlflow = "mlflow"
    wandb = "wandb"


TrackOpt = Annotated[
    Optional[Track],
    typer.Option(
        help="Also log to an experiment tracker (an optional extra of rlkit): config, TensorBoard scalars, "
        "evaluations, models. MLFLOW_TRACKING_URI, WANDB_MODE=offline etc. apply; see docs/tracking.md."
    ),
]


def track_name(track: Track | None) -> str | None:
    """The tracker's name, or None."""
    return None if track is None else track.value


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn :class:`RlkitError` into one line on stderr and its exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except Interrupted as exc:
            err.print(f"[bold yellow]stopped:[/] {escape(str(exc))}", markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except RlkitError as exc:
            raise fail(str(exc), exc.exit_code) from None

    return wrapper

"""What every command shares: one-line errors and the console."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from rlkit.core.errors import Interrupted, RlkitError

P = ParamSpec("P")
R = TypeVar("R")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    from rich.markup import escape

    # The message is plain text: brackets in it (pip install 'rlkit[export]', [128,128]) are not markup.
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn :class:`RlkitError` into one line on stderr and its exit code, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except Interrupted as exc:
            from rich.markup import escape

            err.print(f"[bold yellow]stopped:[/] {escape(str(exc))}", markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except RlkitError as exc:
            raise fail(str(exc), exc.exit_code) from None

    return wrapper

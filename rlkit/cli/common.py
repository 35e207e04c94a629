"""What every command shares: one-line errors and the console."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Optional, ParamSpec, TypeVar

import typer
from rich.console import Console

from rlkit.core.errors import Interrupted, RlkitError

if TYPE_CHECKING:
    from rlkit.config.presets import Resolved

P = ParamSpec("P")
R = TypeVar("R")

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    err.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    return typer.Exit(code)


def note(message: str) -> None:
    """One informational line on stderr (stdout stays for results and --json)."""
    err.print(f"[bold cyan]note:[/] {message}", markup=True, soft_wrap=True, highlight=False)


def warn(message: str) -> None:
    """One warning line on stderr."""
    err.print(f"[bold yellow]warning:[/] {message}", markup=True, soft_wrap=True, highlight=False)


def explain_resolved(resolved: Resolved) -> None:
    """Say once what the user did not choose: defaults for an env without a preset, useless settings."""
    from rlkit.config.schema import preset_warnings

    if resolved.defaults:
        filled = ", ".join(
            f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}"
            for key, value in resolved.defaults.items()
        )
        note(
            f"no preset for {resolved.preset.env_id}: defaults sized to {resolved.preset.n_timesteps:,} steps: "
            f"{filled}; change any with --set key=value or a preset file (docs/custom-envs.md)"
        )
    for line in preset_warnings(resolved.preset):
        warn(line)


ImportOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--import",
        metavar="MODULE",
        help="Import this Python module first (it registers custom envs; the current folder is searched). "
        "Repeatable. See docs/custom-envs.md.",
    ),
]


def seed_value(text: str) -> int:
    """``--seed``'s parser: a whole number (its range is checked by :func:`rlkit.core.seeds.check_seed`)."""
    try:
        return int(text)
    except ValueError:
        raise typer.BadParameter(f"{text!r}: a seed must be a whole number from 0 to 4294967295 (2**32 - 1)") from None


def one_line_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn :class:`RlkitError` into one line on stderr and its exit code, never a traceback.

    Also says on stderr which Python module rlkit imports for a custom env, as it imports it.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from rlkit.environments import imports

        imports.set_announcer(note)
        try:
            return command(*args, **kwargs)
        except Interrupted as exc:
            err.print(f"[bold yellow]stopped:[/] {exc}", markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except RlkitError as exc:
            raise fail(str(exc), exc.exit_code) from None

    return wrapper

"""What every command shares: one-line errors, the console, the device option, the CLI's group."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional, ParamSpec, TypeVar

import typer
from rich.markup import escape
from typer.core import TyperArgument, TyperGroup, TyperOption

from rlkit.core.console import PipeSafeConsole
from rlkit.core.errors import Interrupted, RlkitError

if TYPE_CHECKING:
    from rlkit.config.presets import Resolved

P = ParamSpec("P")
R = TypeVar("R")

out = PipeSafeConsole(highlight=False, soft_wrap=True)
err = PipeSafeConsole(stderr=True, highlight=False)


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


def prose(text: str, console: PipeSafeConsole | None = None) -> None:
    """A sentence on stdout (or ``console``): on a terminal wrapped at word boundaries, never cut
    mid-word by the terminal; in a pipe or a log one whole line (grep finds it)."""
    target = console or out
    target.print(text, soft_wrap=not target.is_terminal, markup=False, highlight=False)


def show_table(table: Any, console: PipeSafeConsole | None = None) -> None:
    """A rich table (its title and cells wrap at word boundaries to the terminal's width)."""
    (console or out).print(table, soft_wrap=False)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
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

    A full disk wherever no writer said it better is one line too (where, and the space free).
    Also says on stderr which Python module rlkit imports for a custom env, as it imports it.
    """

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from rlkit.environments import imports

        imports.set_announcer(note)
        try:
            return command(*args, **kwargs)
        except Interrupted as exc:
            err.print(f"[bold yellow]stopped:[/] {escape(str(exc))}", markup=True, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except RlkitError as exc:
            raise fail(str(exc), exc.exit_code) from None
        except OSError as exc:
            from rlkit.core import atomic

            if not atomic.is_disk_full(exc):
                raise
            raise fail(atomic.disk_full_message(Path(exc.filename or "."))) from None

    return wrapper


# ----------------------------------------------------------------------------------------
# Usage errors in one line, flags shown as flags
# ----------------------------------------------------------------------------------------


class OneLineGroup(TyperGroup):
    """The ``rlkit`` group: a usage error (bad choice, unknown option, missing argument) is one line.

    Typer prints usage errors as a usage line, a hint and a boxed message; rlkit prints
    ``error: <message> (see <command> --help)`` on stderr and exits 2, like its own errors.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError
        from typer.exceptions import Abort

        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except NoArgsIsHelpError as exc:  # the help was printed already
            raise SystemExit(exc.exit_code) from None
        except ClickException as exc:
            message = exc.format_message().replace("Value error, ", "")
            message = message.rstrip(".") + _suggestion(exc) if _suggestion(exc) else message
            context = getattr(exc, "ctx", None) if isinstance(exc, UsageError) else None
            hint = f" (see {context.command_path} --help)" if context is not None else ""
            raise SystemExit(fail(f"{message}{hint}", exc.exit_code).exit_code) from None
        except Abort:
            err.print("aborted", soft_wrap=True)
            raise SystemExit(1) from None
        sys.exit(code if isinstance(code, int) else 0)


def _suggestion(exc: Exception) -> str:
    """`` (did you mean 'tpe'?)`` for a choice option given a near miss."""
    import re

    from rlkit.config.schema import did_you_mean

    param = getattr(exc, "param", None)
    descriptor = getattr(param, "type_descriptor", None)
    choices = getattr(descriptor, "choices", None)
    found = re.search(r"'([^']*)' is not one of", str(getattr(exc, "message", "")))
    if not choices or found is None:
        return ""
    names = [str(getattr(choice, "value", choice)) for choice in choices]
    return did_you_mean(found.group(1), names)


def _show_flags_without_a_type() -> None:
    """Typer 0.2x's rich help prints every flag as ``--quiet -q <bool>``, as if it took a value.

    Flags (``--quiet``, ``--force``, ``--help``) take none; show them bare, as click's plain help does.
    """
    shown = TyperOption.display_type_rich
    if getattr(shown, "_rlkit_flags", False):
        return

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag or self.count:
            return None
        return _one_of_many(shown(self, ctx))

    display_type_rich._rlkit_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
    argument_shown = TyperArgument.display_type_rich

    def argument_type_rich(self: TyperArgument, ctx: Any) -> str | None:
        return _one_of_many(argument_shown(self, ctx))

    TyperArgument.display_type_rich = argument_type_rich  # type: ignore[method-assign,assignment]


def _one_of_many(shown: str | None) -> str | None:
    """Typer shows a repeatable value's Python type, ``<list[Path]>``; users read ``<path>...`` (one or more)."""
    if shown is not None and shown.startswith("<list[") and shown.endswith("]>"):
        return f"<{shown[6:-2].lower()}>..."
    return shown


_show_flags_without_a_type()


# ----------------------------------------------------------------------------------------
# Options several commands share
# ----------------------------------------------------------------------------------------

DEVICES = "auto, cpu, cuda, cuda:N"


def check_device(value: str) -> str:
    """Refuse a bad ``--device`` before any work; :func:`rlkit.training.factory.resolve_device` decides."""
    from rlkit.training.factory import resolve_device

    try:
        resolve_device(value)
    except RlkitError as exc:
        raise typer.BadParameter(str(exc).removeprefix(f"--device {value}: ")) from None
    return value


DeviceOpt = Annotated[
    str,
    typer.Option(
        metavar="DEVICE",
        help=f"Torch device: {DEVICES} (auto: CUDA when present).",
        callback=check_device,
    ),
]


SourceArg = Annotated[
    Path,
    typer.Argument(metavar="RUN", help="A run directory made by `rlkit train`, or a bare SB3 DQN/QR-DQN model .zip."),
]
"""The model a command reads: a run directory, or a model file with ``EnvArg``."""

EnvArg = Annotated[
    Optional[str],
    typer.Argument(
        metavar="ENV", help="With a bare model .zip: the env it plays (preset alias, preset file or gymnasium id)."
    ),
]

ModelOpt = Annotated[
    str,
    typer.Option(help="auto (best if present, else final), best, final, or a checkpoint: step-<N> or <N>."),
]

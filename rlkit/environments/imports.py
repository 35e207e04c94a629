"""Python modules that register custom environments: imported only when asked for, and said so.

Gymnasium imports ``pkg.module`` on its own for an id written ``pkg.module:EnvId-v0``. rlkit
never lets it: the schema reads that form as ``env_id: EnvId-v0`` plus ``env_imports:
[pkg.module]`` (:func:`rlkit.config.schema.split_env_id`), and the modules are imported here, by
:func:`import_modules`, which prints which module it imports. A new run imports only modules
named on the command line (``--import pkg.module`` or ``rlkit train pkg.module:EnvId-v0``,
:func:`rlkit.config.presets.check_imports` refuses any other); a run records them in its
``config.yaml`` and the commands that open it import them again (:func:`ensure_imported`).
The current folder is put on ``sys.path`` first, so a user's ``myenv.py`` beside them imports.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from rlkit.config.schema import MODULE_NAME
from rlkit.core.errors import RlkitError

if TYPE_CHECKING:
    from rlkit.config.schema import Preset

_announce: Callable[[str], None] | None = None
_imported: list[str] = []


def set_announcer(announce: Callable[[str], None] | None) -> None:
    """Where the line ``imported Python module 'x' from x.py (...)`` goes (the CLI: stderr); ``None``: nowhere."""
    global _announce
    _announce = announce


def imported_modules() -> list[str]:
    """The modules imported through :func:`import_modules` in this process, in order."""
    return list(_imported)


def _current_folder_on_path() -> None:
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def import_modules(modules: Iterable[str], why: str) -> None:
    """Import each module once, then say which (and its file); any failure is one line naming the module."""
    for module in modules:
        if module in _imported:
            continue
        if not MODULE_NAME.fullmatch(module):
            raise RlkitError(f"--import '{module}' is not a Python module name (valid: pkg.module, no .py)")
        _current_folder_on_path()
        try:
            loaded = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is not None and (module == exc.name or module.startswith(f"{exc.name}.")):
                raise RlkitError(
                    f"cannot import Python module '{module}' ({why}): no module named '{exc.name}' in the current "
                    f"folder ({os.getcwd()}) or the installed packages; run rlkit where {module.split('.')[0]} is, "
                    "or install it (docs/custom-envs.md)"
                ) from None
            raise RlkitError(f"importing Python module '{module}' failed: {_describe(exc)}") from None
        except Exception as exc:  # the user's module failed in its own way: one line, where it failed
            raise RlkitError(f"importing Python module '{module}' failed: {_describe(exc)}") from None
        _imported.append(module)
        if _announce is not None:
            origin = getattr(loaded, "__file__", None)
            where = f" from {_shown(origin)}" if origin else ""
            _announce(f"imported Python module '{module}'{where} ({why})")


def _shown(path: str) -> str:
    """A module's file, relative to the current folder when inside it."""
    relative = os.path.relpath(path)
    return relative if not relative.startswith("..") else path


def describe_exception(exc: BaseException) -> str:
    """``Type: message (file.py line N)``: an exception on one line, where it was raised."""
    return _describe(exc)


def _describe(exc: BaseException) -> str:
    """``Type: message (file.py line N)``: the innermost frame of the failure, on one line."""
    message = " ".join(str(exc).split())
    frames = traceback.extract_tb(exc.__traceback__)
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename:
        where = f" ({os.path.basename(exc.filename)} line {exc.lineno})"
    elif frames:
        where = f" ({os.path.basename(frames[-1].filename)} line {frames[-1].lineno})"
    return f"{type(exc).__name__}: {message}{where}"


def ensure_imported(preset: Preset) -> None:
    """Import the preset's ``env_imports`` (a run's recorded modules) before its env is made."""
    import_modules(preset.env_imports, f"env_imports of {preset.env_id}")

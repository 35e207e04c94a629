"""Where the data folders (``envs/``, ``tuning/``) live, in a source checkout and in a wheel."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

DataKind = Literal["envs", "tuning"]

_PACKAGE = Path(__file__).resolve().parent.parent  # rlkit/


def data_dir(kind: DataKind) -> Path:
    """The folder holding the shipped ``envs`` or ``tuning`` YAML files.

    A wheel carries them inside the package as ``rlkit/_data/<kind>``; a source checkout
    (or an editable install) has them beside the package at the repository root.
    """
    for candidate in (_PACKAGE / "_data" / kind, _PACKAGE.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"rlkit's '{kind}' data folder is missing from this installation")


SPECIAL_ROOTS = (Path("/proc"), Path("/sys"), Path("/dev"))
"""Kernel and device file systems: never a place for rlkit's folders or files."""


def check_folder(path: Path, what: str, *, writable: bool = True) -> None:
    """A folder rlkit may create (or write in) at ``path``; anything else is a one-line error.

    Checked before anything is written: not under ``/proc``, ``/sys`` or ``/dev``; the nearest
    existing part of the path is a folder (not a file), and (``writable``) one this process may write in.
    """
    import os

    from rlkit.core.errors import RlkitError

    named = f"{what}{path}" if what.endswith("=") else f"{what} {path}"
    absolute = Path(os.path.abspath(path))
    for special in SPECIAL_ROOTS:
        if absolute == special or special in absolute.parents:
            raise RlkitError(f"{named}: {special} is a special system folder; choose a folder of your own")
    node = absolute
    while not node.exists() and not node.is_symlink() and node != node.parent:
        node = node.parent
    if not node.is_dir():
        where = "is" if node == absolute else f"needs a folder but {node} is"
        raise RlkitError(f"{named} {where} a file, not a folder; choose a folder")
    if writable and not os.access(node, os.W_OK | os.X_OK):
        raise RlkitError(f"{named}: folder {node} is not writable")


def missing_folders(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet (what ``mkdir -p`` would make), innermost first, absolute."""
    import os

    missing = []
    node = Path(os.path.abspath(path))
    while not node.exists() and not node.is_symlink() and node != node.parent:
        missing.append(node)
        node = node.parent
    return missing


def outermost_missing(path: Path) -> Path | None:
    """The outermost folder :func:`missing_folders` names (the first ``mkdir -p`` makes), or ``None``."""
    missing = missing_folders(path)
    return missing[-1] if missing else None


def make_folder(path: Path, what: str) -> Path:
    """Create the folder ``path`` (with its parents) after :func:`check_folder`; failures are one line."""
    from rlkit.core.errors import RlkitError

    check_folder(path, what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RlkitError(f"{what} {path}: cannot create this folder ({exc.strerror or exc})") from None
    return path

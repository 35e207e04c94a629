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

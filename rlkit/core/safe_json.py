"""JSON rlkit reads back (run state, manifests, evaluations, an SB3 zip's ``data``): bounded, damage is a ValueError.

``json.loads`` raises ``RecursionError`` on deeply nested input (``[[[[...``), which no reader
expects; and a file or zip member may be far larger than any rlkit writes. :func:`loads` and
:func:`load_file` turn both into :class:`JsonDamaged`, a ``ValueError`` (as ``JSONDecodeError``
is), so every reader's existing "damaged" path says it in one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

MAX_BYTES = 64 * 2**20
"""The largest JSON rlkit reads (its state and manifests are a few KiB; an SB3 zip's data, KiBs to MiBs)."""


class JsonDamaged(ValueError):
    """Not JSON rlkit can read: nested too deeply, or too large."""


def loads(data: str | bytes, max_bytes: int = MAX_BYTES) -> Any:
    """``json.loads`` with a size bound and deep nesting as :class:`JsonDamaged`."""
    if len(data) > max_bytes:
        raise JsonDamaged(f"{len(data):,} bytes, larger than the {max_bytes // 2**20} MiB rlkit reads")
    try:
        return json.loads(data)
    except RecursionError:
        raise JsonDamaged("nested too deeply to be rlkit's") from None


def load_file(path: Path, max_bytes: int = MAX_BYTES) -> Any:
    """The JSON in ``path``, its size checked before it is read (OSError as ever for a missing file)."""
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    return loads(data, max_bytes)


def member_size(archive: Any, name: str, max_bytes: int = MAX_BYTES) -> None:
    """Refuse a zip member that would unpack to more than ``max_bytes`` (a zip bomb), before it is read."""
    size = archive.getinfo(name).file_size
    if size > max_bytes:
        raise JsonDamaged(f"its {name} unpacks to {size:,} bytes, more than the {max_bytes // 2**20} MiB rlkit reads")

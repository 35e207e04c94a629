"""Crash-safe file writes: write beside the target, fsync, then rename over it."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlkit.core.errors import RlkitError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
"""``errno`` values of a full disk (or a full quota)."""


class DiskFull(RlkitError):
    """A write failed for want of space; the message names the path and the space needed."""


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def free_bytes(path: Path) -> int | None:
    """Free space for an unprivileged user on the filesystem holding ``path`` (or its nearest parent)."""
    for candidate in (path, *path.parents):
        try:
            return shutil.disk_usage(candidate).free
        except OSError:
            continue
    return None


def disk_full_message(path: Path, needed: int | None = None) -> str:
    """One line for a write that failed because the disk is full: where, how much is needed and free."""

    def mib(n: int) -> str:
        return f"{n / 2**20:.1f} MiB"

    free = free_bytes(path)
    parts = [f"no space left on the device writing {path}"]
    if needed is not None:
        parts.append(f"about {mib(needed)} needed")
    if free is not None:
        parts.append(f"{mib(free)} free")
    return ", ".join(parts)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_new_output(path: Path, force: bool, suffixes: tuple[str, ...], kind: str, flag: str = "--out") -> None:
    """An output path that can be written: a known suffix, an existing folder, no silent overwrite."""
    from rlkit.core.paths import check_folder

    if path.suffix.lower() not in suffixes:
        raise RlkitError(f"{flag} {path}: unknown {kind} type '{path.suffix}'; valid: {', '.join(suffixes)}")
    if not path.parent.is_dir():
        raise RlkitError(f"{flag} {path}: folder {path.parent} does not exist")
    check_folder(path.parent, flag)  # not under /proc, /sys or /dev; writable
    if path.exists() and not path.is_file():
        raise RlkitError(f"{flag} {path}: exists and is not a file (a folder or a special file); give a file path")
    if path.exists() and not force:
        raise RlkitError(f"{path} already exists; use --force to overwrite it or {flag} for another file")


def _umask() -> int:
    """The process umask (read, not changed, where Linux tells it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_with(path: Path, writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` then atomically move the result to ``path``.

    A crash at any moment leaves either the old file or the new one, never a torn file. The file
    gets the permissions a plain ``open(path, "w")`` would give (an existing file keeps its own),
    not the owner-only mode of the temporary file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        writer(tmp)
        os.chmod(tmp, mode)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        if exc.errno in DISK_FULL:  # name the file being written, not its temporary name
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: Path, text: str) -> None:
    """Atomically replace ``path`` with ``text``."""

    def write(tmp: Path) -> None:
        tmp.write_text(text)

    write_with(path, write)


def write_json(path: Path, data: Any) -> None:
    """Atomically replace ``path`` with pretty JSON."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def publish_dir(staging: Path, final: Path) -> None:
    """Atomically move a fully written folder into place (rename is atomic on POSIX)."""
    for file in staging.rglob("*"):
        if file.is_file():
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    _fsync_dir(final.parent)

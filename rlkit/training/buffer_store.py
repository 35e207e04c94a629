"""Replay buffers saved as NumPy ``.npz`` (no pickle) and restored into the model's own fresh buffer.

SB3's ``save_replay_buffer`` pickles the whole buffer object, and unpickling a file can run any
code it names. Here a buffer is its arrays plus a few scalars (``pos``, ``full`` and, per
class, the prioritized buffer's sum tree and largest priority, the frame buffer's slot cursor,
chaining flags and the observations kept aside). Loading reads them with
``allow_pickle=False`` into the buffer the model built itself from the run's config, checking
that every array has the shape and dtype that buffer expects and every scalar is in range, so
a file can only ever supply numbers.

Supported: SB3's ``ReplayBuffer`` and ``NStepReplayBuffer``, rlkit's ``PrioritizedReplayBuffer``
and ``FrameReplayBuffer``.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.buffers import ReplayBuffer

from rlkit.core.errors import RlkitError
from rlkit.replay.buffers import DeviceFrameReplayBuffer, FrameReplayBuffer, PrioritizedReplayBuffer

FORMAT = 1
_ASIDE_KEYS = "aside.keys"
_ASIDE_VALUES = "aside.values"


def buffer_arrays(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    """Every array that is the buffer's content, by name (the live arrays, not copies)."""
    arrays = {name: value for name, value in vars(buffer).items() if isinstance(value, np.ndarray)}
    if isinstance(buffer, PrioritizedReplayBuffer):
        arrays["tree.tree"] = buffer.tree.tree
    return arrays


def _scalars(buffer: ReplayBuffer) -> dict[str, np.ndarray]:
    scalars: dict[str, Any] = {"pos": np.int64(buffer.pos), "full": np.bool_(buffer.full)}
    if isinstance(buffer, PrioritizedReplayBuffer):
        scalars["max_priority"] = np.float64(buffer.max_priority)
    if isinstance(buffer, FrameReplayBuffer):
        scalars["_slot"] = np.int64(buffer._slot)
        scalars["_chained"] = np.array(buffer._chained, dtype=bool)
    return {f"scalar.{k}": np.asarray(v) for k, v in scalars.items()}


def buffer_nbytes(buffer: ReplayBuffer) -> int:
    """About how many bytes :func:`save_buffer` writes."""
    aside = sum(a.nbytes for a in buffer.aside.values()) if isinstance(buffer, FrameReplayBuffer) else 0
    return sum(a.nbytes for a in buffer_arrays(buffer).values()) + aside + 4096


def save_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """Write the buffer's arrays and scalars to ``path`` (an ``.npz``; uncompressed, fast)."""
    if _kind(buffer) not in _SUPPORTED_NAMES:
        raise RlkitError(f"cannot save a {type(buffer).__name__} replay buffer; supported: {_supported_names()}")
    payload: dict[str, np.ndarray] = {
        "format": np.asarray(FORMAT, dtype=np.int64),
        "class": np.asarray(_kind(buffer)),
        **{f"array.{k}": v for k, v in buffer_arrays(buffer).items()},
        **_scalars(buffer),
    }
    if isinstance(buffer, FrameReplayBuffer):
        keys = sorted(buffer.aside)
        payload[_ASIDE_KEYS] = np.asarray(keys, dtype=np.int64)
        payload[_ASIDE_VALUES] = (
            np.stack([buffer.aside[k] for k in keys])
            if keys
            else np.zeros((0, *buffer.obs_shape), dtype=buffer.observations.dtype)
        )
    with open(path, "wb") as handle:  # a file object: numpy would append .npz to a plain name
        np.savez(handle, **payload)  # type: ignore[arg-type]


STREAMED = ("observations", "next_observations")
"""The big arrays: read straight into the buffer's own memory (no second copy of a many-GB buffer)."""


def load_buffer(buffer: ReplayBuffer, path: Path) -> None:
    """Fill ``buffer`` (freshly built by the model) from ``path``; anything unexpected is one line.

    Every entry's header (shape, dtype: never an object array) and every small array's content
    are checked before the buffer changes; the observation arrays are then streamed into place.
    A read that fails half-way leaves the buffer's counters untouched (it holds nothing usable).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            _restore(buffer, archive, path)
    except RlkitError as exc:
        raise RlkitError(f"cannot restore the replay buffer from {path}: {exc}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise RlkitError(f"cannot read the replay buffer {path}: damaged or not an rlkit buffer ({exc})") from None


def _entries(archive: zipfile.ZipFile) -> set[str]:
    names = archive.namelist()
    if any(not n.endswith(".npy") for n in names):
        raise RlkitError("it holds entries that are not .npy arrays")
    return {n[: -len(".npy")] for n in names}


def _read_small(archive: zipfile.ZipFile, name: str) -> np.ndarray:
    with archive.open(f"{name}.npy") as handle:
        return np.lib.format.read_array(handle, allow_pickle=False)


def _header(handle: Any, name: str) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """Shape and dtype of a .npy stream, leaving it at the first data byte; object arrays refused."""
    fmt = np.lib.format
    version = fmt.read_magic(handle)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(handle)
    elif version == (2, 0):
        shape, fortran, dtype = fmt.read_array_header_2_0(handle)
    else:
        raise RlkitError(f"{name} has an unsupported .npy version {version}")
    if dtype.hasobject:
        raise RlkitError(f"{name} is an object array (a pickle); rlkit never loads those")
    if fortran:
        raise RlkitError(f"{name} is in Fortran order; rlkit writes C order")
    return tuple(shape), dtype


def _stream_into(archive: zipfile.ZipFile, path: Path, name: str, target: np.ndarray) -> None:
    """Read a stored (uncompressed) member's data straight into ``target`` with plain file reads.

    zipfile's own reader copies every block twice and computes its CRC on the way (~4x slower);
    the bytes are still checked: their size against the member's, and the file against its
    manifest's sha256 before a resume opens it.
    """
    if not target.flags.c_contiguous:
        raise RlkitError(f"the run's {name} array is not contiguous")
    info = archive.getinfo(f"array.{name}.npy")
    with archive.open(info) as handle:
        _header(handle, name)
        header_len = handle.tell()
    view = target.reshape(-1).view(np.uint8).data
    if info.compress_type != zipfile.ZIP_STORED or info.file_size != header_len + len(view):
        raise RlkitError(f"{name} holds {info.file_size - header_len} bytes, the run's buffer {len(view)}")
    with open(path, "rb", buffering=0) as raw:
        raw.seek(info.header_offset)
        local = raw.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise RlkitError(f"{name}: damaged zip entry")
        start = (
            info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
        )
        raw.seek(start + header_len)
        filled = 0
        while filled < len(view):
            n = raw.readinto(view[filled:])
            if not n:
                raise RlkitError(f"{name} ends after {filled} of {len(view)} bytes (truncated)")
            filled += n


def _restore(buffer: ReplayBuffer, archive: zipfile.ZipFile, path: Path) -> None:
    kind = _kind(buffer)
    if kind not in _SUPPORTED_NAMES:
        raise RlkitError(f"the model's buffer is a {kind}; supported: {_supported_names()}")
    present = _entries(archive)
    targets = buffer_arrays(buffer)
    expected = {f"array.{k}" for k in targets} | set(_scalars(buffer)) | {"format", "class"}
    if isinstance(buffer, FrameReplayBuffer):
        expected |= {_ASIDE_KEYS, _ASIDE_VALUES}
    missing, extra = sorted(expected - present), sorted(present - expected)
    if missing or extra:
        raise RlkitError(f"entries missing: {missing or 'none'}; unexpected: {extra or 'none'}")
    if int(_read_small(archive, "format")) != FORMAT:
        raise RlkitError(f"unknown buffer file format (this rlkit reads format {FORMAT})")
    stored = str(_read_small(archive, "class"))
    if stored != kind:
        raise RlkitError(f"it holds a {stored}, the run's config makes a {kind}")
    saved: dict[str, np.ndarray] = {}
    for name, target in targets.items():
        if name in STREAMED:
            with archive.open(f"array.{name}.npy") as handle:
                shape, dtype = _header(handle, name)
            _check_array(name, _Spec(shape, dtype), target.shape, target.dtype)
        else:
            saved[f"array.{name}"] = _read_small(archive, f"array.{name}")
            _check_array(name, saved[f"array.{name}"], target.shape, target.dtype)
    for key in expected:
        if not key.startswith("array.") and key not in ("format", "class"):
            saved[key] = _read_small(archive, key)
    scalars = _checked_scalars(buffer, saved)
    aside: dict[int, np.ndarray] = {}
    if isinstance(buffer, FrameReplayBuffer):
        aside = _checked_aside(buffer, saved, saved["array.has_aside"])
    # Everything is checked: only now does the buffer change.
    for name, target in targets.items():
        if name in STREAMED:
            _stream_into(archive, path, name, target)
        else:
            np.copyto(target, saved[f"array.{name}"])
    buffer.pos = int(scalars["pos"])
    buffer.full = bool(scalars["full"])
    if isinstance(buffer, PrioritizedReplayBuffer):
        buffer.max_priority = float(scalars["max_priority"])
    if isinstance(buffer, FrameReplayBuffer):
        buffer._slot = int(scalars["_slot"])
        buffer._chained = [bool(c) for c in scalars["_chained"]]
        buffer.aside.clear()
        buffer.aside.update(aside)
    if isinstance(buffer, DeviceFrameReplayBuffer):
        buffer.refresh_device()


def _kind(buffer: ReplayBuffer) -> str:
    """The class a buffer file names: a device-cached frame buffer is stored (and read) as the frame buffer."""
    return str(getattr(buffer, "saved_as", type(buffer).__name__))


class _Spec:
    """Shape and dtype of an array not read yet."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
        self.shape, self.dtype = shape, dtype


def _check_array(name: str, array: np.ndarray | _Spec, shape: tuple[int, ...], dtype: np.dtype[Any]) -> None:
    if array.shape != shape or array.dtype != dtype:
        raise RlkitError(f"{name} is {array.dtype}{list(array.shape)}, the run's buffer needs {dtype}{list(shape)}")


def _checked_scalars(buffer: ReplayBuffer, saved: dict[str, np.ndarray]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    _check_array("pos", saved["scalar.pos"], (), np.dtype(np.int64))
    _check_array("full", saved["scalar.full"], (), np.dtype(np.bool_))
    values["pos"] = int(saved["scalar.pos"])
    values["full"] = bool(saved["scalar.full"])
    if not 0 <= values["pos"] < buffer.buffer_size:
        raise RlkitError(f"pos {values['pos']} is outside 0..{buffer.buffer_size - 1}")
    if isinstance(buffer, PrioritizedReplayBuffer):
        _check_array("max_priority", saved["scalar.max_priority"], (), np.dtype(np.float64))
        values["max_priority"] = float(saved["scalar.max_priority"])
        if not (math.isfinite(values["max_priority"]) and values["max_priority"] > 0):
            raise RlkitError(f"max_priority {values['max_priority']} is not a positive number")
        tree = saved["array.tree.tree"]
        if not (np.isfinite(tree).all() and (tree >= 0).all()):
            raise RlkitError("the priority tree holds negative or non-finite values")
    if isinstance(buffer, FrameReplayBuffer):
        _check_array("_slot", saved["scalar._slot"], (), np.dtype(np.int64))
        _check_array("_chained", saved["scalar._chained"], (buffer.n_envs,), np.dtype(np.bool_))
        values["_slot"] = int(saved["scalar._slot"])
        values["_chained"] = saved["scalar._chained"]
        if not 0 <= values["_slot"] < len(buffer.observations):
            raise RlkitError(f"_slot {values['_slot']} is outside 0..{len(buffer.observations) - 1}")
        slots = saved["array.obs_slot"]
        if ((slots < 0) | (slots >= len(buffer.observations))).any():
            raise RlkitError("obs_slot points outside the observation storage")
    return values


def _checked_aside(
    buffer: FrameReplayBuffer, saved: dict[str, np.ndarray], has_aside: np.ndarray
) -> dict[int, np.ndarray]:
    keys, values = saved[_ASIDE_KEYS], saved[_ASIDE_VALUES]
    _check_array(_ASIDE_KEYS, keys, (len(keys),), np.dtype(np.int64))
    _check_array(_ASIDE_VALUES, values, (len(keys), *buffer.obs_shape), buffer.observations.dtype)
    flagged = np.flatnonzero(has_aside.reshape(-1))
    if not np.array_equal(np.sort(keys), flagged):
        raise RlkitError("the observations kept aside do not match has_aside")
    return {int(k): np.array(v) for k, v in zip(keys, values, strict=True)}


def _supported_names() -> str:
    return ", ".join(cls.__name__ for cls in _SUPPORTED)


def _supported() -> tuple[type[ReplayBuffer], ...]:
    from stable_baselines3.common.buffers import NStepReplayBuffer

    return (ReplayBuffer, NStepReplayBuffer, PrioritizedReplayBuffer, FrameReplayBuffer)


_SUPPORTED = _supported()
_SUPPORTED_NAMES = {cls.__name__ for cls in _SUPPORTED}

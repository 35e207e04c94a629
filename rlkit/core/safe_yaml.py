"""The one YAML reader of rlkit: plain data only, bounded, every refusal one line.

Every YAML rlkit reads (presets, ``--config``, ``--set`` values, search spaces, Zoo files,
a run's ``config.yaml``) goes through :func:`load_file` or :func:`load_text`; no other module
calls ``yaml.safe_load`` (``tests/test_safe_yaml.py`` checks by ``ast``). Before anything is
built, one pass over libyaml's events refuses, each in one line and in milliseconds:

- a file over :data:`MAX_BYTES` (checked before it is read) and binary content (a NUL byte);
- aliases beyond :data:`MAX_ALIASES`, or that would expand to more than :data:`MAX_NODES`
  values (a "billion laughs" bomb is a few hundred bytes that expand to 10**9 strings);
- nesting deeper than :data:`MAX_DEPTH`, and scalars longer than :data:`MAX_SCALAR` characters;
- any explicit tag but YAML's plain ones (``!!python/object/apply:os.system`` and the like).

Then PyYAML's safe loader builds the data. :class:`YamlMalformed` (bad syntax) and
:class:`YamlRefused` (the limits above) are both :class:`~rlkit.core.errors.RlkitError`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from rlkit.core.errors import RlkitError

MAX_BYTES = 512 * 1024
"""The largest YAML file rlkit reads (its presets are under 4 KiB, a Zoo file under 64 KiB)."""
MAX_ALIASES = 200
"""Aliases (``*name``) one document may use."""
MAX_NODES = 50_000
"""Values (scalars, lists, mappings) a document may hold with every alias expanded."""
MAX_DEPTH = 64
"""Lists and mappings nested inside one another."""
MAX_SCALAR = 10_000
"""Characters in one scalar."""

PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "seq", "map"))
"""Explicit tags that only say which plain type a value is (``!!str 10``)."""

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlMalformed(RlkitError):
    """The text is not valid YAML (a syntax error): ``line`` (1-based, or None) and ``problem`` say where and what."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        where = f" line {line}" if line is not None else ""
        super().__init__(f"{source}:{where}: malformed YAML ({problem})")
        self.line, self.problem = line, problem


class YamlRefused(RlkitError):
    """Valid YAML, but beyond what rlkit reads: too large, too deep, an alias bomb, a tag, binary."""


def load_file(path: Path) -> Any:
    """The data of a YAML file; a missing, special, oversized, binary or hostile file is one line."""
    if path.exists() and not path.is_file():
        raise RlkitError(f"{path} is not a file (a folder or a special file); give a YAML file")
    try:
        with open(path, "rb") as handle:
            blob = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise RlkitError(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(blob) > MAX_BYTES:
        raise YamlRefused(f"{path}: larger than {MAX_BYTES // 1024} KiB, too large for a YAML file rlkit reads")
    _refuse_binary(blob, str(path))
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise RlkitError(f"{path} is not a text file (not UTF-8); expected a YAML mapping of keys to values") from None
    return load_text(text, str(path))


def load_text(text: str, source: str) -> Any:
    """The data of one YAML document; ``source`` names it in every error (a path, ``--set key``)."""
    if len(text.encode("utf-8", errors="replace")) > MAX_BYTES:
        raise YamlRefused(f"{source}: larger than {MAX_BYTES // 1024} KiB, too large for YAML rlkit reads")
    _refuse_binary(text.encode("utf-8", errors="replace"), source)
    try:
        _check_events(text, source, lines="\n" in text.strip())
        return yaml.load(text, Loader=_Loader)  # a safe loader (CSafeLoader): plain data only
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise YamlMalformed(source, None if mark is None else mark.line + 1, _problem(exc)) from None
    except (ValueError, OverflowError, RecursionError) as exc:  # e.g. an integer of more digits than Python converts
        raise YamlRefused(f"{source}: a value rlkit cannot read ({type(exc).__name__}: {_short(str(exc))})") from None


def _refuse_binary(blob: bytes, source: str) -> None:
    at = blob.find(b"\0")
    if at >= 0:
        raise YamlRefused(f"{source} is not a text file (binary content: a NUL byte at offset {at}); expected YAML")


def _check_events(text: str, source: str, *, lines: bool) -> None:
    """One pass over the parser's events: the limits, with aliases counted as what they expand to.

    ``lines``: errors name the line (not for a one-line value such as ``--set key=value``).
    """

    def at(event: Any) -> str:
        return _line(event) if lines else ""

    sizes: dict[str, int] = {}  # anchor -> values under it, its own aliases expanded
    open_anchors: list[str | None] = []
    frames: list[int] = []  # per open list/mapping: values under it so far
    expanded = aliases = 0
    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                raise YamlRefused(
                    f"{source}: more than {MAX_ALIASES} YAML aliases (*name); refusing it (an alias bomb?)"
                )
            if event.anchor in open_anchors:
                raise YamlRefused(f"{source}:{at(event)}: YAML alias *{event.anchor} refers to itself (recursive)")
            size = sizes.get(str(event.anchor), 1)
        elif isinstance(event, (yaml.ScalarEvent, yaml.CollectionStartEvent)):
            _check_tag(event, source, at(event))
            size = 1
            if isinstance(event, yaml.ScalarEvent) and len(event.value) > MAX_SCALAR:
                raise YamlRefused(
                    f"{source}:{at(event)}: a YAML value of {len(event.value):,} characters "
                    f"(at most {MAX_SCALAR:,}); refusing it"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            size, anchor = frames.pop(), open_anchors.pop()
            if anchor is not None:
                sizes[anchor] = size
            if frames:
                frames[-1] += size
            continue
        else:
            continue
        expanded += size
        if expanded > MAX_NODES:
            raise YamlRefused(
                f"{source}: its YAML aliases expand to more than {MAX_NODES:,} values; "
                "refusing it (an alias bomb, 'billion laughs'?)"
                if aliases
                else f"{source}: more than {MAX_NODES:,} YAML values, too many for a file rlkit reads"
            )
        if isinstance(event, yaml.CollectionStartEvent):
            frames.append(1)
            open_anchors.append(event.anchor)
            if len(frames) > MAX_DEPTH:
                raise YamlRefused(f"{source}:{at(event)}: YAML nested deeper than {MAX_DEPTH} levels; refusing it")
            continue
        if isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
            sizes[event.anchor] = 1
        if frames:
            frames[-1] += size


def _check_tag(event: Any, source: str, where: str) -> None:
    tag = event.tag
    if tag is None or tag in ("!", *PLAIN_TAGS):
        return
    shown = "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag
    raise YamlRefused(
        f"{source}:{where}: YAML tag {_short(shown)} refused (rlkit reads plain data: no tags that build objects)"
    )


def _line(event: Any) -> str:
    mark = getattr(event, "start_mark", None)
    return f" line {mark.line + 1}" if mark is not None else ""


def _problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "invalid YAML"
    return _short(" ".join(str(problem).split()))


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."

"""Documents generated from results: the README's figures, docs/BENCHMARKS.md's tables, the presets'
comments and the Makefile's messages are rewritten from the benchmark JSON they cite.

A document marks each generated block: ``<!-- results:NAME -->`` ... ``<!-- /results:NAME -->`` in
Markdown, ``# results:NAME`` ... ``# /results:NAME`` in YAML and the Makefile. The registry,
``docs/benchmarks/sources.yaml``, names each block's file, its formatter (``bench/doc_blocks.py``) and
the JSON it is made from. After a benchmark's JSON is replaced:

    python bench/refresh_docs.py            # rewrites every block from its JSON (atomically)
    python bench/refresh_docs.py --check    # exit 1, one line per block that disagrees; writes nothing

Absolute figures (seconds, steps/s) do not travel between machines, so each is printed beside the
machine's yardstick when its JSON has one (``machine.yardstick``), else beside what was recorded
about the machine (the JSON, or a note in the registry tied to that exact file) and the words
"machine yardstick not recorded". Ratios against peers measured in the same run need neither.
A source that records its preset (``preset.yaml`` beside it, or ``rlkit_preset``) must have run
today's preset file: otherwise its figures describe another preset, and that is an error too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's rlkit, whatever is installed
sys.path.insert(0, str(ROOT / "bench"))

from doc_blocks import FORMATTERS, Inputs, Source  # noqa: E402

from rlkit.analysis import benchmark as bm  # noqa: E402
from rlkit.config.presets import load_preset_file, read_yaml  # noqa: E402
from rlkit.config.schema import to_plain, validate  # noqa: E402
from rlkit.core import atomic  # noqa: E402
from rlkit.core.errors import RlkitError  # noqa: E402

REGISTRY = Path("docs/benchmarks/sources.yaml")

# ----------------------------------------------------------------------------------------
# The registry
# ----------------------------------------------------------------------------------------


class SourceEntry(BaseModel):
    """One JSON file, with what is known about the machine it was measured on."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    json_path: str = Field(alias="json")
    preset: str | None = None
    """The shipped preset (``envs/<preset>.yaml``) the JSON's recorded preset must equal."""
    machine: str | None = None
    """What the run's own write-up said about the machine (for JSON without a yardstick)."""
    machine_for: str | None = None
    """The first 12 hex digits of the sha256 of the JSON that ``machine`` describes: a replaced
    JSON is a new run, and the old note no longer applies to it."""


class BlockEntry(BaseModel):
    """One marked block: where it is, how it is written, from which sources (by role)."""

    model_config = ConfigDict(extra="forbid")
    file: str
    format: str
    sources: dict[str, str | list[str]]
    args: dict[str, str] = {}


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sources: dict[str, SourceEntry]
    blocks: dict[str, BlockEntry]


def read_registry(root: Path) -> Registry:
    """The registry, validated: a bad entry is one line naming it."""
    path = root / REGISTRY
    if not path.is_file():
        raise RlkitError(f"registry not found: {path}")
    try:
        registry = Registry.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise RlkitError(f"{path}: {where}: {first['msg']}") from None
    for name, block in registry.blocks.items():
        if block.format not in FORMATTERS:
            raise RlkitError(f"{path}: block {name}: unknown format {block.format!r} (known: {', '.join(FORMATTERS)})")
        for role, names in block.sources.items():
            for source in [names] if isinstance(names, str) else names:
                if source not in registry.sources:
                    raise RlkitError(f"{path}: block {name}: {role} names no source {source!r}")
    return registry


# ----------------------------------------------------------------------------------------
# Sources: a JSON file and its machine
# ----------------------------------------------------------------------------------------


def sha12(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def load_source(root: Path, name: str, entry: SourceEntry) -> Source:
    path = root / entry.json_path
    if not path.is_file():
        raise RlkitError(f"source {name}: {entry.json_path} not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RlkitError(f"source {name}: {entry.json_path} is not JSON ({exc})") from None
    note = entry.machine if entry.machine and entry.machine_for == sha12(path) else None
    return Source(name, path, data, note)


def recorded_preset(root: Path, entry: SourceEntry, source: Source) -> tuple[dict[str, Any], str] | None:
    """The preset a source recorded, as written then (``preset.yaml`` beside it, or its ``rlkit_preset``)."""
    beside = source.path.parent / "preset.yaml"
    if beside.is_file():
        return read_yaml(beside), str(beside.relative_to(root))
    if isinstance(source.data, dict) and isinstance(source.data.get("rlkit_preset"), dict):
        return source.data["rlkit_preset"], f"{entry.json_path}'s rlkit_preset"
    return None


def stale_preset(root: Path, entry: SourceEntry, source: Source) -> tuple[str | None, str | None]:
    """(Why the source ran another preset than today's ``envs/<preset>.yaml``, a note on keys it predates).

    The digest compares both under today's schema. A key the recorded preset lacks was added since
    the run: both then read its default, so the digests agree, yet the run may have behaved otherwise
    (a new stopping rule): that is a note, not an error, since nothing but a rerun can settle it.
    """
    if entry.preset is None:
        return None, None
    found = recorded_preset(root, entry, source)
    if found is None:
        return (
            f"source {source.name}: {entry.json_path} records no preset to check against envs/{entry.preset}.yaml",
            None,
        )
    raw, where = found
    recorded, today = validate(raw, where), load_preset_file(root / "envs" / f"{entry.preset}.yaml")
    if bm.config_digest(recorded) != bm.config_digest(today):
        return (
            f"source {source.name}: {where} is not today's envs/{entry.preset}.yaml "
            f"(digest {bm.config_digest(recorded)} vs {bm.config_digest(today)}): rerun the benchmark"
        ), None
    newer = {key: value for key, value in to_plain(today).items() if key not in raw}
    if not newer:
        return None, None
    keys = ", ".join(f"{key} (today {value!r})" for key, value in newer.items())
    return None, f"source {source.name}: {where} predates {keys}; its figures may describe other behaviour: rerun it"


# ----------------------------------------------------------------------------------------
# Marked blocks in a document
# ----------------------------------------------------------------------------------------


def marks(path: str) -> tuple[re.Pattern[str], re.Pattern[str], str, str]:
    """The start and end patterns of a file's blocks, and how to write them."""
    if path.endswith(".md"):
        return (
            re.compile(r"^<!-- results:([\w.-]+) -->$"),
            re.compile(r"^<!-- /results:([\w.-]+) -->$"),
            "<!-- results:{} -->",
            "<!-- /results:{} -->",
        )
    return re.compile(r"^# results:([\w.-]+)$"), re.compile(r"^# /results:([\w.-]+)$"), "# results:{}", "# /results:{}"


@dataclass
class Span:
    """A block's content: lines ``first`` to ``last`` (exclusive) of its document."""

    first: int
    last: int


def find_blocks(path: str, lines: list[str]) -> tuple[dict[str, Span], list[str]]:
    """Every well-formed block of a document, and one problem line for each malformed mark."""
    start, end, _, _ = marks(path)
    found: dict[str, Span] = {}
    problems: list[str] = []
    open_name, open_at = None, 0
    for number, line in enumerate(lines):
        if m := start.match(line):
            if open_name is not None:
                problems.append(f"{path}:{number + 1}: block {m[1]} starts inside block {open_name}")
            open_name, open_at = m[1], number
        elif m := end.match(line):
            if open_name != m[1]:
                problems.append(f"{path}:{number + 1}: end of block {m[1]} without its start")
                continue
            if m[1] in found:
                problems.append(f"{path}:{number + 1}: block {m[1]} appears twice")
            found[m[1]] = Span(open_at + 1, number)
            open_name = None
    if open_name is not None:
        problems.append(f"{path}:{open_at + 1}: block {open_name} has no end mark")
    return found, problems


FIGURE = re.compile(r"\d(?:[\d,]*\d)?(?:\.\d+)?(?:(?:x|%| s| ms| h|k|M)(?![A-Za-z]))?")
"""A figure in a text: a number with its unit, if any (``2.3 s``, ``1.67x``, ``500,000``, ``50k``)."""


def first_difference(said: str, wanted: str) -> str:
    """Where a block's text and its JSON's text first differ, and the figures only one of them has."""
    if not said.strip():
        return f"the block is empty, the JSON says {excerpt(wanted, 0)!r}"
    at = next((i for i, (a, b) in enumerate(zip(said, wanted, strict=False)) if a != b), min(len(said), len(wanted)))
    where = f"the document says {excerpt(said, at)!r}, the JSON says {excerpt(wanted, at)!r}"
    ours, theirs = Counter(FIGURE.findall(said)), Counter(FIGURE.findall(wanted))
    only_ours, only_theirs = (
        list(dict.fromkeys((ours - theirs).elements())),
        list(dict.fromkeys((theirs - ours).elements())),
    )
    if not only_ours and not only_theirs:
        return where
    return f"{where} (figures only in the document: {few(only_ours)}; only in the JSON: {few(only_theirs)})"


def few(figures: list[str], most: int = 8) -> str:
    if not figures:
        return "none"
    return ", ".join(figures[:most]) + (f" and {len(figures) - most} more" if len(figures) > most else "")


def excerpt(text: str, at: int, before: int = 24, after: int = 40) -> str:
    """The text around character ``at``, on one line, with ``...`` where it was cut."""
    start, end = max(0, at - before), min(len(text), at + after)
    inner = text[start:end].replace("\n", " / ")
    return ("..." if start else "") + inner + ("..." if end < len(text) else "")


# ----------------------------------------------------------------------------------------
# Refreshing and checking
# ----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """What a run found: problems that stop it, blocks that disagree, and the documents' new texts."""

    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """Keys a source's preset predates: printed, not failing (only a rerun settles them)."""
    disagreements: list[str] = field(default_factory=list)
    rewritten: dict[Path, str] = field(default_factory=dict)


def generate(root: Path, registry: Registry) -> tuple[dict[str, str], list[str], list[str]]:
    """Every block's text from its JSON (by block name), the problems with the sources, and notes."""
    entries = registry.sources
    sources: dict[str, Source] = {}
    errors: list[str] = []
    notes: list[str] = []
    for name, entry in entries.items():
        try:
            sources[name] = load_source(root, name, entry)
            stale, note = stale_preset(root, entry, sources[name])
            errors += [stale] if stale else []
            notes += [note] if note else []
        except RlkitError as exc:
            errors.append(str(exc))
    texts: dict[str, str] = {}
    for name, block in registry.blocks.items():
        wanted = [[names] if isinstance(names, str) else names for names in block.sources.values()]
        if any(s not in sources for group in wanted for s in group):
            continue  # its source's problem is listed already
        roles = {role: [sources[s] for s in group] for role, group in zip(block.sources, wanted, strict=True)}
        try:
            texts[name] = FORMATTERS[block.format](Inputs(roles, block.args, root))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            errors.append(f"block {name}: its JSON lacks what {block.format} needs ({type(exc).__name__}: {exc})")
    return texts, errors, notes


def refresh(root: Path) -> Outcome:
    """Compare every block with its JSON's text; the documents as they should read."""
    registry = read_registry(root)
    texts, errors, notes = generate(root, registry)
    outcome = Outcome(errors=errors, notes=notes)
    for file in dict.fromkeys(block.file for block in registry.blocks.values()):
        path = root / file
        if not path.is_file():
            outcome.errors.append(f"{file}: not found (the registry names blocks in it)")
            continue
        lines = path.read_text().split("\n")
        found, problems = find_blocks(file, lines)
        outcome.errors += problems
        names = [n for n, b in registry.blocks.items() if b.file == file]
        _, _, open_mark, close_mark = marks(file)
        for name in found:
            if name not in names:
                outcome.errors.append(f"{file}: block {name} is not in {REGISTRY}")
        for name in names:
            if name not in found:
                outcome.errors.append(
                    f"{file}: block {name} is missing (mark it with {open_mark.format(name)} ... {close_mark.format(name)})"
                )
        # Rewrite from the last block up, so earlier spans stay valid; report them top down.
        late: list[str] = []
        for name in sorted((n for n in names if n in found and n in texts), key=lambda n: -found[n].first):
            span_ = found[name]
            said = "\n".join(lines[span_.first : span_.last])
            if said != texts[name]:
                found_at = found[name].first
                late.append(
                    f"{file}:{found_at}: block {name} disagrees with its JSON: {first_difference(said, texts[name])}"
                )
                lines[span_.first : span_.last] = texts[name].split("\n")
        outcome.disagreements += reversed(late)
        text = "\n".join(lines)
        if text != path.read_text():
            outcome.rewritten[path] = text
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--check", action="store_true", help="list each block that disagrees with its JSON; write nothing"
    )
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository to refresh (default: this one)")
    args = parser.parse_args(argv)
    try:
        outcome = refresh(args.root.resolve())
    except RlkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in outcome.notes:
        print(f"note: {line}", file=sys.stderr)
    for line in outcome.errors:
        print(f"error: {line}", file=sys.stderr)
    if args.check or outcome.errors:
        for line in outcome.disagreements:
            print(line, file=sys.stderr)
        if outcome.errors or outcome.disagreements:
            return 1
        print(f"every block agrees with its JSON ({REGISTRY})")
        return 0
    for path, text in outcome.rewritten.items():
        atomic.write_text(path, text)
        print(f"rewrote {path.relative_to(args.root.resolve())}")
    if not outcome.rewritten:
        print("every block already agrees with its JSON")
    return 0


if __name__ == "__main__":
    sys.exit(main())

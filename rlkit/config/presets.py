"""The preset catalogue: reading ``envs/*.yaml``, resolving a name, applying overrides.

Pure data: nothing here makes an environment or imports gymnasium. A name that is not a
preset may be a gymnasium id; the caller passes the known ids (``env_ids``), and checks the
env itself: :func:`rlkit.environments.resolve.resolve` does both.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlkit.config.schema import Preset, deep_merge, did_you_mean, parse_assignment, set_dotted, validate
from rlkit.core.errors import RlkitError
from rlkit.core.paths import data_dir


@dataclass(frozen=True)
class Resolved:
    """A validated configuration and where it came from."""

    alias: str
    """Short name used for run folders (``lunarlander``, ``cartpole-v1``, a file's stem)."""

    preset: Preset
    """The fully resolved configuration."""

    source: str
    """The preset file, or ``gymnasium defaults`` for an id without a preset."""


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from a file; anything else is a one-line error."""
    if path.exists() and not path.is_file():
        raise RlkitError(f"{path} is not a file (a folder or a special file); give a YAML file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RlkitError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise RlkitError(f"{path} is not a text file (not UTF-8); expected a YAML mapping of keys to values") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or "invalid YAML"
        problem = " ".join(str(problem).split())
        raise RlkitError(f"{path}:{where}: malformed YAML ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise RlkitError(f"{path}: expected a mapping of keys to values, got {type(data).__name__}")
    return data


def catalogue() -> dict[str, Path]:
    """Every shipped preset, by its file stem."""
    return {path.stem.lower(): path for path in sorted(data_dir("envs").glob("*.yaml"))}


def load_preset_file(path: Path) -> Preset:
    """Read and validate one preset file."""
    return validate(read_yaml(path), str(path))


def alias_table() -> dict[str, str]:
    """Lower-cased name (stem, declared alias or env id) -> preset stem."""
    table: dict[str, str] = {}
    for stem, path in catalogue().items():
        data = read_yaml(path)
        table[stem] = stem
        for alias in data.get("aliases", []) or []:
            table.setdefault(str(alias).lower(), stem)
        if "env_id" in data:
            table.setdefault(str(data["env_id"]).lower(), stem)
    return table


def _slug(env_id: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", env_id.lower()).strip("-")


EnvIds = Callable[[], Iterable[str]]
"""Lists the environment ids a name may also be (gymnasium's registry, asked only when needed)."""


def base_config(name: str, env_ids: EnvIds | None = None) -> tuple[str, dict[str, Any], str]:
    """The alias, raw mapping and source for a preset name, a YAML path or a known env id."""
    as_path = Path(name)
    if name.endswith((".yaml", ".yml")) or (as_path.is_file() and as_path.suffix):
        if not as_path.is_file():
            raise RlkitError(f"preset file not found: {name}")
        return as_path.stem.lower(), read_yaml(as_path), str(as_path)
    table = alias_table()
    stem = table.get(name.lower())
    if stem is not None:
        path = catalogue()[stem]
        return stem, read_yaml(path), str(path)
    ids = tuple(env_ids()) if env_ids is not None else ()
    if name in ids:
        return _slug(name), {"env_id": name}, "gymnasium defaults"
    by_lower = {env_id.lower(): env_id for env_id in ids}
    if name.lower() in by_lower:
        env_id = by_lower[name.lower()]
        return _slug(env_id), {"env_id": env_id}, "gymnasium defaults"
    presets = sorted(catalogue())
    hint = did_you_mean(name, sorted(table) + sorted(ids))
    raise RlkitError(
        f"unknown environment '{name}'{hint}; presets: {', '.join(presets)} "
        "(or any gymnasium id, or a preset .yaml file)"
    )


def resolve(
    name: str,
    config_file: Path | None = None,
    overrides: list[str] | None = None,
    *,
    env_ids: EnvIds | None = None,
) -> Resolved:
    """Preset (or id or file), then an overrides file, then ``--set`` pairs, validated once.

    Only the schema is checked; whether the env exists and fits is the caller's to check.
    """
    alias, data, source = base_config(name, env_ids)
    validate(data, source)
    if config_file is not None:
        if not config_file.is_file():
            raise RlkitError(f"--config file not found: {config_file}")
        extra = read_yaml(config_file)
        validate(deep_merge(data, extra), str(config_file))
        data = deep_merge(data, extra)
    for item in overrides or []:
        key, value = parse_assignment(item)
        candidate = copy.deepcopy(data)
        set_dotted(candidate, key, value)
        validate(candidate, "--set")
        data = candidate
    return Resolved(alias=alias, preset=validate(data, source), source=source)

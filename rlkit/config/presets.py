"""The preset catalogue: reading ``envs/*.yaml``, resolving a name, applying overrides.

Pure data: nothing here makes an environment or imports gymnasium. A name that is not a
preset may be a gymnasium id; the caller passes the known ids (``env_ids``), and checks the
env itself: :func:`rlkit.environments.resolve.resolve` does both.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlkit.config.schema import Preset, deep_merge, did_you_mean, parse_assignment, set_dotted, validate
from rlkit.core import safe_yaml
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

    defaults: dict[str, Any] = field(default_factory=dict)
    """For an id without a preset: the keys :func:`scaled_defaults` filled in (not set by the user)."""


NO_PRESET = "gymnasium defaults"
"""The ``source`` of an env id without a preset."""


def scaled_defaults(n_timesteps: int, batch_size: int = 32) -> dict[str, Any]:
    """Defaults for an env without a preset, sized to its budget (SB3's suit 10M-step Atari runs).

    With ``n`` the budget: ``learning_starts`` n/20 (at most 10,000), ``target_update_interval``
    n/100 (at least 1, at most 10,000), ``exploration_fraction`` 0.2, ``buffer_size`` n (at most
    1,000,000; the whole run fits), ``learning_rate`` 1e-3, ``eval_freq`` n/10 (ten evaluations,
    at most every 10,000 steps, 5 episodes each), ``checkpoint_freq`` n/4 (at most 25,000).
    """
    n = max(1, n_timesteps)
    return {
        "learning_starts": min(10_000, n // 20),
        "target_update_interval": max(1, min(10_000, n // 100)),
        "exploration_fraction": 0.2,
        "buffer_size": max(batch_size, min(1_000_000, n)),
        "learning_rate": 1e-3,
        "eval_freq": max(1, min(10_000, n // 10)),
        "eval_episodes": 5,
        "checkpoint_freq": max(1, min(25_000, n // 4)),
    }


def check_imports(preset: Preset, allowed: Iterable[str], source: str) -> None:
    """Every module the preset would import must be named on the command line (one line otherwise)."""
    asked = set(allowed)
    for module in preset.env_imports:
        if module not in asked:
            raise RlkitError(
                f"{source}: env {preset.env_id} needs Python module '{module}' imported (env_imports or "
                f"{module}:{preset.env_id}), and rlkit imports code only when asked on the command line: "
                f"add --import {module} (see docs/security.md)"
            )


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from a file (read by :mod:`rlkit.core.safe_yaml`); anything else is a one-line error."""
    data = safe_yaml.load_file(path)
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
    env_ids: list[tuple[str, str]] = []
    for stem, path in catalogue().items():
        data = read_yaml(path)
        table[stem] = stem
        for alias in data.get("aliases", []) or []:
            table.setdefault(str(alias).lower(), stem)
        if "env_id" in data:
            env_ids.append((stem, str(data["env_id"]).lower()))
    # An env id names its main preset: of several for one env (cartpole, cartpole-demo) the shortest name.
    for stem, env_id in sorted(env_ids, key=lambda pair: (len(pair[0]), pair[0])):
        table.setdefault(env_id, stem)
    return table


def _slug(env_id: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", env_id.lower()).strip("-")


EnvIds = Callable[[], Iterable[str]]
"""Lists the environment ids a name may also be (gymnasium's registry, asked only when needed)."""


def base_config(name: str, env_ids: EnvIds | None = None) -> tuple[str, dict[str, Any], str]:
    """The alias, raw mapping and source for a preset name, a YAML path or a known env id."""
    as_path = Path(name)
    if as_path.suffix == ".py":
        module = as_path.stem
        raise RlkitError(
            f"{name} is a Python file; name its module and the env it registers: "
            f"rlkit train {module}:EnvId-v0, or rlkit train EnvId-v0 --import {module} (docs/custom-envs.md)"
        )
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
        return _slug(name), {"env_id": name}, NO_PRESET
    by_lower = {env_id.lower(): env_id for env_id in ids}
    if name.lower() in by_lower:
        env_id = by_lower[name.lower()]
        return _slug(env_id), {"env_id": env_id}, NO_PRESET
    presets = sorted(catalogue())
    hint = did_you_mean(name, sorted(table) + sorted(ids))
    raise RlkitError(
        f"unknown environment '{name}'{hint}; presets: {', '.join(presets)} "
        "(or any gymnasium id, or a preset .yaml file; a custom env: add --import pkg.module, docs/custom-envs.md)"
    )


def resolve(
    name: str,
    config_file: Path | None = None,
    overrides: list[str] | None = None,
    *,
    env_ids: EnvIds | None = None,
    imports: Iterable[str] = (),
) -> Resolved:
    """Preset (or id or file), then an overrides file, then ``--set`` pairs, validated once.

    ``imports`` are the modules named on the command line: they are added to ``env_imports``,
    and no other module may be (:func:`check_imports`). An id without a preset gets
    :func:`scaled_defaults` for every key the user did not set. Only the schema is checked;
    whether the env exists and fits is the caller's to check.
    """
    asked = list(dict.fromkeys(imports))
    alias, data, source = base_config(name, env_ids)
    check_imports(validate(data, source), asked, source)
    if config_file is not None:
        if not config_file.is_file():
            raise RlkitError(f"--config file not found: {config_file}")
        extra = read_yaml(config_file)
        check_imports(validate(deep_merge(data, extra), str(config_file)), asked, str(config_file))
        data = deep_merge(data, extra)
    for item in overrides or []:
        key, value = parse_assignment(item)
        candidate = copy.deepcopy(data)
        set_dotted(candidate, key, value)
        check_imports(validate(candidate, "--set"), asked, f"--set {key}")
        data = candidate
    if asked:
        recorded = list(validate(data, source).env_imports)
        data = {**data, "env_imports": recorded + [m for m in asked if m not in recorded]}
    filled: dict[str, Any] = {}
    if source == NO_PRESET:
        given = validate(data, source)
        defaults = scaled_defaults(given.n_timesteps, given.batch_size)
        filled = {key: value for key, value in defaults.items() if key not in data}
        data = {**data, **filled}
    return Resolved(alias=alias, preset=validate(data, source), source=source, defaults=filled)

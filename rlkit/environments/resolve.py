"""From a name on the command line to a checked, completed configuration."""

from __future__ import annotations

from pathlib import Path

from rlkit.config import presets
from rlkit.config.presets import Resolved
from rlkit.environments.factory import check_env, complete_preset, registered_env_ids


def resolve(name: str, config_file: Path | None = None, overrides: list[str] | None = None) -> Resolved:
    """A preset name, preset file or gymnasium id, with overrides, validated and checked.

    The schema is checked by :func:`rlkit.config.presets.resolve`; here the env is made once
    (bad ids, bad ``env_kwargs``, non-discrete actions fail before any work) and what follows
    from the id is filled in (Atari preprocessing).
    """
    resolved = presets.resolve(name, config_file, overrides, env_ids=registered_env_ids)
    check_env(resolved.preset)
    return Resolved(alias=resolved.alias, preset=complete_preset(resolved.preset), source=resolved.source)

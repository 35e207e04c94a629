"""From a name on the command line to a checked, completed configuration."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rlkit.config import presets
from rlkit.config.presets import Resolved
from rlkit.config.schema import split_env_id, validate
from rlkit.environments.factory import check_env, complete_preset, registered_env_ids
from rlkit.environments.imports import import_modules


def resolve(
    name: str,
    config_file: Path | None = None,
    overrides: list[str] | None = None,
    *,
    imports: Sequence[str] = (),
) -> Resolved:
    """A preset name, preset file or gymnasium id, with overrides, validated and checked.

    ``imports`` (``--import``) and the module of a ``pkg.module:EnvId-v0`` name are the modules
    the user asked for: they are imported first (saying so), so the ids they register resolve, and
    recorded in ``env_imports``; a preset, ``--config`` or ``--set`` naming any other module is
    refused (:func:`rlkit.config.presets.check_imports`). The schema is checked by
    :func:`rlkit.config.presets.resolve`; here the env is made once (bad ids, bad ``env_kwargs``,
    non-discrete actions fail before any work) and what follows from the id is filled in (Atari
    preprocessing).
    """
    module, env_name = None, name
    if not name.endswith((".yaml", ".yml")) and not Path(name).is_file():
        module, env_name = split_env_id(name)
    asked = [*imports, *([module] if module else [])]
    if module is not None or imports:
        validate({"env_id": name, "env_imports": list(imports)}, "the command line")  # module names
        import_modules(asked, "asked on the command line")
    resolved = presets.resolve(env_name, config_file, overrides, env_ids=registered_env_ids, imports=asked)
    check_env(resolved.preset)
    return Resolved(
        alias=resolved.alias,
        preset=complete_preset(resolved.preset),
        source=resolved.source,
        defaults=resolved.defaults,
    )

"""RL Baselines3 Zoo hyperparameter files (``hyperparams/dqn.yml``) as rlkit presets.

The Zoo writes some values as Python source in YAML strings: ``"dict(net_arch=[256, 256])"``,
``"lin_6.3e-4"`` schedules, ``"nn.ReLU"`` activations, ``1e5`` numbers (a string to YAML).
:func:`read_literal` reads them with :func:`ast.parse` and walks only literal nodes (numbers,
strings, lists, tuples, dicts, ``dict(key=literal)`` calls and ``nn.X`` names); nothing is
evaluated, and anything else is refused in one line. Each entry becomes a preset mapping plus one
note per key that rlkit cannot carry over. Pure data: no gymnasium; the caller passes the known
env ids when it wants an outdated id (``LunarLander-v2``) moved to the registered version.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlkit.config.schema import did_you_mean, validate
from rlkit.core.errors import RlkitError

ACTIVATIONS = {
    "ReLU": "relu",
    "Tanh": "tanh",
    "ELU": "elu",
    "LeakyReLU": "leaky_relu",
    "GELU": "gelu",
    "SiLU": "silu",
}
"""``torch.nn`` activation classes the Zoo names, and rlkit's names for them."""

ATARI_ENTRY = "atari"
"""The Zoo's entry for every Atari game (Zoo picks it for any ALE env)."""

ATARI_WRAPPER = "stable_baselines3.common.atari_wrappers.AtariWrapper"
ATARI_WRAPPER_KEYS = ("frame_skip", "screen_size", "noop_max", "terminal_on_life_loss", "clip_reward")

_SAME_NAME_NUMBERS = {
    "n_timesteps": int,
    "buffer_size": int,
    "learning_starts": int,
    "batch_size": int,
    "gradient_steps": int,
    "target_update_interval": int,
    "n_envs": int,
    "tau": float,
    "gamma": float,
    "exploration_fraction": float,
    "exploration_initial_eps": float,
    "exploration_final_eps": float,
    "max_grad_norm": float,
}
"""Zoo keys whose meaning and name are rlkit's too, with the number type they take."""

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


@dataclass(frozen=True)
class NnName:
    """``nn.ReLU`` as read from a Zoo string: a name, never looked up."""

    name: str


@dataclass
class Imported:
    """One Zoo entry as an rlkit preset."""

    entry: str
    """The entry's key in the Zoo file (an env id, or ``atari``)."""

    alias: str
    """File stem for the preset: the env id in lower case (``cartpole-v1``)."""

    data: dict[str, Any]
    """The preset mapping, validated by :func:`rlkit.config.schema.validate`."""

    notes: list[str] = field(default_factory=list)
    """One line per key not carried over (or changed on the way), for the user to read."""


# ----------------------------------------------------------------------------------------
# The literal reader
# ----------------------------------------------------------------------------------------


def read_literal(text: str, where: str) -> Any:
    """The value of a Python literal string, without evaluating anything.

    Accepts numbers, strings, booleans, ``None``, lists, tuples, ``{...}`` dicts with literal
    keys, ``dict(key=value, ...)`` and ``nn.X`` / ``th.nn.X`` / ``torch.nn.X`` (an :class:`NnName`).
    """
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        raise RlkitError(f"{where}: cannot read {text!r}: not a Python literal") from None
    return _literal(tree.body, text, where)


def _refuse(node: ast.AST, text: str, where: str) -> RlkitError:
    shown = ast.unparse(node)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    return RlkitError(
        f"{where}: refused '{shown}': not a literal (only numbers, strings, lists, dicts, "
        "dict(key=value) and nn.<Activation> are read; nothing is evaluated)"
    )


def _literal(node: ast.AST, text: str, where: str) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, (ast.USub, ast.UAdd))
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        return -node.operand.value if isinstance(node.op, ast.USub) else node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(item, text, where) for item in node.elts]
    if isinstance(node, ast.Dict):
        out: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:  # {**x}
                raise _refuse(node, text, where)
            out[_literal(key, text, where)] = _literal(value, text, where)
        return out
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict" and not node.args:
        result: dict[str, Any] = {}
        for keyword in node.keywords:
            if keyword.arg is None:  # dict(**x)
                raise _refuse(node, text, where)
            result[keyword.arg] = _literal(keyword.value, text, where)
        return result
    if isinstance(node, ast.Attribute) and _dotted(node.value) in ("nn", "th.nn", "torch.nn"):
        return NnName(node.attr)
    raise _refuse(node, text, where)


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


# ----------------------------------------------------------------------------------------
# Entries to presets
# ----------------------------------------------------------------------------------------

EnvIds = Callable[[], Iterable[str]]


def read_zoo_file(path: Path) -> dict[str, Any]:
    """A Zoo hyperparameter file: a mapping of entry -> mapping of hyperparameters."""
    from rlkit.config.presets import read_yaml

    data = read_yaml(path)  # not a file, not UTF-8, malformed YAML, not a mapping: one line each
    if not data:
        raise RlkitError(f"{path}: expected a Zoo hyperparameter file (a mapping of env id -> hyperparameters)")
    for entry, values in data.items():
        if not isinstance(values, dict):
            raise RlkitError(f"{path}: entry '{entry}' is not a mapping of hyperparameters")
    return {str(k): v for k, v in data.items()}


def looks_atari(env_id: str) -> bool:
    """Whether an id is an ALE game by its name (the Zoo's ``atari`` entry applies to it)."""
    return env_id.startswith("ALE/") or "NoFrameskip" in env_id


def pick_entries(zoo: dict[str, Any], envs: list[str] | None, source: str) -> list[tuple[str, str | None]]:
    """``(entry, env id)`` pairs to import; the env id is ``None`` when it is the entry itself."""
    if not envs:
        return [(entry, None) for entry in zoo if entry != ATARI_ENTRY]
    picked: list[tuple[str, str | None]] = []
    for env in envs:
        if env in zoo and env != ATARI_ENTRY:
            picked.append((env, None))
        elif ATARI_ENTRY in zoo and looks_atari(env):
            picked.append((ATARI_ENTRY, env))
        elif env == ATARI_ENTRY:
            raise RlkitError(
                f"{source}: the '{ATARI_ENTRY}' entry is for every Atari game; pass a game id, e.g. --env PongNoFrameskip-v4"
            )
        else:
            entries = [e for e in zoo if e != ATARI_ENTRY]
            raise RlkitError(
                f"{source}: no entry '{env}'{did_you_mean(env, entries)}; entries: {', '.join(entries)}"
                + (" (and any Atari id through 'atari')" if ATARI_ENTRY in zoo else "")
            )
    return picked


def convert_file(
    path: Path, envs: list[str] | None = None, env_ids: EnvIds | None = None
) -> tuple[list[Imported], list[str]]:
    """Every chosen entry of a Zoo file as a validated preset, and notes on the entries skipped."""
    zoo = read_zoo_file(path)
    skipped: list[str] = []
    if not envs and ATARI_ENTRY in zoo:
        skipped.append(
            f"{ATARI_ENTRY}: skipped (it is for every Atari game; import it with --env <game id>, e.g. PongNoFrameskip-v4)"
        )
    known = set(env_ids()) if env_ids is not None else None
    imported = [
        convert_entry(entry, zoo[entry], env_id or entry, str(path), known)
        for entry, env_id in pick_entries(zoo, envs, str(path))
    ]
    return imported, skipped


def convert_entry(
    entry: str, values: dict[str, Any], env_id: str, source: str, known_ids: set[str] | None = None
) -> Imported:
    """One Zoo entry (its hyperparameters) as a validated preset for ``env_id``."""
    where = f"{source}: {entry}"
    notes: list[str] = []
    env_id = _current_id(env_id, known_ids, notes)
    data: dict[str, Any] = {
        "env_id": env_id,
        "description": f"RL Baselines3 Zoo hyperparameters ({Path(source).name}, entry {entry})",
    }
    wrappers = _wrappers(values.get("env_wrapper"), where)
    for key, raw in values.items():
        _carry(key, raw, data, notes, wrappers, where)
    validate(data, where)  # any value the schema refuses is one line naming the entry
    return Imported(entry=entry, alias=_slug(env_id), data=data, notes=notes)


def _current_id(env_id: str, known_ids: set[str] | None, notes: list[str]) -> str:
    """The id itself, or the registered newer version of an id gymnasium no longer has."""
    if known_ids is None or env_id in known_ids:
        return env_id
    match = re.match(r"^(.*)-v(\d+)$", env_id)
    if match:
        name, version = match.group(1), int(match.group(2))
        newer = sorted(
            (int(m.group(1)), known)
            for known in known_ids
            if (m := re.match(rf"^{re.escape(name)}-v(\d+)$", known)) and int(m.group(1)) > version
        )
        if newer:
            notes.append(f"env_id: {env_id} is not registered in this gymnasium; using {newer[-1][1]}")
            return newer[-1][1]
    notes.append(f"env_id: {env_id} is not registered in this gymnasium; kept as is (edit env_id before training)")
    return env_id


def _slug(env_id: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", env_id.lower()).strip("-")


def _wrappers(raw: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    """The Zoo's ``env_wrapper``: a name, a list of names, or ``{name: kwargs}`` items."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    out: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if isinstance(item, str):
            out.append((item, {}))
        elif isinstance(item, dict) and len(item) == 1:
            name, kwargs = next(iter(item.items()))
            out.append((str(name), dict(kwargs or {})))
        else:
            raise RlkitError(f"{where}: env_wrapper: cannot read {item!r} (a class path or {{class path: kwargs}})")
    return out


def _number(raw: Any, kind: type, key: str, where: str) -> int | float:
    """A number from YAML: ``!!float 1e7``, ``100000`` or the string ``"1e5"``."""
    value = raw
    if isinstance(raw, str) and _NUMBER.match(raw.strip()):
        value = float(raw) if any(c in raw for c in ".eE") else int(raw)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RlkitError(f"{where}: {key}: expected a number, got {raw!r}")
    if kind is int:
        if float(value) != int(value):
            raise RlkitError(f"{where}: {key}: expected a whole number, got {raw!r}")
        return int(value)
    return float(value)


def _carry(
    key: str,
    raw: Any,
    data: dict[str, Any],
    notes: list[str],
    wrappers: list[tuple[str, dict[str, Any]]],
    where: str,
) -> None:
    """Put one Zoo key into ``data``, or add a note saying why it is not carried over."""
    if key in _SAME_NAME_NUMBERS:
        data[key] = _number(raw, _SAME_NAME_NUMBERS[key], key, where)
    elif key == "policy":
        if raw in ("MlpPolicy", "CnnPolicy"):
            data["policy"] = raw
        else:
            notes.append(f"policy: {raw!r} not carried over (rlkit has MlpPolicy and CnnPolicy); auto kept")
    elif key == "learning_rate":
        _learning_rate(raw, data, notes, where)
    elif key == "train_freq":
        _train_freq(raw, data, notes, where)
    elif key == "policy_kwargs":
        value = read_literal(raw, f"{where}: policy_kwargs") if isinstance(raw, str) else raw
        if not isinstance(value, dict):
            raise RlkitError(f"{where}: policy_kwargs: expected dict(...), got {raw!r}")
        _policy_kwargs(value, data, notes, where)
    elif key == "optimize_memory_usage":
        data[key] = bool(raw)
    elif key == "env_kwargs":
        value = read_literal(raw, f"{where}: env_kwargs") if isinstance(raw, str) else raw
        if not isinstance(value, dict) or any(isinstance(v, NnName) for v in value.values()):
            notes.append(f"env_kwargs: {raw!r} not carried over (not a mapping of plain values)")
        else:
            data["env_kwargs"] = value
    elif key == "env_wrapper":
        _atari_wrapper(wrappers, data, notes)
    elif key == "frame_stack":
        if any(name == ATARI_WRAPPER for name, _ in wrappers):
            data.setdefault("atari", {})["frame_stack"] = _number(raw, int, key, where)
        else:
            notes.append(f"frame_stack: {raw!r} not carried over (rlkit stacks frames for Atari games only)")
    else:
        notes.append(f"{key}: {_short(raw)} not carried over ({_why(key)})")


_WHY = {
    "normalize": "rlkit does not normalize observations or rewards",
    "callback": "rlkit runs its own evaluation and checkpoint callbacks",
    "replay_buffer_class": "set prioritized_replay, n_steps or frame_buffer instead",
    "replay_buffer_kwargs": "set prioritized_replay, n_steps or frame_buffer instead",
    "n_quantiles": "a QR-DQN setting: it goes in policy_kwargs in the Zoo; set n_quantiles with algo qrdqn",
    "seed": "rlkit train takes --seed",
    "device": "rlkit train takes --device",
    "verbose": "rlkit has its own display",
    "vec_env_wrapper": "rlkit has no vector-env wrappers",
    "frame_stack": "rlkit stacks frames for Atari games only",
    "stats_window_size": "rlkit's display keeps its own window",
}


def _why(key: str) -> str:
    return _WHY.get(key, "no rlkit preset key for it")


def _short(raw: Any) -> str:
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _learning_rate(raw: Any, data: dict[str, Any], notes: list[str], where: str) -> None:
    if isinstance(raw, str) and raw.strip().startswith("lin_"):
        data["learning_rate"] = _number(raw.strip().removeprefix("lin_"), float, "learning_rate", where)
        data["learning_rate_schedule"] = "linear"
    elif isinstance(raw, str) and raw.strip().startswith(("exp_", "const_")):
        notes.append(f"learning_rate: {raw!r} not carried over (schedules: constant or lin_); preset default kept")
    else:
        data["learning_rate"] = _number(raw, float, "learning_rate", where)


def _train_freq(raw: Any, data: dict[str, Any], notes: list[str], where: str) -> None:
    value = read_literal(raw, f"{where}: train_freq") if isinstance(raw, str) and raw.strip()[:1] in "[(" else raw
    if isinstance(value, list):
        if len(value) == 2 and value[1] == "step":
            data["train_freq"] = _number(value[0], int, "train_freq", where)
        else:
            notes.append(f"train_freq: {raw!r} not carried over (rlkit trains every N steps, not episodes)")
        return
    data["train_freq"] = _number(value, int, "train_freq", where)


def _policy_kwargs(value: dict[str, Any], data: dict[str, Any], notes: list[str], where: str) -> None:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key == "net_arch":
            if isinstance(item, list) and all(isinstance(n, int) and not isinstance(n, bool) for n in item):
                out["net_arch"] = item
            else:
                notes.append(f"policy_kwargs.net_arch: {_short(item)} not carried over (a list of layer sizes only)")
        elif key == "activation_fn":
            name = item.name if isinstance(item, NnName) else str(item).rsplit(".", 1)[-1]
            if name in ACTIVATIONS:
                out["activation_fn"] = ACTIVATIONS[name]
            else:
                notes.append(
                    f"policy_kwargs.activation_fn: {name} not carried over (rlkit has {', '.join(ACTIVATIONS)}); relu kept"
                )
        elif key == "normalize_images":
            out["normalize_images"] = bool(item)
        elif key == "features_extractor_kwargs" and isinstance(item, dict) and set(item) <= {"features_dim"}:
            if "features_dim" in item:
                out["features_dim"] = _number(item["features_dim"], int, "features_dim", where)
        elif key == "n_quantiles":
            data["algo"] = "qrdqn"
            data["n_quantiles"] = _number(item, int, "n_quantiles", where)
        else:
            notes.append(f"policy_kwargs.{key}: {_short(_plain(item))} not carried over (no rlkit preset key for it)")
    if out:
        data["policy_kwargs"] = out


def _plain(item: Any) -> Any:
    if isinstance(item, NnName):
        return f"nn.{item.name}"
    if isinstance(item, list):
        return [_plain(i) for i in item]
    if isinstance(item, dict):
        return {k: _plain(v) for k, v in item.items()}
    return item


def _atari_wrapper(wrappers: list[tuple[str, dict[str, Any]]], data: dict[str, Any], notes: list[str]) -> None:
    for name, kwargs in wrappers:
        module, _, cls = name.rpartition(".")
        if module in ("gymnasium.wrappers", "gym.wrappers"):  # the preset's own `wrappers`, by class name
            data.setdefault("wrappers", []).append({"name": cls, **({"kwargs": kwargs} if kwargs else {})})
            continue
        if name != ATARI_WRAPPER:
            notes.append(
                f"env_wrapper: {name} not carried over (preset wrappers are gymnasium.wrappers classes; "
                "Atari's AtariWrapper is the atari key)"
            )
            continue
        atari = data.setdefault("atari", {})
        for key, value in kwargs.items():
            if key in ATARI_WRAPPER_KEYS:
                atari[key] = value
            else:
                notes.append(f"env_wrapper: AtariWrapper {key}={value!r} not carried over (no rlkit atari key for it)")


def preset_yaml(imported: Imported, source: str) -> str:
    """The preset file's text: where it came from, what was left out, then the keys."""
    lines = [
        f"# Imported by `rlkit presets import-zoo` from {source}, entry '{imported.entry}'.",
        "# Notes (keys not carried over, ids changed):" if imported.notes else "# Every key was carried over.",
        *(f"#   {note}" for note in imported.notes),
    ]
    body = yaml.safe_dump(imported.data, sort_keys=False, default_flow_style=None)
    return "\n".join(lines) + "\n" + body

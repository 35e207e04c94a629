"""Search spaces (``tuning/*.yaml``): a typed schema, loading, validation and sampling.

A search space maps preset keys (dotted for nested ones, exactly as in the preset schema)
to a distribution::

    params:
      learning_rate: {type: float, low: 1.0e-5, high: 1.0e-2, log: true}
      batch_size: {type: categorical, choices: [32, 64, 128]}
      policy_kwargs.net_arch: {type: categorical, choices: [[64, 64], [256, 256]]}

A sampled trial is therefore a set of preset overrides, with no converter anywhere. Optuna only
stores scalars, so list-valued choices are stored as their compact JSON text (``"[64, 64]"``,
readable in optuna-dashboard); :meth:`SearchSpace.sample` and :meth:`SearchSpace.decode` turn
them back into the real values, so a user never sees the encoding.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from rlkit.config.schema import did_you_mean, field_paths, set_dotted, validate
from rlkit.core.errors import RlkitError

if TYPE_CHECKING:
    import optuna

    from rlkit.config.schema import Preset

Scalar = Union[bool, int, float, str, None]
Choice = Union[Scalar, list[Any], dict[str, Any]]

NOT_TUNABLE = {"env_id", "description", "aliases", "algo", "search_space", "atari", "policy_kwargs", "env_kwargs"}
"""Keys that identify the task or group others; tuning them makes no sense."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FloatParam(_Strict):
    """A real number drawn between ``low`` and ``high`` (log-uniformly when ``log``)."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self) -> FloatParam:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low:g}) must be below high ({self.high:g})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got {self.low:g})")
        return self


class IntParam(_Strict):
    """An integer drawn between ``low`` and ``high`` inclusive, on a grid of ``step``."""

    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = Field(default=1, ge=1)

    @model_validator(mode="after")
    def _bounds(self) -> IntParam:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got {self.low})")
        if self.log and self.step != 1:
            raise ValueError("log scale and a step other than 1 cannot be combined")
        return self


class CategoricalParam(_Strict):
    """One of ``choices``; a choice may be a list (``net_arch``) or any plain value."""

    type: Literal["categorical"]
    choices: list[Choice]

    @model_validator(mode="after")
    def _non_empty(self) -> CategoricalParam:
        if not self.choices:
            raise ValueError("choices must not be empty")
        encoded = [encode_choice(c) for c in self.choices]
        if len(set(map(repr, encoded))) != len(encoded):
            raise ValueError("choices must be distinct")
        return self


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


class SpaceFile(_Strict):
    """The content of a ``tuning/*.yaml`` file."""

    description: str = ""
    """One line about the family of environments this space suits."""

    params: dict[str, Param]
    """Preset key (dotted for nested keys) -> distribution."""

    @model_validator(mode="after")
    def _some(self) -> SpaceFile:
        if not self.params:
            raise ValueError("params must name at least one preset key")
        return self


def encode_choice(value: Any) -> Scalar:
    """What Optuna stores for a choice: scalars as they are, lists and mappings as compact JSON."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(", ", ": "))
    scalar: Scalar = value
    return scalar


class SearchSpace:
    """A validated search space: sample a trial's overrides, decode stored params."""

    def __init__(self, name: str, source: str, spec: SpaceFile) -> None:
        self.name = name
        self.source = source
        self.spec = spec

    @property
    def params(self) -> dict[str, FloatParam | IntParam | CategoricalParam]:
        return dict(self.spec.params)

    def to_plain(self) -> dict[str, Any]:
        """The space as plain data (stored in the study, so results are readable later)."""
        return self.spec.model_dump(mode="json")

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Draw every parameter for ``trial``: dotted preset key -> real value."""
        values: dict[str, Any] = {}
        for key, param in self.spec.params.items():
            if isinstance(param, FloatParam):
                values[key] = trial.suggest_float(key, param.low, param.high, log=param.log)
            elif isinstance(param, IntParam):
                values[key] = trial.suggest_int(key, param.low, param.high, log=param.log, step=param.step)
            else:
                encoded = [encode_choice(c) for c in param.choices]
                picked = trial.suggest_categorical(key, encoded)
                values[key] = copy.deepcopy(param.choices[encoded.index(picked)])
        return values

    def baseline(self, base: dict[str, Any]) -> dict[str, Scalar] | None:
        """The base preset's own values as Optuna params, or ``None`` if one lies outside the space.

        Enqueued as a new study's first trial, so every study measures its starting point.
        """
        return self._baseline(base)[0]

    def baseline_problem(self, base: dict[str, Any]) -> str | None:
        """Why the base preset cannot be a trial of this space (its first value outside it), or ``None``."""
        return self._baseline(base)[1]

    def _baseline(self, base: dict[str, Any]) -> tuple[dict[str, Scalar] | None, str | None]:
        params: dict[str, Scalar] = {}
        problems: list[str] = []
        for key, param in self.spec.params.items():
            node: Any = base
            for part in key.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            shown = f"{node:.4g}" if isinstance(node, float) else str(node)
            if isinstance(param, CategoricalParam):
                encoded = [encode_choice(c) for c in param.choices]
                if encode_choice(node) not in encoded:
                    problems.append(f"{key}={shown} is none of the space's choices ({', '.join(map(str, encoded))})")
                else:
                    params[key] = encode_choice(node)
            elif (
                isinstance(node, bool)
                or not isinstance(node, (int, float))
                or not param.low <= node <= param.high
                or (isinstance(param, IntParam) and (node != int(node) or (int(node) - param.low) % param.step))
            ):
                grid = f" in steps of {param.step}" if isinstance(param, IntParam) and param.step != 1 else ""
                problems.append(f"{key}={shown} lies outside the space's {param.low:g} to {param.high:g}{grid}")
            else:
                params[key] = int(node) if isinstance(param, IntParam) else float(node)
        if problems:
            more = f" (and {len(problems) - 1} more key{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
            return None, problems[0] + more
        return params, None

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """Optuna's stored params (JSON text for list choices) -> real preset values."""
        decoded: dict[str, Any] = {}
        for key, stored in params.items():
            param = self.spec.params.get(key)
            if isinstance(param, CategoricalParam):
                encoded = [encode_choice(c) for c in param.choices]
                if stored in encoded:
                    decoded[key] = copy.deepcopy(param.choices[encoded.index(stored)])
                    continue
            decoded[key] = stored
        return decoded


def overlay(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """A copy of the preset mapping ``base`` with dotted ``values`` set on it."""
    data = copy.deepcopy(base)
    for key, value in values.items():
        set_dotted(data, key, value)
    return data


# ----------------------------------------------------------------------------------------
# Finding and validating a space
# ----------------------------------------------------------------------------------------


def shipped() -> dict[str, Path]:
    """The search spaces in ``tuning/``, by file stem."""
    from rlkit.core.paths import data_dir

    return {path.stem: path for path in sorted(data_dir("tuning").glob("*.yaml"))}


def family(env_id: str) -> str:
    """The shipped space for an env without its own: ``atari``, ``box2d`` or ``classic``."""
    from rlkit.environments.factory import is_atari

    if is_atari(env_id):
        return "atari"
    import gymnasium as gym

    try:
        entry = gym.spec(env_id).entry_point
    except gym.error.Error:
        entry = ""
    entry_text = entry if isinstance(entry, str) else repr(entry)
    if "box2d" in entry_text:
        return "box2d"
    return "classic"


def locate(name: str) -> tuple[str, Path]:
    """A space name (``classic``) or YAML path -> (name, path); unknown names get a did-you-mean."""
    spaces = shipped()
    if name in spaces:
        return name, spaces[name]
    path = Path(name)
    if name.endswith((".yaml", ".yml")) or path.suffix:
        if not path.is_file():
            raise RlkitError(f"search space file not found: {name}")
        return path.stem, path
    raise RlkitError(
        f"unknown search space '{name}'{did_you_mean(name, sorted(spaces))}; "
        f"shipped: {', '.join(sorted(spaces))} (or a .yaml file)"
    )


def load(name: str, base: dict[str, Any]) -> SearchSpace:
    """Read and validate a space against the schema and the preset ``base`` it will be laid over."""
    from rlkit.config.presets import read_yaml

    space_name, path = locate(name)
    source = str(path)
    data = read_yaml(path)
    try:
        spec = SpaceFile.model_validate(data)
    except ValidationError as exc:
        raise RlkitError(f"{source}: {_space_error(exc)}") from None
    space = SearchSpace(space_name, source, spec)
    check(space, base)
    return space


def _space_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = [str(part) for part in err["loc"]]
    # Drop pydantic's discriminator tag from the location: params.lr.float.low -> params.lr.low
    loc = [part for part in loc if part not in ("float", "int", "categorical")]
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "union_tag_invalid":
        msg = "type must be float, int or categorical"
    elif err["type"] == "union_tag_not_found":
        msg = "needs a type: float, int or categorical"
    return f"{'.'.join(loc)}: {msg}" if loc else msg


def check(space: SearchSpace, base: dict[str, Any]) -> None:
    """Every name is a tunable preset key; every bound and choice validates against the schema."""
    valid = [key for key in field_paths() if key not in NOT_TUNABLE]
    for key, param in space.spec.params.items():
        if key not in valid:
            raise RlkitError(f"{space.source}: '{key}' is not a tunable preset key{did_you_mean(key, valid)}")
        if isinstance(param, CategoricalParam):
            extremes: list[Any] = list(param.choices)
        else:
            extremes = [param.low, param.high]
        for value in extremes:
            try:
                validate(overlay(base, {key: value}), f"{space.source}: {key}")
            except RlkitError as exc:
                raise RlkitError(f"{exc} (a value the search space allows)") from None


def build_preset(base: dict[str, Any], values: dict[str, Any], source: str) -> Preset:
    """The trial's preset: sampled ``values`` over ``base``, validated (a combination may be invalid)."""
    return validate(overlay(base, values), source)

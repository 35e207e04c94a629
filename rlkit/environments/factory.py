"""Building training and evaluation environments from a preset."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlkit.config.schema import AtariConfig, Preset
from rlkit.environments.imports import ensure_imported

if TYPE_CHECKING:
    import gymnasium as gym
    from stable_baselines3.common.vec_env import VecEnv


def _register() -> None:
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)


def registered_env_ids() -> tuple[str, ...]:
    """Every gymnasium id, Atari included (registered through ale-py), and those modules imported so far registered."""
    import gymnasium as gym

    _register()
    return tuple(gym.registry)


def is_atari(env_id: str) -> bool:
    """Whether the id names an Arcade Learning Environment game."""
    import gymnasium as gym

    _register()
    try:
        spec = gym.spec(env_id)
    except gym.error.Error:
        return False
    entry = spec.entry_point if isinstance(spec.entry_point, str) else repr(spec.entry_point)
    return "ale_py" in entry


def complete_preset(preset: Preset) -> Preset:
    """Fill in what follows from the env id: Atari preprocessing, ALE's native frame skip off."""
    if not is_atari(preset.env_id):
        return preset
    import gymnasium as gym

    update: dict[str, Any] = {}
    if preset.atari is None:
        update["atari"] = AtariConfig()
    spec_kwargs = gym.spec(preset.env_id).kwargs
    if "frameskip" not in preset.env_kwargs and spec_kwargs.get("frameskip", 1) != 1:
        # AtariWrapper does the frame skipping (with max-pooling); ALE must not skip as well.
        update["env_kwargs"] = {**preset.env_kwargs, "frameskip": 1}
    return preset.model_copy(update=update) if update else preset


def accepts_render_mode(env_id: str) -> bool:
    """Whether the env's constructor takes ``render_mode`` (custom envs may not; gymnasium's all do)."""
    import inspect

    import gymnasium as gym
    from gymnasium.envs.registration import load_env_creator

    try:
        spec = gym.spec(env_id)
        creator = spec.entry_point if callable(spec.entry_point) else load_env_creator(str(spec.entry_point))
        parameters = inspect.signature(creator).parameters.values()
    except (gym.error.Error, ImportError, AttributeError, TypeError, ValueError):
        return True  # unknown: gymnasium's own make says what is wrong
    return any(p.name == "render_mode" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def check_env(preset: Preset) -> None:
    """Make the env once to catch bad ids, bad ``env_kwargs`` and non-discrete action spaces early."""
    import gymnasium as gym

    from rlkit.core.errors import RlkitError

    _register()
    ensure_imported(preset)
    try:
        env = gym.make(preset.env_id, **preset.env_kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError) as exc:
        # Envs refuse bad arguments in their own ways (ALE: RuntimeError for a game mode,
        # Box2D: AssertionError for gravity); each is the user's env_kwargs.
        raise RlkitError(f"env_kwargs {dict(preset.env_kwargs)} do not fit {preset.env_id}: {exc}") from None
    except gym.error.Error as exc:
        raise RlkitError(f"cannot make {preset.env_id}: {exc}") from None
    try:
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise RlkitError(
                f"{preset.env_id} has a {type(env.action_space).__name__} action space; "
                "DQN needs discrete actions (e.g. CartPole-v1, LunarLander-v3, Atari)"
            )
        check_observations(env, preset.env_id)  # before any run directory: not a crash mid-run
        if preset.wrappers:  # names, kwargs and the first steps of the preset's wrappers fail here, before any work
            _try_wrappers(wrap(env, preset), preset)
        if preset.atari is not None and preset.atari.backend == "ale":
            if preset.wrappers:
                raise RlkitError("wrappers do not apply to atari.backend ale (a C++ vector env); use atari.backend sb3")
            from rlkit.environments.atari_vec import ale_settings

            ale_settings(preset)  # what ALE's vector env cannot honour fails here, before any work
    finally:
        env.close()


CHECK_STEPS = 5
"""Steps :func:`check_observations` takes after the reset (with random actions)."""


def check_observations(env: gym.Env[Any, Any], env_id: str, steps: int = CHECK_STEPS) -> None:
    """Reset the env and take a few random steps: every observation must fit its declared ``observation_space``.

    A reset or step that raises, or an observation of another shape or dtype, outside the space's
    bounds or not finite, is one line naming what the space expects and what came; the env is
    left used (the caller closes it).
    """
    import warnings

    from rlkit.core.errors import RlkitError
    from rlkit.environments.imports import describe_exception

    space = env.observation_space
    env.action_space.seed(0)
    call = "reset()"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium's passive checker warns; this says it in one line instead
        try:
            obs, _ = env.reset(seed=0)
            for step in range(1, steps + 2):
                problem = observation_problem(obs, space)
                if problem is not None:
                    came, expected = problem
                    raise RlkitError(
                        f"{env_id}: {call} returned an observation with {came}; its observation_space "
                        f"{space} expects {expected} (docs/custom-envs.md)"
                    )
                if step > steps:
                    break
                call = f"step {step}"
                obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
                if terminated or truncated:
                    call = f"reset() after step {step}"
                    obs, _ = env.reset()
        except RlkitError:
            raise
        except Exception as exc:  # the env's own code failed: one line naming the call
            raise RlkitError(f"{env_id}: {call} raised {describe_exception(exc)}") from None


def observation_problem(obs: Any, space: gym.Space[Any]) -> tuple[str, str] | None:
    """``(what came, what the space expects)`` when ``obs`` does not fit ``space``, else ``None``."""
    import gymnasium as gym
    import numpy as np

    try:
        if space.contains(obs):
            return None
    except Exception:  # a value of a kind the space cannot even compare
        pass
    if isinstance(space, gym.spaces.Box):
        try:
            array = np.asarray(obs)
        except Exception:
            return f"type {type(obs).__name__}", "an array"
        if array.shape != space.shape:
            return f"shape {array.shape}", f"shape {space.shape}"
        if not np.can_cast(array.dtype, space.dtype):
            return f"dtype {array.dtype}", f"dtype {space.dtype} (np.asarray(obs, np.{space.dtype}))"
        if array.dtype.kind in "fc" and not np.all(np.isfinite(array)):
            index = _first(~np.isfinite(array))
            return f"{array[index]} at index {_shown(index)}", "finite values"
        outside = (array < space.low) | (array > space.high)
        if np.any(outside):
            index = _first(outside)
            return (
                f"{array[index]} at index {_shown(index)}",
                f"values in [{space.low[index]}, {space.high[index]}] there",
            )
    shown = repr(obs)
    return (
        f"value {shown[:60] + '...' if len(shown) > 60 else shown} (type {type(obs).__name__})",
        "a value it contains",
    )


def _first(mask: Any) -> tuple[int, ...]:
    import numpy as np

    return tuple(int(i) for i in np.argwhere(mask)[0])


def _shown(index: tuple[int, ...]) -> str:
    return str(index[0]) if len(index) == 1 else str(index)


def _try_wrappers(env: gym.Env[Any, Any], preset: Preset) -> None:
    """Reset and step the wrapped env once: a wrapper whose kwargs are not what it needs fails here.

    Wrapper kwargs are plain data, so a wrapper that needs a function (``TransformReward(func=...)``)
    gets a string and breaks at its first step: one line now instead of a crash mid-run.
    """
    from rlkit.core.errors import RlkitError

    names = ", ".join(spec.name for spec in preset.wrappers)
    try:
        env.reset(seed=0)
        env.step(env.action_space.sample())
    except Exception as exc:  # whatever the wrapper raises is the preset's wrappers not fitting
        raise RlkitError(
            f"wrappers [{names}] do not work on {preset.env_id} ({type(exc).__name__}: {exc}); "
            "kwargs are plain data, so wrappers that need a function (TransformReward, ...) cannot be used"
        ) from None


def _atari_wrapper(atari: AtariConfig, train: bool) -> tuple[Any, dict[str, Any]]:
    from stable_baselines3.common.atari_wrappers import AtariWrapper

    kwargs = {
        "noop_max": atari.noop_max,
        "frame_skip": atari.frame_skip,
        "screen_size": atari.screen_size,
        "terminal_on_life_loss": atari.terminal_on_life_loss and train,
        "clip_reward": atari.clip_reward and train,
    }
    return AtariWrapper, kwargs


def make_env(
    preset: Preset,
    *,
    n_envs: int = 1,
    seed: int | None = None,
    monitor_dir: Path | None = None,
    train: bool = True,
    render_mode: str | None = None,
    resume: bool = False,
) -> VecEnv:
    """A vectorised env for training (``train=True``) or evaluation.

    Evaluation envs play full Atari games with the real, unclipped score; Monitor sits below
    every wrapper, so recorded episode returns are always the environment's own. ``resume``
    appends to the run's existing Monitor CSVs instead of starting them anew. Atari training
    envs with ``atari.backend: ale`` run on ale-py's vector env (:mod:`rlkit.environments.atari_vec`), with
    the same observations and episode figures; evaluation and rendering always use SB3's path.
    """
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    from rlkit.core.errors import RlkitError

    _register()
    ensure_imported(preset)
    if train and render_mode is None and preset.atari is not None and preset.atari.backend == "ale":
        from rlkit.environments.atari_vec import make_ale_env

        return make_ale_env(preset, n_envs=n_envs, seed=seed, monitor_dir=monitor_dir, resume=resume)
    # SB3's make_vec_env renders to rgb_array unless told otherwise; rendering costs (LunarLander
    # then simulates its engine particles as Box2D bodies: 20x slower physics), so it is off
    # unless asked for here or by the preset's env_kwargs.
    # An env whose constructor has no render_mode argument gets none (SB3 then makes it without).
    env_kwargs: dict[str, Any] = dict(preset.env_kwargs)
    accepts = accepts_render_mode(preset.env_id)
    if render_mode is not None:
        if not accepts:
            raise RlkitError(
                f"{preset.env_id} cannot render frames: its constructor takes no render_mode argument "
                f"(rendering needs render_mode='{render_mode}', see docs/custom-envs.md)"
            )
        env_kwargs["render_mode"] = render_mode
    elif accepts:
        env_kwargs.setdefault("render_mode", None)
    wrapper_class = None
    wrapper_kwargs = None
    if preset.atari is not None:
        wrapper_class, wrapper_kwargs = _atari_wrapper(preset.atari, train)
    if monitor_dir is not None:
        monitor_dir.mkdir(parents=True, exist_ok=True)
    from rlkit.environments.vec import DummyEnvs

    vec_env_cls: Any = DummyEnvs
    vec_env_kwargs: dict[str, Any] | None = None
    if train and preset.vec_env == "subproc" and n_envs > 1:
        from rlkit.environments.subproc import SubprocEnvs

        # Each worker imports the run's env modules itself; its signals, errors and end are owned there.
        vec_env_cls = SubprocEnvs
        vec_env_kwargs = {
            "env_id": preset.env_id,
            "modules": tuple(preset.env_imports),
            "atari": is_atari(preset.env_id),
        }
    with warnings.catch_warnings():
        # Without render_mode, SB3 first tries render_mode='rgb_array' (gymnasium warns), then none.
        warnings.filterwarnings("ignore", message=".*initialised with render_mode='rgb_array'")
        venv = make_vec_env(
            _env_maker(preset, counted=train) if preset.wrappers or train else preset.env_id,
            n_envs=n_envs,
            seed=seed,
            monitor_dir=str(monitor_dir) if monitor_dir is not None else None,
            wrapper_class=_replayable(wrapper_class) if train else wrapper_class,
            wrapper_kwargs=wrapper_kwargs if wrapper_kwargs is not None or not train else {},
            env_kwargs=env_kwargs,
            vec_env_cls=vec_env_cls,
            vec_env_kwargs=vec_env_kwargs,
            monitor_kwargs={"override_existing": not resume},
        )
    if preset.atari is not None and preset.atari.frame_stack > 1:
        venv = VecFrameStack(venv, n_stack=preset.atari.frame_stack)
    return venv


def wrapper_class(name: str) -> type[gym.Wrapper[Any, Any, Any, Any]]:
    """The wrapper a preset names: a ``gymnasium.wrappers`` class, or ``module:Class`` of an imported module.

    rlkit imports no module because a preset names it: ``module`` must already be imported
    (``--import module`` on the command line, or ``import module`` before the Python API).
    """
    import sys

    import gymnasium as gym
    import gymnasium.wrappers as builtin

    from rlkit.config.schema import did_you_mean
    from rlkit.core.errors import RlkitError

    if ":" in name:
        module_name, _, attr = name.partition(":")
        module = sys.modules.get(module_name)
        if module is None:
            raise RlkitError(
                f"wrapper '{name}': module '{module_name}' is not imported, and rlkit imports no module a preset names; "
                f"add --import {module_name} (Python API: import {module_name} first)"
            )
        found = getattr(module, attr, None)
    else:
        found = getattr(builtin, name, None)
    if not (isinstance(found, type) and issubclass(found, gym.Wrapper)):
        known = sorted(
            n
            for n in dir(builtin)
            if isinstance(getattr(builtin, n), type) and issubclass(getattr(builtin, n), gym.Wrapper)
        )
        hint = did_you_mean(name, known) if ":" not in name else ""
        raise RlkitError(f"unknown wrapper '{name}'{hint}; valid: a gymnasium.wrappers class or module:Class")
    return found


def wrap(env: gym.Env[Any, Any], preset: Preset) -> gym.Env[Any, Any]:
    """``env`` inside the preset's wrappers, innermost first; bad kwargs are one line."""
    from rlkit.core.errors import RlkitError

    for spec in preset.wrappers:
        cls = wrapper_class(spec.name)
        try:
            env = cls(env, **spec.kwargs)
        except (TypeError, ValueError, AssertionError) as exc:
            raise RlkitError(f"wrapper {spec.name} with kwargs {spec.kwargs}: {exc}") from None
    return env


def _env_maker(preset: Preset, counted: bool = False) -> Any:
    """``make_vec_env``'s env factory: ``gym.make`` inside the preset's wrappers (Monitor goes outside them).

    ``counted``: the base env inside :class:`~rlkit.environments.replayable.BaseResets` (a training env, replayable).
    """
    import gymnasium as gym

    from rlkit.environments.replayable import BaseResets

    def make(**kwargs: Any) -> gym.Env[Any, Any]:
        env = gym.make(preset.env_id, **kwargs)
        return wrap(BaseResets(env) if counted else env, preset)

    return make


def _replayable(inner: Any) -> Any:
    """``make_vec_env``'s ``wrapper_class`` for a training env: ``inner`` (Atari's wrapper, or none), then
    :class:`~rlkit.environments.replayable.Replayable` outermost, so a checkpoint can rebuild the env's state."""
    from rlkit.environments.replayable import Replayable

    def wrapper(env: Any, **kwargs: Any) -> Any:
        return Replayable(inner(env, **kwargs) if inner is not None else env)

    return wrapper


def policy_name(preset: Preset, observation_space: gym.Space[Any]) -> str:
    """The SB3 policy: the preset's, or chosen from the observation space."""
    if preset.policy != "auto":
        return preset.policy
    from stable_baselines3.common.preprocessing import is_image_space

    return "CnnPolicy" if is_image_space(observation_space, check_channels=False) else "MlpPolicy"


def policy_kwargs(preset: Preset, policy: str) -> dict[str, Any]:
    """The preset's network shape as SB3 ``policy_kwargs``."""
    import torch.nn as nn

    activations: dict[str, type[nn.Module]] = {
        "relu": nn.ReLU,
        "tanh": nn.Tanh,
        "elu": nn.ELU,
        "leaky_relu": nn.LeakyReLU,
        "gelu": nn.GELU,
        "silu": nn.SiLU,
    }
    pk = preset.policy_kwargs
    kwargs: dict[str, Any] = {"activation_fn": activations[pk.activation_fn]}
    if pk.net_arch is not None:
        kwargs["net_arch"] = list(pk.net_arch)
    if policy == "CnnPolicy":
        kwargs["normalize_images"] = pk.normalize_images
        if pk.features_dim is not None:
            kwargs["features_extractor_kwargs"] = {"features_dim": pk.features_dim}
    return kwargs

"""A bare SB3 model file played on a named env: the preset made to describe the file's network.

rlkit's loader (:func:`rlkit.training.factory.load_model`) never unpickles a model file: it
rebuilds the network's classes and kwargs from a preset. For a run's own models that preset is
the run's config; for a bare ``model.zip`` played on ``CartPole-v1`` it is the env's preset,
whose network (rlkit's CartPole preset: 256x256) need not be the file's (plain SB3: 64x64).
:func:`fit_preset` reads what the network is from data that cannot run code: the weights'
shapes (``policy.pth``, read with ``torch.load(weights_only=True)``), the algorithm named in the
JSON data, and the activation class named in the pickled ``policy_kwargs`` (its opcodes are
read, nothing is unpickled). The result: algorithm, ``net_arch``, dueling, NoisyNet,
quantiles, CNN ``features_dim`` and activation as the file has them, everything else the
preset's. A file whose inputs or actions do not fit the env is refused in one line here,
before any load.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

from rlkit.config.schema import Preset, to_plain, validate
from rlkit.core import safe_json
from rlkit.core.errors import RlkitError

ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "ELU": "elu", "LeakyReLU": "leaky_relu", "GELU": "gelu", "SiLU": "silu"}
"""torch.nn activation classes as the preset names them."""


def _read(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON data and the policy weights (tensors only) of an SB3 zip."""
    import torch

    try:
        with zipfile.ZipFile(path) as archive:
            safe_json.member_size(archive, "data")
            safe_json.member_size(archive, "policy.pth", 4 * 2**30)  # weights: up to 4 GiB, not a zip bomb's
            data = safe_json.loads(archive.read("data"))
            weights = torch.load(io.BytesIO(archive.read("policy.pth")), map_location="cpu", weights_only=True)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, EOFError, RuntimeError) as exc:
        raise RlkitError(f"cannot load model {path}: corrupted or not an SB3 model ({exc})") from None
    if not isinstance(data, dict) or not isinstance(weights, dict):
        raise RlkitError(f"cannot load model {path}: not an SB3 model file")
    return data, weights


def _layers(weights: dict[str, Any], stem: str) -> list[tuple[int, int]]:
    """``(in, out)`` of the linear layers of the ``nn.Sequential`` at ``stem``, in order (plain or noisy)."""
    found: dict[int, tuple[int, int]] = {}
    for key, tensor in weights.items():
        if not key.startswith(stem):
            continue
        index, _, name = key[len(stem) :].partition(".")
        if index.isdigit() and name in ("weight", "weight_mu"):
            found[int(index)] = (int(tensor.shape[1]), int(tensor.shape[0]))
    return [found[i] for i in sorted(found)]


def _activation(data: dict[str, Any]) -> str | None:
    """The activation class named in the pickled ``policy_kwargs`` (read as opcodes, never unpickled)."""
    import base64

    from rlkit.training.factory import pickled_globals

    entry = data.get("policy_kwargs")
    if not isinstance(entry, dict) or ":serialized:" not in entry:
        return None
    try:
        names = pickled_globals(base64.b64decode(str(entry[":serialized:"]).encode()))
    except (ValueError, TypeError, IndexError):
        return None
    for name in names:
        cls = name.rsplit(".", 1)[-1]
        if name.startswith("torch.nn.") and cls in ACTIVATIONS:
            return ACTIVATIONS[cls]
    return None


def _env_spaces(preset: Preset) -> tuple[tuple[int, ...], int, bool]:
    """Observation shape (channel-first for images, as SB3 feeds them), action count, image or not."""
    import gymnasium as gym
    from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
    from stable_baselines3.common.vec_env import VecTransposeImage

    from rlkit.environments.factory import make_env

    env = make_env(preset, n_envs=1, seed=0, train=False)
    try:
        obs, actions = env.observation_space, env.action_space
    finally:
        env.close()
    image = isinstance(obs, gym.spaces.Box) and is_image_space(obs, check_channels=False)
    if image and isinstance(obs, gym.spaces.Box) and not is_image_space_channels_first(obs):
        obs = VecTransposeImage.transpose_space(obs)
    shape = (int(obs.n),) if isinstance(obs, gym.spaces.Discrete) else tuple(int(d) for d in obs.shape or ())
    return shape, int(getattr(actions, "n", 0)), image


def fit_preset(preset: Preset, path: Path) -> Preset:
    """``preset`` with the network of the model file at ``path``; a file that does not fit the env is an error."""
    import math

    data, weights = _read(path)
    algo = str(data.get("rlkit_algo") or ("qrdqn" if any(k.startswith("quantile_net.") for k in weights) else "dqn"))
    if algo not in ("dqn", "qrdqn"):
        raise RlkitError(f"cannot load model {path}: its algorithm is {algo!r}; valid: dqn, qrdqn")
    root = "quantile_net." if algo == "qrdqn" else "q_net."
    if not any(k.startswith(root) for k in weights):
        raise RlkitError(f"cannot load model {path}: no {root.rstrip('.')} weights (not an SB3 DQN or QR-DQN model)")
    head = root + root  # SB3's QNetwork keeps its layers in .q_net (QR-DQN: .quantile_net)
    dueling = any(k.startswith(head + "0.trunk.") for k in weights)
    if dueling:
        trunk = _layers(weights, head + "0.trunk.")
        value = _layers(weights, head + "0.value.")
        advantage = _layers(weights, head + "0.advantage.")
        net_arch = [out for _, out in trunk] + ([value[0][1]] if len(value) > 1 else [])
        first, outputs = (trunk or advantage)[0][0], advantage[-1][1]
    else:
        layers = _layers(weights, head)
        if not layers:
            raise RlkitError(f"cannot load model {path}: no Q-network layers found")
        net_arch = [out for _, out in layers[:-1]]
        first, outputs = layers[0][0], layers[-1][1]
    cnn = weights.get(root + "features_extractor.cnn.0.weight")
    linear = weights.get(root + "features_extractor.linear.0.weight")
    shape, n_actions, image = _env_spaces(preset)
    support = weights.get(root + "support")  # C51's atoms (a saved buffer of rlkit's network)
    per_action = int(support.numel()) if support is not None else None
    if algo == "qrdqn" and n_actions:
        per_action = outputs // n_actions
    inputs = int(cnn.shape[1]) if cnn is not None else first
    wanted = shape[0] if image else math.prod(shape)
    fits = (cnn is not None) == image and inputs == wanted
    fits = fits and (outputs == n_actions * (per_action or 1)) and (algo == "dqn" or per_action is not None)
    if not fits:
        kind = f"{inputs}-channel images" if cnn is not None else f"{inputs} inputs"
        env_kind = f"{wanted}-channel images" if image else f"{wanted} inputs"
        model_actions = outputs // per_action if per_action else outputs
        raise RlkitError(
            f"{path.name} does not fit {preset.env_id}: the model takes {kind} and has {model_actions} actions, "
            f"the env gives {env_kind} {shape} and has {n_actions} actions"
        )
    plain = to_plain(preset)
    kwargs = dict(plain.get("policy_kwargs") or {})
    kwargs["net_arch"] = net_arch
    activation = _activation(data)
    if activation is not None:
        kwargs["activation_fn"] = activation
    if linear is not None:
        kwargs["features_dim"] = int(linear.shape[0])
    noisy = any(k.startswith(head) and k.endswith("weight_mu") for k in weights)
    plain.update(policy_kwargs=kwargs, dueling=dueling, noisy=noisy, distribution="none")
    if algo == "qrdqn":
        plain.update(distribution="qr", n_quantiles=per_action)
    elif support is not None:
        plain.update(distribution="c51", n_atoms=per_action, v_min=float(support[0]), v_max=float(support[-1]))
    return validate(plain, str(path))

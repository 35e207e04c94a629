"""Exporting a trained Q-network for deployment: ONNX or TorchScript, with a JSON description beside it.

The exported file maps a batch of raw observations (as the env gives them: float32 vectors,
or Atari's stacked 4x84x84 uint8 frames, channel-first) to two outputs, ``q_values``
(batch, actions) and ``actions`` (batch,), the greedy actions. Everything between is inside
the file: SB3's preprocessing (``float()``, ``/255`` for image inputs when the policy
normalizes images, one-hot for discrete observations), the dueling head, NoisyNet layers with
their noise-free mean weights, C51's expectation over its atoms and QR-DQN's mean over quantiles
(every head exports expected Q-values). Running it needs neither
rlkit nor SB3 (onnxruntime + numpy, or torch alone for TorchScript).

Before the file is published it is checked against the model itself on observations recorded
from the env (random actions): the greedy actions must agree and the Q-values match to float
precision; otherwise nothing is written.
"""

from __future__ import annotations

import contextlib
import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from rlkit.core import atomic
from rlkit.core.errors import RlkitError
from rlkit.core.paths import make_folder

if TYPE_CHECKING:
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    from rlkit.analysis.evaluation import Source

Format = Literal["onnx", "torchscript"]
FORMATS: tuple[str, ...] = ("onnx", "torchscript")
SUFFIXES: dict[str, tuple[str, ...]] = {"onnx": (".onnx",), "torchscript": (".pt", ".ts")}
INPUT_NAME = "obs"
OUTPUT_NAMES = ("q_values", "actions")
CHECK_OBSERVATIONS = 1000
"""Observations recorded from the env to check an export against the model."""

Array = np.ndarray[Any, Any]


class GreedyQ(nn.Module):
    """Observations -> (Q-values, greedy actions) around an SB3 Q-network or QR-DQN quantile network."""

    def __init__(self, network: nn.Module, quantiles: bool) -> None:
        super().__init__()
        self.network = network
        self.quantiles = quantiles

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.network(obs)  # SB3's QNetwork/QuantileNetwork: preprocess_obs, features, head
        q_values = out.mean(dim=1) if self.quantiles else out
        return q_values, q_values.argmax(dim=1)


def greedy_module(model: OffPolicyAlgorithm) -> GreedyQ:
    """A CPU copy of the model's online network, in eval mode, NoisyNet noise off, wrapped as :class:`GreedyQ`."""
    from rlkit.dqn.policies import noisy_layers

    quantiles = hasattr(model, "quantile_net")
    network: nn.Module = model.quantile_net if quantiles else model.q_net  # type: ignore[attr-defined]
    network = copy.deepcopy(network).to("cpu").eval()
    for layer in noisy_layers(network):
        layer.noise_enabled = False  # the layers' mean weights: the greedy policy rlkit evaluates
    for param in network.parameters():
        param.requires_grad_(False)
    return GreedyQ(network, quantiles).eval()


def head_kind(model: OffPolicyAlgorithm) -> str:
    """The value head the export maps to expected Q-values: ``none``, ``c51`` or ``qr``."""
    if hasattr(model, "quantile_net"):
        return "qr"
    head = getattr(model.policy.q_net, "head", None)
    return str(head.kind) if head is not None else "none"


def _atoms(model: OffPolicyAlgorithm) -> int | None:
    net: Any = getattr(model.policy, "q_net", None)
    return int(net.atoms) if head_kind(model) == "c51" else None


def recorded_observations(source: Source, model: OffPolicyAlgorithm, n: int, seed: int = 0) -> Array:
    """``n`` observations from the source's evaluation env under random actions, as the model takes them.

    Image observations are transposed to the model's channel-first layout (SB3 does the same
    inside ``predict``), so the array is exactly the exported file's input.
    """
    from stable_baselines3.common.preprocessing import maybe_transpose

    from rlkit.analysis.evaluation import check_fits
    from rlkit.environments.factory import make_env

    env = make_env(source.preset, n_envs=1, seed=seed, train=False)
    env.action_space.seed(seed)
    try:
        check_fits(model, env, source)
        obs = env.reset()
        frames = []
        for _ in range(n):
            frames.append(maybe_transpose(np.asarray(obs), model.observation_space)[0])
            obs, _, _, _ = env.step(np.array([env.action_space.sample()]))
    finally:
        env.close()
    return np.stack(frames).astype(model.observation_space.dtype, copy=False)


def action_meanings(source: Source) -> list[str] | None:
    """The env's names of its actions (``get_action_meanings``: Atari), else ``None``."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlkit.environments.factory import make_env

    venv = make_env(source.preset, n_envs=1, seed=0, train=False)
    try:
        inner = venv.unwrapped
        env = inner.envs[0].unwrapped if isinstance(inner, DummyVecEnv) else None
        meanings = getattr(env, "get_action_meanings", None)
        return [str(m) for m in meanings()] if callable(meanings) else None
    finally:
        venv.close()


# ----------------------------------------------------------------------------------------
# Writing and running the two formats
# ----------------------------------------------------------------------------------------


def _example(model: OffPolicyAlgorithm, batch: int = 2) -> torch.Tensor:
    space = model.observation_space
    return torch.zeros((batch, *(space.shape or ())), dtype=torch.from_numpy(np.zeros(1, dtype=space.dtype)).dtype)


def require_onnx() -> None:
    """The packages torch's ONNX exporter and the check need; one line naming the extra when missing."""
    for name in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(name)
        except ImportError:
            raise RlkitError(
                f"ONNX export needs the onnx, onnxscript and onnxruntime packages ({name} is missing): "
                "pip install 'rlkit[export]'"
            ) from None


def write_onnx(module: GreedyQ, example: torch.Tensor, path: Path) -> None:
    """``torch.onnx.export`` (the dynamo exporter; needs onnx and onnxscript) with a dynamic batch axis."""
    import logging
    import warnings

    require_onnx()
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed" notes about ops rlkit never uses
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_shapes={INPUT_NAME: {0: torch.export.Dim("batch")}},
                dynamo=True,
                external_data=False,
                verbose=False,
            )
    finally:
        quiet.setLevel(level)


def write_torchscript(module: GreedyQ, example: torch.Tensor, path: Path) -> None:
    """``torch.jit.trace`` (the network has no data-dependent control flow), saved with ``torch.jit.save``."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (example,), check_inputs=[(example[:1],), (torch.cat([example] * 3),)])
        torch.jit.save(traced, str(path))


def run_exported(path: Path, fmt: str, obs: Array, batch: int = 256) -> tuple[Array, Array]:
    """Q-values and actions of an exported file on ``obs`` (onnxruntime for ONNX, ``torch.jit.load`` for TorchScript)."""
    q_parts: list[Array] = []
    a_parts: list[Array] = []
    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            raise RlkitError("checking an ONNX export needs onnxruntime: pip install 'rlkit[export]'") from None
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for start in range(0, len(obs), batch):
            q, a = session.run(list(OUTPUT_NAMES), {INPUT_NAME: obs[start : start + batch]})
            q_parts.append(np.asarray(q))
            a_parts.append(np.asarray(a))
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 points to torch.export
            loaded = torch.jit.load(str(path), map_location="cpu")
        with torch.no_grad():
            for start in range(0, len(obs), batch):
                q_t, a_t = loaded(torch.from_numpy(np.ascontiguousarray(obs[start : start + batch])))
                q_parts.append(q_t.numpy())
                a_parts.append(a_t.numpy())
    return np.concatenate(q_parts), np.concatenate(a_parts)


def model_q_values(model: OffPolicyAlgorithm, obs: Array, batch: int = 256) -> Array:
    """The model's own Q-values (QR-DQN: mean over quantiles), noise off: the reference of a check."""
    module = greedy_module(model)
    parts = []
    with torch.no_grad():
        for start in range(0, len(obs), batch):
            q, _ = module(torch.from_numpy(np.ascontiguousarray(obs[start : start + batch])))
            parts.append(q.numpy())
    return np.concatenate(parts)


@dataclass(frozen=True)
class Agreement:
    """How an exported file compares with the model on recorded observations."""

    observations: int
    actions_equal: float
    """Fraction of observations where the exported greedy action equals the model's ``predict``."""
    max_abs_dq: float
    """Largest |Q_exported - Q_model| over every observation and action."""
    near_ties: int
    """Observations whose two best Q-values lie within float tolerance (either action is greedy)."""
    max_abs_q: float
    """Largest |Q_model|: the scale float32 rounding is relative to."""

    @property
    def ok(self) -> bool:
        agree = round(self.actions_equal * self.observations) + self.near_ties >= self.observations
        return agree and self.max_abs_dq <= 1e-5 * max(1.0, self.max_abs_q)

    def to_dict(self) -> dict[str, float | int]:
        return {
            "observations": self.observations,
            "actions_equal": self.actions_equal,
            "max_abs_dq": self.max_abs_dq,
            "near_ties": self.near_ties,
            "max_abs_q": self.max_abs_q,
        }


def compare(model: OffPolicyAlgorithm, obs: Array, q: Array, actions: Array) -> Agreement:
    """Exported Q-values/actions against the model's ``predict(deterministic=True)`` and its own Q-values."""
    want_actions, _ = model.predict(obs, deterministic=True)
    want_q = model_q_values(model, obs)
    equal = np.asarray(actions).reshape(-1) == np.asarray(want_actions).reshape(-1)
    top2 = np.sort(want_q, axis=1)[:, -2:] if want_q.shape[1] > 1 else np.zeros((len(want_q), 2))
    tol = 1e-5 * max(1.0, float(np.abs(want_q).max()))
    ties = (top2[:, 1] - top2[:, 0]) <= tol
    return Agreement(
        observations=len(obs),
        actions_equal=float(equal.mean()),
        max_abs_dq=float(np.abs(q - want_q).max()),
        near_ties=int((~equal & ties).sum()),
        max_abs_q=float(np.abs(want_q).max()),
    )


# ----------------------------------------------------------------------------------------
# The command's logic
# ----------------------------------------------------------------------------------------


@dataclass
class Export:
    """What ``export_model`` wrote."""

    path: Path
    meta_path: Path
    fmt: str
    size: int
    agreement: Agreement
    meta: dict[str, Any]


def meta_path_for(path: Path) -> Path:
    """``best.onnx`` -> ``best.onnx.json`` (so an ONNX and a TorchScript export can sit side by side)."""
    return path.with_name(path.name + ".json")


def default_path(source: Source, fmt: str) -> Path:
    """``<run>/export/<model>.onnx|.pt``; beside a bare ``model.zip``: ``<stem>.onnx|.pt``."""
    name = f"{source.label}{SUFFIXES[fmt][0]}"
    if source.run is None:
        return source.choice.path.with_name(name)
    return source.run.path / "export" / name


def infer_format(fmt: str | None, out: Path | None) -> str:
    """The format asked for, else the one ``--out``'s suffix names, else ONNX."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise RlkitError(f"unknown --format '{fmt}'; valid: {', '.join(FORMATS)}")
        return fmt
    if out is not None:
        for name, suffixes in SUFFIXES.items():
            if out.suffix.lower() in suffixes:
                return name
    return "onnx"


def check_out(out: Path, fmt: str, force: bool) -> None:
    """A new output file of the format's suffix, and no JSON beside it to clobber, unless ``--force``."""
    if out.suffix.lower() not in SUFFIXES[fmt]:
        raise RlkitError(f"--out {out}: {fmt} exports are {' or '.join(SUFFIXES[fmt])} files (got '{out.suffix}')")
    atomic.check_new_output(out, force, SUFFIXES[fmt], f"{fmt} export", "--out")
    meta = meta_path_for(out)
    if meta.exists() and not force:
        raise RlkitError(f"{meta} already exists; use --force to overwrite it or --out for another file")


def describe(source: Source, model: OffPolicyAlgorithm, fmt: str, out: Path, agreement: Agreement) -> dict[str, Any]:
    """The JSON beside the exported file: input, preprocessing, outputs, actions, source, versions."""
    from stable_baselines3.common.preprocessing import is_image_space

    import rlkit
    from rlkit.training.rundir import now_iso

    space = model.observation_space
    image = is_image_space(space, check_channels=False)
    normalize = bool(getattr(model.policy, "normalize_images", True)) and image
    atari = source.preset.atari
    input_info: dict[str, Any] = {
        "name": INPUT_NAME,
        "shape": [None, *[int(d) for d in space.shape or ()]],
        "dtype": str(np.dtype(space.dtype)),
    }
    if atari is not None:
        input_info["layout"] = (
            f"the last {atari.frame_stack} preprocessed frames, oldest first, channel-first "
            f"({atari.frame_stack}, {atari.screen_size}, {atari.screen_size}): grayscale, "
            f"frame skip {atari.frame_skip} with max-pooling of the last two frames, resized with cv2.INTER_AREA"
        )
    preprocessing = (
        "inside the model: observations are cast to float32 and divided by 255"
        if normalize
        else "inside the model: observations are cast to float32 (no scaling)"
    )
    return {
        "format": fmt,
        "file": out.name,
        "input": input_info,
        "preprocessing": {"normalize_images": normalize, "scale": 1 / 255 if normalize else 1.0, "note": preprocessing},
        "output_names": list(OUTPUT_NAMES),
        "outputs": {
            "q_values": {"dtype": "float32", "shape": [None, int(model.action_space.n)]},  # type: ignore[attr-defined]
            "actions": {"dtype": "int64", "shape": [None], "note": "argmax of q_values: the greedy action"},
        },
        "actions": {"n": int(model.action_space.n), "meanings": action_meanings(source)},  # type: ignore[attr-defined]
        "env": {
            "id": source.preset.env_id,
            "alias": source.alias,
            "env_kwargs": dict(source.preset.env_kwargs),
            "atari": None if atari is None else atari.model_dump(),
        },
        "source": {
            "run": str(source.run.path) if source.run is not None else None,
            "model": source.label,
            "model_file": str(source.choice.path),
            "step": int(model.num_timesteps),
            "algo": "qrdqn" if hasattr(model, "quantile_net") else "dqn",
            "dueling": bool(getattr(model.policy, "dueling", False)),
            "noisy": bool(getattr(model.policy, "noisy", False)),
            "noisy_note": "NoisyNet layers exported with their mean weights (no noise)"
            if getattr(model.policy, "noisy", False)
            else None,
            "n_quantiles": getattr(model, "n_quantiles", None),
            "distribution": head_kind(model),
            "n_atoms": _atoms(model),
        },
        "check": agreement.to_dict(),
        "versions": {"rlkit": rlkit.__version__, "torch": torch.__version__},
        "created": now_iso(),
    }


def export_model(
    path: Path,
    *,
    env_name: str | None = None,
    model_name: str = "auto",
    fmt: str | None = None,
    out: Path | None = None,
    force: bool = False,
    check_observations: int = CHECK_OBSERVATIONS,
) -> Export:
    """Export a run's model (or a bare model on ``env_name``) and the JSON beside it, after checking it."""
    from rlkit.analysis.evaluation import open_source

    if check_observations < 1:
        raise RlkitError(f"--check must be at least 1 observation (got {check_observations})")
    kind = infer_format(fmt, out)
    if kind == "onnx":
        require_onnx()
    source = open_source(path, env_name, model_name, command="export")
    target = out if out is not None else default_path(source, kind)
    made = out is None and not target.parent.exists()  # RUN/export/: made now, removed again if nothing lands in it
    if made:
        make_folder(target.parent, "export folder")
    try:
        return _export(source, target, kind, force, check_observations)
    except BaseException:
        if made:
            with contextlib.suppress(OSError):
                target.parent.rmdir()  # only when empty
        raise


def _export(source: Source, target: Path, kind: str, force: bool, check_observations: int) -> Export:
    """Check, write and describe one export at ``target`` (its folder exists)."""
    from rlkit.analysis.evaluation import load_source_model

    check_out(target, kind, force)
    model = load_source_model(source, "cpu")
    obs = recorded_observations(source, model, check_observations)  # also fails early on a model of another env
    module = greedy_module(model)
    example = _example(model)
    result: dict[str, Agreement] = {}

    def write(tmp: Path) -> None:
        (write_onnx if kind == "onnx" else write_torchscript)(module, example, tmp)
        q, actions = run_exported(tmp, kind, obs)
        agreement = compare(model, obs, q, actions)
        if not agreement.ok:
            raise RlkitError(
                f"the exported {kind} file disagrees with the model (actions equal {agreement.actions_equal:.2%}, "
                f"max |dQ| {agreement.max_abs_dq:.3g}); nothing written"
            )
        result["agreement"] = agreement

    atomic.write_with(target, write)
    meta = describe(source, model, kind, target, result["agreement"])
    meta_path = meta_path_for(target)
    atomic.write_text(meta_path, json.dumps(meta, indent=2) + "\n")
    return Export(target, meta_path, kind, target.stat().st_size, result["agreement"], meta)

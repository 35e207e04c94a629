"""``rlkit export``: the exported file picks the model's greedy actions, and runs without rlkit or SB3.

Each variant is checked here independently of the exporter's own check: observations recorded
from the env (half random, half the model's own actions), the model's ``predict`` and Q-values
against onnxruntime's or ``torch.jit.load``'s outputs.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import rlkit
from tests.clitools import assert_one_line_error, invoke

pytest.importorskip("onnxruntime", reason="rlkit[export] not installed")
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")

REPO = Path(__file__).resolve().parent.parent
OBSERVATIONS = 1000
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
MLP = ["policy_kwargs.net_arch=[64,64]", "learning_starts=200", "train_freq=4", "buffer_size=2000", "batch_size=32"]
# name: (preset, overrides, training steps)
VARIANTS: dict[str, tuple[str, list[str], int]] = {
    "mlp-dueling": ("cartpole", [*MLP, "dueling=true"], 1000),
    "mlp-noisy": ("cartpole", [*MLP, "noisy=true", "dueling=true"], 0),
    "mlp-qrdqn": ("lunarlander", [*MLP, "dueling=false", "algo=qrdqn", "n_quantiles=11"], 0),
    "cnn-pong": ("pong", ["buffer_size=1000", "learning_starts=100000"], 0),
}


def _build(name: str, folder: Path) -> Path:
    from rlkit.environments.factory import make_env
    from rlkit.environments.resolve import resolve
    from rlkit.training.factory import build_model

    preset_name, overrides, steps = VARIANTS[name]
    preset = resolve(preset_name, overrides=overrides).preset
    env = make_env(preset, n_envs=1, seed=0)
    model = build_model(preset, env, seed=0, device="cpu", tensorboard_log=None)
    if steps:
        model.learn(steps)
    if name.startswith("cnn"):
        _diversify(model, preset_name)
    path = folder / f"{name}.zip"
    model.save(path)
    env.close()
    return path


def _diversify(model: Any, preset_name: str) -> None:
    """An untrained CNN picks one action on nearly every Pong frame (its features barely move); centring
    the last layer on the mean features of recorded frames makes its greedy action vary from frame to frame."""
    import torch

    obs = torch.as_tensor(_recorded(model, preset_name, 200))
    net = model.q_net
    with torch.no_grad():
        features = net.q_net[:-1](net.extract_features(obs, net.features_extractor))
        last = net.q_net[-1]
        last.weight.normal_(0.0, 1.0 / features.std(dim=0).mean().item())
        last.bias.copy_(-last.weight @ features.mean(dim=0))
    model.q_net_target.load_state_dict(net.state_dict())


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("export-models")
    try:
        return {name: _build(name, folder) for name in VARIANTS}
    finally:
        torch.set_num_threads(threads)


def _recorded(model: Any, preset_name: str, n: int) -> np.ndarray:
    """``n`` observations from the env as the model takes them: random actions and the model's, alternating."""
    from stable_baselines3.common.preprocessing import maybe_transpose

    from rlkit.environments.factory import make_env
    from rlkit.environments.resolve import resolve

    env = make_env(resolve(preset_name).preset, n_envs=1, seed=7, train=False)
    env.action_space.seed(7)
    obs = env.reset()
    frames = []
    for i in range(n):
        frames.append(maybe_transpose(obs, model.observation_space)[0])
        action = model.predict(obs, deterministic=True)[0] if i % 2 else np.array([env.action_space.sample()])
        obs, _, _, _ = env.step(action)
    env.close()
    return np.stack(frames)


def _model_q(model: Any, obs: np.ndarray) -> np.ndarray:
    """The model's own Q-values: online network, NoisyNet noise off, QR-DQN mean over quantiles."""
    import torch

    from rlkit.dqn.policies import noise_off

    tensor = torch.as_tensor(obs)
    with torch.no_grad():
        if hasattr(model, "quantile_net"):
            return model.quantile_net(tensor).mean(dim=1).numpy()
        with noise_off(model.q_net):
            return model.q_net(tensor).numpy()


def _run(path: Path, fmt: str, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if fmt == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        q, actions = session.run(["q_values", "actions"], {"obs": obs})
        return np.asarray(q), np.asarray(actions)
    import torch

    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        q_t, a_t = loaded(torch.as_tensor(obs))
    return q_t.numpy(), a_t.numpy()


CASES = [
    ("mlp-dueling", "onnx"),
    ("mlp-dueling", "torchscript"),
    ("mlp-noisy", "onnx"),
    ("mlp-qrdqn", "onnx"),
    ("mlp-qrdqn", "torchscript"),
    ("cnn-pong", "onnx"),
    ("cnn-pong", "torchscript"),
]


@pytest.mark.parametrize(("variant", "fmt"), CASES)
def test_exported_file_picks_the_models_greedy_actions(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str, fmt: str
) -> None:
    monkeypatch.setenv("RLKIT_CORES", "1")  # the CNN on one thread: the other core is not ours to take

    preset_name = VARIANTS[variant][0]
    out = tmp_path / f"{variant}{SUFFIX[fmt]}"
    result = invoke("export", models[variant], preset_name, "--format", fmt, "--out", out, "--check", 200)
    assert result.exit_code == 0, result.output
    assert "greedy actions equal 100.00%" in result.stdout
    meta = json.loads((tmp_path / f"{out.name}.json").read_text())

    model = rlkit.load(models[variant], env=preset_name)  # through rlkit's safe loader
    obs = _recorded(model, preset_name, OBSERVATIONS)
    assert obs.dtype == np.dtype(meta["input"]["dtype"]) and list(obs.shape[1:]) == meta["input"]["shape"][1:]
    q, actions = _run(out, fmt, obs)
    want_actions = model.predict(obs, deterministic=True)[0]
    want_q = _model_q(model, obs)
    equal = float((actions == want_actions).mean())
    max_dq = float(np.abs(q - want_q).max())
    scale = float(np.abs(want_q).max())
    print(
        f"\n{variant} {fmt}: {len(obs)} observations, actions equal {equal:.4f}, max |dQ| {max_dq:.3g} (max |Q| {scale:.3g})"
    )
    assert len(set(want_actions.tolist())) > 1  # the observations exercise more than one action
    assert equal == 1.0
    assert max_dq <= 1e-5 * max(1.0, scale)  # float32 rounding, relative to the Q-values' size
    one_q, one_action = _run(out, fmt, obs[:1])  # the batch axis is dynamic: one observation works too
    assert one_q.shape == (1, meta["outputs"]["q_values"]["shape"][1]) and one_action[0] == want_actions[0]


def test_json_describes_input_preprocessing_actions_and_source(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "pong.onnx"
    assert invoke("export", models["cnn-pong"], "pong", "--out", out, "--check", 50).exit_code == 0
    meta = json.loads((tmp_path / "pong.onnx.json").read_text())
    assert meta["format"] == "onnx" and meta["file"] == "pong.onnx"
    assert meta["input"] == {**meta["input"], "name": "obs", "shape": [None, 4, 84, 84], "dtype": "uint8"}
    assert meta["preprocessing"]["normalize_images"] is True and meta["preprocessing"]["scale"] == pytest.approx(
        1 / 255
    )
    assert meta["output_names"] == ["q_values", "actions"]
    assert meta["actions"]["n"] == 6 and meta["actions"]["meanings"][:2] == ["NOOP", "FIRE"]
    assert meta["env"]["id"] == "PongNoFrameskip-v4" and meta["env"]["atari"]["frame_stack"] == 4
    assert meta["source"]["model"] == "cnn-pong" and meta["source"]["step"] == 0
    assert meta["versions"]["rlkit"]


def test_run_directory_default_path_no_clobber_and_bad_input(run_copy: Path, tmp_path: Path) -> None:
    result = invoke("export", run_copy, "--model", "final", "--check", 100)
    assert result.exit_code == 0, result.output
    out = run_copy / "export" / "final.onnx"
    meta = json.loads((run_copy / "export" / "final.onnx.json").read_text())
    assert out.is_file() and meta["source"]["run"] == str(run_copy) and meta["source"]["model"] == "final"
    before = out.read_bytes()
    assert_one_line_error(invoke("export", run_copy, "--model", "final"), "already exists", "--force")
    assert out.read_bytes() == before
    assert invoke("export", run_copy, "--model", "final", "--force", "--check", 10).exit_code == 0
    assert_one_line_error(invoke("export", run_copy, "--model", "fnal"), "did you mean 'final'")
    assert_one_line_error(invoke("export", run_copy, "--out", tmp_path / "x.onnx", "-f", "torchscript"), "torchscript")
    assert_one_line_error(invoke("export", tmp_path / "nope"), "not a run directory")
    assert_one_line_error(invoke("export", run_copy / "model.zip"), "name the env")
    assert_one_line_error(invoke("export", run_copy / "model.zip", "LunarLander-v3"), "does not fit")
    assert not list(tmp_path.glob("*.onnx*")) and not list(tmp_path.glob(".x.onnx*"))


DOC_EXAMPLE = re.compile(r"<!-- example: standalone -->\s*```python\n(.*?)```", re.S)


def _isolated_site(folder: Path) -> Path:
    """A folder holding only numpy and onnxruntime (links to the installed packages), nothing else."""
    site = folder / "site"
    site.mkdir()
    for name in ("numpy", "onnxruntime"):
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.submodule_search_locations
        package = Path(next(iter(spec.submodule_search_locations)))
        for item in (package, package.with_name(f"{name}.libs")):
            if item.exists():
                (site / item.name).symlink_to(item)
    return site


def test_docs_example_runs_without_rlkit_or_sb3(models: dict[str, Path], tmp_path: Path) -> None:
    example = DOC_EXAMPLE.search((REPO / "docs" / "deploy.md").read_text())
    assert example, "docs/deploy.md has no standalone example block"
    code = example.group(1)
    assert "rlkit" not in code and "stable_baselines3" not in code and "torch" not in code
    work = tmp_path / "elsewhere"
    work.mkdir()
    out = work / "lander.onnx"
    assert invoke("export", models["mlp-qrdqn"], "lunarlander", "--out", out, "--check", 50).exit_code == 0
    model = rlkit.load(models["mlp-qrdqn"], env="lunarlander")
    obs = _recorded(model, "lunarlander", OBSERVATIONS)
    np.save(work / "observations.npy", obs)
    (work / "example.py").write_text(code)
    # -I: no PYTHONPATH, no user site, no script folder; -S: no site-packages (where rlkit's editable
    # install and SB3 live); the only importable packages besides the stdlib are numpy and onnxruntime.
    prelude = f"import sys; sys.path.insert(0, {str(_isolated_site(tmp_path))!r}); "
    python = [sys.executable, "-I", "-S", "-c"]
    for banned in ("rlkit", "stable_baselines3", "torch"):
        probe = subprocess.run([*python, prelude + f"import {banned}"], cwd=work, capture_output=True, text=True)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, f"{banned} importable: {probe}"
    run = subprocess.run(
        [*python, prelude + "exec(open('example.py').read())"], cwd=work, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    printed = np.array(json.loads(run.stdout.strip().splitlines()[-1]))
    assert printed.shape == (OBSERVATIONS,)
    assert np.array_equal(printed, model.predict(obs, deterministic=True)[0])


def test_missing_extra_is_one_line(models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # import onnxscript -> ImportError
    result = invoke("export", models["mlp-dueling"], "cartpole", "--out", tmp_path / "m.onnx")
    assert_one_line_error(result, "pip install 'rlkit[export]'")
    assert not list(tmp_path.iterdir())


def test_gymnasium_atari_preprocessing_matches_what_the_export_takes() -> None:
    """docs/deploy.md's gymnasium-only Atari pipeline: same game states, frames within a few grey levels."""
    import gymnasium as gym
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation
    from stable_baselines3.common.vec_env import VecTransposeImage

    from rlkit.environments.factory import make_env
    from rlkit.environments.resolve import resolve

    preset = resolve("pong", overrides=["atari.noop_max=0"]).preset  # no random no-ops: the same start
    ours = VecTransposeImage(make_env(preset, n_envs=1, seed=3, train=False))
    ours.reset()
    env = AtariPreprocessing(
        gym.make(preset.env_id), noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False
    )
    theirs = FrameStackObservation(env, 4, padding_type="zero")
    theirs.reset(seed=3)
    theirs.step(1)  # SB3's FireResetEnv: FIRE, then action 2, after every reset
    theirs.step(2)
    rng = np.random.default_rng(0)
    for step in range(200):
        action = int(rng.integers(6))
        a = ours.step(np.array([action]))[0][0]
        b = np.asarray(theirs.step(action)[0])
        assert a.shape == b.shape == (4, 84, 84) and a.dtype == b.dtype == np.uint8
        assert np.array_equal(ours.venv.envs[0].unwrapped.ale.getRAM(), env.unwrapped.ale.getRAM())
        if step >= 3:  # once both stacks hold four real frames
            diff = np.abs(a.astype(int) - b.astype(int))
            assert diff.max() <= 32 and (diff > 0).sum() <= 4 * 64
    ours.close()
    theirs.close()

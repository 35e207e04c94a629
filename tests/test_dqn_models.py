"""Building, saving and loading models with the DQN extensions; the divergence guard in a real run."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.dqn.policies import DQNPolicy

from rlkit.config.schema import validate
from rlkit.core.errors import RlkitError
from rlkit.dqn import algorithms, engine, mlp
from rlkit.dqn.algorithms import RlkitDQN, RlkitQRDQN
from rlkit.dqn.diagnostics import DivergenceError, check_divergence
from rlkit.dqn.engine import EngineOptions
from rlkit.dqn.policies import DuelingHead, NoisyLinear, RlkitCnnPolicy
from rlkit.environments.factory import make_env
from rlkit.environments.resolve import resolve
from rlkit.replay.buffers import PrioritizedReplayBuffer
from rlkit.training import train as training
from rlkit.training.buffer_store import load_buffer, save_buffer
from rlkit.training.factory import build_model, load_model

FAST = [
    "policy_kwargs.net_arch=[32,32]",
    "learning_starts=32",
    "batch_size=16",
    "train_freq=4",
    "gradient_steps=1",
    "buffer_size=1000",
    "diagnostics_interval=5",
]


def _preset(*sets: str) -> Any:
    return resolve("cartpole", overrides=[*FAST, *sets]).preset


def _model(*sets: str) -> Any:
    preset = _preset(*sets)
    env = make_env(preset, n_envs=1, seed=0)
    return build_model(preset, env, seed=0, device="cpu", tensorboard_log=None)


def _obs(n: int = 8) -> np.ndarray:
    return np.random.default_rng(1).normal(size=(n, 4)).astype(np.float32)


def test_vanilla_model_loads_in_plain_sb3(tmp_path: Path) -> None:
    model = _model()
    model.learn(128)
    assert type(model.policy) is DQNPolicy and type(model.replay_buffer).__name__ == "ReplayBuffer"
    model.save(tmp_path / "m.zip")
    plain = DQN.load(tmp_path / "m.zip", device="cpu")
    assert type(plain) is DQN and type(plain.policy) is DQNPolicy
    assert np.array_equal(plain.predict(_obs(), deterministic=True)[0], model.predict(_obs(), deterministic=True)[0])


def test_diagnostics_are_logged() -> None:
    model = _model()
    model.learn(128)
    # learn() dumps (and clears) the logger at episode ends; read the last values recorded after that.
    model.train(5, 16)
    values = model.logger.name_to_value
    for key in ("diag/td_error_std", "diag/grad_norm", "diag/clip_fraction", "diag/q_greedy_max", "diag/buffer_fill"):
        assert key in values and np.isfinite(values[key]), key
    assert 0.0 <= values["diag/clip_fraction"] <= 1.0
    assert values["diag/q_taken_min"] <= values["diag/q_taken_mean"] <= values["diag/q_taken_max"]
    assert values["diag/target_syncs"] >= 1


def test_extensions_round_trip_through_rlkit(tmp_path: Path) -> None:
    sets = ["double_q=true", "dueling=true", "noisy=true", "prioritized_replay=true", "n_steps=3", "loss=mse"]
    model = _model(*sets, "per_alpha=0.5")
    model.learn(128)
    assert model.exploration_rate == 0.0  # NoisyNet replaces epsilon-greedy
    model.save(tmp_path / "m.zip")
    save_buffer(model.replay_buffer, tmp_path / "rb.npz")
    loaded = load_model(tmp_path / "m.zip", None, "cpu", preset=_preset(*sets, "per_alpha=0.5"))
    assert isinstance(loaded, RlkitDQN)
    assert (loaded.double_q, loaded.loss, loaded.n_steps) == (True, "mse", 3)
    assert loaded.policy.dueling and loaded.policy.noisy  # type: ignore[attr-defined]
    assert loaded.replay_buffer_class is PrioritizedReplayBuffer
    assert loaded.exploration_initial_eps == 0.0
    load_buffer(loaded.replay_buffer, tmp_path / "rb.npz")
    buffer = loaded.replay_buffer
    assert isinstance(buffer, PrioritizedReplayBuffer)
    assert (buffer.n_steps, buffer.alpha) == (3, 0.5)
    assert buffer.tree.total == pytest.approx(model.replay_buffer.tree.total)
    obs = _obs()
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_qrdqn_round_trip(tmp_path: Path) -> None:
    sets = ("algo=qrdqn", "n_quantiles=8", "double_q=true", "prioritized_replay=true")
    model = _model(*sets)
    model.learn(128)
    model.save(tmp_path / "m.zip")
    loaded = load_model(tmp_path / "m.zip", None, "cpu", preset=_preset(*sets))
    assert isinstance(loaded, RlkitQRDQN) and loaded.double_q and loaded.n_quantiles == 8
    obs = _obs()
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def test_dueling_head_is_value_plus_centred_advantage() -> None:
    model = _model("dueling=true")
    head = model.q_net.q_net[0]
    assert isinstance(head, DuelingHead)
    x = th.as_tensor(_obs())
    hidden = head.trunk(x)
    value, adv = head.value(hidden), head.advantage(hidden)
    q = model.q_net(x)
    assert th.allclose(q, value + adv - adv.mean(dim=1, keepdim=True), atol=1e-6)
    assert th.allclose(q.mean(dim=1, keepdim=True), value, atol=1e-5)


def test_noisy_exploration_varies_and_evaluation_uses_means() -> None:
    model = _model("noisy=true")
    assert len([m for m in model.q_net.modules() if isinstance(m, NoisyLinear)]) == 3
    x = th.as_tensor(_obs())
    noisy_a = model.q_net(x).detach()
    model.policy.reset_noise()
    noisy_b = model.q_net(x).detach()
    assert not th.allclose(noisy_a, noisy_b)
    greedy = model.predict(_obs(), deterministic=True)[0]
    for _ in range(3):
        model.policy.reset_noise()
        assert np.array_equal(model.predict(_obs(), deterministic=True)[0], greedy)


@pytest.mark.parametrize("extra", [{"dueling": True}, {"noisy": True}, {"dueling": True, "noisy": True}])
def test_cnn_policy_heads(extra: dict[str, bool]) -> None:
    obs_space = spaces.Box(0, 255, (4, 44, 44), np.uint8)
    policy = RlkitCnnPolicy(obs_space, spaces.Discrete(5), lambda _: 1e-4, **extra)
    q = policy.q_net(th.zeros(2, 4, 44, 44))
    assert q.shape == (2, 5)
    assert policy.q_net_target.dueling == extra.get("dueling", False)


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"algo": "qrdqn", "distribution": "c51"}, "algo qrdqn is distribution qr, not c51"),
        ({"distribution": "qr", "loss": "mse"}, "loss mse applies to Q-value heads only"),
        ({"distribution": "c51", "v_min": 5, "v_max": 5}, "v_min 5 must be below v_max 5"),
        ({"distribution": "c52"}, "distribution"),
        ({"optimize_memory_usage": True, "prioritized_replay": True}, "optimize_memory_usage works only"),
        ({"per_beta0": 0.8, "per_beta_final": 0.5}, "per_beta_final must be at least per_beta0"),
        ({"frame_buffer": True, "optimize_memory_usage": True}, "frame_buffer already stores each observation once"),
        ({"loss": "l1"}, "loss"),
    ],
)
def test_contradictions_are_one_line_errors(sets: dict[str, Any], message: str) -> None:
    with pytest.raises(RlkitError, match=message) as info:
        validate({"env_id": "CartPole-v1", **sets}, "test")
    assert "\n" not in str(info.value)


def test_frame_buffer_switch_applies_to_uniform_one_step_replay() -> None:
    """``frame_buffer`` picks rlkit's frame buffer; prioritized and n-step replay keep their own buffers."""
    from stable_baselines3.common.buffers import NStepReplayBuffer

    from rlkit.replay.buffers import FrameReplayBuffer

    assert type(_model("frame_buffer=true").replay_buffer) is FrameReplayBuffer
    assert type(_model("frame_buffer=true", "n_steps=3").replay_buffer) is NStepReplayBuffer
    assert type(_model("frame_buffer=true", "prioritized_replay=true").replay_buffer) is PrioritizedReplayBuffer
    model = _model("frame_buffer=true")
    model.learn(200)
    assert model.replay_buffer is not None and model.replay_buffer.size() == 200 and model._n_updates > 0


def test_guard_names_step_and_figure() -> None:
    with pytest.raises(DivergenceError, match=r"step 1234: \|Q\| reached 2e\+06, beyond divergence_q_bound=1e\+06"):
        check_divergence(1234, 0.5, 2e6, 1e6)
    with pytest.raises(DivergenceError, match="step 7: the loss is nan"):
        check_divergence(7, float("nan"), 1.0, 1e6)
    check_divergence(7, 0.5, 10.0, 1e6)


def _run_preset(tmp_path: Path, *sets: str) -> Any:
    return resolve("cartpole", overrides=[*FAST, "eval_freq=0", "checkpoint_freq=500", *sets])


@pytest.mark.parametrize("manual", [False, True])
def test_divergence_stops_training_and_keeps_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, manual: bool
) -> None:
    """Both gradient paths (autograd, and the written-out MLP backward) feed the guard."""
    monkeypatch.setattr(algorithms, "EngineOptions", functools.partial(EngineOptions, manual_backward=manual))
    poisoning = [False]
    original = engine.td_loss

    def poisoned(raw: th.Tensor, next_target: th.Tensor, *args: Any) -> Any:
        if poisoning[0]:  # what a blown-up network gives: NaN target values, hence a NaN loss
            next_target = next_target * float("nan")
        return original(raw, next_target, *args)

    for module in (engine, mlp):  # the one loss, as each gradient path calls it
        monkeypatch.setattr(module, "td_loss", poisoned)
    original_train = RlkitDQN.train

    def train(self: RlkitDQN, *args: Any, **kwargs: Any) -> None:
        poisoning[0] = self.num_timesteps >= 700
        original_train(self, *args, **kwargs)

    monkeypatch.setattr(RlkitDQN, "train", train)
    run = tmp_path / "run"
    with pytest.raises(DivergenceError, match=r"training diverged at step 70\d: the loss is nan"):
        training.start(_run_preset(tmp_path, "n_timesteps=2000"), seed=0, run_dir=run, quiet=True)
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "crashed" and "diverged" in state["error"]
    assert [p.name for p in sorted((run / "checkpoints").iterdir())] == ["step-000000000500"]
    assert not (run / "model.zip").exists()
    good = load_model(run / "checkpoints" / "step-000000000500" / "model.zip", None, "cpu")
    assert all(th.isfinite(p).all() for p in good.policy.parameters())


def test_resume_keeps_extensions_and_prioritized_buffer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sets = ["double_q=true", "dueling=true", "prioritized_replay=true", "n_steps=3", "n_timesteps=1200"]
    run = tmp_path / "run"
    training.start(_run_preset(tmp_path, *sets), seed=0, run_dir=run, quiet=True)
    state = json.loads((run / "state.json").read_text())
    state["status"] = "interrupted"
    (run / "state.json").write_text(json.dumps(state))
    import shutil

    shutil.rmtree(run / "checkpoints" / "step-000000001200")  # as if stopped after the step-1000 checkpoint

    seen: dict[str, Any] = {}
    original = RlkitDQN.train

    def spy(self: RlkitDQN, gradient_steps: int, batch_size: int = 100) -> None:
        seen.setdefault("buffer", self.replay_buffer)
        seen.setdefault("first_step", self.num_timesteps)
        original(self, gradient_steps, batch_size)

    monkeypatch.setattr(RlkitDQN, "train", spy)
    result = training.resume(run, quiet=True)
    assert result is not None and result.num_timesteps >= 1200
    # Continued from the step-1000 checkpoint, taken inside step 1000: that step and the phase after it are replayed.
    assert seen["first_step"] == 1000
    buffer = seen["buffer"]
    assert isinstance(buffer, PrioritizedReplayBuffer) and buffer.size() >= 1000 and buffer.max_priority > 1.0
    final = load_model(run / "model.zip", None, "cpu")
    assert isinstance(final, RlkitDQN) and final.double_q and final.policy.dueling  # type: ignore[attr-defined]


def test_every_switch_flows_from_the_preset_by_name() -> None:
    """A switch is a Preset field and a LossOptions field or RlkitAlgorithm keyword: passed by name."""
    import inspect

    from rlkit.config.schema import Preset
    from rlkit.dqn.algorithms import RlkitAlgorithm, switch_names
    from rlkit.dqn.loss import LossOptions

    names = switch_names()
    assert names and all(name in Preset.model_fields for name in names)
    documented = inspect.getdoc(RlkitAlgorithm.__init__) or ""
    own = [name for name in names if name not in LossOptions.names()]
    assert own and all(f":param {name}:" in documented for name in [*own, "engine"])
    sets = ["double_q=true", "loss=mse", "per_beta0=0.3", "diagnostics_interval=7", "divergence_q_bound=123"]
    preset = resolve("cartpole", overrides=[*FAST, *sets]).preset
    model = build_model(preset, make_env(preset), seed=0, device="cpu", tensorboard_log=None)
    assert (model.double_q, model.loss, model.per_beta0) == (True, "mse", 0.3)
    assert model.loss_options == LossOptions(double_q=True, loss="mse")
    assert (model.diagnostics_interval, model.divergence_q_bound) == (7, 123.0)
    assert {"_engine", "engine_options", "_diag"} <= set(model._excluded_save_params())

"""The autograd-free gradient step (rlkit.dqn.mlp_update) computes autograd's gradients."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch as th

from rlkit.dqn.engine import EngineOptions
from rlkit.dqn.mlp_update import MlpUpdate
from rlkit.environments.factory import make_env
from rlkit.environments.resolve import resolve
from rlkit.training.factory import build_model

BATCH = 32
BASE = ["learning_starts=10000", f"batch_size={BATCH}", "buffer_size=2000", "diagnostics_interval=1"]


def _model(env: str, *sets: str) -> Any:
    preset = resolve(env, overrides=[*BASE, *sets]).preset
    model = build_model(preset, make_env(preset, n_envs=1, seed=0), seed=0, device="cpu", tensorboard_log=None)
    model.learn(400)  # collection only (learning_starts is beyond it)
    return model


def _autograd_grads(model: Any, data: Any, weights: th.Tensor | None) -> tuple[list[th.Tensor], th.Tensor]:
    model.policy.optimizer.zero_grad()
    out = model._batch(data, None)
    loss = out.loss.mean() if weights is None else (out.loss * weights).mean()
    loss.backward()
    return [p.grad.clone() for p in model.engine.params], out.loss.detach()


CASES = [
    ("cartpole", []),
    ("cartpole", ["double_q=true"]),
    ("cartpole", ["dueling=true"]),
    ("cartpole", ["dueling=true", "double_q=true", "loss=mse"]),
    ("cartpole", ["policy_kwargs.net_arch=[16]", "dueling=true"]),
    ("cartpole", ["policy_kwargs.net_arch=[16,8,12]", "n_steps=3"]),
    ("lunarlander", []),
    ("acrobot", ["loss=mse"]),
]


@pytest.mark.parametrize(("env", "sets"), CASES)
@pytest.mark.parametrize("weighted", [False, True])
def test_gradients_equal_autograd(env: str, sets: list[str], weighted: bool) -> None:
    model = _model(env, *sets)
    manual = model.engine.manual
    assert isinstance(manual, MlpUpdate)
    np.random.seed(1)
    data = model.replay_buffer.sample(BATCH)
    weights = th.rand(BATCH) + 0.5 if weighted else None
    # Rewards large enough that some TD errors fall outside Huber's quadratic zone.
    data = data._replace(rewards=data.rewards * 3.0 + th.randn_like(data.rewards))
    expected, expected_loss = _autograd_grads(model, data, weights)
    out = manual.step(data, None, weights)
    got = [p.grad for p in model.engine.params]
    assert len(got) == len(expected) and all(g is not None for g in got)
    for g, e in zip(got, expected, strict=True):
        assert th.allclose(g, e, rtol=1e-4, atol=1e-6), (g - e).abs().max()
    assert th.allclose(out.loss, expected_loss, rtol=1e-5, atol=1e-7)
    assert any(e.abs().sum() > 0 for e in expected), "the batch has a gradient"


def test_uncovered_networks_take_the_autograd_path() -> None:
    for sets in (["noisy=true"], ["policy_kwargs.activation_fn=tanh"], ["algo=qrdqn"]):
        assert _model("cartpole", *sets).engine.manual is None, sets
    preset = resolve("pong", overrides=["buffer_size=100"]).preset
    model = build_model(preset, make_env(preset, n_envs=1, seed=0), seed=0, device="cpu", tensorboard_log=None)
    assert model.engine.manual is None


def test_training_phases_match_the_autograd_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole phases (batched targets, clipping, fused Adam) give the same parameters both ways."""
    sets = ["double_q=true", "dueling=true", "max_grad_norm=0.5"]
    results = []
    for manual in (False, True):
        model = _model("cartpole", *sets)
        model.use_engine(EngineOptions(manual_backward=manual))
        np.random.seed(5)
        for _ in range(5):
            model.train(gradient_steps=4, batch_size=BATCH)
        results.append((model.policy.state_dict(), model.logger.name_to_value["train/loss"]))
    (auto, auto_loss), (fast, fast_loss) = results
    assert fast_loss == pytest.approx(auto_loss, rel=1e-4)
    for key, value in auto.items():
        assert th.allclose(value, fast[key], rtol=1e-4, atol=1e-6), key
    untrained = _model("cartpole", *sets).policy.state_dict()
    assert any(not th.equal(untrained[k], v) for k, v in fast.items() if "q_net." in k), "the phases trained"


def test_predict_uses_the_same_q_values() -> None:
    model = _model("lunarlander", "dueling=true")
    obs = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    actions, _ = model.predict(obs, deterministic=True)
    with th.no_grad():
        expected = model.q_net(th.as_tensor(obs)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(actions, expected)

"""The fast paths compute the same algorithm: batched training phases, lean predict, fused Adam."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from rlkit.dqn import engine
from rlkit.dqn.engine import AutogradGradient, EngineOptions
from rlkit.dqn.interface import Minibatch
from rlkit.environments.factory import make_env
from rlkit.environments.resolve import resolve
from rlkit.training.factory import build_model

BATCH = 16
STEPS = 4
SETS = [
    "policy_kwargs.net_arch=[32,32]",
    "learning_starts=10000",  # collection only: no training inside learn()
    f"batch_size={BATCH}",
    "buffer_size=1000",
    "diagnostics_interval=2",
    "max_grad_norm=0.5",  # small enough that clipping fires, so it is compared too
]


def _model(*sets: str) -> Any:
    preset = resolve("cartpole", overrides=[*SETS, *sets]).preset
    model = build_model(preset, make_env(preset, n_envs=1, seed=0), seed=0, device="cpu", tensorboard_log=None)
    model.learn(300)
    return model


def _fixed_sampler(data: ReplayBufferSamples, calls: list[int]) -> Any:
    """``buffer.sample`` replaced by consecutive rows of one fixed batch."""
    position = [0]

    def sample(n: int, env: Any = None) -> ReplayBufferSamples:
        calls.append(n)
        rows = slice(position[0], position[0] + n)
        position[0] += n
        return ReplayBufferSamples(*(None if t is None else t[rows] for t in data))

    return sample


def _phase(model: Any, data: ReplayBufferSamples, batched: bool, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    model.use_engine(EngineOptions(batched_phases=batched))
    monkeypatch.setattr(model.replay_buffer, "sample", _fixed_sampler(data, calls))
    model.train(gradient_steps=STEPS, batch_size=BATCH)
    return calls


@pytest.mark.parametrize("sets", [[], ["double_q=true"], ["loss=mse", "dueling=true"], ["algo=qrdqn"]])
def test_batched_phase_matches_the_per_step_path(sets: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    per_step, batched = _model(*sets), _model(*sets)
    batched.policy.load_state_dict(per_step.policy.state_dict())
    batched.policy.optimizer.load_state_dict(per_step.policy.optimizer.state_dict())
    np.random.seed(3)
    data = per_step.replay_buffer.sample(STEPS * BATCH)  # one fixed batch for both paths
    assert _phase(per_step, data, False, monkeypatch) == [BATCH] * STEPS
    assert _phase(batched, data, True, monkeypatch) == [STEPS * BATCH]  # one draw, one target pass
    losses = [m.logger.name_to_value["train/loss"] for m in (per_step, batched)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5, abs=1e-7)
    for key, value in per_step.policy.state_dict().items():
        assert th.allclose(value, batched.policy.state_dict()[key], rtol=1e-5, atol=1e-6), key
    moved = _model(*sets).policy.state_dict()
    assert any(not th.equal(moved[k], v) for k, v in per_step.policy.state_dict().items()), "the phase trained"
    clipped = [m.logger.name_to_value["diag/clip_fraction"] for m in (per_step, batched)]
    assert clipped[0] == clipped[1]


def test_batched_targets_equal_per_step_targets() -> None:
    model = _model()
    gradient = AutogradGradient(model.networks())
    np.random.seed(0)
    data = model.replay_buffer.sample(STEPS * BATCH)
    with th.no_grad():
        next_target = model.q_net_target(data.next_observations)
    for k in range(STEPS):
        rows = slice(k * BATCH, (k + 1) * BATCH)
        part = ReplayBufferSamples(*(None if t is None else t[rows] for t in data))
        (alone, _), (shared, _) = gradient(Minibatch(part)), gradient(Minibatch(part, next_target[rows]))
        assert th.allclose(alone.target, shared.target, rtol=1e-6, atol=1e-6)
        assert th.allclose(alone.loss, shared.loss, rtol=1e-6, atol=1e-6)


def test_phase_draws_are_the_per_step_draws_with_one_env() -> None:
    """With one env, one draw of 4x128 rows consumes numpy's stream exactly like four draws of 128."""
    model = _model()
    np.random.seed(5)
    per_step = [model.replay_buffer.sample(BATCH) for _ in range(STEPS)]
    np.random.seed(5)
    target = model.q_net_target
    chunks = list(engine.phase_batches(model.replay_buffer, STEPS, BATCH, target))
    for one, (two, _) in zip(per_step, chunks, strict=True):
        assert th.equal(one.observations, two.observations) and th.equal(one.actions, two.actions)


def test_lean_predict_matches_sb3_predict() -> None:
    model = _model()
    model.exploration_rate = 0.5
    obs = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    for deterministic in (True, False):
        np.random.seed(11)
        model.action_space.seed(11)
        ours = [model.predict(obs, deterministic=deterministic)[0] for _ in range(20)]
        np.random.seed(11)
        model.action_space.seed(11)
        theirs = [DQN.predict(model, obs, deterministic=deterministic)[0] for _ in range(20)]
        assert all(np.array_equal(a, b) and a.dtype == b.dtype for a, b in zip(ours, theirs, strict=True))
    single = model.predict(obs[0], deterministic=True)[0]  # not a batch: SB3's own path
    assert np.ndim(single) == 0


def test_optimizer_is_fused_adam() -> None:
    model = _model()
    assert isinstance(model.policy.optimizer, th.optim.Adam) and model.policy.optimizer.defaults["fused"]


@pytest.mark.parametrize("sets", [[], ["prioritized_replay=true", "n_steps=3", "noisy=true"], ["algo=qrdqn"]])
def test_lean_optimizer_step_equals_clip_and_adam_step(sets: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    models = [_model(*sets), _model(*sets)]
    models[1].policy.load_state_dict(models[0].policy.state_dict())
    for lean, model in zip((False, True), models, strict=True):
        model.use_engine(EngineOptions(lean_optimizer=lean))
        np.random.seed(7)
        th.manual_seed(7)
        for _ in range(3):
            model.train(gradient_steps=STEPS, batch_size=BATCH)
    optimizer = models[1].policy.optimizer
    assert engine.LeanAdam.create(optimizer, models[1].engine.params) is not None, "the lean path ran"
    for key, value in models[0].policy.state_dict().items():
        assert th.allclose(value, models[1].policy.state_dict()[key], rtol=1e-5, atol=1e-6), key
    states = [m.policy.optimizer.state_dict()["state"] for m in models]
    assert all(th.equal(states[0][i]["step"], states[1][i]["step"]) for i in states[0])
    assert models[0].logger.name_to_value["diag/clip_fraction"] == models[1].logger.name_to_value["diag/clip_fraction"]


def test_lean_step_declines_what_it_cannot_do() -> None:
    model = _model()
    params = model.engine.params
    assert engine.LeanAdam.create(model.policy.optimizer, params) is None  # no state before a step
    assert engine.LeanAdam.create(th.optim.SGD(params, lr=0.1), params) is None
    for settings in (
        {"amsgrad": True},
        {"maximize": True},
        {"fused": False},
        {"weight_decay": 0.1, "decoupled_weight_decay": True},
    ):
        optimizer = th.optim.Adam(params, **{"fused": True, **settings})
        for p in params:
            p.grad = th.zeros_like(p)
        optimizer.step()  # state made: only the settings can decline it
        assert engine.LeanAdam.create(optimizer, params) is None, settings
    optimizer = th.optim.Adam(params, fused=True)
    optimizer.step()
    assert engine.LeanAdam.create(optimizer, params) is not None
    optimizer.param_groups[0]["a_setting_from_a_newer_torch"] = 1
    assert engine.LeanAdam.create(optimizer, params) is None  # an allow-list: unknown settings decline it


def test_qrdqn_keeps_sb3_contrib_adam_eps() -> None:
    optimizer = _model("algo=qrdqn").policy.optimizer
    assert optimizer.defaults["fused"] and optimizer.defaults["eps"] == pytest.approx(0.01 / BATCH)


@pytest.mark.parametrize("sets", [[], ["n_steps=3"], ["n_envs=2"]])
@pytest.mark.usefixtures("one_thread")
def test_storing_without_the_defensive_copy_changes_nothing(sets: list[str]) -> None:
    """rlkit's ``_store_transition`` (no deep copy of every next observation) against SB3's own.

    CartPole episodes end often in 1,500 steps, so terminal observations are replaced many times;
    buffer contents and the trained weights must be bit-identical.
    """
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    overrides = ["learning_starts=200", "train_freq=4", "gradient_steps=2", *sets]
    runs = []
    for sb3_store in (False, True):
        preset = resolve("cartpole", overrides=[*SETS, *overrides]).preset
        model = build_model(
            preset, make_env(preset, n_envs=preset.n_envs, seed=0), seed=0, device="cpu", tensorboard_log=None
        )
        if sb3_store:
            model._store_transition = OffPolicyAlgorithm._store_transition.__get__(model)  # type: ignore[method-assign]
        model.learn(1500)
        runs.append(model)
    ours, theirs = (m.replay_buffer for m in runs)
    assert ours.dones.sum() > 20  # many episode ends, each with a terminal observation
    for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts"):
        assert np.array_equal(getattr(ours, name), getattr(theirs, name)), name
    weights = [th.nn.utils.parameters_to_vector(m.q_net.parameters()) for m in runs]
    assert th.equal(weights[0], weights[1])

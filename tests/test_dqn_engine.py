"""The gradient engine: each fast part computes the reference's update, and declines what it does not implement.

The reference is ``EngineOptions.reference()``: per-step draws, autograd on the one loss
(:func:`rlkit.dqn.loss.td_loss`), ``clip_grad_norm_`` and ``optimizer.step()``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch as th
from pydantic import create_model

from rlkit.config.schema import Preset
from rlkit.dqn import algorithms, engine, loss, mlp
from rlkit.dqn.algorithms import switch_names
from rlkit.dqn.engine import AutogradGradient, EngineOptions
from rlkit.dqn.interface import Minibatch
from rlkit.dqn.mlp import MlpGradient
from rlkit.environments.factory import make_env
from rlkit.environments.resolve import resolve
from rlkit.training.factory import build_model

pytestmark = pytest.mark.usefixtures("one_thread")  # small networks: one thread is fastest, and leaves the other core

BATCH = 32
BASE = ["learning_starts=10000", f"batch_size={BATCH}", "buffer_size=2000", "diagnostics_interval=3"]
MLP_PRESETS = ("cartpole", "lunarlander", "acrobot", "mountaincar")


def _collected(preset: Preset) -> Any:
    """A model that collected 400 transitions (learning_starts is beyond them), its target network another's."""
    model = build_model(preset, make_env(preset, n_envs=1, seed=0), seed=0, device="cpu", tensorboard_log=None)
    model.learn(400)
    model.replay_buffer.rewards *= 2.0  # some errors beyond Huber's quadratic zone on every env, not all
    with th.random.fork_rng():  # another init: it disagrees on the next actions (Double DQN) and errs widely (Huber)
        th.manual_seed(1)
        for module in model.networks().target.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    return model


def _model(env: str, *sets: str) -> Any:
    return _collected(resolve(env, overrides=[*BASE, *sets]).preset)


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
def test_written_out_gradients_equal_autograd(env: str, sets: list[str], weighted: bool) -> None:
    model = _model(env, *sets)
    manual = model.engine.manual
    assert isinstance(manual, MlpGradient)
    np.random.seed(1)
    data = model.replay_buffer.sample(BATCH)
    # Rewards large enough that some TD errors fall outside Huber's quadratic zone.
    data = data._replace(rewards=data.rewards * 3.0 + th.randn_like(data.rewards))
    batch = Minibatch(data, None, th.rand(BATCH, 1) + 0.5 if weighted else None)
    expected_out, expected_loss = AutogradGradient(model.networks())(batch)
    expected = [p.grad.clone() for p in model.engine.params]
    out, got_loss = manual(batch)
    got = [p.grad for p in model.engine.params]
    assert len(got) == len(expected) and all(g is not None for g in got)
    for g, e in zip(got, expected, strict=True):
        assert th.allclose(g, e, rtol=1e-4, atol=1e-6), (g - e).abs().max()
    assert th.allclose(out.loss, expected_out.loss, rtol=1e-5, atol=1e-7) and th.allclose(got_loss, expected_loss)
    assert th.allclose(out.priority, expected_out.priority, rtol=1e-5, atol=1e-6)
    assert any(e.abs().sum() > 0 for e in expected), "the batch has a gradient"


@pytest.mark.parametrize(
    ("sets", "why"),
    [
        (["noisy=true"], "does not implement noisy=True"),
        (["distribution=c51"], "does not implement distribution=c51"),
        (["algo=qrdqn"], "does not implement distribution=qr"),
        (["policy_kwargs.activation_fn=tanh"], "not [Linear, ReLU, ...]"),
    ],
)
def test_what_the_written_out_path_does_not_implement_takes_autograd(sets: list[str], why: str) -> None:
    model = _model("cartpole", *sets)
    described = model.engine.describe()
    assert model.engine.manual is None and described["gradients"] == "autograd"
    assert why in described["declined"]


@pytest.mark.parametrize("env_id", ["FrozenLake-v1", "Taxi-v4"])
def test_observations_that_are_not_flat_boxes_take_autograd(env_id: str) -> None:
    """Discrete observations reach the network one-hot encoded: the written-out path reads raw floats."""
    import gymnasium as gym

    from rlkit.dqn.algorithms import RlkitDQN

    model = RlkitDQN("MlpPolicy", gym.make(env_id), learning_starts=20, batch_size=8, device="cpu")
    assert (
        model.engine.manual is None
        and "not [Linear, ReLU, ...] on flat observations" in model.engine.describe()["declined"]
    )
    model.learn(64)  # trains through autograd
    assert model._n_updates > 0


def test_cnn_takes_autograd() -> None:
    preset = resolve("pong", overrides=["buffer_size=100"]).preset
    model = build_model(preset, make_env(preset, n_envs=1, seed=0), seed=0, device="cpu", tensorboard_log=None)
    assert model.engine.manual is None


def _train(model: Any, options: EngineOptions, phases: int = 5) -> Any:
    model.use_engine(options)
    np.random.seed(5)
    th.manual_seed(5)
    for _ in range(phases):
        model.train(gradient_steps=4, batch_size=BATCH)
    return model


def _weights(model: Any) -> dict[str, th.Tensor]:
    return {k: v.clone() for k, v in model.policy.state_dict().items()}


def _fast_and_reference(preset: Preset) -> tuple[Any, Any, Any]:
    """One collected buffer, trained by the default engine and by the reference from the same weights."""
    fast = _collected(preset)
    start = _weights(fast)
    reference = _collected(preset)
    assert all(th.equal(v, start[k]) for k, v in reference.policy.state_dict().items())
    _train(fast, EngineOptions())
    _train(reference, EngineOptions.reference())
    return fast, reference, start


def _updates_differ(a: dict[str, th.Tensor], b: dict[str, th.Tensor], start: dict[str, th.Tensor]) -> bool:
    """Whether two runs from ``start`` took updates more than 1% apart (any change of shape counts)."""
    if a.keys() != b.keys() or any(v.shape != b[k].shape for k, v in a.items()):
        return True
    da = th.cat([(a[k] - start[k]).reshape(-1) for k in start if k in a])
    db = th.cat([(b[k] - start[k]).reshape(-1) for k in start if k in b])
    return bool((da - db).norm() > 0.01 * db.norm())


def _close(a: dict[str, th.Tensor], b: dict[str, th.Tensor]) -> bool:
    same_shapes = a.keys() == b.keys() and all(v.shape == b[k].shape for k, v in a.items())
    return same_shapes and all(th.allclose(v, b[k], rtol=1e-4, atol=1e-5) for k, v in a.items())


NON_DEFAULT = {
    "double_q": True,
    "loss": "mse",
    "per_beta0": 0.1,
    "per_beta_final": 0.5,
    "per_beta_fraction": 0.2,
    "diagnostics_interval": 1,
    "divergence_q_bound": 5e5,
    # The head and replay switches (not keyword switches, but options every fast part must handle).
    "dueling": True,
    "noisy": True,
    "prioritized_replay": True,
    "n_steps": 3,
    "distribution": "c51",
}
"""A non-default value of every switch: walked for every MLP preset."""
NO_WEIGHT_CHANGE = {"diagnostics_interval", "divergence_q_bound", "per_beta0", "per_beta_final", "per_beta_fraction"}
"""Switches that change what is logged or guarded (or act only with prioritized replay), not the update."""


def test_every_switch_is_walked() -> None:
    assert set(switch_names()) <= set(NON_DEFAULT), "a new switch: give it a non-default value above"


@pytest.mark.parametrize("switch", sorted(NON_DEFAULT))
def test_each_switch_takes_effect_on_the_path_that_runs(switch: str) -> None:
    """On every MLP preset, with the switch flipped, the default engine equals the reference (or is the
    reference: a fast part declined), and the switch changes the trained weights where it should."""
    for name in MLP_PRESETS:
        value = NON_DEFAULT[switch]
        if getattr(resolve(name).preset, switch) == value:  # the preset has it on already: walk the other way
            value = Preset.model_fields[switch].default
        sets = [*BASE, f"{switch}={value}"]
        if switch.startswith("per_beta"):
            sets.append("prioritized_replay=true")
        fast, reference, start = _fast_and_reference(resolve(name, overrides=sets).preset)
        assert _close(_weights(fast), _weights(reference)), (name, switch, fast.engine.describe())
        if switch in NO_WEIGHT_CHANGE:
            continue
        plain = _train(_model(name), EngineOptions())
        assert _updates_differ(_weights(fast), _weights(plain), start), f"{switch} changed nothing on {name}"


def test_a_new_loss_switch_needs_the_schema_and_the_loss_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trap of rlkit <= 0.1: a switch written into the reference loss only was silently ignored by
    the written-out backward that every MLP preset runs. Here a throwaway switch is added the way the
    loss module says (a LossOptions field read by td_loss, and a schema field): the written-out path
    declines it, and it changes the trained weights on every MLP preset."""
    Options = dataclasses.make_dataclass(
        "LossOptions", [("reward_scale", float, dataclasses.field(default=1.0))], bases=(loss.LossOptions,), frozen=True
    )
    original = loss.td_loss

    def td_loss(raw: th.Tensor, next_target: th.Tensor, batch: Any, head: Any, options: Any, *rest: Any) -> Any:
        batch = batch._replace(rewards=batch.rewards * getattr(options, "reward_scale", 1.0))
        return original(raw, next_target, batch, head, options, *rest)

    for module in (loss, algorithms):
        monkeypatch.setattr(module, "LossOptions", Options)
    for module in (engine, mlp):
        monkeypatch.setattr(module, "td_loss", td_loss)
    Extended = create_model("Preset", __base__=Preset, reward_scale=(float, 1.0))
    assert "reward_scale" in switch_names()
    for name in MLP_PRESETS:
        plain = resolve(name, overrides=BASE).preset
        scaled = Extended.model_validate({**plain.model_dump(), "reward_scale": 3.0})
        fast, reference, start = _fast_and_reference(scaled)
        assert "does not implement reward_scale=3.0" in fast.engine.describe()["declined"]
        assert _close(_weights(fast), _weights(reference))
        unscaled = _train(_collected(Extended.model_validate(plain.model_dump())), EngineOptions())
        assert unscaled.engine.manual is None  # a field the fast path does not list declines it, at any value
        assert _updates_differ(_weights(fast), _weights(unscaled), start), f"reward_scale changed nothing on {name}"


def test_training_phases_match_the_autograd_path() -> None:
    """Whole phases (batched targets, clipping, fused Adam) give the same parameters both ways."""
    sets = ["double_q=true", "dueling=true", "max_grad_norm=0.5"]
    auto = _train(_model("cartpole", *sets), EngineOptions(manual_backward=False))
    fast = _train(_model("cartpole", *sets), EngineOptions())
    assert fast.logger.name_to_value["train/loss"] == pytest.approx(auto.logger.name_to_value["train/loss"], rel=1e-4)
    assert _close(_weights(auto), _weights(fast))
    untrained = _weights(_model("cartpole", *sets))
    assert any(not th.equal(untrained[k], v) for k, v in _weights(fast).items() if "q_net." in k), "the phases trained"


def test_the_engine_follows_a_replaced_policy() -> None:
    model, other = _model("cartpole"), _model("cartpole", "policy_kwargs.net_arch=[8]")
    first = model.engine
    model.policy = other.policy
    assert model.engine is not first and model.engine.nets.online is other.policy.q_net
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    with th.no_grad():
        expected = other.policy.q_net(th.as_tensor(obs)).argmax(dim=1).numpy()
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], expected)  # a batch
    assert model.predict(obs[0], deterministic=True)[0] == expected[0]  # one observation


def test_constructors_take_sb3_positional_arguments() -> None:
    import gymnasium as gym

    from rlkit.dqn.algorithms import RlkitDQN, RlkitQRDQN

    model = RlkitDQN("MlpPolicy", gym.make("CartPole-v1"), 1e-3, 500, double_q=True)
    assert (model.learning_rate, model.buffer_size, model.double_q) == (1e-3, 500, True)
    assert RlkitQRDQN("MlpPolicy", gym.make("CartPole-v1"), 5e-4).learning_rate == 5e-4

"""Rainbow, complete: every combination of the DQN improvements (2^5 switches x 3 value heads) builds,
learns, saves, loads safely, resumes and exports, and its autograd gradient step is the loss's gradient."""

from __future__ import annotations

import copy
import dataclasses
import functools
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th

from rlkit.analysis.export import _example, greedy_module, model_q_values, run_exported, write_torchscript
from rlkit.dqn.engine import AutogradGradient
from rlkit.dqn.interface import Minibatch
from rlkit.environments.factory import make_env
from rlkit.environments.resolve import resolve
from rlkit.training.buffer_store import load_buffer, save_buffer
from rlkit.training.factory import build_model, load_model

pytestmark = pytest.mark.usefixtures("one_thread")

SWITCHES = ("double_q", "dueling", "prioritized_replay", "n_steps", "noisy")
HEADS = ("none", "c51", "qr")
COMBINATIONS = [(bits, head) for bits in itertools.product((False, True), repeat=len(SWITCHES)) for head in HEADS]
TINY = [
    "policy_kwargs.net_arch=[8]",
    "buffer_size=256",
    "learning_starts=16",
    "batch_size=8",
    "train_freq=4",
    "gradient_steps=1",
    "n_quantiles=5",
    "n_atoms=7",
    "v_min=-5",
    "v_max=5",
    "diagnostics_interval=2",
]


def _sets(bits: tuple[bool, ...], head: str) -> list[str]:
    on = dict(zip(SWITCHES, bits, strict=True))
    sets = [f"{name}={str(value).lower()}" for name, value in on.items() if name != "n_steps"]
    return [*sets, f"n_steps={3 if on['n_steps'] else 1}", f"distribution={head}"]


def _name(bits: tuple[bool, ...], head: str) -> str:
    return "+".join([head, *(name for name, on in zip(SWITCHES, bits, strict=True) if on)])


@functools.cache
def _trained(bits: tuple[bool, ...], head: str) -> tuple[Any, Any]:
    """The combination's preset and a model of it after 48 steps (32 of them with a gradient step)."""
    preset = resolve("cartpole", overrides=[*TINY, *_sets(bits, head)]).preset
    model = build_model(preset, make_env(preset, seed=0), seed=0, device="cpu", tensorboard_log=None)
    model.learn(48)
    return preset, model


def test_all_combinations_round_trip(tmp_path: Path) -> None:
    """Constructed, trained, saved, loaded with rlkit's safe loader, resumed and exported: all 96."""
    assert len(COMBINATIONS) == 96
    obs = np.random.default_rng(0).normal(size=(32, 4)).astype(np.float32)
    for i, (bits, head) in enumerate(COMBINATIONS):
        name = _name(bits, head)
        preset, model = _trained(bits, head)
        assert model._n_updates > 0 and all(th.isfinite(p).all() for p in model.policy.parameters()), name
        model.save(tmp_path / f"{i}.zip")
        save_buffer(model.replay_buffer, tmp_path / f"{i}.npz")
        loaded = load_model(tmp_path / f"{i}.zip", make_env(preset, seed=i), "cpu", preset=preset)
        load_buffer(loaded.replay_buffer, tmp_path / f"{i}.npz")
        want = model.predict(obs, deterministic=True)[0]
        assert np.array_equal(loaded.predict(obs, deterministic=True)[0], want), name
        assert loaded.loss_options == model.loss_options and type(loaded.policy) is type(model.policy), name
        before = loaded._n_updates
        loaded.learn(16, reset_num_timesteps=False)  # resumed: the same counter, buffer and schedules
        assert loaded.num_timesteps == 64 and loaded._n_updates > before, name
        module = greedy_module(loaded)
        write_torchscript(module, _example(loaded), tmp_path / f"{i}.pt")
        q, actions = run_exported(tmp_path / f"{i}.pt", "torchscript", obs)
        assert np.allclose(q, model_q_values(loaded, obs), atol=1e-5), name
        assert q.shape == (32, 2) and np.array_equal(actions, q.argmax(axis=1)), name


def test_plain_heads_stay_loadable_by_sb3_and_sb3_contrib(tmp_path: Path) -> None:
    from sb3_contrib import QRDQN
    from stable_baselines3 import DQN

    for head, cls in (("none", DQN), ("qr", QRDQN)):
        preset = resolve("cartpole", overrides=[*TINY, f"distribution={head}", "double_q=true", "n_steps=3"]).preset
        model = build_model(preset, make_env(preset, seed=0), seed=0, device="cpu", tensorboard_log=None)
        model.learn(32)
        model.save(tmp_path / f"{head}.zip")
        plain = cls.load(tmp_path / f"{head}.zip", device="cpu")
        assert type(plain) is cls
        obs = np.random.default_rng(1).normal(size=(8, 4)).astype(np.float32)
        assert np.array_equal(plain.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


def _loss(gradient: AutogradGradient, batch: Minibatch) -> th.Tensor:
    _out, loss = gradient(batch)
    return loss


@pytest.mark.parametrize(("bits", "head"), COMBINATIONS, ids=[_name(b, h) for b, h in COMBINATIONS])
def test_the_autograd_step_is_the_gradient_of_the_loss(
    bits: tuple[bool, ...], head: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a batch, the gradient the reference path writes agrees with central finite differences of the
    loss along random directions (float64, noise held fixed, importance weights on)."""
    import stable_baselines3.common.policies as sb3_policies

    _, model = _trained(bits, head)
    monkeypatch.setattr(sb3_policies, "preprocess_obs", lambda obs, space, normalize_images=True: obs.double())
    policy = copy.deepcopy(model.policy).double()
    nets = model.networks()
    online, target = (
        (policy.quantile_net, policy.quantile_net_target) if head == "qr" else (policy.q_net, policy.q_net_target)
    )
    head_spec = getattr(online, "head", nets.head)
    params = list(online.parameters())
    optimizer = th.optim.SGD(params, lr=0.0)
    nets = dataclasses.replace(nets, online=online, target=target, head=head_spec, optimizer=optimizer)
    np.random.seed(0)
    data = model.replay_buffer.sample(8)
    data = data._replace(
        **{k: v.double() for k, v in data._asdict().items() if v is not None and v.is_floating_point()}
    )
    batch = Minibatch(data, None, th.rand(8, 1, dtype=th.float64) + 0.5)
    gradient = AutogradGradient(nets)
    base = _loss(gradient, batch)
    grads = [p.grad.clone() for p in params]  # type: ignore[union-attr]
    assert th.isfinite(base) and any(g.abs().sum() > 0 for g in grads)
    gen = th.Generator().manual_seed(1)
    for _ in range(2):
        direction = [th.randn(p.shape, generator=gen, dtype=th.float64) for p in params]
        eps = 1e-6
        with th.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(d, alpha=eps)
        up = _loss(gradient, batch)
        with th.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(d, alpha=-2 * eps)
        down = _loss(gradient, batch)
        with th.no_grad():
            for p, d in zip(params, direction, strict=True):
                p.add_(d, alpha=eps)
        numeric = (up - down).item() / (2 * eps)
        analytic = sum(float((g * d).sum()) for g, d in zip(grads, direction, strict=True))
        assert numeric == pytest.approx(analytic, rel=1e-4, abs=1e-7)

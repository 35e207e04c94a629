"""Every private library hook of the DQN core (rlkit.dqn.private) still does what its public twin does.

If torch or SB3 changes one of them, these fail and name it: the fast paths must then be mended or
dropped (the reference path needs none of them).
"""

from __future__ import annotations

import copy

import numpy as np
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from rlkit.dqn import private


def _params(seed: int = 0) -> list[th.nn.Parameter]:
    gen = th.Generator().manual_seed(seed)
    params = [th.nn.Parameter(th.randn(*shape, generator=gen)) for shape in ((6, 4), (6,), (3, 6), (3,))]
    for p in params:
        p.grad = th.randn(p.shape, generator=gen) * 4
    return params


def test_relu_backward_is_the_mask_of_positive_outputs() -> None:
    d, out = th.randn(5, 7), th.randn(5, 7).relu()
    assert th.equal(private.relu_backward(d, out, 0.0), d * (out > 0))


def test_total_norm_and_clip_are_clip_grad_norm() -> None:
    ours, theirs = _params(), _params()
    expected = th.nn.utils.clip_grad_norm_(theirs, 1.5)
    norm = private.total_norm([p.grad for p in ours])  # type: ignore[misc]
    private.clip_([p.grad for p in ours], norm, 1.5)  # type: ignore[misc]
    assert th.equal(norm, expected)
    assert all(th.equal(a.grad, b.grad) for a, b in zip(ours, theirs, strict=True))  # type: ignore[arg-type]


def test_fused_adam_is_adam_fused_step() -> None:
    ours, theirs = _params(), _params()
    optimizers = [th.optim.Adam(p, lr=1e-2, fused=True, weight_decay=0.01) for p in (ours, theirs)]
    for opt in optimizers:
        opt.step()  # the state exists after a first step
    for p in (*ours, *theirs):
        p.grad = p.grad * 0.5  # type: ignore[operator]
    optimizers[1].step()
    state = {k: [optimizers[0].state[p][k] for p in ours] for k in ("exp_avg", "exp_avg_sq", "step")}
    private.fused_adam_(optimizers[0].param_groups[0], ours, [p.grad for p in ours], state)  # type: ignore[misc]
    assert all(th.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    assert all(
        th.equal(optimizers[0].state[a]["step"], optimizers[1].state[b]["step"])
        for a, b in zip(ours, theirs, strict=True)
    )


def test_greedy_actions_are_the_policys_predict() -> None:
    import gymnasium as gym

    model = DQN("MlpPolicy", gym.make("CartPole-v1"), device="cpu")
    obs = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    expected, _ = model.policy.predict(obs, deterministic=True)
    got = private.greedy_actions(model.policy, th.as_tensor(obs), True).numpy()
    np.testing.assert_array_equal(got, expected)


def test_the_sb3_members_rlkit_extends_are_there() -> None:
    import gymnasium as gym

    model = DQN("MlpPolicy", gym.make("CartPole-v1"), device="cpu", learning_starts=10)
    model.learn(20)
    for method in ("_setup_model", "_on_step", "_store_transition", "_update_learning_rate", "_excluded_save_params"):
        assert callable(getattr(OffPolicyAlgorithm, method, None)), method
    for attribute in ("_n_updates", "_vec_normalize_env", "_current_progress_remaining", "_n_calls", "_last_obs"):
        assert hasattr(model, attribute), attribute
    assert model._total_timesteps == 20
    optimizer = copy.deepcopy(model.policy.optimizer)
    assert hasattr(optimizer, "_optimizer_step_pre_hooks") and hasattr(optimizer, "_optimizer_step_post_hooks")

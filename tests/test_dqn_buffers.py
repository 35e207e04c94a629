"""Sum-tree sampling, importance weights and the prioritized buffer's n-step samples."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer

from rlkit.dqn.buffers import PrioritizedReplayBuffer, SumTree


def test_sum_tree_sums_and_finds() -> None:
    tree = SumTree(5)
    tree.update(np.array([0, 1, 2, 3, 4]), np.array([1.0, 2.0, 3.0, 4.0, 0.0]))
    assert tree.total == pytest.approx(10.0)
    tree.update(np.array([4, 4]), np.array([7.0, 5.0]))  # later duplicate wins
    assert tree.total == pytest.approx(15.0)
    assert tree.find(np.array([0.0, 0.99, 1.0, 2.5, 3.0, 9.9, 10.0, 14.9])).tolist() == [0, 0, 1, 1, 2, 3, 4, 4]


def test_sum_tree_samples_in_proportion_to_priority() -> None:
    priorities = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 0.0, 5.0])
    tree = SumTree(len(priorities))
    tree.update(np.arange(len(priorities)), priorities)
    rng = np.random.default_rng(0)
    draws = np.concatenate([tree.sample(64, rng) for _ in range(500)])
    counts = np.bincount(draws, minlength=len(priorities))
    expected = priorities / priorities.sum() * len(draws)
    assert counts[5] == 0  # zero priority is never drawn
    nonzero = expected > 0
    chi2 = float((((counts - expected) ** 2)[nonzero] / expected[nonzero]).sum())
    assert chi2 < 16.8  # chi-square, 6 degrees of freedom, p = 0.01


def _buffer(cls: type, n_envs: int = 1, n_steps: int = 3, size: int = 50, **kwargs: float) -> NStepReplayBuffer:
    obs_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
    return cls(size, obs_space, spaces.Discrete(3), device="cpu", n_envs=n_envs, n_steps=n_steps, gamma=0.9, **kwargs)


def _fill(buffer: ReplayBuffer, steps: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = buffer.n_envs
    for t in range(steps):
        obs = np.full((n, 2), t, dtype=np.float32) + np.arange(n)[:, None] * 1000
        done = rng.random(n) < 0.15
        infos = [{"TimeLimit.truncated": bool(d and rng.random() < 0.3)} for d in done]
        buffer.add(obs, obs + 1, rng.integers(0, 3, (n, 1)), rng.normal(size=n).astype(np.float32), done, infos)


@pytest.mark.parametrize("n_steps", [1, 3])
def test_prioritized_samples_equal_sb3_n_step_samples(n_steps: int) -> None:
    ours = _buffer(PrioritizedReplayBuffer, n_steps=n_steps)
    sb3: ReplayBuffer = _buffer(NStepReplayBuffer, n_steps=n_steps)
    if n_steps == 1:  # SB3 uses its plain ReplayBuffer for 1-step returns
        obs_space = spaces.Box(-np.inf, np.inf, (2,), np.float32)
        sb3 = ReplayBuffer(50, obs_space, spaces.Discrete(3), device="cpu", n_envs=1)
    for buffer in (ours, sb3):
        _fill(buffer, 70)  # wraps around
    inds = np.arange(50)
    a = ours._gather(inds, np.zeros(50, dtype=np.int64), None)  # type: ignore[attr-defined]
    b = sb3._get_samples(inds)
    for field in ("observations", "actions", "next_observations", "dones", "rewards", "discounts"):
        if getattr(b, field) is None:
            assert getattr(a, field) is None, field
        else:
            assert th.allclose(getattr(a, field), getattr(b, field)), field


def test_is_weights_max_one_and_priorities_update() -> None:
    buffer = _buffer(PrioritizedReplayBuffer, n_envs=2, n_steps=1, alpha=1.0, eps=1e-6)
    _fill(buffer, 20)
    assert isinstance(buffer, PrioritizedReplayBuffer)
    leaves = np.arange(40)
    buffer.update_priorities(leaves, np.where(leaves == 7, 100.0, 1.0))
    samples, weights, drawn = buffer.sample_prioritized(32, beta=0.5)
    assert weights.shape == (32, 1) and weights.max().item() == pytest.approx(1.0)
    assert (weights > 0).all()
    # The leaf with priority 100 of a total 139 fills most slices and has the smallest weight.
    assert (drawn == 7).sum() >= 20
    assert weights[drawn == 7].max().item() == pytest.approx(weights.min().item())
    # Leaf 7 is position 3 of env 1: its observation is the one stored there.
    assert samples.observations[drawn == 7][0].tolist() == [1003.0, 1003.0]
    # New transitions enter with the largest priority seen.
    assert buffer.max_priority == pytest.approx(100.0 + 1e-6)


def test_prioritized_buffer_pickles_with_its_tree() -> None:
    buffer = _buffer(PrioritizedReplayBuffer)
    _fill(buffer, 10)
    assert isinstance(buffer, PrioritizedReplayBuffer)
    buffer.update_priorities(np.array([2]), np.array([5.0]))
    restored = pickle.loads(pickle.dumps(buffer))
    assert restored.tree.total == pytest.approx(buffer.tree.total)
    assert restored.max_priority == buffer.max_priority

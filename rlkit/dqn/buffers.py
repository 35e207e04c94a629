"""Proportional prioritized experience replay (Schaul et al. 2016) on SB3's replay buffer.

:class:`SumTree` is a flat numpy binary tree whose leaves hold ``priority**alpha``; updates and
sampling are vectorised over the batch (one numpy operation per tree level).
:class:`PrioritizedReplayBuffer` subclasses SB3's :class:`NStepReplayBuffer`, so the storage,
``add`` and the n-step return semantics (discounted reward sums that stop at episode ends and
timeouts, ``gamma**k`` bootstrap discounts) are SB3's; ``n_steps=1`` gives ordinary 1-step
transitions. Each (position, env) pair is one leaf, so several training envs are prioritized
individually.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.buffers import NStepReplayBuffer
from stable_baselines3.common.type_aliases import ReplayBufferSamples
from stable_baselines3.common.vec_env import VecNormalize


class SumTree:
    """A complete binary tree of sums over ``capacity`` non-negative leaves (1-indexed heap layout)."""

    def __init__(self, capacity: int) -> None:
        self.depth = max(1, int(np.ceil(np.log2(max(capacity, 2)))))
        self.leaves = 1 << self.depth
        self.capacity = capacity
        self.tree = np.zeros(2 * self.leaves, dtype=np.float64)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def get(self, leaf: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(leaf) + self.leaves]

    def update(self, leaf: np.ndarray, values: np.ndarray) -> None:
        """Set leaves to values (later duplicates win) and recompute the sums above them."""
        idx = np.asarray(leaf, dtype=np.int64) + self.leaves
        self.tree[idx] = values
        # Parents are recomputed from their children, so duplicate indices just write the same sum.
        for _ in range(self.depth):
            idx >>= 1
            self.tree[idx] = self.tree[2 * idx] + self.tree[2 * idx + 1]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each prefix-sum ``mass`` in ``[0, total)``, the leaf whose interval contains it."""
        mass = np.array(mass, dtype=np.float64)
        idx = np.ones(mass.shape, dtype=np.int64)
        for _ in range(self.depth):
            left = 2 * idx
            left_sum = self.tree[left]
            right = mass >= left_sum
            mass = np.where(right, mass - left_sum, mass)
            idx = left + right
        return idx - self.leaves

    def sample(self, batch_size: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """Stratified proportional sampling: one leaf from each of ``batch_size`` equal slices of mass."""
        uniform = (rng or np.random).random(batch_size)
        total = self.total
        mass = (np.arange(batch_size) + uniform) * (total / batch_size)
        leaf = self.find(np.minimum(mass, np.nextafter(total, 0.0)))
        empty = self.get(leaf) <= 0.0  # float rounding can land on an empty leaf: take the nearest filled one
        if empty.any():
            filled = np.flatnonzero(self.tree[self.leaves : self.leaves + self.capacity] > 0)
            leaf[empty] = filled[np.minimum(np.searchsorted(filled, leaf[empty]), len(filled) - 1)]
        return leaf


class PrioritizedReplayBuffer(NStepReplayBuffer):
    """SB3's (n-step) replay buffer with proportional priorities and importance-sampling weights.

    New transitions get the largest priority seen so far; :meth:`update_priorities` sets
    ``(|td error| + eps) ** alpha`` after each gradient step. :meth:`sample_prioritized` also
    returns IS weights ``(N * P(i)) ** -beta`` normalised so that the batch maximum is 1.
    """

    def __init__(
        self,
        *args: Any,
        alpha: float = 0.6,
        eps: float = 1e-6,
        n_steps: int = 1,
        gamma: float = 0.99,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, n_steps=n_steps, gamma=gamma, **kwargs)
        self.alpha = alpha
        self.eps = eps
        self.max_priority = 1.0
        self.tree = SumTree(self.buffer_size * self.n_envs)

    def add(self, *args: Any, **kwargs: Any) -> None:
        pos = self.pos
        super().add(*args, **kwargs)
        leaves = pos * self.n_envs + np.arange(self.n_envs)
        self.tree.update(leaves, np.full(self.n_envs, self.max_priority**self.alpha))

    def update_priorities(self, leaves: np.ndarray, td_abs: np.ndarray) -> None:
        """New priorities from the absolute TD errors of the sampled transitions."""
        priorities = np.abs(np.asarray(td_abs, dtype=np.float64).reshape(-1)) + self.eps
        self.max_priority = max(self.max_priority, float(priorities.max()))
        self.tree.update(leaves, priorities**self.alpha)

    def sample_prioritized(
        self, batch_size: int, beta: float, env: VecNormalize | None = None
    ) -> tuple[ReplayBufferSamples, th.Tensor, np.ndarray]:
        """A batch drawn in proportion to priority, its IS weights ``(batch, 1)`` and its leaf ids."""
        leaves = self.tree.sample(batch_size)
        probs = self.tree.get(leaves) / self.tree.total
        n = self.size() * self.n_envs
        weights = (n * probs) ** (-beta)
        weights /= weights.max()
        samples = self._gather(leaves // self.n_envs, leaves % self.n_envs, env)
        return samples, self.to_torch(weights.astype(np.float32).reshape(-1, 1)), leaves

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> ReplayBufferSamples:
        """Prioritized samples without the weights (SB3's interface)."""
        return self.sample_prioritized(batch_size, 1.0, env)[0]

    def _gather(self, batch_inds: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None) -> ReplayBufferSamples:
        """SB3's ``NStepReplayBuffer._get_samples`` for given (position, env) pairs.

        SB3 draws the env index at random inside ``_get_samples``; prioritized replay must read
        exactly the sampled pair, so this repeats its vectorised n-step computation with them.
        """
        if self.n_steps == 1:
            return self._gather_one_step(batch_inds, env_indices, env)
        last_valid = self.pos - 1
        original = self.timeouts[last_valid].copy()
        # The newest transition may continue into data not yet written: treat it as truncated.
        self.timeouts[last_valid] = np.logical_or(original, np.logical_not(self.dones[last_valid]))
        try:
            steps = np.arange(self.n_steps).reshape(1, -1)
            indices = (batch_inds[:, None] + steps) % self.buffer_size
            envs = env_indices[:, None]
            rewards_seq = self._normalize_reward(self.rewards[indices, envs], env)
            stop = np.logical_or(self.dones[indices, envs], self.timeouts[indices, envs])
            done_idx = np.where(stop.any(axis=1), stop.argmax(axis=1), self.n_steps - 1)
            mask = steps <= done_idx[:, None]
            bootstrap = (self.gamma ** mask.sum(axis=1, keepdims=True)).astype(np.float32)
            returns = (rewards_seq * self.gamma ** steps.astype(np.float32) * mask).sum(axis=1, keepdims=True)
            last = (batch_inds + done_idx) % self.buffer_size
            next_obs = self._normalize_obs(self.next_observations[last, env_indices], env)
            final_dones = self.dones[last, env_indices] * (1.0 - self.timeouts[last, env_indices])
        finally:
            self.timeouts[last_valid] = original
        obs = self._normalize_obs(self.observations[batch_inds, env_indices], env)
        return ReplayBufferSamples(
            observations=self.to_torch(obs),  # type: ignore[arg-type]
            actions=self.to_torch(self.actions[batch_inds, env_indices]),
            next_observations=self.to_torch(next_obs),  # type: ignore[arg-type]
            dones=self.to_torch(final_dones.reshape(-1, 1).astype(np.float32)),
            rewards=self.to_torch(returns.astype(np.float32)),
            discounts=self.to_torch(bootstrap),
        )

    def _gather_one_step(
        self, batch_inds: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None
    ) -> ReplayBufferSamples:
        """SB3's ``ReplayBuffer._get_samples`` for given (position, env) pairs (timeouts do not end episodes)."""
        dones = self.dones[batch_inds, env_indices] * (1.0 - self.timeouts[batch_inds, env_indices])
        return ReplayBufferSamples(
            observations=self.to_torch(self._normalize_obs(self.observations[batch_inds, env_indices], env)),  # type: ignore[arg-type]
            actions=self.to_torch(self.actions[batch_inds, env_indices]),
            next_observations=self.to_torch(self._normalize_obs(self.next_observations[batch_inds, env_indices], env)),  # type: ignore[arg-type]
            dones=self.to_torch(dones.reshape(-1, 1).astype(np.float32)),
            rewards=self.to_torch(self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env)),
        )

"""Proportional prioritized experience replay (Schaul et al. 2016) on SB3's replay buffer.

:class:`SumTree` is a flat numpy binary tree whose leaves hold ``priority**alpha``; updates and
sampling are vectorised over the batch (one numpy operation per tree level).
:class:`PrioritizedReplayBuffer` subclasses SB3's :class:`NStepReplayBuffer`, so the storage,
``add`` and the n-step return semantics (discounted reward sums that stop at episode ends and
timeouts, ``gamma**k`` bootstrap discounts) are SB3's; ``n_steps=1`` gives ordinary 1-step
transitions. Each (position, env) pair is one leaf, so several training envs are prioritized
individually.

:class:`FrameReplayBuffer` is a drop-in for SB3's :class:`ReplayBuffer` (same samples for the same
transitions and random stream) for image observations: each observation is written once into
uint8 storage, a next observation is the following slot, and a batch reaches torch with one
gather per array. :class:`DeviceFrameReplayBuffer` also keeps the frames on the model's device
(a GPU), so a batch is gathered there and no frame crosses the bus per gradient step.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, NStepReplayBuffer, ReplayBuffer
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


class FrameReplayBuffer(ReplayBuffer):
    """SB3's uniform 1-step :class:`ReplayBuffer` storing each observation once (Box observations).

    Layout: ``observations`` holds ``buffer_size + 1`` slots per env. The transition at position
    ``p`` reads its observation from slot ``obs_slot[p]`` and its next observation from the slot
    after it, which is where the following transition's observation goes: ``add`` writes the next
    observation there (one copy, straight from the caller's array) and, for the following
    transition, only checks that its observation is that same content. Next observations that do
    not continue (the terminal observation of an episode end, or an env reset without a done) are
    kept aside, one copy each, in ``aside`` (key ``position * n_envs + env``). Memory is about
    SB3's ``optimize_memory_usage`` buffer, and unlike that one every stored transition can be
    sampled and ``handle_timeout_termination`` works.

    Sampling draws exactly as SB3's ReplayBuffer (``randint`` over positions, then over envs), so
    the same numpy random state gives the same batches; each field is one numpy gather turned into
    a tensor without another copy (``torch.from_numpy``, then ``.to(device)``).
    """

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
    ) -> None:
        if optimize_memory_usage:
            raise ValueError(
                "FrameReplayBuffer stores each observation once already; optimize_memory_usage must be False"
            )
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(f"FrameReplayBuffer needs a Box observation space, got {observation_space}")
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination
        n, size = self.n_envs, self.buffer_size
        self.observations = np.zeros((size + 1, n, *self.obs_shape), dtype=observation_space.dtype)
        self.obs_slot = np.zeros(size, dtype=np.int64)
        self.has_aside = np.zeros((size, n), dtype=bool)
        self.aside: dict[int, np.ndarray] = {}
        self.actions = np.zeros((size, n, self.action_dim), dtype=self._maybe_cast_dtype(action_space.dtype))
        self.rewards = np.zeros((size, n), dtype=np.float32)
        self.dones = np.zeros((size, n), dtype=np.float32)
        self.timeouts = np.zeros((size, n), dtype=np.float32)
        self._slot = 0  # where the next observation goes
        self._chained = [False] * n  # that slot already holds env e's last next observation
        _warn_if_too_big(self.observations.nbytes + self.actions.nbytes + 3 * self.rewards.nbytes)

    def reset(self) -> None:
        super().reset()
        self.aside.clear()
        self.has_aside[:] = False
        self._slot = 0
        self._chained = [False] * self.n_envs

    def add(
        self,
        obs: np.ndarray,
        next_obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        shape = (self.n_envs, *self.obs_shape)
        pos, slot = self.pos, self._slot
        self._forget(pos)
        self.obs_slot[pos] = slot
        self._store_observation(np.asarray(obs).reshape(shape), pos, slot)
        ends = np.asarray(done, dtype=bool).reshape(self.n_envs)
        self._store_next(np.asarray(next_obs).reshape(shape), pos, (slot + 1) % len(self.observations), ends.tolist())
        self._slot = (slot + 1) % len(self.observations)
        self.actions[pos] = np.asarray(action).reshape((self.n_envs, self.action_dim))
        self.rewards[pos] = reward
        self.dones[pos] = ends
        if self.handle_timeout_termination:
            self.timeouts[pos] = [info.get("TimeLimit.truncated", False) for info in infos]
        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True
            self.pos = 0

    def _forget(self, pos: int) -> None:
        """Drop what the transition about to be overwritten kept aside."""
        if self.has_aside[pos].any():
            for env in np.flatnonzero(self.has_aside[pos]):
                del self.aside[pos * self.n_envs + int(env)]
            self.has_aside[pos] = False

    def _store_observation(self, obs: np.ndarray, pos: int, slot: int) -> None:
        """Write ``obs`` into ``slot``, except rows already there as the previous next observation.

        A row that differs from the previous next observation (the env was reset without a
        done) moves that next observation aside for the previous transition first.
        """
        rows = self.observations[slot]
        write = [not chained for chained in self._chained]
        prev = (pos - 1) % self.buffer_size
        for env, chained in enumerate(self._chained):
            if chained and not _same(rows[env], obs[env]):
                if prev != pos:
                    self._put_aside(prev, env, rows[env])
                write[env] = True
        if all(write):
            np.copyto(rows, obs)
            return
        for env, needed in enumerate(write):
            if needed:
                np.copyto(rows[env], obs[env])

    def _store_next(self, next_obs: np.ndarray, pos: int, slot: int, ends: list[bool]) -> None:
        """Continuing next observations into the following slot; episode ends aside."""
        if not any(ends):
            np.copyto(self.observations[slot], next_obs)
        else:
            for env, end in enumerate(ends):
                if end:
                    self._put_aside(pos, env, next_obs[env])
                else:
                    np.copyto(self.observations[slot, env], next_obs[env])
        self._chained = [not end for end in ends]

    def _put_aside(self, pos: int, env: int, observation: np.ndarray) -> None:
        self.aside[pos * self.n_envs + env] = np.array(observation, dtype=self.observations.dtype)
        self.has_aside[pos, env] = True

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        slots = self.obs_slot[batch_inds]
        obs = self.observations[slots, env_indices]
        next_obs = self.observations[(slots + 1) % len(self.observations), env_indices]
        for k in np.flatnonzero(self.has_aside[batch_inds, env_indices]):
            next_obs[k] = self.aside[int(batch_inds[k]) * self.n_envs + int(env_indices[k])]
        dones = self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])
        return ReplayBufferSamples(
            observations=self._tensor(self._normalize_obs(obs, env)),  # type: ignore[arg-type]
            actions=self._tensor(self.actions[batch_inds, env_indices]),
            next_observations=self._tensor(self._normalize_obs(next_obs, env)),  # type: ignore[arg-type]
            dones=self._tensor(dones.reshape(-1, 1)),
            rewards=self._tensor(self._normalize_reward(self.rewards[batch_inds, env_indices].reshape(-1, 1), env)),
        )

    def _tensor(self, array: np.ndarray) -> th.Tensor:
        """A freshly gathered array as a tensor on the buffer's device, without another host copy."""
        return th.from_numpy(np.ascontiguousarray(array)).to(self.device)


class DeviceFrameReplayBuffer(FrameReplayBuffer):
    """:class:`FrameReplayBuffer` whose frames are also kept on the buffer's device (the model's GPU).

    The host arrays stay the buffer's content (saved, loaded and compared exactly as the frame
    buffer's, under the same name); ``frames`` is their copy on the device, written two slot rows
    per ``add`` (the observation's slot and the next one's: one small host-to-device copy each).
    A batch draws the same indices from the same numpy random stream and is gathered on the
    device, so per gradient step only the index arrays and the small fields cross the bus instead
    of two batches of frame stacks (batch 32: 1.8 MB). On a CPU device it is the same arithmetic
    with an extra copy, which is what the equality tests run.
    """

    saved_as = "FrameReplayBuffer"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames = th.zeros(self.observations.shape, dtype=_torch_dtype(self.observations.dtype), device=self.device)

    def add(self, *args: Any, **kwargs: Any) -> None:
        slot = self._slot
        super().add(*args, **kwargs)
        for s in (slot, self._slot):
            self.frames[s].copy_(th.from_numpy(self.observations[s]), non_blocking=False)

    def refresh_device(self) -> None:
        """Copy every host frame to the device again (after the host arrays were loaded from a file)."""
        self.frames.copy_(th.from_numpy(self.observations))

    def _get_samples(self, batch_inds: np.ndarray, env: VecNormalize | None = None) -> ReplayBufferSamples:
        if env is not None:  # VecNormalize works on host arrays: the host path
            return super()._get_samples(batch_inds, env)
        env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        slots = self.obs_slot[batch_inds]
        rows = th.from_numpy(env_indices).to(self.device)
        obs = self.frames[th.from_numpy(slots).to(self.device), rows]
        next_obs = self.frames[th.from_numpy((slots + 1) % len(self.observations)).to(self.device), rows]
        aside = np.flatnonzero(self.has_aside[batch_inds, env_indices])
        if len(aside):
            kept = np.stack([self.aside[int(batch_inds[k]) * self.n_envs + int(env_indices[k])] for k in aside])
            next_obs[th.from_numpy(aside).to(self.device)] = th.from_numpy(kept).to(self.device)
        dones = self.dones[batch_inds, env_indices] * (1 - self.timeouts[batch_inds, env_indices])
        return ReplayBufferSamples(
            observations=obs,
            actions=self._tensor(self.actions[batch_inds, env_indices]),
            next_observations=next_obs,
            dones=self._tensor(dones.reshape(-1, 1)),
            rewards=self._tensor(self.rewards[batch_inds, env_indices].reshape(-1, 1)),
        )


def _torch_dtype(dtype: np.dtype[Any]) -> th.dtype:
    return th.from_numpy(np.zeros(1, dtype=dtype)).dtype


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal contents; compared 8 bytes at a time when both are contiguous and the size allows."""
    if (
        a.shape == b.shape
        and a.dtype == b.dtype
        and a.nbytes % 8 == 0
        and a.flags.c_contiguous
        and b.flags.c_contiguous
    ):
        return bool(np.array_equal(a.reshape(-1).view(np.uint64), b.reshape(-1).view(np.uint64)))
    return bool(np.array_equal(a, b))


def _warn_if_too_big(nbytes: int) -> None:
    """SB3's warning when the buffer cannot fit into the available memory."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - SB3 makes the same check only when psutil is there
        return
    available = psutil.virtual_memory().available
    if nbytes > available:
        warnings.warn(
            "This system does not have apparently enough memory to store the complete "
            f"replay buffer {nbytes / 1e9:.2f}GB > {available / 1e9:.2f}GB",
            stacklevel=3,
        )

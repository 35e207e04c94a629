"""Sum-tree sampling, importance weights, the prioritized buffer's n-step samples, and the frame buffer."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer

from rlkit.replay.buffers import DeviceFrameReplayBuffer, FrameReplayBuffer, PrioritizedReplayBuffer, SumTree


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


# ----------------------------------------------------------------------------------------
# FrameReplayBuffer: SB3's ReplayBuffer, each observation stored once
# ----------------------------------------------------------------------------------------

FRAMES = spaces.Box(0, 255, (2, 6, 5), np.uint8)


def _frame_buffers(size: int, n_envs: int, timeouts: bool = True) -> tuple[FrameReplayBuffer, ReplayBuffer]:
    ours = FrameReplayBuffer(size, FRAMES, spaces.Discrete(4), device="cpu", n_envs=n_envs)
    sb3 = ReplayBuffer(
        size, FRAMES, spaces.Discrete(4), device="cpu", n_envs=n_envs, handle_timeout_termination=timeouts
    )
    return ours, sb3


def _rollout(buffers: tuple[ReplayBuffer, ...], steps: int, n_envs: int, seed: int = 0, reset_at: int = -1) -> None:
    """SB3's rollout flow: next obs is the following obs, except at episode ends (terminal obs).

    Episodes end at random (some by timeout); at ``reset_at`` every env is reset without a
    done, as ``learn(reset_num_timesteps=True)`` does.
    """
    rng = np.random.default_rng(seed)

    def frames() -> np.ndarray:
        return rng.integers(0, 256, (n_envs, *FRAMES.shape), dtype=np.uint8)

    obs = frames()
    for t in range(steps):
        if t == reset_at:
            obs = frames()
        new_obs = frames()
        done = rng.random(n_envs) < 0.2
        infos: list[dict[str, Any]] = [{"TimeLimit.truncated": bool(d and rng.random() < 0.4)} for d in done]
        next_obs = new_obs.copy()
        for i in np.flatnonzero(done):
            next_obs[i] = infos[i]["terminal_observation"] = frames()[0]
        action, reward = rng.integers(0, 4, (n_envs, 1)), rng.normal(size=n_envs).astype(np.float32)
        for buffer in buffers:
            buffer.add(obs.copy(), next_obs.copy(), action, reward, done, infos)
        obs = new_obs


def _assert_same_samples(ours: ReplayBuffer, sb3: ReplayBuffer, batch: int = 4096, seed: int = 3) -> None:
    np.random.seed(seed)
    a = ours.sample(batch)
    np.random.seed(seed)
    b = sb3.sample(batch)
    for field in ("observations", "actions", "next_observations", "dones", "rewards"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and x.shape == y.shape, field
        assert th.equal(x, y), field
    assert a.discounts is None and b.discounts is None


@pytest.mark.parametrize(
    ("size", "n_envs", "steps", "reset_at"), [(40, 1, 25, 12), (40, 1, 130, 120), (60, 3, 55, 45), (7, 2, 9, 8)]
)
def test_frame_buffer_samples_equal_sb3_replay_buffer(size: int, n_envs: int, steps: int, reset_at: int) -> None:
    """Same transitions, same numpy random state: the same batch, field by field (wrapping included).

    ``reset_at`` (a reset without a done, as a new ``learn()`` does) stays within the buffer.
    """
    ours, sb3 = _frame_buffers(size, n_envs)
    _rollout((ours, sb3), steps, n_envs, reset_at=reset_at)
    assert ours.size() == sb3.size() and ours.full == sb3.full
    assert ours.observations.dtype == np.uint8
    _assert_same_samples(ours, sb3)


def test_frame_buffer_stores_each_observation_once() -> None:
    """A continuing step writes one slot; only episode ends (and resets without a done) go aside."""
    ours, _ = _frame_buffers(1000, 2)
    _rollout((ours,), 200, 2, reset_at=100)
    assert ours.observations.shape[0] == ours.buffer_size + 1
    ends = int(ours.dones[: ours.pos].sum())
    assert 0 < ends <= len(ours.aside) <= ends + 2  # + the two envs reset without a done
    sb3_bytes = 2 * ours.buffer_size * 2 * int(np.prod(FRAMES.shape))
    assert ours.observations.nbytes < 0.51 * sb3_bytes


def test_frame_buffer_handles_timeouts_like_sb3() -> None:
    ours, sb3 = _frame_buffers(50, 1)
    _rollout((ours, sb3), 50, 1)
    assert ours.timeouts.sum() > 0
    _assert_same_samples(ours, sb3)
    plain, sb3_plain = _frame_buffers(50, 1, timeouts=False)
    plain.handle_timeout_termination = False
    _rollout((plain, sb3_plain), 50, 1)
    assert plain.timeouts.sum() == 0
    _assert_same_samples(plain, sb3_plain)


def test_frame_buffer_refuses_what_it_cannot_hold() -> None:
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        FrameReplayBuffer(10, FRAMES, spaces.Discrete(4), optimize_memory_usage=True)
    with pytest.raises(ValueError, match="Box"):
        FrameReplayBuffer(10, spaces.Discrete(3), spaces.Discrete(4))


def test_frame_buffer_pickles_and_continues(tmp_path: Path) -> None:
    """A saved and loaded buffer samples the same and keeps storing correctly (an rlkit resume)."""
    ours, sb3 = _frame_buffers(30, 2)
    _rollout((ours, sb3), 20, 2, seed=1)
    restored = pickle.loads(pickle.dumps(ours))
    _assert_same_samples(restored, sb3)
    # The resumed run starts from a fresh reset: the last stored next observation must survive it.
    _rollout((restored, sb3), 25, 2, seed=2)
    _assert_same_samples(restored, sb3)


def _image_model(algo: type, buffer_class: type, seed: int = 0) -> Any:
    """DQN on two tiny fake-Atari envs (random 36x36 frames, 10-step episodes ending by timeout)."""
    from stable_baselines3.common.envs import FakeImageEnv
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = DummyVecEnv([lambda: FakeImageEnv(4, 36, 36, 1, channel_first=True) for _ in range(2)])
    for k, sub in enumerate(env.envs):
        sub.observation_space.seed(seed + k)
    return algo(
        "CnnPolicy",
        env,
        buffer_size=400,
        learning_starts=60,
        batch_size=16,
        train_freq=4,
        target_update_interval=40,
        replay_buffer_class=buffer_class,
        policy_kwargs={"features_extractor_kwargs": {"features_dim": 32}},
        seed=seed,
        device="cpu",
    )


@pytest.mark.parametrize("algo", ["sb3", "rlkit"])
@pytest.mark.usefixtures("one_thread")
def test_frame_buffer_is_a_drop_in_for_dqn(algo: str) -> None:
    """Plain SB3 DQN and rlkit's DQN train to the same weights with either buffer (same seed)."""
    from stable_baselines3 import DQN

    from rlkit.dqn.algorithms import RlkitDQN

    cls = DQN if algo == "sb3" else RlkitDQN
    weights = []
    for buffer_class in (ReplayBuffer, FrameReplayBuffer, DeviceFrameReplayBuffer):
        model = _image_model(cls, buffer_class)
        model.learn(200)
        assert type(model.replay_buffer) is buffer_class and model._n_updates > 0
        weights.append(th.nn.utils.parameters_to_vector(model.q_net.parameters()))
    assert th.equal(weights[0], weights[1]) and th.equal(weights[0], weights[2])


@pytest.mark.usefixtures("one_thread")
def test_frame_buffer_saves_and_loads_with_the_model(tmp_path: Path) -> None:
    from rlkit.dqn.algorithms import RlkitDQN

    model = _image_model(RlkitDQN, FrameReplayBuffer)
    model.learn(100)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    other = _image_model(RlkitDQN, FrameReplayBuffer, seed=1)
    other.load_replay_buffer(tmp_path / "buffer.pkl", truncate_last_traj=False)
    assert isinstance(other.replay_buffer, FrameReplayBuffer) and model.replay_buffer is not None
    stored = model.replay_buffer.size()
    assert other.replay_buffer.size() == stored > 0
    _assert_same_samples(other.replay_buffer, model.replay_buffer)
    other.learn(60, reset_num_timesteps=False)  # keeps storing after the load
    assert other.replay_buffer.size() >= stored + 30


@pytest.mark.parametrize(("size", "n_envs", "steps", "reset_at"), [(40, 1, 130, 120), (60, 3, 55, 45), (7, 2, 9, 8)])
def test_device_frame_buffer_samples_equal_the_host_buffers(size: int, n_envs: int, steps: int, reset_at: int) -> None:
    """The device-cached frame buffer (on CPU here) gives SB3's batches and keeps its copy in step with the host."""
    device = DeviceFrameReplayBuffer(size, FRAMES, spaces.Discrete(4), device="cpu", n_envs=n_envs)
    host, sb3 = _frame_buffers(size, n_envs)
    _rollout((device, host, sb3), steps, n_envs, reset_at=reset_at)
    assert th.equal(device.frames, th.from_numpy(device.observations))
    assert len(device.aside) > 0  # episode ends read from the host's aside copies
    _assert_same_samples(device, sb3)
    _assert_same_samples(device, host)


def test_device_frame_buffer_is_stored_as_the_frame_buffer(tmp_path: Path) -> None:
    """Its file is a frame buffer's: a GPU run's checkpoint resumes on a CPU-only machine and back."""
    from rlkit.training.buffer_store import load_buffer, save_buffer

    device = DeviceFrameReplayBuffer(30, FRAMES, spaces.Discrete(4), device="cpu", n_envs=2)
    host, sb3 = _frame_buffers(30, 2)
    _rollout((device, sb3), 45, 2, seed=4)
    save_buffer(device, tmp_path / "device.npz")
    load_buffer(host, tmp_path / "device.npz")
    _assert_same_samples(host, sb3)
    save_buffer(host, tmp_path / "host.npz")
    again = DeviceFrameReplayBuffer(30, FRAMES, spaces.Discrete(4), device="cpu", n_envs=2)
    load_buffer(again, tmp_path / "host.npz")
    assert th.equal(again.frames, th.from_numpy(again.observations))  # the device copy was refreshed
    _assert_same_samples(again, sb3)
    _rollout((again, sb3), 10, 2, seed=5)  # and keeps storing
    _assert_same_samples(again, sb3)


def test_frame_buffer_storage_follows_the_device() -> None:
    from rlkit.environments.resolve import resolve
    from rlkit.training.factory import _replay_buffer

    preset = resolve("pong").preset
    assert _replay_buffer(preset, "cpu")["replay_buffer_class"] is FrameReplayBuffer
    assert _replay_buffer(preset, "cuda:0")["replay_buffer_class"] is DeviceFrameReplayBuffer
    on_device = preset.model_copy(update={"frame_buffer_storage": "device"})
    assert _replay_buffer(on_device, "cpu")["replay_buffer_class"] is DeviceFrameReplayBuffer
    on_host = preset.model_copy(update={"frame_buffer_storage": "host"})
    assert _replay_buffer(on_host, "cuda")["replay_buffer_class"] is FrameReplayBuffer

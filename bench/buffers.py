"""Replay buffers for Atari frame stacks: storing a step and sampling a batch, SB3's against rlkit's.

Each buffer gets the same stream of uint8 ``(4, 84, 84)`` observations as SB3's rollout passes
them (``add(obs, next_obs, ...)``, an episode end every 500 steps), first filled once (so that
every page is touched), then timed: microseconds per ``add`` and per ``sample(batch)`` (numpy
gather plus conversion to torch tensors). Variants: SB3's ``ReplayBuffer`` (plain and with
``optimize_memory_usage``; SB3's rollout deep-copies the next observations before ``add``),
and rlkit's ``FrameReplayBuffer`` fed as SB3's DQN feeds it (deep copy) and as ``RlkitDQN`` does
(no copy). Prints JSON.

    PYTHONPATH=. python bench/buffers.py --size 20000 --steps 5000
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

SHAPE = (4, 84, 84)


def _buffers(size: int) -> dict[str, tuple[Callable[[], Any], bool]]:
    """name: (factory, whether the caller deep-copies the next observations first)."""
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    from rlkit.replay.buffers import FrameReplayBuffer

    obs, act = spaces.Box(0, 255, SHAPE, np.uint8), spaces.Discrete(6)
    return {
        "sb3_plain": (lambda: ReplayBuffer(size, obs, act, "cpu"), True),
        "sb3_optimize_memory_usage": (
            lambda: ReplayBuffer(size, obs, act, "cpu", optimize_memory_usage=True, handle_timeout_termination=False),
            True,
        ),
        "rlkit_frame_buffer_sb3_dqn": (lambda: FrameReplayBuffer(size, obs, act, "cpu"), True),
        "rlkit_frame_buffer_rlkit_dqn": (lambda: FrameReplayBuffer(size, obs, act, "cpu"), False),
    }


def _fill(buffer: Any, steps: int, deep_copy: bool) -> float:
    """Microseconds per ``add`` over ``steps`` steps of SB3's rollout flow."""
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (1, *SHAPE), dtype=np.uint8) for _ in range(64)]
    action, reward, infos = np.array([[1]]), np.zeros(1, np.float32), [{"TimeLimit.truncated": False}]
    obs = frames[0].copy()
    start = time.perf_counter()
    for k in range(steps):
        new_obs = frames[k % 64].copy()  # a fresh array per step, as a VecEnv returns
        next_obs = copy.deepcopy(new_obs) if deep_copy else new_obs
        buffer.add(obs, next_obs, action, reward, np.array([k % 500 == 499]), infos)
        obs = new_obs
    return (time.perf_counter() - start) / steps * 1e6


def _sample_us(buffer: Any, batch: int, reps: int) -> float:
    start = time.perf_counter()
    for _ in range(reps):
        buffer.sample(batch)
    return (time.perf_counter() - start) / reps * 1e6


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=20_000, help="buffer capacity (transitions)")
    parser.add_argument("--steps", type=int, default=5_000, help="timed add() calls per round")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--samples", type=int, default=300, help="timed sample() calls per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    add: dict[str, list[float]] = {}
    sample: dict[str, list[float]] = {}
    nbytes: dict[str, int] = {}
    for name, (factory, deep_copy) in _buffers(args.size).items():
        buffer = factory()
        _fill(buffer, args.size, deep_copy)  # touch every page once
        add[name] = [_fill(buffer, args.steps, deep_copy) for _ in range(args.rounds)]
        sample[name] = [_sample_us(buffer, args.batch, args.samples) for _ in range(args.rounds)]
        nbytes[name] = int(buffer.observations.nbytes + getattr(buffer, "next_observations", np.zeros(0)).nbytes)
        del buffer
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "size": args.size,
        "batch": args.batch,
        "add_us": {k: round(statistics.median(v), 2) for k, v in add.items()},
        "sample_us": {k: round(statistics.median(v), 1) for k, v in sample.items()},
        "observation_mb": {k: round(v / 1e6) for k, v in nbytes.items()},
    }


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

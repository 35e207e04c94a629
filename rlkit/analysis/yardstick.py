"""A machine yardstick: two cheap, fixed measurements that put absolute times in context.

A benchmark's "82 s to solve" says little without the machine: :func:`measure` times the
preset's bare gymnasium env (random actions, one env, no rendering, about a second) and a fixed
float32 matrix product on one torch thread (about half a second). Two benchmarks' times compare
only as far as their yardsticks do; ``rlkit benchmark`` records the result in
``benchmark.json`` under ``machine.yardstick`` and prints it beside every absolute time. The key
names are read by other tools (the docs' generator, ``bench/independent_check.py``): keep them.
"""

from __future__ import annotations

import time
from typing import Any

ENV_SECONDS = 1.0
"""How long the bare env is stepped."""

MATMUL_SECONDS = 0.5
"""How long the matrix product is repeated."""

MATMUL_SHAPE = (128, 256, 256)
"""``[128 x 256] @ [256 x 256]`` in float32: about a DQN MLP layer's forward pass on a batch."""

MATMUL_THREADS = 1
"""One thread: the figure measures a core, not how many cores were free at that moment."""


def measure(
    env_id: str,
    env_kwargs: dict[str, Any] | None = None,
    *,
    env_s: float = ENV_SECONDS,
    matmul_s: float = MATMUL_SECONDS,
) -> dict[str, Any]:
    """``{"env_id", "env_steps_per_s", "matmul_per_s", "torch_threads"}`` of this machine, now.

    ``env_steps_per_s``: steps of ``gymnasium.make(env_id)`` (one env, seeded random actions,
    reset at each episode's end); ``matmul_per_s``: products of :data:`MATMUL_SHAPE` per second on
    ``torch_threads`` (:data:`MATMUL_THREADS`) torch threads. The env must be registered (a
    custom env's module imported) before the call.
    """
    return {
        "env_id": env_id,
        "env_steps_per_s": env_steps_per_s(env_id, env_kwargs or {}, env_s),
        "matmul_per_s": matmul_per_s(matmul_s),
        "torch_threads": MATMUL_THREADS,
    }


def env_steps_per_s(env_id: str, env_kwargs: dict[str, Any], seconds: float) -> float:
    """Random-action steps per second of the bare env (no wrappers beyond gymnasium's own)."""
    import gymnasium as gym

    _register_atari()
    env = gym.make(env_id, **env_kwargs)
    try:
        env.action_space.seed(0)
        env.reset(seed=0)
        steps, start = 0, time.perf_counter()
        deadline = start + seconds
        while True:
            for _ in range(100):  # check the clock every 100 steps: its cost stays out of the figure
                _, _, terminated, truncated, _ = env.step(env.action_space.sample())
                if terminated or truncated:
                    env.reset()
            steps += 100
            now = time.perf_counter()
            if now >= deadline:
                return steps / (now - start)
    finally:
        env.close()


def matmul_per_s(seconds: float) -> float:
    """Float32 products of :data:`MATMUL_SHAPE` per second on :data:`MATMUL_THREADS` torch thread(s)."""
    import torch

    rows, inner, cols = MATMUL_SHAPE
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(rows, inner, generator=generator)
    b = torch.randn(inner, cols, generator=generator)
    out = torch.empty(rows, cols)
    threads = torch.get_num_threads()
    torch.set_num_threads(MATMUL_THREADS)
    try:
        torch.matmul(a, b, out=out)  # warm-up: first-call allocation and dispatch
        count, start = 0, time.perf_counter()
        deadline = start + seconds
        while True:
            for _ in range(50):
                torch.matmul(a, b, out=out)
            count += 50
            now = time.perf_counter()
            if now >= deadline:
                return count / (now - start)
    finally:
        torch.set_num_threads(threads)


def describe(yardstick: dict[str, Any] | None) -> str:
    """``env 28,000 steps/s, matmul 9,000/s`` (empty when there is none, e.g. an older benchmark.json)."""
    if not yardstick:
        return ""
    return f"env {yardstick['env_steps_per_s']:,.0f} steps/s, matmul {yardstick['matmul_per_s']:,.0f}/s"


def _register_atari() -> None:
    """Atari ids exist once ale-py has registered them."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)

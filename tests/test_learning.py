"""A real learning run: the shipped CartPole preset learns to balance within CI time."""

from __future__ import annotations

from pathlib import Path

from rlkit.environments.resolve import resolve
from rlkit.training import train

# A random policy scores about 22 on CartPole-v1. 400 (of 500) over 10 deterministic evaluation
# episodes means the agent balances for hundreds of steps: it has clearly learned, and the bar
# is low enough that the shipped preset reaches it in 30k of its 50k steps (seed 0 reached 500).
THRESHOLD = 400.0


def test_cartpole_preset_learns(tmp_path: Path) -> None:
    resolved = resolve("cartpole", overrides=["n_timesteps=30000", "eval_freq=2500", "checkpoint_freq=0"])
    result = train.start(resolved, seed=0, run_dir=tmp_path / "run", quiet=True)
    assert result.best_mean_reward is not None
    assert result.best_mean_reward >= THRESHOLD, f"best evaluation {result.best_mean_reward:.1f} < {THRESHOLD}"

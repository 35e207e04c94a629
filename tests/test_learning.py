"""A real learning run: the shipped CartPole preset solves CartPole-v1 within CI time.

A random policy scores about 22. The preset stops once solved: an evaluation averaging 475 or
more (gymnasium's threshold), confirmed over 100 more deterministic episodes; seed 0 gets there
at 10k of its 50k steps (seeds 0-4: 10k-26k, docs/BENCHMARKS.md). The final model is the one
that solved, and it is evaluated here once more on episodes of its own.
"""

from __future__ import annotations

from pathlib import Path

from rlkit.environments.resolve import resolve
from rlkit.training import train

SOLVED = 475.0


def test_cartpole_preset_solves_and_stops(tmp_path: Path) -> None:
    from rlkit import api

    resolved = resolve("cartpole", overrides=["checkpoint_freq=0"])
    result = train.start(resolved, seed=0, run_dir=tmp_path / "run", quiet=True)
    at = result.solved_at
    assert at is not None, f"not solved in {result.num_timesteps} steps (best {result.best_mean_reward})"
    assert at["episodes"] == 200 and at["rounds"] == 2 and at["mean_reward"] >= SOLVED  # two rounds of 100
    assert result.num_timesteps == at["timesteps"] <= 30_000  # stopped where it solved
    final = api.evaluate(tmp_path / "run", model="final", episodes=20, seed=123, save=False)
    assert final.mean >= SOLVED, f"the final model scored {final.mean:.1f} over 20 new episodes"


def test_distributional_heads_solve_cartpole(tmp_path: Path) -> None:
    """C51 and QR-DQN heads (the loss's other two cases) on the shipped preset also solve and stop."""
    from rlkit import api

    for head, sets in (("c51", ["distribution=c51", "v_min=0", "v_max=100"]), ("qr", ["distribution=qr"])):
        resolved = resolve("cartpole", overrides=["checkpoint_freq=0", *sets])
        result = train.start(resolved, seed=0, run_dir=tmp_path / head, quiet=True)
        assert result.solved_at is not None, f"{head}: not solved in {result.num_timesteps} steps"
        assert result.num_timesteps == result.solved_at["timesteps"] <= 30_000, head
        final = api.evaluate(tmp_path / head, model="final", episodes=20, seed=123, save=False)
        assert final.mean >= SOLVED, f"{head}: the final model scored {final.mean:.1f} over 20 new episodes"

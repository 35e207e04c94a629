"""A run asked for N steps trains exactly N, evaluates last at N, and TensorBoard agrees with evaluations.csv."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from rlkit.environments.resolve import resolve
from rlkit.training import train

FAST = ["learning_starts=100", "eval_episodes=2", "checkpoint_freq=0", "policy_kwargs.net_arch=[32]"]


def _eval_steps(run: Path) -> list[int]:
    with open(run / "evaluations.csv") as handle:
        return [int(float(row["timesteps"])) for row in csv.DictReader(handle)]


def _tensorboard_steps(run: Path, tag: str) -> list[int]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    steps: list[int] = []
    for events in sorted((run / "tb").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        if tag in acc.Tags()["scalars"]:
            steps += [event.step for event in acc.Scalars(tag)]
    return steps


@pytest.mark.parametrize(("n_envs", "steps", "expected"), [(1, 1000, 1000), (2, 1001, 1002)])
def test_budget_is_exact_and_every_record_agrees(tmp_path: Path, n_envs: int, steps: int, expected: int) -> None:
    """train_freq 256 does not divide the budget: the last rollout is shortened (to whole env steps)."""
    sets = [*FAST, f"n_envs={n_envs}", f"n_timesteps={steps}", "eval_freq=300"]
    result = train.start(resolve("cartpole", overrides=sets), seed=0, run_dir=tmp_path / "run", quiet=True)
    assert result.num_timesteps == expected
    evals = _eval_steps(result.run_dir)
    assert evals[-1] == expected and evals[:-1] == [s for s in evals[:-1] if s % 300 < 2 * n_envs]
    assert _tensorboard_steps(result.run_dir, "eval/mean_reward") == evals
    assert result.final_eval is not None and int(result.final_eval["timesteps"]) == expected

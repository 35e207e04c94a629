"""Wrappers from a preset (training and evaluation alike) and ``vec_env: dummy | subproc``."""

from __future__ import annotations

import csv
import sys
import types
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlkit.core.errors import RlkitError
from rlkit.environments.resolve import resolve
from rlkit.training import train
from rlkit.training.factory import load_model

FAST = ["learning_starts=100", "eval_episodes=2", "checkpoint_freq=0", "policy_kwargs.net_arch=[32]", "train_freq=4"]
TIME_LIMIT = "wrappers=[{name: TimeLimit, kwargs: {max_episode_steps: 20}}]"


def _episodes(run: Path) -> list[tuple[float, int]]:
    rows: list[tuple[float, int]] = []
    for path in sorted((run / "monitor").glob("*.monitor.csv")):
        with open(path) as handle:
            next(handle)  # Monitor's JSON header
            rows += [(float(r["r"]), int(r["l"])) for r in csv.DictReader(handle)]
    return rows


def test_wrappers_shape_training_and_evaluation(tmp_path: Path) -> None:
    resolved = resolve("cartpole", overrides=[*FAST, "n_timesteps=600", "eval_freq=300", TIME_LIMIT])
    assert resolved.preset.wrappers[0].name == "TimeLimit"
    result = train.start(resolved, seed=0, run_dir=tmp_path / "run", quiet=True)
    episodes = _episodes(result.run_dir)
    assert len(episodes) >= 30 and max(length for _, length in episodes) == 20  # Monitor sees the wrapped task
    assert result.final_eval is not None and result.final_eval["mean_ep_length"] <= 20  # so does evaluation


@pytest.mark.parametrize(
    ("wrappers", "message"),
    [
        ("[{name: TimeLimt}]", "unknown wrapper 'TimeLimt' (did you mean 'TimeLimit'?)"),
        ("[{name: TimeLimit, kwargs: {max_steps: 3}}]", "wrapper TimeLimit with kwargs {'max_steps': 3}:"),
        ("[{name: 'nosuchmod_x:Wrap'}]", "module 'nosuchmod_x' is not imported, and rlkit imports no module"),
        ("[{nme: TimeLimit}]", "wrappers"),
    ],
)
def test_bad_wrappers_are_one_line_before_any_work(wrappers: str, message: str) -> None:
    with pytest.raises(RlkitError) as info:
        resolve("cartpole", overrides=[f"wrappers={wrappers}"])
    assert message in str(info.value) and "\n" not in str(info.value)
    assert "nosuchmod_x" not in sys.modules  # named in a preset, never imported


def test_a_users_wrapper_from_a_module_they_imported(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("my_wrappers")

    class Halve(gym.RewardWrapper):  # type: ignore[type-arg]
        def reward(self, reward: float) -> float:
            return reward / 2

    module.Halve = Halve  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "my_wrappers", module)
    preset = resolve("cartpole", overrides=["wrappers=[{name: 'my_wrappers:Halve'}]"]).preset
    from rlkit.environments.factory import make_env

    env = make_env(preset, n_envs=1, seed=0)
    env.reset()
    _, reward, _, _ = env.step(np.array([0]))
    assert float(reward[0]) == 0.5


def test_subproc_trains_exactly_like_dummy(tmp_path: Path) -> None:
    """Same seeds, same Monitor files, same parameters: only where the envs step differs."""
    runs = {}
    for kind in ("dummy", "subproc"):
        sets = [*FAST, "n_timesteps=400", "eval_freq=0", "n_envs=2", f"vec_env={kind}"]
        runs[kind] = train.start(
            resolve("cartpole", overrides=sets), seed=1, run_dir=tmp_path / kind, quiet=True
        ).run_dir
    assert _episodes(runs["dummy"]) == _episodes(runs["subproc"]) and len(_episodes(runs["dummy"])) > 5
    params = [load_model(r / "model.zip", None, "cpu").policy.state_dict() for r in runs.values()]
    assert all(torch.equal(params[0][k], params[1][k]) for k in params[0])

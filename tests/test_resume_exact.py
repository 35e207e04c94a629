"""Exact resume: N steps straight and N/2 + resume + N/2 give the same weights and evaluations, bit for bit.

A checkpoint holds the envs' episode logs, the random streams and the step it was taken inside
(``resume.json``, :mod:`rlkit.training.resume_state`); these tests fail on a resume that restarts
the envs from a reset or reseeds the streams (as rlkit's did before: max |d| 0.6 on CartPole).
"""

from __future__ import annotations

import io
import json
import random
import shutil
import signal
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces

from rlkit.core.errors import Interrupted
from rlkit.environments.resolve import resolve
from rlkit.training import train
from tests.conftest import tiny_overrides
from tests.test_resume import SignalAt

BUDGET = 2000


def _weights(model_zip: Path) -> dict[str, th.Tensor]:
    with zipfile.ZipFile(model_zip) as archive:
        return th.load(io.BytesIO(archive.read("policy.pth")), weights_only=True)


def _evaluations(run: Path) -> list[list[str]]:
    """evaluations.csv without its wall-clock column (the one thing a resume changes)."""
    lines = (run / "evaluations.csv").read_text().splitlines()
    header = lines[0].split(",")
    keep = [i for i, name in enumerate(header) if name != "wall_s"]
    return [[row.split(",")[i] for i in keep] for row in lines]


def _as_if_killed_after_first_checkpoint(straight: Path, copy: Path) -> int:
    """A copy of a finished run as ``kill -9`` would have left it just after its first checkpoint."""
    shutil.copytree(straight, copy)
    checkpoints = sorted(d for d in (copy / "checkpoints").iterdir() if d.name.startswith("step-"))
    for later in checkpoints[1:]:
        shutil.rmtree(later)
    step = int(checkpoints[0].name.removeprefix("step-"))
    state = json.loads((copy / "state.json").read_text())
    state.update(status="running", num_timesteps=step, last_checkpoint=step)
    (copy / "state.json").write_text(json.dumps(state))
    (copy / "model.zip").unlink()
    return step


def _same_run(a: Path, b: Path) -> None:
    wa, wb = _weights(a / "model.zip"), _weights(b / "model.zip")
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not th.equal(wa[k], wb[k])]
    assert not different, f"tensors that differ: {different}"
    assert _evaluations(a) == _evaluations(b)


@pytest.mark.parametrize(
    "switches",
    [
        {},  # the checkpoint at 700 falls inside a 16-step rollout: its rest is played first
        {"n_envs": 2, "prioritized_replay": "true", "n_steps": 3},
        {"noisy": "true", "distribution": "c51", "dueling": "true"},
    ],
    ids=["dqn", "2-envs-per-n3", "noisy-c51-dueling"],
)
def test_killed_after_a_checkpoint_and_resumed_is_the_uninterrupted_run(
    tmp_path: Path, switches: dict[str, str]
) -> None:
    sets = tiny_overrides(BUDGET, checkpoint_freq=700, keep_checkpoints=9, eval_freq=500, **switches)
    resolved = resolve("cartpole", overrides=sets)
    train.start(resolved, seed=1, run_dir=tmp_path / "straight", quiet=True)
    step = _as_if_killed_after_first_checkpoint(tmp_path / "straight", tmp_path / "resumed")
    assert 0 < step < BUDGET
    notes: list[str] = []
    result = train.resume(tmp_path / "resumed", quiet=True, notify=notes.append)
    assert result is not None and result.num_timesteps == BUDGET
    assert not any("not exactly" in n for n in notes), notes
    assert "inexact_resumes" not in json.loads((tmp_path / "resumed" / "state.json").read_text())
    _same_run(tmp_path / "straight", tmp_path / "resumed")


def test_ctrl_c_mid_rollout_then_resume_is_the_uninterrupted_run(tmp_path: Path) -> None:
    """The stop saves a checkpoint inside the step the signal arrived in (777, inside a 16-step rollout)."""
    sets = tiny_overrides(BUDGET, checkpoint_freq=0, eval_freq=500)
    resolved = resolve("cartpole", overrides=sets)
    train.start(resolved, seed=2, run_dir=tmp_path / "straight", quiet=True)
    with pytest.raises(Interrupted):
        train.start(
            resolved, seed=2, run_dir=tmp_path / "resumed", quiet=True, callbacks=[SignalAt(777, signal.SIGINT)]
        )
    assert json.loads((tmp_path / "resumed" / "state.json").read_text())["status"] == "interrupted"
    train.resume(tmp_path / "resumed", quiet=True)
    _same_run(tmp_path / "straight", tmp_path / "resumed")


class Gusty(gym.Env[np.ndarray, int]):
    """An env whose start draws from Python's ``random``, not its ``np_random``: its state cannot be replayed."""

    def __init__(self) -> None:
        self.observation_space = spaces.Box(-10.0, 10.0, shape=(2,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.x, self.t = 0.0, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.x, self.t = random.uniform(-1, 1), 0
        return np.array([self.x, 0.0], dtype=np.float32), {}

    def step(self, action: int) -> Any:
        self.x += 0.1 if action else -0.1
        self.t += 1
        obs = np.array([self.x, self.t / 50], dtype=np.float32)
        return obs, float(abs(self.x) < 0.5), abs(self.x) > 3, self.t >= 50, {}


gym.register(id="GustyResume-v0", entry_point=Gusty)


def test_an_env_that_cannot_be_replayed_resumes_from_a_reset_and_says_so(tmp_path: Path) -> None:
    sets = tiny_overrides(1200, checkpoint_freq=520, keep_checkpoints=9, eval_freq=0)
    resolved = resolve("GustyResume-v0", overrides=sets)
    train.start(resolved, seed=0, run_dir=tmp_path / "straight", quiet=True)
    step = _as_if_killed_after_first_checkpoint(tmp_path / "straight", tmp_path / "resumed")
    notes: list[str] = []
    train.resume(tmp_path / "resumed", quiet=True, notify=notes.append)
    said = [n for n in notes if "not exactly" in n]
    assert said and "replaying the envs' episodes gave other observations" in said[0], notes
    state = json.loads((tmp_path / "resumed" / "state.json").read_text())
    assert state["resume_exact"] is False and state["inexact_resumes"] == [step]


def test_a_checkpoint_from_before_exact_resumes_still_resumes(tmp_path: Path) -> None:
    sets = tiny_overrides(1200, checkpoint_freq=520, keep_checkpoints=9, eval_freq=0)
    resolved = resolve("cartpole", overrides=sets)
    train.start(resolved, seed=0, run_dir=tmp_path / "straight", quiet=True)
    _as_if_killed_after_first_checkpoint(tmp_path / "straight", tmp_path / "old")
    checkpoint = next((tmp_path / "old" / "checkpoints").glob("step-*"))
    (checkpoint / "resume.json").unlink()
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["files"] = {k: v for k, v in manifest["files"].items() if k != "resume.json"}
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    notes: list[str] = []
    result = train.resume(tmp_path / "old", quiet=True, notify=notes.append)
    assert result is not None and result.num_timesteps == 1200
    assert any("from before exact resumes" in n for n in notes), notes

"""Interrupting and resuming: signals, kill -9, the step counter and epsilon carry on."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from stable_baselines3.common.callbacks import BaseCallback

from rlkit.core.errors import Interrupted
from rlkit.environments.resolve import resolve
from rlkit.training import train
from rlkit.training.buffer_store import load_buffer
from rlkit.training.rundir import GONE, RunDir
from tests.conftest import tiny_overrides

BUDGET = 1200


class SignalAt(BaseCallback):
    """Sends this process a real signal once training passes a step."""

    def __init__(self, step: int, signum: int) -> None:
        super().__init__()
        self.step, self.signum, self.sent = step, signum, False

    def _on_step(self) -> bool:
        if not self.sent and self.num_timesteps >= self.step:
            self.sent = True
            os.kill(os.getpid(), self.signum)
        return True


class Record(BaseCallback):
    """Remembers (steps, epsilon) at every step."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[int, float]] = []

    def _on_step(self) -> bool:
        self.seen.append((self.model.num_timesteps, float(self.model.exploration_rate)))
        return True


def _epsilon(steps: int, budget: int = BUDGET, fraction: float = 1.0, final: float = 0.02) -> float:
    progress = min(steps / (budget * fraction), 1.0)
    return 1.0 + progress * (final - 1.0)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_checkpoints_and_resume_continues(tmp_path: Path, signum: int) -> None:
    run = tmp_path / "run"
    resolved = resolve("cartpole", overrides=tiny_overrides(BUDGET, exploration_fraction=1.0, checkpoint_freq=10_000))
    with pytest.raises(Interrupted) as info:
        train.start(resolved, seed=0, run_dir=run, quiet=True, callbacks=[SignalAt(500, signum)])
    assert info.value.exit_code == 128 + signum
    assert f"rlkit train --resume {run}" in str(info.value)
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "interrupted"
    stopped = state["num_timesteps"]
    assert 500 <= stopped < BUDGET
    ckpt = run / "checkpoints" / f"step-{stopped:012d}"
    assert (ckpt / "replay_buffer.npz").is_file() and (ckpt / "model.zip").is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "handlers restored"

    recorder = Record()
    result = train.resume(run, quiet=True, callbacks=[recorder])
    assert result is not None
    first_step, first_eps = recorder.seen[0]
    assert first_step == stopped + 1, "the step counter continues"
    assert first_eps == pytest.approx(_epsilon(first_step), abs=5e-3), "epsilon continues, not restarted"
    # The budget is exact (the last step is 1200), and a callback sees epsilon as set after the step before.
    assert recorder.seen[-1] == (BUDGET, pytest.approx(_epsilon(BUDGET - 1))), "the schedule runs to the last step"
    final = json.loads((run / "checkpoints" / f"step-{BUDGET:012d}" / "state.json").read_text())
    assert final["exploration_rate"] == pytest.approx(0.02), "and reaches its final value on schedule"
    assert first_eps < 0.7
    assert result.num_timesteps >= BUDGET
    rows = (run / "evaluations.csv").read_text().splitlines()[1:]
    steps = [float(r.split(",")[0]) for r in rows]
    assert steps == sorted(steps) and len(steps) == len(set(steps))
    assert (run / "command.txt").read_text().count("\n") == 2
    final = json.loads((run / "state.json").read_text())
    assert final["status"] == "finished" and final["wall_s"] > state["wall_s"]


def test_resume_restores_optimizer_and_replay_buffer(tmp_path: Path) -> None:
    from stable_baselines3 import DQN

    run = tmp_path / "run"
    resolved = resolve("cartpole", overrides=tiny_overrides(BUDGET, checkpoint_freq=10_000))
    with pytest.raises(Interrupted):
        train.start(resolved, seed=0, run_dir=run, quiet=True, callbacks=[SignalAt(600, signal.SIGINT)])
    ckpt = next((run / "checkpoints").iterdir())
    saved = DQN.load(ckpt / "model.zip")  # a vanilla checkpoint model loads in plain SB3
    load_buffer(saved.replay_buffer, ckpt / "replay_buffer.npz")
    opt_state = saved.policy.optimizer.state_dict()["state"]
    assert opt_state, "Adam moments are in the checkpoint"
    assert saved.replay_buffer is not None and saved.replay_buffer.size() == saved.num_timesteps


def test_kill_9_loses_at_most_the_steps_since_the_last_checkpoint(tmp_path: Path) -> None:
    run = tmp_path / "run"
    sets = [a for p in tiny_overrides(50_000, checkpoint_freq=400, eval_freq=0) for a in ("--set", p)]
    cmd = [sys.executable, "-m", "rlkit", "train", "cartpole", "--seed", "0", "--run-dir", str(run), "-q", *sets]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ})
    deadline = time.time() + 120
    while time.time() < deadline and not list((run / "checkpoints").glob("step-*")):
        time.sleep(0.2)
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    ckpts = sorted((run / "checkpoints").glob("step-*"))
    assert ckpts, "a checkpoint was written before the kill"
    last = int(ckpts[-1].name.split("-")[1])
    state = json.loads((run / "state.json").read_text())
    # (a kill between publishing a checkpoint and recording it leaves the state one checkpoint behind)
    assert state["status"] == "running" and state["last_checkpoint"] == state["num_timesteps"] in (last, last - 400)
    assert RunDir(run).status() == GONE, "readers tell the truth: the process is gone"
    # Shrink the budget so the resumed run finishes quickly: edit nothing but read what resume does.
    recorder = Record()

    class StopSoon(BaseCallback):
        def _on_step(self) -> bool:
            return self.num_timesteps < last + 200

    result = train.resume(run, quiet=True, callbacks=[recorder, StopSoon()])
    assert result is not None
    # The checkpoint was taken inside step `last` (its transition not yet stored): the resume plays it again.
    assert recorder.seen[0][0] == last

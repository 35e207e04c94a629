"""Cases a hostile review of the merged tree found: each is one line, writes nothing, or keeps going."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from rlkit.core.errors import RlkitError
from rlkit.environments.resolve import resolve
from tests.clitools import assert_one_line_error, invoke

ROOT = Path(__file__).resolve().parent.parent
TINY = ["--set", "eval_freq=300", "--set", "eval_episodes=2", "--set", "policy_kwargs.net_arch=[16]"]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RLKIT_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path


def test_a_wrapper_that_needs_a_function_is_refused_before_any_work(here: Path) -> None:
    wrappers = "wrappers=[{name: TransformReward, kwargs: {func: os.system}}]"
    with pytest.raises(RlkitError, match=r"wrappers \[TransformReward\] do not work on CartPole-v1"):
        resolve("cartpole", overrides=[wrappers])
    assert_one_line_error(invoke("train", "cartpole", "--steps", "300", "--set", wrappers), "TransformReward")
    assert not (here / "runs").exists()


def test_a_binary_zoo_file_is_one_line(here: Path) -> None:
    (here / "bin.yml").write_bytes(bytes(range(256)) * 2)
    assert_one_line_error(invoke("presets", "import-zoo", "bin.yml", "--out", "zoo"), "is not a text file")
    assert not (here / "zoo").exists()


def test_a_usage_refusal_is_the_only_line(here: Path) -> None:
    """A warning about the preset (learning_starts beyond a 500-step budget) waits until the run can start."""
    (here / "afile").write_text("x")
    result = invoke("train", "cartpole", "--steps", "500", "--run-dir", "afile")
    assert_one_line_error(result, "afile")
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr
    assert_one_line_error(invoke("evaluate", "afile"), "not a run directory: afile is a file")


def test_damaged_state_values_are_one_line_for_every_reader(here: Path) -> None:
    assert invoke("train", "cartpole", "--steps", "600", "--seed", "1", "--run-dir", "r", "-q", *TINY).exit_code == 0
    state = json.loads(Path("r/state.json").read_text())
    Path("r/state.json").write_text(json.dumps({**state, "num_timesteps": "abc"}))
    for args in (["evaluate", "r", "--episodes", "1"], ["report", "r"], ["train", "--resume", "r", "--steps", "900"]):
        assert_one_line_error(invoke(*args), "damaged run state", "num_timesteps")
    assert not Path("r/report.html").exists()


def test_a_closed_output_pipe_does_not_stop_training(here: Path) -> None:
    """`rlkit train ... | head -1`: the reader goes away, the run goes on to its end and records it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [
        sys.executable,
        "-m",
        "rlkit",
        "train",
        "cartpole",
        "--steps",
        "1500",
        "--seed",
        "3",
        "--run-dir",
        "p",
        *TINY,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=here)
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does
    assert proc.wait(timeout=240) == 0
    state = json.loads((here / "p" / "state.json").read_text())
    assert state["status"] == "finished" and state["num_timesteps"] == 1500
    shutil.rmtree(here / "p")

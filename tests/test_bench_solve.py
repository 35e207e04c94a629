"""bench/solve.py, bench/gpu_pong.sh and bench/atari_summary.py on tiny budgets: they run and print what they promise."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_bench_throughput import ROOT, _run

TINY = ["n_timesteps=600", "learning_starts=100", "train_freq=16", "gradient_steps=8", "buffer_size=5000"]


def test_solve_tiny_reports_time_to_solve_per_learner() -> None:
    """Every learner under the same rule; a low bar (9: a random CartPole policy scores ~22) is solved."""
    sets = [a for s in [*TINY, "solved_score=9", "solved_confidence=0"] for a in ("--set", s)]
    doc = _run(
        "--env",
        "cartpole",
        "--seeds",
        "0",
        "--eval-freq",
        "200",
        "--eval-episodes",
        "2",
        "--confirm",
        "4",
        *sets,
        script="solve.py",
    )
    expected = {"rlkit", "zoo"} | ({"sbx"} if importlib.util.find_spec("sbx") else set())
    assert set(doc["learners"]) == expected and doc["zoo_values"]["n_timesteps"] == 600
    for name, learner in doc["learners"].items():
        row = learner["per_seed"]["0"]
        assert learner["seeds_solved"] == 1, name
        assert 0 < row["time_to_solve_s"] <= row["wall_s"] + 0.1 and row["solved_step"] == row["steps"] <= 600
        assert row["confirmed_mean"] >= 9 and learner["median_time_to_solve_s"] == row["time_to_solve_s"]
    assert "4 more episodes must agree" in doc["rule"]


def test_solve_tiny_reports_the_final_mean_when_not_solved() -> None:
    sets = [a for s in TINY for a in ("--set", s)]
    doc = _run(
        "--env",
        "cartpole",
        "--seeds",
        "1",
        "--learners",
        "rlkit,zoo",
        "--eval-freq",
        "300",
        "--eval-episodes",
        "2",
        "--confirm",
        "3",
        *sets,
        script="solve.py",
    )
    for name, learner in doc["learners"].items():
        row = learner["per_seed"]["1"]
        assert learner["seeds_solved"] == 0 and learner["median_time_to_solve_s"] is None
        assert row["time_to_solve_s"] is None and 0 < row["final_mean"] < 475
        # rlkit stops at its budget exactly; plain SB3 finishes its last train_freq rollout (608)
        assert row["steps"] == 600 if name == "rlkit" else 600 <= row["steps"] < 616


def _gpu_pong(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_pong.sh")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OUT": str(tmp_path / "out"), **env},
        timeout=300,
    )


@pytest.mark.skipif(shutil.which("rlkit") is None, reason="needs the rlkit command (pip install -e .)")
def test_gpu_pong_tiny_on_cpu(tmp_path: Path) -> None:
    """The GPU script end to end on CPU at a tiny budget: ALE with 4 envs, the frame buffer on the 'device'."""
    extra = "--set learning_starts=100 --set buffer_size=2000 --set frame_buffer_storage=device"
    done = _gpu_pong(tmp_path, DEVICE="cpu", STEPS="200", N_ENVS="4", EXTRA=extra)
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout[done.stdout.index("{") :])
    assert doc["status"] == "finished" and doc["steps"] == 200 and doc["steps_per_s"] > 0
    config = (tmp_path / "out" / "run" / "config.yaml").read_text()
    assert "backend: ale" in config and "n_envs: 4" in config and "frame_buffer_storage: device" in config
    again = _gpu_pong(tmp_path, DEVICE="cpu", STEPS="200")
    assert again.returncode == 2 and "exists" in again.stderr  # never overwrites a run


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch")
def test_gpu_pong_refuses_without_cuda(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    done = _gpu_pong(tmp_path)
    assert done.returncode == 2 and "no CUDA device" in done.stderr and not (tmp_path / "out").exists()


def test_atari_summary_of_a_run(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "monitor").mkdir(parents=True)
    (run / "state.json").write_text(json.dumps({"status": "interrupted", "num_timesteps": 4000, "wall_s": 20.0}))
    games = [-21.0] * 20 + [-15.0] * 20
    lines = ['#{"t_start": 0}', "r,l,t", *(f"{r},1000,{i + 1}" for i, r in enumerate(games))]
    (run / "monitor" / "0.monitor.csv").write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "atari_summary.py"), str(run)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    doc = json.loads(done.stdout)
    assert doc["steps_per_s"] == 200.0 and doc["games"] == 40
    assert doc["first_games_mean"] == -21.0 and doc["last_games_mean"] == -15.0 and doc["best_games_mean"] == -15.0
    bad = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "atari_summary.py"), str(tmp_path)], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "not an rlkit run directory" in bad.stderr

"""bench/independent_check.py: plain SB3 alone loads and plays rlkit's final models, and agrees with rlkit."""

from __future__ import annotations

import shutil
from pathlib import Path

from rlkit.analysis.evaluation import evaluate_run
from rlkit.core.seeds import stream_seed
from tests.test_bench_throughput import _run


def test_plain_sb3_scores_a_final_model_as_rlkit_does(trained_runs: tuple[Path, Path], tmp_path: Path) -> None:
    run = trained_runs[0]
    doc = _run(str(run), "--episodes", "5", script="independent_check.py")
    (model,) = doc["models"]
    assert model["loader"] == "stable_baselines3.DQN.load" and model["episodes"] == 5
    assert model["env_seed"] == stream_seed(0, "independent")
    ours = evaluate_run(run, model_name="final", episodes=5, seed=model["env_seed"])  # both greedy, same episodes
    assert model["mean"] == ours.mean and model["min"] == ours.min
    assert model["std"] == ours.std and model["solved"] == (ours.mean >= 475)
    assert doc["yardstick"]["env_id"] == "CartPole-v1" and doc["yardstick"]["matmul_per_s"] > 0


def test_a_benchmark_folder_checks_every_seed_and_skips_what_plain_sb3_cannot_play(
    trained_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "bench"
    shutil.copytree(trained_runs[1], folder / "seed-1")
    shutil.copytree(trained_runs[0], folder / "seed-10")
    config = folder / "seed-10" / "config.yaml"
    config.write_text(config.read_text().replace("  dueling: false", "  dueling: true"))
    doc = _run(str(folder), "--episodes", "2", script="independent_check.py")
    first, second = doc["models"]
    assert first["seed"] == 1 and first["episodes"] == 2 and "mean" in first
    assert second["skipped"] == "plain SB3 cannot play it: a dueling head: plain SB3's DQN has none"
    assert doc["checked"] == 1 and doc["skipped"] == 1 and doc["solved"].endswith("of 1")


def test_no_rlkit_code_loads_or_plays_the_model(trained_runs: tuple[Path, Path]) -> None:
    import os
    import subprocess
    import sys

    from tests.test_bench_throughput import ROOT

    probe = (
        "import sys; sys.path.insert(0, 'bench'); import independent_check as ic; from pathlib import Path; "
        f"ic.check(Path({str(trained_runs[0])!r}), 1); "
        "print(sorted(m for m in sys.modules if m.startswith('rlkit')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['rlkit', 'rlkit.api', 'rlkit.core', 'rlkit.core.errors', 'rlkit.core.seeds']"

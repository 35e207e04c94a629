"""`rlkit train` in-process: a complete run directory, and every bad input as one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from rlkit.cli import app
from tests.conftest import tiny_overrides

runner = CliRunner()


def _sets(pairs: list[str]) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


def test_train_writes_a_complete_run_directory(tmp_path: Path) -> None:
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["train", "cartpole", "--seed", "1", "--run-dir", str(run), "-q", *_sets(tiny_overrides())]
    )
    assert result.exit_code == 0, result.output
    assert "done:" in result.stdout
    for name in (
        "config.yaml",
        "command.txt",
        "meta.json",
        "state.json",
        "evaluations.csv",
        "best_model.zip",
        "model.zip",
    ):
        assert (run / name).is_file(), name
    assert list((run / "monitor").glob("*.monitor.csv"))
    assert list((run / "tb").rglob("events.out.tfevents.*"))
    checkpoints = sorted((run / "checkpoints").iterdir())
    assert len(checkpoints) == 2, "only the newest keep_checkpoints=2 remain"
    assert {p.name for p in checkpoints[-1].iterdir()} == {
        "model.zip",
        "replay_buffer.npz",
        "resume.json",
        "state.json",
        "manifest.json",
    }
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["seed"] == 1 and config["preset"]["env_id"] == "CartPole-v1"
    meta = json.loads((run / "meta.json").read_text())
    assert meta["device"] == "cpu" and "stable-baselines3" in meta["versions"]
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "finished" and state["num_timesteps"] >= 600
    assert "rlkit train cartpole" in (run / "command.txt").read_text()


def test_default_run_dirs_are_never_reused(_isolated_runs: Path) -> None:
    args = ["train", "cartpole", "--seed", "2", "-q", *_sets(tiny_overrides(200, eval_freq=0, checkpoint_freq=0))]
    assert runner.invoke(app, args).exit_code == 0
    assert runner.invoke(app, args).exit_code == 0
    runs = sorted((_isolated_runs / "cartpole").iterdir())
    assert len(runs) == 2 and all(r.name.split("-")[2].startswith("s2") for r in runs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["lunarlnder"], "did you mean 'lunarlander'"),
        (["cartpole", "--set", "learning_rat=1e-3"], "did you mean 'learning_rate'"),
        (["cartpole", "--set", "batch_size=-3"], "batch_size: Input should be greater than or equal to 1"),
        (["cartpole", "--set", "gamma=high"], "gamma: Input should be a valid number"),
        (["cartpole", "--config", "missing.yaml"], "--config file not found"),
        (["cartpole", "--device", "cuda"], "no CUDA GPU"),
        (["cartpole", "--device", "tpu"], "unknown device 'tpu'"),
        (["--resume", "."], "not an rlkit run directory"),
        (["--resume", "nowhere"], "does not exist"),
        ([], "missing environment"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(
    args: list[str], message: str, _isolated_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2
    assert message in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.output
    assert not _isolated_runs.exists(), "nothing written"


def test_malformed_preset_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("env_id: CartPole-v1\nlearning_rate: {a: 1\n")
    result = runner.invoke(app, ["train", str(bad)])
    assert result.exit_code == 2 and "malformed YAML" in result.stderr


def test_existing_run_directory_is_not_clobbered(tmp_path: Path) -> None:
    run = tmp_path / "taken"
    run.mkdir()
    keep = run / "precious.txt"
    keep.write_text("mine")
    result = runner.invoke(app, ["train", "cartpole", "--run-dir", str(run), "-q"])
    assert result.exit_code == 2 and "already exists" in result.stderr
    assert sorted(p.name for p in run.iterdir()) == ["precious.txt"] and keep.read_text() == "mine"


def test_resume_of_a_finished_run_does_nothing(tmp_path: Path) -> None:
    run = tmp_path / "done"
    args = ["train", "cartpole", "--seed", "0", "--run-dir", str(run), "-q", *_sets(tiny_overrides(300))]
    assert runner.invoke(app, args).exit_code == 0
    before = (run / "model.zip").read_bytes()
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0 and "already finished" in result.stdout
    assert (run / "model.zip").read_bytes() == before


def test_envs_lists_presets() -> None:
    result = runner.invoke(app, ["envs"])
    assert result.exit_code == 0
    for alias in ("cartpole", "lunarlander", "pong", "LunarLander-v3", "CnnPolicy"):
        assert alias in result.stdout


def test_help_does_not_import_torch() -> None:
    code = "import sys; from rlkit.cli import app; assert 'torch' not in sys.modules and 'stable_baselines3' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    out = subprocess.run([sys.executable, "-m", "rlkit", "--help"], capture_output=True, text=True, check=True)
    assert "train" in out.stdout

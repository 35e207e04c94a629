"""The DQN switches through ``rlkit train --set``: contradictions are one line, nothing is created."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from rlkit.cli import app


def test_contradictory_switches_are_one_line_and_create_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "cartpole", "--set", "distribution=qr", "--set", "loss=mse", "--run-dir", str(run_dir)]
    )
    assert result.exit_code == 2
    assert "loss mse applies to Q-value heads only; distribution qr has its own loss" in result.output
    assert "Traceback" not in result.output
    assert not run_dir.exists()


def test_unknown_switch_gets_did_you_mean(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", "cartpole", "--set", "double_dqn=true", "--run-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2
    assert "did you mean 'double_q'" in result.output

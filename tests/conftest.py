"""Shared fixtures: tiny real runs and an isolated runs folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test writes runs under its own tmp folder, never into the checkout."""
    root = tmp_path / "runs"
    monkeypatch.setenv("RLKIT_RUNS_DIR", str(root))
    return root


def tiny_overrides(steps: int = 600, **extra: object) -> list[str]:
    """``--set`` pairs for a fast CartPole run: small budget, frequent eval and checkpoints."""
    pairs = {
        "n_timesteps": steps,
        "learning_starts": 100,
        "train_freq": 16,
        "gradient_steps": 8,
        "eval_freq": 300,
        "eval_episodes": 2,
        "checkpoint_freq": 300,
        "buffer_size": 5000,
        **extra,
    }
    return [f"{k}={v}" for k, v in pairs.items()]

"""Shared fixtures: an isolated runs folder, tiny real runs made once per test session."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny CNNs train fastest on one torch thread (and leave the other core alone)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
        # The preset syncs its target every 10 steps, tuned for its 32-step phases every 64 steps;
        # with these small, frequent phases that diverges within a few thousand steps.
        "target_update_interval": 250,
        **extra,
    }
    return [f"{k}={v}" for k, v in pairs.items()]


# A few thousand CartPole steps: enough for evaluations, checkpoints, Monitor CSVs and models.
TINY_CARTPOLE = [
    "n_timesteps=2000",
    "learning_starts=200",
    "train_freq=64",
    "gradient_steps=16",
    "eval_freq=1000",
    "eval_episodes=3",
    "checkpoint_freq=1000",
    "keep_checkpoints=2",
]


def _train(root: Path, name: str, seed: int) -> Path:
    from rlkit.environments.resolve import resolve
    from rlkit.training.train import start

    resolved = resolve("cartpole", overrides=TINY_CARTPOLE)
    result = start(resolved, seed=seed, device="cpu", run_dir=root / name, quiet=True, argv=["pytest"])
    return result.run_dir


@pytest.fixture(scope="session")
def trained_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two finished CartPole runs of the same config, seeds 0 and 1 (treat as read-only)."""
    root = tmp_path_factory.mktemp("runs")
    return _train(root, "cartpole-s0", 0), _train(root, "cartpole-s1", 1)


@pytest.fixture
def run_copy(trained_runs: tuple[Path, Path], tmp_path: Path) -> Path:
    """A private copy of the seed-0 run as training left it (no evaluations, videos or plots of other tests)."""
    target = tmp_path / "run"
    shutil.copytree(trained_runs[0], target, ignore=shutil.ignore_patterns("evaluation-*", "videos", "*.png"))
    return target

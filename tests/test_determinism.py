"""Same seed on CPU gives the same result twice."""

from __future__ import annotations

from pathlib import Path

import torch

from rlkit.environments.resolve import resolve
from rlkit.training import train
from rlkit.training.factory import load_model
from tests.conftest import tiny_overrides


def test_same_seed_same_result(tmp_path: Path) -> None:
    resolved = resolve("cartpole", overrides=tiny_overrides(1000))
    runs = [train.start(resolved, seed=7, run_dir=tmp_path / f"r{i}", quiet=True) for i in range(2)]
    evals = [(r.run_dir / "evaluations.csv").read_text().splitlines() for r in runs]
    strip_wall = [[",".join(line.split(",")[:-1]) for line in e] for e in evals]
    assert strip_wall[0] == strip_wall[1]
    params = [load_model(r.run_dir / "model.zip", None, "cpu").policy.state_dict() for r in runs]
    for key in params[0]:
        assert torch.equal(params[0][key], params[1][key]), key
    other = train.start(resolved, seed=8, run_dir=tmp_path / "r2", quiet=True)
    p_other = load_model(other.run_dir / "model.zip", None, "cpu").policy.state_dict()
    assert any(not torch.equal(params[0][k], p_other[k]) for k in params[0]), "a different seed differs"

"""`rlkit benchmark` on a tiny budget: trains seeds, reuses them, aggregates honestly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rlkit.analysis.benchmark import aggregate, bootstrap_ci, iqm
from rlkit.cli import app
from tests.conftest import tiny_overrides

runner = CliRunner()


def test_iqm_is_the_mean_of_the_middle_half() -> None:
    assert iqm([1, 2, 3, 4, 100, -100, 5, 6]) == pytest.approx((2 + 3 + 4 + 5) / 4)
    assert iqm([10.0]) == 10.0


def test_bootstrap_interval_brackets_the_statistic() -> None:
    values = [100.0, 120.0, 140.0, 160.0, 180.0]
    low, high = bootstrap_ci(values, lambda v: sum(v) / len(v))
    assert 100.0 <= low < 140.0 < high <= 180.0
    assert bootstrap_ci([5.0, 5.0, 5.0], lambda v: sum(v) / len(v)) == (5.0, 5.0)
    summary = aggregate(values)
    assert summary["median"]["value"] == 140.0 and summary["mean"]["value"] == 140.0


def test_benchmark_trains_evaluates_and_reuses(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    sets = [a for p in tiny_overrides(400, checkpoint_freq=0) for a in ("--set", p)]
    args = ["benchmark", "cartpole", "--seeds", "2", "--jobs", "2", "--episodes", "3", "--out", str(out), *sets]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    doc = json.loads((out / "benchmark.json").read_text())
    assert doc["seeds"] == [0, 1] and doc["eval_episodes"] == 3
    assert len(doc["per_seed"]) == 2
    for seed in doc["per_seed"]:
        assert seed["steps"] >= 400 and seed["steps_per_s"] > 0
        assert -1 < seed["final_mean"] <= 500
    metas = sorted(out.glob("seed-*/meta.json"))  # two jobs side by side: one core each, one fixed thread
    assert len(metas) == 2 and all(json.loads(m.read_text())["torch_threads"] == 1 for m in metas)
    assert doc["final"]["iqm"]["ci95"][0] <= doc["final"]["iqm"]["value"] <= doc["final"]["iqm"]["ci95"][1]
    assert (out / "benchmark.md").read_text().startswith("### cartpole")
    assert (out / "curves.png").stat().st_size > 1000
    models = {p: p.stat().st_mtime_ns for p in out.glob("seed-*/model.zip")}
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert {p: p.stat().st_mtime_ns for p in out.glob("seed-*/model.zip")} == models, "finished seeds are reused"


def test_benchmark_refuses_a_folder_of_another_config(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    (out).mkdir()
    (out / "preset.yaml").write_text("env_id: CartPole-v1\nn_timesteps: 999\n")
    result = runner.invoke(app, ["benchmark", "cartpole", "--seeds", "1", "--out", str(out)])
    assert result.exit_code == 2 and "different configuration" in result.stderr

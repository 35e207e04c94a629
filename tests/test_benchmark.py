"""`rlkit benchmark` on a tiny budget: trains seeds, reuses them, aggregates honestly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rlkit.analysis.benchmark import (
    aggregate,
    bootstrap_ci,
    few_seeds_warning,
    iqm,
    markdown,
    seed_status,
    summary_rows,
)
from rlkit.cli import app
from rlkit.core.seeds import stream_seed
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
    assert summary["range"] == [100.0, 180.0]


def test_few_seeds_show_the_range_instead_of_intervals() -> None:
    few = aggregate([100.0, 180.0])  # a bootstrap of two values is just [min, max]
    assert few["mean"]["ci95"] is None and few["iqm"]["ci95"] is None
    assert few["range"] == [100.0, 180.0]
    five = aggregate([1.0, 2.0, 3.0, 4.0, 5.0])
    assert five["mean"]["ci95"] is not None
    doc = {"seeds": [0, 1, 2, 3, 4], "final": five, "best": five, "seeds_solved_final": 1, "seeds_solved_best": 2}
    header, rows = summary_rows(doc)
    assert header[1:4] == ["mean [95% CI]", "median [95% CI]", "IQM [95% CI]"] and rows[1][-1] == "2/5"
    assert few_seeds_warning(5) is None and "only 4 seeds" in str(few_seeds_warning(4))
    header, rows = summary_rows({**doc, "seeds": [0, 1], "final": few, "best": few})
    assert header[1:4] == ["mean", "median", "min to max"] and rows[0][3] == "100.0 to 180.0"


def test_benchmark_trains_evaluates_and_reuses(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    sets = [a for p in tiny_overrides(400, checkpoint_freq=0) for a in ("--set", p)]
    args = ["benchmark", "cartpole", "--seeds", "2", "--jobs", "2", "--episodes", "3", "--out", str(out), *sets]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    # per-seed status lines (not a terminal), a warning about 2 seeds, rich tables rather than raw Markdown
    for seed in (0, 1):
        assert f"seed {seed}: training" in first.stdout
        assert f"seed {seed}: done: fresh " in first.stdout
    assert "warning: only 2 seeds: 95% confidence intervals" in " ".join(first.stderr.split())
    assert "min to max" in first.stdout and "┃" in first.stdout and "| --- |" not in first.stdout
    doc = json.loads((out / "benchmark.json").read_text())
    assert doc["warning"].startswith("only 2 seeds") and doc["final"]["mean"]["ci95"] is None
    # the headline: each final model re-scored on episodes of its own fresh stream, first on screen
    assert first.stdout.index("solved on fresh episodes: ") < first.stdout.index("final, fresh")
    assert f"solved on fresh episodes: {doc['seeds_solved_fresh']} of 2 seeds; results:" in first.stdout
    for seed in doc["per_seed"]:
        assert seed["fresh_seed"] == stream_seed(seed["seed"], "fresh") and seed["fresh_episodes"] == 3
        assert seed["solved_fresh"] == (seed["fresh_mean"] >= 475) and seed["fresh_min"] <= seed["fresh_mean"]
        saved = json.loads(Path(seed["run_dir"], f"evaluation-final-3ep-s{seed['fresh_seed']}.json").read_text())
        assert saved["mean"] == seed["fresh_mean"] and saved["seed"] not in (100_000, 0, 1)
    assert doc["fresh"]["mean"]["value"] == pytest.approx(sum(r["fresh_mean"] for r in doc["per_seed"]) / 2)
    yardstick = doc["machine"]["yardstick"]
    assert yardstick["env_id"] == "CartPole-v1" and yardstick["torch_threads"] == 1
    assert yardstick["env_steps_per_s"] > 0 and yardstick["matmul_per_s"] > 0
    assert f"{yardstick['matmul_per_s']:,.0f}/s" in " ".join(first.stdout.split())
    assert doc["seeds"] == [0, 1] and doc["eval_episodes"] == 3
    assert len(doc["per_seed"]) == 2
    for seed in doc["per_seed"]:
        assert seed["steps"] >= 400 and seed["steps_per_s"] > 0
        assert -1 < seed["final_mean"] <= 500
    metas = sorted(out.glob("seed-*/meta.json"))  # two jobs side by side: one core each, one fixed thread
    assert len(metas) == 2 and all(json.loads(m.read_text())["torch_threads"] == 1 for m in metas)
    low, high = doc["final"]["range"]
    assert low <= doc["final"]["mean"]["value"] <= high
    md = (out / "benchmark.md").read_text()
    assert (
        md.startswith("### cartpole")
        and "**Note:** only 2 seeds" in md
        and "| model | mean | median | min to max |" in md
    )
    assert md == markdown(doc, doc_command(out))
    assert md.splitlines()[2].startswith("**Solved on fresh episodes: ") and "| final, fresh |" in md

    # while a seed runs its status comes from its folder: training, then evaluating each model
    seed0 = out / "seed-0"
    finished = seed_status(seed0, 0, 400, 3, started=True, result=None)
    assert finished.state == "evaluating fresh" and finished.steps >= 400 and finished.last_eval is not None
    for name in ("best", "final"):
        path = seed0 / f"evaluation-{name}-3ep-s100000.json"
        path.rename(path.with_suffix(".bak"))
        assert seed_status(seed0, 0, 400, 3, started=True, result=None).state == f"evaluating {name}"
    for path in seed0.glob("*.bak"):
        path.rename(path.with_suffix(".json"))
    assert seed_status(out / "seed-9", 9, 400, 3, started=False, result=None).state == "queued"
    assert seed_status(out / "seed-9", 9, 400, 3, started=True, result=None).state == "starting"  # importing
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


def doc_command(out: Path) -> str:
    return str(json.loads((out / "benchmark.json").read_text())["command"])


def fake_doc(seeds: int = 5) -> dict[str, Any]:
    """A benchmark document of LunarLander-sized figures, without training anything."""
    from rlkit.analysis.benchmark import SeedResult, summarize
    from rlkit.config.presets import Resolved
    from rlkit.environments.resolve import resolve

    resolved = resolve("lunarlander")
    results = [
        SeedResult(
            seed=s,
            run_dir=f"seed-{s}",
            fresh_mean=150.0 + 30 * s,
            fresh_std=80.0,
            fresh_min=-123.4,
            fresh_episodes=100,
            fresh_seed=stream_seed(s, "fresh"),
            solved_fresh=150.0 + 30 * s >= 200,
            final_mean=-99.5 + 80 * s,
            best_mean=210.0,
            steps=100_000,
            wall_s=512.3,
            steps_per_s=195.2,
            solved_final=s > 3,
            solved_best=True,
            first_solved_step=70_000,
            first_solved_wall_s=301.0,
            solved_step=70_000,
            time_to_solve_s=301.0 + s,
        )
        for s in range(seeds)
    ]
    machine = {
        "cpu_count": 2,
        "python": "3.11",
        "label": "this machine",
        "yardstick": {
            "env_id": "LunarLander-v3",
            "env_steps_per_s": 28_123.4,
            "matmul_per_s": 9_012.3,
            "torch_threads": 1,
        },
    }
    return summarize(Resolved("lunarlander", resolved.preset, resolved.source), results, 100, machine)


@pytest.mark.parametrize("seeds", [3, 5])
def test_the_summary_leads_with_fresh_episodes_and_fits_80_columns(seeds: int) -> None:
    import io

    import rlkit.cli.benchmark_cmd as cmd
    import rlkit.cli.common as common

    doc = fake_doc(seeds)
    assert doc["seeds_solved_fresh"] == sum(150 + 30 * s >= 200 for s in range(seeds))
    console = common.PipeSafeConsole(width=80, force_terminal=True, file=io.StringIO(), color_system=None)
    original = cmd.out
    common.out = cmd.out = console
    try:
        cmd._print_tables(doc)
    finally:
        common.out = cmd.out = original
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text, text
    joined = " ".join(text.split())
    assert joined.startswith(f"solved on fresh episodes: {doc['seeds_solved_fresh']} of {seeds} seeds (")
    assert joined.index("final, fresh") < joined.index("│ final ") < joined.index("│ best ")
    assert "on this machine (env 28,123 steps/s, matmul 9,012/s)" in joined
    median = 301.0 + (seeds - 1) / 2
    assert f"median time to solve {median:.1f} s of training on this machine (env 28,123 steps/s" in joined
    md = markdown(doc, "rlkit benchmark lunarlander")
    assert md.splitlines()[2].startswith("**Solved on fresh episodes: ")
    assert md.index("| final, fresh |") < md.index("| final |") and "| seed | fresh | final |" in md


def test_the_live_view_fits_80_columns_with_three_figures_per_seed() -> None:
    import io

    import rlkit.cli.common as common
    from rlkit.analysis.benchmark import SeedStatus
    from rlkit.cli.benchmark_cmd import SeedView

    view = SeedView(3, 1_500_000, 100, jobs=2)
    view.statuses = [
        SeedStatus(0, "done", 1_000_000, 1_500_000, -99.5, 1_250_000, -99.5, -99.5, finished=True, fresh=-99.5),
        SeedStatus(1, "evaluating fresh", 1_200_000, 1_500_000, -123.4, 1_250_000, finished=True),
        SeedStatus(2, "elsewhere", 0, 1_500_000),
    ]
    view.wait_line = "1 of 3 seeds done; waiting for seeds 1, 2 on vm:1234, vm:5678"
    console = common.PipeSafeConsole(width=80, force_terminal=True, file=io.StringIO(), color_system=None)
    console.print(view)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert all(len(line) <= 80 for line in text.splitlines()) and "…" not in text, text
    assert "-99.5/-99.5/-99.5" in text and "eval fresh" in text and "elsewhere: another worker" in text

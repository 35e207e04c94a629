"""``rlkit plot``: learning curves from evaluations.csv and Monitor CSVs, seeds grouped."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rlkit.analysis.plots import (
    BAND_MIN_SEEDS,
    Curve,
    RunCurves,
    aggregate,
    bootstrap_band,
    build_figure,
    group_runs,
    load_groups,
    read_monitor_csv,
    smooth,
)
from tests.clitools import assert_one_line_error, invoke


def _image(path: Path) -> np.ndarray:
    import imageio.v2 as iio

    return np.asarray(iio.imread(path))


def test_two_seeds_one_png(trained_runs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    result = invoke("plot", *trained_runs, "--out", out)
    assert result.exit_code == 0, result.output
    image = _image(out)
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert image[..., :3].std() > 10  # drawn, not blank

    assert_one_line_error(invoke("plot", *trained_runs, "--out", out), "already exists", "--force")
    again = invoke("plot", *trained_runs, "--out", out, "--force", "--x", "time")
    assert again.exit_code == 0, again.output


def test_default_output_for_one_run(run_copy: Path) -> None:
    result = invoke("plot", run_copy)
    assert result.exit_code == 0, result.output
    assert (run_copy / "learning-curve.png").is_file()


def test_svg_and_bad_outputs(trained_runs: tuple[Path, Path], tmp_path: Path) -> None:
    assert invoke("plot", trained_runs[0], "--out", tmp_path / "c.svg").exit_code == 0
    assert (tmp_path / "c.svg").read_text().lstrip().startswith("<?xml")
    assert_one_line_error(invoke("plot", trained_runs[0], "--out", tmp_path / "no" / "c.png"), "does not exist")
    assert_one_line_error(invoke("plot", trained_runs[0], "--out", tmp_path / "c.jpg"), "valid: .png")
    assert_one_line_error(invoke("plot", tmp_path / "nope", "--out", tmp_path / "d.png"), "not a run directory")
    assert not (tmp_path / "d.png").exists()
    result = invoke("plot", trained_runs[0], "--x", "epochs", "--out", tmp_path / "e.png")
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_run_with_nothing_to_plot(run_copy: Path, tmp_path: Path) -> None:
    (run_copy / "evaluations.csv").unlink()
    for csv in (run_copy / "monitor").glob("*.csv"):
        csv.write_text('#{"t_start": 0}\nr,l,t\n')
    assert_one_line_error(invoke("plot", run_copy, "--out", tmp_path / "x.png"), "nothing to plot")


def test_monitor_csv_with_resume_and_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "0.monitor.csv"
    path.write_text('#{"t_start": 1.0}\nr,l,t\n1.0,10,0.5\n2.0,20,1.5\n3.0,30,0.2\n4.0,40,0.9\n5.0,5')
    returns, lengths, times = read_monitor_csv(path)
    assert returns.tolist() == [1.0, 2.0, 3.0, 4.0]  # torn last line skipped
    assert lengths.tolist() == [10, 20, 30, 40]
    assert times.tolist() == pytest.approx([0.5, 1.5, 1.7, 2.4])  # resumed clock continues


def test_smooth_is_a_trailing_mean() -> None:
    assert smooth(np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist() == [1.0, 2.0, 4.0, 6.0]


def test_seeds_with_identical_x_are_averaged_point_by_point() -> None:
    xs = np.array([0.0, 10.0, 20.0])
    a = Curve(xs, xs, np.array([0.0, 1.0, 2.0]))
    b = Curve(xs, xs, np.array([2.0, 3.0, 6.0]))
    agg = aggregate([a, b], "steps")
    assert agg.xs.tolist() == [0.0, 10.0, 20.0] and not agg.interpolated
    assert agg.mean.tolist() == [1.0, 2.0, 4.0]
    assert agg.band is None  # fewer than 5 seeds: no band, every seed drawn
    # Different x values: interpolated on the range both cover, never extrapolated.
    c = Curve(np.array([5.0, 25.0]), np.array([5.0, 25.0]), np.array([0.0, 2.0]))
    agg2 = aggregate([a, c], "steps")
    assert agg2.interpolated and agg2.xs[0] == 5.0 and agg2.xs[-1] == 20.0


def test_bootstrap_band_over_seeds_from_five_seeds() -> None:
    xs = np.arange(4, dtype=float)
    rows = [np.array([0.0, 1.0, 2.0, 3.0]) + k for k in range(6)]
    agg = aggregate([Curve(xs, xs, r) for r in rows], "steps")
    assert agg.band is not None
    low, high = agg.band
    assert np.all(low < agg.mean) and np.all(agg.mean < high)
    assert np.all(low >= agg.seeds.min(axis=0)) and np.all(high <= agg.seeds.max(axis=0))
    # The band of the mean of 0..5 is about ± 1.96 * std/sqrt(6) = ± 1.4 (not the +-6 of a t band on 2 seeds).
    assert high - low == pytest.approx(np.full(4, 2.8), abs=0.6)
    same_low, same_high = bootstrap_band(np.ones((5, 3)))
    assert same_low.tolist() == same_high.tolist() == [1.0, 1.0, 1.0]


def _write_monitor(path: Path, lengths: list[int], offset: float) -> None:
    """Episodes of the given lengths whose return is (step at the episode's end) / 10 + offset."""
    lines = ['#{"t_start": 0, "env_id": "CartPole-v1"}', "r,l,t"]
    step = 0
    for length in lengths:
        step += length
        lines.append(f"{step / 10 + offset},{length},{step / 1000}")
    path.write_text("\n".join(lines) + "\n")


def _synthetic_seed(template: Path, target: Path, lengths: list[int], offset: float) -> Path:
    from rlkit.training.rundir import RunDir

    shutil.copytree(template, target, ignore=shutil.ignore_patterns("evaluation-*", "videos", "*.png"))
    for old in (target / "monitor").glob("*.csv"):
        old.unlink()
    _write_monitor(target / "monitor" / "0.monitor.csv", lengths, offset)
    rows = [
        {"timesteps": float(t), "mean_reward": t / 10 + offset, "std_reward": 5.0, "min_reward": 0.0,
         "max_reward": 500.0, "mean_ep_length": 100.0, "wall_s": t / 1000}
        for t in (1000, 2000, 3000, 4000)
    ]  # fmt: skip
    RunDir(target).write_evaluations(rows)
    return target


def test_training_curves_of_two_seeds_average_over_the_range_both_cover(run_copy: Path, tmp_path: Path) -> None:
    """Two seeds whose episode ends coincide at 10, 20, 30 and 3,019 steps (and nowhere else).

    Seed A's return is step/10, seed B's step/10 + 100: the mean is step/10 + 50 wherever both
    have data, i.e. up to 4,930 steps (A's last episode end; B reaches 4,971).
    """
    a = _synthetic_seed(run_copy, tmp_path / "a", [10, 10, 10] + [49] * 100, 0.0)
    b = _synthetic_seed(run_copy, tmp_path / "b", [10, 10, 10] + [61] * 81, 100.0)
    fig = build_figure(load_groups([a, b], window=1), "steps")
    evaluation, training = fig.axes[:2]
    mean = [line for line in training.get_lines() if line.get_label().startswith("cartpole, 2 seeds")]
    assert len(mean) == 1
    x, y = (np.asarray(v, float) for v in mean[0].get_data())
    assert x[-1] == pytest.approx(4930.0)  # the whole common range, not only the coinciding steps
    assert x[0] == pytest.approx(10.0)
    assert y == pytest.approx(x / 10 + 50.0)
    assert len(x) > 100
    assert not training.collections  # 2 seeds: no band
    assert len([ln for ln in training.get_lines() if not ln.get_label().startswith("solved score")]) == 3  # 2+mean
    eval_mean = [line for line in evaluation.get_lines() if line.get_label().startswith("cartpole, 2 seeds")]
    ex, ey = (np.asarray(v, float) for v in eval_mean[0].get_data())
    assert ex.tolist() == [1000.0, 2000.0, 3000.0, 4000.0] and ey == pytest.approx(ex / 10 + 50.0)
    assert "CartPole-v1" in fig.get_suptitle() and "cartpole" in fig.get_suptitle()
    assert "moving average of 1 episode" in training.get_title()
    assert "std" in evaluation.get_title()


def test_five_seeds_get_a_band_and_time_axis_has_no_markers(run_copy: Path, tmp_path: Path) -> None:
    runs = [_synthetic_seed(run_copy, tmp_path / f"s{k}", [10] * 3 + [40 + k] * 100, 20.0 * k) for k in range(5)]
    fig = build_figure(load_groups(runs, window=1), "time")
    evaluation, training = fig.axes[:2]
    assert BAND_MIN_SEEDS == 5 and len(training.collections) == 1  # the bootstrap band
    for line in evaluation.get_lines() + training.get_lines():
        assert line.get_marker() in ("None", None, "", " ")


def _curves(alias: str, seed: int, lr: float) -> RunCurves:
    return RunCurves(Path(f"/r/{alias}{seed}{lr}"), alias, seed, "E-v0", {"learning_rate": lr}, None, None, None)


def test_seeds_group_and_configs_split_with_the_differing_key_in_the_label() -> None:
    groups = group_runs([_curves("cp", 0, 0.1), _curves("cp", 1, 0.1), _curves("cp", 0, 0.2), _curves("ll", 0, 0.1)])
    assert [len(g.runs) for g in groups] == [2, 1, 1]
    assert groups[0].label == "cp (learning_rate=0.1), 2 seeds"
    assert groups[1].label == "cp (learning_rate=0.2), seed 0"
    assert groups[2].label == "ll, seed 0"


def _one_run(config: dict[str, object], solved: float | None, returns: np.ndarray, evaluation: bool) -> RunCurves:
    xs = np.arange(1, len(returns) + 1, dtype=float) * 1000
    curve = Curve(xs, xs / 100, returns)
    return RunCurves(Path("/r/a"), "a", 0, "E-v0", config, solved, curve if evaluation else None, curve)


def test_a_solved_score_far_from_the_data_is_a_note_not_a_squeezing_line() -> None:
    """Breakout's 400 over returns of 1-15: the curves keep the height, the score is named at the edge."""
    fig = build_figure(group_runs([_one_run({}, 400.0, np.linspace(1, 15, 30), evaluation=False)]))
    evaluation, training = fig.axes[:2]
    assert not [line for line in training.get_lines() if line.get_label().startswith("solved score")]
    assert training.get_ylim()[1] < 50
    assert any("solved score 400 (above the chart)" in t.get_text() for t in training.texts)
    # the empty evaluation panel says so, without a meaningless 0..1 axis
    assert any("no evaluation data yet" in t.get_text() for t in evaluation.texts)
    assert list(evaluation.get_xticks()) == [] and list(evaluation.get_yticks()) == []
    near = build_figure(group_runs([_one_run({}, 20.0, np.linspace(1, 15, 30), evaluation=True)]))
    assert [line for line in near.axes[1].get_lines() if line.get_label() == "solved score (20)"]


def test_atari_training_episodes_are_counted_in_env_steps(tmp_path: Path) -> None:
    """Atari Monitors record emulator frames: the x axis divides them by the frame skip."""
    from rlkit.analysis.plots import training_curve

    monitor = tmp_path / "monitor"
    monitor.mkdir()
    lines = ['#{"t_start": 0}', "r,l,t", "1.0,400,1.0", "2.0,800,2.0"]
    (monitor / "0.monitor.csv").write_text("\n".join(lines) + "\n")
    frames, _ = training_curve(monitor, 1)
    steps, _ = training_curve(monitor, 1, frames_per_step=4)
    assert frames is not None and steps is not None
    assert list(frames.steps) == [400, 1200] and list(steps.steps) == [100, 300]


def test_seeds_that_stop_at_different_steps_are_each_drawn_to_their_end() -> None:
    """Runs stopped once solved end at 70k-230k: the mean covers 70k only, so each seed is drawn too."""
    runs = []
    for seed, end in enumerate([70, 95, 105, 135, 230]):
        xs = np.arange(5, end + 1, 5, dtype=float) * 1000
        runs.append(RunCurves(Path(f"/r/{seed}"), "ll", seed, "E-v0", {}, 200.0, Curve(xs, xs / 1e3, xs / 1e3), None))
    fig = build_figure(group_runs(runs))
    evaluation = fig.axes[0]
    ends = sorted(line.get_xdata()[-1] for line in evaluation.get_lines() if line.get_marker() == "o")
    assert ends == [70_000, 95_000, 105_000, 135_000, 230_000]  # a dot where each seed stopped
    legend = [t.get_text() for t in evaluation.get_legend().get_texts()]
    assert "single seeds (thin)" in legend and "end of a seed's run (dot)" in legend
    same = [RunCurves(Path(f"/s/{k}"), "ll", k, "E-v0", {}, 200.0, runs[0].evaluation, None) for k in range(5)]
    assert not [
        line
        for line in build_figure(group_runs(same)).axes[0].get_lines()
        if line.get_marker() == "o" and line.get_linestyle() == "None"
    ]


def _stopped_seeds(ends: list[int], score: float = 475.0) -> list[RunCurves]:
    """Five seeds whose evaluations climb to 500 and stop there once solved (stop_on_solved), at ``ends`` (k steps)."""
    runs = []
    for seed, end in enumerate(ends):
        xs = np.arange(2, end + 1, 2, dtype=float) * 1000
        values = np.minimum(500.0, 50.0 * xs / 2000)
        values[-1] = 500.0  # the solving evaluation
        curve = Curve(xs, xs / 1e3, values, np.full(len(xs), 5.0))
        at = {"timesteps": float(xs[-1]), "wall_s": float(xs[-1] / 1e3)}
        runs.append(
            RunCurves(Path(f"/r/{seed}"), "cp", seed, "E-v0", {}, score, curve, None, solved_at=at, stopped_solved=True)
        )
    return runs


def test_seeds_that_stopped_once_solved_count_as_solved_past_their_end() -> None:
    """Five CartPole seeds solved at 10k-26k: the mean must reach 500 at 26k, not stop below the line at 10k."""
    fig = build_figure(group_runs(_stopped_seeds([10, 10, 10, 12, 26])))
    evaluation = fig.axes[0]
    mean = next(line for line in evaluation.get_lines() if line.get_label().startswith("cp, 5 seeds: mean"))
    x, y = (np.asarray(v, float) for v in mean.get_data())
    assert x[-1] == 26_000 and y[-1] == 500.0  # every seed solved: the mean says so at the end
    assert y[x == 12_000][0] == pytest.approx((4 * 500 + 300) / 5)  # seed 4 still learning; the others held at 500
    assert "held at their last evaluation" in mean.get_label()
    held = [ln for ln in evaluation.get_lines() if ln.get_linestyle() == "--" and ln.get_label().startswith("_")]
    assert sorted(ln.get_xdata()[0] for ln in held) == [10_000, 10_000, 10_000, 12_000]  # each held to 26k, dashed
    right = fig.axes[2]  # seeds solved, confirmed, on the right-hand axis
    steps = right.get_lines()[0]
    assert list(steps.get_ydata()) == [0, 1, 2, 3, 4, 5, 5] and steps.get_xdata()[-2] == 26_000


def test_the_legend_names_every_line_and_band_drawn() -> None:
    fig = build_figure(group_runs(_stopped_seeds([10, 10, 10, 12, 26])))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert legend == [
        "cp, 5 seeds: mean, stopped seeds held at their last evaluation",
        "± std over the evaluation episodes, mean over seeds (error bars)",
        "95% bootstrap interval of the mean (band)",
        "single seeds (thin)",
        "end of a seed's run (dot)",
        "after a seed stopped solved: its last evaluation (dashed)",
        "solved score (475)",
        "seeds solved: 5 of 5 (dash-dot, right axis)",
    ]
    timed = build_figure(group_runs(_stopped_seeds([10, 10, 10, 12, 26])), "time")
    assert "± std over the evaluation episodes, mean over seeds (dotted)" in [
        t.get_text() for t in timed.axes[0].get_legend().get_texts()
    ]


def test_a_very_low_first_evaluation_does_not_flatten_the_curve() -> None:
    """LunarLander's first evaluation at -1,000, the rest between -200 and 250: the axis is clipped, and says so."""
    xs = np.arange(1, 21, dtype=float) * 5000
    values = np.linspace(-200, 250, 20)
    values[0] = -1000.0
    run = RunCurves(Path("/r/ll"), "ll", 0, "E-v0", {}, 200.0, Curve(xs, xs / 100, values), None)
    evaluation = build_figure(group_runs([run])).axes[0]
    low, high = evaluation.get_ylim()
    assert -300 < low < -150 and high > 250
    legend = [t.get_text() for t in evaluation.get_legend().get_texts()]
    assert "below the clipped y axis: 1 point, down to -1,000" in legend, legend
    marks = [ln for ln in evaluation.get_lines() if ln.get_marker() == "v"]
    assert len(marks) == 1 and list(marks[0].get_xdata()) == [5000.0]  # where it is, at the bottom edge
    steady = RunCurves(Path("/r/ll"), "ll", 0, "E-v0", {}, 200.0, Curve(xs, xs / 100, np.linspace(-200, 250, 20)), None)
    calm = build_figure(group_runs([steady])).axes[0]
    assert not [t for t in calm.get_legend().get_texts() if "clipped" in t.get_text()]  # nothing clipped, nothing said

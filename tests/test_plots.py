"""``rlkit plot``: learning curves from evaluations.csv and Monitor CSVs, seeds grouped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlkit.analysis.plots import Curve, RunCurves, aggregate, group_runs, read_monitor_csv, smooth, t95
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


def test_mean_and_95_percent_interval_over_seeds() -> None:
    xs = np.array([0.0, 10.0, 20.0])
    a = Curve(xs, xs, np.array([0.0, 1.0, 2.0]))
    b = Curve(xs, xs, np.array([2.0, 3.0, 6.0]))
    x, mean, half = aggregate([a, b], "steps")
    assert x.tolist() == [0.0, 10.0, 20.0]
    assert mean.tolist() == [1.0, 2.0, 4.0]
    expected = t95(2) * np.std([[0, 1, 2], [2, 3, 6]], axis=0, ddof=1) / np.sqrt(2)
    assert half == pytest.approx(expected)
    # Different x values: interpolated on the common range only.
    c = Curve(np.array([5.0, 25.0]), np.array([5.0, 25.0]), np.array([0.0, 2.0]))
    x2, _, _ = aggregate([a, c], "steps")
    assert x2[0] == 5.0 and x2[-1] == 20.0


def _curves(alias: str, seed: int, lr: float) -> RunCurves:
    return RunCurves(Path(f"/r/{alias}{seed}{lr}"), alias, seed, "E-v0", {"learning_rate": lr}, None, None, None)


def test_seeds_group_and_configs_split_with_the_differing_key_in_the_label() -> None:
    groups = group_runs([_curves("cp", 0, 0.1), _curves("cp", 1, 0.1), _curves("cp", 0, 0.2), _curves("ll", 0, 0.1)])
    assert [len(g.runs) for g in groups] == [2, 1, 1]
    assert groups[0].label == "cp (learning_rate=0.1), 2 seeds"
    assert groups[1].label == "cp (learning_rate=0.2), seed 0"
    assert groups[2].label == "ll, seed 0"

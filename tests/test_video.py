"""``rlkit record``: a real, decodable video of full episodes; bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from tests.clitools import assert_one_line_error, invoke

EPISODE_LINE = re.compile(r"episode \d+: return (-?[\d.]+), length (\d+)")


def _decode(path: Path) -> list[np.ndarray]:
    import imageio.v2 as iio

    return [np.asarray(frame) for frame in iio.mimread(path, memtest=False)]


def _episodes(stdout: str) -> tuple[list[float], list[int]]:
    found = EPISODE_LINE.findall(stdout)
    return [float(r) for r, _ in found], [int(n) for _, n in found]


def test_mp4_has_one_frame_per_step_plus_reset_and_shows_the_game(run_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "agent.mp4"
    result = invoke("record", run_copy, "--episodes", "2", "--out", out, "--model", "final")
    assert result.exit_code == 0, result.output
    assert str(out) in result.stdout.replace("\n", "")
    returns, lengths = _episodes(result.stdout)
    assert len(lengths) == 2

    frames = _decode(out)
    assert len(frames) == sum(n + 1 for n in lengths)  # reset frame + one per step, per episode
    assert frames[0].shape == (400, 600, 3)
    for frame in (frames[0], frames[len(frames) // 2], frames[-1]):
        assert frame.std() > 10  # not a blank (single-colour) frame
    assert np.abs(frames[0].astype(int) - frames[lengths[0]].astype(int)).mean() > 0.1  # the pole moved

    # The recorded episodes are the evaluation episodes of the same seed.
    evaluated = invoke("evaluate", run_copy, "--episodes", "2", "--model", "final", "--json")
    assert json.loads(evaluated.stdout)["returns"] == pytest.approx(returns)


def test_default_output_in_run_dir_and_no_overwrite_without_force(run_copy: Path) -> None:
    first = invoke("record", run_copy)
    assert first.exit_code == 0, first.output
    video = run_copy / "videos" / "best-1ep.mp4"
    assert video.is_file()
    before = video.read_bytes()
    assert_one_line_error(invoke("record", run_copy), "already exists", "--force")
    assert video.read_bytes() == before
    again = invoke("record", run_copy, "--force", "--fps", "25")
    assert again.exit_code == 0, again.output
    assert "25 fps" in again.stdout


def test_gif_for_slides(run_copy: Path, tmp_path: Path) -> None:
    out = tmp_path / "agent.gif"
    result = invoke("record", run_copy, "--gif", "--out", out)
    assert result.exit_code == 0, result.output
    _, lengths = _episodes(result.stdout)
    expected = -(-(lengths[0] + 1) // 2)  # 50 fps halved to 25
    assert f"({expected} frames" in result.stdout
    frames = _decode(out)
    assert expected - 3 <= len(frames) <= expected  # the GIF encoder merges identical neighbours
    assert frames[0].shape[1] <= 320 and frames[0].std() > 10


def test_bad_output_paths(run_copy: Path, tmp_path: Path) -> None:
    assert_one_line_error(invoke("record", run_copy, "--out", tmp_path / "missing" / "a.mp4"), "does not exist")
    assert_one_line_error(invoke("record", run_copy, "--out", tmp_path / "a.avi"), "valid: .mp4, .gif")
    assert_one_line_error(invoke("record", run_copy, "--gif", "--out", tmp_path / "a.mp4"), "--gif")
    assert not list(tmp_path.glob("a.*"))


def test_bad_runs_and_models(run_copy: Path, tmp_path: Path) -> None:
    assert_one_line_error(invoke("record", tmp_path / "nope"), "not a run directory")
    assert_one_line_error(invoke("record", run_copy, "--model", "fnal"), "did you mean 'final'")
    (run_copy / "best_model.zip").write_bytes(b"PK\x03\x04 not really a zip")
    assert_one_line_error(invoke("record", run_copy, "--out", tmp_path / "x.mp4"), "cannot load model")
    assert not (tmp_path / "x.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.mp4")]  # no temporary left behind


@pytest.mark.slow
def test_atari_records_the_full_colour_screen(tmp_path: Path) -> None:
    pytest.importorskip("cv2", reason="SB3's AtariWrapper needs OpenCV")
    from rlkit.environments.resolve import resolve
    from rlkit.training.train import start

    overrides = ["n_timesteps=64", "learning_starts=1000", "buffer_size=100", "eval_freq=0", "checkpoint_freq=0"]
    run = start(
        resolve("pong", overrides=overrides), seed=0, device="cpu", run_dir=tmp_path / "pong", quiet=True
    ).run_dir
    out = tmp_path / "pong.mp4"
    result = invoke("record", run, "--out", out)
    assert result.exit_code == 0, result.output
    frames = _decode(out)
    assert frames[0].shape == (420, 320, 3)  # 210x160 colour screen, pixel-doubled; not 84x84
    assert len({tuple(px) for px in frames[10].reshape(-1, 3)[::97]}) > 2  # colours, not grayscale
    assert "emulator frames" in result.stdout


def test_bare_model_file_plus_env_name(run_copy: Path, tmp_path: Path) -> None:
    import shutil

    model = tmp_path / "agent.zip"
    shutil.copy(run_copy / "model.zip", model)
    result = invoke("record", model, "CartPole-v1")
    assert result.exit_code == 0, result.output
    video = tmp_path / "videos" / "agent-1ep.mp4"
    _, lengths = _episodes(result.stdout)
    assert len(_decode(video)) == lengths[0] + 1
    from_run = invoke("record", run_copy, "--model", "final", "--out", tmp_path / "run.mp4")
    assert _episodes(from_run.stdout) == _episodes(result.stdout)  # the same model on the same episodes
    assert_one_line_error(invoke("record", model), "bare model file", "rlkit record")
    assert_one_line_error(invoke("record", model, "Acrobot-v1", "--out", tmp_path / "x.mp4"), "does not fit")
    assert not (tmp_path / "x.mp4").exists()

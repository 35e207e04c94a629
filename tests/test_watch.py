"""``rlkit watch`` in a real window on a virtual X display (Xvfb), checked by a screenshot of the X screen."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.clitools import assert_one_line_error, invoke

CARTPOLE_POLE = (202, 152, 101)
"""The colour gymnasium's CartPole draws its pole in."""


@pytest.fixture(scope="module")
def xvfb() -> Iterator[str]:
    """A private Xvfb on a free display (``-displayfd``: the server picks it and says when it is ready)."""
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.skip("Xvfb is not installed (bash .ci/system-deps installs it: apt-get install xvfb)")
    server = subprocess.Popen(
        [binary, "-displayfd", "1", "-screen", "0", "800x600x24", "-nolisten", "tcp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        number = server.stdout.readline().strip()  # written once the server accepts clients
        assert number.isdigit(), f"Xvfb did not start (exit {server.poll()})"
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def display(xvfb: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's process draws on the Xvfb display through SDL's X11 driver (conftest sets ``dummy``)."""
    monkeypatch.setenv("DISPLAY", xvfb)
    monkeypatch.setenv("SDL_VIDEODRIVER", "x11")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    return xvfb


def _screenshot(display: str) -> np.ndarray:
    """The whole X screen as the X server holds it (not pygame's buffer)."""
    from PIL import ImageGrab

    return np.asarray(ImageGrab.grab(xdisplay=display).convert("RGB"))


def test_window_shows_the_game_and_the_running_return(run_copy: Path, display: str, tmp_path: Path) -> None:
    from PIL import Image

    from rlkit.analysis.watch import watch

    seen: dict[str, object] = {}

    def on_step(episode: int, step: int, running: float) -> None:
        if episode == 1 and step == 5:  # every CartPole episode lasts longer than 5 steps
            import pygame

            seen["screen"] = _screenshot(display)
            seen["title"] = pygame.display.get_caption()[0]
            seen["running"] = running

    result = watch(run_copy, episodes=2, fps=400, on_step=on_step)
    assert len(result.returns) == 2 and result.stopped is None
    assert all(r > 0 for r in result.returns) and result.lengths[0] == int(result.returns[0])  # CartPole: +1 a step
    screen = seen["screen"]
    assert isinstance(screen, np.ndarray)
    Image.fromarray(screen).save(tmp_path / "watch.png")
    colours = {tuple(px) for px in screen.reshape(-1, 3)[::7]}
    assert len(colours) > 3, "the X screen is blank"  # not one uniform colour: a window with a drawing
    assert CARTPOLE_POLE in {tuple(px) for px in screen.reshape(-1, 3)}, "no CartPole pole on the screen"
    assert seen["title"] == "rlkit watch · CartPole-v1 · best · episode 1/2 · step 5 · return 5.0"
    assert seen["running"] == 5.0


def test_cli_prints_each_episode_return(run_copy: Path, display: str) -> None:
    result = invoke("watch", run_copy, "--episodes", "2", "--fps", "500", "--model", "final")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("episode 1/2: return ") and lines[1].startswith("episode 2/2: return ")
    assert "CartPole-v1, model final: 2 episode(s), mean return" in lines[2]
    evaluated = invoke("evaluate", run_copy, "--episodes", "2", "--model", "final", "--json")
    returns = json.loads(evaluated.stdout)["returns"]
    assert [float(line.split("return ")[1].split(",")[0]) for line in lines[:2]] == pytest.approx(returns, abs=0.01)


def test_bare_model_file_plus_env(run_copy: Path, display: str, tmp_path: Path) -> None:
    model = tmp_path / "agent.zip"
    shutil.copy(run_copy / "model.zip", model)
    result = invoke("watch", model, "CartPole-v1", "--fps", "500")
    assert result.exit_code == 0, result.output
    assert "CartPole-v1, model agent: 1 episode(s)" in result.stdout


def test_closing_the_window_stops_cleanly(run_copy: Path, display: str) -> None:
    import pygame

    from rlkit.analysis.watch import watch

    def on_step(episode: int, step: int, running: float) -> None:
        if step == 5:
            pygame.event.post(pygame.event.Event(pygame.QUIT))

    result = watch(run_copy, episodes=3, fps=400, on_step=on_step)
    assert result.stopped == "window closed" and result.returns == []


def test_without_a_display_one_line(run_copy: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    assert_one_line_error(invoke("watch", run_copy), "no display", "rlkit record")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    assert_one_line_error(invoke("watch", run_copy), "SDL_VIDEODRIVER=dummy")
    assert os.environ["SDL_VIDEODRIVER"] == "dummy"


def test_bad_input_is_one_line(run_copy: Path, tmp_path: Path) -> None:
    assert_one_line_error(invoke("watch", tmp_path / "nope"), "not a run directory")
    assert_one_line_error(invoke("watch", run_copy, "--model", "bset"), "did you mean 'best'")
    assert_one_line_error(invoke("watch", run_copy, "--episodes", "0"), "--episodes must be at least 1")
    assert_one_line_error(invoke("watch", run_copy, "--fps", "0"), "--fps must be a positive, finite number")
    assert_one_line_error(invoke("watch", run_copy, "--fps", "nan"), "--fps must be a positive, finite number")
    assert_one_line_error(invoke("watch", run_copy, "--seed", "-1"), "a seed must be a whole number")
    assert_one_line_error(invoke("watch", run_copy / "model.zip"), "name the env", "rlkit watch")
    assert_one_line_error(invoke("watch", run_copy, "CartPole-v1"), "drop the env argument")
    assert_one_line_error(invoke("watch", run_copy / "model.zip", "cartpol"), "did you mean 'cartpole'")

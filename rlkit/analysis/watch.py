"""Watching an agent play in a window: the env's own ``render_mode="human"`` display.

The evaluation env is rebuilt from the run's config (or the preset named beside a bare model)
with ``render_mode="human"``: pygame draws classic-control and Box2D envs, ALE its own SDL
window for Atari. A thin wrapper on the outermost gymnasium env keeps the running return of the
episode in the window title (pygame envs), paces the steps when ``--fps`` is given and ends
the session when the window is closed. Episodes are played greedily through
:func:`rlkit.analysis.evaluation.play`, exactly as ``rlkit evaluate`` plays them.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlkit.core.errors import RlkitError

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

OnStep = Callable[[int, int, float], None]
"""``on_step(episode, step, running_return)`` after every step (episode counted from 1)."""


class WindowClosed(Exception):
    """The user closed the window."""


@dataclass
class Watched:
    """What a watch session played."""

    env_id: str
    model: str
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    length_unit: str = "steps"
    stopped: str | None = None
    """Why it ended before the episodes asked for: ``window closed`` or ``interrupted``; else ``None``."""


def require_display() -> None:
    """A window needs a display: an X server (``DISPLAY``) or Wayland; not SDL's off-screen driver."""
    if os.environ.get("SDL_VIDEODRIVER") == "dummy":
        raise RlkitError("SDL_VIDEODRIVER=dummy draws off-screen, so no window would appear; unset it to watch")
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise RlkitError(
            "no display to open a window on (DISPLAY is not set); use `rlkit record` for a video, "
            "or run under a virtual display: xvfb-run rlkit watch ..."
        )


def _pygame_display() -> Any:
    """pygame's display module when an env has opened a pygame window, else ``None``."""
    pygame = sys.modules.get("pygame")
    if pygame is None or not pygame.display.get_init() or pygame.display.get_surface() is None:
        return None
    return pygame


def attach_window(venv: VecEnv, title: str, episodes: int, fps: float | None, on_step: OnStep | None) -> None:
    """Wrap the single env inside the VecEnv: running return in the title, pacing, window-close detection."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    inner = venv.unwrapped
    if not isinstance(inner, DummyVecEnv) or inner.num_envs != 1:
        raise RlkitError("watching needs a single-env DummyVecEnv")
    if fps is not None:
        base = inner.envs[0].unwrapped
        base.metadata = {**base.metadata, "render_fps": fps}  # pygame envs tick their clock at render_fps

    class Window(gym.Wrapper[Any, Any, Any, Any]):
        episode = 0
        step_count = 0
        running = 0.0
        last = 0.0

        def reset(self, **kwargs: Any) -> Any:
            result = self.env.reset(**kwargs)
            self.episode += 1
            self.step_count = 0
            self.running = 0.0
            self._show()
            return result

        def step(self, action: Any) -> Any:
            if fps is not None:
                wait = self.last + 1.0 / fps - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                self.last = time.perf_counter()
            result = self.env.step(action)
            self.step_count += 1
            self.running += float(result[1])
            self._show()
            if on_step is not None:
                on_step(self.episode, self.step_count, self.running)
            return result

        def _show(self) -> None:
            pygame = _pygame_display()
            if pygame is None:
                return
            shown = min(self.episode, episodes)
            pygame.display.set_caption(
                f"{title} · episode {shown}/{episodes} · step {self.step_count} · return {self.running:.1f}"
            )
            if pygame.event.get(pygame.QUIT):
                raise WindowClosed

    inner.envs[0] = Window(inner.envs[0])


def watch(
    path: Path,
    env_name: str | None = None,
    *,
    model_name: str = "auto",
    episodes: int = 1,
    fps: float | None = None,
    seed: int | None = None,
    on_episode: Callable[[float, int], None] | None = None,
    on_step: OnStep | None = None,
) -> Watched:
    """Play ``episodes`` greedy episodes of a run's model (or a bare model on ``env_name``) in a window."""
    from rlkit.analysis.evaluation import (
        DEFAULT_EVAL_SEED,
        check_fits,
        length_unit,
        load_source_model,
        open_source,
        play,
    )
    from rlkit.core.seeds import check_seed
    from rlkit.environments.factory import make_env

    if episodes < 1:
        raise RlkitError(f"--episodes must be at least 1 (got {episodes})")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise RlkitError(f"--fps must be a positive, finite number of steps per second (got {fps:g})")
    if seed is not None:
        check_seed(seed)
    source = open_source(path, env_name, model_name, command="watch")
    require_display()
    os.environ.setdefault("SDL_AUDIODRIVER", "dummy")  # no sound, and no ALSA complaints without a sound card
    model = load_source_model(source)
    env = make_env(
        source.preset,
        n_envs=1,
        seed=DEFAULT_EVAL_SEED if seed is None else seed,
        train=False,
        render_mode="human",
    )
    watched = Watched(source.preset.env_id, source.label, length_unit=length_unit(source.preset))

    def finished(episode_return: float, length: int) -> None:
        watched.returns.append(episode_return)
        watched.lengths.append(length)
        if on_episode is not None:
            on_episode(episode_return, length)

    try:
        check_fits(model, env, source)
        attach_window(env, f"rlkit watch · {source.preset.env_id} · {source.label}", episodes, fps, on_step)
        play(model, env, episodes, epsilon=None, on_episode=finished)
    except WindowClosed:
        watched.stopped = "window closed"
    except KeyboardInterrupt:
        watched.stopped = "interrupted"
    finally:
        env.close()
    return watched

"""Recording evaluation episodes of a run as MP4 (or GIF), headless.

The evaluation env is rebuilt from the run's config with ``render_mode="rgb_array"``; a thin
wrapper on the outermost gymnasium env grabs ``env.render()`` after every reset and step, so
each episode contributes ``length + 1`` frames, its last one the terminal state. For Atari,
``render()`` reaches the emulator itself: the video shows the full-colour 210x160 screen
(pixel-doubled), not the 84x84 grayscale network input. Frames stream straight to the
encoder (imageio-ffmpeg, H.264 yuv420p, browser-playable); the file is published atomically.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from rlkit.core import atomic
from rlkit.core.errors import RlkitError
from rlkit.core.seeds import check_seed

if TYPE_CHECKING:
    from stable_baselines3.common.vec_env import VecEnv

    from rlkit.config.schema import Preset

Frame = np.ndarray[Any, np.dtype[np.uint8]]
Sink = Callable[[Frame], None]

VIDEO_SUFFIXES = (".mp4", ".gif")
GIF_MAX_WIDTH = 320
GIF_MAX_FPS = 25
MIN_VIDEO_SIDE = 300


@dataclass
class Recording:
    """What ``record`` produced."""

    path: Path
    model: str
    returns: list[float]
    lengths: list[int]
    frames: int
    fps: float
    size: tuple[int, int]
    """Width and height of the written frames."""
    length_unit: str = "steps"


def check_output(path: Path, force: bool) -> None:
    """A writable new video path (see :func:`rlkit.core.atomic.check_new_output`)."""
    atomic.check_new_output(path, force, VIDEO_SUFFIXES, "video", "--out")


def check_request(episodes: int, fps: float | None, seed: int | None) -> None:
    """Reject impossible episode counts, frame rates and seeds before anything is read or written."""
    if episodes < 1:
        raise RlkitError(f"--episodes must be at least 1 (got {episodes})")
    if fps is not None and not (math.isfinite(fps) and fps > 0):
        raise RlkitError(f"--fps must be a positive, finite number of frames per second (got {fps:g})")
    if seed is not None:
        check_seed(seed)


def default_fps(preset: Preset, env: VecEnv) -> float:
    """Real time: Atari runs at 60 Hz divided by the frame skip; other envs declare ``render_fps``."""
    if preset.atari is not None:
        return 60.0 / preset.atari.frame_skip
    fps = env.metadata.get("render_fps") if env.metadata else None
    return float(fps) if isinstance(fps, (int, float)) and fps > 0 else 30.0


def upscale(frame: Frame) -> Frame:
    """Pixel-double small screens (Atari's 210x160) so the video is watchable; even sides for yuv420p."""
    height, width = frame.shape[:2]
    factor = max(1, -(-MIN_VIDEO_SIDE // min(height, width)))
    if factor > 1:
        frame = frame.repeat(factor, axis=0).repeat(factor, axis=1)
    return frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2]


def attach_frame_grabber(venv: VecEnv, sink: Sink) -> None:
    """Wrap the single env inside the VecEnv so every reset and step renders one frame into ``sink``."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    class FrameGrabber(gym.Wrapper[Any, Any, Any, Any]):
        # The first frame of an episode is held back until its first step: the VecEnv's
        # automatic reset after the last requested episode must not add a stray frame.
        pending: Frame | None = None

        def reset(self, **kwargs: Any) -> Any:
            result = self.env.reset(**kwargs)
            self.pending = self._render()
            return result

        def step(self, action: Any) -> Any:
            result = self.env.step(action)
            if self.pending is not None:
                sink(self.pending)
                self.pending = None
            sink(self._render())
            return result

        def _render(self) -> Frame:
            frame = self.env.render()
            if frame is None:
                raise RlkitError("the environment rendered no frame (render_mode='rgb_array' unsupported?)")
            return np.asarray(frame, dtype=np.uint8)

    inner = venv.unwrapped
    if not isinstance(inner, DummyVecEnv) or inner.num_envs != 1:
        raise RlkitError("recording needs a single-env DummyVecEnv")
    inner.envs[0] = FrameGrabber(inner.envs[0])


class VideoWriter:
    """Streams frames to an MP4 (H.264, yuv420p, fast start) or GIF file at ``tmp``; counts them.

    The MP4 encoder starts at the first frame, whose size it needs; ffmpeg is told the container
    (``-f mp4``) so the temporary file name of the atomic write does not matter.
    """

    def __init__(self, tmp: Path, kind: str, fps: float) -> None:
        self.tmp = tmp
        self.kind = kind
        self.count = 0
        self.size = (0, 0)
        self.step = max(1, round(fps / GIF_MAX_FPS)) if kind == ".gif" else 1
        self.fps = fps / self.step
        self._seen = 0
        self._gif: Any = None
        self._mp4: Any = None
        if kind == ".gif":
            import imageio.v2 as iio

            self._gif = iio.get_writer(tmp, format="GIF", mode="I", duration=1000.0 / self.fps, loop=0)

    def __call__(self, frame: Frame) -> None:
        self._seen += 1
        if (self._seen - 1) % self.step:
            return
        frame = upscale(frame)
        if self._gif is not None:
            if frame.shape[1] > GIF_MAX_WIDTH:
                stride = -(-frame.shape[1] // GIF_MAX_WIDTH)
                frame = frame[::stride, ::stride]
            self._gif.append_data(frame)
        else:
            if self._mp4 is None:
                self._mp4 = self._start_mp4(frame)
            self._mp4.send(np.ascontiguousarray(frame))
        self.count += 1
        self.size = (int(frame.shape[1]), int(frame.shape[0]))

    def _start_mp4(self, frame: Frame) -> Any:
        import imageio_ffmpeg

        writer = imageio_ffmpeg.write_frames(
            str(self.tmp),
            (int(frame.shape[1]), int(frame.shape[0])),
            fps=self.fps,
            codec="libx264",
            pix_fmt_out="yuv420p",
            macro_block_size=2,
            output_params=["-f", "mp4", "-movflags", "+faststart"],
        )
        writer.send(None)  # start the generator
        return writer

    def close(self) -> None:
        if self._gif is not None:
            self._gif.close()
        if self._mp4 is not None:
            self._mp4.close()
        os.chmod(self.tmp, 0o644)  # a file to share, not a private temporary


def record_run(
    run_path: Path,
    out: Path,
    *,
    env_name: str | None = None,
    model_name: str = "auto",
    episodes: int = 1,
    fps: float | None = None,
    seed: int | None = None,
    force: bool = False,
    on_episode: Callable[[float, int], None] | None = None,
    create_folder: bool = False,
) -> Recording:
    """Play ``episodes`` greedy evaluation episodes of a run's model (or a bare model on ``env_name``) into ``out``.

    ``create_folder`` makes ``out``'s folder (the run's ``videos/``) once the request is known to be good.
    """
    from rlkit.analysis.evaluation import (
        DEFAULT_EVAL_SEED,
        check_fits,
        length_unit,
        load_source_model,
        open_source,
        play,
    )
    from rlkit.environments.factory import accepts_render_mode, make_env
    from rlkit.environments.imports import ensure_imported

    check_request(episodes, fps, seed)
    source = open_source(run_path, env_name, model_name, command="record")
    preset = source.preset
    ensure_imported(preset)
    if not accepts_render_mode(preset.env_id):
        raise RlkitError(
            f"{preset.env_id} cannot render frames: its constructor takes no render_mode argument "
            "(a video needs render_mode='rgb_array', see docs/custom-envs.md)"
        )
    if create_folder:
        out.parent.mkdir(exist_ok=True)
    check_output(out, force)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # pygame renders off-screen: no display, no X server
    model = load_source_model(source)
    seed = DEFAULT_EVAL_SEED if seed is None else seed
    env = make_env(preset, n_envs=1, seed=seed, train=False, render_mode="rgb_array")
    try:
        check_fits(model, env, source)
    except RlkitError:
        env.close()
        raise
    rate = fps if fps is not None else default_fps(preset, env)
    result: dict[str, Any] = {}

    def encode(tmp: Path) -> None:
        writer = VideoWriter(tmp, out.suffix.lower(), rate)
        attach_frame_grabber(env, writer)
        try:
            result["episodes"] = play(model, env, episodes, epsilon=None, on_episode=on_episode)
        finally:
            writer.close()
            env.close()
        result["writer"] = writer

    atomic.write_with(out, encode)
    returns, lengths = result["episodes"]
    writer = result["writer"]
    return Recording(out, source.label, returns, lengths, writer.count, writer.fps, writer.size, length_unit(preset))


def default_video_path(run_path: Path, model: str, episodes: int, gif: bool) -> Path:
    """``<run>/videos/<model>-<N>ep.mp4`` (or ``.gif``); for a bare ``model.zip``, ``videos/`` beside it."""
    folder = run_path.parent if run_path.is_file() else run_path
    return folder / "videos" / f"{model}-{episodes}ep{'.gif' if gif else '.mp4'}"

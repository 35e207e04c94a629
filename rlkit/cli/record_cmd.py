"""``rlkit record``: an MP4 (or GIF) of a trained agent playing full evaluation episodes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rlkit.cli.common import EnvArg, ModelOpt, SourceArg, one_line_errors, out, prose, seed_value
from rlkit.cli.progress import episode_progress


@one_line_errors
def record(
    run_dir: SourceArg,
    env: EnvArg = None,
    out_path: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Output .mp4 or .gif (default RUN_DIR/videos/<model>-<N>ep.mp4)."),
    ] = None,
    episodes: Annotated[int, typer.Option(help="Number of full episodes in the video.")] = 1,
    fps: Annotated[Optional[float], typer.Option(help="Frames per second (default: the game's real time).")] = None,
    model: ModelOpt = "auto",
    gif: Annotated[bool, typer.Option("--gif", help="Write an animated GIF (for slides) instead of MP4.")] = False,
    seed: Annotated[
        Optional[int],
        typer.Option(
            parser=seed_value, metavar="SEED", help="Seed of the episodes, 0 to 2**32-1 (default: as `rlkit evaluate`)."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing output file.")] = False,
) -> None:
    """Record the agent (greedy policy) headless; prints the file, episode returns and lengths."""
    from rlkit import api

    with episode_progress(episodes, "record") as on_episode:
        result = api.record(
            run_dir, env=env, model=model, episodes=episodes, out=out_path, fps=fps, gif=gif, seed=seed, force=force,
            on_episode=on_episode,
        )  # fmt: skip
    prose(
        f"wrote {result.path} ({result.frames} frames, {result.size[0]}x{result.size[1]}, "
        f"{result.fps:g} fps, model {result.model})"
    )
    for i, (ret, length) in enumerate(zip(result.returns, result.lengths, strict=True), start=1):
        out.print(f"  episode {i}: return {ret:.2f}, length {length} {result.length_unit}")

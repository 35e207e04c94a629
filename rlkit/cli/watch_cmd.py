"""``rlkit watch``: the agent playing in a window, each episode's return on the terminal."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rlkit.cli.common import EnvArg, ModelOpt, SourceArg, one_line_errors, out, prose


@one_line_errors
def watch(
    run_dir: SourceArg,
    env: EnvArg = None,
    episodes: Annotated[int, typer.Option(help="Number of episodes to play.")] = 1,
    model: ModelOpt = "auto",
    fps: Annotated[
        Optional[float],
        typer.Option(help="Steps per second (default: the env's real time; Atari cannot go faster than real time)."),
    ] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the episodes (default: as `rlkit evaluate`).")] = None,
) -> None:
    """Watch the agent (greedy policy) play in a window; the running return is in the window title.

    Needs a display (an X server, Wayland, or `xvfb-run`); `rlkit record` makes a video headless. Close the window or press Ctrl-C to stop early.
    """
    from rlkit.analysis.watch import watch as play_in_window

    count = [0]

    def on_episode(episode_return: float, length: int) -> None:
        count[0] += 1
        out.print(f"episode {count[0]}/{episodes}: return {episode_return:.2f}, length {length}")

    result = play_in_window(
        run_dir, env, model_name=model, episodes=episodes, fps=fps, seed=seed, on_episode=on_episode
    )
    if result.returns:
        mean = sum(result.returns) / len(result.returns)
        prose(
            f"{result.env_id}, model {result.model}: {len(result.returns)} episode(s), mean return {mean:.2f} "
            f"(lengths in {result.length_unit})"
        )
    if result.stopped is not None:
        out.print(f"stopped: {result.stopped} after {len(result.returns)} of {episodes} episode(s)")

"""A transient episode progress bar shared by the commands that play episodes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rlkit.cli.common import err

OnEpisode = Callable[[float, int], None]


@contextlib.contextmanager
def episode_progress(total: int, label: str, enabled: bool = True) -> Iterator[OnEpisode | None]:
    """Yield an ``on_episode(return, length)`` callback advancing a bar on stderr (None when not a terminal)."""
    if not enabled or not err.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[last]}"),
        console=err,
        transient=True,
    )
    task = progress.add_task(label, total=total, last="")

    def advance(episode_return: float, length: int) -> None:
        progress.update(task, advance=1, last=f"last return {episode_return:.1f} ({length} steps)")

    with progress:
        yield advance

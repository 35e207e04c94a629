"""A rich ``Console`` that keeps going when its reader goes away (``rlkit train ... | head``)."""

from __future__ import annotations

import os
import sys
from typing import Any

from rich.console import Console


class PipeSafeConsole(Console):
    """rich's Console, except that a closed pipe silences it instead of exiting the program.

    rich's default answer to ``BrokenPipeError`` is ``SystemExit(1)``, which in the middle of a
    run would stop training as if it had crashed. A run whose output nobody reads any more
    goes on to its end quietly, and records its end in ``state.json`` as usual.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)

    def on_broken_pipe(self) -> None:
        self.quiet = True
        stream = sys.stderr if self.stderr else sys.stdout
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
        except (OSError, ValueError):  # no real file descriptor (a test's capture): nothing to redirect
            pass

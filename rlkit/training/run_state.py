"""The one writer of a run's ``state.json``: each change of a run's life is one method here.

``state.json`` is what readers trust (``rlkit report``, ``doctor``, ``benchmark``, a resume after
``kill -9``): its keys are written in these transitions only (``tests/test_layers.py`` checks that
nothing else calls :meth:`RunDir.update_state`), so what each status means is written down once:

- ``running``: a session trains it (``num_timesteps`` and ``last_checkpoint`` advance with each checkpoint);
- ``interrupted``: a signal stopped it at a checkpoint it saved (``num_timesteps`` = that checkpoint's step);
  after a second Ctrl-C, at the last intact one, with ``reached`` and a ``note``;
- ``crashed``: an error stopped it (``error``), resumable from ``last_checkpoint``;
- ``finished``: it trained its budget (or stopped once solved); ``final_eval``, ``best_mean_reward``,
  ``steps_per_s`` of the last session.
``solved_at`` and ``confirmations`` record the stopping rule's decisions; a resume drops what
belongs to steps it replays.
"""

from __future__ import annotations

import math
from typing import Any

from rlkit.training.rundir import RunDir, now_iso

SESSION_KEYS = ("error", "note", "reached", "solved_at", "solved")
"""What one session leaves that the next one decides again."""


class RunState:
    """The transitions of ``run``'s ``state.json``."""

    def __init__(self, run: RunDir) -> None:
        self.run = run

    def started(self, n_timesteps: int) -> None:
        self.run.update_state(status="running", num_timesteps=0, n_timesteps=n_timesteps, wall_s=0.0)

    def resumed(self, state: dict[str, Any], steps: int, wall: float, *, exact: bool, solved_at: Any) -> None:
        """A resume from the checkpoint at ``steps`` proceeds: later confirmations and solves are replayed."""
        changes: dict[str, Any] = {"status": "running", "num_timesteps": steps, "wall_s": wall}
        if not exact:
            changes["inexact_resumes"] = [*state.get("inexact_resumes", []), steps]
            changes["resume_exact"] = False
        if solved_at is not None:
            changes.update(solved=True, solved_at=solved_at)
        if isinstance(state.get("confirmations"), list):
            changes["confirmations"] = [
                c for c in state["confirmations"] if isinstance(c, dict) and c.get("timesteps", math.inf) <= steps
            ]
        self.run.update_state(forget=SESSION_KEYS, **changes)

    def budget(self, n_timesteps: int, history: list[int]) -> None:
        self.run.update_state(n_timesteps=n_timesteps, budget_history=history)

    def checkpointed(self, steps: int, wall: float) -> None:
        """Even after ``kill -9`` the state says how far the run can be resumed."""
        self.run.update_state(num_timesteps=steps, last_checkpoint=steps, wall_s=wall)

    def confirmed(self, row: dict[str, Any]) -> None:
        found = self.run.read_state().get("confirmations")
        earlier: list[Any] = found if isinstance(found, list) else []
        self.run.update_state(confirmations=[*earlier, row])

    def solved(self, at: dict[str, float]) -> None:
        self.run.update_state(solved=True, solved_at=at)

    def interrupted(self, steps: int, wall: float) -> None:
        self.run.update_state(status="interrupted", num_timesteps=steps, last_checkpoint=steps, wall_s=wall)

    def abandoned(self, good: int | None, reached: int, note: str, wall: float) -> None:
        """A second Ctrl-C: the run stands at its last intact checkpoint (``good``)."""
        self.run.update_state(
            status="interrupted", num_timesteps=good or 0, last_checkpoint=good, reached=reached, note=note, wall_s=wall
        )

    def crashed(self, good: int | None, reached: int, error: str, wall: float) -> None:
        self.run.update_state(
            status="crashed", error=error, num_timesteps=good or 0, last_checkpoint=good, reached=reached, wall_s=wall
        )

    def finished(self, steps: int, wall: float, **figures: Any) -> None:
        """``figures``: ``steps_per_s``, ``best_mean_reward``, ``final_eval``, ``solved``, ``torch_thread_shares``."""
        self.run.update_state(status="finished", num_timesteps=steps, wall_s=wall, finished=now_iso(), **figures)

"""Torch's CPU thread count during training: fixed, or chosen by measuring it (``torch_threads: 0``).

For the small MLP Q-networks of classic control and Box2D, two threads make a gradient step
faster on an idle machine (the matrix products split across cores) and much slower on a busy
one (each product waits for a thread that another process holds). Neither count is right
everywhere, and the load changes while a run trains. So, with ``torch_threads: 0`` on the CPU,
:class:`ThreadTuner` measures: between two training phases it times whole cycles (collecting
``train_freq`` env steps and the gradient steps after them) at each candidate count,
interleaved, keeps the one with the lowest median time per env step (more threads only when
they are at least :data:`MIN_GAIN` faster), holds it for a while, and measures again; a winner
that keeps winning is re-checked less and less often. A count far slower than the best stops
being timed after a few cycles, and a count that needs cores other tasks are running on (Linux's
count of runnable tasks, read over the last cycles before a measurement) is not timed at all:
two rlkit runs side by side then both stay at one thread without paying for the question.

Switching threads must not change results: a run's parameters would otherwise depend on the
machine's load. :func:`rlkit.dqn.invariance.thread_invariant` checks, before any switch, that the model's own
gradient step (:class:`~rlkit.dqn.mlp_update.MlpUpdate`, run on copies of its networks with a
synthetic batch of its shapes) gives bit-identical gradients, gradient norm and Q-values at every
candidate count. Where it does not (some BLAS builds, large layers whose reductions split across
threads), or for networks that take the autograd path, the count stays fixed.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch as th

from rlkit.core.errors import RlkitError

MIN_GAIN = 0.05
"""More threads are kept only when they are at least this much faster per env step (they cost CPU)."""

CLEAR_LOSS = 0.5
"""A candidate this much slower than the best after :data:`CLEAR_AFTER` samples each is not timed further."""

CLEAR_AFTER = 3

CROWD_SAMPLES = 8
"""Readings of the other runnable tasks taken over the last cycles before a measurement."""

MAX_KEPT = 100
"""Measurements kept for reports (a long run on a busy machine looks again every few hundred cycles)."""

MAX_CANDIDATE = 4
"""The largest thread count tried for an MLP (beyond it the products are too small to split)."""


CORES_VAR = "RLKIT_CORES"
"""Environment variable: the cores this process may use for torch (set for each of rlkit's parallel
jobs, so that jobs side by side do not each reach for every core; users may set it too)."""


def available_cores() -> int:
    """CPU cores this process may use: its affinity, capped by ``RLKIT_CORES`` when set."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    share = os.environ.get(CORES_VAR)
    if share is None:
        return cores
    if not share.strip().isdigit() or int(share) < 1:
        raise RlkitError(f"{CORES_VAR}={share!r}: must be a whole number of cores, at least 1 (or unset)")
    return min(cores, int(share))


def cores_per_job(jobs: int) -> int:
    """Each of ``jobs`` processes side by side gets an equal share of the cores (at least one)."""
    return max(1, available_cores() // max(1, jobs))


def job_environment(jobs: int) -> dict[str, str]:
    """``os.environ`` for one of ``jobs`` worker processes: ``RLKIT_CORES`` set to its share."""
    env = dict(os.environ)
    if jobs > 1:
        env[CORES_VAR] = str(cores_per_job(jobs))
    return env


def use_cores(cores: int | None) -> None:
    """Set this process's ``RLKIT_CORES`` (a worker process's initializer); ``None`` leaves it as it is."""
    if cores is not None:
        os.environ[CORES_VAR] = str(cores)


def other_runnable() -> int | None:
    """Tasks on the machine running or ready to run now, besides this process's own threads.

    Linux's ``/proc/loadavg`` (its fourth field counts runnable tasks) less this process's
    threads in state ``R``; ``None`` where ``/proc`` is not there. About 40 µs.
    """
    try:
        with open("/proc/loadavg") as fh:
            runnable = int(fh.read().split()[3].split("/")[0])
        own = 0
        for tid in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{tid}/stat") as fh:
                    own += fh.read().rsplit(")", 1)[1].split()[0] == "R"
            except OSError:  # the thread ended meanwhile
                continue
    except (OSError, ValueError, IndexError):
        return None
    return max(0, runnable - own)


def candidate_counts(cores: int) -> tuple[int, ...]:
    """1, 2, 4, ... up to :data:`MAX_CANDIDATE` and the available cores."""
    counts = [1]
    while counts[-1] * 2 <= min(cores, MAX_CANDIDATE):
        counts.append(counts[-1] * 2)
    return tuple(counts)


@dataclass
class ThreadTuner:
    """Picks the thread count by timing training cycles at each candidate (module docstring).

    Call :meth:`cycle` at the start of every training phase with the env step counter; it sets
    torch's thread count for the cycle that follows. :meth:`restart` forgets the running clock
    (a new ``learn()`` call: the pause before it is no cycle).
    """

    candidates: tuple[int, ...]
    probe_cycles: int = 12
    """Cycles timed at each candidate per measurement (interleaved)."""
    hold_cycles: int = 250
    """Cycles the winner is kept before the first re-measurement (short: the first measurement, at
    the start of learning, is the least reliable)."""
    max_hold_cycles: int = 16000
    """The longest hold: it doubles each time the same count wins again."""
    cores: int = 0
    """The cores this process may use (0: the largest candidate)."""
    crowd: Callable[[], int | None] | None = other_runnable
    """Other tasks that want a core now (``None``: unknown). Before a measurement, counts that would
    need a core those tasks hold are not timed: there they only wait (see :meth:`_worth_timing`)."""
    clock: Callable[[], float] = time.perf_counter

    current: int = field(init=False)
    winner: int | None = field(init=False, default=None)
    """The count chosen by the last measurement (``None`` before the first one ends)."""
    measurements: deque[dict[str, Any]] = field(init=False, default_factory=lambda: deque(maxlen=MAX_KEPT))
    """The last :data:`MAX_KEPT` measurements: env step, median seconds per env step of each count
    timed (none when the other cores were taken), the winner, the other runnable tasks seen."""

    def __post_init__(self) -> None:
        if not self.candidates or min(self.candidates) < 1:
            raise ValueError("ThreadTuner needs thread counts of at least 1")
        self.current = self.candidates[0]
        self._hold = self.hold_cycles
        self._hold_left = 0
        self._plan: list[int] = []
        self._samples: dict[int, list[float]] = {c: [] for c in self.candidates}
        self._probing = False  # whether the cycle now running is timed
        self._last: tuple[float, int] | None = None
        self._cycles = {c: 0 for c in self.candidates}
        self._crowd: list[int] = []
        self._others: int | None = None
        self.cores = self.cores or max(self.candidates)

    def restart(self) -> None:
        """Forget the running cycle's start (call at the start of ``learn()``)."""
        self._last = None

    def cycle(self, num_timesteps: int) -> int:
        """Close the cycle that just ended, set and return the count for the next one."""
        now = self.clock()
        if self._probing and self._last is not None and num_timesteps > self._last[1]:
            self._samples[self.current].append((now - self._last[0]) / (num_timesteps - self._last[1]))
            self._drop_clear_losers()
        self._last = (now, num_timesteps)
        self.current = self._next(num_timesteps)
        self._cycles[self.current] += 1
        th.set_num_threads(self.current)  # every cycle: cheap, and robust to anyone else setting it
        return self.current

    def cycle_shares(self) -> dict[int, float]:
        """The fraction of cycles run at each candidate so far."""
        total = sum(self._cycles.values()) or 1
        return {c: n / total for c, n in self._cycles.items()}

    def summary(self) -> dict[str, Any]:
        """JSON-ready: candidates, the share of cycles at each, the measurements (seconds per env step)."""
        return {
            "candidates": list(self.candidates),
            "cycle_shares": {str(c): round(f, 4) for c, f in self.cycle_shares().items()},
            "measurements": [
                {**m, "s_per_step": {str(c): v for c, v in m["s_per_step"].items()}} for m in self.measurements
            ],
        }

    def _next(self, num_timesteps: int) -> int:
        if not self._plan and self._probing:
            self._decide(num_timesteps)
        if self._plan:
            self._probing = True
            return self._plan.pop(0)
        self._probing = False
        if self.winner is not None and self._hold_left > 0:
            self._hold_left -= 1
            if self._hold_left < CROWD_SAMPLES:
                self._read_crowd()
            return self.winner
        counts, others = self._worth_timing()
        if len(counts) < 2:  # the other cores are taken: nothing to time, look again after a short hold
            self.winner, self._hold, self._hold_left = counts[0], self.hold_cycles, self.hold_cycles
            self.measurements.append({"step": num_timesteps, "s_per_step": {}, "threads": counts[0], "others": others})
            return counts[0]
        self._plan = [c for _ in range(self.probe_cycles) for c in counts]
        self._samples = {c: [] for c in counts}
        self._others = others
        self._probing = True
        return self._plan.pop(0)

    def _read_crowd(self) -> None:
        if self.crowd is not None:
            others = self.crowd()
            if others is not None:
                self._crowd.append(others)

    def _worth_timing(self) -> tuple[list[int], int | None]:
        """The candidates with the cores they need free (median of the last readings); other tasks seen."""
        if not self._crowd:  # the first measurement: no hold before it
            for _ in range(3):
                self._read_crowd()
        readings, self._crowd = self._crowd, []
        if not readings:
            return list(self.candidates), None
        others = int(statistics.median_low(readings))
        spare = self.cores - 1 - others
        return [c for c in self.candidates if c == self.candidates[0] or c - 1 <= spare], others

    def _drop_clear_losers(self) -> None:
        """Stop timing candidates far slower than the best: on a busy machine each such cycle is costly."""
        if any(len(samples) < CLEAR_AFTER for samples in self._samples.values()):
            return
        medians = {c: statistics.median(s) for c, s in self._samples.items()}
        best = min(medians.values())
        losers = {c for c, m in medians.items() if m > best * (1.0 + CLEAR_LOSS)}
        if losers:
            self._plan = [c for c in self._plan if c not in losers]

    def _decide(self, num_timesteps: int) -> None:
        medians = {c: statistics.median(s) for c, s in self._samples.items() if s}
        self._probing = False
        if len(medians) < 2:  # the env step counter did not move (train() called by hand): nothing learnt
            self._hold_left = self.hold_cycles
            self.winner = self.winner or self.candidates[0]
            return
        best = min(medians)
        for count in sorted(medians):  # fewer threads first: more must beat them by MIN_GAIN
            if medians[count] < medians[best] * (1.0 - MIN_GAIN):
                best = count
        self._hold = min(self._hold * 2, self.max_hold_cycles) if best == self.winner else self.hold_cycles
        self._hold_left = self._hold
        self.winner = best
        self.measurements.append(
            {"step": num_timesteps, "s_per_step": medians, "threads": best, "others": self._others}
        )

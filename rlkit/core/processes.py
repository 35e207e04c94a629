"""Child processes that never outlive their parent, and that the parent alone stops.

The small pieces the owners of rlkit's child processes share (subprocess envs:
:mod:`rlkit.environments.subproc`; seed and trial workers: :mod:`rlkit.core.children`):
blocking the stop signals while a child starts, a child that ignores them (the parent decides)
or dies with its parent (Linux ``PR_SET_PDEATHSIG``), and a bounded stop (wait, then kill).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""What a terminal, a scheduler or a closed SSH session sends: the signals rlkit turns into a clean stop."""

_PR_SET_PDEATHSIG = 1


@contextlib.contextmanager
def stop_signals_blocked() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP back while children start (they inherit the mask, so a Ctrl-C
    that lands before a child's own handlers are set cannot kill it); delivered to this process after."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def ignore_stop_signals() -> None:
    """In a child: SIGINT, SIGTERM and SIGHUP are ignored (its parent stops it), then unblocked."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def die_with_parent(sig: int = signal.SIGKILL, parent: int | None = None) -> bool:
    """In a child: the kernel sends ``sig`` when the parent ends, however it ends (``kill -9`` too).

    Linux only (``prctl(PR_SET_PDEATHSIG)``); elsewhere nothing, and False. ``parent``: the pid the
    child was started by; if it is already gone, ``sig`` is sent at once.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if parent is not None and os.getppid() != parent:  # it ended before the request was in place
        os.kill(os.getpid(), sig)
    return True


def describe_exit(code: int | None) -> str:
    """``killed by SIGKILL``, ``exited with code 3``: how a child ended, from its exit code."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"

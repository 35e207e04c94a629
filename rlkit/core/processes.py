"""Child processes that never outlive their parent, and that the parent alone stops.

:class:`Children` owns the worker processes of ``rlkit benchmark`` (its seeds) and ``rlkit tune
--jobs`` (its workers); :mod:`rlkit.environments.subproc` owns subprocess envs with the same
pieces: the stop signals held back while a child starts, a child that ignores them (the parent
decides) or ends with its parent (Linux ``PR_SET_PDEATHSIG``), and a bounded stop (wait, then kill).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

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


PARENT_VAR = "RLKIT_PARENT_PID"
"""Set by :class:`Children` for each child: the pid whose end the child follows (:func:`follow_parent`)."""


def follow_parent() -> int | None:
    """In an rlkit child process (``RLKIT_PARENT_PID`` set): get SIGTERM when that parent ends, however it ends.

    SIGTERM, not SIGKILL: a training child then saves a checkpoint before it goes. The stop
    signals, held back while :meth:`Children.start` started it, are let through again. The variable
    is dropped so that this process's own children do not follow the wrong parent. Returns the
    parent's pid (``None`` outside such a child).
    """
    raw = os.environ.pop(PARENT_VAR, None)
    if raw is None or not raw.isdigit():
        return None
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    die_with_parent(signal.SIGTERM, parent=int(raw))
    return int(raw)


class Children:
    """The child processes of one command (``rlkit benchmark``'s seeds, ``rlkit tune --jobs``'s workers).

    Each child starts in a session of its own (a terminal's Ctrl-C reaches only the parent, which
    decides) and follows its parent's end (:func:`follow_parent`: SIGTERM when the parent dies,
    ``kill -9`` included). :meth:`stop` passes one signal to each child's whole process group (its
    own children too: env workers, fork servers, resource trackers), waits up to ``grace_s`` for
    them to save and exit, then kills what is left. Leaving the ``with`` block stops whatever still runs.
    """

    def __init__(self, grace_s: float = 30.0) -> None:
        self.grace_s = grace_s
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self, argv: list[str], *, env: dict[str, str] | None = None, log: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start ``argv`` (an rlkit command: it calls :func:`follow_parent` first) as a child, output to ``log``."""
        environ = {**(env if env is not None else os.environ), PARENT_VAR: str(os.getpid())}
        with contextlib.ExitStack() as stack:
            out = stack.enter_context(open(log, "ab")) if log is not None else None
            with stop_signals_blocked():  # no signal handler of this process runs half-way through a start
                proc = subprocess.Popen(
                    argv, stdout=out, stderr=subprocess.STDOUT if out is not None else None, env=environ,
                    start_new_session=True,
                )  # fmt: skip
        self.procs.append(proc)
        return proc

    def running(self) -> list[subprocess.Popen[bytes]]:
        return [proc for proc in self.procs if proc.poll() is None]

    def stop(self, sig: int = signal.SIGTERM, grace_s: float | None = None) -> list[subprocess.Popen[bytes]]:
        """Signal every running child's process group, wait up to ``grace_s``, kill the rest; those killed.

        A second Ctrl-C while waiting kills at once (and is raised on).
        """
        grace = self.grace_s if grace_s is None else grace_s
        for proc in self.running():
            _signal_group(proc.pid, sig)
        deadline = time.monotonic() + grace
        try:
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            killed = self.running()
            for proc in self.procs:
                _signal_group(proc.pid, signal.SIGKILL)  # what is left of each child's group, its own children too
            for proc in killed:
                proc.wait()
        return killed

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop(signal.SIGTERM)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)

"""rlkit.core.processes: children that the parent alone stops, in a bounded time, and that never outlive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rlkit.core.processes import Children, describe_exit

REPO = Path(__file__).resolve().parent.parent

STUBBORN = """
import signal, subprocess, sys, time
from rlkit.core.processes import follow_parent
follow_parent()
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a worker that does not stop when asked
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # and has a child of its own
print(child.pid, flush=True)
time.sleep(120)
"""

FOLLOWER = """
import signal, sys, time
from pathlib import Path
from rlkit.core.processes import follow_parent
follow_parent()
def stop(signum, frame):
    Path(sys.argv[1]).write_text(signal.Signals(signum).name)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
time.sleep(120)
"""

PARENT = """
import sys, time
from pathlib import Path
from rlkit.core.processes import Children
children = Children()
child = children.start([sys.executable, "-c", sys.argv[1], sys.argv[2]])
print(child.pid, flush=True)
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def test_a_child_that_ignores_the_stop_is_killed_with_its_own_children(tmp_path: Path) -> None:
    log = tmp_path / "log"
    with Children(grace_s=1.0) as children:
        proc = children.start([sys.executable, "-c", STUBBORN], env=_env(), log=log)
        deadline = time.monotonic() + 60
        while not log.read_text().strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchild = int(log.read_text().split()[0])
        assert os.getsid(proc.pid) == proc.pid, "its own session: a terminal's Ctrl-C reaches only the parent"
        killed = children.stop(signal.SIGINT)
    assert killed == [proc] and proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the child's own children go with it"


def test_a_child_follows_its_parent_even_after_kill_9(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, FOLLOWER, str(marker)], stdout=subprocess.PIPE, text=True, env=_env()
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(1.0)  # the child is past follow_parent()
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)
    assert marker.read_text() == "SIGTERM", "SIGTERM, so a training child saves a checkpoint first"


def test_exit_codes_read_as_words() -> None:
    assert describe_exit(-9) == "killed by SIGKILL" and describe_exit(3) == "exited with code 3"

"""Fixtures for the tuning tests: a runs folder, the tiny search space, subprocess workers, PostgreSQL."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TINY_SPACE = Path(__file__).with_name("tiny_space.yaml")

# A CartPole trial of a few hundred steps: small nets, 2-episode evaluations.
FAST = ["--space", str(TINY_SPACE), "--device", "cpu"] + [
    arg for kv in ("eval_episodes=2", "learning_starts=50", "gradient_steps=1") for arg in ("--set", kv)
]


@pytest.fixture
def runs_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``RLKIT_RUNS_DIR`` pointed at a fresh folder (studies land in ``<it>/tune``)."""
    runs = tmp_path / "runs"
    monkeypatch.setenv("RLKIT_RUNS_DIR", str(runs))
    monkeypatch.chdir(tmp_path)
    return runs


def worker_env(runs: Path) -> dict[str, str]:
    """Environment for ``python -m rlkit`` subprocesses: this checkout first on the path."""
    env = dict(os.environ)
    env["RLKIT_RUNS_DIR"] = str(runs)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def rlkit_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "rlkit", *args]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL server on loopback, as the ``postgres`` user when running as root."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    initdb = found[-1] if found else shutil.which("initdb")
    if initdb is None:
        pytest.skip("PostgreSQL server binaries not installed (.ci/system-deps installs them)")
    bindir = Path(initdb).parent
    root = os.geteuid() == 0
    base = Path(tempfile.mkdtemp(prefix="rlkit-pg-"))
    data = base / "data"
    if root:
        shutil.chown(base, user="postgres")
        os.chmod(base, 0o700)

    def as_pg(*cmd: str) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *cmd] if root else list(cmd)

    port = _free_port()
    subprocess.run(as_pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"), check=True,
                   capture_output=True)  # fmt: skip
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run(
        as_pg(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(as_pg(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"), capture_output=True)
        time.sleep(0.2)
        shutil.rmtree(base, ignore_errors=True)

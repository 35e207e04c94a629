"""bench/buffers.py on a tiny buffer: it runs and prints the figures it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_buffer_bench_tiny() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "buffers.py"),
            "--size",
            "300",
            "--steps",
            "50",
            "--samples",
            "3",
            "--rounds",
            "1",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    doc = json.loads(done.stdout)
    names = {"sb3_plain", "sb3_optimize_memory_usage", "rlkit_frame_buffer_sb3_dqn", "rlkit_frame_buffer_rlkit_dqn"}
    assert set(doc["add_us"]) == set(doc["sample_us"]) == names
    assert all(v > 0 for v in [*doc["add_us"].values(), *doc["sample_us"].values()])
    mb = doc["observation_mb"]
    assert mb["rlkit_frame_buffer_rlkit_dqn"] == mb["sb3_optimize_memory_usage"] < mb["sb3_plain"]

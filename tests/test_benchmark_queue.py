"""`rlkit benchmark --storage URL`: one seed queue shared by many workers (PostgreSQL, SQLite)."""

from __future__ import annotations

import json
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rlkit.cli import app
from tests.conftest import tiny_overrides
from tests.tuning.conftest import postgres_url, rlkit_cmd, worker_env

__all__ = ["postgres_url"]  # the fixture, shared with the tuning tests

SETS = [a for p in tiny_overrides(2000, checkpoint_freq=0) for a in ("--set", p)]


def bench_args(out: Path, url: str, seeds: int = 3) -> list[str]:
    return [
        "benchmark",
        "cartpole",
        "--seeds",
        str(seeds),
        "--jobs",
        "1",
        "--episodes",
        "3",
        "--out",
        str(out),
        "--storage",
        url,
        *SETS,
    ]


def summary(stdout: str) -> str:
    """What a worker prints from the headline on: the same on every worker."""
    return stdout[stdout.index("solved on fresh episodes: ") :]


def queue_trials(url: str) -> list[Any]:
    import optuna

    (name,) = [s.study_name for s in optuna.get_all_study_summaries(url) if s.study_name.startswith("benchmark-")]
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


def test_two_workers_on_postgresql_take_each_seed_once(postgres_url: str, tmp_path: Path) -> None:
    out = tmp_path / "shared"
    started = time.perf_counter()
    workers = [
        subprocess.Popen(
            rlkit_cmd(*bench_args(out, postgres_url)),
            env=worker_env(tmp_path / "runs"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=400) for w in workers]
    print(f"two workers, 3 seeds: {time.perf_counter() - started:.1f} s")  # the timing the report quotes (-s)
    for worker, (stdout, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stdout + stderr
    trials = queue_trials(postgres_url)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert Counter(t.user_attrs["seed"] for t in complete) == {0: 1, 1: 1, 2: 1}
    for seed in range(3):  # each run directory trained once: one launch command, no resume
        assert len((out / f"seed-{seed}" / "command.txt").read_text().strip().splitlines()) == 1
    assert summary(outputs[0][0]) == summary(outputs[1][0])
    doc = json.loads((out / "benchmark.json").read_text())
    assert doc["seeds"] == [0, 1, 2] and len(doc["machine"]["workers"]) in (1, 2)
    assert {r["trained_by"] for r in doc["per_seed"]} == set(doc["machine"]["workers"])
    print({r["seed"]: (r["trained_by"], round(r["wall_s"], 1)) for r in doc["per_seed"]})
    assert all(r["machine"]["yardstick"]["matmul_per_s"] > 0 for r in doc["per_seed"])


def test_a_sqlite_queue_summarises_again_without_training(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    runner = CliRunner()
    first = runner.invoke(app, bench_args(tmp_path / "out", url, seeds=2))
    assert first.exit_code == 0, first.output
    models = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("seed-*/model.zip")}
    elsewhere = runner.invoke(app, bench_args(tmp_path / "other", url, seeds=2))  # another worker's own folder
    assert elsewhere.exit_code == 0, elsewhere.output
    assert summary(elsewhere.stdout) == summary(first.stdout).replace(str(tmp_path / "out"), str(tmp_path / "other"))
    assert not list((tmp_path / "other").glob("seed-*")), "every seed was done: nothing trained again"
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("seed-*/model.zip")} == models
    other = runner.invoke(app, [*bench_args(tmp_path / "out", url, seeds=2), "--episodes", "4"])
    assert other.exit_code == 2 and "evaluates --episodes 3, not 4" in other.stderr


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("postgres//nowhere", "malformed storage URL"),
        ("redis://localhost/0", "unsupported storage 'redis'"),
        ("postgresql://nobody@127.0.0.1:1/db", "cannot open storage postgresql://nobody@127.0.0.1:1/db"),
        ("sqlite:///no/such/folder/q.db", "its folder does not exist"),
    ],
)
def test_a_bad_storage_is_one_line_and_writes_nothing(tmp_path: Path, url: str, said: str) -> None:
    result = CliRunner().invoke(app, bench_args(tmp_path / "out", url))
    assert result.exit_code != 0 and said in result.stderr, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_lost_workers_seed_is_taken_again_and_an_interrupted_one_at_once(tmp_path: Path) -> None:
    from rlkit.tuning.seed_queue import SeedQueue, open_queue

    def worker() -> SeedQueue:
        return open_queue(
            f"sqlite:///{tmp_path / 'q.db'}",
            alias="cartpole",
            env_id="CartPole-v1",
            digest="d",
            seeds=2,
            episodes=3,
            heartbeat_s=1,
        )

    lost, alive = worker(), worker()
    assert lost.take() == 0
    assert alive.take() == 1
    alive.put_back(1)  # interrupted: queued again at once
    alive._next_look = 0.0
    assert alive.take() == 1
    alive._next_look = 0.0
    assert alive.take() is None  # seed 0 is held, its heartbeat recent
    time.sleep(4)  # the lost worker sends no heartbeat: after the grace period (3 s) seed 0 is free
    alive._next_look = 0.0
    assert alive.take() == 0

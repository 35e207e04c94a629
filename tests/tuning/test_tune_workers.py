"""Real worker processes: --jobs on SQLite, two workers on PostgreSQL, kill -9 retries, Ctrl-C continues."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import optuna
from sqlalchemy.exc import SQLAlchemyError
from typer.testing import CliRunner

from rlkit.cli import app
from tests.tuning.conftest import FAST, rlkit_cmd, worker_env


def _study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def _accounted(study: optuna.Study, trials: int) -> list[optuna.trial.FrozenTrial]:
    """Every trial ended (none left running or waiting), numbers unique, exactly ``trials`` finished."""
    all_trials = study.get_trials()
    assert [t.number for t in all_trials] == list(range(len(all_trials)))
    assert len({t._trial_id for t in all_trials}) == len(all_trials)
    assert all(t.state.is_finished() for t in all_trials), [t.state for t in all_trials]
    finished = [t for t in all_trials if t.state.name in ("COMPLETE", "PRUNED")]
    assert len(finished) == trials
    return finished


def _wait_running(db: Path, name: str, timeout: float = 120) -> None:
    """Until a trial of the study in SQLite file ``db`` is training."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                study = _study(f"sqlite:///{db}", name)
                if any(t.state.name == "RUNNING" and t.user_attrs.get("config") for t in study.get_trials()):
                    return
            except (KeyError, SQLAlchemyError):
                pass  # not created yet
        time.sleep(0.3)
    raise AssertionError("no trial started running")


def test_two_workers_on_postgresql_share_one_study(postgres_url: str, tmp_path: Path) -> None:
    args = ["tune", "cartpole", "--storage", postgres_url, "--study", "pg", "--trials", "6", "--steps", "600", "-q"]
    env = worker_env(tmp_path / "runs")
    cmds = [rlkit_cmd(*args, "--worker-index", str(i), *FAST) for i in range(2)]
    pipe = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    workers = [subprocess.Popen(cmd, env=env, cwd=tmp_path, **pipe) for cmd in cmds]  # type: ignore[call-overload]
    outputs = [w.communicate(timeout=240)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    finished = _accounted(_study(postgres_url, "pg"), 6)
    by_worker = {t.user_attrs["worker"] for t in finished}
    assert len(by_worker) == 2, "both workers ran trials"
    reported = [line.split()[1] for out in outputs for line in out.splitlines() if line.startswith("trial ")]
    assert sorted(reported, key=int) == [str(t.number) for t in finished]  # each trial reported by one worker once
    show = CliRunner().invoke(app, ["tune", "show", "pg", "--storage", postgres_url])
    assert show.exit_code == 0 and "best 5 trial(s)" in show.output, show.output
    exported = CliRunner().invoke(
        app, ["tune", "export", "pg", "--storage", postgres_url, "--out", str(tmp_path / "x.yaml")]
    )
    assert exported.exit_code == 0 and (tmp_path / "x.yaml").is_file(), exported.output


def test_jobs_spawn_local_workers_on_the_embedded_storage(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    proc = subprocess.run(rlkit_cmd("tune", "cartpole", "--jobs", "2", "--trials", "4", "--steps", "500", "-q", *FAST),
                          env=worker_env(runs), cwd=tmp_path, capture_output=True, text=True, timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    finished = _accounted(_study(f"sqlite:///{runs / 'tune' / 'cartpole.db'}", "cartpole"), 4)
    assert len({t.user_attrs["worker"] for t in finished}) == 2
    # Two workers side by side share the cores: one core each, so a fixed torch thread each.
    assert {t.user_attrs["torch_threads"] for t in finished} == {1}
    assert sorted(p.name for p in (runs / "tune" / "cartpole.logs").iterdir()) == ["worker-0.log", "worker-1.log"]


def test_a_killed_workers_trial_is_retried(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    db = runs / "tune" / "cartpole.db"
    url = f"sqlite:///{db}"
    args = rlkit_cmd("tune", "cartpole", "--trials", "1", "--steps", "3000", "--heartbeat", "1", "-q", *FAST)
    victim = subprocess.Popen(args, env=worker_env(runs), cwd=tmp_path, stdout=subprocess.DEVNULL)
    _wait_running(db, "cartpole")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    time.sleep(3.5)  # past the grace period (3 heartbeats)
    rescue = subprocess.run(args, env=worker_env(runs), cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert rescue.returncode == 0, rescue.stdout + rescue.stderr
    study = _study(url, "cartpole")
    finished = _accounted(study, 1)
    failed = [t for t in study.get_trials() if t.state.name == "FAIL"]
    assert len(failed) == 1
    retried = [t for t in finished if t.system_attrs.get("failed_trial") == failed[0].number]
    assert len(retried) == 1 and retried[0].params == failed[0].params


def test_ctrl_c_requeues_the_trial_and_the_same_command_continues(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    db = runs / "tune" / "cartpole.db"
    url = f"sqlite:///{db}"
    args = rlkit_cmd("tune", "cartpole", "--trials", "1", "--steps", "3000", "-q", *FAST)
    proc = subprocess.Popen(args, env=worker_env(runs), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    _wait_running(db, "cartpole")
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0]
    assert proc.returncode == 130, output
    assert "continue with: rlkit tune cartpole" in output and "Traceback" not in output
    study = _study(url, "cartpole")
    assert [t.state.name for t in study.get_trials()] == ["FAIL", "WAITING"]
    assert study.trials[0].user_attrs["interrupted"] is True
    again = subprocess.run(args, env=worker_env(runs), cwd=tmp_path, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    (retried,) = _accounted(_study(url, "cartpole"), 1)
    assert retried.params == study.trials[0].params

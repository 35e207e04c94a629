"""`--track mlflow|wandb`: runs, trials and benchmark seeds mirrored to MLflow's local store and W&B's offline files."""

from __future__ import annotations

import glob
import json
import signal
import struct
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from rlkit.core.errors import Interrupted
from rlkit.environments.resolve import resolve
from rlkit.training import tracking, train
from tests.clitools import assert_one_line_error, invoke
from tests.conftest import tiny_overrides
from tests.test_resume import SignalAt
from tests.tuning.conftest import FAST


def _sets(pairs: list[str]) -> list[str]:
    return [arg for pair in pairs for arg in ("--set", pair)]


@pytest.fixture
def mlflow_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh local MLflow store (SQLite; artifacts under the current folder, here tmp_path)."""
    mlflow_tracking = pytest.importorskip("mlflow.tracking")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    return mlflow_tracking.MlflowClient(uri)


@pytest.fixture
def wandb_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """W&B in offline mode, writing under tmp_path: no login, no network."""
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    for name in ("WANDB_API_KEY", "WANDB_PROJECT", "WANDB_ENTITY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _runs(client: Any) -> list[Any]:
    experiments = [e.experiment_id for e in client.search_experiments()]
    return list(client.search_runs(experiments))


def _tensorboard_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars: dict[str, list[tuple[int, float]]] = {}
    for events in sorted((run_dir / "tb").rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(events))
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend((e.step, e.value) for e in acc.Scalars(tag))
    return scalars


def test_train_mirrors_tensorboard_config_evaluations_and_models_to_mlflow(tmp_path: Path, mlflow_store: Any) -> None:
    run_dir = tmp_path / "run"
    result = invoke(
        "train", "cartpole", "--seed", 3, "--run-dir", run_dir, "-q", "--track", "mlflow", *_sets(tiny_overrides())
    )
    assert result.exit_code == 0, result.output
    recorded = json.loads((run_dir / "tracking.json").read_text())
    assert recorded["tracker"] == "mlflow"
    run = mlflow_store.get_run(recorded["run_id"])
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "cartpole-run"
    assert mlflow_store.get_experiment(run.info.experiment_id).name == "rlkit-cartpole"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())["preset"]
    params = run.data.params
    assert params["seed"] == "3" and params["alias"] == "cartpole"
    assert float(params["learning_rate"]) == config["learning_rate"]
    assert params["policy_kwargs.net_arch"] == str(config["policy_kwargs"]["net_arch"])
    assert params["n_timesteps"] == "600"

    scalars = _tensorboard_scalars(run_dir)
    assert "rollout/ep_rew_mean" in scalars and "train/loss" in scalars
    for tag, points in scalars.items():  # every TensorBoard scalar, at the same steps, same values
        history = sorted((m.step, m.value) for m in mlflow_store.get_metric_history(run.info.run_id, tag))
        points = sorted(points)
        assert [step for step, _ in history] == [step for step, _ in points], tag
        assert [value for _, value in history] == pytest.approx([value for _, value in points], rel=1e-6), tag

    assert run.data.metrics["final_mean_reward"] == pytest.approx(
        json.loads((run_dir / "state.json").read_text())["final_eval"]["mean_reward"]
    )
    top = {a.path for a in mlflow_store.list_artifacts(run.info.run_id)}
    assert "evaluations.csv" in top
    models = {a.path for a in mlflow_store.list_artifacts(run.info.run_id, "model")}
    assert models == {"model/model.zip", "model/best_model.zip"}
    local = mlflow_store.download_artifacts(run.info.run_id, "evaluations.csv", str(tmp_path / "dl"))
    assert Path(local).read_text() == (run_dir / "evaluations.csv").read_text()


def test_a_resumed_run_logs_to_the_same_tracked_run(tmp_path: Path, mlflow_store: Any) -> None:
    run_dir = tmp_path / "run"
    resolved = resolve("cartpole", overrides=tiny_overrides(1200, checkpoint_freq=10_000))
    with pytest.raises(Interrupted):
        train.start(
            resolved, seed=0, run_dir=run_dir, quiet=True, track="mlflow", callbacks=[SignalAt(500, signal.SIGINT)]
        )
    run_id = json.loads((run_dir / "tracking.json").read_text())["run_id"]
    assert mlflow_store.get_run(run_id).info.status == "KILLED"
    result = train.resume(run_dir, quiet=True)  # no track given: the run's own tracker carries on
    assert result is not None
    assert [r.info.run_id for r in _runs(mlflow_store)] == [run_id]
    run = mlflow_store.get_run(run_id)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in mlflow_store.get_metric_history(run_id, "rollout/ep_rew_mean")]
    assert min(steps) < 500 < max(steps), "metrics from before and after the interruption"


def _wandb_records(folder: Path) -> list[Any]:
    """The records of W&B's offline run files, once the run's exit record is written."""
    import time

    for _ in range(60):  # wandb-core writes the log in its own process
        records = _read_wandb_logs(folder)
        if any(r.HasField("exit") for r in records):
            break
        time.sleep(0.5)
    return records


def _read_wandb_logs(folder: Path) -> list[Any]:
    """Every record of W&B's offline ``.wandb`` files (a LevelDB-style log of protobuf records)."""
    from wandb.proto import wandb_internal_pb2

    records = []
    for path in sorted(glob.glob(str(folder / "wandb" / "offline-run-*" / "*.wandb"))):
        data, pos, chunk = Path(path).read_bytes(), 7, b""
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7:  # a block's tail too short for a header is padding
                pos += 32768 - pos % 32768
                continue
            _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
            pos += 7
            if length == 0 and kind == 0:
                break
            chunk += data[pos : pos + length]
            pos += length
            if kind in (1, 4):  # a full record, or the last piece of one
                record = wandb_internal_pb2.Record()
                record.ParseFromString(chunk)
                records.append(record)
                chunk = b""
    return records


def test_train_logs_to_wandb_offline(tmp_path: Path, wandb_offline: Path) -> None:
    run_dir = tmp_path / "run"
    result = invoke(
        "train", "cartpole", "--seed", 1, "--run-dir", run_dir, "-q", "--track", "wandb", *_sets(tiny_overrides())
    )
    assert result.exit_code == 0, result.output
    run_id = json.loads((run_dir / "tracking.json").read_text())["run_id"]
    assert list(wandb_offline.glob(f"wandb/offline-run-*-{run_id}"))
    records = _wandb_records(wandb_offline)
    kinds = sorted({str(r.WhichOneof("record_type")) for r in records})
    assert "exit" in kinds and "history" in kinds, kinds
    history = {
        item.nested_key[0] if item.nested_key else item.key
        for r in records
        if r.HasField("history")
        for item in r.history.item
    }
    assert {"rollout/ep_rew_mean", "train/loss", "timesteps", "evaluations"} <= history
    config = {
        item.nested_key[0] if item.nested_key else item.key
        for r in records
        if r.HasField("config")
        for item in r.config.update
    }
    config |= {item.key for r in records if r.HasField("run") for item in r.run.config.update}
    assert {"learning_rate", "seed", "policy_kwargs.net_arch"} <= config
    artifacts = {(r.artifact.type, r.artifact.name) for r in records if r.HasField("artifact")}
    assert ("model", "cartpole-run-models") in artifacts
    summary = {
        item.nested_key[0] if item.nested_key else item.key
        for r in records
        if r.HasField("summary")
        for item in r.summary.update
    }
    assert "final_mean_reward" in summary


def test_tune_tracks_one_run_per_trial(tmp_path: Path, mlflow_store: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLKIT_RUNS_DIR", str(tmp_path / "runs"))
    result = invoke(
        "tune", "cartpole", "--trials", "2", "--steps", "300", "--pruner", "none", "-q", "--track", "mlflow", *FAST
    )
    assert result.exit_code == 0, result.output
    import optuna

    study = optuna.load_study(study_name="cartpole", storage=f"sqlite:///{tmp_path / 'runs' / 'tune' / 'cartpole.db'}")
    runs = {r.info.run_name: r for r in _runs(mlflow_store)}
    assert set(runs) == {"cartpole-trial-0", "cartpole-trial-1"}
    for trial in study.trials:
        run = runs[f"cartpole-trial-{trial.number}"]
        assert run.info.status == "FINISHED" and run.data.tags["optuna.state"] == trial.state.name
        assert run.data.metrics["objective"] == pytest.approx(trial.value)
        for key, value in trial.params.items():
            assert key in run.data.params, key
            assert float(run.data.params[key]) == pytest.approx(float(value)) if isinstance(value, float) else True
        assert len(mlflow_store.get_metric_history(run.info.run_id, "eval/mean_reward")) == len(
            trial.intermediate_values
        )


def test_benchmark_tracks_each_seed_and_a_summary(tmp_path: Path, mlflow_store: Any) -> None:
    out = tmp_path / "bench"
    sets = _sets(tiny_overrides(300, checkpoint_freq=0))
    result = invoke(
        "benchmark", "cartpole", "--seeds", 2, "--jobs", 2, "--episodes", 2, "--out", out, "--track", "mlflow", *sets
    )
    assert result.exit_code == 0, result.output
    runs = {r.info.run_name: r for r in _runs(mlflow_store)}
    assert set(runs) == {"cartpole-seed-0", "cartpole-seed-1", "cartpole-bench-summary"}
    assert {r.data.tags["rlkit.group"] for r in runs.values()} == {"bench"}
    doc = json.loads((out / "benchmark.json").read_text())
    summary = runs["cartpole-bench-summary"]
    assert summary.data.metrics["final_iqm"] == pytest.approx(doc["final"]["iqm"]["value"])
    assert summary.data.metrics["final_max"] == pytest.approx(max(doc["final"]["range"]))
    assert summary.data.params["seeds"] == "2"
    files = {a.path for a in mlflow_store.list_artifacts(summary.info.run_id, "results")}
    assert files == {"results/benchmark.json", "results/benchmark.md", "results/curves.png"}
    for seed in (0, 1):
        history = mlflow_store.get_metric_history(runs[f"cartpole-seed-{seed}"].info.run_id, "rollout/ep_rew_mean")
        assert history, seed


def test_a_missing_tracker_is_one_line_naming_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if not installed
    result = invoke("train", "cartpole", "--run-dir", tmp_path / "run", "-q", "--track", "mlflow")
    assert_one_line_error(result, "pip install 'rlkit[mlflow]'")
    assert not (tmp_path / "run").exists()
    result = invoke("benchmark", "cartpole", "--seeds", 5, "--out", tmp_path / "bench", "--track", "mlflow")
    assert_one_line_error(result, "pip install 'rlkit[mlflow]'")
    assert not (tmp_path / "bench").exists()


def test_wandb_never_asks_for_a_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    result = invoke("train", "cartpole", "--run-dir", tmp_path / "run", "-q", "--track", "wandb")
    assert_one_line_error(result, "no W&B login", "WANDB_MODE=offline")
    assert not (tmp_path / "run").exists()
    result = invoke("tune", "cartpole", "--trials", "1", "--track", "wandb")
    assert_one_line_error(result, "no W&B login")


def test_the_logger_output_skips_what_tensorboard_skips() -> None:
    class Recorder(tracking.Tracker):
        def __init__(self) -> None:
            self.logged: list[tuple[dict[str, Any], int]] = []

        def log_metrics(self, metrics: dict[str, Any], step: int) -> None:
            self.logged.append((metrics, step))

    recorder = Recorder()
    output = tracking.TrackerOutput(recorder)
    output.write(
        {"a/x": 1.5, "a/text": "hello", "a/skip": 2.0, "a/none": 3.0},
        {"a/x": None, "a/text": None, "a/skip": ("tensorboard",), "a/none": ("stdout",)},
        step=7,
    )
    assert recorder.logged == [({"a/x": 1.5, "a/text": "hello", "a/none": 3.0}, 7)]
    assert tracking._numbers(recorder.logged[0][0]) == {"a/x": 1.5, "a/none": 3.0}


def test_a_store_that_cannot_be_opened_is_one_line_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "bogus://nowhere")
    (tmp_path / "mine").mkdir()
    for run_dir in (tmp_path / "new", tmp_path / "mine"):
        result = invoke("train", "cartpole", "--run-dir", run_dir, "-q", "--track", "mlflow")
        assert_one_line_error(result, "--track mlflow: could not open a tracked run", "bogus://nowhere")
    assert not (tmp_path / "new").exists()
    assert (tmp_path / "mine").is_dir() and not any((tmp_path / "mine").iterdir()), "the user's empty folder stays"

"""Fault injection: hostile files, damaged checkpoints, concurrent writers, signals, a full disk.

Every hostile payload here would create a marker file if anything unpickled it; each test
asserts the marker never appears and the CLI answers in one line with a non-zero exit.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import numpy as np
import pytest

from rlkit.core import atomic
from rlkit.core.errors import Interrupted, RlkitError
from rlkit.environments.resolve import resolve
from rlkit.training import buffer_store, callbacks, train
from rlkit.training.rundir import GONE, RunDir, write_manifest
from tests.clitools import assert_one_line_error, invoke
from tests.conftest import tiny_overrides
from tests.test_resume import SignalAt

BUDGET = 600  # checkpoints at 300 and 600 (keep 2), evaluations at 300 and 600


class Payload:
    """Unpickling this runs ``exec`` and creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Callable[..., Any], tuple[str]]:
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _serialized(obj: object) -> dict[str, str]:
    """An SB3 ``data`` entry as SB3 writes a cloudpickled object."""
    return {":type:": "<class 'stable_baselines3.common.utils.LinearSchedule'>", ":serialized:": _b64(obj)}


def _b64(obj: object) -> str:
    return base64.b64encode(cloudpickle.dumps(obj)).decode()


def _craft_zip(path: Path, key: str, value: object) -> None:
    """Rewrite ``data[key]`` of an SB3 zip in place (every other member kept)."""
    with zipfile.ZipFile(path) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    data = json.loads(members["data"])
    data[key] = value
    members["data"] = json.dumps(data).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished CartPole run with two checkpoints (treat as read-only: copy it)."""
    run = tmp_path_factory.mktemp("faults") / "run"
    resolved = resolve("cartpole", overrides=tiny_overrides(BUDGET, keep_checkpoints=2))
    train.start(resolved, seed=0, run_dir=run, quiet=True, argv=["pytest"])
    return run


@pytest.fixture
def stopped(finished_run: Path, tmp_path: Path) -> Path:
    """A private copy of the run, marked interrupted (so resume continues from a checkpoint)."""
    run = tmp_path / "stopped"
    shutil.copytree(finished_run, run)
    state = json.loads((run / "state.json").read_text())
    state["status"] = "interrupted"
    (run / "state.json").write_text(json.dumps(state))
    return run


def _refused(result: Any, *fragments: str) -> str:
    """A non-zero exit, no traceback, and exactly one ``error:`` line naming every fragment.

    (``report`` may say what it is doing on the lines before.)
    """
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    return errors[0]


def _checkpoints(run: Path) -> list[Path]:
    return RunDir(run).checkpoint_dirs()


def _snapshot(run: Path) -> dict[str, bytes]:
    """Every file's bytes, except ``run.lock`` (whoever takes the lock writes its pid there)."""
    return {
        str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file() and p.name != "run.lock"
    }


# --- the malicious corpus ---------------------------------------------------------------


def test_the_payloads_are_real(tmp_path: Path) -> None:
    """Unpickled the way SB3 and pickle would, each payload does create its marker."""
    from stable_baselines3.common.save_util import json_to_data

    marker = tmp_path / "pwned"
    json_to_data(json.dumps({"lr_schedule": _serialized(Payload(marker))}))
    assert marker.exists()
    marker.unlink()
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("key", ["lr_schedule", "exploration_schedule", "policy_class", "_last_obs", "env"])
def test_crafted_model_zip_runs_nothing(stopped: Path, tmp_path: Path, key: str) -> None:
    marker = tmp_path / "pwned"
    zips = [stopped / "best_model.zip", stopped / "model.zip", *(c / "model.zip" for c in _checkpoints(stopped))]
    for path in zips:
        _craft_zip(path, key, _serialized(Payload(marker)))
    for folder in _checkpoints(stopped):
        write_manifest(folder)  # an attacker can recompute sha256s: the manifest is no signature
    for args in (
        ["evaluate", stopped, "--episodes", "1"],
        ["evaluate", stopped, "--model", "final", "--episodes", "1"],
        ["record", stopped, "--out", tmp_path / "v.mp4"],
        ["record", stopped],
        ["report", stopped, "--out", tmp_path / "r.html", "--episodes", "1", "--no-video"],
        ["train", "--resume", stopped, "-q"],
    ):
        _refused(invoke(*args), "refusing to load", f"'{key}'")
        assert not marker.exists(), args
    assert not (tmp_path / "v.mp4").exists() and not (tmp_path / "r.html").exists()
    assert not (stopped / "videos").exists(), "a failed record leaves no folder behind"


def test_payload_disguised_as_an_expected_class_is_never_unpickled(stopped: Path, tmp_path: Path) -> None:
    """A pickle that names only expected globals passes the scan, but is still never unpickled."""
    from stable_baselines3.common.utils import LinearSchedule

    marker = tmp_path / "pwned"
    # A LinearSchedule pickle whose only global is expected: the file is loaded with the run's own schedule.
    _craft_zip(stopped / "best_model.zip", "exploration_schedule", _serialized(LinearSchedule(9.0, 9.0, 1.0)))
    result = invoke("evaluate", stopped, "--episodes", "1", "--json")
    assert result.exit_code == 0, result.output
    from rlkit.training.factory import load_model

    model = load_model(stopped / "best_model.zip", None, "cpu")
    assert model.exploration_schedule(0.5) != 9.0, "the schedule is rebuilt from the run's config"
    assert not marker.exists()


def test_pickle_replay_buffer_of_an_old_checkpoint_is_never_opened(stopped: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for folder in _checkpoints(stopped):  # checkpoints as older rlkit wrote them: no manifest, a pickle buffer
        (folder / "manifest.json").unlink()
        (folder / "replay_buffer.npz").unlink()
        (folder / "replay_buffer.pkl").write_bytes(pickle.dumps(Payload(marker)))
    before = _snapshot(stopped)
    text = assert_one_line_error(invoke("train", "--resume", stopped, "-q"), "replay_buffer.pkl", "--without-buffer")
    assert "pickle" in text
    assert not marker.exists()
    assert _snapshot(stopped) == before, "a resume that fails writes nothing (command.txt included)"

    result = invoke("train", "--resume", stopped, "-q", "--without-buffer")
    assert result.exit_code == 0, result.output
    assert "empty replay buffer" in result.stderr
    assert not marker.exists()
    state = json.loads((stopped / "state.json").read_text())
    assert state["status"] == "finished" and state["resume_exact"] is False and state["inexact_resumes"] == [BUDGET]
    assert "--without-buffer" in (stopped / "command.txt").read_text().splitlines()[-1]


@pytest.mark.parametrize("content", ["raw-pickle", "object-array", "array.rewards", "array.observations"])
def test_npz_that_carries_a_pickle_is_refused(stopped: Path, tmp_path: Path, content: str) -> None:
    marker = tmp_path / "pwned"
    for folder in _checkpoints(stopped):
        target = folder / "replay_buffer.npz"
        if content == "raw-pickle":
            target.write_bytes(pickle.dumps(Payload(marker)))
        elif content == "object-array":
            with open(target, "wb") as handle:
                np.savez(handle, observations=np.array([Payload(marker)], dtype=object))
        else:  # a real buffer file with one array swapped for an object array of the same shape
            with np.load(target) as npz:
                entries = {name: npz[name] for name in npz.files}
            swapped = np.empty(entries[content].shape, dtype=object)
            swapped.fill(Payload(marker))
            entries[content] = swapped
            with open(target, "wb") as handle:
                np.savez(handle, **entries)  # type: ignore[arg-type]
        write_manifest(folder)
    before = _snapshot(stopped)
    assert_one_line_error(invoke("train", "--resume", stopped, "-q"), "replay buffer", "--without-buffer")
    assert not marker.exists()
    assert _snapshot(stopped) == before


def test_crafted_checkpoint_state_is_skipped(stopped: Path) -> None:
    newest, older = _checkpoints(stopped)[-1], _checkpoints(stopped)[0]
    crafted = {"num_timesteps": "__import__('os').system('touch pwned')", "replay_buffer": True}
    (newest / "state.json").write_text(json.dumps(crafted))
    write_manifest(newest)
    result = invoke("train", "--resume", stopped, "-q")
    assert result.exit_code == 0, result.output
    assert f"skipped checkpoint step-{BUDGET} (state.json num_timesteps" in result.stderr
    assert f"resuming from step-{int(older.name[5:])}" in result.stderr
    state = json.loads((stopped / "state.json").read_text())
    state["status"] = "interrupted"
    (stopped / "state.json").write_text(json.dumps(state))
    # The resumed session wrote a fresh step-600 checkpoint; damage it too: nothing intact is left.
    for folder in _checkpoints(stopped):
        (folder / "state.json").write_text(json.dumps(crafted))
    assert_one_line_error(invoke("train", "--resume", stopped, "-q"), "no intact checkpoint")


def test_crafted_config_yaml_runs_nothing(stopped: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (stopped / "config.yaml").write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    for args in (
        ["evaluate", stopped],
        ["train", "--resume", stopped],
        ["report", stopped, "--out", tmp_path / "r.html"],
    ):
        _refused(invoke(*args), "damaged run config")
    assert not marker.exists()


def test_damaged_run_state_is_one_line(stopped: Path) -> None:
    (stopped / "state.json").write_text('{"status": "interrupted", "num_timesteps": "lots"}')
    assert_one_line_error(invoke("train", "--resume", stopped, "-q", "--steps", "900"), "damaged run state")
    (stopped / "state.json").write_text('{"status": ')
    assert_one_line_error(invoke("train", "--resume", stopped, "-q"), "damaged run state")
    assert_one_line_error(invoke("train", "--resume", stopped, "-q", "--steps", "900"), "damaged run state")


def test_crafted_checkpoint_state_when_extending_the_budget(stopped: Path) -> None:
    newest = _checkpoints(stopped)[-1]
    (newest / "state.json").write_text('{"num_timesteps": {"__reduce__": "os.system"}}')
    write_manifest(newest)
    result = invoke("train", "--resume", stopped, "-q", "--steps", "900")
    assert result.exit_code == 0, result.output
    assert f"skipped checkpoint step-{BUDGET}" in result.stderr
    assert json.loads((stopped / "state.json").read_text())["num_timesteps"] >= 900


# --- damaged checkpoints ------------------------------------------------------------------


def test_truncated_newest_model_falls_back_to_the_previous_checkpoint(stopped: Path) -> None:
    newest = _checkpoints(stopped)[-1] / "model.zip"
    with open(newest, "r+b") as handle:
        handle.truncate(newest.stat().st_size // 2)
    result = invoke("train", "--resume", stopped, "-q")
    assert result.exit_code == 0, result.output
    assert f"skipped checkpoint step-{BUDGET} (model.zip is" in result.stderr and "truncated" in result.stderr
    assert "resuming from step-300" in result.stderr
    assert json.loads((stopped / "state.json").read_text())["status"] == "finished"


def test_missing_buffer_is_an_error_unless_without_buffer(stopped: Path) -> None:
    newest, older = _checkpoints(stopped)
    (older / "replay_buffer.npz").unlink()
    (newest / "replay_buffer.npz").unlink()
    before = _snapshot(stopped)
    assert_one_line_error(
        invoke("train", "--resume", stopped, "-q"), "replay_buffer.npz is missing", "--without-buffer"
    )
    assert _snapshot(stopped) == before
    result = invoke("train", "--resume", stopped, "-q", "--without-buffer")
    assert result.exit_code == 0, result.output
    assert json.loads((stopped / "state.json").read_text())["resume_exact"] is False


def test_missing_newest_buffer_resumes_exactly_from_the_previous_checkpoint(stopped: Path) -> None:
    (_checkpoints(stopped)[-1] / "replay_buffer.npz").unlink()
    result = invoke("train", "--resume", stopped, "-q")
    assert result.exit_code == 0, result.output
    assert "replay_buffer.npz is missing" in result.stderr and "resuming from step-300" in result.stderr
    assert "resume_exact" not in json.loads((stopped / "state.json").read_text())


def test_buffer_from_another_config_is_refused(tmp_path: Path) -> None:
    from rlkit.environments.factory import make_env
    from rlkit.training.factory import build_model

    def model(size: int) -> Any:
        preset = resolve("cartpole", overrides=[f"buffer_size={size}", "learning_starts=10"]).preset
        return build_model(preset, make_env(preset, n_envs=1, seed=0), seed=0, device="cpu", tensorboard_log=None)

    small, big = model(100), model(200)
    small.learn(50)
    buffer_store.save_buffer(small.replay_buffer, tmp_path / "b.npz")
    with pytest.raises(RlkitError, match=r"observations is float32\[100, 1, 4\], the run's buffer needs float32\[200"):
        buffer_store.load_buffer(big.replay_buffer, tmp_path / "b.npz")
    assert big.replay_buffer.pos == 0, "nothing changed in the target buffer"
    (tmp_path / "t.npz").write_bytes((tmp_path / "b.npz").read_bytes()[:5000])
    with pytest.raises(RlkitError, match="damaged or not an rlkit buffer"):
        buffer_store.load_buffer(small.replay_buffer, tmp_path / "t.npz")


@pytest.mark.parametrize(
    "sets",
    [
        [],
        ["n_steps=3"],
        ["prioritized_replay=true", "n_steps=2"],
        ["frame_buffer=true"],
    ],
    ids=["ReplayBuffer", "NStepReplayBuffer", "PrioritizedReplayBuffer", "FrameReplayBuffer"],
)
def test_every_buffer_round_trips_through_npz(tmp_path: Path, sets: list[str]) -> None:
    """Restored into a fresh buffer: every array equal, and the same batches for the same random state."""
    from rlkit.environments.factory import make_env
    from rlkit.training.factory import build_model

    preset = resolve("cartpole", overrides=["buffer_size=64", "learning_starts=10", *sets]).preset

    def fresh() -> Any:
        return build_model(preset, make_env(preset, n_envs=1, seed=0), seed=0, device="cpu", tensorboard_log=None)

    trained, restored = fresh(), fresh()
    trained.learn(150)  # wraps around the 64-slot buffer
    buffer_store.save_buffer(trained.replay_buffer, tmp_path / "b.npz")
    buffer_store.load_buffer(restored.replay_buffer, tmp_path / "b.npz")
    a, b = trained.replay_buffer, restored.replay_buffer
    assert type(a).__name__ == type(b).__name__ and (a.pos, a.full) == (b.pos, b.full) and a.full
    for name, array in buffer_store.buffer_arrays(a).items():
        assert np.array_equal(array, buffer_store.buffer_arrays(b)[name]), name
    np.random.seed(5)
    first = a.sample(16)
    np.random.seed(5)
    second = b.sample(16)
    for x, y in zip(first, second, strict=True):
        assert (x is None and y is None) or bool((x == y).all())


# --- one writer per run -------------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from rlkit.training.rundir import RunDir
lock = RunDir(Path(sys.argv[1])).lock()
print("locked", flush=True)
time.sleep(120)
"""


def test_a_second_writer_is_refused_and_a_dead_holder_never_blocks(stopped: Path, tmp_path: Path) -> None:
    state = json.loads((stopped / "state.json").read_text())
    state["status"] = "running"
    (stopped / "state.json").write_text(json.dumps(state))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(stopped)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert RunDir(stopped).status() == "running"
        before = _snapshot(stopped)
        assert_one_line_error(invoke("train", "--resume", stopped, "-q"), "is in use", f"process {holder.pid}")
        assert _snapshot(stopped) == before
    finally:
        holder.kill()  # kill -9: the kernel drops the lock
        holder.wait()
    assert RunDir(stopped).status() == GONE
    report = invoke("report", stopped, "--out", tmp_path / "r.html", "--episodes", "1", "--no-video")
    assert report.exit_code == 0, report.output
    assert GONE in (tmp_path / "r.html").read_text()
    evaluation = invoke("evaluate", stopped, "--episodes", "1")
    assert evaluation.exit_code == 0 and f"{GONE}: its training was killed" in evaluation.stderr
    result = invoke("train", "--resume", stopped, "-q")
    assert result.exit_code == 0, result.output
    assert "stopped without recording it" in result.stderr


# --- signals ------------------------------------------------------------------------------


def test_sighup_checkpoints_like_sigterm(tmp_path: Path) -> None:
    run = tmp_path / "run"
    resolved = resolve("cartpole", overrides=tiny_overrides(BUDGET, checkpoint_freq=10_000))
    with pytest.raises(Interrupted) as info:
        train.start(resolved, seed=0, run_dir=run, quiet=True, callbacks=[SignalAt(350, signal.SIGHUP)])
    assert info.value.exit_code == 128 + signal.SIGHUP
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "interrupted" and state["last_checkpoint"] == state["num_timesteps"] >= 350


def test_second_ctrl_c_during_the_final_save_abandons_it_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    resolved = resolve("cartpole", overrides=tiny_overrides(BUDGET, checkpoint_freq=300))
    real_save = buffer_store.save_buffer

    def save_then_ctrl_c(buffer: Any, path: Path) -> None:
        real_save(buffer, path)
        if path.parent.name != ".staging-000000000300":  # the final save, not the periodic one
            os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, half-way through the checkpoint

    monkeypatch.setattr(callbacks, "save_buffer", save_then_ctrl_c)
    with pytest.raises(Interrupted, match="second Ctrl-C: the checkpoint being saved was abandoned") as info:
        train.start(resolved, seed=0, run_dir=run, quiet=True, callbacks=[SignalAt(450, signal.SIGINT)])
    assert "resumes from step 300" in str(info.value) and info.value.exit_code == 130
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000000000300"], "no staging left"
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "interrupted" and state["num_timesteps"] == 300 and state["reached"] >= 450
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    monkeypatch.setattr(callbacks, "save_buffer", real_save)
    result = train.resume(run, quiet=True)
    assert result is not None and result.num_timesteps >= BUDGET


# --- a full disk --------------------------------------------------------------------------


def test_full_disk_during_a_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    resolved = resolve("cartpole", overrides=tiny_overrides(BUDGET, checkpoint_freq=300, eval_freq=0))
    real_save = buffer_store.save_buffer

    def disk_fills(buffer: Any, path: Path) -> None:
        if path.parent.name == ".staging-000000000300":
            return real_save(buffer, path)
        path.write_bytes(b"\0" * 1000)  # part of it, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(callbacks, "save_buffer", disk_fills)
    with pytest.raises(RlkitError) as info:
        train.start(resolved, seed=0, run_dir=run, quiet=True)
    message = str(info.value)
    assert "\n" not in message and "no space left on the device writing" in message
    assert ".staging-000000000600/replay_buffer.npz" in message and "MiB needed" in message
    assert "the last good checkpoint (step 300) is intact" in message and "--resume" in message
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000000000300"], "no partial staging left"
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "crashed" and state["last_checkpoint"] == 300 and "no space left" in state["error"]
    monkeypatch.setattr(callbacks, "save_buffer", real_save)  # space freed
    result = train.resume(run, quiet=True)
    assert result is not None and result.num_timesteps >= BUDGET
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "finished" and "error" not in state and "reached" not in state


def test_new_run_on_a_full_disk_leaves_no_run_directory(_isolated_runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full(self: RunDir, *args: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.config))

    monkeypatch.setattr(RunDir, "write_config", full)
    result = invoke("train", "cartpole", "--seed", "0", "-q")
    assert_one_line_error(result, "no space left on the device writing", "config.yaml")
    assert not _isolated_runs.exists(), "no empty run directory, nor the runs folder it made"
    _isolated_runs.mkdir()
    (_isolated_runs / "other").mkdir()  # a runs folder that was there (with something in it) stays
    assert_one_line_error(invoke("train", "cartpole", "--seed", "0", "-q"), "no space left on the device")
    assert [p.name for p in _isolated_runs.iterdir()] == ["other"]
    given = _isolated_runs.parent / "deep" / "er" / "run"
    assert_one_line_error(invoke("train", "cartpole", "--run-dir", given, "-q"), "no space left on the device")
    assert not (_isolated_runs.parent / "deep").exists(), "--run-dir's parents made for it are removed too"


def test_state_is_written_in_place_when_no_temporary_file_fits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = RunDir(tmp_path)
    run.update_state(status="running", num_timesteps=0)

    def no_room(path: Path, text: str) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic, "write_text", no_room)
    run.update_state(status="crashed", num_timesteps=300)
    assert run.read_state()["status"] == "crashed"


def test_leftover_staging_folders_are_removed_at_resume(stopped: Path) -> None:
    leftover = stopped / "checkpoints" / ".staging-000000000450"
    leftover.mkdir()
    (leftover / "model.zip").write_bytes(b"half")
    result = invoke("train", "--resume", stopped, "-q")
    assert result.exit_code == 0, result.output
    assert not leftover.exists()


def test_new_run_stopped_by_a_full_disk_before_its_first_checkpoint_is_removed(
    _isolated_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(buffer: Any, path: Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(callbacks, "save_buffer", full)
    resolved = resolve("cartpole", overrides=tiny_overrides(BUDGET, eval_freq=0))
    with pytest.raises(RlkitError, match="no checkpoint yet and was removed"):
        train.start(resolved, seed=0, quiet=True)
    assert not _isolated_runs.exists(), "nothing of the run is left, nor the runs folder it made"


def test_a_model_outside_a_run_directory_needs_its_config(finished_run: Path, tmp_path: Path) -> None:
    from rlkit.training.factory import load_model

    loose = tmp_path / "model.zip"
    shutil.copy(finished_run / "model.zip", loose)
    with pytest.raises(RlkitError, match="no run config"):
        load_model(loose, None, "cpu")
    preset = RunDir(finished_run).read_config()[2]
    assert load_model(loose, None, "cpu", preset=preset).num_timesteps >= BUDGET
    with pytest.raises(RlkitError, match="it is a dqn model but the run's config says qrdqn"):
        load_model(loose, None, "cpu", preset=preset.model_copy(update={"algo": "qrdqn"}))


def test_sigterm_while_setting_up_removes_the_new_run(_isolated_runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlkit.training import factory

    real_build = factory.build

    def build_then_sigterm(*args: Any, **kwargs: Any) -> Any:
        trainee = real_build(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)  # e.g. a cluster scheduler, while the envs were being made
        return trainee

    monkeypatch.setattr(factory, "build", build_then_sigterm)
    resolved = resolve("cartpole", overrides=tiny_overrides(BUDGET))
    with pytest.raises(Interrupted, match="stopped before training began") as info:
        train.start(resolved, seed=0, quiet=True)
    assert info.value.exit_code == 128 + signal.SIGTERM
    assert not any(p.is_file() for p in _isolated_runs.rglob("*"))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_sighup_while_resuming_leaves_the_run_unchanged(stopped: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlkit.training import factory

    real_build = factory.build

    def build_then_sighup(*args: Any, **kwargs: Any) -> Any:
        trainee = real_build(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGHUP)
        return trainee

    monkeypatch.setattr(factory, "build", build_then_sighup)
    before = _snapshot(stopped)
    with pytest.raises(Interrupted, match="stopped before the resume began") as info:
        train.resume(stopped, quiet=True)
    assert info.value.exit_code == 128 + signal.SIGHUP
    assert _snapshot(stopped) == before


def test_full_disk_names_the_file_not_its_temporary_copy(tmp_path: Path) -> None:
    def half(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(OSError) as info:
        atomic.write_with(tmp_path / "best_model.zip", half)
    assert info.value.filename == str(tmp_path / "best_model.zip") and info.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir()), "no temporary file left"


def test_init_from_a_model_whose_weights_are_a_pickle_runs_nothing(finished_run: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    crafted = tmp_path / "crafted.zip"
    with zipfile.ZipFile(finished_run / "model.zip") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["policy.pth"] = pickle.dumps(Payload(marker))  # torch.load would unpickle it without weights_only
    with zipfile.ZipFile(crafted, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    result = invoke("train", "cartpole", "--init-from", crafted, "-q", "--seed", "0")
    _refused(result, "--init-from", "not a readable SB3 model")
    assert not marker.exists()
    result = invoke("evaluate", finished_run, "--episodes", "1")  # the run itself stays fine
    assert result.exit_code == 0


def test_model_whose_weights_are_a_pickle_runs_nothing(stopped: Path, tmp_path: Path) -> None:
    """SB3 reads ``*.pth`` with ``torch.load(weights_only=True)``: a pickle naming code is refused."""
    marker = tmp_path / "pwned"
    target = stopped / "best_model.zip"
    with zipfile.ZipFile(target) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["policy.pth"] = pickle.dumps(Payload(marker))
    with zipfile.ZipFile(target, "w") as archive:
        for name, blob in members.items():
            archive.writestr(name, blob)
    _refused(invoke("evaluate", stopped, "--episodes", "1"), "cannot load model", "UnpicklingError")
    assert not marker.exists()


# --- hostile YAML, through every reader -----------------------------------------------------

ONE_LINE_YAML = {  # what fits on a command line (--set): no NUL, no megabytes
    "aliases": "[&a [x, x, x, x, x, x, x, x, x], &b [*a, *a, *a, *a, *a, *a, *a, *a, *a], "
    + ", ".join(f"&{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("bcdefgh", "cdefghi", strict=True))
    + "]",
    "nesting": "[" * 300 + "]" * 300,
    "scalar": "x" * 20_000,
    "python-tag": "!!python/object/apply:os.system ['touch pwned']",
}


def _hostile_file(tmp_path: Path, kind: str) -> Path:
    from tests.test_safe_yaml import HOSTILE

    path = tmp_path / "hostile.yaml"
    path.write_text(HOSTILE[kind][0])
    return path


def _readers(tmp_path: Path, hostile: Path, finished_run: Path) -> dict[str, tuple[list[object], Path]]:
    """Each reader of a YAML file: the command that makes it read ``hostile``, and the folder it must leave empty."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    shutil.copy(hostile, run / "config.yaml")
    bench = tmp_path / "bench"
    bench.mkdir()
    shutil.copy(hostile, bench / "preset.yaml")
    zoo_out = tmp_path / "zoo"
    return {
        "preset file": (["train", hostile, "-q"], tmp_path / "runs"),
        "--config": (["train", "cartpole", "--config", hostile, "-q"], tmp_path / "runs"),
        "search space": (["tune", "run", "cartpole", "--space", hostile, "--trials", "1", "-q"], tmp_path / "runs"),
        "zoo file": (["presets", "import-zoo", hostile, "--out", zoo_out], zoo_out),
        "run config (evaluate)": (["evaluate", run, "--episodes", "1"], run / "nothing"),
        "run config (resume)": (["train", "--resume", run, "--steps", "900", "-q"], run / "nothing"),
        "benchmark preset": (["benchmark", "cartpole", "--seeds", "1", "--out", bench], bench / "seed-0"),
    }


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", ["aliases", "nesting", "scalar", "binary", "python-tag", "size"])
def test_hostile_yaml_through_every_reader_is_one_line(
    kind: str, tmp_path: Path, finished_run: Path, _isolated_runs: Path
) -> None:
    hostile = _hostile_file(tmp_path, kind)
    marker = Path("pwned")
    for reader, (args, untouched) in _readers(tmp_path, hostile, finished_run).items():
        before = _snapshot(tmp_path / "run")
        line = _refused(invoke(*args))
        assert any(name in line for name in ("hostile.yaml", "config.yaml", "preset.yaml")), (reader, line)
        assert not untouched.exists() or not any(untouched.iterdir()), f"{reader} wrote {untouched}"
        assert _snapshot(tmp_path / "run") == before, reader
        assert not marker.exists()
    assert not _isolated_runs.exists() or not any(p.is_file() for p in _isolated_runs.rglob("*"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sorted(ONE_LINE_YAML))
def test_hostile_yaml_in_a_set_value_is_one_line(kind: str, _isolated_runs: Path) -> None:
    for command in (["train", "cartpole"], ["tune", "run", "cartpole", "--trials", "1"]):
        line = _refused(invoke(*command, "--set", f"env_kwargs={ONE_LINE_YAML[kind]}", "-q"), "--set env_kwargs")
        assert len(line) < 200
    assert not _isolated_runs.exists() or not any(p.is_file() for p in _isolated_runs.rglob("*"))


# --- envs that break their own spaces -------------------------------------------------------

HOSTILE_ENV = '''
"""Hostile-v0: an env that breaks its own observation space, or raises, hangs or dies, from a step on."""

import multiprocessing
import os
import signal
import time

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class Hostile(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, mode="fine", after=0, in_worker=False, pid_file=None):
        self.observation_space = spaces.Box(0.0, 1.0, shape=(1,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.mode, self.after, self.steps = mode, after, 0
        # in_worker: misbehave only in a subprocess env worker (never in the test's own process)
        self.armed = not in_worker or multiprocessing.parent_process() is not None
        if pid_file is not None and multiprocessing.parent_process() is not None:
            with open(pid_file, "a") as handle:  # the worker's pid, for the test to check it is gone
                handle.write(f"{os.getpid()}\\n")

    def _obs(self):
        mode = self.mode if self.armed and self.steps >= self.after else "fine"
        if mode == "shape":
            return np.zeros(3, dtype=np.float32)
        if mode == "dtype":
            return np.zeros(1, dtype=np.float64)
        if mode == "bounds":
            return np.array([7.0], dtype=np.float32)
        if mode == "nan":
            return np.array([np.nan], dtype=np.float32)
        return np.array([0.5], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if self.armed and self.mode == "reset-raises" and self.steps >= self.after:
            raise RuntimeError("reset failed on purpose")
        return self._obs(), {}

    def step(self, action):
        self.steps += 1
        if self.armed and self.steps >= self.after:
            if self.mode == "raises":
                raise ValueError(f"boom at step {self.steps}")
            if self.mode == "hangs":
                time.sleep(3600)
            if self.mode == "dies":
                os.kill(os.getpid(), signal.SIGKILL)
        return self._obs(), 1.0, False, self.steps % 20 == 0, {}


gym.register(id="Hostile-v0", entry_point=Hostile)
'''


@pytest.fixture
def hostile_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The current folder holds ``hostile_env.py`` (env ``Hostile-v0``), importable with ``--import hostile_env``."""
    import gymnasium as gym

    from rlkit.environments import imports

    def forget() -> None:
        sys.modules.pop("hostile_env", None)
        if "hostile_env" in imports._imported:
            imports._imported.remove("hostile_env")
        gym.registry.pop("Hostile-v0", None)

    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "hostile_env.py").write_text(HOSTILE_ENV)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(sys, "path", list(sys.path))
    forget()
    yield folder
    forget()


@pytest.mark.parametrize(
    ("mode", "after", "came", "expected"),
    [
        ("shape", 0, "reset() returned an observation with shape (3,)", "expects shape (1,)"),
        ("dtype", 0, "reset() returned an observation with dtype float64", "expects dtype float32"),
        ("bounds", 2, "step 2 returned an observation with 7.0 at index 0", "expects values in [0.0, 1.0]"),
        ("nan", 3, "step 3 returned an observation with nan at index 0", "expects finite values"),
        ("shape", 4, "step 4 returned an observation with shape (3,)", "expects shape (1,)"),
        ("reset-raises", 0, "reset() raised RuntimeError: reset failed on purpose", "hostile_env.py line"),
        ("raises", 1, "step 1 raised ValueError: boom at step 1", "hostile_env.py line"),
    ],
)
def test_an_env_that_breaks_its_space_is_refused_before_any_run(
    hostile_env: Path, _isolated_runs: Path, mode: str, after: int, came: str, expected: str
) -> None:
    kwargs = f"env_kwargs={{mode: {mode}, after: {after}}}"
    for command in (
        ["train", "hostile_env:Hostile-v0", "--steps", "300", "-q"],
        ["tune", "run", "hostile_env:Hostile-v0", "--trials", "1", "--steps", "300", "-q"],
        ["benchmark", "hostile_env:Hostile-v0", "--seeds", "1", "--steps", "300", "--out", hostile_env / "bench"],
    ):
        _refused(invoke(*command, "--set", kwargs), "Hostile-v0: ", came, expected)
    assert not _isolated_runs.exists() or not any(_isolated_runs.iterdir()), "no run directory, no study"
    assert not (hostile_env / "bench").exists()


# --- refusals that write nothing and say one line --------------------------------------------


def test_export_that_is_refused_makes_no_export_folder(stopped: Path) -> None:
    for fmt in ("onnx", "torchscript"):
        _refused(invoke("export", stopped, "--format", fmt, "--check", "0"), "--check must be at least 1")
        assert not (stopped / "export").exists()
    final = stopped / "model.zip"
    final.write_bytes(final.read_bytes()[:2000])  # damaged: found out once the model is loaded
    _refused(invoke("export", stopped, "--model", "final", "--format", "torchscript"), "model.zip")
    assert not (stopped / "export").exists(), "a failure after the folder was made removes it again"


def test_a_results_folder_that_cannot_be_is_one_line_before_anything_shows(tmp_path: Path, monkeypatch: Any) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("RLKIT_RUNS_DIR", str(blocker))
    for args in (["benchmark", "cartpole", "--seeds", "2", "--jobs", "2"], ["tune", "run", "cartpole", "--jobs", "2"]):
        result = invoke(*args)
        _refused(result, "RLKIT_RUNS_DIR=", "is a file")
        assert result.output.strip().count("\n") == 0, result.output  # no warning, no table before it
    assert blocker.read_text() == ""


def test_a_study_folder_that_is_missing_is_one_short_line(tmp_path: Path, _isolated_runs: Path) -> None:
    url = f"sqlite:///{tmp_path}/missing/x.db"
    result = invoke("tune", "run", "cartpole", "--storage", url, "--trials", "1", "--jobs", "2")
    line = _refused(result, url, "does not exist")
    assert result.output.strip() == line
    relative = invoke("tune", "run", "cartpole", "--storage", "sqlite:///missing/dir/x.db", "--trials", "1")
    assert len(_refused(relative)) <= 80, "one line on an 80-column terminal"
    assert not (tmp_path / "missing").exists() and not _isolated_runs.exists()


# --- subprocess envs (vec_env: subproc) ------------------------------------------------------

SUBPROC = ["vec_env=subproc", "n_envs=2"]
REPO = Path(__file__).resolve().parent.parent


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie waiting to be reaped does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _session(sid: int) -> list[int]:
    """Every live process of session ``sid`` (a command started with ``start_new_session``: all it started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def _gone_within(pids: Callable[[], list[int]], seconds: float = 8.0) -> list[int]:
    """Poll until none of ``pids()`` is alive (or ``seconds`` pass); what is still alive."""
    import time

    deadline = time.monotonic() + seconds
    left = [p for p in pids() if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = [p for p in pids() if _alive(p)]
    return left


def _worker_pids(pid_file: Path) -> list[int]:
    return [int(line) for line in pid_file.read_text().split()] if pid_file.exists() else []


def _subproc_env(mode: str, after: int, pid_file: Path) -> list[str]:
    kwargs = f"env_kwargs={{mode: {mode}, after: {after}, in_worker: true, pid_file: '{pid_file}'}}"
    pairs = tiny_overrides(2000, checkpoint_freq=200, eval_freq=0)
    return ["hostile_env:Hostile-v0", *(a for p in [*pairs, *SUBPROC, kwargs] for a in ("--set", p)), "-q"]


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("raises", "step() at its step 250, raised ValueError: boom at step 250 (hostile_env.py line"),
        ("dies", "step() at its step 250: its worker process died (killed by SIGKILL)"),
        ("hangs", "step() at its step 250: no answer within 1 s, so its workers were stopped"),
    ],
)
def test_a_subprocess_env_that_raises_dies_or_hangs_is_one_line_and_resumable(
    hostile_env: Path, monkeypatch: pytest.MonkeyPatch, mode: str, said: str
) -> None:
    monkeypatch.setenv("RLKIT_ENV_TIMEOUT", "1")
    pid_file, run = hostile_env / "pids", hostile_env / "run"
    result = invoke("train", *_subproc_env(mode, 250, pid_file), "--run-dir", run)
    line = _refused(result, "Hostile-v0 (subprocess env ", said, "resume from step 400: rlkit train --resume run")
    assert len(_worker_pids(pid_file)) == 2
    assert _gone_within(lambda: _worker_pids(pid_file)) == [], "every worker is stopped"
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "crashed" and state["last_checkpoint"] == 400 and state["error"] in line
    assert "Traceback" not in result.stderr


def test_a_subprocess_env_that_fails_as_it_starts_is_one_line(hostile_env: Path) -> None:
    from rlkit.environments.factory import make_env
    from rlkit.environments.resolve import resolve as resolve_env

    pid_file = hostile_env / "pids"
    kwargs = f"env_kwargs={{mode: reset-raises, after: 0, in_worker: true, pid_file: '{pid_file}'}}"
    preset = resolve_env("hostile_env:Hostile-v0", overrides=[*SUBPROC, kwargs]).preset  # the check passes here
    envs = make_env(preset, n_envs=2, seed=0)
    with pytest.raises(RlkitError, match=r"subprocess env 1 of 2\), reset\(\), raised RuntimeError: reset failed"):
        envs.reset()
    assert _gone_within(lambda: _worker_pids(pid_file)) == []
    envs.close()  # closing what already failed is quiet


def _start_in_own_session(args: list[str], log: Path) -> subprocess.Popen[bytes]:
    """``rlkit ARGS`` in its own session (its pid is its process group and session id), output to ``log``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "wb") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "rlkit", *args], stdout=handle, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip


def _wait_for(path: Path, proc: subprocess.Popen[bytes], seconds: float = 180.0) -> None:
    """Until ``path`` exists (its name may be a glob: ``step-*``, as older checkpoints are deleted)."""
    import time

    deadline = time.monotonic() + seconds
    while not any(path.parent.glob(path.name)):
        assert proc.poll() is None, f"the command ended ({proc.returncode}) before {path} appeared"
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def test_ctrl_c_to_the_process_group_of_a_subproc_run_checkpoints_and_resumes(tmp_path: Path) -> None:
    """As a terminal sends it: SIGINT to the whole group (the run, the fork server, the env workers)."""
    run, log = tmp_path / "run", tmp_path / "log"
    sets = [*tiny_overrides(100_000, checkpoint_freq=500, eval_freq=1000), *SUBPROC, "stop_on_solved=false"]
    proc = _start_in_own_session(
        ["train", "cartpole", "--run-dir", str(run), *(a for p in sets for a in ("--set", p))], log
    )
    try:
        _wait_for(run / "checkpoints" / "step-*", proc)
        assert len(_session(proc.pid)) >= 3, "the run, its fork server and its two env workers"
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 130, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    assert "Traceback" not in output and "ConnectionResetError" not in output, output
    assert "checkpoint saved. Resume with:" in output and f"rlkit train --resume {run}" in output
    assert _gone_within(lambda: _session(proc.pid)) == [], "nothing of the run outlives it"
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "interrupted" and state["last_checkpoint"] == state["num_timesteps"] >= 500
    result = invoke("train", "--resume", run, "--steps", str(state["num_timesteps"] + 300), "-q")
    assert result.exit_code == 0, result.output
    assert json.loads((run / "state.json").read_text())["status"] == "finished"


SIGNAL_DRIVER = """
import json, os, signal, sys
from pathlib import Path
from stable_baselines3.common.callbacks import BaseCallback
from rlkit.core.errors import Interrupted
from rlkit.environments.resolve import resolve
from rlkit.training import callbacks, factory, train

phase, signum, run, times = sys.argv[1], getattr(signal, sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
sent = []

def ctrl_c():  # as a terminal does: the signal to the whole process group, env workers included
    if len(sent) < times:
        sent.append(phase)
        os.killpg(0, signum)

real_build, real_eval, real_save = factory.build, callbacks.evaluate_policy, callbacks.save_buffer

def build(*args, **kwargs):
    trainee = real_build(*args, **kwargs)
    (run.parent / "pids").write_text(json.dumps([p.pid for p in trainee.env.processes]))
    if phase == "set-up":
        ctrl_c()
    return trainee

def evaluate(*args, **kwargs):
    if phase == "evaluation":
        ctrl_c()
    return real_eval(*args, **kwargs)

def save(buffer, path):
    real_save(buffer, path)
    if phase == "checkpoint" or (phase == "twice" and sent):  # twice: the stop's own checkpoint
        ctrl_c()

class AtStep(BaseCallback):
    def _on_step(self):
        if phase in ("collection", "twice") and self.num_timesteps >= 350 and not sent:
            ctrl_c()
        return True

factory.build, callbacks.evaluate_policy, callbacks.save_buffer = build, evaluate, save
sets = ["n_timesteps=5000", "learning_starts=100", "train_freq=16", "gradient_steps=8", "eval_freq=300",
        "eval_episodes=2", "checkpoint_freq=300", "buffer_size=5000", "vec_env=subproc", "n_envs=2",
        "stop_on_solved=false"]
try:
    train.start(resolve("cartpole", overrides=sets), seed=0, run_dir=run, quiet=True, callbacks=[AtStep()])
except Interrupted as exc:
    print(str(exc).replace(chr(10), " "), flush=True)
    sys.exit(exc.exit_code)
print("finished", flush=True)
"""


def _signalled_run(tmp_path: Path, phase: str, signame: str, times: int = 1) -> tuple[int, str, Path]:
    """A subproc CartPole run in its own session that signals its own process group at ``phase``."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", SIGNAL_DRIVER, phase, signame, str(run), str(times)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        output = proc.communicate(timeout=180)[0].decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    workers = json.loads((tmp_path / "pids").read_text())
    assert len(workers) == 2
    assert _gone_within(lambda: [*_session(proc.pid), *workers]) == [], "no fork server, tracker or worker left"
    assert "Traceback" not in output and "Error" not in output, output
    return proc.returncode, output, run


@pytest.mark.parametrize(
    ("phase", "signame"),
    [
        ("collection", "SIGINT"),
        pytest.param("set-up", "SIGINT", marks=pytest.mark.slow),
        pytest.param("evaluation", "SIGINT", marks=pytest.mark.slow),
        pytest.param("checkpoint", "SIGINT", marks=pytest.mark.slow),
        pytest.param("collection", "SIGTERM", marks=pytest.mark.slow),
        pytest.param("evaluation", "SIGHUP", marks=pytest.mark.slow),
    ],
)
def test_a_signal_to_the_group_of_a_subproc_run_at_every_phase(tmp_path: Path, phase: str, signame: str) -> None:
    code, output, run = _signalled_run(tmp_path, phase, signame)
    assert code == 128 + getattr(signal, signame), output
    if phase == "set-up":
        assert "stopped before training began; the new run directory was removed" in output
        assert not run.exists()
        return
    assert "checkpoint saved. Resume with:" in output, output
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "interrupted" and state["last_checkpoint"] == state["num_timesteps"] > 0
    result = train.resume(run, quiet=True, total_steps=state["num_timesteps"] + 200)
    assert result is not None and result.num_timesteps >= state["num_timesteps"] + 200


@pytest.mark.slow
def test_ctrl_c_twice_on_a_subproc_run_keeps_the_last_checkpoint(tmp_path: Path) -> None:
    """The second Ctrl-C lands while the stop's checkpoint is written: it is abandoned, the one before kept."""
    code, output, run = _signalled_run(tmp_path, "twice", "SIGINT", times=2)
    assert code == 130 and "second Ctrl-C: the checkpoint being saved was abandoned" in output, output
    assert "the run resumes from step 300" in output
    state = json.loads((run / "state.json").read_text())
    assert state["status"] == "interrupted" and state["last_checkpoint"] == 300
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-000000000300"]


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_subprocess_env_workers_leave_stopping_to_the_parent() -> None:
    """SIGINT, SIGTERM and SIGHUP to the workers and their fork server change nothing; close ends them all."""
    import numpy as np

    from rlkit.environments.factory import make_env
    from rlkit.environments.subproc import START_METHOD, SubprocEnvs

    envs = make_env(resolve("cartpole", overrides=SUBPROC).preset, n_envs=2, seed=0)
    assert isinstance(envs, SubprocEnvs) and START_METHOD != "fork"
    workers = [p.pid for p in envs.processes]
    server = _parent_of(workers[0])
    assert server != os.getpid(), "forked from a fork server, not from this (threaded) process"
    envs.reset()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        for pid in (*workers, server):
            os.kill(pid, sig)
    import time

    time.sleep(0.5)
    assert all(_alive(pid) for pid in (*workers, server))
    obs, _, _, _ = envs.step(np.array([0, 1]))
    assert obs.shape == (2, 4)
    envs.close()
    assert _gone_within(lambda: workers) == []


# --- process trees: benchmark and tune --jobs under every signal -----------------------------

TREE_SIGNALS = {  # how the parent is told to stop: (send, expected exit code)
    "SIGTERM": (lambda pid: os.kill(pid, signal.SIGTERM), 143),
    "SIGINT to the pid": (lambda pid: os.kill(pid, signal.SIGINT), 130),
    "SIGINT to the group": (lambda pid: os.killpg(pid, signal.SIGINT), 130),
    "SIGHUP": (lambda pid: os.kill(pid, signal.SIGHUP), 129),
    "SIGKILL": (lambda pid: os.kill(pid, signal.SIGKILL), -9),
}


def _descendants(root: int) -> list[int]:
    """``root``'s children, theirs, and so on (by parent pid, read from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                children.setdefault(_parent_of(int(entry.name)), []).append(int(entry.name))
            except OSError:
                continue
    found, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo += children.get(pid, [])
    return found


def _stop_tree(proc: subprocess.Popen[bytes], how: str, code: int | None = None) -> list[int]:
    """Send ``how`` to ``proc``; the exit code must match and every process it had started must end."""
    send, expected = TREE_SIGNALS[how]
    code = expected if code is None or expected == -9 else code
    tree = _descendants(proc.pid)
    assert tree, "it has worker processes"
    send(proc.pid)
    assert proc.wait(60) == code
    left = _gone_within(lambda: tree, 20.0)
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert left == [], f"still alive after {how}: {left}"
    return tree


def _bench_args(out: Path, seeds: int, jobs: int, steps: int, *extra: str) -> list[str]:
    sets = [*tiny_overrides(steps, checkpoint_freq=300, eval_freq=1000), "stop_on_solved=false", *extra]
    return [
        "benchmark", "cartpole", "--seeds", str(seeds), "--jobs", str(jobs), "--episodes", "2", "--out", str(out),
        *(a for p in sets for a in ("--set", p)),
    ]  # fmt: skip


@pytest.mark.parametrize(
    "how", ["SIGTERM", *(pytest.param(h, marks=pytest.mark.slow) for h in TREE_SIGNALS if h != "SIGTERM")]
)
def test_benchmark_jobs_leave_no_process_behind(tmp_path: Path, how: str) -> None:
    out, log = tmp_path / "bench", tmp_path / "log"
    deep = how != "SIGTERM"  # the slow ones: subprocess envs under each seed too (fork server, two workers)
    proc = _start_in_own_session(_bench_args(out, 2, 2, 200_000, *(SUBPROC if deep else [])), log)
    try:
        for seed in (0, 1):
            _wait_for(out / f"seed-{seed}" / "checkpoints" / "step-*", proc)
        assert len(_descendants(proc.pid)) >= (8 if deep else 2), "two seeds (and their env workers)"
        _stop_tree(proc, how)
    finally:
        if proc.poll() is None:
            proc.kill()
    if how != "SIGKILL":
        assert "benchmark interrupted: 0 of 2 seeds finished and kept" in log.read_text(), log.read_text()
    assert "Traceback" not in log.read_text()
    for seed in (0, 1):
        state = json.loads((out / f"seed-{seed}" / "state.json").read_text())
        assert state["status"] == "interrupted" and state["last_checkpoint"] >= 300, (seed, state)
    assert not list(out.glob(".seed-*")), "no result files left"


@pytest.mark.slow
def test_benchmark_stopped_keeps_the_seeds_finished_so_far(tmp_path: Path) -> None:
    out, log = tmp_path / "bench", tmp_path / "log"
    args = _bench_args(out, 2, 1, 3000)
    proc = _start_in_own_session(args, log)
    try:
        _wait_for(out / "seed-1" / "checkpoints" / "step-*", proc)
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(60) == 143
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "benchmark interrupted: 1 of 2 seeds finished and kept" in log.read_text(), log.read_text()
    seed0 = out / "seed-0"
    assert json.loads((seed0 / "state.json").read_text())["status"] == "finished"
    kept = {p: p.stat().st_mtime_ns for p in seed0.rglob("*") if p.is_file()}
    assert any(p.name.startswith("evaluation-final") for p in kept), "its evaluation is kept too"
    assert json.loads((out / "seed-1" / "state.json").read_text())["status"] == "interrupted"
    again = invoke(*args)
    assert again.exit_code == 0, again.output
    assert {p: p.stat().st_mtime_ns for p in kept} == kept, "the finished seed is reused as it was"
    assert json.loads((out / "benchmark.json").read_text())["seeds"] == [0, 1]


def _running_trial(db: Path, proc: subprocess.Popen[bytes]) -> None:
    import time

    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "tune ended before a trial ran"
        if db.exists():
            try:
                study = optuna.load_study(study_name="cartpole", storage=f"sqlite:///{db}")
                if sum(t.state.name == "RUNNING" for t in study.get_trials()) >= 2:
                    return
            except (KeyError, SQLAlchemyError):
                pass
        time.sleep(0.3)
    raise AssertionError("no trials ran")


@pytest.mark.parametrize(
    "how", ["SIGKILL", *(pytest.param(h, marks=pytest.mark.slow) for h in TREE_SIGNALS if h != "SIGKILL")]
)
def test_tune_jobs_leave_no_process_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    import optuna

    runs, log = tmp_path / "runs", tmp_path / "log"
    monkeypatch.setenv("RLKIT_RUNS_DIR", str(runs))
    args = ["tune", "run", "cartpole", "--trials", "4", "--jobs", "2", "--steps", "100000", "-q"]
    proc = _start_in_own_session([*args, "--set", "eval_episodes=2", "--set", "learning_starts=50"], log)
    db = runs / "tune" / "cartpole.db"
    try:
        _running_trial(db, proc)
        _stop_tree(proc, how, 130)  # tune says 130 for any stop
    finally:
        if proc.poll() is None:
            proc.kill()
    study = optuna.load_study(study_name="cartpole", storage=f"sqlite:///{db}")
    states = [t.state.name for t in study.get_trials()]
    assert "RUNNING" not in states, states  # each worker re-queued its trial before it went
    assert states.count("WAITING") == 2, states


# --- found by the hostile pass ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["state.json", "meta.json"])
def test_deeply_nested_json_in_a_run_is_one_line(stopped: Path, tmp_path: Path, name: str) -> None:
    (stopped / name).write_text("[" * 100_000)  # json.loads raises RecursionError on this
    readers = {
        "state.json": [["evaluate", stopped, "--episodes", "1"], ["train", "--resume", stopped, "-q"]],
        "meta.json": [["report", stopped, "--out", tmp_path / "r.html", "--episodes", "1", "--no-video"]],
    }
    for args in readers[name]:
        _refused(invoke(*args), name, "nested too deeply")


def test_a_model_zip_bomb_is_refused_before_it_is_unpacked(stopped: Path) -> None:
    target = stopped / "best_model.zip"
    with zipfile.ZipFile(target) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, blob in members.items():
            archive.writestr(name, blob if name != "data" else b" " * (80 * 2**20))  # 80 MiB of spaces, ~80 KiB packed
    assert target.stat().st_size < 2**20
    _refused(invoke("evaluate", stopped, "--episodes", "1"), "cannot load model", "unpacks to 83,886,080 bytes")


def test_benchmark_on_a_full_disk_is_one_line_and_leaves_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = atomic.write_text

    def full(path: Path, text: str) -> None:
        if path.name == "preset.yaml":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, text)

    monkeypatch.setattr(atomic, "write_text", full)
    out = tmp_path / "deep" / "bench"
    _refused(
        invoke("benchmark", "cartpole", "--seeds", "1", "--out", out), "no space left on the device", "preset.yaml"
    )
    assert not (tmp_path / "deep").exists()


def test_a_study_that_cannot_be_created_leaves_no_empty_database(
    _isolated_runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import optuna
    from sqlalchemy.exc import OperationalError

    def full(url: str, **kwargs: Any) -> None:
        Path(url.removeprefix("sqlite:///")).touch()  # SQLite made the file, then the disk was full
        raise OperationalError("CREATE TABLE studies", {}, Exception("database or disk is full"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", full)
    _refused(invoke("tune", "run", "cartpole", "--trials", "1"), "cannot open storage", "database or disk is full")
    assert not _isolated_runs.exists(), "no runs/tune/ folder, no empty cartpole.db"


def test_a_benchmark_never_deletes_a_seed_another_benchmark_is_training(tmp_path: Path) -> None:
    from rlkit.analysis.benchmark import seed_job

    run = tmp_path / "seed-1"
    run.mkdir()
    (run / "config.yaml").write_text("half-made: true\n")  # started, no checkpoint yet: normally started over
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        with pytest.raises(RlkitError, match=f"is in use: rlkit process {holder.pid}"):
            seed_job("cartpole", "cartpole", 1, str(run), 2, "cpu")
        assert (run / "config.yaml").exists(), "the other benchmark's seed is left alone"
    finally:
        holder.kill()
        holder.wait()

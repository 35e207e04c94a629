"""A crash in the middle of a save never destroys the last good file or checkpoint."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from rlkit.core import atomic
from rlkit.core.errors import Interrupted
from rlkit.environments.resolve import resolve
from rlkit.training import callbacks, train
from rlkit.training.callbacks import Checkpointer
from rlkit.training.rundir import RunDir
from tests.conftest import tiny_overrides
from tests.test_resume import SignalAt


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "model.zip"
    target.write_text("good")

    def torn(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic.write_with(target, torn)
    assert target.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"], "no temp file left behind"


def test_crash_while_checkpointing_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    resolved = resolve("cartpole", overrides=tiny_overrides(1000, checkpoint_freq=300, eval_freq=0))
    original = Checkpointer.save
    save_buffer = callbacks.save_buffer
    calls = {"n": 0}

    def crash_on_second(self: Checkpointer) -> Path:
        calls["n"] += 1
        if calls["n"] == 2:
            monkeypatch.setattr(callbacks, "save_buffer", _boom)
        return original(self)

    monkeypatch.setattr(Checkpointer, "save", crash_on_second)
    with pytest.raises(RuntimeError, match="power cut"):
        train.start(resolved, seed=0, run_dir=run, quiet=True)
    good = RunDir(run).checkpoint_dirs()
    assert [p.name for p in good] == ["step-000000000300"]
    assert (good[0] / "replay_buffer.npz").stat().st_size > 0
    assert not list((run / "checkpoints").glob(".staging-*")), "the half-written checkpoint is gone"
    assert json.loads((run / "state.json").read_text())["status"] == "crashed"
    monkeypatch.setattr(Checkpointer, "save", original)
    monkeypatch.setattr(callbacks, "save_buffer", save_buffer)
    result = train.resume(run, quiet=True)
    assert result is not None and result.num_timesteps >= 1000


def _boom(*args: object, **kwargs: object) -> None:
    raise RuntimeError("power cut")


def test_interrupt_saves_even_between_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "run"
    resolved = resolve("cartpole", overrides=tiny_overrides(2000, checkpoint_freq=100_000))
    with pytest.raises(Interrupted):
        train.start(resolved, seed=0, run_dir=run, quiet=True, callbacks=[SignalAt(350, signal.SIGINT)])
    assert len(RunDir(run).checkpoint_dirs()) == 1


def test_atomic_files_get_ordinary_permissions(tmp_path: Path) -> None:
    """Not the temporary file's owner-only 0600: what open(path, "w") gives, or the old file's mode."""
    import os

    mask = os.umask(0o022)
    try:
        fresh = tmp_path / "fresh.json"
        atomic.write_json(fresh, {"a": 1})
        assert fresh.stat().st_mode & 0o777 == 0o644
        kept = tmp_path / "kept.txt"
        kept.write_text("old")
        kept.chmod(0o600)
        atomic.write_text(kept, "new")
        assert kept.read_text() == "new" and kept.stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(mask)

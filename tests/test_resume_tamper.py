"""A tampered ``resume.json`` (its manifest rewritten to match): the resume runs no code from it, and
continues from a reset of the envs with one line saying why, never a traceback or a silent wrong state.

Before :func:`rlkit.training.resume_state.check`, the cases marked below raised out of the resume
(RuntimeError, StopIteration, AssertionError, gymnasium's Error, TypeError after the run had
changed) or were taken as they were (a step counter of 10**15, three episode starts for one env).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rlkit.environments.resolve import resolve
from rlkit.training import train
from tests.conftest import tiny_overrides
from tests.test_resume_exact import _as_if_killed_after_first_checkpoint

Doc = dict[str, Any]


def _env0(**change: Any) -> Callable[[Doc], None]:
    return lambda d: d["envs"][0].update(change)


TAMPERS: dict[str, tuple[Callable[[Doc], None], str]] = {
    "torch-state-short": (lambda d: d["rng"].update(torch="AAAA"), "rng.torch holds 3 bytes"),  # RuntimeError
    "resets-out-of-range": (_env0(resets_at=[-1]), "resets_at is not increasing"),  # StopIteration
    "seed-a-string": (_env0(seed="abc"), "envs.0.seed"),  # gymnasium.error.Error
    "action-a-string": (_env0(dtype="<U5"), "outside the action space"),  # AssertionError in CartPole
    "replay-too-long": (_env0(actions=[0] * 50_000), "more than the"),  # replayed past the episode's end
    "eval-rng-not-a-state": (lambda d: d.update(eval_rng=[1]), "eval_rng.0"),  # TypeError, after writing
    "pending-wrong-shape": (lambda d: d.update(pending={**d["pending"], "actions": [[0, 1, 1]]}), "pending.actions"),
    "steps-huge": (lambda d: d.update(num_timesteps=10**15), "num_timesteps is 1,000,000,000,000,000"),  # taken
    "episode-starts-x3": (lambda d: d.update(last_episode_starts=[True] * 3), "last_episode_starts holds 3"),
    "envs-x3": (lambda d: d.update(envs=d["envs"] * 3), "the checkpoint has 3 envs' states, the run 1"),
}


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("straight") / "run"
    sets = tiny_overrides(1200, checkpoint_freq=700, keep_checkpoints=9, eval_freq=500)
    train.start(resolve("cartpole", overrides=sets), seed=1, run_dir=folder, quiet=True)
    return folder


@pytest.mark.parametrize("name", list(TAMPERS))
def test_a_tampered_resume_state_resumes_from_a_reset_in_one_line(straight: Path, tmp_path: Path, name: str) -> None:
    tamper, said = TAMPERS[name]
    copy = tmp_path / "run"
    step = _as_if_killed_after_first_checkpoint(straight, copy)
    checkpoint = next((copy / "checkpoints").glob("step-*"))
    doc = json.loads((checkpoint / "resume.json").read_text())
    assert doc.get("pending") is not None  # 700 falls inside a rollout
    tamper(doc)
    data = json.dumps(doc).encode()
    (checkpoint / "resume.json").write_bytes(data)
    manifest = json.loads((checkpoint / "manifest.json").read_text())
    manifest["files"]["resume.json"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (checkpoint / "manifest.json").write_text(json.dumps(manifest))
    notes: list[str] = []
    result = train.resume(copy, quiet=True, notify=notes.append)
    assert result is not None and result.num_timesteps == 1200
    inexact = [n for n in notes if "not exactly" in n]
    assert len(inexact) == 1 and said in inexact[0], notes
    state = json.loads((copy / "state.json").read_text())
    assert state["inexact_resumes"] == [step] and state["num_timesteps"] == 1200
    shutil.rmtree(copy)

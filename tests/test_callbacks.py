"""The one evaluator's progress hooks: the episodes it has played, and a stop that does not wait for the rest."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from rlkit.core.errors import Interrupted
from rlkit.environments.resolve import resolve
from rlkit.training import train
from rlkit.training.callbacks import EvaluationStopped, Evaluator
from rlkit.training.display import TrainingDisplay
from tests.conftest import tiny_overrides


def _evaluator(episodes: int, hooks: list[Any]) -> Evaluator:
    from stable_baselines3.common.logger import configure

    from rlkit.environments.factory import make_env
    from rlkit.training.factory import build

    preset = resolve("cartpole", overrides=tiny_overrides()).preset
    trainee = build(preset, seed=0, device="cpu")
    trainee.model.set_logger(configure(None, []))
    evaluator = Evaluator(
        make_env(preset, n_envs=2, seed=1, train=False), eval_freq=100, n_episodes=episodes, callback_on_progress=hooks
    )
    evaluator.init_callback(trainee.model)
    return evaluator


def test_progress_hooks_hear_every_episode_end_from_the_first_to_the_last() -> None:
    heard: list[tuple[str, int, int]] = []
    evaluator = _evaluator(6, [lambda what, done, total: heard.append((what, done, total))])
    assert evaluator.evaluate() is True and len(evaluator.history) == 1
    done = [d for _, d, _ in heard]
    assert heard[0] == ("evaluating", 0, 6) and heard[-1] == ("evaluating", 6, 6)
    assert done == sorted(done) and set(done) == set(range(7))  # every count, in order (called at each env step)
    assert {what for what, _, _ in heard} == {"evaluating"} and {t for _, _, t in heard} == {6}


def test_a_hook_answering_false_stops_the_evaluation_at_once_and_records_nothing() -> None:
    heard: list[int] = []

    def stop_after_two(what: str, done: int, total: int) -> bool:
        heard.append(done)
        return done < 2

    evaluator = _evaluator(50, [stop_after_two])
    assert evaluator.evaluate() is False  # training stops, as when any hook says so
    assert evaluator.history == [] and max(heard) == 2  # none of the 48 other episodes was played
    with pytest.raises(EvaluationStopped):
        evaluator.play(evaluator.eval_env, 5, "confirming")


@pytest.mark.parametrize("what", ["evaluating", "confirming"])
def test_ctrl_c_during_an_evaluation_stops_it_and_leaves_a_resumable_run(
    what: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGINT while the episodes play: no waiting for the rest, a checkpoint, the resume command."""
    heard: list[tuple[str, int]] = []
    sent: list[int] = []
    original = TrainingDisplay.on_progress

    def on_progress(self: TrainingDisplay, kind: str, done: int, total: int) -> None:
        heard.append((kind, done))
        if kind == what and done == 1 and not sent:
            sent.append(self.steps)
            os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C on the terminal: the run's handler takes it
        original(self, kind, done, total)

    monkeypatch.setattr(TrainingDisplay, "on_progress", on_progress)
    # A low bar, so the first evaluation reaches it and a 100-episode confirmation follows.
    sets = tiny_overrides(
        2000, eval_episodes=40, solved_score=9, solved_episodes=100, solved_confidence=0, stop_on_solved="true"
    )
    with pytest.raises(Interrupted) as info:
        train.start(resolve("cartpole", overrides=sets), seed=0, run_dir=tmp_path / "run", quiet=True)
    assert "checkpoint saved. Resume with:" in str(info.value)
    after = [done for kind, done in heard[heard.index((what, 1)) :] if kind == what]
    assert max(after) <= 2  # the episodes under way when the signal came, not the 40 or 100 of them
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["status"] == "interrupted" and not state.get("solved")
    step = state["last_checkpoint"]
    assert step < 300 and (tmp_path / "run" / "checkpoints" / f"step-{step:012d}").is_dir()  # before the evaluation
    newest = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())[-1]
    assert newest == f"step-{step:012d}"  # not also one at 300, the step the stop does not keep
    resumed = train.resume(tmp_path / "run", quiet=True)
    assert resumed is not None and resumed.solved  # the evaluation runs again, and this time confirms

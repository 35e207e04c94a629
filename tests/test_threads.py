"""The thread tuner: it picks the faster count, follows a changing load, and never changes results."""

from __future__ import annotations

import functools
import itertools
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from rlkit.cli import app
from rlkit.core import threads
from rlkit.core.errors import RlkitError
from rlkit.core.threads import ThreadTuner, candidate_counts
from rlkit.dqn.engine import EngineOptions
from rlkit.dqn.invariance import thread_invariant
from rlkit.dqn.mlp import Stack
from rlkit.environments.factory import make_env
from rlkit.environments.resolve import resolve
from rlkit.training import factory as model_module
from rlkit.training import train
from rlkit.training.factory import build_model, load_model, thread_tuner

STEPS_PER_CYCLE = 4


class FakeLoad:
    """A clock whose cycles cost ``cost[threads]`` seconds per env step at torch's current count."""

    def __init__(self, cost: dict[int, float]) -> None:
        self.cost = cost
        self.now = 0.0
        self.cycles = dict.fromkeys(cost, 0)

    def clock(self) -> float:
        return self.now

    def run(self, tuner: ThreadTuner, cycles: int, start: int = 0) -> int:
        """``cycles`` cycles of ``STEPS_PER_CYCLE`` env steps; returns the step counter after them."""
        steps = start
        for _ in range(cycles):
            tuner.cycle(steps)
            assert torch.get_num_threads() == tuner.current
            self.now += self.cost[tuner.current] * STEPS_PER_CYCLE
            self.cycles[tuner.current] += 1
            steps += STEPS_PER_CYCLE
        return steps


@pytest.fixture(autouse=True)
def _restore_threads() -> Any:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _tuner(load: FakeLoad, **kwargs: Any) -> ThreadTuner:
    kwargs.setdefault("crowd", None)  # the machine's real load stays out of these fake-clock tests
    return ThreadTuner((1, 2), probe_cycles=4, hold_cycles=10, max_hold_cycles=40, clock=load.clock, **kwargs)


def test_candidate_counts() -> None:
    assert candidate_counts(1) == (1,)
    assert candidate_counts(2) == (1, 2)
    assert candidate_counts(3) == (1, 2)
    assert candidate_counts(16) == (1, 2, 4)


def test_rlkit_cores_caps_the_share(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.CORES_VAR, raising=False)
    cores = threads.available_cores()
    assert cores >= 1
    monkeypatch.setenv(threads.CORES_VAR, "1")
    assert threads.available_cores() == 1 and threads.cores_per_job(4) == 1
    monkeypatch.setenv(threads.CORES_VAR, "64")
    assert threads.available_cores() == cores  # never more than the process may use
    assert threads.job_environment(1)[threads.CORES_VAR] == "64"  # one job: left as it is
    assert threads.job_environment(cores + 1)[threads.CORES_VAR] == "1"
    for bad in ("0", "two", "-1", ""):
        monkeypatch.setenv(threads.CORES_VAR, bad)
        with pytest.raises(RlkitError, match="RLKIT_CORES"):
            threads.available_cores()


def test_a_malformed_share_is_one_line_before_anything_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(threads.CORES_VAR, "lots")
    result = CliRunner().invoke(app, ["train", "cartpole", "--run-dir", str(tmp_path / "run"), "-q"])
    assert result.exit_code == 2 and "RLKIT_CORES='lots'" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_picks_the_faster_count_and_holds_it() -> None:
    load = FakeLoad({1: 1.0, 2: 0.5})
    tuner = _tuner(load)
    load.run(tuner, 9)  # 8 probe cycles (interleaved) and the first held one
    assert tuner.winner == 2 and tuner.current == 2
    assert tuner.measurements[0]["s_per_step"] == {1: 1.0, 2: 0.5}
    shares = tuner.cycle_shares()
    load.run(tuner, 9, start=36)  # still held
    assert tuner.cycle_shares()[2] > shares[2] and len(tuner.measurements) == 1


def test_more_threads_must_pay_for_themselves() -> None:
    load = FakeLoad({1: 1.0, 2: 0.97})  # 3% faster: not worth a second core
    tuner = _tuner(load)
    load.run(tuner, 9)
    assert tuner.winner == 1 and torch.get_num_threads() == 1


def test_follows_a_changing_load_and_backs_off_while_the_winner_holds() -> None:
    load = FakeLoad({1: 1.0, 2: 0.8})
    tuner = _tuner(load)
    steps = load.run(tuner, 8 + 10 + 8 + 20 + 8 + 1)  # probe, hold 10, probe, hold 20 (doubled), probe
    assert [m["threads"] for m in tuner.measurements] == [2, 2, 2]
    at = [m["step"] for m in tuner.measurements]
    gaps = [b - a for a, b in itertools.pairwise(at)]
    assert gaps == [(10 + 8) * STEPS_PER_CYCLE, (20 + 8) * STEPS_PER_CYCLE]
    load.cost = {1: 1.0, 2: 3.0}  # another process takes the second core
    load.run(tuner, 40 + 8 + 1, start=steps)
    assert tuner.measurements[-1]["threads"] == 1 and tuner.current == 1
    assert tuner.measurements[-1]["s_per_step"] == {1: 1.0, 2: 3.0}


def test_a_far_slower_count_stops_being_timed_early() -> None:
    load = FakeLoad({1: 1.0, 2: 3.0})  # a busy machine: the second thread waits for a core
    tuner = ThreadTuner((1, 2), probe_cycles=12, hold_cycles=100, crowd=None, clock=load.clock)
    load.run(tuner, 30)
    assert tuner.winner == 1 and load.cycles[2] == threads.CLEAR_AFTER
    assert tuner.measurements[0]["s_per_step"] == {1: 1.0, 2: 3.0}


def test_counts_that_need_a_taken_core_are_not_timed() -> None:
    load = FakeLoad({1: 1.0, 2: 3.0})
    others = [1]  # another process runs on the second core
    tuner = _tuner(load, crowd=lambda: others[0])
    steps = load.run(tuner, 40)
    assert load.cycles[2] == 0 and tuner.winner == 1
    assert tuner.measurements[0] == {"step": 0, "s_per_step": {}, "threads": 1, "others": 1}
    assert len(tuner.measurements) == 4  # looked again after every short hold (10 cycles), never timed
    steps = load.run(tuner, (threads.MAX_KEPT + 5) * 11, start=steps)
    assert len(tuner.measurements) == threads.MAX_KEPT  # a long busy run keeps the last ones only
    others[0] = 0  # the other process ended: two threads pay again
    load.cost = {1: 1.0, 2: 0.5}
    load.run(tuner, 20, start=steps)
    assert tuner.winner == 2 and tuner.measurements[-1]["others"] == 0
    assert tuner.measurements[-1]["s_per_step"] == {1: 1.0, 2: 0.5}


@pytest.mark.skipif(not Path("/proc/loadavg").exists(), reason="reads Linux's /proc")
def test_other_runnable_sees_a_busy_process() -> None:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        readings = []
        for _ in range(9):
            readings.append(threads.other_runnable())
            time.sleep(0.02)
    finally:
        hog.kill()
        hog.wait()
    assert statistics.median_low(r for r in readings if r is not None) >= 1, readings


def test_cycles_without_env_steps_or_across_a_pause_are_not_timed() -> None:
    load = FakeLoad({1: 1.0, 2: 0.5})
    tuner = _tuner(load)
    for _ in range(12):  # train() called by hand: the step counter does not move
        tuner.cycle(0)
        load.now += 5.0
    assert not tuner.measurements and tuner.winner == 1
    fresh = ThreadTuner((1, 2), probe_cycles=2, hold_cycles=10, crowd=None, clock=load.clock)
    steps = load.run(fresh, 1)  # a cycle at 1 thread ...
    load.now += 1000.0  # ... then another learner ran
    fresh.restart()
    load.run(fresh, 4, start=steps)
    assert fresh.measurements[0]["s_per_step"] == {1: 1.0, 2: 0.5}


def _lunarlander(*sets: str) -> Any:
    preset = resolve("lunarlander", overrides=["learning_starts=200", *sets]).preset
    return preset, build_model(preset, make_env(preset, n_envs=1, seed=0), seed=0, device="cpu", tensorboard_log=None)


def test_shipped_networks_give_identical_steps_at_every_count() -> None:
    # The gate that allows switching: on this machine's kernels the step does not depend on the count.
    for name in ("lunarlander", "cartpole", "acrobot", "mountaincar"):
        preset = resolve(name).preset
        model = build_model(preset, make_env(preset, n_envs=1, seed=0), seed=0, device="cpu", tensorboard_log=None)
        assert thread_invariant(model, (1, 2)), name


def test_a_count_dependent_step_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    _, model = _lunarlander()
    forward = Stack.forward

    def drifting(self: Stack, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = forward(self, x)
        outputs[-1] = outputs[-1] + 1e-6 * torch.get_num_threads()  # as a BLAS that splits sums by thread
        return outputs

    monkeypatch.setattr(Stack, "forward", drifting)
    assert not thread_invariant(model, (1, 2))
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    preset = resolve("lunarlander").preset
    assert thread_tuner(preset, model) is None


def test_tuner_only_where_it_applies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    preset, model = _lunarlander()
    tuner = thread_tuner(preset, model)
    assert tuner is not None and tuner.candidates == (1, 2)
    assert model_module.threads_label(1, tuner) == "auto 1/2" and model_module.threads_label(1, None) == 1
    for sets in (["torch_threads=1"], ["noisy=true"], ["torch_threads=2"]):
        p, m = _lunarlander(*sets)
        assert thread_tuner(p, m) is None, sets  # a fixed count, or the autograd path
    preset, model = _lunarlander()
    model.use_engine(EngineOptions(manual_backward=False))
    assert thread_tuner(preset, model) is None
    monkeypatch.setattr(threads, "available_cores", lambda: 1)
    assert thread_tuner(*_lunarlander()) is None


def test_switching_counts_while_training_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run whose count flips every training phase ends bit-identical to a run at one thread."""
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    flipping = functools.partial(ThreadTuner, probe_cycles=1, hold_cycles=1, max_hold_cycles=1, crowd=None)
    monkeypatch.setattr(threads, "ThreadTuner", flipping)
    sets = ["n_timesteps=1200", "learning_starts=200", "eval_freq=0", "checkpoint_freq=0"]
    runs = {}
    for name, extra in (("auto", []), ("one", ["torch_threads=1"])):
        resolved = resolve("lunarlander", overrides=[*sets, *extra])
        runs[name] = train.start(resolved, seed=3, run_dir=tmp_path / name, quiet=True).run_dir
    meta = json.loads((runs["auto"] / "meta.json").read_text())
    state = json.loads((runs["auto"] / "state.json").read_text())
    assert (
        meta["torch_threads"] == "auto 1/2"
        and json.loads((runs["one"] / "meta.json").read_text())["torch_threads"] == 1
    )
    assert min(state["torch_thread_shares"].values()) > 0.2  # both counts really trained
    params = [load_model(r / "model.zip", None, "cpu").policy.state_dict() for r in runs.values()]
    for key in params[0]:
        assert torch.equal(params[0][key], params[1][key]), key

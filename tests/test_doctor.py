"""The run doctor names the right finding first on runs provoked into each pathology, and stays silent
on the shipped presets' healthy runs; each rule also against synthetic evidence at its thresholds."""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from stable_baselines3.common.callbacks import BaseCallback
from typer.testing import CliRunner

import rlkit
from rlkit.cli import app
from rlkit.environments.resolve import resolve
from rlkit.training import findings as doctor
from rlkit.training.findings import Evidence, Series
from rlkit.training.rundir import RunDir

pytestmark = pytest.mark.usefixtures("one_thread")


def _evidence(*sets: str, evaluations: list[float] | None = None, **kwargs: Any) -> Evidence:
    preset = resolve("cartpole", overrides=list(sets)).preset
    rows = [
        {"timesteps": 2000.0 * (i + 1), "mean_reward": m, "std_reward": 5.0, "episodes": 10.0}
        for i, m in enumerate(evaluations or [])
    ]
    return Evidence(preset=preset, state=kwargs.pop("state", {}), evaluations=rows, **kwargs)


def _codes(evidence: Evidence) -> list[str]:
    return [f.code for f in doctor.diagnose(evidence, "cartpole")]


def _series(values: list[float], every: int = 500) -> Series:
    return Series(np.arange(1, len(values) + 1, dtype=float) * every, np.asarray(values, float))


def test_divergence_is_values_running_away_from_the_returns() -> None:
    training = _series([20.0] * 30)
    growing = _series([2.0, 4.0, 8.5, 17.0, 33.0, 70.0, 140.0, 300.0])
    found = doctor.diagnose(_evidence(training=training, diag={"q_greedy_max": growing}), "cartpole")
    assert [f.code for f in found] == ["divergence"] and 0 < int(found[0].figures["doubling_steps"]) < 1000
    big_returns = _series([400.0] * 30)  # the same values, backed by the returns: values propagating
    assert _codes(_evidence(training=big_returns, diag={"q_greedy_max": growing})) == []
    settled = _series([2.0, 40.0, 80.0, 90.0, 88.0, 91.0, 89.0, 90.0, 88.0])  # past the returns, no longer rising
    assert _codes(_evidence(training=training, diag={"q_greedy_max": settled})) == []


def test_q_overestimation_against_the_discounted_returns() -> None:
    evidence = _evidence(evaluations=[50.0, 300.0, 400.0])
    for row, q in zip(evidence.evaluations, (30.0, 60.0, 90.0), strict=True):
        row.update(q_start=q, return_discounted=20.0, return_discounted_std=4.0)
    found = doctor.diagnose(evidence, "cartpole")
    assert [f.code for f in found] == ["q_overestimation"] and found[0].figures["trend"] == "growing"
    assert any("double_q=true" in line for line in found[0].advice)
    for row in evidence.evaluations:
        row["q_start"] = 24.0  # within half the return's size of it: no finding
    assert _codes(evidence) == []


def test_exploration_rules() -> None:
    assert _codes(_evidence("learning_starts=6000", "exploration_fraction=0.01")) == ["exploration_ended_early"]
    flat = _evidence("exploration_fraction=0.05", evaluations=[20.0, 21.0, 19.0, 22.0, 20.0])
    assert "exploration_ended_early" in _codes(flat)  # epsilon at its floor at 5,000; nothing learned
    learned = _evidence("exploration_fraction=0.05", evaluations=[20.0, 150.0, 300.0])
    assert _codes(learned) == []
    assert _codes(_evidence("noisy=true", "learning_starts=6000", "exploration_fraction=0.01")) == []


def test_dormant_units_rising_or_dead() -> None:
    assert _codes(_evidence(diag={"dormant_fraction": _series([0.35, 0.4, 0.36, 0.38, 0.37, 0.4])})) == []
    rising = _series([0.3] * 5 + [0.5] * 5)
    assert _codes(_evidence(diag={"dormant_fraction": rising})) == ["dormant_units"]
    assert _codes(_evidence(diag={"dormant_fraction": _series([0.9] * 6)})) == ["dormant_units"]


def test_collapse_after_solving_points_at_the_best_model() -> None:
    evidence = _evidence(evaluations=[20.0, 480.0, 500.0, 120.0], checkpoints=[5000, 6000], run=Path("R"))
    found = doctor.diagnose(evidence, "cartpole")
    assert found[0].code == "collapse" and found[0].figures["best_at"] == 6000
    assert "rlkit evaluate R --model best" in found[0].advice[0]
    assert "step-000000006000" in found[0].advice[1]
    assert _codes(_evidence(evaluations=[20.0, 480.0, 500.0, 490.0])) == []


def test_train_eval_mismatch() -> None:
    training = _series([300.0] * 40)
    assert _codes(_evidence(evaluations=[9.0], training=training)) == ["train_eval_mismatch"]
    assert _codes(_evidence(evaluations=[290.0], training=training)) == []


def test_stalled_and_static_settings() -> None:
    stalled = _evidence(evaluations=[20.0, 200.0, 210.0, 205.0, 208.0, 201.0, 207.0])
    assert _codes(stalled) == ["stalled"]
    assert _codes(_evidence(*(), state={"solved": True}, evaluations=[20.0, 200.0, 210.0, 205.0, 208.0])) == []
    assert _codes(_evidence("buffer_size=500", "n_timesteps=100000", "batch_size=64")) == ["replay_and_targets"]
    assert _codes(_evidence("target_update_interval=1", "train_freq=64", "gradient_steps=32")) == ["replay_and_targets"]
    assert _codes(_evidence("target_update_interval=20000", "n_timesteps=100000")) == ["replay_and_targets"]


def test_stalled_says_no_real_gain_where_the_evaluation_it_fires_at_saved_a_best_model() -> None:
    # LunarLander seed 5 at 60k steps: 35,000 beat 20,000 by 2.2 (under 5% of the range seen), so it saved
    # best_model.zip, and the history line below it read "stalled: no new best at step 35,000".
    from rlkit.training.display import finding_line

    lunar = _evidence("n_timesteps=60000", evaluations=[-22.0, -47.0, -57.1, 68.1, 38.2, 33.6, 70.3])
    lunar.evaluations = [r | {"timesteps": 5000.0 * (i + 1)} for i, r in enumerate(lunar.evaluations)]
    (found,) = doctor.diagnose(lunar, "lunarlander")
    assert found.code == "stalled" and found.steps == (20_000, 35_000)
    line = finding_line(found.headline, 35_000, found.advice, 80)
    assert "new best" not in line and "no real gain" in line
    assert line.endswith("— try: --set learning_rate=0.000767") and len(line) <= 80


# ----------------------------------------------------------------------------------------
# Real runs, each provoked into one pathology
# ----------------------------------------------------------------------------------------


def _train(tmp_path: Path, name: str, env: str = "cartpole", seed: int = 1, **sets: Any) -> Path:
    run = tmp_path / name
    with contextlib.suppress(rlkit.RlkitError):  # the divergence guard: the doctor reads what came before
        rlkit.train(env, seed=seed, overrides={"checkpoint_freq": 5000, **sets}, run_dir=run)
    return run


def _first(run: Path) -> str:
    findings = rlkit.doctor(run).findings
    assert findings, f"no finding on {run.name}"
    return findings[0].code


def test_a_healthy_cartpole_run_has_no_finding(tmp_path: Path) -> None:
    run = _train(tmp_path, "healthy", seed=0)
    diagnosis = rlkit.doctor(run)
    assert diagnosis.healthy, [f.title for f in diagnosis.findings]
    assert diagnosis.read["diagnostics_records"] > 5 and diagnosis.read["evaluations"] >= 3
    result = CliRunner().invoke(app, ["doctor", str(run)], env={"COLUMNS": "80"})
    assert result.exit_code == 0 and result.output.startswith("healthy: no finding in")
    report = tmp_path / "healthy.html"
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(report), "--episodes", "2", "--no-video"])
    assert result.exit_code == 0 and '<h3>Doctor</h3><p><span class="ok">No finding</span>' in report.read_text()


def test_a_learning_rate_100x_too_high_kills_the_network(tmp_path: Path) -> None:
    run = _train(tmp_path, "lr", learning_rate=0.23, stop_on_solved=False, n_timesteps=12000)
    assert _first(run) == "dormant_units"


def test_runaway_values_are_divergence(tmp_path: Path) -> None:
    """MountainCar at gamma 1 bootstraps through its time limit: every backup adds -1 and nothing bounds
    the values (8-step returns, the target synced every step, squared error make it quick)."""
    sets = {"gamma": 1.0, "target_update_interval": 1, "loss": "mse", "n_steps": 8, "learning_rate": 0.003}
    sets.update(max_grad_norm=1e4, learning_starts=1000, n_timesteps=12000)
    run = _train(tmp_path, "divergence", "mountaincar", **sets)
    found = rlkit.doctor(run).findings[0]
    assert found.code == "divergence" and float(found.figures["times_the_largest_return"]) > 2
    guarded = _train(tmp_path, "guarded", "mountaincar", divergence_q_bound=1000.0, **sets)
    assert json.loads((guarded / "state.json").read_text())["status"] == "crashed"
    found = rlkit.doctor(guarded).findings[0]
    assert found.code == "divergence" and "the guard stopped the run" in found.title


def test_exploration_over_before_learning_starts(tmp_path: Path) -> None:
    run = _train(tmp_path, "explore", exploration_fraction=0.01, learning_starts=5000, n_timesteps=8000)
    assert _first(run) == "exploration_ended_early"


class _Sabotage(BaseCallback):
    """Once an evaluation has reached ``score``, set the learning rate to ``lr`` (0 freezes, 0.5 wrecks)."""

    def __init__(self, run: Path, score: float, lr: float) -> None:
        super().__init__()
        self.run, self.score, self.lr = run, score, lr

    def _on_step(self) -> bool:
        csv = self.run / "evaluations.csv"
        if self.n_calls % 500 == 0 and csv.exists():
            means = [float(line.split(",")[1]) for line in csv.read_text().splitlines()[1:]]
            if means and max(means) >= self.score:
                from stable_baselines3.common.utils import ConstantSchedule

                self.model.lr_schedule = ConstantSchedule(self.lr)
        return True


def test_a_collapse_after_solving(tmp_path: Path) -> None:
    run = tmp_path / "collapse"
    rlkit.train(
        "cartpole",
        seed=0,
        run_dir=run,
        callbacks=[_Sabotage(run, 475.0, 0.5)],
        overrides={"stop_on_solved": False, "n_timesteps": 20000, "checkpoint_freq": 5000},
    )
    found = rlkit.doctor(run).findings
    # The wrecked network's values stay near 85 at the start states while its episodes obtain 9:
    # overestimation too, as real as the collapse and the dead units (all three warnings).
    assert found and {"collapse", "q_overestimation"} <= {f.code for f in found}, [f.code for f in found]


def test_a_stall(tmp_path: Path) -> None:
    run = tmp_path / "stall"
    rlkit.train(
        "cartpole",
        seed=0,
        run_dir=run,
        callbacks=[_Sabotage(run, 100.0, 0.0)],
        overrides={"stop_on_solved": False, "n_timesteps": 20000, "checkpoint_freq": 5000},
    )
    assert _first(run) == "stalled"


def test_an_evaluation_env_that_plays_another_game(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training episodes run to 500 steps; the evaluation env cuts them at 20 (as a missing FIRE would)."""
    from rlkit.environments import factory

    original = factory.make_env
    short = resolve("cartpole", overrides=["wrappers=[{name: TimeLimit, kwargs: {max_episode_steps: 20}}]"]).preset

    def make_env(preset: Any, *args: Any, train: bool = True, **kwargs: Any) -> Any:
        return original(preset if train else short, *args, train=train, **kwargs)

    monkeypatch.setattr(factory, "make_env", make_env)
    run = _train(tmp_path, "mismatch", seed=0, stop_on_solved=False, n_timesteps=14000)
    assert _first(run) == "train_eval_mismatch"


def test_json_and_one_line_errors(tmp_path: Path) -> None:
    run = _train(tmp_path, "explore", exploration_fraction=0.01, learning_starts=3000, n_timesteps=4000)
    result = CliRunner().invoke(app, ["doctor", str(run), "--json"])
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["findings"][0]["code"] == "exploration_ended_early"
    assert data["findings"][0]["advice"] and data["findings"][0]["steps"] == [40, 3000]
    missing = CliRunner().invoke(app, ["doctor", str(tmp_path / "nope")])
    assert (
        missing.exit_code != 0 and "Traceback" not in missing.output and len(missing.output.strip().splitlines()) == 1
    )


# ----------------------------------------------------------------------------------------
# Q overestimation: the evaluations' evidence, and a run that really overestimates
# ----------------------------------------------------------------------------------------


class _IdentityModel:
    """A model whose Q-values are its observations (max_a Q(s, a) = max(s)), read as the engine reads them."""

    def __init__(self) -> None:
        import torch as th
        from torch import nn

        from rlkit.dqn.loss import Head

        net = nn.Identity()
        self.policy = SimpleNamespace(obs_to_tensor=lambda x: (th.as_tensor(x, dtype=th.float32), True))
        self._nets = SimpleNamespace(online=net, head=Head(), raw=lambda module, obs: module(obs))

    def networks(self) -> Any:
        return self._nets


def _play(values: Any, steps: list[tuple[list[float], float, bool, dict[str, Any]]], monitor: bool = True) -> None:
    """Feed ``StartValues`` the locals ``evaluate_policy`` hands its callback, one env."""
    for obs, reward, done, info in steps:
        values.step({"i": 0, "observations": np.asarray([obs]), "reward": reward, "done": done,
                     "info": info, "is_monitor_wrapped": monitor})  # fmt: skip


def test_start_values_are_q_at_the_first_state_and_the_discounted_return() -> None:
    from rlkit.training.start_values import StartValues

    values = StartValues(0.5)
    episode = {"episode": {"r": 7.0}}
    _play(values, [([1.0, 4.0], 1.0, False, {}), ([9.0, 9.0], 2.0, False, {}), ([9.0, 9.0], 4.0, True, episode)])
    _play(values, [([2.0, 0.0], 3.0, True, episode)])
    row = values.row(_IdentityModel())
    assert row["q_start"] == pytest.approx((4.0 + 2.0) / 2)  # the first observation of each episode
    assert row["return_discounted"] == pytest.approx((1 + 0.5 * 2 + 0.25 * 4 + 3) / 2)
    assert row["return_discounted_std"] == pytest.approx(0.0)

    clipped = StartValues(1.0, clip_reward=True)  # Atari: training saw the rewards' signs
    _play(clipped, [([0.0], 7.0, False, {}), ([0.0], -3.0, True, episode)])
    assert clipped.row(_IdentityModel())["return_discounted"] == 0.0

    lives = StartValues(1.0)  # a lost life: training's terminal state, the evaluation plays on
    _play(lives, [([0.0], 1.0, True, {}), ([0.0], 5.0, True, episode)])
    assert lives.returns == [1.0]

    cut = StartValues(0.5)  # a time limit: training bootstraps through it, so does the figure
    last = {**episode, "TimeLimit.truncated": True, "terminal_observation": np.asarray([8.0])}
    _play(cut, [([0.0], 1.0, False, {}), ([0.0], 1.0, True, last)])
    assert cut.row(_IdentityModel())["return_discounted"] == pytest.approx(1 + 0.5 + 0.25 * 8.0)
    assert math.isnan(StartValues(0.9).row(_IdentityModel())["q_start"])  # nothing played


def test_overestimating_values_are_found_in_a_real_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """CartPole at gamma 0.999 without Double DQN (its target synced every 10 steps): Q at the start
    states climbs past 250 while the episodes obtain about 20, before any divergence. Trained with
    the live display on: the doctor's history line comes once, within 80 columns."""
    run = tmp_path / "over"
    sets = {"gamma": 0.999, "learning_rate": 0.001, "stop_on_solved": False, "n_timesteps": 12000}
    rlkit.train("cartpole", seed=1, run_dir=run, quiet=False, overrides={"checkpoint_freq": 5000, **sets})
    rows = RunDir.open(run).read_evaluations()
    assert all(math.isfinite(r["q_start"]) and math.isfinite(r["return_discounted"]) for r in rows)
    assert rows[-1]["q_start"] > 3 * rows[-1]["return_discounted"]
    found = rlkit.doctor(run).findings
    assert [f.code for f in found] == ["q_overestimation"], [f.title for f in found]
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("doctor: ")]
    assert lines == ["doctor: Q overestimates the returns at step 4,000 — try: --set double_q=true"], lines
    assert all(len(line) <= 80 for line in lines), lines


def test_healthy_runs_give_no_overestimation_evidence(tmp_path: Path) -> None:
    """The healthy CartPole run's Q at its start states stays below what its episodes obtain."""
    run = _train(tmp_path, "healthy", seed=0)
    rows = RunDir.open(run).read_evaluations()
    assert rows and all(r["q_start"] < r["return_discounted"] * (1 + doctor.OVERESTIMATE) for r in rows)


@pytest.mark.slow
def test_a_healthy_lunarlander_run_has_no_finding(tmp_path: Path) -> None:
    """The shipped LunarLander preset (seed 0 solves at 135k steps, about a minute)."""
    run = _train(tmp_path, "lunar", "lunarlander", seed=0)
    diagnosis = rlkit.doctor(run)
    assert diagnosis.healthy, [f.title for f in diagnosis.findings]
    assert all(math.isfinite(r["q_start"]) for r in RunDir.open(run).read_evaluations())


# ----------------------------------------------------------------------------------------
# Old run directories (evaluations.csv without the Q columns)
# ----------------------------------------------------------------------------------------

OLD_COLUMNS = "timesteps,mean_reward,std_reward,min_reward,max_reward,mean_ep_length,wall_s"
NEW_COLUMNS = OLD_COLUMNS.replace(",wall_s", ",q_start,return_discounted,return_discounted_std,wall_s")


def _strip_q_columns(run: Path) -> None:
    csv = run / "evaluations.csv"
    lines = csv.read_text().splitlines()
    assert lines[0] == NEW_COLUMNS
    csv.write_text("\n".join(",".join(line.split(",")[:6] + line.split(",")[9:]) for line in lines) + "\n")
    assert csv.read_text().splitlines()[0] == OLD_COLUMNS


def test_an_old_evaluations_csv_reads_plots_reports_and_resumes(tmp_path: Path) -> None:
    from rlkit.analysis.plots import load_groups
    from tests.conftest import tiny_overrides

    run = tmp_path / "old"
    sets = dict(s.split("=", 1) for s in tiny_overrides(600))
    rlkit.train("cartpole", seed=0, run_dir=run, overrides=sets)
    _strip_q_columns(run)
    old = RunDir.open(run).read_evaluations()
    assert old and all("q_start" not in r for r in old)
    assert rlkit.doctor(run).read["evaluations"] == len(old)  # the rules read it (and find no Q evidence)
    assert load_groups([run])  # plots
    report = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", str(run), "-o", str(report), "--episodes", "2", "--no-video"])
    assert result.exit_code == 0, result.output
    assert "<h3>Doctor</h3>" in report.read_text()
    rlkit.resume(run, steps=1200)
    rows = RunDir.open(run).read_evaluations()
    assert len(rows) > len(old) and all("q_start" not in r for r in rows[: len(old)])
    assert all(math.isfinite(r["q_start"]) for r in rows[len(old) :])  # the new rows have the columns
    header = (run / "evaluations.csv").read_text().splitlines()[0]
    assert header == NEW_COLUMNS


# ----------------------------------------------------------------------------------------
# The doctor during training: one history line per new finding
# ----------------------------------------------------------------------------------------


def test_the_watch_reports_each_finding_once() -> None:
    from rlkit.training.doctor_watch import DoctorWatch

    preset = resolve("cartpole").preset
    heard: list[tuple[str, int]] = []
    watch = DoctorWatch(preset, "cartpole", lambda f, step: heard.append((f.code, step)))
    evaluator = SimpleNamespace(history=[])
    for i, q in enumerate([30.0, 60.0, 90.0, 120.0, 150.0]):
        row = {"timesteps": 2000.0 * (i + 1), "mean_reward": 20.0 + 80 * i, "std_reward": 2.0,
               "q_start": q, "return_discounted": 18.0, "return_discounted_std": 2.0}  # fmt: skip
        evaluator.history.append(row)
        watch.after_eval(evaluator, row)  # type: ignore[arg-type]
    assert heard == [("q_overestimation", 4000)]  # at the second evaluation over, and only then
    resumed = DoctorWatch(preset, "cartpole", lambda f, step: heard.append((f.code, step)), history=evaluator.history)
    resumed.after_eval(evaluator, evaluator.history[-1])  # type: ignore[arg-type]
    assert len(heard) == 1  # an earlier session already said it


def test_the_watch_keeps_the_diagnostics_as_they_are_logged() -> None:
    from rlkit.training.doctor_watch import DiagCollector

    collector = DiagCollector()
    collector.write({"diag/q_greedy_max": 3.0, "train/loss": 1.0, "diag/q_hist": np.zeros(3)}, {}, 100)
    collector.write({"diag/q_greedy_max": 5.0}, {}, 200)
    series = collector.series()
    assert list(series) == ["q_greedy_max"] and series["q_greedy_max"].values.tolist() == [3.0, 5.0]
    assert series["q_greedy_max"].steps.tolist() == [100.0, 200.0]


def test_the_history_line_fits_80_columns() -> None:
    from rlkit.training.display import finding_line

    line = finding_line("Q overestimates the returns", 12_000, ["rlkit train cartpole --set double_q=true"], 80)
    assert line == "doctor: Q overestimates the returns at step 12,000 — try: --set double_q=true"
    assert finding_line("short", 5, ["rlkit train c --set a=1"], 80).endswith("try: rlkit train c --set a=1")
    assert finding_line("short", 5, ["rlkit evaluate R --model best    # why"], 80).endswith("--model best")
    long = finding_line("x" * 27, 1_234_567, ["rlkit evaluate " + "R" * 80], 80)
    assert long == f"doctor: {'x' * 27} at step 1,234,567"  # no advice fits: the headline alone
    assert all(len(h) <= doctor.HEADLINE_MAX for h in doctor.HEADLINES.values())
    assert len(doctor.HEADLINES) == len(doctor.RULES)  # one headline per rule

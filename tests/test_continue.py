"""Training a run on to a new budget (``--resume RUN --steps N``) and starting from trained weights (``--init-from``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from stable_baselines3.common.callbacks import BaseCallback
from typer.testing import CliRunner

from rlkit.cli import app
from rlkit.core.errors import RlkitError
from rlkit.environments.resolve import resolve
from rlkit.training import train
from rlkit.training.factory import load_model
from rlkit.training.rundir import RunDir

FAST = [
    "learning_starts=100", "eval_episodes=2", "policy_kwargs.net_arch=[32]", "train_freq=4", "gradient_steps=1",
    "n_timesteps=600", "eval_freq=300", "checkpoint_freq=300", "exploration_fraction=1.0",
]  # fmt: skip


class Epsilons(BaseCallback):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[float] = []

    def _on_step(self) -> bool:
        self.seen.append(float(self.model.exploration_rate))  # type: ignore[attr-defined]
        return True


def test_a_finished_run_trains_on_to_a_new_total(tmp_path: Path) -> None:
    first = train.start(resolve("cartpole", overrides=FAST), seed=2, run_dir=tmp_path / "run", quiet=True)
    final_eps = resolve("cartpole").preset.exploration_final_eps
    epsilons = Epsilons()
    result = train.extend(first.run_dir, 1200, quiet=True, callbacks=[epsilons])
    assert result.num_timesteps == 1200
    rows = (first.run_dir / "evaluations.csv").read_text().splitlines()[1:]
    assert [int(float(r.split(",")[0])) for r in rows] == [300, 600, 900, 1200]
    # Epsilon had decayed over the first 600 steps; it does not rise again over the new total.
    # The last checkpoint was taken inside step 600 (stored after it): the extension plays that step again first,
    # still showing the value the checkpoint saved.
    seen = epsilons.seen
    assert len(seen) == 601 and seen[0] >= max(seen) and all(e == pytest.approx(final_eps) for e in seen[1:])
    config = yaml.safe_load((first.run_dir / "config.yaml").read_text())["preset"]
    assert config["n_timesteps"] == 1200 and config["exploration_fraction"] == pytest.approx(0.5)
    state = json.loads((first.run_dir / "state.json").read_text())
    assert state["status"] == "finished" and state["budget_history"] == [600, 1200]
    with pytest.raises(RlkitError, match=r"already trained 1200 steps; give a larger total budget"):
        train.extend(first.run_dir, 1000, quiet=True)


def test_a_run_solved_early_trains_on_to_a_total_below_its_first_budget(tmp_path: Path) -> None:
    # The README's rlkit.resume(run, steps=30_000) on a CartPole run solved at 12,000 of its 50,000: the
    # schedules stay anchored in absolute steps, so their fractions of the smaller total pass 1.
    solved = [*FAST, "solved_score=1", "stop_on_solved=true", "solved_episodes=2", "solved_confidence=0"]
    first = train.start(resolve("cartpole", overrides=solved), seed=2, run_dir=tmp_path / "run", quiet=True)
    assert first.num_timesteps == 300
    epsilons = Epsilons()
    result = train.extend(first.run_dir, 450, quiet=True, callbacks=[epsilons])
    assert result.num_timesteps == 450
    _, _, preset = RunDir.open(first.run_dir).read_config()  # the run reads back (evaluate, report, resume)
    assert preset.exploration_fraction == pytest.approx(600 / 450) and preset.per_beta_fraction > 1
    more = CliRunner().invoke(app, ["train", "--resume", str(first.run_dir), "--steps", "500", "-q"])
    assert more.exit_code == 0 and "done: 500 steps" in more.output, more.output
    # Epsilon goes on down the first run's line (1 at 0, the floor at 600): at 449 it is not at the floor yet.
    floor = resolve("cartpole").preset.exploration_final_eps
    assert epsilons.seen[-1] == pytest.approx(1 + 449 / 600 * (floor - 1), abs=0.01)


def test_extend_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    sets = [arg for kv in FAST for arg in ("--set", kv)]
    assert runner.invoke(app, ["train", "cartpole", "--seed", "1", "--run-dir", "r", "-q", *sets]).exit_code == 0
    again = runner.invoke(app, ["train", "--resume", "r", "-q"])
    assert again.exit_code == 0 and "already finished" in again.output and "--steps N" in again.output
    more = runner.invoke(app, ["train", "--resume", "r", "--steps", "900", "-q"])
    assert more.exit_code == 0, more.output
    assert "done: 900 steps" in more.output
    assert "--resume r --steps 900" in Path("r/command.txt").read_text()


def test_init_from_starts_with_the_trained_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = train.start(resolve("cartpole", overrides=FAST), seed=3, run_dir=tmp_path / "src", quiet=True).run_dir
    # No gradient step in the new run (learning_starts beyond it): its final weights are the source's.
    sets = [*FAST, "n_timesteps=200", "learning_starts=1000", "eval_freq=0", "checkpoint_freq=0"]
    new = train.start(resolve("cartpole", overrides=sets), seed=4, run_dir=tmp_path / "new", quiet=True,
                      init_from=source)  # fmt: skip
    a, b = (load_model(p / "model.zip", None, "cpu").policy.state_dict() for p in (source, new.run_dir))
    online = [k for k in a if k.startswith("q_net.")]  # the target net was synced to it meanwhile
    assert online and all(torch.equal(a[k], b[k]) for k in online)
    assert json.loads((new.run_dir / "meta.json").read_text())["init_from"] == str(source / "model.zip")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["train", "cartpole", "--init-from", str(source), "--set", "policy_kwargs.net_arch=[64]",
              "--run-dir", "misfit", "-q"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "q_net.q_net.0.weight is (32, 4) there, (64, 4) here" in result.output
    assert not Path("misfit").exists()


class EpisodeWindow(BaseCallback):
    """What SB3's window of recent training episodes holds when a session starts."""

    def __init__(self) -> None:
        super().__init__()
        self.at_start: list[float] = []

    def _on_training_start(self) -> None:
        self.at_start = [float(e["r"]) for e in self.model.ep_info_buffer]  # type: ignore[union-attr]

    def _on_step(self) -> bool:
        return True


def test_a_resumed_session_continues_the_training_return_window(tmp_path: Path) -> None:
    """ret(20ep) (and rollout/ep_rew_mean) goes on over the episodes the run had, not from an empty window."""
    from rlkit.training.rundir import RunDir

    first = train.start(resolve("cartpole", overrides=FAST), seed=2, run_dir=tmp_path / "run", quiet=True)
    episodes = RunDir(first.run_dir).training_episodes(up_to_step=600)
    assert len(episodes) > 20 and sum(e["l"] for e in episodes) <= 600
    window = EpisodeWindow()
    train.extend(first.run_dir, 900, quiet=True, callbacks=[window])
    assert window.at_start == [e["r"] for e in episodes][-100:]


def test_a_solved_run_trained_further_trains_exactly_the_steps_asked(tmp_path: Path) -> None:
    """stop_on_solved stops a run once: extending a solved run does not stop at its next good evaluation."""
    easy = [
        *FAST,
        "solved_score=9",
        "solved_episodes=4",
        "solved_confidence=0",
        "stop_on_solved=true",
    ]  # a random policy scores ~20
    first = train.start(resolve("cartpole", overrides=easy), seed=2, run_dir=tmp_path / "run", quiet=True)
    assert first.solved_at is not None and first.num_timesteps == 300  # stopped at its first evaluation
    more = train.extend(first.run_dir, 1200, quiet=True)
    assert more.num_timesteps == 1200 and more.session_start == 300
    assert more.solved_at == first.solved_at  # still solved when it was


def test_the_summary_of_a_resumed_session_divides_and_says_solved_once(tmp_path: Path) -> None:
    from rlkit.cli.train_cmd import summary_text
    from rlkit.training.train import TrainResult

    resumed = TrainResult(
        tmp_path, 40_000, 61.0, 750.0, 480.0, {"mean_reward": 500.0, "std_reward": 0.0}, True,
        {"timesteps": 10_000, "wall_s": 2.8, "mean_reward": 500.0, "episodes": 100},
        session_start=10_000, session_wall_s=40.0,
    )  # fmt: skip
    text = summary_text(resumed, quiet=False)
    assert text.splitlines()[0] == "done: 40,000 steps (30,000 this session: 40 s, 750 steps/s; 61 s in all)"
    assert "solved earlier: at step 10,000 after 2.8 s" in text  # no display line said so this session
    assert all(len(line) <= 80 for line in text.splitlines())
    runner = CliRunner()
    sets = [
        arg
        for kv in [*FAST, "solved_score=9", "solved_episodes=4", "solved_confidence=0", "stop_on_solved=true"]
        for arg in ("--set", kv)
    ]
    shown = runner.invoke(app, ["train", "cartpole", "--seed", "2", "--run-dir", str(tmp_path / "r"), *sets])
    assert shown.exit_code == 0, shown.output
    assert shown.output.count("solved at step 300 after") == 1, shown.output  # the history line, not again
    assert "; solved at step 300\n" in shown.output  # the summary just names the step


def test_an_interrupted_run_cut_short_keeps_a_valid_config(tmp_path: Path) -> None:
    """--resume RUN --steps N below the run's budget: the schedules keep their steps, the config stays readable.

    Rescaling a fraction by old/new budget went past 1 (per_beta_fraction 1.0 x 2 = 2.0): the run's
    config.yaml was written invalid and every later resume failed on it (the run was lost).
    """
    import signal

    from rlkit.core.errors import Interrupted
    from tests.test_resume import SignalAt

    long = [*FAST, "n_timesteps=1200", "per_beta_fraction=1.0"]
    with pytest.raises(Interrupted):
        train.start(
            resolve("cartpole", overrides=long), seed=2, run_dir=tmp_path / "run", quiet=True,
            callbacks=[SignalAt(450, signal.SIGINT)],
        )  # fmt: skip
    notes: list[str] = []
    result = train.extend(tmp_path / "run", 600, quiet=True, notify=notes.append)
    assert result.num_timesteps == 600
    config = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["preset"]
    assert config["n_timesteps"] == 600
    assert config["exploration_fraction"] == pytest.approx(2.0) and config["per_beta_fraction"] == pytest.approx(2.0)
    assert notes == ["budget cut to 600: epsilon keeps its schedule (its end at step 1,200)"]  # no PER: no beta
    from rlkit.training.rundir import RunDir

    RunDir(tmp_path / "run").read_config()  # still readable

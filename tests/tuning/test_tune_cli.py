"""``rlkit tune`` in-process: a study runs, continues, shows, plots, exports and re-trains exactly."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from rlkit.cli import app
from tests.tuning.conftest import FAST

runner = CliRunner()


def tune(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["tune", *args])
    return result.exit_code, result.output


def load(runs: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{runs / 'tune' / f'{name}.db'}")


def test_study_runs_continues_and_its_best_trial_retrains_exactly(runs_dir: Path) -> None:
    args = ["cartpole", "--steps", "400", "--evals-per-trial", "2", "--seeds-per-trial", "2", "-q", *FAST]
    code, output = tune(*args, "--trials", "2")
    assert code == 0, output
    assert "created study 'cartpole'" in output
    study = load(runs_dir, "cartpole")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    first = study.trials[0]
    # seeds x evaluations reported as steps k*budget + t; the value is the mean of the seeds' last evaluations
    assert sorted(first.intermediate_values) == [200, 400, 600, 800]
    assert first.value == pytest.approx((first.intermediate_values[400] + first.intermediate_values[800]) / 2)
    assert first.user_attrs["seeds"] == [0, 1]
    assert first.user_attrs["config"]["n_timesteps"] == 400

    code, output = tune(*args, "--trials", "3")  # the same command with more trials continues the study
    assert code == 0, output
    assert "continuing study 'cartpole'" in output
    study = load(runs_dir, "cartpole")
    assert len(study.trials) == 3
    assert len({str(t.params) for t in study.trials}) == 3  # a continued sampler does not replay old trials

    code, output = tune("show", "cartpole")
    assert code == 0, output
    assert "policy_kwargs.net_arch" in output
    assert "objective: mean final evaluation return over 2 seeds (2 episodes each)" in output
    assert "parameter importances: not shown, the study has 3 completed trial(s)" in output and "at least 10" in output

    code, output = tune("show")  # no name: the studies in runs/tune
    assert code == 0, output
    assert "│ cartpole │ CartPole-v1 │        3 │" in output, output

    code, output = tune("show", "cartpole", "--csv", "trials.csv")  # the study's record, every trial
    assert code == 0 and "wrote 3 trial(s) to trials.csv" in output, output
    with open("trials.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["number"]) for r in rows] == [0, 1, 2] and {r["state"] for r in rows} == {"complete"}
    assert [float(r["mean_final_eval_return"]) for r in rows] == pytest.approx([t.value for t in study.trials])
    assert [float(r["learning_rate"]) for r in rows] == pytest.approx([t.params["learning_rate"] for t in study.trials])
    assert len(json.loads(rows[0]["seed_scores"])) == 2
    code, output = tune("show", "cartpole", "--csv", "trials.csv")
    assert code == 2 and "already exists; use --force" in output

    code, output = tune("plot", "cartpole", "--out-dir", "plots")
    assert code == 0, output
    assert sorted(p.name for p in Path("plots").glob("*.png")) == [
        "cartpole-history.png",
        "cartpole-intermediate.png",
        "cartpole-parallel.png",
    ]
    assert "skipped importances: needs 10 completed trial(s), the study has 3" in output
    code, output = tune("plot", "cartpole", "--out-dir", "plots")
    assert code == 2 and "already exists; use --force" in output
    assert tune("plot", "cartpole", "--out-dir", "plots", "--force")[0] == 0

    code, output = tune("export", "cartpole", "--out", "best.yaml")
    assert code == 0, output
    text = Path("best.yaml").read_text()
    exported = yaml.safe_load(text)
    best = study.best_trial
    assert exported["policy_kwargs"]["net_arch"] == yaml.safe_load(best.params["policy_kwargs.net_arch"])
    assert exported["learning_rate"] == best.params["learning_rate"]
    # the preset's own budget, not the tuning budget (400 steps, an evaluation every 200, 2 episodes)
    assert (exported["n_timesteps"], exported["eval_freq"], exported["eval_episodes"]) == (50000, 2000, 10)
    assert exported["checkpoint_freq"] == 10000
    code, output = tune("export", "cartpole", "--out", "best.yaml")
    assert code != 0 and "already exists" in output  # never clobbered without --force

    code, output = tune("export", "cartpole")  # default path, announced
    assert code == 0 and (runs_dir / "tune" / "cartpole-best.yaml").read_text() == text.replace(
        "best.yaml", str(runs_dir / "tune" / "cartpole-best.yaml")
    ), output
    assert f"wrote {runs_dir / 'tune' / 'cartpole-best.yaml'}" in " ".join(output.split())
    assert tune("export", "cartpole")[0] == 2
    code, output = tune("export", "cartpole", "--out", "-")  # stdout: the YAML and nothing else
    assert code == 0 and yaml.safe_load(output) == exported

    # `rlkit train` accepts the file and, with the header's budget flags, reproduces the trial's evaluations.
    again = next(line for line in text.splitlines() if line.startswith("# Re-train exactly as the trial did: "))
    argv = again.split(": ", 1)[1].split()[1:]
    assert argv[:4] == ["train", "best.yaml", "--seed", "0"] and "--steps" in argv
    result = runner.invoke(app, [*argv, "--run-dir", "retrain", "-q", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with open("retrain/evaluations.csv") as handle:
        rows = {int(float(r["timesteps"])): float(r["mean_reward"]) for r in csv.DictReader(handle)}
    seed0 = {step: value for step, value in best.intermediate_values.items() if step <= 400}
    assert rows == seed0


def test_divergence_prunes_with_the_reason(runs_dir: Path) -> None:
    """A trial's guard is the preset's divergence_q_bound, the same one `rlkit train` uses."""
    bound = ["--set", "divergence_q_bound=1e-12"]  # any Q-value counts as exploded
    code, output = tune("cartpole", "--trials", "2", "--steps", "300", "--pruner", "none", "-q", *FAST, *bound)
    assert code == 0, output
    study = load(runs_dir, "cartpole")
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    reasons = [t.user_attrs["pruned_reason"] for t in study.trials]
    assert all("diverged: training diverged at step" in r and "divergence_q_bound=1e-12" in r for r in reasons)


def test_nan_weights_are_detected() -> None:
    import torch

    from rlkit.dqn.diagnostics import DivergenceError
    from rlkit.environments.factory import make_env
    from rlkit.environments.resolve import resolve
    from rlkit.training.factory import build_model

    preset = resolve("cartpole", overrides=["learning_starts=0"]).preset
    model = build_model(preset, make_env(preset), seed=0, device="cpu", tensorboard_log=None)
    model.learn(64)  # fills the buffer and trains (one rollout covers the n_envs): no divergence
    with torch.no_grad():
        next(model.q_net.parameters()).fill_(float("nan"))
    with pytest.raises(DivergenceError, match=r"training diverged at step \d+: the loss is nan"):
        model.train(gradient_steps=1, batch_size=preset.batch_size)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["cartpol"], "unknown environment 'cartpol' (did you mean 'cartpole'?)"),
        (
            ["cartpole", "--sampler", "tpee"],
            "'tpee' is not one of 'tpe', 'random', 'cmaes', 'gp' (did you mean 'tpe'?)",
        ),
        (
            ["cartpole", "--pruner", "medain"],
            "'medain' is not one of 'median', 'halving', 'hyperband', 'none' (did you mean 'median'?)",
        ),
        (["cartpole", "--storage", "not a url"], "malformed storage URL"),
        (["cartpole", "--storage", "redis://localhost/0"], "unsupported storage 'redis'"),
        (["cartpole", "--storage", "postgresql://u:secret@127.0.0.1:1/db"], "cannot open storage"),
        (["cartpole", "--space", "clasic"], "did you mean 'classic'?"),
        (["cartpole", "--trials", "0"], "--trials must be at least 1"),
        (["MountainCarContinuous-v0"], "DQN needs discrete actions"),
    ],
)
def test_bad_input_is_one_line_and_creates_nothing(runs_dir: Path, args: list[str], message: str) -> None:
    code, output = tune(*args)
    assert code == 2
    assert message in output
    assert "Traceback" not in output and "secret" not in output
    assert len(output.strip().splitlines()) == 1
    assert not (runs_dir / "tune" / "cartpole.db").exists()


def test_a_study_of_another_env_is_refused_untouched(runs_dir: Path) -> None:
    code, output = tune("cartpole", "--trials", "1", "--steps", "200", "--study", "mine", "-q", *FAST)
    assert code == 0, output
    before = (runs_dir / "tune" / "mine.db").read_bytes()
    code, output = tune("acrobot", "--trials", "1", "--study", "mine", "-q", *FAST)
    assert code == 2
    assert "study 'mine' tunes CartPole-v1 (cartpole), not Acrobot-v1" in output
    code, output = tune("cartpole", "--trials", "2", "--steps", "300", "--study", "mine", "-q", *FAST)
    assert code == 2 and "was run with --steps 200, not 300" in output
    code, output = tune("cartpole", "--trials", "2", "--study", "mine", "-q", *FAST, "--set", "gamma=0.9")
    assert code == 2 and "was run with base preset gamma=0.99, now 0.9" in output
    code, output = tune("cartpole", "--trials", "2", "--study", "mine", "-q", *FAST, "--space", "classic")
    assert code == 2 and "another search space" in output
    assert (runs_dir / "tune" / "mine.db").read_bytes() == before
    code, output = tune("show", "mien")
    assert code == 2 and "did you mean 'mine'?" in output


@pytest.mark.parametrize(("sampler", "pruner"), [("random", "halving"), ("cmaes", "hyperband"), ("gp", "median")])
def test_every_sampler_and_pruner_runs(runs_dir: Path, sampler: str, pruner: str) -> None:
    code, output = tune(
        "cartpole", "--trials", "2", "--steps", "200", "--sampler", sampler, "--pruner", pruner, "-q", *FAST
    )
    assert code == 0, output
    assert len(load(runs_dir, "cartpole").trials) == 2


def test_tune_help_lists_the_subcommands_and_env_is_the_default_run() -> None:
    code, output = tune("--help")
    assert code == 0
    for word in ("run", "show", "plot", "export", "rlkit tune ENV"):
        assert word in output
    code, output = tune("cartpole", "--help")  # routed to `run`
    assert code == 0 and "--seeds-per-trial" in output


def test_the_live_view_counts_the_trial_running_in_this_worker(runs_dir: Path) -> None:
    """The display re-reads the study while a trial trains, so it shows `1 running`, not the 0 from before it."""
    import io

    from rich.console import Console

    from rlkit.tuning.display import TuneDisplay
    from rlkit.tuning.study import TuneRequest, prepare, work
    from tests.tuning.conftest import TINY_SPACE

    seen: list[str] = []

    class Recording(TuneDisplay):
        def on_progress(self, trial: int, done: int, total: int) -> None:
            super().on_progress(trial, done, total)
            text = io.StringIO()
            Console(file=text, width=200).print(self)
            seen.append(text.getvalue())

    request = TuneRequest(
        env="cartpole",
        trials=1,
        steps=512,
        evals_per_trial=1,
        space=str(TINY_SPACE),
        overrides=["eval_episodes=2", "learning_starts=50", "gradient_steps=1"],
    )
    prepared = prepare(request)
    display = Recording(
        study_name=prepared.study_name,
        env_id=prepared.env_id,
        target=1,
        workers=1,
        space=prepared.space,
        storage_shown=prepared.url.shown,
        quiet=True,
        console=Console(file=io.StringIO()),
        objective="mean final evaluation return over 1 seed",
    )
    assert work(prepared, display=display) == "done"
    assert seen, "the trial reported its progress"
    assert all("0 complete, 0 pruned, 0 failed, 1 running" in text for text in seen), seen[0]
    assert "mean final evaluation return over 1 seed" in seen[0]

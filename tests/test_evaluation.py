"""``rlkit evaluate``: statistics equal to SB3's evaluate_policy, saved results, bad input."""

from __future__ import annotations

import json
import shutil
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import Result

from rlkit.analysis.evaluation import resolve_model, summarize
from rlkit.training.rundir import RunDir
from tests.clitools import assert_one_line_error, invoke


def _json(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def test_matches_sb3_evaluate_policy_on_same_model_and_seed(trained_runs: tuple[Path, Path]) -> None:
    from stable_baselines3 import DQN
    from stable_baselines3.common.evaluation import evaluate_policy

    from rlkit.environments.factory import make_env

    run = trained_runs[0]
    ours = _json(invoke("evaluate", run, "--episodes", "6", "--seed", "123", "--model", "final", "--json"))

    _, _, preset = RunDir.open(run).read_config()
    model = DQN.load(run / "model.zip", device="cpu")
    env = make_env(preset, n_envs=1, seed=123, train=False)
    rewards, lengths = evaluate_policy(model, env, n_eval_episodes=6, deterministic=True, return_episode_rewards=True)
    assert isinstance(rewards, list) and isinstance(lengths, list)

    assert ours["returns"] == pytest.approx([float(r) for r in rewards])
    assert ours["lengths"] == [int(n) for n in lengths]
    assert ours["mean"] == pytest.approx(float(np.mean(rewards)))
    assert ours["std"] == pytest.approx(float(np.std(rewards)))
    assert ours["median"] == pytest.approx(float(np.median(rewards)))
    assert ours["min"] == pytest.approx(float(np.min(rewards)))
    assert ours["max"] == pytest.approx(float(np.max(rewards)))
    assert ours["mean_length"] == pytest.approx(float(np.mean(lengths)))
    assert ours["solved_fraction"] == pytest.approx(float(np.mean(np.asarray(rewards) >= 475)))
    assert ours["model"] == "final" and ours["policy"] == "deterministic" and ours["epsilon"] is None
    saved = json.loads(Path(ours["saved_to"]).read_text())
    assert saved["returns"] == ours["returns"]
    assert Path(ours["saved_to"]).name == "evaluation-final-6ep-s123.json"


def test_table_output_names_every_figure_and_the_score_kind(run_copy: Path) -> None:
    result = invoke("evaluate", run_copy, "--episodes", "3")
    assert result.exit_code == 0, result.output
    for word in ("mean return", "std", "median", "min", "max", "mean episode length", "solved", "model best"):
        assert word in result.stdout
    assert "score: episode return" in result.stdout
    assert (run_copy / "evaluation-best-3ep-s100000.json").is_file()


def test_stochastic_is_epsilon_greedy_and_reproducible(trained_runs: tuple[Path, Path]) -> None:
    run = trained_runs[0]
    base = ["evaluate", run, "--episodes", "5", "--seed", "7", "--json", "--model", "final"]
    greedy = _json(invoke(*base))
    eps0 = _json(invoke(*base, "--stochastic", "--epsilon", "0"))
    random1 = _json(invoke(*base, "--stochastic", "--epsilon", "1"))
    random2 = _json(invoke(*base, "--stochastic", "--epsilon", "1"))
    default = _json(invoke(*base, "--stochastic"))
    assert eps0["returns"] == greedy["returns"]  # epsilon 0 is the greedy policy
    assert random1["returns"] == random2["returns"]  # seeded
    assert random1["lengths"] != greedy["lengths"]  # uniformly random actions play differently
    assert random1["policy"] == "epsilon-greedy" and random1["epsilon"] == 1.0
    assert default["epsilon"] == 0.05


def test_summarize_by_hand() -> None:
    stats = summarize([1.0, 2.0, 3.0, 10.0], [5, 5, 6, 8], solved_score=3.0)
    assert stats["mean"] == 4.0
    assert stats["std"] == pytest.approx(statistics.pstdev([1.0, 2.0, 3.0, 10.0]))
    assert stats["median"] == 2.5
    assert (stats["min"], stats["max"], stats["mean_length"]) == (1.0, 10.0, 6.0)
    assert stats["solved_fraction"] == 0.5
    assert summarize([1.0], [1], solved_score=None)["solved_fraction"] is None


def test_model_names_resolve_to_files(trained_runs: tuple[Path, Path]) -> None:
    run = RunDir.open(trained_runs[0])
    assert resolve_model(run, "best").path == run.best_model
    assert resolve_model(run, "final").path == run.final_model
    assert resolve_model(run).label == "best"
    newest = run.checkpoint_dirs()[-1]
    steps = int(newest.name.split("-")[1])
    for name in (str(steps), f"step-{steps}", newest.name):
        assert resolve_model(run, name).path == newest / "model.zip"


# --- bad input ----------------------------------------------------------------------------


def test_not_a_run_directory(tmp_path: Path) -> None:
    assert_one_line_error(invoke("evaluate", tmp_path / "nope"), "not a run directory", "does not exist")
    assert_one_line_error(invoke("evaluate", tmp_path), "not an rlkit run directory")


def test_run_without_a_model_yet(run_copy: Path) -> None:
    for name in ("best_model.zip", "model.zip"):
        (run_copy / name).unlink()
    shutil.rmtree(run_copy / "checkpoints")
    assert_one_line_error(invoke("evaluate", run_copy), "no saved model yet")


def test_truncated_model_file(run_copy: Path) -> None:
    model = run_copy / "model.zip"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    assert_one_line_error(invoke("evaluate", run_copy, "--model", "final"), "cannot load model", "corrupted")


def test_unknown_model_name_suggests_the_closest(run_copy: Path) -> None:
    text = assert_one_line_error(invoke("evaluate", run_copy, "--model", "bets"), "unknown --model 'bets'")
    assert "did you mean 'best'" in text and "available: best, final, step-" in text
    assert_one_line_error(invoke("evaluate", run_copy, "--model", "step-999"), "unknown --model", "available")


def test_missing_best_model_is_named(run_copy: Path) -> None:
    (run_copy / "best_model.zip").unlink()
    assert_one_line_error(invoke("evaluate", run_copy, "--model", "best"), "no best model", "available: final")


def test_bad_numbers(run_copy: Path) -> None:
    assert_one_line_error(invoke("evaluate", run_copy, "--episodes", "0"), "--episodes must be at least 1")
    assert_one_line_error(invoke("evaluate", run_copy, "--epsilon", "0.1"), "--stochastic")
    assert_one_line_error(invoke("evaluate", run_copy, "--stochastic", "--epsilon", "2"), "[0, 1]")
    assert not list(run_copy.glob("evaluation-*.json"))


def test_bare_model_file_plus_env_name(run_copy: Path, tmp_path: Path) -> None:
    model = tmp_path / "agent.zip"
    shutil.copy(run_copy / "model.zip", model)
    from_run = _json(invoke("evaluate", run_copy, "--episodes", "3", "--model", "final", "--json"))
    for env in ("CartPole-v1", "cartpole"):  # a gymnasium id or a preset alias
        bare = _json(invoke("evaluate", model, env, "--episodes", "3", "--json"))
        assert bare["returns"] == from_run["returns"] and bare["env_id"] == "CartPole-v1"
        assert bare["model"] == "agent" and bare["run_dir"] == "" and bare["model_path"] == str(model)
    saved = tmp_path / "agent.evaluation-cartpole-3ep-s100000.json"
    assert Path(bare["saved_to"]) == saved and json.loads(saved.read_text())["returns"] == from_run["returns"]

    from stable_baselines3 import DQN

    DQN.load(model, device="cpu").save(tmp_path / "plain.zip")  # a file saved by plain SB3, not rlkit
    plain = _json(invoke("evaluate", tmp_path / "plain.zip", "CartPole-v1", "--episodes", "3", "--json"))
    assert plain["returns"] == from_run["returns"]


def test_bare_model_file_bad_input(run_copy: Path, tmp_path: Path) -> None:
    model = run_copy / "model.zip"
    assert_one_line_error(invoke("evaluate", model), "bare model file", "rlkit evaluate")
    assert_one_line_error(invoke("evaluate", model, "LunarLander-v3"), "does not fit LunarLander-v3", "8 inputs")
    assert_one_line_error(invoke("evaluate", model, "CartPol-v1"), "did you mean")
    assert_one_line_error(invoke("evaluate", model, "cartpole", "--model", "best"), "drop --model")
    assert_one_line_error(invoke("evaluate", tmp_path / "missing.zip", "cartpole"), "model file not found")
    assert_one_line_error(invoke("evaluate", run_copy, "cartpole"), "drop the env argument")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert_one_line_error(invoke("evaluate", tmp_path / "junk.zip", "cartpole"), "cannot load model")
    assert not list(tmp_path.glob("*.json"))


@pytest.mark.parametrize("algo", ["dqn", "qrdqn"])
def test_plain_sb3_file_with_its_own_network(tmp_path: Path, algo: str) -> None:
    """A file saved by plain SB3 / sb3-contrib with a network unlike the preset's plays exactly as SB3 plays it."""
    import torch
    from sb3_contrib import QRDQN
    from stable_baselines3 import DQN
    from stable_baselines3.common.evaluation import evaluate_policy

    from rlkit.environments.factory import make_env
    from rlkit.environments.resolve import resolve

    cls: Any = QRDQN if algo == "qrdqn" else DQN
    extra = {"n_quantiles": 7} if algo == "qrdqn" else {}
    kwargs = {"net_arch": [32, 16], "activation_fn": torch.nn.Tanh, **extra}
    cls("MlpPolicy", "CartPole-v1", policy_kwargs=kwargs, seed=0, device="cpu").save(tmp_path / "plain.zip")
    ours = _json(invoke("evaluate", tmp_path / "plain.zip", "cartpole", "--episodes", "3", "--json"))
    from rlkit.analysis.model_file import fit_preset

    fitted = fit_preset(resolve("cartpole").preset, tmp_path / "plain.zip")  # rlkit's cartpole preset: 256x256 ReLU
    assert fitted.algo == algo and fitted.policy_kwargs.net_arch == [32, 16]
    assert fitted.policy_kwargs.activation_fn == "tanh" and not fitted.dueling and not fitted.noisy
    assert algo == "dqn" or fitted.n_quantiles == 7

    env = make_env(resolve("cartpole").preset, n_envs=1, seed=100_000, train=False)
    sb3 = cls.load(tmp_path / "plain.zip", device="cpu")
    rewards, _ = evaluate_policy(sb3, env, n_eval_episodes=3, deterministic=True, return_episode_rewards=True)
    assert ours["returns"] == pytest.approx([float(r) for r in rewards])

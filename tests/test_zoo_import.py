"""`rlkit presets import-zoo`: the RL Zoo's own dqn.yml as presets, and a parser that evaluates nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from rlkit.config import zoo
from rlkit.config.schema import validate
from rlkit.core.errors import RlkitError
from rlkit.environments.resolve import resolve
from tests.clitools import assert_one_line_error, invoke

ZOO_DQN = Path(__file__).parent / "data" / "zoo_dqn.yml"


def _preset(path: Path) -> dict[str, object]:
    data = yaml.safe_load(path.read_text())
    validate(data, str(path))
    return dict(data)


def test_the_zoo_dqn_file_becomes_one_validated_preset_per_env(tmp_path: Path) -> None:
    result = invoke("presets", "import-zoo", ZOO_DQN, "--out", tmp_path / "zoo")
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "zoo").iterdir())
    assert files == ["acrobot-v1.yaml", "cartpole-v1.yaml", "lunarlander-v3.yaml", "mountaincar-v0.yaml"]
    cartpole = _preset(tmp_path / "zoo" / "cartpole-v1.yaml")
    assert cartpole["env_id"] == "CartPole-v1"
    assert cartpole["n_timesteps"] == 200_000  # !!float 2e5
    assert cartpole["learning_rate"] == 2.5e-4 and cartpole["batch_size"] == 512
    assert cartpole["target_update_interval"] == 5000 and cartpole["train_freq"] == 16
    assert cartpole["gradient_steps"] == 4 and cartpole["exploration_final_eps"] == 0.11
    mountaincar = _preset(tmp_path / "zoo" / "mountaincar-v0.yaml")
    assert mountaincar["policy_kwargs"] == {"net_arch": [256, 256]}  # from "dict(net_arch=[256, 256])"
    assert mountaincar["gamma"] == 0.98
    lunar = _preset(tmp_path / "zoo" / "lunarlander-v3.yaml")
    assert lunar["env_id"] == "LunarLander-v3" and lunar["gradient_steps"] == -1
    assert "LunarLander-v2 is not registered" in result.stdout
    assert "atari: skipped" in result.stdout
    for path in (tmp_path / "zoo").iterdir():  # what `rlkit train FILE.yaml` does first: validate, make the env
        assert resolve(str(path)).preset.env_id == _preset(path)["env_id"]


def test_the_atari_entry_serves_any_game(tmp_path: Path) -> None:
    result = invoke("presets", "import-zoo", ZOO_DQN, "--env", "PongNoFrameskip-v4", "--out", tmp_path)
    assert result.exit_code == 0, result.output
    pong = _preset(tmp_path / "pongnoframeskip-v4.yaml")
    assert pong["policy"] == "CnnPolicy" and pong["atari"] == {"frame_stack": 4}
    assert pong["n_timesteps"] == 10_000_000 and pong["exploration_final_eps"] == 0.1
    resolved = resolve(str(tmp_path / "pongnoframeskip-v4.yaml")).preset
    assert resolved.atari is not None and resolved.atari.frame_stack == 4
    assert [p.name for p in tmp_path.iterdir()] == ["pongnoframeskip-v4.yaml"]


def test_an_imported_preset_trains(tmp_path: Path) -> None:
    assert invoke("presets", "import-zoo", ZOO_DQN, "--env", "CartPole-v1", "--out", tmp_path).exit_code == 0
    sets = ["n_timesteps=300", "learning_starts=50", "eval_freq=0", "checkpoint_freq=0", "buffer_size=1000"]
    args = [arg for pair in sets for arg in ("--set", pair)]
    run = tmp_path / "run"
    result = invoke("train", tmp_path / "cartpole-v1.yaml", "--seed", 0, "--run-dir", run, "-q", *args)
    assert result.exit_code == 0, result.output
    saved = yaml.safe_load((run / "config.yaml").read_text())["preset"]
    assert saved["batch_size"] == 512 and saved["target_update_interval"] == 5000


def test_existing_presets_are_not_clobbered_without_force(tmp_path: Path) -> None:
    assert invoke("presets", "import-zoo", ZOO_DQN, "--env", "Acrobot-v1", "--out", tmp_path).exit_code == 0
    target = tmp_path / "acrobot-v1.yaml"
    target.write_text("mine\n")
    result = invoke("presets", "import-zoo", ZOO_DQN, "--env", "Acrobot-v1", "--out", tmp_path)
    assert_one_line_error(result, "acrobot-v1.yaml", "--force")
    assert target.read_text() == "mine\n"
    assert invoke("presets", "import-zoo", ZOO_DQN, "--env", "Acrobot-v1", "--out", tmp_path, "--force").exit_code == 0
    assert _preset(target)["env_id"] == "Acrobot-v1"


def test_a_malicious_string_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.yml"
    evil.write_text(f"CartPole-v1:\n  policy_kwargs: \"__import__('os').system('touch {marker}')\"\n")
    result = invoke("presets", "import-zoo", evil, "--out", tmp_path / "out")
    assert_one_line_error(result, "policy_kwargs", "refused", "__import__", "nothing is evaluated")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text",
    [
        "dict(net_arch=open('/etc/passwd').read())",
        "dict(**globals())",
        "[x for x in ().__class__.__bases__]",
        "lambda: 1",
        "nn.ReLU()",
        "1 + 2",
    ],
)
def test_the_literal_reader_refuses_anything_but_literals(text: str) -> None:
    with pytest.raises(RlkitError, match="refused"):
        zoo.read_literal(text, "here")


def test_the_literal_reader_reads_zoo_values() -> None:
    value = zoo.read_literal(
        "dict(net_arch=[64, 64], activation_fn=th.nn.ReLU, features_extractor_kwargs={'features_dim': 256}, n=-1e-3)",
        "here",
    )
    assert value == {
        "net_arch": [64, 64],
        "activation_fn": zoo.NnName("ReLU"),
        "features_extractor_kwargs": {"features_dim": 256},
        "n": -1e-3,
    }


def test_schedules_activations_and_left_out_keys_are_each_named(tmp_path: Path) -> None:
    source = tmp_path / "mine.yml"
    source.write_text(
        "CartPole-v1:\n"
        "  n_timesteps: 1e5\n"
        "  learning_rate: lin_6.3e-4\n"
        "  normalize: true\n"
        "  callback: rl_zoo3.callbacks.ParallelTrainCallback\n"
        "  train_freq: [4, 'step']\n"
        "  frame_stack: 2\n"
        '  policy_kwargs: "dict(net_arch=[64, 64], activation_fn=nn.Tanh, optimizer_kwargs=dict(eps=1e-5))"\n'
    )
    result = invoke("presets", "import-zoo", source, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    preset = _preset(tmp_path / "cartpole-v1.yaml")
    assert preset["n_timesteps"] == 100_000
    assert preset["learning_rate"] == 6.3e-4 and preset["learning_rate_schedule"] == "linear"
    assert preset["train_freq"] == 4
    assert preset["policy_kwargs"] == {"net_arch": [64, 64], "activation_fn": "tanh"}
    for key in ("normalize", "callback", "frame_stack", "policy_kwargs.optimizer_kwargs"):
        lines = [line for line in result.stdout.splitlines() if line.strip().startswith(f"{key}:")]
        assert len(lines) == 1 and "not carried over" in lines[0], (key, result.stdout)
    assert "#   normalize: True not carried over" in (tmp_path / "cartpole-v1.yaml").read_text()


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    assert_one_line_error(invoke("presets", "import-zoo", tmp_path / "nope.yml"), "not found")
    result = invoke("presets", "import-zoo", ZOO_DQN, "--env", "CartPol-v1", "--out", tmp_path / "o")
    assert_one_line_error(result, "no entry 'CartPol-v1'", "did you mean 'CartPole-v1'")
    bad = tmp_path / "bad.yml"
    bad.write_text("CartPole-v1:\n  gamma: 1.5\n")
    assert_one_line_error(invoke("presets", "import-zoo", bad, "--out", tmp_path / "o"), "gamma")
    assert not (tmp_path / "o").exists()


def test_gymnasium_wrappers_become_preset_wrappers_and_others_are_named(tmp_path: Path) -> None:
    source = tmp_path / "wrapped.yml"
    source.write_text(
        "CartPole-v1:\n"
        "  env_wrapper:\n"
        "    - gymnasium.wrappers.TimeLimit:\n"
        "        max_episode_steps: 200\n"
        "    - rl_zoo3.wrappers.HistoryWrapper:\n"
        "        horizon: 2\n"
    )
    result = invoke("presets", "import-zoo", source, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    preset = _preset(tmp_path / "cartpole-v1.yaml")
    assert preset["wrappers"] == [{"name": "TimeLimit", "kwargs": {"max_episode_steps": 200}}]
    assert "env_wrapper: rl_zoo3.wrappers.HistoryWrapper not carried over" in result.stdout
    assert resolve(str(tmp_path / "cartpole-v1.yaml")).preset.wrappers[0].name == "TimeLimit"

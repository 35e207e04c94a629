"""The schema, overrides and their one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlkit.config.presets import catalogue, load_preset_file, read_yaml
from rlkit.config.schema import Preset, field_paths, parse_assignment, validate
from rlkit.core.errors import RlkitError
from rlkit.environments.resolve import resolve

REQUIRED_PRESETS = {"cartpole", "lunarlander", "acrobot", "mountaincar", "pong", "breakout"}


def test_catalogue_has_every_required_preset() -> None:
    assert set(catalogue()) >= REQUIRED_PRESETS


@pytest.mark.parametrize("alias", sorted(REQUIRED_PRESETS))
def test_every_preset_validates_and_says_where_its_values_came_from(alias: str) -> None:
    path = catalogue()[alias]
    preset = load_preset_file(path)
    assert preset.solved_score is not None
    assert "Zoo" in path.read_text(), "each preset names the source of its hyperparameters"


def test_atari_presets_use_the_standard_dqn_preprocessing() -> None:
    for alias in ("pong", "breakout"):
        preset = resolve(alias).preset
        assert preset.policy == "CnnPolicy"
        assert preset.atari is not None
        assert (preset.atari.frame_skip, preset.atari.frame_stack, preset.atari.screen_size) == (4, 4, 84)


def test_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(RlkitError, match=r"unknown key 'learning_rat' \(did you mean 'learning_rate'\?\)"):
        validate({"env_id": "CartPole-v1", "learning_rat": 0.1}, "test")


def test_nested_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(RlkitError, match=r"did you mean 'policy_kwargs.net_arch'"):
        resolve("cartpole", overrides=["policy_kwargs.net_ar=[32]"])


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("learning_rate=-1", "learning_rate: Input should be greater than 0"),
        ("batch_size=abc", "batch_size: Input should be a valid integer"),
        ("gamma=1.5", "gamma: Input should be less than or equal to 1"),
        ("policy=Mlp", "policy: Input should be 'auto', 'MlpPolicy' or 'CnnPolicy'"),
        ("policy_kwargs.net_arch=[64,0]", "every layer size in net_arch must be at least 1"),
        ("exploration_initial_eps=0.01", "exploration_final_eps must not exceed"),
        ("oops", "--set expects key=value"),
    ],
)
def test_bad_values_fail_with_one_line(pair: str, message: str) -> None:
    with pytest.raises(RlkitError) as info:
        resolve("cartpole", overrides=[pair])
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_set_values_are_coerced_from_yaml() -> None:
    preset = resolve(
        "cartpole",
        overrides=["learning_rate=1e-3", "policy_kwargs.net_arch=[32, 16]", "gradient_steps=-1", "stop_on_solved=true"],
    ).preset
    assert preset.learning_rate == pytest.approx(1e-3)
    assert preset.policy_kwargs.net_arch == [32, 16]
    assert preset.gradient_steps == -1
    assert preset.stop_on_solved is True


def test_parse_assignment_keeps_strings_and_lists() -> None:
    assert parse_assignment("policy=MlpPolicy") == ("policy", "MlpPolicy")
    assert parse_assignment("policy_kwargs.net_arch=[1,2]") == ("policy_kwargs.net_arch", [1, 2])


def test_config_file_overrides_and_set_wins(tmp_path: Path) -> None:
    extra = tmp_path / "over.yaml"
    extra.write_text("learning_rate: 0.01\nbatch_size: 16\n")
    preset = resolve("cartpole", config_file=extra, overrides=["batch_size=8"]).preset
    assert preset.learning_rate == pytest.approx(0.01)
    assert preset.batch_size == 8


def test_malformed_override_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rate: [unclosed\n")
    with pytest.raises(RlkitError, match="malformed YAML"):
        resolve("cartpole", config_file=bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(RlkitError, match="expected a mapping"):
        read_yaml(listed)


def test_preset_file_is_accepted_as_env(tmp_path: Path) -> None:
    mine = tmp_path / "mine.yaml"
    mine.write_text("env_id: CartPole-v1\nn_timesteps: 123\n")
    resolved = resolve(str(mine))
    assert resolved.alias == "mine"
    assert resolved.preset.n_timesteps == 123


def test_field_paths_include_nested_keys() -> None:
    paths = field_paths()
    assert "policy_kwargs.net_arch" in paths
    assert "atari.frame_stack" in paths
    assert "learning_rate" in paths


def test_every_field_has_a_docstring() -> None:
    import ast
    import inspect

    import rlkit.config.schema as module

    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name in {"Preset", "PolicyKwargs", "AtariConfig"}:
            body = node.body
            for i, stmt in enumerate(body):
                if isinstance(stmt, ast.AnnAssign):
                    nxt = body[i + 1] if i + 1 < len(body) else None
                    assert (
                        isinstance(nxt, ast.Expr)
                        and isinstance(nxt.value, ast.Constant)
                        and isinstance(nxt.value.value, str)
                    ), f"{node.name}.{ast.unparse(stmt.target)} has no docstring"
    assert Preset.model_config.get("extra") == "forbid"

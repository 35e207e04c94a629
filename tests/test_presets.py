"""Resolving names: aliases, gymnasium ids, did-you-mean; the data folder."""

from __future__ import annotations

import pytest

from rlkit.core.errors import RlkitError
from rlkit.core.paths import data_dir
from rlkit.environments.resolve import resolve


@pytest.mark.parametrize("name", ["lunarlander", "LunarLander", "LUNAR", "LunarLander-v3", "lunarlander-v3"])
def test_aliases_are_case_insensitive(name: str) -> None:
    resolved = resolve(name)
    assert resolved.alias == "lunarlander"
    assert resolved.preset.env_id == "LunarLander-v3"


def test_typo_suggests_the_preset() -> None:
    with pytest.raises(RlkitError, match=r"unknown environment 'lunarlnder' \(did you mean 'lunarlander'\?\)"):
        resolve("lunarlnder")


def test_gymnasium_id_without_preset_gets_defaults() -> None:
    resolved = resolve("CartPole-v0")
    assert resolved.source == "gymnasium defaults"
    assert resolved.preset.policy == "auto"
    assert resolved.alias == "cartpole-v0"


def test_atari_id_without_preset_is_registered_and_preprocessed() -> None:
    resolved = resolve("ALE/Pong-v5")
    assert resolved.preset.atari is not None
    # AtariWrapper skips frames itself, so ALE's own frame skip is switched off.
    assert resolved.preset.env_kwargs["frameskip"] == 1


def test_continuous_actions_are_refused() -> None:
    with pytest.raises(RlkitError, match="DQN needs discrete actions"):
        resolve("Pendulum-v1")


@pytest.mark.parametrize(
    ("env", "sets", "message"),
    [
        ("cartpole", ["env_kwargs.nope=1"], "do not fit CartPole-v1: .*unexpected keyword argument 'nope'"),
        ("lunarlander", ["env_kwargs.gravity=5.0"], "do not fit LunarLander-v3: gravity"),
        ("breakout", ["env_kwargs.mode=2"], "do not fit BreakoutNoFrameskip-v4: Invalid game mode"),
    ],
)
def test_bad_env_kwargs_are_one_line(env: str, sets: list[str], message: str) -> None:
    with pytest.raises(RlkitError, match=message):
        resolve(env, overrides=sets)


def test_data_dirs_are_found() -> None:
    assert (data_dir("envs") / "lunarlander.yaml").is_file()
    assert data_dir("tuning").is_dir()


def test_an_env_id_names_its_main_preset_not_a_variant() -> None:
    assert resolve("CartPole-v1").alias == "cartpole"
    demo = resolve("cartpole-demo")  # `make demo`'s name: an alias of the preset that stops once solved
    assert demo.alias == "cartpole" and demo.preset.stop_on_solved and demo.preset.solved_score == 475

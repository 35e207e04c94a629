"""Every preset builds its model and really steps; evaluation envs play full Atari games."""

from __future__ import annotations

import numpy as np
import pytest

from rlkit.config.presets import catalogue
from rlkit.environments.factory import make_env, policy_name
from rlkit.environments.resolve import resolve
from rlkit.training.factory import build_model

SMALL = ["buffer_size=2000", "learning_starts=100", "batch_size=16", "train_freq=4", "gradient_steps=1"]


@pytest.mark.parametrize("alias", sorted(catalogue()))
def test_preset_builds_and_steps(alias: str) -> None:
    preset = resolve(alias, overrides=SMALL).preset
    env = make_env(preset, n_envs=preset.n_envs, seed=0)
    model = build_model(preset, env, seed=0, device="cpu", tensorboard_log=None)
    expected = "NatureCNN" if preset.atari is not None else "FlattenExtractor"
    assert type(model.q_net.features_extractor).__name__ == expected
    model.learn(300)
    assert model.num_timesteps >= 300
    assert (
        model.replay_buffer is not None and model.replay_buffer.size() * preset.n_envs >= 300
    )  # size() counts per env
    assert model._n_updates > 0, "gradient steps ran"
    env.close()


def test_auto_policy_follows_the_observation_space() -> None:
    atari = resolve("ALE/Breakout-v5", overrides=SMALL).preset
    env = make_env(atari, seed=0)
    assert env.observation_space.shape == (84, 84, 4)
    assert policy_name(atari, env.observation_space) == "CnnPolicy"
    vector = resolve("CartPole-v0").preset
    cart = make_env(vector, seed=0)
    assert policy_name(vector, cart.observation_space) == "MlpPolicy"


def _wrapper_names(vec_env: object) -> list[str]:
    env = vec_env.envs[0]  # type: ignore[attr-defined]
    names = []
    while hasattr(env, "env"):
        names.append(type(env).__name__)
        env = env.env
    return names


def test_atari_eval_env_plays_full_games_with_real_score() -> None:
    preset = resolve("pong", overrides=["atari.backend=sb3"]).preset
    train_names = _wrapper_names(make_env(preset, seed=0, train=True))
    eval_names = _wrapper_names(make_env(preset, seed=0, train=False))
    assert "ClipRewardEnv" in train_names and "EpisodicLifeEnv" in train_names
    assert "ClipRewardEnv" not in eval_names and "EpisodicLifeEnv" not in eval_names
    assert "Monitor" in eval_names
    ale = resolve("pong", overrides=["atari.backend=ale"]).preset  # training on ale-py's vector env
    assert type(make_env(ale, seed=0, train=True)).__name__ == "AtariVecEnv"
    assert _wrapper_names(make_env(ale, seed=0, train=False)) == eval_names


def test_training_envs_do_not_render_and_play_the_same_game() -> None:
    """SB3's make_vec_env would render to rgb_array; rlkit's envs only render when asked to.

    LunarLander simulates engine particles as Box2D bodies when rendering (decoration only):
    the same seed and actions give the same observations and rewards either way.
    """
    import numpy as np

    preset = resolve("lunarlander").preset
    plain = make_env(preset, n_envs=1, seed=3)
    rendering = make_env(preset, n_envs=1, seed=3, render_mode="rgb_array")
    assert plain.render_mode is None and rendering.render_mode == "rgb_array"
    rng = np.random.default_rng(0)
    obs_a, obs_b = plain.reset(), rendering.reset()
    for _ in range(300):
        action = rng.integers(4, size=1)
        obs_a, rew_a, done_a, _ = plain.step(action)
        obs_b, rew_b, done_b, _ = rendering.step(action)
        np.testing.assert_array_equal(obs_a, obs_b)
        np.testing.assert_array_equal(rew_a, rew_b)
        np.testing.assert_array_equal(done_a, done_b)
    assert len(rendering.envs[0].unwrapped.particles) > 0  # type: ignore[attr-defined]
    assert len(plain.envs[0].unwrapped.particles) == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize("env_id", ["CartPole-v1", "LunarLander-v3"])
def test_dummy_envs_step_as_sb3s_dummy_vec_env(env_id: str) -> None:
    """rlkit's vec env (no deep copy of the infos) gives what SB3's gives, episode ends included."""
    import gymnasium as gym
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlkit.environments.vec import DummyEnvs

    envs = [cls([lambda: gym.make(env_id)] * 3) for cls in (DummyVecEnv, DummyEnvs)]
    for env in envs:
        env.seed(7)
    obs = [env.reset() for env in envs]
    assert np.array_equal(obs[0], obs[1])
    rng = np.random.default_rng(0)
    ends = 0
    for _ in range(600):
        actions = rng.integers(0, envs[0].action_space.n, size=3)
        theirs, ours = (env.step(actions) for env in envs)
        for a, b in zip(theirs[:3], ours[:3], strict=True):
            assert np.array_equal(a, b)
        for info_a, info_b in zip(theirs[3], ours[3], strict=True):
            assert info_a.keys() == info_b.keys()
            for key, value in info_a.items():
                assert np.array_equal(value, info_b[key]), key
        ours[3][0]["scribbled"] = True  # a caller's edit never reaches the next step
        ends += int(theirs[2].sum())
    assert ends > 5

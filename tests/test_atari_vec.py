"""ale-py's vector env behind SB3's VecEnv: frames, autoreset, real-game episodes, seeding, training."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import VecTransposeImage

from rlkit.core.errors import Interrupted, RlkitError
from rlkit.environments.atari_vec import AleSettings, AtariVecEnv, MonitorCsv, ale_settings
from rlkit.environments.factory import make_env
from rlkit.environments.resolve import resolve
from rlkit.training import train
from tests.test_resume import SignalAt

ALE = ["atari.backend=ale"]
TINY = [
    *ALE,
    "optimize_memory_usage=false",
    "frame_buffer=true",
    "buffer_size=1000",
    "learning_starts=100",
    "batch_size=8",
    "train_freq=4",
    "target_update_interval=100",
    "policy_kwargs.features_dim=64",
    "torch_threads=1",
]


def _space_invaders(training: bool, n_envs: int = 2) -> AtariVecEnv:
    atari = resolve("SpaceInvadersNoFrameskip-v4", overrides=ALE).preset
    env = AtariVecEnv(ale_settings(atari, train=training), n_envs)
    env.seed(3)
    return env


def test_observations_match_the_sb3_path() -> None:
    """Same observation space as the SB3 path after SB3's VecTransposeImage; stacks start zero-filled."""
    preset = resolve("pong", overrides=ALE).preset
    ale = make_env(preset, n_envs=2, seed=0)
    sb3 = VecTransposeImage(
        make_env(resolve("pong", overrides=["atari.backend=sb3", "n_envs=1"]).preset, n_envs=2, seed=0)
    )
    assert isinstance(ale, AtariVecEnv)
    assert ale.observation_space == sb3.observation_space
    assert ale.action_space == sb3.action_space
    obs = ale.reset()
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert not obs[:, :-1].any() and obs[:, -1].any()
    obs, rewards, dones, infos = ale.step(np.array([0, 1]))
    assert obs.shape == (2, 4, 84, 84) and rewards.dtype == np.float32 and dones.dtype == bool
    assert all(info["TimeLimit.truncated"] is False for info in infos)
    assert ale.env_is_wrapped(Monitor) == [True, True]
    assert ale.env_method("get_action_meanings")[0] == sb3.venv.envs[0].unwrapped.get_action_meanings()  # type: ignore[attr-defined]
    ale.close()


def test_frames_equal_the_sb3_paths_on_the_same_game() -> None:
    """Freeway has no FIRE: with no no-ops both paths play the same emulator states.

    The reset frames are identical; later frames differ only where ALE max-pools grayscale
    frames and SB3 max-pools RGB frames before its gray conversion (about 1% of the pixels).
    """
    sets = ["atari.noop_max=0"]
    sb3 = VecTransposeImage(make_env(resolve("FreewayNoFrameskip-v4", overrides=sets).preset, seed=0, train=False))
    ale = make_env(resolve("FreewayNoFrameskip-v4", overrides=[*sets, *ALE]).preset, seed=0)
    a, b = sb3.reset(), ale.reset()
    assert np.array_equal(a, b)
    rng = np.random.default_rng(0)
    differing = []
    for _ in range(150):
        action = rng.integers(3, size=1)
        a, reward_a, _, _ = sb3.step(action)
        b, reward_b, _, _ = ale.step(action)
        assert reward_a == reward_b
        differing.append(float((a[0, -1] != b[0, -1]).mean()))
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 0.5
    assert max(differing) < 0.05 and float(np.mean(differing)) < 0.03


def test_life_loss_ends_training_episodes_and_the_real_game_is_reported() -> None:
    """Training: a done at each lost life, rewards clipped; ``episode`` only at the real game's end,
    with the unclipped score and its emulator frames, exactly what full-game play reports."""
    trained, full = _space_invaders(training=True), _space_invaders(training=False)
    trained.reset(), full.reset()
    rng = np.random.default_rng(0)
    games: dict[str, list[tuple[int, float, int]]] = {"trained": [], "full": []}
    score = np.zeros(2)
    life_ends, biggest = 0, 0.0
    for _ in range(600):
        actions = rng.integers(trained.action_space.n, size=2)  # type: ignore[attr-defined]
        obs, rewards, dones, infos = trained.step(actions)
        full_obs, full_rewards, full_dones, full_infos = full.step(actions)
        np.testing.assert_array_equal(obs[:, -1], full_obs[:, -1])  # the same games underneath
        assert set(np.unique(rewards)) <= {-1.0, 0.0, 1.0}
        np.testing.assert_array_equal(rewards, np.sign(full_rewards))
        score += full_rewards
        biggest = max(biggest, float(full_rewards.max()))
        for i in range(2):
            if dones[i]:
                assert infos[i]["terminal_observation"].shape == (4, 84, 84)
            if dones[i] and "episode" not in infos[i]:
                life_ends += 1
                assert not full_dones[i], "full games go on at a lost life"
                assert not obs[i, :-1].any(), "a new training episode starts from a zero-filled stack"
                np.testing.assert_array_equal(obs[i, -1], infos[i]["terminal_observation"][-1])
            for name, info in (("trained", infos[i]), ("full", full_infos[i])):
                if "episode" in info:
                    games[name].append((i, info["episode"]["r"], info["episode"]["l"]))
            if "episode" in full_infos[i]:
                assert full_infos[i]["episode"]["r"] == score[i]
                score[i] = 0.0
    assert life_ends >= 2
    assert games["trained"] == games["full"]
    assert {i for i, _, _ in games["full"]} == {0, 1}, "each env finished a game"
    assert all(r % 5 == 0 for _, r, _ in games["full"]) and any(r > 0 for _, r, _ in games["full"])
    assert biggest >= 5, "real rewards (Space Invaders scores 5 to 30 an invader), not clipped ones"
    assert all(frames > 4 * 100 for _, _, frames in games["full"]), "lengths in emulator frames"


def test_truncation_is_a_timeout_with_the_game_reported() -> None:
    env = AtariVecEnv(AleSettings(env_id="PongNoFrameskip-v4", game="pong", max_episode_frames=200), 1)
    env.seed(0)
    env.reset()
    steps, dones = 0, np.zeros(1, dtype=bool)
    while not dones[0] and steps < 100:
        obs, _, dones, infos = env.step(np.zeros(1, dtype=np.int64))
        steps += 1
    assert steps == 50, "200 frames at frame skip 4"
    assert infos[0]["TimeLimit.truncated"] is True
    assert infos[0]["episode"]["l"] >= 200 and "terminal_observation" in infos[0]
    assert not obs[0, :-1].any(), "the next game started in the same step"


def test_seed_makes_resets_deterministic() -> None:
    def trajectory(seed: int) -> np.ndarray:
        env = _space_invaders(training=True)
        env.seed(seed)
        frames = [env.reset()]
        rng = np.random.default_rng(0)
        for _ in range(60):
            frames.append(env.step(rng.integers(6, size=2))[0])
        env.close()
        return np.stack(frames)

    first = trajectory(7)
    assert np.array_equal(first, trajectory(7))
    assert not np.array_equal(first, trajectory(8))


def test_unsupported_env_kwargs_are_one_line_errors() -> None:
    with pytest.raises(RlkitError, match="env_kwargs mode not supported") as info:
        resolve("pong", overrides=[*ALE, "env_kwargs.mode=1"])
    assert "\n" not in str(info.value)
    with pytest.raises(RlkitError, match="frameskip must be 1"):
        ale_settings(resolve("pong", overrides=ALE).preset.model_copy(update={"env_kwargs": {"frameskip": 4}}))
    v5 = resolve("ALE/Breakout-v5", overrides=ALE).preset  # frameskip 1 filled in; sticky actions kept
    assert ale_settings(v5).repeat_action_probability == 0.25 and ale_settings(v5).game == "breakout"


def test_evaluation_and_rendering_stay_on_the_sb3_path() -> None:
    preset = resolve("pong", overrides=ALE).preset
    assert not isinstance(make_env(preset, seed=0, train=False), AtariVecEnv)
    assert not isinstance(make_env(preset, seed=0, render_mode="rgb_array"), AtariVecEnv)


@pytest.mark.usefixtures("one_thread")
def test_dqn_learns_on_the_adapter_and_logs_real_games() -> None:
    from rlkit.replay.buffers import FrameReplayBuffer
    from rlkit.training.factory import build_model

    sets = [*TINY, "n_envs=2", "learning_starts=900", "exploration_final_eps=1.0"]
    preset = resolve("SpaceInvadersNoFrameskip-v4", overrides=sets).preset
    env = make_env(preset, n_envs=2, seed=0)
    model = build_model(preset, env, seed=0, device="cpu", tensorboard_log=None)
    assert model.get_env() is env, "channel-first frames: no VecTransposeImage around the adapter"
    model.learn(1200)
    assert isinstance(model.replay_buffer, FrameReplayBuffer) and model._n_updates > 0
    episodes = list(model.ep_info_buffer)
    assert episodes and all(e["l"] > 400 for e in episodes)  # whole games in frames, not lives
    assert any(e["r"] > 1 for e in episodes)
    env.close()


def _monitor_rows(run: Path) -> list[list[str]]:
    text = (run / "monitor" / "0.monitor.csv").read_text().splitlines()
    assert text[0].startswith("#") and json.loads(text[0][1:])["env_id"] == "BreakoutNoFrameskip-v4"
    assert text[1] == "r,l,t" and sum(line == "r,l,t" for line in text) == 1
    return [line.split(",") for line in text[2:]]


@pytest.mark.usefixtures("one_thread")
def test_run_writes_monitor_csv_and_resumes(tmp_path: Path) -> None:
    """A run on the adapter: real games in the Monitor CSV, an interrupt, and a resume that appends."""
    sets = [*TINY, "n_envs=1", "n_timesteps=900", "learning_starts=400", "eval_freq=0", "checkpoint_freq=0"]
    run = tmp_path / "run"
    with pytest.raises(Interrupted):
        train.start(
            resolve("breakout", overrides=[*sets, "exploration_final_eps=1.0"]), seed=0, run_dir=run, quiet=True,
            device="cpu", callbacks=[SignalAt(450, signal.SIGINT)],
        )  # fmt: skip
    before = _monitor_rows(run)
    assert before and all(float(r) >= 0 and int(frames) > 400 for r, frames, _ in before)
    result = train.resume(run, quiet=True, device="cpu")
    assert result is not None and result.num_timesteps >= 900
    after = _monitor_rows(run)
    assert after[: len(before)] == before and len(after) > len(before)


@pytest.mark.usefixtures("one_thread")
def test_model_trained_on_the_adapter_evaluates_on_the_sb3_path(tmp_path: Path) -> None:
    from rlkit.analysis.evaluation import evaluate_run

    sets = [*TINY, "n_timesteps=300", "eval_freq=0", "checkpoint_freq=0"]
    run = train.start(resolve("pong", overrides=sets), seed=0, run_dir=tmp_path / "pong", quiet=True, device="cpu")
    result = evaluate_run(run.run_dir, model_name="final", episodes=1, device="cpu")
    assert result.returns and -21 <= result.returns[0] <= 21


def test_monitor_csv_wrapper_appends_on_resume(tmp_path: Path) -> None:
    def play(override: bool) -> None:
        env = MonitorCsv(_space_invaders(training=True, n_envs=1), tmp_path, "SpaceInvadersNoFrameskip-v4", override)
        env.reset()
        rng = np.random.default_rng(0)
        for _ in range(700):
            env.step(rng.integers(6, size=1))
        env.close()

    play(True)
    first = (tmp_path / "0.monitor.csv").read_text().splitlines()
    play(False)
    second = (tmp_path / "0.monitor.csv").read_text().splitlines()
    assert len(first) > 2 and second[: len(first)] == first and len(second) > len(first)
    assert sum(line == "r,l,t" for line in second) == 1

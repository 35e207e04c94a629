"""ale-py's threaded C++ ``AtariVectorEnv`` behind SB3's ``VecEnv`` interface (``atari.backend: ale``).

:class:`AtariVecEnv` gives SB3's DQN what rlkit's SB3 path (AtariWrapper, DummyVecEnv,
VecFrameStack, VecTransposeImage) gives it, from ale-py's vectorised emulators:

- observations: uint8 ``(n_envs, frame_stack, 84, 84)``, channel first, the same observation space
  as the SB3 path after SB3's automatic ``VecTransposeImage`` (a model trained on one evaluates on
  the other); a new episode starts from a zero-filled stack, as ``VecFrameStack`` does;
- same-step autoreset: ``infos[i]["terminal_observation"]`` on every done,
  ``infos[i]["TimeLimit.truncated"]`` on every step;
- episode ends at a lost life and rewards clipped to their sign (training only, as the preset says),
  computed here: ALE itself runs full games with unclipped rewards, so ``infos[i]["episode"]``
  (``r``, ``l``, ``t``: SB3 Monitor's semantics) reports the real game at its real end: the
  unclipped score and the length in emulator frames, as SB3's Monitor below AtariWrapper does.

How ALE's options behave (ale-py 0.12, read from its source and checked in
``tests/test_atari_vec.py``): ``episodic_life=True`` *resets the whole game* at a lost life (not
SB3's EpisodicLifeEnv, which plays on), so it stays off and life losses are detected here from
``info["lives"]`` exactly as EpisodicLifeEnv does (``0 < lives < previous lives``);
``reward_clipping`` stays off so the score is real; the autoreset mode is ``NEXT_STEP``, whose
terminal step still carries the finished game's lives and frame count, and the adapter resets
finished envs at once with a masked ``reset`` (same-step semantics; one extra round trip per game).

Known differences from the SB3 path (docs/BENCHMARKS.md): grayscale comes from ALE's palette and
max-pooling is over grayscale frames (SB3: max over RGB, then OpenCV's RGB-to-gray), a pixel
differs by a few levels where two frames overlap; a reset presses FIRE then up to ``noop_max - 1``
no-ops (SB3: 1 to ``noop_max`` no-ops, then FIRE and action 2); after a lost life the game goes on
without FIRE (SB3 presses FIRE again), the stack is zero-filled like SB3's; the frame limit counts
frames after the reset's no-ops.

:class:`MonitorCsv` writes the reported episodes to SB3 Monitor CSVs (``monitor/<rank>.monitor.csv``,
the layout ``make_vec_env`` gives), so plots, benchmarks and resumes read them unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.monitor import Monitor, ResultsWriter
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rlkit.core.errors import RlkitError

if TYPE_CHECKING:
    from rlkit.config.schema import Preset

# env_kwargs the adapter understands (gymnasium's AtariEnv arguments with an ALE vector counterpart).
SUPPORTED_KWARGS = (
    "game",
    "frameskip",
    "repeat_action_probability",
    "full_action_space",
    "max_num_frames_per_episode",
    "render_mode",
    "obs_type",
)
NO_FRAME_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class AleSettings:
    """Everything :class:`AtariVecEnv` needs, resolved from a preset (see :func:`ale_settings`)."""

    env_id: str
    game: str
    frame_skip: int = 4
    frame_stack: int = 4
    screen_size: int = 84
    noop_max: int = 30
    terminal_on_life_loss: bool = True
    clip_reward: bool = True
    repeat_action_probability: float = 0.0
    full_action_space: bool = False
    max_episode_frames: int = 108_000


def ale_settings(preset: Preset, train: bool = True) -> AleSettings:
    """The adapter's settings for an Atari preset; a one-line error for what ALE's vector env cannot do."""
    atari = preset.atari
    if atari is None:
        raise RlkitError(f"{preset.env_id}: atari.backend ale needs an Atari preset (an ALE environment id)")
    try:
        spec = gym.spec(preset.env_id)
    except gym.error.Error as exc:
        raise RlkitError(f"atari.backend ale: cannot find {preset.env_id}: {exc}") from None
    kwargs = {**spec.kwargs, **preset.env_kwargs}
    unsupported = sorted(set(kwargs) - set(SUPPORTED_KWARGS))
    if "game" not in kwargs:
        raise RlkitError(f"{preset.env_id}: atari.backend ale needs an ALE environment id (valid: atari.backend sb3)")
    if unsupported:
        raise RlkitError(
            f"atari.backend ale: env_kwargs {', '.join(unsupported)} not supported by ale-py's AtariVectorEnv "
            f"(supported: {', '.join(SUPPORTED_KWARGS)}); use atari.backend sb3"
        )
    if preset.env_kwargs.get("frameskip", 1) != 1:
        raise RlkitError("atari.backend ale: env_kwargs.frameskip must be 1 (atari.frame_skip does the skipping)")
    if kwargs.get("render_mode") is not None or kwargs.get("obs_type", "rgb") != "rgb":
        raise RlkitError(
            "atari.backend ale: env_kwargs render_mode and obs_type are not supported; use atari.backend sb3"
        )
    return AleSettings(
        env_id=preset.env_id,
        game=str(kwargs["game"]),
        frame_skip=atari.frame_skip,
        frame_stack=atari.frame_stack,
        screen_size=atari.screen_size,
        noop_max=atari.noop_max,
        terminal_on_life_loss=atari.terminal_on_life_loss and train,
        clip_reward=atari.clip_reward and train,
        repeat_action_probability=float(kwargs.get("repeat_action_probability", 0.0)),
        full_action_space=bool(kwargs.get("full_action_space", False)),
        max_episode_frames=_frame_limit(kwargs.get("max_num_frames_per_episode"), spec.max_episode_steps),
    )


def _frame_limit(max_frames: int | None, max_episode_steps: int | None) -> int:
    """ALE's frame cap and gymnasium's TimeLimit (in frames, since ALE does not skip), whichever is lower."""
    limits = [int(x) for x in (max_frames, max_episode_steps) if x is not None and x > 0]
    return min(limits, default=NO_FRAME_LIMIT)


class AtariVecEnv(VecEnv):
    """SB3 ``VecEnv`` over ``ale_py.vector_env.AtariVectorEnv`` with rlkit's Atari preprocessing.

    ``step_async`` sends the actions to ALE's worker threads and ``step_wait`` collects them, so
    the emulators run while Python waits. Episode figures follow SB3's Monitor (see the module
    docstring), so ``env_is_wrapped(Monitor)`` answers True and ``evaluate_policy`` reads them.
    """

    def __init__(self, settings: AleSettings, n_envs: int = 1, num_threads: int = 0) -> None:
        from ale_py.vector_env import AtariVectorEnv

        self.settings = settings
        self.vec = AtariVectorEnv(
            game=settings.game,
            num_envs=n_envs,
            num_threads=num_threads,
            frameskip=settings.frame_skip,
            stack_num=settings.frame_stack,
            img_height=settings.screen_size,
            img_width=settings.screen_size,
            noop_max=settings.noop_max,
            repeat_action_probability=settings.repeat_action_probability,
            full_action_space=settings.full_action_space,
            max_num_frames_per_episode=settings.max_episode_frames,
            episodic_life=False,  # True would reset the whole game at a lost life
            life_loss_info=False,
            reward_clipping=False,  # real scores for the episode figures; clipped below for training
        )
        self._attrs: list[dict[str, Any]] = [
            {"render_mode": None, "spec": gym.spec(settings.env_id)} for _ in range(n_envs)
        ]
        observation_space = spaces.Box(
            0, 255, (settings.frame_stack, settings.screen_size, settings.screen_size), np.uint8
        )
        super().__init__(n_envs, observation_space, spaces.Discrete(len(self.vec.ale.get_action_set())))
        self.t_start = time.time()
        self._returns = np.zeros(n_envs, dtype=np.float64)
        self._lives = np.zeros(n_envs, dtype=np.int64)

    # --- stepping --------------------------------------------------------------------------

    def reset(self) -> VecEnvObs:
        """Reset every env; seeds given to :meth:`seed` apply to this reset only (as DummyVecEnv)."""
        seeds = None
        if any(s is not None for s in self._seeds):
            rng = np.random.default_rng()
            seeds = np.array(
                [int(s) % 2**31 if s is not None else int(rng.integers(2**31)) for s in self._seeds], dtype=np.int64
            )
        obs, info = self.vec.reset(seed=seeds)
        self._reset_seeds()
        self._returns[:] = 0.0
        self._lives[:] = info["lives"]
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self.vec.send(np.asarray(actions, dtype=np.int64).reshape(self.num_envs))

    def step_wait(self) -> VecEnvStepReturn:
        obs, reward, terminated, truncated, info = self.vec.recv()
        score = reward.astype(np.float64)
        self._returns += score
        ended = terminated | truncated  # the real game is over; ALE would reset it at the next step
        lives = info["lives"].astype(np.int64)
        life_lost = (lives < self._lives) & (lives > 0) & ~ended  # SB3's EpisodicLifeEnv test
        self._lives = lives
        dones = ended | life_lost if self.settings.terminal_on_life_loss else ended
        infos: list[dict[str, Any]] = [
            {"TimeLimit.truncated": bool(tr and not te)} for te, tr in zip(terminated, truncated, strict=True)
        ]
        for i in np.flatnonzero(dones):
            infos[i]["terminal_observation"] = obs[i].copy()
        for i in np.flatnonzero(ended):
            infos[i]["episode"] = self._episode(int(i), int(info["episode_frame_number"][i]))
        if ended.any():
            obs = self._restart(obs, ended)
        if self.settings.terminal_on_life_loss and life_lost.any():
            obs[life_lost, :-1] = 0  # a new training episode starts from a zero-filled stack, as in VecFrameStack
        rewards = np.sign(score) if self.settings.clip_reward else score
        return obs, rewards.astype(np.float32), dones, infos

    def _episode(self, i: int, frames: int) -> dict[str, float]:
        """SB3 Monitor's episode record for env ``i``'s finished game; its score restarts at 0."""
        record = {"r": float(self._returns[i]), "l": frames, "t": round(time.time() - self.t_start, 6)}
        self._returns[i] = 0.0
        return record

    def _restart(self, obs: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """New games for the ``ended`` envs now (same-step autoreset), their first observations in ``obs``."""
        fresh, info = self.vec.reset(options={"reset_mask": ended})
        obs[ended] = fresh[ended]
        self._lives[ended] = info["lives"][ended]
        return obs

    def close(self) -> None:
        self.vec.close()

    # --- the rest of SB3's VecEnv interface ------------------------------------------------

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Seeds ``seed + i`` for env ``i`` at the next :meth:`reset` (the reset is then deterministic)."""
        return super().seed(seed)

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        attrs = [self._attrs[i] for i in self._get_indices(indices)]
        if any(attr_name not in a for a in attrs):
            raise AttributeError(f"AtariVecEnv has no attribute '{attr_name}'")
        return [a[attr_name] for a in attrs]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        for i in self._get_indices(indices):
            self._attrs[i][attr_name] = value

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        if method_name != "get_action_meanings":
            raise AttributeError(f"AtariVecEnv envs have no method '{method_name}' (only get_action_meanings)")
        meanings = [action.name for action in self.vec.ale.get_action_set()]
        return [list(meanings) for _ in self._get_indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """True for SB3's ``Monitor`` only: the episode figures follow its semantics."""
        return [wrapper_class is Monitor for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        raise NotImplementedError("AtariVecEnv does not render; evaluation and videos use atari.backend sb3")


class MonitorCsv(VecEnvWrapper):
    """Writes the episodes a VecEnv reports (``infos[i]["episode"]``) to SB3 Monitor CSVs, one per env.

    ``<dir>/<rank>.monitor.csv`` with Monitor's header line and ``r,l,t`` columns, appended to when
    ``override_existing`` is False (a resumed run). For VecEnvs that report episodes themselves,
    where SB3's ``VecMonitor`` would count its own (clipped, per-life) episodes instead.
    """

    def __init__(self, venv: VecEnv, monitor_dir: Path, env_id: str, override_existing: bool = True) -> None:
        super().__init__(venv)
        monitor_dir.mkdir(parents=True, exist_ok=True)
        header: dict[str, float | str] = {"t_start": float(getattr(venv, "t_start", time.time())), "env_id": env_id}
        self.writers = [
            ResultsWriter(str(monitor_dir / str(rank)), header=header, override_existing=override_existing)
            for rank in range(venv.num_envs)
        ]

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        for i in np.flatnonzero(dones):
            episode = infos[i].get("episode")
            if episode is not None:
                self.writers[i].write_row(episode)
        return obs, rewards, dones, infos

    def close(self) -> None:
        for writer in self.writers:
            writer.close()
        self.venv.close()


def make_ale_env(
    preset: Preset, *, n_envs: int, seed: int | None, monitor_dir: Path | None, resume: bool = False
) -> VecEnv:
    """Training envs on ALE's vector env, seeded like ``make_vec_env``, with Monitor CSVs when asked."""
    venv: VecEnv = AtariVecEnv(ale_settings(preset, train=True), n_envs)
    if seed is not None:
        venv.seed(seed)
    if monitor_dir is not None:
        venv = MonitorCsv(venv, monitor_dir, preset.env_id, override_existing=not resume)
    return venv

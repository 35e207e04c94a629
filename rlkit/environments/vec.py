"""``DummyEnvs``: SB3's ``DummyVecEnv`` without its deep copy of every step's infos.

``DummyVecEnv.step_wait`` returns ``deepcopy(self.buf_infos)``: at LunarLander's pace a tenth of a
collection step (measured with ``bench/vec_env.py``). Each env returns a fresh info dict every
step (and ``DummyVecEnv`` itself writes into it), so a shallow copy of each gives the caller the same
contents and keeps the buffer's own dicts out of its reach; observations, rewards and dones are
SB3's own copies. ``tests/test_environments.py`` steps both side by side.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import DummyVecEnv


class DummyEnvs(DummyVecEnv):
    """SB3's ``DummyVecEnv`` whose ``step_wait`` copies each info dict instead of deep-copying them all."""

    def step_wait(self) -> Any:
        for env_idx in range(self.num_envs):
            obs, self.buf_rews[env_idx], terminated, truncated, info = self.envs[env_idx].step(self.actions[env_idx])
            self.buf_dones[env_idx] = terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if self.buf_dones[env_idx]:
                info["terminal_observation"] = obs
                obs, self.reset_infos[env_idx] = self.envs[env_idx].reset()
            self.buf_infos[env_idx] = info
            self._save_obs(env_idx, obs)
        infos = [dict(info) for info in self.buf_infos]
        return self._obs_from_buf(), np.copy(self.buf_rews), np.copy(self.buf_dones), infos

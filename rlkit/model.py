"""Turning a preset into a configured SB3 DQN, and choosing the device and threads."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from rlkit.config import Preset
from rlkit.environments import policy_kwargs, policy_name
from rlkit.errors import RlkitError

if TYPE_CHECKING:
    from stable_baselines3 import DQN
    from stable_baselines3.common.vec_env import VecEnv

DeviceChoice = Literal["auto", "cpu", "cuda"]


def resolve_device(choice: str) -> str:
    """``auto`` means CUDA when present; asking for CUDA without a GPU is an error."""
    import torch

    if choice not in ("auto", "cpu", "cuda"):
        raise RlkitError(f"unknown device '{choice}'; valid: auto, cpu, cuda")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RlkitError("--device cuda: no CUDA GPU is available on this machine (use --device cpu or auto)")
    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return choice


def configure_threads(preset: Preset, policy: str, device: str) -> int:
    """Set torch's CPU threads: the preset's, else 1 for MLPs (fastest measured) and all cores for CNNs."""
    import torch

    threads = preset.torch_threads
    if threads == 0:
        threads = 1 if (policy == "MlpPolicy" or device == "cuda") else max(1, os.cpu_count() or 1)
    torch.set_num_threads(threads)
    return threads


def build_model(
    preset: Preset,
    env: VecEnv,
    *,
    seed: int | None,
    device: str,
    tensorboard_log: Path | None,
) -> DQN:
    """A fresh DQN with every hyperparameter taken from the preset."""
    from stable_baselines3 import DQN
    from stable_baselines3.common.utils import LinearSchedule

    policy = policy_name(preset, env.observation_space)
    lr: float | LinearSchedule = preset.learning_rate
    if preset.learning_rate_schedule == "linear":
        lr = LinearSchedule(preset.learning_rate, 0.0, 1.0)
    return DQN(
        policy,
        env,
        learning_rate=lr,
        buffer_size=preset.buffer_size,
        learning_starts=preset.learning_starts,
        batch_size=preset.batch_size,
        tau=preset.tau,
        gamma=preset.gamma,
        train_freq=preset.train_freq,
        gradient_steps=preset.gradient_steps,
        n_steps=preset.n_steps,
        optimize_memory_usage=preset.optimize_memory_usage,
        replay_buffer_kwargs={"handle_timeout_termination": not preset.optimize_memory_usage},
        target_update_interval=preset.target_update_interval,
        exploration_fraction=preset.exploration_fraction,
        exploration_initial_eps=preset.exploration_initial_eps,
        exploration_final_eps=preset.exploration_final_eps,
        max_grad_norm=preset.max_grad_norm,
        policy_kwargs=policy_kwargs(preset, policy),
        tensorboard_log=str(tensorboard_log) if tensorboard_log is not None else None,
        seed=seed,
        device=device,
        verbose=0,
    )


def load_model(path: Path, env: VecEnv | None, device: str) -> DQN:
    """Load a saved DQN; a missing, truncated or foreign file is a one-line error."""
    import zipfile

    from stable_baselines3 import DQN

    if not path.is_file():
        raise RlkitError(f"model file not found: {path}")
    try:
        return DQN.load(path, env=env, device=device)
    except (zipfile.BadZipFile, EOFError, KeyError, ValueError, RuntimeError) as exc:
        raise RlkitError(f"cannot load model {path}: corrupted or not an SB3 DQN model ({exc})") from None

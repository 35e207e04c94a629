"""An independent check of rlkit's scores: each final model loaded and played by plain SB3 alone.

    PYTHONPATH=. python bench/independent_check.py runs/benchmarks/cartpole-50000-1a2b3c4d --episodes 100
    PYTHONPATH=. python bench/independent_check.py runs/my-run

For a run directory, or a benchmark folder (its ``seed-*`` run directories), each final
``model.zip`` is loaded with ``stable_baselines3.DQN.load`` and played with SB3's
``evaluate_policy(..., deterministic=True, return_episode_rewards=True)`` on a plain
``gymnasium.make`` env (in SB3's ``Monitor`` and ``DummyVecEnv``) seeded from the run's own
``"independent"`` seed stream: episodes no training, evaluation, confirmation or fresh
re-scoring of rlkit used. No rlkit code loads or plays the model: rlkit's files are read as
plain YAML/JSON for the env id and the network's shape, and ``rlkit.core.seeds.stream_seed``
names the env seed. Nothing is unpickled either: every cloudpickled entry of the zip is given
to SB3 as a plain SB3 object (``custom_objects``), the weights are read by SB3 with
``torch.load(weights_only=True)``.

Models plain SB3's DQN cannot play (QR-DQN, C51, dueling or NoisyNet heads, Atari's wrappers,
an env wrapped by the preset) are reported as skipped, with the reason. It prints one JSON
document: per model the mean, std, min over the episodes, the episodes, the env seed and
whether the mean reaches the preset's ``solved_score``; and the machine's yardstick
(:func:`rlkit.analysis.yardstick.measure`) on the first model's env.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import zipfile
from pathlib import Path
from typing import Any

import yaml

STREAM = "independent"

RUNTIME_STATE = ("_last_obs", "_last_episode_starts", "_last_original_obs", "ep_info_buffer", "ep_success_buffer")
"""Serialized entries that only matter while training: none is loaded."""


def run_dirs(path: Path) -> list[Path]:
    """``path`` itself when it is a run directory, else its ``seed-*`` run directories (a benchmark folder)."""
    if (path / "config.yaml").is_file():
        return [path]
    found = sorted((p for p in path.glob("seed-*") if (p / "config.yaml").is_file()), key=_seed_order)
    if not found:
        raise SystemExit(f"error: {path} is neither a run directory nor a benchmark folder (no config.yaml)")
    return found


def _seed_order(path: Path) -> tuple[int, str]:
    tail = path.name.split("-")[-1]
    return (int(tail), path.name) if tail.isdigit() else (sys.maxsize, path.name)


def unsupported(preset: dict[str, Any], data: dict[str, Any]) -> str | None:
    """Why plain SB3's DQN cannot play this model on a plain env, or None."""
    if data.get("rlkit_algo", "dqn") != "dqn" or preset.get("algo", "dqn") != "dqn":
        return "a QR-DQN model: plain SB3 has no QR-DQN (sb3-contrib does)"
    for key, what in (("dueling", "a dueling head"), ("noisy", "NoisyNet layers")):
        if preset.get(key):
            return f"{what}: plain SB3's DQN has none"
    if preset.get("distribution", "none") != "none":
        return f"a {preset['distribution']} (distributional) head: plain SB3's DQN has none"
    if preset.get("atari") is not None:
        return "an Atari preset: plain gym.make lacks its Atari wrappers and frame stack"
    if preset.get("wrappers"):
        return f"the preset wraps the env ({preset['wrappers']}): plain gym.make would differ"
    if preset.get("policy", "MlpPolicy") not in ("MlpPolicy", "auto"):
        return f"policy {preset['policy']}: only MlpPolicy is checked here"
    policy_class = data.get("policy_class", {})
    module = policy_class.get("__module__", "") if isinstance(policy_class, dict) else ""
    if not module.startswith("stable_baselines3."):
        return f"its policy class comes from {module or 'an unknown module'}, not from SB3"
    return None


def plain_objects(preset: dict[str, Any], data: dict[str, Any], env: Any) -> dict[str, Any]:
    """Plain SB3 objects for every serialized entry of the zip (SB3 then unpickles none of them)."""
    import torch
    from stable_baselines3.common.buffers import ReplayBuffer
    from stable_baselines3.common.type_aliases import TrainFreq, TrainFrequencyUnit
    from stable_baselines3.dqn.policies import DQNPolicy

    activations = {
        "relu": torch.nn.ReLU,
        "tanh": torch.nn.Tanh,
        "elu": torch.nn.ELU,
        "leaky_relu": torch.nn.LeakyReLU,
        "gelu": torch.nn.GELU,
        "silu": torch.nn.SiLU,
    }
    kwargs = preset.get("policy_kwargs") or {}
    objects: dict[str, Any] = {key: None for key in RUNTIME_STATE}
    objects.update(
        policy_class=DQNPolicy,
        policy_kwargs={
            "net_arch": list(kwargs.get("net_arch") or [64, 64]),
            "activation_fn": activations[kwargs.get("activation_fn", "relu")],
        },
        observation_space=env.observation_space,
        action_space=env.action_space,
        replay_buffer_class=ReplayBuffer,
        replay_buffer_kwargs={},
        buffer_size=1,  # playing needs no replay buffer
        train_freq=TrainFreq(1, TrainFrequencyUnit.STEP),
        learning_rate=0.0,
        lr_schedule=lambda _: 0.0,
        exploration_schedule=lambda _: 0.0,
    )
    left = [k for k, v in data.items() if isinstance(v, dict) and ":serialized:" in v and k not in objects]
    if left:
        raise ValueError(f"serialized entries this check does not replace: {', '.join(left)}")
    return objects


def check(run: Path, episodes: int) -> dict[str, Any]:
    """One run's final model, loaded and played by plain SB3."""
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rlkit.core.seeds import stream_seed

    config = yaml.safe_load((run / "config.yaml").read_text())
    preset, seed = config["preset"], int(config["seed"])
    model_path = run / "model.zip"
    entry: dict[str, Any] = {"run_dir": str(run), "model": "final", "env_id": preset["env_id"], "seed": seed}
    if not model_path.is_file():
        return {**entry, "skipped": "no final model.zip (training has not finished)"}
    with zipfile.ZipFile(model_path) as archive:
        data = json.loads(archive.read("data"))
    reason = unsupported(preset, data)
    if reason is not None:
        return {**entry, "skipped": f"plain SB3 cannot play it: {reason}"}
    env_kwargs = dict(preset.get("env_kwargs") or {})
    venv = DummyVecEnv([lambda: Monitor(gym.make(preset["env_id"], **env_kwargs))])
    env_seed = stream_seed(seed, STREAM)
    try:
        try:
            model = DQN.load(model_path, device="cpu", custom_objects=plain_objects(preset, data, venv))
        except Exception as exc:  # whatever plain SB3 makes of the file: one line, skipped
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return {**entry, "skipped": f"plain SB3 cannot load it: {first}"}
        venv.seed(env_seed)
        returns, _ = evaluate_policy(
            model, venv, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True
        )
    finally:
        venv.close()
    values = [float(r) for r in returns]  # type: ignore[union-attr]
    mean = sum(values) / len(values)
    solved_score = preset.get("solved_score")
    return {
        **entry,
        "loader": "stable_baselines3.DQN.load",
        "env_seed": env_seed,
        "episodes": len(values),
        "mean": mean,
        "std": math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)),
        "min": min(values),
        "solved_score": solved_score,
        "solved": None if solved_score is None else mean >= solved_score,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("path", type=Path, help="a run directory or a benchmark folder (its seed-* runs)")
    parser.add_argument("--episodes", type=int, default=100, help="episodes per model (default 100)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be at least 1 (got {args.episodes})")
    if not args.path.is_dir():
        parser.error(f"{args.path} is not a folder")
    import torch

    torch.set_num_threads(1)  # a tiny MLP plays fastest on one thread; the scores do not depend on it
    models = [check(run, args.episodes) for run in run_dirs(args.path)]
    from rlkit.analysis.yardstick import measure

    played = [m for m in models if "skipped" not in m]
    solved = [m for m in played if m["solved"]]
    doc = {
        "path": str(args.path),
        "episodes": args.episodes,
        "seed_stream": STREAM,
        "models": models,
        "checked": len(played),
        "skipped": len(models) - len(played),
        "solved": f"{len(solved)} of {len(played)}",
        "yardstick": measure(models[0]["env_id"]),
    }
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

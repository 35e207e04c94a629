"""Throughput of rlkit's DQN training loop against plain SB3 DQN, in the same process.

Prints JSON: steps/s per variant (best of ``--rounds`` interleaved rounds, to damp noise from
other processes) and each variant's ratio to plain SB3. ``--mode train`` times only the
gradient steps (``model.train``) on a buffer filled once, where the extensions' cost lives;
``--mode learn`` (default) times whole ``learn()`` calls, environment stepping included.
Every variant starts from plain SB3's algorithm (the preset's DQN extensions off, as in
``throughput.py``) and adds its own switch. Variants: plain SB3 ``DQN``; ``RlkitDQN`` with diagnostics off; at the default interval; at every
gradient step (an upper bound); with prioritized replay; with prioritized replay and 3-step returns.

    PYTHONPATH=. python bench/dqn_extensions.py --env lunarlander --steps 5000 --rounds 3
    PYTHONPATH=. python bench/dqn_extensions.py --mode train --steps 300 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _variants() -> dict[str, list[str]]:
    return {
        "rlkit_diag_off": ["diagnostics_interval=0"],
        "rlkit_diag_default": [],
        "rlkit_diag_every_step": ["diagnostics_interval=1"],
        "rlkit_per": ["prioritized_replay=true"],
        "rlkit_per_nstep3": ["prioritized_replay=true", "n_steps=3"],
    }


def _plain_sb3(preset: Any, env: Any) -> Any:
    from throughput import plain_sb3

    return plain_sb3(preset, env, "MlpPolicy")


def _resolve(env_name: str, sets: list[str]) -> Any:
    """The Zoo's values on plain SB3's algorithm (every extension off), then the variant's switches."""
    from throughput import SAME_ALGORITHM, zoo_overrides

    from rlkit.environments.resolve import resolve

    return resolve(env_name, overrides=[*SAME_ALGORITHM, *zoo_overrides(env_name), *sets]).preset


def _time(name: str, env_name: str, sets: list[str], steps: int) -> float:
    from rlkit.environments.factory import make_env
    from rlkit.training.factory import build_model

    preset = _resolve(env_name, [f"n_timesteps={steps}", "learning_starts=500", *sets])
    env = make_env(preset, n_envs=1, seed=0)
    if name == "sb3_plain":
        model = _plain_sb3(preset, env)
    else:
        model = build_model(preset, env, seed=0, device="cpu", tensorboard_log=None)
    start = time.perf_counter()
    model.learn(steps)
    return steps / (time.perf_counter() - start)


def _train_models(env_name: str) -> dict[str, Any]:
    """Every variant with the same 5000 random transitions in its buffer and no training yet."""
    from rlkit.environments.factory import make_env
    from rlkit.training.factory import build_model

    models: dict[str, Any] = {}
    for name, sets in {"sb3_plain": [], **_variants()}.items():
        preset = _resolve(env_name, ["learning_starts=5000", *sets])
        env = make_env(preset, n_envs=1, seed=0)
        model = (
            _plain_sb3(preset, env)
            if name == "sb3_plain"
            else build_model(preset, env, seed=0, device="cpu", tensorboard_log=None)
        )
        model.learn(5000)  # collection only: learning_starts is not reached
        models[name] = model
    return models


def _time_train(model: Any, steps: int) -> float:
    start = time.perf_counter()
    model.train(gradient_steps=steps, batch_size=model.batch_size)
    return steps / (time.perf_counter() - start)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="lunarlander")
    parser.add_argument("--steps", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=["learn", "train"], default="learn")
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = {"sb3_plain": [], **_variants()}
    best: dict[str, float] = {}
    models = _train_models(args.env) if args.mode == "train" else {}
    for _ in range(args.rounds):
        for name, sets in variants.items():
            if args.mode == "train":
                sps = _time_train(models[name], args.steps)
            else:
                sps = _time(name, args.env, sets, args.steps)
            best[name] = max(best.get(name, 0.0), sps)
    base = best["sb3_plain"]
    print(
        json.dumps(
            {
                "env": args.env,
                "mode": args.mode,
                "unit": "gradient steps/s" if args.mode == "train" else "env steps/s",
                "steps": args.steps,
                "rounds": args.rounds,
                "steps_per_s": {k: round(v, 1) for k, v in best.items()},
                "ratio_to_sb3": {k: round(v / base, 3) for k, v in best.items()},
                "diagnostics_cost": round(1 - best["rlkit_diag_default"] / best["rlkit_diag_off"], 4),
                "per_cost": round(1 - best["rlkit_per"] / best["rlkit_diag_default"], 4),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

"""rlkit against its peers at identical work: plain SB3 and SBX (Stable Baselines in JAX).

Every learner trains DQN on LunarLander-v3 with the RL Zoo's hyperparameters and no extensions
(``throughput.SAME_ALGORITHM``: lr 6.3e-4, batch 128, buffer 50k, learning_starts 0, train_freq 4,
gradient_steps -1, target update 250, net [256, 256]), each on its own env made the same way
(``gym.make`` without rendering, rlkit's ``make_env``), so all do the same number of gradient
steps of the same size. After a warm-up the learners alternate (``--rounds`` rounds of ``--steps``
env steps, the order flipped every round) and the script prints JSON: per-round and median env
steps/s, the ratios rlkit/SBX and rlkit/SB3, and the fraction of the machine's limit for this work
(one gradient step per env step: 1 / (env step time + the gradient step's matrix products alone)).

rlkit and plain SB3 run at rlkit's thread choice (the thread tuner; plain SB3 gets its own
tuner through the same ``ThreadTuning`` callback); SBX runs JAX's CPU defaults. SBX is optional
(``pip install 'rlkit[bench]'``): when it is missing the script says so and compares the rest.

    PYTHONPATH=. python bench/peers.py --steps 3000 --rounds 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import (
    SAME_ALGORITHM,
    Contender,
    _cpu_model,
    _load,
    _net_sizes,
    _preset,
    matmul_floor_ms,
    plain_sb3,
)

LIMIT_NOTE = (
    "1 / (env step + the gradient step's matrix products at the chosen threads), one gradient step per env step"
)


def sbx_model(preset: Any, env: Any) -> Any:
    """SBX's DQN with the same hyperparameters, or ``None`` when sbx is not installed."""
    try:
        from sbx import DQN as SbxDQN
    except ImportError:
        return None
    return SbxDQN(
        "MlpPolicy",
        env,
        learning_rate=preset.learning_rate,
        buffer_size=preset.buffer_size,
        learning_starts=preset.learning_starts,
        batch_size=preset.batch_size,
        gamma=preset.gamma,
        train_freq=preset.train_freq,
        gradient_steps=preset.gradient_steps,
        target_update_interval=preset.target_update_interval,
        exploration_fraction=preset.exploration_fraction,
        exploration_initial_eps=preset.exploration_initial_eps,
        exploration_final_eps=preset.exploration_final_eps,
        policy_kwargs={"net_arch": list(preset.policy_kwargs.net_arch or [64, 64])},
        seed=0,
    )


def env_step_ms(preset: Any, steps: int = 4000) -> float:
    """Random-action env step time of rlkit's env (no learner)."""
    import numpy as np

    from rlkit.environments.factory import make_env

    env = make_env(preset, n_envs=1, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    n = int(env.action_space.n)  # type: ignore[attr-defined]
    start = time.perf_counter()
    for _ in range(steps):
        env.step(rng.integers(0, n, size=1))
    return (time.perf_counter() - start) * 1000 / steps


def build(env_name: str) -> tuple[Any, list[Contender], list[str]]:
    from rlkit.core.threads import ThreadTuner
    from rlkit.environments.factory import make_env, policy_name
    from rlkit.training.factory import build_model, configure_threads, thread_tuner

    preset = _preset(env_name, False, [])
    skipped: list[str] = []
    policy = policy_name(preset, make_env(preset, n_envs=1, seed=0).observation_space)
    threads = configure_threads(preset, policy, "cpu")
    rlkit_model = build_model(preset, make_env(preset, n_envs=1, seed=0), seed=0, device="cpu", tensorboard_log=None)
    tuner = thread_tuner(preset, rlkit_model)
    sb3 = plain_sb3(preset, make_env(preset, n_envs=1, seed=0), policy)
    contenders = [
        Contender("sb3", sb3, threads, None if tuner is None else ThreadTuner(tuner.candidates)),
        Contender("rlkit", rlkit_model, threads, tuner),
    ]
    sbx = sbx_model(preset, make_env(preset, n_envs=1, seed=0))
    if sbx is None:
        skipped.append("sbx: not installed (pip install 'rlkit[bench]' adds sbx-rl and jax)")
    else:
        contenders.append(Contender("sbx", sbx, threads))
    return preset, contenders, skipped


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="lunarlander")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=500)
    args = parser.parse_args(argv)
    load_before = _load()
    preset, contenders, skipped = build(args.env)
    for c in contenders:
        c.learn(args.warmup)
    per_round: dict[str, list[float]] = {c.name: [] for c in contenders}
    for r in range(args.rounds):
        for c in contenders if r % 2 == 0 else contenders[::-1]:
            per_round[c.name].append(round(c.learn(args.steps)[0], 1))
    median = {name: statistics.median(v) for name, v in per_round.items()}
    rlkit = next(c for c in contenders if c.name == "rlkit")
    floor = matmul_floor_ms(_net_sizes(rlkit.model), preset.batch_size, rlkit.threads)
    env_ms = env_step_ms(preset)
    limit = 1000.0 / (env_ms + floor["ms"])
    result: dict[str, Any] = {
        "env": preset.env_id,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
        "load_avg_before": load_before,
        "steps": args.steps,
        "rounds": args.rounds,
        "hyperparameters": "RL Zoo LunarLander DQN, no extensions: " + " ".join(SAME_ALGORITHM),
        "rounds_steps_per_s": per_round,
        "steps_per_s": median,
        "ratio_rlkit_over_sb3": round(median["rlkit"] / median["sb3"], 3),
        "threads": {c.name: c.threads_label if c.name != "sbx" else "JAX's own (XLA CPU)" for c in contenders},
        "limit_steps_per_s": round(limit, 1),
        "limit": LIMIT_NOTE,
        "env_step_ms": round(env_ms, 4),
        "gradient_step_floor_ms": round(floor["ms"], 4),
        "fraction_of_limit": {name: round(v / limit, 3) for name, v in median.items()},
        "skipped": skipped,
        "load_avg_after": _load(),
    }
    if "sbx" in median:
        result["ratio_rlkit_over_sbx"] = round(median["rlkit"] / median["sbx"], 3)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

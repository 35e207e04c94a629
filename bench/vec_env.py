"""``vec_env: dummy`` against ``subproc``: env steps/s of rlkit's training envs with random actions.

Same env, same ``n_envs``, rounds interleaved in one process; prints JSON with steps/s per round,
medians and the ratio subproc/dummy. Env stepping only (no learner): where subproc does not win
here it cannot win in training, whose gradient steps also want the cores.

    PYTHONPATH=. python bench/vec_env.py --env cartpole --env lunarlander --env pong --n-envs 2 --n-envs 4
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import time

import numpy as np


def steps_per_s(env_name: str, kind: str, n_envs: int, steps: int) -> float:
    from rlkit.environments.factory import make_env
    from rlkit.environments.resolve import resolve

    preset = resolve(env_name, overrides=[f"vec_env={kind}", f"n_envs={n_envs}", "buffer_size=1000"]).preset
    env = make_env(preset, n_envs=n_envs, seed=0)
    try:
        env.reset()
        rng = np.random.default_rng(0)
        n_actions = int(env.action_space.n)  # type: ignore[attr-defined]
        rounds = max(1, steps // n_envs)
        start = time.perf_counter()
        for _ in range(rounds):
            env.step(rng.integers(0, n_actions, size=n_envs))
        return rounds * n_envs / (time.perf_counter() - start)
    finally:
        env.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--env", action="append", default=None, help="preset (repeatable; default cartpole, lunarlander)"
    )
    parser.add_argument("--n-envs", action="append", type=int, default=None, help="repeatable; default 2")
    parser.add_argument("--steps", type=int, default=4000, help="env steps per timing (all envs together)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    envs, counts = args.env or ["cartpole", "lunarlander"], args.n_envs or [2]
    results = []
    for env_name in envs:
        for n in counts:
            rounds: dict[str, list[float]] = {"dummy": [], "subproc": []}
            for r in range(args.rounds):
                for kind in ("dummy", "subproc") if r % 2 == 0 else ("subproc", "dummy"):
                    rounds[kind].append(round(steps_per_s(env_name, kind, n, args.steps), 1))
            med = {k: statistics.median(v) for k, v in rounds.items()}
            results.append(
                {"env": env_name, "n_envs": n, "rounds_steps_per_s": rounds, "median_steps_per_s": med,
                 "ratio_subproc_over_dummy": round(med["subproc"] / med["dummy"], 3)}
            )  # fmt: skip
    print(json.dumps({"date": datetime.datetime.now().isoformat(timespec="seconds"), "cpus": os.cpu_count(),
                      "load_avg": os.getloadavg()[0], "machine": platform.processor() or platform.machine(),
                      "results": results}, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()

"""Time to solve, side by side: rlkit's preset, the RL Zoo's values on plain SB3, and SBX, same seeds.

Every learner trains on the same env (rlkit's ``make_env``: ``gym.make`` without rendering) under
the same rule, rlkit's own hooks on one evaluator: every ``--eval-freq`` steps (default: the rlkit
preset's), ``--eval-episodes`` deterministic episodes (the preset's, on its ``eval_envs``); when their mean reaches the solved score, ``--confirm`` more episodes on
separate envs must too; then training stops and the model that solved is the final model. The
time to solve is the training wall-clock up to then (evaluations included, as a user waits for
them), from the first env step; "not solved" means the budget ran out first, and the final
model's mean over ``--confirm`` episodes is reported instead.

Learners (``--learners``, in this order per seed, seeds one after the other, one process):

- ``rlkit``: ``rlkit train <preset>`` as users run it (its preset, its threads, its run directory);
- ``zoo``: plain SB3 ``DQN`` with the RL Zoo's hyperparameters for the env (``ZOO``), torch at
  SB3's default threads;
- ``sbx``: SBX's ``DQN`` (Stable Baselines in JAX) with the same Zoo values; skipped with a note
  when ``sbx-rl`` is not installed (``pip install 'rlkit[bench]'``).

It prints JSON: per learner and seed the steps and seconds to solve (or the final mean), and per
learner the seeds solved and the median time to solve (an unsolved seed counts as never).

    PYTHONPATH=. python bench/solve.py --env lunarlander --seeds 0,1,2,3,4
    PYTHONPATH=. python bench/solve.py --env cartpole --seeds 0,1,2,3,4 --learners rlkit
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from throughput import ZOO  # the RL Zoo's values, pinned for every benchmark


def _solve_hooks(preset: Any, seed: int, eval_freq: int, eval_episodes: int, confirm: int) -> tuple[Any, Any]:
    """rlkit's evaluator with its solved hook: the same rule the rlkit learner trains under."""
    from rlkit.core.seeds import derive_seed
    from rlkit.environments.factory import make_env
    from rlkit.training.callbacks import Clock, Evaluator, StopWhenSolved
    from rlkit.training.loop import EVAL_SEED_OFFSET
    from rlkit.training.train import confirm_env, confirm_seed

    eval_freq = eval_freq or preset.eval_freq
    eval_episodes = eval_episodes or preset.eval_episodes
    solved = StopWhenSolved(
        preset.solved_score,
        True,
        confirm_episodes=confirm,
        confirm_env=confirm_env(preset, seed, confirm),
        confirm_seed=lambda k: confirm_seed(seed, k),
        confidence=preset.solved_confidence,
        rounds=preset.solved_rounds,
    )
    evaluator = Evaluator(
        make_env(
            preset, n_envs=min(preset.eval_envs, eval_episodes), seed=derive_seed(seed, EVAL_SEED_OFFSET), train=False
        ),
        eval_freq=eval_freq,
        n_episodes=eval_episodes,
        clock=Clock(),
        callback_after_eval=[solved],
    )
    return evaluator, solved


def _final_mean(model: Any, preset: Any, seed: int, episodes: int) -> float:
    from stable_baselines3.common.evaluation import evaluate_policy

    from rlkit.training.train import confirm_env

    env = confirm_env(preset, seed, episodes)()  # the envs the confirmation would play
    rewards, _ = evaluate_policy(model, env, n_eval_episodes=episodes, deterministic=True, return_episode_rewards=True)
    env.close()
    return float(sum(rewards) / len(rewards))  # type: ignore[arg-type]


def peer_model(kind: str, values: dict[str, Any], env: Any, seed: int) -> Any:
    """Plain SB3's or SBX's DQN with the Zoo's values; ``None`` for SBX when it is not installed."""
    kwargs = {k: v for k, v in values.items() if k not in ("n_timesteps", "net_arch")}
    policy_kwargs = {"net_arch": list(values["net_arch"])}
    if kind == "sbx":
        try:
            from sbx import DQN as SbxDQN
        except ImportError:
            return None
        return SbxDQN("MlpPolicy", env, policy_kwargs=policy_kwargs, seed=seed, **kwargs)
    from stable_baselines3 import DQN

    return DQN("MlpPolicy", env, policy_kwargs=policy_kwargs, seed=seed, device="cpu", **kwargs)


def run_peer(kind: str, env_name: str, seed: int, args: argparse.Namespace) -> dict[str, Any] | None:
    from rlkit.environments.factory import make_env
    from rlkit.environments.resolve import resolve

    values = ZOO[env_name]
    preset = resolve(env_name, overrides=args.set).preset  # its solved score, as rlkit's learner sees it
    model = peer_model(kind, values, make_env(preset, n_envs=1, seed=seed), seed)
    if model is None:
        return None
    evaluator, solved = _solve_hooks(preset, seed, args.eval_freq, args.eval_episodes, args.confirm)
    start = time.perf_counter()
    model.learn(values["n_timesteps"], callback=evaluator)
    wall = time.perf_counter() - start
    row = _row(solved.solved_at, int(model.num_timesteps), wall)
    if solved.solved_at is None:
        row["final_mean"] = round(_final_mean(model, preset, seed, args.confirm), 1)
    solved.close()
    return row


def run_rlkit(env_name: str, seed: int, args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from rlkit import api

    overrides: dict[str, Any] = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    overrides["solved_episodes"] = args.confirm
    if args.eval_freq:
        overrides["eval_freq"] = args.eval_freq
    if args.eval_episodes:
        overrides.update(eval_episodes=args.eval_episodes, eval_envs=min(args.eval_episodes, 10))
    start = time.perf_counter()
    result = api.train(env_name, seed=seed, overrides=overrides, device="cpu", runs_root=root, quiet=True)
    row = _row(result.solved_at, result.num_timesteps, result.wall_s)
    row["command_s"] = round(time.perf_counter() - start, 1)
    if result.solved_at is None or result.num_timesteps != row["solved_step"]:
        row["final_mean"] = round(_final_rlkit(result.run_dir, env_name, seed, args), 1)
    return row


def _final_rlkit(run_dir: Path, env_name: str, seed: int, args: argparse.Namespace) -> float:
    from rlkit.environments.resolve import resolve
    from rlkit.training.factory import load_model

    preset = resolve(env_name, overrides=args.set).preset
    model = load_model(run_dir / "model.zip", None, "cpu")
    return _final_mean(model, preset, seed, args.confirm)


def _row(at: dict[str, float] | None, steps: int, wall: float) -> dict[str, Any]:
    """Steps and wall-clock of a run, and when it was solved (``at``: its ``solved_at``)."""
    return {
        "steps": steps,
        "wall_s": round(wall, 1),
        "solved_step": None if at is None else int(at["timesteps"]),
        "time_to_solve_s": None if at is None else round(at["wall_s"], 1),
        "confirmed_mean": None if at is None else round(at["mean_reward"], 1),
    }


def _envs(n: int) -> str:
    return "1 env" if n == 1 else f"{n} envs"


def summary(rows: dict[int, dict[str, Any]]) -> dict[str, Any]:
    times = [r["time_to_solve_s"] for r in rows.values()]
    middle = statistics.median([math.inf if t is None else t for t in times]) if times else math.inf
    return {
        "seeds_solved": sum(t is not None for t in times),
        "median_time_to_solve_s": None if math.isinf(middle) else middle,
        "per_seed": rows,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env", default="lunarlander", choices=sorted(ZOO))
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--learners", default="rlkit,zoo,sbx")
    parser.add_argument("--eval-freq", type=int, default=0, help="0: the rlkit preset's eval_freq, for every learner")
    parser.add_argument("--eval-episodes", type=int, default=0, help="0: the preset's eval_episodes (and eval_envs)")
    parser.add_argument("--confirm", type=int, default=100)
    parser.add_argument("--set", action="append", default=[], help="rlkit preset override (tests: tiny budgets)")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    learners = args.learners.split(",")
    from rlkit.config.schema import to_plain
    from rlkit.environments.resolve import resolve

    preset = resolve(args.env, overrides=args.set).preset
    rows: dict[str, dict[int, dict[str, Any]]] = {name: {} for name in learners}
    skipped: list[str] = []
    load = list(os.getloadavg())
    for item in args.set:  # tiny test budgets: an override of a Zoo value reaches the peers too
        key, value = item.split("=", 1)
        if key in ZOO[args.env]:
            ZOO[args.env][key] = json.loads(value)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for name in learners:
                if name == "rlkit":
                    rows[name][seed] = run_rlkit(args.env, seed, args, Path(tmp))
                else:
                    row = run_peer(name, args.env, seed, args)
                    if row is None:
                        skipped.append(f"{name}: not installed (pip install 'rlkit[bench]' adds sbx-rl and jax)")
                        learners.remove(name)
                        rows.pop(name)
                        continue
                    rows[name][seed] = row
                print(json.dumps({"learner": name, "seed": seed, **rows[name][seed]}), file=sys.stderr, flush=True)
    result = {
        "env": args.env,
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "load_avg_before": load,
        "rule": f"eval every {args.eval_freq or preset.eval_freq} steps over {args.eval_episodes or preset.eval_episodes} "
        f"episodes ({_envs(min(preset.eval_envs, args.eval_episodes or preset.eval_episodes))} at once); at the solved "
        f"score, {args.confirm} more episodes must agree; then stop (the final model is the one that solved)",
        "rlkit_preset": to_plain(preset),
        "zoo_values": ZOO[args.env],
        "learners": {name: summary(r) for name, r in rows.items()},
        "skipped": skipped,
        "load_avg_after": list(os.getloadavg()),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

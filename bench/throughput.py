"""Throughput at identical hyperparameters: plain SB3 ``DQN`` against rlkit's training path.

Both learners get the same configuration: the RL Zoo's values for the env (``ZOO``; LunarLander
by default: lr 6.3e-4, batch 128, buffer 50k, learning_starts 0, train_freq 4, gradient_steps -1,
net [256, 256], target update 250) with every DQN extension off (``SAME_ALGORITHM``), so both do
the same number of gradient steps of the same size. Three learners:

- ``sb3_plain``: plain SB3 as users run it: ``make_vec_env(env_id)`` (which renders to rgb_array),
  torch's default thread count, SB3's buffer, train loop and MlpPolicy;
- ``rlkit``: ``rlkit.training.factory.build_model`` on ``rlkit.environments.factory.make_env`` with rlkit's thread
  choice (``torch_threads: 0``: 1 to start, then the count its ``rlkit.core.threads.ThreadTuner``
  measures fastest, re-measured as the run goes);
- ``sb3_same_env_threads``: plain SB3 on rlkit's env with rlkit's thread choice (its own tuner
  around SB3's ``train()``), so that ``ratio_same_env_threads`` is the training loop's own gain.

After a warm-up the learners alternate in the same process (``--rounds`` rounds of ``--steps``
env steps each, the order flipped every round) and the script prints JSON: per-round and median
steps/s, the ratios, the threads, the time spent inside the env, the process CPU time per env
step (all threads: what a step costs a shared machine, apart from waiting), and a micro-benchmark
of one gradient step against the floor of its matrix products alone (the same products on
preallocated tensors).

    PYTHONPATH=. python bench/throughput.py --env lunarlander --steps 3000 --rounds 3
    PYTHONPATH=. python bench/throughput.py --atari --steps 1000 --rounds 2

``--atari`` does the same with CnnPolicy on PongNoFrameskip-v4 (the pong preset with a small
buffer and learning_starts, on SB3's wrapped env and SB3's buffer), adds a third learner
``rlkit_ale``: rlkit on ale-py's vector env (``atari.backend=ale``) with the frame buffer
(``frame_buffer=true``), and reports ``ratio_rlkit_ale`` against plain SB3. ``collection`` times
the same three without gradient steps (the ``learning_starts`` phase: env, buffer and the loop
only), and ``env_stepping`` compares random-action stepping of SB3's wrapped env, rlkit's adapter
(``rlkit.environments.atari_vec.AtariVecEnv``) and the raw ``ale_py.vector_env.AtariVectorEnv`` (same
preprocessing: frame skip 4 max-pooled, 84x84 gray, stack 4, 30 no-ops). ``--steps 0`` skips
the training rounds; ``--set n_envs=4`` runs every learner with 4 envs.

    PYTHONPATH=. python bench/throughput.py --atari --steps 0 --collect-steps 2000 --stepping-envs 1,4
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from rlkit.core.threads import ThreadTuner

DEFAULT_THREADS = torch.get_num_threads()  # what a user's process gets, before anything sets it
SAME = "sb3_same_env_threads"  # plain SB3 DQN on rlkit's env at rlkit's thread count
# The Zoo's Atari values (one env, a gradient step every 4) with a small buffer; --set n_envs=4 etc. apply after.
ATARI_OVERRIDES = ["buffer_size=5000", "learning_starts=200", "optimize_memory_usage=false", "n_envs=1", "train_freq=4"]
# Plain SB3 DQN's algorithm: the preset's DQN extensions are switched off for both learners, so
# both do the same gradient steps of the same size on the same network.
SAME_ALGORITHM = [
    "algo=dqn",
    "double_q=false",
    "dueling=false",
    "n_steps=1",
    "prioritized_replay=false",
    "noisy=false",
    "loss=huber",
]
# The RL Zoo's DQN values (hyperparams/dqn.yml, rl-zoo3 2.x). The shipped presets are tuned to
# solve fast (fewer, smaller gradient steps on several envs), so the identical work of every
# throughput benchmark and of bench/solve.py's "zoo" learner is pinned to these values.
ZOO: dict[str, dict[str, Any]] = {
    "lunarlander": {
        "n_timesteps": 100_000,
        "learning_rate": 6.3e-4,
        "batch_size": 128,
        "buffer_size": 50_000,
        "learning_starts": 0,
        "gamma": 0.99,
        "target_update_interval": 250,
        "train_freq": 4,
        "gradient_steps": -1,
        "exploration_fraction": 0.12,
        "exploration_final_eps": 0.1,
        "net_arch": [256, 256],
    },
    "cartpole": {
        "n_timesteps": 50_000,
        "learning_rate": 2.3e-3,
        "batch_size": 64,
        "buffer_size": 100_000,
        "learning_starts": 1000,
        "gamma": 0.99,
        "target_update_interval": 10,
        "train_freq": 256,
        "gradient_steps": 128,
        "exploration_fraction": 0.16,
        "exploration_final_eps": 0.04,
        "net_arch": [256, 256],
    },
}


def zoo_overrides(env_name: str) -> list[str]:
    """The Zoo's values for ``env_name`` as ``--set`` pairs (one env, one evaluation env); none for other envs."""
    values = ZOO.get(env_name)
    if values is None:
        return []
    sets = [f"{k}={v!r}" for k, v in values.items() if k != "net_arch"]
    return [*sets, f"policy_kwargs.net_arch={values['net_arch']}", "n_envs=1", "eval_envs=1"]


# The rlkit_ale learner: ale-py's vector env and the frame buffer (set after ATARI_OVERRIDES).
ALE_OVERRIDES = ["atari.backend=ale", "frame_buffer=true"]
SB3_ENV_OVERRIDES = ["atari.backend=sb3", "frame_buffer=false"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _cpu_s() -> float:
    """CPU seconds of this process, every thread (torch's, ALE's workers) included."""
    times = os.times()
    return times.user + times.system


def _preset(env_name: str, atari: bool, extra: list[str], ale: bool = False) -> Any:
    """The preset as benchmarked: Atari runs use SB3's env and buffer unless ``ale`` asks for rlkit's."""
    from rlkit.environments.resolve import resolve

    atari_sets = [*ATARI_OVERRIDES, *(ALE_OVERRIDES if ale else SB3_ENV_OVERRIDES)] if atari else []
    return resolve(env_name, overrides=[*SAME_ALGORITHM, *zoo_overrides(env_name), *atari_sets, *extra]).preset


def sb3_env(preset: Any, atari: bool) -> Any:
    """The env as plain SB3 users build it: ``make_vec_env(env_id)``, which renders to rgb_array.

    (For Atari, rlkit's env is SB3's own Atari wrappers already.)
    """
    from rlkit.environments.factory import make_env

    if atari:
        return make_env(preset, n_envs=preset.n_envs, seed=0)
    from stable_baselines3.common.env_util import make_vec_env

    return make_vec_env(preset.env_id, n_envs=preset.n_envs, seed=0, env_kwargs=dict(preset.env_kwargs))


def plain_sb3(preset: Any, env: Any, policy: str) -> Any:
    """SB3's own DQN with the preset's hyperparameters and nothing else."""
    from stable_baselines3 import DQN

    from rlkit.environments.factory import policy_kwargs

    return DQN(
        policy,
        env,
        learning_rate=preset.learning_rate,
        buffer_size=preset.buffer_size,
        learning_starts=preset.learning_starts,
        batch_size=preset.batch_size,
        tau=preset.tau,
        gamma=preset.gamma,
        train_freq=preset.train_freq,
        gradient_steps=preset.gradient_steps,
        optimize_memory_usage=preset.optimize_memory_usage,
        replay_buffer_kwargs={"handle_timeout_termination": not preset.optimize_memory_usage},
        target_update_interval=preset.target_update_interval,
        exploration_fraction=preset.exploration_fraction,
        exploration_initial_eps=preset.exploration_initial_eps,
        exploration_final_eps=preset.exploration_final_eps,
        max_grad_norm=preset.max_grad_norm,
        policy_kwargs=policy_kwargs(preset, policy),
        seed=0,
        device="cpu",
    )


class Contender:
    """One learner with its own env, its threads (a count, or a thread tuner) and a clock on its env stepping.

    With a ``tuner`` the thread count follows it, as in an rlkit run with ``torch_threads: 0``:
    every learner, plain SB3 too, runs it through rlkit's ``ThreadTuning`` callback.
    """

    def __init__(self, name: str, model: Any, threads: int, tuner: ThreadTuner | None = None) -> None:
        self.name = name
        self.model = model
        self.tuner = tuner
        self.fixed_threads = threads
        self.env_s = 0.0
        self.cpu_ms: list[float] = []  # process CPU ms per env step (all threads) of each learn()
        venv = model.get_env()
        step_wait = venv.step_wait

        def timed_step_wait() -> Any:
            start = time.perf_counter()
            try:
                return step_wait()
            finally:
                self.env_s += time.perf_counter() - start

        venv.step_wait = timed_step_wait

    @property
    def threads(self) -> int:
        """The fixed count, or the count the tuner chose last (its first candidate before it chose)."""
        if self.tuner is None:
            return self.fixed_threads
        return self.tuner.winner or self.tuner.candidates[0]

    @property
    def threads_label(self) -> int | str:
        from rlkit.training.factory import threads_label

        return threads_label(self.fixed_threads, self.tuner)

    def learn(self, steps: int) -> tuple[float, float]:
        """Env steps/s of ``learn(steps)`` and the env's share of the time; CPU time in ``cpu_ms``."""
        from rlkit.training.callbacks import ThreadTuning

        torch.set_num_threads(self.threads)
        # The tuner restarts at each learn(): the other learners' rounds in between are no cycle of this one.
        callback = ThreadTuning(self.tuner) if self.tuner is not None else None
        env_before = self.env_s
        cpu_before = _cpu_s()
        start = time.perf_counter()
        self.model.learn(steps, reset_num_timesteps=False, callback=callback)
        wall = time.perf_counter() - start
        self.cpu_ms.append(round((_cpu_s() - cpu_before) * 1000 / steps, 3))
        return steps / wall, (self.env_s - env_before) / wall

    def gradient_step_ms(self, phases: int) -> float:
        """Mean time of one gradient step at ``threads``, over ``phases`` training phases as learn() runs them."""
        torch.set_num_threads(self.threads)
        model = self.model
        per_phase = model.train_freq.frequency * model.n_envs if model.gradient_steps < 0 else model.gradient_steps
        start = time.perf_counter()  # a fixed count: the tuner only runs inside learn()
        for _ in range(phases):
            model.train(gradient_steps=per_phase, batch_size=model.batch_size)
        return (time.perf_counter() - start) * 1000 / (phases * per_phase)


def build_contenders(
    env_name: str, atari: bool, extra: list[str], same_threads: bool = True, collect_only: bool = False
) -> list[Contender]:
    """Plain SB3, rlkit, and (Atari) rlkit on ale-py's vector env with the frame buffer.

    ``collect_only`` sets ``learning_starts`` beyond any run: no gradient step is taken.
    """
    from rlkit.environments.factory import make_env, policy_name
    from rlkit.training.factory import build_model, configure_threads, thread_tuner

    extra = [*extra, *(["learning_starts=1000000000"] if collect_only else [])]
    preset = _preset(env_name, atari, extra)
    env_sb3 = sb3_env(preset, atari)
    env_rlkit = make_env(preset, n_envs=preset.n_envs, seed=0)
    policy = policy_name(preset, env_sb3.observation_space)
    rlkit_threads = configure_threads(preset, policy, "cpu")
    rlkit_model = build_model(preset, env_rlkit, seed=0, device="cpu", tensorboard_log=None)
    tuner = thread_tuner(preset, rlkit_model)
    contenders = [Contender("rlkit", rlkit_model, rlkit_threads, tuner)]
    if atari:
        ale = _preset(env_name, atari, extra, ale=True)
        ale_model = build_model(
            ale, make_env(ale, n_envs=ale.n_envs, seed=0), seed=0, device="cpu", tensorboard_log=None
        )
        contenders.append(Contender("rlkit_ale", ale_model, rlkit_threads, thread_tuner(ale, ale_model)))
    torch.set_num_threads(DEFAULT_THREADS)
    contenders.insert(0, Contender("sb3_plain", plain_sb3(preset, env_sb3, policy), DEFAULT_THREADS))
    if same_threads:
        # Plain SB3 on rlkit's env with rlkit's thread choice: what remains is the training loop.
        env_same = make_env(preset, n_envs=preset.n_envs, seed=0)
        same_tuner = None if tuner is None else ThreadTuner(tuner.candidates)
        contenders.append(Contender(SAME, plain_sb3(preset, env_same, policy), rlkit_threads, same_tuner))
    return contenders


def _median_time(fn: Callable[[], None], iters: int, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append((time.perf_counter() - start) / iters)
    return statistics.median(times)


def matmul_floor_ms(sizes: list[int], batch: int, threads: int, iters: int = 300, reps: int = 5) -> dict[str, float]:
    """The matrix products of one DQN gradient step alone, on preallocated tensors.

    Per step: the target network's forward on the next states, the online forward, and the
    backward products (a weight gradient per layer, an input gradient for every layer but the
    first). Bias adds, activations, the loss and the optimizer are not counted.
    """
    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    layers = list(itertools.pairwise(sizes))
    weights = [torch.randn(o, i, generator=gen) * 0.05 for i, o in layers]
    acts = [torch.randn(batch, n, generator=gen) for n in sizes]
    outs = [torch.empty(batch, n) for n in sizes]
    grads = [torch.randn(batch, n, generator=gen) for n in sizes]
    wgrads = [torch.empty_like(w) for w in weights]
    dins = [torch.empty(batch, n) for n in sizes]

    def step() -> None:
        for _ in range(2):  # target forward, online forward
            for k, w in enumerate(weights):
                torch.mm(acts[k], w.t(), out=outs[k + 1])
        for k in reversed(range(len(weights))):
            torch.mm(grads[k + 1].t(), acts[k], out=wgrads[k])
            if k > 0:
                torch.mm(grads[k + 1], weights[k], out=dins[k])

    flops = 2 * batch * sum(i * o for i, o in layers) * 3  # two forwards and the weight gradients
    flops += 2 * batch * sum(i * o for i, o in layers[1:])  # input gradients (none for the first layer)
    for _ in range(20):
        step()
    seconds = _median_time(step, iters, reps)
    return {"ms": seconds * 1000, "gflop_per_s": flops / seconds / 1e9, "mflop": flops / 1e6}


def _net_sizes(model: Any) -> list[int]:
    linear = [m for m in model.q_net.q_net.modules() if isinstance(m, torch.nn.Linear)]
    return [linear[0].in_features, *[m.out_features for m in linear]]


def run_rounds(contenders: list[Contender], steps: int, rounds: int, warmup: int) -> dict[str, Any]:
    """Median and per-round env steps/s; rounds alternate the order of the learners."""
    for c in contenders:
        if warmup > 0:
            c.learn(warmup)
        c.cpu_ms.clear()
    per_round: dict[str, list[float]] = {c.name: [] for c in contenders}
    env_share: dict[str, list[float]] = {c.name: [] for c in contenders}
    loads = []
    for r in range(rounds):
        loads.append(_load()[0])
        for c in contenders if r % 2 == 0 else contenders[::-1]:
            sps, share = c.learn(steps)
            per_round[c.name].append(round(sps, 1))
            env_share[c.name].append(round(share, 3))
    base, ours = per_round["sb3_plain"], per_round["rlkit"]
    result = {
        "steps_per_s": {name: round(statistics.median(v), 1) for name, v in per_round.items()},
        "rounds_steps_per_s": per_round,
        "ratio": round(statistics.median(ours) / statistics.median(base), 3),
        "rounds_ratio": [round(o / b, 3) for o, b in zip(ours, base, strict=True)],
        "env_time_share": {name: round(statistics.median(v), 3) for name, v in env_share.items()},
        # Wall time per env step outside the env (action choice, storage, training): the learner's
        # own cost, free of how expensive each learner's current policy makes the physics.
        "learner_ms_per_step": {
            name: round(statistics.median((1 - sh) * 1000 / sp for sp, sh in zip(v, env_share[name], strict=True)), 3)
            for name, v in per_round.items()
        },
        # Process CPU time per env step, every thread included: on a shared machine, what a step
        # costs the cores, apart from the waiting that the wall-clock figures include.
        "cpu_ms_per_step": {c.name: round(statistics.median(c.cpu_ms), 3) for c in contenders},
        "load_1min_per_round": loads,
    }
    if "rlkit_ale" in per_round:
        ale = per_round["rlkit_ale"]
        result["ratio_rlkit_ale"] = round(statistics.median(ale) / statistics.median(base), 3)
        result["rounds_ratio_rlkit_ale"] = [round(a / b, 3) for a, b in zip(ale, base, strict=True)]
    if SAME in per_round:
        same = per_round[SAME]
        result["ratio_same_env_threads"] = round(statistics.median(ours) / statistics.median(same), 3)
        result["rounds_ratio_same_env_threads"] = [round(o / b, 3) for o, b in zip(ours, same, strict=True)]
    return result


def gradient_steps(contenders: list[Contender], phases: int, reps: int) -> dict[str, Any]:
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    for r in range(reps):
        for c in contenders if r % 2 == 0 else contenders[::-1]:
            times[c.name].append(c.gradient_step_ms(phases))
    return {name: round(statistics.median(v), 3) for name, v in times.items()}


def _random_steps_per_s(venv: Any, steps: int, n_envs: int) -> float:
    import numpy as np

    venv.reset()
    rng = np.random.default_rng(0)
    n_actions = venv.action_space.n
    start = time.perf_counter()
    for _ in range(steps // n_envs):
        venv.step(rng.integers(n_actions, size=n_envs))
    rate = (steps // n_envs) * n_envs / (time.perf_counter() - start)
    venv.close()
    return rate


def atari_env_stepping(env_name: str, steps: int, n_envs: int) -> dict[str, Any]:
    """Random-action steps/s: SB3's wrapped env (rlkit's make_env), rlkit's adapter, raw AtariVectorEnv."""
    import numpy as np

    from rlkit.environments.factory import make_env

    preset = _preset(env_name, True, [])
    atari = preset.atari
    sb3 = _random_steps_per_s(make_env(preset, n_envs=n_envs, seed=0), steps, n_envs)
    adapter = _random_steps_per_s(make_env(_preset(env_name, True, [], ale=True), n_envs=n_envs, seed=0), steps, n_envs)
    rng = np.random.default_rng(0)
    n_actions = make_env(preset, n_envs=1, seed=0).action_space.n  # type: ignore[attr-defined]
    from ale_py.vector_env import AtariVectorEnv

    game = preset.env_id.split("NoFrameskip")[0].split("-")[0].lower()
    vec = AtariVectorEnv(
        game=game,
        num_envs=n_envs,
        frameskip=atari.frame_skip,
        img_height=atari.screen_size,
        img_width=atari.screen_size,
        stack_num=atari.frame_stack,
        noop_max=atari.noop_max,
        episodic_life=atari.terminal_on_life_loss,
        reward_clipping=atari.clip_reward,
        repeat_action_probability=0.0,
    )
    vec.reset(seed=0)
    start = time.perf_counter()
    for _ in range(steps // n_envs):
        vec.step(rng.integers(n_actions, size=n_envs))
    ale = (steps // n_envs) * n_envs / (time.perf_counter() - start)
    vec.close()
    return {
        "n_envs": n_envs,
        "steps": steps,
        "sb3_wrapped_env_steps_per_s": round(sb3, 1),
        "rlkit_adapter_steps_per_s": round(adapter, 1),
        "ale_vector_env_steps_per_s": round(ale, 1),
        "ratio": round(ale / sb3, 3),
        "ratio_adapter": round(adapter / sb3, 3),
    }


def _learner(model: Any) -> dict[str, Any]:
    """What a learner runs on: its VecEnv (innermost), replay buffer and number of envs."""
    return {
        "env": type(model.get_env().unwrapped).__name__,
        "replay_buffer": type(model.replay_buffer).__name__,
        "n_envs": model.n_envs,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--env", default=None, help="preset name (default lunarlander; pong with --atari)")
    parser.add_argument(
        "--steps", type=int, default=None, help="env steps per round per learner (--atari: 0 skips training)"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=None, help="env steps each learner runs before timing")
    parser.add_argument("--phases", type=int, default=None, help="training phases per gradient-step timing")
    parser.add_argument("--atari", action="store_true", help="CnnPolicy on Pong, plus env stepping")
    parser.add_argument("--env-steps", type=int, default=4000, help="--atari: random-action steps per env timing")
    parser.add_argument(
        "--collect-steps", type=int, default=None, help="--atari: env steps per learner without training (0 skips)"
    )
    parser.add_argument(
        "--stepping-envs", default="4", help="--atari: comma-separated env counts for the env stepping timing"
    )
    parser.add_argument(
        "--no-same-threads",
        action="store_true",
        help="skip the third learner (plain SB3 on rlkit's env at rlkit's thread count)",
    )
    parser.add_argument("--set", action="append", default=[], dest="sets", help="extra preset override key=value")
    args = parser.parse_args(argv)
    env_name = args.env or ("pong" if args.atari else "lunarlander")
    steps = args.steps if args.steps is not None and (args.steps > 0 or args.atari) else (1000 if args.atari else 3000)
    warmup = args.warmup if args.warmup is not None else (300 if args.atari else 500)
    phases = args.phases or (20 if args.atari else 100)
    load_before = _load()
    train = steps > 0
    contenders = (
        build_contenders(env_name, args.atari, args.sets, same_threads=not args.no_same_threads) if train else []
    )
    preset = _preset(env_name, args.atari, args.sets)
    result: dict[str, Any] = {
        "env": preset.env_id,
        "mode": "atari" if args.atari else "mlp",
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": {"cpu": _cpu_model(), "cores": os.cpu_count(), "torch": torch.__version__},
        "load_avg_before": load_before,
        "steps": steps,
        "rounds": args.rounds,
        "warmup": warmup,
        "hyperparameters": {
            "learning_rate": preset.learning_rate,
            "batch_size": preset.batch_size,
            "buffer_size": preset.buffer_size,
            "learning_starts": preset.learning_starts,
            "gamma": preset.gamma,
            "target_update_interval": preset.target_update_interval,
            "train_freq": preset.train_freq,
            "gradient_steps": preset.gradient_steps,
            "net_arch": preset.policy_kwargs.net_arch,
            "double_q": preset.double_q,
            "dueling": preset.dueling,
            "n_steps": preset.n_steps,
        },
        "learners": {c.name: _learner(c.model) for c in contenders},
    }
    if train:
        result.update(run_rounds(contenders, steps, args.rounds, warmup))
        result["gradient_step_ms"] = gradient_steps(contenders, phases, reps=3)
    result["torch_threads"] = {c.name: c.threads_label for c in contenders}
    tuned = {c.name: c.tuner.summary() for c in contenders if c.tuner is not None}
    if tuned:  # what each thread tuner chose, and the figures it chose by
        result["thread_tuners"] = tuned
    if not args.atari:
        step_ms = result["gradient_step_ms"]
        rlkit = contenders[1]
        same = step_ms.get(SAME)
        floor = matmul_floor_ms(_net_sizes(rlkit.model), preset.batch_size, rlkit.threads)
        result["matmul_floor"] = {
            "ms": round(floor["ms"], 4),
            "gflop_per_s": round(floor["gflop_per_s"], 1),
            "mflop_per_step": round(floor["mflop"], 2),
            "threads": rlkit.threads,
            "rlkit_step_over_floor": round(step_ms["rlkit"] / floor["ms"], 2),
            "sb3_step_over_floor": round(step_ms["sb3_plain"] / floor["ms"], 2),
            "rlkit_fraction_above_floor": round(1 - floor["ms"] / step_ms["rlkit"], 3),
        }
        if same is not None:
            result["matmul_floor"]["sb3_same_env_threads_step_over_floor"] = round(same / floor["ms"], 2)
        if rlkit.threads != DEFAULT_THREADS:  # the same products at plain SB3's thread count
            other = matmul_floor_ms(_net_sizes(rlkit.model), preset.batch_size, DEFAULT_THREADS)
            result["matmul_floor"]["at_default_threads"] = {
                "threads": DEFAULT_THREADS,
                "ms": round(other["ms"], 4),
                "gflop_per_s": round(other["gflop_per_s"], 1),
                "rlkit_step_over_floor": round(step_ms["rlkit"] / other["ms"], 2),
            }
    else:
        collect = args.collect_steps if args.collect_steps is not None else (2 * steps or 2000)
        if collect > 0:
            collectors = build_contenders(env_name, True, args.sets, same_threads=False, collect_only=True)
            result["collection"] = {
                "steps": collect,
                "learners": {c.name: _learner(c.model) for c in collectors},
                **run_rounds(collectors, collect, args.rounds, warmup),
            }
        stepping = [
            atari_env_stepping(env_name, steps=args.env_steps, n_envs=int(n)) for n in args.stepping_envs.split(",")
        ]
        result["env_stepping"] = stepping[0] if len(stepping) == 1 else stepping
    result["load_avg_after"] = _load()
    return result


if __name__ == "__main__":
    print(json.dumps(main(), indent=2))

"""Each speed lever of rlkit's gradient step, measured alone and combined, in one process.

Every variant is a LunarLander model with the same ``--collect`` (3000) collected transitions; each round times
``--phases`` training phases of 4 gradient steps (as ``learn()`` runs them with train_freq 4),
alternating the variants' order. Prints JSON: median ms per gradient step, per-round figures.
All variants run at 1 torch thread so that the thread lever (see ``throughput.py``) stays apart.

    PYTHONPATH=. python bench/levers.py --rounds 7 --phases 100
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

# name: (optimizer, batched phase, lean optimizer step, autograd-free MLP backward, algorithm).
# Algorithm "sb3" is plain SB3's (the preset's DQN extensions off, as in throughput.py);
# "preset" adds Double DQN, a dueling head and 3-step returns to the same Zoo values (the shipped
# lunarlander preset before it was tuned for time to solve): the written-out path's extensions.
VARIANTS: dict[str, tuple[str, bool, bool, bool, str]] = {
    "sb3_plain": ("sb3", False, False, False, "sb3"),
    "rlkit_adam_single_tensor": ("single", False, False, False, "sb3"),
    "rlkit_adam_foreach": ("foreach", False, False, False, "sb3"),
    "rlkit_adam_fused": ("fused", False, False, False, "sb3"),
    "rlkit_batched_phase": ("single", True, False, False, "sb3"),
    "rlkit_fused_batched": ("fused", True, False, False, "sb3"),
    "rlkit_fused_batched_lean_step": ("fused", True, True, False, "sb3"),
    "rlkit_fused_batched_lean_manual_backward": ("fused", True, True, True, "sb3"),
    "preset_autograd": ("fused", True, True, False, "preset"),
    "preset_manual_backward": ("fused", True, True, True, "preset"),
}


def _model(optimizer: str, algorithm: str, collect: int, options: Any = None) -> Any:
    from throughput import SAME_ALGORITHM, plain_sb3, zoo_overrides

    from rlkit.environments.factory import make_env
    from rlkit.environments.resolve import resolve
    from rlkit.training.factory import build_model

    switches = ["double_q=true", "dueling=true", "n_steps=3"] if algorithm == "preset" else []
    overrides = [*SAME_ALGORITHM, *zoo_overrides("lunarlander"), *switches, f"learning_starts={collect}"]
    preset = resolve("lunarlander", overrides=overrides).preset
    env = make_env(preset, n_envs=1, seed=0)
    if optimizer == "sb3":
        model = plain_sb3(preset, env, "MlpPolicy")
    else:
        model = build_model(preset, env, seed=0, device="cpu", tensorboard_log=None)
        if optimizer != "fused":
            kwargs = {"foreach": optimizer == "foreach"}
            model.policy.optimizer = torch.optim.Adam(model.engine.params, lr=preset.learning_rate, **kwargs)
        model.use_engine(options)  # the levers of this variant (and the optimizer just set)
    model.learn(collect)  # collection only: learning_starts is not reached
    return model


def main() -> None:
    from rlkit.dqn.engine import EngineOptions

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--phases", type=int, default=100)
    parser.add_argument("--collect", type=int, default=3000, help="transitions collected before timing")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    models = {
        name: _model(opt, algo, args.collect, EngineOptions(batched, lean, manual))
        for name, (opt, batched, lean, manual, algo) in VARIANTS.items()
    }
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    names = list(VARIANTS)
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            for _ in range(args.phases):
                models[name].train(gradient_steps=4, batch_size=128)
            times[name].append(round((time.perf_counter() - start) * 1000 / (4 * args.phases), 3))
    base = statistics.median(times["sb3_plain"])
    print(
        json.dumps(
            {
                "unit": "ms per gradient step (batch 128, 8-256-256-4, 1 thread)",
                "load_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
                "median_ms": {k: statistics.median(v) for k, v in times.items()},
                "speedup_vs_sb3_plain": {k: round(base / statistics.median(v), 3) for k, v in times.items()},
                "rounds_ms": times,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

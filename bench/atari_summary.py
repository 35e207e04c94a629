"""What an Atari run reached: env steps/s and the real game score of its training episodes, as JSON.

Reads a run directory (``state.json`` and the Monitor CSVs of its training envs, which record
every whole game's unclipped score even when training episodes end at a life loss) and prints:
steps, wall-clock, env steps/s, the number of games, the mean score of the first and the last
``--window`` games and the best such window. ``bench/gpu_pong.sh`` prints it after its run.

    python bench/atari_summary.py runs/gpu-pong/run
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


def summary(run_dir: Path, window: int = 20) -> dict[str, Any]:
    from rlkit.analysis.plots import read_monitor_csv

    state = json.loads((run_dir / "state.json").read_text())
    parts = [read_monitor_csv(p) for p in sorted((run_dir / "monitor").glob("*.monitor.csv"))]
    returns = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0)
    times = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)
    returns = returns[np.argsort(times, kind="stable")]
    steps, wall = int(state.get("num_timesteps", 0)), float(state.get("wall_s", 0.0))
    doc: dict[str, Any] = {
        "run_dir": str(run_dir),
        "status": state.get("status"),
        "steps": steps,
        "wall_s": round(wall, 1),
        "steps_per_s": round(steps / wall, 1) if wall > 0 else None,
        "games": len(returns),
        "window": window,
    }
    if len(returns) >= window:
        means = np.convolve(returns, np.ones(window) / window, mode="valid")
        doc.update(
            first_games_mean=round(float(means[0]), 2),
            last_games_mean=round(float(means[-1]), 2),
            best_games_mean=round(float(means.max()), 2),
        )
    return doc


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--window", type=int, default=20)
    args = parser.parse_args(argv)
    if not (args.run_dir / "state.json").is_file():
        print(f"error: {args.run_dir} is not an rlkit run directory (no state.json)", file=sys.stderr)
        raise SystemExit(2)
    doc = summary(args.run_dir, args.window)
    print(json.dumps(doc, indent=2))
    return doc


if __name__ == "__main__":
    main()

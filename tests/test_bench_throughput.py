"""bench/throughput.py on a tiny budget: it runs, prints the JSON it promises, figures are positive."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, script: str = "throughput.py") -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def test_lunarlander_throughput_tiny() -> None:
    doc = _run("--steps", "200", "--rounds", "1", "--warmup", "50", "--phases", "2")
    assert doc["env"] == "LunarLander-v3" and doc["rounds"] == 1
    assert doc["hyperparameters"]["batch_size"] == 128 and doc["hyperparameters"]["net_arch"] == [256, 256]
    hyper = doc["hyperparameters"]
    assert (hyper["double_q"], hyper["dueling"], hyper["n_steps"]) == (False, False, 1)  # plain SB3's algorithm
    assert doc["torch_threads"]["sb3_plain"] >= 1
    if (os.cpu_count() or 1) >= 2:  # rlkit's thread tuner, and the same choice for plain SB3 on rlkit's env
        assert doc["torch_threads"]["rlkit"] == doc["torch_threads"]["sb3_same_env_threads"] == "auto 1/2"
        for name in ("rlkit", "sb3_same_env_threads"):
            tuner = doc["thread_tuners"][name]
            assert tuner["candidates"] == [1, 2] and abs(sum(tuner["cycle_shares"].values()) - 1) < 1e-3
    else:
        assert doc["torch_threads"]["rlkit"] == 1
    assert doc["steps_per_s"]["sb3_same_env_threads"] > 0 and doc["ratio_same_env_threads"] > 0
    for name in ("sb3_plain", "rlkit"):
        assert doc["steps_per_s"][name] > 0 and len(doc["rounds_steps_per_s"][name]) == 1
        assert doc["gradient_step_ms"][name] > 0
    assert doc["ratio"] > 0 and len(doc["rounds_ratio"]) == 1
    floor = doc["matmul_floor"]
    assert floor["ms"] > 0 and floor["gflop_per_s"] > 0 and floor["rlkit_step_over_floor"] > 0
    assert floor["mflop_per_step"] > 60  # two forwards and the backward of the 8-256-256-4 net at batch 128


def test_atari_throughput_tiny() -> None:
    doc = _run(
        "--atari", "--steps", "100", "--rounds", "1", "--warmup", "0", "--phases", "1", "--env-steps", "80",
        "--collect-steps", "100",
    )  # fmt: skip
    assert doc["env"] == "PongNoFrameskip-v4" and doc["mode"] == "atari"
    for name in ("sb3_plain", "rlkit", "rlkit_ale"):
        assert doc["steps_per_s"][name] > 0 and doc["gradient_step_ms"][name] > 0
        assert doc["collection"]["steps_per_s"][name] > 0 and doc["collection"]["cpu_ms_per_step"][name] > 0
    assert doc["ratio_rlkit_ale"] > 0 and doc["collection"]["ratio_rlkit_ale"] > 0
    assert doc["learners"]["rlkit_ale"] == {"env": "AtariVecEnv", "replay_buffer": "FrameReplayBuffer", "n_envs": 1}
    # Both on rlkit's SB3-path Atari env (rlkit.environments.vec.DummyEnvs: DummyVecEnv's steps, no deep copy).
    assert doc["learners"]["sb3_plain"]["env"] == doc["learners"]["rlkit"]["env"] == "DummyEnvs"
    stepping = doc["env_stepping"]
    assert stepping["sb3_wrapped_env_steps_per_s"] > 0 and stepping["ale_vector_env_steps_per_s"] > 0
    assert stepping["rlkit_adapter_steps_per_s"] > 0


def test_atari_collection_only_tiny() -> None:
    """``--steps 0``: no training rounds; collection with 2 envs and env stepping at 1 and 2 envs."""
    doc = _run(
        "--atari", "--steps", "0", "--rounds", "1", "--warmup", "0", "--collect-steps", "64", "--env-steps", "40",
        "--stepping-envs", "1,2", "--set", "n_envs=2",
    )  # fmt: skip
    assert "steps_per_s" not in doc and doc["collection"]["steps"] == 64
    assert doc["collection"]["learners"]["rlkit_ale"]["n_envs"] == 2
    assert all(v > 0 for v in doc["collection"]["steps_per_s"].values())
    assert [s["n_envs"] for s in doc["env_stepping"]] == [1, 2]


def test_levers_tiny() -> None:
    doc = _run("--rounds", "1", "--phases", "2", "--collect", "300", script="levers.py")
    assert set(doc["median_ms"]) >= {"sb3_plain", "rlkit_fused_batched_lean_manual_backward", "preset_manual_backward"}
    assert all(ms > 0 for ms in doc["median_ms"].values())
    assert doc["speedup_vs_sb3_plain"]["sb3_plain"] == 1.0


def test_dqn_extensions_tiny() -> None:
    doc = _run("--env", "cartpole", "--steps", "200", "--rounds", "1", script="dqn_extensions.py")
    assert doc["ratio_to_sb3"]["sb3_plain"] == 1.0
    assert set(doc["ratio_to_sb3"]) >= {"rlkit_diag_off", "rlkit_per", "rlkit_per_nstep3"}
    assert all(r > 0 for r in doc["ratio_to_sb3"].values())


def test_peers_tiny() -> None:
    """bench/peers.py: rlkit, plain SB3 and (when installed) SBX at identical work, with the limit."""
    import importlib.util

    doc = _run("--steps", "100", "--rounds", "1", "--warmup", "20", script="peers.py")
    assert doc["env"] == "LunarLander-v3" and set(doc["rounds_steps_per_s"]) >= {"rlkit", "sb3"}
    assert all(v > 0 for v in doc["steps_per_s"].values()) and doc["limit_steps_per_s"] > 0
    assert doc["ratio_rlkit_over_sb3"] == round(doc["steps_per_s"]["rlkit"] / doc["steps_per_s"]["sb3"], 3)
    if importlib.util.find_spec("sbx") is not None:
        assert "sbx" in doc["steps_per_s"] and doc["ratio_rlkit_over_sbx"] > 0
    else:
        assert doc["skipped"] and "pip install 'rlkit[bench]'" in doc["skipped"][0]

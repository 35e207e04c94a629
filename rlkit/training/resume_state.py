"""What a checkpoint needs beyond the model and the replay buffer to continue bit-identically: ``resume.json``.

SB3's model file holds the weights, the optimizer, the step and episode counters and the
exploration rate; rlkit's buffer file the replay buffer. What neither holds, and a resume used to
start afresh: the training envs' states (each env's episode log, :mod:`rlkit.environments.replayable`),
the random streams (numpy's global one, which draws epsilon-greedy's coin and the minibatches;
Python's; torch's, which NoisyNet's noise draws; the action space's, which draws random actions)
and the evaluation env's random states (where the next evaluation's episodes start).

A checkpoint is taken inside SB3's step callback, after the envs stepped and before the step is
stored: the state it describes is the one *before* that step, with the step's actions pending
(the random draws that chose them are spent). A resume replays each env's episode up to there,
checks the replayed observation against the saved one, restores the streams and plays the
pending actions first; its first rollout takes the steps the interrupted one had left, so gradient
steps and target updates fall where they fell (:meth:`rlkit.dqn.algorithms.RlkitAlgorithm.resume_with`).

Not exact, and said so (``state.json``'s ``inexact_resumes`` and the reason): envs behind
``VecFrameStack``/``VecNormalize`` or ale-py's vector env, dict observations, envs whose randomness
is not in their ``np_random`` (the replayed observation differs), and checkpoints from before this file.
Everything is plain JSON: opening a checkpoint runs no code from it.
"""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecTransposeImage

FORMAT = 1


@dataclass
class Pending:
    """The step SB3's callback is inside: its actions, the step counter before it, its place in the rollout."""

    actions: np.ndarray
    buffer_actions: np.ndarray
    steps_before: int
    rollout_steps_before: int


def pending_from(locals_: dict[str, Any], num_timesteps: int, n_envs: int) -> Pending | None:
    """The pending step from SB3's ``collect_rollouts`` locals (``None`` outside a rollout step)."""
    try:
        return Pending(
            np.array(locals_["actions"]),
            np.array(locals_["buffer_actions"]),
            num_timesteps - n_envs,
            int(locals_["num_collected_steps"]) - 1,
        )
    except KeyError:
        return None


def capture(model: Any, pending: Pending | None, eval_env: VecEnv | None) -> dict[str, Any]:
    """``resume.json``'s content for ``model`` now (inside a step with ``pending``, or between rollouts)."""
    venv = model.get_env()
    doc: dict[str, Any] = {
        "format": FORMAT,
        "num_timesteps": pending.steps_before if pending is not None else int(model.num_timesteps),
    }
    why = _not_replayable(venv, model._last_obs)
    logs = [] if why else venv.env_method("replay_log", pending is not None)
    if why is None and any(log is None for log in logs):
        why = "an env's episode is not plain data (no PCG64 np_random, or reset options that are not JSON)"
    if why is not None:
        return {**doc, "exact": False, "why": why}
    doc.update(
        exact=True,
        envs=logs,
        last_obs_sha256=_digest(model._last_obs),
        last_episode_starts=np.asarray(model._last_episode_starts).tolist(),
        rng=_streams(model),
        eval_rng=_eval_rng(eval_env),
    )
    if pending is not None:
        doc["pending"] = {
            "actions": pending.actions.tolist(),
            "buffer_actions": pending.buffer_actions.tolist(),
            "dtype": pending.actions.dtype.str,
            "buffer_dtype": pending.buffer_actions.dtype.str,
            "rollout_steps_before": pending.rollout_steps_before,
        }
    return doc


def restore(model: Any, doc: dict[str, Any]) -> str | None:
    """Put ``model`` (built from the checkpoint, its envs fresh) where ``doc`` says; ``None``, or why it could not.

    On failure nothing of the model's random streams or counters has changed; the envs may have
    stepped, and the caller resets them (``_last_obs = None``), as a resume did before this file.
    The evaluation env is restored apart (:func:`restore_eval`): it is made later.
    """
    if doc.get("format") != FORMAT:
        return "the checkpoint has no resume state of this version"
    if not doc.get("exact"):
        return str(doc.get("why") or "the checkpoint says its state could not be saved")
    venv = model.get_env()
    why = _not_replayable(venv, np.zeros(1))
    if why is not None:
        return why
    envs = doc["envs"]
    if len(envs) != venv.num_envs:
        return f"the checkpoint has {len(envs)} envs' states, the run {venv.num_envs} envs"
    obs: Any = np.stack([venv.env_method("replay", log, indices=[i])[0] for i, log in enumerate(envs)])
    if isinstance(venv, VecTransposeImage):
        obs = venv.transpose_observations(obs)
    if _digest(obs) != doc["last_obs_sha256"]:
        return "replaying the envs' episodes gave other observations (their randomness is not all in np_random)"
    model._last_obs = obs
    model._last_episode_starts = np.array(doc["last_episode_starts"], dtype=bool)
    model.num_timesteps = int(doc["num_timesteps"])
    _set_streams(model, doc["rng"])
    pending = doc.get("pending")
    if pending is not None:
        model.resume_with(
            np.array(pending["actions"], dtype=pending["dtype"]),
            np.array(pending["buffer_actions"], dtype=pending["buffer_dtype"]),
            int(pending["rollout_steps_before"]),
        )
    return None


def _not_replayable(venv: VecEnv, last_obs: Any) -> str | None:
    inner = venv.venv if isinstance(venv, VecTransposeImage) else venv
    if not isinstance(inner, (DummyVecEnv, SubprocVecEnv)):
        return f"its envs sit behind {type(inner).__name__}, whose own state is not saved"
    if not isinstance(last_obs, np.ndarray):
        return "its observations are not one array (dict observations)"
    if not all(inner.env_method("has_wrapper_attr", "replay_log")):
        return "its envs were made without rlkit's replay log"
    return None


def _digest(array: np.ndarray) -> str:
    array = np.ascontiguousarray(array)
    return f"{array.dtype.str}{list(array.shape)}:" + hashlib.sha256(array.tobytes()).hexdigest()


def _streams(model: Any) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss = random.getstate()
    streams: dict[str, Any] = {
        "numpy": {
            "name": name,
            "keys": np.asarray(keys).tolist(),
            "pos": pos,
            "has_gauss": has_gauss,
            "cached": cached,
        },
        "python": {"version": version, "internal": list(internal), "gauss": gauss},
        "torch": base64.b64encode(th.get_rng_state().numpy().tobytes()).decode(),
        "action_space": model.action_space.np_random.bit_generator.state,
    }
    if th.cuda.is_available() and th.cuda.is_initialized():
        streams["cuda"] = [base64.b64encode(s.numpy().tobytes()).decode() for s in th.cuda.get_rng_state_all()]
    return streams


def _set_streams(model: Any, streams: dict[str, Any]) -> None:
    n = streams["numpy"]
    np.random.set_state((n["name"], np.array(n["keys"], dtype=np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = streams["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))
    th.set_rng_state(th.frombuffer(bytearray(base64.b64decode(streams["torch"])), dtype=th.uint8))
    if "cuda" in streams and th.cuda.is_available():
        th.cuda.set_rng_state_all(
            [th.frombuffer(bytearray(base64.b64decode(s)), dtype=th.uint8) for s in streams["cuda"]]
        )
    model.action_space.np_random.bit_generator.state = streams["action_space"]


def _eval_envs(eval_env: VecEnv | None) -> list[Any] | None:
    inner = eval_env.unwrapped if eval_env is not None else None
    return list(inner.envs) if isinstance(inner, DummyVecEnv) else None


def _eval_rng(eval_env: VecEnv | None) -> list[Any] | None:
    from rlkit.environments.replayable import rng_states

    envs = _eval_envs(eval_env)
    return None if envs is None else rng_states(envs)


def restore_eval(eval_env: VecEnv, doc: dict[str, Any]) -> None:
    """The evaluation env where the interrupted run's was: a seeded reset first spends the seeds it was made
    with (so the next evaluation's reset does not reseed), then each env's random state as saved."""
    from rlkit.environments.replayable import set_rng_states

    states = doc.get("eval_rng") if doc.get("exact") else None
    envs = _eval_envs(eval_env)
    if envs is None or states is None or len(states) != len(envs):
        return
    assert eval_env is not None
    eval_env.reset()
    set_rng_states(envs, states)

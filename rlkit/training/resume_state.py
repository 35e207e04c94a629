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
from typing import Any, Literal

import numpy as np
import torch as th
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from stable_baselines3.common.vec_env import DummyVecEnv, SubprocVecEnv, VecEnv, VecTransposeImage

from rlkit.core.errors import RlkitError

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


def restore(model: Any, doc: dict[str, Any], step: int) -> str | None:
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
    checked = check(doc, model, step)
    if isinstance(checked, str):
        return f"resume.json is damaged ({checked})"
    try:
        obs: Any = np.stack([venv.env_method("replay", log, indices=[i])[0] for i, log in enumerate(doc["envs"])])
    except RlkitError:  # an env process failed (its workers are stopped): one line from SubprocEnvs
        raise
    except Exception as exc:  # the env's own code, asked to replay what it did not do
        return f"replaying the envs' episodes failed ({type(exc).__name__}: {exc})"
    if isinstance(venv, VecTransposeImage):
        obs = venv.transpose_observations(obs)
    if _digest(obs) != doc["last_obs_sha256"]:
        return "replaying the envs' episodes gave other observations (their randomness is not all in np_random)"
    model._last_obs = obs
    model._last_episode_starts = np.array(doc["last_episode_starts"], dtype=bool)
    model.num_timesteps = int(doc["num_timesteps"])
    checked.apply(model)
    if checked.pending is not None:
        model.resume_with(*checked.pending)
    return None


class _Plain(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


class _PCG64Counter(_Plain):
    state: int = Field(ge=0, lt=2**128)
    inc: int = Field(ge=0, lt=2**128)


class _PCG64(_Plain):
    """A numpy ``PCG64`` bit generator's state, as ``bit_generator.state`` gives it."""

    bit_generator: Literal["PCG64"]
    state: _PCG64Counter
    has_uint32: int = Field(ge=0, le=1)
    uinteger: int = Field(ge=0, lt=2**32)


class _EnvLog(_Plain):
    """One training env's episode log (:meth:`rlkit.environments.replayable.Replayable.replay_log`)."""

    seed: int | None = Field(default=None, ge=0, lt=2**128)
    options: dict[str, Any] | None
    rng: _PCG64
    resets_at: list[int]
    actions: list[Any]
    dtype: str | None


class _Numpy(_Plain):
    name: Literal["MT19937"]
    keys: list[int] = Field(min_length=624, max_length=624)
    pos: int = Field(ge=0, le=624)
    has_gauss: int = Field(ge=0, le=1)
    cached: float


class _Python(_Plain):
    version: Literal[3]
    internal: list[int] = Field(min_length=625, max_length=625)
    gauss: float | None


class _Streams(_Plain):
    numpy: _Numpy
    python: _Python
    torch: str
    action_space: dict[str, Any]
    cuda: list[str] | None = None


class _Pending(_Plain):
    actions: list[Any]
    buffer_actions: list[Any]
    dtype: str
    buffer_dtype: str
    rollout_steps_before: int = Field(ge=0)


class _Doc(BaseModel):
    """``resume.json`` of an exact checkpoint: the types every value must have before any is used."""

    model_config = ConfigDict(strict=True, extra="ignore")
    format: Literal[1]
    exact: Literal[True]
    num_timesteps: int = Field(ge=0)
    envs: list[_EnvLog]
    last_obs_sha256: str
    last_episode_starts: list[bool]
    rng: _Streams
    eval_rng: list[_PCG64 | None] | None = None
    pending: _Pending | None = None


@dataclass
class Checked:
    """A ``resume.json`` found consistent with the run it is restored into: its streams and pending step, built."""

    numpy: tuple[Any, ...]
    python: tuple[Any, ...]
    torch: th.Tensor
    cuda: list[th.Tensor] | None
    action_space: dict[str, Any]
    pending: tuple[np.ndarray, np.ndarray, int] | None

    def apply(self, model: Any) -> None:
        """Set the random streams (nothing here can fail: :func:`check` built and tried each)."""
        np.random.set_state(self.numpy)
        random.setstate(self.python)
        th.set_rng_state(self.torch)
        if self.cuda is not None and th.cuda.is_available():
            th.cuda.set_rng_state_all(self.cuda)
        model.action_space.np_random.bit_generator.state = self.action_space


def check(doc: dict[str, Any], model: Any, step: int) -> Checked | str:
    """``doc`` checked against the model it restores (built from the checkpoint at ``step``): the
    streams and pending step ready to apply, or what is wrong with it, in a few words.

    The checks bound what a tampered file can make a resume do: every value of its type, as many
    envs as the run has, no longer a replay than the steps the run took, actions its action space
    holds, a step counter matching the checkpoint's. Nothing of ``model`` changes here.
    """
    try:
        parsed = _Doc.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        return f"{'.'.join(str(part) for part in err['loc'])}: {err['msg']}"
    n_envs = model.get_env().num_envs
    if len(parsed.envs) != n_envs:
        return f"the checkpoint has {len(parsed.envs)} envs' states, the run {n_envs} envs"
    try:
        for i, log in enumerate(parsed.envs):
            _check_log(log, model.action_space, step, f"envs.{i}")
        pending = _check_pending(parsed, model, step, n_envs)
        if len(parsed.last_episode_starts) != n_envs:
            raise ValueError(f"last_episode_starts holds {len(parsed.last_episode_starts)} values for {n_envs} envs")
        for state in parsed.eval_rng or []:
            if state is not None:
                _pcg64(state.model_dump())
        return _built_streams(parsed.rng, model, pending)
    except (ValueError, TypeError, OverflowError) as exc:
        return str(exc)


def _check_log(log: _EnvLog, action_space: Any, step: int, where: str) -> None:
    events = len(log.actions) + len(log.resets_at)
    if events > step:
        raise ValueError(f"{where} replays {events:,} events, more than the {step:,} steps the run took")
    if sorted(set(log.resets_at)) != log.resets_at or any(not 0 <= r < events for r in log.resets_at):
        raise ValueError(f"{where}.resets_at is not increasing event indices below {events}")
    _pcg64(log.rng.model_dump())
    if log.actions:
        dtype = np.dtype(log.dtype)
        if not all(action_space.contains(np.asarray(a, dtype=dtype)[()]) for a in log.actions):
            raise ValueError(f"{where}.actions holds an action outside the action space {action_space}")


def _check_pending(parsed: _Doc, model: Any, step: int, n_envs: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    p = parsed.pending
    if not step - n_envs <= parsed.num_timesteps <= step:  # inside a step: the counter before it
        raise ValueError(f"num_timesteps is {parsed.num_timesteps:,}, the checkpoint's step {step:,}")
    if p is None:
        return None
    actions = np.array(p.actions, dtype=np.dtype(p.dtype))
    buffer_actions = np.array(p.buffer_actions, dtype=np.dtype(p.buffer_dtype))
    space = model.action_space
    if actions.shape != (n_envs, *space.shape) or not all(space.contains(a) for a in actions):
        raise ValueError(f"pending.actions is not one action of {space} for each of the {n_envs} envs")
    if len(buffer_actions) != n_envs:
        raise ValueError(f"pending.buffer_actions holds {len(buffer_actions)} actions for {n_envs} envs")
    frequency = model.train_freq.frequency
    if p.rollout_steps_before >= frequency:
        raise ValueError(f"pending.rollout_steps_before is {p.rollout_steps_before}, past a rollout of {frequency}")
    return actions, buffer_actions, p.rollout_steps_before


def _built_streams(streams: _Streams, model: Any, pending: tuple[np.ndarray, np.ndarray, int] | None) -> Checked:
    n, p = streams.numpy, streams.python
    torch_state = th.frombuffer(bytearray(base64.b64decode(streams.torch, validate=True)), dtype=th.uint8)
    if torch_state.numel() != th.get_rng_state().numel():
        raise ValueError(f"rng.torch holds {torch_state.numel()} bytes, torch's state {th.get_rng_state().numel()}")
    cuda = None
    if streams.cuda is not None:
        cuda = [th.frombuffer(bytearray(base64.b64decode(s, validate=True)), dtype=th.uint8) for s in streams.cuda]
    space_state = streams.action_space
    trial = np.random.Generator(type(model.action_space.np_random.bit_generator)())
    trial.bit_generator.state = space_state  # raises on a state of the wrong kind, before anything is set
    numpy_state = (n.name, np.array(n.keys, dtype=np.uint32), n.pos, n.has_gauss, n.cached)
    np.random.RandomState().set_state(numpy_state)  # likewise, on a stream of its own
    python_state = (p.version, tuple(p.internal), p.gauss)
    random.Random().setstate(python_state)
    return Checked(numpy_state, python_state, torch_state, cuda, space_state, pending)


def _pcg64(state: dict[str, Any]) -> None:
    np.random.Generator(np.random.PCG64()).bit_generator.state = state


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

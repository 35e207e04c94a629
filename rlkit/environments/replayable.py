"""What it takes to rebuild a training env's state in a fresh copy of it, as plain data.

An env's state cannot be saved in general (a simulator's internals; pickling one would make a
checkpoint run code when it is opened), but it is a function of where its episode started and of
what it was asked since. :class:`Replayable`, the outermost wrapper of each training env, keeps
that: the seed and the random state of the base env's ``np_random`` at the episode's real reset
(``BaseResets``, the innermost wrapper, tells a real reset from a wrapper's pretend one such as
Atari's life-loss reset), and every step's action and pretend reset since. :meth:`Replayable.replay`
plays it on a fresh env: the same calls from the same random state give the same state, the
Monitor's and TimeLimit's counts included. Envs whose randomness lives elsewhere (their own
generator, a ``random`` module) replay differently; the caller checks the replayed observation
against the saved one and says so (``rlkit.training.resume_state``).

The log holds the current episode and the one before it: a checkpoint taken inside a step that
ended an episode describes the state before that step (``undo_last_step``).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

RESET = "reset"
"""A pretend reset in the log (a wrapper's, not the base env's)."""


class BaseResets(gym.Wrapper[Any, Any, Any, Any]):
    """Innermost wrapper: counts the base env's real resets."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        self.resets = 0

    def reset(self, **kwargs: Any) -> Any:
        self.resets += 1
        return self.env.reset(**kwargs)


class Replayable(gym.Wrapper[Any, Any, Any, Any]):
    """Outermost wrapper of a training env: a log from the base env's last real reset, replayable on a fresh env."""

    def __init__(self, env: gym.Env[Any, Any]) -> None:
        super().__init__(env)
        base = env
        while not isinstance(base, BaseResets):
            if not isinstance(base, gym.Wrapper):
                raise TypeError("Replayable needs a BaseResets wrapper inside it")
            base = base.env
        self._base = base
        self._episode: dict[str, Any] | None = None
        self._before: dict[str, Any] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        real = self._base.resets
        rng = _rng_state(self.unwrapped)
        out = self.env.reset(seed=seed, options=options)
        if self._base.resets != real or self._episode is None:
            self._before = self._episode
            self._episode = {"seed": seed, "options": options, "rng": rng, "events": []}
        else:
            self._episode["events"].append(RESET)
        return out

    def step(self, action: Any) -> Any:
        if self._episode is not None:
            self._episode["events"].append(action)
        return self.env.step(action)

    def replay_log(self, undo_last_step: bool = False) -> dict[str, Any] | None:
        """The log as plain data (``None`` when it cannot be: no episode yet, a random state or options not plain).

        ``undo_last_step``: the log as it stood before the last step (and whatever reset followed it).
        """
        episode = self._episode
        if episode is None:
            return None
        events = list(episode["events"])
        if undo_last_step:
            steps = [i for i, e in enumerate(events) if not _is_reset(e)]
            if steps:
                events = events[: steps[-1]]
            elif self._before is not None:  # the last step ended an episode: the one before it, less that step
                episode = self._before
                steps = [i for i, e in enumerate(episode["events"]) if not _is_reset(e)]
                if not steps:
                    return None
                events = episode["events"][: steps[-1]]
            else:
                return None
        if episode["rng"] is None or not _plain(episode["options"]):
            return None
        actions = [e for e in events if not _is_reset(e)]
        sample = np.asarray(actions[0]) if actions else None
        return {
            "seed": episode["seed"],
            "options": episode["options"],
            "rng": episode["rng"],
            "resets_at": [i for i, e in enumerate(events) if _is_reset(e)],
            "actions": [np.asarray(a).tolist() for a in actions],
            "dtype": None if sample is None else sample.dtype.str,
        }

    def replay(self, log: dict[str, Any]) -> Any:
        """Play ``log`` (from :meth:`replay_log`) on this fresh env; returns the observation it ends on."""
        self.unwrapped.np_random = _generator(log["rng"])
        obs, _ = self.reset(seed=log["seed"], options=log["options"])
        actions = iter(log["actions"])
        resets = set(log["resets_at"])
        for i in range(len(log["actions"]) + len(resets)):
            if i in resets:
                obs, _ = self.reset()
            else:
                obs, *_ = self.step(np.asarray(next(actions), dtype=log["dtype"])[()])
        return obs


def _is_reset(event: Any) -> bool:
    return isinstance(event, str) and event == RESET


def _rng_state(env: gym.Env[Any, Any]) -> dict[str, Any] | None:
    """The base env's ``np_random`` state (made now if the env has none yet, as gymnasium would); PCG64 only."""
    state = dict(env.np_random.bit_generator.state)
    return state if state.get("bit_generator") == "PCG64" else None


def _plain(value: Any) -> bool:
    """JSON data: what a log may hold."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def rng_states(envs: list[gym.Env[Any, Any]]) -> list[dict[str, Any] | None]:
    """Each env's ``np_random`` state: what an evaluation env's next (unseeded) reset starts from."""
    return [_rng_state(env.unwrapped) for env in envs]


def set_rng_states(envs: list[gym.Env[Any, Any]], states: list[dict[str, Any] | None]) -> None:
    for env, state in zip(envs, states, strict=True):
        if state is not None:
            env.unwrapped.np_random = _generator(state)


def _generator(state: dict[str, Any]) -> np.random.Generator:
    generator = np.random.Generator(np.random.PCG64())
    generator.bit_generator.state = state
    return generator

"""What an evaluation's episodes say about the Q-values: the greedy Q predicted at their start states
against the discounted return they then obtained (the evidence of the doctor's ``q_overestimation``).

:class:`StartValues` listens to the one evaluation as it plays (SB3's ``evaluate_policy`` calls its
:meth:`~StartValues.step` at every env step of every env, with the loop's locals), so no second
evaluation is needed: it keeps each episode's first observation and sums ``gamma^t r_t`` along the
way. At the end :meth:`~StartValues.row` evaluates the Q-network once on all the start states.

The sum is the return the Q-function estimates: with the training env's reward clipping (Atari), the
signs of the rewards; it stops where training would see a terminal state that the evaluation env
plays through (a ``done`` SB3's evaluation does not count as an episode's end, a lost life); and an
episode cut by a time limit gets the discounted value the Q-function gives its last state, as
training's targets do (SB3 bootstraps through timeouts): otherwise a healthy long-horizon run (gamma
0.999 on CartPole: Q near 1/(1-gamma) = 1000, 500 steps worth 394) would look overestimated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


class StartValues:
    """Start states and discounted returns of one evaluation's episodes."""

    def __init__(self, gamma: float, *, clip_reward: bool = False) -> None:
        self.gamma = gamma
        self.clip_reward = clip_reward
        self.starts: list[Any] = []
        self.returns: list[float] = []
        self.tails: list[tuple[int, Any, float]] = []
        """Episodes cut by a time limit: their index, last observation and gamma^length."""
        self._open: dict[int, list[Any]] = {}
        """Per env: [start observation, discounted sum so far, gamma^t, still summing]."""

    def step(self, locals_: dict[str, Any], _globals: dict[str, Any] | None = None) -> None:
        """``evaluate_policy``'s per-env-step callback: env ``i`` acted on ``observations[i]``."""
        i = int(locals_["i"])
        episode = self._open.get(i)
        if episode is None:
            obs = locals_["observations"]
            start = None if isinstance(obs, dict) else np.array(obs[i])
            episode = self._open[i] = [start, 0.0, 1.0, True]
        reward = float(locals_["reward"])
        if episode[3]:
            episode[1] += episode[2] * (float(np.sign(reward)) if self.clip_reward else reward)
            episode[2] *= self.gamma
        if not locals_["done"]:
            return
        if locals_["is_monitor_wrapped"] and "episode" not in locals_["info"]:
            episode[3] = False  # a terminal state for training (a lost life) that the episode plays on from
            return
        del self._open[i]
        info = locals_["info"]
        if episode[3] and info.get("TimeLimit.truncated") and info.get("terminal_observation") is not None:
            self.tails.append((len(self.returns), np.array(info["terminal_observation"]), episode[2]))
        self.starts.append(episode[0])
        self.returns.append(episode[1])

    def row(self, model: Any) -> dict[str, float]:
        """``q_start``, ``return_discounted`` and ``return_discounted_std`` (NaN where there is nothing to say)."""
        if not self.returns:
            return {"q_start": math.nan, "return_discounted": math.nan, "return_discounted_std": math.nan}
        returns = np.asarray(self.returns, dtype=float)
        if self.tails:
            values = greedy_q(model, [obs for _, obs, _ in self.tails])
            for (index, _, discount), value in zip(self.tails, values, strict=True):
                returns[index] += discount * value
        return {
            "q_start": float(np.mean(greedy_q(model, self.starts))),
            "return_discounted": float(returns.mean()),
            "return_discounted_std": float(returns.std()),
        }


def greedy_q(model: Any, states: list[Any]) -> np.ndarray[Any, Any]:
    """max_a Q(s, a) for each of ``states``: expected values for C51 and QR heads, NoisyNet's means,
    read as the gradient engine reads the networks (``model.networks()``); NaN for other models."""
    if not hasattr(model, "networks") or any(s is None for s in states):
        return np.full(len(states), math.nan)
    import torch as th

    from rlkit.dqn.policies import noise_off

    nets = model.networks()
    obs, _ = model.policy.obs_to_tensor(np.stack(states))
    with th.no_grad(), noise_off(nets.online):
        q = nets.head.q_values(nets.raw(nets.online, obs))
    return q.max(dim=1).values.float().cpu().numpy().astype(float)

"""Whether a model's gradient step is bit-identical at every torch thread count.

The thread tuner (:mod:`rlkit.core.threads`) may switch the count only where this holds, so a
seed reproduces whatever the machine's load.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import torch as th
from stable_baselines3.common.type_aliases import ReplayBufferSamples

from rlkit.dqn import private
from rlkit.dqn.engine import MAX_PHASE_ROWS
from rlkit.dqn.interface import Minibatch
from rlkit.dqn.mlp import MlpGradient


def thread_invariant(model: Any, candidates: tuple[int, ...], seed: int = 0) -> bool:
    """Whether the model's written-out gradient step gives bit-identical results at every count.

    Runs :class:`~rlkit.dqn.mlp.MlpGradient` on copies of the model's online and target networks
    with a synthetic batch of its shapes (a private generator: the model's random streams are
    untouched) and compares the gradients, their norm, the loss, the target network's Q-values
    over a whole phase's rows and the Q-values for action selection.
    """
    nets = model.networks()
    online, target = copy.deepcopy(nets.online), copy.deepcopy(nets.target)
    optimizer = th.optim.SGD(online.parameters(), lr=0.0)  # only names the trained parameters
    step = MlpGradient.create(dataclasses.replace(nets, online=online, target=target, optimizer=optimizer))
    if not isinstance(step, MlpGradient):
        return False
    gen = th.Generator().manual_seed(seed)
    batch, n_actions = int(model.batch_size), int(model.action_space.n)
    obs_dim = int(model.observation_space.shape[0])
    phase_rows = max(batch, (MAX_PHASE_ROWS // batch) * batch)

    def rand(*shape: int) -> th.Tensor:
        return th.randn(*shape, generator=gen)

    data = ReplayBufferSamples(
        rand(batch, obs_dim),
        th.randint(0, n_actions, (batch, 1), generator=gen),
        rand(batch, obs_dim),
        (th.rand(batch, 1, generator=gen) < 0.1).float(),
        rand(batch, 1),
        th.full((batch, 1), float(model.gamma) ** max(1, int(getattr(model, "n_steps", 1)))),
    )
    weights = th.rand(batch, 1, generator=gen) + 0.5
    phase_obs, act_obs = rand(phase_rows, obs_dim), rand(int(model.n_envs), obs_dim)

    def results() -> list[th.Tensor]:
        _, loss = step(Minibatch(data, None, weights))
        grads = [p.grad for p in step.params if p.grad is not None]
        with th.no_grad():
            extra = [step.target_values(phase_obs), online(act_obs)]
        return [g.clone() for g in grads] + [private.total_norm(grads), loss, *extra]

    before = th.get_num_threads()
    try:
        outcomes = []
        for count in candidates:
            th.set_num_threads(count)
            outcomes.append(results())
    finally:
        th.set_num_threads(before)
    first = outcomes[0]
    return all(
        len(o) == len(first) and all(th.equal(a, b) for a, b in zip(o, first, strict=True)) for o in outcomes[1:]
    )

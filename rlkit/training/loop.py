"""The one learn loop: every model rlkit trains goes through :func:`learn`.

``rlkit train`` (start and resume, :mod:`rlkit.training.train`), each seed of a tuning trial
(:mod:`rlkit.tuning.objective`) and each seed of ``rlkit benchmark`` (which runs
:mod:`rlkit.training.train`) build their model with :func:`rlkit.training.factory.build` and
train it here: SB3's ``learn`` with one signal handler, one evaluator (whose hooks say what an
evaluation does in each setting), the thread tuner when there is one, and the caller's own
callbacks; then the final evaluation at the last step. The divergence guard is the model's own
(the preset's ``divergence_q_bound``, checked after every training phase).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from stable_baselines3.common.callbacks import BaseCallback, CallbackList

from rlkit.training.callbacks import Evaluator, StopOnSignal, ThreadTuning

if TYPE_CHECKING:
    from rlkit.training.factory import Trainee

EVAL_SEED_OFFSET = 1_000_003
"""The evaluation env's seed is the run's seed plus this (plus the step it resumed at)."""
CONFIRM_ENVS = 10
"""Envs the confirming evaluation plays at once (one batched action choice per step for all)."""


@dataclass
class Learned:
    """How a call of :func:`learn` ended."""

    steps: int
    """The model's step counter: transitions collected over every session of the run."""

    signal: int | None
    """The signal that stopped it early (Ctrl-C, SIGTERM, SIGHUP), or ``None``."""


def learn(
    trainee: Trainee,
    evaluator: Evaluator,
    *,
    total_steps: int,
    stopper: StopOnSignal,
    callbacks: list[BaseCallback] | None = None,
    continue_counter: bool = False,
) -> Learned:
    """Train ``trainee.model`` until its step counter reaches ``total_steps``, or a signal.

    With ``continue_counter`` the model keeps its step counter (a resumed run); otherwise it
    starts at 0. Unless stopped by a signal, the run ends with an evaluation at its last step
    (when periodic evaluation is on and the schedule did not land there). A signal stops an
    evaluation under way at once (``stopper`` is one of the evaluator's progress hooks).
    """
    model = trainee.model
    start = int(model.num_timesteps) if continue_counter else 0
    if stopper.keep_evaluating not in evaluator.callback_on_progress:  # Ctrl-C stops an evaluation at once
        evaluator.callback_on_progress.append(stopper.keep_evaluating)
    chain: list[BaseCallback] = [stopper, evaluator, *(callbacks or [])]
    if trainee.tuner is not None:
        chain.append(ThreadTuning(trainee.tuner))
    model.learn(
        total_timesteps=total_steps - start,
        callback=CallbackList(chain),
        reset_num_timesteps=not continue_counter,
        tb_log_name="dqn",
    )
    if stopper.received is not None:
        # SB3 counts the step whose callback asked to stop but never stores its transition;
        # un-count it so the step counter equals the transitions the buffer holds.
        model.num_timesteps -= model.n_envs
        return Learned(int(model.num_timesteps), stopper.received)
    steps = int(model.num_timesteps)
    last = evaluator.last
    if evaluator.eval_freq > 0 and (last is None or int(last["timesteps"]) != steps):
        evaluator.evaluate()
        if stopper.received is not None:  # a signal stopped the final evaluation: nothing to un-count
            return Learned(steps, stopper.received)
    return Learned(steps, None)

"""Every private library hook of rlkit's DQN core, in one place: each is here for speed, and each has
a test in ``tests/test_dqn_private.py`` that fails loudly if the library changes it.

SB3's protected members that ``RlkitDQN`` uses as a subclass (``_setup_model``, ``_on_step``,
``_store_transition``, ``_update_learning_rate``, ``_n_updates``, ``_vec_normalize_env``,
``_current_progress_remaining``, ``_n_calls``, ``_last_obs``, ``_total_timesteps``) are SB3's
extension points for its own algorithms (``DQN.train`` uses them the same way); the same test
checks that they are still there.
"""

from __future__ import annotations

from typing import Any

import torch as th

relu_backward = th.ops.aten.threshold_backward.default
"""ReLU's backward as autograd computes it, in one kernel (``grad * (out > 0)`` takes two and a mask)."""


def total_norm(grads: list[th.Tensor]) -> th.Tensor:
    """The global 2-norm of the gradients, as ``clip_grad_norm_`` computes it.

    ``torch._foreach_norm`` is one call for all tensors; the public ``get_total_norm`` first groups
    them by device and dtype, which is most of its cost for a small network.
    """
    return th.linalg.vector_norm(th.stack(th._foreach_norm(grads)))


def clip_(grads: list[th.Tensor], norm: th.Tensor, max_norm: float) -> None:
    """Scale the gradients as ``clip_grad_norm_`` does (``torch._foreach_mul_``: one call for all)."""
    th._foreach_mul_(grads, th.clamp(max_norm / (norm + 1e-6), max=1.0))


def fused_adam_(group: dict[str, Any], params: list[th.Tensor], grads: list[th.Tensor], state: dict[str, Any]) -> None:
    """One Adam step with ``torch._fused_adam_``, the kernel ``Adam(fused=True).step()`` calls.

    ``optimizer.step()`` spends most of its time for a small network in per-call bookkeeping
    (grouping tensors, hooks, profiler records); this is the same arithmetic on the optimizer's own
    state tensors (``state`` holds their lists: ``exp_avg``, ``exp_avg_sq``, ``step``).
    """
    th._foreach_add_(state["step"], 1)
    beta1, beta2 = group["betas"]
    th._fused_adam_(
        params,
        grads,
        state["exp_avg"],
        state["exp_avg_sq"],
        [],
        state["step"],
        amsgrad=False,
        lr=float(group["lr"]),
        beta1=beta1,
        beta2=beta2,
        weight_decay=group["weight_decay"],
        eps=group["eps"],
        maximize=False,
        grad_scale=None,
        found_inf=None,
    )


def greedy_actions(policy: Any, obs: th.Tensor, deterministic: bool) -> th.Tensor:
    """The policy's actions for a tensor batch: SB3's ``BasePolicy._predict``, without ``predict``'s
    per-call checks and conversions (every SB3 and rlkit policy implements it)."""
    return policy._predict(obs, deterministic=deterministic)

"""The one TD loss (rlkit.dqn.loss) against hand-computed values and independent references."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch as th
from sb3_contrib.common.utils import quantile_huber_loss

from rlkit.dqn.loss import (
    Head,
    LossOptions,
    elementwise_grad,
    elementwise_loss,
    project_distribution,
    td_loss,
)
from rlkit.dqn.loss import (
    quantile_huber_loss as ours_quantile_huber,
)


class Transitions(NamedTuple):
    actions: th.Tensor
    rewards: th.Tensor
    dones: th.Tensor
    discounts: th.Tensor | None


def _t(*rows: list[float]) -> th.Tensor:
    return th.tensor(rows, dtype=th.float32)


def _batch(rewards: th.Tensor, dones: th.Tensor, discounts: th.Tensor | None = None, actions: th.Tensor | None = None):
    n = rewards.shape[0]
    return Transitions(th.zeros(n, 1, dtype=th.long) if actions is None else actions, rewards, dones, discounts)


def _target(next_q: th.Tensor, batch: Transitions, gamma: float = 0.9, next_online: th.Tensor | None = None, **opts):
    raw = th.zeros(next_q.shape)
    return td_loss(raw, next_q, batch, Head(), LossOptions(**opts), gamma, next_online).target


def test_one_step_targets_match_hand_values() -> None:
    # r=2, gamma=0.9, max next Q=5 -> 2 + 0.9*5 = 6.5 ; r=0.3, gamma=0.99, max next Q=4.7 -> 4.953
    next_q = _t([1.0, 5.0, -3.0], [4.7, 0.0, 2.0])
    target = _target(next_q, _batch(_t([2.0], [0.3]), _t([0.0], [0.0]), _t([0.9], [0.99])))
    assert target.shape == (2, 1)
    assert target[0, 0].item() == pytest.approx(6.5)
    assert target[1, 0].item() == pytest.approx(4.953, abs=1e-5)


def test_scalar_gamma_and_terminal_uses_reward_alone() -> None:
    target = _target(_t([100.0, 5.0], [100.0, 5.0]), _batch(_t([2.0], [-1.5]), _t([1.0], [0.0])))
    assert target[0, 0].item() == pytest.approx(2.0)  # terminal: r alone
    assert target[1, 0].item() == pytest.approx(-1.5 + 90.0)


def test_double_dqn_online_picks_target_values() -> None:
    next_target, next_online = _t([1.0, 5.0, 3.0]), _t([0.0, 1.0, 9.0])  # vanilla takes 5; online prefers 2
    batch = _batch(_t([2.0]), _t([0.0]))
    assert _target(next_target, batch, next_online=next_online, double_q=True).item() == pytest.approx(2.0 + 0.9 * 3.0)
    assert _target(next_target, batch, next_online=next_online).item() == pytest.approx(6.5)  # double_q off


def test_n_step_discount_per_sample() -> None:
    # A 3-step return already summed in rewards; bootstrap with gamma**3, or gamma**1 after an early stop.
    batch = _batch(_t([1.0 + 0.9 + 0.81], [1.0]), _t([0.0], [0.0]), _t([0.9**3], [0.9]))
    target = _target(_t([10.0], [10.0]), batch)
    assert target[0, 0].item() == pytest.approx(2.71 + 7.29)
    assert target[1, 0].item() == pytest.approx(1.0 + 9.0)


def test_losses_and_priorities_of_a_q_value_head() -> None:
    current, target = _t([0.0], [0.0]), _t([0.5], [3.0])
    assert elementwise_loss(current, target, "mse").tolist() == pytest.approx([0.25, 9.0])
    assert elementwise_loss(current, target, "huber").tolist() == pytest.approx([0.125, 2.5])
    raw = _t([0.0, 1.0], [2.0, -1.0])  # Q(s, a) of the taken actions 1 and 0: 1.0 and 2.0
    out = td_loss(
        raw,
        _t([0.0, 0.0], [0.0, 0.0]),
        _batch(_t([4.0], [1.5]), _t([1.0], [1.0]), None, th.tensor([[1], [0]])),
        Head(),
        LossOptions(),
        0.9,
    )
    assert out.q_taken.reshape(-1).tolist() == [1.0, 2.0] and out.td.tolist() == [3.0, -0.5]
    assert out.priority.tolist() == [3.0, 0.5] and out.loss.tolist() == pytest.approx([2.5, 0.125])


@pytest.mark.parametrize("kind", ["huber", "mse"])
def test_elementwise_grad_is_the_derivative_of_the_loss(kind: str) -> None:
    current = th.linspace(-3, 3, 25).reshape(-1, 1).requires_grad_()
    target = th.zeros(25, 1) + 0.25
    elementwise_loss(current, target, kind).sum().backward()  # type: ignore[arg-type]
    assert current.grad is not None
    assert th.allclose(elementwise_grad((current - target).detach(), kind), current.grad)  # type: ignore[arg-type]


def test_quantile_targets_and_loss_match_sb3_contrib() -> None:
    gen = th.Generator().manual_seed(0)
    next_target = th.randn(4, 5, 3, generator=gen)  # (batch, quantiles, actions)
    rewards, dones = th.randn(4, 1, generator=gen), th.tensor([[0.0], [1.0], [0.0], [0.0]])
    raw = th.randn(4, 5, 3, generator=gen)
    actions = th.tensor([[0], [2], [1], [1]])
    out = td_loss(raw, next_target, _batch(rewards, dones, None, actions), Head("qr"), LossOptions(), 0.9)
    best = next_target.mean(dim=1).argmax(dim=1)
    expected = th.stack([rewards[i] + (1 - dones[i]) * 0.9 * next_target[i, :, best[i]] for i in range(4)])
    current = th.stack([raw[i, :, actions[i, 0]] for i in range(4)])
    assert th.allclose(out.target, expected.mean(dim=1, keepdim=True))
    sb3 = quantile_huber_loss(current, expected, sum_over_quantiles=True)
    assert out.loss.mean().item() == pytest.approx(sb3.item(), rel=1e-5)
    assert th.equal(out.priority, out.loss)  # Rainbow: priorities from the distributional loss
    assert th.allclose(ours_quantile_huber(current, expected), out.loss)
    assert th.allclose(out.q_all, raw.mean(dim=1))


def _reference_projection(p: list[float], r: float, discount: float, support: list[float]) -> list[float]:
    """Bellemare et al. 2017, Algorithm 1, one sample, in plain Python."""
    atoms, v_min, v_max = len(support), support[0], support[-1]
    delta = (v_max - v_min) / (atoms - 1)
    m = [0.0] * atoms
    for j in range(atoms):
        tz = min(max(r + discount * support[j], v_min), v_max)
        b = (tz - v_min) / delta
        lo, up = int(b // 1), -int(-b // 1)
        if lo == up:
            m[lo] += p[j]
        else:
            m[lo] += p[j] * (up - b)
            m[up] += p[j] * (b - lo)
    return m


def test_c51_projection_by_hand() -> None:
    support = th.tensor([0.0, 1.0, 2.0])
    # r = 0.5, gamma 1: atoms move to 0.5, 1.5, 2.5 (clipped to 2); each half-and-half between its neighbours.
    m = project_distribution(th.tensor([[0.2, 0.3, 0.5]]), th.tensor([[0.5]]), 1.0, support)
    assert m.tolist()[0] == pytest.approx([0.1, 0.1 + 0.15, 0.15 + 0.5])
    # A terminal transition (discount 0) puts all mass on the reward: 1.0 is exactly atom 1.
    m = project_distribution(th.tensor([[0.2, 0.3, 0.5]]), th.tensor([[1.0]]), 0.0, support)
    assert m.tolist()[0] == pytest.approx([0.0, 1.0, 0.0])


def test_c51_projection_matches_the_paper_algorithm() -> None:
    gen = th.Generator().manual_seed(3)
    support = th.linspace(-10, 10, 51)
    probs = th.rand(64, 51, generator=gen).softmax(dim=1)
    rewards = th.randn(64, 1, generator=gen) * 6
    rewards[:4] = th.tensor([[0.0], [0.4], [25.0], [-25.0]])  # exact atoms, between, clipped both ways
    discounts = (th.rand(64, 1, generator=gen) > 0.2).float() * 0.99
    ours = project_distribution(probs, rewards, discounts, support)
    for i in range(64):
        expected = _reference_projection(probs[i].tolist(), rewards[i].item(), discounts[i].item(), support.tolist())
        assert ours[i].tolist() == pytest.approx(expected, abs=1e-5)
    assert th.allclose(ours.sum(dim=1), th.ones(64), atol=1e-5)  # mass is kept


def test_c51_loss_is_the_kl_to_the_projected_target() -> None:
    gen = th.Generator().manual_seed(1)
    support = th.linspace(-1, 1, 5)
    head = Head("c51", support)
    next_target = th.randn(3, 5, 2, generator=gen)
    raw = th.randn(3, 5, 2, generator=gen, requires_grad=True)
    batch = _batch(
        th.tensor([[0.3], [-0.2], [1.0]]), th.tensor([[0.0], [0.0], [1.0]]), None, th.tensor([[1], [0], [1]])
    )
    out = td_loss(raw, next_target, batch, head, LossOptions(), 0.9)
    taken = th.stack([raw[i, :, batch.actions[i, 0]] for i in range(3)]).softmax(dim=1)
    best = (next_target.softmax(dim=1) * support.view(1, -1, 1)).sum(dim=1).argmax(dim=1)
    next_probs = th.stack([next_target[i, :, best[i]].softmax(dim=0) for i in range(3)])
    m = project_distribution(next_probs, batch.rewards, (1 - batch.dones) * 0.9, support)
    kl = (th.xlogy(m, m) - m * taken.log()).sum(dim=1)
    assert th.allclose(out.loss, kl, atol=1e-6) and (out.loss >= -1e-6).all()
    assert th.allclose(out.q_all, head.q_values(raw.detach()))
    assert th.allclose(out.target.reshape(-1), (m * support).sum(dim=1))
    out.loss.sum().backward()  # the gradient flows into the taken actions' logits only
    assert raw.grad is not None and raw.grad[0, :, 0].abs().sum() == 0 and raw.grad[0, :, 1].abs().sum() > 0

"""TD targets and losses against hand-computed values."""

from __future__ import annotations

import pytest
import torch as th
from sb3_contrib.common.utils import quantile_huber_loss

from rlkit.dqn.targets import elementwise_loss, quantile_huber_per_sample, quantile_td_targets, td_targets


def _t(*rows: list[float]) -> th.Tensor:
    return th.tensor(rows, dtype=th.float32)


def test_one_step_targets_match_hand_values() -> None:
    # r=2, gamma=0.9, max next Q=5 -> 2 + 0.9*5 = 6.5 ; r=0.3, gamma=0.99, max next Q=4.7 -> 4.953
    next_q = _t([1.0, 5.0, -3.0], [4.7, 0.0, 2.0])
    target = td_targets(_t([2.0], [0.3]), _t([0.0], [0.0]), _t([0.9], [0.99]), next_q)
    assert target.shape == (2, 1)
    assert target[0, 0].item() == pytest.approx(6.5)
    assert target[1, 0].item() == pytest.approx(4.953, abs=1e-5)


def test_scalar_gamma_and_terminal_uses_reward_alone() -> None:
    next_q = _t([100.0, 5.0], [100.0, 5.0])
    target = td_targets(_t([2.0], [-1.5]), _t([1.0], [0.0]), 0.9, next_q)
    assert target[0, 0].item() == pytest.approx(2.0)  # terminal: r alone
    assert target[1, 0].item() == pytest.approx(-1.5 + 90.0)


def test_double_dqn_online_picks_target_values() -> None:
    next_target = _t([1.0, 5.0, 3.0])  # vanilla would take 5
    next_online = _t([0.0, 1.0, 9.0])  # online prefers action 2
    double = td_targets(_t([2.0]), _t([0.0]), 0.9, next_target, next_online)
    vanilla = td_targets(_t([2.0]), _t([0.0]), 0.9, next_target)
    assert double.item() == pytest.approx(2.0 + 0.9 * 3.0)  # valued by the target net
    assert vanilla.item() == pytest.approx(6.5)


def test_n_step_discount_per_sample() -> None:
    # 3-step return already summed in rewards; bootstrap with gamma**3, or gamma**1 after an early stop.
    target = td_targets(_t([1.0 + 0.9 + 0.81], [1.0]), _t([0.0], [0.0]), _t([0.9**3], [0.9]), _t([10.0], [10.0]))
    assert target[0, 0].item() == pytest.approx(2.71 + 7.29)
    assert target[1, 0].item() == pytest.approx(1.0 + 9.0)


def test_losses() -> None:
    current, target = _t([0.0], [0.0]), _t([0.5], [3.0])
    assert elementwise_loss(current, target, "mse").tolist() == pytest.approx([0.25, 9.0])
    assert elementwise_loss(current, target, "huber").tolist() == pytest.approx([0.125, 2.5])


def test_quantile_targets_and_loss_match_sb3_contrib() -> None:
    gen = th.Generator().manual_seed(0)
    next_target = th.randn(4, 5, 3, generator=gen)  # (batch, quantiles, actions)
    rewards, dones = th.randn(4, 1, generator=gen), th.tensor([[0.0], [1.0], [0.0], [0.0]])
    target = quantile_td_targets(rewards, dones, 0.9, next_target)
    best = next_target.mean(dim=1).argmax(dim=1)
    for i in range(4):
        expected = rewards[i] + (1 - dones[i]) * 0.9 * next_target[i, :, best[i]]
        assert th.allclose(target[i], expected)
    current = th.randn(4, 5, generator=gen)
    ours = quantile_huber_per_sample(current, target).mean()
    assert ours.item() == pytest.approx(quantile_huber_loss(current, target, sum_over_quantiles=True).item(), rel=1e-5)

"""The temporal-head probe (text4vis_demo.probe) on embeddings whose classes differ only in order.

Its command line on a finished quick demo is tested in test_demo.py."""

from __future__ import annotations

import pytest
import torch

from text4vis_demo.probe import train_probe


def _order_only(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Classes 0 and 1: the same two frames in opposite orders (equal means); class 2: another."""
    g = torch.Generator().manual_seed(seed)
    a, b, c = torch.eye(16)[0] * 3, torch.eye(16)[1] * 3, torch.eye(16)[2] * 3
    ramp = torch.linspace(0, 1, 4)[:, None]
    clips = {0: (1 - ramp) * a + ramp * b, 1: ramp * a + (1 - ramp) * b, 2: c.expand(4, 16)}
    x = torch.stack([clips[k] for k in (0, 1, 2) for _ in range(n_per_class)])
    y = torch.tensor([k for k in (0, 1, 2) for _ in range(n_per_class)])
    return x + 0.05 * torch.randn(x.shape, generator=g), y


def test_probe_learns_what_only_frame_order_tells_apart():
    train, val = _order_only(32, seed=0), _order_only(10, seed=1)
    assert torch.allclose(
        train[0][0].mean(0), train[0][32].mean(0), atol=0.1
    )  # mean pooling: blind
    weight = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    history = train_probe(
        train, val, weight, direction_classes=[0, 1], epochs=12, lr=1e-2, logit_scale=20.0
    )
    assert [h.epoch for h in history] == list(range(1, 13))
    last = history[-1]
    assert last.direction_top1 is not None and last.direction_top1 >= 90.0, history
    assert last.other_top1 == 100.0
    assert last.top1 == pytest.approx((2 * last.direction_top1 + last.other_top1) / 3)
    assert history[-1].train_loss < history[0].train_loss


def test_probe_refuses_mismatched_inputs():
    train = _order_only(8, seed=0)
    with pytest.raises(ValueError, match="16-d.*8-d|8-d.*16-d"):
        train_probe(train, train, torch.randn(3, 8), direction_classes=[], epochs=1)
    with pytest.raises(ValueError, match="differ in length"):
        train_probe(
            (train[0], train[1][:-1]), train, torch.randn(3, 16), direction_classes=[], epochs=1
        )

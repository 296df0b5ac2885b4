"""View aggregation, gathering by index and the views syntax (no model, no data)."""

from __future__ import annotations

import pytest
import torch

from text4vis.engine.loops import aggregate_views, gather_by_index, parse_views


def test_aggregate_views_prob_vs_logit():
    # view 1 is very confident in class 0, views 2-3 mildly prefer class 1
    logits = torch.tensor([[[10.0, 0.0], [0.0, 0.5], [0.0, 0.5]]])  # [B=1, V=3, C=2]
    prob = aggregate_views(logits, "prob")
    logit = aggregate_views(logits, "logit")
    assert torch.allclose(prob, logits.softmax(-1).mean(1))
    assert torch.allclose(logit, logits.mean(1))
    assert prob.argmax().item() == 0 and logit.argmax().item() == 0
    logits2 = torch.tensor([[[3.0, 0.0], [0.0, 2.0], [0.0, 2.0]]])
    assert aggregate_views(logits2, "prob").argmax().item() == 1
    assert aggregate_views(logits2, "logit").argmax().item() == 1
    with pytest.raises(ValueError, match="choose one of"):
        aggregate_views(logits, "max")


def test_gather_by_index_merges_duplicates_and_checks_count():
    idx = torch.tensor([4, 1, 4, 0, 2, 3])
    values = torch.tensor([[1.0], [2.0], [3.0], [4.0], [5.0], [6.0]])
    labels = torch.tensor([7, 8, 7, 9, 1, 2])
    u, v, lab = gather_by_index(idx, values, labels, expected=5)
    assert u.tolist() == [0, 1, 2, 3, 4]
    assert v[:, 0].tolist() == [4.0, 2.0, 5.0, 6.0, 2.0]  # index 4: mean of 1 and 3
    assert lab.tolist() == [9, 8, 1, 2, 7]
    with pytest.raises(RuntimeError, match="distinct videos"):
        gather_by_index(idx, values, labels, expected=6)
    with pytest.raises(RuntimeError, match="two different labels"):
        gather_by_index(torch.tensor([0, 0]), values[:2], torch.tensor([1, 2]))


def test_parse_views():
    assert parse_views("4x3") == (4, 3) and parse_views("1X1") == (1, 1)
    for bad in ("4", "0x3", "ax3", "4x3x2"):
        with pytest.raises(ValueError, match="CLIPSxCROPS"):
            parse_views(bad)


def test_iterate_views_refuses_batches_without_a_views_axis():
    from torch import nn

    from text4vis.engine.loops import iterate_views

    class Embed(nn.Module):
        def encode_video(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1)

    five_dim = [
        {"video": torch.zeros(2, 3, 3, 4, 4), "label": torch.zeros(2), "index": torch.arange(2)}
    ]
    with pytest.raises(ValueError, match=r"\[B, V, T, 3, H, W\]"):
        list(iterate_views(Embed(), five_dim, output="embeddings", device=torch.device("cpu")))
    six_dim = [
        {"video": torch.ones(2, 3, 1, 3, 1, 1), "label": torch.zeros(2), "index": torch.arange(2)}
    ]
    (batch,) = iterate_views(Embed(), six_dim, output="embeddings", device=torch.device("cpu"))
    assert batch.values.shape == (2, 3, 3)  # [B, V, D]: views kept apart for the caller
    with pytest.raises(ValueError, match="choose 'embeddings' or 'logits'"):
        list(iterate_views(Embed(), six_dim, output="features", device=torch.device("cpu")))

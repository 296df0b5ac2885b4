"""Metrics, view aggregation, gathering by index, zero-shot protocols (no model, no data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from text4vis.engine.evaluate import (
    aggregate_views,
    average_precision,
    classification_metrics,
    confusion_matrix,
    gather_by_index,
    mean_average_precision,
    mean_class_accuracy,
    parse_views,
    per_class_accuracy,
    subset_protocol,
    summarize_protocol,
    topk_accuracy,
    zero_shot_logits,
)


def test_topk_on_hand_made_scores():
    scores = torch.tensor(
        [
            [0.9, 0.05, 0.03, 0.02],  # label 0: top-1 hit
            [0.1, 0.2, 0.6, 0.1],  # label 1: second -> top-2 hit only
            [0.4, 0.3, 0.2, 0.1],  # label 3: last -> miss at k<4
            [0.0, 0.0, 0.1, 0.9],  # label 3: hit
        ]
    )
    labels = torch.tensor([0, 1, 3, 3])
    acc = topk_accuracy(scores, labels, (1, 2, 3, 5))
    assert acc == {1: 0.5, 2: 0.75, 3: 0.75, 5: 1.0}


def test_mean_class_accuracy_differs_from_overall_accuracy():
    # class 0: 3 of 3 right; class 1: 0 of 1 right -> overall 0.75, mean class 0.5
    labels = torch.tensor([0, 0, 0, 1])
    preds = torch.tensor([0, 0, 0, 0])
    assert mean_class_accuracy(preds, labels, 3) == pytest.approx(0.5)  # class 2 absent: ignored
    per_class = per_class_accuracy(preds, labels, 3)
    assert per_class[0] == 1.0 and per_class[1] == 0.0 and torch.isnan(per_class[2])
    cm = confusion_matrix(preds, labels, 3)
    assert cm.tolist() == [[3, 0, 0], [1, 0, 0], [0, 0, 0]]


def test_average_precision_matches_sklearn_with_ties():
    gen = np.random.default_rng(0)
    for trial in range(20):
        n = int(gen.integers(5, 40))
        # coarse scores make ties frequent
        scores = np.round(gen.random(n), 1)
        positives = gen.random(n) < 0.4
        if not positives.any():
            positives[0] = True
        ours = average_precision(torch.from_numpy(scores), torch.from_numpy(positives))
        assert ours == pytest.approx(average_precision_score(positives, scores), abs=1e-12), trial


def test_mean_average_precision_matches_sklearn_macro():
    gen = np.random.default_rng(1)
    scores = gen.random((30, 5))
    labels = gen.integers(0, 4, 30)  # class 4 has no positive: left out, as in sklearn
    onehot = np.eye(5)[labels]
    expected = np.mean([average_precision_score(onehot[:, c], scores[:, c]) for c in range(4)])
    got = mean_average_precision(torch.from_numpy(scores), torch.from_numpy(labels))
    assert got == pytest.approx(expected, abs=1e-12)
    got_multi = mean_average_precision(torch.from_numpy(scores), torch.from_numpy(onehot))
    assert got_multi == pytest.approx(expected, abs=1e-12)


def test_classification_metrics_keys_and_values():
    scores = torch.eye(3)[[0, 1, 2, 0]]
    labels = torch.tensor([0, 1, 2, 1])
    m = classification_metrics(scores, labels, multilabel=True)
    assert m["top1"] == 0.75 and m["top5"] == 1.0
    assert m["mean_class_acc"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert 0 < m["mAP"] <= 1


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


def test_subset_protocol_restricts_classes_and_videos():
    classifier = torch.eye(4)  # class c = axis c
    # videos 0,1 of class 0 point at axis 0; video 2 of class 1 points at axis 2 (wrong on full)
    features = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 0.4, 0.6, 0], [0, 0, 0, 1.0]])
    labels = torch.tensor([0, 0, 1, 3])
    full, subset = subset_protocol(features, labels, classifier, [[0, 1, 2, 3], [1, 0]])
    assert full["top1"] == pytest.approx(0.75) and full["num_videos"] == 4
    # restricted to classes {1, 0}: video 2 now correct, video 3 (class 3) not scored
    assert subset["top1"] == 1.0 and subset["num_videos"] == 3 and subset["num_classes"] == 2
    logits = zero_shot_logits(features, classifier, 10.0)
    assert torch.allclose(logits[0], torch.tensor([10.0, 0, 0, 0]))
    summary = summarize_protocol([full, subset])
    assert summary["top1_mean"] == pytest.approx(0.875)
    assert summary["top1_std"] == pytest.approx(0.125)

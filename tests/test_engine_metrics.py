"""Metrics against scikit-learn and hand-made scores (no model, no data)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from text4vis.engine.metrics import (
    average_precision,
    classification_metrics,
    confusion_matrix,
    mean_average_precision,
    mean_class_accuracy,
    per_class_accuracy,
    topk_accuracy,
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
    got_multi = mean_average_precision(
        torch.from_numpy(scores), torch.from_numpy(onehot), multi_hot=True
    )
    assert got_multi == pytest.approx(expected, abs=1e-12)


def test_classification_metrics_keys_and_values():
    scores = torch.eye(3)[[0, 1, 2, 0]]
    labels = torch.tensor([0, 1, 2, 1])
    m = classification_metrics(scores, labels, multilabel=True)
    assert m["top1"] == 0.75 and m["top5"] == 1.0
    assert m["mean_class_acc"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert 0 < m["mAP"] <= 1

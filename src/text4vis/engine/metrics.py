"""Metrics of per-video scores ``[N, C]`` against integer labels ``[N]``.

- top-k accuracy (a video counts when its label is among the k highest scores);
- mean class accuracy (per-class recall averaged over the classes present in the labels);
- mAP (average precision per class, as scikit-learn's ``average_precision_score``: the
  non-interpolated sum of ``(R_n - R_{n-1}) P_n`` over distinct score thresholds, averaged over
  classes with at least one positive) for ActivityNet-style data;
- per-class accuracy and the confusion matrix, gathered in :class:`EvalResult`.

The scores come from :mod:`text4vis.engine.loops` (one loop over the views of the test videos).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from text4vis.errors import DataError

__all__ = [
    "EvalResult",
    "average_precision",
    "classification_metrics",
    "confusion_matrix",
    "evaluate_scores",
    "mean_average_precision",
    "mean_class_accuracy",
    "per_class_accuracy",
    "topk_accuracy",
]


def topk_accuracy(scores: Tensor, labels: Tensor, ks: Sequence[int] = (1, 5)) -> dict[int, float]:
    """Share of videos whose label is among the ``k`` highest scores, for each ``k``.

    ``k`` larger than the number of classes is clamped to it (top-5 of 3 classes = 1.0).

    Args:
        scores: ``[N, C]`` logits or probabilities.
        labels: ``[N]`` integer labels in ``[0, C)``.
    """
    if scores.ndim != 2 or labels.ndim != 1 or scores.shape[0] != labels.shape[0]:
        raise ValueError(
            f"expected scores [N, C] and labels [N], got {tuple(scores.shape)} and "
            f"{tuple(labels.shape)}"
        )
    n, c = scores.shape
    if n == 0:
        raise ValueError("no videos to score")
    max_k = min(max(ks), c)
    top = scores.topk(max_k, dim=1).indices  # [N, max_k]
    hits = top == labels[:, None]  # [N, max_k]
    return {k: hits[:, : min(k, c)].any(dim=1).float().mean().item() for k in ks}


def per_class_accuracy(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Recall of every class ``[C]`` (NaN for classes without videos)."""
    counts = torch.bincount(labels, minlength=num_classes).double()
    correct = torch.bincount(labels[predictions == labels], minlength=num_classes).double()
    acc = correct / counts
    acc[counts == 0] = float("nan")
    return acc


def mean_class_accuracy(predictions: Tensor, labels: Tensor, num_classes: int) -> float:
    """Per-class recall averaged over the classes that have at least one video."""
    acc = per_class_accuracy(predictions, labels, num_classes)
    return acc[~torch.isnan(acc)].mean().item()


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``[C, C]`` counts: row = true class, column = predicted class."""
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes
    )


def average_precision(scores: Tensor, positives: Tensor) -> float:
    """Average precision of one class (scikit-learn's definition, ties grouped).

    Args:
        scores: ``[N]`` scores of the class.
        positives: ``[N]`` booleans, True for videos of the class.

    Returns:
        AP in [0, 1], or NaN when there is no positive.
    """
    positives = positives.bool()
    num_pos = int(positives.sum())
    if num_pos == 0:
        return float("nan")
    order = torch.argsort(scores.double(), descending=True, stable=True)
    sorted_scores = scores.double()[order]
    hits = positives[order].double()
    tp = torch.cumsum(hits, 0)
    fp = torch.cumsum(1.0 - hits, 0)
    # Keep the last position of every run of equal scores: one threshold per distinct value.
    last_of_run = torch.ones_like(sorted_scores, dtype=torch.bool)
    last_of_run[:-1] = sorted_scores[1:] != sorted_scores[:-1]
    tp, fp = tp[last_of_run], fp[last_of_run]
    precision = tp / (tp + fp)
    recall = tp / num_pos
    previous_recall = torch.cat([recall.new_zeros(1), recall[:-1]])
    return float(((recall - previous_recall) * precision).sum())


def mean_average_precision(scores: Tensor, targets: Tensor, *, multi_hot: bool = False) -> float:
    """mAP over classes with at least one positive.

    Args:
        scores: ``[N, C]``.
        targets: ``[N]`` integer labels, or with ``multi_hot`` a ``[N, C]`` multi-label 0/1
            matrix.
        multi_hot: the form of ``targets`` (said by the caller, not guessed from its shape).
    """
    num_classes = scores.shape[1]
    if not multi_hot:
        targets = F.one_hot(targets.long(), num_classes)  # [N] -> [N, C]
    if targets.shape != scores.shape:
        raise ValueError(
            f"mAP: targets {tuple(targets.shape)} do not match scores {tuple(scores.shape)}"
        )
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(num_classes)]
    valid = [ap for ap in aps if not math.isnan(ap)]
    if not valid:
        raise DataError("mAP: no class has a positive video")
    return float(np.mean(valid))


def classification_metrics(
    scores: Tensor, labels: Tensor, num_classes: int | None = None, *, multilabel: bool = False
) -> dict[str, float]:
    """top-1, top-5, mean class accuracy (and mAP when ``multilabel``), as fractions in [0, 1]."""
    num_classes = scores.shape[1] if num_classes is None else num_classes
    top = topk_accuracy(scores, labels, (1, 5))
    predictions = scores.argmax(dim=1)
    metrics = {
        "top1": top[1],
        "top5": top[5],
        "mean_class_acc": mean_class_accuracy(predictions, labels, num_classes),
        "num_videos": int(labels.numel()),
    }
    if multilabel:
        metrics["mAP"] = mean_average_precision(scores, labels)
    return metrics


@dataclass
class EvalResult:
    """Scores and metrics of an evaluation.

    Attributes:
        indices: ``[N]`` dataset indices of the videos (sorted).
        scores: ``[N, C]`` aggregated scores.
        labels: ``[N]`` true labels.
        metrics: ``top1``, ``top5``, ``mean_class_acc`` (+ ``mAP``), fractions in [0, 1].
        per_class: ``[C]`` per-class accuracy (NaN for classes without videos).
        confusion: ``[C, C]`` counts (row = truth).
    """

    indices: Tensor
    scores: Tensor
    labels: Tensor
    metrics: dict[str, float]
    per_class: Tensor
    confusion: Tensor

    def to_dict(self) -> dict[str, Any]:
        """The metrics and per-class accuracies as JSON values (NaN for classes without videos
        becomes None); the score matrix is left out."""
        return {
            **self.metrics,
            "per_class": [None if math.isnan(v) else float(v) for v in self.per_class.tolist()],
        }


def evaluate_scores(
    indices: Tensor, scores: Tensor, labels: Tensor, *, multilabel: bool = False
) -> EvalResult:
    """Metrics, per-class accuracy and confusion matrix of gathered per-video scores."""
    num_classes = scores.shape[1]
    predictions = scores.argmax(dim=1)
    return EvalResult(
        indices=indices,
        scores=scores,
        labels=labels,
        metrics=classification_metrics(scores, labels, num_classes, multilabel=multilabel),
        per_class=per_class_accuracy(predictions, labels, num_classes),
        confusion=confusion_matrix(predictions, labels, num_classes),
    )

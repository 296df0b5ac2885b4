"""Evaluation: metrics, multi-view aggregation, distributed gathering and protocols.

Metrics work on per-video scores ``[N, C]`` and integer labels ``[N]``:

- top-k accuracy (a video counts when its label is among the k highest scores);
- mean class accuracy (per-class recall averaged over the classes present in the labels);
- mAP (average precision per class, as scikit-learn's ``average_precision_score``: the
  non-interpolated sum of ``(R_n - R_{n-1}) P_n`` over distinct score thresholds, averaged over
  classes with at least one positive) for ActivityNet-style data;
- per-class accuracy and the confusion matrix.

A test video gives ``V = clips x crops`` views; their logits ``[V, C]`` are averaged as softmax
probabilities (default, as the paper's code) or as raw logits. Results are keyed by the
dataset index of the video, gathered from every rank and merged by index, so that a video is
counted exactly once whatever the number of processes and the order of batches.

Zero-shot protocols score cached video embeddings against a text classifier restricted to a
class subset: ``full`` (all classes), ``half`` (ten seeded half-class splits, mean and standard
deviation) and ``splits`` (given class-subset files, e.g. Kinetics-600's three splits).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from text4vis import distributed

__all__ = [
    "EvalResult",
    "aggregate_views",
    "autocast_context",
    "average_precision",
    "classification_metrics",
    "confusion_matrix",
    "evaluate_scores",
    "extract_features",
    "gather_by_index",
    "mean_average_precision",
    "mean_class_accuracy",
    "parse_views",
    "per_class_accuracy",
    "predict_scores",
    "subset_protocol",
    "summarize_protocol",
    "topk_accuracy",
    "zero_shot_logits",
]

logger = logging.getLogger("text4vis.engine.evaluate")

AGGREGATIONS = ("prob", "logit")
VIEW_CROPS = (1, 3)  # crops per clip the evaluation transform makes (centre / left-centre-right)


# ----------------------------------------------------------------------------------------------
# Metrics
# ----------------------------------------------------------------------------------------------


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


def mean_average_precision(scores: Tensor, targets: Tensor) -> float:
    """mAP over classes with at least one positive.

    Args:
        scores: ``[N, C]``.
        targets: ``[N]`` integer labels or ``[N, C]`` multi-label 0/1 matrix.
    """
    num_classes = scores.shape[1]
    if targets.ndim == 1:
        targets = F.one_hot(targets.long(), num_classes)  # [N, C]
    aps = [average_precision(scores[:, c], targets[:, c]) for c in range(num_classes)]
    valid = [ap for ap in aps if not math.isnan(ap)]
    if not valid:
        raise ValueError("mAP: no class has a positive video")
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


# ----------------------------------------------------------------------------------------------
# Views, gathering
# ----------------------------------------------------------------------------------------------


def parse_views(text: str, source: str = "views") -> tuple[int, int]:
    """``"4x3"`` -> ``(4 clips, 3 crops)``.

    Args:
        text: ``CLIPSxCROPS``; CROPS is 1 (centre crop) or 3 (left, centre, right).
        source: where the value came from, named in errors (``--views``, ``eval.views``).

    Raises:
        ValueError: not ``CLIPSxCROPS`` with positive numbers, or an unsupported crop count.
    """
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() and int(p) > 0 for p in parts):
        raise ValueError(f"{source} {text!r} must look like CLIPSxCROPS, e.g. 1x1 or 4x3")
    clips, crops = int(parts[0]), int(parts[1])
    if crops not in VIEW_CROPS:
        raise ValueError(
            f"{source} {text!r}: CROPS must be 1 (centre crop) or 3 (left, centre, right), got "
            f"{crops}; e.g. {clips}x1 or {clips}x3"
        )
    return clips, crops


def aggregate_views(logits: Tensor, mode: str = "prob") -> Tensor:
    """Average the views of each video.

    Args:
        logits: ``[B, V, C]``.
        mode: ``"prob"`` (mean of softmax probabilities) or ``"logit"`` (mean of logits).

    Returns:
        ``[B, C]`` scores.
    """
    if mode == "prob":
        return logits.float().softmax(dim=-1).mean(dim=1)
    if mode == "logit":
        return logits.float().mean(dim=1)
    raise ValueError(f"eval.aggregate {mode!r}: choose one of {list(AGGREGATIONS)}")


def gather_by_index(
    indices: Tensor, values: Tensor, labels: Tensor, *, expected: int | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Collect ``(index, values, label)`` rows from every rank and merge them by video index.

    Rows with the same index (a video split over ranks or batches) are averaged; the result is
    sorted by index and identical on every rank.

    Args:
        indices: ``[M]`` dataset indices of the rows this rank computed.
        values: ``[M, ...]`` per-row values (scores or features).
        labels: ``[M]`` (or ``[M, C]``) labels.
        expected: number of distinct videos there must be (the dataset length); checked.

    Raises:
        RuntimeError: a missing video, or one video with two different labels.
    """
    local = (indices.cpu(), values.detach().float().cpu(), labels.cpu())
    if distributed.is_distributed():
        import torch.distributed as dist

        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, local)
    else:
        parts = [local]
    all_indices = torch.cat([p[0] for p in parts]).long()
    all_values = torch.cat([p[1] for p in parts])
    all_labels = torch.cat([p[2] for p in parts])
    unique, inverse = torch.unique(all_indices, sorted=True, return_inverse=True)
    counts = torch.bincount(inverse, minlength=unique.numel()).to(all_values.dtype)
    summed = torch.zeros((unique.numel(), *all_values.shape[1:]), dtype=all_values.dtype)
    summed.index_add_(0, inverse, all_values)
    merged = summed / counts.reshape(-1, *([1] * (all_values.ndim - 1)))
    merged_labels = torch.empty((unique.numel(), *all_labels.shape[1:]), dtype=all_labels.dtype)
    merged_labels[inverse] = all_labels
    if not torch.equal(merged_labels[inverse], all_labels):
        raise RuntimeError("a video index appears with two different labels across ranks/batches")
    if expected is not None and unique.numel() != expected:
        raise RuntimeError(
            f"evaluation saw {unique.numel()} distinct videos, the dataset has {expected}; "
            "the evaluation sampler must give every video to exactly one rank"
        )
    return unique, merged, merged_labels


def autocast_context(device: torch.device, precision: str) -> Any:
    """``torch.autocast`` for ``precision`` (bf16 | fp16 | fp32) on ``device``."""
    if precision == "fp32":
        return nullcontext()
    dtypes = {"bf16": torch.bfloat16, "fp16": torch.float16}
    if precision not in dtypes:
        raise ValueError(f"train.precision {precision!r}: choose bf16, fp16 or fp32")
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("fp16 autocast needs a GPU; use train.precision=bf16 or fp32 on the CPU")
    return torch.autocast(device_type=device.type, dtype=dtypes[precision])


def _progress(iterable: Iterable[Any], desc: str, enabled: bool, total: int | None) -> Any:
    if not (enabled and distributed.is_main_process()):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True, leave=False)


def _loader_length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


@torch.no_grad()
def predict_scores(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    device: torch.device,
    precision: str = "fp32",
    aggregate: str = "prob",
    expected: int | None = None,
    progress: bool = False,
    skipped: list[tuple[int, str, str]] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-video scores of a model over a loader, gathered from every rank.

    Each batch holds ``video [B, V, T, 3, H, W]`` (or ``[B, T, 3, H, W]`` for one view),
    ``label [B]``, ``index [B]`` and optionally ``skipped`` (unreadable videos the dataset left
    out with ``data.skip_unreadable``): these are gathered from every rank, logged, appended to
    ``skipped`` when given and not counted in ``expected``.

    Returns:
        ``(indices [N], scores [N, C], labels [N])`` sorted by index, on the CPU.
    """
    if aggregate not in AGGREGATIONS:
        raise ValueError(f"eval.aggregate {aggregate!r}: choose one of {list(AGGREGATIONS)}")
    was_training = model.training
    model.eval()
    indices, scores, labels = [], [], []
    local_skipped: list[tuple[int, str, str]] = []
    try:
        for batch in _progress(loader, "eval", progress, _loader_length(loader)):
            local_skipped.extend(batch.get("skipped", []))
            video = batch["video"].to(device, non_blocking=True)
            if video.ndim == 5:
                video = video[:, None]  # [B, 1, T, 3, H, W]
            b, v = video.shape[:2]
            if b == 0:  # every video of the batch was unreadable and skipped
                continue
            with autocast_context(device, precision):
                logits = model(video.flatten(0, 1))  # [B*V, C]
            logits = logits.float().reshape(b, v, -1)  # [B, V, C]
            scores.append(aggregate_views(logits, aggregate).cpu())
            indices.append(torch.as_tensor(batch["index"]).cpu())
            labels.append(torch.as_tensor(batch["label"]).cpu())
    finally:
        model.train(was_training)
    if scores:
        local = (torch.cat(indices), torch.cat(scores), torch.cat(labels))
    else:  # this rank got no videos (more ranks than videos)
        num_classes = _num_classes(model)
        local = (torch.zeros(0, dtype=torch.long), torch.zeros(0, num_classes), torch.zeros(0))
        local = (local[0], local[1], local[2].long())
    expected = _account_skipped(local_skipped, expected, skipped)
    return gather_by_index(*local, expected=expected)


def _account_skipped(
    local: list[tuple[int, str, str]],
    expected: int | None,
    out: list[tuple[int, str, str]] | None,
) -> int | None:
    """Gather skipped videos from every rank, log them, return the reduced expected count."""
    if distributed.is_distributed():
        import torch.distributed as dist

        parts: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(parts, local)
        every = sorted({tuple(item) for part in parts for item in part})
    else:
        every = sorted({tuple(item) for item in local})
    if every:
        logger.warning(
            "%d unreadable videos were skipped and are not counted, e.g. %s (%s)",
            len(every),
            every[0][1],
            every[0][2],
        )
    if out is not None:
        out.extend(every)  # type: ignore[arg-type]
    return None if expected is None else expected - len(every)


def _num_classes(model: nn.Module) -> int:
    bare = getattr(model, "module", model)
    names = getattr(bare, "class_names", None)
    if names is None:
        raise RuntimeError("a rank got no videos and the model does not say its class count")
    return len(names)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    device: torch.device,
    precision: str = "fp32",
    expected: int | None = None,
    progress: bool = False,
    skipped: list[tuple[int, str, str]] | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Video embeddings of a loader, gathered from every rank (``skipped`` as in
    :func:`predict_scores`).

    The views of a video are embedded with ``model.encode_video``, L2-normalised and averaged
    (the mean is not re-normalised; scoring normalises).

    Returns:
        ``(indices [N], features [N, D], labels [N])`` sorted by index, on the CPU.
    """
    bare: Any = getattr(model, "module", model)
    was_training = bare.training
    bare.eval()
    indices, feats, labels = [], [], []
    local_skipped: list[tuple[int, str, str]] = []
    try:
        for batch in _progress(loader, "features", progress, _loader_length(loader)):
            local_skipped.extend(batch.get("skipped", []))
            video = batch["video"].to(device, non_blocking=True)
            if video.ndim == 5:
                video = video[:, None]  # [B, 1, T, 3, H, W]
            b, v = video.shape[:2]
            if b == 0:
                continue
            with autocast_context(device, precision):
                emb = bare.encode_video(video.flatten(0, 1))  # [B*V, D]
            emb = F.normalize(emb.float(), dim=-1).reshape(b, v, -1).mean(dim=1)  # [B, D]
            feats.append(emb.cpu())
            indices.append(torch.as_tensor(batch["index"]).cpu())
            labels.append(torch.as_tensor(batch["label"]).cpu())
    finally:
        bare.train(was_training)
    if feats:
        local = (torch.cat(indices), torch.cat(feats), torch.cat(labels))
    else:
        dim = int(getattr(bare, "embed_dim", 0))
        local = (
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, dim),
            torch.zeros(0, dtype=torch.long),
        )
    expected = _account_skipped(local_skipped, expected, skipped)
    return gather_by_index(*local, expected=expected)


# ----------------------------------------------------------------------------------------------
# Results and protocols
# ----------------------------------------------------------------------------------------------


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


def zero_shot_logits(features: Tensor, classifier: Tensor, logit_scale: float = 100.0) -> Tensor:
    """``logit_scale * cos(features, classifier)``: ``[N, D] x [C, D] -> [N, C]``."""
    return (
        logit_scale
        * F.normalize(features.float(), dim=-1)
        @ F.normalize(classifier.float(), dim=-1).T
    )


def subset_protocol(
    features: Tensor,
    labels: Tensor,
    classifier: Tensor,
    class_subsets: Sequence[Sequence[int]],
    *,
    logit_scale: float = 100.0,
) -> list[dict[str, float]]:
    """Zero-shot metrics on each class subset.

    For a subset, only the videos whose label is in it are scored, against only its classes'
    rows of the classifier (labels are re-indexed into the subset).

    Args:
        features: ``[N, D]`` video embeddings.
        labels: ``[N]`` labels in the full class space.
        classifier: ``[C, D]`` text embeddings of all classes.
        class_subsets: lists of class ids.

    Returns:
        One metrics dict per subset (``top1``, ``top5``, ``mean_class_acc``, ``num_videos``,
        ``num_classes``).
    """
    results = []
    for subset in class_subsets:
        subset_t = torch.as_tensor(list(subset), dtype=torch.long)
        if subset_t.numel() == 0 or subset_t.unique().numel() != subset_t.numel():
            raise ValueError("a class subset must be non-empty and without repeats")
        remap = torch.full((classifier.shape[0],), -1, dtype=torch.long)
        remap[subset_t] = torch.arange(subset_t.numel())
        keep = remap[labels] >= 0  # [N]
        if not keep.any():
            raise ValueError(f"no video has a label in the class subset {list(subset)[:10]}...")
        logits = zero_shot_logits(features[keep], classifier[subset_t], logit_scale)
        metrics = classification_metrics(logits, remap[labels[keep]], subset_t.numel())
        metrics["num_classes"] = int(subset_t.numel())
        results.append(metrics)
    return results


def summarize_protocol(results: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean and (population) standard deviation of every metric over splits."""
    summary: dict[str, float] = {"num_splits": len(results)}
    for key in results[0]:
        values = np.array([r[key] for r in results], dtype=np.float64)
        summary[f"{key}_mean"] = float(values.mean())
        summary[f"{key}_std"] = float(values.std())
    return summary

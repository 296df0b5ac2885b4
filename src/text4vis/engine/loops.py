"""The one loop over the test views of videos, and what turns its output into per-video results.

A test video gives ``V = clips x crops`` views (``"CLIPSxCROPS"``, :func:`parse_views`). The loop
(:func:`iterate_views`) runs a model over every view of every batch of a loader and yields, per
batch, either the embeddings ``[B, V, D]`` (``encode_video``) or the logits ``[B, V, C]`` (the
model's forward, where the scaled cosine lives); the caller chooses which. Evaluation
(:func:`predict_scores`), feature extraction (:func:`extract_features`) and
:class:`~text4vis.predict.Predictor` are all built on it, and all three prepare their model for
the inference precision with :func:`prepare_inference` first.

Results are keyed by the dataset index of the video, gathered from every rank and merged by index
(:func:`gather_by_index`), so that a video is counted exactly once whatever the number of
processes and the order of batches. Views are averaged as softmax probabilities (default, as the
paper's code) or as raw logits (:func:`aggregate_views`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F
from tqdm.auto import tqdm

from text4vis import distributed
from text4vis.config import AGGREGATIONS
from text4vis.errors import ConfigError
from text4vis.models.quantize import quantize_int8
from text4vis.runtime import autocast_context, inference_precision

__all__ = [
    "ViewBatch",
    "aggregate_views",
    "extract_features",
    "gather_by_index",
    "iterate_views",
    "parse_views",
    "predict_scores",
    "prepare_inference",
]

logger = logging.getLogger("text4vis.engine.loops")

VIEW_CROPS = (1, 3)  # crops per clip the evaluation transform makes (centre / left-centre-right)
ViewOutput = Literal["embeddings", "logits"]


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
        raise ConfigError(f"{source} {text!r} must look like CLIPSxCROPS, e.g. 1x1 or 4x3")
    clips, crops = int(parts[0]), int(parts[1])
    if crops not in VIEW_CROPS:
        raise ConfigError(
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
    raise ConfigError(f"eval.aggregate {mode!r}: choose one of {list(AGGREGATIONS)}")


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


@dataclass
class ViewBatch:
    """What :func:`iterate_views` yields for one batch.

    Attributes:
        indices: ``[B]`` dataset indices of the videos.
        labels: ``[B]`` (or ``[B, C]``) labels.
        values: ``[B, V, D]`` embeddings or ``[B, V, C]`` logits of every view, float32 on the
            CPU (embeddings before L2 normalisation).
        skipped: ``(index, path, reason)`` of the batch's unreadable videos (left out).
    """

    indices: Tensor
    labels: Tensor
    values: Tensor
    skipped: list[tuple[int, str, str]] = field(default_factory=list)


def prepare_inference(
    model: nn.Module,
    precision: str | None,
    device: torch.device | str,
    *,
    train_precision: str = "fp32",
) -> tuple[nn.Module, str]:
    """The model to run at ``precision`` and the autocast precision to run it under.

    Args:
        model: an evaluation-mode model on ``device`` (changed in place for ``int8``).
        precision: ``auto``, a name of :data:`text4vis.runtime.INFERENCE_PRECISIONS`, or None
            for ``train_precision`` (see :func:`text4vis.runtime.inference_precision`).
        device: where the model runs.
        train_precision: the precision the model was trained in (``train.precision``).

    Returns:
        ``(model, autocast)``: ``autocast`` (``fp32`` = none, ``bf16`` or ``fp16``) is the
        ``precision`` of :func:`iterate_views`. ``int8`` quantizes the linear layers
        (:func:`text4vis.models.quantize.quantize_int8`) and runs them without autocast.

    Raises:
        text4vis.runtime.PrecisionError: a name unknown or impossible on ``device``.
    """
    name = inference_precision(precision, device, train_precision=train_precision)
    if name == "int8":
        return quantize_int8(model), "fp32"
    return model, name


def iterate_views(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    *,
    output: ViewOutput,
    device: torch.device,
    precision: str = "fp32",
    progress: bool = False,
    desc: str = "eval",
) -> Iterator[ViewBatch]:
    """Run ``model`` over every view of every batch of ``loader`` (in evaluation mode, no grad).

    Each batch holds ``video [B, V, T, 3, H, W]`` (V views per video, one for ``V = 1``),
    ``label [B]``, ``index [B]`` and optionally ``skipped`` (unreadable videos the dataset left
    out with ``data.skip_unreadable``).

    Args:
        model: a video model (``encode_video`` and a forward giving logits), optionally wrapped
            by DDP.
        loader: the batches.
        output: ``"embeddings"`` (``encode_video``) or ``"logits"`` (the forward pass).
        device: where the model runs.
        precision: ``bf16`` | ``fp16`` | ``fp32`` autocast.
        progress: a progress bar on rank 0.
        desc: its label.
    """
    if output not in ("embeddings", "logits"):
        raise ValueError(f"output {output!r}: choose 'embeddings' or 'logits'")
    bare: Any = getattr(model, "module", model)
    forward = bare.encode_video if output == "embeddings" else model
    was_training = model.training
    model.eval()
    try:
        for batch in _progress(loader, desc, progress, _loader_length(loader)):
            skipped = list(batch.get("skipped", []))
            video = batch["video"]
            if video.shape[0] == 0:  # every video of the batch was unreadable and skipped
                yield ViewBatch(
                    torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0), skipped
                )
                continue
            if video.ndim != 6:
                raise ValueError(
                    f"batches must hold video [B, V, T, 3, H, W] (V views per video, as the "
                    f"datasets give), got {tuple(video.shape)}"
                )
            b, v = video.shape[:2]
            video = video.to(device, non_blocking=True)
            with torch.no_grad(), autocast_context(device, precision):
                out = forward(video.flatten(0, 1))  # [B*V, D] or [B*V, C]
            yield ViewBatch(
                torch.as_tensor(batch["index"]).cpu(),
                torch.as_tensor(batch["label"]).cpu(),
                out.float().reshape(b, v, -1).cpu(),  # [B*V, X] -> [B, V, X]
                skipped,
            )
    finally:
        model.train(was_training)


def _gather_views(
    batches: Iterable[ViewBatch],
    per_video: Callable[[Tensor], Tensor],
    empty_width: Callable[[], int],
    expected: int | None,
    skipped: list[tuple[int, str, str]] | None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Reduce each batch's views with ``per_video`` and gather the rows of every rank."""
    indices, values, labels = [], [], []
    local_skipped: list[tuple[int, str, str]] = []
    for batch in batches:
        local_skipped.extend(batch.skipped)
        if batch.indices.numel() == 0:
            continue
        values.append(per_video(batch.values))
        indices.append(batch.indices)
        labels.append(batch.labels)
    if values:
        local = (torch.cat(indices), torch.cat(values), torch.cat(labels))
    else:  # this rank got no videos (more ranks than videos)
        local = (
            torch.zeros(0, dtype=torch.long),
            torch.zeros(0, empty_width()),
            torch.zeros(0, dtype=torch.long),
        )
    expected = _account_skipped(local_skipped, expected, skipped)
    return gather_by_index(*local, expected=expected)


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

    Views are averaged with :func:`aggregate_views`. Unreadable videos the dataset skipped are
    gathered from every rank, logged, appended to ``skipped`` when given and not counted in
    ``expected``.

    Returns:
        ``(indices [N], scores [N, C], labels [N])`` sorted by index, on the CPU.
    """
    if aggregate not in AGGREGATIONS:
        raise ConfigError(f"eval.aggregate {aggregate!r}: choose one of {list(AGGREGATIONS)}")
    batches = iterate_views(
        model, loader, output="logits", device=device, precision=precision, progress=progress
    )
    return _gather_views(
        batches,
        lambda logits: aggregate_views(logits, aggregate),  # [B, V, C] -> [B, C]
        lambda: _num_classes(model),
        expected,
        skipped,
    )


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
    batches = iterate_views(
        model,
        loader,
        output="embeddings",
        device=device,
        precision=precision,
        progress=progress,
        desc="features",
    )
    return _gather_views(
        batches,
        lambda emb: F.normalize(emb, dim=-1).mean(dim=1),  # [B, V, D] -> [B, D]
        lambda: int(getattr(getattr(model, "module", model), "embed_dim", 0)),
        expected,
        skipped,
    )


def _progress(iterable: Iterable[Any], desc: str, enabled: bool, total: int | None) -> Any:
    if not (enabled and distributed.is_main_process()):
        return iterable

    return tqdm(iterable, desc=desc, total=total, dynamic_ncols=True, leave=False)


def _loader_length(loader: Any) -> int | None:
    try:
        return len(loader)
    except TypeError:
        return None


def _account_skipped(
    local: list[tuple[int, str, str]],
    expected: int | None,
    out: list[tuple[int, str, str]] | None,
) -> int | None:
    """Gather skipped videos from every rank, log them, return the reduced expected count."""
    if distributed.is_distributed():
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

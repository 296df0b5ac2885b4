"""Zero-shot recognition of new classes, and the protocols that score it (the paper's table 8).

Cached video embeddings are scored against a text classifier of the new class names (built by
:func:`text4vis.models.zero_shot.build_zero_shot_classifier`) restricted to a class subset:
``full`` (all classes), ``half`` (``eval.num_splits`` seeded half-class splits, mean and standard
deviation) and ``splits`` (given class-subset files, e.g. Kinetics-600's three splits).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from text4vis.config import PROTOCOLS, Config
from text4vis.data.annotations import read_annotations
from text4vis.data.few_shot import class_subset_ids, half_class_splits
from text4vis.data.labels import read_labels
from text4vis.engine.features import FeatureSet, extract_checkpoint_features, load_features
from text4vis.engine.metrics import classification_metrics
from text4vis.errors import ConfigError, DataError
from text4vis.models.factory import load_saved_model
from text4vis.models.video import scaled_cosine_logits
from text4vis.models.zero_shot import (
    build_zero_shot_classifier,
    saved_text_encoder,
    zero_shot_templates,
)

__all__ = [
    "ZeroShotResult",
    "subset_protocol",
    "summarize_protocol",
    "zero_shot",
]

logger = logging.getLogger("text4vis.engine.zero_shot")


@dataclass
class ZeroShotResult:
    """The result of :func:`zero_shot`; accuracies are fractions in [0, 1].

    Attributes:
        protocol: ``full`` | ``half`` | ``splits``.
        splits: metrics of every class subset (``top1``, ``top5``, ``mean_class_acc``,
            ``num_videos``, ``num_classes``).
        summary: ``<metric>_mean`` / ``<metric>_std`` over the subsets and ``num_splits``.
        class_subsets: the class ids of every subset.
        num_videos: videos scored.
        num_classes: classes of the label file.
    """

    protocol: str
    splits: list[dict[str, float]]
    summary: dict[str, float]
    class_subsets: list[list[int]]
    num_videos: int
    num_classes: int

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written to ``zeroshot.json``."""
        return dataclasses.asdict(self)


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
            raise DataError("a class subset must be non-empty and without repeats")
        remap = torch.full((classifier.shape[0],), -1, dtype=torch.long)
        remap[subset_t] = torch.arange(subset_t.numel())
        keep = remap[labels] >= 0  # [N]
        if not keep.any():
            raise DataError(f"no video has a label in the class subset {list(subset)[:10]}...")
        weight = F.normalize(classifier[subset_t].float(), dim=-1)  # [C_s, D]
        logits = scaled_cosine_logits(features[keep].float(), weight, logit_scale)  # [N_s, C_s]
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


def _check_cached_features(
    cached: FeatureSet,
    features: str | Path,
    cfg: Config,
    checkpoint: str | Path,
    num_classes: int,
) -> None:
    """Cached features must be those of the test list (every video, same paths and labels).

    A features file of another list (``--split train``), of a ``--per-class`` subset or of an
    edited list would otherwise be scored silently in place of the test videos.
    """
    list_file = cfg.data.test_list or cfg.data.val_list
    if not list_file:
        return  # nothing to compare with; the features are all there is
    records = read_annotations(list_file, num_classes=num_classes)
    where = f"{cached.metadata.get('list_file', '?')} (split {cached.metadata.get('split', '?')})"
    fix = (
        f"extract the features of {list_file} with `text4vis features CONFIG --checkpoint CKPT "
        "--out FILE` (default --split test, no --per-class)"
    )
    n = int(cached.labels.numel())
    complete = n == len(records) or (cfg.data.skip_unreadable and n < len(records))
    if not complete:
        raise DataError(
            f"{features} holds {n} videos of {where}, but the test list {list_file} has "
            f"{len(records)}; {fix}"
        )
    indices = cached.indices.tolist()
    for row, index in enumerate(indices):
        ok = 0 <= index < len(records) and int(cached.labels[row]) == records[index].label
        if ok and cached.paths:
            ok = cached.paths[row] == records[index].path
        if not ok:
            entry = records[index].path if 0 <= index < len(records) else "no such entry"
            got = cached.paths[row] if cached.paths else f"label {int(cached.labels[row])}"
            raise DataError(
                f"{features}: row {row} is {got!r} (entry {index} of {where}), but entry "
                f"{index} of the test list {list_file} is {entry!r}; {fix}"
            )
    if n < len(records):
        logger.warning(
            "%s holds %d of the %d videos of %s (unreadable ones skipped)",
            features,
            n,
            len(records),
            list_file,
        )
    source = cached.metadata.get("checkpoint")
    if source is not None and Path(str(source)).resolve() != Path(checkpoint).resolve():
        logger.warning(
            "%s was extracted with %s, not %s: the classifier and the video embeddings come "
            "from different models unless these are the same model",
            features,
            source,
            checkpoint,
        )


def zero_shot(
    cfg: Config,
    checkpoint: str | Path,
    *,
    protocol: str | None = None,
    features: str | Path | None = None,
    split_files: Sequence[str] | None = None,
    views: str | None = None,
    precision: str | None = None,
) -> ZeroShotResult:
    """Zero-shot recognition of ``data.labels`` classes with a text classifier of their names.

    Args:
        cfg: the config (``data.labels`` / ``test_list`` name the new classes and videos;
            ``eval.protocol``, ``eval.num_splits``, ``eval.split_files``, ``eval.features`` are
            the defaults of the arguments below).
        checkpoint: the trained model.
        protocol: ``full`` (all classes), ``half`` (``eval.num_splits`` seeded half-class splits,
            mean and std) or ``splits`` (one class subset per label file, mean and std).
        features: cached features of the test list (skips decoding).
        split_files: label files of the class subsets for ``splits``.
        views: ``CLIPSxCROPS`` when features are extracted here.
        precision: inference precision when features are extracted here (``auto`` or a name
            of :data:`text4vis.runtime.INFERENCE_PRECISIONS`; default ``train.precision``).

    Returns:
        The per-subset metrics and their summary.
    """
    protocol = protocol or cfg.eval.protocol
    if protocol not in PROTOCOLS:
        raise ConfigError(f"--protocol {protocol!r}: choose one of {list(PROTOCOLS)}")
    if not cfg.data.labels:
        raise ConfigError("data.labels is empty; set it to the label CSV of the classes to test")
    class_names = read_labels(cfg.data.labels)
    # The class subsets first: a bad protocol fails before any video is decoded.
    if protocol == "full":
        subsets = [list(range(len(class_names)))]
    elif protocol == "half":
        subsets = half_class_splits(len(class_names), cfg.eval.num_splits)
    else:
        files = list(split_files or cfg.eval.split_files)
        if not files:
            raise ConfigError(
                "--protocol splits needs class-subset label files: --split-file FILE (repeat) "
                "or eval.split_files"
            )
        subsets = [class_subset_ids(f, class_names) for f in files]
    features = features or cfg.eval.features or None
    if features:
        cached = load_features(features)
        cached_names = cached.metadata.get("class_names")
        if cached_names is not None and list(cached_names) != class_names:
            raise DataError(
                f"{features} was extracted with other class labels than {cfg.data.labels}; "
                "extract features of this list with `text4vis features`"
            )
        _check_cached_features(cached, features, cfg, checkpoint, len(class_names))
        feature_set = cached
    else:
        feature_set = extract_checkpoint_features(cfg, checkpoint, views=views, precision=precision)
    saved = load_saved_model(checkpoint)
    templates = zero_shot_templates(saved.config.model)
    classifier = build_zero_shot_classifier(saved_text_encoder(saved), class_names, templates)
    scale = float(feature_set.metadata.get("logit_scale", 100.0))
    per_split = subset_protocol(
        feature_set.features, feature_set.labels, classifier, subsets, logit_scale=scale
    )
    return ZeroShotResult(
        protocol=protocol,
        splits=per_split,
        summary=summarize_protocol(per_split),
        class_subsets=[list(s) for s in subsets],
        num_videos=int(feature_set.labels.numel()),
        num_classes=len(class_names),
    )

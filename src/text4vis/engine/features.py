"""Cached video embeddings of a list (``text4vis features``), for zero-shot and LDA.

Features files (safetensors) hold ``features [N, D]`` (float32, mean of the L2-normalised
embeddings of a video's views), ``labels [N]`` and ``indices [N]`` (int64, positions in the list)
and string metadata: ``format`` = ``text4vis-features``, ``paths`` (JSON list, the video path of
each row), ``class_names`` (JSON list), ``list_file``, ``views``, ``checkpoint``, ``logit_scale``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from text4vis import distributed as dist_utils
from text4vis.config import Config
from text4vis.data.annotations import read_annotations
from text4vis.data.dataset import build_dataset
from text4vis.data.labels import read_labels
from text4vis.data.loaders import build_loader
from text4vis.engine.evaluate import with_views
from text4vis.engine.loops import extract_features, prepare_inference
from text4vis.errors import ConfigError, DataError, MissingFileError
from text4vis.models.factory import build_feature_model, load_model

__all__ = [
    "FEATURES_FORMAT",
    "FeatureSet",
    "extract_checkpoint_features",
    "load_features",
    "per_class_subset",
    "save_features",
]

FEATURES_FORMAT = "text4vis-features"


@dataclass
class FeatureSet:
    """Cached video embeddings of a list.

    Attributes:
        features: ``[N, D]`` float32.
        labels: ``[N]`` int64.
        indices: ``[N]`` int64 positions in the list file.
        paths: video path of every row.
        metadata: the remaining metadata (class names, list file, views, checkpoint, scale).
    """

    features: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor
    paths: list[str]
    metadata: dict[str, Any]


def save_features(feature_set: FeatureSet, path: str | Path) -> Path:
    """Write a features file (format in the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FEATURES_FORMAT, "paths": json.dumps(feature_set.paths)}
    for key, value in feature_set.metadata.items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    tensors = {
        "features": feature_set.features.float().contiguous(),
        "labels": feature_set.labels.long().contiguous(),
        "indices": feature_set.indices.long().contiguous(),
    }
    save_file(tensors, str(path), metadata=meta)
    return path


def load_features(path: str | Path) -> FeatureSet:
    """Read a features file written by :func:`save_features`.

    Raises:
        MissingFileError: no file.
        Text4VisError: not a text4vis features file.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(
            f"features file {path} does not exist; write it with `text4vis features`"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as exc:
        raise DataError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != FEATURES_FORMAT or not {"features", "labels"} <= set(tensors):
        raise DataError(
            f"{path}: not a features file written by `text4vis features` (needs tensors "
            f"'features' and 'labels' and format={FEATURES_FORMAT})"
        )
    paths = json.loads(meta.pop("paths", "[]"))
    meta.pop("format", None)
    decoded: dict[str, Any] = {}
    for key, value in meta.items():
        try:
            decoded[key] = json.loads(value)
        except json.JSONDecodeError:
            decoded[key] = value
    n = tensors["features"].shape[0]
    indices = tensors.get("indices", torch.arange(n))
    return FeatureSet(
        tensors["features"].float(), tensors["labels"].long(), indices, paths, decoded
    )


def per_class_subset(labels: Sequence[int], per_class: int, seed: int) -> list[int]:
    """Up to ``per_class`` positions of every class, chosen with ``seed`` (sorted).

    Classes with fewer clips keep all of them (the paper's LDA used 60 clips per class).
    """
    labels_array = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in np.unique(labels_array):
        members = np.flatnonzero(labels_array == label)
        take = min(per_class, len(members))
        chosen.extend(int(i) for i in rng.choice(members, size=take, replace=False))
    return sorted(chosen)


def extract_checkpoint_features(
    cfg: Config,
    checkpoint: str | Path | None,
    *,
    split: str = "test",
    views: str | None = None,
    per_class: int = 0,
    seed: int = 0,
    precision: str | None = None,
) -> FeatureSet:
    """Video embeddings of a list with a trained (or zero-shot) model.

    Args:
        cfg: the config; ``split`` chooses ``data.train_list`` / ``val_list`` / ``test_list``.
        checkpoint: model checkpoint or folder; None embeds with the untrained model of
            ``cfg.model`` (its ``model.pretrained`` weights), as the paper's LDA needs.
        split: ``train`` (e.g. for LDA), ``val`` or ``test``. Training clips are read with the
            evaluation transform (centre clip, centre crop), never augmented.
        views: ``CLIPSxCROPS`` (default ``eval.views``).
        per_class: keep at most this many clips per class (0 = all), chosen with ``seed``.
        seed: seed of the per-class choice.
        precision: ``auto`` or a name of :data:`text4vis.runtime.INFERENCE_PRECISIONS` (e.g.
            ``int8`` on the CPU); None runs in ``train.precision``.
    """
    cfg = with_views(cfg, views)
    list_file = {"train": cfg.data.train_list, "val": cfg.data.val_list}.get(
        split, cfg.data.test_list or cfg.data.val_list
    )
    if not list_file:
        raise ConfigError(f"no list file for split {split!r}; set data.{split}_list")
    class_names = read_labels(cfg.data.labels) if cfg.data.labels else None
    records = read_annotations(list_file, num_classes=len(class_names) if class_names else None)
    chosen = list(range(len(records)))
    if per_class > 0:
        chosen = per_class_subset([r.label for r in records], per_class, seed)
    subset = [records[i] for i in chosen]
    root = Path(cfg.data.root) if cfg.data.root else Path(list_file).resolve().parent
    # Records are given explicitly, so their paths must be rooted like the list file's.
    rooted_cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(root)))
    with dist_utils.process_group(cfg.run.device) as device:
        if checkpoint is None:
            model = build_feature_model(cfg, class_names).to(device).eval()
        else:
            model = load_model(checkpoint, device)
        dataset = build_dataset(rooted_cfg, "test", records=subset, class_names=class_names)
        loader = build_loader(dataset, rooted_cfg, "test", seed=cfg.train.seed)
        model, autocast = prepare_inference(
            model, precision, device, train_precision=cfg.train.precision
        )
        indices, features, labels = extract_features(
            model,
            loader,
            device=device,
            precision=autocast,
            expected=len(dataset),
            progress=cfg.run.progress,
        )
    list_positions = torch.tensor([chosen[i] for i in indices.tolist()], dtype=torch.long)
    return FeatureSet(
        features=features,
        labels=labels.long(),
        indices=list_positions,
        paths=[records[i].path for i in list_positions.tolist()],
        metadata={
            "class_names": list(class_names) if class_names else list(model.class_names),
            "list_file": str(list_file),
            "split": split,
            "views": cfg.eval.views,
            "checkpoint": str(checkpoint)
            if checkpoint is not None
            else f"pretrained:{cfg.model.pretrained}",
            "logit_scale": float(model.logit_scale.detach().exp()),
            "per_class": per_class,
        },
    )

"""Evaluation runs behind the ``eval``, ``features`` and ``zeroshot`` commands.

Each function works in one process or under ``torchrun`` (every rank decodes its share of the
list; results are gathered by video index) and returns plain results; the commands only parse
arguments, call these and print.

A ``checkpoint`` is either a training checkpoint (``.pt`` written by ``train``: the model is
rebuilt from the config stored inside and its weights loaded) or a folder written by
``save_pretrained`` (``<run>/model``).

Features files (safetensors) hold ``features [N, D]`` (float32, mean of the L2-normalised
embeddings of a video's views), ``labels [N]`` and ``indices [N]`` (int64, positions in the list)
and string metadata: ``format`` = ``text4vis-features``, ``paths`` (JSON list, the video path of
each row), ``class_names`` (JSON list), ``list_file``, ``views``, ``checkpoint``, ``logit_scale``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from text4vis.config import Config, config_from_dict, load_config
from text4vis import distributed as dist_utils
from text4vis.engine.evaluate import (
    EvalResult,
    evaluate_scores,
    extract_features,
    parse_views,
    predict_scores,
    subset_protocol,
    summarize_protocol,
)
from text4vis.errors import Text4VisError

if TYPE_CHECKING:
    from text4vis.models.video import VideoRecognizer

__all__ = [
    "FEATURES_FORMAT",
    "FeatureSet",
    "build_zero_shot_classifier",
    "evaluate_checkpoint",
    "extract_checkpoint_features",
    "load_features",
    "load_recognizer",
    "per_class_subset",
    "save_features",
    "with_views",
    "zero_shot",
]

logger = logging.getLogger("text4vis.engine.inference")

FEATURES_FORMAT = "text4vis-features"
PROTOCOLS = ("full", "half", "splits")


def with_views(cfg: Config, views: str | None) -> Config:
    """``cfg`` with ``data.num_clips`` / ``data.num_crops`` set from ``"CLIPSxCROPS"``.

    ``views=None`` uses ``cfg.eval.views``; errors name ``--views`` or ``eval.views``.
    """
    if views:
        clips, crops = parse_views(views, "--views")
    else:
        clips, crops = parse_views(cfg.eval.views, "eval.views")
    data = dataclasses.replace(cfg.data, num_clips=clips, num_crops=crops)
    ev = dataclasses.replace(cfg.eval, views=f"{clips}x{crops}")
    return dataclasses.replace(cfg, data=data, eval=ev)


def load_recognizer(checkpoint: str | Path, device: torch.device | str = "cpu") -> VideoRecognizer:
    """A :class:`~text4vis.models.video.VideoRecognizer` from a ``.pt`` or a saved folder.

    Neither reads the CLIP weights named in ``model.pretrained``: every weight is in the file.

    Raises:
        FileNotFoundError: nothing at ``checkpoint``.
        CheckpointError: a file that is not a complete training checkpoint.
    """
    from text4vis.models.video import VideoRecognizer

    path = Path(checkpoint)
    model: VideoRecognizer
    if path.is_dir():
        model = VideoRecognizer.from_pretrained(path)
    elif path.is_file():
        from text4vis.engine.checkpoint import load_checkpoint, recognizer_from_checkpoint

        # Built from the checkpoint's own tensors: model.pretrained is not loaded.
        model = recognizer_from_checkpoint(load_checkpoint(path), path)
    else:
        raise FileNotFoundError(
            f"checkpoint {path} does not exist; give a .pt written by `train` or a model folder "
            "written by save_pretrained (<run>/model)"
        )
    return model.to(device).eval()


def _eval_precision(cfg: Config, device: torch.device) -> str:
    # fp16 autocast is GPU-only; evaluation on the CPU falls back to fp32 explicitly (logged).
    if device.type == "cpu" and cfg.train.precision == "fp16":
        logger.info("train.precision=fp16 is GPU-only; evaluating in fp32 on the CPU")
        return "fp32"
    return cfg.train.precision


def _test_set(cfg: Config, class_names: Sequence[str]) -> Any:
    from text4vis.data.dataset import build_dataset
    from text4vis.data.loaders import build_loader

    dataset = build_dataset(cfg, "test", class_names=list(class_names))
    loader = build_loader(dataset, cfg, "test", seed=cfg.train.seed)
    return dataset, loader


def evaluate_checkpoint(
    cfg: Config, checkpoint: str | Path, *, views: str | None = None
) -> tuple[EvalResult, list[str]]:
    """Evaluate a trained model on ``data.test_list`` (or ``val_list``) with multi-view testing.

    The label file ``data.labels`` must name the model's classes (for other labels use
    :func:`zero_shot`).

    Returns:
        The result (identical on every rank) and the class names.
    """
    from text4vis.data.annotations import read_labels

    cfg = with_views(cfg, views)
    with dist_utils.process_group(cfg.run.device) as device:
        model = load_recognizer(checkpoint, device)
        class_names = list(model.class_names)
        if cfg.data.labels:
            wanted = read_labels(cfg.data.labels)
            if wanted != class_names:
                raise Text4VisError(
                    f"{cfg.data.labels} names {len(wanted)} classes that differ from the "
                    f"{len(class_names)} classes the model was trained on; use `text4vis "
                    "zeroshot` to evaluate on other labels"
                )
        dataset, loader = _test_set(cfg, class_names)
        skipped: list[tuple[int, str, str]] = []
        indices, scores, labels = predict_scores(
            model,
            loader,
            device=device,
            precision=_eval_precision(cfg, device),
            aggregate=cfg.eval.aggregate,
            expected=len(dataset),
            progress=cfg.run.progress,
            skipped=skipped,
        )
        result = evaluate_scores(indices, scores, labels, multilabel=cfg.eval.multilabel)
        result.metrics["num_skipped"] = len(skipped)
    return result, class_names


# ----------------------------------------------------------------------------------------------
# Features
# ----------------------------------------------------------------------------------------------


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
    from safetensors.torch import save_file

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
        FileNotFoundError: no file.
        Text4VisError: not a text4vis features file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"features file {path} does not exist; write it with `text4vis features`"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as exc:
        raise Text4VisError(f"{path}: not a readable safetensors file ({exc})") from exc
    if meta.get("format") != FEATURES_FORMAT or not {"features", "labels"} <= set(tensors):
        raise Text4VisError(
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


def pretrained_feature_model(cfg: Config, class_names: list[str] | None) -> VideoRecognizer:
    """The untrained video model of ``cfg.model`` (its ``model.pretrained`` CLIP weights).

    Used for features of the pre-trained encoder, e.g. the paper's LDA classifier, which is fit
    on embeddings of the CLIP visual encoder before any fine-tuning. Only ``encode_video`` is
    used, so the classifier is a seeded random placeholder (no text encoder or LDA file needed).
    """
    from text4vis.engine.train import build_model

    names = list(class_names) if class_names else ["class"]
    model_cfg = dataclasses.replace(cfg.model, classifier="random", classifier_file="")
    return build_model(dataclasses.replace(cfg, model=model_cfg), names)


def extract_checkpoint_features(
    cfg: Config,
    checkpoint: str | Path | None,
    *,
    split: str = "test",
    views: str | None = None,
    per_class: int = 0,
    seed: int = 0,
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
    """
    from text4vis.data.annotations import read_annotations, read_labels
    from text4vis.data.dataset import build_dataset
    from text4vis.data.loaders import build_loader

    cfg = with_views(cfg, views)
    list_file = {"train": cfg.data.train_list, "val": cfg.data.val_list}.get(
        split, cfg.data.test_list or cfg.data.val_list
    )
    if not list_file:
        raise ValueError(f"no list file for split {split!r}; set data.{split}_list")
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
            model = pretrained_feature_model(cfg, class_names).to(device).eval()
        else:
            model = load_recognizer(checkpoint, device)
        dataset = build_dataset(rooted_cfg, "test", records=subset, class_names=class_names)
        loader = build_loader(dataset, rooted_cfg, "test", seed=cfg.train.seed)
        indices, features, labels = extract_features(
            model,
            loader,
            device=device,
            precision=_eval_precision(cfg, device),
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


# ----------------------------------------------------------------------------------------------
# Zero-shot
# ----------------------------------------------------------------------------------------------


def _model_config_of(checkpoint: str | Path) -> tuple[Config, int | None]:
    """The config a checkpoint was trained with and the image size its backbone was built for.

    A model folder holds the model section in ``config.json`` and, when exported by ``train``,
    the whole training config in ``train_config.yaml``."""
    from text4vis.engine.train import TRAIN_CONFIG_NAME

    path = Path(checkpoint)
    if path.is_dir():
        saved = json.loads((path / "config.json").read_text())
        if (path / TRAIN_CONFIG_NAME).is_file():  # exported by `train`: the whole config
            cfg = load_config(path / TRAIN_CONFIG_NAME)
            cfg = dataclasses.replace(cfg, model=config_from_dict({"model": saved["model"]}).model)
        else:
            cfg = config_from_dict({"model": saved["model"]})
        return cfg, saved.get("image_size")
    from text4vis.engine.checkpoint import load_checkpoint

    cfg = config_from_dict(load_checkpoint(path)["config"])
    return cfg, cfg.data.input_size


def build_zero_shot_classifier(
    checkpoint: str | Path, class_names: Sequence[str], *, seed: int | None = None
) -> torch.Tensor:
    """Text classifier ``W [C, D]`` for new class names with the model's own text side.

    Uses the text encoder, prompt and template of the model's config (a model trained with
    sampled templates or CoOp context is tested with the single template). A randomly initialised
    CLIP text tower (no ``pretrained``) is rebuilt with the training seed, so that it is the
    tower the model was trained with.
    """
    from text4vis.models.backbones import create_clip, embed_dim_of
    from text4vis.models.text import build_text_classifier, build_text_encoder

    cfg, image_size = _model_config_of(checkpoint)
    mc = cfg.model
    # Same seed and image size as build_model: a random tower is rebuilt identically.
    torch.manual_seed(cfg.train.seed if seed is None else seed)
    clip = (
        create_clip(mc.arch, mc.pretrained, image_size=image_size)
        if mc.text_encoder == "clip"
        else None
    )
    embed_dim = embed_dim_of(clip) if clip is not None else None
    if embed_dim is None:
        embed_dim = int(load_recognizer(checkpoint).embed_dim)
    encoder = build_text_encoder(mc, clip_model=clip, embed_dim=embed_dim)
    prompt = mc.prompt
    if prompt == "coop":
        logger.warning(
            "model.prompt=coop: the learned context belongs to the training classes; zero-shot "
            "uses the single template %r",
            mc.template,
        )
        prompt = "template"
    elif prompt == "templates" and mc.template_mode == "sample":
        prompt = "template"  # trained with one sampled template per step: test with the single one
    with torch.no_grad():
        return build_text_classifier(
            encoder,
            list(class_names),
            prompt=prompt,
            template=mc.template,
            templates=mc.template_set,
        )


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
    from text4vis.data.annotations import read_annotations

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
        raise Text4VisError(
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
            raise Text4VisError(
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
) -> dict[str, Any]:
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

    Returns:
        ``{"protocol", "splits": [per-split metrics], "summary": {metric_mean, metric_std},
        "class_subsets": [[ids]], "num_videos", "num_classes"}``; accuracies are fractions.
    """
    from text4vis.data.annotations import read_labels
    from text4vis.data.few_shot import class_subset_ids, half_class_splits

    protocol = protocol or cfg.eval.protocol
    if protocol not in PROTOCOLS:
        raise ValueError(f"--protocol {protocol!r}: choose one of {list(PROTOCOLS)}")
    if not cfg.data.labels:
        raise ValueError("data.labels is empty; set it to the label CSV of the classes to test")
    class_names = read_labels(cfg.data.labels)
    # The class subsets first: a bad protocol fails before any video is decoded.
    if protocol == "full":
        subsets = [list(range(len(class_names)))]
    elif protocol == "half":
        subsets = half_class_splits(len(class_names), cfg.eval.num_splits)
    else:
        files = list(split_files or cfg.eval.split_files)
        if not files:
            raise ValueError(
                "--protocol splits needs class-subset label files: --split-file FILE (repeat) "
                "or eval.split_files"
            )
        subsets = [class_subset_ids(f, class_names) for f in files]
    features = features or cfg.eval.features or None
    if features:
        cached = load_features(features)
        cached_names = cached.metadata.get("class_names")
        if cached_names is not None and list(cached_names) != class_names:
            raise Text4VisError(
                f"{features} was extracted with other class labels than {cfg.data.labels}; "
                "extract features of this list with `text4vis features`"
            )
        _check_cached_features(cached, features, cfg, checkpoint, len(class_names))
        feature_set = cached
    else:
        feature_set = extract_checkpoint_features(cfg, checkpoint, views=views)
    classifier = build_zero_shot_classifier(checkpoint, class_names)
    scale = float(feature_set.metadata.get("logit_scale", 100.0))
    per_split = subset_protocol(
        feature_set.features, feature_set.labels, classifier, subsets, logit_scale=scale
    )
    return {
        "protocol": protocol,
        "splits": per_split,
        "summary": summarize_protocol(per_split),
        "class_subsets": subsets,
        "num_videos": int(feature_set.labels.numel()),
        "num_classes": len(class_names),
    }

"""Evaluation of a trained model on a test list (``text4vis eval``), one process or ``torchrun``.

Every rank decodes its share of the list; the scores are gathered by video index
(:mod:`text4vis.engine.loops`) and scored by :mod:`text4vis.engine.metrics`. The model is anything
:func:`text4vis.models.factory.load_model` reads: a training checkpoint (``.pt`` written by
``train``), a folder written by ``save_pretrained`` (``<run>/model``) or an official checkpoint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from text4vis import distributed as dist_utils
from text4vis.config import Config
from text4vis.data.dataset import build_dataset
from text4vis.data.labels import read_labels
from text4vis.data.loaders import build_loader
from text4vis.engine.loops import parse_views, predict_scores, prepare_inference
from text4vis.engine.metrics import EvalResult, evaluate_scores
from text4vis.errors import DataError
from text4vis.models.factory import load_model

__all__ = ["evaluate_checkpoint", "with_views"]


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


def evaluate_checkpoint(
    cfg: Config,
    checkpoint: str | Path,
    *,
    views: str | None = None,
    precision: str | None = None,
) -> tuple[EvalResult, list[str]]:
    """Evaluate a trained model on ``data.test_list`` (or ``val_list``) with multi-view testing.

    The label file ``data.labels`` must name the model's classes (for other labels use
    :func:`text4vis.engine.zero_shot.zero_shot`). ``precision`` (``--precision``: ``auto`` or a
    name of :data:`text4vis.runtime.INFERENCE_PRECISIONS`, e.g. ``int8`` on the CPU) overrides
    ``train.precision``.

    Returns:
        The result (identical on every rank) and the class names.
    """
    cfg = with_views(cfg, views)
    with dist_utils.process_group(cfg.run.device) as device:
        model = load_model(checkpoint, device)
        class_names = list(model.class_names)
        if cfg.data.labels:
            wanted = read_labels(cfg.data.labels)
            if wanted != class_names:
                raise DataError(
                    f"{cfg.data.labels} names {len(wanted)} classes that differ from the "
                    f"{len(class_names)} classes the model was trained on; use `text4vis "
                    "zeroshot` to evaluate on other labels"
                )
        dataset = build_dataset(cfg, "test", class_names=class_names)
        loader = build_loader(dataset, cfg, "test", seed=cfg.train.seed)
        model, autocast = prepare_inference(
            model, precision, device, train_precision=cfg.train.precision
        )
        skipped: list[tuple[int, str, str]] = []
        indices, scores, labels = predict_scores(
            model,
            loader,
            device=device,
            precision=autocast,
            aggregate=cfg.eval.aggregate,
            expected=len(dataset),
            progress=cfg.run.progress,
            skipped=skipped,
        )
        result = evaluate_scores(indices, scores, labels, multilabel=cfg.eval.multilabel)
        result.metrics["num_skipped"] = len(skipped)
    return result, class_names

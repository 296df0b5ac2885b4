"""A probe of the temporal transformer alone, on the frame embeddings of a fixed image encoder.

In the demo's runs the direction-dependent classes (a motion and its time-reversed partner,
"moving left" / "moving right") stay near a coin flip between the two partners, for every
classifier, with mean pooling (which cannot tell them apart) and with the temporal transformer
(which could). The probe separates the two possible causes:

- the frame embeddings do not carry the order information, or
- the temporal transformer needs more optimizer steps than the demo's schedule gives it.

It embeds every clip's frames once with a fixed image encoder (the demo's stage-0 model, the
validation transform: centre clip, no augmentation), then trains a fresh temporal transformer on
those embeddings against a frozen classifier, with the demo's optimizer and schedule (AdamW,
linear warm-up, cosine decay) stretched over ``epochs``, and reports the validation top-1 after
each epoch, split into direction-dependent and other classes. Without the image encoder in the
loop an epoch costs a few seconds on a CPU (measured on the demo's 800 clips: 12 epochs in about
2 minutes, embedding included, with a second probe beside it on 2 cores), so long schedules are
cheaper to try than with video runs.

:func:`run_probe` does it for a demo report folder; :func:`main` is its command line::

    python -m text4vis_demo.probe REPORT [--classifier text|orthogonal|random]
        [--epochs N] [--seed S] [--run NAME] [--feature-scale X] [--json]

REPORT is a finished ``text4vis demo --out`` folder. It prints the validation top-1 after each
epoch, split into direction-dependent classes and the others. Exit status 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["ProbeEpoch", "frame_embeddings", "main", "run_probe", "train_probe"]


@dataclass(frozen=True)
class ProbeEpoch:
    """Validation top-1 (%) after one epoch of the probe."""

    epoch: int
    train_loss: float  # mean training loss of the epoch
    top1: float  # all validation clips
    direction_top1: float | None  # clips of direction-dependent classes (None: none)
    other_top1: float | None  # clips of the other classes (None: none)


def frame_embeddings(
    model: torch.nn.Module, dataset: Any, batch_size: int = 32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embed the frames of every clip of ``dataset`` with ``model.encode_frames``.

    Args:
        model: a :class:`~text4vis.models.video.VideoRecognizer` (only its image encoder runs).
        dataset: a validation-mode :class:`~text4vis.data.dataset.VideoDataset` (one view).
        batch_size: clips per forward pass.

    Returns:
        ``[N, T, D]`` frame embeddings and ``[N]`` labels.
    """
    model.eval()
    features, labels = [], []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
            video = torch.cat([item["video"] for item in items])  # [B, T, 3, H, W]
            b, t = video.shape[:2]
            frames = model.encode_frames(video.flatten(0, 1), num_frames=t)
            features.append(frames.reshape(b, t, -1).float())
            labels += [int(item["label"]) for item in items]
    return torch.cat(features), torch.tensor(labels)


def _top1(hits: torch.Tensor) -> float | None:
    return 100.0 * float(hits.float().mean()) if len(hits) else None


def train_probe(
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    weight: torch.Tensor,
    *,
    direction_classes: Sequence[int],
    epochs: int,
    batch_size: int = 16,
    lr: float = 1e-3,
    min_lr: float = 1e-5,
    warmup_epochs: float = 1.0,
    weight_decay: float = 0.2,
    logit_scale: float = 100.0,
    layers: int = 2,
    seed: int = 0,
) -> list[ProbeEpoch]:
    """Train a fresh temporal transformer on fixed frame embeddings against a frozen classifier.

    Args:
        train: ``[N, T, D]`` training embeddings and their ``[N]`` labels.
        val: the same for the validation clips.
        weight: the frozen classifier ``[C, D]`` (normalised here).
        direction_classes: class ids whose time-reversed partner is also a class.
        epochs: epochs of ``N // batch_size`` steps; the learning rate warms up linearly for
            ``warmup_epochs`` and decays by a cosine to ``min_lr`` at the end, as in the demo.
        batch_size: clips per step.
        lr: peak learning rate of the trainer's AdamW (:func:`~text4vis.engine.optim.build_optimizer`).
        min_lr: the learning rate at the end.
        warmup_epochs: linear warm-up.
        weight_decay: AdamW's weight decay.
        logit_scale: multiplier of the cosine logits (the model's ``logit_scale.exp()``).
        layers: depth of the temporal transformer.
        seed: initialisation and batch order.

    Returns:
        One :class:`ProbeEpoch` per epoch.

    Raises:
        ValueError: embeddings and labels of different lengths, fewer clips than one batch, or
            a classifier whose width is not the embeddings'.
    """
    from text4vis.engine.acceleration import use_fused_adamw
    from text4vis.engine.optim import LRSchedule, build_optimizer, set_lr
    from text4vis.models.temporal import TemporalTransformer

    (x_train, y_train), (x_val, y_val) = train, val
    if len(x_train) != len(y_train) or len(x_val) != len(y_val):
        raise ValueError("embeddings and labels differ in length")
    if weight.shape[1] != x_train.shape[-1]:
        raise ValueError(
            f"the classifier is {weight.shape[1]}-d, the embeddings {x_train.shape[-1]}-d"
        )
    steps_per_epoch = len(x_train) // batch_size
    schedule = LRSchedule.from_epochs(
        base_lr=lr,
        min_lr=min_lr,
        warmup_epochs=warmup_epochs,
        epochs=epochs,
        steps_per_epoch=steps_per_epoch,  # from_epochs refuses 0 with the fix
    )
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = TemporalTransformer(x_train.shape[-1], layers, max_frames=x_train.shape[1])
    # The trainer's AdamW: no decay on norms, biases and the position embeddings, fused on the CPU.
    optimizer = build_optimizer(
        head,
        None,
        lr=lr,
        weight_decay=weight_decay,
        visual_lr_ratio=1.0,
        fused=use_fused_adamw("auto", torch.device("cpu")),
    )
    rows = F.normalize(weight.float(), dim=-1)
    is_direction = torch.zeros(rows.shape[0], dtype=torch.bool)
    is_direction[list(direction_classes)] = True
    history = []
    for epoch in range(1, epochs + 1):
        head.train()
        order = torch.randperm(len(x_train), generator=generator)
        losses = []
        for i in range(steps_per_epoch):
            set_lr(optimizer, schedule((epoch - 1) * steps_per_epoch + i))
            batch = order[i * batch_size : (i + 1) * batch_size]
            logits = logit_scale * F.normalize(head(x_train[batch]), dim=-1) @ rows.T
            loss = F.cross_entropy(logits, y_train[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        history.append(_validate(head, val, rows, is_direction, epoch, sum(losses) / len(losses)))
    return history


def _validate(
    head: torch.nn.Module,
    val: tuple[torch.Tensor, torch.Tensor],
    rows: torch.Tensor,
    is_direction: torch.Tensor,
    epoch: int,
    train_loss: float,
) -> ProbeEpoch:
    """Validation top-1 of the probe after ``epoch``: all clips, direction-dependent classes
    (``is_direction[label]``) and the others; ``rows`` is the normalised classifier."""
    x_val, y_val = val
    head.eval()
    with torch.no_grad():
        hits = (F.normalize(head(x_val), dim=-1) @ rows.T).argmax(-1) == y_val  # [N]
    direction = is_direction[y_val]
    return ProbeEpoch(
        epoch=epoch,
        train_loss=train_loss,
        top1=_top1(hits) or 0.0,
        direction_top1=_top1(hits[direction]),
        other_top1=_top1(hits[~direction]),
    )


def run_probe(
    report: str | Path,
    *,
    classifier: str = "text",
    epochs: int = 32,
    seed: int = 0,
    run: str = "text-transformer-full-s0",
    feature_scale: float = 1.0,
) -> tuple[list[ProbeEpoch], dict[str, Any]]:
    """Probe the temporal transformer on a finished demo report folder.

    The image encoder, classifier, logit scale and optimizer settings come from the config of
    the report's run ``run`` (by default table 6's text run, which loads stage 0's weights); the
    clips from the report's ``data/`` (the run's training and validation lists).

    Args:
        report: the demo's ``--out`` folder.
        classifier: ``text`` (the run's frozen text rows) or ``orthogonal`` / ``random`` (rows
            drawn with ``seed``, as table 6's).
        epochs: probe epochs (the demo trains 8).
        seed: probe seed (initialisation, batch order, random rows).
        run: the run whose config to take.
        feature_scale: multiply the frame embeddings by this (1: as the encoder gives them);
            tries whether their norm, against the position embeddings', slows the probe.

    Returns:
        The per-epoch history and a summary dict (embedding norm, logit scale, sizes).

    Raises:
        FileNotFoundError: no such run in the report (the message names the folder to look in).
        ValueError: an unknown ``classifier``, or ``feature_scale`` not above 0.
    """
    import dataclasses

    from text4vis.config import load_config
    from text4vis.data import read_labels
    from text4vis.data.actions import action_classes, direction_dependent
    from text4vis.data.dataset import build_dataset
    from text4vis.models.classifier import orthogonal_weight, random_weight
    from text4vis.models.factory import build_model

    if classifier not in ("text", "orthogonal", "random"):
        raise ValueError(f"classifier {classifier!r}: choose text, orthogonal or random")
    if not feature_scale > 0:
        raise ValueError(f"feature_scale must be above 0, got {feature_scale}")
    config_path = Path(report) / "runs" / run / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{config_path} does not exist: give a finished demo report folder (text4vis demo "
            f"--out DIR) and one of the runs in {config_path.parent.parent}"
        )
    cfg = load_config(config_path)
    names = read_labels(cfg.data.labels)
    model = build_model(cfg, names)
    seen, _ = action_classes()
    direction = [
        names.index(seen[i].name) for i in direction_dependent(seen) if seen[i].name in names
    ]
    train_cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, val_list=cfg.data.train_list, shot=0)
    )
    train = frame_embeddings(model, build_dataset(train_cfg, "val"))
    val = frame_embeddings(model, build_dataset(cfg, "val"))
    train, val = (train[0] * feature_scale, train[1]), (val[0] * feature_scale, val[1])
    dim = train[0].shape[-1]
    if classifier == "text":
        weight = model.classifier_weight().detach()
    elif classifier == "orthogonal":
        weight = orthogonal_weight(len(names), dim, seed)
    else:
        weight = random_weight(len(names), dim, seed)
    scale = float(model.logit_scale.exp())
    history = train_probe(
        train,
        val,
        weight,
        direction_classes=direction,
        epochs=epochs,
        batch_size=cfg.data.batch_size,
        lr=cfg.train.lr,
        min_lr=cfg.train.min_lr,
        warmup_epochs=cfg.train.warmup_epochs,
        weight_decay=cfg.train.weight_decay,
        logit_scale=scale,
        layers=cfg.model.temporal_layers,
        seed=seed,
    )
    summary = {
        "run": run,
        "classifier": classifier,
        "feature_scale": feature_scale,
        "train_clips": len(train[1]),
        "val_clips": len(val[1]),
        "embedding_norm": float(train[0].norm(dim=-1).mean()),
        "logit_scale": scale,
        "position_embedding_norm_at_init": math.sqrt(dim) * 0.02,
    }
    return history, summary


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    """The command line: probe a demo report folder; returns the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], prog="python -m text4vis_demo.probe"
    )
    parser.add_argument("report", help="a finished demo report folder (text4vis demo --out)")
    parser.add_argument("--classifier", default="text", choices=("text", "orthogonal", "random"))
    parser.add_argument("--epochs", type=int, default=32, help="probe epochs (the demo trains 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", default="text-transformer-full-s0", help="run whose config to use")
    parser.add_argument(
        "--feature-scale",
        type=float,
        default=1.0,
        help="multiply the frame embeddings by X (does their norm slow the probe?)",
    )
    parser.add_argument("--json", action="store_true", help="print the history as JSON")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    try:
        history, summary = run_probe(
            args.report,
            classifier=args.classifier,
            epochs=args.epochs,
            seed=args.seed,
            run=args.run,
            feature_scale=args.feature_scale,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"summary": summary, "history": [dataclasses.asdict(h) for h in history]}))
        return 0
    print(
        ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
        )
    )
    print("epoch  loss    top-1  direction  other")
    for h in history:
        print(
            f"{h.epoch:5d}  {h.train_loss:6.3f}  {h.top1:5.1f}  {_pct(h.direction_top1):>9}  "
            f"{_pct(h.other_top1):>5}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

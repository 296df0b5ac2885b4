"""The main demo: tables 6-8 of the paper at toy scale (:func:`run_demo`).

It writes the synthetic-actions dataset, trains the runs of :func:`~text4vis_demo.runs.run_specs`
with the library's trainer, adds the evaluations the tables need beyond validation top-1
(zero-shot on the unseen classes, the direction-dependent classes), builds the tables, judges
the paper's claims (:data:`~text4vis_demo.paper.TABLE_CLAIMS`), draws the figures, exports the
main model and writes ``metrics.json`` and ``report.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text4vis_demo.log import get_logger
from text4vis_demo.metrics import (
    CpuTime,
    DatasetSummary,
    DemoMetrics,
    DemoTables,
    DemoTiming,
    Figure1,
    LoadAverage,
    PeakMemory,
    Regimes,
    ScratchRow,
    Stage0Summary,
    Table6Row,
    Table7,
    Table8,
    Table8Row,
    ZeroShotSummary,
)
from text4vis_demo.paper import PAPER, TABLE_CLAIMS
from text4vis_demo.plots import (
    offdiagonal_correlation,
    partner_cosine_by_group,
    partner_similarity,
    plot_correlation_maps,
    plot_init_curves,
)
from text4vis_demo.pretrain import PretrainResult
from text4vis_demo.report import render_report
from text4vis_demo.runs import (
    PredictExample,
    RunResult,
    RunSpec,
    direction_groups,
    direction_metrics,
    evaluate_list,
    log_run_start,
    predict_example,
    run_specs,
    train_run,
)
from text4vis_demo.settings import (
    DEMO_ARCH,
    INITS,
    TABLE6_TEMPORAL,
    TEXT_ENCODER,
    DemoSettings,
    base_config_dict,
    demo_settings,
    demo_threads,
    make_demo_dataset,
)
from text4vis_demo.statistics import Stats, accuracy_stats, judge_claims

__all__ = ["ExtraEvaluations", "build_tables", "run_demo", "stage0_seen_attributes"]

logger = get_logger(__name__)


def run_demo(
    out: str | Path | None = None,
    *,
    quick: bool = False,
    seeds: int | None = None,
    settings: DemoSettings | None = None,
    progress: bool = True,
) -> DemoMetrics:
    """Run the synthetic benchmark and write the report folder.

    Args:
        out: report folder (default ``runs/demo/<timestamp>``).
        quick: the much smaller version (for tests).
        seeds: number of training seeds (default 1).
        settings: explicit settings (overrides ``quick`` and ``seeds``).
        progress: progress bar while writing the dataset.

    Returns:
        The metrics (``to_dict()`` is what ``metrics.json`` holds), with ``out`` set to the
        report folder.
    """
    settings = settings or demo_settings(quick, seeds)
    with demo_threads(settings):
        return _run_demo(out, quick=quick, settings=settings, progress=progress)


@dataclass
class _DemoData:
    """The report folder, the dataset and the shared config that every step of the demo uses."""

    out: Path
    dataset: Any  # text4vis.data.actions.ActionsDataset
    seen_names: list[str]
    unseen_names: list[str]
    base: dict[str, Any]  # the shared config as a dict (each run's config starts from it)
    base_cfg: Any  # the same, as a text4vis.config.Config


def _run_demo(
    out: str | Path | None, *, quick: bool, settings: DemoSettings, progress: bool
) -> DemoMetrics:
    start = time.perf_counter()
    timing: dict[str, float] = {}
    load_at_start = _load_average()
    data, stage0 = _prepare(out, quick, settings, progress, timing)

    t0 = time.perf_counter()
    results = _train_runs(run_specs(settings), data.base, data.seen_names, data.out)
    timing["training_s"] = time.perf_counter() - t0

    # Evaluations beyond validation top-1: zero-shot, direction-dependent classes.
    t0 = time.perf_counter()
    logger.info("zero-shot and per-class evaluations")
    text_weight = _text_weight_builder(data.base_cfg)

    def load(spec: RunSpec) -> Any:
        from text4vis.models.video import VideoRecognizer

        return VideoRecognizer.from_pretrained(data.out / results[spec.key].model_dir)

    extra = _extra_evaluations(
        settings,
        data.base_cfg,
        data.dataset,
        data.seen_names,
        data.unseen_names,
        load,
        text_weight,
    )
    if settings.pretrain:
        extra.zero_shot["stage0"] = [
            _stage0_video_zero_shot(data.base, data.base_cfg, data.dataset, data.unseen_names)
        ]
    if stage0 is not None:
        stage0.seen_video_attributes = stage0_seen_attributes(
            data.base, data.base_cfg, data.dataset, data.seen_names
        )
    timing["evaluation_s"] = time.perf_counter() - t0

    early_epoch = max(1, round(settings.epochs * settings.early_fraction))
    tables = _tables_and_stage0(settings, data, results, extra, early_epoch, stage0)

    # Figures, exported model, predict example.
    t0 = time.perf_counter()
    figure1 = _figures(
        settings, results, data.dataset, data.seen_names, load, text_weight, data.out
    )
    main_spec = RunSpec("text", "transformer", 0, 0)
    prediction, main_zero_shot = _export_main_model(
        load(main_spec), data.dataset, data.unseen_names, data.out, data.base_cfg, text_weight
    )
    timing["figures_export_s"] = time.perf_counter() - t0
    timing["total_s"] = time.perf_counter() - start

    metrics = DemoMetrics(
        mode="quick" if quick else "full",
        settings=settings,
        dataset=_dataset_summary(settings, data),
        runs=results,
        tables=tables,
        figure1=figure1,
        claims=judge_claims(TABLE_CLAIMS, tables.quantities(), early_epoch=early_epoch),
        early_epoch=early_epoch,
        main_model_from_run=main_spec.key,
        predict_example=prediction,
        timing_s=DemoTiming(**timing),
        peak_rss_mb=_peak_rss_mb(),
        torch_threads=_torch_threads(),
        stage0=stage0,
        scratch=_scratch_row(
            settings,
            results,
            extra,
            early_epoch,
            len(data.seen_names),
            settings.unseen_per_class * len(data.unseen_names),
        ),
        main_model_zero_shot=main_zero_shot,
        cpu_s=_cpu_seconds(),
        load_average_1min=LoadAverage(start=load_at_start, end=_load_average()),
    )
    _write_report(metrics, data.out)
    return metrics


def _prepare(
    out: str | Path | None,
    quick: bool,
    settings: DemoSettings,
    progress: bool,
    timing: dict[str, float],
) -> tuple[_DemoData, Stage0Summary | None]:
    """The report folder (a run folder: ``config.yaml``, ``meta.json``, ``log.txt``), the
    dataset, stage 0 (when the settings ask for it) and the shared config; their times go into
    ``timing``."""
    from text4vis.config import config_from_dict, dump_config
    from text4vis.data import read_labels
    from text4vis.runs import create_run_dir

    placeholder = config_from_dict({"run": {"root": "runs", "name": "demo"}})
    run = create_run_dir(placeholder, path=out)
    folder = run.path.resolve()  # relative report folders (the default) must still compare
    logger.info("demo report folder: %s (%s)", folder, "quick" if quick else "full")

    t0 = time.perf_counter()
    dataset = make_demo_dataset(folder / "data", settings, progress=progress)
    timing["dataset_s"] = time.perf_counter() - t0
    seen_names = read_labels(dataset.labels_seen)
    unseen_names = read_labels(dataset.labels_unseen)

    # Stage 0: the demo's own vision-language model (image-text pretraining on stills).
    stage0: Stage0Summary | None = None
    pretrained: Path | str = ""
    if settings.pretrain:
        t0 = time.perf_counter()
        result, pretrained = run_stage0(settings, quick, folder, progress)
        stage0 = Stage0Summary(result)
        timing["pretrain_s"] = time.perf_counter() - t0
    base = base_config_dict(settings, dataset, folder, pretrained)
    base_cfg = config_from_dict(base)
    dump_config(base_cfg, folder / "config.yaml")
    return _DemoData(folder, dataset, seen_names, unseen_names, base, base_cfg), stage0


def _tables_and_stage0(
    settings: DemoSettings,
    data: _DemoData,
    results: dict[str, RunResult],
    extra: ExtraEvaluations,
    early_epoch: int,
    stage0: Stage0Summary | None,
) -> DemoTables:
    """Tables 6-8; with stage 0, its zero-shot on the unseen videos and the runs' validation
    top-1 after the first epoch (where the head start of pretraining shows) go into ``stage0``."""
    from text4vis.data.actions import direction_dependent

    tables = build_tables(
        settings,
        results,
        extra,
        early_epoch,
        len(data.seen_names),
        len(data.unseen_names),
        direction_classes=direction_dependent(data.dataset.seen),
    )
    if stage0 is not None:
        n_unseen = settings.unseen_per_class * len(data.unseen_names)
        stage0.zero_shot_unseen_video = accuracy_stats(extra.zero_shot["stage0"], n_unseen)
        n_val = settings.val_per_class * len(data.seen_names)
        seeds = range(settings.seeds)
        first_specs = {
            init: [RunSpec(init, TABLE6_TEMPORAL, 0, s) for s in seeds] for init in INITS
        }
        first_specs["scratch"] = [RunSpec("text", TABLE6_TEMPORAL, 0, s, "scratch") for s in seeds]
        stage0.first_epoch_top1 = {
            key: accuracy_stats([results[spec.key].history[0]["val_top1"] for spec in specs], n_val)
            for key, specs in first_specs.items()
        }
    return tables


def _dataset_summary(settings: DemoSettings, data: _DemoData) -> DatasetSummary:
    return DatasetSummary(
        root="data",
        seen_classes=data.seen_names,
        unseen_classes=data.unseen_names,
        train_clips=settings.train_per_class * len(data.seen_names),
        val_clips=settings.val_per_class * len(data.seen_names),
        unseen_clips=settings.unseen_per_class * len(data.unseen_names),
    )


def _write_report(metrics: DemoMetrics, out: Path) -> None:
    """Write ``metrics.json`` and ``report.md`` into the report folder; set ``metrics.out``."""
    (out / "metrics.json").write_text(json.dumps(metrics.to_dict(), indent=2) + "\n")
    (out / "report.md").write_text(render_report(metrics))
    logger.info(
        "demo finished in %.0fs: %s, %s",
        metrics.timing_s.total_s,
        out / "report.md",
        out / "metrics.json",
    )
    metrics.out = out


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_stage0(
    settings: DemoSettings, quick: bool, out: Path, progress: bool
) -> tuple[PretrainResult, Path]:
    """Run stage 0 into ``out/pretrain``: its results (paths relative to ``out``) and the
    weight file the video runs load."""
    from text4vis.runs import setup_logging
    from text4vis_demo.pretrain import pretrain_settings, run_pretraining

    log_level = logging.getLevelName(logging.getLogger("text4vis").getEffectiveLevel())
    logger.info("stage 0: image-text pretraining on captioned stills")
    result = run_pretraining(
        out / "pretrain",
        pretrain_settings(quick),
        arch=DEMO_ARCH,
        text_encoder=TEXT_ENCODER,
        image_size=settings.size,
        num_workers=settings.num_workers,
        device=settings.device,
        progress=progress,
    )
    setup_logging(log_level, out / "log.txt")  # fit logged into its own run folder
    relative = dataclasses.replace(
        result, weights=result.weights.relative_to(out), run_dir=result.run_dir.relative_to(out)
    )
    return relative, result.weights


def _stage0_video_zero_shot(
    base: dict[str, Any], base_cfg: Any, dataset: Any, unseen_names: list[str]
) -> float:
    """Stage 0's model itself, before any video training (mean pooling of its frame embeddings),
    against the unseen names: how much of the zero-shot comes from stage 0 alone."""
    from text4vis.models.factory import build_model
    from text4vis_demo.runs import spec_config

    cfg = spec_config(base, RunSpec("text", "mean", 0, 0))
    model = build_model(cfg, unseen_names)
    return float(evaluate_list(model, base_cfg, dataset.unseen_list, unseen_names).metrics["top1"])


def stage0_seen_attributes(
    base: dict[str, Any], base_cfg: Any, dataset: Any, seen_names: list[str]
) -> dict[str, dict[str, float]]:
    """Stage 0's model itself (mean pooling, text classifier of the seen names) on the seen
    validation clips: how often its prediction is the right class, and how often it has the
    right colour, shape and motion. This is the head start the text classifier can give.

    Returns:
        ``{"class" | "colour" | "shape" | "motion": {"top1": %, "chance": %}}``; chance is the
        share of the seen classes that agree with the true one on that attribute (what a
        uniformly random prediction scores), averaged over the clips.
    """
    from text4vis.models.factory import build_model
    from text4vis_demo.runs import spec_config

    cfg = spec_config(base, RunSpec("text", "mean", 0, 0))
    result = evaluate_list(build_model(cfg, seen_names), base_cfg, dataset.val_list, seen_names)
    predicted = result.scores.argmax(dim=1).tolist()
    labels = result.labels.tolist()
    classes = dataset.seen
    rows = {
        "class": {"top1": 100.0 * float(result.metrics["top1"]), "chance": 100.0 / len(classes)}
    }
    for attribute in ("colour", "shape", "motion"):
        truth = [getattr(classes[label], attribute) for label in labels]
        hits = [getattr(classes[p], attribute) == t for p, t in zip(predicted, truth, strict=True)]
        shares = [sum(getattr(c, attribute) == t for c in classes) / len(classes) for t in truth]
        rows[attribute] = {
            "top1": 100.0 * sum(hits) / len(hits),
            "chance": 100.0 * sum(shares) / len(shares),
        }
    return rows


def _scratch_row(
    settings: DemoSettings,
    results: dict[str, RunResult],
    extra: ExtraEvaluations,
    early_epoch: int,
    num_seen: int,
    n_unseen: int,
) -> ScratchRow | None:
    """The from-scratch text row (None without stage 0)."""
    if not settings.pretrain:
        return None
    n_val = settings.val_per_class * num_seen
    histories = [
        results[RunSpec("text", TABLE6_TEMPORAL, 0, s, "scratch").key].history
        for s in range(settings.seeds)
    ]
    return ScratchRow(
        top1=accuracy_stats([h[-1]["val_top1"] for h in histories], n_val),
        early_top1=accuracy_stats([h[early_epoch - 1]["val_top1"] for h in histories], n_val),
        mean_curve_top1=accuracy_stats(
            [sum(r["val_top1"] for r in h) / len(h) for h in histories], n_val
        ),
        zero_shot=accuracy_stats(extra.zero_shot["scratch"], n_unseen),
    )


def _train_runs(
    specs: list[RunSpec], base: dict[str, Any], class_names: list[str], out: Path
) -> dict[str, RunResult]:
    """Train every run in order, logging progress and an ETA; results by run key."""
    from text4vis.runs import setup_logging

    log_file = out / "log.txt"
    log_level = logging.getLevelName(logging.getLogger("text4vis").getEffectiveLevel())
    results: dict[str, RunResult] = {}
    t0 = time.perf_counter()
    for number, spec in enumerate(specs, 1):
        clips = f"{spec.shot}-shot" if spec.shot else "all clips"
        log_run_start(
            number,
            len(specs),
            t0,
            f"{spec.key} (classifier {spec.classifier}, temporal {spec.temporal}, {clips}, "
            f"seed {spec.seed})",
        )
        result = train_run(spec, base, class_names, out)
        setup_logging(log_level, log_file)  # fit logged into its own run folder
        results[spec.key] = result
        logger.info(
            "[run %d/%d] %s: val top-1 %.1f%% after %d epochs (%.0fs)",
            number,
            len(specs),
            spec.key,
            100 * result.val_top1,
            len(result.history),
            result.time_s,
        )
    return results


def _text_weight_builder(base_cfg: Any) -> Callable[[list[str], int], Any]:
    """A function names -> text classifier rows, with the demo's text encoder built once."""
    import torch

    from text4vis.models.classifier import build_classifier
    from text4vis.models.text import build_text_encoder

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

    return text_weight


@dataclass
class ExtraEvaluations:
    """Per seed: zero-shot top-1 on the unseen classes, and the direction metrics per head."""

    # "vision_text" / "vision_only" / "scratch" -> one top-1 per seed; "stage0" -> one value
    zero_shot: dict[str, list[float]]
    direction: dict[str, list[dict[str, Any]]]  # "mean" / "transformer" -> one row per seed
    # table 6's initialisers -> direction metrics of their final models, one row per seed
    table6_direction: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _extra_evaluations(
    settings: DemoSettings,
    base_cfg: Any,
    dataset: Any,
    seen_names: list[str],
    unseen_names: list[str],
    load: Callable[[RunSpec], Any],
    text_weight: Callable[[list[str], int], Any],
) -> ExtraEvaluations:
    from text4vis.models.classifier import random_weight

    zero_shot: dict[str, list[float]] = {"vision_text": [], "vision_only": [], "scratch": []}
    direction: dict[str, list[dict[str, Any]]] = {"mean": [], "transformer": []}
    table6_direction: dict[str, list[dict[str, Any]]] = {}
    for seed in range(settings.seeds):
        if settings.pretrain:
            scratch_model = load(RunSpec("text", TABLE6_TEMPORAL, 0, seed, "scratch"))
            scratch_model.set_classifier(
                text_weight(unseen_names, scratch_model.embed_dim),
                unseen_names,
                {"initializer": "text"},
            )
            result = evaluate_list(scratch_model, base_cfg, dataset.unseen_list, unseen_names)
            zero_shot["scratch"].append(float(result.metrics["top1"]))
        text_model = load(RunSpec("text", "mean", 0, seed))
        unseen_w = text_weight(unseen_names, text_model.embed_dim)
        text_model.set_classifier(unseen_w, unseen_names, {"initializer": "text"})
        result = evaluate_list(text_model, base_cfg, dataset.unseen_list, unseen_names)
        zero_shot["vision_text"].append(float(result.metrics["top1"]))
        # A learnable head has no rows for classes it never saw: the new rows are random.
        vision_model = load(RunSpec("learnable", "mean", 0, seed))
        generator_seed = 1000 + seed
        vision_model.set_classifier(
            random_weight(len(unseen_names), vision_model.embed_dim, generator_seed),
            unseen_names,
            {"initializer": "random", "seed": generator_seed},
        )
        result = evaluate_list(vision_model, base_cfg, dataset.unseen_list, unseen_names)
        zero_shot["vision_only"].append(float(result.metrics["top1"]))
        for temporal in ("mean", "transformer"):
            model = load(RunSpec("text", temporal, 0, seed))
            result = evaluate_list(model, base_cfg, dataset.val_list, seen_names)
            direction[temporal].append(
                {
                    **direction_metrics(result, dataset.seen),
                    "groups": direction_groups(result, dataset.seen),
                }
            )
        for init in INITS:
            if init == "text" and TABLE6_TEMPORAL in direction:
                row = direction[TABLE6_TEMPORAL][-1]  # the same run, evaluated just above
            else:
                model = load(RunSpec(init, TABLE6_TEMPORAL, 0, seed))
                row = direction_metrics(
                    evaluate_list(model, base_cfg, dataset.val_list, seen_names), dataset.seen
                )
            table6_direction.setdefault(init, []).append(row)
    return ExtraEvaluations(zero_shot, direction, table6_direction)


def _group_stats(groups: list[dict[str, Any]] | None, key: str, num_videos: int) -> Stats | None:
    """One direction metric over the seeds (``groups``: one row of direction metrics per seed;
    None when the runs were not evaluated per group)."""
    return accuracy_stats([g[key] for g in groups], num_videos) if groups else None


def _epoch_group_stats(
    histories: list[list[dict[str, Any]]], epoch: int, classes: set[int]
) -> Stats | None:
    """Validation top-1 over the clips of ``classes`` after ``epoch`` epochs (1-based), one value
    per seed from the runs' per-class counts; None when a run recorded none or the group is
    empty."""
    values, total = [], 0
    for history in histories:
        row = history[epoch - 1]
        correct, videos = row.get("val_correct"), row.get("val_videos")
        if correct is None or videos is None:
            return None
        total = sum(n for i, n in enumerate(videos) if i in classes)
        if total == 0:
            return None
        values.append(sum(c for i, c in enumerate(correct) if i in classes) / total)
    return accuracy_stats(values, total) if values else None


def _table6_row(
    init: str,
    settings: DemoSettings,
    results: dict[str, RunResult],
    extra: ExtraEvaluations,
    early_epoch: int,
    num_seen: int,
    direction_classes: Sequence[int],
    n_dir: int,
    n_other: int,
) -> Table6Row:
    """Table 6's row of one initialiser: final, early and mean-over-epochs top-1, per class
    group (final, after epoch 1 and after the early epoch), and 2-shot where it was trained."""
    seeds = range(settings.seeds)
    n_val = settings.val_per_class * num_seen
    direction = set(direction_classes)
    other = set(range(num_seen)) - direction if direction else set()  # no split: no groups
    runs = [results[RunSpec(init, TABLE6_TEMPORAL, 0, s).key] for s in seeds]
    histories = [run.history for run in runs]
    groups = extra.table6_direction.get(init)
    two_shot = [RunSpec(init, "mean", settings.shot, s).key for s in seeds]
    return Table6Row(
        top1=accuracy_stats([run.val_top1 for run in runs], n_val),
        early_top1=accuracy_stats([h[early_epoch - 1]["val_top1"] for h in histories], n_val),
        mean_curve_top1=accuracy_stats(
            [sum(r["val_top1"] for r in h) / len(h) for h in histories], n_val
        ),
        paper_top1=PAPER["table6"][init],
        direction_top1=_group_stats(groups, "direction_top1", n_dir),
        other_top1=_group_stats(groups, "other_top1", n_other),
        reversed_partner_rate=_group_stats(groups, "reversed_partner_rate", n_dir),
        two_shot_top1=accuracy_stats([results[k].val_top1 for k in two_shot], n_val)
        if all(k in results for k in two_shot)
        else None,
        first_direction_top1=_epoch_group_stats(histories, 1, direction),
        first_other_top1=_epoch_group_stats(histories, 1, other),
        early_direction_top1=_epoch_group_stats(histories, early_epoch, direction),
        early_other_top1=_epoch_group_stats(histories, early_epoch, other),
    )


def build_tables(
    settings: DemoSettings,
    results: dict[str, RunResult],
    extra: ExtraEvaluations,
    early_epoch: int,
    num_seen: int,
    num_unseen: int,
    *,
    direction_classes: Sequence[int] = (),
) -> DemoTables:
    """Tables 6-8 from the runs' results and the extra evaluations (no model is run).

    Args:
        settings: the demo's sizes (seeds, clips per class, shots).
        results: every run of :func:`~text4vis_demo.runs.run_specs`, by key.
        extra: zero-shot and direction metrics per seed.
        early_epoch: the epoch (1-based) whose validation top-1 is table 6's "early" column.
        num_seen: seen classes.
        num_unseen: unseen classes.
        direction_classes: labels of the direction-dependent seen classes (those whose
            time-reversed partner is also a class), for table 6's early accuracy per class group.
    """
    seeds = range(settings.seeds)

    def top1s(init: str, temporal: str = "mean", shot: int = 0) -> list[float]:
        return [results[RunSpec(init, temporal, shot, s).key].val_top1 for s in seeds]

    n_val = settings.val_per_class * num_seen
    n_unseen = settings.unseen_per_class * num_unseen
    n_dir = int(extra.direction["mean"][0]["num_direction_videos"])
    n_other = int(extra.direction["mean"][0]["num_other_videos"])
    table6 = {
        init: _table6_row(
            init, settings, results, extra, early_epoch, num_seen, direction_classes, n_dir, n_other
        )
        for init in INITS
    }
    table7 = Table7(
        vision_text=Regimes(
            zero_shot=accuracy_stats(extra.zero_shot["vision_text"], n_unseen),
            two_shot=accuracy_stats(top1s("text", shot=settings.shot), n_val),
            full=accuracy_stats(top1s("text"), n_val),
        ),
        vision_only=Regimes(
            zero_shot=accuracy_stats(extra.zero_shot["vision_only"], n_unseen),
            two_shot=accuracy_stats(top1s("learnable", shot=settings.shot), n_val),
            full=accuracy_stats(top1s("learnable"), n_val),
        ),
        chance_seen=100.0 / num_seen,
        chance_unseen=100.0 / num_unseen,
        paper=PAPER["table7"],
    )

    def table8_row(temporal: str) -> Table8Row:
        rows = extra.direction[temporal]
        return Table8Row(
            top1=accuracy_stats([r["top1"] for r in rows], n_val),
            direction_top1=accuracy_stats([r["direction_top1"] for r in rows], n_dir),
            other_top1=accuracy_stats([r["other_top1"] for r in rows], n_other),
            reversed_partner_rate=accuracy_stats([r["reversed_partner_rate"] for r in rows], n_dir),
            paper_top1=PAPER["table8"][temporal],
        )

    groups = {
        temporal: {
            group: {
                measure: accuracy_stats(
                    [r["groups"][group][measure] for r in rows], int(counts["num_videos"])
                )
                for measure in ("top1", "reversed_partner_rate")
            }
            for group, counts in rows[0]["groups"].items()
        }
        for temporal, rows in extra.direction.items()
        if rows and "groups" in rows[0]
    }
    table8 = Table8(table8_row("mean"), table8_row("transformer"), n_dir, n_other, groups)
    return DemoTables(table6, table7, table8)


def _figures(
    settings: DemoSettings,
    results: dict[str, RunResult],
    dataset: Any,
    seen_names: list[str],
    load: Callable[[RunSpec], Any],
    text_weight: Callable[[list[str], int], Any],
    out: Path,
) -> Figure1:
    """Draw ``curves_init.png`` and ``correlation_maps.png``; figure 1's numbers."""
    import torch

    from text4vis.models.classifier import random_weight

    curves = {
        init: [
            results[RunSpec(init, TABLE6_TEMPORAL, 0, s).key].history for s in range(settings.seeds)
        ]
        for init in INITS
    }
    plot_init_curves(curves, out / "curves_init.png")
    learned_spec = RunSpec("learnable", "mean", 0, 0)
    learned = load(learned_spec)
    text_seen = text_weight(seen_names, learned.embed_dim)
    with torch.no_grad():
        learned_w = learned.classifier_weight().detach().cpu()
    plot_correlation_maps(text_seen, learned_w, seen_names, out / "correlation_maps.png")
    return Figure1(
        offdiagonal_pearson_text_vs_learned=offdiagonal_correlation(text_seen, learned_w),
        offdiagonal_pearson_text_vs_random=offdiagonal_correlation(
            text_seen, random_weight(len(seen_names), learned.embed_dim, 0)
        ),
        learned_from_run=learned_spec.key,
        **partner_similarity(text_seen, dataset.seen),
        text_cosine_reversed_partners_by_group=partner_cosine_by_group(text_seen, dataset.seen),
    )


def _export_main_model(
    model: Any,
    dataset: Any,
    unseen_names: list[str],
    out: Path,
    base_cfg: Any,
    text_weight: Callable[[list[str], int], Any],
) -> tuple[PredictExample, ZeroShotSummary]:
    """Save the main model to ``out/model``, check it loads, measure its zero-shot top-1 on the
    unseen classes, and label one unseen clip with it.

    Returns:
        The predict example (with the clip's true class) and the zero-shot top-1 with chance.
    """
    from text4vis.models.video import VideoRecognizer

    model_dir = out / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save_pretrained(model_dir)
    exported = VideoRecognizer.from_pretrained(model_dir)  # the export loads back
    # Its classifier swapped for the unseen names' text embeddings, as `predict --labels` does.
    exported.set_classifier(
        text_weight(unseen_names, exported.embed_dim), unseen_names, {"initializer": "text"}
    )
    result = evaluate_list(exported, base_cfg, dataset.unseen_list, unseen_names)
    zero_shot = ZeroShotSummary(
        top1=100.0 * float(result.metrics["top1"]),
        chance=100.0 / len(unseen_names),
        num_videos=int(result.labels.numel()),
    )
    path, label = dataset.unseen_list.read_text().split()[:2]
    example = predict_example(model_dir, dataset.root / Path(path), unseen_names)
    example.true_label = unseen_names[int(label)]
    return example, zero_shot


def _cpu_seconds() -> CpuTime:
    """User + system CPU time of this process and of its finished children (decoding workers):
    on a shared machine, wall time depends on the load and CPU time much less."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuTime(
        main_process=own.ru_utime + own.ru_stime,
        children=children.ru_utime + children.ru_stime,
    )


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # not available on every platform
        return None


def _peak_rss_mb() -> PeakMemory:
    return PeakMemory(
        main_process=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        largest_child=resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    )

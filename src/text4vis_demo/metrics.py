"""The main demo's results as typed records; ``DemoMetrics.to_dict()`` is ``metrics.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text4vis_demo.paper import PAPER
from text4vis_demo.pretrain import PretrainResult
from text4vis_demo.runs import PredictExample, RunResult
from text4vis_demo.settings import DemoSettings
from text4vis_demo.statistics import Estimate, Judgement, Record, Stats

__all__ = [
    "CpuTime",
    "DatasetSummary",
    "DemoMetrics",
    "DemoTables",
    "DemoTiming",
    "Figure1",
    "LoadAverage",
    "PeakMemory",
    "Regimes",
    "ScratchRow",
    "Stage0Summary",
    "Table6Row",
    "Table7",
    "Table8",
    "Table8Row",
    "ZeroShotSummary",
]


@dataclass
class Table6Row(Record):
    """Table 6 (classifier initialisation): one initialiser."""

    top1: Stats  # final validation top-1
    early_top1: Stats  # validation top-1 after ``early_epoch`` epochs
    mean_curve_top1: Stats  # validation top-1 averaged over the epochs
    paper_top1: float | None
    # The final model per class group (as table 8 splits them): the classes whose time-reversed
    # partner is also a class, the other classes, and how often the partner is predicted.
    direction_top1: Stats | None = None
    other_top1: Stats | None = None
    reversed_partner_rate: Stats | None = None
    # The same classifier trained on ``shot`` clips per class with mean pooling (table 7's
    # 2-shot regime); None for initialisers without such runs (LDA).
    two_shot_top1: Stats | None = None
    # Validation top-1 per class group after the first and after ``early_epoch`` epochs (from
    # the trainer's per-class counts; None for runs that recorded none).
    first_direction_top1: Stats | None = None
    first_other_top1: Stats | None = None
    early_direction_top1: Stats | None = None
    early_other_top1: Stats | None = None


@dataclass
class Regimes(Record):
    """Table 7: one side (vision-text or vision-only) in the three data regimes."""

    zero_shot: Stats  # on the unseen classes
    two_shot: Stats
    full: Stats


@dataclass
class Table7(Record):
    """Table 7 (data regimes): vision-text vs vision-only."""

    vision_text: Regimes
    vision_only: Regimes
    chance_seen: float  # %
    chance_unseen: float  # %
    paper: dict[str, dict[str, float]] = field(default_factory=lambda: PAPER["table7"])


@dataclass
class Table8Row(Record):
    """Table 8 (temporal modelling): one temporal head."""

    top1: Stats
    direction_top1: Stats  # on the classes whose time-reversed partner is also a class
    other_top1: Stats
    reversed_partner_rate: Stats  # how often the time-reversed partner is predicted
    paper_top1: float


@dataclass
class Table8(Record):
    """Table 8 (temporal modelling): both heads and the sizes of the two class groups."""

    mean: Table8Row
    transformer: Table8Row
    num_direction_videos: int
    num_other_videos: int
    # head ("mean"/"transformer") -> direction pair -> {"top1", "reversed_partner_rate"} stats
    groups: dict[str, dict[str, dict[str, Stats]]] = field(default_factory=dict)


@dataclass
class ScratchRow(Record):
    """The text run with a randomly initialised encoder (no stage 0): what pretraining changes."""

    top1: Stats  # final validation top-1 (seen classes)
    early_top1: Stats
    mean_curve_top1: Stats
    zero_shot: Stats  # on the unseen classes, with their names as the classifier


@dataclass
class DemoTables:
    """Tables 6-8: what the claims of :data:`text4vis_demo.paper.TABLE_CLAIMS` are judged on."""

    table6: dict[str, Table6Row]  # by initialiser, in the order of INITS
    table7: Table7
    table8: Table8

    def quantities(self) -> dict[str, Estimate]:
        """Every quantity a claim may name: ``table6.<init>.<top1|early_top1|mean_curve_top1>``
        (and ``table6.<init>.two_shot_top1`` where measured),
        ``table7.<vision_text|vision_only>.<regime>``, ``table7.gain.<regime>`` (vision-text
        minus vision-only, a difference of means without a standard error) and
        ``table8.<mean|transformer>.<measure>``."""
        found: dict[str, Estimate] = {}
        for init, row in self.table6.items():
            for name in ("top1", "early_top1", "mean_curve_top1"):
                found[f"table6.{init}.{name}"] = getattr(row, name).estimate
            if row.two_shot_top1 is not None:
                found[f"table6.{init}.two_shot_top1"] = row.two_shot_top1.estimate
        for regime in ("zero_shot", "two_shot", "full"):
            text = getattr(self.table7.vision_text, regime)
            vision = getattr(self.table7.vision_only, regime)
            found[f"table7.vision_text.{regime}"] = text.estimate
            found[f"table7.vision_only.{regime}"] = vision.estimate
            found[f"table7.gain.{regime}"] = Estimate(text.mean - vision.mean)
        for temporal in ("mean", "transformer"):
            row = getattr(self.table8, temporal)
            for name in ("top1", "direction_top1", "other_top1", "reversed_partner_rate"):
                found[f"table8.{temporal}.{name}"] = getattr(row, name).estimate
        return found


@dataclass
class Figure1(Record):
    """The paper's figure 1 in numbers: how alike the class rows of two classifiers are."""

    offdiagonal_pearson_text_vs_learned: float
    offdiagonal_pearson_text_vs_random: float
    learned_from_run: str
    text_cosine_reversed_partners: float
    text_cosine_other_pairs: float
    text_cosine_reversed_partners_by_group: dict[str, float] = field(default_factory=dict)


@dataclass
class DatasetSummary(Record):
    """The synthetic dataset the demo wrote."""

    root: str  # relative to the report folder
    seen_classes: list[str]
    unseen_classes: list[str]
    train_clips: int
    val_clips: int
    unseen_clips: int


@dataclass
class Stage0Summary:
    """Stage 0 as the main demo reports it: what was pretrained (paths relative to the report
    folder) and the demo's own measurements of the stage-0 model on videos."""

    result: PretrainResult
    # "class" / "colour" / "shape" / "motion" -> {"top1": %, "chance": %} on the seen val clips
    seen_video_attributes: dict[str, dict[str, float]] | None = None
    zero_shot_unseen_video: Stats | None = None  # mean of frame embeddings, unseen names
    first_epoch_top1: dict[str, Stats] | None = None  # table 6's runs (and scratch), epoch 1

    def to_dict(self) -> dict[str, Any]:
        """``PretrainResult.to_dict()`` with the video measurements after it."""
        values = self.result.to_dict()
        if self.seen_video_attributes is not None:
            values["seen_video_attributes"] = self.seen_video_attributes
        if self.zero_shot_unseen_video is not None:
            values["zero_shot_unseen_video"] = self.zero_shot_unseen_video.to_dict()
        if self.first_epoch_top1 is not None:
            values["first_epoch_top1"] = {k: v.to_dict() for k, v in self.first_epoch_top1.items()}
        return values


@dataclass
class ZeroShotSummary(Record):
    """A zero-shot top-1 on the unseen classes, with chance."""

    top1: float  # %
    chance: float  # %
    num_videos: int


@dataclass
class DemoTiming(Record):
    """Wall time of each phase of the main demo, in seconds."""

    dataset_s: float
    training_s: float
    evaluation_s: float
    figures_export_s: float
    total_s: float
    pretrain_s: float | None = None  # None without stage 0

    def to_dict(self) -> dict[str, Any]:
        """The phases in the order they run (no ``pretrain_s`` without stage 0)."""
        values = {"dataset_s": self.dataset_s}
        if self.pretrain_s is not None:
            values["pretrain_s"] = self.pretrain_s
        values.update(
            training_s=self.training_s,
            evaluation_s=self.evaluation_s,
            figures_export_s=self.figures_export_s,
            total_s=self.total_s,
        )
        return values


@dataclass
class PeakMemory(Record):
    """Peak resident memory, in MB."""

    main_process: float
    largest_child: float


@dataclass
class CpuTime(Record):
    """User + system CPU time, in seconds: this process and its finished children."""

    main_process: float
    children: float


@dataclass
class LoadAverage(Record):
    """The machine's 1-minute load average at the start and end (None where unavailable)."""

    start: float | None
    end: float | None


@dataclass
class DemoMetrics:
    """Everything the main demo measured: :meth:`to_dict` is written as ``metrics.json`` and
    rendered as ``report.md``."""

    mode: str  # "quick" or "full"
    settings: DemoSettings
    dataset: DatasetSummary
    runs: dict[str, RunResult]  # by RunSpec.key, in the order they ran
    tables: DemoTables
    figure1: Figure1
    claims: list[Judgement]
    early_epoch: int
    main_model_from_run: str
    predict_example: PredictExample
    timing_s: DemoTiming
    peak_rss_mb: PeakMemory
    torch_threads: int
    stage0: Stage0Summary | None = None  # None without stage 0
    scratch: ScratchRow | None = None  # None without stage 0
    main_model_zero_shot: ZeroShotSummary | None = None
    cpu_s: CpuTime | None = None
    load_average_1min: LoadAverage | None = None
    out: Path | None = None  # the report folder (not written into metrics.json)

    @property
    def seeds(self) -> list[int]:
        return list(range(self.settings.seeds))

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "settings": dataclasses.asdict(self.settings),
            "seeds": self.seeds,
            "dataset": self.dataset.to_dict(),
            "runs": {key: run.to_dict() for key, run in self.runs.items()},
            "table6": {init: row.to_dict() for init, row in self.tables.table6.items()},
            "table7": self.tables.table7.to_dict(),
            "table8": self.tables.table8.to_dict(),
            "stage0": None if self.stage0 is None else self.stage0.to_dict(),
            "scratch": None if self.scratch is None else self.scratch.to_dict(),
            "figure1": self.figure1.to_dict(),
            "claims": [c.to_dict() for c in self.claims],
            "early_epoch": self.early_epoch,
            "main_model": {
                "dir": "model",
                "from_run": self.main_model_from_run,
                "zero_shot": None
                if self.main_model_zero_shot is None
                else self.main_model_zero_shot.to_dict(),
            },
            "predict_example": self.predict_example.to_dict(),
            "timing_s": self.timing_s.to_dict(),
            "peak_rss_mb": self.peak_rss_mb.to_dict(),
            "cpu_s": {} if self.cpu_s is None else self.cpu_s.to_dict(),
            "load_average_1min": {}
            if self.load_average_1min is None
            else self.load_average_1min.to_dict(),
            "device": str(self.settings.device),
            "torch_threads": self.torch_threads,
        }

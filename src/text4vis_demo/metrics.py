"""The main demo's results as typed records; ``DemoMetrics.to_dict()`` is ``metrics.json``."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text4vis_demo.paper import PAPER
from text4vis_demo.runs import RunResult
from text4vis_demo.settings import DemoSettings
from text4vis_demo.statistics import Estimate, Judgement, Record, Stats

__all__ = [
    "DatasetSummary",
    "DemoMetrics",
    "DemoTables",
    "Figure1",
    "Regimes",
    "ScratchRow",
    "Table6Row",
    "Table7",
    "Table8",
    "Table8Row",
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
    predict_example: dict[str, Any]  # video (relative) and top3 [{label, score}]
    timing_s: dict[str, float]
    peak_rss_mb: dict[str, float]
    torch_threads: int
    stage0: dict[str, Any] | None = None  # PretrainResult.to_dict() (paths relative), or None
    scratch: ScratchRow | None = None  # None without stage 0
    main_model_zero_shot: dict[str, float] | None = None  # top1 %, chance %, num_videos
    cpu_s: dict[str, float] = field(default_factory=dict)  # main process, finished children
    load_average_1min: dict[str, float | None] = field(default_factory=dict)  # start, end
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
            "stage0": self.stage0,
            "scratch": None if self.scratch is None else self.scratch.to_dict(),
            "figure1": self.figure1.to_dict(),
            "claims": [c.to_dict() for c in self.claims],
            "early_epoch": self.early_epoch,
            "main_model": {
                "dir": "model",
                "from_run": self.main_model_from_run,
                "zero_shot": self.main_model_zero_shot,
            },
            "predict_example": self.predict_example,
            "timing_s": dict(self.timing_s),
            "peak_rss_mb": dict(self.peak_rss_mb),
            "cpu_s": dict(self.cpu_s),
            "load_average_1min": dict(self.load_average_1min),
            "device": str(self.settings.device),
            "torch_threads": self.torch_threads,
        }

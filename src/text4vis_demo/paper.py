"""What the paper reports, as data: its numbers beside the demos' tables, and the orderings the
demos check (each a :class:`~text4vis_demo.statistics.Claim` naming two measured quantities).

The quantity names of :data:`TABLE_CLAIMS` are those of
:meth:`text4vis_demo.metrics.DemoTables.quantities` (``table6.<init>.top1``,
``table7.<side>.<regime>``, ...); those of :data:`TABLE9_CLAIMS` are those of
:func:`text4vis_demo.contrastive.table9_quantities` (``top1.<row>``, ``epoch_time.<row>``).
"""

from __future__ import annotations

from typing import Any

from text4vis_demo.statistics import Claim

__all__ = ["PAPER", "PAPER_TABLE9", "TABLE9_CLAIMS", "TABLE_CLAIMS"]

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

# Tables 6-8: every claim says a is above b. ``{early_epoch}`` is filled when judged.
TABLE_CLAIMS: tuple[Claim, ...] = (
    Claim(
        "6",
        "text classifier ends higher than random",
        "table6.text.top1",
        "table6.random.top1",
        "text",
        "random",
    ),
    Claim(
        "6",
        "text classifier ends higher than orthogonal",
        "table6.text.top1",
        "table6.orthogonal.top1",
        "text",
        "orthogonal",
    ),
    Claim(
        "6",
        "text converges faster than random (val top-1 at epoch {early_epoch})",
        "table6.text.early_top1",
        "table6.random.early_top1",
        "text",
        "random",
    ),
    Claim(
        "6",
        "text converges faster than orthogonal (val top-1 at epoch {early_epoch})",
        "table6.text.early_top1",
        "table6.orthogonal.early_top1",
        "text",
        "orthogonal",
    ),
    # With 2 clips per class (table 7's regime, mean pooling): the paper's table 6 is full data,
    # but its argument, that the rows' prior is what helps, is strongest with little data.
    Claim(
        "6",
        "text classifier beats random with 2 shots",
        "table6.text.two_shot_top1",
        "table6.random.two_shot_top1",
        "text",
        "random",
    ),
    Claim(
        "6",
        "text classifier beats orthogonal with 2 shots",
        "table6.text.two_shot_top1",
        "table6.orthogonal.two_shot_top1",
        "text",
        "orthogonal",
    ),
    Claim(
        "6", "LDA ends higher than random", "table6.lda.top1", "table6.random.top1", "lda", "random"
    ),
    Claim(
        "6",
        "text ends at least as high as LDA",
        "table6.text.top1",
        "table6.lda.top1",
        "text",
        "lda",
    ),
    *(
        Claim(
            "7",
            f"vision-text beats vision-only ({label})",
            f"table7.vision_text.{regime}",
            f"table7.vision_only.{regime}",
            "vision-text",
            "vision-only",
        )
        for regime, label in (("zero_shot", "zero-shot"), ("two_shot", "2-shot"), ("full", "full"))
    ),
    # The gain of the text classifier over the learnable head, few-shot vs full data: a
    # difference of means, without a standard error.
    Claim(
        "7",
        "the vision-text gain is larger with 2 shots than with full data",
        "table7.gain.two_shot",
        "table7.gain.full",
        "gain at 2-shot",
        "gain at full",
    ),
    Claim(
        "8",
        "temporal transformer beats mean pooling (overall)",
        "table8.transformer.top1",
        "table8.mean.top1",
        "transformer",
        "mean",
    ),
    Claim(
        "8",
        "temporal transformer beats mean pooling (direction-dependent classes)",
        "table8.transformer.direction_top1",
        "table8.mean.direction_top1",
        "transformer",
        "mean",
    ),
)

# Table 9 of the paper (Kinetics-400, ViT-B/16, 8 frames): top-1 % and V100-days.
PAPER_TABLE9: dict[str, dict[str, float]] = {
    "gather_online": {"top1": 81.2, "v100_days": 6.7},
    "gather_offline": {"top1": 80.7, "v100_days": 6.6},
    "local_online": {"top1": 77.8, "v100_days": 3.5},
    "local_offline": {"top1": 76.1, "v100_days": 3.3},
    "ce": {"top1": 81.5, "v100_days": 3.3},
}


def _table9_claim(measure: str, a: str, b: str, text: str, direction: str = "higher") -> Claim:
    prefix = "top1" if measure == "top-1" else "epoch_time"
    return Claim("9", text, f"{prefix}.{a}", f"{prefix}.{b}", a, b, direction, measure)  # type: ignore[arg-type]


# Table 9: accuracy orderings (top-1) and cost orderings (time per epoch against V100-days).
TABLE9_CLAIMS: tuple[Claim, ...] = (
    _table9_claim(
        "top-1", "gather_online", "local_online", "batch gather beats local, text online"
    ),
    _table9_claim(
        "top-1", "gather_offline", "local_offline", "batch gather beats local, text offline"
    ),
    _table9_claim(
        "top-1", "gather_online", "gather_offline", "online text beats offline, with gather"
    ),
    _table9_claim("top-1", "local_online", "local_offline", "online text beats offline, local"),
    _table9_claim(
        "top-1", "ce", "gather_online", "ours beats the best contrastive row (gather, online)"
    ),
    _table9_claim("top-1", "ce", "gather_offline", "ours beats contrastive gather, offline"),
    _table9_claim("top-1", "ce", "local_online", "ours beats contrastive local, online"),
    _table9_claim("top-1", "ce", "local_offline", "ours beats contrastive local, offline"),
    _table9_claim(
        "time per epoch",
        "gather_online",
        "local_online",
        "batch gather costs more than local, text online",
    ),
    _table9_claim(
        "time per epoch",
        "gather_offline",
        "local_offline",
        "batch gather costs more than local, text offline",
    ),
    _table9_claim(
        "time per epoch",
        "gather_online",
        "gather_offline",
        "online text costs more than offline, with gather",
    ),
    _table9_claim(
        "time per epoch",
        "local_online",
        "local_offline",
        "online text costs more than offline, local",
    ),
    _table9_claim(
        "time per epoch",
        "gather_online",
        "ce",
        "contrastive (gather, online) costs more than ours",
    ),
    _table9_claim(
        "time per epoch",
        "gather_offline",
        "ce",
        "contrastive (gather, offline) costs more than ours",
    ),
    _table9_claim(
        "time per epoch", "local_online", "ce", "contrastive (local, online) costs more than ours"
    ),
    _table9_claim(
        "time per epoch",
        "local_offline",
        "ce",
        "contrastive (local, offline) costs the same as ours",
        direction="same",
    ),
)

"""Statistics shared by both demos: accuracy summaries, standard errors, and the one function
that judges a claim of the paper against the demo's numbers.

A claim (:class:`Claim`) is data: which table it comes from, what the paper says, the two measured
quantities it compares (by name) and the direction the paper reports between them. The demos
declare their claims as lists (:data:`text4vis_demo.paper.TABLE_CLAIMS`,
:data:`text4vis_demo.paper.TABLE9_CLAIMS`), measure the quantities, and call
:func:`judge_claims`. The judgement says whether the demo orders the two quantities as the paper
does, and whether the gap is beyond the noise: the spread between training seeds and two
standard errors of the measurement.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "DIRECTIONS",
    "TIE_TOLERANCE",
    "Claim",
    "Estimate",
    "Judgement",
    "Record",
    "Stats",
    "accuracy_stats",
    "binomial_se",
    "judge_claim",
    "judge_claims",
    "mean_and_std",
    "ranking",
]

Direction = Literal["higher", "same"]
# "higher": the paper measures a above b; "same": the paper measures no difference.
DIRECTIONS: tuple[str, ...] = ("higher", "same")


def mean_and_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value).

    Raises:
        ValueError: no values.
    """
    if not values:
        raise ValueError("mean_and_std needs at least one value")
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def binomial_se(accuracy: float, num_videos: int) -> float:
    """Standard error of an accuracy (a fraction) measured on ``num_videos`` videos, as a fraction.

    It says how far another draw of the same number of clips would move the accuracy.
    """
    return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / num_videos)


class Record:
    """Base of the demos' typed results: ``to_dict()`` is the JSON layout (the fields in order,
    nested records as dicts)."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]


@dataclass(frozen=True)
class Estimate:
    """A measured quantity and its noise, the input of :func:`judge_claim`."""

    value: float
    std: float | None = None  # sample standard deviation over training seeds (None: one seed)
    se: float | None = None  # standard error of the measurement (None: unknown)


@dataclass(frozen=True)
class Stats(Record):
    """An accuracy over seeds, in %: mean, spread, and the binomial standard error."""

    mean: float
    std: float | None  # sample standard deviation over the seeds (None for one seed)
    se: float  # binomial standard error of the mean accuracy on the evaluation set
    min: float
    max: float
    per_seed: list[float]
    num_videos: int  # videos each seed's accuracy was measured on

    @property
    def estimate(self) -> Estimate:
        return Estimate(self.mean, self.std, self.se)


def accuracy_stats(values: Sequence[float], num_videos: int) -> Stats:
    """Summarise one accuracy (a fraction) per seed, in %.

    The standard error is binomial, from the evaluation set's size and the mean accuracy, over
    all seeds' videos together.

    Args:
        values: one accuracy (fraction) per seed.
        num_videos: videos each accuracy was measured on.

    Raises:
        ValueError: no values, or ``num_videos`` below 1.
    """
    if num_videos < 1:
        raise ValueError(f"num_videos must be at least 1, got {num_videos}")
    pct = [100.0 * v for v in values]
    mean, std = mean_and_std(pct)
    p = mean / 100.0
    se = 100.0 * math.sqrt(max(p * (1 - p), 0.0) / (num_videos * len(pct)))
    return Stats(mean, std, se, min(pct), max(pct), pct, num_videos)


@dataclass(frozen=True)
class Claim:
    """One ordering the paper reports, as data.

    ``a`` and ``b`` name two measured quantities (keys of the mapping given to
    :func:`judge_claims`); ``direction`` says what the paper measured between them.
    """

    table: str  # the paper's table ("6", "7", "8", "9")
    text: str  # the claim in words; may hold ``{name}`` fields filled when judged
    a: str  # key of the first quantity
    b: str  # key of the second quantity
    a_label: str  # how the report names a
    b_label: str  # how the report names b
    direction: Direction = "higher"  # the paper: a above b, or no difference
    measure: str = "top-1"  # what a and b measure (the report groups claims by it)

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"claim {self.text!r}: direction {self.direction!r}; choose one of {DIRECTIONS}"
            )


@dataclass(frozen=True)
class Judgement:
    """A claim judged on the demo's numbers (what :func:`judge_claim` returns)."""

    claim: Claim
    text: str  # the claim's text with its fields filled
    value_a: float
    value_b: float
    difference: float  # value_a - value_b
    spread: float | None  # sum of the two seed standard deviations (None: one seed)
    noise_2se: float | None  # two standard errors of the difference (None: unknown)
    verdict: str  # "agrees", "disagrees" or "tie"
    conclusive: bool  # the gap is beyond the seed spread and the two standard errors

    @property
    def confidence(self) -> str:
        """Why the gap does or does not mean something, in words (the main demo's report)."""
        gap = abs(self.difference)
        if self.spread is not None and gap <= self.spread:
            return "gap within the seed spread: not conclusive"
        if self.noise_2se is None:
            return "difference of means"
        if gap <= self.noise_2se:
            return "gap within 2 standard errors of the evaluation: not conclusive"
        if self.spread is None:
            return "gap beyond 2 standard errors (one seed)"
        return "gap beyond the seed spread and 2 standard errors"

    def to_dict(self) -> dict[str, Any]:
        """The layout of a claim in the main demo's ``metrics.json``."""
        return {
            "table": self.claim.table,
            "claim": self.text,
            "a": self.claim.a_label,
            "b": self.claim.b_label,
            "a_mean": self.value_a,
            "b_mean": self.value_b,
            "difference": self.difference,
            "spread": self.spread,
            "noise_2se": self.noise_2se,
            "verdict": self.verdict,
            "confidence": self.confidence,
        }


#: Gaps smaller than this (in the quantities' units: percentage points for accuracies) are ties.
#: The accuracies arrive as float32 fractions (55% is 55.000001...), so two means of the same
#: clip counts can differ by about 1e-6 points; one clip of a million is 1e-4 points.
TIE_TOLERANCE = 1e-5


def judge_claim(claim: Claim, a: Estimate, b: Estimate, **fields: Any) -> Judgement:
    """Judge one claim: does the demo order ``a`` and ``b`` as the paper does, beyond the noise?

    The gap is conclusive when it exceeds both the seed spread (the sum of the two standard
    deviations, when there are several seeds) and two standard errors of the difference
    (``2 * sqrt(se_a**2 + se_b**2)``; unknown when either standard error is). Where the paper
    reports a strict ordering, the verdict follows the sign of the gap (``tie`` for no gap, or one
    below :data:`TIE_TOLERANCE`);
    where it reports no difference, a conclusive gap disagrees and any other agrees.

    Args:
        claim: the claim.
        a: the measured first quantity.
        b: the measured second quantity.
        **fields: values for the ``{name}`` fields of ``claim.text``.
    """
    diff = a.value - b.value
    if abs(diff) < TIE_TOLERANCE:  # float32 rounding of equal accuracies, not a gap
        diff = 0.0
    spread = a.std + b.std if a.std is not None and b.std is not None else None
    noise = 2.0 * math.sqrt(a.se**2 + b.se**2) if a.se is not None and b.se is not None else None
    conclusive = noise is not None and abs(diff) > noise and (spread is None or abs(diff) > spread)
    if claim.direction == "same":
        verdict = "disagrees" if conclusive else "agrees"
    elif diff > 0:
        verdict = "agrees"
    elif diff < 0:
        verdict = "disagrees"
    else:
        verdict = "tie"
    return Judgement(
        claim=claim,
        text=claim.text.format(**fields) if fields else claim.text,
        value_a=a.value,
        value_b=b.value,
        difference=diff,
        spread=spread,
        noise_2se=noise,
        verdict=verdict,
        conclusive=conclusive,
    )


def judge_claims(
    claims: Sequence[Claim], quantities: Mapping[str, Estimate], **fields: Any
) -> list[Judgement]:
    """Judge every claim on the measured quantities, in order.

    Raises:
        KeyError: a claim names a quantity that was not measured (the message lists the
            measured ones).
    """
    judged = []
    for claim in claims:
        for key in (claim.a, claim.b):
            if key not in quantities:
                raise KeyError(
                    f"claim {claim.text!r} compares {key!r}, which was not measured; "
                    f"measured: {sorted(quantities)}"
                )
        judged.append(judge_claim(claim, quantities[claim.a], quantities[claim.b], **fields))
    return judged


def ranking(values: Mapping[str, float]) -> str:
    """``"a > b = c"``: keys by decreasing value, equal values joined by ``=``."""
    keys = sorted(values, key=lambda k: -values[k])
    text = keys[0]
    for before, key in zip(keys, keys[1:]):
        text += (" = " if values[key] == values[before] else " > ") + key
    return text

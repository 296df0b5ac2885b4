"""The reports: ``report.md`` of the main demo and ``contrastive_report.md`` of table 9.

Each is a Jinja2 template (package resources under ``text4vis_demo/templates``) rendered from the
typed metrics (:class:`~text4vis_demo.metrics.DemoMetrics`,
:class:`~text4vis_demo.contrastive.ContrastiveMetrics`), so every number printed is one of the
metrics that ``metrics.json`` holds; the functions here only pick rows and take differences.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any

import jinja2

from text4vis_demo.paper import PAPER_TABLE9
from text4vis_demo.runs import RunSpec
from text4vis_demo.settings import (
    DEMO_ARCH,
    DEMO_ARCH_TEXT,
    TABLE6_TEMPORAL,
    TEXT_ENCODER,
    TEXT_ENCODER_WEIGHTS,
)
from text4vis_demo.statistics import Judgement, Stats

if TYPE_CHECKING:
    from text4vis_demo.contrastive import ContrastiveMetrics
    from text4vis_demo.metrics import DemoMetrics, Table6Row

__all__ = ["format_stats", "render_contrastive_report", "render_report"]

_TABLE6_HEAD = {"mean": "mean pooling", "transformer": "temporal transformer"}[TABLE6_TEMPORAL]
# Table 6's rows, by initialiser.
_INIT_LABELS = {
    "text": "text (MiniLM; paper: DistilBERT)",
    "lda": "LDA",
    "random": "random normal",
    "orthogonal": "random orthogonal",
    "learnable": "learnable (vision-only)",
}
# The fields of Table6Row that split its accuracy by class group.
_FINAL_GROUPS = ("direction_top1", "other_top1")
_EARLY_GROUPS = (
    "first_direction_top1",
    "first_other_top1",
    "early_direction_top1",
    "early_other_top1",
)


def format_stats(stats: Stats | None, missing: str = "n/a") -> str:
    """An accuracy summary as report text: ``mean ± std`` over seeds, or ``value (SE x)`` for one
    seed; ``missing`` for None."""
    if stats is None:
        return missing
    if stats.std is None:
        return f"{stats.mean:.1f} (SE {stats.se:.1f})"
    return f"{stats.mean:.1f} ± {stats.std:.1f}"


def _paper(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def _paragraph(text: str) -> str:
    """A paragraph written wrapped in a template, as one line (markdown reads it the same)."""
    return re.sub(r"\s*\n\s*", " ", text.strip()) + "\n"


def _table9_confidence(judged: Judgement) -> str:
    """Why a table-9 gap does or does not mean something (one run per row: no seed spread)."""
    if judged.noise_2se is None:
        return "one epoch, no spread: not conclusive"
    if judged.conclusive:
        return f"gap beyond 2 standard errors ({judged.noise_2se:.2f})"
    return f"gap within 2 standard errors ({judged.noise_2se:.2f}): not conclusive"


def _load_template(name: str) -> str:
    return (resources.files("text4vis_demo") / "templates" / name).read_text(encoding="utf-8")


@cache
def _environment() -> jinja2.Environment:
    """Templates from the package's resources; an unknown name in a template is an error."""
    env = jinja2.Environment(
        loader=jinja2.FunctionLoader(_load_template),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # markdown, not HTML
    )
    env.filters.update(
        f=format,  # {{ x|f(".1f") }}
        stats=format_stats,
        paper=_paper,
        para=_paragraph,
        repr=repr,
        mark=lambda value: "✓" if value else "✗",
        init_label=lambda init: _INIT_LABELS.get(init, init),
        table9_confidence=_table9_confidence,
    )
    return env


def _text_minus(text: Table6Row, others: list[Table6Row], field: str) -> str:
    """Text's ``field`` mean minus each other row's, in points: ``"+1.2 and -0.3"``."""
    return " and ".join(
        f"{getattr(text, field).mean - getattr(other, field).mean:+.1f}" for other in others
    )


def _group_rows(table6: Mapping[str, Table6Row], fields: tuple[str, ...]) -> dict[str, Any] | None:
    """Table 6's rows that were measured per class group (every one of ``fields``), and text
    minus random and orthogonal for each field (None without a text row and one of those);
    None when no row was measured so."""
    rows = {
        init: row
        for init, row in table6.items()
        if all(getattr(row, field) is not None for field in fields)
    }
    if not rows:
        return None
    text = rows.get("text")
    others = [rows[k] for k in ("random", "orthogonal") if k in rows]
    gaps = (
        {field: _text_minus(text, others, field) for field in fields} if text and others else None
    )
    return {"rows": rows, "gaps": gaps}


def _training_fit(m: DemoMetrics) -> list[str]:
    """Table 6's runs' training top-1 in their last epoch, mean over the seeds, per initialiser
    (``"LDA 21.2"``): whether the runs fit their own training clips within the schedule. Empty
    when a run did not record it."""
    parts = []
    for init in m.tables.table6:
        keys = [RunSpec(init, TABLE6_TEMPORAL, 0, seed).key for seed in m.seeds]
        last = [m.runs[k].history[-1].get("train_top1") for k in keys if k in m.runs]
        values = [float(v) for v in last if v is not None]
        if len(values) == len(m.seeds):
            parts.append(f"{_INIT_LABELS.get(init, init)} {100 * sum(values) / len(values):.1f}")
    return parts


def render_report(m: DemoMetrics) -> str:
    """``report.md`` from the main demo's metrics (template ``report.md.j2``)."""
    loads = []
    if m.load_average_1min is not None:
        loads = [v for v in (m.load_average_1min.start, m.load_average_1min.end) if v is not None]
    return (
        _environment()
        .get_template("report.md.j2")
        .render(
            m=m,
            s=m.settings,
            ds=m.dataset,
            t6=m.tables.table6,
            t7=m.tables.table7,
            t8=m.tables.table8,
            f1=m.figure1,
            example=m.predict_example,
            arch_text=DEMO_ARCH_TEXT,
            table6_head=_TABLE6_HEAD,
            final_groups=_group_rows(m.tables.table6, _FINAL_GROUPS),
            early_groups=_group_rows(m.tables.table6, _EARLY_GROUPS),
            training_fit=_training_fit(m),
            loads=loads,
        )
    )


def render_contrastive_report(m: ContrastiveMetrics) -> str:
    """``contrastive_report.md`` from the table-9 metrics (template
    ``contrastive_report.md.j2``)."""
    return (
        _environment()
        .get_template("contrastive_report.md.j2")
        .render(
            m=m,
            s=m.settings,
            arch=DEMO_ARCH,
            arch_text=DEMO_ARCH_TEXT,
            text_encoder=TEXT_ENCODER,
            text_weights=TEXT_ENCODER_WEIGHTS,
            initial=m.initial_text_classifier,
            paper_table9=PAPER_TABLE9,
            loads=[x for r in m.rows.values() for x in r.job.load_avg_1min],
            online={k: r for k, r in m.rows.items() if r.trained_text_classifier is not None},
            claims_by_measure={
                kind: [c for c in m.claims if c.claim.measure == kind]
                for kind in ("top-1", "time per epoch")
            },
        )
    )

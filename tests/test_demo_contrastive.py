"""The table-9 demo: five DDP runs (CE and four contrastive variants) and their report.

The end-to-end test launches 5 real `torchrun` jobs of 2 gloo processes (about 12 s each, most of
it process start-up on 2 cores: 60-95 s in all, depending on other load). The report tests below
run on hand-made metrics in milliseconds.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from text4vis_demo.contrastive import ROWS, ContrastiveMetrics, Table9Result, table9_quantities
from text4vis_demo.contrastive import judge_table9 as _claims
from text4vis_demo.paper import PAPER_TABLE9, TABLE9_CLAIMS
from text4vis_demo.report import render_contrastive_report
from text4vis_demo.runs import JobResult
from text4vis_demo.settings import DemoSettings
from text4vis_demo.statistics import judge_claims

KEYS = [row.key for row in ROWS]


def table_rows(report: str) -> dict[str, list[str]]:
    """Cells of the table-9 rows of the report, by row key."""
    section = report.split("## Table 9", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells
    return rows


def check_table(report: str, metrics: dict[str, Any]) -> None:
    rows = table_rows(report)
    assert list(rows) == KEYS == list(metrics["rows"])
    for key, cells in rows.items():
        r = metrics["rows"][key]
        assert cells[4] == f"{PAPER_TABLE9[key]['top1']:.1f}"
        assert cells[5] == f"{100 * r['top1']:.1f}"
        assert cells[6] == f"{PAPER_TABLE9[key]['v100_days']:.1f}"
        assert cells[8] == f"{r['train_time_s']:.1f}"
        assert cells[9] == f"{r['train_time_ratio_vs_ce']:.2f}"
        assert cells[10] == f"{r['wall_s']:.1f}"
        assert cells[11] == f"{r['wall_ratio_vs_ce']:.2f}"


def fake_rows(top1: dict[str, float], epoch_s: dict[str, float]) -> dict[str, Any]:
    rows = {}
    for row in ROWS:
        times = [3.0, epoch_s[row.key], epoch_s[row.key] + 0.01, epoch_s[row.key] - 0.01]
        rows[row.key] = {
            "paradigm": row.paradigm,
            "gather": row.gather,
            "text_online": row.text_online,
            "top1": top1[row.key],
            "num_val_videos": 100,
            "train_time_s": sum(times),
            "epoch_time_s": times,
            "steady_epochs": 3,
            "steady_epoch_time_mean_s": epoch_s[row.key],
            "steady_epoch_time_std_s": 0.01,
            "wall_s": 10.0 + sum(times),
            "paper_top1": PAPER_TABLE9[row.key]["top1"],
            "paper_v100_days": PAPER_TABLE9[row.key]["v100_days"],
            "paper_cost_ratio_vs_ce": PAPER_TABLE9[row.key]["v100_days"] / 3.3,
            "train_time_ratio_vs_ce": 1.0,
            "wall_ratio_vs_ce": 1.0,
        }
    return rows


def fake_metrics(top1: dict[str, float], epoch_s: dict[str, float]) -> ContrastiveMetrics:
    """Typed table-9 metrics with the given top-1 (fraction) and steady epoch time per row."""
    results = {}
    for row in ROWS:
        times = [3.0, epoch_s[row.key], epoch_s[row.key] + 0.01, epoch_s[row.key] - 0.01]
        job = JobResult(
            top1=top1[row.key],
            top5=1.0,
            num_val_videos=100,
            final_train_loss=1.0,
            steps=12,
            train_time_s=sum(times),
            epoch_time_s=times,
            epoch_time_mean_s=sum(times) / 4,
            epoch_time_std_s=0.5,
            steady_epochs=3,
            steady_epoch_time_mean_s=epoch_s[row.key],
            steady_epoch_time_std_s=0.01,
            wall_s=10.0 + sum(times),
            load_avg_1min=[1.5, 2.5],
            peak_mem_mb_rank0=100.0,
            exit_code=0,
            run_dir=f"runs/{row.key}",
            log=f"runs/{row.key}/torchrun.log",
            command=["torchrun"],
        )
        trained = {"offdiag_cos_mean": 0.5, "offdiag_cos_max": 0.9} if row.text_online else None
        results[row.key] = Table9Result(row, job, 1.0, 1.0, trained)
    rows = {key: result.to_dict() for key, result in results.items()}
    return ContrastiveMetrics(
        mode="quick",
        seed=0,
        settings=DemoSettings(epochs=4, lr=1e-3, batch_size=16, train_per_class=2),
        processes=2,
        cpu_count=2,
        num_classes=20,
        initial_text_classifier={"offdiag_cos_mean": 0.7, "offdiag_cos_max": 0.99},
        pretrained="pretrain/demo_pretrained.safetensors",
        stage0=None,
        rows=results,
        claims=judge_claims(TABLE9_CLAIMS, table9_quantities(rows)),
        timing_s={"dataset_s": 1.0, "stage0_s": 0.0, "training_s": 2.0, "total_s": 3.0},
    )


PAPER_LIKE_TOP1 = {k: v["top1"] / 100 for k, v in PAPER_TABLE9.items()}
PAPER_LIKE_TIME = {k: v["v100_days"] for k, v in PAPER_TABLE9.items()}


def test_orderings_like_the_papers_agree_and_reversed_ones_disagree() -> None:
    claims = _claims(fake_rows(PAPER_LIKE_TOP1, PAPER_LIKE_TIME))
    assert len(claims) == 16
    assert all(c["verdict"] == "agrees" for c in claims), claims
    # Reverse every accuracy and cost: every strict ordering of the paper now disagrees.
    reversed_top1 = {k: 1.0 - v for k, v in PAPER_LIKE_TOP1.items()}
    reversed_time = {k: 10.0 - v for k, v in PAPER_LIKE_TIME.items()}
    claims = _claims(fake_rows(reversed_top1, reversed_time))
    strict = [c for c in claims if c["paper_a"] != c["paper_b"]]
    assert strict and all(c["verdict"] == "disagrees" for c in strict), strict
    # The paper's tie (local offline vs ours, 3.3 V100-days each) is judged by the noise:
    # equal times agree, a gap far beyond the epoch-time spread (0.01 s) disagrees.
    (tie,) = [c for c in claims if c["paper_a"] == c["paper_b"]]
    assert tie["verdict"] == "agrees" and not tie["conclusive"]
    claims = _claims(fake_rows(reversed_top1, dict(reversed_time, ce=9.0)))
    (tie,) = [c for c in claims if c["paper_a"] == c["paper_b"]]
    assert tie["verdict"] == "disagrees" and tie["conclusive"]


def test_accuracy_gap_within_the_sampling_error_is_not_conclusive() -> None:
    top1 = dict(PAPER_LIKE_TOP1, gather_online=0.50, local_online=0.49)
    claims = _claims(fake_rows(top1, PAPER_LIKE_TIME))
    (claim,) = [
        c
        for c in claims
        if c["a"] == "gather_online" and c["b"] == "local_online" and c["kind"] == "top-1"
    ]
    assert claim["verdict"] == "agrees" and not claim["conclusive"]
    # 2 standard errors of two accuracies near 0.5 on 100 clips each
    assert claim["noise_2se"] == pytest.approx(2 * math.sqrt(2 * 25.0), rel=1e-2)


def test_report_table_lists_the_five_rows_with_their_numbers() -> None:
    metrics = fake_metrics(PAPER_LIKE_TOP1, PAPER_LIKE_TIME)
    report = render_contrastive_report(metrics)
    check_table(report, metrics.to_dict())
    assert "ce > gather_online > gather_offline > local_online > local_offline (the same)" in report


def test_contrastive_flag_rejects_seeds(capsys) -> None:
    from text4vis.cli import main

    assert main(["demo", "--contrastive", "--seeds", "2"]) == 2
    assert "use --seed with --contrastive" in capsys.readouterr().err
    assert main(["demo", "--pretrained", "w.safetensors"]) == 2
    assert "--pretrained applies to --contrastive" in capsys.readouterr().err


def test_missing_pretrained_file_is_named_before_any_work(tmp_path: Path) -> None:
    from text4vis_demo import run_contrastive_demo

    missing = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="nope.safetensors: no such weight file"):
        run_contrastive_demo(tmp_path / "out", quick=True, pretrained=missing)
    assert not (tmp_path / "out").exists()


@pytest.mark.process
def test_quick_demo_end_to_end(tmp_path: Path, capsys) -> None:
    from text4vis.cli import main

    # Through the command line, as a user runs it: `text4vis demo --contrastive --quick`.
    assert (
        main(["demo", "--contrastive", "--quick", "--no-progress", "--out", str(tmp_path / "out")])
        == 0
    )
    out = Path(capsys.readouterr().out.split("report: ", 1)[1].strip()).parent
    assert out == tmp_path / "out"
    report = (out / "contrastive_report.md").read_text()
    saved = json.loads((out / "contrastive_metrics.json").read_text())
    assert list(saved["rows"]) == KEYS
    for key, r in saved["rows"].items():
        assert math.isfinite(r["top1"]) and 0.0 <= r["top1"] <= 1.0, (key, r["top1"])
        assert r["train_time_s"] > 0 and r["wall_s"] > r["train_time_s"], key
        assert r["exit_code"] == 0, key  # torchrun exits 0 only when every worker did
        log = (out / r["log"]).read_text()
        assert "Traceback" not in log and "ChildFailedError" not in log, log[-2000:]
        assert (out / r["run_dir"] / "model" / "model.safetensors").is_file()
        assert r["steps"] > 0
    # The switches reached the trainer: each run's resolved config says what its row is.
    for row in ROWS:
        config = (out / "runs" / row.key / "config.yaml").read_text()
        objective = "contrastive" if row.paradigm == "contrastive" else "ce"
        assert f"objective: {objective}" in config, row.key
        if row.paradigm == "contrastive":
            assert f"gather: {str(row.gather).lower()}" in config, row.key
            assert f"text_online: {str(row.text_online).lower()}" in config, row.key
        # Every row starts from the pretrained pair: stage 0's image encoder and MiniLM.
        assert f"pretrained: {out / saved['image_encoder']['weights']}" in config, row.key
        assert "text_encoder: sentence-transformers:all-MiniLM-L6-v2" in config, row.key
        assert "visual_lr_ratio: 0.1" in config and "text_lr_ratio: 0.1" in config, row.key
        model = out / "runs" / row.key / "model"
        trained = (model / "text_encoder").is_dir()
        assert trained == (row.paradigm == "contrastive" and row.text_online), row.key
    assert saved["stage0"]["zero_shot"]["colour"]["top1"] > 0  # stage 0 ran, and measured
    assert "## Table 9" in report and "The pretrained pair" in report
    check_table(report, saved)
    assert saved["processes"] == 2 and saved["global_batch"] == 2 * saved["per_process_batch"]

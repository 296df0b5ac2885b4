"""`text4vis demo --quick` end to end (report, metrics, figures, exported model), the demo's
settings and run plan, and its report on hand-made metrics.

The statistics and the claims are tested in test_demo_statistics.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from text4vis_demo.metrics import (
    DatasetSummary,
    DemoMetrics,
    DemoTables,
    DemoTiming,
    Figure1,
    PeakMemory,
    Regimes,
    Table6Row,
    Table7,
    Table8,
    Table8Row,
)
from text4vis_demo.report import format_stats as _fmt
from text4vis_demo.report import render_report
from text4vis_demo.runs import LabelScore, PredictExample, RunSpec, run_specs
from text4vis_demo.settings import TABLE6_TEMPORAL, DemoSettings, demo_settings
from text4vis_demo.statistics import Claim, Stats, accuracy_stats, judge_claims

PROBE = [sys.executable, "-m", "text4vis_demo.probe"]


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the real command once for the module (about a minute on 2 cores)."""
    base = tmp_path_factory.mktemp("demo")
    exe = Path(sys.executable).with_name("text4vis")
    # No --out, as `make demo` runs it: the report goes to the relative default runs/demo/<time>.
    result = subprocess.run(
        [str(exe), "demo", "--quick", "--no-progress"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=base,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = Path(result.stdout.split("report: ", 1)[1].strip())
    assert report.name == "report.md" and report.is_file()
    out = report.parent
    assert out.resolve().parent == (base / "runs" / "demo").resolve()
    # Progress is shown throughout: one line per training run and per epoch.
    assert "[run 12/12]" in result.stderr and "epoch 4:" in result.stderr
    return out


def finite_numbers(value: object) -> list[float]:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [x for v in value.values() for x in finite_numbers(v)]
    if isinstance(value, list):
        return [x for v in value for x in finite_numbers(v)]
    raise AssertionError(f"unexpected value {value!r} in metrics.json")


@pytest.mark.process
def test_quick_demo_writes_a_well_formed_report(quick_demo: Path):
    metrics = json.loads((quick_demo / "metrics.json").read_text())
    assert all(math.isfinite(x) for x in finite_numbers(metrics))
    assert metrics["mode"] == "quick" and metrics["seeds"] == [0]
    specs = run_specs(demo_settings(quick=True))
    assert sorted(metrics["runs"]) == sorted(spec.key for spec in specs)
    for run in metrics["runs"].values():
        assert len(run["history"]) == 4  # one row per epoch, each with a validation top-1
        assert all(0 <= row["val_top1"] <= 1 for row in run["history"])
        assert run["val_top1"] == run["history"][-1]["val_top1"]
        assert (quick_demo / run["run_dir"] / "config.yaml").is_file()
    assert set(metrics["table6"]) == {"text", "lda", "random", "orthogonal", "learnable"}
    for regime in ("zero_shot", "two_shot", "full"):
        for side in ("vision_text", "vision_only"):
            assert 0 <= metrics["table7"][side][regime]["mean"] <= 100
    assert metrics["table8"]["num_direction_videos"] == 32  # 16 direction classes x 2 clips
    assert {c["verdict"] for c in metrics["claims"]} <= {"agrees", "disagrees", "tie"}
    # The text encoder puts the names of time-reversed partners closer than other class pairs.
    figure1 = metrics["figure1"]
    assert figure1["text_cosine_reversed_partners"] > figure1["text_cosine_other_pairs"]
    by_group = figure1["text_cosine_reversed_partners_by_group"]
    assert set(by_group) == set(metrics["table8"]["groups"]["mean"]) and len(by_group) == 4

    # Stage 0 ran, wrote a weight file every pretrained run loaded, and measured its zero-shot.
    stage0 = metrics["stage0"]
    assert (quick_demo / stage0["weights"]).is_file()
    for spec in specs:
        config = (quick_demo / metrics["runs"][spec.key]["run_dir"] / "config.yaml").read_text()
        assert (stage0["weights"] in config) == (spec.visual != "scratch"), spec.key
    assert set(stage0["zero_shot"]) == {"colour", "shape", "size", "position", "background"}
    for row in stage0["zero_shot"].values():
        assert 0 <= row["top1"] <= 100 and row["chance"] == pytest.approx(100 / row["candidates"])
    assert metrics["scratch"]["zero_shot"]["mean"] >= 0
    # Stage 0 on the seen clips: a right class has the right colour, shape and motion.
    seen = stage0["seen_video_attributes"]
    assert set(seen) == {"class", "colour", "shape", "motion"}
    assert all(seen["class"]["top1"] <= seen[a]["top1"] <= 100 for a in ("colour", "shape"))
    assert seen["class"]["top1"] <= seen["motion"]["top1"]
    assert seen["class"]["chance"] == pytest.approx(5.0)  # 20 seen classes
    assert seen["colour"]["chance"] == pytest.approx(25.0)  # 5 of the 20 share each colour
    first = stage0["first_epoch_top1"]
    assert set(first) == {"text", "lda", "random", "orthogonal", "learnable", "scratch"}
    text_first = metrics["runs"][RunSpec("text", "transformer", 0, 0).key]["history"][0]["val_top1"]
    assert first["text"]["mean"] == pytest.approx(100 * text_first)
    assert 0 <= metrics["main_model"]["zero_shot"]["top1"] <= 100

    report = (quick_demo / "report.md").read_text()
    for heading in (
        "## Stage 0",
        "## Table 6",
        "## Table 7",
        "## Table 8",
        "## Figure 1",
        "orderings agree",
    ):
        assert heading in report
    # The report prints the measured numbers of metrics.json, next to the paper's.
    text6 = metrics["table6"]["text"]
    assert f"| {text6['paper_top1']:.1f} | {_fmt(Stats(**text6['top1']))} |" in report
    assert f"{text6['top1']['mean']:.1f} (SE " in report  # one seed: value and standard error
    assert "text4vis predict" in report and "--model model" in report
    # Table 6 per class group and with 2 shots: every initialiser's final model split into the
    # direction-dependent and the other classes; text, random, orthogonal and learnable 2-shot.
    for init, row in metrics["table6"].items():
        assert 0 <= row["direction_top1"]["mean"] <= 100 and 0 <= row["other_top1"]["mean"] <= 100
        assert (row["two_shot_top1"] is None) == (init == "lda")
    assert (
        metrics["table6"]["text"]["direction_top1"]
        == metrics["table8"]["transformer"]["direction_top1"]
    )  # the same run (table 6's text row is table 8's transformer row)
    two_shot = metrics["runs"][RunSpec("random", "mean", 2, 0).key]["val_top1"]
    assert metrics["table6"]["random"]["two_shot_top1"]["mean"] == pytest.approx(100 * two_shot)
    assert "| direction-dependent classes | other classes |" in report
    # Early per class group, from the trainer's per-class counts: the two groups' accuracies,
    # weighted by their clips, give the run's validation top-1 after those epochs.
    n_dir = metrics["table8"]["num_direction_videos"]
    n_other = metrics["table8"]["num_other_videos"]
    for init, row in metrics["table6"].items():
        history = metrics["runs"][RunSpec(init, TABLE6_TEMPORAL, 0, 0).key]["history"]
        for prefix, epoch in (("first", 1), ("early", metrics["early_epoch"])):
            direction = row[f"{prefix}_direction_top1"]["mean"]
            other = row[f"{prefix}_other_top1"]["mean"]
            assert (n_dir * direction + n_other * other) / (n_dir + n_other) == pytest.approx(
                100 * history[epoch - 1]["val_top1"]
            ), (init, prefix)
    assert "Early in training, per class group" in report
    claims = {c["claim"] for c in metrics["claims"]}
    assert "text classifier beats random with 2 shots" in claims and len(claims) == 14

    for name in ("curves_init.png", "correlation_maps.png"):
        with Image.open(quick_demo / name) as image:
            image.verify()
        with Image.open(quick_demo / name) as image:
            assert image.format == "PNG" and min(image.size) >= 300


@pytest.mark.process
def test_quick_demo_exports_a_model_that_loads_and_beats_chance(quick_demo: Path):
    import torch

    from text4vis.config import load_config
    from text4vis.data import build_dataset, read_labels
    from text4vis.models.video import VideoRecognizer

    metrics = json.loads((quick_demo / "metrics.json").read_text())
    names = read_labels(quick_demo / "data" / "labels_seen.csv")
    # The text-initialised model beats chance on the seen classes.
    text_top1 = metrics["runs"][RunSpec("text", "mean", 0, 0).key]["val_top1"]
    assert text_top1 > 1 / len(names)

    model = VideoRecognizer.from_pretrained(quick_demo / "model").eval()
    assert model.class_names == names and model.model_cfg.temporal == "transformer"
    # The exported model is the run it names: it reproduces that run's validation accuracy.
    cfg = load_config(quick_demo / "config.yaml", ["data.num_workers=0"])
    dataset = build_dataset(cfg, "val", class_names=names)
    correct = 0
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            logits = model(item["video"])  # [V=1, T, 3, H, W] -> [1, C]
            assert logits.shape == (1, len(names))
            correct += int(logits.argmax() == item["label"])
    main_run = metrics["runs"][metrics["main_model"]["from_run"]]
    assert correct / len(dataset) == pytest.approx(main_run["val_top1"])


@pytest.mark.process
def test_probe_command_on_the_quick_demo(quick_demo: Path):
    result = subprocess.run(
        [*PROBE, str(quick_demo), "--epochs", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout)
    assert [h["epoch"] for h in out["history"]] == [1, 2]
    assert out["summary"]["val_clips"] > 0 and out["summary"]["embedding_norm"] > 0
    for h in out["history"]:
        assert 0.0 <= h["top1"] <= 100.0 and h["direction_top1"] is not None
    missing = subprocess.run(
        [*PROBE, str(quick_demo), "--run", "nope"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert missing.returncode == 2 and "nope" in missing.stderr and "runs" in missing.stderr
    zero = subprocess.run(
        [*PROBE, str(quick_demo), "--feature-scale", "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert zero.returncode == 2 and "feature_scale must be above 0" in zero.stderr


def test_settings_and_run_plan():
    full, quick = demo_settings(), demo_settings(quick=True)
    assert full.seeds == 1 and quick.seeds == 1 and demo_settings(seeds=3).seeds == 3
    assert quick.epochs < full.epochs and quick.train_per_class < full.train_per_class
    with pytest.raises(ValueError, match="seeds"):
        demo_settings(seeds=0)
    specs = run_specs(DemoSettings(seeds=2))
    assert len(specs) == len({s.key for s in specs}) == 24
    assert len(run_specs(DemoSettings(seeds=2, pretrain=False))) == 22
    # Every seed keeps one text run from a random encoder: what stage 0 changes.
    assert [(s.classifier, s.seed) for s in specs if s.visual == "scratch"] == [
        ("text", 0),
        ("text", 1),
    ]
    # Every table's runs are planned: table 6's five initialisers with the temporal transformer
    # (the paper's ablation default), tables 7-8's mean-pooling runs (full and 2-shot), and
    # table 6's random and orthogonal rows in the same 2-shot regime.
    seed0 = [s for s in specs if s.seed == 0 and s.visual != "scratch"]
    assert {s.classifier for s in seed0 if s.temporal == "transformer"} == {
        "text",
        "lda",
        "random",
        "orthogonal",
        "learnable",
    }
    assert all(s.shot == 0 for s in seed0 if s.temporal == "transformer")
    assert {(s.classifier, s.shot) for s in seed0 if s.temporal == "mean"} == {
        ("text", 0),
        ("learnable", 0),
        ("text", 2),
        ("learnable", 2),
        ("random", 2),
        ("orthogonal", 2),
    }
    assert [s.temporal for s in specs if s.visual == "scratch"] == ["transformer"] * 2


def fake_demo_metrics(**table6_extra: dict[str, Stats]) -> DemoMetrics:
    """Typed demo metrics made by hand: every accuracy is 29.0 ± 23.5 (12.3 and 45.6 over two
    seeds); ``table6_extra`` adds fields to table 6's rows, by initialiser."""
    s = accuracy_stats([0.123, 0.456], 10)
    table6 = {
        init: Table6Row(s, s, s, paper_top1=1.0, **table6_extra.get(init, {}))
        for init in ("text", "lda", "random", "orthogonal", "learnable")
    }
    table8 = Table8(Table8Row(s, s, s, s, 2.0), Table8Row(s, s, s, s, 2.0), 1, 1)
    tables = DemoTables(table6, Table7(Regimes(s, s, s), Regimes(s, s, s), 5.0, 10.0), table8)
    claim = Claim("6", "c", "table6.text.top1", "table6.lda.top1", "a", "b")
    return DemoMetrics(
        mode="full",
        settings=DemoSettings(seeds=2),
        dataset=DatasetSummary("data", ["a b"], ["c d"], 1, 1, 1),
        runs={},
        tables=tables,
        figure1=Figure1(0.5, 0.0, "r", 0.9, 0.5),
        claims=judge_claims([claim], tables.quantities()),
        early_epoch=3,
        main_model_from_run="m",
        predict_example=PredictExample("v.mp4", [LabelScore("c d", 0.9)]),
        timing_s=DemoTiming(1.0, 2.0, 3.0, 4.0, 10.0),
        peak_rss_mb=PeakMemory(100.0, 50.0),
        torch_threads=2,
    )


def test_report_prints_only_given_numbers():
    """render_report writes the numbers of the typed metrics it is given (made up here)."""
    report = render_report(fake_demo_metrics())
    assert report.startswith("# text4vis demo: the paper's ablations at toy scale\n\nMode **full**")
    assert "| random normal | 1.0 | 29.0 ± 23.5 | 29.0 ± 23.5 | 29.0 ± 23.5 | — |" in report
    assert "| table | claim | measured | verdict |" in report
    assert "| 6 | c | a 29.0 vs b 29.0 | **tie** (" in report  # equal numbers tie
    assert "Dataset 1 s, training 2 s (0 runs), evaluations 3 s, figures and export 4 s" in report
    assert "Stage 0" not in report and "CPU time" not in report  # not measured: not printed
    assert "text4vis predict v.mp4 --model model" in report and "- c d: 0.900" in report
    assert "\n\n\n" not in report and report.endswith(" total 10 s.\n")


def test_report_prints_early_accuracy_per_class_group():
    """Table 6's early accuracy per class group: one row per initialiser with the four given
    numbers, and text minus random and orthogonal per group; nothing when the runs kept none."""

    def row(first_dir, first_other, early_dir, early_other):
        return {
            "first_direction_top1": accuracy_stats([first_dir], 100),
            "first_other_top1": accuracy_stats([first_other], 20),
            "early_direction_top1": accuracy_stats([early_dir], 100),
            "early_other_top1": accuracy_stats([early_other], 20),
        }

    groups = {
        "text": row(0.50, 0.90, 0.52, 1.0),
        "random": row(0.40, 0.60, 0.51, 0.95),
        "orthogonal": row(0.45, 0.70, 0.50, 1.0),
    }
    report = render_report(fake_demo_metrics(**groups))
    assert "after epoch 1 and after epoch 3" in report
    assert "| text (MiniLM; paper: DistilBERT) | 50.0 (SE 5.0) | 90.0 (SE 6.7) |" in report
    assert (
        "in points: after epoch 1, direction-dependent classes +10.0 and +5.0, other classes "
        "+30.0 and +20.0; after epoch 3, direction-dependent classes +1.0 and +2.0, other "
        "classes +5.0 and +0.0."
    ) in report
    no_split = render_report(fake_demo_metrics())
    assert "Early in training, per class group" not in no_split
    assert "Early in training, per class group" not in render_report(
        fake_demo_metrics(**{k: {**v, "early_other_top1": None} for k, v in groups.items()})
    )

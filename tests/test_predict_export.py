"""`text4vis predict --model EXPORT_DIR`: an export folder (`text4vis export`) labels videos on
ONNX Runtime through the command's own output (JSON, CSV, table), with torch unimportable, and
gives the top labels of `text4vis predict --model MODEL_DIR` (the PyTorch path)."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import run_cli_without_torch
from test_export import COLOURS
from text4vis.cli import main

pytest.importorskip("onnxruntime")

NEW_LABELS = "dancing,cooking,red paint,a yellow bird"


def top_labels(stdout: str) -> list[list[str]]:
    """Per video of `predict --json`, its ranked labels."""
    return [[p["label"] for p in r["predictions"]] for r in json.loads(stdout)]


def torch_path(model: str, videos: list[str], *extra: str, capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["predict", *videos, "--model", model, "--json", "--workers", "0", *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.process
def test_export_predicts_as_the_model_without_torch(onnx_export, tmp_path, capsys):
    videos, export = onnx_export["videos"], str(onnx_export["export"])
    argvs = [
        ["predict", *videos, "--model", export, "--json", "--top-k", "4"],
        ["predict", *videos, "--model", export, "--json", "--labels", NEW_LABELS, "--top-k", "2"],
        [
            "predict",
            *videos,
            "--model",
            export,
            "--csv",
            str(tmp_path / "int8.csv"),
            "--precision",
            "int8",
            "--top-k",
            "1",
        ],  # fmt: skip
    ]
    report = run_cli_without_torch(argvs)
    assert report["torch_loaded"] == []
    assert [r["code"] for r in report["runs"]] == [0, 0, 0], report["stderr"]
    own, new, _ = report["runs"]

    # The same top labels as the PyTorch path on the saved model; scores within the resize's
    # one-grey-level difference (see tests/test_export.py), and the same JSON keys.
    want = torch_path(str(onnx_export["model"]), videos, "--top-k", "4", capsys=capsys)
    got = json.loads(own["stdout"])
    assert [r["video"] for r in got] == [r["video"] for r in want] == videos
    assert [set(r) for r in got] == [set(r) for r in want]
    assert [labels[0] for labels in top_labels(own["stdout"])] == [
        r["predictions"][0]["label"] for r in want
    ]
    for ours, theirs in zip(got, want):
        scores = {p["label"]: p["score"] for p in theirs["predictions"]}
        assert all(abs(p["score"] - scores[p["label"]]) < 5e-3 for p in ours["predictions"])
    # A colour clip is labelled with its colour by neither path necessarily (random visual
    # weights), but the four own classes are all ranked.
    assert all(sorted(labels) == sorted(COLOURS) for labels in top_labels(own["stdout"]))

    # New label names go through the export's text graph, as through the model's text encoder.
    want_new = torch_path(
        str(onnx_export["model"]), videos, "--labels", NEW_LABELS, "--top-k", "2", capsys=capsys
    )
    assert [labels[0] for labels in top_labels(new["stdout"])] == [
        r["predictions"][0]["label"] for r in want_new
    ]
    assert all(set(labels) <= set(NEW_LABELS.split(",")) for labels in top_labels(new["stdout"]))

    # int8 through --precision: the CSV of the command, one row per video at --top-k 1.
    with open(tmp_path / "int8.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["video"] for r in rows] == videos
    assert all(r["rank"] == "1" and r["label"] in COLOURS and not r["error"] for r in rows)


def test_export_table_and_unreadable_video(onnx_export, tmp_path, capsys):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    video = onnx_export["videos"][0]
    code = main(["predict", video, str(bad), "--model", str(onnx_export["export"]), "--top-k", "2"])
    out, err = capsys.readouterr()
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == video and lines[1].lstrip().startswith("1  ") and lines[3] == str(bad)
    assert lines[4].startswith("  error: ")
    assert f"cannot read {bad}" in err and "1 of 2 videos could not be read" in err


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--window", "2"], "--window 2.0"),
        (["--set", "data.num_segments=16"], "--set"),
        (["--device", "cuda"], "--device cuda"),
        (["--precision", "fp16"], "--precision fp16"),
        (["--views", "2x2"], "--views 2x2"),
    ],
)
def test_export_refuses_what_only_the_torch_path_does(onnx_export, extra, named, capsys):
    export = str(onnx_export["export"])
    code = main(["predict", onnx_export["videos"][0], "--model", export, *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: {named}" in err and "export" in err


def test_export_given_as_checkpoint_is_refused(onnx_export, capsys):
    export = str(onnx_export["export"])
    assert main(["predict", onnx_export["videos"][0], "--checkpoint", export]) == 2
    assert f"give it as --model {export}" in capsys.readouterr().err


@pytest.mark.process
def test_a_saved_model_without_torch_says_what_to_install(onnx_export):
    """Where torch is missing, the PyTorch path is a user's error naming the install and the
    export, not a bug report."""
    video = onnx_export["videos"][0]
    report = run_cli_without_torch([["predict", video, "--model", str(onnx_export["model"])]])
    assert report["runs"][0]["code"] == 2, report["stderr"]
    assert "needs the full install, and torch is not installed" in report["stderr"]
    assert "export folder" in report["stderr"] and "this is a bug" not in report["stderr"]

"""The eval, features and zeroshot commands on a tiny trained model and synthetic clips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from conftest import COLOURS, train_tiny_model, write_colour_clips
from text4vis.cli import main
from text4vis.config import load_config
from text4vis.data.annotations import write_annotations
from text4vis.data.few_shot import half_class_splits
from text4vis.data.labels import write_labels
from text4vis.engine.features import load_features
from text4vis.engine.zero_shot import zero_shot
from text4vis.models.factory import load_model


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A model trained for one short epoch, its data and a config for the commands."""
    root = tmp_path_factory.mktemp("cmd")
    write_labels(root / "labels.csv", [f"{name} thing" for name in COLOURS])
    write_annotations(root / "train.txt", write_colour_clips(root, per_class=2, seed=0))
    # 5 test videos: an odd number, and class 3 has none
    test = write_colour_clips(root, per_class=2, seed=2)[:5]
    write_annotations(root / "test.txt", test)
    write_annotations(root / "val.txt", test)
    extra = (
        "train.epochs=1",
        f"data.test_list={root / 'test.txt'}",
        "run.name=cmd",
        "model.classifier=text",  # the random tiny CLIP text tower: checks zero-shot rebuilds it
        "train.seed=5",
    )
    return train_tiny_model(root, "eval.yaml", *extra)


def _run_folder_of(capsys) -> tuple[dict, Path]:
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{") :])
    return report, Path(report["run_dir"])


def test_eval_multi_view_matches_direct_computation(trained, capsys):
    assert main(["eval", str(trained["config"]), "--checkpoint", str(trained["ckpt"]),
                 "--views", "2x3"]) == 0  # fmt: skip
    report, run = _run_folder_of(capsys)
    assert report["views"] == "2x3" and report["num_videos"] == 5
    with (run / "per_class.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == [f"{c} thing" for c in COLOURS]
    assert rows[3]["videos"] == "0" and rows[3]["accuracy"] == ""
    assert (run / "confusion.png").stat().st_size > 0
    assert json.loads((run / "metrics.json").read_text())["top1"] == report["top1"]

    # Restate the computation: 6 views per video, softmax averaged, argmax against the label.
    from text4vis.data.dataset import build_dataset
    from text4vis.engine.evaluate import with_views

    cfg = with_views(load_config(trained["config"]), "2x3")
    dataset = build_dataset(cfg, "test")
    model = load_model(trained["model"])
    correct = []
    with torch.no_grad():
        for i in range(len(dataset)):
            item = dataset[i]
            assert item["video"].shape[:2] == (6, 4)  # [V=2x3, T=4, 3, S, S]
            probs = model(item["video"]).softmax(-1).mean(0)  # [V, C] -> [C]
            correct.append(int(probs.argmax()) == item["label"])
    assert report["top1"] == pytest.approx(sum(correct) / len(correct))

    # the exported folder and the training checkpoint are the same model
    assert main(["eval", str(trained["config"]), "--checkpoint", str(trained["model"]),
                 "--views", "2x3"]) == 0  # fmt: skip
    again, _ = _run_folder_of(capsys)
    assert again["top1"] == report["top1"] and again["mean_class_acc"] == report["mean_class_acc"]


def test_features_file_and_zero_shot_from_cache(trained, capsys, tmp_path):
    out = tmp_path / "train_feats.safetensors"
    assert main(["features", str(trained["config"]), "--checkpoint", str(trained["model"]),
                 "--out", str(out), "--split", "train", "--per-class", "1"]) == 0  # fmt: skip
    feats = load_features(out)
    assert feats.features.shape == (4, 64) and sorted(feats.labels.tolist()) == [0, 1, 2, 3]
    train_lines = (trained["root"] / "train.txt").read_text().splitlines()
    for row, position in enumerate(feats.indices.tolist()):
        assert feats.paths[row] == train_lines[position].split()[0]
    # the classifier command's LDA reads exactly these two tensors
    from safetensors.torch import load_file

    assert set(load_file(str(out))) >= {"features", "labels"}

    test_feats = tmp_path / "test_feats.safetensors"
    assert main(["features", str(trained["config"]), "--checkpoint", str(trained["ckpt"]),
                 "--out", str(test_feats)]) == 0  # fmt: skip
    cfg = load_config(trained["config"])
    cached = zero_shot(cfg, trained["model"], protocol="full", features=test_feats)
    direct = zero_shot(cfg, trained["model"], protocol="full")
    assert cached.summary == pytest.approx(direct.summary)
    assert cached.num_videos == 5 and cached.class_subsets == [[0, 1, 2, 3]]

    half = zero_shot(cfg, trained["model"], protocol="half", features=test_feats)
    assert half.class_subsets == half_class_splits(4, 10)
    assert zero_shot(cfg, trained["model"], protocol="half", features=test_feats) == half
    assert len(half.splits) == 10 and "top1_std" in half.summary


def test_zero_shot_classifier_is_the_trained_text_classifier(trained):
    # For the training labels, the zero-shot text classifier must be the very matrix the model
    # was trained with: same text encoder, prompt and (random, seeded) text tower.
    from text4vis.models.factory import load_saved_model
    from text4vis.models.zero_shot import (
        build_zero_shot_classifier,
        saved_text_encoder,
        zero_shot_templates,
    )

    model = load_model(trained["model"])
    for checkpoint in (trained["ckpt"], trained["model"]):
        saved = load_saved_model(checkpoint)
        templates = zero_shot_templates(saved.config.model)
        weight = build_zero_shot_classifier(saved_text_encoder(saved), model.class_names, templates)
        assert torch.allclose(weight, model.classifier.weight, atol=1e-6), checkpoint


def test_zero_shot_split_files_and_cli(trained, capsys, tmp_path):
    first = write_labels(tmp_path / "split1.csv", ["red thing", "blue thing"])
    second = write_labels(tmp_path / "split2.csv", ["green thing", "yellow thing", "red thing"])
    assert main(["zeroshot", str(trained["config"]), "--checkpoint", str(trained["ckpt"]),
                 "--protocol", "splits", "--split-file", str(first),
                 "--split-file", str(second)]) == 0  # fmt: skip
    report, run = _run_folder_of(capsys)
    assert report["class_subsets"] == [[0, 2], [1, 3, 0]]
    assert [s["num_classes"] for s in report["splits"]] == [2, 3]
    assert (run / "zeroshot.json").is_file()
    missing = write_labels(tmp_path / "bad.csv", ["purple thing"])
    assert main(["zeroshot", str(trained["config"]), "--checkpoint", str(trained["ckpt"]),
                 "--protocol", "splits", "--split-file", str(missing)]) == 2  # fmt: skip
    assert "purple thing" in capsys.readouterr().err


def test_zero_shot_cli_takes_the_inference_precision(trained, capsys):
    argv = ["zeroshot", str(trained["config"]), "--checkpoint", str(trained["ckpt"])]
    assert main([*argv, "--precision", "fp32"]) == 0
    fp32, _ = _run_folder_of(capsys)
    assert main([*argv, "--precision", "int8"]) == 0
    int8, _ = _run_folder_of(capsys)
    assert (
        int8["num_videos"] == fp32["num_videos"] and int8["class_subsets"] == fp32["class_subsets"]
    )
    # The precision reaches the feature extraction: fp16 is refused on the CPU, with the fix.
    assert main([*argv, "--precision", "fp16"]) == 2
    assert "fp16 autocast needs a GPU" in capsys.readouterr().err

"""Zero-shot protocols and the checks on cached features (no trained model needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from text4vis.config import Config, DataConfig, RunConfig
from text4vis.data.annotations import VideoRecord, write_annotations
from text4vis.engine.features import FeatureSet, load_features, save_features
from text4vis.engine.zero_shot import (
    _check_cached_features,
    subset_protocol,
    summarize_protocol,
    zero_shot,
)
from text4vis.errors import Text4VisError
from text4vis.models.video import scaled_cosine_logits


def _write_labels(path: Path, names: list[str]) -> Path:
    path.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    return path


def _zero_shot_setup(tmp_path: Path) -> tuple[Config, list[VideoRecord], list[VideoRecord]]:
    labels = _write_labels(tmp_path / "labels.csv", ["archery", "bowling", "cooking", "dancing"])
    test = [VideoRecord(f"t{i}.mp4", None, i % 4) for i in range(8)]
    train = [VideoRecord(f"r{i}.mp4", None, i % 4) for i in range(8)]
    write_annotations(tmp_path / "test.txt", test)
    write_annotations(tmp_path / "train.txt", train)
    cfg = Config(
        data=DataConfig(
            labels=str(labels),
            train_list=str(tmp_path / "train.txt"),
            test_list=str(tmp_path / "test.txt"),
        ),
        run=RunConfig(device="cpu", progress=False),
    )
    return cfg, test, train


def _features_file(path: Path, records: list[VideoRecord], list_file: str, split: str) -> Path:
    n = len(records)
    feature_set = FeatureSet(
        features=torch.randn(n, 8, generator=torch.Generator().manual_seed(0)),
        labels=torch.tensor([r.label for r in records]),
        indices=torch.arange(n),
        paths=[r.path for r in records],
        metadata={
            "class_names": ["archery", "bowling", "cooking", "dancing"],
            "list_file": list_file,
            "split": split,
            "checkpoint": "model",
        },
    )
    return save_features(feature_set, path)


def test_zero_shot_refuses_features_of_another_list(tmp_path: Path) -> None:
    cfg, _, train = _zero_shot_setup(tmp_path)
    feats = _features_file(tmp_path / "train.safetensors", train, cfg.data.train_list, "train")
    # Same classes and the same number of videos: only the rows tell the lists apart.
    with pytest.raises(Text4VisError, match=r"row 0 is 'r0\.mp4'.*test list .*'t0\.mp4'"):
        zero_shot(cfg, tmp_path / "no_model", protocol="full", features=feats)


def test_zero_shot_refuses_a_per_class_subset_of_the_test_list(tmp_path: Path) -> None:
    cfg, test, _ = _zero_shot_setup(tmp_path)
    feats = _features_file(tmp_path / "sub.safetensors", test[:4], cfg.data.test_list, "test")
    with pytest.raises(Text4VisError, match="holds 4 videos .* has 8"):
        zero_shot(cfg, tmp_path / "no_model", protocol="full", features=feats)


def test_zero_shot_accepts_features_of_the_test_list(tmp_path: Path) -> None:
    cfg, test, _ = _zero_shot_setup(tmp_path)
    feats = _features_file(tmp_path / "test.safetensors", test, cfg.data.test_list, "test")
    _check_cached_features(load_features(feats), feats, cfg, "model", num_classes=4)


def test_subset_protocol_restricts_classes_and_videos():
    classifier = torch.eye(4)  # class c = axis c
    # videos 0,1 of class 0 point at axis 0; video 2 of class 1 points at axis 2 (wrong on full)
    features = torch.tensor([[1.0, 0, 0, 0], [1.0, 0, 0, 0], [0, 0.4, 0.6, 0], [0, 0, 0, 1.0]])
    labels = torch.tensor([0, 0, 1, 3])
    full, subset = subset_protocol(features, labels, classifier, [[0, 1, 2, 3], [1, 0]])
    assert full["top1"] == pytest.approx(0.75) and full["num_videos"] == 4
    # restricted to classes {1, 0}: video 2 now correct, video 3 (class 3) not scored
    assert subset["top1"] == 1.0 and subset["num_videos"] == 3 and subset["num_classes"] == 2
    logits = scaled_cosine_logits(features, F.normalize(classifier, dim=-1), 10.0)
    assert torch.allclose(logits[0], torch.tensor([10.0, 0, 0, 0]))
    summary = summarize_protocol([full, subset])
    assert summary["top1_mean"] == pytest.approx(0.875)
    assert summary["top1_std"] == pytest.approx(0.125)

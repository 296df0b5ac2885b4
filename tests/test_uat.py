"""Regression tests for problems found by walking the documented command-line flows as a user."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from text4vis.config import Config, DataConfig, ModelConfig, RunConfig
from text4vis.data.annotations import AnnotationError, VideoRecord, read_labels, write_annotations
from text4vis.errors import Text4VisError


def _write_labels(path: Path, names: list[str]) -> Path:
    path.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    return path


# ----------------------------------------------------------------------------------------------
# Label files: two classes that read the same get identical text-classifier rows.
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("second", ["RedThing", "red thing", "red_thing"])
def test_label_file_with_duplicate_names_is_an_error(tmp_path: Path, second: str) -> None:
    path = _write_labels(tmp_path / "labels.csv", ["RedThing", "green", second])
    with pytest.raises(AnnotationError, match=r"labels\.csv: classes 0 .*and 2 .*distinct name"):
        read_labels(path)


def test_label_file_with_distinct_names_reads(tmp_path: Path) -> None:
    path = _write_labels(tmp_path / "labels.csv", ["RedThing", "red", "thing"])
    assert read_labels(path) == ["RedThing", "red", "thing"]


# ----------------------------------------------------------------------------------------------
# Zero-shot: half-class splits of 1 class; cached features of another list.
# ----------------------------------------------------------------------------------------------


def test_half_class_splits_refuse_single_class_splits() -> None:
    from text4vis.data.few_shot import half_class_splits

    for num_classes in (2, 3):
        with pytest.raises(ValueError, match="at least 4 classes.*--protocol full"):
            half_class_splits(num_classes)
    assert all(len(split) == 2 for split in half_class_splits(4))


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
    from text4vis.engine.inference import FeatureSet, save_features

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
    from text4vis.engine.inference import zero_shot

    cfg, _, train = _zero_shot_setup(tmp_path)
    feats = _features_file(tmp_path / "train.safetensors", train, cfg.data.train_list, "train")
    # Same classes and the same number of videos: only the rows tell the lists apart.
    with pytest.raises(Text4VisError, match=r"row 0 is 'r0\.mp4'.*test list .*'t0\.mp4'"):
        zero_shot(cfg, tmp_path / "no_model", protocol="full", features=feats)


def test_zero_shot_refuses_a_per_class_subset_of_the_test_list(tmp_path: Path) -> None:
    from text4vis.engine.inference import zero_shot

    cfg, test, _ = _zero_shot_setup(tmp_path)
    feats = _features_file(tmp_path / "sub.safetensors", test[:4], cfg.data.test_list, "test")
    with pytest.raises(Text4VisError, match="holds 4 videos .* has 8"):
        zero_shot(cfg, tmp_path / "no_model", protocol="full", features=feats)


def test_zero_shot_accepts_features_of_the_test_list(tmp_path: Path) -> None:
    from text4vis.engine.inference import _check_cached_features, load_features

    cfg, test, _ = _zero_shot_setup(tmp_path)
    feats = _features_file(tmp_path / "test.safetensors", test, cfg.data.test_list, "test")
    _check_cached_features(load_features(feats), feats, cfg, "model", num_classes=4)


# ----------------------------------------------------------------------------------------------
# Predict: label names that are the model's own classes after normalisation.
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_predictor():  # type: ignore[no-untyped-def]
    from text4vis.models.video import VideoRecognizer
    from text4vis.predict import Predictor

    cfg = ModelConfig(arch="tiny-vit", temporal="mean", logit_scale=100.0)
    model = VideoRecognizer.from_config(
        cfg, ["RedThing", "green_thing", "blue"], num_frames=2, image_size=32
    )
    return Predictor(model, device="cpu", progress=False)


def test_predict_matches_own_classes_after_normalisation(tiny_predictor) -> None:  # type: ignore[no-untyped-def]
    own = tiny_predictor.model.classifier_weight().detach().float()
    # No CLIP weights are configured, so a text classifier for new labels would be an error:
    # the normalised names must select the model's own rows.
    names, weight = tiny_predictor.classifier_for(["green thing", "red thing"])
    assert names == ["green thing", "red thing"]
    torch.testing.assert_close(weight, own[[1, 0]])


def test_predict_new_labels_without_text_weights_name_the_cli_fix(tiny_predictor) -> None:  # type: ignore[no-untyped-def]
    from text4vis.predict import PredictError

    with pytest.raises(PredictError, match="omit --labels"):
        tiny_predictor.classifier_for(["purple"])


# ----------------------------------------------------------------------------------------------
# plot-classifier: --classes by a normalised name.
# ----------------------------------------------------------------------------------------------


def test_plot_rows_match_normalised_class_names() -> None:
    from text4vis.models.classifier import ClassifierArtifact, ClassifierError
    from text4vis.models.plots import select_rows

    artifact = ClassifierArtifact(
        torch.eye(3), {"class_names": ["playing_guitar", "RedThing", "archery"]}
    )
    rows, labels = select_rows(artifact, ["playing guitar", "red thing", "2"])
    assert rows == [0, 1, 2] and labels == ["playing_guitar", "RedThing", "archery"]
    with pytest.raises(ClassifierError, match="'purple' is neither"):
        select_rows(artifact, ["purple"])


# ----------------------------------------------------------------------------------------------
# Evaluation of an unreadable video says how to go on; a failed command logs why in its run.
# ----------------------------------------------------------------------------------------------


def test_eval_unreadable_video_error_names_the_fix(tmp_path: Path) -> None:
    from text4vis.data import VideoDecodeError
    from text4vis.data.dataset import build_dataset

    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    cfg = Config(data=DataConfig(root=str(tmp_path), num_segments=2, input_size=32))
    dataset = build_dataset(cfg, "test", records=[VideoRecord("bad.mp4", None, 0)])
    with pytest.raises(VideoDecodeError, match=r"bad\.mp4.*data\.skip_unreadable=true") as info:
        dataset[0]
    assert info.value.path.endswith("bad.mp4") and info.value.reason  # still machine-readable


def test_failed_command_writes_its_error_into_the_run_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from text4vis.cli import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"run:\n  root: {tmp_path / 'runs'}\n  name: uat\n  device: cpu\n")
    status = main(["eval", str(cfg), "--checkpoint", str(tmp_path / "missing")])
    assert status == 2
    err = capsys.readouterr().err
    assert "text4vis eval: error: checkpoint" in err and "Traceback" not in err
    logs = list((tmp_path / "runs" / "uat").glob("*/log.txt"))
    assert len(logs) == 1
    assert "ERROR" in logs[0].read_text() and "missing does not exist" in logs[0].read_text()
    assert err.count("missing does not exist") == 1  # printed once, not again by the logger


# ----------------------------------------------------------------------------------------------
# prepare lists: check every clip before writing; label files with Unix line ends.
# ----------------------------------------------------------------------------------------------


def _class_folders(root: Path, names: list[str]) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(2):
            (root / name / f"c{i}.mp4").write_bytes(b"")  # only listed, never decoded
    return root


def test_prepare_lists_names_every_spaced_path_and_writes_nothing(tmp_path: Path) -> None:
    from text4vis.data.prepare import make_lists

    root = _class_folders(tmp_path / "videos", ["archery", "blue thing"])
    out = tmp_path / "lists"
    with pytest.raises(AnnotationError, match=r"2 clip path\(s\) .*blue thing/c0.*blue thing/c1"):
        make_lists(root, out)
    assert not (out / "labels.csv").exists() and not (out / "train.txt").exists()


def test_prepare_lists_refuses_classes_that_read_the_same(tmp_path: Path) -> None:
    from text4vis.data.prepare import make_lists

    root = _class_folders(tmp_path / "videos", ["RedThing", "red_thing"])
    with pytest.raises(AnnotationError, match="both read 'red thing'"):
        make_lists(root, tmp_path / "lists")


def test_prepare_lists_writes_labels_with_unix_line_ends(tmp_path: Path) -> None:
    from text4vis.data.prepare import make_lists

    root = _class_folders(tmp_path / "videos", ["archery", "bowling"])
    paths = make_lists(root, tmp_path / "lists")
    assert Path(paths["labels"]).read_bytes() == b"id,name\n0,archery\n1,bowling\n"
    assert read_labels(paths["labels"]) == ["archery", "bowling"]

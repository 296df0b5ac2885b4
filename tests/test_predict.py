"""`Predictor` and `text4vis predict` on a tiny model trained here on solid-colour clips.

The module fixture trains a tiny-vit video model (mean pooling, frozen text classifier from the
CLIP text tower of a seeded weight file) for a few dozen steps to map each colour to its class,
saves it with ``save_pretrained``, and writes test clips as real mp4 files and a JPEG frame folder.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from text4vis.cli import main
from text4vis.config import ModelConfig

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 40, 220),
    "yellow": (230, 220, 40),
}
NAMES = list(COLOURS)
NUM_FRAMES = 4
SIZE = 32


def _noisy_clip(
    colour: tuple[int, int, int], rng: np.random.Generator, shape: tuple[int, ...]
) -> np.ndarray:
    """uint8 frames [*shape, 3] of one colour, with brightness jitter and pixel noise."""
    base = np.asarray(colour, dtype=np.float64) * rng.uniform(0.75, 1.05)
    return np.clip(base + rng.normal(0.0, 15.0, (*shape, 3)), 0, 255).astype(np.uint8)


def _train(model: Any, steps: int, rng: np.random.Generator) -> float:
    from text4vis.data.transforms import normalize_video

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=2e-3)
    model.train()
    loss = torch.tensor(0.0)
    for _ in range(steps):
        labels = rng.integers(0, len(NAMES), 16)
        frames = np.stack(
            [_noisy_clip(COLOURS[NAMES[c]], rng, (NUM_FRAMES, SIZE, SIZE)) for c in labels]
        )  # [B, T, H, W, 3]
        video = normalize_video(torch.from_numpy(frames).permute(0, 1, 4, 2, 3))  # [B,T,3,H,W]
        loss = F.cross_entropy(model(video), torch.from_numpy(labels))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return float(loss.detach())


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from text4vis.config import ModelConfig
    from text4vis.data.synthetic import write_frame_folder, write_mp4
    from text4vis.models.backbones import create_clip
    from text4vis.models.video import VideoRecognizer

    root = tmp_path_factory.mktemp("predict")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # open_clip initialises from torch's global generator
        weights = root / "tiny-vit.pt"
        torch.save(create_clip("tiny-vit").state_dict(), weights)
        cfg = ModelConfig(
            arch="tiny-vit", pretrained=str(weights), temporal="mean", logit_scale=50.0
        )
        model = VideoRecognizer.from_config(cfg, NAMES, num_frames=NUM_FRAMES, image_size=SIZE)
    rng = np.random.default_rng(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    final_loss = _train(model, 20, rng)
    torch.set_num_threads(threads)
    model.save_pretrained(root / "model")

    clips = root / "clips"
    truth: dict[str, str] = {}
    for name, colour in COLOURS.items():
        for k in range(2):
            path = write_mp4(clips / f"{name}_{k}.mp4", _noisy_clip(colour, rng, (8, 48, 64)))
            truth[str(path)] = name
    folder = write_frame_folder(
        clips / "frames" / "yellow_frames", _noisy_clip(COLOURS["yellow"], rng, (6, 48, 64))
    )
    truth[str(folder)] = "yellow"
    broken = root / "with_broken"
    write_mp4(broken / "a_red.mp4", _noisy_clip(COLOURS["red"], rng, (8, 48, 64)))
    (broken / "b_broken.mp4").write_bytes(b"this is not a video file" * 20)
    write_mp4(broken / "c_blue.mp4", _noisy_clip(COLOURS["blue"], rng, (8, 48, 64)))
    return {
        "root": root,
        "weights": weights,
        "model_dir": root / "model",
        "clips": clips,
        "truth": truth,
        "broken": broken,
        "final_loss": final_loss,
    }


@pytest.fixture(scope="module")
def predictor(world: dict[str, Any]) -> Any:
    from text4vis.predict import Predictor

    return Predictor.from_pretrained(world["model_dir"], num_workers=0, batch_size=4)


@pytest.fixture(autouse=True)
def _one_thread_and_clean_logging() -> Any:
    """One torch thread (these tiny models only lose from more on a busy machine); afterwards,
    remove the console handlers the CLI installs (they hold pytest's captured stderr)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    logger = logging.getLogger("text4vis")
    for handler in list(logger.handlers):
        if getattr(handler, "_text4vis", False):
            logger.removeHandler(handler)
    logger.propagate = True


# ----------------------------------------------------------------------------------------------
# Predictions
# ----------------------------------------------------------------------------------------------


def test_trained_model_ranks_the_true_class_first(world: dict[str, Any], predictor: Any) -> None:
    from text4vis.data.discovery import find_videos

    videos = find_videos([world["clips"]])
    assert sorted(videos) == sorted(world["truth"])  # mp4 files and the frame folder
    results = predictor.predict(videos, top_k=1)
    top1 = [r[0]["label"] for r in results]
    correct = sum(label == world["truth"][v] for v, label in zip(videos, top1))
    assert correct >= 0.8 * len(videos), (correct, top1, world["final_loss"])


def test_scores_are_sorted_probabilities_over_the_label_set(
    world: dict[str, Any], predictor: Any
) -> None:
    videos = sorted(world["truth"])[:3]
    full = predictor.predict(videos, labels=["blue", "red", "yellow"], top_k=None)
    for ranking in full:
        assert sorted(p["label"] for p in ranking) == ["blue", "red", "yellow"]
        scores = [p["score"] for p in ranking]
        assert scores == sorted(scores, reverse=True)
        assert sum(scores) == pytest.approx(1.0, abs=1e-5)
    top2 = predictor.predict(videos, labels=["blue", "red", "yellow"], top_k=2)
    assert [r[:2] for r in full] == top2
    capped = predictor.predict(videos[:1], labels=["blue", "red"], top_k=10)
    assert len(capped[0]) == 2


def test_scores_restate_softmax_of_scaled_cosine(world: dict[str, Any], predictor: Any) -> None:
    """One video through the data module and the model by hand gives the same scores."""
    from text4vis.data import build_transform, open_video, segment_test_indices

    model = predictor.model
    video = str(world["clips"] / "green_0.mp4")
    reader = open_video(video)
    frames = reader.frames(segment_test_indices(reader.num_frames, NUM_FRAMES, 1)[0])
    clip = build_transform(predictor.data, train=False)(frames)  # [1, T, 3, S, S]
    with torch.no_grad():
        emb = F.normalize(model.encode_video(clip), dim=-1)  # [1, D]
        weight = model.classifier_weight()[[1, 3, 0]]  # green, yellow, red
        expected = (model.logit_scale.exp() * emb @ weight.T).softmax(-1)[0]
    got = predictor.predict([video], labels=["green", "yellow", "red"], top_k=None)[0]
    by_label = {p["label"]: p["score"] for p in got}
    assert [by_label[n] for n in ["green", "yellow", "red"]] == pytest.approx(
        expected.tolist(), abs=1e-5
    )


def test_multi_view_embeddings_and_averaged_probabilities(
    world: dict[str, Any], tmp_path: Path
) -> None:
    from text4vis.data.synthetic import write_mp4
    from text4vis.predict import Predictor

    rng = np.random.default_rng(1)
    frames = np.concatenate(  # left half red, right half blue: the 3 crops disagree
        [
            _noisy_clip(COLOURS["red"], rng, (8, 48, 48)),
            _noisy_clip(COLOURS["blue"], rng, (8, 48, 48)),
        ],
        axis=2,
    )
    split = str(write_mp4(tmp_path / "split.mp4", frames))
    views = Predictor.from_pretrained(world["model_dir"], views="2x3", num_workers=0)
    videos = [split, str(world["clips"] / "red_0.mp4"), str(world["clips"] / "blue_1.mp4")]
    embeddings, errors = views.embed_videos(videos)
    assert not errors and embeddings[0].shape == (6, views.model.embed_dim)
    _, weight = views.classifier_for(None)
    per_view = views.model.logit_scale.exp() * F.normalize(embeddings[0], dim=-1) @ weight.T
    assert per_view[0].argmax() == 0 and per_view[2].argmax() == 2  # left red, right blue
    expected = per_view.softmax(-1).mean(0)  # probabilities averaged over the 6 views
    assert torch.allclose(views.scores(embeddings[0][None], weight)[0], expected, atol=1e-6)
    ranked = views.predict(videos, top_k=None)
    assert ranked[1][0]["label"] == "red" and ranked[2][0]["label"] == "blue"
    assert sum(p["score"] for p in ranked[0]) == pytest.approx(1.0, abs=1e-5)


def test_own_labels_use_the_model_rows_without_a_text_encoder(world: dict[str, Any]) -> None:
    from text4vis.predict import Predictor

    fresh = Predictor.from_pretrained(world["model_dir"], num_workers=0)
    names, weight = fresh.classifier_for(["blue", "red"])
    assert names == ["blue", "red"]
    assert torch.equal(weight, fresh.model.classifier_weight()[[2, 0]])
    assert fresh._text_encoder is None  # the text tower was never loaded


def test_text_classifier_is_built_once_per_label_set(world: dict[str, Any]) -> None:
    from text4vis.predict import Predictor

    fresh = Predictor.from_pretrained(world["model_dir"], num_workers=0)
    encoder = fresh.text_encoder
    calls: list[list[str]] = []
    original = encoder.encode

    def counting_encode(texts: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(list(texts))
        return original(texts, *args, **kwargs)

    encoder.encode = counting_encode  # type: ignore[method-assign]
    labels = ["red", "green", "blue", "yellow", "purple"]  # "purple" is new: text classifier
    video = [str(world["clips"] / "red_0.mp4")]
    first = fresh.predict(video, labels=labels, top_k=None)
    second = fresh.predict(video, labels=labels, top_k=None)
    assert len(calls) == 1 and first == second
    # The same text encoder and template as training: the model's own rows come back.
    _, weight = fresh.classifier_for(labels)
    assert torch.allclose(weight[:4], fresh.model.classifier_weight(), atol=1e-5)
    fresh.predict(video, labels=labels, top_k=1, templates="kinetics")  # other prompts: new key
    fresh.predict(video, labels=["purple", "red"], top_k=1)  # other labels: new key
    assert len(calls) == 3
    assert "a video of a person purple." in calls[0]


def test_backbone_predictor_shares_clip_and_matches_the_saved_text_side(
    world: dict[str, Any],
) -> None:
    from text4vis.predict import Predictor

    zero = Predictor.from_backbone(
        "tiny-vit", str(world["weights"]), num_frames=NUM_FRAMES, num_workers=0
    )
    assert zero.text_encoder.model.visual is zero.model.visual
    labels = ["purple", "orange", "red"]
    _, from_backbone = zero.classifier_for(labels)
    trained = Predictor.from_pretrained(world["model_dir"], num_workers=0)
    _, from_model = trained.classifier_for(labels)
    assert torch.allclose(from_backbone, from_model, atol=1e-5)
    results = zero.predict([str(world["clips"] / "blue_0.mp4")], labels=labels, top_k=None)
    assert sum(p["score"] for p in results[0]) == pytest.approx(1.0, abs=1e-5)


def test_checkpoint_gives_the_same_predictions_as_the_saved_model(
    world: dict[str, Any], predictor: Any, tmp_path: Path
) -> None:
    from text4vis.config import Config, config_to_dict
    from text4vis.predict import Predictor

    cfg = Config()
    cfg.model = predictor.model.model_cfg
    cfg.data.num_segments, cfg.data.input_size, cfg.data.resize_size = NUM_FRAMES, SIZE, 37
    state = {  # the fields of an engine checkpoint that a model needs (engine/checkpoint.py)
        "format": 1,
        "complete": True,
        "model": predictor.model.state_dict(),
        "class_names": NAMES,
        "config": config_to_dict(cfg),
        "architecture": predictor.model.architecture(),
    }
    torch.save(state, tmp_path / "last.pt")
    restored = Predictor.from_pretrained(tmp_path / "last.pt", num_workers=0)
    videos = sorted(world["truth"])[:4]
    expected = predictor.predict(videos, top_k=None)
    got = restored.predict(videos, top_k=None)
    for a, b in zip(expected, got):
        assert [p["label"] for p in a] == [p["label"] for p in b]
        assert [p["score"] for p in a] == pytest.approx([p["score"] for p in b], abs=1e-5)


def test_unreadable_video_is_an_error_entry(world: dict[str, Any], predictor: Any) -> None:
    from text4vis.data import VideoDecodeError
    from text4vis.data.discovery import find_videos

    videos = find_videos([world["broken"]])
    results = predictor.predict_files(videos, top_k=2)
    assert [Path(r.video).name for r in results] == ["a_red.mp4", "b_broken.mp4", "c_blue.mp4"]
    assert [r.ok for r in results] == [True, False, True]
    assert "not a readable video" in results[1].error
    assert results[0].predictions[0]["label"] == "red"
    assert results[2].predictions[0]["label"] == "blue"
    with pytest.raises(VideoDecodeError, match="b_broken.mp4"):
        predictor.predict(videos)


def test_new_labels_refused_for_a_model_without_a_text_classifier(tmp_path: Path) -> None:
    from text4vis.config import ModelConfig
    from text4vis.models.video import VideoRecognizer
    from text4vis.predict import PredictError, Predictor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = VideoRecognizer.from_config(
            ModelConfig(arch="tiny-vit", temporal="mean", classifier="random"),
            ["a", "b"],
            num_frames=2,
        )
    random_head = Predictor(model, num_workers=0)
    assert random_head.classifier_for(["b"])[0] == ["b"]  # own classes still work
    with pytest.raises(PredictError, match="'random' classifier"):
        random_head.classifier_for(["a", "c"])
    model.classifier = None
    with pytest.raises(PredictError, match="no classes of its own"):
        Predictor(model, num_workers=0).classifier_for(None)


# ----------------------------------------------------------------------------------------------
# Labels and inputs
# ----------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------


def test_cli_json_with_a_corrupt_file(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["predict", str(world["broken"]), "--model", str(world["model_dir"]), "--json"]
    status = main([*argv, "--top-k", "3", "--workers", "2", "--no-progress"])
    out, err = capsys.readouterr()
    assert status == 1
    entries = json.loads(out)
    assert [Path(e["video"]).name for e in entries] == ["a_red.mp4", "b_broken.mp4", "c_blue.mp4"]
    assert set(entries[1]) == {"video", "error"}
    for entry in (entries[0], entries[2]):
        assert set(entry) == {"video", "predictions"} and len(entry["predictions"]) == 3
        assert all(set(p) == {"label", "score"} for p in entry["predictions"])
        assert isinstance(entry["predictions"][0]["score"], float)
    assert entries[0]["predictions"][0]["label"] == "red"
    assert "cannot read" in err and "b_broken.mp4" in err


def test_cli_csv_and_table(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "out" / "predictions.csv"
    video = str(world["clips"] / "red_1.mp4")
    base = ["predict", video, str(world["broken"] / "b_broken.mp4")]
    base += ["--model", str(world["model_dir"]), "--workers", "0", "--no-progress"]
    assert main([*base, "--labels", "red,blue", "--csv", str(out_file)]) == 1
    with out_file.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["video", "rank", "label", "score", "error"]
    assert [(r["rank"], r["label"]) for r in rows[:2]] == [("1", "red"), ("2", "blue")]
    assert float(rows[0]["score"]) + float(rows[1]["score"]) == pytest.approx(1.0, abs=1e-4)
    assert rows[2]["video"].endswith("b_broken.mp4") and rows[2]["error"] and not rows[2]["label"]
    capsys.readouterr()
    assert main(["predict", video, "--model", str(world["model_dir"]), "--top-k", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0] == video
    assert table[1].split()[:2] == ["1", "red"] and len(table) == 3


def test_cli_bad_input_exits_2(
    world: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = str(world["clips"] / "red_0.mp4")
    model = ["--model", str(world["model_dir"])]
    cases = {
        "does not exist": ["predict", video, "--model", str(tmp_path / "nope")],
        "label list is empty": ["predict", video, *model, "--labels", ""],
        "appears twice": ["predict", video, *model, "--labels", "red,red"],
        "no model": ["predict", video, "--labels", "red,blue"],
        "only data.KEY": ["predict", video, *model, "--set", "train.lr=1"],
    }
    for message, argv in cases.items():
        assert main(argv) == 2, message
        assert message in capsys.readouterr().err


def test_recorded_preprocessing_drives_the_predictor(world: dict[str, Any], tmp_path: Path) -> None:
    from text4vis.config import DataConfig
    from text4vis.models.video import VideoRecognizer
    from text4vis.predict import Predictor

    model = VideoRecognizer.from_pretrained(world["model_dir"])
    assert model.preprocessing is None  # saved without a data config
    default = Predictor(model, num_workers=0).data
    assert default.resize_size == round(SIZE * 256 / 224)
    data = DataConfig(num_segments=NUM_FRAMES, input_size=SIZE, resize_size=SIZE + 7)
    model.save_pretrained(tmp_path / "with_pre", data_config=data)
    predictor = Predictor.from_pretrained(tmp_path / "with_pre", num_workers=0)
    assert predictor.data.resize_size == SIZE + 7
    assert predictor.data.input_size == SIZE
    assert predictor.data.num_segments == NUM_FRAMES


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

"""ONNX export (text4vis.models.export) and the torch-free runtime (text4vis.onnx_runtime).

Parity: ONNX Runtime against torch on the same uint8 clips, within 1e-4 relative on logits and
embeddings, for every temporal head on the tiny ViT and ResNet; the text graph on new labels
(MiniLM by default, CLIP's tower in the slow set); the runtime's tokenizer against open_clip's;
the runtime's predictions against Predictor's; the runtime with torch unimportable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import NO_TORCH, write_colour_clips
from text4vis.config import DataConfig, ModelConfig
from text4vis.models.export import VideoGraph, export_onnx, quantize_onnx_int8
from text4vis.models.video import VideoRecognizer
from text4vis.onnx_runtime import ExportFolderError, OnnxPredictor, is_export, read_export
from text4vis.predict import PredictError, Predictor

ort = pytest.importorskip("onnxruntime")

T = 4
SIZE = 32
COLOURS = ["red", "green", "blue", "yellow"]
CASES = [
    ("tiny-vit", "mean"),
    ("tiny-vit", "transformer"),
    ("tiny-vit", "tokent1d"),
    ("tiny-rn", "mean"),
    ("tiny-rn", "transformer"),
    ("tiny-rn", "t1d"),
]
DEFAULT_CASE = ("tiny-vit", "transformer")  # the one of CASES in the default run


def make_model(arch: str, temporal: str, **overrides: object) -> VideoRecognizer:
    cfg = ModelConfig(arch=arch, temporal=temporal, temporal_layers=2, classifier="random")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    torch.manual_seed(0)
    model = VideoRecognizer.from_config(cfg, COLOURS, num_frames=T)
    if arch == "tiny-rn":
        # open_clip zero-initialises each bottleneck's last BN: give the residual branches
        # (where T1D acts) an output, so that the graph's temporal convs matter.
        with torch.no_grad():
            for name, param in model.visual.named_parameters():
                if name.endswith("bn3.weight"):
                    param.fill_(0.5)
    return model.eval()


def random_clips(batch: int, seed: int) -> np.ndarray:
    """uint8 [B, T, S, S, 3], the export's layout."""
    return np.random.default_rng(seed).integers(0, 256, (batch, T, SIZE, SIZE, 3), dtype=np.uint8)


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


def small_data() -> DataConfig:
    return DataConfig(num_segments=T, input_size=SIZE, resize_size=36)


def torch_outputs(model: VideoRecognizer, clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Logits and embeddings of the torch model on the export's uint8 channels-last clips."""
    video = torch.from_numpy(clips).permute(0, 1, 4, 2, 3)  # [B, T, H, W, 3] -> [B, T, 3, H, W]
    with torch.no_grad():
        embeddings = model.encode_video(video)
        logits = model.logits_from_embeddings(embeddings)
    return logits.numpy(), embeddings.numpy()


# ----------------------------------------------------------------------------------------------
# Video graph parity, every head x backbone
# ----------------------------------------------------------------------------------------------


def check_video_export(model: VideoRecognizer, directory: Path, head: str) -> None:
    """The exported video graph computes what the torch model computes (within 1e-4
    relative), at batch sizes other than the export's example, and export.json describes it."""
    session = ort.InferenceSession(
        str(directory / "video.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [o.name for o in session.get_outputs()] == ["logits", "embeddings"]
    for batch, seed in ((3, 1), (1, 2)):  # batch sizes other than the export's example (2)
        clips = random_clips(batch, seed)
        logits, embeddings = session.run(None, {"video": clips})
        want_logits, want_embeddings = torch_outputs(model, clips)
        assert logits.shape == (batch, len(COLOURS)) and embeddings.shape == (batch, 64)
        assert relative_error(logits, want_logits) < 1e-4
        assert relative_error(embeddings, want_embeddings) < 1e-4
    # The graph takes the clip as given: frame order matters to every head but the mean.
    clips = random_clips(2, 3)
    reversed_clips = np.ascontiguousarray(clips[:, ::-1])
    _, forward_emb = session.run(None, {"video": clips})
    _, backward_emb = session.run(None, {"video": reversed_clips})
    moved = np.abs(forward_emb - backward_emb).max() / np.abs(forward_emb).max()
    assert (moved < 1e-5) == (head == "mean")
    description = read_export(directory)
    assert description["video"]["shape"] == ["batch", T, SIZE, SIZE, 3]
    assert description["labels"] == COLOURS and description["text"] is None
    weight = np.load(directory / "classifier.npy")
    assert np.allclose(weight, model.classifier_weight().numpy())
    assert description["logit_scale"] == pytest.approx(float(model.logit_scale.exp()))


@pytest.fixture(scope="module")
def random_export(tmp_path_factory):
    """The default case's model (a random classifier: no text graph), saved and exported by
    export_saved_model: ``{"model", "export", "summary"}``."""
    from text4vis.models.export import export_saved_model

    root = tmp_path_factory.mktemp("random_export")
    model = make_model(*DEFAULT_CASE)
    model.save_pretrained(root / "model", data_config=small_data())
    summary = export_saved_model(root / "model", root / "exp")
    return {"model": model, "export": root / "exp", "summary": summary}


def test_video_graph_matches_torch_default_case(random_export):
    assert not random_export["summary"].text  # a random classifier takes no new labels
    assert "text.onnx" not in random_export["summary"].files
    check_video_export(random_export["model"], random_export["export"], DEFAULT_CASE[1])


@pytest.mark.slow
@pytest.mark.parametrize(("arch", "head"), [c for c in CASES if c != DEFAULT_CASE])
def test_video_graph_matches_torch(arch, head, tmp_path):
    model = make_model(arch, head)
    export_onnx(model, tmp_path, data=small_data())
    check_video_export(model, tmp_path, head)


def test_graph_wrapper_restates_the_model():
    """VideoGraph on [B, T, H, W, 3] is the model on [B, T, 3, H, W], exactly."""
    model = make_model("tiny-vit", "mean")
    clips = random_clips(2, 0)
    with torch.no_grad():
        logits, embeddings = VideoGraph(model)(torch.from_numpy(clips))
        direct = model(torch.from_numpy(clips).permute(0, 1, 4, 2, 3))
    assert torch.equal(logits, direct)


# ----------------------------------------------------------------------------------------------
# CLIP tokenizer without torch
# ----------------------------------------------------------------------------------------------


TRICKY_TEXTS = [
    "a video of a person dancing.",
    "ApplyEyeMakeup",
    "Rock &amp; Roll  &amp;amp; jazz",  # HTML entities, unescaped twice
    "  spaces\tand\nnewlines  ",
    "café déjà vu — naïve 東京 😀",
    "can't won't they're I'M 42 3.14 x2",
    "mojibake cafÃ©",  # ftfy repairs it
    "<start_of_text> literally",
    "word " * 40,  # longer than the context: truncated, end token kept
    "",
]


def test_clip_bpe_tokenizer_matches_open_clip():
    import open_clip

    from text4vis.models.backbones import register_model_configs
    from text4vis.models.export import _clip_tokenizer_block
    from text4vis.onnx_runtime import ClipBpeTokenizer

    register_model_configs()
    reference = open_clip.get_tokenizer("tiny-vit")  # context length 32
    block = _clip_tokenizer_block(reference, "clip:tiny-vit")
    data = json.loads(json.dumps(block.pop("data")))  # through JSON, as the runtime reads it
    ours = ClipBpeTokenizer(data, block["context_length"], block["sot_id"], block["eot_id"])
    got = ours(TRICKY_TEXTS)["input_ids"]
    want = reference(TRICKY_TEXTS).numpy()
    assert got.dtype == np.int64 and got.shape == want.shape == (len(TRICKY_TEXTS), 32)
    np.testing.assert_array_equal(got, want)
    assert got[8, -1] == block["eot_id"]  # the truncated text still ends with the end token


# ----------------------------------------------------------------------------------------------
# A model with a MiniLM text classifier: the command, the runtime, Predictor, int8, no torch
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory):
    """A tiny-vit model with a MiniLM text classifier, saved, exported with `text4vis export
    --int8`, and colour clips: ``{"model", "export", "videos", "summary"}``."""
    from text4vis.cli import main

    root = tmp_path_factory.mktemp("onnx_export")
    records = write_colour_clips(root, per_class=2, frames=8, size=40)
    cfg = ModelConfig(
        arch="tiny-vit",
        temporal="transformer",
        temporal_layers=2,
        classifier="text",
        text_encoder="sentence-transformers:all-MiniLM-L6-v2",
    )
    torch.manual_seed(0)
    model = VideoRecognizer.from_config(cfg, COLOURS, num_frames=T)
    model.save_pretrained(root / "model", data_config=small_data())
    assert main(["export", str(root / "model"), "--format", "onnx", "--out", str(root / "exp"),
                 "--int8"]) == 0  # fmt: skip
    # One video as a frame folder (img_00001.jpg ...), which both predictors read too.
    from PIL import Image

    from text4vis.data.decoders import open_video

    reader = open_video(root / records[-1].path)
    frames = reader.frames(list(range(reader.num_frames)))
    (root / "frames").mkdir()
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(root / "frames" / f"img_{i:05d}.jpg", quality=95)
    return {
        "model": root / "model",
        "export": root / "exp",
        "videos": [str(root / r.path) for r in records],
        "frames": str(root / "frames"),
    }


NEW_LABELS = ["dancing", "cooking", "red paint", "a yellow bird", "ApplyEyeMakeup"]


def test_export_folder_contents(minilm_export):
    exp = minilm_export["export"]
    description = read_export(exp)
    for name in ("video.onnx", "video.int8.onnx", "text.onnx", "tokenizer/tokenizer.json"):
        assert (exp / name).is_file(), name
    assert description["text"]["tokenizer"]["kind"] == "hf"
    assert description["text"]["templates"] == ["a video of a person {}."]
    assert description["preprocessing"]["resize_size"] == 36
    assert description["video"]["int8_file"] == "video.int8.onnx"
    assert {"torch", "onnx", "onnxruntime", "text4vis"} <= set(description["versions"])


def test_text_graph_matches_the_encoder_on_new_labels(minilm_export):
    from text4vis.models.text import build_text_encoder

    model = VideoRecognizer.from_pretrained(minilm_export["model"])
    encoder = build_text_encoder(model.model_cfg, embed_dim=model.embed_dim)
    texts = [f"a video of a person {n}." for n in NEW_LABELS] + ["x " * 300]  # truncated
    want = F.normalize(encoder.encode(texts), dim=-1).numpy()
    got = OnnxPredictor.from_export(minilm_export["export"]).encode_text(texts)
    assert got.shape == want.shape == (len(texts), 64)
    assert relative_error(got, want) < 1e-4


def test_runtime_predicts_as_predictor(minilm_export):
    videos = [*minilm_export["videos"], minilm_export["frames"]]
    predictor = Predictor.from_pretrained(minilm_export["model"], num_workers=0)
    runtime = OnnxPredictor.from_export(minilm_export["export"], batch_size=3)
    for labels in (None, ["yellow", "red"], NEW_LABELS):
        want = predictor.predict(videos, labels=labels, top_k=None)
        got = runtime.predict(videos, labels=labels, top_k=None)
        for ours, theirs in zip(got, want):
            assert ours[0]["label"] == theirs[0]["label"]
            # Resizing differs from torchvision's by at most one grey level on a few pixels.
            scores = {p["label"]: p["score"] for p in theirs}
            assert all(abs(p["score"] - scores[p["label"]]) < 5e-3 for p in ours)
            assert sum(p["score"] for p in ours) == pytest.approx(1.0, abs=1e-5)
    # Two clips x three crops: six views per video, as Predictor reads them.
    views = Predictor.from_pretrained(minilm_export["model"], views="2x3", num_workers=0)
    want = views.predict(videos[:2], top_k=2)
    got = OnnxPredictor.from_export(minilm_export["export"], views="2x3").predict(
        videos[:2], top_k=2
    )
    assert [r[0]["label"] for r in got] == [r[0]["label"] for r in want]
    # Decoding in threads changes nothing.
    threaded = OnnxPredictor.from_export(minilm_export["export"], batch_size=3, num_workers=2)
    got, want = threaded.predict(videos, top_k=2), runtime.predict(videos, top_k=2)
    assert [[p["label"] for p in r] for r in got] == [[p["label"] for p in r] for r in want]
    assert [p["score"] for r in got for p in r] == [p["score"] for r in want for p in r]


def test_runtime_errors(minilm_export, tmp_path):
    runtime = OnnxPredictor.from_export(minilm_export["export"])
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    results = runtime.predict_files([minilm_export["videos"][0], str(bad)], top_k=1)
    assert results[0].ok and results[0].predictions[0]["label"] in COLOURS
    assert not results[1].ok and results[1].predictions is None and results[1].error
    with pytest.raises(Exception, match="could not be read"):
        runtime.predict([str(bad)])
    with pytest.raises(PredictError, match="exactly one"):
        runtime.predict(minilm_export["videos"][:1], labels=["new one"], templates=["no slot"])
    with pytest.raises(ExportFolderError, match="export.json not found"):
        OnnxPredictor.from_export(tmp_path)
    assert is_export(minilm_export["export"]) and not is_export(minilm_export["model"])
    (tmp_path / "export.json").write_text('{"format": "text4vis-onnx", "format_version": 99}')
    assert is_export(tmp_path)
    with pytest.raises(ExportFolderError, match="format_version 99"):
        read_export(tmp_path)


def test_int8_agrees_with_fp32(minilm_export):
    """int8 top-1 agreement with fp32 on random clips (the demo's model: benchmarks/)."""
    fp32 = OnnxPredictor.from_export(minilm_export["export"])
    int8 = OnnxPredictor.from_export(minilm_export["export"], precision="int8")
    clips = random_clips(32, 7)
    a = fp32.run_video(clips)
    b = int8.run_video(clips)
    agreement = float((a["logits"].argmax(-1) == b["logits"].argmax(-1)).mean())
    assert agreement >= 0.9
    cosine = np.sum(F.normalize(torch.from_numpy(a["embeddings"]), dim=-1).numpy()
                    * F.normalize(torch.from_numpy(b["embeddings"]), dim=-1).numpy(), axis=-1)  # fmt: skip
    assert cosine.min() > 0.98
    assert not np.allclose(a["embeddings"], b["embeddings"])  # it is another graph


# The runtime in a process where torch (and torchvision) cannot be imported.
TORCH_FREE = NO_TORCH + textwrap.dedent(
    """
    import json, sys

    from text4vis.onnx_runtime import OnnxPredictor

    export, videos, labels = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
    predictor = OnnxPredictor.from_export(export, precision="int8")
    out = {
        "own": predictor.predict(videos, top_k=2),
        "new": predictor.predict(videos, labels=labels, top_k=2),
        "torch_loaded": sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision")),
    }
    print(json.dumps(out))
    """
)


@pytest.mark.process
def test_runtime_runs_with_torch_unimportable(minilm_export):
    videos = minilm_export["videos"][:3]
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            TORCH_FREE,
            str(minilm_export["export"]),
            json.dumps(videos),
            json.dumps(NEW_LABELS),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["torch_loaded"] == []
    runtime = OnnxPredictor.from_export(minilm_export["export"], precision="int8")
    for key, labels in (("own", None), ("new", NEW_LABELS)):
        here = runtime.predict(videos, labels=labels, top_k=2)
        # The same computation; ONNX Runtime's thread split may differ between the processes.
        assert [[p["label"] for p in r] for r in out[key]] == [
            [p["label"] for p in r] for r in here
        ]
        scores = [p["score"] for r in out[key] for p in r]
        assert scores == pytest.approx([p["score"] for r in here for p in r], abs=1e-5)
    assert len(out["new"]) == 3 and all(p[0]["label"] in NEW_LABELS for p in out["new"])


# ----------------------------------------------------------------------------------------------
# Models that cannot take new labels; a CLIP text tower
# ----------------------------------------------------------------------------------------------


def test_non_text_classifier_scores_own_classes_only(random_export):
    runtime = OnnxPredictor.from_export(random_export["export"])
    assert not runtime.has_text
    name, weight = runtime.classifier_for(["yellow", "Red"])  # own rows, matched by name
    assert name == ["yellow", "Red"]
    want = np.load(random_export["export"] / "classifier.npy")[[3, 0]]
    np.testing.assert_array_equal(weight, want)
    with pytest.raises(PredictError, match="'random' classifier"):
        runtime.classifier_for(["dancing"])
    with pytest.raises(ExportFolderError, match="--int8"):
        OnnxPredictor.from_export(random_export["export"], precision="int8")


@pytest.mark.slow
def test_clip_text_graph_matches_on_new_labels(tmp_path):
    from text4vis.models.text import build_text_encoder

    model = make_model("tiny-vit", "mean", classifier="text")
    torch.manual_seed(1)
    encoder = build_text_encoder(ModelConfig(arch="tiny-vit"), embed_dim=model.embed_dim)
    export_onnx(model, tmp_path, data=small_data(), text_encoder=encoder, templates=["a {}."])
    runtime = OnnxPredictor.from_export(tmp_path)
    names, weight = runtime.classifier_for(NEW_LABELS, templates="short")
    from text4vis.models.text import TEMPLATE_SETS, build_text_classifier

    want = build_text_classifier(encoder, NEW_LABELS, "templates", templates="short").numpy()
    assert names == NEW_LABELS and relative_error(weight, want) < 1e-4
    texts = TRICKY_TEXTS
    got = runtime.encode_text(texts)
    assert relative_error(got, F.normalize(encoder.encode(texts), dim=-1).numpy()) < 1e-4
    assert runtime.resolve_templates("short") == list(TEMPLATE_SETS["short"])
    assert runtime.resolve_templates() == ["a {}."]


@pytest.mark.slow
def test_int8_graph_of_every_backbone_runs(tmp_path):
    """The int8 variant of a ResNet graph (convolutions stay float) loads and agrees."""
    model = make_model("tiny-rn", "t1d")
    export_onnx(model, tmp_path, data=small_data(), int8=True)
    quantize_onnx_int8(tmp_path / "video.onnx", tmp_path / "again.onnx")
    clips = random_clips(16, 5)
    fp32 = OnnxPredictor.from_export(tmp_path).run_video(clips)["logits"]
    int8 = OnnxPredictor.from_export(tmp_path, precision="int8").run_video(clips)["logits"]
    assert (fp32.argmax(-1) == int8.argmax(-1)).mean() >= 0.9


@pytest.mark.slow
def test_export_of_a_training_checkpoint_reads_videos_as_its_config(tmp_path):
    """`text4vis export CKPT`: the data settings are the checkpoint config's, as Predictor's."""
    from conftest import train_tiny_model
    from text4vis.cli import main
    from text4vis.data import write_annotations, write_labels

    write_labels(tmp_path / "labels.csv", COLOURS)
    write_annotations(tmp_path / "train.txt", write_colour_clips(tmp_path, per_class=1))
    write_annotations(tmp_path / "val.txt", write_colour_clips(tmp_path, per_class=1, seed=1))
    trained = train_tiny_model(tmp_path, "config.yaml", "train.epochs=1", "data.resize_size=40")
    out = tmp_path / "exp"
    assert main(["export", str(trained["ckpt"]), "--out", str(out)]) == 0
    pre = read_export(out)["preprocessing"]
    assert (pre["num_segments"], pre["input_size"], pre["resize_size"]) == (4, 32, 40)
    videos = [str(p) for p in sorted((tmp_path / "clips").glob("*.mp4"))]
    want = Predictor.from_pretrained(trained["ckpt"], num_workers=0).predict(videos, top_k=1)
    got = OnnxPredictor.from_export(out).predict(videos, top_k=1)
    assert [r[0]["label"] for r in got] == [r[0]["label"] for r in want]

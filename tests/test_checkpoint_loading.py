"""Checkpoints rebuild their model without the CLIP weights; fit reads its data first; resume
keeps meta.json; view errors name their source; counts are integers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from conftest import COLOURS, overrides, write_colour_clips
from text4vis.cli import main
from text4vis.config import dump_config, load_config
from text4vis.data.annotations import write_annotations
from text4vis.data.labels import write_labels
from text4vis.engine.checkpoint import atomic_torch_save
from text4vis.engine.evaluate import evaluate_checkpoint, with_views
from text4vis.engine.train import fit
from text4vis.models.backbones import create_clip, uses_quick_gelu
from text4vis.models.factory import CheckpointError, load_checkpoint, load_model
from text4vis.predict import Predictor

FIRST_ARGV = ["text4vis", "train", "first.yaml"]
RESUME_ARGV = ["text4vis", "train", "first.yaml", "--resume", "auto"]


def _openai_weights(path: Path) -> Path:
    """A tiny CLIP state dict in OpenAI's layout (extra keys): training builds it with QuickGELU,
    so a rebuild that loses that fact gives other scores."""
    torch.manual_seed(3)
    state = dict(create_clip("tiny-vit", "").state_dict())
    state.update(input_resolution=torch.tensor(32), context_length=torch.tensor(32))
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """A run stopped after one step and resumed to its end; the CLIP weights then moved away."""
    root = tmp_path_factory.mktemp("ckpt")
    weights = _openai_weights(root / "tiny-openai.pt")
    write_labels(root / "labels.csv", [f"{name} thing" for name in COLOURS])
    write_annotations(root / "train.txt", write_colour_clips(root, per_class=2, seed=0))
    write_annotations(root / "val.txt", write_colour_clips(root, per_class=1, seed=1))
    extra = (
        "train.epochs=1",
        f"data.test_list={root / 'val.txt'}",
        f"model.pretrained={weights}",
        "model.classifier=text",
        "run.name=ckpt",
        "eval.views=1x1",
        "data.shot=2",  # every clip: training is unchanged, the few-shot list is written
    )
    cfg = load_config(None, overrides(root, root / "runs", *extra))
    config_path = root / "run.yaml"
    dump_config(cfg, config_path)
    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(sys, "argv", FIRST_ARGV)
        first = fit(cfg, stop_after_steps=1)
        assert first.stopped
        mp.setattr(sys, "argv", RESUME_ARGV)
        summary = fit(cfg, resume="auto")
    finally:
        mp.undo()
    assert summary.run_dir == first.run_dir and not summary.stopped
    folder = Path(summary.run_dir)
    moved = weights.rename(root / "moved-away.pt")
    return {
        "root": root,
        "config": config_path,
        "folder": folder,
        "best": folder / "checkpoints" / "best.pt",
        "model": folder / "model",
        "weights": weights,
        "moved": moved,
    }


def test_checkpoint_records_the_architecture_of_config_json(run):
    state = load_checkpoint(run["best"])
    saved = json.loads((run["model"] / "config.json").read_text())
    saved.pop("preprocessing")  # written by save_pretrained from the data config
    saved.pop("files")  # checksums of the folder's tensor files
    assert state["architecture"] == saved
    assert state["architecture"]["quick_gelu"] is True


def test_eval_of_best_checkpoint_needs_no_clip_weights(run):
    assert not run["weights"].exists()
    cfg = load_config(run["config"])
    from_ckpt, names = evaluate_checkpoint(cfg, run["best"])
    from_folder, _ = evaluate_checkpoint(cfg, run["model"])
    assert names == [f"{c} thing" for c in COLOURS]
    torch.testing.assert_close(from_ckpt.scores, from_folder.scores, rtol=0, atol=1e-6)
    assert from_ckpt.metrics == from_folder.metrics
    assert uses_quick_gelu(load_model(run["best"]).visual)


def test_eval_and_features_in_int8_agree_with_fp32(run, capsys, tmp_path):
    from text4vis.engine.features import extract_checkpoint_features

    cfg = load_config(run["config"])
    fp32, _ = evaluate_checkpoint(cfg, run["best"], precision="fp32")
    int8, _ = evaluate_checkpoint(cfg, run["best"], precision="int8")
    assert not torch.equal(int8.scores, fp32.scores)  # the int8 model really ran
    assert torch.equal(int8.scores.argmax(-1), fp32.scores.argmax(-1))
    torch.testing.assert_close(int8.scores, fp32.scores, rtol=0, atol=0.05)
    features = {
        p: extract_checkpoint_features(cfg, run["best"], precision=p).features
        for p in ("fp32", "int8")
    }
    cosine = torch.nn.functional.cosine_similarity(features["int8"], features["fp32"], dim=-1)
    assert cosine.min() > 0.99 and not torch.equal(features["int8"], features["fp32"])
    argv = ["eval", str(run["config"]), "--checkpoint", str(run["best"]), "--precision", "int8"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert json.loads(out[out.index("{") :])["top1"] == fp32.metrics["top1"]
    assert main([*argv[:-1], "fp16"]) == 2  # fp16 on the CPU: a clear error, not a crash
    assert "fp16 autocast needs a GPU" in capsys.readouterr().err
    out_file = tmp_path / "int8.safetensors"
    features_argv = ["features", str(run["config"]), "--checkpoint", str(run["best"])]
    assert main([*features_argv, "--out", str(out_file), "--precision", "int8"]) == 0
    from text4vis.engine.features import load_features

    torch.testing.assert_close(load_features(out_file).features, features["int8"])


def test_eval_command_prints_integer_counts(run, capsys):
    assert main(["eval", str(run["config"]), "--checkpoint", str(run["best"])]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{") :])
    assert report["num_videos"] == len(COLOURS) and isinstance(report["num_videos"], int)
    assert isinstance(report["num_skipped"], int)
    assert '"num_videos": 4,' in out


def test_predictor_from_checkpoint_matches_model_folder(run):
    videos = sorted(str(p) for p in (run["root"] / "clips").glob("s1_*.mp4"))
    a = Predictor.from_pretrained(run["best"], device="cpu", progress=False)
    b = Predictor.from_pretrained(run["model"], device="cpu", progress=False)
    assert uses_quick_gelu(a.model.visual)
    got, want = a.predict(videos, top_k=None), b.predict(videos, top_k=None)
    for row_a, row_b in zip(got, want, strict=True):
        assert [r["label"] for r in row_a] == [r["label"] for r in row_b]
        assert [r["score"] for r in row_a] == pytest.approx([r["score"] for r in row_b], abs=1e-6)


def test_checkpoint_without_architecture_is_refused(run):
    """Checkpoints of the unreleased version that did not store the architecture are not
    rebuilt from their config any more: a clear error names the exported folder instead, whether
    or not the backbone weights file is there; the complete checkpoint equals that folder."""
    state = load_checkpoint(run["best"])
    del state["architecture"], state["classifier_metadata"]
    old = atomic_torch_save(state, run["root"] / "old.pt")
    with pytest.raises(CheckpointError, match=r"no architecture.*<run>/model"):
        load_model(old)
    run["moved"].rename(run["weights"])
    try:
        with pytest.raises(CheckpointError, match="no architecture"):
            load_model(old)
        rebuilt = load_model(run["best"])
    finally:
        run["weights"].rename(run["moved"])
    assert uses_quick_gelu(rebuilt.visual)
    reference = load_model(run["model"])
    x = torch.randn(2, 4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), reference(x), rtol=0, atol=1e-5)


def test_few_shot_list_is_written_into_the_run_folder(run):
    lines = (run["folder"] / "few_shot_list.txt").read_text().splitlines()
    assert sorted(lines) == sorted((run["root"] / "train.txt").read_text().splitlines())


def test_resume_keeps_meta_and_appends_the_resume(run):
    meta = json.loads((run["folder"] / "meta.json").read_text())
    assert meta["command"] == FIRST_ARGV
    assert len(meta["resumes"]) == 1
    resume = meta["resumes"][0]
    assert resume["command"] == RESUME_ARGV
    assert resume["checkpoint"].endswith("last.pt") and "git" in resume and resume["start_time"]


@pytest.mark.parametrize("broken", ["train_list", "shot"])
def test_fit_reads_lists_before_creating_the_run_folder(tmp_path, monkeypatch, broken):
    write_labels(tmp_path / "labels.csv", [f"{name} thing" for name in COLOURS])
    write_annotations(tmp_path / "val.txt", [])
    extra = ["run.name=typo"]
    if broken == "train_list":
        extra.append(f"data.train_list={tmp_path / 'trian.txt'}")
        expected = r"trian\.txt"
    else:  # 1 clip per class cannot give 2-shot subsets
        write_annotations(tmp_path / "train.txt", write_colour_clips(tmp_path, per_class=1))
        extra.append("data.shot=2")
        expected = r"fewer than data\.shot=2"

    def no_model(*args, **kwargs):
        raise AssertionError("the model was built before the data was read")

    monkeypatch.setattr("text4vis.engine.train.build_model", no_model)
    cfg = load_config(None, overrides(tmp_path, tmp_path / "runs", *extra))
    with pytest.raises((FileNotFoundError, ValueError), match=expected):
        fit(cfg)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("views", "setting", "source"), [("1x2", "1x1", "--views"), (None, "2x2", "eval.views")]
)
def test_view_errors_name_where_the_value_came_from(views, setting, source):
    cfg = load_config(None, [f"eval.views={setting}"])
    shown = views or setting
    with pytest.raises(ValueError, match=f"{source} '{shown}': CROPS must be 1"):
        with_views(cfg, views)


def test_eval_command_names_views_option(run, capsys):
    args = ["eval", str(run["config"]), "--checkpoint", str(run["best"]), "--views", "1x2"]
    assert main(args) == 2
    assert "--views '1x2': CROPS must be 1" in capsys.readouterr().err

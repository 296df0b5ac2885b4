"""A video index built and searched with an ONNX export (`text4vis export`), without PyTorch.

The export's index holds the rows of the index the source model builds (the same videos, each
vector within 1e-3), a sentence is ranked through the export's text graph and --like through its
video graph as the model ranks them (scores within 1e-3); the commands run in a process where
torch cannot be imported; another model (a PyTorch one, or an export of another model, or an
export that does not record its source) is refused on either kind of index.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import run_cli_without_torch, run_without_torch, write_colour_clips
from test_export import COLOURS, T, small_data
from text4vis.cli import main
from text4vis.config import ModelConfig
from text4vis.errors import UsageError
from text4vis.models.export import export_saved_model
from text4vis.models.video import VideoRecognizer
from text4vis.onnx_runtime import OnnxPredictor
from text4vis.predict import Predictor
from text4vis.search import SearchHit, VideoIndex, VideoIndexError

pytest.importorskip("onnxruntime")

TOLERANCE = 1e-3  # scores of the export against the model's (their embeddings differ by ~1e-4)
SENTENCE = "a person surfing"  # not a class of the model: the text graph embeds it


def save_model(folder: Path, seed: int) -> Path:
    """A tiny-vit model with a MiniLM text classifier over the colours, saved in ``folder``."""
    cfg = ModelConfig(
        arch="tiny-vit",
        temporal="transformer",
        temporal_layers=2,
        classifier="text",
        text_encoder="sentence-transformers:all-MiniLM-L6-v2",
    )
    torch.manual_seed(seed)
    model = VideoRecognizer.from_config(cfg, COLOURS, num_frames=T)
    model.save_pretrained(folder, data_config=small_data())
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The model, its export (with an int8 graph), eight colour clips and the index the model
    builds of them."""
    root = tmp_path_factory.mktemp("search_export")
    records = write_colour_clips(root, per_class=2, frames=8, size=40)
    model = save_model(root / "model", seed=0)
    export_saved_model(model, root / "export", int8=True)
    torch_index = VideoIndex.build(
        [root / "clips"], Predictor.from_pretrained(model), root / "torch.index"
    )
    return {
        "root": root,
        "model": model,
        "export": root / "export",
        "clips": root / "clips",
        "videos": sorted(str((root / r.path).resolve()) for r in records),
        "torch_index": torch_index,
    }


def assert_same_ranking(got: list[SearchHit], want: list[SearchHit]) -> None:
    """``got`` ranks the videos of ``want`` (every video of the index) as ``want`` does: each
    video's score within :data:`TOLERANCE`, and only videos whose scores are that close in
    ``want`` swapped."""
    assert sorted(h.video for h in got) == sorted(h.video for h in want)
    wanted = {h.video: h.score for h in want}
    for hit in got:
        assert hit.score == pytest.approx(wanted[hit.video], abs=TOLERANCE)
    in_order = [wanted[h.video] for h in got]
    assert all(a >= b - 2 * TOLERANCE for a, b in zip(in_order, in_order[1:]))


def test_an_export_indexes_and_searches_as_its_model(setup: dict[str, Any], tmp_path: Path):
    torch_index: VideoIndex = setup["torch_index"]
    exported = OnnxPredictor.from_export(setup["export"])
    index = VideoIndex.build([setup["clips"]], exported, tmp_path / "onnx.index")
    # The same rows, in the same order, and vectors within the tolerance.
    assert index.videos.paths() == torch_index.videos.paths() == setup["videos"]
    np.testing.assert_allclose(
        np.asarray(index.embeddings), np.asarray(torch_index.embeddings), atol=TOLERANCE
    )
    # The identity is the source model's; the export and its precision are recorded too.
    header = json.loads((tmp_path / "onnx.index" / "index.json").read_text())
    assert header["model"]["identity"] == torch_index.info.model.identity
    assert header["model"]["precisions"] == ["onnx-fp32"]
    assert header["model"]["export"]["precision"] == "fp32"
    assert header["data"] == torch_index.info.data
    # A sentence through the export's text graph, an own class through its classifier rows,
    # and a video through its video graph rank every video as the model does.
    n = len(index)
    for query in ({"text": SENTENCE}, {"text": "red"}, {"like": setup["videos"][5]}):
        assert_same_ranking(index.search(**query, top_k=n), torch_index.search(**query, top_k=n))
    # A video outside the index goes through the video graph (the index's own row otherwise).
    outside = tmp_path / "outside.mp4"
    shutil.copy(setup["videos"][2], outside)
    got = index.search(like=outside, top_k=1)
    assert got[0].video == setup["videos"][2] and got[0].score == pytest.approx(1.0, abs=1e-5)
    # Either model searches the other's index: the export the model's, the model the export's.
    torch_index.use_model(exported)
    assert_same_ranking(torch_index.search(text=SENTENCE, top_k=n), index.search(SENTENCE, top_k=n))


def test_segments_and_segment_queries_need_the_pytorch_model(setup: dict[str, Any], tmp_path: Path):
    exported = OnnxPredictor.from_export(setup["export"])
    with pytest.raises(UsageError, match=r"--segments .* needs the PyTorch model"):
        VideoIndex.build([setup["clips"]], exported, tmp_path / "moments", segments=1.0)
    index = VideoIndex.load(setup["torch_index"].path, exported)
    with pytest.raises(UsageError, match=r"VIDEO@START-END\) needs the PyTorch model"):
        index.search(like=f"{setup['videos'][0]}@0-0.2")
    # A segment index of the model is searched with its export, and updated only by the model.
    model = Predictor.from_pretrained(setup["model"])
    moments = VideoIndex.build(setup["videos"][:1], model, tmp_path / "moments", segments=0.5)
    reopened = VideoIndex.load(moments.path, exported)
    assert reopened.search(SENTENCE, top_k=1)[0].video == setup["videos"][0]
    with pytest.raises(UsageError, match="updating a segment index needs the PyTorch model"):
        reopened.update()


def test_another_model_is_refused_naming_both(setup: dict[str, Any], tmp_path: Path, capsys):
    root = setup["root"]
    other = root / "other"
    if not other.exists():
        save_model(other, seed=1)
    export, clips = str(setup["export"]), str(setup["clips"])
    onnx_index = tmp_path / "onnx.index"
    assert main(["index", clips, "--model", export, "--out", str(onnx_index)]) == 0
    capsys.readouterr()
    # Updating the export's index with another PyTorch model: both are named.
    assert main(["index", "--model", str(other), "--out", str(onnx_index)]) == 2
    err = capsys.readouterr().err
    assert f"built with another model: {Path(export).resolve()} (identity" in err
    assert f"not {other.resolve()} (identity" in err
    # The export searching the index of another model (given by --model).
    other_index = tmp_path / "other.index"
    assert main(["index", clips, "--model", str(other), "--out", str(other_index)]) == 0
    capsys.readouterr()
    assert main(["search", str(other_index), SENTENCE, "--model", export]) == 2
    err = capsys.readouterr().err
    assert f"model: {other.resolve()} (identity" in err and f"not the export {export} (" in err
    # An export that does not record its source model (written before it was recorded) is
    # compared by a hash of its graphs: never the model's identity.
    old = tmp_path / "old-export"
    shutil.copytree(setup["export"], old)
    description = json.loads((old / "export.json").read_text())
    del description["source"]
    (old / "export.json").write_text(json.dumps(description))
    assert OnnxPredictor.from_export(old).model_identity().startswith("onnx:")
    assert main(["search", str(setup["torch_index"].path), SENTENCE, "--model", str(old)]) == 2
    assert f"not the export {old} (identity" in capsys.readouterr().err
    # The library refuses it as the commands do.
    with pytest.raises(VideoIndexError, match="another model"):
        VideoIndex.load(other_index, OnnxPredictor.from_export(export))


@pytest.mark.parametrize(
    ("extra", "env", "named"),
    [
        (["--segments", "2"], {}, "--segments"),
        (["--stride", "1"], {}, "--stride"),
        (["--device", "cuda"], {}, "--device cuda"),
        (["--precision", "bf16"], {}, "--precision bf16"),
        ([], {"WORLD_SIZE": "2"}, "torchrun"),
    ],
)
def test_index_refuses_what_an_export_cannot_do(
    setup: dict[str, Any], tmp_path: Path, capsys, monkeypatch, extra, env, named
):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    export = str(setup["export"])
    argv = ["index", str(setup["clips"]), "--model", export, "--out", str(tmp_path / "i"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"--model {export} is an export folder; {named}" in err
    assert not (tmp_path / "i").exists()


@pytest.mark.process
def test_importing_the_index_imports_no_torch():
    done = run_without_torch(
        "import sys, text4vis.search, text4vis.commands.index, text4vis.commands.search\n"
        "assert not [m for m in sys.modules if m.startswith('torch')], 'torch imported'\n"
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.process
def test_index_and_search_commands_run_without_torch(setup: dict[str, Any], tmp_path: Path):
    export, clips, n = str(setup["export"]), str(setup["clips"]), len(setup["videos"])
    out, int8 = str(tmp_path / "onnx.index"), str(tmp_path / "int8.index")
    like = setup["videos"][5]
    torch_index = str(setup["torch_index"].path)
    argvs = [
        ["index", clips, "--model", export, "--out", out, "--json", "--no-progress"],
        ["index", "--model", export, "--out", out, "--json", "--no-progress"],  # an update
        ["search", out, SENTENCE, "--json", "--top-k", str(n)],
        ["search", out, "--like", like, "--json", "--top-k", str(n)],
        ["search", torch_index, SENTENCE, "--model", export, "--json", "--top-k", str(n)],
        ["index", clips, "--model", export, "--out", int8, "--precision", "int8", "--json"],
        ["search", int8, SENTENCE, "--precision", "int8", "--json", "--top-k", "3"],
    ]
    report = run_cli_without_torch(argvs, timeout=300)
    assert report["torch_loaded"] == []
    assert [r["code"] for r in report["runs"]] == [0] * len(argvs), report["stderr"]
    built, updated, text, similar, on_torch_index, built_int8, text_int8 = (
        json.loads(r["stdout"]) for r in report["runs"]
    )
    assert built["videos"] == n and len(built["added"]) == n and built["embedded"] == n
    assert updated["unchanged"] == n and updated["embedded"] == 0

    def hits(found: dict[str, Any]) -> list[SearchHit]:
        return [SearchHit(**h) for h in found["hits"]]

    index: VideoIndex = setup["torch_index"]
    model = Predictor.from_pretrained(setup["model"])
    index.use_model(model)
    want_text = index.search(SENTENCE, top_k=n)
    assert_same_ranking(hits(text), want_text)
    assert_same_ranking(hits(similar), index.search(like=like, top_k=n))
    assert_same_ranking(hits(on_torch_index), want_text)
    header = json.loads((Path(int8) / "index.json").read_text())
    assert header["model"]["precisions"] == ["onnx-int8"]
    assert built_int8["videos"] == n and len(text_int8["hits"]) == 3

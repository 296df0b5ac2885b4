"""`text4vis serve --model EXPORT_DIR`: the JSON API on an export folder (`text4vis export`, ONNX
Runtime) labels uploads and allowed paths with the top labels of the PyTorch model it was made
from, new label names through its text graph, concurrent requests in one run of its video graph;
and `text4vis app` on an export, in a process where torch cannot be imported.

The model is conftest.py's ``onnx_export``: a tiny-vit with random weights and a MiniLM text
classifier of four colours, and one colour clip per class in its ``clips/`` folder.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from conftest import COLOURS, NO_TORCH

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("onnxruntime")

from text4vis.cli import main  # noqa: E402
from text4vis.onnx_runtime import OnnxPredictor  # noqa: E402
from text4vis.predict import Predictor  # noqa: E402
from text4vis.search import VideoIndex  # noqa: E402
from text4vis.serve import ServedModel, ServeSettings, VideoApp, create_app  # noqa: E402

NEW_LABELS = ["dancing", "cooking", "red paint", "a yellow bird"]
# The export resizes with Pillow, PyTorch with torchvision: within one grey level (see
# tests/test_export.py), which moves scores of this tiny model by less than this.
SCORE_TOLERANCE = 5e-3


@pytest.fixture(scope="module")
def models(onnx_export: dict[str, Any]) -> dict[str, Any]:
    """The export on ONNX Runtime and the saved model it was made from on PyTorch."""
    return {
        "export": OnnxPredictor.from_export(onnx_export["export"]),
        "torch": Predictor.from_pretrained(onnx_export["model"], device="cpu"),
        "allowed": Path(onnx_export["videos"][0]).parent,
        "videos": [Path(v) for v in onnx_export["videos"]],
    }


def _run(model: Any, allowed: Path, check: Any, settings: ServeSettings | None = None) -> Any:
    """``await check(client, video_app)`` against an application on ``model`` (no index)."""
    settings = settings or ServeSettings()
    video_app = VideoApp(
        model,
        allow=[allowed],
        max_batch=settings.max_batch,
        max_wait_s=settings.max_wait_ms / 1000,
        max_queue=settings.max_queue,
    )
    app = create_app(video_app, settings)

    async def run() -> Any:
        video_app.worker.start()
        try:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await check(client, video_app)
        finally:
            await video_app.worker.stop()

    try:
        return asyncio.run(run())
    finally:
        video_app.close()


async def _label_every_way(client: Any, videos: list[Path]) -> list[dict[str, Any]]:
    """Per video: its upload with the model's own classes, and its path with new labels."""
    answers = []
    for video in videos:
        upload = await client.post(
            "/v1/label/upload", files={"video": (video.name, video.read_bytes(), "video/mp4")}
        )
        by_path = await client.post(
            "/v1/label", json={"path": video.name, "labels": NEW_LABELS, "top_k": 3}
        )
        assert upload.status_code == 200, upload.text
        assert by_path.status_code == 200, by_path.text
        answers.append({"own": upload.json(), "new": by_path.json()})
    return answers


def test_both_predictors_are_served_models(models: dict[str, Any]):
    for name in ("export", "torch"):
        assert isinstance(models[name], ServedModel), name
    export, torch_model = models["export"], models["torch"]
    assert export.arch == torch_model.arch == "tiny-vit"
    assert export.num_frames == torch_model.num_frames == 4
    assert export.class_names == torch_model.class_names == list(COLOURS)
    # The same frames of a video are looked at.
    assert np.array_equal(export.sample_frames(8), torch_model.sample_frames(8))


def test_the_api_on_an_export_labels_as_the_torch_model(models: dict[str, Any]):
    videos = models["videos"]

    async def check(client: Any, _: VideoApp) -> tuple:
        info = (await client.get("/v1/model")).json()
        return await _label_every_way(client, videos), info

    on_export, info = _run(models["export"], models["allowed"], check)
    on_torch, _ = _run(models["torch"], models["allowed"], check)
    assert info["model"] == "tiny-vit" and info["frames"] == 4
    assert info["class_names"] == list(COLOURS) and info["index"] is None

    for video, ours, theirs in zip(videos, on_export, on_torch):
        for key, count in (("own", len(COLOURS)), ("new", 3)):
            got, want = ours[key]["predictions"], theirs[key]["predictions"]
            assert len(got) == len(want) == count
            assert got[0]["label"] == want[0]["label"], (video.name, key, got, want)
            scores = {p["label"]: p["score"] for p in want}
            for p in got:
                assert abs(p["score"] - scores[p["label"]]) < SCORE_TOLERANCE, (video.name, p)
        assert ours["own"]["video"] == video.name and ours["new"]["video"] == video.name
        assert {p["label"] for p in ours["new"]["predictions"]} <= set(NEW_LABELS)

    # The server's batched path computes what the export's own predict computes.
    direct = models["export"].predict(videos, labels=NEW_LABELS, top_k=3)
    for ours, expected in zip(on_export, direct):
        got = ours["new"]["predictions"]
        assert [p["label"] for p in got] == [p["label"] for p in expected]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], abs=1e-5)


def test_concurrent_requests_on_an_export_share_one_run_of_the_graph(models: dict[str, Any]):
    videos = models["videos"]

    async def check(client: Any, video_app: VideoApp) -> tuple:
        answers = await asyncio.gather(
            *(client.post("/v1/label", json={"path": v.name, "labels": NEW_LABELS}) for v in videos)
        )
        return answers, video_app.worker.stats.to_dict()

    # A long wait: the four requests surely meet in one batch.
    answers, stats = _run(
        models["export"], models["allowed"], check, ServeSettings(max_batch=4, max_wait_ms=2000)
    )
    assert stats["videos"] == 4 and stats["batches"] == 1 and stats["largest_batch"] == 4
    alone = models["export"].predict(videos, labels=NEW_LABELS, top_k=5)
    for answer, expected in zip(answers, alone):
        assert answer.status_code == 200, answer.text
        got = answer.json()["predictions"]
        assert [p["label"] for p in got] == [p["label"] for p in expected]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], abs=1e-5)


def test_bad_input_on_an_export_gets_its_4xx(models: dict[str, Any], tmp_path: Path):
    video = models["videos"][0]
    truncated = video.read_bytes()[:200]
    cases: list[tuple[str, dict, int, str]] = [
        (
            "/v1/label/upload",
            {"files": {"video": ("holiday.mp4", b"not a video")}, "data": {"labels": "a"}},
            400,
            "cannot read holiday.mp4",
        ),
        (
            "/v1/label/upload",
            {"files": {"video": ("cut.mp4", truncated)}},
            400,
            "cannot read cut.mp4",
        ),
        ("/v1/label", {"json": {"path": video.name, "labels": "a,,b"}}, 400, "empty label"),
        ("/v1/label", {"json": {"path": "no_such.mp4"}}, 400, "no such file"),
        ("/v1/label", {"json": {"path": "../../etc/passwd"}}, 403, "outside the folders"),
        ("/v1/label", {"json": {"path": video.name, "top_k": 0}}, 422, "top_k"),
        (
            "/v1/timeline",
            {"json": {"path": video.name, "window": 1.0}},
            400,
            "timelines of long videos run on the PyTorch model only",
        ),
        ("/v1/search", {"json": {"text": "a red ball"}}, 400, "no index loaded"),
    ]

    async def check(client: Any, _: VideoApp) -> list:
        answers = []
        for url, request, _status, _message in cases:
            answers.append(await client.post(url, **request))
        answers.append(await client.post("/v1/label", json={"path": video.name}))
        return answers

    answers = _run(models["export"], models["allowed"], check)
    for (url, _, status, message), answer in zip(cases, answers):
        assert answer.status_code == status, (url, answer.text)
        error = answer.json()["error"]
        assert message in error, (url, error)
        assert "Traceback" not in error and "text4vis-serve-" not in error
    assert answers[-1].status_code == 200  # and the server still serves


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        (["--device", "cuda"], "runs on the CPU"),
        (["--precision", "bf16"], "an fp32 graph"),
    ],
)
def test_serve_refuses_what_an_export_cannot_do(
    onnx_export: dict[str, Any], extra: list[str], named: str, capsys: pytest.CaptureFixture
):
    code = main(["serve", "--model", str(onnx_export["export"]), "--port", "0", *extra])
    err = capsys.readouterr().err
    assert code == 2 and named in err and extra[0] in err, err


# -- the real server, without torch -------------------------------------------------------------

# `text4vis app ARGS...` in a process where torch cannot be imported; when it stops (SIGTERM),
# prints its exit status and the torch modules loaded.
APP_WITHOUT_TORCH = NO_TORCH + textwrap.dedent(
    """
    import json, sys

    from text4vis.cli import main

    code = main(["app", *sys.argv[1:]])
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
    print(json.dumps({"code": code, "torch_loaded": loaded}))
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.process
def test_the_app_serves_an_export_without_torch(onnx_export: dict[str, Any], tmp_path: Path):
    videos = [Path(v) for v in onnx_export["videos"]]
    runtime = OnnxPredictor.from_export(onnx_export["export"], precision="int8")
    index = VideoIndex.build([str(v) for v in videos], runtime, tmp_path / "clips.index")
    port = _free_port()
    command = [sys.executable, "-c", APP_WITHOUT_TORCH, "--model", str(onnx_export["export"])]
    command += ["--allow", str(videos[0].parent), "--port", str(port), "--precision", "int8"]
    command += ["--index", str(index.path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        with httpx.Client(base_url=url, timeout=60) as client:
            upload = client.post(
                "/v1/label/upload",
                files={"video": (videos[1].name, videos[1].read_bytes())},
                data={"labels": ", ".join(NEW_LABELS), "top_k": "2"},
            )
            by_path = client.post("/v1/label", json={"path": videos[2].name})
            page = client.get("/")
            timeline = client.post("/v1/timeline", json={"path": videos[2].name, "window": 1})
            by_text = client.post("/v1/search", json={"text": "a red ball", "top_k": 4})
            by_video = client.post("/v1/search", json={"path": videos[3].name, "top_k": 2})
            thumbnail = client.get(by_text.json()["hits"][0]["thumbnail"])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            out, err = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    assert report == {"code": 0, "torch_loaded": []}, err
    assert "Traceback" not in err

    # The same answers as the export's own predict and index in this process (int8 graph).
    for answer, expected in (
        (by_text, index.search(text="a red ball", top_k=4)),
        (by_video, index.search_vectors(index.video_embedding(videos[3])[None], 2)[0]),
    ):
        assert answer.status_code == 200, answer.text
        got = answer.json()["hits"]
        assert [hit["video"] for hit in got] == [hit.video for hit in expected]
        # The index holds the rows embedded in a batch of 4, the server embeds the query alone:
        # ONNX Runtime's dynamic int8 quantizes activations per batch, which moves scores < 1e-3.
        assert [hit["score"] for hit in got] == pytest.approx([h.score for h in expected], abs=1e-3)
    assert by_video.json()["hits"][0]["video"] == str(videos[3].resolve())
    assert thumbnail.status_code == 200 and thumbnail.headers["content-type"].startswith("image/")
    for answer, video, labels, top_k in (
        (upload, videos[1], NEW_LABELS, 2),
        (by_path, videos[2], None, 5),
    ):
        assert answer.status_code == 200, answer.text
        got = answer.json()["predictions"]
        expected = runtime.predict([video], labels=labels, top_k=top_k)[0]
        assert [p["label"] for p in got] == [p["label"] for p in expected]
        assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], abs=1e-5)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert timeline.status_code == 400 and "PyTorch model only" in timeline.json()["error"]

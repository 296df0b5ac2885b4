"""`text4vis serve`: the JSON API in process (httpx over ASGI), and once as a real uvicorn process.

The model is the demo-trained one of conftest.py (``demo_search_model``) with an index of the
demo's validation clips; the allowed folder is a copy of a few clips, beside a folder that is not
allowed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")

from text4vis.serve import ServeSettings, VideoApp, create_app  # noqa: E402

LABELS = ["a red circle moving left", "a blue square moving left", "a green circle blinking"]


@pytest.fixture(scope="module")
def world(demo_search_model: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict:
    from text4vis.predict import Predictor
    from text4vis.search import VideoIndex

    root = tmp_path_factory.mktemp("serve")
    clips = sorted((demo_search_model["dataset"].root / "videos" / "val").glob("*.mp4"))
    allowed, outside = root / "allowed", root / "outside"
    allowed.mkdir()
    outside.mkdir()
    for clip in clips[:4]:
        shutil.copy(clip, allowed / clip.name)
    shutil.copy(clips[4], outside / "secret.mp4")
    (allowed / "escape.mp4").symlink_to(outside / "secret.mp4")
    (allowed / "escape_dir").symlink_to(outside, target_is_directory=True)
    predictor = Predictor.from_pretrained(demo_search_model["model_dir"], device="cpu")
    index = VideoIndex.build(clips, predictor, root / "index")
    return {
        "predictor": predictor,
        "index": index,
        "clips": clips,
        "allowed": allowed,
        "outside": outside,
        "model_dir": demo_search_model["model_dir"],
    }


def _client(app: Any) -> Any:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


def _run(world: dict, check: Any, *, settings: ServeSettings | None = None, **options: Any) -> Any:
    """Run ``await check(client, video_app)`` against a fresh application on a new event loop."""
    settings = settings or ServeSettings()
    options.setdefault("allow", [world["allowed"]])
    options.setdefault("max_batch", settings.max_batch)
    options.setdefault("max_wait_s", settings.max_wait_ms / 1000)
    options.setdefault("max_queue", settings.max_queue)
    video_app = VideoApp(world["predictor"], world["index"], **options)
    app = create_app(video_app, settings)

    async def main() -> Any:
        video_app.worker.start()
        try:
            async with _client(app) as client:
                return await check(client, video_app)
        finally:
            await video_app.worker.stop()

    try:
        return asyncio.run(main())
    finally:
        uploads = video_app._workdir / "uploads"
        assert not uploads.exists() or not list(uploads.iterdir())  # no upload is left behind
        video_app.close()


def _expected(world: dict, clip: Path, labels: list[str] | None = LABELS) -> list[dict]:
    return world["predictor"].predict([clip], labels=labels, top_k=None)[0]


def _same_ranking(got: list[dict], expected: list[dict]) -> None:
    assert [p["label"] for p in got] == [p["label"] for p in expected]
    assert [p["score"] for p in got] == pytest.approx([p["score"] for p in expected], abs=1e-5)


# -- the API -------------------------------------------------------------------------------------


def test_the_openapi_schema_describes_the_api(world: dict):
    async def check(client: Any, _: VideoApp) -> dict:
        response = await client.get("/openapi.json")
        assert response.status_code == 200
        return response.json()

    schema = _run(world, check)
    paths = schema["paths"]
    for path, method in [
        ("/v1/health", "get"),
        ("/v1/model", "get"),
        ("/v1/label", "post"),
        ("/v1/label/upload", "post"),
        ("/v1/search", "post"),
        ("/v1/search/upload", "post"),
        ("/v1/timeline", "post"),
    ]:
        assert method in paths[path], path
    upload = paths["/v1/label/upload"]["post"]["requestBody"]["content"]
    assert "multipart/form-data" in upload
    assert "application/json" in paths["/v1/label"]["post"]["requestBody"]["content"]
    assert {"413", "503"} <= set(paths["/v1/label"]["post"]["responses"])
    assert "/" not in paths and "/thumbnail/{row}" not in paths  # the page is not the API


def test_label_an_upload_and_a_path_rank_like_the_predictor(world: dict):
    clip = world["allowed"] / world["clips"][1].name

    async def check(client: Any, _: VideoApp) -> tuple:
        upload = await client.post(
            "/v1/label/upload",
            files={"video": (clip.name, clip.read_bytes(), "video/mp4")},
            data={"labels": ", ".join(LABELS), "top_k": "3"},
        )
        by_path = await client.post(
            "/v1/label", json={"path": clip.name, "labels": LABELS, "top_k": 2}
        )
        own = await client.post("/v1/label", json={"path": str(clip)})  # the model's classes
        return upload, by_path, own

    upload, by_path, own = _run(world, check)
    assert upload.status_code == 200, upload.text
    assert upload.json()["video"] == clip.name and upload.json()["frames"] == []
    _same_ranking(upload.json()["predictions"], _expected(world, clip))
    assert by_path.status_code == 200, by_path.text
    _same_ranking(by_path.json()["predictions"], _expected(world, clip)[:2])
    assert own.status_code == 200, own.text
    _same_ranking(own.json()["predictions"], _expected(world, clip, None)[:5])


def test_search_by_text_by_path_and_by_upload(world: dict):
    clip = world["allowed"] / world["clips"][2].name

    async def check(client: Any, _: VideoApp) -> tuple:
        text = await client.post("/v1/search", json={"text": "a red circle", "top_k": 4})
        like = await client.post("/v1/search", json={"path": clip.name, "top_k": 3})
        upload = await client.post(
            "/v1/search/upload",
            files={"video": ("query.mp4", clip.read_bytes())},
            data={"top_k": "3"},
        )
        both = await client.post("/v1/search", json={"text": "a", "path": clip.name})
        return text, like, upload, both

    text, like, upload, both = _run(world, check)
    assert text.status_code == 200, text.text
    expected = world["index"].search(text="a red circle", top_k=4)
    assert [h["video"] for h in text.json()["hits"]] == [h.video for h in expected]
    # The clip itself is indexed (its original): it ranks first, as the index's own search says.
    expected_like = world["index"].search(like=world["clips"][2], top_k=3)
    for answer in (like, upload):
        assert answer.status_code == 200, answer.text
        hits = answer.json()["hits"]
        assert [h["video"] for h in hits] == [h.video for h in expected_like]
        assert hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert both.status_code == 400 and "exactly one" in both.json()["error"]


def test_timeline_of_a_path_and_of_an_upload_is_the_predictors(world: dict):
    clip = world["allowed"] / world["clips"][0].name

    async def check(client: Any, _: VideoApp) -> tuple:
        by_path = await client.post(
            "/v1/timeline",
            json={"path": clip.name, "labels": LABELS, "window": 0.5, "stride": 0.25},
        )
        page = await client.post(
            "/api/timeline",
            params={"name": "mine.mp4", "labels": ", ".join(LABELS), "window": "0.5"},
            content=clip.read_bytes(),
        )
        page_path = await client.post(
            "/api/timeline", params={"path": clip.name, "window": "0.5", "stride": "0.25"}
        )
        outside = await client.post(
            "/v1/timeline", json={"path": str(world["outside"] / "secret.mp4"), "window": 1}
        )
        bad = await client.post("/api/timeline", params={"path": clip.name, "window": "x"})
        return by_path, page, page_path, outside, bad

    by_path, page, page_path, outside, bad = _run(world, check)
    predictor = world["predictor"]
    expected = predictor.timeline(clip, window=0.5, stride=0.25, labels=LABELS, top_k=3)
    assert by_path.status_code == 200, by_path.text
    assert by_path.json() == {**expected.to_dict(), "video": clip.name}
    assert len(by_path.json()["windows"]) > 1  # several windows: a strip, not one label
    assert page.status_code == 200, page.text
    no_overlap = predictor.timeline(clip, window=0.5, labels=LABELS, top_k=3).to_dict()
    assert page.json() == {**no_overlap, "video": "mine.mp4"}
    assert page_path.status_code == 200, page_path.text
    own = predictor.timeline(clip, window=0.5, stride=0.25, top_k=3).to_dict()
    assert page_path.json()["segments"] == own["segments"]  # no labels: the model's classes
    assert outside.status_code == 403
    assert bad.status_code == 400 and "window" in bad.json()["error"]


def test_a_segment_index_answers_moments(world: dict, tmp_path: Path):
    from text4vis.search import VideoIndex

    index = VideoIndex.build(
        world["clips"][:3], world["predictor"], tmp_path / "moments", segments=0.5, stride=0.25
    )
    settings = ServeSettings()
    video_app = VideoApp(world["predictor"], index, allow=[world["allowed"]])
    app = create_app(video_app, settings)

    async def main() -> Any:
        video_app.worker.start()
        try:
            async with _client(app) as client:
                info = await client.get("/api/info")
                return info, await client.get("/api/search", params={"q": "a red circle", "k": "5"})
        finally:
            await video_app.worker.stop()

    try:
        info, answer = asyncio.run(main())
    finally:
        video_app.close()
    assert answer.status_code == 200, answer.text
    expected = index.search(text="a red circle", top_k=5)
    hits = answer.json()["hits"]
    assert [(h["video"], h["start"], h["end"]) for h in hits] == [
        (h.video, h.start, h.end) for h in expected
    ]
    assert all(h["end"] > h["start"] for h in hits)
    assert info.json()["indexed_videos"] == 3
    assert info.json()["indexed_segments"] == len(index) > 3


def test_health_and_model_info(world: dict):
    async def check(client: Any, _: VideoApp) -> tuple:
        return (await client.get("/v1/health")).json(), (await client.get("/v1/model")).json()

    health, info = _run(world, check, max_batch=4)
    assert health["status"] == "ok" and health["batching"]["max_batch"] == 4
    assert info["indexed_videos"] == len(world["clips"]) and info["frames"] == 8
    assert info["allow"] == [str(world["allowed"].resolve())]


# -- batching ------------------------------------------------------------------------------------


@pytest.mark.parametrize("max_batch", [4, 1])
def test_concurrent_requests_share_one_forward_pass(world: dict, max_batch: int):
    clips = [world["allowed"] / c.name for c in world["clips"][:4]]

    async def check(client: Any, video_app: VideoApp) -> tuple:
        answers = await asyncio.gather(
            *(
                client.post("/v1/label", json={"path": c.name, "labels": LABELS, "top_k": 3})
                for c in clips
            )
        )
        return answers, video_app.worker.stats.to_dict()

    # A long wait: the four requests surely meet in one batch when batching is on.
    settings = ServeSettings(max_batch=max_batch, max_wait_ms=2000)
    answers, stats = _run(world, check, settings=settings)
    for clip, answer in zip(clips, answers):
        assert answer.status_code == 200, answer.text
        _same_ranking(answer.json()["predictions"], _expected(world, clip)[:3])
    assert stats["videos"] == 4
    assert stats["batches"] == (1 if max_batch == 4 else 4)
    assert stats["largest_batch"] == max_batch


def test_a_lone_request_does_not_wait_for_company(world: dict):
    async def check(client: Any, video_app: VideoApp) -> tuple:
        await client.post("/v1/label", json={"path": world["clips"][0].name, "labels": LABELS})
        start = time.perf_counter()
        answer = await client.post("/v1/label", json={"path": world["clips"][1].name})
        return answer, time.perf_counter() - start

    # Nobody else is decoding a video: the batch closes at once instead of after 5 s.
    answer, seconds = _run(world, check, settings=ServeSettings(max_batch=8, max_wait_ms=5000))
    assert answer.status_code == 200 and seconds < 4.0


def test_a_full_queue_answers_503_with_retry_after_and_then_serves(world: dict):
    release = threading.Event()

    async def check(client: Any, video_app: VideoApp) -> tuple:
        # Hold the model's thread, so that requests wait.
        blocker = asyncio.ensure_future(video_app.worker.call(lambda: release.wait(30)))
        await asyncio.sleep(0.05)
        first = asyncio.ensure_future(client.post("/v1/search", json={"text": "a red circle"}))
        await asyncio.sleep(0.2)
        refused = await client.post("/v1/search", json={"text": "a blue square"})
        release.set()
        await blocker
        served = await first
        after = await client.post("/v1/search", json={"text": "a green circle"})
        return refused, served, after

    refused, served, after = _run(world, check, settings=ServeSettings(max_queue=1))
    assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
    assert "busy" in refused.json()["error"]
    assert served.status_code == 200 and after.status_code == 200


def test_the_worker_refuses_beyond_its_queue(world: dict):
    from text4vis.serve import ModelWorker, Overloaded

    async def main() -> list:
        worker = ModelWorker(world["predictor"], max_queue=2)
        worker.start()
        release = threading.Event()
        held = asyncio.ensure_future(worker.call(lambda: release.wait(30)))
        await asyncio.sleep(0.05)  # the collector took it: the queue is empty again
        waiting = [asyncio.ensure_future(worker.call(lambda: 1)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="2 requests are already waiting"):
            await worker.call(lambda: 2)
        release.set()
        results = [await held, *[await w for w in waiting]]
        assert worker.stats.refused == 1 and worker.waiting == 0
        await worker.stop()
        return results

    assert asyncio.run(main()) == [True, 1, 1]


def test_a_request_over_its_time_gets_504_and_the_next_is_served(world: dict):
    release = threading.Event()

    async def check(client: Any, video_app: VideoApp) -> tuple:
        blocker = asyncio.ensure_future(video_app.worker.call(lambda: release.wait(30)))
        await asyncio.sleep(0.05)
        late = await client.post("/v1/search", json={"text": "a red circle"})
        release.set()
        await blocker
        await asyncio.sleep(0.05)
        return late, await client.get("/v1/health"), video_app.worker.stats.calls

    late, health, calls = _run(world, check, settings=ServeSettings(timeout_s=0.5))
    assert late.status_code == 504 and "0.5 s" in late.json()["error"]
    assert health.status_code == 200
    assert calls == 1  # the abandoned search was dropped, not run for nobody


# -- bad input: a 4xx with a message, and the next request is served -----------------------------


def test_bad_inputs_get_4xx_and_the_server_keeps_serving(world: dict, tmp_path: Path):
    clip = world["clips"][0]
    truncated = clip.read_bytes()[: len(clip.read_bytes()) // 3]
    big = b"\0" * (3 << 20)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(big), 1 << 16):
            yield big[start : start + (1 << 16)]

    cases: list[tuple[str, dict, int, str]] = [
        (
            "/v1/label/upload",
            {"files": {"video": ("holiday.mp4", b"this is not a video")}, "data": {"labels": "a"}},
            400,
            "cannot read holiday.mp4",
        ),
        (
            "/v1/label/upload",
            {"files": {"video": ("cut.mp4", truncated)}, "data": {"labels": "a, b"}},
            400,
            "cannot read cut.mp4",
        ),
        (
            "/v1/label/upload",
            {"files": {"video": ("big.mp4", big)}, "data": {"labels": "a"}},
            413,
            "more than the 2097152 bytes",
        ),
        ("/api/label?name=big.mp4&labels=a", {"content": chunks()}, 413, "more than"),
        (
            "/v1/label",
            {
                "content": b'{"path": "a.mp4", "labels": [',
                "headers": {"content-type": "application/json"},
            },
            422,
            "the body is not valid JSON (at character",
        ),
        ("/v1/label", {"json": {"path": "a.mp4", "top_k": "many"}}, 422, "top_k"),
        ("/v1/label", {"json": {"path": "a.mp4", "label": ["x"]}}, 422, "label"),
        ("/v1/label", {"json": {"labels": ["x"]}}, 422, "path"),
        ("/v1/label/upload", {"data": {"labels": "a"}}, 422, "video"),
        (
            "/v1/label/upload",
            {
                "content": b'--xyz\r\nContent-Disposition: form-data; name="video"; filen',
                "headers": {"content-type": "multipart/form-data; boundary=xyz"},
            },
            422,  # a truncated multipart body: the file part never completes
            "body.video: Field required",
        ),
        ("/v1/label", {"json": {"path": clip.name, "labels": "a,,b"}}, 400, "empty label"),
        ("/v1/label", {"json": {"path": "no_such.mp4", "labels": "a"}}, 400, "no such file"),
        ("/v1/search", {"json": {"text": "  "}}, 400, "empty"),
        ("/v1/search", {"json": {"text": "a", "top_k": 0}}, 422, "top_k"),
    ]

    async def check(client: Any, _: VideoApp) -> list:
        answers = []
        for url, request, _status, _message in cases:
            answer = await client.post(url, **request)
            health = await client.get("/v1/health")
            answers.append((answer, health.status_code))
        query = await client.get("/api/search?q=a&k=many")
        answers.append((query, 200))
        return answers

    answers = _run(world, check, settings=ServeSettings(max_body_mb=2))
    for (url, _, status, message), (answer, health) in zip(cases, answers):
        assert answer.status_code == status, (url, answer.text)
        error = answer.json()["error"]
        assert message in error, (url, error)
        assert "Traceback" not in error and "text4vis-serve-" not in error
        assert health == 200
    query = answers[-1][0]
    assert (
        query.status_code == 400 and "must be a whole number, got 'many'" in query.json()["error"]
    )


def test_a_bug_is_a_500_with_a_logged_traceback(
    world: dict, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setattr(logging.getLogger("text4vis"), "propagate", True)

    async def check(client: Any, video_app: VideoApp) -> tuple:
        def broken(*args: Any, **kwargs: Any) -> None:
            raise KeyError("an internal invariant broke")

        monkeypatch.setattr(video_app, "decode_views", broken)
        answer = await client.post("/v1/label", json={"path": world["clips"][0].name})
        return answer, await client.get("/v1/health")

    with caplog.at_level(logging.ERROR, logger="text4vis.serve"):
        answer, health = _run(world, check)
    assert answer.status_code == 500 and "internal error (KeyError)" in answer.json()["error"]
    assert "invariant" not in answer.json()["error"]
    # (A record can reach caplog through two of pytest's handlers: counted once.)
    records = list({id(r): r for r in caplog.records if r.name == "text4vis.serve"}.values())
    assert len(records) == 1 and records[0].exc_info and "POST /v1/label" in records[0].getMessage()
    assert health.status_code == 200


# -- security ------------------------------------------------------------------------------------


def test_paths_are_read_only_inside_the_allowed_folders(world: dict):
    allowed, outside = world["allowed"], world["outside"]
    attempts = [
        "../outside/secret.mp4",  # relative, up and out
        f"{allowed}/../outside/secret.mp4",  # absolute with ..
        str(outside / "secret.mp4"),  # absolute outside
        "escape.mp4",  # a link inside pointing out
        "escape_dir/secret.mp4",  # a folder link pointing out
        "/etc/passwd",
        "~/.bashrc",
    ]

    async def check(client: Any, _: VideoApp) -> list:
        answers = []
        for path in attempts:
            answers.append(await client.post("/v1/label", json={"path": path, "labels": "a"}))
            answers.append(await client.post("/v1/search", json={"path": path}))
            answers.append(
                await client.post(f"/api/label?{httpx.QueryParams(path=path, labels='a')}")
            )
        answers.append(await client.post("/v1/label", json={"path": world["clips"][0].name}))
        return answers

    answers = _run(world, check)
    for answer in answers[:-1]:
        assert answer.status_code == 403, answer.text
        assert "outside the folders this server reads" in answer.json()["error"]
        assert "predictions" not in answer.json()
    assert answers[-1].status_code == 200  # inside: served

    # Without --allow nothing is read by path.
    async def closed(client: Any, _: VideoApp) -> Any:
        return await client.post("/v1/label", json={"path": str(allowed / "escape.mp4")})

    answer = _run(world, closed, allow=[])
    assert answer.status_code == 403 and "--allow DIR" in answer.json()["error"]


def test_labels_are_never_read_from_a_file_of_the_server(world: dict):
    async def check(client: Any, _: VideoApp) -> Any:
        return await client.post(
            "/v1/label", json={"path": world["clips"][0].name, "labels": "/etc/passwd"}
        )

    answer = _run(world, check)
    assert answer.status_code == 200, answer.text
    assert [p["label"] for p in answer.json()["predictions"]] == ["/etc/passwd"]


def test_only_indexed_videos_are_served(world: dict):
    async def check(client: Any, _: VideoApp) -> list:
        return [
            await client.get(url)
            for url in (
                "/video/0",
                "/video/-1",
                f"/video/{len(world['clips'])}",
                "/video/..%2F..%2Fetc%2Fpasswd",
                "/video/../../etc/passwd",
                "/thumbnail/%2Fetc%2Fpasswd",
            )
        ]

    ok, *refused = _run(world, check)
    assert ok.status_code == 200 and ok.content == Path(world["index"].videos[0].path).read_bytes()
    for answer in refused:
        assert answer.status_code in (400, 404), answer.text
        assert b"root:" not in answer.content


def test_the_server_binds_to_loopback_unless_told():
    from text4vis.cli import build_parser

    for command in ("serve", "app"):
        args = build_parser().parse_args([command, "--model", "m"])
        assert args.host == "127.0.0.1"
    assert build_parser().parse_args(["serve", "--model", "m"]).allow is None


def test_memory_stays_bounded_with_new_label_sets(world: dict, monkeypatch: pytest.MonkeyPatch):
    import text4vis.serve.service as service

    monkeypatch.setattr(service, "MAX_CLASSIFIERS", 3)

    async def check(client: Any, video_app: VideoApp) -> list:
        sizes = []
        for n in range(6):
            labels = [f"a red circle number {n}", "a blue square"]
            answer = await client.post(
                "/v1/label", json={"path": world["clips"][0].name, "labels": labels}
            )
            assert answer.status_code == 200, answer.text
            sizes.append(len(video_app.predictor._classifiers))
        return sizes

    sizes = _run(world, check)
    assert max(sizes) <= 3 and sizes[-1] == 3


# -- the real server -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.process
def test_the_serve_command_runs_uvicorn_and_stops_on_sigterm(world: dict):
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "text4vis", "serve", "--model", str(world["model_dir"])]
    command += ["--index", str(world["index"].path), "--allow", str(world["allowed"])]
    command += ["--port", str(port), "--device", "cpu", "--max-batch", "4"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.3)
        clip = world["allowed"] / world["clips"][3].name
        with httpx.Client(base_url=url, timeout=60) as client:
            upload = client.post(
                "/v1/label/upload",
                files={"video": (clip.name, clip.read_bytes())},
                data={"labels": ", ".join(LABELS), "top_k": "3"},
            )
            bad = client.post("/v1/label/upload", files={"video": ("x.mp4", b"nope")})
            page = client.get("/")
            search = client.post("/v1/search", json={"text": "a red circle", "top_k": 2})
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output = process.communicate(timeout=30)[0].decode()
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert upload.status_code == 200, upload.text
    _same_ranking(upload.json()["predictions"], _expected(world, clip)[:3])
    assert bad.status_code == 400 and "cannot read x.mp4" in bad.json()["error"]
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert search.status_code == 200 and len(search.json()["hits"]) == 2
    assert process.returncode == 0, output
    assert "Traceback" not in output
    assert json.loads(json.dumps(upload.json()))  # plain JSON

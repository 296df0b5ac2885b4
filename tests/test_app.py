"""The `text4vis app` server over HTTP (no browser; tests/test_app_browser.py drives a real one).

The server runs in a thread on a free port with the demo-trained model and an index of the
demo's validation clips (conftest.py's ``demo_search_model``).
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from text4vis.serve import VideoApp, start_in_thread


@pytest.fixture(scope="module")
def server(demo_search_model: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    from text4vis.data import open_video
    from text4vis.data.synthetic import write_frame_folder
    from text4vis.predict import Predictor
    from text4vis.search import VideoIndex

    root = tmp_path_factory.mktemp("app")
    clips = sorted((demo_search_model["dataset"].root / "videos" / "val").glob("*.mp4"))
    write_frame_folder(root / "frames_clip", open_video(clips[0]).frames(list(range(16))))
    predictor = Predictor.from_pretrained(demo_search_model["model_dir"], device="cpu")
    index = VideoIndex.build([*clips, root / "frames_clip"], predictor, root / "index")
    # Labelling by path reads inside the demo's data folder only (text4vis app --allow DIR).
    app = VideoApp(predictor, index, allow=[demo_search_model["dataset"].root])
    served = start_in_thread(app)
    yield {
        "url": served.url,
        "predictor": predictor,
        "index": index,
        "clips": clips,
        "root": root,
    }
    served.stop()
    app.close()


def _request(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()  # case-insensitive
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def test_the_page_needs_nothing_from_the_network(server: dict[str, Any]):
    resources = importlib.resources.files("text4vis") / "resources" / "page"
    status, headers, body = _request(server["url"] + "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = body.decode()
    assert body == resources.joinpath("index.html").read_bytes()
    # The style and the script are the package's resource files, linked from the page.
    linked = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page)
    assert {"/page.css", "/page.js"} <= set(linked)
    files = {"/": page}
    for name, content_type in (("page.css", "text/css"), ("page.js", "text/javascript")):
        status, headers, body = _request(f"{server['url']}/{name}")
        assert status == 200 and headers["Content-Type"].startswith(content_type), name
        assert body == resources.joinpath(name).read_bytes() and len(body) > 1000
        files[name] = body.decode()
    assert "getElementById" in files["page.js"] and "font-family" in files["page.css"]
    # No external script, style, font, image or analytics: every URL is on this server (CSS
    # url(...), not the script's URL.createObjectURL).
    for name, text in files.items():
        assert not re.search(
            r"https?://|//[a-z0-9.-]+\.[a-z]{2,}/|@import|(?<![\w.])url\(", text, re.I
        ), name
    for target in linked:
        assert target.startswith(("/", "#", "data:")), target
    status, _, body = _request(server["url"] + "/api/info")
    info = json.loads(body)
    assert status == 200 and info["indexed_videos"] == len(server["clips"]) + 1


def test_the_packages_data_entries_match_the_files():
    """pyproject's package-data patterns each match a file, and every page resource is listed."""
    import fnmatch

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    root = Path(__file__).resolve().parents[1]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["text4vis"]
    package = root / "src" / "text4vis"
    files = [p.relative_to(package).as_posix() for p in package.rglob("*") if p.is_file()]
    for pattern in patterns:
        assert any(fnmatch.fnmatch(f, pattern) for f in files), pattern
    for name in ("index.html", "page.css", "page.js"):
        assert any(fnmatch.fnmatch(f"resources/page/{name}", p) for p in patterns), name


def test_label_an_upload_ranks_like_the_predictor(server: dict[str, Any]):
    clip = server["clips"][3]
    labels = ["a red circle moving left", "a blue square moving left", "a green circle blinking"]
    query = urlencode({"name": clip.name, "labels": ", ".join(labels)})
    status, _, body = _request(f"{server['url']}/api/label?{query}", data=clip.read_bytes())
    assert status == 200, body
    result = json.loads(body)
    expected = server["predictor"].predict([clip], labels=labels, top_k=None)[0]
    assert [p["label"] for p in result["predictions"]] == [p["label"] for p in expected]
    assert [p["score"] for p in result["predictions"]] == pytest.approx(
        [p["score"] for p in expected], abs=1e-5
    )
    assert sum(p["score"] for p in result["predictions"]) == pytest.approx(1.0, abs=1e-5)
    # The frames shown are the frames the model samples: T segment centres of the 16 frames.
    assert result["frame_indices"] == [1, 3, 5, 7, 9, 11, 13, 15]
    assert len(result["frames"]) == 8 and result["frames"][0].startswith("data:image/png;base64,")
    assert result["video"] == clip.name


def test_label_a_path_with_a_label_csv(server: dict[str, Any]):
    clip = server["clips"][0]
    labels = "id,name\n0,a red circle moving left\n1,a yellow triangle blinking\n"
    query = urlencode({"path": str(clip), "labels": labels})
    status, _, body = _request(f"{server['url']}/api/label?{query}", data=b"")
    assert status == 200, body
    assert {p["label"] for p in json.loads(body)["predictions"]} == {
        "a red circle moving left",
        "a yellow triangle blinking",
    }


@pytest.mark.parametrize(
    ("query", "data", "message"),
    [
        ({"name": "clip.mp4", "labels": "a, b"}, b"this is not a video", "cannot read clip.mp4"),
        ({"name": "clip.mp4", "labels": "a,,b"}, b"x", "empty label"),
        ({"name": "clip.mp4", "labels": ""}, b"x", "type label names"),
        ({"path": "videos/no/such/video.mp4", "labels": "a"}, b"", "no such file"),
        ({"labels": "a"}, b"", "choose a video"),
    ],
)
def test_bad_requests_show_a_message_and_the_server_keeps_serving(
    server: dict[str, Any], query: dict, data: bytes, message: str
):
    status, _, body = _request(f"{server['url']}/api/label?{urlencode(query)}", data=data)
    assert status == 400
    error = json.loads(body)["error"]
    assert message in error and "Traceback" not in error and "text4vis-serve-" not in error
    assert _request(server["url"] + "/api/info")[0] == 200


def test_search_returns_thumbnails_and_playable_videos(server: dict[str, Any]):
    from PIL import Image

    query = urlencode({"q": "a yellow circle moving up", "k": 5})
    status, _, body = _request(f"{server['url']}/api/search?{query}")
    assert status == 200, body
    hits = json.loads(body)["hits"]
    expected = server["index"].search(text="a yellow circle moving up", top_k=5)
    assert [h["video"] for h in hits] == [h.video for h in expected]
    assert [h["rank"] for h in hits] == [1, 2, 3, 4, 5]
    status, headers, png = _request(server["url"] + hits[0]["thumbnail"])
    assert status == 200 and headers["Content-Type"] == "image/png"
    image = Image.open(__import__("io").BytesIO(png))
    assert min(image.size) >= 120  # the 32 px synthetic frame, scaled up to be seen
    # An mp4 is served as it is, with byte ranges for seeking.
    status, headers, video = _request(server["url"] + hits[0]["play"])
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    assert video == Path(hits[0]["video"]).read_bytes()
    status, headers, part = _request(
        server["url"] + hits[0]["play"], headers={"Range": "bytes=4-11"}
    )
    assert status == 206 and part == video[4:12]
    assert headers["Content-Range"] == f"bytes 4-11/{len(video)}"


def test_a_frame_folder_is_reencoded_for_the_browser(server: dict[str, Any]):
    from text4vis.data import open_video

    row = server["index"].row_of(server["root"] / "frames_clip")
    status, headers, video = _request(f"{server['url']}/video/{row}")
    assert status == 200 and headers["Content-Type"] == "video/mp4"
    copy = server["root"] / "played.mp4"
    copy.write_bytes(video)
    assert open_video(copy).num_frames == 16


def test_search_errors_are_messages(server: dict[str, Any], demo_search_model: dict[str, Any]):
    status, _, body = _request(f"{server['url']}/api/search?{urlencode({'q': ' '})}")
    assert status == 400 and "empty" in json.loads(body)["error"]
    status, _, body = _request(f"{server['url']}/thumbnail/9999")
    assert status == 400 and "no video 9999" in json.loads(body)["error"]
    assert _request(f"{server['url']}/nothing")[0] == 404


def test_the_app_command_refuses_an_index_of_another_model(
    demo_search_model: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    import torch

    from text4vis.cli import main
    from text4vis.models.video import VideoRecognizer

    other = tmp_path / "other"
    model = VideoRecognizer.from_pretrained(demo_search_model["model_dir"])
    with torch.no_grad():
        next(model.visual.parameters()).add_(0.01)
    model.save_pretrained(other)
    shutil.copytree(demo_search_model["model_dir"], tmp_path / "model")
    clip = sorted((demo_search_model["dataset"].root / "videos" / "val").glob("*.mp4"))[0]
    index = tmp_path / "index"
    args = ["--out", str(index), "--workers", "0", "--no-progress", "--device", "cpu"]
    assert main(["index", str(clip), "--model", str(tmp_path / "model"), *args]) == 0
    capsys.readouterr()
    assert main(["app", "--model", str(other), "--index", str(index), "--port", "0"]) == 2
    assert "another model" in capsys.readouterr().err


def test_without_an_index_search_says_how_to_get_one(server: dict[str, Any]):
    from text4vis.errors import UsageError

    app = VideoApp(server["predictor"], None)

    async def label() -> Any:  # the model's worker runs on this event loop
        try:
            labels = app.parse_labels("a red circle moving left\na green circle blinking")
            return await app.label(server["clips"][0], labels, name="clip", frames=True)
        finally:
            await app.worker.stop()

    try:
        with pytest.raises(UsageError, match="--index INDEX"):
            asyncio.run(app.search("a red circle"))
        result = asyncio.run(label())
        assert len(result.predictions) == 2 and len(result.frames) == 8
    finally:
        app.close()

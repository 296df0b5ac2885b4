"""A local web page to label a video with your own label names and to search an index by text.

``text4vis app --model MODEL [--index INDEX]`` serves one page with two parts:

- **Label**: upload a video (or give a path on this machine), type label names (or load a label
  file); the page shows the labels ranked with their scores as bars, and the frames the model
  looked at (the first evaluation clip's sampled frames).
- **Search**: type a sentence; the page shows the best-matching videos of the index as thumbnails
  with their scores; a click plays one.

Why not Gradio: it is the convention of the field, but it pulls a large dependency tree and its
pages load fonts and analytics from the network by default. This server is the standard library's
``http.server`` with one page of plain HTML/JS/CSS and no external asset, so it works offline,
installs nothing and is easy to test (:func:`make_server` runs it in a thread on a free port).

The model answers one request at a time (a lock), while the server keeps accepting requests. A
request that fails gets a JSON ``{"error": message}`` shown on the page; the traceback of an
unexpected error goes to the log, never to the page, and the server keeps serving.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlparse

import numpy as np
from PIL import Image

from text4vis.data.decoders import VideoDecodeError, open_video
from text4vis.data.labels import parse_labels, read_label_file
from text4vis.data.sampling import build_sampler
from text4vis.data.synthetic import write_mp4
from text4vis.errors import Text4VisError

if TYPE_CHECKING:
    from text4vis.predict import Predictor
    from text4vis.search import VideoIndex

__all__ = ["LabelResult", "SearchResult", "VideoApp", "make_server", "serve"]

logger = logging.getLogger("text4vis.app")

MAX_UPLOAD_BYTES = 1 << 30  # 1 GiB: a larger body is refused before it is read
# Served as they are; anything else (a frame folder, .avi ...) is re-encoded to H.264 mp4 first.
BROWSER_SUFFIXES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm"}
MAX_PLAY_FRAMES = 600  # frames re-encoded for playback (a preview, not a converter)


class AppError(Text4VisError, ValueError):
    """A request the page cannot answer (shown on the page as the message)."""


@dataclass
class LabelResult:
    """The answer to a label request."""

    video: str  # the name shown (the upload's file name or the path)
    predictions: list[dict[str, Any]] = field(default_factory=list)  # [{"label", "score"}]
    frames: list[str] = field(default_factory=list)  # PNG data URIs of the sampled frames
    frame_indices: list[int] = field(default_factory=list)  # their frame numbers

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class SearchResult:
    """The answer to a search request."""

    query: str
    hits: list[dict[str, Any]]  # {"rank", "video", "name", "score", "thumbnail", "play"}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _png(frame: np.ndarray, min_side: int = 96, max_side: int = 320) -> bytes:
    """PNG bytes of an RGB frame, scaled so that tiny frames are visible and large ones light."""
    image = Image.fromarray(frame)
    scale = max(1.0, min_side / min(image.size))
    scale = min(scale, max_side / max(image.size))
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        # Nearest keeps the pixels of tiny (synthetic) frames sharp; large ones average.
        image = image.resize(size, Image.NEAREST if scale > 1 else Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


class VideoApp:
    """What the page does, without HTTP: label a video, search the index, make previews.

    Args:
        predictor: the model (its data settings decide which frames are sampled).
        index: the index searched by the Search part (None: the part says there is none).
    """

    def __init__(self, predictor: Predictor, index: VideoIndex | None = None) -> None:
        self.predictor = predictor
        self.index = index
        if index is not None and index.predictor is not predictor:
            index.predictor = predictor  # checks that the index was built with this model
        self._lock = threading.Lock()  # one model call at a time
        self._workdir = Path(tempfile.mkdtemp(prefix="text4vis-app-"))
        self._thumbnails: dict[int, bytes] = {}
        self._playable: dict[int, Path] = {}

    def close(self) -> None:
        """Remove the uploads and re-encoded previews."""
        shutil.rmtree(self._workdir, ignore_errors=True)

    # -- Label ---------------------------------------------------------------------------------

    def parse_labels(self, text: str) -> list[str]:
        """Label names from the page: ``a, b, c`` on one line, one per line, or a label CSV."""
        text = text.strip()
        if not text:
            raise AppError("type label names (separated by commas or one per line)")
        if "\n" not in text:
            return parse_labels(text)
        path = self._workdir / "labels.txt"
        path.write_text(text + "\n", encoding="utf-8")
        try:
            return read_label_file(path)
        except Text4VisError as exc:
            raise AppError(str(exc).replace(str(path), "labels")) from None

    def sampled_frames(self, video: str | Path) -> tuple[list[int], np.ndarray]:
        """The frame numbers the model looks at in a video (its first evaluation clip) and the
        frames, uint8 ``[T, H, W, 3]``."""
        data = self.predictor.data
        reader = open_video(
            video, data.decoder, data.frame_template, data.frame_start_index, threads=1
        )
        sampler = build_sampler(
            data.sampling,
            data.num_segments,
            train=False,
            num_clips=self.predictor.num_clips,
            dense_stride=data.dense_stride,
        )
        indices = [int(i) for i in sampler(reader.num_frames, np.random.default_rng(0))[0]]
        return indices, reader.frames(indices)

    def label(self, video: str | Path, labels_text: str, name: str | None = None) -> LabelResult:
        """Rank label names for one video (all labels, best first) with the frames it looked at.

        Raises:
            AppError, LabelError, VideoDecodeError: shown on the page.
        """
        labels = self.parse_labels(labels_text)
        path = Path(video)
        if not path.exists():
            raise AppError(f"{video}: no such file or folder on the server")
        with self._lock:
            result = self.predictor.predict_files([path], labels, top_k=None)[0]
        if result.error is not None:
            # An upload is read from a temporary file whose name means nothing to the user.
            reason = result.error.replace(str(path), name or path.name)
            raise AppError(f"cannot read {name or path.name}: {reason}")
        indices, frames = self.sampled_frames(path)
        return LabelResult(
            video=name or str(video),
            predictions=list(result.predictions or []),
            frames=[_data_uri(_png(frame)) for frame in frames],
            frame_indices=indices,
        )

    def save_upload(self, name: str, body: bytes) -> Path:
        """Keep an uploaded video in the work folder (its suffix tells the decoder the format)."""
        suffix = "".join(c for c in Path(name).suffix.lower() if c.isalnum() or c == ".")[:10]
        target = self._workdir / "uploads"
        target.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, suffix=suffix, delete=False) as handle:
            handle.write(body)
        return Path(handle.name)

    # -- Search --------------------------------------------------------------------------------

    def search(self, query: str, top_k: int = 12) -> SearchResult:
        """The best-matching videos of the index, with links to thumbnails and playable videos."""
        if self.index is None:
            raise AppError("no index loaded: start the app with --index INDEX (text4vis index)")
        if len(self.index) == 0:
            raise AppError("the index holds no videos")
        if not 1 <= top_k <= 200:
            raise AppError(f"the number of results must be between 1 and 200, got {top_k}")
        with self._lock:
            hits = self.index.search(text=query, top_k=top_k)
        rows = []
        for hit in hits:
            row = self.index.row_of(hit.video)
            rows.append(
                {
                    "rank": hit.rank,
                    "video": hit.video,
                    "name": Path(hit.video).name,
                    "score": hit.score,
                    "thumbnail": f"/thumbnail/{row}",
                    "play": f"/video/{row}",
                }
            )
        return SearchResult(query=query, hits=rows)

    def _indexed_path(self, row: int) -> Path:
        if self.index is None or not 0 <= row < len(self.index):
            raise AppError(f"no video {row} in the index")
        return Path(self.index.videos[row].path)

    def thumbnail(self, row: int) -> bytes:
        """PNG of the middle frame of an indexed video (cached)."""
        if row not in self._thumbnails:
            path = self._indexed_path(row)
            data = self.predictor.data
            reader = open_video(
                path, data.decoder, data.frame_template, data.frame_start_index, threads=1
            )
            frame = reader.frames([reader.num_frames // 2])[0]
            self._thumbnails[row] = _png(frame, min_side=120, max_side=240)
        return self._thumbnails[row]

    def playable(self, row: int) -> tuple[Path, str]:
        """A file the browser can play for an indexed video, and its content type.

        mp4/webm files are served as they are; other videos and frame folders are re-encoded
        (H.264 in mp4, the first :data:`MAX_PLAY_FRAMES` frames) once and kept.
        """
        path = self._indexed_path(row)
        content_type = BROWSER_SUFFIXES.get(path.suffix.lower())
        if content_type is not None and path.is_file():
            return path, content_type
        if row not in self._playable:
            data = self.predictor.data
            reader = open_video(
                path, data.decoder, data.frame_template, data.frame_start_index, threads=1
            )
            frames = reader.frames(list(range(min(reader.num_frames, MAX_PLAY_FRAMES))))
            h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # yuv420p: even sizes
            target = self._workdir / "play" / f"{row}.mp4"
            write_mp4(target, np.ascontiguousarray(frames[:, :h, :w]), fps=8, bframes=0)
            self._playable[row] = target
        return self._playable[row], "video/mp4"


# ----------------------------------------------------------------------------------------------
# HTTP
# ----------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _AppServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        logger.debug("%s %s", self.address_string(), format % args)

    # -- responses -----------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, extra: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: Any, status: int = HTTPStatus.OK) -> None:
        self._send(status, json.dumps(value).encode("utf-8"), "application/json")

    def _guarded(self, action: Any) -> None:
        """Run a request; any failure becomes ``{"error": message}``, never a traceback."""
        try:
            action()
        except (Text4VisError, ValueError, FileNotFoundError, VideoDecodeError) as exc:
            self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("the browser closed the connection")
        except Exception as exc:  # the server must keep serving; the log keeps the traceback
            logger.exception("request %s failed", self.path)
            self._json(
                {"error": f"internal error ({type(exc).__name__}: {exc}); see the server log"},
                HTTPStatus.INTERNAL_SERVER_ERROR,
            )

    # -- routes --------------------------------------------------------------------------------

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        self.do_GET()

    def do_GET(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        query = parse_qs(url.query)
        app = self.server.app
        if url.path == "/":
            self._send(HTTPStatus.OK, PAGE.encode("utf-8"), "text/html; charset=utf-8")
        elif url.path == "/api/info":
            self._guarded(lambda: self._json(self.server.info()))
        elif url.path == "/api/search":

            def search() -> None:
                text = query.get("q", [""])[0]
                top_k = int(query.get("k", ["12"])[0])
                self._json(app.search(text, top_k).to_dict())

            self._guarded(search)
        elif url.path.startswith("/thumbnail/"):
            row = url.path.rsplit("/", 1)[-1]
            self._guarded(lambda: self._send(200, app.thumbnail(int(row)), "image/png"))
        elif url.path.startswith("/video/"):
            row = url.path.rsplit("/", 1)[-1]
            self._guarded(lambda: self._file(*app.playable(int(row))))
        elif url.path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        else:
            self._json({"error": f"no page {url.path}"}, HTTPStatus.NOT_FOUND)

    def do_POST(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        query = parse_qs(url.query)
        if url.path != "/api/label":
            self._json({"error": f"no page {url.path}"}, HTTPStatus.NOT_FOUND)
            return
        self._guarded(lambda: self._label(query))

    def _label(self, query: dict[str, list[str]]) -> None:
        app = self.server.app
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_UPLOAD_BYTES:
            self.close_connection = True  # the unread body must not be taken as a request
            raise AppError(f"the upload is {length} bytes; at most {MAX_UPLOAD_BYTES} are taken")
        body = self.rfile.read(length) if length else b""
        labels = query.get("labels", [""])[0]
        name = query.get("name", [""])[0]
        if name:  # an uploaded file
            if not body:
                raise AppError(f"the upload of {name} is empty")
            path = app.save_upload(name, body)
            try:
                result = app.label(path, labels, name=name)
            finally:
                path.unlink(missing_ok=True)
        else:
            video = query.get("path", [""])[0].strip()
            if not video:
                raise AppError("choose a video file to upload or type a path")
            result = app.label(video, labels)
        self._json(result.to_dict())

    def _file(self, path: Path, content_type: str) -> None:
        """Send a file, honouring a single ``Range: bytes=a-b`` (the video element seeks)."""
        size = path.stat().st_size
        start, end = 0, size - 1
        status = HTTPStatus.OK
        ranged = self.headers.get("Range", "")
        if ranged.startswith("bytes=") and "," not in ranged:
            first, _, last = ranged[6:].partition("-")
            if first:
                start = int(first)
                end = min(int(last), size - 1) if last else size - 1
            elif last:  # the last N bytes
                start = max(0, size - int(last))
            if start > end or start >= size:
                self._send(
                    HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE,
                    b"",
                    content_type,
                    {"Content-Range": f"bytes */{size}"},
                )
                return
            status = HTTPStatus.PARTIAL_CONTENT
        with path.open("rb") as handle:
            handle.seek(start)
            body = handle.read(end - start + 1)
        extra = {"Accept-Ranges": "bytes"}
        if status == HTTPStatus.PARTIAL_CONTENT:
            extra["Content-Range"] = f"bytes {start}-{end}/{size}"
        self._send(status, body, content_type, extra)


class _AppServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: VideoApp) -> None:
        super().__init__(address, _Handler)
        self.app = app

    def info(self) -> dict[str, Any]:
        index = self.app.index
        return {
            "model": self.app.predictor.model.model_cfg.arch,
            "frames": self.app.predictor.data.num_segments,
            "index": None if index is None else str(index.path),
            "indexed_videos": 0 if index is None else len(index),
            "class_names": list(self.app.predictor.model.class_names or [])[:200],
        }


def make_server(app: VideoApp, host: str = "127.0.0.1", port: int = 7860) -> _AppServer:
    """An HTTP server for the page (port 0 = a free port; read ``server.server_address``).

    Run it with ``server.serve_forever()`` (in a thread for tests); stop it with
    ``server.shutdown()`` and ``server.server_close()``.
    """
    return _AppServer((host, port), app)


def serve(app: VideoApp, host: str = "127.0.0.1", port: int = 7860) -> None:
    """Serve the page until interrupted."""
    server = make_server(app, host, port)
    address, bound = server.server_address[:2]
    logger.info("serving the text4vis page on http://%s:%d/ (Ctrl+C stops)", address, bound)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        app.close()


# ----------------------------------------------------------------------------------------------
# The page: plain HTML/CSS/JS, no external assets (fonts, scripts, analytics)
# ----------------------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>text4vis</title>
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
  header { background: #1d2330; color: #fff; padding: 10px 20px; display: flex; gap: 16px;
           align-items: baseline; }
  header h1 { font-size: 20px; margin: 0; }
  header span { color: #b8c0d0; font-size: 13px; }
  main { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; padding: 16px; }
  section { background: #fff; border-radius: 8px; padding: 14px 18px;
            box-shadow: 0 1px 3px rgba(0,0,0,.12); }
  h2 { margin: 0 0 10px; font-size: 18px; }
  label.field { display: block; font-size: 13px; color: #4a5468; margin: 8px 0 3px; }
  input[type=text], textarea { width: 100%; box-sizing: border-box; padding: 6px;
                               font: inherit; border: 1px solid #c4cad6; border-radius: 4px; }
  textarea { height: 70px; }
  button { margin-top: 10px; padding: 7px 16px; font: inherit; border: 0; border-radius: 4px;
           background: #2f6fde; color: #fff; cursor: pointer; }
  button:disabled { background: #9bb5e6; }
  .error { color: #b3261e; background: #fdecea; padding: 6px 10px; border-radius: 4px;
           margin-top: 10px; white-space: pre-wrap; }
  .row { display: grid; grid-template-columns: minmax(120px, 40%) 1fr 60px; gap: 8px;
         align-items: center; margin: 4px 0; font-size: 14px; }
  .track { background: #e6e9ef; border-radius: 3px; height: 14px; }
  .bar { background: #2f6fde; height: 14px; border-radius: 3px; min-width: 2px; }
  .row:first-child .bar { background: #1e9e5a; }
  .score { text-align: right; font-variant-numeric: tabular-nums; }
  #label-frames img, .hit img { image-rendering: pixelated; border-radius: 3px; }
  #label-frames { display: flex; flex-wrap: wrap; gap: 4px; margin-top: 8px; }
  #label-frames figure { margin: 0; font-size: 11px; color: #4a5468; text-align: center; }
  #search-results { display: grid; grid-template-columns: repeat(auto-fill, minmax(130px, 1fr));
                    gap: 10px; margin-top: 10px; }
  .hit { cursor: pointer; font-size: 12px; border: 2px solid transparent; border-radius: 5px;
         padding: 3px; }
  .hit:hover, .hit.playing { border-color: #2f6fde; }
  .hit img { width: 100%; display: block; }
  .hit .name { overflow-wrap: anywhere; }
  video { width: 320px; max-width: 100%; margin-top: 10px; background: #000;
          border-radius: 4px; image-rendering: pixelated; display: block; }
  video[hidden] { display: none; }
  .muted { color: #6b7486; font-size: 13px; }
</style>
</head>
<body>
<header><h1>text4vis</h1><span id="info">label videos with your own words, find them by text</span>
</header>
<main>
<section id="label-part">
  <h2>Label a video</h2>
  <label class="field" for="video-file">Upload a video</label>
  <input type="file" id="video-file" accept="video/*,.mkv,.avi">
  <label class="field" for="video-path">or a path on this machine (file or frame folder)</label>
  <input type="text" id="video-path" placeholder="/data/clips/a.mp4">
  <label class="field" for="labels">Label names (comma separated or one per line)</label>
  <textarea id="labels" placeholder="dancing, cooking, surfing"></textarea>
  <label class="field" for="label-file">or load a label file (id,name CSV or one per line)</label>
  <input type="file" id="label-file" accept=".txt,.csv,text/*">
  <div><button id="label-button">Label</button></div>
  <div id="label-error" class="error" hidden></div>
  <div id="label-output" hidden>
    <p class="muted" id="label-video"></p>
    <div id="label-results"></div>
    <p class="muted">Frames the model looked at</p>
    <div id="label-frames"></div>
  </div>
</section>
<section id="search-part">
  <h2>Search the index</h2>
  <p class="muted" id="index-info"></p>
  <label class="field" for="query">Describe what the videos show</label>
  <input type="text" id="query" placeholder="a person surfing">
  <label class="field" for="top-k">Results</label>
  <input type="text" id="top-k" value="12" size="4" style="width:5em">
  <div><button id="search-button">Search</button></div>
  <div id="search-error" class="error" hidden></div>
  <video id="player" controls hidden></video>
  <div id="search-results"></div>
</section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);

function showError(id, message) {
  const box = $(id);
  box.textContent = message || "";
  box.hidden = !message;
}

async function answer(response) {
  let body;
  try { body = await response.json(); }
  catch (e) { throw new Error("the server answered " + response.status + " without a message"); }
  if (!response.ok || body.error) { throw new Error(body.error || ("error " + response.status)); }
  return body;
}

fetch("/api/info").then(answer).then((info) => {
  $("info").textContent = "model " + info.model + ", " + info.frames + " frames per video";
  $("index-info").textContent = info.index
    ? info.indexed_videos + " videos in " + info.index
    : "No index loaded (start the app with --index INDEX).";
  if (!info.index) { $("search-button").disabled = true; }
}).catch((e) => { $("info").textContent = e.message; });

$("label-file").addEventListener("change", async () => {
  const file = $("label-file").files[0];
  if (file) { $("labels").value = await file.text(); }
});

$("label-button").addEventListener("click", async () => {
  showError("label-error", "");
  $("label-output").hidden = true;
  $("label-results").textContent = "";
  $("label-frames").textContent = "";
  const file = $("video-file").files[0];
  const path = $("video-path").value.trim();
  const params = new URLSearchParams({labels: $("labels").value});
  let request;
  if (file) {
    params.set("name", file.name);
    request = fetch("/api/label?" + params, {method: "POST", body: file});
  } else if (path) {
    params.set("path", path);
    request = fetch("/api/label?" + params, {method: "POST"});
  } else {
    showError("label-error", "Choose a video file or type a path.");
    return;
  }
  $("label-button").disabled = true;
  try {
    const result = await answer(await request);
    $("label-video").textContent = result.video;
    for (const p of result.predictions) {
      const row = document.createElement("div");
      row.className = "row label-row";
      const name = document.createElement("span");
      name.className = "label-name";
      name.textContent = p.label;
      const track = document.createElement("div");
      track.className = "track";
      const bar = document.createElement("div");
      bar.className = "bar";
      bar.style.width = (100 * p.score).toFixed(1) + "%";  // the probability
      track.appendChild(bar);
      const score = document.createElement("span");
      score.className = "score label-score";
      score.textContent = (100 * p.score).toFixed(1) + "%";
      row.append(name, track, score);
      $("label-results").appendChild(row);
    }
    result.frames.forEach((uri, i) => {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.src = uri;
      img.alt = "frame " + result.frame_indices[i];
      const caption = document.createElement("figcaption");
      caption.textContent = "frame " + result.frame_indices[i];
      figure.append(img, caption);
      $("label-frames").appendChild(figure);
    });
    $("label-output").hidden = false;
  } catch (e) {
    showError("label-error", e.message);
  } finally {
    $("label-button").disabled = false;
  }
});

function play(hit, card) {
  document.querySelectorAll(".hit.playing").forEach((c) => c.classList.remove("playing"));
  card.classList.add("playing");
  const player = $("player");
  player.src = hit.play;
  player.hidden = false;
  player.play().catch(() => {});
}

async function search() {
  showError("search-error", "");
  $("search-results").textContent = "";
  const params = new URLSearchParams({q: $("query").value, k: $("top-k").value});
  $("search-button").disabled = true;
  try {
    const result = await answer(await fetch("/api/search?" + params));
    for (const hit of result.hits) {
      const card = document.createElement("div");
      card.className = "hit";
      card.title = hit.video;
      const img = document.createElement("img");
      img.className = "thumb";
      img.src = hit.thumbnail;
      img.alt = hit.name;
      const score = document.createElement("div");
      score.className = "hit-score";
      score.textContent = "#" + hit.rank + "  " + hit.score.toFixed(3);
      const name = document.createElement("div");
      name.className = "name hit-name";
      name.textContent = hit.name;
      card.append(img, score, name);
      card.addEventListener("click", () => play(hit, card));
      $("search-results").appendChild(card);
    }
    if (!result.hits.length) { showError("search-error", "No videos in the index."); }
  } catch (e) {
    showError("search-error", e.message);
  } finally {
    $("search-button").disabled = false;
  }
}
$("search-button").addEventListener("click", search);
$("query").addEventListener("keydown", (e) => { if (e.key === "Enter") { search(); } });
</script>
</body>
</html>
"""

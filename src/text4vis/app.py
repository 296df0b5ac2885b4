"""A local web page to label a video with your own label names and to search an index by text.

``text4vis app --model MODEL [--index INDEX]`` serves one page with two parts:

- **Label**: upload a video (or give a path on this machine), type label names (or load a label
  file); the page shows the labels ranked with their scores as bars, and the frames the model
  looked at (the first evaluation clip's sampled frames).
- **Search**: type a sentence; the page shows the best-matching videos of the index as thumbnails
  with their scores; a click plays one.

Why not Gradio: it is the convention of the field, but it pulls a large dependency tree and its
pages load fonts and analytics from the network by default. This server is the standard library's
``http.server`` with one page of plain HTML/JS/CSS (resource files of the package,
``text4vis/resources/page/``) and no external asset, so it works offline, installs nothing and
is easy to test (:func:`make_server` runs it in a thread on a free port).

The model answers one request at a time (a lock), while the server keeps accepting requests. A
request that fails on the user's input (a :class:`~text4vis.errors.Text4VisError`) gets status 400
and a JSON ``{"error": message}`` shown on the page; any other exception is a bug: status 500, a
short message, and its traceback in the log (never on the page); the server keeps serving.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import importlib.resources
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

from text4vis import __version__
from text4vis.data.decoders import open_video
from text4vis.data.labels import parse_labels, read_label_file
from text4vis.data.sampling import build_sampler
from text4vis.data.synthetic import write_mp4
from text4vis.errors import Text4VisError, UsageError

if TYPE_CHECKING:
    from text4vis.predict import Predictor
    from text4vis.search import VideoIndex

__all__ = ["LabelResult", "SearchResult", "VideoApp", "make_server", "page_file", "serve"]

logger = logging.getLogger("text4vis.app")

MAX_UPLOAD_BYTES = 1 << 30  # 1 GiB: a larger body is refused before it is read
# Served as they are; anything else (a frame folder, .avi ...) is re-encoded to H.264 mp4 first.
BROWSER_SUFFIXES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm"}
# The page's files (text4vis/resources/page/) by suffix.
PAGE_TYPES = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
}
MAX_PLAY_FRAMES = 600  # frames re-encoded for playback (a preview, not a converter)


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


def _whole_number(text: str, what: str) -> int:
    """A whole number sent by the page (a query parameter, a header, a part of the URL)."""
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{what} must be a whole number, got {text!r}") from None


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@functools.cache
def page_file(name: str) -> tuple[bytes, str]:
    """A file of the page (``index.html``, ``page.css``, ``page.js``) and its content type.

    The files are resources of the package (``text4vis/resources/page/``): plain HTML, CSS and
    JavaScript with no external asset (fonts, scripts, analytics), so the page works offline.
    """
    suffix = name.rsplit(".", 1)[-1]
    body = importlib.resources.files("text4vis").joinpath("resources", "page", name).read_bytes()
    return body, PAGE_TYPES[suffix]


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
            raise UsageError("type label names (separated by commas or one per line)")
        if "\n" not in text:
            return parse_labels(text)
        path = self._workdir / "labels.txt"
        path.write_text(text + "\n", encoding="utf-8")
        try:
            return read_label_file(path)
        except Text4VisError as exc:
            raise UsageError(str(exc).replace(str(path), "labels")) from None

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
            UsageError, DataError, VideoDecodeError: shown on the page.
        """
        labels = self.parse_labels(labels_text)
        path = Path(video)
        if not path.exists():
            raise UsageError(f"{video}: no such file or folder on the server")
        with self._lock:
            result = self.predictor.predict_files([path], labels, top_k=None)[0]
        if result.error is not None:
            # An upload is read from a temporary file whose name means nothing to the user.
            reason = result.error.replace(str(path), name or path.name)
            raise UsageError(f"cannot read {name or path.name}: {reason}")
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
            raise UsageError("no index loaded: start the app with --index INDEX (text4vis index)")
        if len(self.index) == 0:
            raise UsageError("the index holds no videos")
        if not 1 <= top_k <= 200:
            raise UsageError(f"the number of results must be between 1 and 200, got {top_k}")
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
            raise UsageError(f"no video {row} in the index")
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
        """Run a request; a user's mistake becomes ``{"error": message}`` with status 400.

        Any other exception is a bug: the answer is a 500 with a short message, the traceback
        goes to the log (never to the page), and the server keeps serving.
        """
        try:
            action()
        except Text4VisError as exc:
            self._json({"error": str(exc)}, HTTPStatus.BAD_REQUEST)
        except (BrokenPipeError, ConnectionResetError):
            logger.debug("the browser closed the connection")
        except Exception as exc:  # the server must keep serving; the log keeps the traceback
            logger.exception("request %s failed: a bug in text4vis %s", self.path, __version__)
            self._json(
                {
                    "error": f"internal error ({type(exc).__name__}) in text4vis {__version__}; "
                    "the server log has the traceback: please report it"
                },
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
            self._send(HTTPStatus.OK, *page_file("index.html"))
        elif url.path in ("/page.css", "/page.js"):
            self._send(HTTPStatus.OK, *page_file(url.path[1:]))
        elif url.path == "/api/info":
            self._guarded(lambda: self._json(self.server.info()))
        elif url.path == "/api/search":

            def search() -> None:
                text = query.get("q", [""])[0]
                top_k = _whole_number(query.get("k", ["12"])[0], "the number of results")
                self._json(app.search(text, top_k).to_dict())

            self._guarded(search)
        elif url.path.startswith("/thumbnail/"):
            row = url.path.rsplit("/", 1)[-1]
            self._guarded(
                lambda: self._send(
                    200, app.thumbnail(_whole_number(row, "the video number")), "image/png"
                )
            )
        elif url.path.startswith("/video/"):
            row = url.path.rsplit("/", 1)[-1]
            self._guarded(lambda: self._file(*app.playable(_whole_number(row, "the video number"))))
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
        length = _whole_number(self.headers.get("Content-Length") or "0", "Content-Length")
        if length > MAX_UPLOAD_BYTES:
            self.close_connection = True  # the unread body must not be taken as a request
            raise UsageError(f"the upload is {length} bytes; at most {MAX_UPLOAD_BYTES} are taken")
        body = self.rfile.read(length) if length else b""
        labels = query.get("labels", [""])[0]
        name = query.get("name", [""])[0]
        if name:  # an uploaded file
            if not body:
                raise UsageError(f"the upload of {name} is empty")
            path = app.save_upload(name, body)
            try:
                result = app.label(path, labels, name=name)
            finally:
                path.unlink(missing_ok=True)
        else:
            video = query.get("path", [""])[0].strip()
            if not video:
                raise UsageError("choose a video file to upload or type a path")
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
                start = _whole_number(first, "the Range header's first byte")
                end = (
                    min(_whole_number(last, "the Range header's last byte"), size - 1)
                    if last
                    else size - 1
                )
            elif last:  # the last N bytes
                start = max(0, size - _whole_number(last, "the Range header's length"))
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

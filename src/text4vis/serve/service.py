"""What the server does, apart from HTTP: label a video, search the index, make previews.

:class:`VideoApp` holds the model (a :class:`~text4vis.serve.model.ServedModel`: a saved model on
PyTorch or an export on ONNX Runtime, through a :class:`~text4vis.serve.batching.ModelWorker`), the
index, the folders that labelling by path may read, and a work folder for uploads and previews.
Its ``async`` methods run on the server's event loop: decoding and image work go to worker
threads, the model's work to the model's thread (batched).
"""

from __future__ import annotations

import base64
import dataclasses
import importlib.resources
import io
import logging
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from text4vis.data.labels import check_labels, read_label_file
from text4vis.data.synthetic import write_mp4
from text4vis.errors import Text4VisError, UsageError, VideoDecodeError
from text4vis.search import VideoIndex, video_direction
from text4vis.serve.batching import ModelWorker
from text4vis.serve.model import ServedModel

__all__ = [
    "LabelResult",
    "PathNotAllowed",
    "SearchResult",
    "VideoApp",
    "page_file",
]

logger = logging.getLogger("text4vis.serve")

# Served as they are; anything else (a frame folder, .avi ...) is re-encoded to H.264 mp4 first.
BROWSER_SUFFIXES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm"}
# The page's files (text4vis/resources/page/) by suffix.
PAGE_TYPES = {
    "html": "text/html; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
}
MAX_PLAY_FRAMES = 600  # frames re-encoded for playback (a preview, not a converter)
MAX_THUMBNAILS = 1024  # thumbnails kept in memory (least recently used dropped first)
MAX_CLASSIFIERS = 256  # text classifiers of label sets kept by the predictor (see _trim)
MAX_SEARCH_RESULTS = 200
MAX_TIMELINE_WINDOW_S = 600.0  # seconds: a timeline's window at most


class PathNotAllowed(UsageError):
    """A path outside the folders the server was started with (``--allow DIR``): status 403."""

    status_code = 403


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


def page_file(name: str) -> tuple[bytes, str]:
    """A file of the page (``index.html``, ``page.css``, ``page.js``) and its content type.

    The files are resources of the package (``text4vis/resources/page/``): plain HTML, CSS and
    JavaScript with no external asset (fonts, scripts, analytics), so the page works offline.
    """
    suffix = name.rsplit(".", 1)[-1]
    body = importlib.resources.files("text4vis").joinpath("resources", "page", name).read_bytes()
    return body, PAGE_TYPES[suffix]


def png_bytes(frame: np.ndarray, min_side: int = 96, max_side: int = 320) -> bytes:
    """PNG bytes of an RGB frame, scaled so that tiny frames are visible and large ones light."""
    from PIL import Image

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


def whole_number(text: str, what: str) -> int:
    """A whole number sent by a client (a query parameter, a part of the URL)."""
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{what} must be a whole number, got {text!r}") from None


class VideoApp:
    """Labelling and search for the server, without HTTP.

    Args:
        predictor: the model: a :class:`text4vis.Predictor`, or an export's
            :class:`~text4vis.onnx_runtime.OnnxPredictor` (any
            :class:`~text4vis.serve.model.ServedModel`); it decides how videos are read.
        index: the index searched (None: search says there is none); built with this model.
        allow: folders that labelling and searching *by path* may read (their files and
            sub-folders, symbolic links resolved); none: requests by path are refused.
        max_batch: videos per forward pass at most (1 = no batching).
        max_wait_s: how long a video waits for others to fill a batch.
        max_queue: requests waiting for the model at most (one more: 503).
    """

    def __init__(
        self,
        predictor: ServedModel,
        index: VideoIndex | None = None,
        *,
        allow: Sequence[str | Path] = (),
        max_batch: int = 8,
        max_wait_s: float = 0.01,
        max_queue: int = 64,
    ) -> None:
        self.predictor = predictor
        self.index = self._attach_index(index)
        self.allow = [Path(folder).expanduser().resolve() for folder in allow]
        for folder in self.allow:
            if not folder.is_dir():
                raise UsageError(f"--allow {folder}: no such folder; name folders that exist")
        self.worker = ModelWorker(
            predictor, max_batch=max_batch, max_wait_s=max_wait_s, max_queue=max_queue
        )
        self._workdir = Path(tempfile.mkdtemp(prefix="text4vis-serve-"))
        self._thumbnails: OrderedDict[int, bytes] = OrderedDict()
        self._playable: dict[int, Path] = {}
        self._preview_lock = threading.Lock()  # one re-encoding at a time, never the same twice

    def _attach_index(self, index: VideoIndex | None) -> VideoIndex | None:
        """The one place where the index meets the model: it checks that it was built with this
        model, and searches by text and by video with it (on the model's thread)."""
        if index is not None and index.predictor is not self.predictor:
            index.predictor = self.predictor  # type: ignore[assignment]
        return index

    def close(self) -> None:
        """Remove the uploads and re-encoded previews."""
        shutil.rmtree(self._workdir, ignore_errors=True)

    def info(self) -> dict[str, Any]:
        """The model and the index, for ``/api/info`` and ``/v1/model``."""
        index = self.index
        model = self.predictor
        videos, segments = 0, None
        if index is not None and index.segments is None:
            videos = len(index)
        elif index is not None:  # a segment index: several rows per video
            videos, segments = len(set(index.videos.paths())), len(index)
        return {
            "model": model.arch,
            "frames": model.num_frames,
            "index": None if index is None else str(index.path),
            "indexed_videos": videos,
            "indexed_segments": segments,
            "class_names": model.class_names[:200],
        }

    # -- inputs --------------------------------------------------------------------------------

    def parse_labels(self, text: str | Sequence[str] | None, *, required: bool = True) -> Any:
        """Label names from a client: a list, ``a, b, c`` on one line, one per line, or a label
        CSV (``id,name``). None or empty: the model's own classes, unless ``required``.

        A line is never taken as a file name: a client must not read files of the server.
        """

        if text is None or (isinstance(text, str) and not text.strip()):
            if required:
                raise UsageError("type label names (separated by commas or one per line)")
            return None
        if not isinstance(text, str):
            return check_labels(list(text), "labels")
        text = text.strip()
        if "\n" not in text:
            names = [part.strip() for part in text.split(",")]
            if any(not name for name in names):
                raise UsageError(
                    f"labels {text!r}: an empty label between commas; write names separated by "
                    "single commas, e.g. 'dancing, cooking'"
                )
            return check_labels(names, "labels")
        with tempfile.NamedTemporaryFile(
            "w", dir=self._workdir, suffix=".txt", encoding="utf-8", delete=False
        ) as handle:
            handle.write(text + "\n")
        path = Path(handle.name)
        try:
            return read_label_file(path)
        except Text4VisError as exc:
            raise UsageError(str(exc).replace(str(path), "labels")) from None
        finally:
            path.unlink(missing_ok=True)

    def allowed_path(self, text: str) -> Path:
        """The file or folder a client names, resolved, if it lies inside an ``--allow`` folder.

        Relative paths are taken from the first allowed folder. ``..`` and symbolic links are
        resolved before the check, so neither leads outside.

        Raises:
            PathNotAllowed: no allowed folder, or the path resolves outside them (403).
            UsageError: nothing at the path (400).
        """
        text = text.strip()
        if not text:
            raise UsageError("choose a video file to upload or type a path")
        if "\x00" in text:
            raise UsageError("the path contains a NUL character")
        if not self.allow:
            raise PathNotAllowed(
                f"{text}: this server reads no folder by path; upload the video instead, or "
                "start the server with --allow DIR to label videos inside DIR by path"
            )
        given = Path(text).expanduser()
        resolved = (given if given.is_absolute() else self.allow[0] / given).resolve()
        if not any(resolved.is_relative_to(folder) for folder in self.allow):
            folders = ", ".join(str(folder) for folder in self.allow)
            raise PathNotAllowed(
                f"{text}: outside the folders this server reads ({folders}); "
                "upload the video instead, or start the server with --allow naming its folder"
            )
        if not resolved.exists():
            raise UsageError(f"{text}: no such file or folder on the server")
        return resolved

    def save_upload(self, name: str, chunks: Any) -> Path:
        """Keep an uploaded video in the work folder (its suffix tells the decoder the format).

        Args:
            name: the client's file name (only its suffix is used).
            chunks: the body, an iterable of bytes.
        """
        suffix = "".join(c for c in Path(name).suffix.lower() if c.isalnum() or c == ".")[:10]
        target = self._workdir / "uploads"
        target.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, suffix=suffix, delete=False) as handle:
            for chunk in chunks:
                handle.write(chunk)
        return Path(handle.name)

    # -- decoding (request threads) ------------------------------------------------------------

    def decode_views(self, path: Path, name: str) -> Any:
        """The views of one video as the model takes them (the model's ``load_views``: the same
        sampling, transforms and error reports as its ``predict``, frame folders included).

        Raises:
            UsageError: the video cannot be read (named by ``name``, never the temporary file).
        """
        try:
            return self.predictor.load_views(path)
        except VideoDecodeError as exc:
            reason = exc.reason.replace(str(path), name)
            raise UsageError(f"cannot read {name}: {reason}") from None

    def sampled_frames(self, video: str | Path) -> tuple[list[int], np.ndarray]:
        """The frame numbers the model looks at in a video (its first evaluation clip) and the
        frames, uint8 ``[T, H, W, 3]``."""
        reader = self.predictor.open_video(video)
        indices = [int(i) for i in self.predictor.sample_frames(reader.num_frames)[0]]
        return indices, reader.frames(indices)

    def _frames_for_page(self, path: Path) -> tuple[list[int], list[str]]:
        indices, frames = self.sampled_frames(path)
        return indices, [_data_uri(png_bytes(frame)) for frame in frames]

    # -- Label ---------------------------------------------------------------------------------

    def _classifier(self, labels: list[str] | None) -> tuple[list[str], Any]:
        """On the model's thread: the label names and the classifier; the model's cache of
        text classifiers is kept to :data:`MAX_CLASSIFIERS` label sets, so that clients sending
        ever new label sets do not grow the server's memory."""
        names, weight = self.predictor.classifier_for(labels)
        self.predictor.trim_classifiers(MAX_CLASSIFIERS)  # the oldest label sets go first
        return names, weight

    async def label(
        self,
        path: Path,
        labels: list[str] | None,
        *,
        name: str,
        top_k: int | None = None,
        frames: bool = False,
    ) -> LabelResult:
        """Rank label names for one video (best first), optionally with the frames it looked at.

        Args:
            path: the video (an upload's file or an allowed path; checked by the caller).
            labels: label names, or None for the model's own classes.
            name: what the video is called in messages and in the result.
            top_k: labels returned (None = all).
            frames: add the sampled frames as PNG data URIs (the page shows them).

        Raises:
            UsageError, DataError, VideoDecodeError: the client's input (400).
            Overloaded: the queue is full (503).
        """
        if top_k is not None and top_k < 1:
            raise UsageError(f"top_k must be at least 1, got {top_k}")
        with self.worker.coming():
            names, weight = await self.worker.call(lambda: self._classifier(labels))
            views = await _in_thread(self.decode_views, path, name)
        embedding = await self.worker.embed(views)  # [V, D]
        scores = self.predictor.score_views(embedding[None], weight)[0]  # [C]
        k = len(names) if top_k is None else min(top_k, len(names))
        order = np.argsort(-scores, kind="stable")[:k]  # best first
        result = LabelResult(
            video=name,
            predictions=[{"label": names[c], "score": float(scores[c])} for c in order],
        )
        if frames:
            result.frame_indices, result.frames = await _in_thread(self._frames_for_page, path)
        return result

    async def timeline(
        self,
        path: Path,
        labels: list[str] | None,
        *,
        name: str,
        window: float,
        stride: float | None = None,
        top_k: int | None = 3,
    ) -> dict[str, Any]:
        """Labels over time (:meth:`text4vis.predict.Predictor.timeline`) as its JSON dict, the
        video called ``name``. An export refuses timelines (a UsageError: 400).

        The pass over the file runs on the model's thread (one front-to-back read, windows
        batched by the predictor), so it takes the model's turn as a batch of labels would.

        Raises:
            UsageError, VideoDecodeError: the client's input (400).
            Overloaded: the queue is full (503).
        """
        if not (window > 0 and window <= MAX_TIMELINE_WINDOW_S):
            raise UsageError(
                f"the window must be between 0 and {MAX_TIMELINE_WINDOW_S} seconds, got {window}"
            )
        timeline = await self.worker.call(
            lambda: self.predictor.timeline(
                path, window=window, stride=stride, labels=labels, top_k=top_k
            )
        )
        result = timeline.to_dict()
        result["video"] = name
        return result

    # -- Search --------------------------------------------------------------------------------

    def _require_index(self, top_k: int) -> VideoIndex:
        if self.index is None:
            raise UsageError(
                "no index loaded: start the server with --index INDEX (text4vis index)"
            )
        if len(self.index) == 0:
            raise UsageError("the index holds no videos")
        if not 1 <= top_k <= MAX_SEARCH_RESULTS:
            raise UsageError(
                f"the number of results must be between 1 and {MAX_SEARCH_RESULTS}, got {top_k}"
            )
        return self.index

    async def search(self, query: str, top_k: int = 12) -> SearchResult:
        """The indexed videos closest to a sentence, with links to thumbnails and videos."""
        index = self._require_index(top_k)
        hits = await self.worker.call(lambda: index.search(text=query, top_k=top_k))
        return self._hits(query, hits)

    async def search_like(self, path: Path, name: str, top_k: int = 12) -> SearchResult:
        """The indexed videos closest to a video (an upload or an allowed path)."""
        index = self._require_index(top_k)
        with self.worker.coming():
            views = await _in_thread(self.decode_views, path, name)
        embedding = await self.worker.embed(views)  # [V, D]
        query = video_direction(embedding)  # [D], as the index embeds videos
        hits = await self.worker.call(lambda: index.search_vectors(query[None], top_k)[0])
        return self._hits(name, hits)

    def _hits(self, query: str, hits: list[Any]) -> SearchResult:
        assert self.index is not None
        rows = []
        for hit in hits:
            row = self.index.row_of(hit.video)
            entry = {
                "rank": hit.rank,
                "video": hit.video,
                "name": Path(hit.video).name,
                "score": hit.score,
                "thumbnail": f"/thumbnail/{row}",
                "play": f"/video/{row}",
            }
            if hit.start is not None:  # a segment index: where the moment is
                entry |= {"start": hit.start, "end": hit.end}
            rows.append(entry)
        return SearchResult(query=query, hits=rows)

    # -- previews of indexed videos (request threads) -----------------------------------------

    def _indexed_path(self, row: int) -> Path:
        """Only videos of the index are served, by their row: no client-given path."""
        if self.index is None or not 0 <= row < len(self.index):
            raise UsageError(f"no video {row} in the index")
        return Path(self.index.videos[row].path)

    def thumbnail(self, row: int) -> bytes:
        """PNG of the middle frame of an indexed video (the last :data:`MAX_THUMBNAILS` kept)."""

        cached = self._thumbnails.get(row)
        if cached is not None:
            return cached
        path = self._indexed_path(row)
        reader = self.predictor.open_video(path)
        frame = reader.frames([reader.num_frames // 2])[0]
        png = png_bytes(frame, min_side=120, max_side=240)
        self._thumbnails[row] = png
        while len(self._thumbnails) > MAX_THUMBNAILS:
            self._thumbnails.popitem(last=False)
        return png

    def playable(self, row: int) -> tuple[Path, str]:
        """A file the browser can play for an indexed video, and its content type.

        mp4/webm files are served as they are; other videos and frame folders are re-encoded
        (H.264 in mp4, the first :data:`MAX_PLAY_FRAMES` frames) once and kept.
        """
        path = self._indexed_path(row)
        content_type = BROWSER_SUFFIXES.get(path.suffix.lower())
        if content_type is not None and path.is_file():
            return path, content_type
        with self._preview_lock:
            if row not in self._playable:
                reader = self.predictor.open_video(path)
                frames = reader.frames(list(range(min(reader.num_frames, MAX_PLAY_FRAMES))))
                h, w = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2  # yuv420p: even sizes
                target = self._workdir / "play" / f"{row}.mp4"
                write_mp4(target, np.ascontiguousarray(frames[:, :h, :w]), fps=8, bframes=0)
                self._playable[row] = target
            return self._playable[row], "video/mp4"


async def _in_thread(function: Any, *args: Any) -> Any:
    """Starlette's worker threads (imported late: the module stays importable without it)."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(function, *args)

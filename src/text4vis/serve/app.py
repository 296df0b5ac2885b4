"""The ASGI application: the JSON API (``/v1/...``, described at ``/openapi.json``) and the page.

Routes:

==========================  ======================================================================
``GET /v1/health``          alive, with the queue's state
``GET /v1/model``           the model, its frames and classes, the index
``POST /v1/timeline``       JSON ``{"path", "labels", "window", "stride", "top_k"}``: labels over
                            time of a video inside ``--allow`` (``Predictor.timeline``)
``POST /v1/label``          JSON ``{"path", "labels", "top_k"}``: label a video inside ``--allow``
``POST /v1/label/upload``   multipart: ``video`` (a file), ``labels``, ``top_k``
``POST /v1/search``         JSON ``{"text" | "path", "top_k"}``: the index's closest videos
``POST /v1/search/upload``  multipart: ``video`` (a file), ``top_k``: videos like it
``GET /``, ``/page.*``      the page (``text4vis app``) and its script and style
``GET /api/info``           the page's model line
``POST /api/label``         the page's Label part (the body is the video; ``?name=&labels=``)
``POST /api/timeline``      the page's timeline strip (the body is the video, or ``?path=``;
                            ``?name=&labels=&window=&stride=``)
``GET /api/search``         the page's Search part (``?q=&k=``)
``GET /thumbnail/{row}``    PNG of an indexed video (rows of the index only)
``GET /video/{row}``        an indexed video for the browser (byte ranges for seeking)
==========================  ======================================================================

Answers to errors are JSON ``{"error": message}``: the package's errors
(:class:`~text4vis.errors.Text4VisError`) are the client's (400, 403 for a path outside
``--allow``), a body over the limit 413, a full queue 503 with ``Retry-After``, a request over its
time 504, malformed JSON or fields 422; anything else is a bug (500, traceback in the log).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from text4vis import __version__
from text4vis.errors import Text4VisError, UsageError
from text4vis.serve.batching import Overloaded
from text4vis.serve.guard import Guard
from text4vis.serve.service import VideoApp, page_file, whole_number

__all__ = ["ServeSettings", "create_app"]

logger = logging.getLogger("text4vis.serve")

# Routes whose requests wait for the model: counted by the Guard's admission.
MODEL_PATHS = (
    "/v1/label",
    "/v1/label/upload",
    "/v1/timeline",
    "/v1/search",
    "/v1/search/upload",
    "/api/label",
    "/api/timeline",
    "/api/search",
)


@dataclass
class ServeSettings:
    """How the server holds under load (the command's options)."""

    max_body_mb: float = 1024.0  # largest request body (an upload) in MiB
    timeout_s: float = 120.0  # a request's time until its answer starts
    max_batch: int = 8  # videos per forward pass (1 = no batching)
    max_wait_ms: float = 10.0  # how long a video waits for others to fill a batch
    max_queue: int = 64  # requests waiting for the model (one more: 503)

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * (1 << 20))

    def check(self) -> None:
        """Raises UsageError for a setting out of range."""
        for name, value, low in (
            ("--max-body-mb", self.max_body_mb, 0.001),
            ("--timeout", self.timeout_s, 0.001),
            ("--max-batch", self.max_batch, 1),
            ("--max-wait-ms", self.max_wait_ms, 0),
            ("--max-queue", self.max_queue, 1),
        ):
            if value < low:
                raise UsageError(f"{name} must be at least {low:g}, got {value:g}")


# -- the API's shapes (the OpenAPI schema) -------------------------------------------------------


class ErrorAnswer(BaseModel):
    error: str = Field(description="what went wrong and how to fix it")


class Prediction(BaseModel):
    label: str
    score: float = Field(description="probability over the label set (they sum to 1)")


class LabelAnswer(BaseModel):
    video: str = Field(description="the path given or the upload's file name")
    predictions: list[Prediction] = Field(description="best first")
    frames: list[str] = Field(default_factory=list, description="PNG data URIs (page only)")
    frame_indices: list[int] = Field(default_factory=list)


class Hit(BaseModel):
    rank: int
    video: str = Field(description="the indexed video's path")
    name: str
    score: float = Field(description="cosine similarity to the query")
    thumbnail: str = Field(description="URL of a PNG of its middle frame")
    play: str = Field(description="URL of the video for a browser")
    start: float | None = Field(default=None, description="a segment index: seconds")
    end: float | None = None


class TimelineRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="a video file or frame folder inside an --allow folder")
    labels: list[str] | str | None = Field(
        default=None,
        description='["a", "b"], "a, b", or omitted for the model\'s own classes',
    )
    window: float = Field(gt=0, description="seconds per window")
    stride: float | None = Field(default=None, gt=0, description="seconds between windows")
    top_k: int = Field(default=3, ge=1, le=1000)


class TimelineSegmentAnswer(BaseModel):
    start: float
    end: float
    label: str
    score: float
    windows: int


class TimelineAnswer(BaseModel):
    video: str
    duration: float = Field(description="seconds")
    window: float
    stride: float
    smooth: int
    windows: list[dict[str, Any]] = Field(description="every window: start, end, labels")
    segments: list[TimelineSegmentAnswer] = Field(description="runs of one top label")


class SearchAnswer(BaseModel):
    query: str
    hits: list[Hit]


class Health(BaseModel):
    status: str
    version: str
    waiting: int = Field(description="requests waiting for the model now")
    max_queue: int
    batching: dict[str, Any] = Field(description="forward passes and the videos they held")


class ModelInfo(BaseModel):
    model: str
    frames: int
    index: str | None
    indexed_videos: int
    indexed_segments: int | None = Field(default=None, description="a segment index's rows")
    class_names: list[str] = Field(description="the model's own classes (the first 200)")
    max_batch: int
    allow: list[str] = Field(description="folders labelling by path may read")


class LabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="a video file or frame folder inside an --allow folder")
    labels: list[str] | str | None = Field(
        default=None,
        description='["a", "b"], "a, b", or omitted for the model\'s own classes',
    )
    top_k: int = Field(default=5, ge=1, le=1000)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(default=None, description="a sentence")
    path: str | None = Field(default=None, description="or a video inside an --allow folder")
    top_k: int = Field(default=10, ge=1, le=200)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorAnswer} for code in (400, 403, 404, 413, 422, 500, 503, 504)
}


# -- the application -----------------------------------------------------------------------------


def create_app(video_app: VideoApp, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI application over a :class:`~text4vis.serve.service.VideoApp`.

    Run it with uvicorn (:func:`text4vis.serve.server.run`) or in tests with
    ``fastapi.testclient.TestClient`` (as a context manager, so that the model's worker starts).
    """
    settings = settings or ServeSettings()
    settings.check()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        video_app.worker.start()
        try:
            yield
        finally:
            await video_app.worker.stop()

    api = FastAPI(
        title="text4vis",
        version=__version__,
        summary="Label videos with your own label names; search a video index by text or video.",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI loads its script from a CDN; the schema is at /openapi.json
        redoc_url=None,
        responses=ERRORS,
    )
    api.add_middleware(
        Guard,
        max_body_bytes=settings.max_body_bytes,
        timeout_s=settings.timeout_s,
        max_active=settings.max_queue,
        model_paths=MODEL_PATHS,
    )
    api.state.video_app = video_app
    _add_error_handlers(api)
    _add_api_routes(api, video_app, settings)
    _add_page_routes(api, video_app)
    return api


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status, headers={"Cache-Control": "no-store", **(headers or {})}
    )


def _add_error_handlers(api: FastAPI) -> None:
    @api.exception_handler(Text4VisError)
    async def package_error(request: Request, exc: Text4VisError) -> JSONResponse:
        return _error(getattr(exc, "status_code", 400), str(exc))

    @api.exception_handler(Overloaded)
    async def overloaded(request: Request, exc: Overloaded) -> JSONResponse:
        return _error(503, str(exc), {"Retry-After": str(exc.retry_after_s)})

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()))
            if error.get("type") == "json_invalid":
                reason = (error.get("ctx") or {}).get("error", "")
                where = f"the body is not valid JSON (at character {error['loc'][-1]})"
                problems.append(f"{where}: {reason}" if reason else where)
                continue
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return _error(422, "the request does not fit: " + "; ".join(problems))

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"no page {request.url.path}"
        elif exc.status_code == 405:
            message = f"{request.method} is not taken at {request.url.path}"
        elif exc.status_code == 400 and "parsing the body" in str(exc.detail):
            message = (
                "the body could not be read: send multipart/form-data with the video as the "
                "'video' file field (curl -F video=@clip.mp4), complete and not truncated"
            )
        else:
            message = str(exc.detail)
        return _error(exc.status_code, message, dict(exc.headers or {}))


async def _save_upload(video_app: VideoApp, upload: UploadFile) -> Path:
    """Copy a multipart upload into the work folder (chunk by chunk, in a thread)."""
    name = upload.filename or "upload"

    def chunks() -> Any:
        while True:
            chunk = upload.file.read(1 << 20)
            if not chunk:
                return
            yield chunk

    path = await run_in_threadpool(video_app.save_upload, name, chunks())
    if path.stat().st_size == 0:
        path.unlink(missing_ok=True)
        raise UsageError(f"the upload of {name} is empty")
    return path


def _seconds(text: str, what: str) -> float:
    """A positive number of seconds typed on the page."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise UsageError(f"{what} must be a positive number of seconds, got {text!r}")
    return value


async def _save_body(video_app: VideoApp, request: Request, name: str) -> Path:
    """Stream a raw request body (the page's upload) into the work folder."""
    target = video_app.save_upload(name, [])
    try:
        size = 0
        with target.open("wb") as handle:
            async for chunk in request.stream():
                size += len(chunk)
                await run_in_threadpool(handle.write, chunk)
        if size == 0:
            raise UsageError(f"the upload of {name} is empty")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _add_api_routes(api: FastAPI, video_app: VideoApp, settings: ServeSettings) -> None:
    @api.get("/v1/health", response_model=Health, tags=["service"])
    async def health() -> dict[str, Any]:
        """The server is up; the queue in front of the model and the batches so far."""
        worker = video_app.worker
        return {
            "status": "ok",
            "version": __version__,
            "waiting": worker.waiting,
            "max_queue": worker.max_queue,
            "batching": {
                "max_batch": worker.max_batch,
                "max_wait_ms": 1000 * worker.max_wait_s,
                **worker.stats.to_dict(),
            },
        }

    @api.get("/v1/model", response_model=ModelInfo, tags=["service"])
    async def model_info() -> dict[str, Any]:
        """The model (architecture, frames per video, own classes) and the index."""
        return {
            **video_app.info(),
            "max_batch": video_app.worker.max_batch,
            "allow": [str(folder) for folder in video_app.allow],
        }

    @api.post("/v1/label", response_model=LabelAnswer, tags=["label"])
    async def label_path(request: LabelRequest) -> Any:
        """Rank label names for a video on the server, inside a folder named with ``--allow``."""
        path = video_app.allowed_path(request.path)
        labels = video_app.parse_labels(request.labels, required=False)
        return (
            await video_app.label(path, labels, name=request.path, top_k=request.top_k)
        ).to_dict()

    @api.post("/v1/label/upload", response_model=LabelAnswer, tags=["label"])
    async def label_upload(
        video: Annotated[UploadFile, File(description="a video file")],
        labels: Annotated[str, Form(description="'a, b', one per line, or a label CSV")] = "",
        top_k: Annotated[int, Form(ge=1, le=1000)] = 5,
    ) -> Any:
        """Rank label names for an uploaded video (labels omitted: the model's own classes)."""
        names = video_app.parse_labels(labels, required=False)
        path = await _save_upload(video_app, video)
        try:
            name = video.filename or "upload"
            return (await video_app.label(path, names, name=name, top_k=top_k)).to_dict()
        finally:
            path.unlink(missing_ok=True)

    @api.post("/v1/timeline", response_model=TimelineAnswer, tags=["label"])
    async def timeline_path(request: TimelineRequest) -> Any:
        """Labels over time of a video inside ``--allow``: windows and merged segments."""
        path = video_app.allowed_path(request.path)
        labels = video_app.parse_labels(request.labels, required=False)
        return await video_app.timeline(
            path,
            labels,
            name=request.path,
            window=request.window,
            stride=request.stride,
            top_k=request.top_k,
        )

    @api.post("/v1/search", response_model=SearchAnswer, tags=["search"])
    async def search(request: SearchRequest) -> Any:
        """The indexed videos closest to a sentence (``text``) or to a video (``path``)."""
        if (request.text is None) == (request.path is None):
            raise UsageError('give exactly one of "text" (a sentence) or "path" (a video)')
        if request.text is not None:
            return (await video_app.search(request.text, request.top_k)).to_dict()
        path = video_app.allowed_path(request.path or "")
        return (await video_app.search_like(path, request.path or "", request.top_k)).to_dict()

    @api.post("/v1/search/upload", response_model=SearchAnswer, tags=["search"])
    async def search_upload(
        video: Annotated[UploadFile, File(description="a video file")],
        top_k: Annotated[int, Form(ge=1, le=200)] = 10,
    ) -> Any:
        """The indexed videos closest to an uploaded video."""
        video_app._require_index(top_k)  # before the upload is copied
        path = await _save_upload(video_app, video)
        try:
            name = video.filename or "upload"
            return (await video_app.search_like(path, name, top_k)).to_dict()
        finally:
            path.unlink(missing_ok=True)


def _add_page_routes(api: FastAPI, video_app: VideoApp) -> None:
    def page(name: str) -> Response:
        body, content_type = page_file(name)
        return Response(body, media_type=content_type, headers={"Cache-Control": "no-store"})

    @api.get("/", include_in_schema=False)
    async def index_html() -> Response:
        return page("index.html")

    @api.get("/page.css", include_in_schema=False)
    async def page_css() -> Response:
        return page("page.css")

    @api.get("/page.js", include_in_schema=False)
    async def page_js() -> Response:
        return page("page.js")

    @api.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @api.get("/api/info", tags=["page"])
    async def info() -> dict[str, Any]:
        """The page's model line: architecture, frames, index."""
        return video_app.info()

    @api.get("/api/search", response_model=SearchAnswer, tags=["page"])
    async def page_search(q: str = "", k: str = "12") -> Any:
        """The page's search: ``q`` a sentence, ``k`` the number of results."""
        top_k = whole_number(k, "the number of results")
        return (await video_app.search(q, top_k)).to_dict()

    @api.post("/api/label", response_model=LabelAnswer, tags=["page"])
    async def page_label(
        request: Request,
        labels: Annotated[str, Query()] = "",
        name: Annotated[str, Query(description="the uploaded file's name")] = "",
        path: Annotated[str, Query(description="or a path inside --allow")] = "",
    ) -> Any:
        """The page's Label part: the body is the video (with ``name``), or ``path`` names one;
        all labels ranked, with the sampled frames."""
        names = video_app.parse_labels(labels)
        if name:  # an uploaded file: the raw body, streamed to the work folder
            target = await _save_body(video_app, request, name)
            try:
                result = await video_app.label(target, names, name=name, frames=True)
            finally:
                target.unlink(missing_ok=True)
        else:
            video = path.strip()
            if not video:
                raise UsageError("choose a video file to upload or type a path")
            resolved = video_app.allowed_path(video)
            result = await video_app.label(resolved, names, name=video, frames=True)
        return result.to_dict()

    @api.post("/api/timeline", response_model=TimelineAnswer, tags=["page"])
    async def page_timeline(
        request: Request,
        labels: Annotated[str, Query()] = "",
        name: Annotated[str, Query(description="the uploaded file's name")] = "",
        path: Annotated[str, Query(description="or a path inside --allow")] = "",
        window: Annotated[str, Query(description="seconds per window")] = "4",
        stride: Annotated[str, Query(description="seconds between windows")] = "",
    ) -> Any:
        """The page's timeline strip: the video as the body (with ``name``) or ``path``, labels
        over time (the model's own classes without ``labels``)."""
        names = video_app.parse_labels(labels, required=False)
        seconds = _seconds(window, "the window")
        step = _seconds(stride, "the stride") if stride.strip() else None
        if name:
            target = await _save_body(video_app, request, name)
            try:
                return await video_app.timeline(
                    target, names, name=name, window=seconds, stride=step
                )
            finally:
                target.unlink(missing_ok=True)
        video = path.strip()
        if not video:
            raise UsageError("choose a video file to upload or type a path")
        resolved = video_app.allowed_path(video)
        return await video_app.timeline(resolved, names, name=video, window=seconds, stride=step)

    @api.get("/thumbnail/{row}", include_in_schema=False)
    async def thumbnail(row: str) -> Response:
        number = whole_number(row, "the video number")
        png = await run_in_threadpool(video_app.thumbnail, number)
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    @api.get("/video/{row}", include_in_schema=False)
    async def video(row: str) -> Response:
        number = whole_number(row, "the video number")
        path, content_type = await run_in_threadpool(video_app.playable, number)
        return FileResponse(path, media_type=content_type)

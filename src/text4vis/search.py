"""Find videos by text: an index of video embeddings, searched by a sentence or by another video.

A model trained with a frozen text classifier embeds videos in its text encoder's space, so a
sentence nobody trained it on can be matched against a whole folder of clips::

    predictor = Predictor.from_pretrained("runs/k400/model")
    index = VideoIndex.build(["clips/"], predictor, "clips.index")   # embeds every video
    index.update(["clips/"])            # later: embeds only new or changed videos
    index.search(text="a person surfing", top_k=10)   # -> [SearchHit(video, score, rank), ...]
    index.search(like="clips/a.mp4", top_k=10)

The model is anything with the methods of :class:`VideoEmbedder`: a
:class:`~text4vis.predict.Predictor` (PyTorch), or an ONNX export's
:class:`~text4vis.onnx_runtime.OnnxPredictor`, with which building, updating and searching an
index import no torch (this module imports none)::

    predictor = OnnxPredictor.from_export("exported/")  # text4vis export ... --out exported
    index = VideoIndex.build(["clips/"], predictor, "clips.index")

An export records its source model's identity, so an index embedded by a model is searched and
updated with its export and the reverse (in fp32 their stored vectors differ by about 1e-4,
frames being resized by Pillow instead of torchvision); any other model is refused.

A segment index holds moments instead of whole videos: one row per window of each video, with
its ``start`` and ``end`` (seconds) as columns, embedded from the same one-pass windowed read as
:meth:`~text4vis.predict.Predictor.timeline` (:func:`text4vis.timeline.embed_video_windows`)::

    index = VideoIndex.build(["long/"], predictor, "moments.index", segments=8, stride=4)
    index.search(text="a goal", top_k=5)  # -> [SearchHit(rank, video, score, start, end), ...]
    index.search(like="long/a.mp4@30-38")  # like seconds 30 to 38 of a.mp4

All the rows of one file are dropped or replaced together, so an update embeds again only the
segments of new and changed files; the header's ``segments`` records the window and stride.

An index is a folder:

- ``index.json``: the header: format version, the model's identity (a hash of its weights and
  config, so that an index is never searched with text embeddings of another model), the data
  settings and views the embeddings were made with, the inputs that were scanned, the videos that
  could not be read, with the reason, and ``store``, naming the generation folder of the rows;
- ``v<NNNNNN>/``: the rows (:mod:`text4vis.index_store`): ``vectors.npy``, float32 or float16
  ``[N, D]``, one L2-normalised embedding per video (with several views per video, the mean of
  the normalised view embeddings, normalised again), memory-mapped when the index is opened, and
  per video its absolute path, size and modification time as columns (NumPy arrays);
- ``backend-<name>.faiss`` and ``backend-<name>.json`` (approximate backends only): the FAISS
  index built for the embeddings, saved at its first search and read again while the
  embeddings and the build options are the same (the JSON holds their hash), so the k-means of
  IVF or the graph of HNSW is not built again on every load.

Videos are found with :func:`text4vis.data.discovery.find_videos` (as ``predict`` takes them) and
embedded by the model's ``embed_videos`` (:meth:`text4vis.predict.Predictor.embed_videos` runs
:func:`text4vis.engine.loops.iterate_views`, the one loop over views); text queries go
through its ``classifier_for``, as new label names do: with PyTorch the one zero-shot builder
(:func:`text4vis.models.zero_shot.build_zero_shot_classifier`) with the model's own text encoder
and prompt templates, with an export its text graph and the templates it records.

Search is exact by default: one matrix product ``E @ q`` and a top-k. For large collections an
approximate backend (FAISS, the ``search`` extra) sits behind the same interface; see
:data:`BACKENDS` and ``benchmarks/search.py`` for when it pays off.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import threadpoolctl
from tqdm.auto import tqdm

from text4vis import distributed
from text4vis.config import DataConfig
from text4vis.data.decoders import VideoDecodeError
from text4vis.data.streams import check_window, window_spans
from text4vis.errors import DataError, MissingFileError, UsageError
from text4vis.index_shards import update_sharded
from text4vis.index_store import (
    HEADER_NAME,
    LEGACY_VECTORS_NAME,
    STORAGE_DTYPES,
    IndexedVideo,
    IndexFailure,
    IndexModel,
    IndexUpdate,
    VideoTable,
    file_signature,
    read_index,
    scan_videos,
    write_index,
)
from text4vis.onnx_runtime import OnnxPredictor
from text4vis.registry import Registry
from text4vis.search_tuning import IVFTuning, tune_nprobe

__all__ = [
    "BACKENDS",
    "EMBEDDINGS_NAME",
    "INDEX_FORMAT",
    "META_NAME",
    "ExactBackend",
    "FaissIVFBackend",
    "FaissHNSWBackend",
    "IndexFailure",
    "IndexMeta",
    "IndexModel",
    "IndexUpdate",
    "IndexedVideo",
    "SearchHit",
    "VideoEmbedder",
    "VideoIndex",
    "VideoIndexError",
    "WindowEmbedder",
    "build_backend",
    "video_direction",
    "file_signature",
]

logger = logging.getLogger("text4vis.search")

# Format 2: memory-mapped vectors and columnar rows named by a small header (index_store);
# format 1 (every row in index.json, embeddings.safetensors) is read and written as format 2.
INDEX_FORMAT = 2
READABLE_FORMATS = (1, 2)
EMBEDDINGS_NAME = LEGACY_VECTORS_NAME  # format 1's vectors file
META_NAME = HEADER_NAME


VideoIndexError = DataError  # the older name, kept importable


# ----------------------------------------------------------------------------------------------
# The model, as the index sees it
# ----------------------------------------------------------------------------------------------


class VideoEmbedder(Protocol):
    """What an index needs of a model: :class:`text4vis.predict.Predictor` (PyTorch) and
    :class:`text4vis.onnx_runtime.OnnxPredictor` (an ONNX export, no PyTorch) both have it."""

    num_clips: int  # views per video: clips x crops
    num_crops: int
    batch_size: int  # videos per run of the model (the index's chunks are multiples)
    precision: str  # the inference precision, recorded in model.precisions
    progress: bool  # the model's own progress bar (the index shows one over videos instead)

    @property
    def data(self) -> DataConfig: ...  # how videos are found and read (recorded in the index)

    @property
    def embed_dim(self) -> int: ...  # D

    @property
    def arch(self) -> str: ...  # the backbone architecture, for people

    def model_identity(self) -> str:
        """The content hash of the model: indexes are searched and updated only by models of
        the same identity."""
        ...

    def embed_videos(
        self, videos: Sequence[str | Path]
    ) -> tuple[Mapping[int, Any], Mapping[int, str]]:
        """Position in ``videos`` -> float32 array-like ``[V, D]`` (every view, before L2
        normalisation), and position -> why a video could not be read."""
        ...

    def classifier_for(self, labels: Sequence[str] | None = None) -> tuple[list[str], Any]:
        """The label names and the normalised text classifier ``W [C, D]`` (array-like) for
        label names (their rows of the model's own classifier when they are its classes)."""
        ...


@runtime_checkable
class WindowEmbedder(Protocol):
    """A model that also embeds windows of a video in one read (segment indexes; PyTorch's
    :meth:`text4vis.predict.Predictor.embed_windows`)."""

    def embed_windows(
        self, video: str | Path, spans: Callable[[float | None], Iterable[tuple[float, float]]]
    ) -> tuple[list[tuple[float, float]], np.ndarray]: ...


# ----------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------


@dataclass
class IndexMeta:
    """The contents of ``index.json``: what an index was made with and what it holds.

    :meth:`from_dict` reads every file written since format 1 (keys added later are optional),
    and :meth:`to_dict` writes what it read: keys this version does not know are kept in
    ``extra`` and written back.
    """

    model: IndexModel
    # Row i of the embeddings is videos[i]: a columnar table (a list of IndexedVideo is taken).
    videos: VideoTable
    failures: list[IndexFailure] = field(default_factory=list)  # tried again at the next update
    # The data settings and views the embeddings were made with (:func:`_data_settings`), kept
    # as recorded: an index from an older text4vis may lack a setting, and then it differs.
    data: dict[str, Any] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)  # what was scanned: files and folders
    # A segment index: {"window": seconds, "stride": seconds}, one row per window of each
    # video (columns start/end); None for one row per whole video.
    segments: dict[str, float] | None = None
    format: int = INDEX_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, written back as read

    def __post_init__(self) -> None:
        self.videos = VideoTable.of(self.videos)

    @classmethod
    def from_dict(
        cls,
        values: dict[str, Any],
        where: str | Path = META_NAME,
        videos: VideoTable | None = None,
    ) -> IndexMeta:
        """Parse ``index.json``'s contents: a format-1 file listing every video, or a header
        (format 2) whose rows are given as ``videos``.

        Raises:
            VideoIndexError: a required key (``model.identity``, ``videos``) is missing, or an
                entry has the wrong fields.
        """
        model = values.get("model")
        has_videos = "videos" in values or videos is not None
        if not has_videos or not isinstance(model, dict) or "identity" not in model:
            missing = "videos" if not has_videos else "model.identity"
            raise VideoIndexError(
                f"{where}: no {missing!r}; the index is damaged, build it again "
                "(text4vis index ... --rebuild)"
            )
        try:
            if videos is None:
                videos = VideoTable.from_records(IndexedVideo(**v) for v in values["videos"])
            failures = [IndexFailure(**f) for f in values.get("failures", [])]
        except TypeError as exc:
            raise VideoIndexError(
                f"{where}: a video entry does not fit ({exc}); build the index again (--rebuild)"
            ) from None
        return cls(
            model=IndexModel(**_known(IndexModel, model), extra=_unknown(IndexModel, model)),
            videos=videos,
            failures=failures,
            data=dict(values.get("data", {})),
            inputs=[str(i) for i in values.get("inputs", [])],
            segments=values.get("segments"),
            format=values.get("format", INDEX_FORMAT),
            extra={k: v for k, v in _unknown(cls, values).items() if k != "store"},
        )

    def to_dict(self) -> dict[str, Any]:
        """Everything as one JSON dict, every video listed (format 1's ``index.json``)."""
        return {**self.header_dict(), "videos": [v.to_dict() for v in self.videos]}

    def header_dict(self) -> dict[str, Any]:
        """The header's contents (JSON types only): all but the rows, which are columns."""
        values = {
            "format": self.format,
            "model": self.model.to_dict(),
            "data": dict(self.data),
            "inputs": list(self.inputs),
            "failures": [f.to_dict() for f in self.failures],
            **self.extra,
        }
        if self.segments is not None:
            values["segments"] = dict(self.segments)
        return values


def _known(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` named by a field of the dataclass ``cls`` (``extra`` aside)."""
    names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
    return {k: v for k, v in values.items() if k in names}


def _unknown(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``values`` that :func:`_known` leaves out (kept in ``cls.extra``)."""
    known = _known(cls, values)
    return {k: v for k, v in values.items() if k not in known}


@dataclass(frozen=True)
class SearchHit:
    """One search result: a video, or a segment of one in a segment index."""

    rank: int  # 1 = best
    video: str  # absolute path
    score: float  # cosine similarity with the query
    start: float | None = None  # seconds: the segment's span (None: the whole video)
    end: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """``{"rank", "video", "score"}``, with ``"start"``, ``"end"`` for a segment."""
        values = dataclasses.asdict(self)
        if self.start is None:
            del values["start"], values["end"]
        return values


def parse_video_span(like: str | Path) -> tuple[str, tuple[float, float] | None]:
    """``"a.mp4@30-38"`` -> ``("a.mp4", (30.0, 38.0))``; a path without a span (or an
    existing file whose name holds ``@``) -> ``(path, None)``.

    Raises:
        UsageError: a span that is not ``START-END`` seconds with ``0 <= START < END``.
    """
    text = str(like)
    if "@" not in text or Path(text).exists():
        return text, None
    path, _, span = text.rpartition("@")
    first, dash, second = span.partition("-")
    try:
        start, end = float(first), float(second)
    except ValueError:
        start = end = math.nan
    if not dash or not (0 <= start < end) or not math.isfinite(end):
        raise UsageError(
            f"{text}: a segment is VIDEO@START-END in seconds with START < END, e.g. a.mp4@30-38"
        )
    return path, (start, end)


# ----------------------------------------------------------------------------------------------
# Backends: exact (default) and approximate, one interface
# ----------------------------------------------------------------------------------------------

# The search backends by name: classes ``(vectors [N, D], **options) -> backend``.
BACKENDS: Registry[Callable[..., Any]] = Registry("search backend", error=VideoIndexError)


@BACKENDS.register("exact")
class ExactBackend:
    """Exact cosine search: the queries' inner products with every stored vector, then top-k.

    One pass over the stored matrix, as stored (a memory-mapped array is not copied), in blocks
    of :attr:`BLOCK_BYTES` (4 MiB, so that a block read from memory stays in cache while every
    query of a batch uses it). A block's scores ``[Q, b]`` are one matrix product (NumPy's
    BLAS), or for up to :attr:`GEMV_QUERIES` queries a matrix-vector product each (BLAS's GEMM
    is slow for so few); a float16 block is first widened to float32 in a buffer that stays in
    cache (:class:`_Widening`), so float16 reads half the bytes and scores exactly what it
    stores. :class:`_RunningTopK` keeps each query's best k so far: a block's scores are compared
    with the k-th best and only the few above it are merged in. One float16 query goes through
    PyTorch's float16 matrix-vector product instead (where PyTorch imports; faster: no
    widening), whose scores are rounded to float16; every row within :attr:`HALF_TOLERANCE` of
    the k-th score is then scored again in float32, so the answer is the same as the widened
    scan's. Equal scores rank by row; a NaN score (a NaN in a query or a row) ranks as ``-inf``.
    PyTorch is optional: without it float16 widens with NumPy (slower), with the same answers.

    Threads: the rows are split into :attr:`threads` contiguous parts scanned at once, each by
    one Python thread with a single-threaded BLAS (NumPy's matrix products release the GIL),
    and the parts' top k merged. BLAS's own threads would split each 4 MiB block's small product
    again, a wait per block (measured: 5x slower batches on 2 shared cores).

    A batch of Q queries is ``2 * Q * D * N`` flops against ``N * D * itemsize`` bytes read, so
    from a few queries on the scan is bound by the CPU's arithmetic, not by memory.
    ``benchmarks/search_exact.py`` measures the scan against one streaming read of the matrix,
    its GFLOP/s, and float16's recall@10 against float32.
    """

    name = "exact"
    BLOCK_BYTES = 4 << 20  # bytes of a block of rows a batch shares (2048 float32 rows at D = 512)
    SINGLE_ROWS = 1 << 16  # rows of a block for one float32 query (nothing to share: fewer steps)
    GEMV_QUERIES = 4  # up to this many queries: a matrix-vector product each, per cached block
    HALF_GEMV_QUERIES = 1  # float16: up to this many queries through the fp16 GEMV (PyTorch)
    # Bound on the error of a float16 GEMV score of unit vectors: the float16 rounding of the
    # result (<= 2^-11 * |score| <= 4.9e-4) with room for the float32 accumulation's error.
    HALF_TOLERANCE = 1e-3
    PART_ROWS = 1 << 15  # rows a thread scans at least (fewer rows: fewer threads)

    def __init__(self, vectors: np.ndarray, threads: int | None = None) -> None:
        vectors = np.asarray(vectors)
        if vectors.dtype not in (np.float32, np.float16):
            vectors = vectors.astype(np.float32)
        self._vectors = vectors  # [N, D], rows normalised; kept as given (memory-mapped too)
        if threads is not None and threads < 1:
            raise UsageError(f"exact search threads must be at least 1, got {threads}")
        # None: OMP_NUM_THREADS where set (the usual cap on a shared machine), else the CPUs
        # this process may run on.
        self.threads = threads or _default_threads()

    def __len__(self) -> int:
        return int(self._vectors.shape[0])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row ids ``[Q, k']`` (k' = min(k, N)), best first."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)  # [Q, D]
        n, k, num_queries = len(self), min(k, len(self)), queries.shape[0]
        if k == 0 or num_queries == 0:
            empty = np.zeros((num_queries, k if num_queries == 0 else 0))
            return empty.astype(np.float32), empty.astype(np.int64)
        half = self._vectors.dtype == np.float16
        torch = _optional_torch() if half else None
        if torch is not None and num_queries <= self.HALF_GEMV_QUERIES:
            return self._search_half_gemv(torch, queries, k)
        parts = max(1, min(self.threads, n // self.PART_ROWS))
        if parts == 1:
            return self._scan(queries, 0, n, k, torch)
        bounds = np.linspace(0, n, parts + 1).round().astype(int).tolist()
        with (
            threadpoolctl.threadpool_limits(1, user_api="blas"),
            ThreadPoolExecutor(parts, thread_name_prefix="text4vis-exact") as pool,
        ):
            found = list(
                pool.map(
                    lambda lo_hi: self._scan(queries, lo_hi[0], lo_hi[1], k, torch),
                    zip(bounds[:-1], bounds[1:]),
                )
            )
        scores = np.concatenate([f[0] for f in found], axis=1)  # [Q, <= parts * k]
        ids = np.concatenate([f[1] for f in found], axis=1)
        order = np.lexsort((ids, -scores), axis=1)[:, :k]  # equal scores by row, as one scan
        return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)

    def _scan(
        self, queries: np.ndarray, first: int, last: int, k: int, torch: Any
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top ``min(k, last - first)`` of rows ``first:last``: scores and ids ``[Q, k']``."""
        num_queries, half = queries.shape[0], self._vectors.dtype == np.float16
        rows = max(1, self.BLOCK_BYTES // (4 * self._vectors.shape[1]))
        if num_queries == 1 and not half:
            rows = self.SINGLE_ROWS
        scores_buffer = np.empty(rows * num_queries, np.float32)
        widen = _Widening(self._vectors, rows, torch) if half else None
        gemv = num_queries <= self.GEMV_QUERIES  # BLAS's GEMM is slow for 2-4 rows of queries
        top = _RunningTopK(num_queries, min(k, last - first))
        for start in range(first, last, rows):
            end = min(last, start + rows)
            block = self._vectors[start:end] if widen is None else widen(start, end)  # [b, D]
            scores = scores_buffer[: (end - start) * num_queries].reshape(num_queries, -1)
            if gemv:
                for query, query_scores in zip(queries, scores):
                    np.matmul(block, query, out=query_scores)
            else:
                np.matmul(queries, block.T, out=scores)  # [Q, b]
            top.add(scores, start)
        return top.result()

    def _search_half_gemv(
        self, torch: Any, queries: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """A few queries ``[Q, D]`` against float16 rows: scores and ids ``[Q, k]``, best
        first."""
        half_queries = torch.from_numpy(queries).half()
        approx = torch.empty((len(queries), len(self)), dtype=torch.float16)  # [Q, N]
        rows = self.SINGLE_ROWS
        if len(queries) > 1:  # a block each query reads again from cache
            rows = max(1, self.BLOCK_BYTES // (2 * self._vectors.shape[1]))
        matrix = _torch_view(torch, self._vectors)  # [N, D], no copy
        for start in range(0, len(self), rows):
            block = matrix[start : start + rows]
            for query, out in zip(half_queries, approx):
                torch.mv(block, query, out=out[start : start + len(block)])
        found_scores, found_ids = [], []
        for query, scores in zip(queries, approx.float().numpy()):
            np.fmax(scores, -np.inf, out=scores)  # NaN ranks last, as -inf
            kth = np.partition(scores, len(scores) - k)[len(scores) - k]
            candidates = np.flatnonzero(scores >= kth - 2 * self.HALF_TOLERANCE)
            exact = self._vectors[candidates].astype(np.float32) @ query  # [C]
            np.fmax(exact, -np.inf, out=exact)
            order = np.lexsort((candidates, -exact))[:k]
            found_scores.append(exact[order])
            found_ids.append(candidates[order].astype(np.int64))
        return np.stack(found_scores), np.stack(found_ids)


def _torch_view(torch: Any, array: np.ndarray) -> Any:
    """A tensor over ``array``'s memory (no copy), a read-only memory map too: torch only reads
    it here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "the given NumPy array is not writable"
        return torch.from_numpy(array)


class _Widening:
    """Float16 rows ``start:end`` widened to float32 into one buffer of ``rows`` rows that stays
    in cache (PyTorch's vectorised copy; NumPy's, several times slower, without PyTorch)."""

    def __init__(self, vectors: np.ndarray, rows: int, torch: Any) -> None:
        self._vectors = vectors
        self._buffer = np.empty((rows, vectors.shape[1]), np.float32)
        self._torch_pair = None
        if torch is not None:
            self._torch_pair = (_torch_view(torch, vectors), torch.from_numpy(self._buffer))

    def __call__(self, start: int, end: int) -> np.ndarray:
        if self._torch_pair is None:
            np.copyto(self._buffer[: end - start], self._vectors[start:end])
        else:
            source, buffer = self._torch_pair
            buffer[: end - start].copy_(source[start:end])
        return self._buffer[: end - start]


def _default_threads() -> int:
    """Threads of an exact scan: ``OMP_NUM_THREADS`` where it is set, else the CPUs this
    process may run on."""
    setting = os.environ.get("OMP_NUM_THREADS", "").strip()
    if setting.isdigit() and int(setting) > 0:
        return int(setting)
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _optional_torch() -> Any:
    """PyTorch, or None where it does not import (an ONNX deployment searches without it)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


class _RunningTopK:
    """Each of Q queries' best k scores so far over blocks of scores ``[Q, b]`` of consecutive
    rows, ranked by score (descending), then row (ascending).

    A block is first compared with each query's k-th best score so far (one vectorised pass);
    only the scores above it can enter the top k (an equal score of a later row ranks after
    it), and they are few once the first blocks are seen, so they are kept aside and merged
    (one sort) when there are ``Q * k`` of them, or at the end. Until k scores are seen, a
    block's candidates are its scores at or above its own k-th largest.
    """

    def __init__(self, num_queries: int, k: int) -> None:
        self.k = k
        self._scores = np.empty((num_queries, 0), np.float32)  # [Q, <= k], best first
        self._ids = np.empty((num_queries, 0), np.int64)
        self._threshold = np.full(num_queries, -np.inf, np.float32)  # the k-th best (stale)
        self._pending: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # query, score, id
        self._pending_count = 0

    def add(self, scores: np.ndarray, first_row: int) -> None:
        """Take the scores ``[Q, b]`` of rows ``first_row : first_row + b`` (scores may be
        changed: NaN becomes ``-inf``)."""
        num_queries, size = scores.shape
        filled = self._scores.shape[1] == self.k
        if filled:  # a NaN is never above: it ranks after the k kept, as -inf would
            above = np.flatnonzero(scores > self._threshold[:, None])
        else:
            np.fmax(scores, -np.inf, out=scores)  # NaN ranks last, as -inf
            above = np.arange(scores.size)
            if size > self.k:
                kth = np.partition(scores, size - self.k, axis=1)[:, size - self.k]
                above = np.flatnonzero(scores >= kth[:, None])  # ties at the k-th too
        if len(above) == 0:
            return
        query, column = np.divmod(above, size)
        self._pending.append((query, scores.ravel()[above], column + first_row))
        self._pending_count += len(above)
        if not filled or self._pending_count >= num_queries * self.k:
            self._merge()

    def _merge(self) -> None:
        num_queries, kept = self._scores.shape
        query = np.concatenate(
            [np.repeat(np.arange(num_queries), kept)] + [p[0] for p in self._pending]
        )
        score = np.concatenate([self._scores.ravel()] + [p[1] for p in self._pending])
        row = np.concatenate([self._ids.ravel()] + [p[2] for p in self._pending])
        self._pending, self._pending_count = [], 0
        order = np.lexsort((row, -score, query))
        query, score, row = query[order], score[order], row[order]
        rank = np.arange(len(query)) - np.searchsorted(query, np.arange(num_queries))[query]
        keep = rank < self.k
        # Every query saw the same rows, with at least min(k, rows seen) candidates each.
        self._scores = score[keep].reshape(num_queries, -1)
        self._ids = row[keep].reshape(num_queries, -1)
        if self._scores.shape[1] == self.k:
            self._threshold = self._scores[:, -1].copy()

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Scores ``[Q, k']`` and row ids, best first."""
        if self._pending:
            self._merge()
        return self._scores, self._ids


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:
        raise VideoIndexError(
            "the approximate search backends need FAISS: pip install 'text4vis[search]' "
            "(faiss-cpu), or use the exact backend (the default)"
        ) from None
    return faiss


class _FaissBackend(abc.ABC):
    """What the FAISS backends share: a built ``self._index`` answers inner-product queries.

    ``BUILD_OPTIONS`` name the keyword arguments that shape the index when it is built; the
    others are query-time settings, applied by :meth:`_set_query_options` to a built or a
    read index alike.
    """

    BUILD_OPTIONS: tuple[str, ...] = ()
    _index: Any

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @abc.abstractmethod
    def _set_query_options(self, **options: Any) -> None:
        """Apply query-time settings (``nprobe``, ``ef_search``) to the built index."""

    def write(self, path: str | Path) -> None:
        """Save the built FAISS index to ``path``."""
        _faiss().write_index(self._index, str(path))

    @classmethod
    def read(cls, path: str | Path, **options: Any) -> _FaissBackend:
        """A backend over a FAISS index saved by :meth:`write`; ``options`` may set the
        query-time settings (build options are those of the saved index and are ignored)."""
        backend = cls.__new__(cls)
        backend._index = _faiss().read_index(str(path))
        backend._set_query_options(
            **{k: v for k, v in options.items() if k not in cls.BUILD_OPTIONS}
        )
        return backend

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Scores and row ids ``[Q, k']`` (k' = min(k, N)), best first (-1 where none)."""
        k = min(k, len(self))
        scores, ids = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, ids.astype(np.int64)


@BACKENDS.register("faiss-ivf")
class FaissIVFBackend(_FaissBackend):
    """Approximate search with FAISS's inverted-file index (``IndexIVFFlat``, inner product).

    The vectors are clustered into ``nlist`` k-means cells (default ``sqrt(N)``), trained on at
    most ``64 * nlist`` of them (a seeded sample: enough for the centroids, and k-means time
    stays seconds at 10^6); a query scans the ``nprobe`` nearest cells only, so recall grows with
    ``nprobe`` and so does latency. With ``recall`` (e.g. 0.95), ``nprobe`` is the smallest that
    reaches it on held-out queries drawn from these vectors
    (:func:`text4vis.search_tuning.tune_nprobe`); :attr:`tuning` then says what was reached.
    """

    name = "faiss-ivf"
    BUILD_OPTIONS = ("nlist", "seed", "recall")

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        nlist: int | None = None,
        nprobe: int = 32,
        seed: int = 0,
        recall: float | None = None,
    ) -> None:
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, d = vectors.shape
        self.nlist = int(nlist or max(1, min(n // 39, round(math.sqrt(n)))))
        quantizer = faiss.IndexFlatIP(d)
        self._index = faiss.IndexIVFFlat(quantizer, d, self.nlist, faiss.METRIC_INNER_PRODUCT)
        self._index.cp.seed = seed
        sample = vectors
        if n > 64 * self.nlist:
            rows = np.random.default_rng(seed).choice(n, 64 * self.nlist, replace=False)
            sample = vectors[np.sort(rows)]
        self._index.train(sample)
        self._index.add(vectors)
        self._set_query_options(nprobe=nprobe)
        self._quantizer = quantizer  # the index holds a pointer to it: keep it alive
        self.tuning: Any = None  # IVFTuning when nprobe was tuned for a recall
        if recall is not None:
            exact = ExactBackend(vectors)
            self.tuning = tune_nprobe(self._index, vectors, recall, exact=exact, seed=seed)

    def _set_query_options(self, *, nprobe: int = 32) -> None:
        self.nlist = int(self._index.nlist)
        self._index.nprobe = min(nprobe, self.nlist)


@BACKENDS.register("faiss-hnsw")
class FaissHNSWBackend(_FaissBackend):
    """Approximate search with FAISS's HNSW graph (``IndexHNSWFlat``, inner product).

    No training; build time is the graph construction (slower than IVF), queries are fast and
    recall is set by ``ef_search``. ``ef_construction`` 40 builds 10^5 clustered vectors 2.7x
    faster than 80 at the same recall (``benchmarks/search_build.py``).
    """

    name = "faiss-hnsw"
    BUILD_OPTIONS = ("m", "ef_construction")

    def __init__(
        self, vectors: np.ndarray, *, m: int = 32, ef_construction: int = 40, ef_search: int = 64
    ) -> None:
        faiss = _faiss()
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self._index.hnsw.efConstruction = ef_construction
        self._index.add(vectors)
        self._set_query_options(ef_search=ef_search)

    def _set_query_options(self, *, ef_search: int = 64) -> None:
        self._index.hnsw.efSearch = ef_search


def build_backend(name: str, vectors: np.ndarray, **options: Any) -> Any:
    """A search backend by name over normalised vectors ``[N, D]``.

    Raises:
        VideoIndexError: an unknown name, or FAISS missing for an approximate backend.
    """
    return BACKENDS.get(name)(vectors, **options)


# ----------------------------------------------------------------------------------------------
# Identity of files and models
# ----------------------------------------------------------------------------------------------


def _data_settings(predictor: VideoEmbedder) -> dict[str, Any]:
    """What, beside the model, decides a video's embedding: how it is read, sampled and cut."""
    data = predictor.data
    keys = ("num_segments", "input_size", "resize_size", "sampling", "dense_stride", "decoder")
    keys += ("frame_template", "frame_start_index")
    values = {key: getattr(data, key) for key in keys}
    values["views"] = f"{predictor.num_clips}x{predictor.num_crops}"
    return values


def segment_settings(window: float, stride: float | None = None) -> dict[str, float]:
    """The header's ``segments`` entry for windows of ``window`` seconds every ``stride``.

    Raises:
        UsageError: not ``0 < stride <= window``.
    """
    stride = window if stride is None else stride
    check_window(window, stride)
    return {"window": float(window), "stride": float(stride)}


def _precision_label(predictor: VideoEmbedder) -> str:
    """How ``model.precisions`` names the precision of a model's embeddings: PyTorch's by its
    name (``fp32``, ``bf16``, ``int8`` ...), an export's graph as ``onnx-fp32`` / ``onnx-int8``."""
    if isinstance(predictor, OnnxPredictor):
        return f"onnx-{predictor.precision}"
    return predictor.precision


def _model_name(predictor: VideoEmbedder, source: str | Path = "") -> str:
    """A model as an error message names it: where it comes from when known."""
    if isinstance(predictor, OnnxPredictor):
        return f"the export {source or predictor.directory}"
    return str(source) if source else "this model"


def _require_windows(predictor: VideoEmbedder, what: str) -> WindowEmbedder:
    """``predictor`` when it embeds windows of a video (:class:`WindowEmbedder`).

    Raises:
        UsageError: a model that embeds whole videos only (an ONNX export), naming ``what``.
    """
    if not isinstance(predictor, WindowEmbedder):
        where = f" ({_model_name(predictor)})" if isinstance(predictor, OnnxPredictor) else ""
        raise UsageError(
            f"{what} needs the PyTorch model{where}: an export embeds whole videos only; give "
            "--model the model folder or checkpoint it was exported from"
        )
    return predictor


def _normalise(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.maximum(norms, 1e-12)


def video_direction(views: Any) -> np.ndarray:
    """A video's row of an index: its views' embeddings ``[V, D]`` (array-like, before
    normalisation) normalised, averaged and normalised again, float32 ``[D]``: the video's
    direction in the joint space, whatever the number of views."""
    return _normalise(_normalise(np.asarray(views, dtype=np.float32)).mean(0))


# ----------------------------------------------------------------------------------------------
# The index
# ----------------------------------------------------------------------------------------------


class VideoIndex:
    """Normalised video embeddings of a collection, kept in step with the files, searchable by
    text or by example.

    Build one with :meth:`build`, open a saved one with :meth:`load`. A predictor (the model) is
    needed to embed videos and text; searching by a video already in the index needs none.

    Args:
        path: the index folder.
        meta: the contents of ``index.json`` (as read: a dict; or parsed).
        embeddings: ``[N, D]``, row ``i`` for ``meta.videos[i]``: float32, or float16 to store
            and search at half the memory (:attr:`storage`); other types become float32. A
            memory-mapped array stays mapped.
        predictor: the model (checked against the index's model identity).
        backend: search backend name (:data:`BACKENDS`), ``"exact"`` by default.
        backend_options: keyword arguments of the backend (``nprobe``, ``ef_search`` ...).
    """

    # Saves during an update (see _embed_in_chunks): at least this many seconds apart, and at
    # most this share of the time (a save writes the whole index).
    SAVE_INTERVAL_S = 60.0
    SAVE_SHARE = 0.1

    def __init__(
        self,
        path: str | Path,
        meta: IndexMeta | dict[str, Any],
        embeddings: np.ndarray,
        *,
        predictor: VideoEmbedder | None = None,
        backend: str = "exact",
        backend_options: dict[str, Any] | None = None,
    ) -> None:
        self.path = Path(path)
        if not isinstance(meta, IndexMeta):
            meta = IndexMeta.from_dict(meta, self.path / META_NAME)
        self.info = meta  # index.json, typed; the index's videos and failures are its lists
        embeddings = np.asanyarray(embeddings)  # a memory map stays one
        if embeddings.dtype.name not in STORAGE_DTYPES:
            embeddings = embeddings.astype(np.float32)
        self.embeddings = embeddings
        if len(self.videos) != self.embeddings.shape[0]:
            raise VideoIndexError(
                f"{self.path}: {META_NAME} lists {len(self.videos)} videos but "
                f"{EMBEDDINGS_NAME} holds {self.embeddings.shape[0]} embeddings; the index is "
                "damaged, build it again (text4vis index ... --rebuild)"
            )
        if backend not in BACKENDS:
            raise VideoIndexError(
                f"unknown search backend {backend!r}; choose one of {sorted(BACKENDS)}"
            )
        self.backend_name = backend
        self.backend_options = dict(backend_options or {})
        self._backend: Any = None
        self._predictor: VideoEmbedder | None = None
        self.last_update: IndexUpdate | None = None  # what the last build or update did
        if predictor is not None:
            self.predictor = predictor

    @property
    def videos(self) -> VideoTable:
        """The indexed videos, a columnar table; row ``i`` of :attr:`embeddings` is
        ``videos[i]``."""
        if not isinstance(self.info.videos, VideoTable):  # a list assigned to info.videos
            self.info.videos = VideoTable.of(self.info.videos)
        return self.info.videos

    @property
    def storage(self) -> str:
        """How the vectors are stored and searched: ``"float32"`` or ``"float16"``."""
        return self.embeddings.dtype.name

    @storage.setter
    def storage(self, dtype: str) -> None:
        if dtype not in STORAGE_DTYPES:
            raise VideoIndexError(
                f"unknown vector storage {dtype!r}; choose one of {sorted(STORAGE_DTYPES)}"
            )
        if dtype != self.storage:
            self.embeddings = np.asarray(self.embeddings).astype(STORAGE_DTYPES[dtype])
            self._backend = None

    @property
    def failures(self) -> list[IndexFailure]:
        """The videos that could not be embedded (tried again at the next update)."""
        return self.info.failures

    @property
    def meta(self) -> dict[str, Any]:
        """The index's record as one new dict, every video listed (format 1's ``index.json``;
        format 2 keeps the rows as columns): read one field, or change the index, through
        :attr:`info`."""
        return self.info.to_dict()

    # ------------------------------------------------------------------------------------------
    # Construction and files
    # ------------------------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        videos: Sequence[str | Path],
        predictor: VideoEmbedder,
        path: str | Path,
        *,
        progress: bool = False,
        model_source: str = "",
        storage: str = "float32",
        chunk_size: int | None = None,
        segments: float | None = None,
        stride: float | None = None,
        **kwargs: Any,
    ) -> VideoIndex:
        """Embed every video found in ``videos`` and write a new index to ``path``.

        Args:
            videos: video files, frame folders or folders (searched recursively).
            predictor: the model (:class:`VideoEmbedder`: a PyTorch
                :class:`~text4vis.predict.Predictor` or an export's
                :class:`~text4vis.onnx_runtime.OnnxPredictor`); its identity, data settings and
                views are recorded.
            path: the index folder (created; an index already there is replaced).
            progress: show a progress bar over videos.
            model_source: where the model came from (a folder or checkpoint), recorded for people.
            storage: ``"float32"`` or ``"float16"`` (half the memory and scan time; its recall
                is measured by ``benchmarks/search_exact.py``).
            chunk_size: videos embedded between saves (see :meth:`update`).
            segments: index windows of this many seconds of each video (one row per window,
                with its ``start``/``end``), read as the timeline reads them (a PyTorch model
                only: :class:`WindowEmbedder`); None (default): one row per video.
            stride: seconds between the starts of windows (default ``segments``: no overlap).
            **kwargs: ``backend`` / ``backend_options`` for searching.

        Returns:
            The index; :attr:`last_update` says what was embedded and what failed.
        """
        meta = cls._new_meta(predictor, model_source)
        if segments is not None:
            _require_windows(predictor, "--segments (a segment index)")
            meta.segments = segment_settings(segments, stride)
        elif stride is not None:
            raise UsageError("stride goes with segments (the window's length in seconds)")
        empty = np.zeros((0, meta.model.embed_dim or 0), STORAGE_DTYPES[storage])
        index = cls(path, meta, empty, predictor=predictor, **kwargs)
        index.update(videos, progress=progress, chunk_size=chunk_size)
        return index

    @staticmethod
    def _new_meta(predictor: VideoEmbedder, model_source: str = "") -> IndexMeta:
        model = IndexModel(
            identity=predictor.model_identity(),
            embed_dim=int(predictor.embed_dim),
            arch=predictor.arch,
            source=model_source,
            precisions=[],
        )
        return IndexMeta(model=model, videos=[], data=_data_settings(predictor))

    @classmethod
    def load(
        cls, path: str | Path, predictor: VideoEmbedder | None = None, **kwargs: Any
    ) -> VideoIndex:
        """Open a saved index.

        Args:
            path: the index folder.
            predictor: the model, for text queries, queries by a video outside the index and
                updates (must be the model the index was built with).
            **kwargs: ``backend`` / ``backend_options``.

        Raises:
            FileNotFoundError: no index there.
            VideoIndexError: an unreadable or damaged index, or another model.
        """
        path = Path(path)
        meta_path = path / META_NAME
        if not meta_path.is_file():
            raise MissingFileError(
                f"{path} is not a video index (no {META_NAME}); build one with "
                f"`text4vis index VIDEOS... --model MODEL --out {path}`"
            )
        try:
            stored = read_index(path)
        except ValueError as exc:
            raise VideoIndexError(f"{exc}; build the index again with --rebuild") from None
        meta = stored.header
        if meta.get("format") not in READABLE_FORMATS:
            raise VideoIndexError(
                f"{meta_path}: index format {meta.get('format')!r}, this text4vis reads formats "
                f"{list(READABLE_FORMATS)}; build the index again with --rebuild"
            )
        info = IndexMeta.from_dict(meta, meta_path, videos=stored.table)
        return cls(path, info, stored.vectors, predictor=predictor, **kwargs)

    def save(self) -> None:
        """Write the index atomically (:func:`text4vis.index_store.write_index`): the vectors and
        rows as a new generation, then the header that names it; a process killed at any moment
        leaves the previous index or the new one. A format-1 index is written in format 2."""
        self.info.format = INDEX_FORMAT
        vectors = self.embeddings
        if vectors.ndim != 2 or vectors.shape[1] == 0:
            vectors = np.zeros((len(self.videos), self.info.model.embed_dim or 0), vectors.dtype)
        write_index(self.path, self.info.header_dict(), vectors, self.videos)

    # ------------------------------------------------------------------------------------------
    # The model
    # ------------------------------------------------------------------------------------------

    @property
    def predictor(self) -> VideoEmbedder | None:
        """The model used for queries and updates (None until given; setting it checks it as
        :meth:`use_model` does)."""
        return self._predictor

    @predictor.setter
    def predictor(self, predictor: VideoEmbedder) -> None:
        self.use_model(predictor)

    def use_model(self, predictor: VideoEmbedder, source: str | Path = "") -> None:
        """Use ``predictor`` for queries and updates, once checked against the index.

        Args:
            predictor: a PyTorch :class:`~text4vis.predict.Predictor` or an export's
                :class:`~text4vis.onnx_runtime.OnnxPredictor` of the model the index was built
                with (the same identity: an export records its source model's).
            source: where the model comes from (a folder, a checkpoint, an export), named in
                the error.

        Raises:
            VideoIndexError: another model, or other data settings, than the index's.
        """
        identity = predictor.model_identity()
        recorded = self.info.model
        if identity != recorded.identity:
            built = f"{recorded.source or 'its source was not recorded'} (identity "
            given = _model_name(predictor, source)
            raise VideoIndexError(
                f"{self.path}: the index was built with another model: {built}"
                f"{recorded.identity.removeprefix('onnx:')[:12]}), not {given} (identity "
                f"{identity.removeprefix('onnx:')[:12]}); their embeddings cannot be compared: "
                "use the model it was built with, or its export (text4vis export), or rebuild "
                "the index (text4vis index ... --rebuild)"
            )
        settings = _data_settings(predictor)
        if self.videos and settings != self.info.data:
            differ = sorted(k for k in settings if settings[k] != self.info.data.get(k))
            raise VideoIndexError(
                f"{self.path}: the index was embedded with other data settings ("
                + ", ".join(f"{k}: {self.info.data.get(k)!r} vs {settings[k]!r}" for k in differ)
                + "); use the same settings or rebuild the index (--rebuild)"
            )
        self.info.data = settings
        # Which export (if any) last embedded or searched it, for people: the identity is the check.
        if isinstance(predictor, OnnxPredictor):
            self.info.model.extra["export"] = predictor.export_record()
        else:
            self.info.model.extra.pop("export", None)
        self._predictor = predictor

    def _require_predictor(self, what: str) -> VideoEmbedder:
        if self._predictor is None:
            raise VideoIndexError(
                f"{what} needs the model the index was built with; pass predictor= "
                "(VideoIndex.load(path, predictor)) or --model"
            )
        return self._predictor

    # ------------------------------------------------------------------------------------------
    # Updating
    # ------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.videos)

    def __contains__(self, video: object) -> bool:
        """Whether a video path (as given or absolute) is in the index."""
        return isinstance(video, (str, Path)) and self.row_of(video) is not None

    def row_of(self, video: str | Path) -> int | None:
        """The row of a video's embedding (a segment index: of its first segment), or None
        when it is not indexed."""
        return self.videos.row_of(str(Path(video).resolve()))

    @property
    def segments(self) -> dict[str, float] | None:
        """``{"window", "stride"}`` in seconds for a segment index, None for whole videos."""
        return self.info.segments

    def check_segments(self, window: float | None, stride: float | None = None) -> None:
        """Refuse to update with segment settings other than the index's.

        Args:
            window: the requested window (None: keep the index's).
            stride: the requested stride (None: the window's, or the index's without a window).

        Raises:
            UsageError: other settings than those the index was built with.
        """
        if window is None and stride is None:
            return
        if window is None:
            raise UsageError("--stride goes with --segments SECONDS")
        wanted = segment_settings(window, stride)
        if wanted != self.segments:
            held = (
                "whole videos (no --segments)"
                if self.segments is None
                else f"--segments {self.segments['window']:g} --stride {self.segments['stride']:g}"
            )
            raise UsageError(
                f"{self.path} was built with {held}; update it with the same settings, or "
                "give --rebuild to index it again with the new ones"
            )

    def update(
        self,
        videos: Sequence[str | Path] | None = None,
        *,
        progress: bool = False,
        chunk_size: int | None = None,
    ) -> IndexUpdate:
        """Bring the index in step with the videos found in ``videos`` and save it.

        New videos and videos whose size or modification time changed are embedded; videos no
        longer found are dropped; the others keep their embeddings without running the model.
        Videos that could not be read before are tried again.

        Args:
            videos: video files, frame folders or folders; None = the inputs of the last run.
            progress: show a progress bar over the videos to embed.
            chunk_size: videos per call of the embedding loop (default ``64 * batch_size``); the
                index is saved between chunks (every :attr:`SAVE_INTERVAL_S` seconds at most),
                so an interrupted update keeps what it did.

        Under ``torchrun`` (a process group of several ranks), every rank calls this: the
        chunks are spread over the ranks and written as shards, and rank 0 merges them
        (:func:`text4vis.index_shards.update_sharded`); a stopped run embeds again only the
        chunks without a shard.

        Returns:
            What was added, changed, removed, kept and what failed (also :attr:`last_update`).
        """
        predictor = self._require_predictor("updating an index")
        if self.segments is not None:
            _require_windows(predictor, "updating a segment index")
        inputs = [str(v) for v in videos] if videos is not None else list(self.info.inputs)
        if not inputs:
            raise VideoIndexError("no videos to index: give video files, frame folders or folders")
        chunk = chunk_size or 64 * predictor.batch_size

        if distributed.is_distributed():  # under torchrun: units spread over the ranks
            if self.segments is not None:
                raise UsageError(
                    "a segment index is built in one process; run `text4vis index --segments` "
                    "without torchrun"
                )
            report = update_sharded(self, inputs, chunk=chunk, progress=progress)
            if distributed.is_main_process():
                for failure in report.failed:
                    logger.warning("cannot index %s: %s", failure.path, failure.reason)
            return report
        signatures, failures = scan_videos(inputs, predictor.data)
        report, to_embed = self._drop_stale(signatures)
        self.info.inputs = inputs
        self.info.failures = failures
        logger.info(
            "index %s: %d new, %d changed, %d removed, %d unchanged",
            self.path,
            len(report.added),
            len(report.changed),
            len(report.removed),
            report.unchanged,
        )
        self._embed_in_chunks(to_embed, signatures, report, chunk=chunk, progress=progress)
        self.save()
        report.failed = list(self.failures)
        unreadable = {f.path for f in report.failed}
        report.added = [p for p in report.added if p not in unreadable]
        report.changed = [p for p in report.changed if p not in unreadable]
        for failure in report.failed:
            logger.warning("cannot index %s: %s", failure.path, failure.reason)
        self.last_update = report
        return report

    def _drop_stale(self, signatures: dict[str, tuple[int, int]]) -> tuple[IndexUpdate, list[str]]:
        """Keep the rows of the videos found unchanged, drop the others.

        Args:
            signatures: ``(size, mtime_ns)`` by absolute path of every video found.

        Returns:
            The report so far (added, changed, removed, unchanged) and the paths to embed, in
            the order of ``signatures``.
        """
        report = IndexUpdate()
        table = self.videos
        paths = table.paths()
        sizes, mtimes = table.column("size").tolist(), table.column("mtime_ns").tolist()
        keep = [i for i, p in enumerate(paths) if signatures.get(p) == (sizes[i], mtimes[i])]
        kept_paths = {paths[i] for i in keep}
        indexed = set(paths)
        report.removed = sorted(p for p in paths if p not in signatures)
        to_embed = [p for p in signatures if p not in kept_paths]
        report.changed = [p for p in to_embed if p in indexed]
        report.added = [p for p in to_embed if p not in indexed]
        report.unchanged = len(kept_paths)  # videos (a segment index keeps several rows each)
        if len(keep) != len(paths):  # else the rows (memory-mapped, perhaps) are kept as they are
            self.info.videos = table.take(keep)
            if self.embeddings.size:
                self.embeddings = np.asarray(self.embeddings[keep])
        if not self.embeddings.size:
            dim = int(self.info.model.embed_dim)  # type: ignore[arg-type]
            self.embeddings = np.zeros((0, dim), self.embeddings.dtype)
        self._backend = None
        return report, to_embed

    def _embed_in_chunks(
        self,
        paths: list[str],
        signatures: dict[str, tuple[int, int]],
        report: IndexUpdate,
        *,
        chunk: int,
        progress: bool,
    ) -> None:
        """Embed ``paths`` ``chunk`` at a time, appending rows (or failures), and save the index
        between chunks, so that an interrupted update keeps what it did.

        A save writes the whole index (atomically), so at 10^5-10^6 rows saving after every chunk
        would cost more than embedding: the index is saved after a chunk once
        :attr:`SAVE_INTERVAL_S` seconds, and the last save's duration divided by :attr:`SAVE_SHARE`,
        have passed (an interrupted update loses at most that much work). New rows are gathered and
        appended at each save, not copied per chunk.
        """
        predictor = self._require_predictor("embedding videos")
        bar = None
        if progress and paths:
            bar = tqdm(total=len(paths), desc="index", unit="video", dynamic_ncols=True)
        new_vectors: list[np.ndarray] = []
        new_videos: list[IndexedVideo] = []
        new_spans: list[tuple[float, float]] = []  # a segment index: (start, end) per new row
        last_save, save_seconds = time.monotonic(), 0.0
        try:
            for start in range(0, len(paths), chunk):
                part = paths[start : start + chunk]
                if self.segments is None:
                    rows, errors = self._embed(part)
                    spans: dict[int, list[tuple[float, float]]] = {}
                else:
                    rows, spans, errors = self._embed_segments(part)
                report.embedded += len(part)
                done = [i for i in range(len(part)) if i in rows]
                if done:
                    block = np.stack([rows[i] for i in done]) if not spans else None
                    if spans:  # rows[i]: [n_i, D], one per window of video i
                        block = np.concatenate([rows[i] for i in done])
                        new_spans += [span for i in done for span in spans[i]]
                    new_vectors.append(block)
                    new_videos += [
                        IndexedVideo(part[i], *signatures[part[i]])
                        for i in done
                        for _ in range(len(spans[i]) if spans else 1)
                    ]
                    report.rows_embedded += len(block)
                    self._record_precision(_precision_label(predictor))
                self.info.failures += [IndexFailure(part[i], errors[i]) for i in sorted(errors)]
                if bar is not None:
                    bar.update(len(part))
                waited = time.monotonic() - last_save
                if waited >= self.SAVE_INTERVAL_S and waited * self.SAVE_SHARE >= save_seconds:
                    self._append_rows(new_vectors, new_videos, new_spans)
                    started = time.monotonic()
                    self.save()
                    last_save = time.monotonic()
                    save_seconds = last_save - started
        finally:
            self._append_rows(new_vectors, new_videos, new_spans)
            if bar is not None:
                bar.close()

    def _append_rows(
        self,
        vectors: list[np.ndarray],
        videos: list[IndexedVideo],
        spans: list[tuple[float, float]],
    ) -> None:
        """Append gathered rows (``vectors`` blocks ``[b, D]``; a segment index: ``spans``
        gives each row's ``(start, end)``) and empty the lists."""
        if not videos:
            return
        new = np.concatenate(vectors).astype(self.embeddings.dtype)
        self.embeddings = np.concatenate([self.embeddings, new])
        extra = {}
        if self.segments is not None:
            extra = {
                "start": np.array([s for s, _ in spans], np.float64),
                "end": np.array([e for _, e in spans], np.float64),
            }
        self.info.videos = self.videos.concat(VideoTable.from_records(videos, **extra))
        self._backend = None
        vectors.clear()
        videos.clear()
        spans.clear()

    def _record_precision(self, precision: str) -> None:
        # Which inference precisions the stored embeddings were made at (index.json's
        # model.precisions; absent in indexes from before it was recorded). They may be mixed:
        # benchmarks/cpu_inference.py measures bf16 and int8 embeddings at cosine >= 0.99 to
        # fp32's, so this is a record for people, not a check.
        if self.info.model.precisions is None:
            self.info.model.precisions = []
        if precision not in self.info.model.precisions:
            self.info.model.precisions.append(precision)

    def _embed(self, paths: Sequence[str]) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        """Normalised embeddings ``[D]`` by position in ``paths``, and reasons for failures.

        The views of a video are normalised, averaged and normalised again: the video's
        direction in the joint space, whatever the number of views.
        """
        predictor = self._require_predictor("embedding videos")
        # The index shows its own progress over videos; the predictor's bar is per chunk.
        shown, predictor.progress = predictor.progress, False
        try:
            views, errors = predictor.embed_videos(paths)  # position -> [V, D]
        finally:
            predictor.progress = shown
        rows = {i: video_direction(v) for i, v in views.items()}
        return rows, dict(errors)

    def _embed_segments(
        self, paths: Sequence[str]
    ) -> tuple[dict[int, np.ndarray], dict[int, list[tuple[float, float]]], dict[int, str]]:
        """A segment index's rows: normalised window embeddings ``[n, D]`` and their spans by
        position in ``paths``, and reasons for failures. Each file is read once, front to back,
        as :meth:`~text4vis.predict.Predictor.timeline` reads it."""
        predictor = _require_windows(
            self._require_predictor("embedding videos"), "updating a segment index"
        )
        assert self.segments is not None
        window, stride = self.segments["window"], self.segments["stride"]
        rows: dict[int, np.ndarray] = {}
        spans: dict[int, list[tuple[float, float]]] = {}
        errors: dict[int, str] = {}
        for i, path in enumerate(paths):
            try:
                found, embedded = predictor.embed_windows(
                    path, lambda hint: window_spans(hint, window, stride)
                )
            except (VideoDecodeError, UsageError) as exc:
                errors[i] = getattr(exc, "reason", None) or str(exc)
                continue
            rows[i] = _normalise(np.asarray(embedded, dtype=np.float32))  # [n, D]
            spans[i] = found
        return rows, spans, errors

    # ------------------------------------------------------------------------------------------
    # Searching
    # ------------------------------------------------------------------------------------------

    def text_embedding(self, text: str) -> np.ndarray:
        """The normalised embedding ``[D]`` of a sentence through the model's text encoder and
        prompt templates (the same builder as zero-shot label names)."""
        predictor = self._require_predictor("a text query")
        if not text or not text.strip():
            raise VideoIndexError("the text query is empty; type what the videos should show")
        _, weight = predictor.classifier_for([text.strip()])  # [1, D], normalised
        return _normalise(np.asarray(weight[0], dtype=np.float32))

    def video_embedding(self, video: str | Path) -> np.ndarray:
        """The normalised embedding ``[D]`` of a video, or of a segment of one
        (``"a.mp4@30-38"``: seconds 30 to 38, read as one window).

        A whole video the index holds unchanged takes its stored embedding (a segment index:
        the normalised mean of its segments' rows); anything else is computed with the model.

        Raises:
            VideoDecodeError: the video cannot be read.
            UsageError: a malformed span.
        """
        name, span = parse_video_span(video)
        path = Path(name)
        if span is not None:
            predictor = _require_windows(
                self._require_predictor("a query by a segment of a video"),
                "a query by a segment of a video (VIDEO@START-END)",
            )
            _, embedded = predictor.embed_windows(str(path), lambda hint: [span])
            return _normalise(np.asarray(embedded[0], dtype=np.float32))
        resolved = str(path.resolve())
        row = self.videos.row_of(resolved)
        if row is not None:
            entry = self.videos[row]
            try:
                unchanged = file_signature(resolved) == (entry.size, entry.mtime_ns)
            except OSError:
                unchanged = False
            if unchanged and self.segments is None:
                return np.asarray(self.embeddings[row], dtype=np.float32)
            if unchanged:
                rows = self.videos.rows_of(resolved)
                stored = np.asarray(self.embeddings[rows], dtype=np.float32)  # [n, D]
                return _normalise(stored.mean(0))
        rows, errors = self._embed([str(path)])
        if 0 in errors:
            raise VideoDecodeError(path, errors[0])
        return rows[0]

    def backend(self) -> Any:
        """The search backend over the current embeddings (built on first use; an approximate
        one is read from the index folder when it was saved for these embeddings and build
        options, and saved there after a build)."""
        if self._backend is None:
            if self.backend_name == "exact":
                self._backend = build_backend("exact", self.embeddings)
            else:
                self._backend = self._saved_backend()
        return self._backend

    def _backend_files(self) -> tuple[Path, Path]:
        """The saved FAISS index of the backend and its JSON (the key it was built for)."""
        stem = f"backend-{self.backend_name}"
        return self.path / f"{stem}.faiss", self.path / f"{stem}.json"

    def _saved_backend(self) -> Any:
        name, options = self.backend_name, self.backend_options
        cls = BACKENDS[name]
        build_options = {k: options[k] for k in sorted(options) if k in cls.BUILD_OPTIONS}
        digest = hashlib.sha256(json.dumps([name, build_options, self.embeddings.shape]).encode())
        digest.update(self.embeddings.reshape(-1).view(np.uint8))  # no copy: ~1 s per 2 GB
        key = digest.hexdigest()
        index_file, key_file = self._backend_files()
        if index_file.is_file() and key_file.is_file():
            try:
                saved_key = json.loads(key_file.read_text(encoding="utf-8")).get("key")
            except (OSError, ValueError, AttributeError):
                saved_key = None
            if saved_key == key:
                try:
                    return self._read_backend(cls, index_file, key_file, options)
                except Exception as exc:  # FAISS raises RuntimeError for a damaged file
                    logger.warning("%s could not be read (%s); building it again", index_file, exc)
        backend = build_backend(name, self.embeddings, **options)
        if (self.path / META_NAME).is_file():  # a saved index: keep the build beside it
            # The key goes first and comes back last, so that an interrupted save never pairs
            # a new FAISS file with the key of other embeddings.
            partial = index_file.with_name(index_file.name + ".partial")
            key_partial = key_file.with_name(key_file.name + ".partial")
            try:
                key_file.unlink(missing_ok=True)
                backend.write(partial)
                os.replace(partial, index_file)
                tuning = getattr(backend, "tuning", None)
                saved = {"key": key, "backend": name, "build_options": build_options}
                if tuning is not None:
                    saved["tuning"] = tuning.to_dict()
                key_partial.write_text(json.dumps(saved) + "\n", encoding="utf-8")
                os.replace(key_partial, key_file)
            except (OSError, RuntimeError) as exc:  # a read-only folder: search all the same
                logger.warning("could not save the %s index in %s (%s)", name, self.path, exc)
        return backend

    @staticmethod
    def _read_backend(cls: Any, index_file: Path, key_file: Path, options: dict[str, Any]) -> Any:
        """A saved FAISS backend, with the ``nprobe`` it was tuned to (unless one is given)."""
        saved = json.loads(key_file.read_text(encoding="utf-8")).get("tuning")
        if saved is None:
            return cls.read(index_file, **options)
        tuning = IVFTuning(**saved)
        backend = cls.read(index_file, **({"nprobe": tuning.nprobe} | options))
        backend.tuning = tuning
        return backend

    def search_vectors(self, queries: np.ndarray, top_k: int = 10) -> list[list[SearchHit]]:
        """Hits for query embeddings ``[Q, D]`` (normalised here), best first."""
        if top_k < 1:
            raise UsageError(f"top_k must be at least 1, got {top_k}")
        queries = _normalise(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
        if len(self.videos) == 0:
            return [[] for _ in range(queries.shape[0])]
        dim = self.embeddings.shape[1]
        if queries.shape[1] != dim:
            raise VideoIndexError(
                f"query width {queries.shape[1]} does not match the index's {dim}"
            )
        scores, ids = self.backend().search(queries, top_k)
        table = self.videos
        starts = table.columns.get("start")
        ends = table.columns.get("end")
        results = []
        for row_scores, row_ids in zip(scores, ids):
            hits = []
            found = ((s, int(i)) for s, i in zip(row_scores, row_ids) if i >= 0)
            for rank, (score, row) in enumerate(found, start=1):
                span = (None, None)
                if starts is not None and ends is not None:
                    span = (float(starts[row]), float(ends[row]))
                hits.append(SearchHit(rank, table.path(row), float(score), *span))
            results.append(hits)
        return results

    def search(
        self,
        text: str | None = None,
        *,
        like: str | Path | None = None,
        top_k: int = 10,
    ) -> list[SearchHit]:
        """The indexed videos closest to a sentence or to a video, best first.

        Args:
            text: a sentence, embedded with the model's text encoder and prompt.
            like: a video (in the index or not) to find similar videos to; the video itself,
                when indexed, ranks first with score 1.
            top_k: how many hits.

        Raises:
            VideoIndexError: neither or both of text and like, or no model for the query.
            VideoDecodeError: ``like`` cannot be read.
        """
        if (text is None) == (like is None):
            raise VideoIndexError("give exactly one query: text='a sentence' or like='a video'")
        query = self.text_embedding(text) if text is not None else self.video_embedding(like)
        return self.search_vectors(query[None], top_k)[0]

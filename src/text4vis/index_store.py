"""The files of a video index: memory-mapped vectors, columnar rows, a small JSON header.

An index folder (format 2) holds::

    index.json          the header: model, data settings, inputs, failures, and ``store``,
                        which names the generation folder holding the current rows
    v000007/            one generation, written whole before ``index.json`` names it
      vectors.npy       float32 or float16 [N, D], one normalised embedding per row
      path.utf8.npy     uint8: every row's path, UTF-8, one after the other
      path.offsets.npy  int64 [N + 1]: row i's path is bytes offsets[i]:offsets[i + 1]
      size.npy          int64 [N]
      mtime_ns.npy      int64 [N]
      <name>.npy        any further column (a segment index adds start/end), [N]

Opening costs what it touches: every ``.npy`` is memory-mapped (``np.load(mmap_mode="r")``), so
a 10^6-row index opens in milliseconds and its pages are read by the first search, not by the
open. A path is decoded when a hit names it; the path -> row map is built on first use.

Saving is atomic: a new generation folder is written and fsynced, then ``index.json`` is
replaced by one ``os.replace`` (the switch), then the older generations are removed. A process
killed at any moment leaves either the old header naming the old generation or the new header
naming the new one; an unfinished generation folder is never named and is removed at the next
save.

Format 1 (``index.json`` listing every video + ``embeddings.safetensors``) is read as before and
written in format 2 at the next save.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from text4vis.config import DataConfig
from text4vis.data.discovery import find_videos

__all__ = [
    "HEADER_NAME",
    "LEGACY_VECTORS_NAME",
    "STORAGE_DTYPES",
    "StoredIndex",
    "VideoTable",
    "read_index",
    "write_index",
]

logger = logging.getLogger("text4vis.index_store")

HEADER_NAME = "index.json"
LEGACY_VECTORS_NAME = "embeddings.safetensors"  # format 1
VECTORS_NAME = "vectors.npy"
GENERATION_PREFIX = "v"
# Storage precisions of the vectors: float16 halves the memory and the time of an exact scan;
# benchmarks/search_exact.py measures its recall@10 against float32.
STORAGE_DTYPES = {"float32": np.float32, "float16": np.float16}


class VideoTable(Sequence):
    """The rows of an index, column by column: ``path``, ``size``, ``mtime_ns`` and any others.

    Behaves as a sequence of :class:`text4vis.search.IndexedVideo` (``table[i]``, ``len``,
    iteration, slicing) without making one object per row: paths are kept as one UTF-8 buffer
    with offsets and decoded when asked for. Further columns (``start``/``end`` of segments) are
    NumPy arrays of length N carried through :meth:`take`, :meth:`concat` and the files.

    Args:
        path_bytes: uint8, the UTF-8 paths one after the other.
        path_offsets: int64 ``[N + 1]``: row i's path is ``path_bytes[offsets[i]:offsets[i+1]]``.
        columns: ``size``, ``mtime_ns`` (int64 ``[N]``) and any further columns ``[N]``.
    """

    def __init__(
        self, path_bytes: np.ndarray, path_offsets: np.ndarray, columns: dict[str, np.ndarray]
    ) -> None:
        self.path_bytes = path_bytes
        self.path_offsets = path_offsets
        self.columns = dict(columns)
        n = len(path_offsets) - 1
        for name in ("size", "mtime_ns"):
            if name not in self.columns:
                raise ValueError(f"a video table needs a {name!r} column")
        for name, values in self.columns.items():
            if len(values) != n:
                raise ValueError(f"column {name!r} has {len(values)} rows, the paths {n}")
        self._rows: dict[str, int] | None = None
        self._groups: dict[str, list[int]] | None = None

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def empty(cls) -> VideoTable:
        return cls.from_records([])

    @classmethod
    def from_records(cls, videos: Iterable[Any], **extra: Sequence[Any]) -> VideoTable:
        """A table of :class:`~text4vis.search.IndexedVideo` records (or objects with ``path``,
        ``size``, ``mtime_ns``); ``extra`` columns given as sequences of the same length."""
        videos = list(videos)
        encoded = [str(v.path).encode("utf-8") for v in videos]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        path_bytes = np.frombuffer(b"".join(encoded), np.uint8).copy()
        columns = {
            "size": np.array([v.size for v in videos], np.int64),
            "mtime_ns": np.array([v.mtime_ns for v in videos], np.int64),
        }
        columns |= {name: np.asarray(values) for name, values in extra.items()}
        return cls(path_bytes, offsets, columns)

    @classmethod
    def of(cls, videos: VideoTable | Iterable[Any]) -> VideoTable:
        """``videos`` as a table (itself when it is one)."""
        return videos if isinstance(videos, VideoTable) else cls.from_records(videos)

    # -- reading -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.path_offsets) - 1

    def path(self, row: int) -> str:
        """Row ``row``'s path (decoded now)."""
        start, end = int(self.path_offsets[row]), int(self.path_offsets[row + 1])
        return bytes(self.path_bytes[start:end]).decode("utf-8")

    def paths(self) -> list[str]:
        """Every path, in row order."""
        blob = bytes(self.path_bytes)
        offsets = self.path_offsets.tolist()
        return [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(len(self))]

    def row_of(self, path: str) -> int | None:
        """The row of an (absolute) path; the map is built at the first call."""
        if self._rows is None:
            self._rows = {}
            for i, p in enumerate(self.paths()):
                self._rows.setdefault(p, i)  # a segment index: the first of the path's rows
        return self._rows.get(path)

    def rows_of(self, path: str) -> list[int]:
        """Every row of an (absolute) path (a segment index holds several), in row order."""
        if self._groups is None:
            groups: dict[str, list[int]] = {}
            for i, p in enumerate(self.paths()):
                groups.setdefault(p, []).append(i)
            self._groups = groups
        return list(self._groups.get(path, []))

    def column(self, name: str) -> np.ndarray:
        """A column by name (``size``, ``mtime_ns`` or a further one)."""
        if name not in self.columns:
            raise KeyError(f"no column {name!r}; the table has {sorted(self.columns)} and 'path'")
        return self.columns[name]

    def __getitem__(self, item: Any) -> Any:

        if isinstance(item, slice):
            return self.take(np.arange(len(self))[item])
        row = int(item)
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(f"row {item} out of range for {len(self)} videos")
        size, mtime = int(self.columns["size"][row]), int(self.columns["mtime_ns"][row])
        return IndexedVideo(self.path(row), size, mtime)

    def __iter__(self) -> Iterator[Any]:

        sizes, mtimes = self.columns["size"].tolist(), self.columns["mtime_ns"].tolist()
        for path, size, mtime in zip(self.paths(), sizes, mtimes):
            yield IndexedVideo(path, size, mtime)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (VideoTable, list, tuple)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    # -- new tables --------------------------------------------------------------------------

    def take(self, rows: Sequence[int] | np.ndarray) -> VideoTable:
        """A new table of the given rows, in that order."""
        rows = np.asarray(rows, np.int64)
        starts, ends = self.path_offsets[rows], self.path_offsets[rows + 1]
        lengths = ends - starts
        offsets = np.zeros(len(rows) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # Gather the byte ranges of the chosen paths with one index array.
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        path_bytes = np.asarray(self.path_bytes)[index] if len(index) else np.zeros(0, np.uint8)
        columns = {name: np.asarray(values)[rows] for name, values in self.columns.items()}
        return VideoTable(path_bytes.astype(np.uint8), offsets, columns)

    def concat(self, other: VideoTable | Iterable[Any]) -> VideoTable:
        """A new table: these rows, then ``other``'s (the same further columns)."""
        other = VideoTable.of(other)
        if set(other.columns) != set(self.columns):
            if len(other) == 0:
                return self
            if len(self) == 0:
                return other
            raise ValueError(
                f"tables with other columns: {sorted(self.columns)} vs {sorted(other.columns)}"
            )
        offsets = np.concatenate(
            [self.path_offsets, other.path_offsets[1:] + self.path_offsets[-1]]
        )
        path_bytes = np.concatenate([np.asarray(self.path_bytes), np.asarray(other.path_bytes)])
        columns = {
            name: np.concatenate([np.asarray(values), np.asarray(other.columns[name])])
            for name, values in self.columns.items()
        }
        return VideoTable(path_bytes.astype(np.uint8), offsets, columns)

    def __add__(self, other: VideoTable | Iterable[Any]) -> VideoTable:
        return self.concat(other)


# ----------------------------------------------------------------------------------------------
# Files
# ----------------------------------------------------------------------------------------------


class StoredIndex:
    """What :func:`read_index` found: the header as a dict, the vectors and the rows."""

    def __init__(self, header: dict[str, Any], vectors: np.ndarray, table: VideoTable) -> None:
        self.header = header
        self.vectors = vectors  # [N, D], memory-mapped in format 2
        self.table = table


def _open_for_write(path: Path) -> Any:
    """The file every byte of a save goes through (tests put a dying writer here)."""
    return open(path, "wb")  # noqa: SIM115 - closed by the caller


def _fsync_folder(folder: Path) -> None:
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:  # a folder cannot be opened on some systems: nothing to flush then
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _write_npy(path: Path, array: np.ndarray) -> None:
    """Write ``array`` (or anything with ``shape``, ``dtype`` and row slices, such as a memory
    map) as a ``.npy`` file, 64 MiB of rows at a time, and fsync it."""
    dtype = np.dtype(array.dtype)
    shape = tuple(array.shape)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize if shape else 0
    block = max(1, (64 << 20) // max(1, row_bytes))
    with _open_for_write(path) as handle:
        np.lib.format.write_array_header_1_0(handle, header)
        for start in range(0, shape[0] if shape else 0, block):
            rows = np.ascontiguousarray(array[start : start + block], dtype=dtype)
            handle.write(rows.tobytes())
        handle.flush()
        os.fsync(handle.fileno())


def _write_json(path: Path, values: dict[str, Any]) -> None:
    with _open_for_write(path) as handle:
        handle.write((json.dumps(values, indent=1) + "\n").encode("utf-8"))
        handle.flush()
        os.fsync(handle.fileno())


def _generations(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.glob(f"{GENERATION_PREFIX}[0-9][0-9][0-9][0-9][0-9][0-9]*") if p.is_dir()
    )


def _write_generation(target: Path, vectors: np.ndarray, table: VideoTable) -> dict[str, Any]:
    """Write the vectors and the columns into the folder ``target``; return the header's
    ``store`` entry that names them."""
    _write_npy(target / VECTORS_NAME, vectors)
    _write_npy(target / "path.utf8.npy", table.path_bytes)
    _write_npy(target / "path.offsets.npy", table.path_offsets)
    columns = {}
    for column, values in table.columns.items():
        _write_npy(target / f"{column}.npy", values)
        columns[column] = np.dtype(np.asarray(values).dtype).str
    _fsync_folder(target)
    store = {
        "folder": target.name,
        "rows": len(table),
        "dim": int(vectors.shape[1]) if vectors.ndim == 2 else 0,
        "dtype": np.dtype(vectors.dtype).name,
        "columns": columns,
    }
    return store


def write_index(
    folder: str | Path, header: dict[str, Any], vectors: np.ndarray, table: VideoTable
) -> str:
    """Save an index atomically (format 2) and return the name of the generation written.

    Args:
        folder: the index folder (created).
        header: the header's contents without ``store`` (model, data, inputs, failures ...).
        vectors: ``[N, D]`` float32 or float16 (the stored precision is the array's).
        table: the rows, ``len(table) == N``.

    Raises:
        ValueError: rows and vectors of different lengths, or an unsupported dtype.
        OSError: the folder cannot be written (the previous index is left as it was).
    """
    folder = Path(folder)
    if len(table) != len(vectors):
        raise ValueError(f"{len(table)} rows but {len(vectors)} vectors")
    dtype = np.dtype(vectors.dtype).name
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"vectors of dtype {dtype}; store one of {sorted(STORAGE_DTYPES)}")
    folder.mkdir(parents=True, exist_ok=True)
    current = _current_generation(folder)
    existing = [int(p.name[1:7]) for p in _generations(folder)]
    number = max(existing, default=0) + 1
    name = f"{GENERATION_PREFIX}{number:06d}"
    target = folder / name
    target.mkdir()
    partial = folder / f"{HEADER_NAME}.partial"
    try:
        store = _write_generation(target, vectors, table)
        _write_json(partial, {**header, "store": store})
    except OSError:
        # A full disk, say: leave nothing half-written beside the previous index.
        shutil.rmtree(target, ignore_errors=True)
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, folder / HEADER_NAME)  # the switch
    _fsync_folder(folder)
    _remove_stale(folder, keep=name, previous=current)
    return name


def _current_generation(folder: Path) -> str | None:
    try:
        header = json.loads((folder / HEADER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    store = header.get("store") if isinstance(header, dict) else None
    return store.get("folder") if isinstance(store, dict) else None


def _remove_stale(folder: Path, keep: str, previous: str | None) -> None:
    """Remove the generations other than ``keep`` and the format-1 vectors file (after the
    switch: a reader of the old header may still hold their pages, which stay until unmapped)."""
    for generation in _generations(folder):
        if generation.name != keep:
            shutil.rmtree(generation, ignore_errors=True)
    legacy = folder / LEGACY_VECTORS_NAME
    if legacy.exists():
        legacy.unlink()
        logger.info(
            "index %s converted from format 1 to format 2 (rows in %s/, %s removed)",
            folder,
            keep,
            LEGACY_VECTORS_NAME,
        )
    elif previous is None:
        logger.debug("index %s written in format 2 (%s)", folder, keep)


def read_index(folder: str | Path) -> StoredIndex:
    """Open the index in ``folder`` (format 1 or 2): the header, the vectors (memory-mapped in
    format 2) and the rows.

    Raises:
        FileNotFoundError: no ``index.json``.
        ValueError: an unreadable header, or files the header names are missing or disagree
            (the message names the file).
    """
    folder = Path(folder)
    header_path = folder / HEADER_NAME
    try:
        header = json.loads(header_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{header_path}: not a readable index file ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{header_path}: not a readable index file (not a JSON object)")
    if header.get("format") == 1:
        return _read_format_1(folder, header)
    store = header.get("store")
    if not isinstance(store, dict) or "folder" not in store:
        raise ValueError(f"{header_path}: no 'store' naming the index's files")
    generation = folder / str(store["folder"])
    try:
        vectors = np.load(generation / VECTORS_NAME, mmap_mode="r")
        path_bytes = np.load(generation / "path.utf8.npy", mmap_mode="r")
        offsets = np.load(generation / "path.offsets.npy", mmap_mode="r")
        columns = {
            name: np.load(generation / f"{name}.npy", mmap_mode="r")
            for name in store.get("columns", {})
        }
    except (OSError, ValueError) as exc:
        raise ValueError(f"{generation}: a file of the index cannot be read ({exc})") from None
    if len(vectors) != int(store.get("rows", -1)):
        raise ValueError(
            f"{generation / VECTORS_NAME}: {len(vectors)} rows, {header_path} says "
            f"{store.get('rows')}"
        )
    try:
        table = VideoTable(path_bytes, offsets, columns)
    except ValueError as exc:
        raise ValueError(f"{generation}: {exc}") from None
    return StoredIndex(header, vectors, table)


def _read_format_1(folder: Path, header: dict[str, Any]) -> StoredIndex:
    """``index.json`` listing every video + ``embeddings.safetensors`` (read into memory)."""
    from safetensors.numpy import load_file

    vectors_path = folder / LEGACY_VECTORS_NAME
    if not vectors_path.is_file():
        raise ValueError(f"{folder}: {LEGACY_VECTORS_NAME} is missing")
    vectors = load_file(str(vectors_path))["embeddings"]
    logger.info(
        "%s is an index of format 1 (every row in index.json); it is written in format 2 "
        "(memory-mapped vectors, columnar rows) at its next save (text4vis index --out %s)",
        folder,
        folder,
    )
    return StoredIndex(header, vectors, None)  # type: ignore[arg-type] - rows in the header


@dataclass(frozen=True)
class IndexedVideo:
    """One indexed video: where it is and the file state its embedding was computed from."""

    path: str  # absolute path
    size: int  # bytes (a frame folder: the sum over its files)
    mtime_ns: int  # modification time (a frame folder: the newest of its files)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class IndexFailure:
    """A video that could not be embedded (retried at the next update)."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class IndexModel:
    """The model an index was embedded with (``index.json``'s ``model``)."""

    identity: str  # content hash of the model (:func:`model_identity`)
    embed_dim: int | None = None  # D, the width of the embeddings
    arch: str = ""  # the backbone architecture, for people
    source: str = ""  # where the model came from (a folder or checkpoint), for people
    # Inference precisions the stored embeddings were made at; None in indexes from before
    # they were recorded (the key is then left out when the index is written again).
    precisions: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # unknown keys, written back as read

    def to_dict(self) -> dict[str, Any]:
        values = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        extra = values.pop("extra")
        return {**values, **extra}


@dataclass
class IndexUpdate:
    """What a build or an update did."""

    added: list[str] = field(default_factory=list)  # new videos, embedded
    changed: list[str] = field(default_factory=list)  # size or mtime changed, embedded again
    removed: list[str] = field(default_factory=list)  # no longer found, dropped
    unchanged: int = 0  # kept without embedding again
    embedded: int = 0  # videos sent through the model (added + changed + failed attempts)
    rows_embedded: int = 0  # rows the model wrote: videos, or segments in a segment index
    failed: list[IndexFailure] = field(default_factory=list)  # unreadable, not in the index

    @property
    def ok(self) -> bool:
        """Whether every video found was indexed."""
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["failed"] = [f.to_dict() for f in self.failed]
        return values


def file_signature(path: str | Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a video file, or of a frame folder (sum of sizes, newest mtime).

    Raises:
        OSError: the path cannot be read.
    """
    path = Path(path)
    if path.is_dir():
        size, newest = 0, path.stat().st_mtime_ns
        with os.scandir(path) as entries:
            for entry in entries:
                if entry.is_file():
                    stat = entry.stat()
                    size += stat.st_size
                    newest = max(newest, stat.st_mtime_ns)
        return size, newest
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def scan_videos(
    inputs: Sequence[str], data: DataConfig
) -> tuple[dict[str, tuple[int, int]], list[IndexFailure]]:
    """The videos found in ``inputs`` (as ``data`` finds frame folders): ``(size, mtime_ns)`` by absolute path (sorted), and the
    ones whose files cannot be read."""

    found = find_videos(
        inputs, frame_template=data.frame_template, start_index=data.frame_start_index
    )
    signatures: dict[str, tuple[int, int]] = {}
    failures: list[IndexFailure] = []
    for item in found:
        path = str(Path(item).resolve())
        try:
            signatures[path] = file_signature(path)
        except OSError as exc:
            failures.append(IndexFailure(path, f"cannot read: {exc.strerror or exc}"))
    return dict(sorted(signatures.items())), failures

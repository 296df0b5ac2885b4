"""List files in the formats of the paper's code.

- Video list: one clip per line, ``relative/file.mp4 label`` (whitespace separated).
- Frame list: ``relative/dir num_frames label``.

The label CSV (``id,name``) is read and written by :mod:`text4vis.data.labels`, the home of
class names.

Every error names the file and line, says what was expected and how to fix it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from text4vis.errors import DataError, MissingFileError, read_user_text

__all__ = [
    "AnnotationError",
    "VideoRecord",
    "read_annotations",
    "select_classes",
    "write_annotations",
    "describe_entries",
    "empty_entries",
]

logger = logging.getLogger("text4vis.data.annotations")


AnnotationError = DataError  # the older name, kept importable


@dataclass(frozen=True)
class VideoRecord:
    """One line of a list file."""

    path: str  # video file or frame folder, as written in the list (relative to the data root)
    num_frames: int | None  # frames in the folder (frame lists); None for video files; 0: dead
    label: int  # class id
    # where the record was read ("list.txt:12"), for messages; not part of its identity
    source: str | None = field(default=None, compare=False)


def read_annotations(path: str | Path, num_classes: int | None = None) -> list[VideoRecord]:
    """Records of a list file (video lines ``path label`` or frame lines ``dir num_frames label``).

    Blank lines and lines starting with ``#`` are ignored. Paths cannot contain whitespace (the
    format of the paper's code); rename such files or use a symlink.

    Args:
        path: the list file.
        num_classes: when given, labels must lie in ``0..num_classes-1``.

    Raises:
        AnnotationError: a line with the wrong number of fields, a non-integer or negative
            frame count or label, or a label out of range; the message names file and line.
        MissingFileError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"list file {path} does not exist")
    records: list[VideoRecord] = []
    text = read_user_text(path, AnnotationError)
    for line_no, line in enumerate(text.split("\n"), start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (2, 3):
            raise AnnotationError(
                f"{path.name}:{line_no}: expected 2 or 3 fields ('path label' or "
                f"'dir num_frames label'), got {len(fields)}: {line.strip()!r} ({path})"
            )
        num_frames = None
        if len(fields) == 3:
            num_frames = _parse_int(fields[1], "frame count", path, line_no)
            if num_frames < 0:
                raise AnnotationError(
                    f"{path.name}:{line_no}: frame count must be 0 or more, got {num_frames}"
                    f" ({path})"
                )
        label = _parse_int(fields[-1], "label", path, line_no)
        if label < 0:
            raise AnnotationError(
                f"{path.name}:{line_no}: label {label} out of range: class ids start at 0 ({path})"
            )
        if num_classes is not None and label >= num_classes:
            raise AnnotationError(
                f"{path.name}:{line_no}: label {label} out of range for {num_classes} classes "
                f"(ids 0..{num_classes - 1}); check the label file matches this list ({path})"
            )
        records.append(VideoRecord(fields[0], num_frames, label, f"{path}:{line_no}"))
    if not records:
        raise AnnotationError(f"{path}: the list file has no entries")
    dead = empty_entries(records)
    if dead:
        # Frame extraction that failed leaves such lines (a widely used HMDB-51 list has 16).
        logger.warning(
            "%s: %d entries have 0 frames and are read as unreadable videos: %s",
            path,
            len(dead),
            describe_entries(dead),
        )
    return records


def empty_entries(records: Sequence[VideoRecord]) -> list[VideoRecord]:
    """The frame-list records whose frame count is 0 (dead entries of an extraction run)."""
    return [r for r in records if r.num_frames == 0]


def describe_entries(records: Sequence[VideoRecord], limit: int = 20) -> str:
    """``"list.txt:12 (dir/a), ..."`` for messages (at most ``limit`` named, the rest counted)."""
    named = [f"{r.source or '?'} ({r.path})" for r in records[:limit]]
    more = len(records) - limit
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def _parse_int(text: str, what: str, path: Path, line_no: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise AnnotationError(
            f"{path.name}:{line_no}: {what} {text!r} is not an integer ({path})"
        ) from None


def write_annotations(path: str | Path, records: Iterable[VideoRecord]) -> Path:
    """Write records as a list file (frame lines when ``num_frames`` is set, else video lines)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for record in records:
        if any(ch.isspace() for ch in record.path):
            raise AnnotationError(
                f"cannot write {record.path!r} to {path}: list files split on whitespace; "
                "rename the file or folder"
            )
        if record.num_frames is None:
            lines.append(f"{record.path} {record.label}\n")
        else:
            lines.append(f"{record.path} {record.num_frames} {record.label}\n")
    path.write_text("".join(lines), encoding="utf-8")
    return path


def select_classes(records: Sequence[VideoRecord], class_ids: Sequence[int]) -> list[VideoRecord]:
    """Records of the given classes, relabelled to their position in ``class_ids``.

    Used for zero-shot class subsets: with ``class_ids = [7, 2]``, clips of class 7 get label 0
    and clips of class 2 get label 1, matching a classifier built for ``[names[7], names[2]]``.
    """
    position = {int(c): i for i, c in enumerate(class_ids)}
    if len(position) != len(class_ids):
        raise ValueError(f"class_ids contains duplicates: {list(class_ids)}")
    return [
        VideoRecord(r.path, r.num_frames, position[r.label]) for r in records if r.label in position
    ]

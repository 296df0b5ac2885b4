"""Class names: the one rule that normalises, checks and matches them.

- :func:`normalize_class_name` turns a dataset label into the words a text encoder reads
  (``ApplyEyeMakeup`` -> ``apply eye makeup``).
- :func:`check_distinct_names` is the one duplicate check: two names that are the same, or read
  the same after normalisation, would get identical text-classifier rows. Label files, label lists
  given to :class:`~text4vis.predict.Predictor` and prepared datasets all go through it.
- :func:`match_class_names` finds names among a model's or a file's class names: as written,
  else after normalisation (``red thing`` is the class ``RedThing``).
- :func:`read_labels` and :func:`write_labels` read and write the label CSV of a dataset (header
  ``id,name``; ids 0..C-1, each once; names kept as written). Its errors are
  :class:`~text4vis.data.annotations.AnnotationError`, like those of the list files beside it.
- :func:`check_labels`, :func:`read_label_file` and :func:`parse_labels` read the label lists
  users give (a Python list, a label file, or ``--labels a,b,c``).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from pathlib import Path

from text4vis.data.annotations import AnnotationError
from text4vis.errors import DataError, MissingFileError, read_user_text

__all__ = [
    "LabelError",
    "check_distinct_names",
    "check_labels",
    "match_class_names",
    "normalize_class_name",
    "parse_labels",
    "read_label_file",
    "read_labels",
    "write_labels",
]


LabelError = DataError  # the older name, kept importable


def normalize_class_name(name: str) -> str:
    """Turn a dataset label into words: ``ApplyEyeMakeup`` -> ``apply eye makeup``.

    Underscores and hyphens become spaces, camel case is split (``YoYo`` -> ``yo yo``,
    ``HTMLParser`` -> ``html parser``), the result is lower case with single spaces.
    """
    text = re.sub(r"[_\-]+", " ", name.strip())
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", text)
    text = re.sub(r"(?<=[A-Z])(?=[A-Z][a-z])", " ", text)
    return re.sub(r"\s+", " ", text).strip().lower()


def check_distinct_names(
    names: Sequence[str], source: str, error: type[Exception] = LabelError
) -> None:
    """Raise ``error`` when two names are the same or read the same after normalisation.

    Args:
        names: class names in class-id order.
        source: where they came from (a file name, ``--labels``), named in the message.
        error: the exception type to raise (callers keep their own error family).
    """
    seen: dict[str, int] = {}
    for class_id, name in enumerate(names):
        key = normalize_class_name(name)
        if key in seen:
            first = seen[key]
            if names[first] == name:
                raise error(
                    f"{source}: classes {first} and {class_id} are both {name!r} (it appears "
                    "twice); give every class a distinct name"
                )
            raise error(
                f"{source}: classes {first} ({names[first]!r}) and {class_id} ({name!r}) both "
                f"read {key!r} as text, so their classifier rows would be identical; give every "
                "class a distinct name"
            )
        seen[key] = class_id


def match_class_names(wanted: Sequence[str], names: Sequence[str]) -> list[int | None]:
    """The position in ``names`` of every wanted name, or None where it is not there.

    A name matches as written, else after :func:`normalize_class_name` (the first of ``names``
    that reads the same). This is the one matching rule of the package.
    """
    exact = {name: i for i, name in enumerate(names)}
    normalised: dict[str, int] = {}
    for i, name in enumerate(names):
        normalised.setdefault(normalize_class_name(name), i)
    return [exact.get(name, normalised.get(normalize_class_name(name))) for name in wanted]


def read_labels(path: str | Path) -> list[str]:
    """Class names in id order from a CSV with header ``id,name``.

    Raises:
        AnnotationError: missing header, a bad or duplicate id, ids not covering 0..C-1, or two
            names that are the same after normalisation (``PlayingGuitar`` = ``playing guitar``).
        MissingFileError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"label file {path} does not exist")
    text = read_user_text(path, AnnotationError)
    try:
        rows = list(csv.reader(io.StringIO(text, newline="")))
    except csv.Error as exc:  # e.g. a NUL byte
        raise AnnotationError(f"{path}: not a CSV file ({exc})") from None
    if not rows or [c.strip().lower() for c in rows[0][:2]] != ["id", "name"]:
        got = ",".join(rows[0]) if rows else "an empty file"
        raise AnnotationError(f"{path}:1: expected the header 'id,name', got {got!r}")
    names: dict[int, str] = {}
    for line_no, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) < 2:
            raise AnnotationError(f"{path}:{line_no}: expected 'id,name', got {','.join(row)!r}")
        try:
            class_id = int(row[0])
        except ValueError:
            raise AnnotationError(
                f"{path}:{line_no}: class id {row[0]!r} is not an integer"
            ) from None
        # A name may contain commas (unquoted); keep everything after the first one.
        name = ",".join(row[1:]).strip()
        if class_id in names:
            raise AnnotationError(
                f"{path}:{line_no}: duplicate id {class_id} (already {names[class_id]!r}); "
                "each id must appear once"
            )
        if not name:
            raise AnnotationError(f"{path}:{line_no}: class {class_id} has an empty name")
        names[class_id] = name
    if not names:
        raise AnnotationError(f"{path}: no classes after the header")
    expected = set(range(len(names)))
    if set(names) != expected:
        missing = sorted(expected - set(names))[:5]
        extra = sorted(set(names) - expected)[:5]
        raise AnnotationError(
            f"{path}: ids must be 0..{len(names) - 1} with none missing; "
            f"missing {missing}, out of range {extra}"
        )
    ordered = [names[i] for i in range(len(names))]
    check_distinct_names(ordered, str(path), AnnotationError)
    return ordered


def write_labels(path: str | Path, class_names: Sequence[str]) -> Path:
    """Write class names as a label CSV ``id,name`` (ids in list order)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")  # a text file people edit
        writer.writerow(["id", "name"])
        for class_id, name in enumerate(class_names):
            writer.writerow([class_id, name])
    return path


def check_labels(labels: Sequence[str], source: str = "labels") -> list[str]:
    """Validate a label list: non-empty, no empty names, no duplicates
    (:func:`check_distinct_names`).

    Args:
        labels: label names.
        source: where they came from, for messages (a file name or ``--labels``).

    Returns:
        The labels as a list of stripped strings.

    Raises:
        LabelError: an empty list, a string instead of a list, an empty name or a duplicate.
    """
    if isinstance(labels, (str, bytes)):
        raise LabelError(
            f"{source}: expected a list of label names, got the string {labels!r}; "
            'pass e.g. ["dancing", "cooking"]'
        )
    names = [str(name).strip() for name in labels]
    if not names:
        raise LabelError(f"{source}: the label list is empty; give at least one label name")
    for position, name in enumerate(names):
        if not name:
            raise LabelError(f"{source}: label {position + 1} is empty; remove it or name it")
    check_distinct_names(names, source)
    return names


def read_label_file(path: str | Path) -> list[str]:
    """Label names from a file: a label CSV (header ``id,name``) or one label per line.

    In a one-per-line file, blank lines and lines starting with ``#`` are skipped. A file whose
    lines contain commas must be a label CSV with the ``id,name`` header (a comma-separated
    file without it is rejected rather than guessed at).

    Raises:
        MissingFileError: no such file.
        LabelError: not UTF-8 text, a CSV without the right header, or a bad label list.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"label file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LabelError(
            f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start}); give a label "
            "CSV `id,name` or a text file with one label per line"
        ) from None
    lines = [(number, line.strip()) for number, line in enumerate(text.splitlines(), start=1)]
    lines = [(number, line) for number, line in lines if line and not line.startswith("#")]
    if not lines:
        raise LabelError(f"{path}: the label file has no labels")
    first = [cell.strip().lower() for cell in lines[0][1].split(",")]
    if first[:2] == ["id", "name"]:
        return check_labels(read_labels(path), str(path))
    with_comma = [(number, line) for number, line in lines if "," in line]
    if with_comma:
        number, line = with_comma[0]
        raise LabelError(
            f"{path}:{number}: {line!r} contains a comma, but the file has no 'id,name' header; "
            "a label CSV starts with the header line 'id,name', a plain label list has one "
            "label per line and no commas"
        )
    return check_labels([line for _, line in lines], str(path))


def parse_labels(spec: str) -> list[str]:
    """Labels from a command-line value: a label file, or names separated by commas.

    A value naming an existing file is read with :func:`read_label_file`. A value that looks like
    a file name (a path separator, or a ``.csv`` / ``.txt`` suffix) but does not exist is an error
    rather than one label called ``labels.csv``.

    Raises:
        MissingFileError: a file name that does not exist.
        LabelError: an empty name (``"a,,b"``), duplicates, or a bad label file.
    """
    if not spec.strip():
        return check_labels([], "--labels")
    if Path(spec).is_file():
        return read_label_file(spec)
    looks_like_file = os.sep in spec or "/" in spec or spec.lower().endswith((".csv", ".txt"))
    if looks_like_file and "," not in spec:
        raise MissingFileError(
            f"--labels {spec}: no such label file; give an existing file (label CSV 'id,name' or "
            "one label per line) or names separated by commas, e.g. --labels 'dancing,cooking'"
        )
    names = [part.strip() for part in spec.split(",")]
    if any(not name for name in names):
        raise LabelError(
            f"--labels {spec!r}: an empty label between commas; write names separated by single "
            "commas, e.g. 'dancing,cooking'"
        )
    return check_labels(names, "--labels")

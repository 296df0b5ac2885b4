"""Class names: normalisation, the duplicate check, matching, label lists and label files."""

from __future__ import annotations

from pathlib import Path

import pytest

from text4vis.data.annotations import AnnotationError
from text4vis.data.labels import (
    LabelError,
    check_labels,
    match_class_names,
    normalize_class_name,
    parse_labels,
    read_label_file,
    read_labels,
)


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ("ApplyEyeMakeup", "apply eye makeup"),
        ("playing_guitar", "playing guitar"),
        ("YoYo", "yo yo"),
        ("riding a bike", "riding a bike"),
        ("HTMLParser", "html parser"),
        ("tai-chi", "tai chi"),
    ],
)
def test_normalize_class_name(raw, words):
    assert normalize_class_name(raw) == words


def _write_labels(path: Path, names: list[str]) -> Path:
    path.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(names)))
    return path


@pytest.mark.parametrize("second", ["RedThing", "red thing", "red_thing"])
def test_label_file_with_duplicate_names_is_an_error(tmp_path: Path, second: str) -> None:
    path = _write_labels(tmp_path / "labels.csv", ["RedThing", "green", second])
    with pytest.raises(AnnotationError, match=r"labels\.csv: classes 0 .*and 2 .*distinct name"):
        read_labels(path)


def test_label_file_with_distinct_names_reads(tmp_path: Path) -> None:
    path = _write_labels(tmp_path / "labels.csv", ["RedThing", "red", "thing"])
    assert read_labels(path) == ["RedThing", "red", "thing"]


def test_label_specs_and_files(tmp_path: Path) -> None:
    assert parse_labels(" dancing , cooking,surfing ") == ["dancing", "cooking", "surfing"]
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("id,name\n1,cooking\n0,dancing\n")
    assert parse_labels(str(csv_file)) == ["dancing", "cooking"]  # id order
    lines = tmp_path / "labels.txt"
    lines.write_text("# my labels\ndancing\n\nplaying guitar\n")
    assert read_label_file(lines) == ["dancing", "playing guitar"]

    bad = {
        "a,,b": "empty label",
        "a,b,a": "appears twice",
        "PlayingGuitar,playing guitar": "both read 'playing guitar'",
    }
    for spec, message in bad.items():
        with pytest.raises(LabelError, match=message):
            parse_labels(spec)
    with pytest.raises(FileNotFoundError, match="no such label file"):
        parse_labels(str(tmp_path / "missing.csv"))
    wrong_header = tmp_path / "wrong.csv"
    wrong_header.write_text("name,id\ndancing,0\n")
    with pytest.raises(LabelError, match="'id,name' header"):
        read_label_file(wrong_header)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n# nothing\n")
    with pytest.raises(LabelError, match="no labels"):
        read_label_file(empty)
    binary = tmp_path / "labels.bin"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(LabelError, match="UTF-8"):
        read_label_file(binary)
    with pytest.raises(LabelError, match="list of label names"):
        check_labels("dancing")  # a string is not a list of labels


def test_match_class_names_as_written_then_normalised() -> None:
    names = ["RedThing", "red thing", "green_thing"]
    # "red thing" is found as written (row 1), not through the normalised "RedThing" (row 0)
    assert match_class_names(["red thing", "RedThing", "green thing", "blue"], names) == [
        1,
        0,
        2,
        None,
    ]

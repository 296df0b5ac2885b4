"""List files and label files: parsing and errors that name file and line."""

from __future__ import annotations

import pytest

from text4vis.data import AnnotationError, VideoRecord, read_annotations, read_labels
from text4vis.data.annotations import select_classes, write_annotations
from text4vis.data.labels import write_labels


def test_roundtrip_video_and_frame_lists(tmp_path):
    records = [VideoRecord("a/x.mp4", None, 0), VideoRecord("b/y", 31, 2)]
    path = write_annotations(tmp_path / "list.txt", records)
    assert read_annotations(path) == records
    labels = write_labels(tmp_path / "labels.csv", ["jump", "run, fast", "sit"])
    assert read_labels(labels) == ["jump", "run, fast", "sit"]


def test_comments_and_blank_lines_are_skipped(tmp_path):
    path = tmp_path / "l.txt"
    path.write_text("# header\n\na.mp4 1\n  \nb 10 0\n")
    assert [r.path for r in read_annotations(path)] == ["a.mp4", "b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.mp4 0\nlonely\n", r"train.txt:2: expected 2 or 3 fields .* got 1"),
        ("a.mp4 0\nb 1 2 3\n", r"train.txt:2: expected 2 or 3 fields .* got 4"),
        ("a.mp4 zero\n", r"train.txt:1: label 'zero' is not an integer"),
        ("dir x 1\n", r"train.txt:1: frame count 'x' is not an integer"),
        ("dir -1 1\n", r"train.txt:1: frame count must be 0 or more"),
        ("a.mp4 0\nb.mp4 412\n", r"train.txt:2: label 412 out of range for 400 classes"),
        ("a.mp4 -1\n", r"train.txt:1: label -1 out of range"),
        ("\n# nothing\n", r"no entries"),
    ],
)
def test_list_errors_name_file_and_line(tmp_path, text, message):
    path = tmp_path / "train.txt"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        read_annotations(path, num_classes=400)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,id\n0,a\n", r"labels.csv:1: expected the header 'id,name'"),
        ("id,name\n0,a\n0,b\n", r"labels.csv:3: duplicate id 0"),
        ("id,name\n0,a\nx,b\n", r"labels.csv:3: class id 'x' is not an integer"),
        ("id,name\n0,a\n2,b\n", r"ids must be 0..1 .*missing \[1\].*out of range \[2\]"),
        ("id,name\n0,\n", r"labels.csv:2: class 0 has an empty name"),
        ("id,name\n", r"no classes"),
    ],
)
def test_label_errors(tmp_path, text, message):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    with pytest.raises(AnnotationError, match=message):
        read_labels(path)


def test_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.txt"):
        read_annotations(tmp_path / "nope.txt")
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        read_labels(tmp_path / "nope.csv")


def test_select_classes_relabels_in_subset_order():
    records = [VideoRecord(f"{i}.mp4", None, i % 4) for i in range(8)]
    subset = select_classes(records, [3, 1])
    assert [(r.path, r.label) for r in subset] == [
        ("1.mp4", 1),
        ("3.mp4", 0),
        ("5.mp4", 1),
        ("7.mp4", 0),
    ]


@pytest.mark.process
def test_importing_the_data_package_is_light():
    import subprocess
    import sys

    code = (
        "import sys, text4vis.data as d; d.read_labels; "
        "print(sorted(m for m in ('av', 'torch', 'torchvision') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

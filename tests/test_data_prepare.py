"""`text4vis prepare`: list files from class folders, frame extraction, readability check."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from text4vis.cli import main
from text4vis.data import open_video, read_annotations, read_labels
from text4vis.data.annotations import AnnotationError
from text4vis.data.synthetic import code_frames, read_frame_index, write_frame_folder, write_mp4


@pytest.fixture
def class_folders(tmp_path) -> Path:
    root = tmp_path / "videos"
    for c, name in enumerate(["walk", "jump", "clap"]):
        for k in range(4):
            write_mp4(root / name / f"v{k}.mp4", code_frames(10 + k, 48, 64, seed=10 * c + k))
    (root / "jump" / "readme.txt").write_text("not listed: not a video suffix")
    return root


def test_lists_from_class_folders(class_folders, tmp_path):
    out = tmp_path / "lists"
    assert (
        main(["prepare", "lists", str(class_folders), "--out", str(out), "--val-fraction", "0.25"])
        == 0
    )
    assert read_labels(out / "labels.csv") == ["clap", "jump", "walk"]  # sorted folder order
    train, val = read_annotations(out / "train.txt"), read_annotations(out / "val.txt")
    assert len(train) == 9 and len(val) == 3 and sorted(r.label for r in val) == [0, 1, 2]
    for record in train + val:
        assert record.num_frames is None
        assert (out / record.path).is_file()  # paths relative to the list's folder
        assert Path(record.path).parent.name == ["clap", "jump", "walk"][record.label]


def test_lists_from_frame_folders(tmp_path):
    root = tmp_path / "frames"
    for name in ("a", "b"):
        write_frame_folder(root / name / "clip", code_frames(7, 48, 64))
    out = tmp_path / "lists"
    assert main(["prepare", "lists", str(root), "--out", str(out), "--format", "frames"]) == 0
    records = read_annotations(out / "train.txt")
    assert [(r.num_frames, r.label) for r in records] == [(7, 0), (7, 1)]


def test_check_reports_exactly_the_unreadable_entries(class_folders, tmp_path, capsys):
    good = class_folders / "walk" / "v0.mp4"
    (class_folders / "walk" / "empty.mp4").write_bytes(b"")
    (class_folders / "walk" / "cut.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (class_folders / "clap" / "text.mp4").write_text("hello\n" * 30)
    out = tmp_path / "lists"
    main(["prepare", "lists", str(class_folders), "--out", str(out)])
    report = tmp_path / "bad.txt"
    status = main(
        ["prepare", "check", str(out / "train.txt"), "--out", str(report), "--workers", "1"]
    )
    assert status == 1
    lines = report.read_text().splitlines()
    names = sorted(Path(line.split("\t")[0]).name for line in lines)
    assert names == ["cut.mp4", "empty.mp4", "text.mp4"]
    assert all(line.split("\t")[1] for line in lines)
    assert "empty.mp4" in capsys.readouterr().out


def test_check_passes_on_good_lists(class_folders, tmp_path):
    out = tmp_path / "lists"
    main(["prepare", "lists", str(class_folders), "--out", str(out)])
    assert main(["prepare", "check", str(out / "train.txt"), "--workers", "2"]) == 0
    assert (out / "train.txt.unreadable.txt").read_text() == ""


def test_frame_extraction(class_folders, tmp_path):
    lists = tmp_path / "lists"
    main(["prepare", "lists", str(class_folders), "--out", str(lists)])
    (class_folders / "walk" / "broken.mp4").write_bytes(b"\x00" * 100)
    with (lists / "train.txt").open("a") as handle:
        handle.write("../videos/walk/broken.mp4 2\n")
    frames = tmp_path / "frames"
    args = ["prepare", "frames", str(lists / "train.txt"), "--out", str(frames)]
    assert main([*args, "--short-side", "48", "--workers", "2"]) == 1  # one failure reported
    records = read_annotations(frames / "train_frames.txt")
    assert len(records) == 12 and all(".." not in r.path for r in records)
    assert "broken.mp4" in (frames / "extract_failures.txt").read_text()
    first = records[0]
    reader = open_video(frames / first.path, num_frames=first.num_frames)
    assert reader.num_frames == first.num_frames == 10
    assert [read_frame_index(f) for f in reader.frames(range(10))] == list(range(10))
    small = tmp_path / "small"
    main(
        [
            "prepare",
            "frames",
            str(lists / "train.txt"),
            "--out",
            str(small),
            "--short-side",
            "24",
            "--workers",
            "1",
        ]
    )
    image = Image.open(small / first.path / "img_00001.jpg")
    assert image.size == (32, 24)  # 64x48 with the short side at 24


def _class_folders(root: Path, names: list[str]) -> Path:
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(2):
            (root / name / f"c{i}.mp4").write_bytes(b"")  # only listed, never decoded
    return root


def test_prepare_lists_names_every_spaced_path_and_writes_nothing(tmp_path: Path) -> None:
    from text4vis.data.prepare import make_lists

    root = _class_folders(tmp_path / "videos", ["archery", "blue thing"])
    out = tmp_path / "lists"
    with pytest.raises(AnnotationError, match=r"2 clip path\(s\) .*blue thing/c0.*blue thing/c1"):
        make_lists(root, out)
    assert not (out / "labels.csv").exists() and not (out / "train.txt").exists()


def test_prepare_lists_refuses_classes_that_read_the_same(tmp_path: Path) -> None:
    from text4vis.data.prepare import make_lists

    root = _class_folders(tmp_path / "videos", ["RedThing", "red_thing"])
    with pytest.raises(AnnotationError, match="both read 'red thing'"):
        make_lists(root, tmp_path / "lists")


def test_prepare_lists_writes_labels_with_unix_line_ends(tmp_path: Path) -> None:
    from text4vis.data.prepare import make_lists

    root = _class_folders(tmp_path / "videos", ["archery", "bowling"])
    paths = make_lists(root, tmp_path / "lists")
    assert Path(paths["labels"]).read_bytes() == b"id,name\n0,archery\n1,bowling\n"
    assert read_labels(paths["labels"]) == ["archery", "bowling"]

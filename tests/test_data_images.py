"""Single image files as one-frame videos (image recognition with T = 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from text4vis.config import Config
from text4vis.data import (
    ImageReader,
    VideoDecodeError,
    build_dataset,
    build_loader,
    open_video,
    write_labels,
)
from text4vis.data.transforms import EvalTransform

SIZE = 32
RESIZE = 36


def _pixels(seed: int, height: int = 40, width: int = 52) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _write(path: Path, pixels: np.ndarray, fmt: str, **options) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format=fmt, **options)
    return path


@pytest.mark.parametrize(
    ("name", "fmt", "options"),
    [
        ("a.png", "PNG", {}),
        ("b.PNG", "PNG", {}),  # suffixes match in any case
        ("c.bmp", "BMP", {}),
        ("d.webp", "WEBP", {"lossless": True}),
        ("e.JPEG", "PNG", {}),  # a PNG named .JPEG (ImageNet has some): decoded by content
    ],
)
def test_image_file_is_a_one_frame_video_with_exact_pixels(tmp_path, name, fmt, options):
    pixels = _pixels(3)
    path = _write(tmp_path / name, pixels, fmt, **options)
    reader = open_video(path)
    assert isinstance(reader, ImageReader)
    assert reader.num_frames == 1
    clip = reader.frames([0])
    assert clip.dtype == np.uint8 and clip.shape == (1, 40, 52, 3)
    np.testing.assert_array_equal(clip[0], pixels)
    # Samplers repeat the only frame when T > 1: each row is the image.
    repeated = reader.frames([0] * 8)
    assert repeated.shape == (8, 40, 52, 3)
    assert all(np.array_equal(frame, pixels) for frame in repeated)


def test_jpeg_image_decodes_close_to_its_source_whatever_the_decoder_name(tmp_path):
    pixels = np.repeat(np.repeat(_pixels(5, 5, 6), 8, axis=0), 8, axis=1)  # smooth 40 x 48
    path = _write(tmp_path / "n01440764" / "x.JPEG", pixels, "JPEG", quality=100, subsampling=0)
    reader = open_video(path, decoder="decord")  # the suffix decides, not the video decoder
    assert isinstance(reader, ImageReader)
    clip = reader.frames([0, 0])
    assert clip.shape == (2, 40, 48, 3)
    error = np.abs(clip[0].astype(int) - pixels.astype(int)).mean()
    other = np.abs(clip[0].astype(int) - _pixels(6, 40, 48).astype(int)).mean()
    assert error < 3 < other, (error, other)  # lossy, but this image and not another


def test_frame_index_other_than_zero_is_an_error_naming_the_file(tmp_path):
    path = _write(tmp_path / "one.png", _pixels(1), "PNG")
    reader = open_video(path)
    with pytest.raises(VideoDecodeError, match=r"one\.png.*frame index 1") as info:
        reader.frames([0, 1])
    assert info.value.path == str(path)
    with pytest.raises(VideoDecodeError, match="one.png"):
        reader.frames([-1])


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("broken.jpg", b"\xff\xd8\xff\xe0" + b"\x00garbage" * 20),  # JPEG magic, bad body
        ("broken.png", b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4),
        ("noise.webp", bytes(range(256))),
        ("empty.bmp", b""),
    ],
)
def test_corrupt_image_raises_the_typed_error_naming_the_file(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(VideoDecodeError, match=rf"cannot read image .*{name}") as info:
        open_video(path).frames([0])
    assert info.value.path == str(path)


def test_missing_image_raises_the_typed_error(tmp_path):
    with pytest.raises(VideoDecodeError, match=r"gone\.jpg.*no such file"):
        open_video(tmp_path / "gone.jpg")


def _image_list(tmp_path: Path) -> tuple[Config, list[np.ndarray]]:
    images = [_pixels(10 + i) for i in range(4)]
    root = tmp_path / "imagenet"
    lines = []
    for i, pixels in enumerate(images):
        rel = f"images/n0144076{i % 2}/x{i}.JPEG"
        _write(root / rel, pixels, "PNG")  # PNG content: exact pixels behind a .JPEG name
        lines.append(f"{rel} {i % 2}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    write_labels(root / "labels.csv", ["tench", "goldfish"])
    cfg = Config()
    cfg.data.root = str(root)
    cfg.data.train_list = str(root / "train.txt")
    cfg.data.val_list = str(root / "train.txt")
    cfg.data.labels = str(root / "labels.csv")
    cfg.data.format = "video"
    cfg.data.num_segments = 1
    cfg.data.input_size = SIZE
    cfg.data.resize_size = RESIZE
    cfg.data.num_workers = 0
    cfg.data.batch_size = 2
    cfg.eval.batch_size = 2
    return cfg, images


def test_dataset_reads_an_image_list_as_one_frame_clips(tmp_path):
    cfg, images = _image_list(tmp_path)
    train = build_dataset(cfg, "train")
    item = train[1]
    assert item["video"].shape == (1, 1, 3, SIZE, SIZE)  # [V, T, 3, S, S]
    assert item["label"] == 1 and not item["failures"]
    val = build_dataset(cfg, "val")
    item = val[2]
    assert item["video"].shape == (1, 1, 3, SIZE, SIZE)
    # The clip is this image through the evaluation transform, not another one.
    expected = EvalTransform(SIZE, resize_size=RESIZE)(images[2][None])  # [1, 1, 3, S, S]
    torch.testing.assert_close(item["video"], expected, rtol=0, atol=0)
    assert not torch.equal(val[3]["video"], expected)
    batch = next(iter(build_loader(train, cfg, "train", seed=0)))
    assert batch["video"].shape == (2, 1, 1, 3, SIZE, SIZE)  # [B, V, T, 3, S, S]


def test_image_list_with_more_frames_repeats_the_image(tmp_path):
    cfg, images = _image_list(tmp_path)
    cfg.data.num_segments = 4
    item = build_dataset(cfg, "val")[0]
    assert item["video"].shape == (1, 4, 3, SIZE, SIZE)
    frames = item["video"][0]
    assert all(torch.equal(frames[t], frames[0]) for t in range(4))


def test_unreadable_image_in_a_list_is_a_typed_error_at_evaluation(tmp_path):
    cfg, _ = _image_list(tmp_path)
    bad = Path(cfg.data.root) / "images/n01440760/x0.JPEG"
    bad.write_bytes(b"\xff\xd8\xff" + b"\x01" * 64)
    val = build_dataset(cfg, "val")
    with pytest.raises(VideoDecodeError, match=r"x0\.JPEG"):
        val[0]
    # Training replaces it by another item and reports the failure.
    item = build_dataset(cfg, "train")[0]
    assert item["video"].shape == (1, 1, 3, SIZE, SIZE)
    assert item["failures"] and item["failures"][0][0].endswith("x0.JPEG")

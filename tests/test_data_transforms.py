"""Clip transforms: one set of random parameters per clip, views, normalisation, switches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from text4vis.config import DataConfig
from text4vis.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    EvalTransform,
    TrainTransform,
    build_transform,
    normalize_video,
    three_crops,
)


def _textured_frame(height: int = 72, width: int = 96, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)


def test_same_parameters_for_every_frame_new_ones_per_clip():
    transform = TrainTransform(32, grayscale=0.5)
    clip = np.repeat(_textured_frame()[None], 6, axis=0)  # [T,H,W,3]: identical frames
    outputs = []
    for seed in range(6):
        torch.manual_seed(seed)
        out = transform(clip)
        assert out.shape == (1, 6, 3, 32, 32) and out.dtype == torch.uint8
        # Identical frames stay identical: crop, flip, grayscale, RandAugment drawn once.
        assert torch.equal(out[0, 0], out[0, 5]) and torch.equal(out[0, 2], out[0, 3])
        outputs.append(out)
    assert len({o.sum().item() for o in outputs}) == len(outputs)  # new parameters per clip


def test_flip_alone_flips_all_frames_together():
    transform = TrainTransform(
        48, random_resized_crop=False, resize_size=48, grayscale=0, randaugment=False
    )
    frame = _textured_frame(48, 48)
    clip = np.stack([frame, frame[::-1]])  # two different frames
    flipped_any = False
    for seed in range(8):
        torch.manual_seed(seed)
        out = transform(clip)[0]
        plain = torch.from_numpy(clip).permute(0, 3, 1, 2)
        mirrored = plain.flip(-1)
        both_plain = torch.equal(out, plain)
        both_flipped = torch.equal(out, mirrored)
        assert both_plain or both_flipped  # never one frame flipped and the other not
        flipped_any |= both_flipped
    assert flipped_any


def test_normalize_matches_formula():
    x = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8)
    mean = torch.tensor(CLIP_MEAN).view(3, 1, 1)
    std = torch.tensor(CLIP_STD).view(3, 1, 1)
    expected = (x.float() / 255 - mean) / std
    assert torch.allclose(normalize_video(x), expected, atol=1e-5)


def test_model_normalises_uint8_frames_like_the_formula():
    # The loaders give uint8 clips; the model normalises them on its device, and a float clip
    # already normalised gives the same embedding.
    from text4vis.models.backbones import create_clip, embed_dim_of
    from text4vis.models.temporal import build_temporal_head
    from text4vis.models.video import VideoRecognizer

    torch.manual_seed(0)
    clip = create_clip("tiny-vit", None, image_size=32)
    dim = embed_dim_of(clip)
    model = VideoRecognizer(
        clip.visual,
        build_temporal_head("mean", embed_dim=dim, visual=clip.visual),
        None,
        [],
        embed_dim=dim,
        logit_scale=100.0,
    ).eval()
    pixels = torch.randint(0, 256, (2, 3, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        from_uint8 = model.encode_video(pixels)
        from_float = model.encode_video(normalize_video(pixels))
        from_raw = model.encode_video(pixels.float())  # unnormalised floats: a different input
    assert torch.equal(from_uint8, from_float)
    assert not torch.allclose(from_uint8, from_raw, atol=1e-3)
    with pytest.raises(TypeError, match="uint8"):
        model.encode_video(pixels.to(torch.int32))


def test_eval_center_and_three_crops():
    # A landscape frame whose red channel is the column index: crops are identified by it.
    height, width = 64, 128
    frame = np.zeros((height, width, 3), dtype=np.uint8)
    frame[..., 0] = np.arange(width, dtype=np.uint8)[None]
    clip = np.repeat(frame[None], 3, axis=0)
    single = EvalTransform(32, resize_size=64, num_crops=1)(clip)
    assert single.shape == (1, 3, 3, 32, 32)
    three = EvalTransform(32, resize_size=64, num_crops=3)(clip)
    assert three.shape == (3, 3, 3, 32, 32)
    assert three.dtype == torch.uint8  # normalised in the model, not here
    red = three[:, 0, 0].float()
    left, centre, right = (float(red[v, 16, 0]) for v in range(3))
    assert left == pytest.approx(0, abs=1) and right == pytest.approx(96, abs=1)
    assert centre == pytest.approx(48, abs=1)
    assert torch.allclose(three[1], single[0])  # the middle crop is the centre crop


def test_three_crops_portrait_and_too_small():
    video = torch.arange(40 * 20).view(1, 1, 40, 20)
    tops = [int(c[0, 0, 0, 0]) // 20 for c in three_crops(video, 20)]
    assert tops == [0, 10, 20]
    with pytest.raises(ValueError, match="crops"):
        three_crops(video, 24)


def test_config_switches_build_the_right_steps():
    on = build_transform(DataConfig(input_size=32), train=True)
    names = [type(t).__name__ for t in on.augment.transforms]
    assert names == ["RandomResizedCrop", "RandomHorizontalFlip", "RandomGrayscale", "RandAugment"]
    off = build_transform(
        DataConfig(
            input_size=32,
            resize_size=40,
            random_resized_crop=False,
            flip=False,
            grayscale=0.0,
            randaugment=False,
        ),
        train=True,
    )
    assert [type(t).__name__ for t in off.augment.transforms] == ["Resize", "RandomCrop"]
    ra = on.augment.transforms[-1]
    assert (ra.num_ops, ra.magnitude) == (2, 9)
    evaluation = build_transform(
        DataConfig(input_size=32, resize_size=36, num_crops=3), train=False
    )
    assert isinstance(evaluation, EvalTransform) and evaluation.num_crops == 3
    with pytest.raises(ValueError, match="num_crops"):
        build_transform(DataConfig(num_crops=2), train=False)


def test_planar_copy_keeps_values_and_makes_rows_contiguous():
    from text4vis.data.transforms import _planar_copy

    pixels = torch.randint(0, 256, (2, 5, 7, 9, 3), dtype=torch.uint8)  # [..., H, W, 3] storage
    channels_last = pixels.permute(0, 1, 4, 2, 3)  # [..., 3, H, W] view, as the crop gives
    out = _planar_copy(channels_last)
    assert out.is_contiguous() and torch.equal(out, channels_last)
    cropped = channels_last[..., 1:6, 2:8]  # a view that is not a whole channels-last tensor
    assert torch.equal(_planar_copy(cropped), cropped) and _planar_copy(cropped).is_contiguous()
    plain = torch.randint(0, 256, (4, 3, 6, 6), dtype=torch.uint8)
    assert _planar_copy(plain) is plain  # already contiguous: no copy

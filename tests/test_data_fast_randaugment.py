"""text4vis's RandAugment: its uint8 kernels give the bytes of v2's kernels, draws are v2's."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from text4vis.data.transforms import _rand_augment_class


def _clip(seed: int = 0, frames: int = 3, height: int = 40, width: int = 52) -> torch.Tensor:
    """uint8 [T, 3, H, W]: smooth gradients plus noise (so contrast/equalize see real histograms),
    one frame nearly flat and one with a constant channel (edge cases of the per-plane tables)."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.linspace(30, 200, width)[None, :] + torch.linspace(0, 50, height)[:, None]
    base = base[None, None]  # [1,1,H,W]
    noise = torch.randint(-40, 41, (frames, 3, height, width), generator=gen)
    clip = (base + noise).clamp(0, 255).to(torch.uint8)
    clip[1] = 128 + (clip[1] > 100).to(torch.uint8)  # nearly flat: two values
    clip[2, 1] = 77  # a constant channel
    return clip


OPS = ["Brightness", "Color", "Contrast", "Sharpness", "Solarize", "AutoContrast", "Equalize"]
OPS += ["TranslateX", "TranslateY", "ShearX", "ShearY", "Rotate"]


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_fast_kernels_match_v2(op, sign):
    fast = _rand_augment_class()(num_ops=2, magnitude=9)
    reference = v2.RandAugment(num_ops=2, magnitude=9)
    clip = tv_tensors.Video(_clip())
    size = clip.shape[-2:]
    for magnitude_bin in (0, 9, 30):
        magnitudes_fn, signed = reference._AUGMENTATION_SPACE[op]
        magnitudes = magnitudes_fn(31, *size)
        magnitude = float(magnitudes[magnitude_bin]) if magnitudes is not None else 0.0
        if signed:
            magnitude *= sign
        args = (op, magnitude, v2.InterpolationMode.NEAREST, {})
        expected = reference._apply_image_or_video_transform(clip, *args)
        got = fast._apply_image_or_video_transform(clip, *args)
        assert type(got) is tv_tensors.Video and got.dtype == torch.uint8
        assert torch.equal(got.as_subclass(torch.Tensor), expected.as_subclass(torch.Tensor)), (
            op,
            magnitude,
        )


@pytest.mark.parametrize("op", OPS)
def test_fast_kernels_match_v2_at_training_size(op):
    # 224 x 224 (and an odd size): torch's vector loops and their scalar tails both run, so a
    # kernel whose arithmetic differed from v2's in either would show here.
    fast = _rand_augment_class()(num_ops=2, magnitude=9)
    reference = v2.RandAugment(num_ops=2, magnitude=9)
    for seed, (height, width) in enumerate([(224, 224), (61, 37)]):
        clip = tv_tensors.Video(_clip(seed=seed, frames=4, height=height, width=width))
        magnitudes_fn, signed = reference._AUGMENTATION_SPACE[op]
        magnitudes = magnitudes_fn(31, height, width)
        for magnitude_bin in (3, 17, 29):
            magnitude = float(magnitudes[magnitude_bin]) if magnitudes is not None else 0.0
            for sign in (1.0, -1.0) if signed else (1.0,):
                args = (op, sign * magnitude, v2.InterpolationMode.NEAREST, {})
                expected = reference._apply_image_or_video_transform(clip, *args)
                got = fast._apply_image_or_video_transform(clip, *args)
                assert torch.equal(
                    got.as_subclass(torch.Tensor), expected.as_subclass(torch.Tensor)
                ), (op, sign * magnitude, height, width)


def test_fast_kernels_on_channels_last_and_4d_views():
    # The crop of a permuted [T,H,W,3] clip is channels-last; results must not depend on layout.
    fast = _rand_augment_class()(num_ops=2, magnitude=9)
    clip = _clip(seed=1)
    strided = clip.permute(0, 2, 3, 1).contiguous().permute(0, 3, 1, 2)  # same values, NHWC
    for op in OPS:
        args = (op, 0.27, v2.InterpolationMode.NEAREST, {})
        a = fast._apply_image_or_video_transform(clip, *args)
        b = fast._apply_image_or_video_transform(strided, *args)
        assert torch.equal(a, b), op
        assert torch.equal(a, v2.RandAugment()._apply_image_or_video_transform(clip, *args)), op


def test_warps_take_the_cached_map_path_with_default_settings():
    # RandAugment keeps its interpolation as the string "nearest"; the fast warp must still run
    # (one cached source map per operation and magnitude) and match v2.
    fast = _rand_augment_class()(num_ops=2, magnitude=9)
    clip = tv_tensors.Video(_clip(seed=5))
    for op in ("Rotate", "ShearX", "ShearY"):
        args = (op, 8.0, fast.interpolation, fast._fill)
        got = fast._apply_image_or_video_transform(clip, *args)
        expected = v2.RandAugment()._apply_image_or_video_transform(clip, *args)
        assert torch.equal(got, expected), op
    assert len(fast.__dict__["_source_maps"]) == 3


def test_same_draws_as_v2_randaugment():
    # Same random stream -> same operations -> same output for a whole clip.
    fast = _rand_augment_class()(num_ops=2, magnitude=9)
    reference = v2.RandAugment(num_ops=2, magnitude=9)
    clip = tv_tensors.Video(_clip(seed=2))
    for seed in range(30):
        torch.manual_seed(seed)
        expected = reference(clip)
        torch.manual_seed(seed)
        assert torch.equal(fast(clip), expected), seed


def test_bilinear_warps_fall_back_to_v2():
    fast = _rand_augment_class()(
        num_ops=2, magnitude=9, interpolation=v2.InterpolationMode.BILINEAR
    )
    clip = _clip(seed=4)
    for op in ("Rotate", "ShearX", "TranslateY"):
        args = (op, 7.0, v2.InterpolationMode.BILINEAR, {})
        expected = v2.RandAugment()._apply_image_or_video_transform(clip, *args)
        assert torch.equal(fast._apply_image_or_video_transform(clip, *args), expected), op


def test_float_input_falls_back_to_v2():
    fast = _rand_augment_class()(num_ops=2, magnitude=9)
    clip = _clip(seed=3).float() / 255
    args = ("Equalize", 0.0, v2.InterpolationMode.NEAREST, {})
    assert torch.equal(
        fast._apply_image_or_video_transform(clip, *args),
        F.equalize(clip),
    )

"""Clip transforms with torchvision.transforms.v2 on uint8 video tensors [T, C, H, W].

A clip is wrapped as ``tv_tensors.Video`` so every v2 transform draws its random parameters once
per call and applies them to all frames of the clip; the next clip gets new ones. All geometric
and colour work runs on uint8, and the clips stay uint8: conversion to float and CLIP mean/std
normalisation (:func:`normalize_video`, one fused multiply-add) run in the model, on its device
(:meth:`~text4vis.models.video.VideoRecognizer.encode_frames`), so loaders collate, pin and copy a
quarter of the bytes and the CPU never writes float clips.

Training (the paper's table A.3, each step switchable through :class:`~text4vis.config.DataConfig`):
RandomResizedCrop(``input_size``) -> horizontal flip 0.5 -> RandomGrayscale(0.2) -> RandAugment(2, 9)
(float and normalise in the model). RandAugment is :func:`_rand_augment_class`'s subclass of v2's:
the same operations and draws, with kernels that give v2's bytes at a third to a half of the cost
(v2's float arithmetic with cheaper conversions, numpy for integer work, per-plane lookup tables
for Equalize, cached nearest-neighbour maps for the warps). The paper resizes the short side to 256
before RandomResizedCrop; because RandomResizedCrop draws its crop as a fraction of the image area
with an absolute aspect ratio, cropping the original frame gives the same distribution of crops, so
the extra resize pass is skipped (one interpolation instead of two, which is also slightly
sharper). With ``random_resized_crop=False`` training uses resize(``resize_size``) +
RandomCrop(``input_size``).

Evaluation: resize the short side to ``resize_size``, then a centre crop of ``input_size`` or, with
3 crops, left/centre/right (top/centre/bottom for portrait video) squares along the long side.

Transforms are callables ``frames -> uint8 [V, T, 3, S, S]`` taking uint8 [T, H, W, 3] (numpy or
torch) as the decoders return them; V = 1 for training and single-crop evaluation.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from text4vis.errors import ConfigError

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "EvalTransform",
    "TrainTransform",
    "build_transform",
    "normalization_affine",
    "normalize_video",
    "three_crops",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP's RGB mean
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)  # OpenAI CLIP's RGB std


def _to_video_tensor(frames: Any) -> torch.Tensor:
    """uint8 [T, H, W, 3] (numpy or torch) -> uint8 [T, 3, H, W] (a view when possible)."""
    tensor = torch.from_numpy(np.asarray(frames)) if not torch.is_tensor(frames) else frames
    if tensor.dtype != torch.uint8 or tensor.ndim != 4 or tensor.shape[-1] != 3:
        raise ValueError(
            f"expected uint8 frames [T, H, W, 3], got {tensor.dtype} {tuple(tensor.shape)}"
        )
    return tensor.permute(0, 3, 1, 2)  # [T,H,W,3] -> [T,3,H,W]


def _planar_copy(video: torch.Tensor) -> torch.Tensor:
    """Contiguous uint8 [..., 3, H, W] of a (channels-last) view; the same values.

    numpy's transposing copy of uint8 is about twice as fast as ``Tensor.contiguous()`` here
    (0.34 vs 0.68 ms for 8 x 224 x 224 x 3), and it runs on every training clip.
    """
    if video.is_contiguous():
        return video
    if video.dtype != torch.uint8 or video.ndim < 3:
        return video.contiguous()
    # Undo the permutation [..., H, W, 3] -> [..., 3, H, W] when the storage is channels-last.
    lead = video.ndim - 3
    hwc = video.permute(*range(lead), lead + 1, lead + 2, lead)
    if not hwc.is_contiguous():
        return video.contiguous()
    order = (*range(lead), lead + 2, lead, lead + 1)
    return torch.from_numpy(np.ascontiguousarray(hwc.numpy().transpose(order)))


def normalization_affine(
    mean: tuple[float, ...] = CLIP_MEAN, std: tuple[float, ...] = CLIP_STD
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` [3, 1, 1] with ``(x / 255 - mean) / std == x * scale - shift``."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(3, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)]).view(3, 1, 1)
    return scale, shift


def normalize_video(
    video: torch.Tensor,
    mean: tuple[float, ...] = CLIP_MEAN,
    std: tuple[float, ...] = CLIP_STD,
) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float32 ``(x / 255 - mean) / std`` as one multiply-add (the model
    does the same on its device with its own copy of :func:`normalization_affine`)."""
    scale, shift = normalization_affine(mean, std)
    return video.to(torch.float32).mul_(scale.to(video.device)).sub_(shift.to(video.device))


class TrainTransform:
    """Random clip augmentation, one set of parameters per clip.

    Args:
        input_size: crop size S.
        resize_size: short side before RandomCrop when ``random_resized_crop`` is off.
        random_resized_crop: use RandomResizedCrop (else resize + RandomCrop).
        crop_scale: RandomResizedCrop area range.
        flip: horizontal flip with probability 0.5.
        grayscale: grayscale probability (0 disables).
        randaugment: apply RandAugment(``randaugment_n``, ``randaugment_m``).
        randaugment_n: RandAugment operations per clip.
        randaugment_m: RandAugment magnitude.
    """

    def __init__(
        self,
        input_size: int = 224,
        *,
        resize_size: int = 256,
        random_resized_crop: bool = True,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        flip: bool = True,
        grayscale: float = 0.2,
        randaugment: bool = True,
        randaugment_n: int = 2,
        randaugment_m: int = 9,
    ) -> None:
        steps: list[Any] = []
        if random_resized_crop:
            steps.append(v2.RandomResizedCrop(input_size, scale=crop_scale, antialias=True))
        else:
            steps += [v2.Resize(resize_size, antialias=True), v2.RandomCrop(input_size)]
        if flip:
            steps.append(v2.RandomHorizontalFlip(0.5))
        if grayscale > 0:
            steps.append(v2.RandomGrayscale(grayscale))
        if randaugment:
            steps.append(_rand_augment_class()(num_ops=randaugment_n, magnitude=randaugment_m))
        self.augment = v2.Compose(steps)
        self.input_size = input_size

    def __call__(self, frames: Any) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> uint8 [1, T, 3, S, S] (random parameters drawn from torch's RNG)."""
        video = tv_tensors.Video(_to_video_tensor(frames))  # a view of the [T,H,W,3] frames
        first, *rest = self.augment.transforms
        # The crop of the channels-last view is channels-last; one small copy to contiguous
        # [T,3,S,S] makes the colour kernels run on plain rows.
        video = tv_tensors.wrap(_planar_copy(first(video).as_subclass(torch.Tensor)), like=video)
        for step in rest:
            video = step(video)
        out = video.as_subclass(torch.Tensor)  # [T,3,S,S] uint8
        return out.contiguous().unsqueeze(0)  # [T,3,S,S] -> [1,T,3,S,S]

    def __repr__(self) -> str:
        return f"TrainTransform({self.augment})"


def three_crops(video: torch.Tensor, size: int) -> list[torch.Tensor]:
    """Left/centre/right squares of ``size`` along the long side of [..., H, W] (top/centre/
    bottom when the video is portrait), centred on the short side."""
    height, width = video.shape[-2:]
    if min(height, width) < size:
        raise ValueError(f"cannot take {size}px crops from {height}x{width} frames")
    if width >= height:
        top = (height - size) // 2
        return [
            video[..., top : top + size, x : x + size]
            for x in (0, (width - size) // 2, width - size)
        ]
    left = (width - size) // 2
    return [
        video[..., y : y + size, left : left + size]
        for y in (0, (height - size) // 2, height - size)
    ]


class EvalTransform:
    """Deterministic evaluation views: resize the short side, then 1 centre crop or 3 crops.

    Args:
        input_size: crop size S.
        resize_size: short side after resizing.
        num_crops: 1 (centre) or 3 (left/centre/right).
    """

    def __init__(
        self, input_size: int = 224, *, resize_size: int = 256, num_crops: int = 1
    ) -> None:
        if num_crops not in (1, 3):
            raise ConfigError(f"data.num_crops must be 1 or 3, got {num_crops}")
        if resize_size < input_size:
            raise ConfigError(
                f"data.resize_size ({resize_size}) must be at least data.input_size ({input_size})"
            )
        self.resize = v2.Resize(resize_size, antialias=True)
        self.input_size = input_size
        self.num_crops = num_crops

    def __call__(self, frames: Any) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> uint8 [num_crops, T, 3, S, S]."""
        video = self.resize(_to_video_tensor(frames))  # [T,3,h,w] uint8, short side resized
        if self.num_crops == 1:
            crops = [F.center_crop(video, [self.input_size, self.input_size])]
        else:
            crops = three_crops(video, self.input_size)
        return torch.stack(crops)  # [V,T,3,S,S] uint8

    def __repr__(self) -> str:
        return f"EvalTransform(resize={self.resize.size}, size={self.input_size}, crops={self.num_crops})"


def build_transform(data_cfg: Any, *, train: bool) -> TrainTransform | EvalTransform:
    """The transform of a split from a :class:`~text4vis.config.DataConfig`."""
    if train:
        return TrainTransform(
            data_cfg.input_size,
            resize_size=data_cfg.resize_size,
            random_resized_crop=data_cfg.random_resized_crop,
            crop_scale=(data_cfg.crop_scale_min, 1.0),
            flip=data_cfg.flip,
            grayscale=data_cfg.grayscale,
            randaugment=data_cfg.randaugment,
            randaugment_n=data_cfg.randaugment_n,
            randaugment_m=data_cfg.randaugment_m,
        )
    return EvalTransform(
        data_cfg.input_size, resize_size=data_cfg.resize_size, num_crops=data_cfg.num_crops
    )


# ----------------------------------------------------------------------------------------------
# RandAugment with faster uint8 kernels
# ----------------------------------------------------------------------------------------------


def _as_planes(video: torch.Tensor) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> contiguous [N, 3, H, W] (N = product of the leading dims)."""
    return video.reshape(-1, *video.shape[-3:]).contiguous()


def _apply_luts(video: torch.Tensor, luts: torch.Tensor) -> torch.Tensor:
    """Map every value of uint8 [..., 3, H, W] through uint8 lookup tables [N, 3, 256] (one per
    frame and channel), with numpy's ``take``."""
    planes = _as_planes(video)
    source = planes.numpy()
    out = np.empty_like(source)
    tables = luts.numpy()
    for n in range(source.shape[0]):
        for c in range(source.shape[1]):
            np.take(tables[n, c], source[n, c], out=out[n, c])
    return torch.from_numpy(out).view(video.shape)


# The colour kernels below repeat v2's float32 operations, in v2's order and with v2's in-place
# ``add_(other, alpha=...)`` (one fused multiply-add in torch's vector code, so it is not
# rewritten in numpy), and so give v2's bytes. What they save is conversion cost: torch turns
# uint8 into float32 fastest with ``.to(torch.float32)`` before any arithmetic, float32 into
# uint8 fastest through int16, and numpy's vector loops do integer and comparison work on uint8
# and int16 several times faster than torch's on this CPU (measured in the benchmarks README).


def _float_to_uint8(values: torch.Tensor) -> torch.Tensor:
    """Float already clamped to [0, 255] -> uint8 by truncation (as ``.to(torch.uint8)``, via
    int16, which is about five times as fast on this CPU)."""
    return values.to(torch.int16).to(torch.uint8)


def _finish(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """v2's last step for uint8: clamp to [0, 255] and truncate; shaped like ``like``."""
    return _float_to_uint8(values.clamp_(0, 255)).view(like.shape)


def _floored_gray(floats: torch.Tensor) -> torch.Tensor:
    """v2's float grayscale of float [N, 3, H, W] holding uint8 values, floored: [N, 1, H, W]."""
    red, green, blue = floats.unbind(dim=-3)
    gray = red.mul(0.2989).add_(green, alpha=0.587).add_(blue, alpha=0.114)
    return gray.floor_().unsqueeze(-3)


def _brightness(video: torch.Tensor, factor: float) -> torch.Tensor:
    # v2: trunc(clamp(x * factor)) in float32.
    return _finish(video.to(torch.float32).mul_(factor), video)


def _color(video: torch.Tensor, factor: float) -> torch.Tensor:
    # v2 (adjust_saturation): blend with the floored float grayscale of each pixel.
    floats = _as_planes(video).to(torch.float32)
    gray = _floored_gray(floats)
    return _finish(floats.mul_(factor).add_(gray, alpha=1.0 - factor), video)


def _contrast(video: torch.Tensor, factor: float) -> torch.Tensor:
    # v2: blend with the mean of the floored grayscale of each frame.
    floats = _as_planes(video).to(torch.float32)
    mean = torch.mean(_floored_gray(floats), dim=(-3, -2, -1), keepdim=True)  # [N,1,1,1]
    return _finish(floats.mul_(factor).add_(mean, alpha=1.0 - factor), video)


def _sharpness(video: torch.Tensor, factor: float) -> torch.Tensor:
    # v2: blend with a 3x3 blur (1s around a 5, /13, rounded) on the interior, borders kept. v2
    # convolves in float32 with weights 1/13 and 5/13; the rounded result equals round(sum / 13)
    # of the exact integer sum, because sum / 13 is never within 1/26 of a half. The sum is
    # taken in int16 with numpy, the blend is v2's in-place float arithmetic.
    planes = _as_planes(video)
    if planes.shape[-1] <= 2 or planes.shape[-2] <= 2:
        return video.clone()
    wide = planes.numpy().astype(np.int16)
    rows = wide[..., :, :-2] + wide[..., :, 1:-1]
    rows += wide[..., :, 2:]  # [N,3,H,W-2]
    box = rows[..., :-2, :] + rows[..., 1:-1, :]
    box += rows[..., 2:, :]  # [N,3,H-2,W-2]
    box += wide[..., 1:-1, 1:-1] * np.int16(4)  # centre weight 5
    blurred = torch.from_numpy(box.astype(np.float32)).div_(13.0).round_()
    floats = planes.to(torch.float32)
    interior = floats[..., 1:-1, 1:-1]
    interior.add_(blurred.sub_(interior), alpha=1.0 - factor)
    return _finish(floats, video)


def _solarize(video: torch.Tensor, threshold: float) -> torch.Tensor:
    # v2: invert where x >= threshold; for integer x that is x >= ceil(threshold), and
    # 255 - x == x ^ 255 for uint8.
    bound = math.ceil(threshold)
    if bound > 255:
        return video.clone()
    values = _as_planes(video).numpy()
    flip = (values >= bound).view(np.uint8)
    flip *= 255
    np.bitwise_xor(flip, values, out=flip)
    return torch.from_numpy(flip).view(video.shape)


def _autocontrast(video: torch.Tensor) -> torch.Tensor:
    # v2: per frame and channel, (x - min) / ((max - min) / 255), clamped and truncated; a plane
    # with max == min is left as it is.
    planes = _as_planes(video)
    low = planes.amin(dim=(-2, -1), keepdim=True).to(torch.float32)  # [N,3,1,1]
    high = planes.amax(dim=(-2, -1), keepdim=True).to(torch.float32)
    flat = high == low
    inv_scale = high.sub_(low).mul_(1.0 / 255)
    low[flat] = 0.0
    inv_scale[flat] = 1.0
    return _finish(planes.to(torch.float32).sub_(low).div_(inv_scale), video)


def _equalize(video: torch.Tensor) -> torch.Tensor:
    # v2 (PIL's scheme): per frame and channel, lut[k] = (cum_hist[k-1] + step // 2) // step with
    # step = (pixels not at the plane's largest value) // 255; a plane with step 0 is kept.
    planes = _as_planes(video)
    count = planes.shape[-1] * planes.shape[-2]
    hist = torch.stack(
        [torch.bincount(plane.reshape(-1), minlength=256) for plane in planes.view(-1, count)]
    ).view(*planes.shape[:2], 256)  # [N,3,256]
    cum = hist.cumsum(dim=-1)
    last = cum.argmax(dim=-1, keepdim=True)  # first index reaching the total = largest value
    step = (count - hist.gather(-1, last)).div_(255, rounding_mode="floor")  # [N,3,1]
    lut = (cum[..., :-1] + step // 2).div_(step.clamp(min=1), rounding_mode="floor").clamp_(0, 255)
    lut = torch.cat([torch.zeros_like(lut[..., :1]), lut], dim=-1)  # [N,3,256]
    identity = torch.arange(256).expand_as(lut)
    lut = torch.where(step > 0, lut, identity)
    return _apply_luts(planes, lut.to(torch.uint8)).view(video.shape)


def _translate(video: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    # v2 with nearest interpolation and an integer translation: a shift, zeros moving in.
    height, width = video.shape[-2:]
    out = torch.zeros_like(video, memory_format=torch.contiguous_format)
    if abs(dx) >= width or abs(dy) >= height:
        return out
    out[..., max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = video[
        ..., max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def _remap(video: torch.Tensor, source: np.ndarray) -> torch.Tensor:
    """Nearest-neighbour warp of uint8 [..., 3, H, W] by a map from output pixel to 1 + the
    flat index of its source pixel (0: outside the image, filled with 0)."""
    planes = _as_planes(video).view(-1, video.shape[-2] * video.shape[-1])  # [N*3, H*W]
    padded = np.zeros((planes.shape[0], planes.shape[1] + 1), dtype=np.uint8)
    padded[:, 1:] = planes.numpy()
    out = np.empty_like(padded[:, 1:])
    for plane, target in zip(padded, out):  # per plane: a short, cache-friendly gather
        np.take(plane, source, out=target)
    return torch.from_numpy(out).view(video.shape)


_FAST_OPS = {
    "Brightness": lambda video, m: _brightness(video, 1.0 + m),
    "Color": lambda video, m: _color(video, 1.0 + m),
    "Contrast": lambda video, m: _contrast(video, 1.0 + m),
    "Sharpness": lambda video, m: _sharpness(video, 1.0 + m),
    "Solarize": lambda video, m: _solarize(video, 255.0 * m),
    "AutoContrast": lambda video, m: _autocontrast(video),
    "Equalize": lambda video, m: _equalize(video),
    "TranslateX": lambda video, m: _translate(video, int(m), 0),
    "TranslateY": lambda video, m: _translate(video, 0, int(m)),
}


@functools.cache
def _rand_augment_class() -> type:
    class RandAugment(v2.RandAugment):
        """``v2.RandAugment`` (same operations, magnitudes and random draws) whose colour,
        sharpness, solarize, equalize and geometric operations on uint8 video tensors run
        faster kernels of this module; they give the same bytes as v2's kernels (tested).
        Anything else (other dtypes, 1 channel, PIL, the remaining operations) goes to v2.

        What it needs of torchvision beyond the public API (tests/test_torchvision_private_api.py
        fails, naming the change, if any of it moves): the per-operation hook
        ``_apply_image_or_video_transform(image, transform_id, magnitude, interpolation, fill)``
        that ``forward`` calls after drawing an operation, the operation names of
        ``_AUGMENTATION_SPACE``, and ``fill`` as a dict of type (or ``"others"``) -> value.
        """

        _WARPS = ("ShearX", "ShearY", "Rotate")

        def _apply_image_or_video_transform(
            self, image, transform_id, magnitude, interpolation, fill
        ):
            fast = _FAST_OPS.get(transform_id)
            warp = transform_id in self._WARPS
            if (
                (fast is not None or warp)
                and isinstance(image, torch.Tensor)
                and image.dtype == torch.uint8
                and image.ndim >= 3
                and image.shape[-3] == 3
                and (
                    fast is not None
                    and transform_id[:9] != "Translate"
                    or self._fill_is_zero(fill, type(image))
                    and self._is_nearest(interpolation)
                )
            ):
                plain = image.as_subclass(torch.Tensor)
                if warp:
                    source = self._source_map(transform_id, float(magnitude), *plain.shape[-2:])
                    out = _remap(plain, source)
                else:
                    out = fast(plain, float(magnitude))
                return tv_tensors.wrap(out, like=image) if type(image) is not torch.Tensor else out
            return super()._apply_image_or_video_transform(
                image, transform_id, magnitude, interpolation, fill
            )

        def _source_map(
            self, transform_id: str, magnitude: float, height: int, width: int
        ) -> np.ndarray:
            """For a nearest-neighbour warp with zero fill: 1 + the flat source index of each
            output pixel (0 outside), found by warping an image of those numbers with v2 itself
            (float32, as v2 warps uint8 images), so the pixel grid is v2's exactly."""
            cache = self.__dict__.setdefault("_source_maps", {})
            key = (transform_id, magnitude, height, width)
            if key not in cache:
                numbers = torch.arange(1, height * width + 1, dtype=torch.float32)
                warped = super()._apply_image_or_video_transform(
                    numbers.view(1, 1, height, width),  # exact in float32 below 2**24 pixels
                    transform_id,
                    magnitude,
                    v2.InterpolationMode.NEAREST,
                    {},
                )
                if len(cache) > 64:  # magnitudes are few; bound it anyway
                    cache.clear()
                cache[key] = warped.reshape(-1).round().to(torch.int64).numpy()
            return cache[key]

        @staticmethod
        def _is_nearest(interpolation: Any) -> bool:
            # A mode or its name ("nearest", what RandAugment keeps); other spellings (PIL's
            # integer codes) go to v2's kernels, which accept them.
            try:
                return v2.InterpolationMode(interpolation) == v2.InterpolationMode.NEAREST
            except ValueError:
                return False

        @staticmethod
        def _fill_is_zero(fill: Any, kind: type) -> bool:
            # v2 keeps fill as {type or "others": value}; a plain value is accepted too.
            value = fill.get(kind, fill.get("others")) if isinstance(fill, dict) else fill
            return value is None or value == 0 or value == [0] or value == [0.0] or value == 0.0

    return RandAugment

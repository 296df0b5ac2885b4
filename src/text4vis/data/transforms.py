"""Clip transforms with torchvision.transforms.v2 on uint8 video tensors [T, C, H, W].

A clip is wrapped as ``tv_tensors.Video`` so every v2 transform draws its random parameters once
per call and applies them to all frames of the clip; the next clip gets new ones. All geometric
and colour work runs on uint8; conversion to float and CLIP mean/std normalisation come last, in
one fused multiply-add.

Training (the paper's table A.3, each step switchable through :class:`~text4vis.config.DataConfig`):
RandomResizedCrop(``input_size``) -> horizontal flip 0.5 -> RandomGrayscale(0.2) -> RandAugment(2, 9)
-> float -> normalise. The paper resizes the short side to 256 before RandomResizedCrop; because
RandomResizedCrop draws its crop as a fraction of the image area with an absolute aspect ratio,
cropping the original frame gives the same distribution of crops, so the extra resize pass is
skipped (one interpolation instead of two, which is also slightly sharper). With
``random_resized_crop=False`` training uses resize(``resize_size``) + RandomCrop(``input_size``).

Evaluation: resize the short side to ``resize_size``, then a centre crop of ``input_size`` or, with
3 crops, left/centre/right (top/centre/bottom for portrait video) squares along the long side.

Transforms are callables ``frames -> float [V, T, 3, S, S]`` taking uint8 [T, H, W, 3] (numpy or
torch) as the decoders return them; V = 1 for training and single-crop evaluation.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "EvalTransform",
    "TrainTransform",
    "build_transform",
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


def normalize_video(
    video: torch.Tensor,
    mean: tuple[float, ...] = CLIP_MEAN,
    std: tuple[float, ...] = CLIP_STD,
) -> torch.Tensor:
    """uint8 [..., 3, H, W] -> float32 ``(x / 255 - mean) / std`` as one multiply-add."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in std]).view(3, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(mean, std)]).view(3, 1, 1)
    return video.to(torch.float32).mul_(scale).sub_(shift)


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
        from torchvision.transforms import v2

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
            steps.append(v2.RandAugment(num_ops=randaugment_n, magnitude=randaugment_m))
        self.augment = v2.Compose(steps)
        self.input_size = input_size

    def __call__(self, frames: Any) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> float [1, T, 3, S, S] (random parameters drawn from torch's RNG)."""
        from torchvision import tv_tensors

        video = tv_tensors.Video(_to_video_tensor(frames))
        out = self.augment(video).as_subclass(torch.Tensor)  # [T,3,S,S] uint8
        return normalize_video(out).unsqueeze(0)  # [T,3,S,S] -> [1,T,3,S,S]

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
        from torchvision.transforms import v2

        if num_crops not in (1, 3):
            raise ValueError(f"data.num_crops must be 1 or 3, got {num_crops}")
        if resize_size < input_size:
            raise ValueError(
                f"data.resize_size ({resize_size}) must be at least data.input_size ({input_size})"
            )
        self.resize = v2.Resize(resize_size, antialias=True)
        self.input_size = input_size
        self.num_crops = num_crops

    def __call__(self, frames: Any) -> torch.Tensor:
        """uint8 [T, H, W, 3] -> float [num_crops, T, 3, S, S]."""
        from torchvision.transforms.v2 import functional as F

        video = self.resize(_to_video_tensor(frames))  # [T,3,h,w] uint8, short side resized
        if self.num_crops == 1:
            crops = [F.center_crop(video, [self.input_size, self.input_size])]
        else:
            crops = three_crops(video, self.input_size)
        return normalize_video(torch.stack(crops))  # [V,T,3,S,S]

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

"""Video data: annotations, decoders, sampling, transforms, datasets, loaders.

Importing this package is light (no torch, torchvision or PyAV): names load from their modules on
first use (PEP 562), and :func:`open_video` imports PyAV only when called.

Main entry points::

    read_labels("labels.csv")            # class names in id order
    read_annotations("train.txt")        # [VideoRecord(path, num_frames | None, label)]
    open_video("a.mp4").frames([0, 8])   # uint8 [T, H, W, 3]; failures raise VideoDecodeError
    build_dataset(cfg, "train")          # items {"video": [V,T,3,S,S], "label", "index", ...}
    build_loader(dataset, cfg, "train", seed=0)
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> defining module.
_EXPORTS = {
    # annotations
    "AnnotationError": "annotations",
    "VideoRecord": "annotations",
    "read_annotations": "annotations",
    "select_classes": "annotations",
    "write_annotations": "annotations",
    # class names
    "LabelError": "labels",
    "check_distinct_names": "labels",
    "check_labels": "labels",
    "match_class_names": "labels",
    "normalize_class_name": "labels",
    "parse_labels": "labels",
    "read_label_file": "labels",
    "read_labels": "labels",
    "write_labels": "labels",
    # finding videos
    "VIDEO_EXTENSIONS": "discovery",
    "NoVideosFoundError": "discovery",
    "find_videos": "discovery",
    # decoders
    "FrameFolderReader": "decoders",
    "ImageReader": "decoders",
    "PyAVReader": "decoders",
    "VideoDecodeError": "decoders",
    "VideoReader": "decoders",
    "open_video": "decoders",
    # sampling
    "ClipSampler": "sampling",
    "build_sampler": "sampling",
    "dense_test_indices": "sampling",
    "dense_train_indices": "sampling",
    "segment_test_indices": "sampling",
    "segment_train_indices": "sampling",
    "segment_val_indices": "sampling",
    # transforms
    "CLIP_MEAN": "transforms",
    "CLIP_STD": "transforms",
    "EvalTransform": "transforms",
    "TrainTransform": "transforms",
    "build_transform": "transforms",
    # dataset
    "FAILED_VIDEOS_FILE": "dataset",
    "FailureTracker": "dataset",
    "TooManyFailuresError": "dataset",
    "VideoDataset": "dataset",
    "build_dataset": "dataset",
    "collate_clips": "dataset",
    # few-shot and zero-shot splits
    "class_subset_ids": "few_shot",
    "few_shot_indices": "few_shot",
    "half_class_splits": "few_shot",
    "repeat_indices": "few_shot",
    "write_few_shot_list": "few_shot",
    # loaders
    "EvalSampler": "loaders",
    "TrainSampler": "loaders",
    "build_loader": "loaders",
    "set_epoch": "loaders",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

"""The video dataset: records -> ``{"video": float [V, T, 3, S, S], "label", "index"}``.

Randomness: a training item is a pure function of ``(seed, epoch, index, attempt)``. The training
sampler of :mod:`text4vis.data.loaders` yields ``(index, epoch)`` keys, so the frames and the
augmentation of an item do not depend on the number of workers, on which worker loads it, or on
whether workers persist across epochs; a resumed run reproduces the same clips. (torchvision's v2
transforms draw from torch's RNG, so each item runs them under ``torch.random.fork_rng`` seeded
from its own generator, leaving the process RNG untouched.)

Unreadable videos:

- Training retries on another index drawn from the item's seeded generator, at most
  ``max_retries`` times, logging each failure. The item carries ``"failures"``: a list of
  ``(path, reason)`` for the videos it skipped, so the main process sees failures that happened in
  worker processes; :func:`collate_clips` concatenates them per batch and a
  :class:`FailureTracker` in the main process counts them, writes ``failed_videos.txt`` in the run
  folder and raises :class:`TooManyFailuresError` past ``data.max_failure_fraction``.
- Evaluation never substitutes. It raises :class:`~text4vis.data.decoders.VideoDecodeError`, or
  with ``skip_unreadable`` returns a *skipped item* ``{"video": None, "label", "index", "path",
  "reason"}``; :func:`collate_clips` drops skipped items from the batch tensors and lists them in
  ``batch["skipped"]`` as ``(index, path, reason)``.

Batch format (from :func:`collate_clips`): ``video`` float [B, V, T, 3, S, S] (B may be 0 when every
item of an evaluation batch was skipped), ``label`` int64 [B], ``index`` int64 [B] (dataset
positions of the clips actually returned), ``failures`` list[(path, reason)], ``skipped``
list[(index, path, reason)].
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import default_collate

from text4vis.data.annotations import (
    AnnotationError,
    VideoRecord,
    describe_entries,
    empty_entries,
    read_annotations,
)
from text4vis.data.decoders import DECODERS, FrameFolderReader, VideoDecodeError, open_video
from text4vis.data.few_shot import few_shot_indices, repeat_indices
from text4vis.data.labels import read_labels
from text4vis.data.sampling import ClipSampler, build_sampler
from text4vis.data.transforms import build_transform
from text4vis.distributed import is_distributed, is_main_process
from text4vis.errors import ConfigError, DataError

__all__ = [
    "FAILED_VIDEOS_FILE",
    "SPLITS",
    "FailureTracker",
    "TooManyFailuresError",
    "VideoDataset",
    "build_dataset",
    "collate_clips",
]

logger = logging.getLogger("text4vis.data.dataset")

SPLITS = ("train", "val", "test")
FAILED_VIDEOS_FILE = "failed_videos.txt"  # unreadable videos met in training, in the run folder


TooManyFailuresError = DataError  # the older name, kept importable


class VideoDataset(torch.utils.data.Dataset):
    """Clips of the videos listed in ``records``.

    Args:
        records: list-file records.
        root: folder the record paths are relative to.
        sampler: ``(num_frames, rng) -> int64 [num_clips, T]`` frame indices.
        transform: ``uint8 [T, H, W, 3] -> float [crops, T, 3, S, S]``.
        train: training mode (random sampling, retries on unreadable videos).
        seed: seed of sampling, augmentation and retries.
        decoder: video decoder name (``pyav`` ...).
        frame_template: frame-folder file names.
        frame_start_index: number of the first frame file.
        max_retries: training: other videos tried after a failure.
        skip_unreadable: evaluation: return skipped items instead of raising.
        class_names: names of the classes (kept for the engine).
        views_per_clip: crops per clip V/num_clips (for the empty-batch shape).
        input_size: crop size S (for the empty-batch shape).
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        *,
        root: str | Path,
        sampler: ClipSampler | Callable[[int, np.random.Generator], np.ndarray],
        transform: Callable[[Any], torch.Tensor],
        train: bool,
        seed: int = 0,
        decoder: str = "pyav",
        frame_template: str = "img_{:05d}.jpg",
        frame_start_index: int = 1,
        max_retries: int = 10,
        skip_unreadable: bool = False,
        class_names: Sequence[str] | None = None,
        num_clips: int = 1,
        views_per_clip: int = 1,
        num_segments: int = 8,
        input_size: int = 224,
    ) -> None:
        if not records:
            raise DataError("a dataset needs at least one record")
        self.records = list(records)
        # (full training records, chosen indices) when build_dataset made a few-shot subset:
        # the one selection of a run, written to its folder by the trainer.
        self.few_shot: tuple[list[VideoRecord], list[int]] | None = None
        self.root = Path(root)
        self.sampler = sampler
        self.transform = transform
        self.train = train
        self.seed = seed
        self.decoder = decoder
        self.frame_template = frame_template
        self.frame_start_index = frame_start_index
        self.max_retries = max_retries
        self.skip_unreadable = skip_unreadable
        self.class_names = list(class_names) if class_names is not None else None
        self.epoch = 0  # used when the key is a plain int (a sampler that yields ints)
        # V = clips x crops, clip-major: view v is clip v // crops, crop v % crops.
        self.video_shape = (num_clips * views_per_clip, num_segments, 3, input_size, input_size)

    @classmethod
    def from_data_config(
        cls,
        records: Sequence[VideoRecord],
        data: Any,
        *,
        root: str | Path,
        train: bool,
        seed: int = 0,
        class_names: Sequence[str] | None = None,
    ) -> VideoDataset:
        """A dataset that reads, samples and transforms as a ``data`` config section says, with
        ``data.num_clips x data.num_crops`` views per video.

        Args:
            records: list-file records.
            data: a :class:`~text4vis.config.DataConfig` (its views already chosen).
            root: folder the record paths are relative to.
            train: training mode (random sampling and augmentation, retries).
            seed: seed of sampling, augmentation and retries.
            class_names: names of the classes (kept for the engine).
        """
        return cls(
            records,
            root=root,
            sampler=build_sampler(
                data.sampling,
                data.num_segments,
                train=train,
                num_clips=data.num_clips,
                dense_stride=data.dense_stride,
            ),
            transform=build_transform(data, train=train),
            train=train,
            seed=seed,
            decoder=data.decoder,
            frame_template=data.frame_template,
            frame_start_index=data.frame_start_index,
            max_retries=data.max_retries,
            skip_unreadable=data.skip_unreadable,
            class_names=class_names,
            num_clips=data.num_clips,
            views_per_clip=data.num_crops,
            num_segments=data.num_segments,
            input_size=data.input_size,
        )

    def __len__(self) -> int:
        return len(self.records)

    def set_epoch(self, epoch: int) -> None:
        """Epoch used for plain-int keys (the loaders' training sampler passes it in the key)."""
        self.epoch = epoch

    def path_of(self, index: int) -> str:
        """Absolute-or-root-relative path of record ``index``."""
        return os.path.join(self.root, self.records[index].path)

    def load(self, index: int, rng: np.random.Generator) -> torch.Tensor:
        """Decode, sample and transform record ``index``: float [V, T, 3, S, S].

        Raises:
            VideoDecodeError: the video cannot be read.
        """
        record = self.records[index]
        reader: Any
        if record.num_frames == 0:  # a dead line of a frame list (see read_annotations)
            where = f" ({record.source})" if record.source else ""
            raise VideoDecodeError(self.path_of(index), f"the list gives it 0 frames{where}")
        if record.num_frames is not None:  # a frame-folder line: never try it as a video file
            reader = FrameFolderReader(
                self.path_of(index),
                num_frames=record.num_frames,
                frame_template=self.frame_template,
                start_index=self.frame_start_index,
            )
        else:
            # One decoder thread, in DataLoader workers and in the main process alike: for a
            # few sampled frames with seeks between them, FFmpeg's frame threading restarts its
            # pipeline at every seek. Measured on 2 cores (8 of 48 frames, 428x320 H.264, main
            # process): one thread 29.5-30.7 ms per clip wall and CPU, automatic threads
            # 34.7-38.1 ms wall and 39.9-44.1 ms CPU.
            reader = open_video(self.path_of(index), decoder=self.decoder, threads=1)
        clip_indices = self.sampler(reader.num_frames, rng)  # [clips, T]
        num_clips, num_segments = clip_indices.shape
        try:
            frames = reader.frames(clip_indices.reshape(-1))  # [clips*T, H, W, 3]
        finally:
            if hasattr(reader, "close"):
                reader.close()  # release the file now rather than at garbage collection
        frames = frames.reshape(num_clips, num_segments, *frames.shape[1:])
        torch_seed = int(rng.integers(0, 2**62))
        with torch.random.fork_rng(devices=[]):
            # The CPU generator only: the transforms run on CPU tensors, while torch.manual_seed
            # also queues a lazy seeding call, with a formatted stack trace, for each
            # uninitialised accelerator backend (about 0.2 ms per item, measured).
            torch.default_generator.manual_seed(torch_seed)
            views = [self.transform(clip) for clip in frames]  # each [crops, T, 3, S, S]
        if len(views) == 1:  # one clip: no copy (4.8 MB of float at 8x224 px)
            return views[0]
        return torch.cat(views)  # [clips*crops, T, 3, S, S]

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Any]:
        index, epoch = (
            (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), self.epoch)
        )
        if self.train:
            return self._train_item(index, epoch)
        return self._eval_item(index)

    def _train_item(self, index: int, epoch: int) -> dict[str, Any]:
        failures: list[tuple[str, str]] = []
        current = index
        for attempt in range(self.max_retries + 1):
            rng = np.random.default_rng([self.seed, epoch, index, attempt])
            try:
                video = self.load(current, rng)
            except VideoDecodeError as exc:
                path = self.path_of(current)
                logger.warning("unreadable training video %s: %s", path, exc.reason)
                failures.append((path, exc.reason))
                current = int(rng.integers(0, len(self)))
                continue
            return {
                "video": video,
                "label": self.records[current].label,
                "index": current,
                "failures": failures,
            }
        tried = "; ".join(f"{path} ({reason})" for path, reason in failures)
        raise VideoDecodeError(
            f"item {index}: {len(failures)} videos in a row could not be read "
            f"(data.max_retries={self.max_retries}): {tried}"
        )

    def _eval_item(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, index])  # evaluation samplers do not draw
        try:
            video = self.load(index, rng)
        except VideoDecodeError as exc:
            if not self.skip_unreadable:
                hinted = VideoDecodeError(
                    f"{exc}; fix it or remove it from the list (`text4vis prepare check LIST` "
                    "lists every unreadable entry), or set data.skip_unreadable=true to skip "
                    "unreadable videos and report them"
                )
                hinted.path, hinted.reason = exc.path, exc.reason
                raise hinted from exc
            path = self.path_of(index)
            logger.warning("skipping unreadable video %s: %s", path, exc.reason)
            return {
                "video": None,
                "label": self.records[index].label,
                "index": index,
                "path": path,
                "reason": exc.reason,
            }
        return {"video": video, "label": self.records[index].label, "index": index}


def collate_clips(
    batch: list[dict[str, Any]], video_shape: Sequence[int] | None = None
) -> dict[str, Any]:
    """Stack dataset items into a batch; drop skipped items and gather failure reports.

    Args:
        batch: items of :class:`VideoDataset`.
        video_shape: [V, T, 3, S, S] of one item, for the empty tensor of an all-skipped batch.

    Returns:
        ``{"video": [B, V, T, 3, S, S], "label": [B], "index": [B], "failures": [(path,
        reason)], "skipped": [(index, path, reason)]}``.
    """
    kept = [item for item in batch if item["video"] is not None]
    skipped = [(int(i["index"]), i["path"], i["reason"]) for i in batch if i["video"] is None]
    failures = [failure for item in batch for failure in item.get("failures", [])]
    if kept:
        # default_collate stacks straight into shared memory inside a DataLoader worker, so the
        # batch crosses to the main process without a second copy (torch.stack would allocate
        # ordinary memory that pickling then copies into a new shared segment).
        video = default_collate([item["video"] for item in kept])  # [B,V,T,3,S,S]
    else:
        video = torch.empty((0, *(video_shape or (0,))), dtype=torch.float32)
    return {
        "video": video,
        "label": torch.tensor([int(item["label"]) for item in kept], dtype=torch.int64),
        "index": torch.tensor([int(item["index"]) for item in kept], dtype=torch.int64),
        "failures": failures,
        "skipped": skipped,
    }


class FailureTracker:
    """Counts unreadable videos reported by batches, lists them in a file, enforces a limit.

    Args:
        dataset_size: videos in the dataset (the denominator of the failure fraction).
        max_fraction: stop when more than this fraction of distinct videos failed.
        path: file to (re)write with one ``path<TAB>reason`` line per failed video (None: none).

    Under DDP each rank sees only its own failures: call :meth:`synchronize` on every rank at the
    same step (e.g. the end of an epoch) to merge them before :meth:`check`; only rank 0 writes.
    """

    def __init__(self, dataset_size: int, max_fraction: float, path: str | Path | None = None):
        self.dataset_size = max(1, int(dataset_size))
        self.max_fraction = float(max_fraction)
        self.path = Path(path) if path is not None else None
        self.failed: dict[str, str] = {}  # path -> last reason
        self.events = 0  # failed reads, counting repeats of one video

    def update(self, failures: Sequence[tuple[str, str]], *, check: bool = True) -> None:
        """Record a batch's ``failures``; write the file when it grew; check the limit."""
        if not failures:
            return
        before = len(self.failed)
        for path, reason in failures:
            self.failed[path] = reason
            self.events += 1
        if len(self.failed) != before:
            self._write()
        if check:
            self.check()

    @property
    def fraction(self) -> float:
        """Distinct failed videos / dataset size."""
        return len(self.failed) / self.dataset_size

    def check(self) -> None:
        """Raise :class:`TooManyFailuresError` when the failure fraction passes the limit."""
        if self.fraction > self.max_fraction:
            where = f"; the list is in {self.path}" if self.path is not None else ""
            raise TooManyFailuresError(
                f"{len(self.failed)} of {self.dataset_size} videos could not be read "
                f"({100 * self.fraction:.2f}% > data.max_failure_fraction="
                f"{self.max_fraction}){where}; run `text4vis prepare check` on the list "
                "and fix or remove them"
            )

    def synchronize(self) -> None:
        """Merge the failures of every rank (a collective: call it on all ranks)."""
        if not is_distributed():
            return

        gathered: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (self.failed, self.events))
        merged: dict[str, str] = {}
        for failed, _ in gathered:
            merged.update(failed)
        self.events = sum(events for _, events in gathered)
        if merged != self.failed:
            self.failed = merged
            self._write()

    def _write(self) -> None:
        if self.path is None or not is_main_process():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        tmp.write_text("".join(f"{p}\t{r}\n" for p, r in sorted(self.failed.items())))
        tmp.replace(self.path)


# ----------------------------------------------------------------------------------------------
# From a config
# ----------------------------------------------------------------------------------------------


def _list_for_split(cfg: Any, split: str) -> str:
    data = cfg.data
    if split == "train":
        return data.train_list
    if split == "val":
        return data.val_list
    return data.test_list or data.val_list


def build_dataset(
    cfg: Any,
    split: str,
    *,
    records: Sequence[VideoRecord] | None = None,
    class_names: Sequence[str] | None = None,
) -> VideoDataset:
    """The dataset of a split from a :class:`~text4vis.config.Config`.

    ``train`` samples TSN segments at random with the training augmentation (and the few-shot
    subset when ``data.shot > 0``, kept in the dataset's ``few_shot`` attribute); ``val`` gives one centre clip and one
    centre crop; ``test`` gives ``data.num_clips x data.num_crops`` views.

    Args:
        cfg: the configuration (``data`` and ``train.seed`` are used).
        split: ``train``, ``val`` or ``test``.
        records: use these records instead of reading the split's list file (paths relative to
            ``data.root``, or to the working directory when it is empty).
        class_names: class names (read from ``data.labels`` when None and the file is set);
            labels are checked against their number.

    Raises:
        ValueError: an unknown split, or no list file configured for the split.
        AnnotationError: list lines that do not match ``data.format``.
    """
    data = cfg.data
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(SPLITS)}")
    if class_names is None and data.labels:
        class_names = read_labels(data.labels)
    records, root, source = _split_records(cfg, split, records, class_names)
    _check_records(records, data, split, source)
    train = split == "train"
    few_shot = None
    if train and data.shot > 0:
        records, few_shot = _few_shot_subset(records, data)
    # Views: clips x crops for test, one of each for val and train (whose transform has no crops).
    views = data if split == "test" else _single_view(data)
    dataset = VideoDataset.from_data_config(
        records, views, root=root, train=train, seed=cfg.train.seed, class_names=class_names
    )
    dataset.few_shot = few_shot
    return dataset


def _split_records(
    cfg: Any,
    split: str,
    records: Sequence[VideoRecord] | None,
    class_names: Sequence[str] | None,
) -> tuple[list[VideoRecord], Path, str]:
    """The records of a split (read from its list file unless given), the folder their paths
    are relative to, and how to name their source in errors.

    Raises:
        ValueError: no list file configured for the split.
        AnnotationError: a label out of range for ``class_names``.
    """
    data = cfg.data
    num_classes = len(class_names) if class_names is not None else None
    if records is None:
        list_file = _list_for_split(cfg, split)
        if not list_file:
            key = {"train": "train_list", "val": "val_list"}.get(split, "test_list (or val_list)")
            raise ConfigError(f"no list file for split {split!r}: set data.{key}")
        read = read_annotations(list_file, num_classes=num_classes)
        root = Path(data.root) if data.root else Path(list_file).resolve().parent
        return list(read), root, list_file
    given = list(records)
    root = Path(data.root) if data.root else Path()
    if num_classes is not None:
        bad = [r for r in given if not 0 <= r.label < num_classes]
        if bad:
            raise AnnotationError(
                f"label {bad[0].label} of {bad[0].path} out of range for {num_classes} classes"
            )
    return given, root, "the given records"


def _check_records(records: Sequence[VideoRecord], data: Any, split: str, source: str) -> None:
    """Check the records against ``data.format`` and, for evaluation, that none is empty (and
    that ``data.decoder`` is known), before decoding anything.

    Raises:
        AnnotationError: lines of the other format, or empty entries to evaluate.
        ValueError: an unknown ``data.format`` or ``data.decoder``.
    """
    _check_format(records, data.format, source)
    dead = empty_entries(records)
    if dead and split != "train" and not data.skip_unreadable:
        # Evaluation never substitutes: say every dead line at once, before decoding anything.
        raise AnnotationError(
            f"{source}: {len(dead)} entries have 0 frames and cannot be evaluated: "
            f"{describe_entries(dead)}; remove them (or re-extract their frames), or set "
            "data.skip_unreadable=true to skip and report them"
        )
    if data.decoder not in DECODERS:
        raise ConfigError(f"unknown data.decoder {data.decoder!r}; choose one of {list(DECODERS)}")


def _few_shot_subset(
    records: list[VideoRecord], data: Any
) -> tuple[list[VideoRecord], tuple[list[VideoRecord], list[int]]]:
    """The few-shot training items (``data.shot`` clips per class, repeated to the length of
    the full list) and ``(full records, chosen indices)``, the run's one selection."""
    chosen = few_shot_indices([r.label for r in records], data.shot, data.shot_seed)
    full = len(records)
    repeated = [records[i] for i in repeat_indices(chosen, full)]
    logger.info(
        "few-shot: %d clips (%d per class), repeated to %d items per epoch (full list %d)",
        len(chosen),
        data.shot,
        len(repeated),
        full,
    )
    return repeated, (list(records), chosen)


def _single_view(data: Any) -> Any:
    return dataclasses.replace(data, num_clips=1, num_crops=1)


def _check_format(records: Sequence[VideoRecord], fmt: str, source: str) -> None:
    if fmt not in ("video", "frames"):
        raise ConfigError(f"unknown data.format {fmt!r}; choose 'video' or 'frames'")
    frame_lines = sum(r.num_frames is not None for r in records)
    if fmt == "video" and frame_lines:
        raise AnnotationError(
            f"{source}: {frame_lines} lines are frame-folder lines ('dir num_frames label') but "
            "data.format=video; set data.format=frames"
        )
    if fmt == "frames" and frame_lines != len(records):
        raise AnnotationError(
            f"{source}: {len(records) - frame_lines} lines are video lines ('path label') but "
            "data.format=frames; set data.format=video or give frame counts"
        )

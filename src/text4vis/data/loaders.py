"""DataLoaders for training and evaluation, single process or DDP.

- :class:`TrainSampler`: shuffles with a generator seeded by ``(seed, epoch)`` (the same order on
  every rank), pads to a multiple of the world size and gives rank r every world-size-th index;
  yields ``(index, epoch)`` keys so a :class:`~text4vis.data.dataset.VideoDataset` draws the
  item's randomness from ``(seed, epoch, index)`` whatever worker loads it. Call
  :meth:`TrainSampler.set_epoch` (or :func:`set_epoch`) before every epoch.
- :class:`EvalSampler`: rank r gets indices ``r, r + W, r + 2W, ...``: every video exactly once
  over all ranks, no padded duplicates (ranks may get one item fewer than others).
- :func:`build_loader`: workers, pinned memory when CUDA is available, persistent workers,
  worker seeding from ``(seed, rank, worker id)`` and :func:`~text4vis.data.dataset.collate_clips`.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Sampler

from text4vis.data.dataset import collate_clips
from text4vis.distributed import get_rank, get_world_size
from text4vis.errors import ConfigError, unwrap_worker_error

__all__ = ["EvalSampler", "Loader", "TrainSampler", "build_loader", "seed_worker", "set_epoch"]

logger = logging.getLogger("text4vis.data.loaders")


class TrainSampler(Sampler):
    """Seeded shuffling split across ranks; yields ``(index, epoch)``.

    Args:
        num_samples: dataset length.
        seed: shuffling seed (the same on every rank).
        rank: this process's rank (default: from the environment / process group).
        world_size: number of processes (default: from the environment / process group).
        shuffle: shuffle every epoch (else dataset order).
    """

    def __init__(
        self,
        num_samples: int,
        *,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
        shuffle: bool = True,
    ) -> None:
        self.num_samples = int(num_samples)
        self.seed = int(seed)
        self.rank = get_rank() if rank is None else int(rank)
        self.world_size = get_world_size() if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in 0..{self.world_size - 1}")
        self.shuffle = shuffle
        self.epoch = 0
        self.per_rank = math.ceil(self.num_samples / self.world_size)

    def set_epoch(self, epoch: int) -> None:
        """Use the order (and item randomness) of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.per_rank

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=generator).tolist()
        else:
            order = list(range(self.num_samples))
        padding = self.per_rank * self.world_size - len(order)
        # Training may repeat a few items so that every rank takes the same number of steps.
        order += (order * (padding // max(1, len(order)) + 1))[:padding]
        for index in order[self.rank :: self.world_size]:
            yield (index, self.epoch)


class EvalSampler(Sampler):
    """Every index exactly once across ranks (strided), without padding.

    Args:
        num_samples: dataset length.
        rank: this process's rank (default: from the environment / process group).
        world_size: number of processes (default: from the environment / process group).
    """

    def __init__(
        self, num_samples: int, *, rank: int | None = None, world_size: int | None = None
    ) -> None:
        self.num_samples = int(num_samples)
        self.rank = get_rank() if rank is None else int(rank)
        self.world_size = get_world_size() if world_size is None else int(world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in 0..{self.world_size - 1}")

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_samples, self.world_size))


def seed_worker(worker_id: int, *, seed: int, rank: int) -> None:
    """Worker start-up: seed torch from ``(seed, rank, worker_id)`` and use one thread.

    Items seed their own randomness from their key; this only makes anything else drawn in a
    worker reproducible and keeps workers from oversubscribing the cores.
    """
    torch.manual_seed((seed * 1_000_003 + rank) * 1_009 + worker_id)
    torch.set_num_threads(1)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Tell a loader's sampler (and dataset) which epoch starts."""
    owners: list[Any] = [loader.sampler, getattr(loader, "batch_sampler", None), loader.dataset]
    for owner in owners:
        if hasattr(owner, "set_epoch"):
            owner.set_epoch(epoch)


class Loader(DataLoader):
    """A ``DataLoader`` whose worker errors read as they would with ``num_workers=0``.

    torch re-raises an exception of a worker process as a new exception of the same type whose
    message is "Caught X in DataLoader worker process N." followed by the worker's traceback.
    Iterating this loader raises instead the same type with the worker's own message (the
    worker's traceback kept as a note, shown with the traceback only).
    """

    def __iter__(self) -> Iterator[Any]:
        iterator = super().__iter__()
        while True:
            try:
                batch = next(iterator)
            except StopIteration:
                return
            except Exception as exc:
                clean = _unwrapped(exc)
                if clean is exc:
                    raise
                raise clean from None
            yield batch


def _unwrapped(exc: Exception) -> Exception:
    """``exc`` with the message the worker gave it, when it is torch's re-raise of a worker's."""
    worker = unwrap_worker_error(exc)
    if worker is None:
        return exc
    try:
        clean = type(exc)(worker.message)
    except Exception:  # a type that takes other arguments: keep torch's own exception
        return exc
    if hasattr(clean, "add_note"):  # Python >= 3.11
        clean.add_note(f"in DataLoader worker process {worker.worker}: {worker.traceback}")
    return clean


def build_loader(
    dataset: Any,
    cfg: Any,
    split: str,
    *,
    seed: int,
    batch_size: int | None = None,
    rank: int | None = None,
    world_size: int | None = None,
) -> DataLoader:
    """A DataLoader for a split.

    Training: :class:`TrainSampler`, ``drop_last`` (unless the rank's share is smaller than one
    batch). Evaluation: :class:`EvalSampler`, every batch kept.

    Args:
        dataset: a :class:`~text4vis.data.dataset.VideoDataset` (or any map-style dataset whose
            items fit :func:`~text4vis.data.dataset.collate_clips`).
        cfg: the configuration (``data.num_workers``, ``data.batch_size``, ``eval.batch_size``).
        split: ``train``, ``val`` or ``test``.
        seed: seed of shuffling and worker seeding.
        batch_size: clips per step on this rank (default: ``data.batch_size`` for training,
            ``eval.batch_size`` otherwise).
        rank: override the rank (tests); default from the process group / environment.
        world_size: override the world size (tests).
    """
    train = split == "train"
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    if batch_size is None:
        batch_size = cfg.data.batch_size if train else cfg.eval.batch_size
    if batch_size < 1:
        raise ConfigError(f"batch size must be at least 1, got {batch_size}")
    sampler: Sampler
    if train:
        sampler = TrainSampler(len(dataset), seed=seed, rank=rank, world_size=world_size)
        drop_last = len(sampler) >= batch_size
        if not drop_last:
            logger.warning(
                "training set share of %d clips is smaller than one batch of %d; keeping the "
                "partial batch",
                len(sampler),
                batch_size,
            )
    else:
        sampler = EvalSampler(len(dataset), rank=rank, world_size=world_size)
        drop_last = False
    workers = int(cfg.data.num_workers)
    video_shape = getattr(dataset, "video_shape", None)
    return Loader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=functools.partial(collate_clips, video_shape=video_shape),
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        persistent_workers=workers > 0,
        prefetch_factor=2 if workers > 0 else None,
        worker_init_fn=functools.partial(seed_worker, seed=seed, rank=rank) if workers else None,
        generator=torch.Generator().manual_seed(seed),
    )

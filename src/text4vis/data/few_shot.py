"""Few-shot subsets and zero-shot class splits.

- :func:`few_shot_indices`: K clips per class chosen with a seed. The choice depends only on the
  labels, K and the seed, so every rank of a distributed run picks the same clips.
- :func:`repeat_indices`: the subset repeated so that an epoch keeps (about) the iterations of a
  full epoch (the paper's appendix B.1), every chosen clip appearing equally often.
- :func:`half_class_splits`: half of the classes chosen ``num_splits`` times with seeds 0..N-1,
  for the zero-shot "half classes" protocol (the engine reports mean and std over splits).
- :func:`class_subset_ids`: a class subset given as a label file (e.g. one of Kinetics-600's three
  splits of 160 new classes), as ids into the full label list.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from text4vis.data.annotations import AnnotationError, VideoRecord, write_annotations
from text4vis.data.labels import match_class_names, read_labels
from text4vis.errors import ConfigError, DataError, UsageError

__all__ = [
    "FEW_SHOT_FILE",
    "class_subset_ids",
    "few_shot_indices",
    "half_class_splits",
    "repeat_indices",
    "write_few_shot_list",
]

logger = logging.getLogger("text4vis.data.few_shot")

FEW_SHOT_FILE = "few_shot_list.txt"  # name of the chosen subset inside a run folder


def few_shot_indices(labels: Sequence[int], shot: int, seed: int) -> list[int]:
    """Indices of ``shot`` clips of every class, chosen with ``seed``; sorted.

    Args:
        labels: label of every clip of the training list.
        shot: K, clips per class.
        seed: seed of the choice (independent of rank, worker and global RNG).

    Raises:
        ValueError: ``shot < 1`` or a class with fewer than ``shot`` clips (named).
    """
    if shot < 1:
        raise ConfigError(f"data.shot must be at least 1 for a few-shot subset, got {shot}")
    labels_array = np.asarray(labels, dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for label in np.unique(labels_array):
        members = np.flatnonzero(labels_array == label)
        if len(members) < shot:
            raise DataError(
                f"class {int(label)} has {len(members)} clips, fewer than data.shot={shot}; "
                "lower data.shot or add clips"
            )
        chosen.extend(int(i) for i in rng.choice(members, size=shot, replace=False))
    return sorted(chosen)


def repeat_indices(indices: Sequence[int], full_length: int) -> list[int]:
    """``indices`` repeated ``max(1, full_length // len(indices))`` times (each equally often)."""
    if not indices:
        raise ValueError("cannot repeat an empty subset")
    repeats = max(1, full_length // len(indices))
    return list(indices) * repeats


def half_class_splits(num_classes: int, num_splits: int = 10) -> list[list[int]]:
    """``num_splits`` seeded choices (seeds 0..N-1) of half of the classes, each sorted."""
    if num_classes < 4:
        raise UsageError(
            f"half-class splits need at least 4 classes, got {num_classes}: a split of "
            f"{num_classes // 2} class(es) always scores 100% top-1; use the full protocol "
            "(--protocol full) or more classes"
        )
    return [
        sorted(
            int(c)
            for c in np.random.default_rng(seed).choice(
                num_classes, size=num_classes // 2, replace=False
            )
        )
        for seed in range(num_splits)
    ]


def class_subset_ids(subset_labels: str | Path, class_names: Sequence[str]) -> list[int]:
    """Ids in ``class_names`` of the classes named by a subset label file (``id,name`` CSV).

    The subset file's own ids give the order of the subset (its classifier rows).

    Raises:
        AnnotationError: a name of the subset is not among ``class_names``.
    """
    names = read_labels(subset_labels)
    rows = match_class_names(names, class_names)
    missing = [name for name, row in zip(names, rows) if row is None]
    if missing:
        raise AnnotationError(
            f"{subset_labels}: {len(missing)} class names are not in the dataset's label file, "
            f"e.g. {missing[:3]}; names must match as written or after normalisation"
        )
    return [row for row in rows if row is not None]


def write_few_shot_list(
    run_dir: Any, records: Sequence[VideoRecord], indices: Sequence[int]
) -> Path:
    """Write the chosen clips (before repetition) as a list file ``few_shot_list.txt``.

    Args:
        run_dir: a run folder (:class:`~text4vis.runs.RunDir` or a path).
        records: the full training records.
        indices: the chosen indices.
    """
    folder = Path(getattr(run_dir, "path", run_dir))
    path = write_annotations(folder / FEW_SHOT_FILE, [records[i] for i in indices])
    logger.info("few-shot subset of %d clips written to %s", len(indices), path)
    return path

"""Indexing spread over processes (``torchrun``): the videos to embed are cut into units, each rank
embeds its units and writes each as a shard, rank 0 merges the shards into the index.

    torchrun --nproc-per-node 4 -m text4vis index clips/ --model MODEL --out clips.index
    torchrun --nnodes 2 --node-rank R --nproc-per-node 4 --rdzv-backend c10d \\
        --rdzv-endpoint HOST:29500 -m text4vis index clips/ --model MODEL --out clips.index

Every rank scans nothing itself: rank 0 scans the inputs and sends the list; each rank then
works out the same plan (the rows kept, the videos to embed in the order a single process embeds
them, cut into units of ``chunk`` videos). Unit ``u`` goes to rank ``u % world_size``. A finished
unit is a small index (:func:`text4vis.index_store.write_index`, atomic) in
``INDEX/shards/<plan>/unit-<u>/``, where ``<plan>`` is a hash of the model, the data settings
and the videos to embed with their sizes and times: a run stopped part way (SIGTERM, a killed
rank) and started again with the same inputs makes the same plan and embeds only the units
without a shard, whatever its number of processes. Rank 0 appends the units in order, so the
merged index has the rows, in the order, and the vectors a single process gives; the shards
are removed once the index is saved. The index folder must be on a file system every rank sees.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from text4vis import distributed
from text4vis.index_store import (
    HEADER_NAME,
    IndexedVideo,
    IndexFailure,
    IndexUpdate,
    VideoTable,
    read_index,
    scan_videos,
    write_index,
)

__all__ = ["SHARDS_NAME", "plan_key", "update_sharded"]

logger = logging.getLogger("text4vis.search")

SHARDS_NAME = "shards"


def plan_key(
    index: Any, paths: list[str], signatures: dict[str, tuple[int, int]], chunk: int
) -> str:
    """A hash of what decides the units' contents: the model, the data settings, the videos to
    embed (path, size, time, in order) and the unit size."""
    digest = hashlib.sha256()
    header = [index.info.model.identity, index.info.data, index.storage, chunk]
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for path in paths:
        digest.update(json.dumps([path, *signatures[path]]).encode())
    return digest.hexdigest()[:20]


def _unit_folder(plan: Path, unit: int) -> Path:
    return plan / f"unit-{unit:06d}"


def _unit_done(folder: Path) -> bool:
    return (folder / HEADER_NAME).is_file()


def update_sharded(
    index: Any,
    inputs: list[str],
    *,
    chunk: int,
    progress: bool = False,
) -> IndexUpdate:
    """:meth:`text4vis.search.VideoIndex.update` (``index``) spread over the ranks of the running process group.

    Returns:
        What was done (on rank 0 the whole update; on other ranks the same report, as rank 0
        sends it).
    """
    predictor = index._require_predictor("updating an index")
    rank, world = distributed.get_rank(), distributed.get_world_size()
    scanned = scan_videos(inputs, predictor.data) if rank == 0 else None
    signatures, failures = distributed.broadcast_object(scanned, src=0)
    report, to_embed = index._drop_stale(signatures)
    index.info.inputs = list(inputs)
    index.info.failures = failures
    units = [to_embed[i : i + chunk] for i in range(0, len(to_embed), chunk)]
    plan = index.path / SHARDS_NAME / plan_key(index, to_embed, signatures, chunk)
    mine = [u for u in range(len(units)) if u % world == rank]
    todo = [u for u in mine if not _unit_done(_unit_folder(plan, u))]
    if rank == 0:
        logger.info(
            "index %s over %d processes: %d new, %d changed, %d removed, %d unchanged; "
            "%d units of %d videos, %d already embedded",
            index.path,
            world,
            len(report.added),
            len(report.changed),
            len(report.removed),
            report.unchanged,
            len(units),
            chunk,
            sum(_unit_done(_unit_folder(plan, u)) for u in range(len(units))),
        )
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        total = sum(len(units[u]) for u in todo)
        bar = tqdm(total=total, desc=f"index rank {rank}", unit="video", position=rank)
    embedded = 0
    try:
        for unit in todo:
            part = units[unit]
            rows, errors = index._embed(part)
            embedded += len(part)
            done = [i for i in range(len(part)) if i in rows]
            dim = int(index.info.model.embed_dim or 0)
            vectors = (
                np.stack([rows[i] for i in done]) if done else np.zeros((0, dim), np.float32)
            ).astype(index.embeddings.dtype)
            table = VideoTable.from_records(
                IndexedVideo(part[i], *signatures[part[i]]) for i in done
            )
            header = {
                "format": 2,
                "unit": unit,
                "precision": predictor.precision,
                "failures": [IndexFailure(part[i], errors[i]).to_dict() for i in sorted(errors)],
            }
            write_index(_unit_folder(plan, unit), header, vectors, table)
            if bar is not None:
                bar.update(len(part))
    finally:
        if bar is not None:
            bar.close()
    counts = distributed.all_reduce_sum([float(embedded)])
    distributed.barrier()  # every unit is written
    if rank == 0:
        _merge_units(index, plan, len(units))
        index.save()
        shutil.rmtree(plan, ignore_errors=True)
        if not any((index.path / SHARDS_NAME).iterdir()):
            (index.path / SHARDS_NAME).rmdir()
    report.embedded = int(counts[0])
    report.failed = list(index.failures)
    unreadable = {f.path for f in report.failed}
    report.added = [p for p in report.added if p not in unreadable]
    report.changed = [p for p in report.changed if p not in unreadable]
    index.last_update = report
    return report


def _merge_units(index: Any, plan: Path, count: int) -> None:
    """Append the units' rows and failures to ``index`` in unit order (rank 0)."""
    vectors, tables = [index.embeddings], [index.videos]
    for unit in range(count):
        folder = _unit_folder(plan, unit)
        if not _unit_done(folder):
            raise RuntimeError(f"{folder}: unit {unit} was not written by its rank")
        stored = read_index(folder)
        vectors.append(np.asarray(stored.vectors))
        tables.append(stored.table)
        index.info.failures += [IndexFailure(**f) for f in stored.header.get("failures", [])]
        if len(stored.table):
            index._record_precision(str(stored.header.get("precision", "")))
    index.embeddings = np.concatenate(vectors).astype(index.embeddings.dtype)
    table = tables[0]
    for other in tables[1:]:
        table = table.concat(other)
    index.info.videos = table
    index._backend = None

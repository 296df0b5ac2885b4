"""Process-group helpers driven by the environment ``torchrun`` sets.

Every helper is safe to call in a plain single process (world size 1, no process group), so the
library never needs DDP to run.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "barrier",
    "broadcast_object",
    "get_local_rank",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "is_main_process",
]


def _dist() -> Any | None:
    try:
        import torch.distributed as dist
    except ImportError:  # pragma: no cover - torch is a hard dependency
        return None
    if dist.is_available() and dist.is_initialized():
        return dist
    return None


def is_distributed() -> bool:
    """True when a process group with more than one process is running."""
    dist = _dist()
    return dist is not None and dist.get_world_size() > 1


def get_rank() -> int:
    """Global rank: from the process group, else ``RANK`` from torchrun, else 0."""
    dist = _dist()
    if dist is not None:
        return int(dist.get_rank())
    return int(os.environ.get("RANK", "0"))


def get_local_rank() -> int:
    """Rank on this node (``LOCAL_RANK`` from torchrun, else 0)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def get_world_size() -> int:
    """Number of processes: from the process group, else ``WORLD_SIZE``, else 1."""
    dist = _dist()
    if dist is not None:
        return int(dist.get_world_size())
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """True on global rank 0 (and in a single process)."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank; a no-op without a process group."""
    dist = _dist()
    if dist is not None:
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Return rank ``src``'s ``obj`` on every rank (picklable objects); identity in one process."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return obj
    holder = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]

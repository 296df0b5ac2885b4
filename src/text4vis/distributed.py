"""Process-group helpers driven by the environment ``torchrun`` sets.

Every helper is safe to call in a plain single process (world size 1, no process group), so the
library never needs DDP to run. The device a process computes on (``LOCAL_RANK``'s GPU) is
chosen by :mod:`text4vis.runtime`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as torch_dist

from text4vis.runtime import select_device

__all__ = [
    "all_reduce_sum",
    "barrier",
    "broadcast_object",
    "cleanup_distributed",
    "get_rank",
    "get_world_size",
    "is_distributed",
    "is_main_process",
    "process_group",
    "setup_distributed",
]


def _dist() -> Any | None:
    """``torch.distributed`` while a process group is running, else None."""
    if torch_dist.is_available() and torch_dist.is_initialized():
        return torch_dist
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


def setup_distributed(device: Any) -> bool:
    """Start the process group when launched by ``torchrun`` with more than one process.

    The backend is nccl for CUDA devices and gloo on the CPU. Does nothing in a single process
    or when a group is already running.

    Returns:
        True when this call started a process group (the caller then ends it with
        :func:`cleanup_distributed`).
    """
    if _dist() is not None or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    backend = "nccl" if getattr(device, "type", "cpu") == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"backend": backend}
    if backend == "nccl":
        kwargs["device_id"] = device
    torch_dist.init_process_group(**kwargs)
    return True


def cleanup_distributed() -> None:
    """Wait for every rank, then end the process group (a no-op without one).

    Ending the group explicitly before the interpreter exits avoids gloo aborting at exit.
    """
    dist = _dist()
    if dist is not None:
        dist.barrier()
        dist.destroy_process_group()


def all_reduce_sum(values: list[float]) -> list[float]:
    """Sum a few floats over all ranks (identity in one process)."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return list(values)
    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


@contextmanager
def process_group(device_name: str = "auto") -> Iterator[Any]:
    """Select the device and, under ``torchrun``, run the body inside a process group.

    Yields the device. On normal exit the group started here is ended after a barrier; when the
    body raises, it is destroyed without a barrier (other ranks may be gone). A group that was
    already running is left alone.
    """
    device = select_device(device_name)
    started = setup_distributed(device)
    ok = False
    try:
        yield device
        ok = True
    finally:
        if started:
            if ok:
                cleanup_distributed()
            else:
                torch_dist.destroy_process_group()

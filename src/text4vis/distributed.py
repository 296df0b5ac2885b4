"""Process-group helpers driven by the environment ``torchrun`` sets.

Every helper is safe to call in a plain single process (world size 1, no process group), so the
library never needs DDP to run. The device a process computes on (``LOCAL_RANK``'s GPU) is
chosen by :mod:`text4vis.runtime`.

Importing this module imports no torch (a video index built with an ONNX export runs without
it): a process group runs only after ``torch.distributed`` was imported, so a process that never
imported it has none, and the helpers that start or use one import torch when called.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from text4vis.runtime import select_device

__all__ = [
    "all_reduce_sum",
    "all_reduce_tensor",
    "barrier",
    "broadcast_object",
    "check_device_for_ranks",
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
    torch_dist = sys.modules.get("torch.distributed")  # never imported: no process group
    if torch_dist is not None and torch_dist.is_available() and torch_dist.is_initialized():
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
    import torch.distributed as torch_dist  # on use: see the module docstring

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
    import torch

    backend = dist.get_backend()
    device = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def all_reduce_tensor(tensor: Any) -> Any:
    """Sum ``tensor`` over all ranks in place and return it (identity in one process).

    Unlike :func:`all_reduce_sum` it reads nothing back to the host: the caller decides when
    to look at the result (one host synchronisation for many values).
    """
    dist = _dist()
    if dist is not None and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def check_device_for_ranks(device_name: str) -> None:
    """Refuse ``run.device=cuda:N`` when ``torchrun`` starts more than one process.

    Every rank would take GPU N: the processes share one GPU (NCCL refuses that, or they run
    out of its memory). ``cuda`` and ``auto`` give each rank ``cuda:LOCAL_RANK``, and
    ``CUDA_VISIBLE_DEVICES`` chooses which GPUs a job sees; an explicit ``cuda:N`` is for one
    process. Checked before anything touches CUDA, on every rank alike.

    Raises:
        ValueError: ``cuda:N`` with ``WORLD_SIZE`` > 1, naming the fix.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and device_name.startswith("cuda:"):
        raise ValueError(
            f"run.device={device_name!r} would put all {world} torchrun processes on one GPU; "
            "use run.device=cuda (or auto): each process then takes cuda:LOCAL_RANK; choose "
            "the GPUs of the job with CUDA_VISIBLE_DEVICES"
        )


@contextmanager
def process_group(device_name: str = "auto") -> Iterator[Any]:
    """Select the device and, under ``torchrun``, run the body inside a process group.

    Yields the device: ``cuda:LOCAL_RANK`` per process for ``cuda`` / ``auto`` on a GPU
    machine; ``cuda:N`` is refused under ``torchrun`` (:func:`check_device_for_ranks`). On
    normal exit the group started here is ended after a barrier; when the body raises, it is
    destroyed without a barrier (other ranks may be gone). A group that was already running is
    left alone.
    """
    check_device_for_ranks(device_name)
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
                dist = _dist()
                if dist is not None:
                    dist.destroy_process_group()

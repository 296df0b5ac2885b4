"""Where and in what precision tensors are computed: device choice and autocast.

The one list of precision names (:data:`PRECISIONS`) lives here; config checks, the trainer, the
evaluation runners and :class:`~text4vis.predict.Predictor` all take it from this module. Model
code knows nothing of devices or autocast: the engine and the predictor wrap it.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from typing import Any

__all__ = ["PRECISIONS", "autocast_context", "check_precision", "eval_precision", "select_device"]

logger = logging.getLogger("text4vis.runtime")

PRECISIONS = ("bf16", "fp16", "fp32")


def select_device(name: str = "auto") -> Any:
    """The torch device of this process.

    ``"auto"`` is ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU; ``"cuda"`` means
    ``cuda:LOCAL_RANK``; ``"cpu"`` and ``"cuda:N"`` are taken as given.

    Raises:
        ValueError: CUDA asked for but not available, or an unknown name.
    """
    import torch

    from text4vis.distributed import get_local_rank

    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"run.device={name!r} but CUDA is not available; use run.device=cpu")
        device = torch.device(f"cuda:{get_local_rank()}") if name == "cuda" else torch.device(name)
        torch.cuda.set_device(device)
        return device
    raise ValueError(f"run.device {name!r}: choose auto, cpu, cuda or cuda:N")


def check_precision(precision: str, source: str = "train.precision") -> str:
    """``precision`` when it is one of :data:`PRECISIONS`.

    Raises:
        ValueError: another name; the message names ``source`` and the valid names.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"{source} {precision!r}: choose one of {', '.join(PRECISIONS)}")
    return precision


def eval_precision(precision: str, device: Any, *, source: str = "train.precision") -> str:
    """The precision to run inference in on ``device``.

    ``"auto"`` is bf16 on a GPU and fp32 on the CPU. fp16 autocast is GPU-only, so fp16 asked for
    on the CPU falls back to fp32 (logged).
    """
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    check_precision(precision, source)
    if device.type == "cpu" and precision == "fp16":
        logger.info("%s=fp16 is GPU-only; running in fp32 on the CPU", source)
        return "fp32"
    return precision


def autocast_context(device: Any, precision: str) -> Any:
    """``torch.autocast`` for ``precision`` (bf16 | fp16 | fp32) on ``device``."""
    import torch

    if precision == "fp32":
        return nullcontext()
    check_precision(precision)
    if device.type == "cpu" and precision == "fp16":
        raise ValueError("fp16 autocast needs a GPU; use train.precision=bf16 or fp32 on the CPU")
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)

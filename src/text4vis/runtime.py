"""Where and in what precision tensors are computed: device choice, precision names and autocast.

The one home of precision names; config checks, the trainer, the evaluation runners, the command
line and :class:`~text4vis.predict.Predictor` all take them from this module. Two vocabularies:

* :data:`TRAIN_PRECISIONS` (``bf16``, ``fp16``, ``fp32``): ``train.precision``, i.e. the autocast
  precisions (:func:`autocast_context`, :func:`check_train_precision`).
* :data:`INFERENCE_PRECISIONS`: those plus ``int8`` (dynamic quantization of the linear layers,
  CPU only), what ``--precision`` of ``predict`` / ``eval`` / ``features`` / ``zeroshot`` and
  ``Predictor(precision=)`` accept, besides ``auto``; :func:`inference_precision` resolves them.
  :func:`text4vis.engine.loops.prepare_inference` prepares a model for the resolved name.

Model code knows nothing of devices or autocast: the engine and the predictor wrap it. Importing
this module imports no torch (the command line lists the names in its help).
"""

from __future__ import annotations

import logging
import os
import typing
from contextlib import nullcontext
from typing import Any

from text4vis.config import TrainPrecision
from text4vis.errors import Text4VisError

__all__ = [
    "INFERENCE_PRECISIONS",
    "TRAIN_PRECISIONS",
    "PrecisionError",
    "autocast_context",
    "check_train_precision",
    "get_local_rank",
    "inference_precision",
    "precision_help",
    "select_device",
]

logger = logging.getLogger("text4vis.runtime")

# Training precisions: the autocast dtypes (fp32 = no autocast), as typed in the config.
TRAIN_PRECISIONS: tuple[str, ...] = typing.get_args(TrainPrecision)

# Inference precisions, with what each one does (for --help and errors).
INFERENCE_PRECISIONS: dict[str, str] = {
    "fp32": "float32, the model as trained",
    "bf16": "bfloat16 autocast (GPU, or a CPU with AVX-512 BF16 / AMX)",
    "fp16": "float16 autocast (GPU only)",
    "int8": "dynamic int8 quantization of the linear layers (CPU only; fastest there)",
}


class PrecisionError(Text4VisError, ValueError):
    """A precision name that is unknown, or impossible on the chosen device."""


def get_local_rank() -> int:
    """Rank on this node (``LOCAL_RANK`` from torchrun, else 0): the GPU this process uses."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def select_device(name: str = "auto") -> Any:
    """The torch device of this process.

    ``"auto"`` is ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU; ``"cuda"`` means
    ``cuda:LOCAL_RANK``; ``"cpu"`` and ``"cuda:N"`` are taken as given.

    Raises:
        ValueError: CUDA asked for but not available, or an unknown name.
    """
    import torch  # on use: importing this module imports no torch (see the module docstring)

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


def check_train_precision(precision: str, source: str = "train.precision") -> str:
    """``precision`` when it is one of :data:`TRAIN_PRECISIONS`.

    Raises:
        PrecisionError: another name; the message names ``source`` and the valid names.
    """
    if precision not in TRAIN_PRECISIONS:
        raise PrecisionError(f"{source} {precision!r}: choose one of {', '.join(TRAIN_PRECISIONS)}")
    return precision


def _device_kind(device: Any) -> str:
    return getattr(device, "type", None) or str(device).split(":")[0]


def inference_precision(
    precision: str | None,
    device: Any,
    *,
    train_precision: str = "fp32",
    source: str = "--precision",
) -> str:
    """The precision to run inference in on ``device``: a key of :data:`INFERENCE_PRECISIONS`.

    Args:
        precision: what was asked for. ``auto`` is bf16 on a GPU and fp32 on the CPU; a name of
            :data:`INFERENCE_PRECISIONS` must suit ``device`` (fp16 needs a GPU, int8 the CPU).
            None runs in ``train_precision``, the precision the model was trained in, where
            fp16 on the CPU falls back to fp32 (logged): that was a choice for training, not a
            request for this device.
        device: a ``torch.device`` or a device string (``cpu``, ``cuda:0``).
        train_precision: the ``train.precision`` used when ``precision`` is None.
        source: where ``precision`` came from, named in errors.

    Raises:
        PrecisionError: an unknown name, fp16 asked for on the CPU or int8 on a GPU, with the fix.
    """
    kind = _device_kind(device)
    if precision is None:
        check_train_precision(train_precision)
        if kind == "cpu" and train_precision == "fp16":
            logger.info("train.precision=fp16 is GPU-only; running in fp32 on the CPU")
            return "fp32"
        return train_precision
    if precision == "auto":
        return "bf16" if kind == "cuda" else "fp32"
    if precision not in INFERENCE_PRECISIONS:
        raise PrecisionError(
            f"{source} {precision!r}: choose auto or one of {', '.join(INFERENCE_PRECISIONS)}"
        )
    if precision == "fp16" and kind == "cpu":
        raise PrecisionError("fp16 autocast needs a GPU; on the CPU use int8 or bf16 (or fp32)")
    if precision == "int8" and kind != "cpu":
        raise PrecisionError(
            f"int8 dynamic quantization runs on the CPU only, not on {device}; use bf16 on a GPU"
        )
    return precision


def precision_help(default: str) -> str:
    """Help text of a ``--precision`` option (the names and what each does)."""
    names = "; ".join(f"{name}: {what}" for name, what in INFERENCE_PRECISIONS.items())
    return f"inference precision: auto (bf16 on a GPU, fp32 on a CPU); {names} (default {default})"


def autocast_context(device: Any, precision: str) -> Any:
    """``torch.autocast`` for ``precision`` (one of :data:`TRAIN_PRECISIONS`) on ``device``."""
    import torch  # on use: importing this module imports no torch (see the module docstring)

    if precision == "fp32":
        return nullcontext()
    check_train_precision(precision, "autocast precision")
    if device.type == "cpu" and precision == "fp16":
        raise PrecisionError(
            "fp16 autocast needs a GPU; use train.precision=bf16 or fp32 on the CPU"
        )
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)

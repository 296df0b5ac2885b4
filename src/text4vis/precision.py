"""Inference precision names: what ``--precision`` accepts (``predict``, ``eval``, ``features``,
:class:`~text4vis.predict.Predictor`) and which device each one needs.

Importing this module imports no torch (the command line lists the names in its help); the
model preparation each name needs lives in :mod:`text4vis.models.quantize`.
"""

from __future__ import annotations

from typing import Any

from text4vis.errors import Text4VisError

__all__ = [
    "INFERENCE_PRECISIONS",
    "PrecisionError",
    "check_inference_precision",
    "precision_help",
]

# Precision names accepted at inference, with what each one does (for --help and errors).
INFERENCE_PRECISIONS: dict[str, str] = {
    "fp32": "float32, the model as trained",
    "bf16": "bfloat16 autocast (GPU, or a CPU with AVX-512 BF16 / AMX)",
    "fp16": "float16 autocast (GPU only)",
    "int8": "dynamic int8 quantization of the linear layers (CPU only; fastest there)",
}


class PrecisionError(Text4VisError, ValueError):
    """An inference precision that is unknown or impossible on the chosen device."""


def check_inference_precision(precision: str, device: Any) -> str:
    """Validate ``precision`` for ``device`` and resolve ``auto`` (bf16 on a GPU, fp32 on a CPU).

    Args:
        precision: ``auto`` or a key of :data:`INFERENCE_PRECISIONS`.
        device: a ``torch.device`` or a device string (``cpu``, ``cuda:0``).

    Returns:
        The precision name to use.

    Raises:
        PrecisionError: an unknown name, fp16 on a CPU or int8 on a GPU, with the fix.
    """
    kind = getattr(device, "type", None) or str(device).split(":")[0]
    if precision == "auto":
        return "bf16" if kind == "cuda" else "fp32"
    if precision not in INFERENCE_PRECISIONS:
        raise PrecisionError(
            f"precision {precision!r}: choose auto or one of {', '.join(INFERENCE_PRECISIONS)}"
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

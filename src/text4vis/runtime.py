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

Whether CUDA is usable, and why not (:func:`cuda_problem`): ``python -m text4vis.runtime`` reports
it and exits 1 when CUDA is not usable (``make test-gpu`` and ``make bench-gpu`` run it first).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import typing
import warnings
from contextlib import nullcontext
from typing import Any

from text4vis.config import TrainPrecision
from text4vis.errors import ConfigError

__all__ = [
    "INFERENCE_PRECISIONS",
    "TRAIN_PRECISIONS",
    "PrecisionError",
    "autocast_context",
    "check_train_precision",
    "cuda_problem",
    "diagnose_cuda",
    "get_local_rank",
    "inference_precision",
    "precision_help",
    "select_device",
    "set_tf32",
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


PrecisionError = ConfigError  # the older name, kept importable


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
            raise ConfigError(f"run.device={name!r} but CUDA is not available; use run.device=cpu")
        device = torch.device(f"cuda:{get_local_rank()}") if name == "cuda" else torch.device(name)
        torch.cuda.set_device(device)
        return device
    raise ConfigError(f"run.device {name!r}: choose auto, cpu, cuda or cuda:N")


def set_tf32(device: Any, enabled: bool) -> None:
    """TF32 tensor cores for float32 matrix products and cuDNN convolutions (``run.tf32``).

    Applied by the trainer (and ``benchmarks/gpu.py``) on CUDA devices only, so CPU results never
    depend on it. TF32 keeps float32's range with a 10-bit mantissa (relative error ~1e-3 per
    product) and runs float32 products several times faster on Ampere and newer GPUs; under bf16 /
    fp16 autocast it affects only the operations autocast leaves in float32.
    """
    if _device_kind(device) != "cuda":
        return
    import torch

    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def diagnose_cuda(
    *,
    torch_version: str,
    torch_cuda: str | None,
    visible_devices: str | None = None,
    driver_version: str | None = None,
    driver_cuda: str | None = None,
    smi_error: str | None = None,
    warning: str = "",
) -> str:
    """Why ``torch.cuda.is_available()`` is False, from the facts :func:`cuda_problem` gathers.

    Args:
        torch_version: ``torch.__version__``.
        torch_cuda: ``torch.version.cuda`` (None for a CPU-only build).
        visible_devices: ``CUDA_VISIBLE_DEVICES``, None when unset.
        driver_version: the NVIDIA driver's version from ``nvidia-smi``, None when unknown.
        driver_cuda: the newest CUDA version the driver supports (``nvidia-smi``'s "CUDA
            Version"), None when unknown.
        smi_error: why ``nvidia-smi`` gave no answer (missing, or failed with this output).
        warning: what torch warned while looking for CUDA devices (e.g. "The NVIDIA driver on
            your system is too old (found version 12020)"), from which the driver's CUDA version
            is read when ``nvidia-smi`` did not give it.
    """
    if torch_cuda is None:
        return (
            f"torch {torch_version} is a CPU-only build; install a CUDA build of torch "
            "(`make install` / `pip install -c constraints.txt -e .` installs the CUDA wheels)"
        )
    if visible_devices is not None and visible_devices.strip() in ("", "-1"):
        return f"CUDA_VISIBLE_DEVICES={visible_devices!r} hides every GPU; unset it"
    found = re.search(r"found version (\d+)", warning)
    if driver_cuda is None and found:  # the driver API's integer: 12020 is CUDA 12.2
        number = int(found.group(1))
        driver_cuda = f"{number // 1000}.{number % 1000 // 10}"
    versions = f"torch {torch_version} (built for CUDA {torch_cuda})"
    driver = f"NVIDIA driver {driver_version}" if driver_version else "the NVIDIA driver"
    if driver_cuda and _version_tuple(driver_cuda)[:1] < _version_tuple(torch_cuda)[:1]:
        return (
            f"driver/wheel mismatch: {versions} needs a driver for CUDA {torch_cuda}, but "
            f"{driver} supports CUDA up to {driver_cuda}; update the driver, or install a torch "
            f"build for CUDA {driver_cuda} (https://pytorch.org/get-started/locally/)"
        )
    if driver_version is None and driver_cuda is None:
        return (
            f"no NVIDIA driver answers ({smi_error or 'nvidia-smi gave no driver version'}); "
            f"{versions} needs a machine with an NVIDIA GPU and its driver"
        )
    detail = f"; torch warned: {warning.strip()}" if warning.strip() else ""
    older = (
        f" (the driver's CUDA {driver_cuda} is older than the wheel's {torch_cuda}: update it)"
        if driver_cuda and _version_tuple(driver_cuda) < _version_tuple(torch_cuda)
        else ""
    )
    return (
        f"torch.cuda.is_available() is False with {versions} and {driver} "
        f"(CUDA {driver_cuda or 'unknown'}){older}{detail}"
    )


def _nvidia_smi() -> tuple[str | None, str | None, str | None]:
    """``(driver_version, driver_cuda, error)`` from ``nvidia-smi``'s header."""
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return None, None, "nvidia-smi is not on PATH"
    try:
        result = subprocess.run(
            [executable], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return None, None, f"nvidia-smi failed: {exc}"
    text = result.stdout + result.stderr
    driver = re.search(r"Driver Version:\s*([\d.]+)", text)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", text)
    error = None if result.returncode == 0 else f"nvidia-smi: {text.strip()[:300]}"
    return (driver.group(1) if driver else None), (cuda.group(1) if cuda else None), error


def cuda_problem() -> str | None:
    """Why this process cannot compute on CUDA, or None when it can.

    CUDA is usable when ``torch.cuda.is_available()`` and a small kernel of this torch build runs
    on the current device (a wheel without kernels for the GPU's architecture fails there). When
    it is not, the reason is worked out by :func:`diagnose_cuda` from torch's build, the driver
    (``nvidia-smi``), ``CUDA_VISIBLE_DEVICES`` and torch's own warning: a CPU-only build, hidden
    devices, no driver, or a driver too old for the wheel's CUDA version (a driver/wheel
    mismatch), each with its fix.
    """
    import torch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        available = torch.cuda.is_available()
    if available:
        try:
            torch.ones(1, device="cuda").add_(1).cpu()
        except RuntimeError as exc:
            return (
                f"a CUDA kernel failed on {torch.cuda.get_device_name()} (torch "
                f"{torch.__version__}, CUDA {torch.version.cuda}, built for "
                f"{' '.join(torch.cuda.get_arch_list())}): {exc}"
            )
        return None
    driver_version, driver_cuda, smi_error = _nvidia_smi()
    return diagnose_cuda(
        torch_version=torch.__version__,
        torch_cuda=torch.version.cuda,
        visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),
        driver_version=driver_version,
        driver_cuda=driver_cuda,
        smi_error=smi_error,
        warning=" ".join(str(w.message) for w in caught),
    )


def main() -> int:
    """``python -m text4vis.runtime``: exit 0 and describe the GPUs when CUDA is usable, else
    exit 1 with the reason (what ``make test-gpu`` and ``make bench-gpu`` check first)."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    problem = cuda_problem()
    if problem is not None:
        logger.error("CUDA is not usable: %s", problem)
        return 1
    import torch

    names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
    logger.info(
        "CUDA is usable: %d device(s) (%s), torch %s, CUDA %s",
        torch.cuda.device_count(),
        names,
        torch.__version__,
        torch.version.cuda,
    )
    return 0


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


if __name__ == "__main__":
    raise SystemExit(main())

"""Training checkpoints: atomic writes, ``last`` / ``best``, exact resume.

A checkpoint is one ``torch.save`` file holding only tensors and plain Python values, so it loads
with ``torch.load(weights_only=True)``:

``format``, ``epoch`` (epochs completed), ``step`` (optimizer steps taken), ``epoch_step``
(optimizer steps taken inside the current epoch), ``model`` and ``objective`` state dicts,
``optimizer``, ``scheduler`` (the schedule's arguments), ``scaler`` (fp16 gradient scaler or
``None``), ``rng`` (python / numpy global, torch CPU and CUDA states: the trainer uses seeded
generators, these are saved so that any library drawing from the global ones resumes too),
``best`` (best validation top-1 so far), ``history`` (per-epoch metrics), ``config`` (the resolved
config as nested dicts), ``architecture`` (what rebuilds the model without pretrained weights: the
dict ``config.json`` of a saved model folder holds, see
:meth:`~text4vis.models.video.VideoRecognizer.architecture`) and ``complete = True``;
``format`` is :data:`text4vis.models.factory.CHECKPOINT_FORMAT_VERSION`.

Reading one (:func:`~text4vis.models.factory.load_checkpoint`) and rebuilding its model
(:func:`~text4vis.models.factory.load_model`) live in :mod:`text4vis.models.factory`, beside the
other saved-model formats; this module writes them and finds the one to resume.

Writes go to a temporary file in the same folder, are flushed and ``fsync``-ed, then renamed over
the target, so a process killed mid-write leaves the previous file untouched.
"""

from __future__ import annotations

import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from text4vis.models.factory import CheckpointError, load_checkpoint

__all__ = [
    "CHECKPOINT_DIR",
    "atomic_torch_save",
    "capture_rng_state",
    "find_latest_checkpoint",
    "restore_rng_state",
    "resolve_resume",
]

logger = logging.getLogger("text4vis.engine.checkpoint")

CHECKPOINT_DIR = "checkpoints"  # sub-folder of a run folder holding last.pt / best.pt


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - some file systems do not open folders
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` atomically (temporary file + fsync + rename).

    Returns:
        The written path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def capture_rng_state() -> dict[str, Any]:
    """The global RNG states of python, numpy and torch (CPU and every CUDA device).

    Stored as tensors and plain values only (``weights_only`` loading).
    """
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "cached_gaussian": float(np_cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(py_state), gauss))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)
        else:
            logger.warning(
                "checkpoint holds CUDA RNG states of %d devices, this machine has %d; "
                "CUDA RNG states not restored",
                len(cuda_states),
                torch.cuda.device_count(),
            )


def find_latest_checkpoint(root: str | Path, name: str) -> Path | None:
    """Newest complete ``last.pt`` among the run folders ``<root>/<name>/*/checkpoints/``.

    Newest by modification time; files that fail to load are skipped with a warning.
    """
    base = Path(root) / name
    if not base.is_dir():
        return None
    candidates = sorted(
        base.glob(f"*/{CHECKPOINT_DIR}/last.pt"), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for candidate in candidates:
        try:
            load_checkpoint(candidate)
        except CheckpointError as exc:
            logger.warning("skipping %s: %s", candidate, exc)
            continue
        return candidate
    return None


def resolve_resume(resume: str | None, root: str | Path, name: str) -> Path | None:
    """The checkpoint a ``--resume`` value means (``None`` = start fresh).

    ``"auto"`` picks the newest complete checkpoint of the run name and starts fresh when there
    is none; any other value is a checkpoint file or a run folder (its ``checkpoints/last.pt``).

    Raises:
        CheckpointError: an explicit path that holds no checkpoint.
    """
    if resume is None or resume == "":
        return None
    if resume == "auto":
        found = find_latest_checkpoint(root, name)
        if found is None:
            logger.info("--resume auto: no checkpoint under %s/%s; starting fresh", root, name)
        return found
    path = Path(resume)
    if path.is_dir():
        candidate = path / CHECKPOINT_DIR / "last.pt"
        if not candidate.is_file():
            candidate = path / "last.pt"
        path = candidate
    if not path.is_file():
        raise CheckpointError(
            f"--resume {resume}: no checkpoint there; give 'auto', a .pt file or a run folder "
            f"holding {CHECKPOINT_DIR}/last.pt"
        )
    return path

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
the target, so a process killed mid-write leaves the previous file untouched. With
``keep_previous`` the replaced file stays as ``previous.pt`` (a hard link made before the rename,
so some complete checkpoint is on disk at every instant); ``--resume`` falls back to it when
``last.pt`` cannot be read (a failing disk, a copy cut short). A full disk stops the save with a
:class:`CheckpointError` naming the folder; the temporary file is removed and the previous
checkpoint is untouched.
"""

from __future__ import annotations

import errno
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
    "PREVIOUS_NAME",
    "atomic_torch_save",
    "capture_rng_state",
    "find_latest_checkpoint",
    "restore_rng_state",
    "resolve_resume",
]

logger = logging.getLogger("text4vis.engine.checkpoint")

CHECKPOINT_DIR = "checkpoints"  # sub-folder of a run folder holding last.pt / best.pt
PREVIOUS_NAME = "previous.pt"  # the `last` checkpoint before the newest one (keep_previous)
_OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT}


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


def _out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` or an exception it was raised from or during is ENOSPC / EDQUOT (torch
    reports a failed write as a ``RuntimeError`` raised while handling the ``OSError``)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _OUT_OF_SPACE:
            return True
        current = current.__cause__ or current.__context__
    return False


def _remove_stale_temporaries(path: Path) -> None:
    """Remove what writers of ``path`` killed mid-write left (one writer per file is assumed)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        stale.unlink(missing_ok=True)


def atomic_torch_save(obj: Any, path: str | Path, *, keep_previous: bool = False) -> Path:
    """``torch.save`` to ``path`` atomically (temporary file + fsync + rename).

    Args:
        obj: what to save.
        path: the target file.
        keep_previous: keep the file being replaced as ``previous.pt`` beside it.

    Returns:
        The written path.

    Raises:
        CheckpointError: the device is full (the folder is named; nothing partial is left).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if keep_previous and path.is_file():
            _keep_as_previous(path)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, Exception) and _out_of_space(exc):
            raise CheckpointError(
                f"no space left on the device of {path.parent} while writing {path.name}; the "
                f"previous {path.name} is intact and no partial file is left; free space there "
                "or set run.root to a folder on another disk, then resume with --resume auto"
            ) from exc
        raise
    _fsync_dir(path.parent)
    return path


def _keep_as_previous(path: Path) -> None:
    """Make ``path``'s current content ``previous.pt`` without a moment with neither on disk."""
    previous = path.with_name(PREVIOUS_NAME)
    link = path.with_name(f".{PREVIOUS_NAME}.link.tmp")
    link.unlink(missing_ok=True)
    try:
        os.link(path, link)  # a second name for the same file: no copy, no window
    except OSError as exc:  # file systems without hard links: no fallback kept
        logger.warning("cannot keep %s as %s (%s)", path, previous, exc)
        return
    os.replace(link, previous)


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


def _newest_complete(candidates: list[Path], what: str) -> Path | None:
    """The first of ``candidates`` that loads; unreadable ones are named in a warning.

    Raises:
        CheckpointError: there are candidates, but none loads (never a silent fresh start).
    """
    unreadable = []
    for candidate in candidates:
        try:
            load_checkpoint(candidate)
        except CheckpointError as exc:
            logger.warning("%s is unreadable, trying an earlier checkpoint: %s", candidate, exc)
            unreadable.append(str(candidate))
            continue
        if unreadable:
            logger.warning("resuming from %s instead of %s", candidate, ", ".join(unreadable))
        return candidate
    if unreadable:
        raise CheckpointError(
            f"{what}: no complete checkpoint; unreadable (truncated or corrupt): "
            f"{', '.join(unreadable)}; restore one of them, or move them away to start afresh"
        )
    return None


def _by_mtime(paths: list[Path]) -> list[Path]:
    def mtime(path: Path) -> float:
        try:
            return path.stat().st_mtime
        except OSError:  # removed meanwhile
            return float("-inf")

    return sorted(paths, key=mtime, reverse=True)


def find_latest_checkpoint(root: str | Path, name: str) -> Path | None:
    """Newest complete ``last.pt`` (or ``previous.pt``) of the run folders ``<root>/<name>/*/``.

    Newest by modification time; a file that fails to load is named in a warning and the next
    newest is tried, so an unreadable ``last.pt`` falls back to the ``previous.pt`` beside it.

    Raises:
        CheckpointError: checkpoints exist but none of them loads.
    """
    base = Path(root) / name
    if not base.is_dir():
        return None
    candidates = [
        *base.glob(f"*/{CHECKPOINT_DIR}/last.pt"),
        *base.glob(f"*/{CHECKPOINT_DIR}/{PREVIOUS_NAME}"),
    ]
    return _newest_complete(_by_mtime(candidates), f"--resume auto under {base}")


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
        folder = path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path
        kept = [folder / "last.pt", folder / PREVIOUS_NAME]
        found = _newest_complete(_by_mtime([p for p in kept if p.is_file()]), f"--resume {resume}")
        path = found if found is not None else folder / "last.pt"
    if not path.is_file():
        raise CheckpointError(
            f"--resume {resume}: no checkpoint there; give 'auto', a .pt file or a run folder "
            f"holding {CHECKPOINT_DIR}/last.pt"
        )
    return path

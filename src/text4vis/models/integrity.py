"""Checksums of a model: of the files of a saved folder, and of its content.

:func:`model_identity` hashes what a model computes (architecture config, class names, tensors):
a video index records it, so that it is searched and updated with the same model.

Checksums of the files of a saved model folder are recorded in ``config.json`` and checked on load.

:meth:`~text4vis.models.video.VideoRecognizer.save_pretrained` records the SHA-256 and size of
``model.safetensors`` and ``classifier.safetensors`` under ``"files"``; ``from_pretrained`` checks
them before reading a tensor, so a file edited, truncated or swapped after saving is named instead
of loading wrong weights (or failing deep inside torch). Folders written before the record existed
load without the check.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from text4vis.errors import CheckpointError

__all__ = ["ModelFolderError", "check_files", "model_identity", "record_files"]

_CHUNK = 1 << 20


ModelFolderError = CheckpointError  # the older name, kept importable


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def record_files(directory: str | Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``{name: {"sha256", "bytes"}}`` for the files ``names`` of ``directory`` that exist."""
    directory = Path(directory)
    return {
        name: {"sha256": _sha256(directory / name), "bytes": (directory / name).stat().st_size}
        for name in names
        if (directory / name).is_file()
    }


def check_files(directory: str | Path, recorded: Mapping[str, Any] | None) -> None:
    """Check the files of ``directory`` against :func:`record_files`'s record (None: no check).

    Raises:
        ModelFolderError: a recorded file is missing, or its size or SHA-256 differs.
    """
    if not recorded:
        return
    directory = Path(directory)
    for name, expected in recorded.items():
        path = directory / name
        if not path.is_file():
            raise ModelFolderError(
                f"{path} is missing; config.json records it (the folder is incomplete: copy it "
                "again or re-export the model)"
            )
        size = path.stat().st_size
        if size != expected.get("bytes", size) or _sha256(path) != expected.get("sha256"):
            raise ModelFolderError(
                f"{path} does not match the checksum recorded in {directory / 'config.json'} "
                f"({size} bytes, recorded {expected.get('bytes')}): the file was edited, "
                "truncated or replaced after saving; copy the folder again or re-export the model"
            )


def model_identity(model: Any) -> str:
    """A content hash of a video model: its architecture config, class names and every tensor.

    Two models with the same hash embed videos and text identically, so an index built with one
    can be searched with the other.
    """
    digest = hashlib.sha256()
    cfg = getattr(model, "model_cfg", None)
    config = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}
    # A weight file's location says nothing about its content (which the tensors below hash).
    for key in ("pretrained", "text_pretrained", "classifier_file"):
        config.pop(key, None)
    header = {"config": config, "classes": list(getattr(model, "class_names", []) or [])}
    digest.update(json.dumps(header, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()

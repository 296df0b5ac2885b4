"""Checksums of the files of a saved model folder, recorded in ``config.json`` and checked on load.

:meth:`~text4vis.models.video.VideoRecognizer.save_pretrained` records the SHA-256 and size of
``model.safetensors`` and ``classifier.safetensors`` under ``"files"``; ``from_pretrained`` checks
them before reading a tensor, so a file edited, truncated or swapped after saving is named instead
of loading wrong weights (or failing deep inside torch). Folders written before the record existed
load without the check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from text4vis.errors import CheckpointError

__all__ = ["ModelFolderError", "check_files", "record_files"]

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

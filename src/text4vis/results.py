"""Results of labelling videos, as plain dataclasses (no torch): shared by the torch
:class:`text4vis.Predictor` and the torch-free :mod:`text4vis.onnx_runtime`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from text4vis.errors import VideoDecodeError

__all__ = ["VideoPrediction", "rankings_or_raise"]


@dataclass
class VideoPrediction:
    """The result for one video: ranked labels, or the reason it could not be read."""

    video: str  # the path as given
    predictions: list[dict[str, Any]] | None = None  # [{"label", "score"}], best first
    error: str | None = None  # why the video could not be labelled (None when it was)

    @property
    def ok(self) -> bool:
        """Whether the video was labelled."""
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """``{"video", "predictions"}`` or ``{"video", "error"}`` (the JSON schema)."""
        if self.error is not None:
            return {"video": self.video, "error": self.error}
        return {"video": self.video, "predictions": self.predictions}


def rankings_or_raise(
    results: list[VideoPrediction], files_method: str
) -> list[list[dict[str, Any]]]:
    """The ranked labels of every video, or one error naming each video that failed.

    Args:
        results: one result per video, as ``predict_files`` returns them.
        files_method: the method that keeps the others' results (named in the message).

    Raises:
        VideoDecodeError: some videos could not be read (the first five are named).
    """
    failed = [r for r in results if r.error is not None]
    if failed:
        listed = "; ".join(f"{r.video}: {r.error}" for r in failed[:5])
        more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        raise VideoDecodeError(
            f"{len(failed)} of {len(results)} videos could not be read: {listed}{more}; "
            f"use {files_method} to get the others' results with error entries"
        )
    return [r.predictions or [] for r in results]

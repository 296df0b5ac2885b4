"""Results of labelling videos, as plain dataclasses (no torch): shared by the torch
:class:`text4vis.Predictor` and the torch-free :mod:`text4vis.onnx_runtime`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["VideoPrediction"]


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

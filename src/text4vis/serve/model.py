"""What the server asks of a model: :class:`ServedModel`.

Two classes satisfy it: :class:`text4vis.Predictor` (a saved model on PyTorch) and
:class:`text4vis.onnx_runtime.OnnxPredictor` (a folder of ``text4vis export``, on ONNX Runtime).
The server (:mod:`text4vis.serve.service`, :mod:`text4vis.serve.batching`) calls only these
members, and imports neither class, so serving an export never imports PyTorch.

What a model's *views* are is its own business: the server passes the value of
:meth:`ServedModel.load_views` back to :meth:`ServedModel.embed_views` (a float tensor
``[V, T, 3, S, S]`` for a PyTorch model, uint8 ``[V, T, S, S, 3]`` for an export); embeddings
and scores cross over as NumPy arrays; a classifier's weight, from
:meth:`ServedModel.classifier_for`, goes back only to :meth:`ServedModel.score_views`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from text4vis.data.decoders import VideoReader
    from text4vis.timeline import Timeline

__all__ = ["ServedModel"]


@runtime_checkable
class ServedModel(Protocol):
    """A model the server can label videos with (see the module's doc)."""

    @property
    def arch(self) -> str:
        """The architecture's name (``/v1/model``)."""
        ...

    @property
    def num_frames(self) -> int:
        """T, the frames sampled per clip."""
        ...

    @property
    def class_names(self) -> list[str]:
        """The model's own classes (empty when it has none)."""
        ...

    def open_video(self, path: str | Path) -> VideoReader:
        """A reader of a video file or frame folder, with the model's decoder settings."""
        ...

    def sample_frames(self, num_frames: int) -> np.ndarray:
        """The frame numbers each evaluation clip of a video of ``num_frames`` frames takes:
        int64 ``[clips, T]``."""
        ...

    def load_views(self, path: str | Path) -> Any:
        """Decode, sample and transform one video into the views the model takes.

        Raises:
            VideoDecodeError: the video cannot be read (its ``reason`` says why).
        """
        ...

    def embed_views(self, views: Sequence[Any]) -> np.ndarray:
        """Embeddings of several videos' views in one pass: ``N`` values of :meth:`load_views`
        -> float32 ``[N, V, D]`` (before L2 normalisation)."""
        ...

    def classifier_for(self, labels: Sequence[str] | None = None) -> tuple[list[str], Any]:
        """The label names and the classifier for a label set (None: the model's own)."""
        ...

    def score_views(self, embeddings: np.ndarray, weight: Any) -> np.ndarray:
        """Scores ``[N, C]`` (softmax over the labels, averaged over the views) of embeddings
        ``[N, V, D]`` against a classifier of :meth:`classifier_for`."""
        ...

    def trim_classifiers(self, keep: int) -> None:
        """Forget the oldest cached text classifiers beyond ``keep``."""
        ...

    def timeline(
        self,
        video: str | Path,
        *,
        window: float,
        stride: float | None = None,
        labels: Sequence[str] | None = None,
        top_k: int | None = 5,
    ) -> Timeline:
        """Labels over time of a long video (a model may refuse with a UsageError)."""
        ...

"""Numbers that break: non-finite losses and weights in training.

A non-finite loss (an fp16 overflow beyond what the gradient scaler handles, a corrupt input, a
learning rate too high) or a non-finite gradient norm makes the trainer skip that optimizer step:
no update, the gradients dropped, the step counted. The step still consumes its batches (the data
order stays a function of the position in the epoch, so resume stays exact). After
``train.max_nonfinite_steps`` such steps in a row the run stops with :class:`NonFiniteLossError`,
naming the step and the videos of its batches. Before any checkpoint, ``best`` or the exported
model is written, :func:`check_finite_weights` refuses weights that are not all finite.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from text4vis.errors import Text4VisError

__all__ = [
    "NonFiniteLossError",
    "NonFiniteSteps",
    "NonFiniteWeightsError",
    "check_finite_weights",
    "gradient_norm",
]

logger = logging.getLogger("text4vis.engine.numerics")

_SHOWN_VIDEOS = 8  # videos named in a message; the rest are counted


class NonFiniteLossError(Text4VisError):
    """Too many optimizer steps in a row had a non-finite loss or gradient."""


class NonFiniteWeightsError(Text4VisError):
    """Weights about to be saved hold NaN or infinity."""


def gradient_norm(parameters: Iterable[torch.Tensor]) -> float:
    """The total L2 norm of the gradients of ``parameters`` (0 when none has one)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    return float(torch.nn.utils.get_total_norm(grads))


def check_finite_weights(state: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise :class:`NonFiniteWeightsError` when a floating tensor of ``state`` is not finite.

    Args:
        state: a state dict.
        where: what is being written (named in the message).
    """
    bad = [
        name
        for name, tensor in state.items()
        if torch.is_tensor(tensor)
        and tensor.is_floating_point()
        and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        raise NonFiniteWeightsError(
            f"refusing to write {where}: {len(bad)} tensors hold NaN or infinity "
            f"({', '.join(bad[:4])}{', ...' if len(bad) > 4 else ''}); the previous checkpoint "
            "is kept; lower train.lr or use train.precision=fp32/bf16, then --resume auto"
        )


def _videos_text(videos: Sequence[str]) -> str:
    shown = ", ".join(videos[:_SHOWN_VIDEOS])
    more = len(videos) - _SHOWN_VIDEOS
    return shown + (f" and {more} more" if more > 0 else "")


@dataclass
class NonFiniteSteps:
    """Counts skipped steps; raises past the limit of steps in a row.

    Attributes:
        limit: ``train.max_nonfinite_steps``.
        total: steps skipped since the start of the run.
        in_a_row: steps skipped since the last good one.
        videos: videos of the batches of the steps skipped in a row (this rank's).
    """

    limit: int
    total: int = 0
    in_a_row: int = 0
    videos: list[str] = field(default_factory=list)

    def record(
        self, *, finite: bool, step: int, loss: float, grad_norm: float, videos: Sequence[str]
    ) -> None:
        """Record whether optimizer step ``step`` (1-based) was finite on every rank.

        Raises:
            NonFiniteLossError: ``limit`` steps in a row were not.
        """
        if finite:
            self.in_a_row = 0
            self.videos = []
            return
        self.total += 1
        self.in_a_row += 1
        self.videos += list(videos)
        if not math.isfinite(loss):
            what = f"loss {loss}"
        elif not math.isfinite(grad_norm):
            what = f"gradient norm {grad_norm}"
        else:
            what = "non-finite on another rank"
        logger.warning(
            "step %d skipped: %s (%d in a row, at most train.max_nonfinite_steps=%d); videos of "
            "this rank's batch: %s",
            step,
            what,
            self.in_a_row,
            self.limit,
            _videos_text(list(videos)),
        )
        if self.in_a_row >= self.limit:
            first = step - self.in_a_row + 1
            raise NonFiniteLossError(
                f"steps {first}..{step}: {self.in_a_row} optimizer steps in a row had a "
                f"non-finite loss or gradient (last: {what}); videos of their batches: "
                f"{_videos_text(self.videos)}; check those videos, lower train.lr or use "
                "train.precision=fp32/bf16, then resume with --resume auto (the last checkpoint "
                "holds finite weights)"
            )

    def state_dict(self) -> dict[str, int]:
        return {"total": self.total, "in_a_row": self.in_a_row}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        self.total = int(state.get("total", 0))
        self.in_a_row = int(state.get("in_a_row", 0))

"""Training objectives: what the training step minimises, as a swappable object.

The trainer never computes a loss itself. It builds an objective by name
(``train.objective``) and wraps model and objective together in a :class:`TrainStep` module, so
that a DDP wrapper around the step also synchronises the objective's own trainable parameters
(for example an online text tower of the contrastive paradigm) and sees every forward call.

An objective is an ``nn.Module`` with

- ``forward(model, video [B,T,3,H,W], labels [B]) -> (loss, logits [B,C] | None)``: ``model`` is
  the bare :class:`~text4vis.models.video.VideoRecognizer` (never a DDP wrapper), so
  ``model.encode_video`` and friends may be called; ``logits`` are returned when the objective
  has class scores (used for the running training accuracy), else ``None``;
- ``extra_parameters()``: its trainable parameters outside the model (none for ``ce``);
- ``param_groups(lr, weight_decay)``: optimizer groups for those parameters, each a dict with
  ``params``, ``weight_decay`` and ``lr_ratio`` (the scheduler sets ``lr = schedule * lr_ratio``).

New objectives register a factory ``factory(cfg, model, class_names) -> Objective`` with
:func:`~text4vis.engine.objective_base.register_objective` (the registry :data:`OBJECTIVES`, the
protocol and the base class live in :mod:`text4vis.engine.objective_base`, below every objective).
``"ce"`` is defined here, ``"contrastive"`` in :mod:`text4vis.engine.contrastive`; this module
imports both, so every objective is registered before one is built by name.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

# Imported for its registration of the "contrastive" objective.
import text4vis.engine.contrastive  # noqa: F401
from text4vis.config import Config
from text4vis.engine.objective_base import (
    OBJECTIVES,
    Objective,
    ObjectiveBase,
    TrainStep,
    register_objective,
)
from text4vis.errors import ConfigError

__all__ = [
    "OBJECTIVES",
    "CrossEntropyObjective",
    "Objective",
    "ObjectiveBase",
    "TrainStep",
    "available_objectives",
    "build_objective",
    "register_objective",
]


class CrossEntropyObjective(ObjectiveBase):
    """The paper's objective: cross-entropy of the model's logits against the labels.

    The logits are ``logit_scale * cos(video, W)`` with the frozen classifier ``W`` inside the
    model; the loss is computed in float32 whatever the autocast precision.

    Args:
        label_smoothing: cross-entropy label smoothing in [0, 1).
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(
                f"train.label_smoothing must be in [0, 1), got {label_smoothing}; set e.g. 0.1"
            )
        self.label_smoothing = label_smoothing

    def forward(  # type: ignore[override]
        self, model: nn.Module, video: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        logits = model(video)  # [B, C]
        loss = F.cross_entropy(logits.float(), labels, label_smoothing=self.label_smoothing)
        return loss, logits


def available_objectives() -> list[str]:
    """Names accepted by ``train.objective``."""
    return sorted(OBJECTIVES.names())


def build_objective(cfg: Config, model: nn.Module, class_names: list[str]) -> nn.Module:
    """The objective named by ``cfg.train.objective``.

    Raises:
        ConfigError: an unknown name (the message lists the valid ones).
    """
    objective = OBJECTIVES.get(cfg.train.objective)(cfg, model, class_names)
    _check_objective(objective)
    return objective


@register_objective("ce")
def _build_ce(cfg: Config, model: nn.Module, class_names: list[str]) -> nn.Module:
    return CrossEntropyObjective(label_smoothing=cfg.train.label_smoothing)


def _check_objective(objective: Any) -> None:
    """Raise TypeError when ``objective`` lacks what the trainer calls."""
    if not isinstance(objective, nn.Module):
        raise TypeError(f"an objective must be an nn.Module, got {type(objective).__name__}")
    for attr in ("extra_parameters", "param_groups"):
        if not callable(getattr(objective, attr, None)):
            raise TypeError(f"objective {type(objective).__name__} has no {attr}()")

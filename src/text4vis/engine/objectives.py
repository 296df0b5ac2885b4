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
:func:`register_objective`. ``"contrastive"`` lives in :mod:`text4vis.engine.contrastive`, which is
imported on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from torch import Tensor, nn
from torch.nn import functional as F

from text4vis.errors import ConfigError

if TYPE_CHECKING:
    from text4vis.config import Config

__all__ = [
    "CrossEntropyObjective",
    "Objective",
    "ObjectiveBase",
    "TrainStep",
    "available_objectives",
    "build_objective",
    "register_objective",
]


@runtime_checkable
class Objective(Protocol):
    """What the trainer needs from an objective (see the module docstring)."""

    def __call__(
        self, model: nn.Module, video: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor | None]: ...

    def extra_parameters(self) -> list[nn.Parameter]: ...

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]: ...


class ObjectiveBase(nn.Module):
    """Base class with the bookkeeping every objective shares.

    Subclasses implement :meth:`forward`. Trainable parameters registered on the objective (as
    submodules or ``nn.Parameter``) are found by :meth:`extra_parameters` and put in optimizer
    groups by :meth:`param_groups` (override it for a learning-rate ratio of their own).
    """

    #: learning-rate ratio of the objective's own parameters (relative to ``train.lr``)
    lr_ratio: float = 1.0

    def forward(  # type: ignore[override]
        self, model: nn.Module, video: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def export_classifier(self, model: nn.Module) -> None:
        """Bring the model's classifier up to date with what the objective trained.

        Called before every validation, checkpoint and export. The default does nothing (the
        classifier is frozen); an objective that trains its own text side (the contrastive
        paradigm with an online text tower) writes its class embeddings into the model here.
        """

    def save_artifacts(self, directory: Any, model: nn.Module, cfg: Any) -> None:
        """Write what the objective trained beside an exported model (default: nothing)."""

    def extra_parameters(self) -> list[nn.Parameter]:
        """Trainable parameters that belong to the objective, not to the model."""
        return [p for p in self.parameters() if p.requires_grad]

    def no_weight_decay_names(self) -> set[str]:
        """Names (relative to the objective) of parameters without weight decay.

        Default: every parameter with fewer than two dimensions (biases, norms, scales) and
        every parameter whose name mentions an embedding.
        """
        return {
            name
            for name, p in self.named_parameters()
            if p.ndim < 2 or "embed" in name or "logit_scale" in name
        }

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimizer groups for :meth:`extra_parameters` (decay / no decay), ``lr * lr_ratio``."""
        no_decay = self.no_weight_decay_names()
        decay_params: list[nn.Parameter] = []
        plain_params: list[nn.Parameter] = []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (plain_params if name in no_decay else decay_params).append(p)
        groups = []
        for params, wd, tag in (
            (decay_params, weight_decay, "decay"),
            (plain_params, 0.0, "no_decay"),
        ):
            if params:
                groups.append(
                    {
                        "params": params,
                        "weight_decay": wd,
                        "lr": lr * self.lr_ratio,
                        "lr_ratio": self.lr_ratio,
                        "name": f"objective_{tag}",
                    }
                )
        return groups


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


class TrainStep(nn.Module):
    """Model and objective as one module, so one DDP wrapper covers both.

    ``forward(video, labels)`` returns ``(loss, logits | None)``.
    """

    def __init__(self, model: nn.Module, objective: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, video: Tensor, labels: Tensor) -> tuple[Tensor, Tensor | None]:
        return self.objective(self.model, video, labels)


ObjectiveFactory = Callable[["Config", nn.Module, list[str]], nn.Module]

_REGISTRY: dict[str, ObjectiveFactory] = {}
# Objectives defined in other modules, imported (which registers them) on first use.
_LAZY_MODULES = {"contrastive": "text4vis.engine.contrastive"}


def register_objective(name: str) -> Callable[[ObjectiveFactory], ObjectiveFactory]:
    """Decorator registering ``factory(cfg, model, class_names) -> objective`` under ``name``."""

    def decorator(factory: ObjectiveFactory) -> ObjectiveFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            raise ValueError(f"objective {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorator


def available_objectives() -> list[str]:
    """Names accepted by ``train.objective``."""
    return sorted(set(_REGISTRY) | set(_LAZY_MODULES))


def build_objective(cfg: Config, model: nn.Module, class_names: list[str]) -> nn.Module:
    """The objective named by ``cfg.train.objective``.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    name = cfg.train.objective
    if name not in _REGISTRY and name in _LAZY_MODULES:
        importlib.import_module(_LAZY_MODULES[name])
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown train.objective {name!r}; choose one of {available_objectives()}"
        )
    objective = _REGISTRY[name](cfg, model, class_names)
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

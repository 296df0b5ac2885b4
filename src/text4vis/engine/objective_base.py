"""What a training objective is: the protocol, the base class, the train step and the registry.

Every objective registers itself in :data:`OBJECTIVES` where it is defined (``ce`` in
:mod:`text4vis.engine.objectives`, ``contrastive`` in :mod:`text4vis.engine.contrastive`), and
:mod:`text4vis.engine.objectives` builds one by name. This module sits below both, so that the
contrastive objective subclasses :class:`ObjectiveBase` without importing the module that builds
objectives (which imports it): no import cycle, and no import hidden inside a function.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn

from text4vis.config import Config, ConfigError
from text4vis.registry import Registry

__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveBase",
    "ObjectiveFactory",
    "TrainStep",
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


ObjectiveFactory = Callable[[Config, nn.Module, list[str]], nn.Module]

# The training objectives by name (``train.objective``): ``factory(cfg, model, class_names)``.
OBJECTIVES: Registry[ObjectiveFactory] = Registry(
    "objective", key="train.objective", error=ConfigError
)


def register_objective(name: str) -> Callable[[ObjectiveFactory], ObjectiveFactory]:
    """Decorator registering ``factory(cfg, model, class_names) -> objective`` under ``name``."""
    return OBJECTIVES.register(name)

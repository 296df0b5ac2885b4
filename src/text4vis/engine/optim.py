"""Optimizer parameter groups and the learning-rate schedule (a pure function of the step).

The paper's recipe (table A.3): AdamW with betas (0.9, 0.98) and weight decay 0.2, no decay on
biases, norms, embeddings and the logit scale; learning rate 5e-5 decayed by a cosine to 5e-6
after a linear warm-up of 5 epochs; the pretrained visual encoder learns at ``visual_lr_ratio``
times the rate of the new parameters (temporal head, learnable classifier or prompts).

Every optimizer group carries an ``lr_ratio``; at each step the trainer sets
``group["lr"] = lr_at_step(step, ...) * group["lr_ratio"]``. The schedule holds no state of its
own, so resuming only needs the step counter.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from text4vis.engine.acceleration import use_fused_adamw
from text4vis.errors import ConfigError

if TYPE_CHECKING:
    from text4vis.config import TrainConfig

__all__ = [
    "LRSchedule",
    "build_optimizer",
    "build_train_optimizer",
    "load_optimizer_state",
    "lr_at_step",
    "model_param_groups",
    "set_lr",
]

logger = logging.getLogger("text4vis.engine.optim")


def lr_at_step(
    step: int, *, base_lr: float, min_lr: float, warmup_steps: int, total_steps: int
) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up, then cosine.

    Warm-up rises linearly from ``base_lr / warmup_steps`` (step 0) to ``base_lr`` (step
    ``warmup_steps - 1``); the cosine then falls from ``base_lr`` at step ``warmup_steps`` to
    ``min_lr`` at step ``total_steps`` (steps beyond it stay at ``min_lr``).

    Args:
        step: optimizer steps already taken.
        base_lr: peak learning rate.
        min_lr: final learning rate.
        warmup_steps: steps of linear warm-up (0 = none).
        total_steps: steps of the whole run (warm-up included).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


@dataclass
class LRSchedule:
    """The run's schedule: :func:`lr_at_step` with its arguments fixed.

    Attributes:
        base_lr: peak learning rate (``train.lr``).
        min_lr: final learning rate (``train.min_lr``).
        warmup_steps: ``round(train.warmup_epochs * steps_per_epoch)``.
        total_steps: ``train.epochs * steps_per_epoch``.
    """

    base_lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int

    @classmethod
    def from_epochs(
        cls,
        *,
        base_lr: float,
        min_lr: float,
        warmup_epochs: float,
        epochs: int,
        steps_per_epoch: int,
    ) -> LRSchedule:
        """Schedule for ``epochs`` epochs of ``steps_per_epoch`` optimizer steps."""
        if steps_per_epoch < 1:
            raise ConfigError(
                f"an epoch has {steps_per_epoch} optimizer steps; the training list must hold at "
                "least data.batch_size * world size * train.grad_accum clips"
            )
        total = epochs * steps_per_epoch
        warmup = min(total, round(warmup_epochs * steps_per_epoch))
        return cls(base_lr=base_lr, min_lr=min_lr, warmup_steps=warmup, total_steps=total)

    def __call__(self, step: int) -> float:
        return lr_at_step(step, **self.state_dict())

    def state_dict(self) -> dict[str, Any]:
        """The schedule's arguments, which are its fields and :func:`lr_at_step`'s keywords
        (checked on resume)."""
        return asdict(self)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate to ``lr * group["lr_ratio"]``."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_ratio", 1.0)


def _default_no_decay(model: nn.Module) -> set[str]:
    return {
        name
        for name, p in model.named_parameters()
        if p.ndim < 2 or "embed" in name or "logit_scale" in name or "norm" in name
    }


def model_param_groups(
    model: nn.Module, *, lr: float, weight_decay: float, visual_lr_ratio: float
) -> list[dict[str, Any]]:
    """Optimizer groups of a model's trainable parameters.

    Uses the model's ``param_groups_hint()`` (names under ``"pretrained_visual"`` learn at
    ``lr * visual_lr_ratio``, the rest at ``lr``) and ``no_weight_decay_names()``. A module
    without these methods (a stand-in in tests) has only new parameters, and no decay on
    parameters with fewer than two dimensions or named like an embedding, norm or logit scale.

    Returns:
        Up to four groups (visual/new x decay/no decay), each with ``params``, ``lr``,
        ``lr_ratio``, ``weight_decay`` and ``name``; empty groups are left out.
    """
    hint_fn = getattr(model, "param_groups_hint", None)
    if callable(hint_fn):
        visual_names = set(hint_fn().get("pretrained_visual", []))
    else:
        logger.debug("%s has no param_groups_hint(); all parameters are new", type(model).__name__)
        visual_names = set()
    no_decay_fn = getattr(model, "no_weight_decay_names", None)
    no_decay = set(no_decay_fn()) if callable(no_decay_fn) else _default_no_decay(model)
    buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = ("visual" if name in visual_names else "new", name not in no_decay)
        buckets.setdefault(key, []).append(param)
    groups = []
    for kind in ("visual", "new"):
        ratio = visual_lr_ratio if kind == "visual" else 1.0
        for decay in (True, False):
            params = buckets.get((kind, decay))
            if not params:
                continue
            groups.append(
                {
                    "params": params,
                    "lr": lr * ratio,
                    "lr_ratio": ratio,
                    "weight_decay": weight_decay if decay else 0.0,
                    "name": f"{kind}_{'decay' if decay else 'no_decay'}",
                }
            )
    return groups


def build_optimizer(
    model: nn.Module,
    objective: Any,
    *,
    lr: float,
    weight_decay: float,
    visual_lr_ratio: float,
    betas: tuple[float, float] | list[float] = (0.9, 0.98),
    eps: float = 1e-8,
    fused: bool = False,
) -> torch.optim.AdamW:
    """AdamW over the model's groups plus the objective's own groups.

    ``objective`` is an :class:`~text4vis.engine.objectives.Objective` (or None). ``fused``
    selects AdamW's single-kernel implementation (``train.fused_adamw``; same update rule).

    Raises:
        ValueError: a parameter in two groups, a trainable objective parameter in none, or
            nothing to train.
    """
    groups = model_param_groups(
        model, lr=lr, weight_decay=weight_decay, visual_lr_ratio=visual_lr_ratio
    )
    if objective is not None:
        extra = objective.param_groups(lr, weight_decay)
        covered = {id(p) for g in extra for p in g["params"]}
        missing = [p for p in objective.extra_parameters() if id(p) not in covered]
        if missing:
            raise ValueError(
                f"objective {type(objective).__name__}: {len(missing)} trainable parameters are "
                "in no optimizer group; return them from param_groups()"
            )
        groups.extend(extra)
    seen: set[int] = set()
    for group in groups:
        for p in group["params"]:
            if id(p) in seen:
                raise ValueError(f"a parameter appears in two optimizer groups ({group['name']})")
            seen.add(id(p))
    if not seen:
        raise ConfigError("the model has no trainable parameters; nothing to optimise")
    if len(betas) != 2:
        raise ConfigError(f"train.betas must hold two numbers, got {list(betas)}")
    # fused=None (not False) keeps torch's default choice (foreach) when not fused.
    return torch.optim.AdamW(
        groups, lr=lr, betas=(betas[0], betas[1]), eps=eps, fused=True if fused else None
    )


def build_train_optimizer(
    model: nn.Module, objective: Any, train: TrainConfig, device: torch.device
) -> torch.optim.AdamW:
    """The trainer's AdamW: :func:`build_optimizer` with the settings of the ``train`` config
    section (``lr``, ``weight_decay``, ``visual_lr_ratio``, ``betas``, ``eps``, and
    ``fused_adamw`` resolved for ``device``)."""
    return build_optimizer(
        model,
        objective,
        lr=train.lr,
        weight_decay=train.weight_decay,
        visual_lr_ratio=train.visual_lr_ratio,
        betas=train.betas,
        eps=train.eps,
        fused=use_fused_adamw(train.fused_adamw, device),
    )


# Keys of an optimizer group that choose the implementation, not the update rule: a resumed run
# takes them from its own config (train.fused_adamw), not from the checkpoint.
_IMPLEMENTATION_KEYS = ("fused", "foreach")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a saved optimizer state, keeping ``optimizer``'s own implementation choice.

    ``Optimizer.load_state_dict`` replaces every group's settings by the saved ones, so a run
    resumed with another ``train.fused_adamw`` would silently keep the checkpoint's choice.
    Here the saved groups take this optimizer's ``fused`` / ``foreach`` before loading (so
    torch places the step counters where the chosen kernel wants them); the moments, step
    counts and learning-rate settings are the checkpoint's. A change is logged.
    """
    current = [{k: group.get(k) for k in _IMPLEMENTATION_KEYS} for group in optimizer.param_groups]
    saved_groups = list(state.get("param_groups", []))
    changed = sorted(
        {
            f"{key}: {saved.get(key)!r} -> {now[key]!r}"
            for saved, now in zip(saved_groups, current)
            for key in _IMPLEMENTATION_KEYS
            if saved.get(key) != now[key]
        }
    )
    if len(saved_groups) == len(current):
        saved_groups = [{**saved, **now} for saved, now in zip(saved_groups, current)]
    optimizer.load_state_dict({**state, "param_groups": saved_groups})
    if changed:
        logger.info(
            "optimizer implementation differs from the checkpoint's (%s): resuming with this "
            "run's (train.fused_adamw); the update rule is the same",
            ", ".join(changed),
        )

"""Learning-rate schedule, optimizer groups and objectives (stand-in modules, no data)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from text4vis.config import load_config
from text4vis.engine.objectives import (
    CrossEntropyObjective,
    ObjectiveBase,
    TrainStep,
    available_objectives,
    build_objective,
)
from text4vis.engine.optim import LRSchedule, build_optimizer, lr_at_step, set_lr


def test_schedule_warmup_then_cosine_to_min():
    sched = LRSchedule.from_epochs(
        base_lr=1.0, min_lr=0.1, warmup_epochs=2, epochs=10, steps_per_epoch=5
    )
    assert (sched.warmup_steps, sched.total_steps) == (10, 50)
    warm = [sched(s) for s in range(10)]
    assert warm == pytest.approx([(s + 1) / 10 for s in range(10)])  # linear, reaches peak
    assert sched(10) == pytest.approx(1.0)  # cosine starts at the peak
    assert sched(30) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi * 0.5)))  # midpoint
    assert sched(50) == pytest.approx(0.1) and sched(500) == pytest.approx(0.1)
    decay = [sched(s) for s in range(10, 51)]
    assert all(a >= b for a, b in zip(decay, decay[1:]))  # monotone decrease
    assert lr_at_step(3, base_lr=2.0, min_lr=0.0, warmup_steps=0, total_steps=4) == pytest.approx(
        2.0 * 0.5 * (1 + math.cos(math.pi * 0.75))
    )
    with pytest.raises(ValueError, match="optimizer steps"):
        LRSchedule.from_epochs(base_lr=1, min_lr=0, warmup_epochs=1, epochs=1, steps_per_epoch=0)


class HintedModel(nn.Module):
    """A stand-in with the VideoRecognizer's group hints."""

    def __init__(self) -> None:
        super().__init__()
        self.visual = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        self.temporal = nn.Linear(4, 4)
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.register_buffer("classifier", torch.randn(3, 4))  # frozen: not a parameter

    def param_groups_hint(self) -> dict[str, list[str]]:
        names = [n for n, _ in self.named_parameters()]
        return {
            "pretrained_visual": [n for n in names if n.startswith("visual.")],
            "new": [n for n in names if not n.startswith("visual.")],
        }

    def no_weight_decay_names(self) -> set[str]:
        return {n for n, p in self.named_parameters() if p.ndim < 2}


class ObjectiveWithTower(ObjectiveBase):
    lr_ratio = 0.5

    def __init__(self) -> None:
        super().__init__()
        self.tower = nn.Linear(4, 4)

    def forward(self, model, video, labels):  # pragma: no cover - not called
        raise NotImplementedError


def test_param_groups_ratio_and_weight_decay():
    model = HintedModel()
    objective = ObjectiveWithTower()
    opt = build_optimizer(
        model, objective, lr=1e-3, weight_decay=0.2, visual_lr_ratio=0.1, betas=[0.9, 0.98]
    )
    by_name = {g["name"]: g for g in opt.param_groups}
    assert set(by_name) == {
        "visual_decay",
        "visual_no_decay",
        "new_decay",
        "new_no_decay",
        "objective_decay",
        "objective_no_decay",
    }
    assert by_name["visual_decay"]["params"] == [model.visual[0].weight]
    assert by_name["visual_decay"]["lr"] == pytest.approx(1e-4)
    assert by_name["visual_no_decay"]["weight_decay"] == 0.0
    assert {id(p) for p in by_name["visual_no_decay"]["params"]} == {
        id(model.visual[0].bias),
        id(model.visual[1].weight),
        id(model.visual[1].bias),
    }
    assert any(p is model.logit_scale for p in by_name["new_no_decay"]["params"])
    assert by_name["new_decay"]["weight_decay"] == 0.2
    assert by_name["objective_decay"]["lr"] == pytest.approx(5e-4)
    assert opt.defaults["betas"] == (0.9, 0.98)
    n_params = sum(len(g["params"]) for g in opt.param_groups)
    assert n_params == len(list(model.parameters())) + len(list(objective.parameters()))
    set_lr(opt, 2.0)
    assert by_name["visual_decay"]["lr"] == pytest.approx(0.2)
    assert by_name["objective_no_decay"]["lr"] == pytest.approx(1.0)


def test_param_groups_reject_objective_params_left_out():
    class Forgetful(ObjectiveWithTower):
        def param_groups(self, lr, weight_decay):
            return []

    with pytest.raises(ValueError, match="in no optimizer group"):
        build_optimizer(HintedModel(), Forgetful(), lr=1, weight_decay=0, visual_lr_ratio=1)


def test_frozen_classifier_unchanged_by_a_step():
    model = HintedModel()
    before = model.classifier.clone()
    opt = build_optimizer(model, None, lr=1e-2, weight_decay=0.2, visual_lr_ratio=0.1)
    loss = (model.temporal(model.visual(torch.randn(2, 4))) @ model.classifier.T).sum()
    loss.backward()
    opt.step()
    assert torch.equal(model.classifier, before)


def test_ce_objective_and_registry():
    cfg = load_config(None, ["train.label_smoothing=0.1"])
    model = nn.Linear(4, 3)
    objective = build_objective(cfg, model, ["a", "b", "c"])
    assert isinstance(objective, CrossEntropyObjective)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])
    loss, logits = TrainStep(model, objective)(x, y)
    expected = nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
    assert torch.allclose(loss, expected) and logits.shape == (5, 3)
    assert objective.extra_parameters() == []
    assert "ce" in available_objectives() and "contrastive" in available_objectives()
    with pytest.raises(ValueError, match="choose one of"):
        build_objective(load_config(None, ["train.objective=nope"]), model, ["a"])

"""The model factory: seeded building, and train.init_from through the one loader."""

from __future__ import annotations

import pytest
import torch

from text4vis.config import Config, DataConfig, ModelConfig
from text4vis.models.factory import build_model, load_initial_weights, load_model


def _cfg(temporal: str = "mean", seed: int = 0) -> Config:
    cfg = Config(
        model=ModelConfig(arch="tiny-vit", temporal=temporal, classifier="random"),
        data=DataConfig(num_segments=2, input_size=32),
    )
    cfg.train.seed = seed
    return cfg


def test_build_model_is_seeded_by_train_seed():
    a, b = build_model(_cfg(), ["x", "y"]), build_model(_cfg(), ["x", "y"])
    c = build_model(_cfg(seed=1), ["x", "y"])
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert not torch.equal(a.visual.conv1.weight, c.visual.conv1.weight)


def test_init_from_copies_everything_but_the_classifier(tmp_path):
    trained = build_model(_cfg(seed=3), ["a", "b"])
    trained.save_pretrained(tmp_path / "trained")
    fresh = build_model(_cfg(), ["x", "y", "z"])
    classifier = fresh.classifier_weight().clone()
    load_initial_weights(fresh, tmp_path / "trained")
    assert torch.equal(fresh.visual.conv1.weight, trained.visual.conv1.weight)
    assert torch.equal(fresh.classifier_weight(), classifier)  # the new classes' classifier
    assert load_model(tmp_path / "trained").class_names == ["a", "b"]
    other = build_model(_cfg(temporal="transformer"), ["x", "y", "z"])
    with pytest.raises(ValueError, match="do not fit model.arch/temporal"):
        load_initial_weights(other, tmp_path / "trained")
    with pytest.raises(FileNotFoundError, match="train.init_from="):
        load_initial_weights(fresh, tmp_path / "missing")

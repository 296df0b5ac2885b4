"""Speed switches of the trainer: fused AdamW, channels-last ResNets, torch.compile."""

from __future__ import annotations

import logging

import pytest
import torch

from conftest import COLOURS, overrides, write_colour_clips
from test_engine_train import weights
from text4vis.config import load_config
from text4vis.data.annotations import write_annotations
from text4vis.data.labels import write_labels
from text4vis.engine.acceleration import apply_channels_last, compile_model, use_fused_adamw
from text4vis.engine.optim import build_optimizer
from text4vis.engine.train import fit
from text4vis.models.backbones import create_clip


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    write_labels(root / "labels.csv", [f"{name} thing" for name in COLOURS])
    write_annotations(root / "train.txt", write_colour_clips(root, per_class=2, seed=0))
    write_annotations(root / "val.txt", write_colour_clips(root, per_class=1, seed=1))
    return root


def test_fused_adamw_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert use_fused_adamw("auto", cuda) and use_fused_adamw("auto", cpu)
    assert not use_fused_adamw("auto", torch.device("meta"))
    assert use_fused_adamw("always", cpu) and not use_fused_adamw("never", cuda)
    with pytest.raises(ValueError, match="train.fused_adamw 'yes'.*auto"):
        use_fused_adamw("yes", cpu)


def test_fused_adamw_takes_the_same_steps():
    """Fused and loop AdamW follow the same update rule: same weights after a few steps.

    Tolerance 5e-5 on steps of lr 1e-2: Adam's first steps divide small moments by small square
    roots, where the two kernels' rounding differs (measured 5.6e-6 here).
    """
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.LayerNorm(32))
    initial = {k: v.clone() for k, v in reference.state_dict().items()}
    fused_model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.LayerNorm(32))
    fused_model.load_state_dict(initial)
    kwargs = {"lr": 1e-2, "weight_decay": 0.2, "visual_lr_ratio": 0.1}
    plain = build_optimizer(reference, None, **kwargs)
    fused = build_optimizer(fused_model, None, fused=True, **kwargs)
    assert fused.defaults["fused"] and not plain.defaults["fused"]
    x = torch.randn(8, 16, generator=torch.Generator().manual_seed(1))
    for model, optimizer in ((reference, plain), (fused_model, fused)):
        for _ in range(3):
            optimizer.zero_grad()
            model(x).square().mean().backward()
            optimizer.step()
    for key, value in reference.state_dict().items():
        assert float((value - fused_model.state_dict()[key]).abs().max()) <= 5e-5, key
    assert float((reference[0].weight - initial["0.weight"]).abs().max()) > 1e-2  # it moved


def test_channels_last_resnet_same_output(caplog):
    torch.manual_seed(0)
    clip = create_clip("tiny-rn").eval()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = clip.visual(x)

    class Holder(torch.nn.Module):
        def __init__(self, visual):
            super().__init__()
            self.visual = visual

    holder = Holder(clip.visual)
    assert apply_channels_last(holder)
    conv = holder.visual.layer1[0].conv2.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    with torch.no_grad():
        got = holder.visual(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)

    with caplog.at_level(logging.WARNING, logger="text4vis.engine.acceleration"):
        assert not apply_channels_last(Holder(create_clip("tiny-vit").visual))
    assert "ResNet" in caplog.text


# Adam with eps=1 steps ~ lr x momentum: parameters whose true gradient is 0 (the key biases of
# attention, whose softmax ignores them) would otherwise take full steps on rounding noise, which
# differs between kernels. One step of 8 clips of 2 frames keeps the two trainings short.
QUICK = ("train.epochs=1", "train.eps=1.0", "train.lr=0.05", "data.num_segments=2",
         "data.batch_size=8", "train.eval_every=0")  # fmt: skip


def weight_difference_with(data, tmp_path, common, switches) -> float:
    """Largest weight difference between a plain training and one with ``switches``."""
    plain = fit(load_config(None, overrides(data, tmp_path / "a", *common)))
    switched = fit(load_config(None, overrides(data, tmp_path / "b", *common, *switches)))
    expected, got = weights(plain.run_dir), weights(switched.run_dir)
    assert expected.keys() == got.keys()  # the same parameter names
    return max(float((expected[k] - got[k]).abs().max()) for k in expected)


def test_training_with_fused_adamw_and_channels_last(small_data, tmp_path):
    """The switches reach the trainer: same weights as the plain run (fused: same rule;
    channels-last convolutions sum in another order, carried on by BatchNorm in training)."""
    switches = ("train.fused_adamw=always", "train.channels_last=true")
    common = (*QUICK, "model.arch=tiny-rn")
    assert weight_difference_with(small_data, tmp_path, common, switches) <= 1e-4


@pytest.mark.slow
def test_compiled_training_matches_eager(small_data, tmp_path):
    """train.compile: same parameter names and (to float tolerance) the same training."""
    assert weight_difference_with(small_data, tmp_path, QUICK, ("train.compile=true",)) <= 1e-4


def test_compile_model_keeps_parameter_names():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    names = list(model.state_dict())
    assert compile_model(model) is model and list(model.state_dict()) == names

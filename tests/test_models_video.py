"""VideoRecognizer x temporal heads x tiny ViT / ResNet backbones."""

from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
import torch.nn.functional as F

from text4vis.config import DataConfig, ModelConfig
from text4vis.data.transforms import CLIP_MEAN, CLIP_STD
from text4vis.errors import Text4VisError, UsageError
from text4vis.models.backbones import RANDOM_INIT_MESSAGE
from text4vis.models.temporal import TemporalConv, TemporalHeadError, shift_kernel
from text4vis.models.video import VideoRecognizer

NAMES = ["ApplyEyeMakeup", "playing_guitar", "dancing", "riding a bike"]
CASES = [
    ("tiny-vit", "mean"),
    ("tiny-vit", "transformer"),
    ("tiny-vit", "tokent1d"),
    ("tiny-rn", "mean"),
    ("tiny-rn", "transformer"),
    ("tiny-rn", "t1d"),
]
T = 4


def make_model(arch: str, temporal: str, **overrides) -> VideoRecognizer:
    cfg = ModelConfig(arch=arch, temporal=temporal, temporal_layers=2, classifier="random")
    for key, value in overrides.items():
        setattr(cfg, key, value)
    torch.manual_seed(0)  # new-parameter init of open_clip modules uses the global generator
    model = VideoRecognizer.from_config(cfg, NAMES, num_frames=T)
    if arch == "tiny-rn":
        # open_clip zero-initialises the last BN of each bottleneck; give the residual branches
        # (where T1D lives) a non-zero output so gradients reach them.
        with torch.no_grad():
            for name, param in model.visual.named_parameters():
                if name.endswith("bn3.weight"):
                    param.fill_(0.5)
    return model


def video(seed: int = 0, b: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(b, T, 3, 32, 32, generator=generator)


@pytest.fixture(scope="module", params=CASES, ids=[f"{a}-{h}" for a, h in CASES])
def case(request):
    arch, head = request.param
    return arch, head, make_model(arch, head)


def test_shapes_finite_and_logits_formula(case):
    _, _, model = case
    model.eval()
    x = video()
    emb = model.encode_video(x)
    assert emb.shape == (2, model.embed_dim)
    frames = model.encode_frames(x.flatten(0, 1), num_frames=T)
    assert frames.shape == (2 * T, model.embed_dim)
    logits = model(x)
    assert logits.shape == (2, len(NAMES)) and torch.isfinite(logits).all()
    w = model.classifier.weight
    expected = (
        model.logit_scale.exp()
        * (emb / emb.norm(dim=-1, keepdim=True))
        @ (w / w.norm(dim=-1, keepdim=True)).T
    )
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert float(model.logit_scale.exp()) == pytest.approx(100.0)  # random backbone default


def test_logits_are_float32_under_bf16_autocast():
    """The cosine product runs in float32 inside bf16 autocast (CPU autocast here; CUDA's casts
    the same matrix product): the logits equal the float32 formula applied to the embeddings the
    autocast encoder produced, and differ from the bf16 product by far more than float32 error.
    """
    from text4vis.models.video import scaled_cosine_logits

    model = make_model("tiny-vit", "mean", classifier="orthogonal")
    model.eval()
    x = video(b=8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        emb = model.encode_video(x)
        logits = model(x)
    assert emb.dtype == torch.bfloat16  # the encoder did run in bf16
    assert logits.dtype == torch.float32
    scale = model.logit_scale.exp().detach()
    v = F.normalize(emb.float(), dim=-1)  # the formula, restated in float32 outside autocast
    expected = scale * v @ model.classifier_weight().float().T
    torch.testing.assert_close(logits, expected, rtol=1e-6, atol=1e-5)
    rounded = scale.bfloat16() * (v.bfloat16() @ model.classifier_weight().bfloat16().T)
    assert (logits - rounded.float()).abs().max() > 0.01  # bf16 at scale 100: ~0.1-0.25

    # the shared function alone, on float32 inputs: bit-identical inside and outside autocast
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(16, 64, generator=generator)
    weight = F.normalize(torch.randn(10, 64, generator=generator), dim=-1)
    plain = scaled_cosine_logits(features, weight, 100.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = scaled_cosine_logits(features, weight, 100.0)
    assert cast.dtype == torch.float32 and torch.equal(cast, plain)


def test_step_moves_visual_and_leaves_classifier_bit_identical(case):
    _, head, model = case
    model = copy.deepcopy(model).train()
    w_before = model.classifier.weight.clone()
    visual_before = {n: p.detach().clone() for n, p in model.visual.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss = F.cross_entropy(model(video()), torch.tensor([0, 2]))
    loss.backward()
    grads = [p.grad for p in model.visual.parameters() if p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)
    if head != "mean":
        temporal_grads = [p.grad for p in model.temporal.parameters()]
        assert temporal_grads and all(g is not None for g in temporal_grads)
        assert any(g.abs().sum() > 0 for g in temporal_grads)
    optimizer.step()
    assert torch.equal(model.classifier.weight, w_before)
    assert "classifier.weight" in model.state_dict()  # persistent buffer, not a parameter
    assert all(not n.startswith("classifier") for n, _ in model.named_parameters())
    moved = [not torch.equal(p, visual_before[n]) for n, p in model.visual.named_parameters()]
    assert any(moved)


def test_frame_order_matters_except_for_mean(case):
    _, head, model = case
    model.eval()
    x = video(3)
    reversed_x = x.flip(1)
    with torch.no_grad():
        a, b = model.encode_video(x), model.encode_video(reversed_x)
    relative = float((a - b).norm() / a.norm())
    # Mean pooling is order-free up to rounding (~1e-8); every temporal model sees the order
    # (at initialisation their effect is small, ~1e-5, but far above rounding).
    assert (relative < 1e-6) == (head == "mean"), relative


def test_save_pretrained_roundtrip(case, tmp_path):
    _, _, model = case
    model.eval()
    model.save_pretrained(tmp_path / "m")
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {
        "config.json",
        "model.safetensors",
        "classifier.safetensors",
    }
    loaded = VideoRecognizer.from_pretrained(tmp_path / "m").eval()
    x = video(5)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert loaded.class_names == NAMES


def test_param_groups_and_no_weight_decay():
    model = make_model("tiny-vit", "transformer")
    groups = model.param_groups_hint()
    assert all(n.startswith("visual.") for n in groups["pretrained_visual"])
    assert groups["pretrained_visual"] and not any(n.startswith("visual.") for n in groups["new"])
    assert "temporal.frame_position_embeddings.weight" in groups["new"]
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(groups["pretrained_visual"]) | set(groups["new"]) == trainable
    assert "logit_scale" not in trainable  # fixed by default
    no_wd = model.no_weight_decay_names()
    assert "visual.class_embedding" in no_wd and "visual.ln_pre.weight" in no_wd
    assert "temporal.transformer.resblocks.0.attn.in_proj_bias" in no_wd
    assert "visual.transformer.resblocks.0.attn.in_proj_weight" not in no_wd


def test_shift_kernel_is_a_channel_shift():
    conv = TemporalConv(16)
    assert torch.equal(conv.weight, shift_kernel(16))
    x = torch.randn(1, 16, 5, generator=torch.Generator().manual_seed(0))  # [N, C, T]
    y = conv.convolve(x)
    assert torch.equal(y[:, :2, :-1], x[:, :2, 1:])  # 1/8 take the next frame
    assert torch.equal(y[:, 2:4, 1:], x[:, 2:4, :-1])  # 1/8 take the previous frame
    assert torch.equal(y[:, 4:], x[:, 4:])  # the rest: identity


def test_tokent1d_only_touches_chosen_blocks_class_token():
    model = make_model("tiny-vit", "tokent1d", tokent1d_blocks=[1])
    assert list(model.temporal.convs) == ["1"]
    seen = {}
    block = model.visual.transformer.resblocks[1]
    block.register_forward_pre_hook(lambda m, a: seen.setdefault("x", a[0].clone()))
    model.eval()
    with torch.no_grad():
        model.encode_video(video())
    x = seen["x"]  # input of block 1 after the TokenT1D hook: [B*T, L, W]
    assert x.shape[0] == 2 * T
    with pytest.raises(TemporalHeadError, match="out of range"):
        make_model("tiny-vit", "tokent1d", tokent1d_blocks=[5])


def test_head_backbone_mismatch_and_unknown_head():
    with pytest.raises(TemporalHeadError, match="ViT"):
        make_model("tiny-rn", "tokent1d")
    with pytest.raises(TemporalHeadError, match="ResNet"):
        make_model("tiny-vit", "t1d")
    with pytest.raises(TemporalHeadError, match="choose one of"):
        make_model("tiny-vit", "lstm")


def test_set_classifier_zero_shot_and_missing_classifier():
    model = make_model("tiny-vit", "mean").eval()
    new = torch.randn(3, model.embed_dim, generator=torch.Generator().manual_seed(0))
    model.set_classifier(new, ["a", "b", "c"])
    assert model(video()).shape == (2, 3)
    assert torch.allclose(model.classifier.weight, F.normalize(new, dim=-1))
    model.classifier = None
    with pytest.raises(UsageError, match="set_classifier"):
        model(video())


def test_learnable_classifier_is_trained():
    model = make_model("tiny-vit", "mean", classifier="learnable")
    assert "classifier.weight" in model.param_groups_hint()["new"]
    before = model.classifier.weight.detach().clone()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    F.cross_entropy(model(video()), torch.tensor([1, 3])).backward()
    optimizer.step()
    assert not torch.equal(before, model.classifier.weight)


def random_init_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if RANDOM_INIT_MESSAGE in r.getMessage()]


def test_preprocessing_saved_loaded_and_kept(tmp_path):
    model = make_model("tiny-vit", "mean").eval()
    assert model.preprocessing is None  # built in code: unknown
    data = DataConfig(num_segments=T, input_size=32, resize_size=40, num_crops=3, shot=2)
    model.save_pretrained(tmp_path / "m", data_config=data)
    saved = json.loads((tmp_path / "m" / "config.json").read_text())["preprocessing"]
    assert saved == {
        "num_segments": T,
        "input_size": 32,
        "resize_size": 40,
        "mean": list(CLIP_MEAN),
        "std": list(CLIP_STD),
    }
    loaded = VideoRecognizer.from_pretrained(tmp_path / "m")
    assert loaded.preprocessing == saved
    # Saving a loaded model again (no data_config) keeps what it was trained with.
    loaded.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["preprocessing"] == saved

    # A folder written before the block existed still loads, to the same outputs.
    config_path = tmp_path / "m" / "config.json"
    old = json.loads(config_path.read_text())
    del old["preprocessing"]
    config_path.write_text(json.dumps(old))
    older = VideoRecognizer.from_pretrained(tmp_path / "m").eval()
    assert older.preprocessing is None
    with torch.no_grad():
        assert torch.equal(older(video()), model(video()))


def test_preprocessing_errors(tmp_path):
    model = make_model("tiny-vit", "mean")
    with pytest.raises(ValueError, match="input_size=224 but the image encoder was built for 32"):
        model.save_pretrained(tmp_path / "m", data_config=DataConfig(num_segments=T))
    assert model.preprocessing is None and not (tmp_path / "m" / "config.json").exists()
    model.save_pretrained(tmp_path / "m", data_config=DataConfig(input_size=32, resize_size=36))
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    for block, match in [
        ({**config["preprocessing"], "resize_size": 16}, "resize_size .16. must be at least"),
        ({**config["preprocessing"], "std": [0.2, 0.0, 0.2]}, "preprocessing.std"),
        ({k: v for k, v in config["preprocessing"].items() if k != "mean"}, "missing keys"),
        ([32, 36], "must be an object"),
    ]:
        config_path.write_text(json.dumps({**config, "preprocessing": block}))
        with pytest.raises(Text4VisError, match=match) as info:
            VideoRecognizer.from_pretrained(tmp_path / "m")
        assert str(config_path) in str(info.value)


def test_random_init_warning_only_when_true(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        model = make_model("tiny-vit", "mean")  # no pretrained weights: the warning is true
        assert random_init_warnings(caplog) == [
            "No pretrained weights loaded for model 'tiny-vit'. Model initialized randomly."
        ]
        model.save_pretrained(tmp_path / "m")
        caplog.clear()
        VideoRecognizer.from_pretrained(tmp_path / "m")  # weights come from model.safetensors
        assert random_init_warnings(caplog) == []
        make_model("tiny-rn", "mean")  # the silencing ended with from_pretrained
        assert len(random_init_warnings(caplog)) == 1


def test_text_classifier_and_coop_roundtrip(tmp_path, caplog):
    model = make_model("tiny-vit", "mean", classifier="text", prompt="coop", coop_context=2)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "classifier.context" in trainable
    assert not any(n.startswith("classifier.") and n != "classifier.context" for n in trainable)
    model.eval()
    model.save_pretrained(tmp_path / "coop")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        loaded = VideoRecognizer.from_pretrained(tmp_path / "coop").eval()
    assert random_init_warnings(caplog) == []  # neither the backbone nor the CoOp text tower
    x = video(2)
    with torch.no_grad():
        torch.testing.assert_close(model(x), loaded(x), rtol=0, atol=1e-6)


@pytest.mark.slow  # builds full-size random RN50 / ViT-B-16 (~100M parameters each)
@pytest.mark.parametrize(("arch", "head"), [("RN50", "t1d"), ("ViT-B-16", "tokent1d")])
def test_paper_architectures(arch, head):
    model = make_model(arch, head).eval()
    assert model.embed_dim == {"RN50": 1024, "ViT-B-16": 512}[arch]
    x = torch.randn(1, 2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert model(x).shape == (1, len(NAMES))

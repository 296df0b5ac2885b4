"""Inference precision: names, device checks (runtime), the int8 rebuild of attention and linear
layers (models.quantize) and the one preparation hook (engine.loops.prepare_inference)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from text4vis.engine.loops import prepare_inference
from text4vis.models.quantize import LinearSelfAttention, quantize_int8
from text4vis.runtime import (
    INFERENCE_PRECISIONS,
    TRAIN_PRECISIONS,
    PrecisionError,
    inference_precision,
)


def test_precision_names_and_device_rules() -> None:
    assert set(INFERENCE_PRECISIONS) == {"fp32", "bf16", "fp16", "int8"}
    assert inference_precision("auto", "cpu") == "fp32"
    assert inference_precision("auto", torch.device("cuda", 0)) == "bf16"
    assert inference_precision("int8", torch.device("cpu")) == "int8"
    with pytest.raises(PrecisionError, match="int8 .* CPU only"):
        inference_precision("int8", "cuda:0")
    with pytest.raises(PrecisionError, match="fp16 autocast needs a GPU"):
        inference_precision("fp16", "cpu")
    with pytest.raises(PrecisionError, match="'int4'.*fp32, bf16, fp16, int8"):
        inference_precision("int4", "cpu")
    # Training precisions are the autocast ones; int8 exists at inference only.
    assert set(TRAIN_PRECISIONS) == set(INFERENCE_PRECISIONS) - {"int8"}
    # No --precision: the training precision, fp16 falling back to fp32 on the CPU only.
    assert inference_precision(None, "cpu", train_precision="fp16") == "fp32"
    assert inference_precision(None, "cuda:0", train_precision="fp16") == "fp16"
    assert inference_precision(None, "cpu", train_precision="bf16") == "bf16"
    with pytest.raises(PrecisionError, match="train.precision 'int8'"):
        inference_precision(None, "cpu", train_precision="int8")


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("mask", [None, "bool", "float"])
def test_linear_self_attention_equals_multihead_attention(batch_first: bool, mask: str) -> None:
    torch.manual_seed(0)
    attention = nn.MultiheadAttention(32, 4, batch_first=batch_first).eval()
    nn.init.normal_(attention.in_proj_bias)  # non-zero biases, so a dropped bias is seen
    nn.init.normal_(attention.out_proj.bias)
    x = torch.randn(3, 5, 32) if batch_first else torch.randn(5, 3, 32)
    attn_mask = None
    if mask == "bool":  # causal: True = may not attend (MultiheadAttention's convention)
        attn_mask = torch.ones(5, 5, dtype=torch.bool).triu(1)
    elif mask == "float":
        attn_mask = torch.randn(5, 5)
    expected = attention(x, x, x, need_weights=False, attn_mask=attn_mask)[0]
    got, weights = LinearSelfAttention(attention)(x, x, x, need_weights=False, attn_mask=attn_mask)
    assert weights is None
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_linear_self_attention_refuses_cross_attention() -> None:
    layer = LinearSelfAttention(nn.MultiheadAttention(16, 2, batch_first=True))
    x, y = torch.randn(1, 3, 16), torch.randn(1, 3, 16)
    with pytest.raises(PrecisionError, match="self-attention only"):
        layer(x, y, y)


def test_int8_quantizes_every_linear_of_a_video_model_and_keeps_its_embeddings() -> None:
    from text4vis.config import ModelConfig
    from text4vis.models.video import VideoRecognizer

    torch.manual_seed(0)
    cfg = ModelConfig(arch="tiny-vit", temporal="transformer", classifier="random")
    model = VideoRecognizer.from_config(cfg, ["a", "b", "c"], num_frames=4, image_size=32).eval()
    x = torch.randn(2, 4, 3, 32, 32)  # [B, T, 3, S, S]
    with torch.inference_mode():
        expected = model.encode_video(x)
        quantized, autocast = prepare_inference(model, "int8", "cpu")
        got = quantized.encode_video(x)
    assert autocast == "fp32"
    assert quantized is model  # in place
    kinds = {type(m) for m in quantized.modules()}
    assert nn.MultiheadAttention not in kinds
    assert nn.Linear not in kinds  # every linear layer (projections included) is int8 now
    assert torch.ao.nn.quantized.dynamic.Linear in kinds
    assert not torch.equal(got, expected)  # really a different computation
    assert F.cosine_similarity(got, expected, dim=-1).min() > 0.99


def test_fp32_and_bf16_leave_the_model_alone() -> None:
    model = nn.Sequential(nn.Linear(4, 4))
    for precision in ("fp32", "bf16"):
        prepared, autocast = prepare_inference(model, precision, "cpu")
        assert prepared is model and autocast == precision
        assert isinstance(model[0], nn.Linear)
    assert quantize_int8(model) is model and not isinstance(model[0], nn.Linear)

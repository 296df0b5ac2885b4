"""Dynamic int8 quantization of a model's linear layers, for the ``int8`` precision of
:data:`text4vis.runtime.INFERENCE_PRECISIONS` (CPU inference).

Weights are stored as int8 per output channel and activations quantized per batch on the fly,
through ``torch.ao.quantization.quantize_dynamic``. open_clip's attention keeps its
query/key/value projection as a bare parameter of ``nn.MultiheadAttention``, which that function
skips; so each self-attention is first rebuilt as :class:`LinearSelfAttention` (the same weights
in two ``nn.Linear`` layers around ``F.scaled_dot_product_attention``), which brings the
projections (a third of a ViT block's multiply-adds) into int8 too.
``benchmarks/cpu_inference.py`` measures the speed and the agreement with fp32.

The engine chooses when to call :func:`quantize_int8`
(:func:`text4vis.engine.loops.prepare_inference`); this module knows nothing of devices or
autocast.
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

from text4vis.runtime import PrecisionError

__all__ = ["LinearSelfAttention", "quantize_int8"]

logger = logging.getLogger(__name__)


class LinearSelfAttention(nn.Module):
    """Self-attention with the weights of an ``nn.MultiheadAttention`` in ``nn.Linear`` layers.

    Computes what the wrapped module computes for ``query is key is value`` (all of CLIP's
    encoders), so that linear-layer quantization reaches the input projection. Attention masks
    follow ``nn.MultiheadAttention``'s convention (bool ``True`` = not allowed, float = added).
    """

    def __init__(self, attention: nn.MultiheadAttention) -> None:
        super().__init__()
        if not attention._qkv_same_embed_dim or attention.in_proj_weight is None:
            raise PrecisionError("int8: attention with separate key/value widths is not supported")
        if attention.bias_k is not None or attention.add_zero_attn:
            raise PrecisionError("int8: attention with bias_k/add_zero_attn is not supported")
        width = attention.embed_dim
        self.num_heads = attention.num_heads
        self.batch_first = attention.batch_first
        self.dropout = attention.dropout
        has_bias = attention.in_proj_bias is not None
        self.qkv = nn.Linear(width, 3 * width, bias=has_bias)
        self.out = nn.Linear(width, width, bias=attention.out_proj.bias is not None)
        with torch.no_grad():
            self.qkv.weight.copy_(attention.in_proj_weight)
            self.out.weight.copy_(attention.out_proj.weight)
            if has_bias:
                self.qkv.bias.copy_(attention.in_proj_bias)
            if attention.out_proj.bias is not None:
                self.out.bias.copy_(attention.out_proj.bias)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        attn_mask: torch.Tensor | None = None,
        **_: object,
    ) -> tuple[torch.Tensor, None]:
        """``nn.MultiheadAttention.forward`` for self-attention, without attention weights."""
        if key is not query or value is not query:
            raise PrecisionError("int8: LinearSelfAttention serves self-attention only")
        if need_weights or key_padding_mask is not None:
            raise PrecisionError("int8: attention weights / key padding masks are not supported")
        x = query if self.batch_first else query.transpose(0, 1)  # [B, N, D]
        b, n, d = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)  # [3, B, h, N, d/h]
        if attn_mask is not None:
            if attn_mask.dtype == torch.bool:
                attn_mask = ~attn_mask  # SDPA's bool mask marks what may be attended
            if attn_mask.dim() == 3:  # [B*h, N, N] -> [B, h, N, N]
                attn_mask = attn_mask.reshape(b, h, n, n)
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=attn_mask)
        y = self.out(y.transpose(1, 2).reshape(b, n, d))  # [B, h, N, d/h] -> [B, N, D]
        return (y if self.batch_first else y.transpose(0, 1)), None


def _linearize_attention(module: nn.Module) -> int:
    """Replace every ``nn.MultiheadAttention`` below ``module`` in place; return how many."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, nn.MultiheadAttention):
            setattr(module, name, LinearSelfAttention(child))
            count += 1
        else:
            count += _linearize_attention(child)
    return count


def quantize_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization of ``model``'s linear layers, in place (CPU inference only).

    Self-attention modules are first rebuilt with linear projections (see the module docstring);
    weights are quantized per output channel. The result cannot be trained or moved to a GPU.

    Returns:
        ``model`` itself, with quantized layers.
    """
    model = model.cpu().eval()
    attentions = _linearize_attention(model)
    with warnings.catch_warnings():
        # torch.ao.quantization warns that it moves to torchao; the eager dynamic path is what
        # runs without torch.compile on the CPU (see benchmarks/README.md).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig}, inplace=True)
    logger.info("int8: quantized the linear layers (%d attention modules rebuilt)", attentions)
    return model

"""Temporal heads: frame embeddings [B, T, D] -> a video embedding [B, D].

* ``mean`` (TAP): temporal average pooling.
* ``transformer`` (T-Trans): learned frame position embeddings, a stack of CLIP's pre-LN residual
  attention blocks (open_clip's :class:`~open_clip.transformer.Transformer`, batch first, so the
  attention runs through ``F.scaled_dot_product_attention``) of width D and ``max(1, D // 64)``
  heads, a residual connection around the stack, then the mean over time. Its LayerNorms use
  epsilon 1e-12 (:data:`TEMPORAL_LAYER_NORM_EPS`), the value of the paper's code (a TF-style
  LayerNorm, epsilon inside the square root, which is what ``F.layer_norm`` computes); the
  paper's text and figure do not give it. With torch's default 1e-5 the output moves by about
  1e-4 on frame embeddings of small variance (ResNet encoders), so imported checkpoints would
  not compute the paper's function. CLIP's image encoder keeps its own 1e-5.
* ``tokent1d``: a depthwise temporal convolution on the class token at the input of chosen ViT
  blocks, then TAP. It lives *inside* the image encoder, so it is attached to open_clip's
  residual blocks with forward pre-hooks (the encoder's own parameter names do not change).
* ``t1d``: a channel-wise temporal convolution at the start of the residual branch of every
  bottleneck of ResNet stages 4-5 (open_clip's ``layer3``/``layer4``), then TAP.

The two convolutional heads start as a temporal channel shift, so a pretrained encoder starts close
to where it was: ``tokent1d`` shifts 1/4 of the class-token channels to the next frame and 1/4 to
the previous one (the fold of the paper's code), ``t1d`` 1/8 each way (TSM's fold, which the
paper's code uses for ResNets); the other channels are the identity. They reshape ``[B*T, ...] -> [B, T, ...]``, which needs T:
:meth:`TemporalHead.set_num_frames` is called by the video model before each visual pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import LayerNorm, QuickGELU, Transformer, VisionTransformer
from torch import nn

from text4vis.errors import ConfigError
from text4vis.registry import Registry

__all__ = [
    "MeanPooling",
    "TEMPORAL_HEADS",
    "TEMPORAL_LAYER_NORM_EPS",
    "T1D",
    "TemporalConv",
    "TemporalHead",
    "TemporalHeadError",
    "TemporalHeadRequest",
    "TemporalTransformer",
    "TokenT1D",
    "build_temporal_head",
]


# The paper's code shifts 1/4 of the class-token channels each way in its TokenT1D init.
TOKENT1D_FOLD_DIV = 4
# The paper's code normalises inside the temporal transformer with epsilon 1e-12 (see above).
TEMPORAL_LAYER_NORM_EPS = 1e-12


TemporalHeadError = ConfigError  # the older name, kept importable


class TemporalHead(nn.Module):
    """Base class: ``forward(x [B, T, D]) -> [B, D]``."""

    def set_num_frames(self, num_frames: int) -> None:
        """Tell in-backbone convolutions how many frames each video has (no-op by default)."""


class MeanPooling(TemporalHead):
    """TAP: the mean of the frame embeddings."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)  # [B, T, D] -> [B, D]


class TemporalTransformer(TemporalHead):
    """T-Trans: position embeddings + CLIP pre-LN blocks + residual + mean over time.

    The LayerNorms use the paper's epsilon, :data:`TEMPORAL_LAYER_NORM_EPS`.

    Args:
        width: D, the frame embedding width.
        layers: number of residual attention blocks (6 in the paper).
        heads: attention heads (default ``max(1, width // 64)``).
        max_frames: number of learned frame positions (T must not exceed it).
    """

    def __init__(
        self, width: int, layers: int = 6, heads: int | None = None, max_frames: int = 77
    ) -> None:
        super().__init__()
        self.width = width
        self.max_frames = max_frames
        self.frame_position_embeddings = nn.Embedding(max_frames, width)
        self.transformer = Transformer(
            width,
            layers,
            heads or max(1, width // 64),
            act_layer=QuickGELU,  # CLIP's block design
            norm_layer=partial(LayerNorm, eps=TEMPORAL_LAYER_NORM_EPS),
            batch_first=True,
        )
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        # The paper's code: Linear (the attention's out_proj included) and Embedding weights
        # N(0, 0.02), biases 0, LayerNorms 1/0; the attention's packed input projection is not a
        # Linear, so it keeps torch's Xavier-uniform initialisation (and zero bias).
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        num_frames = x.shape[1]
        if num_frames > self.max_frames:
            raise TemporalHeadError(
                f"temporal transformer has {self.max_frames} frame positions, got {num_frames} "
                "frames; sample fewer frames (data.num_segments)"
            )
        positions = self.frame_position_embeddings.weight[:num_frames]  # [T, D]
        y = self.transformer(x + positions.to(x.dtype))  # [B, T, D]
        return (y + x).mean(dim=1)  # residual around the stack, then [B, D]


def shift_kernel(channels: int, fold_div: int = 8) -> torch.Tensor:
    """Depthwise kernel [channels, 1, 3] of a temporal shift (1/fold_div each way, rest identity).

    With cross-correlation over ``(t-1, t, t+1)``: channels ``[0, c/fold)`` take frame t+1,
    ``[c/fold, 2c/fold)`` take frame t-1, the others frame t.
    """
    fold = max(1, channels // fold_div) if channels >= 3 else 0
    kernel = torch.zeros(channels, 1, 3)
    kernel[:fold, 0, 2] = 1.0
    kernel[fold : 2 * fold, 0, 0] = 1.0
    kernel[2 * fold :, 0, 1] = 1.0
    return kernel


class TemporalConv(nn.Module):
    """Depthwise temporal convolution (kernel 3, zero padding) initialised as a channel shift.

    Args:
        channels: channels convolved independently.
        fold_div: 1/fold_div of the channels shift each way at initialisation.
    """

    def __init__(self, channels: int, fold_div: int = 8) -> None:
        super().__init__()
        self.channels = channels
        self.weight = nn.Parameter(shift_kernel(channels, fold_div))
        self.num_frames = 1

    def convolve(self, x: torch.Tensor) -> torch.Tensor:
        """``x [N, C, T] -> [N, C, T]``."""
        return F.conv1d(x, self.weight.to(x.dtype), padding=1, groups=self.channels)

    def _frames(self, batch_frames: int) -> tuple[int, int]:
        t = self.num_frames
        if batch_frames % t:
            raise TemporalHeadError(
                f"temporal convolution expects a batch of videos of {t} frames, got "
                f"{batch_frames} frames in all"
            )
        return batch_frames // t, t

    def token_hook(self, module: nn.Module, args: tuple) -> tuple:
        """Forward pre-hook of a ViT block: convolve the class token over time."""
        x = args[0]  # [B*T, L, W], batch first
        b, t = self._frames(x.shape[0])
        cls = x[:, 0].reshape(b, t, -1).transpose(1, 2)  # [B, W, T]
        cls = self.convolve(cls).transpose(1, 2).reshape(b * t, 1, -1)  # [B*T, 1, W]
        return (torch.cat([cls, x[:, 1:]], dim=1), *args[1:])

    def feature_map_hook(self, module: nn.Module, args: tuple) -> tuple:
        """Forward pre-hook of a conv: convolve every channel of a feature map over time."""
        x = args[0]  # [B*T, C, H, W]
        b, t = self._frames(x.shape[0])
        _, c, h, w = x.shape
        y = x.reshape(b, t, c, h, w).permute(0, 3, 4, 2, 1).reshape(b * h * w, c, t)
        y = self.convolve(y)  # [B*H*W, C, T]
        y = y.reshape(b, h, w, c, t).permute(0, 4, 3, 1, 2).reshape(b * t, c, h, w)
        return (y, *args[1:])


class _InBackboneHead(TemporalHead):
    """Shared parts of TokenT1D and T1D: convs keyed by site, hooks, TAP at the end."""

    convs: nn.ModuleDict

    def set_num_frames(self, num_frames: int) -> None:
        for conv in self.convs.values():
            conv.num_frames = num_frames

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=1)  # [B, T, D] -> [B, D]


class TokenT1D(_InBackboneHead):
    """TokenT1D: temporal convolution of the ViT class token inside chosen blocks, then TAP.

    Args:
        visual: open_clip ``VisionTransformer`` whose blocks get the convolution.
        blocks: block indices ([] or None = all blocks).
    """

    def __init__(self, visual: nn.Module, blocks: Sequence[int] | None = None) -> None:
        super().__init__()
        if not isinstance(visual, VisionTransformer):
            raise TemporalHeadError(
                f"temporal head 'tokent1d' needs a ViT image encoder, got {type(visual).__name__}; "
                "use 'mean', 'transformer' or (for ResNets) 't1d'"
            )
        resblocks = visual.transformer.resblocks
        chosen = list(blocks) if blocks else list(range(len(resblocks)))
        bad = [i for i in chosen if not 0 <= i < len(resblocks)]
        if bad:
            raise TemporalHeadError(
                f"model.tokent1d_blocks {bad} out of range: the ViT has blocks "
                f"0..{len(resblocks) - 1}"
            )
        width = visual.transformer.width
        self.blocks = sorted(set(chosen))
        self.convs = nn.ModuleDict(
            {str(i): TemporalConv(width, TOKENT1D_FOLD_DIV) for i in self.blocks}
        )
        for i in self.blocks:
            conv = self.convs[str(i)]
            resblocks[i].register_forward_pre_hook(conv.token_hook)


class T1D(_InBackboneHead):
    """T1D: channel-wise temporal convolution in ResNet stages 4-5 (every bottleneck), then TAP.

    Args:
        visual: open_clip ``ModifiedResNet``.
    """

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        if not isinstance(visual, ModifiedResNet):
            raise TemporalHeadError(
                f"temporal head 't1d' needs a ResNet image encoder, got {type(visual).__name__}; "
                "use 'mean', 'transformer' or (for ViTs) 'tokent1d'"
            )
        convs: dict[str, TemporalConv] = {}
        for stage in ("layer3", "layer4"):
            for j, block in enumerate(getattr(visual, stage)):
                conv = TemporalConv(block.conv1.in_channels)
                convs[f"{stage}_{j}"] = conv
                # On the residual branch only: the identity path keeps the frame's own features.
                block.conv1.register_forward_pre_hook(conv.feature_map_hook)
        self.convs = nn.ModuleDict(convs)


@dataclass(frozen=True)
class TemporalHeadRequest:
    """What a temporal head is built from.

    Attributes:
        embed_dim: D, the frame embedding width.
        visual: the image encoder (hooked by ``tokent1d`` / ``t1d``).
        layers: depth of the temporal transformer.
        max_frames: frame positions of the temporal transformer.
        tokent1d_blocks: ViT blocks with TokenT1D ([] or None = all).
    """

    embed_dim: int
    visual: nn.Module
    layers: int = 6
    max_frames: int = 77
    tokent1d_blocks: Sequence[int] | None = None


# The temporal heads by name (``model.temporal``): builders ``TemporalHeadRequest -> head``.
TEMPORAL_HEADS: Registry[Callable[[TemporalHeadRequest], TemporalHead]] = Registry(
    "temporal head", key="model.temporal", error=TemporalHeadError
)


@TEMPORAL_HEADS.register("mean")
def _build_mean(request: TemporalHeadRequest) -> TemporalHead:
    return MeanPooling()


@TEMPORAL_HEADS.register("transformer")
def _build_transformer(request: TemporalHeadRequest) -> TemporalHead:
    return TemporalTransformer(request.embed_dim, request.layers, max_frames=request.max_frames)


@TEMPORAL_HEADS.register("tokent1d")
def _build_tokent1d(request: TemporalHeadRequest) -> TemporalHead:
    return TokenT1D(request.visual, request.tokent1d_blocks)


@TEMPORAL_HEADS.register("t1d")
def _build_t1d(request: TemporalHeadRequest) -> TemporalHead:
    return T1D(request.visual)


def build_temporal_head(
    name: str,
    *,
    embed_dim: int,
    visual: nn.Module,
    layers: int = 6,
    max_frames: int = 77,
    tokent1d_blocks: Sequence[int] | None = None,
) -> TemporalHead:
    """Build a temporal head by name.

    Args:
        name: one of :data:`TEMPORAL_HEADS`.
        embed_dim: D, the frame embedding width.
        visual: the image encoder (hooked by ``tokent1d`` / ``t1d``).
        layers: depth of the temporal transformer.
        max_frames: frame positions of the temporal transformer.
        tokent1d_blocks: ViT blocks with TokenT1D ([] = all).

    Raises:
        TemporalHeadError: unknown name (the message lists the valid ones) or a head that does
            not fit the backbone.
    """
    build = TEMPORAL_HEADS.get(name)
    return build(TemporalHeadRequest(embed_dim, visual, layers, max_frames, tokent1d_blocks))

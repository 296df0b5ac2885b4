"""Speed options of the trainer: ``torch.compile``, fused AdamW and channels-last ResNets.

Each is a switch of ``train`` applied by the engine to an already built model, so the model code
stays free of them (and of the device):

- ``train.compile``: :func:`compile_model` compiles, in place, the submodules that carry a video
  model's compute (the image encoder and the temporal head), so every path through them runs
  compiled: ``forward``, and ``encode_video``, which the contrastive objective and the
  embedding loops call. Parameter names, checkpoints and ``save_pretrained`` folders are the
  same as without it. The trainer then compiles its training step (model and objective) *after*
  wrapping it in ``DistributedDataParallel``, so that torch.compile splits the graph at DDP's
  gradient buckets and the all-reduce overlaps the backward (a module compiled before the
  wrapping hands DDP all its gradients at once, at the end of its backward); the compiled
  submodules are inlined into that graph. The first steps are slow (compilation); it pays on
  long GPU runs.
- ``train.fused_adamw``: AdamW's single-kernel implementation (``fused=True``). ``auto`` turns it
  on for parameters on a CUDA device, where it saves kernel launches per parameter and step, and
  on the CPU, where torch's other path is a Python loop over the parameters (measured on the
  demo's 4.0M-parameter model, one thread: 3.1 ms per step against 10.3);
  ``always`` forces it; ``never`` keeps torch's default (the loop on the CPU, "foreach" on CUDA).
  (Not on/off: YAML reads those as booleans.)
- ``train.channels_last``: the ResNet image encoder in the channels-last memory format, which
  cuDNN's convolutions prefer under bf16/fp16 autocast (convolution outputs follow the weights'
  format). ViT encoders are left as they are (their only convolution is the patch embedding).
"""

from __future__ import annotations

import logging

import torch
from open_clip.modified_resnet import ModifiedResNet
from torch import nn

from text4vis.errors import ConfigError

__all__ = [
    "FUSED_ADAMW_CHOICES",
    "apply_channels_last",
    "buffers_change_in_training",
    "compile_model",
    "use_fused_adamw",
]

log = logging.getLogger("text4vis.engine.acceleration")

FUSED_ADAMW_CHOICES = ("auto", "always", "never")


def use_fused_adamw(setting: str, device: torch.device) -> bool:
    """Whether AdamW should use its fused kernel for ``train.fused_adamw`` on ``device``.

    Raises:
        ValueError: ``setting`` is not one of :data:`FUSED_ADAMW_CHOICES`.
    """
    if setting not in FUSED_ADAMW_CHOICES:
        raise ConfigError(
            f"train.fused_adamw {setting!r}: choose one of {FUSED_ADAMW_CHOICES} (auto = fused "
            "on CUDA and the CPU)"
        )
    if setting == "auto":
        return device.type in ("cuda", "cpu")
    return setting == "always"


def apply_channels_last(model: nn.Module) -> bool:
    """Put a ResNet image encoder (``model.visual``) in channels-last format, in place.

    Returns:
        True when the encoder was converted; False (with a warning) for other encoders.
    """
    visual = getattr(model, "visual", None)
    if not isinstance(visual, ModifiedResNet):
        log.warning(
            "train.channels_last applies to ResNet image encoders; %s is left as it is",
            type(visual).__name__,
        )
        return False
    visual.to(memory_format=torch.channels_last)
    log.info("ResNet image encoder in channels-last memory format")
    return True


# The submodules of a video model that every forward path goes through (VideoRecognizer:
# encode_frames -> visual, encode_video -> temporal, forward -> encode_video).
_COMPILED_PARTS = ("visual", "temporal")


def compile_model(model: nn.Module) -> nn.Module:
    """Compile ``model`` in place with ``torch.compile``; returns the same module.

    A video model's image encoder and temporal head are compiled (``Module.compile``, in
    place), so that ``forward``, ``encode_video`` and ``encode_frames`` all run compiled, not
    only ``forward``. A module without them has its forward compiled. Parameter names and
    state dicts are unchanged.
    """
    parts = [getattr(model, name, None) for name in _COMPILED_PARTS]
    if all(isinstance(part, nn.Module) for part in parts):
        for part in parts:
            part.compile()
        log.info(
            "image encoder and temporal head compiled with torch.compile (forward and "
            "encode_video; the first steps compile)"
        )
    else:
        model.compile()
        log.info("model forward compiled with torch.compile (the first steps compile)")
    return model


def buffers_change_in_training(module: nn.Module) -> bool:
    """Whether a training step changes some buffer of ``module`` (BatchNorm running stats).

    DDP broadcasts rank 0's buffers before every forward unless told otherwise
    (``broadcast_buffers``). text4vis's other buffers are constants (the frozen classifier,
    CoOp's prefix and suffix tokens, the pixel normalisation, prompt tokens), identical on
    every rank, so the broadcast only costs time (about 59 MB per step for Kinetics-400 with
    ViT-B); it is needed only where a buffer changes: normalisation layers tracking running
    statistics (the ResNet image encoders of RN50 and the like).
    """
    return any(
        isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats
        for m in module.modules()
    )

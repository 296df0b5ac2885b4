"""Speed options of the trainer: ``torch.compile``, fused AdamW and channels-last ResNets.

Each is a switch of ``train`` applied by the engine to an already built model, so the model code
stays free of them (and of the device):

- ``train.compile``: :meth:`torch.nn.Module.compile` compiles the model's forward in place, so
  parameter names, checkpoints and ``save_pretrained`` folders are the same as without it. The
  first steps are slow (compilation); it pays on long GPU runs.
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

__all__ = ["FUSED_ADAMW_CHOICES", "apply_channels_last", "compile_model", "use_fused_adamw"]

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


def compile_model(model: nn.Module) -> nn.Module:
    """Compile ``model``'s forward in place with ``torch.compile``; returns the same module."""
    model.compile()
    log.info("model forward compiled with torch.compile (the first steps compile)")
    return model

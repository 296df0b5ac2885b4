"""Import checkpoints released with the paper's code into a ``from_pretrained`` folder.

Layout read: a torch pickle (loaded with ``weights_only=True``) whose ``model_state_dict`` (or the
top-level dict itself) holds

* ``visual.*``: the CLIP image encoder in OpenAI naming (ViT or ModifiedResNet), which is also
  open_clip's naming;
* ``fusion_model.frame_position_embeddings.weight`` and
  ``fusion_model.transformer.resblocks.N.{attn.in_proj_weight, attn.in_proj_bias,
  attn.out_proj.*, ln_1.*, mlp.c_fc.*, mlp.c_proj.*, ln_2.*}``: the temporal transformer
  (absent for a mean-pooling model);
* ``logit_scale`` (log scale, CLIP's convention);

keys possibly prefixed ``module.``; a separate ``fusion_model_state_dict`` entry is merged in.
Other entries (a CLIP text tower, optimizer state) are ignored and logged.

The architecture is inferred from tensor shapes and matched to an open_clip architecture with the
same image tower, or given by name (``arch``) or by an open_clip-style config file
(``model_config``) for encoders open_clip does not name; OpenAI's QuickGELU is used, as in the
paper's code. :func:`import_official` copies a config file into the output folder
(``model_configs/NAME.json``), so that :func:`text4vis.models.factory.load_model` can rebuild the
architecture in a new process.

The imported model keeps the checkpoint's ``logit_scale`` (the scale its training loss used); the
paper's test scripts score with a fixed 100 instead, which ranks classes the same way.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import open_clip
import torch

from text4vis.config import ModelConfig
from text4vis.errors import (
    CheckpointError,
    MissingFileError,
    UsageError,
    load_failure_reason,
)
from text4vis.models.backbones import (
    create_clip,
    register_model_config_file,
    register_model_configs,
)
from text4vis.models.classifier import build_classifier
from text4vis.models.text import build_text_encoder
from text4vis.models.video import MODEL_CONFIGS_DIR, VideoRecognizer

__all__ = [
    "OfficialCheckpointError",
    "import_official",
    "infer_vision_config",
    "official_model",
    "read_official",
]

log = logging.getLogger("text4vis.models.official")


OfficialCheckpointError = CheckpointError  # the older name, kept importable


def read_official(path: str | Path) -> dict[str, torch.Tensor]:
    """Read the model tensors of an official checkpoint (``module.`` prefixes removed)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise OfficialCheckpointError(
            f"{path}: cannot be read with torch.load(weights_only=True) ({load_failure_reason(exc)}); "
            "if it holds "
            "Python objects besides tensors, re-save only its model_state_dict"
        ) from exc
    if not isinstance(checkpoint, dict):
        raise OfficialCheckpointError(
            f"{path}: expected a dict with model_state_dict, got {type(checkpoint).__name__}"
        )
    state = checkpoint.get("model_state_dict", checkpoint)
    if not isinstance(state, dict):
        raise OfficialCheckpointError(f"{path}: model_state_dict is not a dict")
    state = dict(state)
    fusion = checkpoint.get("fusion_model_state_dict")
    if isinstance(fusion, dict):
        state.update({f"fusion_model.{k}": v for k, v in fusion.items()})
    clean: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        key = key.replace("fusion_model.module.", "fusion_model.")
        if isinstance(value, torch.Tensor):
            clean[key] = value
    if not any(k.startswith("visual.") for k in clean):
        raise OfficialCheckpointError(
            f"{path}: no visual.* tensors found (keys start with "
            f"{sorted({k.split('.')[0] for k in clean})[:8]}); expected the paper's layout"
        )
    return clean


def infer_vision_config(visual: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Image-tower hyper-parameters from OpenAI-named tensors (keys without ``visual.``)."""
    if "proj" in visual and "conv1.weight" in visual:  # ViT
        width, _, patch, _ = visual["conv1.weight"].shape
        layers = len({k.split(".")[2] for k in visual if k.startswith("transformer.resblocks.")})
        grid = round((visual["positional_embedding"].shape[0] - 1) ** 0.5)
        return {
            "embed_dim": int(visual["proj"].shape[1]),
            "layers": layers,
            "width": int(width),
            "patch_size": int(patch),
            "image_size": int(patch * grid),
        }
    if "attnpool.c_proj.weight" in visual:  # ModifiedResNet
        counts = [
            len({k.split(".")[1] for k in visual if k.startswith(f"layer{i}.")})
            for i in range(1, 5)
        ]
        grid = round((visual["attnpool.positional_embedding"].shape[0] - 1) ** 0.5)
        return {
            "embed_dim": int(visual["attnpool.c_proj.weight"].shape[0]),
            "layers": counts,
            "width": int(visual["layer1.0.conv1.weight"].shape[0]),
            "patch_size": None,
            "image_size": int(grid * 32),
        }
    raise OfficialCheckpointError(
        "cannot tell the image encoder: expected visual.proj (ViT) or visual.attnpool.* (ResNet)"
    )


def match_architecture(vision: dict[str, Any]) -> str:
    """The open_clip architecture whose image tower has these hyper-parameters."""
    register_model_configs()
    matches = []
    for name in open_clip.list_models():
        cfg = open_clip.get_model_config(name) or {}
        vc = cfg.get("vision_cfg", {})
        if vc.get("timm_model_name") or cfg.get("embed_dim") != vision["embed_dim"]:
            continue
        layers = vc.get("layers")
        layers = list(layers) if isinstance(layers, (list, tuple)) else layers
        if (
            layers == vision["layers"]
            and vc.get("width") == vision["width"]
            and vc.get("patch_size") == vision["patch_size"]
            and vc.get("image_size") == vision["image_size"]
        ):
            # OpenAI's towers use 64-wide heads; prefer configs that agree.
            matches.append((vc.get("head_width", 64) != 64, len(name), name))
    if not matches:
        raise OfficialCheckpointError(
            f"no open_clip architecture has this image encoder {vision}; describe it in an "
            "open_clip-style model config (a JSON file with embed_dim, vision_cfg and text_cfg) "
            "and pass it with `text4vis import-official CKPT --model-config FILE.json` "
            "(import_official(..., model_config=FILE.json))"
        )
    # Prefer the plain name (ViT-B-16 over ViT-B-16-quickgelu and the like).
    return sorted(matches)[0][2]


def official_model(
    checkpoint: str | Path,
    *,
    class_names: Sequence[str] | None = None,
    text_weights: str | None = None,
    num_frames: int = 8,
    arch: str | None = None,
    model_config: str | Path | None = None,
) -> VideoRecognizer:
    """The video model of an official checkpoint (:func:`text4vis.models.factory.load_model`
    calls it for such files).

    Args:
        checkpoint: the released ``.pt`` / ``.pth`` file.
        class_names: label names; with ``text_weights``, a CLIP text classifier is built.
        text_weights: CLIP weights (e.g. OpenAI's ``ViT-B-16.pt``) for the text tower.
        num_frames: T recorded as the model's default.
        arch: open_clip architecture name (default: inferred from tensor shapes).
        model_config: an open_clip-style model config (JSON) for an encoder that is not one of
            open_clip's named architectures; its file stem names the architecture. Not together
            with ``arch``.

    Returns:
        The model. Without a classifier, ``forward`` raises a message saying how to attach one.
    """
    state = read_official(checkpoint)
    visual = {k[len("visual.") :]: v for k, v in state.items() if k.startswith("visual.")}
    fusion = {
        k[len("fusion_model.") :]: v for k, v in state.items() if k.startswith("fusion_model.")
    }
    ignored = sorted(
        {k.split(".")[0] for k in state if not k.startswith(("visual.", "fusion_model."))}
        - {"logit_scale"}
    )
    if ignored:
        log.info("ignoring checkpoint entries: %s", ignored)
    vision = infer_vision_config(visual)
    if arch and model_config:
        raise UsageError(
            f"give either arch={arch!r} or model_config={str(model_config)!r}, not both: the "
            "config file names the architecture (its file stem)"
        )
    if model_config is not None:
        arch = register_model_config_file(model_config)
    arch = arch or match_architecture(vision)
    layers = len(
        {m.group(1) for k in fusion if (m := re.match(r"transformer\.resblocks\.(\d+)\.", k))}
    )
    temporal = "transformer" if fusion else "mean"
    if fusion and "frame_position_embeddings.weight" not in fusion:
        raise OfficialCheckpointError(
            f"{checkpoint}: fusion_model has no frame_position_embeddings.weight"
        )
    max_frames = int(fusion["frame_position_embeddings.weight"].shape[0]) if fusion else None
    model_cfg = ModelConfig(
        arch=arch,
        pretrained="",
        temporal=temporal,
        temporal_layers=max(layers, 1),
        classifier="text",
        text_pretrained=text_weights or "",
    )
    model = VideoRecognizer.from_config(
        model_cfg,
        list(class_names or []),
        num_frames=num_frames,
        image_size=vision["image_size"],
        load_weights=False,
        max_frames=max_frames,
        quick_gelu=True,
    )
    try:
        model.visual.load_state_dict({k: v.float() for k, v in visual.items()}, strict=True)
        if fusion:
            model.temporal.load_state_dict({k: v.float() for k, v in fusion.items()}, strict=True)
    except RuntimeError as exc:
        raise OfficialCheckpointError(
            f"{checkpoint}: tensors do not fit the inferred architecture {arch} ({exc})"
        ) from exc
    if "logit_scale" in state:
        with torch.no_grad():
            model.logit_scale.copy_(state["logit_scale"].float().reshape(()))
    model.classifier = None
    if class_names is not None and text_weights:
        clip = create_clip(arch, text_weights)
        encoder = build_text_encoder(model_cfg, clip_model=clip, embed_dim=model.embed_dim)
        artifact = build_classifier(
            "text",
            class_names=list(class_names),
            embed_dim=model.embed_dim,
            text_encoder=encoder,
            template=model_cfg.template,
        )
        model.set_classifier(artifact.weight, list(class_names), artifact.metadata)
    elif class_names is not None:
        model.class_names = list(class_names)
    model.model_cfg.text_pretrained = text_weights or ""
    return model


def import_official(checkpoint: str | Path, out_dir: str | Path, **options: Any) -> Path:
    """Convert an official checkpoint into a model folder (``options`` as the keyword arguments
    of :func:`official_model`: ``class_names``, ``text_weights``, ``num_frames``, ``arch``,
    ``model_config``).

    A ``model_config`` file is copied into the folder (``model_configs/NAME.json``): the folder
    loader registers it before it rebuilds the model, so a new process needs nothing else.

    Returns:
        The output folder, which :func:`text4vis.models.factory.load_model` reads.
    """
    model = official_model(checkpoint, **options)
    out = model.save_pretrained(out_dir)
    model_config = options.get("model_config")
    if model_config is not None:
        (out / MODEL_CONFIGS_DIR).mkdir(exist_ok=True)
        shutil.copyfile(model_config, out / MODEL_CONFIGS_DIR / f"{model.model_cfg.arch}.json")
    return out

"""CLIP image and text towers through open_clip, with weights from a tag or a local file.

Every architecture open_clip knows (``RN50``, ``ViT-B-16``, ``ViT-L-14-336``, EVA, SigLIP ...) is
available by name, plus the small architectures shipped in ``model_configs/`` (the tests'
``tiny-vit`` and ``tiny-rn``; the demo's ``demo-rn``, a CLIP ResNet of one bottleneck block per
stage at width 8 for 32 px frames, and ``demo-vit``, the 2-layer ViT with 8 px patches that the
demo used before), registered with open_clip through :func:`open_clip.add_model_config` so that
they go through exactly the same code path as the real models.

Weights come from

* ``""``: random initialisation;
* an open_clip pretrained tag (``"openai"``, ``"laion2b_s34b_b79k"`` ...), which downloads and so
  needs a network; when that fails the error names the local-file alternative;
* a local file, whose format is detected from its content:

  - an OpenAI TorchScript archive (``ViT-B-16.pt`` as released by OpenAI), read with
    ``torch.jit.load`` only to take its state dict;
  - an OpenAI state dict (CLIP key names plus the extra ``input_resolution`` / ``context_length``
    / ``vocab_size`` entries, which are dropped);
  - an open_clip checkpoint (``{"state_dict": ...}``, keys possibly prefixed ``module.``);
  - a ``.safetensors`` file.

OpenAI weights were trained with QuickGELU; files in an OpenAI format and tags whose open_clip
metadata says so build the model with QuickGELU so that the outputs match.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import open_clip
import torch
from open_clip.model import convert_to_custom_text_state_dict, resize_pos_embed
from open_clip.transformer import QuickGELU
from safetensors.torch import load_file
from torch import nn

from text4vis.errors import CheckpointError, ConfigError, MissingFileError, load_failure_reason

__all__ = [
    "BackboneError",
    "MODEL_CONFIG_DIR",
    "create_clip",
    "embed_dim_of",
    "read_state_dict",
    "register_model_config_file",
    "register_model_configs",
    "uses_quick_gelu",
    "weights_loaded_afterwards",
]

log = logging.getLogger("text4vis.models.backbones")

MODEL_CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
# Keys that OpenAI state dicts carry beside the weights.
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
_REGISTERED: set[str] = set()
# Start of the warning open_clip logs whenever it builds a model without weights.
RANDOM_INIT_MESSAGE = "No pretrained weights loaded for model"
# open_clip 3.x logs it through the root logger (`logging.warning`); a module logger is covered
# too in case a later release switches to `logging.getLogger(__name__)`.
_OPEN_CLIP_LOGGERS = ("", "open_clip.factory")


BackboneError = ConfigError  # the older name, kept importable


def register_model_configs(path: str | Path = MODEL_CONFIG_DIR) -> None:
    """Register a folder (or one JSON file) of open_clip architecture configs, once per path.

    The file stem becomes the architecture name (``tiny-vit.json`` -> ``"tiny-vit"``).
    """
    key = str(Path(path).resolve())
    if key in _REGISTERED:
        return
    open_clip.add_model_config(Path(path))
    _REGISTERED.add(key)


def register_model_config_file(path: str | Path) -> str:
    """Check and register one open_clip-style architecture config; return its name (file stem).

    open_clip skips a config file without ``embed_dim``, ``vision_cfg`` and ``text_cfg`` without
    a word, so they are checked here first. A name that open_clip already knows with a different
    config is refused: registering it would silently change that architecture in this process.

    Args:
        path: a JSON file in open_clip's model-config format, e.g. ``my-vit.json``.

    Raises:
        MissingFileError: the file does not exist.
        BackboneError: the file is not such a config, or its name clashes.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"model config {path} does not exist")
    if path.suffix != ".json":
        raise BackboneError(f"model config {path}: expected a .json file (its stem names it)")
    try:
        config = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackboneError(f"model config {path}: not valid JSON ({exc})") from exc
    needed = ("embed_dim", "vision_cfg", "text_cfg")
    missing = [key for key in needed if not isinstance(config, dict) or key not in config]
    if missing:
        raise BackboneError(
            f"model config {path}: missing keys {missing}; an open_clip model config holds "
            f"{list(needed)} (see open_clip's src/open_clip/model_configs/ViT-B-16.json)"
        )
    register_model_configs()
    name = path.stem
    known = open_clip.get_model_config(name)
    if known is not None and known != config:
        raise BackboneError(
            f"model config {path}: open_clip already has an architecture named {name!r} with a "
            "different config; rename the file"
        )
    register_model_configs(path)
    return name


class _DropRandomInitWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(RANDOM_INIT_MESSAGE)


@contextlib.contextmanager
def weights_loaded_afterwards() -> Iterator[None]:
    """Silence open_clip's "No pretrained weights loaded ... Model initialized randomly" warning.

    For code that builds an architecture without weights only to load saved tensors into it right
    after (``VideoRecognizer.from_pretrained``, local weight files), where the warning is false.
    Only that message is dropped, and only inside the ``with`` block; everything else open_clip
    logs still shows. Building a model that really stays random keeps the warning.
    """
    drop = _DropRandomInitWarning()
    loggers = [logging.getLogger(name) for name in _OPEN_CLIP_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def _is_torchscript_archive(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    # TorchScript archives hold compiled code next to the tensors; torch.save archives do not.
    return any("/code/" in name for name in names) and any(
        name.endswith("constants.pkl") for name in names
    )


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Read CLIP weights from a local file of any supported format.

    Args:
        path: a TorchScript archive, a torch pickle (state dict or ``{"state_dict": ...}``) or a
            ``.safetensors`` file.

    Returns:
        The state dict (``module.`` prefixes and OpenAI's extra keys removed) and the detected
        format: ``"openai-jit"``, ``"openai"``, ``"open_clip"`` or ``"safetensors"``.

    Raises:
        MissingFileError: the file does not exist.
        BackboneError: the file holds no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weight file {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            state, kind = load_file(str(path), device="cpu"), "safetensors"
        except Exception as exc:  # safetensors raises its own error types for a damaged file
            raise CheckpointError(
                f"{path}: not a readable safetensors file ({type(exc).__name__}: {exc})"
            ) from None
    elif _is_torchscript_archive(path):
        # TorchScript is not a pickle: loading it runs no Python code; only tensors are kept.

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # jit is deprecated, not the format
            module = torch.jit.load(str(path), map_location="cpu")
        state, kind = dict(module.state_dict()), "openai-jit"
    else:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise BackboneError(
                f"{path}: cannot read weights with torch.load(weights_only=True) "
                f"({load_failure_reason(exc)}); "
                "expected a state dict, an open_clip checkpoint, an OpenAI .pt or a "
                ".safetensors file"
            ) from exc
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get("state_dict"), dict):
            state, kind = checkpoint["state_dict"], "open_clip"
        elif isinstance(checkpoint, dict):
            state = checkpoint
            kind = "openai" if any(k in checkpoint for k in OPENAI_EXTRA_KEYS) else "open_clip"
        else:
            raise BackboneError(
                f"{path}: expected a dict of tensors, got {type(checkpoint).__name__}"
            )
    if not state:
        raise BackboneError(f"{path}: the file holds no tensors")
    state = {
        (k[len("module.") :] if k.startswith("module.") else k): v
        for k, v in state.items()
        if k not in OPENAI_EXTRA_KEYS
    }
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise BackboneError(f"{path}: entries {bad[:5]} are not tensors; expected a state dict")
    return state, kind


def _check_arch(arch: str) -> None:
    if arch.startswith(("hf-hub:", "local-dir:")):
        return
    known = open_clip.list_models()
    if arch.replace("/", "-") not in known:
        close = difflib.get_close_matches(arch, known, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise BackboneError(
            f"unknown architecture {arch!r} (model.arch).{hint} Valid names are open_clip's "
            f"architectures, e.g. RN50, ViT-B-32, ViT-B-16, ViT-L-14, ViT-L-14-336, tiny-vit, "
            f"tiny-rn ({len(known)} in all; `python -c 'import open_clip; "
            f"print(open_clip.list_models())'` lists them)"
        )


def create_clip(
    arch: str, pretrained: str = "", *, image_size: int | None = None, quick_gelu: bool = False
) -> nn.Module:
    """Build an open_clip CLIP model (image and text towers) with the requested weights.

    Args:
        arch: open_clip architecture name, e.g. ``"ViT-B-16"``, ``"RN50"`` or ``"tiny-vit"``.
        pretrained: ``""`` (random), an open_clip pretrained tag, or a local weight file.
        image_size: input resolution; the positional embeddings of loaded weights are
            interpolated when it differs from theirs (None = the architecture's own).
        quick_gelu: force QuickGELU activations (automatic for OpenAI-format files and tags).

    Returns:
        The open_clip model in training mode, float32, on the CPU.

    Raises:
        BackboneError: unknown architecture or tag, a download that failed, weights that do not
            fit the architecture.
        MissingFileError: ``pretrained`` looks like a path but the file does not exist.
    """
    register_model_configs()
    _check_arch(arch)
    kwargs: dict[str, Any] = {}
    if image_size is not None:
        kwargs["force_image_size"] = image_size
    if quick_gelu:
        kwargs["force_quick_gelu"] = True
    name = arch.replace("/", "-")
    if not pretrained:
        model = open_clip.create_model(name, pretrained=None, **kwargs)
        return model.float().train()

    path = Path(pretrained).expanduser()
    if path.is_file():
        state, kind = read_state_dict(path)
        if kind.startswith("openai"):
            kwargs["force_quick_gelu"] = True
        with weights_loaded_afterwards():  # the file's tensors replace the random ones below
            model = open_clip.create_model(name, pretrained=None, **kwargs)
        _load_weights(model, state, path)
        log.info("loaded %s weights (%s format) from %s", arch, kind, path)
        return model.float().train()

    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if not tag_cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        looks_like_path = any(sep in pretrained for sep in ("/", "\\")) or "." in pretrained
        if looks_like_path:
            raise MissingFileError(
                f"model.pretrained={pretrained!r}: no such weight file; give an existing file "
                f"(OpenAI .pt, state dict, open_clip checkpoint or .safetensors) or one of the "
                f"open_clip tags for {arch}: {tags}"
            )
        raise BackboneError(
            f"model.pretrained={pretrained!r} is neither a file nor an open_clip tag for {arch}; "
            f"known tags: {tags or 'none'}; or give a local weight file path"
        )
    if tag_cfg.get("quick_gelu", False):
        kwargs["force_quick_gelu"] = True
    try:
        model = open_clip.create_model(name, pretrained=pretrained, **kwargs)
    except Exception as exc:  # network failures surface as many exception types
        raise BackboneError(
            f"could not fetch open_clip weights {arch}/{pretrained} ({exc}). Without a network, "
            f"download the weights elsewhere (e.g. OpenAI's {arch}.pt or open_clip's "
            f"open_clip_pytorch_model.bin) and set model.pretrained=/path/to/that/file"
        ) from exc
    return model.float().train()


def _load_weights(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    if "positional_embedding" in state and not hasattr(model, "positional_embedding"):
        state = convert_to_custom_text_state_dict(state)
    if "logit_scale" in state and hasattr(model, "logit_scale"):
        state["logit_scale"] = state["logit_scale"].reshape(model.logit_scale.shape)
    if "logit_bias" not in state and getattr(model, "logit_bias", None) is not None:
        state["logit_bias"] = torch.zeros_like(model.logit_bias)
    resize_pos_embed(state, model)  # no-op when the resolution matches
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if missing or unexpected or wrong:
        details = []
        if missing:
            details.append(f"missing {missing[:4]}{' ...' if len(missing) > 4 else ''}")
        if unexpected:
            details.append(f"unexpected {unexpected[:4]}{' ...' if len(unexpected) > 4 else ''}")
        if wrong:
            k = wrong[0]
            details.append(
                f"shape of {k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
            )
        raise BackboneError(
            f"{path}: weights do not fit this architecture ({'; '.join(details)}); check that "
            "model.arch names the architecture the file was trained with"
        )
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)


def uses_quick_gelu(module: nn.Module) -> bool:
    """Whether a model (or tower) uses QuickGELU activations (as OpenAI's CLIP does)."""
    return any(isinstance(m, QuickGELU) for m in module.modules())


def embed_dim_of(clip_model: nn.Module) -> int:
    """The joint embedding width D of an open_clip model (the visual output width)."""
    visual = clip_model.visual
    dim = getattr(visual, "output_dim", None)
    if dim is None:
        proj = getattr(clip_model, "text_projection", None)
        if isinstance(proj, torch.Tensor):
            dim = proj.shape[1]
    if dim is None:
        raise BackboneError("cannot tell the embedding width of this open_clip model")
    return int(dim)

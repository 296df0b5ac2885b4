"""The video recognizer: CLIP image encoder per frame -> temporal head -> frozen classifier.

``logits = logit_scale * normalize(encode_video(x)) @ normalize(W).T`` with ``W [C, D]`` from a
classifier module (frozen text embeddings by default). The model knows nothing of DDP or AMP.

Saved folders (:meth:`VideoRecognizer.save_pretrained`) hold ``config.json`` (the model config,
class names, frame count, image size, classifier kind and, when known, the ``preprocessing`` the
model was trained with), ``model.safetensors`` (every persistent tensor except the classifier) and
``classifier.safetensors`` (the classifier artifact, when the classifier is a fixed matrix).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from text4vis.config import DataConfig, ModelConfig, config_from_dict
from text4vis.data.transforms import CLIP_MEAN, CLIP_STD, normalization_affine
from text4vis.errors import (
    CheckpointError,
    ConfigError,
    MissingFileError,
    UsageError,
)
from text4vis.models.backbones import (
    create_clip,
    embed_dim_of,
    register_model_configs,
    uses_quick_gelu,
    weights_loaded_afterwards,
)
from text4vis.models.classifier import (
    STORAGES,
    ClassifierArtifact,
    ClassifierError,
    ClassifierRequest,
    FrozenClassifier,
    build_classifier_module,
    load_classifier,
    rebuild_classifier_module,
    save_classifier,
    storage_of,
)
from text4vis.models.integrity import check_files, record_files
from text4vis.models.temporal import TemporalHead, build_temporal_head

__all__ = ["VideoRecognizer", "preprocessing_from_data_config", "scaled_cosine_logits"]

log = logging.getLogger("text4vis.models.video")

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CLASSIFIER_NAME = "classifier.safetensors"
#: a text side trained with the model (``train.text_online``), written beside its weights by
#: :meth:`text4vis.engine.contrastive.ContrastiveObjective.save_text_tower`: a CLIP text tower
#: as an open_clip weight file, or a sentence-transformers / ``hf:`` encoder as a folder
TEXT_TOWER_FILE = "text_tower.safetensors"
TEXT_ENCODER_DIR = "text_encoder"
# Architecture configs (open_clip JSON) that a folder brings for encoders open_clip does not name.
MODEL_CONFIGS_DIR = "model_configs"
MODEL_FOLDER_FORMAT_VERSION = 1  # format of the folders save_pretrained writes (config.json)
# Keys of the optional "preprocessing" block of config.json (what defines the model's input).
PREPROCESSING_KEYS = ("num_segments", "input_size", "resize_size", "mean", "std")


def scaled_cosine_logits(
    embeddings: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor | float
) -> torch.Tensor:
    """``scale * cos(embeddings, W)``: ``[N, D] x [C, D] -> [N, C]``.

    The one formula of the paper's logits, used by the model's forward pass, zero-shot scoring and
    :class:`~text4vis.predict.Predictor`.

    Args:
        embeddings: ``[N, D]`` video embeddings (normalised here).
        weight: ``[C, D]`` classifier with unit rows (normalise it first if it may not have).
        scale: the logit scale (the multiplier, not its log).

    Returns:
        float32 logits accurate to float32, also under autocast and with TF32 on: at logit scale
        100, bf16 products (8-bit mantissa) would round them by up to 0.25 and TF32 products
        (10-bit, ``run.tf32`` on a GPU) by about 0.05. So autocast is off here, the inputs are
        float32, and on a GPU the product (``N x D x C``, small beside the encoder) runs in
        float64, which TF32 does not touch (CPUs compute float32 products in float32).
    """
    with torch.autocast(embeddings.device.type, enabled=False):
        v = F.normalize(embeddings.float(), dim=-1)  # [N, D]
        if v.device.type != "cuda":
            return scale * v @ weight.float().T  # [N, D] @ [D, C]
        cosine = (v.double() @ weight.double().T).float()  # [N, C]
        return scale * cosine


def _default_max_frames(num_frames: int) -> int:
    return max(num_frames, 32)


def preprocessing_from_data_config(data_config: DataConfig) -> dict[str, Any]:
    """The evaluation preprocessing a data config defines, as saved in ``config.json``.

    Returns:
        ``{"num_segments": T, "input_size": S, "resize_size": R, "mean": [3], "std": [3]}``:
        T frames per clip, short side resized to R then centre-cropped to S, pixels
        ``(x / 255 - mean) / std`` (CLIP's mean/std, which every text4vis transform uses).
    """
    return {
        "num_segments": int(data_config.num_segments),
        "input_size": int(data_config.input_size),
        "resize_size": int(data_config.resize_size),
        "mean": [float(m) for m in CLIP_MEAN],
        "std": [float(s) for s in CLIP_STD],
    }


def _check_preprocessing(block: Any, where: str) -> dict[str, Any]:
    """Validate a saved ``preprocessing`` block; raise naming the file and key otherwise."""
    if not isinstance(block, dict):
        raise CheckpointError(
            f"{where}: 'preprocessing' must be an object with keys {list(PREPROCESSING_KEYS)}, "
            f"got {type(block).__name__}; fix or delete the key"
        )
    missing = [k for k in PREPROCESSING_KEYS if k not in block]
    unknown = sorted(set(block) - set(PREPROCESSING_KEYS))
    if missing or unknown:
        raise CheckpointError(
            f"{where}: 'preprocessing' has missing keys {missing} / unknown keys {unknown}; "
            f"expected exactly {list(PREPROCESSING_KEYS)}"
        )
    for key in ("num_segments", "input_size", "resize_size"):
        value = block[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(
                f"{where}: preprocessing.{key} must be a positive integer, got {value!r}"
            )
    if block["resize_size"] < block["input_size"]:
        raise CheckpointError(
            f"{where}: preprocessing.resize_size ({block['resize_size']}) must be at least "
            f"preprocessing.input_size ({block['input_size']})"
        )
    for key in ("mean", "std"):
        value = block[key]
        ok = isinstance(value, list) and len(value) == 3
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not ok or (key == "std" and min(value) <= 0):
            raise CheckpointError(
                f"{where}: preprocessing.{key} must be a list of 3 numbers (RGB)"
                f"{', all > 0' if key == 'std' else ''}, got {value!r}"
            )
    out = dict(block)
    out["mean"] = [float(v) for v in block["mean"]]
    out["std"] = [float(v) for v in block["std"]]
    return out


class VideoRecognizer(nn.Module):
    """CLIP-based video classifier with a (by default frozen) classifier.

    Build it with :meth:`from_config` or :meth:`from_pretrained`.

    Attributes:
        visual: the (pretrained) CLIP image encoder, ``[N, 3, H, W] -> [N, D]``.
        temporal: the temporal head, ``[B, T, D] -> [B, D]``.
        classifier: module whose ``forward()`` returns the normalised ``W [C, D]`` (None until a
            classifier is attached).
        class_names: the C class names in label order.
        embed_dim: D.
        logit_scale: the *log* of the logit scale (CLIP's convention; the multiplier is
            ``logit_scale.exp()``); a parameter, trainable when ``learn_logit_scale``.
        num_frames: T the model was built for (in-backbone heads adapt to each input's T).
        preprocessing: the evaluation preprocessing the model was trained with
            (``{"num_segments", "input_size", "resize_size", "mean", "std"}``, see
            :func:`preprocessing_from_data_config`), or None when unknown (folders saved without
            it, models built in code). Written to ``config.json`` by :meth:`save_pretrained`.
    """

    def __init__(
        self,
        visual: nn.Module,
        temporal: TemporalHead,
        classifier: nn.Module | None,
        class_names: Sequence[str],
        *,
        embed_dim: int,
        logit_scale: float,
        learn_logit_scale: bool = False,
        num_frames: int = 8,
        image_size: int | None = None,
        model_cfg: ModelConfig | None = None,
        extra_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.visual = visual
        self.temporal = temporal
        self.classifier = classifier
        self.class_names = list(class_names)
        self.embed_dim = embed_dim
        self.num_frames = num_frames
        self.image_size = image_size
        self.model_cfg = model_cfg or ModelConfig()
        self.extra_config = dict(extra_config or {})
        self.logit_scale = nn.Parameter(
            torch.tensor(math.log(logit_scale)), requires_grad=learn_logit_scale
        )
        self.classifier_metadata: dict[str, Any] = {}
        self.preprocessing: dict[str, Any] | None = None
        # CLIP's pixel normalisation for uint8 input, as buffers that move with the model, so
        # no step copies constants to the device; not saved (they are not learnt).

        scale, shift = normalization_affine()
        self.register_buffer("pixel_scale", scale, persistent=False)
        self.register_buffer("pixel_shift", shift, persistent=False)

    # ------------------------------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        model_cfg: ModelConfig,
        class_names: list[str],
        *,
        num_frames: int,
        image_size: int | None = None,
        classifier_weight: torch.Tensor | None = None,
        load_weights: bool = True,
        max_frames: int | None = None,
        quick_gelu: bool = False,
    ) -> VideoRecognizer:
        """Build the model a config describes.

        Args:
            model_cfg: the ``model`` section of the config.
            class_names: C class names in label order.
            num_frames: T, frames per clip.
            image_size: input resolution (None = the architecture's).
            classifier_weight: ``[C, D]`` to use as the frozen classifier instead of building one.
            load_weights: load ``model_cfg.pretrained`` and build the classifier (False when
                weights come afterwards, as in :meth:`from_pretrained`).
            max_frames: frame positions of the temporal transformer (default ``max(T, 32)``).
            quick_gelu: force QuickGELU activations (set automatically for OpenAI weights).

        Raises:
            Text4VisError subclasses: unknown architecture / head / initialiser, missing files.
        """

        clip = _create_backbone(model_cfg, load_weights, image_size, quick_gelu)
        embed_dim = embed_dim_of(clip)
        visual = clip.visual
        if model_cfg.grad_checkpointing and hasattr(visual, "set_grad_checkpointing"):
            visual.set_grad_checkpointing(True)
        max_frames = max_frames or _default_max_frames(num_frames)
        temporal = build_temporal_head(
            model_cfg.temporal,
            embed_dim=embed_dim,
            visual=visual,
            layers=model_cfg.temporal_layers,
            max_frames=max_frames,
            tokent1d_blocks=model_cfg.tokent1d_blocks,
        )
        scale = _initial_logit_scale(model_cfg, clip, load_weights)
        classifier, metadata = _initial_classifier(
            model_cfg, class_names, clip, embed_dim, classifier_weight, load_weights
        )
        model = cls(
            visual,
            temporal,
            classifier,
            class_names,
            embed_dim=embed_dim,
            logit_scale=scale,
            learn_logit_scale=model_cfg.learn_logit_scale,
            num_frames=num_frames,
            image_size=image_size,
            model_cfg=model_cfg,
            extra_config={"max_frames": max_frames, "quick_gelu": uses_quick_gelu(clip)},
        )
        model.classifier_metadata = metadata
        return model

    # ------------------------------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------------------------------

    def encode_frames(self, x: torch.Tensor, num_frames: int | None = None) -> torch.Tensor:
        """Embed frames: ``[B*T, 3, H, W] -> [B*T, D]``.

        Args:
            x: frames of whole videos, video-major: uint8 pixels as the text4vis transforms give
                them (normalised here, on the model's device, with CLIP's mean and std), or float
                pixels already normalised.
            num_frames: T, needed by in-backbone temporal heads (default: the model's T).
        """
        self.temporal.set_num_frames(num_frames or self.num_frames)
        if x.dtype == torch.uint8:
            # The data loaders hand over uint8 clips: a quarter of the bytes to collate, pin
            # and copy, and the float conversion runs here, on the accelerator when there is one.
            x = x.to(torch.float32).mul_(self.pixel_scale).sub_(self.pixel_shift)
        elif not x.is_floating_point():
            raise TypeError(
                f"frames must be uint8 pixels or normalised floats, got {x.dtype}; "
                "the text4vis transforms give uint8"
            )
        return self.visual(x)

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        """Embed videos: ``[B, T, 3, H, W] -> [B, D]`` (before L2 normalisation); uint8 or
        normalised float pixels, as :meth:`encode_frames` takes them."""
        if x.ndim != 5:
            raise ValueError(f"encode_video expects [B, T, 3, H, W], got {tuple(x.shape)}")
        b, t = x.shape[:2]
        frames = self.encode_frames(x.flatten(0, 1), num_frames=t)  # [B*T, D]
        return self.temporal(frames.reshape(b, t, -1))  # [B, T, D] -> [B, D]

    def classifier_weight(self) -> torch.Tensor:
        """The normalised classifier ``W [C, D]``."""
        if self.classifier is None:
            raise UsageError(
                "this model has no classifier; attach one with "
                "model.set_classifier(weight, class_names) (e.g. from "
                "text4vis.models.classifier.load_classifier(FILE) or a text classifier), or "
                "re-import with `text4vis import-official CKPT --labels FILE`"
            )
        return self.classifier()

    def logits_from_embeddings(self, video: torch.Tensor) -> torch.Tensor:
        """``[B, D] -> [B, C]`` = scale * cos(video, W)."""
        return scaled_cosine_logits(video, self.classifier_weight(), self.logit_scale.exp())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, C]`` of videos ``[B, T, 3, H, W]``."""
        return self.logits_from_embeddings(self.encode_video(x))

    # ------------------------------------------------------------------------------------------
    # Classifier and optimisation helpers
    # ------------------------------------------------------------------------------------------

    def set_classifier(
        self,
        weight: torch.Tensor,
        class_names: Sequence[str],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Replace the classifier by a frozen ``W [C, D]`` for these classes (zero-shot)."""
        if weight.ndim != 2 or weight.shape[1] != self.embed_dim:
            raise ClassifierError(
                f"classifier weight must be [C, {self.embed_dim}], got {tuple(weight.shape)}"
            )
        if weight.shape[0] != len(class_names):
            raise ClassifierError(
                f"classifier has {weight.shape[0]} rows for {len(class_names)} class names"
            )
        device = self.logit_scale.device
        self.classifier = FrozenClassifier(weight).to(device)
        self.class_names = list(class_names)
        self.classifier_metadata = dict(metadata or {"initializer": "given"})
        self.classifier_metadata["class_names"] = list(class_names)

    def param_groups_hint(self) -> dict[str, list[str]]:
        """Trainable parameter names: ``pretrained_visual`` (the CLIP image encoder, whose
        learning rate the engine scales by ``train.visual_lr_ratio``) and ``new`` (the rest)."""
        groups: dict[str, list[str]] = {"pretrained_visual": [], "new": []}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            key = "pretrained_visual" if name.startswith("visual.") else "new"
            groups[key].append(name)
        return groups

    def no_weight_decay_names(self) -> set[str]:
        """Parameters without weight decay: biases, norms, embeddings, logit scale, 1-d tensors."""
        names: set[str] = set()
        norm_types = (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm, nn.BatchNorm1d)
        for module_name, module in self.named_modules():
            for param_name, param in module.named_parameters(recurse=False):
                full = f"{module_name}.{param_name}" if module_name else param_name
                if (
                    param.ndim <= 1
                    or isinstance(module, (*norm_types, nn.Embedding))
                    or "embedding" in param_name
                    or param_name in ("logit_scale", "context")
                    or param_name.endswith("bias")
                ):
                    names.add(full)
        return names

    # ------------------------------------------------------------------------------------------
    # Saving and loading
    # ------------------------------------------------------------------------------------------

    def _config_dict(self) -> dict[str, Any]:
        config = {
            "format_version": MODEL_FOLDER_FORMAT_VERSION,
            "model": dataclasses.asdict(self.model_cfg),
            "class_names": self.class_names,
            "num_frames": self.num_frames,
            "image_size": self.image_size,
            "embed_dim": self.embed_dim,
            "classifier_kind": storage_of(self.classifier),
            **self.extra_config,
        }
        if self.preprocessing is not None:
            config["preprocessing"] = dict(self.preprocessing)
        return config

    def _input_size(self) -> int | None:
        """The square input resolution the image encoder takes (None if it cannot tell)."""
        size = self.image_size or getattr(self.visual, "image_size", None)
        if isinstance(size, (tuple, list)):
            size = size[0] if len(set(size)) == 1 else None
        return int(size) if size else None

    def save_pretrained(self, directory: str | Path, data_config: DataConfig | None = None) -> Path:
        """Write ``config.json``, ``model.safetensors`` and (for a fixed matrix)
        ``classifier.safetensors`` into ``directory``.

        Args:
            directory: the folder (created if needed).
            data_config: the ``data`` section the model was trained with. When given, its
                evaluation preprocessing (:func:`preprocessing_from_data_config`) is stored in
                ``config.json`` under ``"preprocessing"`` and set as :attr:`preprocessing`, so
                that :meth:`from_pretrained` users read videos as training did. When None, the
                model's current :attr:`preprocessing` (e.g. from the folder it was loaded from)
                is written, if any.

        Raises:
            ValueError: ``data_config.input_size`` differs from the resolution the image encoder
                was built for.
        """
        if data_config is not None:
            block = preprocessing_from_data_config(data_config)
            size = self._input_size()
            if size is not None and block["input_size"] != size:
                raise ConfigError(
                    f"data_config.input_size={block['input_size']} but the image encoder was "
                    f"built for {size}x{size}; pass the data config the model was trained with "
                    "(data.input_size)"
                )
            if block["num_segments"] != self.num_frames:
                log.warning(
                    "saving preprocessing with data.num_segments=%d for a model built for %d "
                    "frames; from_pretrained users will sample %d",
                    block["num_segments"],
                    self.num_frames,
                    block["num_segments"],
                )
            self.preprocessing = block

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        kind = storage_of(self.classifier)
        separate = kind in STORAGES and STORAGES[kind].separate_file
        state = {
            k: v.detach().cpu().contiguous()
            for k, v in self.state_dict().items()
            if not (separate and k.startswith("classifier."))
        }
        save_file(_unshare(state), str(directory / WEIGHTS_NAME), metadata={"format": "text4vis"})
        if separate:
            meta = dict(self.classifier_metadata)
            meta["class_names"] = self.class_names
            artifact = ClassifierArtifact(
                weight=self.classifier.weight.detach().cpu(), metadata=meta
            )
            save_classifier(artifact, directory / CLASSIFIER_NAME)
        config = self._config_dict()
        # Checksums of the tensor files: from_pretrained names a file edited after saving.
        config["files"] = record_files(directory, (WEIGHTS_NAME, CLASSIFIER_NAME))
        (directory / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> VideoRecognizer:
        """Rebuild a model saved by :meth:`save_pretrained` (no network, no pretrained tag).

        The returned model's :attr:`preprocessing` is the saved block (None for folders written
        without one, e.g. before it existed).

        The architecture configs the folder brings (``model_configs/*.json``, written by
        ``import-official --model-config``) are registered with open_clip first. This is the
        folder branch of :func:`text4vis.models.factory.load_model`, so every loader sees them.

        Raises:
            MissingFileError: the folder or one of its files is missing.
            Text4VisError: the files do not fit together.
        """
        directory = Path(directory)
        config_path = directory / CONFIG_NAME
        if not config_path.is_file():
            raise MissingFileError(
                f"{config_path} not found: expected a folder written by save_pretrained or "
                "`text4vis import-official`"
            )
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
            raise CheckpointError(
                f"{config_path}: not a readable JSON file ({exc}); copy the model folder again "
                "or re-export the model"
            ) from None
        if (directory / MODEL_CONFIGS_DIR).is_dir():
            register_model_configs(directory / MODEL_CONFIGS_DIR)
        check_files(directory, config.get("files"))
        try:
            weights = load_file(str(directory / WEIGHTS_NAME))
        except Exception as exc:  # not a safetensors file, or cut short
            raise CheckpointError(
                f"{directory / WEIGHTS_NAME} cannot be read ({type(exc).__name__}: {exc})"
            ) from exc
        model = cls.from_architecture(
            config,
            weights,
            where=str(directory / WEIGHTS_NAME),
            config_where=str(config_path),
            classifier_file=directory / CLASSIFIER_NAME,
        )
        model._adopt_trained_text_side(directory)
        return model

    def _adopt_trained_text_side(self, directory: Path) -> None:
        """Point the model config at a text side trained with the model and saved in its
        folder, so that new class names (``zeroshot``, ``predict --labels``) are encoded by the
        tower that made its classifier, not by the one training started from."""
        cfg = self.model_cfg
        clip = cfg.text_encoder == "clip"
        trained = directory / (TEXT_TOWER_FILE if clip else TEXT_ENCODER_DIR)
        if not (trained.is_file() if clip else trained.is_dir()):
            return
        cfg.text_pretrained = str(trained)  # a location: the model's identity leaves it out
        log.info("%s: new class names are encoded by the trained text side it holds", directory)

    def architecture(self) -> dict[str, Any]:
        """What rebuilds this model without any pretrained weights: the dict ``config.json``
        holds (model config, class names, frames, image size, ``max_frames``, ``quick_gelu``,
        classifier kind, preprocessing when known). Training checkpoints store it too."""
        return self._config_dict()

    @classmethod
    def from_architecture(
        cls,
        config: dict[str, Any],
        weights: dict[str, torch.Tensor],
        *,
        where: str,
        config_where: str | None = None,
        classifier_file: str | Path | None = None,
    ) -> VideoRecognizer:
        """Rebuild a model from :meth:`architecture` and its tensors (no pretrained weights read).

        Args:
            config: the dict :meth:`architecture` returned (``config.json``).
            weights: the model's state dict.
            where: the file the weights came from (named in errors).
            config_where: the file the config came from (default ``where``).
            classifier_file: for a fixed-matrix classifier (kind ``frozen`` / ``templates``),
                the classifier artifact to attach; None takes the ``classifier.*`` tensors of
                ``weights`` (a training checkpoint holds them).

        Raises:
            Text4VisError: the tensors do not fit the config.
        """
        config_where = config_where or where
        preprocessing = config.get("preprocessing")
        if preprocessing is not None:
            preprocessing = _check_preprocessing(preprocessing, config_where)
        model_cfg = config_from_dict({"model": config["model"]}).model
        kind = config.get("classifier_kind", "frozen")
        class_names = list(config.get("class_names", []))
        # Rebuild the architecture without pretrained weights; the saved tensors replace them.
        model = cls.from_config(
            model_cfg,
            class_names,
            num_frames=int(config["num_frames"]),
            image_size=config.get("image_size"),
            load_weights=False,
            max_frames=config.get("max_frames"),
            quick_gelu=bool(config.get("quick_gelu", False)),
        )
        model.model_cfg = model_cfg
        state = dict(weights)
        head = {k[len("classifier.") :]: v for k, v in state.items() if k.startswith("classifier.")}
        # A folder keeps a fixed-matrix classifier in its own file; everything else (and every
        # classifier of a training checkpoint) is rebuilt from the registry's storage.
        from_file = (
            classifier_file is not None and kind in STORAGES and STORAGES[kind].separate_file
        )
        if kind != "none" and not from_file:
            model.classifier = rebuild_classifier_module(
                kind, model_cfg, class_names, model.embed_dim, head, where
            )
        if from_file:
            state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        # A folder keeps its classifier apart, and a model without one has none to load.
        without_classifier = classifier_file is not None or kind == "none"
        _load_saved_tensors(model, state, where, without_classifier=without_classifier)
        if from_file:
            assert classifier_file is not None
            artifact = load_classifier(classifier_file)
            artifact.check(class_names, model.embed_dim)
            model.set_classifier(artifact.weight, class_names, artifact.metadata)
        elif kind == "none":
            model.classifier = None
        model.preprocessing = preprocessing
        return model


def _create_backbone(
    model_cfg: ModelConfig, load_weights: bool, image_size: int | None, quick_gelu: bool
) -> nn.Module:
    """The open_clip model of ``model_cfg.arch``, with its pretrained weights when
    ``load_weights`` (else random: the caller loads saved tensors next)."""

    # Without load_weights the caller loads saved tensors next: open_clip's "initialized
    # randomly" warning would be false, so it is silenced (and only then).
    quiet = contextlib.nullcontext() if load_weights else weights_loaded_afterwards()
    with quiet:
        return create_clip(
            model_cfg.arch,
            model_cfg.pretrained if load_weights else "",
            image_size=image_size,
            quick_gelu=quick_gelu,
        )


def _initial_logit_scale(model_cfg: ModelConfig, clip: nn.Module, load_weights: bool) -> float:
    """The configured logit scale, else the pretrained CLIP's, else 100."""
    if model_cfg.logit_scale > 0:
        return model_cfg.logit_scale
    if model_cfg.pretrained and load_weights:
        return float(clip.logit_scale.detach().exp())
    return 100.0  # a random CLIP's 1/0.07 trains slowly with a frozen classifier


def _initial_classifier(
    model_cfg: ModelConfig,
    class_names: Sequence[str],
    clip: nn.Module,
    embed_dim: int,
    classifier_weight: torch.Tensor | None,
    load_weights: bool,
) -> tuple[nn.Module | None, dict[str, Any]]:
    """The classifier of a new model and its metadata: a given matrix, frozen; none when the
    saved one is attached afterwards (not ``load_weights``); else the one the config asks for."""
    if classifier_weight is not None:
        given = {"initializer": "given", "class_names": list(class_names)}
        return FrozenClassifier(classifier_weight), given
    if not load_weights:
        return None, {}  # from_pretrained attaches the saved one
    return build_classifier_module(ClassifierRequest(model_cfg, list(class_names), clip, embed_dim))


def _load_saved_tensors(
    model: nn.Module, state: dict[str, torch.Tensor], where: str, *, without_classifier: bool
) -> None:
    """Load a saved state dict into a model rebuilt from its config, every tensor accounted for
    (the ``classifier.*`` ones may be missing ``without_classifier``).

    Raises:
        CheckpointError: tensors of other shapes than the config builds, or missing or unexpected
            ones; the message names ``where`` (the weights file).
    """
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # tensors of other shapes than the config builds
        first = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), "")
        raise CheckpointError(f"{where}: tensors do not fit the saved config ({first})") from exc
    if without_classifier:
        missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise CheckpointError(
            f"{where}: tensors do not fit the saved config "
            f"(missing {missing[:4]}, unexpected {unexpected[:4]})"
        )


def _unshare(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors sharing storage; give each its own."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.untyped_storage().data_ptr()
        out[k] = v.clone() if ptr in seen else v
        seen.add(ptr)
    return out

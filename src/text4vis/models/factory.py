"""Building and loading video models: the one place that turns a config or a path into a model.

- :func:`build_model` builds the model a config describes (seeded, with its pretrained weights).
- :func:`load_model` loads every kind of saved model: a folder written by
  :meth:`~text4vis.models.video.VideoRecognizer.save_pretrained` (a training run's ``model/``
  or ``text4vis import-official --out``), a training checkpoint (``.pt`` written by ``train``)
  or a checkpoint released with the paper's code (imported on the fly). Evaluation, features,
  zero-shot, :class:`~text4vis.predict.Predictor`, ``train.init_from``, the demo and the
  benchmarks all load through it. :func:`load_saved_model` also returns the training config the
  path records.

A training checkpoint is one ``torch.save`` file of tensors and plain values (it loads with
``weights_only=True``); :data:`CHECKPOINT_FORMAT_VERSION` is its format and
:mod:`text4vis.engine.checkpoint` writes it. Its ``architecture`` entry (the dict a model
folder's ``config.json`` holds) rebuilds the model without reading any pretrained weights.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from text4vis.config import Config, ModelConfig, config_from_dict, load_config
from text4vis.errors import CheckpointError, MissingFileError, load_failure_reason
from text4vis.models.official import official_model
from text4vis.models.video import CONFIG_NAME, VideoRecognizer

if TYPE_CHECKING:
    from torch import nn


__all__ = [
    "CHECKPOINT_FORMAT_VERSION",
    "TRAIN_CONFIG_NAME",
    "CheckpointError",
    "SavedModel",
    "build_feature_model",
    "build_model",
    "load_checkpoint",
    "load_initial_weights",
    "load_model",
    "load_saved_model",
    "model_from_checkpoint",
]

logger = logging.getLogger("text4vis.models.factory")

CHECKPOINT_FORMAT_VERSION = 1  # format of the training checkpoints `train` writes
TRAIN_CONFIG_NAME = "train_config.yaml"  # the whole training config, beside an exported model


# ----------------------------------------------------------------------------------------------
# Building
# ----------------------------------------------------------------------------------------------


def build_model(cfg: Config, class_names: list[str]) -> VideoRecognizer:
    """The video recognizer of ``cfg.model`` for ``class_names`` (seeded initialisation).

    New parameters (temporal head, random backbones) are initialised by torch's global generator,
    which is seeded with ``train.seed`` here so that every rank and every run builds the same model.
    ``model.grad_checkpointing`` is applied by the model's constructor.
    """
    torch.manual_seed(cfg.train.seed)
    return VideoRecognizer.from_config(
        cfg.model, class_names, num_frames=cfg.data.num_segments, image_size=cfg.data.input_size
    )


def build_feature_model(cfg: Config, class_names: list[str] | None) -> VideoRecognizer:
    """The untrained video model of ``cfg.model`` (its ``model.pretrained`` CLIP weights).

    Used for features of the pre-trained encoder, e.g. the paper's LDA classifier, which is fit
    on embeddings of the CLIP visual encoder before any fine-tuning. Only ``encode_video`` is
    used, so the classifier is a seeded random placeholder (no text encoder or LDA file needed).
    """
    names = list(class_names) if class_names else ["class"]
    model_cfg = dataclasses.replace(cfg.model, classifier="random", classifier_file="")
    return build_model(dataclasses.replace(cfg, model=model_cfg), names)


# ----------------------------------------------------------------------------------------------
# Training checkpoints
# ----------------------------------------------------------------------------------------------


def _check_checkpoint(state: Any, path: Path) -> dict[str, Any]:
    if not isinstance(state, dict) or not state.get("complete") or "model" not in state:
        raise CheckpointError(
            f"checkpoint {path} is not a complete text4vis training checkpoint "
            "(no 'complete' flag or no 'model' weights)"
        )
    if state.get("format") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format {state.get('format')!r}; this version reads "
            f"{CHECKPOINT_FORMAT_VERSION} (use the model folder the run exported, <run>/model, "
            "or train again)"
        )
    return state


def _torch_load(path: Path, map_location: str | torch.device = "cpu") -> Any:
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: name it, keep the cause
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({load_failure_reason(exc)}); it may be "
            "truncated or not a text4vis checkpoint"
        ) from exc


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training checkpoint with ``weights_only=True`` and check it is complete.

    Raises:
        CheckpointError: the file is missing, unreadable or not a complete text4vis checkpoint
            of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; give a file written by `train`")
    return _check_checkpoint(_torch_load(path, map_location), path)


def model_from_checkpoint(state: dict[str, Any], path: str | Path) -> VideoRecognizer:
    """Rebuild the model of a loaded training checkpoint from its own tensors.

    The architecture stored in the checkpoint is built without pretrained weights (no file read,
    no download) and the checkpoint's weights loaded.

    Args:
        state: what :func:`load_checkpoint` returned.
        path: the checkpoint file (named in errors).

    Raises:
        CheckpointError: no stored architecture.
        Text4VisError: the weights do not fit the architecture.
    """
    architecture = state.get("architecture")
    if architecture is None:
        raise CheckpointError(
            f"{path}: the checkpoint stores no architecture to rebuild (written by an unreleased "
            "version); use the model folder the run exported (<run>/model), or train again"
        )
    weights = {
        (k[len("module.") :] if k.startswith("module.") else k): v
        for k, v in state["model"].items()
    }
    model = VideoRecognizer.from_architecture(architecture, weights, where=str(path))
    model.classifier_metadata = dict(state.get("classifier_metadata") or {})
    model.classifier_metadata.setdefault("initializer", architecture["model"].get("classifier"))
    model.classifier_metadata["class_names"] = list(model.class_names)
    return model


# ----------------------------------------------------------------------------------------------
# Loading any saved model
# ----------------------------------------------------------------------------------------------


@dataclass
class SavedModel:
    """A loaded model and what its path records about training.

    Attributes:
        model: the video recognizer (on the CPU, in training mode as built).
        config: the training config (a checkpoint's, a folder's ``train_config.yaml`` with the
            model section of ``config.json``), or a config holding only the model section when
            nothing more is recorded (folders saved in code, imported official checkpoints).
        image_size: the input resolution the backbone was built for (None = the architecture's).
        kind: ``folder``, ``checkpoint`` or ``official``.
    """

    model: VideoRecognizer
    config: Config
    image_size: int | None
    kind: str


def _folder_config(path: Path, model_section: ModelConfig) -> tuple[Config, int | None]:
    """The config of a model folder: ``train_config.yaml`` (when written) with
    ``model_section``, and the image size ``config.json`` records."""
    try:
        saved = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
        raise CheckpointError(
            f"{path / CONFIG_NAME}: not a readable JSON file ({exc}); copy the model folder "
            "again or re-export the model"
        ) from None
    if (path / TRAIN_CONFIG_NAME).is_file():  # exported by `train`: the whole config
        cfg = dataclasses.replace(load_config(path / TRAIN_CONFIG_NAME), model=model_section)
    else:
        cfg = Config(model=model_section)
    return cfg, saved.get("image_size")


def load_saved_model(path: str | Path) -> SavedModel:
    """Load a model folder, a training checkpoint or an official checkpoint (see the module
    docstring). No pretrained weights named in the config are read: every weight is in the path.

    Raises:
        MissingFileError: nothing at ``path``.
        CheckpointError: a file that is neither a complete training checkpoint nor readable.
        Text4VisError: the tensors do not fit the recorded architecture.
    """
    path = Path(path)
    if path.is_dir():
        model = VideoRecognizer.from_pretrained(path)
        # The model section as loaded: it points at a text side trained with the model and
        # saved in the folder (VideoRecognizer.from_pretrained), which zero-shot must use.
        cfg, image_size = _folder_config(path, dataclasses.replace(model.model_cfg))
        return SavedModel(model, cfg, image_size, "folder")
    if not path.is_file():
        raise MissingFileError(
            f"checkpoint or model {path} does not exist; give a model folder written by "
            "save_pretrained "
            "(<run>/model, `text4vis import-official --out DIR`), a training checkpoint .pt or "
            "an official checkpoint"
        )
    state = _torch_load(path)
    if isinstance(state, dict) and "complete" in state:
        state = _check_checkpoint(state, path)
        if "config" not in state:
            raise CheckpointError(
                f"{path}: the checkpoint holds no config, so its model cannot be rebuilt"
            )
        cfg = config_from_dict(state["config"])
        return SavedModel(
            model_from_checkpoint(state, path), cfg, cfg.data.input_size, "checkpoint"
        )

    model = official_model(path)
    return SavedModel(model, Config(model=model.model_cfg), model.image_size, "official")


def load_model(path: str | Path, device: torch.device | str = "cpu") -> VideoRecognizer:
    """The model saved at ``path`` (any kind, see :func:`load_saved_model`) on ``device``, in
    evaluation mode."""
    return load_saved_model(path).model.to(device).eval()


def load_initial_weights(model: nn.Module, source: str | Path) -> None:
    """Fine-tuning: copy a saved model's weights, except its classifier, into ``model``.

    Args:
        model: the freshly built model (its classifier is for the new classes).
        source: anything :func:`load_model` reads.

    Raises:
        MissingFileError: nothing at ``source``.
        ValueError: the weights do not fit the model (another architecture or temporal head).
    """
    if not Path(source).exists():
        raise MissingFileError(
            f"train.init_from={source} does not exist; give a checkpoint .pt or a model folder"
        )
    saved = load_saved_model(source).model.state_dict()
    state = {k: v for k, v in saved.items() if not k.startswith("classifier.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # same names, other shapes
        raise CheckpointError(
            f"train.init_from={source}: its weights do not fit model.arch/temporal of this "
            f"config ({exc})"
        ) from exc
    missing = [k for k in missing if not k.startswith("classifier.")]
    if missing or unexpected:
        raise CheckpointError(
            f"train.init_from={source}: its weights do not fit model.arch/temporal of this config "
            f"(missing {missing[:4]}, unexpected {unexpected[:4]})"
        )
    logger.info("initialised from %s (%d tensors; classifier kept)", source, len(state))

"""`text4vis classifier CONFIG --init ... --out FILE`: build and save a classifier artifact."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from text4vis.commands._common import add_config_arguments
from text4vis.errors import ConfigError, DataError, MissingFileError, UsageError

if TYPE_CHECKING:
    import torch

COMMAND = "classifier"
HELP = "build a classifier artifact (text | lda | random | orthogonal | file) and save it"
DESCRIPTION = (
    "Build the classifier matrix W [C, D] for the classes of data.labels and save it as a "
    "safetensors artifact with metadata. `lda` needs visual features: a safetensors file with "
    "tensors `features [N, D]` and `labels [N]` (as `text4vis features` writes)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--init",
        choices=["text", "lda", "random", "orthogonal", "file"],
        default=None,
        help="initialiser (default: model.classifier of the config)",
    )
    parser.add_argument("--out", required=True, help="output artifact (.safetensors)")
    parser.add_argument(
        "--features", default=None, help="lda: safetensors file with features [N, D], labels [N]"
    )
    parser.add_argument(
        "--labels", default=None, help="label CSV `id,name` (default: data.labels of the config)"
    )
    parser.add_argument(
        "--from", dest="source", default=None, help="file: an existing artifact to check and copy"
    )


def run(args: argparse.Namespace) -> int:
    import logging

    from text4vis.commands._common import config_from_args
    from text4vis.data import read_labels
    from text4vis.models.classifier import build_classifier, save_classifier
    from text4vis.models.text import TextEncoderError

    cfg = config_from_args(args)
    init = args.init or cfg.model.classifier
    labels_file = args.labels or cfg.data.labels
    if not labels_file:
        raise ConfigError("no class names: set data.labels in the config or pass --labels FILE")
    class_names = read_labels(labels_file)
    embed_dim = _embed_dim(cfg.model.arch)
    features = labels = encoder = None
    if init == "lda":
        if not args.features:
            raise UsageError(
                "--init lda needs --features FILE (safetensors with features [N, D] and "
                "labels [N]; `text4vis features CONFIG --checkpoint CKPT --out FILE` writes it)"
            )
        features, labels = _read_features(args.features)
    elif init == "text":
        from text4vis.models.text import build_text_encoder

        if cfg.model.prompt == "coop":
            raise TextEncoderError(
                "prompt 'coop' is learned during training; a fixed artifact needs model.prompt="
                "classname|template|templates"
            )
        encoder = build_text_encoder(cfg.model, embed_dim=embed_dim)
    artifact = build_classifier(
        init,
        class_names=class_names,
        embed_dim=embed_dim,
        text_encoder=encoder,
        features=features,
        labels=labels,
        seed=cfg.model.classifier_seed,
        path=args.source or cfg.model.classifier_file,
        prompt=cfg.model.prompt,
        template=cfg.model.template,
        templates=cfg.model.template_set,
    )
    path = save_classifier(artifact, args.out)
    logging.getLogger("text4vis.commands.classifier").info(
        "wrote %s classifier %s for %d classes to %s",
        init,
        tuple(artifact.weight.shape),
        len(class_names),
        path,
    )
    print(path)
    return 0


def _embed_dim(arch: str) -> int:
    import open_clip

    from text4vis.models.backbones import BackboneError, register_model_configs

    register_model_configs()
    cfg = open_clip.get_model_config(arch.replace("/", "-"))
    if not cfg or "embed_dim" not in cfg:
        raise BackboneError(f"unknown architecture {arch!r} (model.arch)")
    return int(cfg["embed_dim"])


def _read_features(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    from pathlib import Path

    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise MissingFileError(f"features file {path} does not exist")
    try:
        tensors = load_file(path)
    except Exception as exc:  # safetensors raises its own error types for a damaged file
        raise DataError(f"{path}: not a readable safetensors file ({exc})") from None
    if "features" not in tensors or "labels" not in tensors:
        raise DataError(
            f"{path}: expected tensors 'features' [N, D] and 'labels' [N], found {sorted(tensors)}"
        )
    return tensors["features"].float(), tensors["labels"].long()

"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import Any

from text4vis.config import Config, load_config

__all__ = [
    "SAVED_MODEL_HELP",
    "add_config_arguments",
    "add_model_arguments",
    "add_precision_argument",
    "add_saved_model_argument",
    "check_export_flags",
    "config_from_args",
    "open_export",
    "write_csv",
]

# What Predictor.from_pretrained (models.factory.load_saved_model) opens.
SAVED_MODEL_HELP = (
    "model folder written by save_pretrained, a training checkpoint (.pt) or an official checkpoint"
)


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Add the ``CONFIG`` positional and repeatable ``--set section.key=value`` overrides."""
    parser.add_argument(
        "config",
        metavar="CONFIG",
        nargs=None if required else "?",
        help="YAML config file (see configs/); defaults are used for keys it does not set",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set train.lr=1e-4 (repeatable; YAML values)",
    )


def add_model_arguments(
    parser: argparse.ArgumentParser,
    *,
    checkpoint_required: bool = True,
    checkpoint_help: str | None = None,
    views_help: str = "test views",
) -> None:
    """Add ``CONFIG``, ``--set``, ``--checkpoint CKPT`` (anything
    :func:`text4vis.models.factory.load_model` reads), ``--views CLIPSxCROPS`` (default: the
    config's ``eval.views``) and ``--precision`` (default: the config's ``train.precision``): the
    arguments of the commands that run a saved model on a list."""
    add_config_arguments(parser)
    parser.add_argument(
        "--checkpoint",
        required=checkpoint_required,
        default=None,
        metavar="CKPT",
        help=checkpoint_help
        or "training checkpoint (.pt), model folder written by save_pretrained, or an official "
        "checkpoint",
    )
    parser.add_argument(
        "--views",
        default=None,
        metavar="CLIPSxCROPS",
        help=f"{views_help}, e.g. 1x1 or 4x3 (default: eval.views)",
    )
    add_precision_argument(parser, default=None)


def add_saved_model_argument(
    parser: argparse.ArgumentParser, *, required: bool = True, help_text: str = SAVED_MODEL_HELP
) -> None:
    """Add ``--model MODEL``: a saved model for :meth:`text4vis.predict.Predictor.from_pretrained`
    (the commands that embed videos without a config: ``index``, ``search``, ``app``)."""
    parser.add_argument("--model", required=required, default=None, metavar="MODEL", help=help_text)


def config_from_args(args: argparse.Namespace) -> Config:
    """Resolve defaults <- CONFIG <- --set into a validated config."""
    return load_config(getattr(args, "config", None), args.overrides)


def add_precision_argument(parser: argparse.ArgumentParser, default: str | None) -> None:
    """Add ``--precision``: ``auto`` or a name of :data:`text4vis.runtime.INFERENCE_PRECISIONS`
    (``default`` None: the config's ``train.precision``)."""
    from text4vis.runtime import INFERENCE_PRECISIONS, precision_help

    parser.add_argument(
        "--precision",
        choices=["auto", *INFERENCE_PRECISIONS],
        default=default,
        help=precision_help(default or "train.precision of the config"),
    )


def write_csv(target: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV file (``-`` = standard output), creating the file's folder."""
    import csv
    import sys
    from pathlib import Path

    if target == "-":
        writer = csv.writer(sys.stdout)
        writer.writerow(header)
        writer.writerows(rows)
        return
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)


def check_export_flags(model: str, args: argparse.Namespace) -> None:
    """Refuse the flags of ``index`` / ``search`` that an export folder (``--model``) cannot
    honour, with one line naming the flag.

    Raises:
        UsageError: --segments / --stride, torchrun, a GPU --device, or a --precision other
            than auto, fp32 or int8.
    """
    import os

    from text4vis.errors import UsageError

    refused = []
    for flag in ("segments", "stride"):
        if getattr(args, flag, None) is not None:
            refused.append(
                f"--{flag}: a segment index needs the PyTorch model (an export embeds whole "
                "videos); give --model the model folder or checkpoint it was exported from"
            )
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        refused.append(
            "torchrun: an export indexes in one process; run `text4vis index` without "
            "torchrun, or give the PyTorch model"
        )
    if args.device not in ("auto", "cpu"):
        refused.append(f"--device {args.device}: an export runs on the CPU (ONNX Runtime)")
    if args.precision not in ("auto", "fp32", "int8"):
        refused.append(
            f"--precision {args.precision}: an export has an fp32 graph and, exported with "
            "--int8, an int8 one"
        )
    if refused:
        raise UsageError(f"--model {model} is an export folder; {refused[0]}")


def open_export(model: str, args: argparse.Namespace, views: str) -> Any:
    """The :class:`~text4vis.onnx_runtime.OnnxPredictor` of the export folder ``model`` for the
    ``index`` and ``search`` commands (``--precision int8``: its int8 graph).

    Raises:
        UsageError: flags an export cannot honour (:func:`check_export_flags`), or bad views.
    """
    from text4vis.errors import UsageError
    from text4vis.onnx_runtime import OnnxPredictor, parse_views

    check_export_flags(model, args)
    try:
        parse_views(views)
    except ValueError as exc:
        raise UsageError(f"--views {views}: {exc} (an export reads 1 or 3 crops)") from None
    batch_size = getattr(args, "batch_size", 8)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    return OnnxPredictor.from_export(
        model,
        precision="fp32" if args.precision == "auto" else args.precision,
        views=views,
        batch_size=batch_size,
        num_workers=max(0, getattr(args, "workers", 0)),
    )

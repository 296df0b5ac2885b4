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
    "config_from_args",
    "log_to_console",
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


def log_to_console() -> None:
    """INFO records of ``text4vis`` on stderr, as :func:`text4vis.runs.setup_logging` writes
    them on a single process (which imports torch, so the paths of an export call this)."""
    import logging
    import sys

    logger = logging.getLogger("text4vis")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_text4vis", False):
            logger.removeHandler(handler)
            handler.close()
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(
        logging.Formatter(
            "%(asctime)s [rank0] %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
        )
    )
    console._text4vis = True  # type: ignore[attr-defined]
    logger.addHandler(console)

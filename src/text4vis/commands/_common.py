"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse

from text4vis.config import Config, load_config

__all__ = ["add_config_arguments", "add_model_arguments", "config_from_args"]


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
    :func:`text4vis.models.factory.load_model` reads) and ``--views CLIPSxCROPS`` (default: the
    config's ``eval.views``): the arguments of the commands that run a saved model on a list."""
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


def config_from_args(args: argparse.Namespace) -> Config:
    """Resolve defaults <- CONFIG <- --set into a validated config."""
    return load_config(getattr(args, "config", None), args.overrides)

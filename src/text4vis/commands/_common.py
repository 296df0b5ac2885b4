"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse

from text4vis.config import Config, load_config

__all__ = ["add_config_arguments", "add_precision_argument", "config_from_args"]


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


def config_from_args(args: argparse.Namespace) -> Config:
    """Resolve defaults <- CONFIG <- --set into a validated config."""
    return load_config(getattr(args, "config", None), args.overrides)


def add_precision_argument(parser: argparse.ArgumentParser, default: str | None) -> None:
    """Add ``--precision`` (names from :data:`text4vis.precision.INFERENCE_PRECISIONS`)."""
    from text4vis.precision import INFERENCE_PRECISIONS, precision_help

    parser.add_argument(
        "--precision",
        choices=["auto", *INFERENCE_PRECISIONS],
        default=default,
        help=precision_help(default or "train.precision of the config"),
    )

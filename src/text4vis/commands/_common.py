"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import Any

from text4vis.config import Config, load_config

__all__ = ["add_config_arguments", "config_from_args", "write_csv"]


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

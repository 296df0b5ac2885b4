"""`text4vis config CONFIG [--set k=v]`: print the resolved configuration (and validate it)."""

from __future__ import annotations

import argparse

from text4vis.commands._common import add_config_arguments

COMMAND = "config"
HELP = "validate a config and print it resolved (defaults <- YAML <- --set)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, required=False)


def run(args: argparse.Namespace) -> int:
    from text4vis.commands._common import config_from_args
    from text4vis.config import dump_config

    print(dump_config(config_from_args(args)), end="")
    return 0

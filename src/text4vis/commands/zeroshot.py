"""`text4vis zeroshot CONFIG --checkpoint CKPT --protocol full|half|splits`: new classes."""

from __future__ import annotations

import argparse
import json

from text4vis.commands._common import add_model_arguments
from text4vis.config import PROTOCOLS

COMMAND = "zeroshot"
HELP = "zero-shot recognition of new classes: full, half-class x10 splits, or subset files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, views_help="test views when features are extracted here")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default=None,
        help="full: all classes; half: eval.num_splits seeded half-class splits (mean +- std); "
        "splits: one subset per --split-file (default: eval.protocol)",
    )
    parser.add_argument(
        "--features",
        default=None,
        metavar="FILE",
        help="cached features of the test list (from `text4vis features`) instead of decoding",
    )
    parser.add_argument(
        "--split-file",
        dest="split_files",
        action="append",
        default=None,
        metavar="LABELS",
        help="label CSV of one class subset (repeat; e.g. Kinetics-600's three splits)",
    )


def run(args: argparse.Namespace) -> int:
    from text4vis.commands._common import config_from_args
    from text4vis.distributed import is_main_process, process_group
    from text4vis.engine.zero_shot import zero_shot
    from text4vis.runs import create_run_dir

    cfg = config_from_args(args)
    with process_group(cfg.run.device):
        run_dir = create_run_dir(cfg)
        result = zero_shot(
            cfg,
            args.checkpoint,
            protocol=args.protocol,
            features=args.features,
            split_files=args.split_files,
            views=args.views,
        )
        if not is_main_process():
            return 0
    report = {"checkpoint": args.checkpoint, **result.to_dict(), "run_dir": str(run_dir.path)}
    run_dir.file("zeroshot.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0

"""`text4vis train CONFIG [--set k=v] [--resume auto|PATH]`: train a video recognizer.

Runs in one process, or under ``torchrun --nproc_per_node N -m text4vis train ...`` as DDP.

Exit status: 0 trained (model exported), 2 an input error (one line naming the file or key),
75 preempted by SIGTERM / SIGUSR1 (``last.pt`` written; continue with ``--resume auto``), 1 a bug
(its traceback, and how to report it).
"""

from __future__ import annotations

import argparse
import json

from text4vis.commands._common import add_config_arguments

COMMAND = "train"
HELP = "train a video recognizer (one process or torchrun DDP); checkpoints resume exactly"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--resume",
        metavar="auto|PATH",
        default=None,
        help="'auto': continue the newest complete checkpoint of run.name (fresh start when "
        "none); or a checkpoint file / run folder",
    )
    parser.add_argument(
        "--run-dir",
        default=None,
        metavar="DIR",
        help="write into this run folder instead of <run.root>/<run.name>/<timestamp>",
    )


def run(args: argparse.Namespace) -> int:
    from text4vis.commands._common import config_from_args
    from text4vis.distributed import is_main_process
    from text4vis.engine.preemption import PREEMPTED_EXIT_STATUS
    from text4vis.engine.train import fit

    cfg = config_from_args(args)
    summary = fit(cfg, resume=args.resume, run_dir=args.run_dir)
    if is_main_process():
        result = {
            "run_dir": summary.run_dir,
            "model_dir": summary.model_dir,
            "stopped": summary.stopped,
            "preempted": summary.preempted,
            "epoch": summary.epoch,
            "step": summary.step,
            "best_top1": summary.best_top1,
            "final": {k: v for k, v in summary.final.items() if isinstance(v, (int, float))},
        }
        print(json.dumps(result, indent=2))
    return PREEMPTED_EXIT_STATUS if summary.preempted else 0

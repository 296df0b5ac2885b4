"""`text4vis eval CONFIG --checkpoint CKPT [--views 4x3]`: accuracy of a trained model."""

from __future__ import annotations

import argparse
import json

from text4vis.commands._common import add_model_arguments
from text4vis.config import AGGREGATIONS

COMMAND = "eval"
HELP = "evaluate a trained model: top-1/top-5, mean class accuracy (mAP), multi-view"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, views_help="test views per video")
    parser.add_argument(
        "--aggregate",
        choices=AGGREGATIONS,
        default=None,
        help="average views as softmax probabilities (default) or logits",
    )


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from text4vis.commands._common import config_from_args
    from text4vis.distributed import is_main_process, process_group
    from text4vis.engine.evaluate import evaluate_checkpoint
    from text4vis.engine.tracking import plot_confusion_matrix, write_per_class_csv
    from text4vis.runs import create_run_dir

    cfg = config_from_args(args)
    if args.aggregate:
        cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, aggregate=args.aggregate))
    with process_group(cfg.run.device):
        run = create_run_dir(cfg)
        result, class_names = evaluate_checkpoint(cfg, args.checkpoint, views=args.views)
        if not is_main_process():
            return 0
    counts = result.confusion.sum(dim=1).tolist()
    write_per_class_csv(run.file("per_class.csv"), class_names, result.per_class.tolist(), counts)
    plot_confusion_matrix(result.confusion, class_names, run.file("confusion.png"))
    report = {
        "checkpoint": args.checkpoint,
        "views": args.views or cfg.eval.views,
        "aggregate": cfg.eval.aggregate,
        **result.metrics,
        "run_dir": str(run.path),
    }
    run.file("metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0

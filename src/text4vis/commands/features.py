"""`text4vis features CONFIG [--checkpoint CKPT] --out FILE`: cache video embeddings of a list."""

from __future__ import annotations

import argparse
import json

from text4vis.commands._common import add_model_arguments
from text4vis.errors import UsageError

COMMAND = "features"
HELP = "extract video embeddings of a list to safetensors (for zero-shot and LDA)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(
        parser,
        checkpoint_required=False,
        checkpoint_help="training checkpoint or model folder; omit it to embed with the untrained "
        "model of the config (model.pretrained CLIP weights), e.g. for the LDA classifier",
        views_help="views averaged per video",
    )
    parser.add_argument("--out", required=True, metavar="FILE", help="output .safetensors file")
    parser.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="test",
        help="which list: data.train_list (for LDA), val_list or test_list (default)",
    )
    parser.add_argument(
        "--per-class",
        type=int,
        default=0,
        metavar="K",
        help="keep at most K clips per class, seeded (the paper's LDA used 60; 0 = all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --per-class choice")


def run(args: argparse.Namespace) -> int:
    from text4vis.commands._common import config_from_args
    from text4vis.distributed import is_main_process
    from text4vis.engine.features import extract_checkpoint_features, save_features

    if args.per_class < 0:
        raise UsageError(f"--per-class must be >= 0, got {args.per_class}")
    cfg = config_from_args(args)
    feature_set = extract_checkpoint_features(
        cfg,
        args.checkpoint,
        split=args.split,
        views=args.views,
        per_class=args.per_class,
        seed=args.seed,
        precision=args.precision,
    )
    if is_main_process():
        path = save_features(feature_set, args.out)
        summary = {
            "out": str(path),
            "num_videos": int(feature_set.features.shape[0]),
            "dim": int(feature_set.features.shape[1]),
            "split": args.split,
        }
        print(json.dumps(summary, indent=2))
    return 0

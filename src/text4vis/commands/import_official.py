"""`text4vis import-official CKPT --out DIR`: convert a checkpoint released with the paper."""

from __future__ import annotations

import argparse

from text4vis.errors import UsageError

COMMAND = "import-official"
HELP = "convert a checkpoint released with the paper's code into a from_pretrained folder"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CKPT", help="the released .pt/.pth file")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--labels", default=None, help="label CSV `id,name` of the classes")
    parser.add_argument(
        "--text-weights",
        default=None,
        help="CLIP weights (e.g. OpenAI's ViT-B-16.pt) whose text tower builds the classifier",
    )
    parser.add_argument("--num-frames", type=int, default=8, help="frames per clip (T)")
    arch = parser.add_mutually_exclusive_group()
    arch.add_argument("--arch", default=None, help="open_clip architecture (default: inferred)")
    arch.add_argument(
        "--model-config",
        default=None,
        metavar="JSON",
        help="open_clip-style model config (embed_dim, vision_cfg, text_cfg) for an image "
        "encoder that is not one of open_clip's named architectures; the file stem names it",
    )


def run(args: argparse.Namespace) -> int:
    from text4vis.models.official import import_official

    if args.text_weights and not args.labels:
        raise UsageError("--text-weights needs --labels FILE (the class names to encode)")
    class_names = None
    if args.labels:
        from text4vis.data import read_labels

        class_names = read_labels(args.labels)
    out = import_official(
        args.checkpoint,
        args.out,
        class_names=class_names,
        text_weights=args.text_weights,
        num_frames=args.num_frames,
        arch=args.arch,
        model_config=args.model_config,
    )
    print(out)
    return 0

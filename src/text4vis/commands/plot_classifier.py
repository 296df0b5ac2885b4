"""`text4vis plot-classifier FILE --out PNG`: heat map of inter-class cosine similarity."""

from __future__ import annotations

import argparse

COMMAND = "plot-classifier"
HELP = "plot the inter-class cosine similarity of a classifier artifact (paper's Figure 1)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", metavar="FILE", help="classifier artifact (.safetensors)")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument(
        "--classes",
        nargs="+",
        default=None,
        help="class names or row indices to show (default: the first --max rows)",
    )
    parser.add_argument("--max", type=int, default=40, help="rows shown without --classes")


def run(args: argparse.Namespace) -> int:
    from text4vis.models.classifier import load_classifier
    from text4vis.models.plots import plot_class_similarity

    artifact = load_classifier(args.file)
    path = plot_class_similarity(artifact, args.out, classes=args.classes, max_classes=args.max)
    print(path)
    return 0

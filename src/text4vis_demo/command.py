"""`text4vis demo [--out DIR] [--quick] [--seeds N]`: the paper's ablations on synthetic actions.

A command module of the CLI's contract (COMMAND, HELP, add_arguments, run), registered under the
entry-point group ``text4vis.commands`` in pyproject.toml; ``python -m text4vis_demo`` runs it too.
"""

from __future__ import annotations

import argparse
from typing import Any

from text4vis.errors import UsageError

COMMAND = "demo"
HELP = "run the embedded synthetic benchmark (CPU, minutes) and write a report folder"
DESCRIPTION = """Reproduce the paper's ablations at toy scale, with no dataset, GPU or network.

Writes synthetic action clips (mp4), trains small video recognizers on them with the library's
trainer and writes a report folder: report.md (each table beside the paper's numbers and whether
the orderings agree), metrics.json, training curves and correlation maps (PNG), and the trained
main model (save_pretrained format) that `text4vis predict --model DIR` uses.

examples:
  text4vis demo                      # full demo, 1 seed, under 10 minutes on 2 CPU cores
  text4vis demo --out demo_report --seeds 2   # mean and spread over 2 seeds (twice as long)
  text4vis demo --quick              # a much smaller run of the same pipeline (about a minute)
  text4vis demo --contrastive        # table 9: cross-entropy vs the contrastive paradigm
                                     # (gather on/off x text online/offline, 2 processes each)
  text4vis demo --contrastive --pretrained demo_report/pretrain/demo_pretrained.safetensors
                                     # the same, on a main demo's stage-0 encoder (no stage 0)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--out", metavar="DIR", default=None, help="report folder (default runs/demo/<timestamp>)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="much smaller data and training (for tests)"
    )
    parser.add_argument(
        "--seeds",
        type=int,
        default=None,
        help="training seeds (default 1; each seed adds the time of one more demo)",
    )
    parser.add_argument(
        "--contrastive",
        action="store_true",
        help="run the table-9 comparison instead: cross-entropy vs the four contrastive "
        "variants from the pretrained pair, each as a 2-process torchrun job (about 7 minutes, "
        "stage 0 included)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="training seed of the --contrastive comparison"
    )
    parser.add_argument(
        "--pretrained",
        metavar="FILE",
        default=None,
        help="--contrastive: the image encoder's weight file (a main demo's "
        "pretrain/demo_pretrained.safetensors) instead of running stage 0 first",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    if args.contrastive:
        if args.seeds is not None:
            raise UsageError("--seeds applies to the main demo; use --seed with --contrastive")
        result = _demo_function("run_contrastive_demo")(
            args.out,
            quick=args.quick,
            seed=args.seed,
            progress=not args.no_progress,
            pretrained=args.pretrained,
        )
        print(f"report: {result.out}/contrastive_report.md")
        return 0
    if args.pretrained is not None:
        raise UsageError(
            "--pretrained applies to --contrastive; the main demo runs its own stage 0"
        )
    metrics = _demo_function("run_demo")(
        args.out, quick=args.quick, seeds=args.seeds, progress=not args.no_progress
    )
    print(f"report: {metrics.out}/report.md")
    return 0


def _demo_function(name: str) -> Any:
    """``text4vis_demo.<name>``, or a clear error where the demo's dependencies (PyTorch, Jinja2,
    matplotlib: the full install) are missing, e.g. next to the ONNX runtime alone."""
    import text4vis_demo

    try:
        return getattr(text4vis_demo, name)
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"text4vis demo needs the full install ({exc.name} is missing): "
            "python -m pip install text4vis (or `make demo` in a checkout)"
        ) from None

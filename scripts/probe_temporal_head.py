"""Train the demo's temporal transformer alone on fixed stage-0 frame embeddings.

    python scripts/probe_temporal_head.py REPORT [--classifier text|orthogonal|random]
        [--epochs N] [--seed S] [--run NAME] [--feature-scale X] [--json]

REPORT is a finished ``text4vis demo --out`` folder. Prints the validation top-1 after each
epoch, split into direction-dependent classes (a motion and its time-reversed partner) and the
others; see :mod:`text4vis.demo.probe` for what it answers. Exit status 2 for a bad argument.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from text4vis.demo.probe import run_probe


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("report", help="a finished demo report folder (text4vis demo --out)")
    parser.add_argument("--classifier", default="text", choices=("text", "orthogonal", "random"))
    parser.add_argument("--epochs", type=int, default=32, help="probe epochs (the demo trains 8)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run", default="text-transformer-full-s0", help="run whose config to use")
    parser.add_argument(
        "--feature-scale",
        type=float,
        default=1.0,
        help="multiply the frame embeddings by X (does their norm slow the probe?)",
    )
    parser.add_argument("--json", action="store_true", help="print the history as JSON")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")
    try:
        history, summary = run_probe(
            args.report,
            classifier=args.classifier,
            epochs=args.epochs,
            seed=args.seed,
            run=args.run,
            feature_scale=args.feature_scale,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"summary": summary, "history": [dataclasses.asdict(h) for h in history]}))
        return 0
    print(
        ", ".join(
            f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary.items()
        )
    )
    print("epoch  loss    top-1  direction  other")
    for h in history:
        print(
            f"{h.epoch:5d}  {h.train_loss:6.3f}  {h.top1:5.1f}  {_pct(h.direction_top1):>9}  "
            f"{_pct(h.other_top1):>5}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

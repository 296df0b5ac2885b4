"""Compare two demo metrics files number by number and print what differs.

    python scripts/compare_demo_metrics.py BASELINE/metrics.json NEW/metrics.json [--atol X]
        [--rtol X] [--ignore PATTERN ...] [--ignore-timing] [--json]

The default tolerance is 0: every number must be equal. ``--ignore-timing`` leaves the wall
times and memory peaks (``timing_s.*``, ``runs.*.time_s``, ``peak_rss_mb.*``) out of the verdict;
their differences are still printed. Exit status 0 when the files agree, 1 when they do not, 2
for a bad argument or file.
"""

from __future__ import annotations

import argparse
import json
import sys

from text4vis.demo.compare import TIMING_KEYS, compare_metrics, load_metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="first metrics.json (e.g. the baseline)")
    parser.add_argument("b", help="second metrics.json")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0)")
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (default 0)")
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="PATTERN",
        help="fnmatch pattern of paths whose differences do not fail (repeatable)",
    )
    parser.add_argument(
        "--ignore-timing",
        action="store_true",
        help=f"ignore the machine's timings and memory peaks: {', '.join(TIMING_KEYS)}",
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")
    args = parser.parse_args(argv)
    try:
        a, b = load_metrics(args.a), load_metrics(args.b)
        patterns = args.ignore + (list(TIMING_KEYS) if args.ignore_timing else [])
        result = compare_metrics(a, b, atol=args.atol, rtol=args.rtol, ignore=patterns)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0 if result.same else 1
    for d in result.differences:
        diff = "" if d.abs_diff is None else f"  |diff| {d.abs_diff:.3g}"
        note = "  (ignored)" if d.ignored else ""
        print(f"{d.path}: {d.a!r} vs {d.b!r}{diff}{note}")
    print(
        f"{result.numbers_compared} numbers compared, {result.numbers_equal} identical; "
        f"max |diff| {result.max_abs_diff:.3g}"
        + (f" at {result.max_abs_diff_path}" if result.max_abs_diff_path else "")
        + f" (ignored paths: max |diff| {result.max_abs_diff_ignored:.3g}); "
        f"{len(result.failures)} difference(s) beyond atol={args.atol:g} rtol={args.rtol:g}"
        + (f", {len(result.differences) - len(result.failures)} ignored" if patterns else "")
    )
    print("SAME" if result.same else "DIFFERENT")
    return 0 if result.same else 1


if __name__ == "__main__":
    sys.exit(main())

"""Compare two demo ``metrics.json`` files number by number (behaviour checks across changes).

Two runs of ``text4vis demo --quick`` with the same seed should write the same numbers; timings
and memory peaks are the exception. :func:`compare_metrics` walks both JSON trees in parallel
and lists every leaf that differs: numbers beyond a tolerance, strings, booleans, ``null`` vs a
value, and keys or list items present on one side only. :func:`main` is its command line::

    python -m text4vis_demo.compare BASELINE/metrics.json NEW/metrics.json [--atol X]
        [--rtol X] [--ignore PATTERN ...] [--ignore-timing] [--json]

The default tolerance is 0: every number must be equal. ``--ignore-timing`` leaves the wall
times and memory peaks (:data:`TIMING_KEYS`) out of the verdict; their differences are still
printed. Exit status 0 when the files agree, 1 when they do not, 2 for a bad argument or file.
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import math
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from text4vis_demo.statistics import Record

__all__ = ["TIMING_KEYS", "Comparison", "Difference", "compare_metrics", "load_metrics", "main"]

# Paths of the numbers that measure the machine rather than the model: wall and CPU times,
# memory peaks and the load average differ between any two runs. ``--ignore-timing`` leaves
# them out of the verdict.
TIMING_KEYS: tuple[str, ...] = (
    "timing_s.*",
    "runs.*.time_s",
    "stage0.time_s.*",
    "peak_rss_mb.*",
    "cpu_s.*",
    "load_average_1min.*",
)


@dataclass(frozen=True)
class Difference(Record):
    """One leaf that differs between the two files.

    ``path`` is a dotted path with list indices in brackets, e.g.
    ``runs.text-mean-full-s0.history[2].val_top1``.
    """

    path: str
    a: Any
    b: Any
    abs_diff: float | None  # |a - b| for two numbers, None otherwise
    ignored: bool  # matched an ignore pattern: listed, but does not fail the comparison


@dataclass
class Comparison:
    """The result of :func:`compare_metrics`."""

    atol: float
    rtol: float
    numbers_compared: int = 0  # numeric leaves present in both files
    numbers_equal: int = 0  # of those, bit-identical
    max_abs_diff: float = 0.0  # largest |a - b| over the numbers not ignored
    max_abs_diff_path: str | None = None
    max_abs_diff_ignored: float = 0.0  # the same over the ignored numbers
    differences: list[Difference] = field(default_factory=list)  # beyond the tolerance

    @property
    def failures(self) -> list[Difference]:
        """The differences that are not ignored."""
        return [d for d in self.differences if not d.ignored]

    @property
    def same(self) -> bool:
        """True when no difference beyond the tolerance is left after the ignore patterns."""
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "same": self.same}


def load_metrics(path: str | Path) -> Any:
    """Read a metrics JSON file (a clear error when it is missing or not JSON)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such metrics file (a demo writes metrics.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _walk(a: Any, b: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    """Pairs of leaves at the same path; a side missing there is reported as ``<missing>``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            child = f"{path}.{key}" if path else str(key)
            yield from _walk(a.get(key, _MISSING), b.get(key, _MISSING), child)
    elif isinstance(a, list) and isinstance(b, list):
        for i in range(max(len(a), len(b))):
            yield from _walk(
                a[i] if i < len(a) else _MISSING, b[i] if i < len(b) else _MISSING, f"{path}[{i}]"
            )
    else:
        yield path, a, b


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


_MISSING = _Missing()


def compare_metrics(
    a: Any,
    b: Any,
    *,
    atol: float = 0.0,
    rtol: float = 0.0,
    ignore: Iterable[str] = (),
) -> Comparison:
    """Compare two parsed metrics trees leaf by leaf.

    Two numbers agree when ``|a - b| <= atol + rtol * |b|`` (the default, 0 and 0, asks for
    equality; two NaNs agree). Everything else must be equal.

    Args:
        a: the first tree (e.g. the baseline's ``metrics.json``).
        b: the second tree.
        atol: absolute tolerance on numbers.
        rtol: relative tolerance on numbers (relative to ``b``).
        ignore: ``fnmatch`` patterns of paths (e.g. ``"timing_s.*"``) whose differences are
            listed but do not make the comparison fail.

    Returns:
        A :class:`Comparison`: how many numbers were compared, the largest difference and every
        difference beyond the tolerance.

    Raises:
        ValueError: a negative tolerance.
    """
    if atol < 0 or rtol < 0:
        raise ValueError(f"tolerances must be >= 0, got atol={atol} rtol={rtol}")
    patterns = list(ignore)
    result = Comparison(atol=atol, rtol=rtol)
    for path, x, y in _walk(a, b, ""):
        ignored = any(fnmatch.fnmatchcase(path, p) for p in patterns)
        if _is_number(x) and _is_number(y):
            result.numbers_compared += 1
            if x == y or (
                isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y)
            ):
                result.numbers_equal += 1
                continue
            diff = abs(float(x) - float(y))
            if ignored:
                result.max_abs_diff_ignored = max(result.max_abs_diff_ignored, diff)
            elif not diff <= result.max_abs_diff:  # also catches a NaN on one side
                result.max_abs_diff, result.max_abs_diff_path = diff, path
            if not diff <= atol + rtol * abs(float(y)):
                result.differences.append(Difference(path, x, y, diff, ignored))
        elif x != y or type(x) is not type(y):
            result.differences.append(Difference(path, x, y, None, ignored))
    return result


def main(argv: list[str] | None = None) -> int:
    """The command line: compare two files given as arguments; returns the exit status."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], prog="python -m text4vis_demo.compare"
    )
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

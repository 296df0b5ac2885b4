"""Comparing two demo metrics files number by number (text4vis_demo.compare and its command line)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from text4vis_demo.compare import TIMING_KEYS, compare_metrics, load_metrics

COMPARE = [sys.executable, "-m", "text4vis_demo.compare"]

A = {
    "table6": {"text": {"top1": {"mean": 15.0, "per_seed": [15.0], "std": None}}},
    "claims": [{"verdict": "agrees", "difference": 2.5}],
    "timing_s": {"total_s": 40.0},
    "seeds": [0],
}


def changed(**edits: object) -> dict:
    b = json.loads(json.dumps(A))
    for path, value in edits.items():
        node = b
        *parents, leaf = path.split("__")
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, list):
            node[int(leaf)] = value
        else:
            node[leaf] = value
    return b


def test_identical_trees_are_the_same_and_every_number_is_counted():
    result = compare_metrics(A, json.loads(json.dumps(A)))
    assert result.same and result.differences == []
    # 15.0 twice (mean, per_seed[0]), difference, total_s, seeds[0]
    assert result.numbers_compared == result.numbers_equal == 5
    assert result.max_abs_diff == 0.0


def test_default_is_exact_and_the_tolerance_is_explicit():
    b = changed(claims__0__difference=2.5 + 1e-12)
    exact = compare_metrics(A, b)
    assert not exact.same
    (diff,) = exact.failures
    assert diff.path == "claims[0].difference" and diff.abs_diff == pytest.approx(1e-12)
    assert exact.max_abs_diff_path == "claims[0].difference"
    assert compare_metrics(A, b, atol=1e-9).same
    assert compare_metrics(A, b, rtol=1e-9).same
    with pytest.raises(ValueError, match="tolerances must be >= 0"):
        compare_metrics(A, b, atol=-1.0)


def test_strings_nulls_and_missing_keys_differ_whatever_the_tolerance():
    b = changed(claims__0__verdict="disagrees")
    b["table6"]["text"]["top1"]["std"] = 1.0
    del b["seeds"]
    b["extra"] = 1
    result = compare_metrics(A, b, atol=100.0)
    paths = {d.path for d in result.failures}
    assert paths == {"claims[0].verdict", "table6.text.top1.std", "seeds", "extra"}


def test_ignored_paths_are_listed_but_do_not_fail():
    b = changed(timing_s__total_s=55.0)
    result = compare_metrics(A, b, ignore=TIMING_KEYS)
    assert result.same and [d.path for d in result.differences] == ["timing_s.total_s"]
    assert result.differences[0].ignored and result.max_abs_diff_ignored == 15.0
    assert result.max_abs_diff == 0.0
    assert not compare_metrics(A, b).same


def test_load_metrics_names_the_bad_file(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no such metrics file"):
        load_metrics(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        load_metrics(bad)


@pytest.mark.process
def test_script_prints_differences_and_exits_1_when_they_differ(tmp_path: Path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(A))
    b.write_text(json.dumps(changed(table6__text__top1__mean=17.5)))
    run = [*COMPARE, str(a), str(b)]
    result = subprocess.run(run, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "table6.text.top1.mean: 15.0 vs 17.5  |diff| 2.5" in result.stdout
    assert result.stdout.strip().endswith("DIFFERENT")
    result = subprocess.run([*run, "--atol", "3"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip().endswith("SAME"), result.stdout

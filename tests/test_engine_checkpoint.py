"""Atomic checkpoint writes, RNG capture, resume resolution."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from text4vis.engine.checkpoint import (
    atomic_torch_save,
    capture_rng_state,
    find_latest_checkpoint,
    resolve_resume,
    restore_rng_state,
)
from text4vis.models.factory import CHECKPOINT_FORMAT_VERSION, CheckpointError, load_checkpoint


def _state(value: float) -> dict:
    return {
        "format": CHECKPOINT_FORMAT_VERSION,
        "complete": True,
        "model": {"w": torch.full((3,), value)},
    }


@pytest.mark.process
def test_checkpoint_killed_mid_write_leaves_previous_loadable(tmp_path):
    target = tmp_path / "exp" / "20240101-000000" / "checkpoints" / "last.pt"
    marker = tmp_path / "writing"
    script = textwrap.dedent(
        f"""
        import pathlib, time, torch
        from text4vis.engine.checkpoint import atomic_torch_save

        class Stall:
            # pickled in the middle of the write: signals the test, then hangs until killed
            def __reduce__(self):
                pathlib.Path({str(marker)!r}).write_text("x")
                time.sleep(60)
                return (int, (0,))

        atomic_torch_save({{"format": 1, "complete": True, "model": {{"w": torch.zeros(3)}}}},
                          {str(target)!r})
        big = torch.ones(2_000_000)
        atomic_torch_save({{"format": 1, "complete": True, "model": {{"w": big}},
                           "stall": Stall()}}, {str(target)!r})
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "writer exited before the second write"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    state = load_checkpoint(target)
    assert torch.equal(state["model"]["w"], torch.zeros(3))  # the previous, complete checkpoint
    leftovers = [p.name for p in target.parent.iterdir() if p.name != "last.pt"]
    assert leftovers and all(name.endswith(".tmp") for name in leftovers)
    assert find_latest_checkpoint(tmp_path, "exp") == target  # temporary files are ignored


def test_truncated_file_is_rejected_and_skipped_by_auto(tmp_path):
    older = tmp_path / "exp" / "20240101-000000" / "checkpoints" / "last.pt"
    newer = tmp_path / "exp" / "20240102-000000" / "checkpoints" / "last.pt"
    atomic_torch_save(_state(1.0), older)
    atomic_torch_save(_state(2.0), newer)
    os.utime(older, (1, 1))
    assert resolve_resume("auto", tmp_path, "exp") == newer
    data = newer.read_bytes()
    newer.write_bytes(data[: len(data) // 2])  # what a non-atomic writer would leave
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(newer)
    assert resolve_resume("auto", tmp_path, "exp") == older
    assert resolve_resume("auto", tmp_path, "other") is None
    assert resolve_resume(None, tmp_path, "exp") is None
    assert resolve_resume(str(older.parent.parent), tmp_path, "exp") == older
    with pytest.raises(CheckpointError, match="no checkpoint there"):
        resolve_resume(str(tmp_path / "missing.pt"), tmp_path, "exp")
    incomplete = tmp_path / "x.pt"
    torch.save({"model": {}}, incomplete)
    with pytest.raises(CheckpointError, match="not a complete"):
        load_checkpoint(incomplete)


def test_rng_state_round_trip_through_weights_only_file(tmp_path):
    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    state = capture_rng_state()
    path = atomic_torch_save({"rng": state}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    restore_rng_state(torch.load(path, weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected

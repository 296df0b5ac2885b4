"""Saves that break: kills at random points of a write, unreadable ``last.pt``, a full disk."""

from __future__ import annotations

import errno
import logging
import os
import random
import signal
import time
from pathlib import Path

import pytest
import torch

from fault_driver import FileWrapper
from text4vis.engine import checkpoint as checkpoint_module
from text4vis.engine.checkpoint import (
    PREVIOUS_NAME,
    atomic_torch_save,
    find_latest_checkpoint,
    resolve_resume,
)
from text4vis.models.factory import CHECKPOINT_FORMAT_VERSION, CheckpointError, load_checkpoint


def _state(value: float, size: int = 3) -> dict:
    return {
        "format": CHECKPOINT_FORMAT_VERSION,
        "complete": True,
        "model": {"w": torch.full((size,), value)},
    }


def _value(path: Path) -> float:
    return float(load_checkpoint(path)["model"]["w"][0])


class _LimitedWriter(FileWrapper):
    """A file that calls :meth:`at_limit` before the write that would take it past ``limit``
    bytes."""

    def __init__(self, handle, limit: int) -> None:
        super().__init__(handle)
        self.limit = limit

    def before_write(self, data) -> None:
        if self.written + len(data) > self.limit:
            self.at_limit(data)

    def at_limit(self, data) -> None:
        raise NotImplementedError


class _DyingWriter(_LimitedWriter):
    """A file that SIGKILLs its own process once ``limit`` bytes have been written."""

    def at_limit(self, data) -> None:
        # the bytes up to the limit reach the file, then the process dies mid-write
        self.handle.write(bytes(memoryview(data)[: self.limit - self.written]))
        self.handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)


def _write_in_child(state: dict, target: Path, kill_at: tuple[str, int]) -> int:
    """Fork a real process that writes ``state`` to ``target`` and is killed at ``kill_at``:
    ``("byte", n)`` after n bytes of the file, or ``(step, k)``: at the k-th call of ``os.step``
    (fsync: of the file, then of the folder; link; replace: of previous.pt, then of last.pt)."""
    pid = os.fork()
    if pid == 0:  # the child: write, then leave without running any of pytest's cleanup
        status = 1
        try:
            kind, value = kill_at
            os_module = checkpoint_module.os
            if kind == "byte":
                real_fdopen = os.fdopen
                os_module.fdopen = lambda fd, mode="r", *a, **k: _DyingWriter(
                    real_fdopen(fd, mode, *a, **k), value
                )
            else:
                real = getattr(os, kind)
                calls = [0]

                def counted(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] == value:
                        os.kill(os.getpid(), signal.SIGKILL)
                    return real(*args, **kwargs)

                setattr(os_module, kind, counted)
            atomic_torch_save(state, target, keep_previous=True)
            status = 0
        finally:
            os._exit(status)
    return pid


@pytest.mark.process
def test_kills_at_random_points_of_writes_never_lose_a_checkpoint(tmp_path):
    """29 real processes killed while writing: at 24 random offsets of the file's bytes, and
    before each fsync, the hard link and each rename. Every time the checkpoint on disk is
    complete (the old one or the new one) and ``--resume auto`` finds it."""
    target = tmp_path / "exp" / "run1" / "checkpoints" / "last.pt"
    big = 1_000_000  # 4 MB of float32
    atomic_torch_save(_state(0.5, big), target)
    size = target.stat().st_size
    rng = random.Random(13)
    offsets = sorted(rng.randrange(0, size) for _ in range(24))
    points = [("byte", n) for n in offsets]
    points += [("fsync", 1), ("link", 1), ("replace", 1), ("replace", 2), ("fsync", 2)]
    for trial, kill_at in enumerate(points, start=1):
        atomic_torch_save(_state(float(trial)), target, keep_previous=True)  # the old checkpoint
        _, status = os.waitpid(_write_in_child(_state(trial + 0.5, big), target, kill_at), 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, kill_at
        # last.pt is complete: the old checkpoint, or the new one once the rename happened
        renamed = kill_at == ("fsync", 2)
        assert _value(target) == (trial + 0.5 if renamed else trial), kill_at
        # previous.pt: what last.pt held before the old checkpoint, or the old one
        assert _value(target.with_name(PREVIOUS_NAME)) in (trial - 1, trial - 0.5, trial)
        assert resolve_resume("auto", tmp_path, "exp") == target
    # the next save removes what the killed writers left
    atomic_torch_save(_state(-1.0), target, keep_previous=True)
    assert sorted(p.name for p in target.parent.iterdir()) == ["last.pt", PREVIOUS_NAME]


def test_unreadable_last_falls_back_to_previous_naming_it(tmp_path, caplog):
    target = tmp_path / "exp" / "run1" / "checkpoints" / "last.pt"
    atomic_torch_save(_state(1.0), target, keep_previous=True)
    time.sleep(0.01)
    atomic_torch_save(_state(2.0), target, keep_previous=True)
    assert _value(target.with_name(PREVIOUS_NAME)) == 1.0
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])  # a copy cut short
    with caplog.at_level(logging.WARNING, logger="text4vis.engine.checkpoint"):
        found = resolve_resume("auto", tmp_path, "exp")
    assert found == target.with_name(PREVIOUS_NAME)
    assert f"{target} is unreadable" in caplog.text
    # an explicit run folder falls back the same way; an explicit file names itself
    assert resolve_resume(str(target.parents[1]), tmp_path, "exp") == found
    with pytest.raises(CheckpointError, match=str(target)):
        load_checkpoint(target)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_unreadable_last_without_previous_is_an_error_not_a_fresh_start(tmp_path, damage):
    target = tmp_path / "exp" / "run1" / "checkpoints" / "last.pt"
    atomic_torch_save(_state(1.0), target)
    data = target.read_bytes()
    damaged = {"truncate": data[:-100], "garbage": os.urandom(len(data)), "empty": b""}
    target.write_bytes(damaged[damage])
    with pytest.raises(CheckpointError, match=f"no complete checkpoint.*{target}"):
        resolve_resume("auto", tmp_path, "exp")
    with pytest.raises(CheckpointError, match=str(target)):
        find_latest_checkpoint(tmp_path, "exp")
    # and through the trainer: it stops before building anything
    from text4vis.config import load_config
    from text4vis.engine.train import fit

    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=exp", "run.device=cpu"])
    with pytest.raises(CheckpointError, match=str(target)):
        fit(cfg, resume="auto")


class _FullDisk(_LimitedWriter):
    """A file whose writes fail with ENOSPC once ``limit`` bytes are written."""

    def at_limit(self, data) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write-start", "write-middle", "fsync"])
def test_full_disk_names_the_folder_and_leaves_nothing_partial(tmp_path, monkeypatch, where):
    target = tmp_path / "run" / "checkpoints" / "last.pt"
    atomic_torch_save(_state(1.0), target, keep_previous=True)
    real_fdopen = os.fdopen
    if where == "fsync":

        def full_fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(checkpoint_module.os, "fsync", full_fsync)
    else:
        room = 0 if where == "write-start" else 100_000
        monkeypatch.setattr(
            checkpoint_module.os,
            "fdopen",
            lambda fd, mode="r", *a, **k: _FullDisk(real_fdopen(fd, mode, *a, **k), room),
        )
    with pytest.raises(CheckpointError, match=f"no space left on the device of {target.parent}"):
        atomic_torch_save(_state(2.0, 1_000_000), target, keep_previous=True)
    monkeypatch.undo()
    assert [p.name for p in target.parent.iterdir()] == ["last.pt"]  # no partial file
    assert _value(target) == 1.0

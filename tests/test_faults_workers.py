"""Errors raised in DataLoader workers read as they do with 0 workers; a refused pickle is one line.

A list holding a missing video is evaluated with ``data.num_workers=1`` through every command that
decodes videos (eval, features, zeroshot, predict, validation inside train): each exits with
status 2 and prints one line naming the missing file, exactly as with ``num_workers=0``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from conftest import COLOURS, train_tiny_model, write_colour_clips
from text4vis.cli import main, user_error_message
from text4vis.config import load_config
from text4vis.data.annotations import VideoRecord, write_annotations
from text4vis.data.decoders import VideoDecodeError
from text4vis.data.labels import write_labels
from text4vis.data.loaders import build_loader
from text4vis.errors import DataError, MissingFileError, Text4VisError, unwrap_worker_error


@pytest.fixture(scope="module")
def broken(tmp_path_factory) -> dict[str, Path]:
    """A model trained for one step, and a list whose second entry does not exist."""
    root = tmp_path_factory.mktemp("workers")
    write_labels(root / "labels.csv", [f"{name} thing" for name in COLOURS])
    clips = write_colour_clips(root, per_class=1, seed=0)
    write_annotations(root / "train.txt", clips)
    bad = [clips[0], VideoRecord("clips/gone_missing.mp4", None, 1), clips[2]]
    write_annotations(root / "bad.txt", bad)
    extra = ("train.epochs=1", "run.name=workers", "data.val_list=", "model.classifier=text")
    return {**train_tiny_model(root, "config.yaml", *extra), "bad": root / "bad.txt"}


def _one_line_error(capsys, argv: list[str]) -> str:
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    errors = [line for line in err if "error:" in line]
    assert len(errors) == 1, err
    assert "Traceback" not in "\n".join(err) and "DataLoader worker" not in "\n".join(err), err
    return errors[0]


def _command(name: str, broken: dict[str, Path], workers: int, tmp_path: Path) -> list[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    sets = ["--set", f"data.num_workers={workers}"]
    config, bad = str(broken["config"]), str(broken["bad"])
    if name == "eval":
        return ["eval", config, "--checkpoint", str(broken["model"]), "--set",
                f"data.test_list={bad}", *sets]  # fmt: skip
    if name == "features":
        return ["features", config, "--checkpoint", str(broken["model"]), "--out",
                str(tmp_path / "f.safetensors"), "--set", f"data.test_list={bad}", *sets]  # fmt: skip
    if name == "zeroshot":
        return ["zeroshot", config, "--checkpoint", str(broken["ckpt"]), "--set",
                f"data.test_list={bad}", *sets]  # fmt: skip
    if name == "predict":
        videos = [str(broken["root"] / "clips" / "s0_0_0.mp4"), str(tmp_path / "broken.mp4")]
        (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
        return ["predict", *videos, "--model", str(broken["model"]), "--workers", str(workers),
                "--no-progress", "--batch-size", "1"]  # fmt: skip
    if name == "train":  # validation inside training
        return ["train", config, "--set", f"data.val_list={bad}", "--set",
                f"run.root={tmp_path}", *sets]  # fmt: skip
    raise AssertionError(name)


@pytest.mark.parametrize("command", ["eval", "features", "zeroshot", "predict", "train"])
def test_worker_error_reads_as_without_workers(broken, capsys, tmp_path, command):
    if command == "predict":  # predict reports unreadable videos and exits 1 (its own rule)
        outcomes = []
        for workers in (0, 1):
            status = main(_command(command, broken, workers, tmp_path / f"w{workers}"))
            err = capsys.readouterr().err
            assert "Traceback" not in err and "DataLoader worker" not in err, err
            outcomes.append((status, err.strip().splitlines()[-1]))
            assert "broken.mp4" in err
        assert outcomes[0] == outcomes[1] and outcomes[0][0] == 1, outcomes
        return
    without = _one_line_error(capsys, _command(command, broken, 0, tmp_path / "w0"))
    with_workers = _one_line_error(capsys, _command(command, broken, 1, tmp_path / "w1"))
    assert with_workers == without
    assert "gone_missing.mp4" in without, without


def test_debug_shows_the_workers_traceback(broken, capsys, tmp_path):
    argv = _command("eval", broken, 1, tmp_path)
    with pytest.raises(VideoDecodeError) as info:
        main(["--debug", *argv])
    assert "gone_missing.mp4" in str(info.value)
    assert not str(info.value).startswith("Caught")
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Traceback" in notes  # the worker's own traceback, for --debug


class _Failing(torch.utils.data.Dataset):
    """Item 1 raises ``error``, chained from another exception (as decoders do)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> dict:
        if index == 1:
            try:
                raise OSError("the cause: ValueError: not the message")
            except OSError as cause:
                raise self.error from cause
        return {"video": torch.zeros(1, 1, 3, 2, 2), "label": 0, "index": index}


@pytest.mark.parametrize(
    "error",
    [
        VideoDecodeError("a/b.mp4", "moov atom not found\nsecond line"),
        DataError("DataError: odd message"),
        MissingFileError("x.txt"),
        # Built-in errors are bugs (the library converts input errors into its own): tracebacks.
        ValueError("ValueError: odd message"),
        FileNotFoundError("x.txt"),
        KeyError("k"),
    ],
    ids=["package", "data", "notfound", "value-bug", "notfound-bug", "bug"],
)
def test_unwrap_recovers_the_workers_message(error):
    loader = torch.utils.data.DataLoader(_Failing(error), batch_size=1, num_workers=1)
    with pytest.raises(type(error)) as info:
        list(loader)
    assert str(info.value).startswith("Caught")  # torch's own wrapper
    worker = unwrap_worker_error(info.value)
    assert worker is not None and worker.worker == 0
    assert worker.message == str(error)
    expected = str(error) if isinstance(error, Text4VisError) else None
    assert user_error_message(info.value) == expected

    # build_loader's Loader raises the worker's own message directly (library users).
    cfg = load_config(None, ["data.num_workers=1", "eval.batch_size=1"])
    with pytest.raises(type(error)) as clean:
        list(build_loader(_Failing(error), cfg, "test", seed=0, rank=0, world_size=1))
    if not isinstance(error, KeyError):
        assert str(clean.value) == str(error)


def test_refused_pickle_is_one_line(broken, capsys, tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.getpid, ())

    evil = tmp_path / "evil.pt"
    torch.save({"model": Payload(), "complete": True, "format": 1}, evil)
    assert pickle.loads(pickle.dumps(Payload())) > 0  # a real payload: it runs when unpickled
    line = _one_line_error(capsys, ["eval", str(broken["config"]), "--checkpoint", str(evil)])
    assert str(evil) in line and "getpid" in line and "refused" in line, line
    assert "PyTorch 2.6" not in line and "documentation" not in line

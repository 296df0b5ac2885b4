"""Shared test fixtures and helpers (synthetic colour clips and the configs that train on them).

The CPU suite runs on the CPU on every machine: for each test not marked ``gpu``,
:func:`pytest_runtest_protocol` makes CUDA invisible (``torch.cuda.is_available()`` is False in this
process, ``CUDA_VISIBLE_DEVICES`` is empty for the processes a test starts), so ``run.device=auto``
and every other default resolve to the CPU on a GPU machine as they do here, and ``overrides`` /
``small_data_config`` pin ``run.device=cpu`` in the configs they write. Tests marked ``gpu`` see
the machine's GPUs; without enough of them they are skipped, or fail when
``TEXT4VIS_REQUIRE_GPU=1`` (``make test-gpu``), see :func:`pytest_runtest_setup`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from text4vis.config import Config
    from text4vis.data.annotations import VideoRecord

# Tests never touch a model hub; everything they need is made on the fly or ships in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


#: set to 1 by `make test-gpu`: a gpu test fails instead of skipping when CUDA is not usable
REQUIRE_GPU_ENV = "TEXT4VIS_REQUIRE_GPU"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    """Hide CUDA from a test not marked ``gpu`` for its whole protocol (the module- and
    session-scoped fixtures it sets up first included); see the module docstring."""
    if item.get_closest_marker("gpu") is not None:
        return (yield)
    import torch

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.cuda, "is_available", lambda: False)
        patch.setattr(torch.cuda, "device_count", lambda: 0)
        patch.setenv("CUDA_VISIBLE_DEVICES", "")
        return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before its fixtures: skip a ``gpu`` test without the CUDA devices it needs
    (``@pytest.mark.gpu(devices=2)`` for more than one); with ``TEXT4VIS_REQUIRE_GPU=1``, a test
    finding no usable CUDA device fails instead, with the reason
    :func:`text4vis.runtime.cuda_problem` finds."""
    marker = item.get_closest_marker("gpu")
    if marker is None:
        return
    import torch

    needed = int(marker.kwargs.get("devices", 1))
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found >= needed:
        return
    if found == 0 and os.environ.get(REQUIRE_GPU_ENV) == "1":
        from text4vis.runtime import cuda_problem

        pytest.fail(f"{REQUIRE_GPU_ENV}=1 but CUDA is not usable: {cuda_problem()}")
    pytest.skip(f"needs {needed} CUDA device(s), found {found}")


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep torch from oversubscribing the CI machine's cores."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))


COLOURS = {
    "red": (220, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 70, 230),
    "yellow": (230, 210, 40),
}


def write_colour_clips(
    root: Path, *, per_class: int, frames: int = 8, size: int = 40, seed: int = 0
) -> list[VideoRecord]:
    """One mp4 per clip: the class colour at a random shade plus pixel noise."""
    import numpy as np

    from text4vis.data.annotations import VideoRecord
    from text4vis.data.synthetic import write_mp4

    rng = np.random.default_rng(seed)
    records = []
    for label, colour in enumerate(COLOURS.values()):
        for k in range(per_class):
            base = np.array(colour, dtype=np.float64) * rng.uniform(0.6, 1.0)
            pixels = base + rng.normal(0.0, 30.0, (frames, size, size, 3))
            rel = f"clips/s{seed}_{label}_{k}.mp4"
            write_mp4(root / rel, np.clip(pixels, 0, 255).astype(np.uint8))
            records.append(VideoRecord(rel, None, label))
    return records


def overrides(data: Path, run_root: Path, *extra: str) -> list[str]:
    """``--set`` values of a tiny-vit run on the colour clips in ``data`` (``extra`` last, so
    they win)."""
    return [
        "run.device=cpu",  # the CPU suite pins the CPU; gpu tests pass run.device=cuda in extra
        f"data.train_list={data / 'train.txt'}",
        f"data.val_list={data / 'val.txt'}",
        f"data.labels={data / 'labels.csv'}",
        "data.num_segments=4",
        "data.input_size=32",
        "data.resize_size=36",
        "data.batch_size=4",
        "data.num_workers=0",
        "data.grayscale=0",  # colour is the class
        "data.randaugment=false",
        "model.arch=tiny-vit",
        "model.temporal=mean",
        "model.classifier=orthogonal",
        "train.lr=5e-4",
        "train.min_lr=5e-5",
        "train.warmup_epochs=0.5",
        "train.visual_lr_ratio=1.0",
        "train.precision=fp32",
        "train.checkpoint_minutes=0",
        f"run.root={run_root}",
        "run.progress=false",
        "run.log_every=1",
        *extra,
    ]


def small_data_config(
    root: Path,
    labels: Path,
    video_list: Path,
    *,
    num_segments: int,
    input_size: int,
    batch_size: int,
    eval_batch_size: int,
    **data: object,
) -> Config:
    """A default config reading ``video_list`` (as both train and val list) in this process:
    small clips (resized to 36 px), no loader workers; ``data`` sets further ``data.*`` keys."""
    from text4vis.config import Config

    cfg = Config()
    cfg.data.root = str(root)
    cfg.data.labels = str(labels)
    cfg.data.train_list = cfg.data.val_list = str(video_list)
    cfg.data.num_segments = num_segments
    cfg.data.input_size = input_size
    cfg.data.resize_size = 36
    cfg.data.num_workers = 0
    cfg.data.batch_size = batch_size
    cfg.eval.batch_size = eval_batch_size
    cfg.run.device = "cpu"
    for key, value in data.items():
        setattr(cfg.data, key, value)
    return cfg


def train_tiny_model(root: Path, config_name: str, *extra: str) -> dict[str, Path]:
    """Train a tiny-vit run on the colour clips in ``root`` (``overrides`` plus ``extra``) and
    write its config to ``root / config_name``: ``{"root", "config", "ckpt", "model"}``."""
    from text4vis.config import dump_config, load_config
    from text4vis.engine.train import fit

    cfg = load_config(None, overrides(root, root / "runs", *extra))
    summary = fit(cfg)
    config_path = root / config_name
    dump_config(cfg, config_path)
    run = Path(summary.run_dir)
    return {
        "root": root,
        "config": config_path,
        "ckpt": run / "checkpoints" / "last.pt",
        "model": run / "model",
    }


@pytest.fixture(scope="session")
def demo_search_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model trained the demo's way on the demo's synthetic actions, for the search and
    app tests: ``{"root", "dataset", "model_dir"}``.

    Demo settings (MiniLM text classifier, mean pooling) with 6 training clips per class and 6
    epochs, from scratch with the demo's former 2-layer ViT (``demo-vit``): about 20 s on 2 cores.
    At this budget the ViT has learnt the objects' colours reliably, their shapes only partly, and
    their direction not at all (mean pooling cannot), which is what the search tests rely on. The
    demo's ResNet (``demo-rn``) needs its stage 0 for that: from scratch, at this budget, it does
    not yet rank the queried colour first.
    """
    import dataclasses

    import torch

    from text4vis.config import config_from_dict
    from text4vis.engine.train import fit
    from text4vis_demo.settings import base_config_dict, demo_settings, make_demo_dataset

    root = tmp_path_factory.mktemp("demo_search")
    settings = dataclasses.replace(
        demo_settings(quick=True),
        train_per_class=6,
        val_per_class=2,
        unseen_per_class=2,
        epochs=6,
        num_workers=0,
    )
    dataset = make_demo_dataset(root / "data", settings, progress=False)
    values = base_config_dict(settings, dataset, root)
    # The demo's text-mean run, with the ViT (see above).
    values["model"].update({"classifier": "text", "temporal": "mean", "arch": "demo-vit"})
    cfg = config_from_dict(values)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the demo does: faster than 2 threads beside the decoding
    try:
        summary = fit(cfg, run_dir=root / "run")
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "dataset": dataset, "model_dir": Path(summary.model_dir)}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny-vit model with random weights and its own three classes, saved as a folder (for
    the commands, which load models by path: timelines, live streams, segment indexes)."""
    from text4vis.config import ModelConfig
    from text4vis.models.video import VideoRecognizer

    cfg = ModelConfig(arch="tiny-vit", temporal="mean", logit_scale=100.0)
    model = VideoRecognizer.from_config(cfg, ["one", "two", "three"], num_frames=2, image_size=32)
    folder = tmp_path_factory.mktemp("model") / "model"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def onnx_export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """A tiny-vit model (random weights, T=4, 32 px) with a MiniLM text classifier of the four
    colours, saved, exported with `text4vis export --int8`, and one colour clip per class in
    ``clips/``: ``{"model", "export", "videos"}``."""
    import torch

    from text4vis.cli import main
    from text4vis.config import DataConfig, ModelConfig
    from text4vis.models.video import VideoRecognizer

    root = tmp_path_factory.mktemp("onnx_export")
    records = write_colour_clips(root, per_class=1, frames=8, size=40)
    cfg = ModelConfig(
        arch="tiny-vit",
        temporal="transformer",
        temporal_layers=2,
        classifier="text",
        text_encoder="sentence-transformers:all-MiniLM-L6-v2",
    )
    torch.manual_seed(0)
    model = VideoRecognizer.from_config(cfg, list(COLOURS), num_frames=4)
    model.save_pretrained(
        root / "model", data_config=DataConfig(num_segments=4, input_size=32, resize_size=36)
    )
    export = root / "exp"
    assert main(["export", str(root / "model"), "--format", "onnx", "--out", str(export),
                 "--int8"]) == 0  # fmt: skip
    return {
        "model": root / "model",
        "export": export,
        "videos": [str(root / r.path) for r in records],
    }


# Python code run first in a new process: torch and torchvision become unimportable there (an
# import of either raises ImportError), for the paths that must run without PyTorch.
NO_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision"):
                raise ModuleNotFoundError(f"No module named {name!r} (unimportable in this test)", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    """
)

# `text4vis` runs of the argv lists given as JSON in argv[1], in one process without torch;
# prints per run its exit status and standard output, and the torch modules loaded.
_CLI_RUNS = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from text4vis.cli import main

    runs = []
    for argv in json.loads(sys.argv[1]):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(argv)
        runs.append({"code": code, "stdout": out.getvalue()})
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
    print(json.dumps({"runs": runs, "torch_loaded": loaded}))
    """
)


def run_without_torch(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run Python ``code`` (with ``args`` as ``sys.argv[1:]``) in a new process where torch
    cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH + code, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_cli_without_torch(argvs: list[list[str]], timeout: float = 120) -> dict[str, Any]:
    """Run the ``text4vis`` command lines ``argvs`` one after the other in a new process where
    torch cannot be imported: ``{"runs": [{"code", "stdout"}, ...], "torch_loaded": [...],
    "stderr": str}``."""
    done = run_without_torch(_CLI_RUNS, json.dumps(argvs), timeout=timeout)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["stderr"] = done.stderr
    return report

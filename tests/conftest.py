"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch a model hub; everything they need is made on the fly or ships in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(autouse=True)
def _few_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep torch from oversubscribing the CI machine's cores."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        return
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def demo_search_model(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny model trained the demo's way on the demo's synthetic actions, for the search and
    app tests: ``{"root", "dataset", "model_dir"}``.

    Demo settings (demo-vit from scratch, MiniLM text classifier, mean pooling) with 6 training
    clips per class and 6 epochs: about 20 s on 2 cores. At this budget the model has learnt the
    objects' colours reliably, their shapes only partly, and their direction not at all (mean
    pooling cannot), which is what the search tests rely on.
    """
    import dataclasses

    import torch

    from text4vis.config import config_from_dict
    from text4vis.demo import base_config_dict, demo_settings, make_demo_dataset
    from text4vis.engine.train import fit

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
    values["model"].update({"classifier": "text", "temporal": "mean"})  # the demo's text-mean run
    cfg = config_from_dict(values)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the demo does: faster than 2 threads beside the decoding
    try:
        summary = fit(cfg, run_dir=root / "run")
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "dataset": dataset, "model_dir": Path(summary["model_dir"])}

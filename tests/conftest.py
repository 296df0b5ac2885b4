"""Shared test fixtures."""

from __future__ import annotations

import os

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

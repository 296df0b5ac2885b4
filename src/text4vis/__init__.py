"""text4vis: transfer CLIP-style vision-language models to video recognition.

The classifier of a video model is a frozen matrix whose rows are text embeddings of the class
names; only the visual side learns. Importing the package is cheap: heavy modules (models,
decoders) load on first use of the names below.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# Public name -> module that defines it, imported on first access (PEP 562) so that
# `import text4vis` loads no decoder and no model code.
_LAZY = {
    "Config": "text4vis.config",
    "load_config": "text4vis.config",
    "VideoRecognizer": "text4vis.models.video",
    "Predictor": "text4vis.predict",
    "VideoIndex": "text4vis.search",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        return getattr(module, name)
    if name in {"data", "models", "engine"}:
        return importlib.import_module(f"text4vis.{name}")
    raise AttributeError(f"module 'text4vis' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY, "data", "models", "engine"])


__all__ = ["__version__", *_LAZY]

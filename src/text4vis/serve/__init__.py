"""``text4vis serve``: a JSON API and the page (``text4vis app``) on one ASGI application.

- :mod:`text4vis.serve.model`: :class:`ServedModel`, what the server asks of a model (a
  :class:`text4vis.Predictor`, or an export's :class:`~text4vis.onnx_runtime.OnnxPredictor`:
  serving an export imports no torch).
- :mod:`text4vis.serve.service`: :class:`VideoApp`, what the server does without HTTP (label,
  search, previews; paths read only inside the ``--allow`` folders).
- :mod:`text4vis.serve.batching`: :class:`ModelWorker`, the model's one thread and the bounded
  queue that batches concurrent requests into one forward pass.
- :mod:`text4vis.serve.guard`: the middleware: body size, admission, timeout, bugs as 500s.
- :mod:`text4vis.serve.app`: :func:`create_app`, the FastAPI application (its routes and the
  OpenAPI schema at ``/openapi.json``).
- :mod:`text4vis.serve.server`: running it with uvicorn.

Needs the ``serve`` extra (``pip install 'text4vis[serve]'``: FastAPI, uvicorn,
python-multipart); ``import text4vis`` does not import it.
"""

from __future__ import annotations

from text4vis.serve.app import ServeSettings, create_app
from text4vis.serve.batching import ModelWorker, Overloaded
from text4vis.serve.model import ServedModel
from text4vis.serve.server import RunningServer, run, start_in_thread
from text4vis.serve.service import LabelResult, PathNotAllowed, SearchResult, VideoApp

__all__ = [
    "LabelResult",
    "ModelWorker",
    "Overloaded",
    "PathNotAllowed",
    "RunningServer",
    "SearchResult",
    "ServeSettings",
    "ServedModel",
    "VideoApp",
    "create_app",
    "run",
    "start_in_thread",
]

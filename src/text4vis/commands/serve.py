"""`text4vis serve --model MODEL [--index INDEX] [--allow DIR ...]`: a JSON API and the page."""

from __future__ import annotations

import argparse
from typing import Any

from text4vis.console import setup_logging

COMMAND = "serve"
HELP = "a JSON API (label a video, search an index; OpenAPI at /openapi.json) and the page"
DESCRIPTION = """Serve the model over HTTP: a JSON API and the page of `text4vis app`, on one
ASGI application (FastAPI + uvicorn; needs `pip install 'text4vis[serve]'`).

routes:
  GET  /v1/health                 alive, queue and batching counts
  GET  /v1/model                  the model, its frames and classes, the index
  POST /v1/label                  JSON {"path": ..., "labels": [...], "top_k": 5}  (path in --allow)
  POST /v1/label/upload           multipart: video=@FILE, labels="a, b", top_k=5
  POST /v1/search                 JSON {"text": "a sentence"} or {"path": VIDEO}, "top_k": 10
  POST /v1/search/upload          multipart: video=@FILE, top_k=10
  GET  /openapi.json              the schema;  GET /  the page

Concurrent requests are batched into one forward pass (--max-batch, --max-wait-ms); at most
--max-queue requests wait for the model (one more gets 503 with Retry-After). It listens on
127.0.0.1 (this machine only) unless --host says otherwise; labelling by path reads only inside
the --allow folders.

--model is a saved model (PyTorch), or a folder of `text4vis export` (ONNX Runtime, without
PyTorch: labelling by upload or path, new label names through its text graph; no timelines, no
--index).

examples:
  text4vis serve --model runs/k400/model --index clips.index --allow /data/videos
  text4vis serve --model exported/ --precision int8 --allow /data/videos
  curl -F video=@clip.mp4 -F labels='dancing, cooking' http://127.0.0.1:8000/v1/label/upload
  curl -H 'Content-Type: application/json' -d '{"text": "a dog catching a frisbee"}' \\
       http://127.0.0.1:8000/v1/search
"""

# The top-level modules of the serve extra's packages (FastAPI, uvicorn, python-multipart).
SERVE_EXTRA = {"fastapi", "starlette", "pydantic", "pydantic_core", "uvicorn", "multipart",
               "python_multipart", "anyio", "h11"}  # fmt: skip


def add_server_arguments(parser: argparse.ArgumentParser, *, port: int, allow_help: str) -> None:
    """The options `serve` and `app` share: model, index, address, folders, limits."""
    from text4vis.commands._common import (
        SAVED_MODEL_HELP,
        add_precision_argument,
        add_saved_model_argument,
    )

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_saved_model_argument(
        parser,
        help_text=f"{SAVED_MODEL_HELP}, or a folder written by `text4vis export` (ONNX Runtime, "
        "no PyTorch; --precision fp32 or int8)",
    )
    parser.add_argument("--index", metavar="INDEX", help="index folder from `text4vis index`")
    parser.add_argument("--allow", action="append", default=None, metavar="DIR", help=allow_help)
    parser.add_argument("--port", type=int, default=port, help=f"port ({port}; 0 = any free port)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto)")
    add_precision_argument(parser, default="auto")
    limits = parser.add_argument_group("load")
    limits.add_argument(
        "--max-batch", type=int, default=8, help="videos per forward pass at most (8; 1 = none)"
    )
    limits.add_argument(
        "--max-wait-ms",
        type=float,
        default=10.0,
        help="how long a video waits for others to fill a batch (10 ms)",
    )
    limits.add_argument(
        "--max-queue",
        type=int,
        default=64,
        help="requests waiting for the model at most; one more gets 503 (64)",
    )
    limits.add_argument(
        "--max-body-mb", type=float, default=1024.0, help="largest upload in MiB (1024)"
    )
    limits.add_argument(
        "--timeout", type=float, default=120.0, help="seconds a request may take (120)"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_server_arguments(
        parser,
        port=8000,
        allow_help="a folder whose videos may be labelled or searched by path (repeat it for "
        "several; none: only uploads)",
    )


def start_server(args: argparse.Namespace, allow: list[str]) -> int:
    """Load the model (and index) and serve until interrupted: `serve` and `app`.

    ``--model`` may be an export folder (``text4vis export``): it runs on ONNX Runtime and nothing
    on its path imports torch (:mod:`text4vis.predict` does, so it is imported on the PyTorch
    path only).
    """
    import contextlib
    import signal

    from text4vis.commands._common import open_export
    from text4vis.onnx_runtime import is_export
    from text4vis.search import VideoIndex

    try:
        from text4vis.serve import ServeSettings, VideoApp, run
    except ImportError as exc:
        from text4vis.errors import UsageError

        if (exc.name or "").split(".")[0] not in SERVE_EXTRA:
            raise  # not a package of the extra: a bug, with its traceback
        raise UsageError(
            f"the server needs the serve extra ({exc.name} is missing): "
            "pip install 'text4vis[serve]'"
        ) from None

    settings = ServeSettings(
        max_body_mb=args.max_body_mb,
        timeout_s=args.timeout,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
    )
    settings.check()
    setup_logging("INFO")
    # An export's index must have been built with the export or its source model (checked when
    # the server attaches it); text4vis.search imports no torch.
    index = VideoIndex.load(args.index) if args.index else None
    views = index.meta["data"]["views"] if index is not None else "1x1"
    if is_export(args.model):  # ONNX Runtime: the text and video graphs, no torch
        model = open_export(args.model, args, views)
    else:
        model = _load_predictor(args, views)
    video_app = VideoApp(
        model,
        index,
        allow=allow,
        max_batch=settings.max_batch,
        max_wait_s=settings.max_wait_ms / 1000,
        max_queue=settings.max_queue,
    )
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as Ctrl+C does, cleaning up
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C is how a user stops the server
        run(video_app, settings, args.host, args.port)
    return 0


def _load_predictor(args: argparse.Namespace, views: str) -> Any:
    """A saved model on PyTorch (:class:`text4vis.Predictor`)."""
    from text4vis.predict import Predictor

    return Predictor.from_pretrained(
        args.model,
        views=views,
        num_workers=0,
        device=args.device,
        precision=args.precision,
    )


def run(args: argparse.Namespace) -> int:
    return start_server(args, args.allow or [])


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt

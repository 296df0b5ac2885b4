"""`text4vis app --model MODEL [--index INDEX]`: a local page to label videos and search an index."""

from __future__ import annotations

import argparse

COMMAND = "app"
HELP = "a local web page: label a video with your own label names, search an index by text"
DESCRIPTION = """Serve a page on this machine (nothing is fetched from the network) with two parts:
Label (upload a video or give a path, type label names or load a label file; ranked labels as
bars and the frames the model looked at) and Search (a sentence -> the best-matching videos of
--index as thumbnails with scores; a click plays one).

examples:
  text4vis app --model runs/k400/model --index clips.index
  text4vis app --model runs/k400/model --port 8080 --host 0.0.0.0     (reachable from others)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from text4vis.commands._common import add_precision_argument, add_saved_model_argument

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_saved_model_argument(parser)
    parser.add_argument("--index", metavar="INDEX", help="index folder from `text4vis index`")
    parser.add_argument("--port", type=int, default=7860, help="port (7860; 0 = any free port)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (127.0.0.1: this machine only)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto)")
    add_precision_argument(parser, default="auto")


def run(args: argparse.Namespace) -> int:
    import contextlib
    import signal

    from text4vis.app import VideoApp, serve
    from text4vis.predict import Predictor
    from text4vis.runs import setup_logging
    from text4vis.search import VideoIndex

    setup_logging("INFO")
    index = VideoIndex.load(args.index) if args.index else None
    views = index.meta["data"]["views"] if index is not None else "1x1"
    predictor = Predictor.from_pretrained(
        args.model, views=views, num_workers=0, device=args.device, precision=args.precision
    )
    app = VideoApp(predictor, index)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops it as Ctrl+C does, cleaning up
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl+C is how a user stops the page
        serve(app, args.host, args.port)
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt

"""`text4vis app --model MODEL [--index INDEX]`: a local page to label videos and search an index."""

from __future__ import annotations

import argparse

COMMAND = "app"
HELP = "a local web page: label a video with your own label names, search an index by text"
DESCRIPTION = """Serve a page on this machine (nothing is fetched from the network) with two parts:
Label (upload a video or give a path, type label names or load a label file; ranked labels as
bars and the frames the model looked at) and Search (a sentence -> the best-matching videos of
--index as thumbnails with scores; a click plays one).

It is the server of `text4vis serve` (the same JSON API at /v1 beside the page) on port 7860;
paths typed on the page are read only inside --allow folders (default: the current folder).

examples:
  text4vis app --model runs/k400/model --index clips.index
  text4vis app --model runs/k400/model --allow /data/videos --allow ~/clips
  text4vis app --model runs/k400/model --port 8080 --host 0.0.0.0     (reachable from others)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from text4vis.commands.serve import add_server_arguments

    add_server_arguments(
        parser,
        port=7860,
        allow_help="a folder whose videos may be labelled by typing their path (repeat it for "
        "several; default: the current folder)",
    )


def run(args: argparse.Namespace) -> int:
    from text4vis.commands.serve import start_server

    return start_server(args, args.allow if args.allow is not None else ["."])

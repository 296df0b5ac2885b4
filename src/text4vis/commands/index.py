"""`text4vis index VIDEOS... --model MODEL --out INDEX`: embed a collection of videos for search."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from text4vis.console import setup_logging
from text4vis.errors import UsageError

COMMAND = "index"
HELP = "embed a folder of videos into an index that `text4vis search` ranks by a sentence"
DESCRIPTION = """Embed every video into a search index (normalised embeddings + file list).

Inputs are taken as `predict` takes them: video files, frame folders, or folders searched
recursively for both. Running it again on the same --out brings the index in step with the files:
new and changed videos (size or modification time) are embedded, removed ones dropped, unchanged
ones kept without running the model. Without VIDEOS, the inputs of the last run are scanned
again. An unreadable video is listed (stderr and index.json) while the others complete; the exit
status is then 1.

examples:
  text4vis index clips/ --model runs/k400/model --out clips.index
  text4vis index --model runs/k400/model --out clips.index          (update after changes)
  text4vis index clips/ --model runs/k400/model --out clips.index --precision int8   (CPU)
  text4vis index clips/ --model runs/k400/model --out clips.index --storage float16
  text4vis index long/ --model runs/k400/model --out moments.index --segments 8 --stride 4
  text4vis index clips/ --model exported/ --out clips.index     (an export: no PyTorch)

--model may be a folder written by `text4vis export` (ONNX Runtime, no PyTorch imported; its
int8 graph with --precision int8). An export records the identity of the model it was exported
from, so an index built with the model is updated and searched with its export and the reverse;
any other model is refused. An export indexes whole videos in one process: --segments and
torchrun need the PyTorch model.

--segments SECONDS indexes windows of each video instead of whole videos: one row per window
of SECONDS every --stride seconds (default: SECONDS, no overlap), with its start and end, read
in one pass over each file as `predict --window` reads it; `text4vis search` then returns the
moments (video, start, end, score). An update re-embeds the segments of changed files only; it
keeps the index's segment settings, and other ones are refused (give --rebuild).

--storage float16 keeps the vectors at half the bytes: half the memory and about half the time
of an exact search, at a recall@10 against float32 that benchmarks/search_exact.py measures.
(--precision is the model's inference precision, not the storage's.) The index is saved
atomically: a run stopped at any moment leaves the previous index, which opens and searches.

Under torchrun the videos to embed are spread over the processes in units of --chunk-size
videos; each unit is written as a shard in INDEX/shards/ and rank 0 merges them into the
index (the same rows and vectors as one process). Run the same command again after a stop:
units already written are not embedded again. INDEX must be on a file system every node sees.
  torchrun --nproc-per-node 4 -m text4vis index clips/ --model MODEL --out clips.index
  torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 --rdzv-backend c10d \
      --rdzv-endpoint HOST:29500 -m text4vis index clips/ --model MODEL --out clips.index
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from text4vis.commands._common import add_precision_argument, add_saved_model_argument

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "videos",
        nargs="*",
        metavar="VIDEO_OR_DIR",
        help="video files, frame folders or folders (default: the inputs the index was built from)",
    )
    add_saved_model_argument(parser)
    parser.add_argument("--out", required=True, metavar="INDEX", help="index folder")
    parser.add_argument(
        "--rebuild", action="store_true", help="start a new index even if --out holds one"
    )
    parser.add_argument(
        "--views",
        default=None,
        help="CLIPSxCROPS views per video, e.g. 1x1 or 4x3 (default: the index's, else 1x1)",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="videos per forward pass (8)")
    parser.add_argument("--workers", type=int, default=2, help="video decoding processes (2)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto)")
    add_precision_argument(parser, default="auto")
    parser.add_argument(
        "--storage",
        choices=["float32", "float16"],
        default=None,
        help="how the vectors are stored and searched (default: the index's, else float32)",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="videos embedded between saves, and per unit under torchrun (64 x batch size)",
    )
    parser.add_argument(
        "--segments",
        type=float,
        default=None,
        metavar="SECONDS",
        help="index windows of SECONDS of each video, with their start/end (default: whole videos)",
    )
    parser.add_argument(
        "--stride",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between segment starts (default: the --segments length)",
    )
    parser.add_argument("--json", action="store_true", help="print what was done as JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from text4vis.onnx_runtime import is_export

    # An export folder runs on ONNX Runtime: nothing on its path imports torch (text4vis.runs,
    # text4vis.predict and starting a process group do), so its branch comes first.
    if is_export(args.model):
        return _run_export(args)
    from text4vis.distributed import is_main_process, process_group

    setup_logging("INFO" if is_main_process() else "WARNING")
    with process_group(args.device):  # under torchrun: one process group for the update
        return _run(args, lambda views: _load_model(args, views))


def _load_model(args: argparse.Namespace, views: str) -> Any:
    """The PyTorch :class:`~text4vis.predict.Predictor` of ``--model``."""
    from text4vis.predict import Predictor

    return Predictor.from_pretrained(
        args.model,
        views=views,
        batch_size=args.batch_size,
        num_workers=args.workers,
        device=args.device,
        precision=args.precision,
    )


def _run_export(args: argparse.Namespace) -> int:
    """``--model EXPORT_DIR``: the same index, embedded on ONNX Runtime without torch."""
    from text4vis.commands._common import check_export_flags, open_export

    setup_logging("INFO")
    check_export_flags(args.model, args)  # before an index is opened
    return _run(args, lambda views: open_export(args.model, args, views))


def _run(args: argparse.Namespace, load_model: Callable[[str], Any]) -> int:
    """Build or update the index with the model ``load_model(views)`` gives."""
    import json
    import sys
    from pathlib import Path

    from text4vis.distributed import is_main_process
    from text4vis.index_shards import SHARDS_NAME
    from text4vis.search import META_NAME, VideoIndex, VideoIndexError

    out = Path(args.out)
    existing = None
    if not args.rebuild and (out / META_NAME).is_file():
        existing = VideoIndex.load(out)
    elif out.exists() and not (out / META_NAME).is_file():
        # A stopped first run leaves only its shards (and a generation not yet named).
        others = [p.name for p in out.iterdir() if p.name != SHARDS_NAME and p.name[:1] != "v"]
        if others:
            raise VideoIndexError(
                f"--out {out} exists and is not a video index; give a new or empty folder"
            )
    if existing is not None:
        existing.check_segments(args.segments, args.stride)  # before the model is loaded
    views = args.views or (existing.info.data["views"] if existing is not None else "1x1")
    predictor = load_model(views)
    progress = not args.no_progress
    source = str(Path(args.model).resolve())
    if existing is None:
        if not args.videos:
            raise UsageError("give the videos to index (files, frame folders or folders)")
        index = VideoIndex.build(
            args.videos,
            predictor,
            out,
            progress=progress,
            model_source=source,
            storage=args.storage or "float32",
            chunk_size=args.chunk_size,
            segments=args.segments,
            stride=args.stride,
        )
    else:
        existing.use_model(predictor, source)  # checks the model and the data settings
        existing.info.model.source = source
        if args.storage:
            existing.storage = args.storage
        existing.update(args.videos or None, progress=progress, chunk_size=args.chunk_size)
        index = existing
    report = index.last_update
    assert report is not None
    if not is_main_process():
        return 0
    videos = len(index) if index.segments is None else len(set(index.videos.paths()))
    if args.json:
        counts = {"index": str(out), "videos": videos}
        if index.segments is not None:
            counts |= {"segments": len(index)} | dict(index.segments)
        print(json.dumps(counts | report.to_dict(), indent=2))
    else:
        rows = f" in {len(index)} segments" if index.segments is not None else ""
        print(
            f"{out}: {videos} videos indexed{rows} ({len(report.added)} new, "
            f"{len(report.changed)} changed, {len(report.removed)} removed, "
            f"{report.unchanged} unchanged; {report.embedded} embedded)"
        )
    for failure in report.failed:
        print(f"text4vis index: cannot read {failure.path}: {failure.reason}", file=sys.stderr)
    if report.failed:
        print(
            f"text4vis index: {len(report.failed)} videos could not be read (listed in "
            f"{out / META_NAME}; tried again at the next update)",
            file=sys.stderr,
        )
    return 1 if report.failed else 0

"""`text4vis search INDEX "a sentence"`: rank the videos of an index by a sentence or a video."""

from __future__ import annotations

import argparse

from text4vis.console import setup_logging
from text4vis.errors import MissingFileError, UsageError

COMMAND = "search"
HELP = "find the videos of an index that best match a sentence (or look like a video)"
DESCRIPTION = """Rank the videos of an index (made by `text4vis index`) by cosine similarity with
the text embedding of a sentence, made with the model's own text encoder and prompt, or with the
embedding of a video (--like).

The model is the one the index was built with (recorded in the index); --model points to it when it
has moved. An index built with an export (`text4vis export`) is searched with it on ONNX Runtime,
without PyTorch: a sentence through the export's text graph, --like through its video graph; --model
may also name the export of the model an index was built with (or the reverse). --backend faiss-ivf
/ faiss-hnsw searches approximately (pip install 'text4vis[search]'); exact search is the default:
it reads the stored vectors once per query (on a loaded 2-core machine, 0.15 s at 10^6 videos in
float32, 0.07 s with `index --storage float16`), and the index opens in milliseconds (its vectors
are memory-mapped).
faiss-ivf picks its cells from the number of videos (sqrt(N)) and the cells it scans per query
(nprobe) for --recall on 200 queries drawn from the index; it says on stderr what it reached.
The FAISS index is built at the first search and kept in the index folder.

examples:
  text4vis search clips.index "a person surfing" --top-k 10
  text4vis search clips.index --like clips/a.mp4 --json
  text4vis search clips.index "a red circle moving left" --csv hits.csv
  text4vis search clips.index "a person surfing" --backend faiss-ivf --recall 0.95
  text4vis search moments.index "a person surfing" --json     (an index made with --segments)
  text4vis search moments.index --like long/a.mp4@30-38       (like seconds 30 to 38 of a.mp4)
  text4vis search clips.index "a person surfing" --model exported/   (an export: no PyTorch)

An index made with `text4vis index --segments` holds moments: each hit is a video with the
start and end (seconds) of its segment. --like takes a video or a segment of one, VIDEO@START-END.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from text4vis.commands._common import add_precision_argument, add_saved_model_argument

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("index", metavar="INDEX", help="index folder written by `text4vis index`")
    parser.add_argument("query", nargs="?", default=None, metavar="TEXT", help="a sentence")
    parser.add_argument(
        "--like",
        metavar="VIDEO[@START-END]",
        help="rank by similarity to this video, or to seconds START-END of it, instead",
    )
    add_saved_model_argument(
        parser,
        required=False,
        help_text="the index's model (default: where the index says it was)",
    )
    parser.add_argument("--top-k", type=int, default=10, help="videos shown (10)")
    parser.add_argument(
        "--backend",
        default="exact",  # checked by VideoIndex.load
        help="exact (default), or faiss-ivf / faiss-hnsw: an approximate FAISS index",
    )
    parser.add_argument(
        "--recall",
        type=float,
        default=0.95,
        help="faiss-ivf: the recall@10 its nprobe is tuned for, on the index's vectors (0.95)",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--csv", metavar="FILE", help="write a CSV file ('-' = standard output)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto)")
    add_precision_argument(parser, default="auto")


def run(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from text4vis.commands._common import open_export
    from text4vis.onnx_runtime import is_export
    from text4vis.search import VideoIndex, VideoIndexError

    # Nothing here imports torch unless the model is a PyTorch one (text4vis.predict).
    setup_logging("WARNING")
    if (args.query is None) == (args.like is None):
        raise VideoIndexError(
            'give a sentence or --like VIDEO (one of them), e.g. "a person surfing"'
        )
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    options = {"recall": args.recall} if args.backend == "faiss-ivf" else {}
    index = VideoIndex.load(args.index, backend=args.backend, backend_options=options)
    model = args.model or index.info.model.source
    needs_model = args.query is not None or "@" in args.like or args.like not in index
    if needs_model:
        if not model:
            raise VideoIndexError(f"{args.index} does not record its model; give --model MODEL")
        if args.model is None and not Path(model).exists():
            raise MissingFileError(
                f"the index's model {model} is no longer there; give --model MODEL"
            )
        data_views = index.info.data["views"]
        if is_export(model):
            predictor = open_export(model, args, data_views)
        else:
            from text4vis.predict import Predictor

            predictor = Predictor.from_pretrained(
                model, views=data_views, num_workers=0, device=args.device, precision=args.precision
            )
        index.use_model(predictor, model)
    hits = index.search(text=args.query, like=args.like, top_k=args.top_k)
    tuning = getattr(index.backend(), "tuning", None) if len(index) else None
    if tuning is not None:
        print(tuning.describe(), file=sys.stderr)
    if args.json:
        query = {"text": args.query} if args.query is not None else {"like": args.like}
        print(json.dumps(query | {"hits": [h.to_dict() for h in hits]}, indent=2))
    elif args.csv:
        _write_csv(hits, args.csv)
    else:
        for hit in hits:
            span = "" if hit.start is None else f"  {hit.start:8.2f}-{hit.end:<8.2f}"
            print(f"{hit.rank:>3}  {hit.score:.4f}{span}  {hit.video}")
    return 0


def _write_csv(hits: list, target: str) -> None:
    """One row per hit: ``rank,video,score`` (and ``start,end`` for a segment index)."""
    from text4vis.commands._common import write_csv

    if any(h.start is not None for h in hits):
        rows = ([h.rank, h.video, f"{h.score:.6f}", h.start, h.end] for h in hits)
        write_csv(target, ["rank", "video", "score", "start", "end"], rows)
        return
    write_csv(
        target, ["rank", "video", "score"], ([h.rank, h.video, f"{h.score:.6f}"] for h in hits)
    )

"""`text4vis predict VIDEO_OR_DIR ... --labels ...`: rank label names for your own videos."""

from __future__ import annotations

import argparse
from typing import Any

from text4vis.commands._common import add_precision_argument
from text4vis.console import setup_logging
from text4vis.errors import UsageError

COMMAND = "predict"
HELP = "label your own videos with your own label names (zero-shot or with a trained model)"
DESCRIPTION = """Rank label names for videos with a trained model or a CLIP backbone.

Inputs are video files, frame folders (holding img_00001.jpg ...) or folders, which are searched
recursively for both. --labels is "a,b,c", a label CSV (id,name) or a file with one label per
line; without it a trained model uses its own class names. Scores are probabilities over the
label set (softmax of logit_scale * cosine). An unreadable video gets an error entry (and a line
on stderr) while the others complete; the exit status is then 1.

examples:
  text4vis predict clips/ --model runs/k400/model --labels "dancing,cooking,surfing"
  text4vis predict clips/ --model exported/ --precision int8 --json   (ONNX Runtime, no PyTorch)
  text4vis predict a.mp4 b.mp4 --arch ViT-B-16 --weights ViT-B-16.pt --labels labels.txt --json
  text4vis predict clips/ --checkpoint runs/k400/20260101-000000/checkpoints/best.pt --csv out.csv

a timeline of a long video (--window): every window of SECONDS, every --stride seconds, labelled,
and consecutive windows with the same top label merged into segments; --json gives per video its
"windows" (start, end, labels) and "segments" (start, end, label, score), --csv one row per window:
  text4vis predict match.mp4 --model runs/k400/model --window 4 --stride 2 --smooth 3
  text4vis predict frames/match/ --model runs/k400/model --window 4 --fps 30 --json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "videos", nargs="*", metavar="VIDEO_OR_DIR", help="video files, frame folders or folders"
    )
    parser.add_argument(
        "--labels",
        default=None,
        help='label names: "a,b,c", a label CSV `id,name`, or a file with one label per line '
        "(default: a trained model's own classes)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model",
        metavar="DIR",
        help="model folder written by save_pretrained, or a folder written by `text4vis export` "
        "(run on ONNX Runtime without PyTorch; --precision fp32 or int8)",
    )
    source.add_argument("--checkpoint", metavar="CKPT", help="training checkpoint (.pt)")
    source.add_argument(
        "--arch",
        metavar="NAME",
        help="zero-shot with a CLIP backbone, e.g. ViT-B-16 (mean pooling)",
    )
    parser.add_argument(
        "--weights",
        metavar="TAG_OR_PATH",
        default="",
        help="with --arch: open_clip pretrained tag or local weight file",
    )
    parser.add_argument(
        "--templates",
        metavar="NAME",
        default=None,
        help="prompts for new labels: classname, a template set (kinetics, short) or one "
        "template with {} (default: the model's own prompt settings)",
    )
    parser.add_argument(
        "--views", default="1x1", help="CLIPSxCROPS views per video, e.g. 1x1 or 4x3 (1x1)"
    )
    parser.add_argument("--top-k", type=int, default=5, help="labels shown per video (5)")
    output = parser.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print JSON instead of a table")
    output.add_argument("--csv", metavar="FILE", help="write a CSV file ('-' = standard output)")
    parser.add_argument("--batch-size", type=int, default=8, help="videos per forward pass (8)")
    parser.add_argument("--workers", type=int, default=2, help="video decoding processes (2)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (auto)")
    add_precision_argument(parser, default="auto")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="data.KEY=VALUE",
        help="override how videos are read, e.g. --set data.num_segments=16 or "
        "--set data.frame_template=frame_{:04d}.jpg (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    timeline = parser.add_argument_group("timelines of long videos")
    timeline.add_argument(
        "--window",
        type=float,
        metavar="SECONDS",
        help="label every window of this many seconds (a timeline) instead of the whole video",
    )
    timeline.add_argument(
        "--stride",
        type=float,
        metavar="SECONDS",
        help="seconds between window starts (default: the window, no overlap)",
    )
    timeline.add_argument(
        "--smooth",
        type=int,
        default=1,
        metavar="N",
        help="average the scores of N windows centred on each before merging (1 = none)",
    )
    timeline.add_argument(
        "--fps", type=float, help="frame rate of frame folders (their frames hold no times)"
    )
    live = parser.add_argument_group("live streams")
    live.add_argument(
        "--live",
        metavar="SOURCE",
        help="label a stream as it plays: a camera (/dev/video0), a URL FFmpeg reads (rtsp, "
        "http, udp, srt) or - (standard input); --window (4) and --stride (2) in seconds",
    )
    live.add_argument(
        "--retry", type=int, default=0, metavar="N", help="reopen a stream that drops N times (0)"
    )


def run(args: argparse.Namespace) -> int:
    from text4vis.data.discovery import find_videos
    from text4vis.data.labels import parse_labels
    from text4vis.onnx_runtime import is_export

    # An export folder runs on ONNX Runtime: nothing on its path may import torch (text4vis.predict
    # and text4vis.runs do), so the torch path's imports come after the export's branch.
    if args.weights and not args.arch:
        raise UsageError("--weights goes with --arch NAME (a CLIP backbone)")
    if args.top_k < 1:
        raise UsageError(f"--top-k must be at least 1, got {args.top_k}")
    if args.live is not None:
        if args.videos:
            raise UsageError("--live SOURCE labels one stream; give no videos with it")
    elif args.retry:
        raise UsageError("--retry goes with --live SOURCE")
    if args.window is None and args.live is None:
        for flag, value, default in (
            ("--stride", args.stride, None),
            ("--smooth", args.smooth, 1),
            ("--fps", args.fps, None),
        ):
            if value != default:
                raise UsageError(f"{flag} goes with --window SECONDS (a timeline of each video)")
    if (args.window is not None or args.live is not None) and args.views != "1x1":
        raise UsageError(
            f"--views {args.views}: timelines and live streams label one view per window "
            "(the centre crop); leave --views out"
        )
    if not args.videos and args.live is None:
        raise UsageError("no videos: give video files, frame folders or folders (or --live SOURCE)")
    if args.checkpoint and is_export(args.checkpoint):
        raise UsageError(
            f"--checkpoint {args.checkpoint} is an export folder (text4vis export); give it as "
            f"--model {args.checkpoint}"
        )
    if args.model and is_export(args.model):
        return _run_export(args)
    from text4vis.predict import PredictError, Predictor

    setup_logging("INFO")
    labels = parse_labels(args.labels) if args.labels is not None else None
    options: dict[str, Any] = {
        "templates": args.templates,
        "views": args.views,
        "batch_size": args.batch_size,
        "num_workers": args.workers,
        "device": args.device,
        "precision": args.precision,
        "progress": not args.no_progress,
    }
    if args.model or args.checkpoint:
        predictor = Predictor.from_pretrained(args.model or args.checkpoint, **options)
    elif args.arch:
        predictor = Predictor.from_backbone(args.arch, args.weights, **options)
    else:
        raise PredictError(
            "no model: give --model DIR (a saved model), --checkpoint CKPT (a training "
            "checkpoint) or --arch NAME --weights TAG_OR_PATH (zero-shot CLIP)"
        )
    if args.overrides:
        predictor.data = _override_data(predictor.data, args.overrides)
    if args.live is not None:
        return _run_live(predictor, labels, args)
    data = predictor.data
    videos = find_videos(
        args.videos, frame_template=data.frame_template, start_index=data.frame_start_index
    )
    if args.window is not None:
        return _run_timelines(predictor, videos, labels, args)
    results = predictor.predict_files(videos, labels, top_k=args.top_k)
    return _report(results, args)


def _report(results: list[Any], args: argparse.Namespace) -> int:
    """Print (or write) the results as ``--json``, ``--csv`` or a table; name the unreadable
    videos on stderr. Returns the exit status: 1 when some video could not be read."""
    import sys

    if args.json:
        import json

        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif args.csv:
        _write_csv(results, args.csv)
    else:
        print(format_table(results), end="")
    failed = [r for r in results if r.error is not None]
    for result in failed:
        print(f"text4vis predict: cannot read {result.video}: {result.error}", file=sys.stderr)
    if failed:
        print(
            f"text4vis predict: {len(failed)} of {len(results)} videos could not be read",
            file=sys.stderr,
        )
    return 1 if failed else 0


def _refused_on_export(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The flags given that an export cannot honour, each with the reason."""
    refused = []
    if args.window is not None:
        refused.append(("--window", "timelines of long videos run on the PyTorch model only"))
    if args.live is not None:
        refused.append(("--live", "live streams run on the PyTorch model only"))
    if args.overrides:
        refused.append(
            (
                "--set",
                "an export reads videos as its export.json says (its graph takes that many "
                "frames of that size); export the model again with other data settings",
            )
        )
    if args.device not in ("auto", "cpu"):
        refused.append(("--device", "an export runs on the CPU (ONNX Runtime); leave it out"))
    if args.precision not in ("auto", "fp32", "int8"):
        refused.append(
            ("--precision", "an export has an fp32 graph and, exported with --int8, an int8 one")
        )
    return refused


def _run_export(args: argparse.Namespace) -> int:
    """``--model EXPORT_DIR``: label the videos with :class:`text4vis.onnx_runtime.OnnxPredictor`
    (ONNX Runtime, no torch import) and print them as the PyTorch path does."""
    from text4vis.data.discovery import find_videos
    from text4vis.data.labels import parse_labels
    from text4vis.onnx_runtime import OnnxPredictor, parse_views

    setup_logging("INFO")
    for flag, reason in _refused_on_export(args):
        value = getattr(args, flag[2:].replace("-", "_"), None)
        shown = f"{flag} {value}" if isinstance(value, (str, float, int)) else flag
        raise UsageError(f"{shown}: --model {args.model} is an export folder, and {reason}")
    try:
        parse_views(args.views)
    except ValueError as exc:
        raise UsageError(f"--views {args.views}: {exc} (an export reads 1 or 3 crops)") from None
    if args.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.workers < 0:
        raise UsageError(f"--workers must be 0 or more, got {args.workers}")
    labels = parse_labels(args.labels) if args.labels is not None else None
    predictor = OnnxPredictor.from_export(
        args.model,
        precision="fp32" if args.precision == "auto" else args.precision,
        templates=args.templates,
        views=args.views,
        batch_size=args.batch_size,
        num_workers=args.workers,
    )
    videos = find_videos(
        args.videos,
        frame_template=predictor.frame_template,
        start_index=predictor.frame_start_index,
    )
    results = predictor.predict_files(videos, labels, top_k=args.top_k)
    return _report(results, args)


def _override_data(data: Any, overrides: list[str]) -> Any:
    """Apply ``data.KEY=VALUE`` overrides to a data config (other sections are refused)."""
    import dataclasses

    from text4vis.config import ConfigError, apply_overrides, config_from_dict, parse_override

    for text in overrides:
        path, _ = parse_override(text)
        if path[0] != "data" or len(path) != 2:
            raise ConfigError(
                f"--set {text}: predict reads only data.KEY overrides (how videos are decoded and "
                "sampled), e.g. data.num_segments=16"
            )
    values = apply_overrides({"data": dataclasses.asdict(data)}, overrides)
    return config_from_dict(values).data


def format_table(results: list[Any]) -> str:
    """A readable table: per video its path, then one line per ranked label (or its error)."""
    width = max([len(p["label"]) for r in results for p in (r.predictions or [])] + [len("label")])
    lines = []
    for result in results:
        lines.append(result.video)
        if result.error is not None:
            lines.append(f"  error: {result.error}")
            continue
        for rank, entry in enumerate(result.predictions, start=1):
            lines.append(f"  {rank:>2}  {entry['label']:<{width}}  {entry['score']:.4f}")
    return "\n".join(lines) + "\n"


def _write_csv(results: list[Any], target: str) -> None:
    """One row per (video, rank): ``video,rank,label,score,error``; a failed video has one row
    with only ``video`` and ``error``."""
    import logging

    from text4vis.commands._common import write_csv

    def rows() -> Any:
        for result in results:
            if result.error is not None:
                yield [result.video, "", "", "", result.error]
                continue
            for rank, entry in enumerate(result.predictions, start=1):
                yield [result.video, rank, entry["label"], f"{entry['score']:.6f}", ""]

    write_csv(target, ["video", "rank", "label", "score", "error"], rows())
    if target != "-":
        logging.getLogger("text4vis.commands.predict").info(
            "wrote %d videos' predictions to %s", len(results), target
        )


# ----------------------------------------------------------------------------------------------
# Timelines
# ----------------------------------------------------------------------------------------------


def _run_timelines(predictor: Any, videos: list[str], labels: Any, args: Any) -> int:
    import json
    import sys

    results = predictor.timeline_files(
        videos,
        window=args.window,
        stride=args.stride,
        labels=labels,
        top_k=args.top_k,
        smooth=args.smooth,
        fps=args.fps,
    )
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
    elif args.csv:
        _write_timeline_csv(results, args.csv)
    else:
        print(format_timeline_table(results), end="")
    failed = [r for r in results if r.error is not None]
    for result in failed:
        print(f"text4vis predict: cannot read {result.video}: {result.error}", file=sys.stderr)
    return 1 if failed else 0


def _clock(seconds: float) -> str:
    """``M:SS.ss`` (or ``H:MM:SS.ss``) for a time in seconds."""
    minutes, secs = divmod(seconds, 60.0)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:05.2f}"
    return f"{minutes}:{secs:05.2f}"


def format_timeline_table(results: list[Any]) -> str:
    """Per video: its segments (start - end, label, score), then its windows with their top
    labels (or its error)."""
    lines = []
    for result in results:
        if result.error is not None:
            lines += [result.video, f"  error: {result.error}"]
            continue
        lines.append(
            f"{result.video}  ({result.duration:.2f} s; windows of {result.window:g} s every "
            f"{result.stride:g} s{f', smoothed over {result.smooth}' if result.smooth > 1 else ''})"
        )
        width = max(len(s.label) for s in result.segments)
        lines.append(f"  segments ({len(result.segments)})")
        for segment in result.segments:
            lines.append(
                f"    {_clock(segment.start):>10} - {_clock(segment.end):>10}  "
                f"{segment.label:<{width}}  {segment.score:.4f}"
            )
        lines.append(f"  windows ({len(result.windows)})")
        for window in result.windows:
            ranked = ", ".join(f"{e.label} {e.score:.3f}" for e in window.labels[:3])
            lines.append(f"    {_clock(window.start):>10} - {_clock(window.end):>10}  {ranked}")
    return "\n".join(lines) + "\n"


def _write_timeline_csv(results: list[Any], target: str) -> None:
    """One row per window: ``video,start,end,label,score,labels,error`` (``label``/``score`` the
    best; ``labels`` the ranked ``label:score`` pairs joined by ``;``); a failed video has one row
    with only ``video`` and ``error``."""
    from text4vis.commands._common import write_csv

    def rows() -> Any:
        for result in results:
            if result.error is not None:
                yield [result.video, "", "", "", "", "", result.error]
                continue
            for window in result.windows:
                ranked = ";".join(f"{e.label}:{e.score:.6f}" for e in window.labels)
                yield [
                    result.video,
                    f"{window.start:.3f}",
                    f"{window.end:.3f}",
                    window.top.label,
                    f"{window.top.score:.6f}",
                    ranked,
                    "",
                ]

    write_csv(target, ["video", "start", "end", "label", "score", "labels", "error"], rows())


# ----------------------------------------------------------------------------------------------
# Live
# ----------------------------------------------------------------------------------------------


def _run_live(predictor: Any, labels: Any, args: Any) -> int:
    """Print labels as they change (``--json``: one object a line per window, then a summary
    line); Ctrl-C ends cleanly. Exit status 1 when the stream failed (after ``--retry``)."""
    import json
    import sys

    window = args.window if args.window is not None else 4.0
    stride = args.stride if args.stride is not None else min(2.0, window)
    session = predictor.live(
        args.live, window=window, stride=stride, labels=labels, top_k=args.top_k, retry=args.retry
    )
    try:
        for result in session:
            if args.json:
                print(json.dumps(result.to_dict()), flush=True)
            elif result.changed:
                skipped = (
                    f"; skipped {result.skipped_frames} frames" if result.skipped_frames else ""
                )
                print(
                    f"{_clock(result.stream_time):>10}  {result.top.label}  "
                    f"{result.top.score:.3f}  (delay {result.delay:.2f} s{skipped})",
                    flush=True,
                )
    except KeyboardInterrupt:
        session.stop()
        session.summary.ended = "interrupted (Ctrl-C)"
    summary = session.summary.to_dict()
    if args.json:
        print(json.dumps({"summary": summary}), flush=True)
    else:
        delays = (
            f"; delay median {summary['delay_median']:.2f} s, max {summary['delay_max']:.2f} s"
            if summary["windows"]
            else ""
        )
        print(
            f"{args.live}: {summary['ended']}: {summary['windows']} windows over "
            f"{summary['stream_seconds']:.1f} s of stream, {summary['frames']} frames, "
            f"{summary['skipped_frames']} skipped{delays}",
            flush=True,
        )
    if not session.summary.ok:
        print(f"text4vis predict: {args.live}: {session.summary.ended}", file=sys.stderr)
        return 1
    return 0

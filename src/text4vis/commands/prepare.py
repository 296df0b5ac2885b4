"""`text4vis prepare lists|frames|check`: list files, frame extraction, readability check."""

from __future__ import annotations

import argparse

COMMAND = "prepare"
HELP = "prepare data: list files from class folders, frame extraction, readability check"
DESCRIPTION = """Prepare a dataset.

  lists DIR --out OUT     labels.csv + train.txt (+ val.txt) from DIR/<class>/<clips>
  frames LIST --out OUT   extract JPEG frames (short side 320 px) of every video of LIST
  check LIST              open every entry of LIST; write the unreadable ones with reasons
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    lists = sub.add_parser("lists", help="labels.csv and list files from a folder of class folders")
    lists.add_argument("root", metavar="DIR", help="folder with one sub-folder per class")
    lists.add_argument("--out", required=True, help="output folder for labels.csv and lists")
    lists.add_argument(
        "--format",
        choices=["video", "frames"],
        default="video",
        help="clips are video files or frame folders (default: video)",
    )
    lists.add_argument(
        "--val-fraction", type=float, default=0.0, help="share of each class put in val.txt"
    )
    lists.add_argument("--seed", type=int, default=0, help="seed of the train/val split")
    _add_frame_naming(lists)

    frames = sub.add_parser("frames", help="extract JPEG frames of every video of a list")
    frames.add_argument("list_file", metavar="LIST", help="video list (`path label` lines)")
    frames.add_argument("--out", required=True, help="output folder for frame folders and list")
    frames.add_argument("--root", default=None, help="folder the list's paths are relative to")
    frames.add_argument("--short-side", type=int, default=320, help="short side in px (320)")
    frames.add_argument("--workers", type=int, default=2, help="parallel processes (2)")
    frames.add_argument("--quality", type=int, default=90, help="JPEG quality (90)")
    _add_frame_naming(frames)

    check = sub.add_parser("check", help="open every entry of a list and report unreadable ones")
    check.add_argument("list_file", metavar="LIST", help="video or frame list")
    check.add_argument("--root", default=None, help="folder the list's paths are relative to")
    check.add_argument("--decoder", default="pyav", help="video decoder (pyav)")
    check.add_argument("--workers", type=int, default=2, help="parallel processes (2)")
    check.add_argument(
        "--out",
        default=None,
        help="file for `path<TAB>reason` lines (default: LIST.unreadable.txt)",
    )
    _add_frame_naming(check)


def _add_frame_naming(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frame-template", default="img_{:05d}.jpg", help="frame file names (img_{:05d}.jpg)"
    )
    parser.add_argument("--start-index", type=int, default=1, help="first frame number (1)")


def run(args: argparse.Namespace) -> int:
    import logging

    from text4vis.data import prepare
    from text4vis.runs import setup_logging

    setup_logging("INFO")
    logger = logging.getLogger("text4vis.commands.prepare")
    if args.action == "lists":
        paths = prepare.make_lists(
            args.root,
            args.out,
            format=args.format,
            val_fraction=args.val_fraction,
            seed=args.seed,
            frame_template=args.frame_template,
            start_index=args.start_index,
        )
        for name, written in paths.items():
            print(f"{name}: {written}")
        return 0
    if args.action == "frames":
        frame_list, failures = prepare.extract_frames(
            args.list_file,
            args.out,
            root=args.root,
            short_side=args.short_side,
            workers=args.workers,
            frame_template=args.frame_template,
            start_index=args.start_index,
            quality=args.quality,
        )
        print(f"frame list: {frame_list}")
        if failures:
            logger.error(
                "%d videos could not be extracted (listed in extract_failures.txt)", len(failures)
            )
            return 1
        return 0
    out = args.out or f"{args.list_file}.unreadable.txt"
    bad = prepare.check_list(
        args.list_file,
        root=args.root,
        decoder=args.decoder,
        frame_template=args.frame_template,
        start_index=args.start_index,
        workers=args.workers,
        out=out,
    )
    for path, reason in bad:
        print(f"{path}\t{reason}")
    if bad:
        logger.error("%d unreadable entries written to %s", len(bad), out)
        return 1
    logger.info("every entry is readable (%s is empty)", out)
    return 0

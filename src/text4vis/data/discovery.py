"""Finding the videos to label: video files and frame folders, as ``text4vis predict`` takes them."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from text4vis.errors import DataError

__all__ = ["VIDEO_EXTENSIONS", "NoVideosFoundError", "find_videos"]

# File suffixes searched for inside folders (a file named explicitly is tried whatever its suffix).
VIDEO_EXTENSIONS = (
    ".mp4",
    ".m4v",
    ".mov",
    ".avi",
    ".mkv",
    ".webm",
    ".mpg",
    ".mpeg",
    ".flv",
    ".wmv",
    ".3gp",
    ".ogv",
    ".ts",
)


NoVideosFoundError = DataError  # the older name, kept importable


def _is_frame_folder(path: Path, frame_template: str, start_index: int) -> bool:
    return (path / frame_template.format(start_index)).is_file()


def find_videos(
    inputs: Iterable[str | Path],
    *,
    frame_template: str = "img_{:05d}.jpg",
    start_index: int = 1,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> list[str]:
    """Expand command-line inputs into the videos to label.

    A file is taken as given (any suffix; a missing file stays in the list and gets an error
    entry when predicted). A folder holding ``frame_template.format(start_index)`` is one frame
    folder. Any other folder is searched recursively, in sorted order, for files with a video
    suffix and for frame folders (hidden entries are skipped). Duplicates are dropped.

    Raises:
        NoVideosFoundError: a folder in which nothing was found.
    """
    found: list[str] = []
    suffixes = tuple(s.lower() for s in extensions)
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            found.append(str(item))
            continue
        if _is_frame_folder(path, frame_template, start_index):
            found.append(str(item))
            continue
        before = len(found)
        for folder, subfolders, files in os.walk(path):
            subfolders.sort()
            here = Path(folder)
            frame_folders = [
                name
                for name in subfolders
                if not name.startswith(".")
                and _is_frame_folder(here / name, frame_template, start_index)
            ]
            # Frame folders are clips: list them, do not descend into them.
            subfolders[:] = [
                name
                for name in subfolders
                if not name.startswith(".") and name not in frame_folders
            ]
            entries = [
                name
                for name in files
                if not name.startswith(".") and name.lower().endswith(suffixes)
            ]
            entries += frame_folders
            found.extend(str(here / name) for name in sorted(entries))
        if len(found) == before:
            raise NoVideosFoundError(
                f"no videos found in folder {path}: looked for files ending in "
                f"{', '.join(suffixes)} and for frame folders holding "
                f"{frame_template.format(start_index)}"
            )
    return list(dict.fromkeys(found))

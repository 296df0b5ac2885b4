"""Logging of the ``text4vis`` logger: the console on rank 0 and a run's log file.

Torch-free (the commands that run an ONNX export without PyTorch log through it too);
:func:`text4vis.runs.setup_logging` is this module's :func:`setup_logging`.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from text4vis.distributed import get_rank
from text4vis.errors import ConfigError

__all__ = ["LOGGER_NAME", "StderrHandler", "setup_logging"]

LOGGER_NAME = "text4vis"


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A handler that writes each record to ``sys.stderr`` as it is when the record is emitted.

    ``logging.StreamHandler(sys.stderr)`` keeps the stream it was given: when something replaces
    ``sys.stderr`` for a while (pytest's capture, a notebook cell, ``contextlib.redirect_stderr``)
    and closes it afterwards, every later record fails with "I/O operation on closed file".
    """

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:  # StreamHandler.__init__ and setStream assign it
        pass


class _RankFilter(logging.Filter):
    def __init__(self, rank: int) -> None:
        super().__init__()
        self.rank = rank

    def filter(self, record: logging.LogRecord) -> bool:
        record.rank = self.rank
        return True


def setup_logging(level: str | int = "INFO", log_file: str | Path | None = None) -> logging.Logger:
    """Configure the ``text4vis`` logger: console on rank 0 only, and an optional file.

    Calling it again replaces the handlers it installed before (one run folder at a time).
    """
    logger = logging.getLogger(LOGGER_NAME)
    if isinstance(level, str):
        numeric = logging.getLevelName(level.upper())
        if not isinstance(numeric, int):
            raise ConfigError(f"unknown log level {level!r}; choose DEBUG, INFO, WARNING or ERROR")
        level = numeric
    logger.setLevel(level)
    logger.propagate = False
    for handler in list(logger.handlers):
        if getattr(handler, "_text4vis", False):
            logger.removeHandler(handler)
            handler.close()
    rank = get_rank()
    fmt = logging.Formatter(
        "%(asctime)s [rank%(rank)s] %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"
    )
    if rank == 0:
        console = StderrHandler()
        console.setFormatter(fmt)
        console.addFilter(_RankFilter(rank))
        console._text4vis = True  # type: ignore[attr-defined]
        logger.addHandler(console)
    if log_file is not None:
        file_handler = logging.FileHandler(log_file)
        file_handler.setFormatter(fmt)
        file_handler.addFilter(_RankFilter(rank))
        file_handler._text4vis = True  # type: ignore[attr-defined]
        logger.addHandler(file_handler)
    return logger

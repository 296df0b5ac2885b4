"""The console handler of the ``text4vis`` logger (torch-free: the commands that run an export use
it too)."""

from __future__ import annotations

import logging
import sys

__all__ = ["StderrHandler"]


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

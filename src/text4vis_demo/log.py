"""The demo's loggers: children of the library's ``text4vis`` logger.

:func:`text4vis.runs.setup_logging` configures the ``text4vis`` logger (console on rank 0, the
run folder's ``log.txt``); naming the demo's loggers ``text4vis.demo.<module>`` puts their
records in the same console and files, as when the demo lived inside the library.
"""

from __future__ import annotations

import logging

__all__ = ["LOGGER_PREFIX", "get_logger"]

LOGGER_PREFIX = "text4vis.demo"


def get_logger(module_name: str) -> logging.Logger:
    """The logger of a demo module: ``get_logger(__name__)`` in ``text4vis_demo.runs`` is
    ``text4vis.demo.runs``."""
    return logging.getLogger(f"{LOGGER_PREFIX}.{module_name.rsplit('.', 1)[-1]}")

"""The text4vis console handler writes to the current sys.stderr, so a closed former one (pytest's
capture, a redirect) never makes a later record fail."""

from __future__ import annotations

import contextlib
import io
import logging

from text4vis.console import StderrHandler


def test_records_follow_stderr_and_survive_a_closed_one(capfd):
    logger = logging.getLogger("text4vis.test_console")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = StderrHandler()
    logger.addHandler(handler)
    try:
        first = io.StringIO()
        with contextlib.redirect_stderr(first):
            logger.info("one")
        first.close()  # what a finished capture does
        second = io.StringIO()
        with contextlib.redirect_stderr(second):
            logger.info("two")  # a StreamHandler(sys.stderr) made under `first` fails here
        logger.info("three")
    finally:
        logger.removeHandler(handler)
    assert second.getvalue() == "two\n"
    err = capfd.readouterr().err
    assert "three" in err and "Logging error" not in err and "closed file" not in err

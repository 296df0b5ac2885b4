"""The base class of errors caused by user input (files, keys, values), shown without traceback."""

from __future__ import annotations

__all__ = ["Text4VisError"]


class Text4VisError(Exception):
    """An error the user can fix; the message names the file, line or key and says how.

    The command line prints these (and ``ValueError`` / ``FileNotFoundError``) as one line and
    exits with status 2; ``text4vis --debug`` shows the traceback too.
    """

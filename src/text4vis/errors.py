"""The package's error classes: the only errors shown to the user as one line, without traceback.

A user's mistake (a config key, a file, a label, a command-line argument, a checkpoint's content)
raises one of the classes below where the input is read, with a message that names the file,
line or key and says how to fix it. Anything else that escapes a command or a request of the page
is a bug in text4vis and keeps its traceback (``text4vis.cli``, ``text4vis.app``).

The classes:

- :class:`ConfigError`: a setting: a config file, key or value, a named choice (architecture,
  temporal head, classifier, text encoder, precision, template set).
- :class:`UsageError`: an argument, option or request that does not fit (a command-line option,
  an argument of the Python API, a request of the page, something the model cannot do).
- :class:`DataError`: the user's data: annotation and label files, folders of videos, feature
  files, a search index, too many unreadable videos.
- :class:`CheckpointError`: a saved model: a training checkpoint, a model folder, a weight file,
  a classifier artifact, an official checkpoint.
- :class:`MissingFileError`: a file or folder the user named does not exist.
- :class:`VideoDecodeError`: a video that cannot be read (``text4vis.data.VideoDecodeError``).

The first four also subclass ``ValueError`` and :class:`MissingFileError` ``FileNotFoundError``,
so that callers that caught the built-in types keep working. Older names (``AnnotationError``,
``ClassifierError``, ...) stay importable from their modules as aliases of these classes. Training
that diverges raises the two classes of :mod:`text4vis.engine.numerics`, also package errors.

Also :func:`unwrap_worker_error`: a DataLoader worker's exception reaches the main process as a
*new* exception built by torch from a message ("Caught X in DataLoader worker process N.", then
the worker's whole traceback); this gives back the worker's own one-line message.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "MissingFileError",
    "Text4VisError",
    "UsageError",
    "VideoDecodeError",
    "WorkerError",
    "load_failure_reason",
    "parser_problem",
    "read_user_text",
    "unwrap_worker_error",
]


class Text4VisError(Exception):
    """An error the user can fix; the message names the file, line or key and says how.

    The command line prints these as one line and exits with status 2 (``text4vis --debug``
    shows the traceback too); the page answers them with status 400 and the message. Any other
    exception is a bug: the command line prints its traceback and exits with status 1, the page
    answers 500 and logs the traceback.
    """


class ConfigError(Text4VisError, ValueError):
    """A config file, key or value, or a named choice (architecture, head, classifier...)."""


class UsageError(Text4VisError, ValueError):
    """An argument, option or request that does not fit (or asks what the model cannot do)."""


class DataError(Text4VisError, ValueError):
    """The user's data: annotation / label files, video folders, feature files, an index."""


class CheckpointError(Text4VisError, ValueError):
    """A saved model: a checkpoint, a model folder, a weight file or a classifier artifact."""


class MissingFileError(Text4VisError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class VideoDecodeError(Text4VisError):
    """A video file, frame folder or image could not be read; the message names it and says why.

    Args:
        path: the file or folder, or (alone) a ready message.
        reason: why it cannot be read.
        kind: what it is, for the message (``video`` or ``image``).
    """

    def __init__(self, path: str | Path, reason: str | None = None, *, kind: str = "video") -> None:
        # One-argument form: a ready message (how DataLoader re-raises a worker's error).
        super().__init__(str(path) if reason is None else f"cannot read {kind} {path}: {reason}")
        self.path = str(path) if reason is not None else ""
        self.reason = reason if reason is not None else str(path)


# torch.utils.data re-raises a worker's exception as type(exc)(this header + traceback text).
_WORKER_HEADER = re.compile(
    r"\ACaught (?P<name>\w+) in DataLoader worker process (?P<worker>\d+)\.\n"
    r"Original (?P<traceback>.*)\Z",
    re.DOTALL,
)


@dataclass(frozen=True)
class WorkerError:
    """What a DataLoader worker raised, recovered from torch's re-raised exception.

    Attributes:
        type_name: qualified name of the worker's exception type (``module.Class``; built-in
            types without a module), as Python printed it.
        message: the worker's own message (what ``str(exc)`` was in the worker).
        worker: the worker process number.
        traceback: the worker's formatted traceback (for ``--debug``).
    """

    type_name: str
    message: str
    worker: int
    traceback: str

    @property
    def from_package(self) -> bool:
        """Whether the worker raised one of text4vis's own errors."""
        return self.type_name.startswith("text4vis.")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def unwrap_worker_error(exc: BaseException) -> WorkerError | None:
    """The worker's exception inside torch's "Caught X in DataLoader worker process N" wrapper.

    Returns None when ``exc`` is not such a wrapper. The worker's message is what follows the
    last ``[module.]X: `` line of its traceback (the exception actually raised comes last, after
    any exception it was raised from).
    """
    match = _WORKER_HEADER.match(str(exc))
    if match is None:
        return None
    name = re.escape(match["name"])
    text = match["traceback"]
    # The final exception line starts at the beginning of a line, unindented, unlike frames.
    lines = list(re.finditer(rf"^(?P<qual>(?:[\w.]+\.)?{name})(?:: |$)", text, re.MULTILINE))
    if not lines:
        return None
    last = lines[-1]
    message = text[last.end() :].rstrip("\n")
    return WorkerError(last["qual"], message, int(match["worker"]), text)


_REFUSED_GLOBAL = re.compile(r"GLOBAL (?P<name>[\w.]+)")


def load_failure_reason(exc: BaseException) -> str:
    """One line saying why ``torch.load(weights_only=True)`` failed (its own text runs to many).

    A refused pickle payload (a Python object other than tensors and plain values) is named by
    the global it asked for; anything else is the first line of torch's message.
    """
    text = str(exc)
    refused = _REFUSED_GLOBAL.search(text)
    if "Weights only load failed" in text or refused is not None:
        what = f" ({refused['name']})" if refused is not None else ""
        return (
            f"it holds a pickled Python object{what} besides tensors and plain values; loading it "
            "could run code, so it is refused"
        )
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def parser_problem(exc: BaseException) -> str:
    """One line saying where and why a parser failed (PyYAML's own text runs to several lines).

    A PyYAML error with a position gives ``line L, column C: problem``; anything else its text
    with the line breaks folded.
    """
    problem = getattr(exc, "problem", None)
    if not problem:
        return " ".join(str(exc).split()) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + " ".join(str(problem).split())


def read_user_text(path: str | Path, error: type[Exception] = Text4VisError) -> str:
    """The text of a user's file (UTF-8, a leading byte-order mark dropped, newlines as ``\\n``).

    Raises:
        MissingFileError: there is no such file.
        error: the file cannot be read or is not UTF-8 text; the message names the file (and
            the line and the byte).
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no such file; check the path") from None
    except OSError as exc:  # a folder, no permission...
        raise error(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")

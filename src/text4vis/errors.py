"""The base class of errors caused by user input (files, keys, values), shown without traceback.

Also :func:`unwrap_worker_error`: a DataLoader worker's exception reaches the main process as a
*new* exception built by torch from a message ("Caught X in DataLoader worker process N.", then
the worker's whole traceback); this gives back the worker's own one-line message.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "Text4VisError",
    "WorkerError",
    "load_failure_reason",
    "read_user_text",
    "unwrap_worker_error",
]


class Text4VisError(Exception):
    """An error the user can fix; the message names the file, line or key and says how.

    The command line prints these (and ``ValueError`` / ``FileNotFoundError``) as one line and
    exits with status 2; ``text4vis --debug`` shows the traceback too.
    """


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


def read_user_text(path: str | Path, error: type[Exception] = Text4VisError) -> str:
    """The text of a user's file (UTF-8, a leading byte-order mark dropped, newlines as ``\\n``).

    Raises:
        error: the file is not UTF-8 text; the message names the file, the line and the byte.
    """
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise error(
            f"{path}:{line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    return text.replace("\r\n", "\n").replace("\r", "\n")

"""`text4vis <command>`: a thin layer that parses arguments and calls library functions.

Commands live in :mod:`text4vis.commands`, one module each, found at start-up. A command module
defines ``COMMAND`` (its name), ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``; it imports heavy libraries inside ``run`` so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import logging
import os
import pkgutil
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

import text4vis.commands as package
from text4vis import __version__
from text4vis.errors import Text4VisError, unwrap_worker_error

__all__ = ["bug_report_line", "build_parser", "discover_commands", "main", "user_error_message"]

#: Entry-point group through which other installed packages add commands.
ENTRY_POINT_GROUP = "text4vis.commands"


def discover_commands() -> dict[str, ModuleType]:
    """Command name -> module, by name: every public module of :mod:`text4vis.commands` and every
    module registered under the entry-point group :data:`ENTRY_POINT_GROUP`.

    Other installed packages add commands that way, with the same module contract, in their
    ``pyproject.toml`` (the demo package beside the library declares ``text4vis demo`` so)::

        [project.entry-points."text4vis.commands"]
        my-command = "my_package.my_command"

    Raises:
        RuntimeError: two modules define the same command, a plugin module fails to import, or
            its ``COMMAND`` differs from its entry-point name.
    """
    found: dict[str, ModuleType] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        name = getattr(module, "COMMAND", None)
        if name is None:
            continue
        if name in found:
            raise RuntimeError(f"two command modules define {name!r}")
        found[name] = module
    plugins = sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
    for entry in plugins:
        where = f"entry point {entry.name} = {entry.value!r} (group {ENTRY_POINT_GROUP!r})"
        try:
            module = entry.load()
        except ImportError as exc:
            raise RuntimeError(
                f"{where} failed to import; reinstall the package that declares it "
                "(`python -m pip install -e .` in a checkout) or uninstall it"
            ) from exc
        if getattr(module, "COMMAND", None) != entry.name:
            raise RuntimeError(
                f"{where}: the module's COMMAND is {getattr(module, 'COMMAND', None)!r}, "
                f"expected {entry.name!r}"
            )
        if entry.name in found:
            raise RuntimeError(
                f"{where} defines {entry.name!r}, which {found[entry.name].__name__} defines too"
            )
        found[entry.name] = module
    return dict(sorted(found.items()))  # `text4vis --help` lists them alphabetically


def build_parser(commands: dict[str, ModuleType] | None = None) -> argparse.ArgumentParser:
    """The full argument parser (one sub-parser per command)."""
    commands = discover_commands() if commands is None else commands
    parser = argparse.ArgumentParser(
        prog="text4vis",
        description=(
            "Video recognition with CLIP-style models and a frozen text classifier "
            "(Revisiting Classifier, Wu et al.)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"text4vis {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show the full traceback of errors caused by input"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, module in commands.items():
        command_parser = sub.add_parser(
            name, help=module.HELP, description=getattr(module, "DESCRIPTION", module.HELP)
        )
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def _log_to_files(message: str, exc: BaseException | None = None) -> None:
    """Record a command's error in the log files of its run folder (not again on the console).

    A run folder is created before the work that may fail; its ``log.txt`` then says why the run
    stopped instead of ending silently (with the traceback when ``exc`` is given: a bug).
    """
    logger = logging.getLogger("text4vis")
    exc_info = None if exc is None else (type(exc), exc, exc.__traceback__)
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, message, (), exc_info)
    for handler in logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def bug_report_line(command: str) -> str:
    """The line printed after the traceback of an unexpected exception (a bug, not the input)."""
    return (
        f"text4vis {command}: this is a bug in text4vis {__version__}; please report it with "
        "the traceback above (and the command you ran)"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``text4vis`` console script; returns the exit status.

    A user's mistake (:class:`~text4vis.errors.Text4VisError`) is one line on stderr and exit
    status 2; any other exception is a bug: its traceback, a line saying how to report it, and
    exit status 1. ``--debug`` (or ``TEXT4VIS_DEBUG=1``) re-raises every exception.
    """
    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.command is None:
        parser.print_help()
        return 0
    debug = args.debug or os.environ.get("TEXT4VIS_DEBUG") == "1"
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print(f"text4vis {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if debug:
            raise
        message = user_error_message(exc)
        if message is None:
            report = bug_report_line(args.command)
            _log_to_files(report, exc)
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
            print(report, file=sys.stderr)
            return 1
        logging.getLogger("text4vis").debug("error", exc_info=True)
        message = f"text4vis {args.command}: error: {message}"
        _log_to_files(message)
        print(message, file=sys.stderr)
        return 2


# Top-level modules of the package's own dependencies: a command that finds one missing runs where
# only the ONNX runtime's packages are installed (docs/deploy.md), which is not a bug.
FULL_INSTALL = frozenset(
    {"torch", "torchvision", "open_clip", "safetensors", "yaml", "matplotlib", "jinja2"}
)


def user_error_message(exc: BaseException) -> str | None:
    """The one-line message of a user's mistake, or None for any other exception (a bug).

    A user's mistake is a :class:`~text4vis.errors.Text4VisError`, raised here or in a DataLoader
    worker: torch re-raises a worker's exception with the worker's traceback as its message, so the
    worker's own message is recovered from it and the result is the same as with
    ``data.num_workers=0``. So is a missing package of the full install (:data:`FULL_INSTALL`) where
    only the ONNX runtime is installed. A built-in ``ValueError`` or ``FileNotFoundError`` is a bug
    like any other: the library converts the known input errors into its own classes where it reads
    the input.
    """
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in FULL_INSTALL:
        missing = (exc.name or "").split(".")[0]
        return (
            f"this command needs the full install, and {missing} is not installed: "
            "python -m pip install text4vis; where only the ONNX runtime is installed, give "
            "predict, index, search or serve an export folder (text4vis export) as --model"
        )
    worker = unwrap_worker_error(exc)
    if worker is not None:
        if worker.from_package or isinstance(exc, Text4VisError):
            return worker.message
        return None
    if isinstance(exc, Text4VisError):
        return str(exc)
    return None


if __name__ == "__main__":
    raise SystemExit(main())

"""The library knows nothing of the demo: ``text4vis_demo`` imports ``text4vis``, never the reverse.

The demo reaches the command line only through the CLI's plugin hook (the entry-point group
``text4vis.commands`` declared in ``pyproject.toml``), which these tests exercise too.
"""

from __future__ import annotations

import ast
import importlib.metadata
import types
from pathlib import Path

import pytest

import text4vis
from text4vis import cli

LIBRARY = Path(text4vis.__file__).resolve().parent
DEMO_PACKAGE = "text4vis_demo"


def _demo_references(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every import of the demo package and every string that names it (an
    ``importlib.import_module("text4vis_demo...")``, an entry point written as a string)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if DEMO_PACKAGE in node.value:
                found.append((node.lineno, f"string {node.value[:60]!r}"))
            continue
        else:
            continue
        for name in names:
            if name == DEMO_PACKAGE or name.startswith(f"{DEMO_PACKAGE}."):
                found.append((node.lineno, f"import of {name}"))
    return found


def test_the_check_finds_imports_and_import_strings():
    """The checker itself: each way of reaching the demo package is caught, look-alikes are not."""
    source = "\n".join(
        [
            "import text4vis_demo",
            "from text4vis_demo.report import render_report",
            "import importlib",
            "importlib.import_module('text4vis_demo.command')",
            "import text4vis_demonstration_free_name as ok",  # another package's name
            "from text4vis import demo_settings",  # a name, not the package
        ]
    )
    assert [line for line, _ in _demo_references(ast.parse(source))] == [1, 2, 4]


def test_no_module_of_the_library_imports_the_demo():
    modules = sorted(LIBRARY.rglob("*.py"))
    assert len(modules) > 50 and LIBRARY / "cli.py" in modules  # the walk sees the library
    offenders = [
        f"{path.relative_to(LIBRARY.parent)}:{line}: {what}"
        for path in modules
        for line, what in _demo_references(ast.parse(path.read_text(), filename=str(path)))
    ]
    assert offenders == [], "the library must not know the demo package:\n" + "\n".join(offenders)


def test_the_demo_is_its_own_package_beside_the_library():
    import text4vis_demo

    demo_dir = Path(text4vis_demo.__file__).resolve().parent
    assert demo_dir.parent == LIBRARY.parent  # src/text4vis_demo beside src/text4vis
    assert not (LIBRARY / "demo").exists()
    assert not (LIBRARY / "commands" / "demo.py").exists()
    assert callable(text4vis_demo.run_demo) and callable(text4vis_demo.run_contrastive_demo)


def test_the_demo_command_comes_through_the_entry_point(capsys: pytest.CaptureFixture[str]):
    entries = importlib.metadata.entry_points(group=cli.ENTRY_POINT_GROUP)
    assert {e.name: e.value for e in entries}.get("demo") == "text4vis_demo.command", (
        "the demo's entry point is missing: reinstall (`python -m pip install --no-deps -e .`)"
    )
    import text4vis_demo.command

    commands = cli.discover_commands()
    assert commands["demo"] is text4vis_demo.command
    assert "train" in commands  # the library's own commands are still found
    assert list(commands) == sorted(commands)  # `text4vis --help` lists them by name, demo too
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: text4vis demo") and "--quick" in out and "--contrastive" in out


class _FakeEntryPoint:
    """What :func:`importlib.metadata.entry_points` yields, with a module made here."""

    def __init__(self, name: str, module: types.ModuleType | Exception) -> None:
        self.name, self.value, self._module = name, f"fake.{name}", module

    def load(self) -> types.ModuleType:
        if isinstance(self._module, Exception):
            raise self._module
        return self._module


def _command_module(command: str) -> types.ModuleType:
    module = types.ModuleType(f"fake_{command}")
    module.COMMAND = command
    module.HELP = f"the {command} plugin"
    module.add_arguments = lambda parser: parser.add_argument("--size", type=int, default=1)
    module.run = lambda args: args.size + 40
    return module


def _entry_points(*fakes: _FakeEntryPoint):
    def entry_points(*, group: str) -> list[_FakeEntryPoint]:
        assert group == cli.ENTRY_POINT_GROUP
        return list(fakes)

    return entry_points


def test_a_plugin_command_runs_like_a_library_command(monkeypatch: pytest.MonkeyPatch):
    fake = _FakeEntryPoint("hello", _command_module("hello"))
    monkeypatch.setattr(importlib.metadata, "entry_points", _entry_points(fake))
    assert cli.discover_commands()["hello"] is fake.load()
    assert cli.main(["hello", "--size", "2"]) == 42


@pytest.mark.parametrize(
    ("fake", "message"),
    [
        (_FakeEntryPoint("train", _command_module("train")), "'train', which text4vis.commands"),
        (_FakeEntryPoint("hello", _command_module("other")), "COMMAND is 'other', expected"),
        (_FakeEntryPoint("hello", ImportError("no module fake")), "failed to import; reinstall"),
    ],
    ids=["shadows-a-library-command", "command-name-mismatch", "import-fails"],
)
def test_a_broken_plugin_is_named(
    monkeypatch: pytest.MonkeyPatch, fake: _FakeEntryPoint, message: str
):
    """A plugin that clashes with a command or does not load stops the CLI naming its entry point;
    it never silently replaces a command or disappears."""
    monkeypatch.setattr(importlib.metadata, "entry_points", _entry_points(fake))
    with pytest.raises(RuntimeError, match="entry point hello|entry point train") as error:
        cli.discover_commands()
    assert message in str(error.value)
    assert "(group 'text4vis.commands')" in str(error.value)

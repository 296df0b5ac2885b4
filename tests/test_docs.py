"""Every code example of the docs (docs/*.md and README.md) runs here, so that none can rot.

How each fenced block is checked, by its language:

- ``python``: executed, in the order of the page, in one namespace per page (as a reader would
  paste them one after the other), with the page's folder of the *docs world* as the current
  directory (below).
- ``bash`` / ``console`` (in ``console`` only the lines starting with ``$ ``): every command is
  checked. ``text4vis ...`` (also ``python -m text4vis``, ``torchrun ... -m text4vis``) is parsed by
  the real parser, :func:`text4vis.cli.build_parser`, so a command or flag that does not exist, or
  a value outside a flag's choices, fails; its command's ``--help`` is rendered too. ``make
  TARGET`` must be a target of the Makefile, ``python benchmarks/X.py`` an existing script, and
  ``python -m text4vis_demo.X`` a module of the demo package (parsed by its ``build_parser`` when
  it has one).
- ``yaml`` / ``toml`` / ``text`` / ``json`` / ``csv`` / ``svg``: shown, not run (output, file formats).
  A block without a language fails: every block says what it is.

A hidden HTML comment on the line just before a block changes what happens to it:

- ``<!-- docs-test: run -->`` (bash/console): the ``text4vis`` commands are also *run*, in
  order, through :func:`text4vis.cli.main` in the page's folder, and must exit 0. Only cheap
  commands on the docs world's tiny inputs are marked so (predict, index, search, config,
  prepare, classifier ...); training, evaluation and the demo are parsed only.
- ``<!-- docs-test: imports-only -->`` (python): only the block's ``import`` statements run (they
  must resolve), for snippets that need real weights, a GPU or minutes of CPU.
- ``<!-- docs-test: file=NAME -->`` (yaml/text/csv): the block is written to ``NAME`` in the
  page's folder, so a later block can use the very file the page shows.
- ``<!-- docs-test: needs=PACKAGE -->``: the block is checked only where ``PACKAGE`` can be
  imported (else a warning says it was not checked). Directives combine:
  ``<!-- docs-test: imports-only needs=text4vis_demo -->``.

The docs world (built once, copied per page): ``model/`` (a tiny random-weight video model
saved with ``save_pretrained``: tiny-vit, mean pooling, text classifier from the CLIP text tower
of ``tiny-vit.pt``, classes dancing / cooking / surfing), ``clips/`` (``a.mp4``, ``b.mp4``,
``c.mp4`` and the frame folder ``frames/d``), ``videos/<class>/*.mp4`` (a class-folder dataset),
``labels.csv`` / ``labels.txt`` (the three class names), ``train.txt`` / ``val.txt`` (lists of the
class-folder videos), ``config.yaml`` (a tiny config over them) and ``configs/`` (a link to the
repository's configs), and ``demo/`` (the same files laid out as a quick demo's report folder:
``demo/model``, ``demo/data/videos/{unseen,val}``, ``demo/data/labels_unseen.csv``). Pages name
these files; the docs say what each stands for.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import importlib
import importlib.util
import io
import logging
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
SHOWN_ONLY = {"yaml", "toml", "text", "json", "csv", "svg"}
SHELL = {"bash", "console"}
DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[\w+-]*)")
PYTHONS = {"python", "python3", ".venv/bin/python"}
CLASSES = ["dancing", "cooking", "surfing"]


@dataclass
class Block:
    """One fenced code block of a page."""

    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    text: str
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def read_blocks(page: Path, text: str | None = None) -> list[Block]:
    """The fenced blocks of a Markdown page, with the directives of the comment just before each."""
    lines = (page.read_text(encoding="utf-8") if text is None else text).splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence = match["indent"], match["fence"]
        start = i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            body.append(line[len(indent) :] if line.startswith(indent) else line.lstrip())
            i += 1
        i += 1  # the closing fence
        directives: dict[str, str] = {}
        previous = start - 1
        while previous >= 0 and not lines[previous].strip():
            previous -= 1
        found = DIRECTIVE.search(lines[previous]) if previous >= 0 else None
        if found:
            for item in found.group(1).split():
                key, _, value = item.partition("=")
                directives[key] = value
        blocks.append(Block(page, start + 1, match["lang"].lower(), "\n".join(body), directives))
    return blocks


# ------------------------------------------------------------------------------------------------
# Shell commands


def shell_commands(block: Block) -> list[list[str]]:
    """The simple commands of a bash/console block as token lists (comments, continuations,
    ``&&``/``;``/``|`` and leading ``VAR=value`` assignments handled)."""
    lines = block.text.splitlines()
    if block.lang == "console":
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    joined: list[str] = []
    pending = ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    commands: list[list[str]] = []
    for line in joined:
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError as exc:
            raise AssertionError(f"{block.where}: cannot split {line!r}: {exc}") from exc
        current: list[str] = []
        for token in [*tokens, ";"]:
            if token in {"&&", "||", ";", "|"}:
                while current and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", current[0]):
                    current.pop(0)
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(token)
    return commands


def text4vis_argv(tokens: list[str]) -> list[str] | None:
    """The arguments after ``text4vis`` of a command that runs the text4vis CLI, else None."""
    if tokens[0] == "text4vis":
        return tokens[1:]
    for k in range(len(tokens) - 1):
        if tokens[k] == "-m" and tokens[k + 1] == "text4vis":
            launcher = tokens[0]
            if launcher in PYTHONS or launcher == "torchrun":
                return tokens[k + 2 :]
    return None


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[int | None, str]:
    """(exit status or None when parsing returned, what the parser printed)."""
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            return int(exc.code or 0), out.getvalue()
    return None, out.getvalue()


def _no_abbreviations(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The parser (and its sub-parsers) refusing abbreviated flags: the docs spell flags out."""
    parser.allow_abbrev = False
    for child in _subparsers(parser).values():
        _no_abbreviations(child)
    return parser


def check_text4vis_command(argv: list[str], where: str) -> None:
    """Parse ``argv`` with the real parser; render the help of the command it names."""
    from text4vis.cli import build_parser

    parser = _no_abbreviations(build_parser())
    status, printed = _parse(parser, argv)
    if status not in (None, 0):
        raise AssertionError(
            f"{where}: `text4vis {shlex.join(argv)}` does not parse:\n{printed.strip()}"
        )
    # The command path (e.g. ["prepare", "lists"]) and its --help.
    path: list[str] = []
    current = parser
    for token in argv:
        children = _subparsers(current)
        if token not in children:
            break
        path.append(token)
        current = children[token]
    status, printed = _parse(build_parser(), [*path, "--help"])
    assert status == 0 and "usage:" in printed, f"{where}: `text4vis {' '.join(path)} --help`"


class _Parsed(Exception):
    """Raised once a script's arguments parsed: stops the script before it does any work."""


def check_script_arguments(
    start: Callable[[], object], prog: str, argv: list[str], where: str
) -> None:
    """Run a script's entry (``start``) with ``argv`` until its argparse parser has read them.

    ``ArgumentParser.parse_args`` is replaced by one that parses (abbreviations refused) and then
    stops the script, so any argparse-based script is checked by its own parser, without running.
    """
    original = argparse.ArgumentParser.parse_args

    def parse_then_stop(
        self: argparse.ArgumentParser, args: Any = None, namespace: Any = None
    ) -> Any:
        self.allow_abbrev = False
        out = io.StringIO()
        with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
            try:
                original(self, args, namespace)
            except SystemExit as exc:
                if exc.code not in (None, 0):
                    raise AssertionError(
                        f"{where}: `{prog} {shlex.join(argv)}` does not parse:\n{out.getvalue()}"
                    ) from None
        raise _Parsed

    with (
        mock.patch.object(argparse.ArgumentParser, "parse_args", parse_then_stop),
        mock.patch.object(sys, "argv", [prog, *argv]),
    ):
        try:
            start()
        except _Parsed:
            return
    raise AssertionError(f"{where}: {prog} ended without parsing its arguments with argparse")


def check_demo_module(tokens: list[str], where: str) -> None:
    """``python -m text4vis_demo.X ARGS``: the module exists; its parser accepts ARGS."""
    module_name = tokens[tokens.index("-m") + 1]
    args = tokens[tokens.index("-m") + 2 :]
    if importlib.util.find_spec("text4vis_demo") is None:
        _not_checked(where, "the text4vis_demo package is not in this checkout")
        return
    assert importlib.util.find_spec(module_name) is not None, f"{where}: no module {module_name}"
    check_script_arguments(
        lambda: runpy.run_module(module_name, run_name="__main__", alter_sys=True),
        f"python -m {module_name}",
        args,
        where,
    )


def _not_checked(where: str, reason: str) -> None:
    """A block that cannot be checked in this checkout: a visible warning, the page goes on."""
    warnings.warn(f"{where}: not checked: {reason}", stacklevel=2)


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.MULTILINE))


def check_shell_command(tokens: list[str], where: str) -> list[str] | None:
    """Check one command; the text4vis argv when it is a text4vis command."""
    argv = text4vis_argv(tokens)
    if argv is not None:
        check_text4vis_command(argv, where)
        return argv
    if tokens[0] == "make":
        missing = [t for t in tokens[1:] if "=" not in t and t not in make_targets()]
        assert not missing, f"{where}: no Makefile target {missing}"
    elif tokens[0] in PYTHONS and len(tokens) > 1:
        if tokens[1] == "-m" and tokens[2].startswith("text4vis_demo"):
            check_demo_module(tokens, where)
        elif tokens[1].endswith(".py"):
            script = ROOT / tokens[1]
            assert script.is_file(), f"{where}: no script {tokens[1]}"
            check_script_arguments(
                lambda: runpy.run_path(str(script), run_name="__main__"),
                tokens[1],
                tokens[2:],
                where,
            )
    return None


# ------------------------------------------------------------------------------------------------
# The docs world


def _clip(rng: Any, colour: tuple[int, int, int], frames: int = 8) -> Any:
    import numpy as np

    base = np.asarray(colour, dtype=np.float64) * rng.uniform(0.7, 1.0)
    pixels = base + rng.normal(0.0, 20.0, (frames, 32, 40, 3))
    return np.clip(pixels, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def docs_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the docs' examples name (see the module docstring); about a second to make."""
    import numpy as np
    import torch

    from text4vis.config import ModelConfig
    from text4vis.data.synthetic import write_frame_folder, write_mp4
    from text4vis.models.backbones import create_clip
    from text4vis.models.video import VideoRecognizer

    root = tmp_path_factory.mktemp("docs_world")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # open_clip initialises from torch's global generator
        torch.save(create_clip("tiny-vit").state_dict(), root / "tiny-vit.pt")
        cfg = ModelConfig(arch="tiny-vit", pretrained=str(root / "tiny-vit.pt"), temporal="mean")
        model = VideoRecognizer.from_config(cfg, CLASSES, num_frames=4, image_size=32)
    model.save_pretrained(root / "model")

    rng = np.random.default_rng(0)
    colours = [(220, 40, 40), (40, 200, 60), (40, 70, 230)]
    for name, colour in zip("abc", colours):
        write_mp4(root / "clips" / f"{name}.mp4", _clip(rng, colour))
    write_frame_folder(root / "clips" / "frames" / "d", _clip(rng, (230, 210, 40), 6))
    lines: dict[str, list[str]] = {"train": [], "val": []}
    for label, (name, colour) in enumerate(zip(CLASSES, colours)):
        for k in range(3):
            rel = f"videos/{name}/{name}_{k}.mp4"
            write_mp4(root / rel, _clip(rng, colour))
            lines["train" if k < 2 else "val"].append(f"{rel} {label}")
    for split, entries in lines.items():
        (root / f"{split}.txt").write_text("\n".join(entries) + "\n", encoding="utf-8")
    csv_lines = ["id,name", *(f"{i},{name}" for i, name in enumerate(CLASSES))]
    (root / "labels.csv").write_text("\n".join(csv_lines) + "\n", encoding="utf-8")
    (root / "labels.txt").write_text("\n".join(CLASSES) + "\n", encoding="utf-8")
    (root / "config.yaml").write_text(
        "\n".join(
            [
                "data:",
                f"  root: {root}",
                f"  train_list: {root / 'train.txt'}",
                f"  val_list: {root / 'val.txt'}",
                f"  labels: {root / 'labels.csv'}",
                "  num_segments: 4",
                "  input_size: 32",
                "  resize_size: 36",
                "  batch_size: 2",
                "  num_workers: 0",
                "model:",
                "  arch: tiny-vit",
                f"  pretrained: {root / 'tiny-vit.pt'}",
                "  temporal: mean",
                "train:",
                "  epochs: 1",
                "  warmup_epochs: 0",
                "  precision: fp32",
                "  checkpoint_minutes: 0",
                "eval:",
                "  batch_size: 2",
                "run:",
                f"  root: {root / 'runs'}",
                "  name: docs",
                "  progress: false",
                "",
            ]
        ),
        encoding="utf-8",
    )
    (root / "configs").symlink_to(ROOT / "configs", target_is_directory=True)
    # The layout of a quick demo's report folder, for the getting-started page.
    shutil.copytree(root / "model", root / "demo" / "model")
    shutil.copytree(root / "clips", root / "demo" / "data" / "videos" / "unseen")
    shutil.copytree(root / "videos", root / "demo" / "data" / "videos" / "val")
    shutil.copy(root / "labels.csv", root / "demo" / "data" / "labels_unseen.csv")
    return root


@contextlib.contextmanager
def _in_folder(folder: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


@pytest.fixture(autouse=True)
def _one_thread_and_clean_logging() -> Iterator[None]:
    """One torch thread; afterwards, drop the console handlers the CLI installs."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    logger = logging.getLogger("text4vis")
    for handler in list(logger.handlers):
        if getattr(handler, "_text4vis", False):
            logger.removeHandler(handler)
            if isinstance(handler, logging.FileHandler):
                handler.close()
    logger.propagate = True


def run_block(block: Block, folder: Path, namespace: dict[str, Any]) -> None:
    """Check (and where asked, run) one block in ``folder``."""
    if not block.lang:
        raise AssertionError(f"{block.where}: a code block without a language (say ```text)")
    if "file" in block.directives:
        (folder / block.directives["file"]).write_text(block.text + "\n", encoding="utf-8")
        return
    if block.lang in SHOWN_ONLY:
        return
    needs = block.directives.get("needs")
    if needs and importlib.util.find_spec(needs) is None:
        _not_checked(block.where, f"needs the {needs} package, not in this checkout")
        return
    if block.lang == "python":
        tree = ast.parse(block.text, filename=block.where)
        if "imports-only" in block.directives:
            tree.body = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
        code = compile(tree, block.where, "exec")
        with _in_folder(folder):
            exec(code, namespace)
        return
    if block.lang not in SHELL:
        raise AssertionError(f"{block.where}: unknown block language {block.lang!r}")
    from text4vis.cli import main

    for tokens in shell_commands(block):
        argv = check_shell_command(tokens, block.where)
        if argv is not None and "run" in block.directives:
            with _in_folder(folder):
                status = main(argv)
            assert status == 0, f"{block.where}: `text4vis {shlex.join(argv)}` exited {status}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_of_the_page_run(page: Path, docs_world: Path, tmp_path: Path) -> None:
    folder = tmp_path / "world"
    shutil.copytree(docs_world, folder, symlinks=True)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for block in read_blocks(page):
        run_block(block, folder, namespace)


# ------------------------------------------------------------------------------------------------
# The checks themselves can fail


@pytest.mark.parametrize(
    "command, expected",
    [
        ("text4vis predict clips/ --model model --no-such-flag 3", "--no-such-flag"),
        ("text4vis predikt clips/ --model model", "predikt"),
        ("torchrun --nproc_per_node 2 -m text4vis train c.yaml --resum auto", "--resum"),
        ("text4vis predict a.mp4 --precision int4", "int4"),
        ("text4vis prepare lists videos --out lists --val-frac 0.1", "--val-frac"),
        ("python benchmarks/gpu.py --smok", "--smok"),
    ],
)
def test_a_command_or_flag_that_does_not_exist_fails(command: str, expected: str) -> None:
    page = ROOT / "docs" / "example.md"
    (block,) = read_blocks(page, f"Text\n\n```bash\n{command}\n```\n")
    with pytest.raises(AssertionError, match=re.escape(expected)):
        run_block(block, ROOT, {})


def test_blocks_are_read_with_their_directives_continuations_and_comments() -> None:
    text = (
        "- a list item\n\n"
        "  <!-- docs-test: run -->\n"
        "  ```bash\n"
        "  K400_ROOT=/data text4vis train c.yaml \\\n"
        "      --set train.lr=1e-4   # a comment\n"
        "  make docs && text4vis --version\n"
        "  ```\n\n"
        '```console\n$ text4vis search i "a b"\nrank score path\n```\n'
    )
    first, second = read_blocks(ROOT / "docs" / "x.md", text)
    assert first.directives == {"run": ""} and first.line == 4
    assert shell_commands(first) == [
        ["text4vis", "train", "c.yaml", "--set", "train.lr=1e-4"],
        ["make", "docs"],
        ["text4vis", "--version"],
    ]
    assert shell_commands(second) == [["text4vis", "search", "i", "a b"]]


def test_a_missing_make_target_and_an_unlabelled_block_fail() -> None:
    page = ROOT / "docs" / "x.md"
    (block,) = read_blocks(page, "```bash\nmake no-such-target\n```\n")
    with pytest.raises(AssertionError, match="no-such-target"):
        run_block(block, ROOT, {})
    (block,) = read_blocks(page, "```\ntext4vis predict\n```\n")
    with pytest.raises(AssertionError, match="without a language"):
        run_block(block, ROOT, {})


# ------------------------------------------------------------------------------------------------
# The site and the front page


def test_readme_is_a_short_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines; keep it at most 250"
    assert not re.search(r"\bcommit [0-9a-f]{7}\b", "\n".join(lines)), "no commit hashes"


def test_the_front_page_commands_parse_and_its_links_resolve() -> None:
    """The "I want to ..." table's commands are inline code: each is parsed like a block's."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [
        span
        for row in text.splitlines()
        if row.startswith("|")
        for span in re.findall(r"`([^`]+)`", row)
        if span.startswith(("text4vis ", "torchrun "))
    ]
    assert len(commands) >= 12, commands
    for command in commands:
        argv = text4vis_argv(shlex.split(command))
        assert argv is not None, command
        check_text4vis_command(argv, f"README.md: `{command}`")
    for target, anchor in re.findall(r"\]\(([^)#]+)(?:#([^)]*))?\)", text):
        if target.startswith("http"):
            continue
        assert (ROOT / target).exists(), f"README.md links to a missing {target}"
        if anchor:
            assert anchor in heading_anchors(ROOT / target), (
                f"README.md: no heading #{anchor} in {target}"
            )


def heading_anchors(page: Path) -> set[str]:
    """The anchors MkDocs gives the headings of a page (its toc extension's slugs)."""
    toc = pytest.importorskip("markdown.extensions.toc", reason="the docs extra")
    headings = re.findall(r"^#+\s+(.+?)\s*$", page.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {toc.slugify(re.sub(r"[`*]", "", h), "-") for h in headings}


def test_every_page_is_in_the_navigation() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    missing = [p.name for p in DOCS.glob("*.md") if f": {p.name}" not in nav]
    assert not missing, f"pages missing from mkdocs.yml's nav: {missing}"


@pytest.mark.process  # runs `mkdocs build` in a subprocess
def test_site_builds_offline_with_warnings_as_errors(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    html = "\n".join(p.read_text(encoding="utf-8") for p in (tmp_path / "site").rglob("*.html"))
    assert "fonts.googleapis" not in html and "fonts.gstatic" not in html

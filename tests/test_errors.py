"""Users' mistakes are one line, bugs are tracebacks: from the command line and from the page.

Only the package's own errors (:class:`text4vis.errors.Text4VisError` and its subclasses) are
shown as one line (exit status 2; the page: 400 with the message). Any other exception is a bug:
the command line prints its traceback and a line saying how to report it (exit status 1); the
page answers 500 with a short message and logs the traceback.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import text4vis.config
from text4vis import __version__
from text4vis.cli import bug_report_line, main
from text4vis.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MissingFileError,
    Text4VisError,
    UsageError,
    VideoDecodeError,
)

# -- the classes ---------------------------------------------------------------------------------


def test_the_package_errors_keep_the_builtin_types_callers_caught():
    for cls in (ConfigError, UsageError, DataError, CheckpointError):
        assert issubclass(cls, Text4VisError) and issubclass(cls, ValueError)
    assert issubclass(MissingFileError, Text4VisError)
    assert issubclass(MissingFileError, FileNotFoundError)
    assert issubclass(VideoDecodeError, Text4VisError)


def test_the_older_names_are_the_new_classes():
    from text4vis.data import AnnotationError, LabelError, NoVideosFoundError, TooManyFailuresError
    from text4vis.data import VideoDecodeError as PublicVideoDecodeError
    from text4vis.models.backbones import BackboneError
    from text4vis.models.classifier import ClassifierError
    from text4vis.models.factory import CheckpointError as FactoryCheckpointError
    from text4vis.models.integrity import ModelFolderError
    from text4vis.models.official import OfficialCheckpointError
    from text4vis.models.text import TextEncoderError
    from text4vis.models.zero_shot import ZeroShotError
    from text4vis.predict import PredictError
    from text4vis.runtime import PrecisionError
    from text4vis.search import VideoIndexError

    assert AnnotationError is LabelError is NoVideosFoundError is TooManyFailuresError is DataError
    assert VideoIndexError is DataError
    assert BackboneError is ClassifierError is TextEncoderError is PrecisionError is ConfigError
    assert text4vis.config.ConfigError is ConfigError
    assert FactoryCheckpointError is ModelFolderError is OfficialCheckpointError is CheckpointError
    assert PredictError is ZeroShotError is UsageError
    assert PublicVideoDecodeError is VideoDecodeError


def test_a_missing_user_file_is_a_package_error_naming_it(tmp_path: Path):
    from text4vis.data import read_annotations, read_labels
    from text4vis.errors import read_user_text

    missing = tmp_path / "nowhere" / "labels.csv"
    for read in (read_labels, read_annotations, read_user_text):
        with pytest.raises(MissingFileError, match="labels.csv"):
            read(missing)


# -- the command line ----------------------------------------------------------------------------


def _bug(*args: Any, **kwargs: Any) -> str:
    raise ValueError("an internal invariant broke")


def test_a_bug_inside_a_command_prints_its_traceback_and_how_to_report_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    # `text4vis config` calls text4vis.config.dump_config; a ValueError from inside the library
    # is a bug, not the user's mistake.
    monkeypatch.setattr(text4vis.config, "dump_config", _bug)
    assert main(["config"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "in _bug" in err and "ValueError: an internal invariant broke" in err
    last = err.strip().splitlines()[-1]
    assert last == bug_report_line("config")
    assert f"this is a bug in text4vis {__version__}" in last and "report" in last
    assert "error:" not in err  # not dressed as an input error


@pytest.mark.parametrize("builtin", [FileNotFoundError, RuntimeError, KeyError])
def test_any_builtin_exception_from_the_library_is_a_bug(
    builtin: type[Exception],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    def broken(*args: Any, **kwargs: Any) -> str:
        raise builtin("x.txt")

    monkeypatch.setattr(text4vis.config, "dump_config", broken)
    assert main(["config"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().endswith(bug_report_line("config"))


def _one_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    status = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert err[0].startswith(f"text4vis {argv[0]}: error: "), err
    return err[0]


def test_bad_inputs_are_one_line_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    line = _one_line(capsys, ["config", "--set", "train.no_such_key=1"])
    assert "train.no_such_key" in line
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [1, 2\n", encoding="utf-8")
    line = _one_line(capsys, ["config", str(broken)])
    assert str(broken) in line and "YAML" in line
    line = _one_line(capsys, ["config", str(tmp_path / "missing.yaml")])
    assert "missing.yaml does not exist" in line and "looked in" in line


def test_a_package_error_from_deep_inside_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    def bad_data(*args: Any, **kwargs: Any) -> str:
        raise DataError("labels.csv:3: class id 'x' is not an integer")

    monkeypatch.setattr(text4vis.config, "dump_config", bad_data)
    line = _one_line(capsys, ["config"])
    assert line.endswith("labels.csv:3: class id 'x' is not an integer")


def test_debug_shows_the_traceback_of_a_bad_input(tmp_path: Path):
    with pytest.raises(ConfigError, match="missing.yaml"):
        main(["--debug", "config", str(tmp_path / "missing.yaml")])


def test_the_run_folders_log_keeps_the_traceback_of_a_bug(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    log_file = tmp_path / "log.txt"
    handler = logging.FileHandler(log_file, encoding="utf-8")
    logger = logging.getLogger("text4vis")
    logger.addHandler(handler)
    monkeypatch.setattr(text4vis.config, "dump_config", _bug)
    try:
        assert main(["config"]) == 1
    finally:
        logger.removeHandler(handler)
        handler.close()
    capsys.readouterr()
    log = log_file.read_text(encoding="utf-8")
    assert bug_report_line("config") in log
    assert "Traceback" in log and "ValueError: an internal invariant broke" in log


# -- the page ------------------------------------------------------------------------------------


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The page's server over a stand-in model (no index): only the request handling runs."""
    # What /api/info asks of a served model (text4vis.serve.model.ServedModel).
    predictor = SimpleNamespace(arch="stub", num_frames=8, class_names=["a", "b"])
    from text4vis.serve import VideoApp, start_in_thread

    app = VideoApp(predictor, None)  # type: ignore[arg-type]
    served = start_in_thread(app)
    # The package's logger may have been set not to propagate (a run's setup): caplog listens
    # on the root logger.
    monkeypatch.setattr(logging.getLogger("text4vis"), "propagate", True)
    yield {"url": served.url, "app": app}
    served.stop()
    app.close()


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_a_bug_on_the_page_is_a_500_with_a_logged_traceback(
    page: dict[str, Any], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    def broken_search(query: str, top_k: int = 12) -> None:
        raise ValueError("an internal invariant broke")

    monkeypatch.setattr(page["app"], "search", broken_search)
    with caplog.at_level(logging.ERROR, logger="text4vis.serve"):
        status, body = _get(page["url"] + "/api/search?q=a+red+circle")
    assert status == 500
    assert "internal error" in body["error"] and "ValueError" in body["error"]
    assert __version__ in body["error"] and "report" in body["error"]
    assert "Traceback" not in body["error"] and "invariant" not in body["error"]
    records = [r for r in caplog.records if r.name == "text4vis.serve" and r.exc_info]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    assert "/api/search" in records[0].getMessage()
    assert "Traceback" in caplog.text and "ValueError: an internal invariant broke" in caplog.text
    assert _get(page["url"] + "/api/info")[0] == 200  # the server keeps serving


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/search?q=a+red+circle", "no index loaded"),
        ("/api/search?q=a&k=many", "must be a whole number, got 'many'"),
        ("/thumbnail/first", "the video number must be a whole number"),
        ("/thumbnail/3", "no video 3 in the index"),
    ],
)
def test_a_bad_request_on_the_page_is_a_400_with_the_message(
    page: dict[str, Any], caplog: pytest.LogCaptureFixture, path: str, message: str
):
    with caplog.at_level(logging.ERROR, logger="text4vis.serve"):
        status, body = _get(page["url"] + path)
    assert status == 400 and message in body["error"], body
    assert not [r for r in caplog.records if r.name == "text4vis.serve"]  # nothing logged

"""Run folders and the real command-line entry point."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from text4vis import __version__
from text4vis.config import load_config
from text4vis.runs import create_run_dir, setup_logging


def test_run_folder_contents(tmp_path):
    cfg = load_config(None, [f"run.root={tmp_path}", "run.name=exp", "train.epochs=2"])
    run = create_run_dir(cfg, argv=["text4vis", "train", "x.yaml"])
    try:
        assert run.path.parent == tmp_path / "exp"
        assert yaml.safe_load((run.path / "config.yaml").read_text())["train"]["epochs"] == 2
        meta = json.loads((run.path / "meta.json").read_text())
        assert meta["text4vis_version"] == __version__
        assert meta["command"] == ["text4vis", "train", "x.yaml"]
        for key in ("git", "torch", "cuda", "host", "start_time", "python"):
            assert key in meta
        assert set(meta["git"]) == {"commit", "dirty"}
        logging.getLogger("text4vis.test").info("hello run folder")
        for handler in logging.getLogger("text4vis").handlers:
            handler.flush()
        assert "hello run folder" in (run.path / "log.txt").read_text()
        second = create_run_dir(cfg)
        assert second.path != run.path  # same second, distinct folders
    finally:
        setup_logging("INFO", None)


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("text4vis")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.process
def test_console_script_help_and_version():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    assert "config" in result.stdout
    version = run_cli("--version")
    assert version.returncode == 0
    assert version.stdout.strip() == f"text4vis {__version__}"


@pytest.mark.process
def test_config_command_prints_resolved_config_and_reports_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 4\n")
    ok = run_cli("config", str(path), "--set", "train.lr=1e-3")
    assert ok.returncode == 0, ok.stderr
    resolved = yaml.safe_load(ok.stdout)
    assert resolved["train"]["epochs"] == 4 and resolved["train"]["lr"] == 1e-3
    bad = run_cli("config", str(path), "--set", "train.epoch=3")
    assert bad.returncode == 2
    assert "did you mean train.epochs?" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_failed_command_writes_its_error_into_the_run_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from text4vis.cli import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"run:\n  root: {tmp_path / 'runs'}\n  name: uat\n  device: cpu\n")
    status = main(["eval", str(cfg), "--checkpoint", str(tmp_path / "missing")])
    assert status == 2
    err = capsys.readouterr().err
    assert "text4vis eval: error: checkpoint" in err and "Traceback" not in err
    logs = list((tmp_path / "runs" / "uat").glob("*/log.txt"))
    assert len(logs) == 1
    assert "ERROR" in logs[0].read_text() and "missing does not exist" in logs[0].read_text()
    assert err.count("missing does not exist") == 1  # printed once, not again by the logger

"""Run folders: every command that produces results writes ``<root>/<name>/<timestamp>/``.

A run folder holds everything needed to reproduce and inspect a result:

- ``config.yaml``: the resolved configuration (defaults <- YAML <- ``--set``);
- ``meta.json``: package version, git commit and dirty flag, command line, torch/CUDA versions,
  host, start time, world size;
- ``log.txt``: the log of rank 0 (``log_rank{N}.txt`` for other ranks when asked);
- whatever the command adds (metrics, checkpoints, plots).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from text4vis import __version__
from text4vis.config import Config, dump_config
from text4vis.console import setup_logging
from text4vis.distributed import broadcast_object, get_rank, get_world_size

__all__ = ["RunDir", "collect_meta", "create_run_dir", "git_info", "setup_logging"]


@dataclass
class RunDir:
    """A created run folder."""

    path: Path  # the folder itself
    config: Config  # the resolved config written to config.yaml
    meta: dict[str, Any]  # what meta.json holds

    def file(self, name: str) -> Path:
        """Path of a file inside the run folder."""
        return self.path / name

    def update_meta(self, **values: Any) -> None:
        """Add keys to meta.json (rank 0 writes)."""
        self.meta.update(values)
        if get_rank() == 0:
            _write_json(self.path / "meta.json", self.meta)


def git_info(path: str | Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the git checkout holding ``path`` (the package by default)."""
    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=10,
        )
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def collect_meta(argv: list[str] | None = None) -> dict[str, Any]:
    """Facts about the software and machine a run used."""
    meta: dict[str, Any] = {
        "text4vis_version": __version__,
        "git": git_info(),
        "command": list(sys.argv if argv is None else argv),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "start_time": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "world_size": get_world_size(),
    }
    try:
        meta["torch"] = torch.__version__
        meta["cuda"] = torch.version.cuda
        meta["cuda_available"] = torch.cuda.is_available()
        if torch.cuda.is_available():
            meta["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover - torch is a hard dependency
        meta["torch"] = None
    return meta


def _write_json(path: Path, values: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(values, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)


def _new_run_path(root: Path, name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = root / name / stamp
    path, n = base, 1
    while path.exists():  # two runs in the same second get distinct folders
        path = base.with_name(f"{stamp}-{n}")
        n += 1
    return path


def create_run_dir(
    config: Config,
    argv: list[str] | None = None,
    path: str | Path | None = None,
    all_ranks_log: bool = False,
    resumed_from: str | None = None,
) -> RunDir:
    """Create the run folder, write config.yaml and meta.json and start logging into it.

    Under DDP, rank 0 chooses the folder and every rank receives the same path.

    Args:
        config: the resolved configuration.
        argv: command line recorded in meta.json (``sys.argv`` by default).
        path: use this folder instead of ``<run.root>/<run.name>/<timestamp>`` (e.g. on resume).
        all_ranks_log: every rank > 0 also writes ``log_rank{N}.txt``.
        resumed_from: the checkpoint a resumed run continues from. The folder's meta.json is
            kept (the original command line and start time) and this process's facts are
            appended to its ``resumes`` list: ``{command, start_time, git, ..., checkpoint}``.
    """
    rank = get_rank()
    chosen = None
    if rank == 0:
        chosen = str(
            Path(path)
            if path is not None
            else _new_run_path(Path(config.run.root), config.run.name)
        )
        Path(chosen).mkdir(parents=True, exist_ok=True)
    chosen = broadcast_object(chosen)
    run_path = Path(chosen)
    meta = collect_meta(argv)
    meta_file = run_path / "meta.json"
    if resumed_from is not None:
        entry = {**meta, "checkpoint": str(resumed_from)}
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
        meta["resumes"] = [*meta.get("resumes", []), entry]
    if rank == 0:
        dump_config(config, run_path / "config.yaml")
        _write_json(meta_file, meta)
    log_file = (
        run_path / "log.txt"
        if rank == 0
        else (run_path / f"log_rank{rank}.txt" if all_ranks_log else None)
    )
    setup_logging(config.run.log_level, log_file)
    return RunDir(path=run_path, config=config, meta=meta)

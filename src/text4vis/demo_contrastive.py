"""The paper's table 9 at toy scale: the frozen text classifier vs the contrastive paradigm.

:func:`run_contrastive_demo` writes the synthetic-actions dataset of the demo
(:func:`text4vis.data.actions.make_actions_dataset`), then trains the demo's small model five
times, each as a real DDP job of 2 gloo processes (1 torch thread each) launched the way a user
launches one::

    python -m torch.distributed.run --nproc_per_node 2 -m text4vis train CONFIG --set ...

1. ``ce``: the paper's paradigm, cross-entropy over the frozen text classifier;
2. ``gather_online`` / ``gather_offline`` / ``local_online`` / ``local_offline``: the
   contrastive objective (:mod:`text4vis.engine.contrastive`), batch gather on or off, text
   tower trained (online) or fixed (offline).

All five runs share the data, the global batch (2 processes x ``batch_size / 2`` clips), the
seed (so the same initial weights and data order), the schedule and the initial text tower. It
writes into ``out_dir``:

- ``contrastive_report.md``: the table beside the paper's table 9, and which orderings agree;
- ``contrastive_metrics.json``: every number of the report, per run;
- ``config.yaml`` (the shared config), ``log.txt``, ``text_tower_init.safetensors``, ``data/``
  and ``runs/<row>/`` (each run's folder, with ``torchrun.log``: the job's console output).

**Text tower.** ``train.text_online=true`` trains a CLIP text tower (see
:func:`~text4vis.engine.contrastive.build_online_text_tower`), so every row uses the CLIP text
tower of the demo's architecture (``demo-vit``: 1 layer, width 32) rather than the demo's
all-MiniLM-L6-v2, which cannot be trained online. No pretrained CLIP weights exist offline: the
tower is randomly initialised once from ``seed``, written to ``text_tower_init.safetensors`` and
given to every run as ``model.text_pretrained``, so that the offline rows, the CE row and the
starting point of the online rows use the same class embeddings. The paper's text encoder is
pretrained; ours carries no language knowledge, which the report says.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["PAPER_TABLE9", "ROWS", "TableRow", "contrastive_demo_settings", "run_contrastive_demo"]

logger = logging.getLogger("text4vis.demo_contrastive")

TOWER_FILE = "text_tower_init.safetensors"
REPORT_FILE = "contrastive_report.md"
METRICS_FILE = "contrastive_metrics.json"
# Environment variables of an enclosing torchrun that must not leak into the jobs we launch.
_DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class TableRow:
    """One row of table 9: a training objective and its switches."""

    key: str  # name of the run folder and of the metrics entry
    paradigm: str  # "contrastive" or "ours"
    gather: bool  # batch gather across processes (contrastive only)
    text_online: bool  # the text tower is trained (contrastive only)

    @property
    def overrides(self) -> list[str]:
        """The ``--set`` values that select this row's objective."""
        if self.paradigm == "ours":
            return ["train.objective=ce"]
        return [
            "train.objective=contrastive",
            f"train.gather={str(self.gather).lower()}",
            f"train.text_online={str(self.text_online).lower()}",
        ]

    @property
    def label(self) -> str:
        if self.paradigm == "ours":
            return "Ours (cross-entropy, frozen text classifier)"
        return "Contrastive"


ROWS: tuple[TableRow, ...] = (
    TableRow("gather_online", "contrastive", True, True),
    TableRow("gather_offline", "contrastive", True, False),
    TableRow("local_online", "contrastive", False, True),
    TableRow("local_offline", "contrastive", False, False),
    TableRow("ce", "ours", False, False),
)

# Table 9 of the paper (Kinetics-400, ViT-B/16, 8 frames): top-1 % and V100-days.
PAPER_TABLE9: dict[str, dict[str, float]] = {
    "gather_online": {"top1": 81.2, "v100_days": 6.7},
    "gather_offline": {"top1": 80.7, "v100_days": 6.6},
    "local_online": {"top1": 77.8, "v100_days": 3.5},
    "local_offline": {"top1": 76.1, "v100_days": 3.3},
    "ce": {"top1": 81.5, "v100_days": 3.3},
}

# CE runs first: the other rows' times are divided by its time.
_RUN_ORDER = ("ce", "gather_online", "gather_offline", "local_online", "local_offline")


def contrastive_demo_settings(quick: bool = False) -> Any:
    """The demo's settings (:func:`text4vis.demo.demo_settings`) resized for five DDP runs.

    Model, frame size, frames, learning rates and the global batch are the demo's; the number
    of clips and epochs are set here so that the five runs fit about 6 minutes on 2 cores
    (``quick``: as little as gives every run a few optimizer steps).
    """
    from text4vis.demo import demo_settings

    settings = demo_settings(quick=quick)
    if quick:
        return dataclasses.replace(
            settings,
            train_per_class=2,
            val_per_class=1,
            unseen_per_class=1,
            epochs=1,
            num_workers=0,  # decode in the training processes: no worker start-up
        )
    return dataclasses.replace(
        settings,
        train_per_class=40,
        val_per_class=5,
        unseen_per_class=1,
        epochs=5,
        num_workers=1,  # per process: 2 training processes + 2 decoders on 2 cores
    )


# ----------------------------------------------------------------------------------------------
# Launching one DDP job
# ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _job_command(config: Path, run_dir: Path, overrides: list[str], nproc: int) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "text4vis",
        "train",
        str(config),
        "--run-dir",
        str(run_dir),
    ]
    for value in overrides:
        command += ["--set", value]
    return command


def _read_epochs(run_dir: Path) -> list[dict[str, float]]:
    """Rows of the run's ``metrics.csv`` (one per finished epoch), numbers as floats."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(handle)
        ]


def _run_job(
    row: TableRow, config: Path, run_dir: Path, nproc: int, epochs: int, timeout_s: float
) -> dict[str, Any]:
    """Train one row as a torchrun job; its console output goes to ``run_dir/torchrun.log``."""
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    overrides = [*row.overrides, f"run.name={row.key}"]
    command = _job_command(config, run_dir, overrides, nproc)
    env = {k: v for k, v in os.environ.items() if k not in _DIST_ENV}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    log_path = run_dir / "torchrun.log"
    load_before = os.getloadavg()[0]  # other work on the machine slows the run down
    start = time.perf_counter()
    with log_path.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        done = 0
        while process.poll() is None:
            if time.perf_counter() - start > timeout_s:
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"run {row.key} took more than {timeout_s:.0f}s and was stopped; see {log_path}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1.0)
            finished = len(_read_epochs(run_dir))
            if finished > done:
                done = finished
                logger.info(
                    "  %s: epoch %d/%d done (%.0fs)",
                    row.key,
                    done,
                    epochs,
                    time.perf_counter() - start,
                )
    wall = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    if process.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(
            f"run {row.key}: torchrun exited with status {process.returncode} (a worker failed); "
            f"full output in {log_path}:\n{tail}"
        )
    history = _read_epochs(run_dir)
    if len(history) != epochs or not (run_dir / "model").is_dir():
        raise RuntimeError(
            f"run {row.key} exited 0 but finished {len(history)} of {epochs} epochs or exported "
            f"no model; see {log_path}"
        )
    epoch_times = [r["epoch_time_s"] for r in history]
    mean = sum(epoch_times) / len(epoch_times)
    std = (
        math.sqrt(sum((t - mean) ** 2 for t in epoch_times) / (len(epoch_times) - 1))
        if len(epoch_times) > 1
        else 0.0
    )
    # Epoch 1 also pays one-off costs (first batches, allocator warm-up): the per-epoch cost the
    # comparisons use leaves it out when there are at least 3 epochs.
    steady = epoch_times[1:] if len(epoch_times) >= 3 else epoch_times
    steady_mean = sum(steady) / len(steady)
    steady_std = (
        math.sqrt(sum((t - steady_mean) ** 2 for t in steady) / (len(steady) - 1))
        if len(steady) > 1
        else None
    )
    final = history[-1]
    return {
        "paradigm": row.paradigm,
        "gather": row.gather,
        "text_online": row.text_online,
        "top1": float(final["val_top1"]),
        "top5": float(final["val_top5"]),
        "num_val_videos": int(final["val_num_videos"]),
        "final_train_loss": float(final["train_loss"]),
        "steps": int(final["step"]),
        "train_time_s": sum(epoch_times),
        "epoch_time_s": epoch_times,
        "epoch_time_mean_s": mean,
        "epoch_time_std_s": std,
        "steady_epochs": len(steady),
        "steady_epoch_time_mean_s": steady_mean,
        "steady_epoch_time_std_s": steady_std,
        "wall_s": wall,
        "load_avg_1min": [load_before, load_after],
        "peak_mem_mb_rank0": max(r["peak_mem_mb"] for r in history),
        "exit_code": process.returncode,
        "run_dir": str(run_dir),
        "log": str(log_path),
        "command": command,
    }


# ----------------------------------------------------------------------------------------------
# Text tower and its class embeddings
# ----------------------------------------------------------------------------------------------


def _write_initial_tower(arch: str, seed: int, path: Path) -> Path:
    """A randomly initialised open_clip ``arch`` (seeded), saved as a weight file."""
    import torch
    from safetensors.torch import save_file

    from text4vis.models.backbones import create_clip

    with torch.random.fork_rng():  # open_clip draws from the global generator; leave it as it was
        torch.manual_seed(seed)
        model = create_clip(arch)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _similarity_stats(weight: Any) -> dict[str, float]:
    """Mean and max cosine between different class rows of a ``[C, D]`` classifier."""
    import torch
    from torch.nn import functional as F

    w = F.normalize(weight.float(), dim=-1)
    sim = w @ w.t()  # [C, C]
    off = sim[~torch.eye(sim.shape[0], dtype=torch.bool)]
    return {"offdiag_cos_mean": float(off.mean()), "offdiag_cos_max": float(off.max())}


def _initial_class_embeddings(cfg: Any, class_names: list[str], embed_dim: int) -> Any:
    from text4vis.models.text import build_text_classifier, build_text_encoder

    encoder = build_text_encoder(cfg.model, embed_dim=embed_dim)
    return build_text_classifier(encoder, class_names, cfg.model.prompt, cfg.model.template)


def _trained_class_embeddings(run_dir: Path) -> Any:
    from text4vis.models.classifier import load_classifier

    return load_classifier(run_dir / "model" / "classifier.safetensors").weight


# ----------------------------------------------------------------------------------------------
# Comparisons
# ----------------------------------------------------------------------------------------------


def _accuracy_claim(
    claim: str, rows: dict[str, Any], a: str, b: str, paper_a: float, paper_b: float
) -> dict[str, Any]:
    """Does row ``a`` beat row ``b`` in top-1, as in the paper? (binomial standard errors)"""
    ra, rb = rows[a], rows[b]
    diff = 100.0 * (ra["top1"] - rb["top1"])
    se = [
        100.0 * math.sqrt(max(r["top1"] * (1 - r["top1"]), 0.0) / r["num_val_videos"])
        for r in (ra, rb)
    ]
    noise = 2.0 * math.sqrt(se[0] ** 2 + se[1] ** 2)
    return _verdict(
        "top-1", claim, a, b, 100.0 * ra["top1"], 100.0 * rb["top1"], paper_a, paper_b, diff, noise
    )


def _cost_claim(
    claim: str, rows: dict[str, Any], a: str, b: str, paper_a: float, paper_b: float
) -> dict[str, Any]:
    """Does row ``a`` train slower than row ``b``? (mean epoch time, its standard error over the
    epochs of each run)"""
    ra, rb = rows[a], rows[b]
    diff = ra["steady_epoch_time_mean_s"] - rb["steady_epoch_time_mean_s"]
    noise = None
    if ra["steady_epoch_time_std_s"] is not None and rb["steady_epoch_time_std_s"] is not None:
        se2 = sum(r["steady_epoch_time_std_s"] ** 2 / r["steady_epochs"] for r in (ra, rb))
        noise = 2.0 * math.sqrt(se2)
    return _verdict(
        "time per epoch",
        claim,
        a,
        b,
        ra["steady_epoch_time_mean_s"],
        rb["steady_epoch_time_mean_s"],
        paper_a,
        paper_b,
        diff,
        noise,
    )


def _verdict(
    kind: str,
    claim: str,
    a: str,
    b: str,
    value_a: float,
    value_b: float,
    paper_a: float,
    paper_b: float,
    diff: float,
    noise: float | None,
) -> dict[str, Any]:
    conclusive = noise is not None and abs(diff) > noise
    if paper_a == paper_b:  # the paper measured no difference
        verdict = "disagrees" if conclusive else "agrees"
    elif diff == 0:
        verdict = "tie"
    else:
        verdict = "agrees" if (diff > 0) == (paper_a > paper_b) else "disagrees"
    return {
        "kind": kind,
        "claim": claim,
        "a": a,
        "b": b,
        "demo_a": value_a,
        "demo_b": value_b,
        "paper_a": paper_a,
        "paper_b": paper_b,
        "difference": diff,
        "noise_2se": noise,
        "verdict": verdict,
        "conclusive": conclusive,
    }


def _claims(rows: dict[str, Any]) -> list[dict[str, Any]]:
    p = PAPER_TABLE9
    claims = []
    for a, b, text in (
        ("gather_online", "local_online", "batch gather beats local, text online"),
        ("gather_offline", "local_offline", "batch gather beats local, text offline"),
        ("gather_online", "gather_offline", "online text beats offline, with gather"),
        ("local_online", "local_offline", "online text beats offline, local"),
        ("ce", "gather_online", "ours beats the best contrastive row (gather, online)"),
        ("ce", "gather_offline", "ours beats contrastive gather, offline"),
        ("ce", "local_online", "ours beats contrastive local, online"),
        ("ce", "local_offline", "ours beats contrastive local, offline"),
    ):
        claims.append(_accuracy_claim(text, rows, a, b, p[a]["top1"], p[b]["top1"]))
    for a, b, text in (
        ("gather_online", "local_online", "batch gather costs more than local, text online"),
        ("gather_offline", "local_offline", "batch gather costs more than local, text offline"),
        ("gather_online", "gather_offline", "online text costs more than offline, with gather"),
        ("local_online", "local_offline", "online text costs more than offline, local"),
        ("gather_online", "ce", "contrastive (gather, online) costs more than ours"),
        ("gather_offline", "ce", "contrastive (gather, offline) costs more than ours"),
        ("local_online", "ce", "contrastive (local, online) costs more than ours"),
        ("local_offline", "ce", "contrastive (local, offline) costs the same as ours"),
    ):
        claims.append(_cost_claim(text, rows, a, b, p[a]["v100_days"], p[b]["v100_days"]))
    return claims


def _ranking(values: dict[str, float]) -> str:
    """``"a > b = c"``: keys by decreasing value, equal values joined by ``=``."""
    keys = sorted(values, key=lambda k: -values[k])
    text = keys[0]
    for before, key in zip(keys, keys[1:]):
        text += (" = " if values[key] == values[before] else " > ") + key
    return text


# ----------------------------------------------------------------------------------------------
# The demo
# ----------------------------------------------------------------------------------------------


def run_contrastive_demo(
    out_dir: str | Path | None = None,
    *,
    quick: bool = False,
    seed: int = 0,
    settings: Any | None = None,
    nproc: int = 2,
    progress: bool = True,
    run_timeout_s: float = 900.0,
) -> dict[str, Any]:
    """Train the five rows of table 9 on synthetic actions and write the report.

    Args:
        out_dir: report folder (created; default ``runs/demo_contrastive/<timestamp>``).
        quick: the much smaller version (for tests, about a minute and a half).
        seed: training seed of every run (initial weights, data order, augmentation) and of the
            initial text tower; the dataset is the demo's (``settings.data_seed``).
        settings: a :class:`text4vis.demo.DemoSettings` (default:
            :func:`contrastive_demo_settings`); ``batch_size`` is the global batch.
        nproc: gloo processes per run (``batch_size`` must be a multiple of it).
        progress: progress bar while writing the dataset.
        run_timeout_s: a run still going after this long is stopped (an error).

    Returns:
        The metrics also written to ``contrastive_metrics.json`` (with ``out`` added).

    Raises:
        ValueError: ``batch_size`` not a multiple of ``nproc``, or ``nproc < 2`` (the gather
            only differs from local training with several processes).
        RuntimeError: a run failed (the message names its log file).
    """
    from text4vis.config import config_from_dict, dump_config
    from text4vis.data import read_labels
    from text4vis.demo import DEMO_ARCH, base_config_dict, make_demo_dataset
    from text4vis.runs import create_run_dir

    settings = settings or contrastive_demo_settings(quick)
    if nproc < 2:
        raise ValueError(f"nproc must be at least 2 (batch gather needs processes), got {nproc}")
    if settings.batch_size % nproc:
        raise ValueError(
            f"batch_size {settings.batch_size} (global) must be a multiple of nproc={nproc}"
        )
    start = time.perf_counter()
    placeholder = config_from_dict({"run": {"root": "runs", "name": "demo_contrastive"}})
    run = create_run_dir(placeholder, path=out_dir)
    out = run.path.resolve()
    logger.info("contrastive demo (table 9) in %s (%s)", out, "quick" if quick else "full")

    t0 = time.perf_counter()
    dataset = make_demo_dataset(out / "data", settings, progress=progress)
    dataset_s = time.perf_counter() - t0
    class_names = read_labels(dataset.labels_seen)

    tower = _write_initial_tower(DEMO_ARCH, seed, out / TOWER_FILE)
    values = base_config_dict(settings, dataset, out)
    values["data"]["batch_size"] = settings.batch_size // nproc  # per process
    values["data"]["num_workers"] = settings.num_workers  # per process
    values["model"].update(
        {
            "temporal": "transformer",  # T-Trans, as in the paper's table 9
            "classifier": "text",
            "text_encoder": "clip",  # the only text side train.text_online can train
            "text_pretrained": str(tower),  # the same initial tower for every row
        }
    )
    values["train"].update(
        {
            "seed": seed,
            "eval_every": 0,  # validate once, at the end
            "text_lr_ratio": 1.0,  # a random tower: nothing pretrained to protect (as visual)
            "same_class_positive": True,
        }
    )
    values["run"].update({"device": "cpu", "name": "demo_contrastive"})
    cfg = config_from_dict(values)
    config_path = out / "config.yaml"
    dump_config(cfg, config_path)
    initial = _initial_class_embeddings(cfg, class_names, embed_dim=_embed_dim(DEMO_ARCH))

    rows: dict[str, dict[str, Any]] = {}
    by_key = {row.key: row for row in ROWS}
    t0 = time.perf_counter()
    for number, key in enumerate(_RUN_ORDER, 1):
        row = by_key[key]
        elapsed = time.perf_counter() - t0
        eta = elapsed / (number - 1) * (len(ROWS) - number + 1) if number > 1 else float("nan")
        logger.info(
            "[run %d/%d] %s: %s on %d gloo processes; %.0fs so far, ETA %.0fs",
            number,
            len(ROWS),
            key,
            " ".join(row.overrides),
            nproc,
            elapsed,
            eta,
        )
        result = _run_job(
            row, config_path, out / "runs" / key, nproc, settings.epochs, run_timeout_s
        )
        rows[key] = result
        logger.info(
            "[run %d/%d] %s: top-1 %.1f%%, training %.1fs, wall %.1fs",
            number,
            len(ROWS),
            key,
            100 * result["top1"],
            result["train_time_s"],
            result["wall_s"],
        )
    training_s = time.perf_counter() - t0
    ce = rows["ce"]
    ordered = {row.key: rows[row.key] for row in ROWS}
    for key, result in ordered.items():
        result["paper_top1"] = PAPER_TABLE9[key]["top1"]
        result["paper_v100_days"] = PAPER_TABLE9[key]["v100_days"]
        result["paper_cost_ratio_vs_ce"] = (
            PAPER_TABLE9[key]["v100_days"] / PAPER_TABLE9["ce"]["v100_days"]
        )
        result["train_time_ratio_vs_ce"] = result["train_time_s"] / ce["train_time_s"]
        result["wall_ratio_vs_ce"] = result["wall_s"] / ce["wall_s"]
        if result["text_online"]:
            result["trained_text_classifier"] = _similarity_stats(
                _trained_class_embeddings(Path(result["run_dir"]))
            )
        result["run_dir"] = str(Path(result["run_dir"]).relative_to(out))
        result["log"] = str(Path(result["log"]).relative_to(out))
    metrics: dict[str, Any] = {
        "mode": "quick" if quick else "full",
        "seed": seed,
        "data_seed": settings.data_seed,
        "settings": dataclasses.asdict(settings),
        "processes": nproc,
        "torch_threads_per_process": 1,
        "cpu_count": os.cpu_count(),
        "global_batch": settings.batch_size,
        "per_process_batch": settings.batch_size // nproc,
        "dataset": {
            "root": "data",
            "seen_classes": len(class_names),
            "train_clips": settings.train_per_class * len(class_names),
            "val_clips": settings.val_per_class * len(class_names),
        },
        "text_tower": {
            "arch": DEMO_ARCH,
            "weights": f"random initialisation (seed {seed}), {TOWER_FILE}",
            "initial_text_classifier": _similarity_stats(initial),
        },
        "rows": ordered,
        "paper_ranking_top1": _ranking({k: v["top1"] for k, v in PAPER_TABLE9.items()}),
        "demo_ranking_top1": _ranking({k: v["top1"] for k, v in ordered.items()}),
        "claims": _claims(ordered),
        "timing_s": {
            "dataset_s": dataset_s,
            "training_s": training_s,
            "total_s": time.perf_counter() - start,
        },
    }
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    (out / REPORT_FILE).write_text(render_contrastive_report(metrics))
    logger.info(
        "contrastive demo finished in %.0fs: %s", metrics["timing_s"]["total_s"], out / REPORT_FILE
    )
    metrics["out"] = str(out)
    return metrics


def _embed_dim(arch: str) -> int:
    import open_clip

    from text4vis.models.backbones import register_model_configs

    register_model_configs()
    return int(open_clip.get_model_config(arch)["embed_dim"])


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------


def _mark(value: bool) -> str:
    return "✓" if value else "✗"


def render_contrastive_report(m: dict[str, Any]) -> str:
    """``contrastive_report.md`` from the metrics (every number printed comes from ``m``)."""
    s = m["settings"]
    rows = m["rows"]
    lines: list[str] = []
    add = lines.append
    add("# text4vis demo: ours vs the contrastive paradigm (the paper's table 9) at toy scale")
    add("")
    add(
        f"Mode **{m['mode']}**, seed {m['seed']}. Every row is one DDP run of {m['processes']} "
        f"gloo processes ({m['torch_threads_per_process']} torch thread each) launched with "
        "`python -m torch.distributed.run ... -m text4vis train config.yaml --set ...`, global "
        f"batch {m['global_batch']} ({m['per_process_batch']} clips per process), so the "
        f"gathered similarity matrix is {m['global_batch']}x{m['global_batch']} and the local "
        f"one {m['per_process_batch']}x{m['per_process_batch']}. Same data, seed, initial "
        f"weights and schedule for every row: {s['epochs']} epoch(s), AdamW lr {s['lr']:g}, "
        f"{m['dataset']['train_clips']} training clips of {m['dataset']['seen_classes']} "
        f"synthetic-action classes; top-1 on the {m['dataset']['val_clips']} held-out clips of "
        "the same classes (single view)."
    )
    add("")
    tower = m["text_tower"]
    init = tower["initial_text_classifier"]
    add(
        f"**Text side.** Online training needs a CLIP text tower, so every row uses the "
        f"`{tower['arch']}` CLIP text tower (1 layer, width 32), not the demo's all-MiniLM-L6-v2. "
        "No pretrained CLIP weights exist offline: the tower is a "
        f"{tower['weights']}, shared by all rows: the fixed classifier of the CE and offline "
        "rows and the starting point of the online rows. Its class embeddings carry no language "
        f"knowledge (mean cosine between classes {init['offdiag_cos_mean']:.2f}, max "
        f"{init['offdiag_cos_max']:.3f}). The paper fine-tunes or freezes a *pretrained* CLIP "
        "text encoder, so the online-vs-offline comparison here is about a trainable vs a fixed "
        "random text side."
    )
    add("")
    add("## Table 9")
    add("")
    add(
        "| row | paradigm | batch gather | text encoder | paper top-1 | demo top-1 | "
        "paper V100-days | paper cost / ours | demo training time (s) | demo time / ours | "
        "demo wall time (s) | demo wall / ours |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, r in rows.items():
        gather = _mark(r["gather"]) if r["paradigm"] == "contrastive" else "✗"
        text = "online" if r["text_online"] else "offline"
        label = "Ours (CE)" if r["paradigm"] == "ours" else "Contrastive"
        add(
            f"| `{key}` | {label} | {gather} | {text} | {r['paper_top1']:.1f} | {100 * r['top1']:.1f} | "
            f"{r['paper_v100_days']:.1f} | {r['paper_cost_ratio_vs_ce']:.2f} | "
            f"{r['train_time_s']:.1f} | {r['train_time_ratio_vs_ce']:.2f} | "
            f"{r['wall_s']:.1f} | {r['wall_ratio_vs_ce']:.2f} |"
        )
    add("")
    add(
        "Demo training time: the sum of the training loop's epoch times on rank 0 (no start-up, "
        "validation or export); wall time: the whole `torchrun` job (start-up of 2 Python "
        "processes, training, validation, export). Ratios divide by the CE row's time; the "
        "paper's V100-days ratio is the same idea on 8 GPUs at ViT-B/16 scale. One run per row, "
        "so there is no seed spread; the accuracy noise is the binomial standard error on "
        f"{m['dataset']['val_clips']} clips; the time per epoch (below) is the mean over the "
        "epochs after the first (all epochs when there are fewer than 3), its noise the standard "
        "error over those epochs."
    )
    add("")
    loads = [x for r in rows.values() for x in r.get("load_avg_1min", [])]
    if loads:
        add(
            f"The machine's 1-minute load average, read before and after each run, was "
            f"{min(loads):.1f} to {max(loads):.1f} on {m['cpu_count']} CPUs (the runs' own "
            "processes count in it; any other work on the machine shares the cores and adds to "
            "the times, unevenly between rows)."
        )
        add("")
    online = [(k, r) for k, r in rows.items() if "trained_text_classifier" in r]
    if online:
        parts = ", ".join(
            f"{k} {r['trained_text_classifier']['offdiag_cos_mean']:.2f}" for k, r in online
        )
        add(
            "Mean cosine between class embeddings after training the online towers: "
            f"{parts} (initial: {init['offdiag_cos_mean']:.2f})."
        )
        add("")
    add("## Do the orderings agree with the paper?")
    add("")
    add("| measure | claim (paper) | paper | demo | verdict |")
    add("|---|---|---|---|---|")
    for c in m["claims"]:
        top1 = c["kind"] == "top-1"
        if c["noise_2se"] is None:
            confidence = "one epoch, no spread: not conclusive"
        elif c["conclusive"]:
            confidence = f"gap beyond 2 standard errors ({c['noise_2se']:.2f})"
        else:
            confidence = f"gap within 2 standard errors ({c['noise_2se']:.2f}): not conclusive"
        paper = f"{c['a']} {c['paper_a']:.1f} vs {c['b']} {c['paper_b']:.1f}"
        demo = (
            f"{c['a']} {c['demo_a']:.1f} vs {c['b']} {c['demo_b']:.1f}"
            if top1
            else f"{c['a']} {c['demo_a']:.2f} vs {c['b']} {c['demo_b']:.2f} s"
        )
        add(
            f"| {c['kind']} | {c['claim']} | {paper}{'' if top1 else ' V100-days'} | {demo} | "
            f"**{c['verdict']}** ({confidence}) |"
        )
    for kind in ("top-1", "time per epoch"):
        subset = [c for c in m["claims"] if c["kind"] == kind]
        agree = sum(c["verdict"] == "agrees" for c in subset)
        firm = sum(c["verdict"] == "agrees" and c["conclusive"] for c in subset)
        against = sum(c["verdict"] == "disagrees" and c["conclusive"] for c in subset)
        add("")
        add(
            f"{kind}: {agree} of {len(subset)} orderings agree with the paper ({firm} beyond "
            f"the noise); {against} disagree beyond the noise."
        )
    add("")
    add(
        f"Ranking by top-1, paper: {m['paper_ranking_top1']}; demo: {m['demo_ranking_top1']}"
        + (" (the same)." if m["paper_ranking_top1"] == m["demo_ranking_top1"] else ".")
    )
    add("")
    add(
        "What differs from the paper: a small ViT trained from scratch on synthetic clips instead "
        "of a CLIP-pretrained ViT-B/16 on Kinetics-400, a random text tower instead of CLIP's, a "
        f"global batch of {m['global_batch']} instead of 256, and gloo on CPU cores where the "
        "gather is cheap next to the model. Compare orderings, not values."
    )
    add("")
    add("## Reproduce one row")
    add("")
    add("```")
    add(
        "python -m torch.distributed.run --nproc_per_node 2 -m text4vis train config.yaml "
        "--set train.objective=contrastive --set train.gather=true --set train.text_online=true"
    )
    add("```")
    add("")
    add(
        "`config.yaml` in this folder is the shared config; each run's folder `runs/<row>/` holds "
        "its config, log, metrics, exported model and `torchrun.log`."
    )
    add("")
    t = m["timing_s"]
    add(
        f"Time: dataset {t['dataset_s']:.0f} s, training runs {t['training_s']:.0f} s; total "
        f"{t['total_s']:.0f} s."
    )
    add("")
    return "\n".join(lines)

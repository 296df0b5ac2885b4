"""Metric files and plots of a run folder: ``metrics.jsonl``, ``metrics.csv``, TensorBoard, PNGs.

Only rank 0 writes. ``metrics.jsonl`` gets one JSON object per logged training interval
(``"kind": "train"``) and per validation (``"kind": "val"``); ``metrics.csv`` has one row per
epoch and is rewritten from the epoch history every time, so a resumed run keeps one consistent
table. TensorBoard events go to ``tb/`` when the ``tensorboard`` package is installed.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from text4vis.distributed import is_main_process

__all__ = ["MetricsWriter", "plot_confusion_matrix", "plot_curves", "write_per_class_csv"]

logger = logging.getLogger("text4vis.engine.tracking")


class MetricsWriter:
    """Writes metrics of a run (a no-op on ranks other than 0).

    Args:
        run_path: the run folder.
        resume_step: on resume, ``metrics.jsonl`` lines of training steps after this step (logged
            by the interrupted process after its last checkpoint) are dropped so the file
            describes one run.
        tensorboard: write TensorBoard events when the package is installed.
    """

    def __init__(
        self, run_path: str | Path, *, resume_step: int | None = None, tensorboard: bool = True
    ) -> None:
        self.path = Path(run_path)
        self.enabled = is_main_process()
        self.jsonl = self.path / "metrics.jsonl"
        self.csv = self.path / "metrics.csv"
        self._tb: Any = None
        if not self.enabled:
            return
        if resume_step is not None and self.jsonl.exists():
            kept = [
                line
                for line in self.jsonl.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.jsonl.write_text("".join(f"{line}\n" for line in kept))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                logger.debug("tensorboard not installed; no event files")
            else:
                self._tb = SummaryWriter(log_dir=str(self.path / "tb"))

    def log(self, kind: str, values: dict[str, Any]) -> None:
        """Append one record (``kind`` = "train" | "val" | ...) to metrics.jsonl (+ TensorBoard)."""
        if not self.enabled:
            return
        record = {"kind": kind, **values}
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(record, sort_keys=True, default=float) + "\n")
        if self._tb is not None and "step" in values:
            for key, value in values.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"{kind}/{key}", value, values["step"])

    def write_epochs(self, history: Sequence[dict[str, Any]]) -> None:
        """Rewrite metrics.csv: one row per epoch, columns = union of keys in first-seen order."""
        if not self.enabled or not history:
            return
        columns: list[str] = []
        for row in history:
            columns.extend(k for k in row if k not in columns)
        tmp = self.csv.with_suffix(".csv.tmp")
        with tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in history:
                writer.writerow(row)
        tmp.replace(self.csv)

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _pyplot() -> Any:
    import matplotlib  # on use: slow to import, and only plots need it

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(
    train_records: Sequence[dict[str, Any]], history: Sequence[dict[str, Any]], path: str | Path
) -> Path:
    """PNG with the training loss per logged step and train/val top-1 per epoch."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    steps = [r["step"] for r in train_records if "loss" in r]
    losses = [r["loss"] for r in train_records if "loss" in r]
    ax_loss.plot(steps, losses, label="train loss")
    ax_loss.set_xlabel("optimizer step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training loss")
    ax_loss.grid(alpha=0.3)
    epochs = [row["epoch"] for row in history]
    for key, label in (("train_top1", "train top-1"), ("val_top1", "val top-1")):
        points = [(e, row[key]) for e, row in zip(epochs, history) if row.get(key) is not None]
        if points:
            ax_acc.plot(*zip(*points), marker="o", label=label)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("accuracy")
    ax_acc.set_ylim(0, 1)
    ax_acc.set_title("accuracy")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def plot_confusion_matrix(confusion: Any, class_names: Sequence[str], path: str | Path) -> Path:
    """PNG of a row-normalised confusion matrix (rows = true class); names shown up to 40."""
    plt = _pyplot()
    counts = np.asarray(confusion, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    size = min(20.0, 3.0 + 0.25 * len(class_names))
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(norm, vmin=0, vmax=1, cmap="viridis")
    fig.colorbar(image, ax=ax, fraction=0.046)
    if len(class_names) <= 40:
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=90, fontsize=7)
        ax.set_yticks(ticks, class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def write_per_class_csv(
    path: str | Path, class_names: Sequence[str], per_class: Sequence[float], counts: Sequence[int]
) -> Path:
    """CSV ``id,name,videos,accuracy`` (accuracy empty for classes without videos)."""
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "name", "videos", "accuracy"])
        for i, (name, acc, n) in enumerate(zip(class_names, per_class, counts)):
            writer.writerow([i, name, int(n), "" if acc != acc else f"{float(acc):.6f}"])
    return path

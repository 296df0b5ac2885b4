"""The trainer's own step (``fit``'s loop, its bookkeeping included) of two source trees, in one run.

``benchmarks/train_step.py`` times the engine's pieces against a plain loop; this one times the
whole training step of :func:`text4vis.engine.train.fit` (micro-batches, clipping, the flags
all-reduce, logging, running sums) for two checkouts of text4vis, e.g. before and after a
change::

    git worktree add /tmp/old <commit>
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/trainer_step.py \
        --tree new=src --tree old=/tmp/old/src --rounds 7
    git worktree remove /tmp/old

Each round runs one child process per tree (``PYTHONPATH`` = the tree); a child trains one
epoch of 60 steps (tiny-vit, temporal transformer, 8 clips of 8 frames at 32 px, grad_accum 2,
clipping, fp32, one thread) on in-memory batches (no decoding) and reports the CPU time of the
epoch per step (process time: less disturbed than wall time on a shared machine) and the
epoch's loss (equal for equal arithmetic). The ratio is taken per round, then its median.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS, ACCUM, BATCH, FRAMES, SIZE = 60, 2, 8, 8, 32


def child(out: str) -> None:
    import torch

    torch.set_num_threads(1)
    import text4vis.data.loaders as loaders
    from text4vis.config import load_config
    from text4vis.engine import train as train_mod

    class Dataset:
        few_shot = None

        def __len__(self) -> int:
            return STEPS * ACCUM * BATCH

        def path_of(self, i: int) -> str:
            return f"clip{i}"

    g = torch.Generator().manual_seed(0)
    batches = [
        {
            "video": torch.randint(
                0, 256, (BATCH, 1, FRAMES, 3, SIZE, SIZE), generator=g, dtype=torch.uint8
            ),
            "label": torch.randint(0, 4, (BATCH,), generator=g),
            "index": torch.arange(i * BATCH, (i + 1) * BATCH),
        }
        for i in range(STEPS * ACCUM)
    ]

    class Loader:
        sampler = None
        dataset = None

        def __len__(self) -> int:
            return len(batches)

        def __iter__(self):
            return iter(batches)

    loaders.build_loader = lambda *a, **k: Loader()
    cpu_times = []
    original_epoch = train_mod._Trainer.train_epoch

    def timed_epoch(self, epoch, stop_at):
        start = time.process_time()
        try:
            return original_epoch(self, epoch, stop_at)
        finally:
            cpu_times.append(time.process_time() - start)

    train_mod._Trainer.train_epoch = timed_epoch
    train_mod._read_data = lambda cfg: train_mod._TrainData(["a", "b", "c", "d"], Dataset(), None)
    with tempfile.TemporaryDirectory() as root:
        cfg = load_config(
            None,
            [
                "data.train_list=x.txt",
                "data.labels=x.csv",
                f"data.num_segments={FRAMES}",
                f"data.input_size={SIZE}",
                f"data.resize_size={SIZE}",
                f"data.batch_size={BATCH}",
                "model.arch=tiny-vit",
                "model.temporal=transformer",
                "model.classifier=orthogonal",
                "train.epochs=1",
                "train.warmup_epochs=0.2",
                f"train.grad_accum={ACCUM}",
                "train.precision=fp32",
                "train.clip_grad=1.0",
                "train.checkpoint_minutes=0",
                f"run.root={root}",
                "run.progress=false",
                "run.log_every=10",
                "run.device=cpu",
            ],
        )
        summary = train_mod.fit(cfg)
    row = summary.history[-1]
    with open(out, "w") as f:
        json.dump(
            {
                "ms_per_step": 1000 * cpu_times[0] / STEPS,
                "wall_ms": 1000 * row["epoch_time_s"] / STEPS,
                "loss": row["train_loss"],
            },
            f,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", action="append", default=[])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    trees = dict(t.split("=", 1) for t in args.tree)
    times: dict[str, list[float]] = {name: [] for name in trees}
    losses: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, src in trees.items():
            with tempfile.NamedTemporaryFile(suffix=".json") as out:
                env = dict(os.environ, PYTHONPATH=src, OMP_NUM_THREADS="1")
                subprocess.run(
                    [sys.executable, __file__, "--child", out.name],
                    env=env,
                    check=True,
                    capture_output=True,
                )
                result = json.loads(Path(out.name).read_text())
            times[name].append(result["ms_per_step"])
            losses[name] = result["loss"]
    for name, values in times.items():
        print(
            f"{name}: median {statistics.median(values):.2f} ms/step, min {min(values):.2f} "
            f"(rounds {[round(v, 2) for v in values]}), epoch loss {losses[name]!r}"
        )
    names = list(trees)
    if len(names) == 2:
        a, b = names
        ratios = [x / y for x, y in zip(times[a], times[b])]
        print(
            f"CPU time per step, ratio {a}/{b}: median of medians "
            f"{statistics.median(times[a]) / statistics.median(times[b]):.3f}, per-round ratios "
            f"{[round(r, 3) for r in ratios]}, median {statistics.median(ratios):.3f}"
        )


if __name__ == "__main__":
    main()

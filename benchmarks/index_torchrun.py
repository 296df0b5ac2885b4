"""Indexing in 1 process against ``torchrun --nproc-per-node 2``: wall time and CPU time per video.

The demo's synthetic videos and a tiny model trained the demo's way for one epoch (``demo-vit``,
a few seconds); ``text4vis index`` over every video, once in one process and once under
``torchrun`` with 2 gloo processes on the CPU, alternating for ``--rounds`` rounds (a new index
each time). Wall seconds, and the CPU seconds of all the processes together (their ``rusage``:
user + system) per video, which is the per-core cost a busy machine cannot disturb much.

    .venv/bin/python benchmarks/index_torchrun.py --rounds 2
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from search import git_commit  # noqa: E402


def make_model(root: Path, per_class: int) -> tuple[Path, Path]:
    """A tiny demo model (1 epoch) and the folder of the demo's videos."""
    from text4vis.config import config_from_dict
    from text4vis.engine.train import fit
    from text4vis_demo.settings import base_config_dict, demo_settings, make_demo_dataset

    settings = dataclasses.replace(
        demo_settings(quick=True),
        train_per_class=per_class,
        val_per_class=2,
        unseen_per_class=2,
        epochs=1,
        num_workers=0,
    )
    dataset = make_demo_dataset(root / "data", settings, progress=False)
    values = base_config_dict(settings, dataset, root)
    values["model"].update({"classifier": "text", "temporal": "mean", "arch": "demo-vit"})
    summary = fit(config_from_dict(values), run_dir=root / "run")
    return Path(summary.model_dir), dataset.root / "videos"


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system of the children) of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--per-class", type=int, default=6, help="training clips per class (6)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        model, videos = make_model(root, args.per_class)
        count = len(list(videos.rglob("*.mp4")))
        common = ["index", str(videos), "--model", str(model), "--device", "cpu",
                  "--workers", "0", "--batch-size", "4", "--chunk-size", "8", "--no-progress"]  # fmt: skip
        single = [sys.executable, "-m", "text4vis"]
        torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    "--nproc-per-node=2", "-m", "text4vis"]  # fmt: skip
        results: dict[str, list[tuple[float, float]]] = {"1 process": [], "2 processes": []}
        for _ in range(args.rounds):
            for name, launcher in (("1 process", single), ("2 processes", torchrun)):
                out = root / "index"
                shutil.rmtree(out, ignore_errors=True)
                results[name].append(timed([*launcher, *common, "--out", str(out)]))
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} CPUs, 1 thread per process, "
            f"1-minute load {os.getloadavg()[0]:.1f}, commit {git_commit()}, {count} videos"
        )
        print("| launch | wall s (median) | speed-up | CPU s per video (all processes) |")
        print("|---|---|---|---|")
        base = statistics.median(w for w, _ in results["1 process"])
        for name, runs in results.items():
            wall = statistics.median(w for w, _ in runs)
            cpu = statistics.median(c for _, c in runs) / count
            print(f"| {name} | {wall:.1f} | {base / wall:.2f}x | {cpu:.3f} |")


if __name__ == "__main__":
    main()

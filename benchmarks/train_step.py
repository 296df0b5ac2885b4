"""Training-step time of the engine against a plain PyTorch loop, measured in one run.

One optimizer step (forward, cross-entropy, backward, AdamW step) on a random batch of clips
``[B, T, 3, S, S]`` (no decoding: ``benchmarks/data.py`` measures the data side), for a tiny model
(``tiny-vit``, 32 px) and ViT-B/32 (224 px, random weights), both with the temporal transformer
and a frozen random classifier:

- ``engine``: the trainer's own pieces: ``build_objective`` -> ``TrainStep`` -> autocast ->
  ``build_optimizer`` (param groups, lr ratio, no decay on norms/biases) -> ``set_lr`` from the
  schedule every step;
- ``plain``: ``model(x)``, ``F.cross_entropy``, ``backward``, one-group ``torch.optim.AdamW``.

The two are interleaved in rounds so that machine noise hits both; the table gives the median
and minimum step time, clips/s at the median, and the peak resident memory of the process.
Run::

    .venv/bin/python benchmarks/train_step.py      # ~8 minutes on 2 busy CPU cores (ViT-B/32)
    .venv/bin/python benchmarks/train_step.py --models tiny-vit --rounds 10
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import subprocess
import time
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from text4vis.config import load_config
from text4vis.engine.objectives import TrainStep, build_objective
from text4vis.engine.optim import LRSchedule, build_train_optimizer, set_lr
from text4vis.runtime import autocast_context

NUM_CLASSES = 16


@dataclass
class Setting:
    arch: str
    image_size: int
    frames: int
    batch: int


SETTINGS = {
    "tiny-vit": Setting("tiny-vit", 32, 8, 8),
    "ViT-B-32": Setting("ViT-B-32", 224, 8, 2),
}


def build(setting: Setting, precision: str):
    """Model + engine step + engine optimizer, and a copy + plain optimizer."""
    from text4vis.models.factory import build_model

    cfg = load_config(
        None,
        [
            f"model.arch={setting.arch}",
            "model.temporal=transformer",
            "model.classifier=random",
            f"data.num_segments={setting.frames}",
            f"data.input_size={setting.image_size}",
            f"train.precision={precision}",
        ],
    )
    class_names = [f"class {i}" for i in range(NUM_CLASSES)]
    engine_model = build_model(cfg, class_names)
    plain_model = build_model(cfg, class_names)
    objective = build_objective(cfg, engine_model, class_names)
    step = TrainStep(engine_model, objective)
    tc = cfg.train
    engine_opt = build_train_optimizer(engine_model, objective, tc, torch.device("cpu"))
    schedule = LRSchedule(base_lr=tc.lr, min_lr=tc.min_lr, warmup_steps=5, total_steps=1000)
    trainable = [p for p in plain_model.parameters() if p.requires_grad]
    plain_opt = torch.optim.AdamW(trainable, lr=tc.lr, betas=(0.9, 0.98), weight_decay=0.2)
    return step, engine_opt, schedule, plain_model, plain_opt


def time_engine(step, optimizer, schedule, video, labels, precision, counter) -> float:
    device = torch.device("cpu")
    start = time.perf_counter()
    with autocast_context(device, precision):
        loss, _ = step(video, labels)
    loss.backward()
    set_lr(optimizer, schedule(counter))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def time_plain(model, optimizer, video, labels, precision) -> float:
    device = torch.device("cpu")
    start = time.perf_counter()
    with autocast_context(device, precision):
        logits = model(video)
    loss = F.cross_entropy(logits.float(), labels)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        )
        return out.stdout.strip() + (" (dirty)" if dirty.stdout.strip() else "")
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (1 step each)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(
        f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, "
        f"torch {torch.__version__}, {args.threads} threads, {args.precision}, commit {commit()}"
    )
    print()
    print("| model | B x T x S | side | step ms (median) | step ms (min) | clips/s | ratio |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name in args.models:
        setting = SETTINGS[name]
        step, engine_opt, schedule, plain_model, plain_opt = build(setting, args.precision)
        gen = torch.Generator().manual_seed(0)
        video = torch.randn(
            setting.batch,
            setting.frames,
            3,
            setting.image_size,
            setting.image_size,
            generator=gen,
        )  # [B, T, 3, S, S]
        labels = torch.randint(0, NUM_CLASSES, (setting.batch,), generator=gen)
        for i in range(args.warmup):
            time_engine(step, engine_opt, schedule, video, labels, args.precision, i)
            time_plain(plain_model, plain_opt, video, labels, args.precision)
        engine_times, plain_times = [], []
        for i in range(args.rounds):
            engine_times.append(
                time_engine(step, engine_opt, schedule, video, labels, args.precision, i)
            )
            plain_times.append(time_plain(plain_model, plain_opt, video, labels, args.precision))
        plain_median = statistics.median(plain_times)
        shape = f"{setting.batch} x {setting.frames} x {setting.image_size}"
        for side, times in (("plain", plain_times), ("engine", engine_times)):
            median = statistics.median(times)
            print(
                f"| {name} | {shape} | {side} | {1000 * median:.1f} | {1000 * min(times):.1f} | "
                f"{setting.batch / median:.2f} | {median / plain_median:.2f} |"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print()
    print(f"peak resident memory of the process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()

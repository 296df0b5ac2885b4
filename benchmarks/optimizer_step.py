"""AdamW step time on the CPU: torch's per-parameter loop, "foreach" and the fused kernel.

``train.fused_adamw=auto`` picks the fused kernel on the CPU as on CUDA; this measures why. The
models are the demo's (``demo-rn`` with the 2-layer temporal transformer, 4.0M trainable
parameters) and ViT-B/32 with the 6-layer temporal transformer (random weights), their param
groups as the trainer builds them (lr ratio, no decay on norms and biases), random gradients.
The three variants are interleaved in rounds so that machine noise hits all three; the table
gives the median over rounds of the mean step time of ``--steps`` steps and the ratio to the loop.
Run::

    .venv/bin/python benchmarks/optimizer_step.py                 # about a minute, 1 thread
    .venv/bin/python benchmarks/optimizer_step.py --models demo-rn --rounds 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import time

import torch

from text4vis.config import load_config
from text4vis.engine.optim import model_param_groups

VARIANTS = {"loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}
MODELS = {"demo-rn": (32, 2), "ViT-B-32": (224, 6)}  # arch: (input size, temporal layers)


def build_groups(arch: str) -> tuple[torch.nn.Module, int]:
    from text4vis.models.factory import build_model

    size, layers = MODELS[arch]
    cfg = load_config(
        None,
        [
            f"model.arch={arch}",
            "model.temporal=transformer",
            f"model.temporal_layers={layers}",
            "model.classifier=random",
            f"data.input_size={size}",
        ],
    )
    model = build_model(cfg, [f"class {i}" for i in range(20)])
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.grad = torch.randn_like(p)
    return model, sum(p.numel() for p in params)


def step_ms(model: torch.nn.Module, variant: str, steps: int) -> float:
    groups = model_param_groups(model, lr=1e-3, weight_decay=0.2, visual_lr_ratio=0.1)
    optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.98), **VARIANTS[variant])
    optimizer.step()  # allocates the moments
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1000


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant and round")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be at least 1")
    torch.set_num_threads(args.threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, {args.threads} thread(s), load {os.getloadavg()[0]:.1f}, "
        f"commit {commit()}"
    )
    print("| model | trainable parameters | variant | ms per step (median) | vs loop |")
    print("|---|---|---|---|---|")
    for arch in args.models:
        model, count = build_groups(arch)
        times: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant in VARIANTS:
                times[variant].append(step_ms(model, variant, args.steps))
        loop = statistics.median(times["loop"])
        for variant, values in times.items():
            median = statistics.median(values)
            print(
                f"| {arch} | {count / 1e6:.1f}M | {variant} | {median:.2f} | {loop / median:.2f}x |"
            )


if __name__ == "__main__":
    main()

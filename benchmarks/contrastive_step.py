"""Training-step time of the contrastive paradigm against cross-entropy, as ratios in one run.

Every variant trains the same tiny VideoRecognizer on the same random batch through the same
code the trainer uses (``build_objective`` -> ``TrainStep`` -> DDP -> ``build_optimizer``):

- ``ce``: the paper's objective, cross-entropy over the frozen text classifier (the reference);
- ``contrastive`` with the batch gather on/off and the text tower online/offline (table 9's four
  rows).

The variants run on ``--procs`` gloo processes (CPU, one thread each by default), interleaved in
rounds so that background load hits them alike; the reported time of a variant is the median
over its timed steps of the slowest rank's step time (forward + backward + AdamW step); the
minimum is shown too, as the estimate least disturbed by other processes on the machine.

Example::

    .venv/bin/python benchmarks/contrastive_step.py --procs 2 --rounds 10 --steps 3
    # the demo's table 9: its image encoder and MiniLM as the (online) text side
    .venv/bin/python benchmarks/contrastive_step.py --arch demo-rn --temporal-layers 2 \
        --text-encoder sentence-transformers:all-MiniLM-L6-v2 --classes 20 --procs 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

VARIANTS = [
    # name, objective, gather, text_online
    ("ce", "ce", False, False),
    ("contrastive gather+online", "contrastive", True, True),
    ("contrastive gather+offline", "contrastive", True, False),
    ("contrastive local+online", "contrastive", False, True),
    ("contrastive local+offline", "contrastive", False, False),
]


def _make_cfg(args: argparse.Namespace, objective: str, gather: bool, online: bool) -> Any:
    from text4vis.config import config_from_dict

    return config_from_dict(
        {
            "model": {
                "arch": args.arch,
                "temporal": args.temporal,
                "temporal_layers": args.temporal_layers,
                "prompt": "template",
                "text_encoder": args.text_encoder,
            },
            "data": {"num_segments": args.frames, "input_size": args.image_size},
            "train": {
                "objective": objective,
                "gather": gather,
                "text_online": online,
                "precision": "fp32",
            },
        }
    )


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    import torch
    import torch.distributed as dist

    from text4vis.engine.objectives import TrainStep, build_objective
    from text4vis.engine.optim import build_optimizer
    from text4vis.models.factory import build_model

    torch.set_num_threads(args.threads)
    if world > 1:
        dist.init_process_group(
            "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
        )
    try:
        class_names = [f"action number {i}" for i in range(args.classes)]
        gen = torch.Generator().manual_seed(1000 + rank)
        video = torch.randn(
            args.batch, args.frames, 3, args.image_size, args.image_size, generator=gen
        )  # [B, T, 3, H, W]
        labels = torch.randint(0, args.classes, (args.batch,), generator=gen)
        steps = {}
        for name, objective_name, gather, online in VARIANTS:
            cfg = _make_cfg(args, objective_name, gather, online)
            model = build_model(
                cfg, class_names
            )  # seeded with train.seed = 0: same in every variant
            objective = build_objective(cfg, model, class_names)
            step_module: torch.nn.Module = TrainStep(model, objective)
            if world > 1:
                step_module = torch.nn.parallel.DistributedDataParallel(step_module)
            optimizer = build_optimizer(
                model, objective, lr=1e-5, weight_decay=0.2, visual_lr_ratio=0.1
            )
            steps[name] = (step_module, optimizer)

        def one_step(step_module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> float:
            if world > 1:
                dist.barrier()
            start = time.perf_counter()
            loss, _ = step_module(video, labels)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
            if world > 1:
                dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
            return float(elapsed)

        times: dict[str, list[float]] = {name: [] for name, *_ in VARIANTS}
        for name, _, _, _ in VARIANTS:
            for _ in range(args.warmup):
                one_step(*steps[name])
        for _ in range(args.rounds):
            for name, _, _, _ in VARIANTS:
                times[name].extend(one_step(*steps[name]) for _ in range(args.steps))
        if rank == 0:
            Path(out).write_text(json.dumps(times))
        if world > 1:
            dist.barrier()
    finally:
        if world > 1:
            dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="tiny-vit", help="open_clip architecture")
    parser.add_argument("--temporal", default="transformer", help="temporal head")
    parser.add_argument(
        "--temporal-layers", type=int, default=6, help="depth of the temporal transformer"
    )
    parser.add_argument(
        "--text-encoder",
        default="clip",
        help="model.text_encoder: clip (the architecture's tower) or e.g. "
        "sentence-transformers:all-MiniLM-L6-v2 (the demo's; trained by the online rows)",
    )
    parser.add_argument("--frames", type=int, default=8, help="T, frames per clip")
    parser.add_argument("--image-size", type=int, default=32, help="input resolution")
    parser.add_argument("--batch", type=int, default=8, help="N, clips per process")
    parser.add_argument("--classes", type=int, default=16, help="C, classes of the labels")
    parser.add_argument("--procs", type=int, default=2, help="M, gloo processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per variant per round")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import tempfile

    import torch
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "times.json")
        if args.procs == 1:
            _worker(0, 1, 0, args, out)
        else:
            ctx = mp.get_context("spawn")
            port = _free_port()
            procs = [
                ctx.Process(target=_worker, args=(r, args.procs, port, args, out))
                for r in range(args.procs)
            ]
            for p in procs:
                p.start()
            for p in procs:
                p.join()
            codes = [p.exitcode for p in procs]
            if codes != [0] * args.procs:
                print(f"worker exit codes {codes}", file=sys.stderr)
                return 1
        times = json.loads(Path(out).read_text())

    ref_median, ref_min = statistics.median(times["ce"]), min(times["ce"])
    rows = []
    for name, *_ in VARIANTS:
        median, fastest = statistics.median(times[name]), min(times[name])
        rows.append(
            {
                "variant": name,
                "median_ms": 1000 * median,
                "min_ms": 1000 * fastest,
                "median_ratio": median / ref_median,
                "min_ratio": fastest / ref_min,
            }
        )
    setup = (
        f"{args.arch}, temporal {args.temporal} ({args.temporal_layers} layers), "
        f"text {args.text_encoder}, T={args.frames}, {args.image_size}px, "
        f"N={args.batch} clips x M={args.procs} gloo process(es), {args.threads} thread(s) each, "
        f"fp32 CPU, {args.rounds}x{args.steps} timed steps per variant; torch {torch.__version__}, "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, commit {_commit()}"
    )
    print(setup)
    print()
    print("| variant | step ms (median) | ratio to ce | step ms (min) | ratio to ce |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['variant']} | {row['median_ms']:.1f} | {row['median_ratio']:.2f} "
            f"| {row['min_ms']:.1f} | {row['min_ratio']:.2f} |"
        )
    if args.json is not None:
        args.json.write_text(json.dumps({"setup": setup, "rows": rows, "times": times}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""CPU inference precision: fp32 against bf16 and int8, speed and agreement, in one run.

Two measurements:

1. **Speed**: clips/s of ViT-B/32 (open_clip by name, random weights) with the temporal
   transformer, T = 8 frames at 224 px, for each precision of
   :data:`text4vis.runtime.INFERENCE_PRECISIONS` that runs on the CPU, prepared by
   :func:`text4vis.engine.loops.prepare_inference` (the hook ``predict``, ``eval`` and
   ``features`` use). The precisions are interleaved in rounds (one forward each per round) so
   that the load of a shared machine hits all of them; each round gives a ratio to fp32, and the
   table shows the median ratio and the spread. Timed in wall clock and in CPU time of the
   process (with ``--threads 1``, the CPU time is the work per core, much less disturbed by other
   programs). The cosine between each precision's video embeddings and fp32's is measured on the
   same input.
2. **Agreement on a trained model**: the demo's main model (synthetic actions, ``demo-vit``,
   text classifier, temporal transformer) trained briefly by the real trainer, then
   :class:`text4vis.predict.Predictor` with each precision on the validation clips: the share of
   clips whose top-1 equals fp32's, and the cosine of the video embeddings to fp32's.

Run::

    .venv/bin/python benchmarks/cpu_inference.py                    # ~6 minutes on 2 cores
    .venv/bin/python benchmarks/cpu_inference.py --rounds 3 --skip-agreement
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import platform
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from text4vis.config import load_config
from text4vis.engine.loops import prepare_inference

CPU_PRECISIONS = ("fp32", "bf16", "int8")


def _load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()


def measure_speed(args: argparse.Namespace) -> list[str]:
    """Interleaved rounds of one forward per precision; a Markdown table."""
    from text4vis.models.factory import build_model

    cfg = load_config(
        None,
        [
            f"model.arch={args.arch}",
            "model.temporal=transformer",
            "model.classifier=random",
            f"data.num_segments={args.frames}",
            f"data.input_size={args.size}",
        ],
    )
    torch.manual_seed(0)
    base = build_model(cfg, [f"class {i}" for i in range(16)]).eval()
    models = {}
    for precision in CPU_PRECISIONS:
        models[precision] = prepare_inference(copy.deepcopy(base), precision, "cpu")
    del base
    x = torch.randn(args.batch, args.frames, 3, args.size, args.size)  # [B, T, 3, S, S]

    def forward(precision: str) -> torch.Tensor:
        model, autocast = models[precision]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast == "bf16"):
            return model.encode_video(x).float()  # [B, D]

    wall: dict[str, list[float]] = {p: [] for p in CPU_PRECISIONS}
    cpu: dict[str, list[float]] = {p: [] for p in CPU_PRECISIONS}
    with torch.inference_mode():
        reference = forward("fp32")
        cosine = {
            p: F.cosine_similarity(forward(p), reference, dim=-1).min().item()
            for p in CPU_PRECISIONS
        }
        for _ in range(args.warmup):
            for precision in CPU_PRECISIONS:
                forward(precision)
        for round_index in range(args.rounds):
            for precision in CPU_PRECISIONS:
                start_wall, start_cpu = time.perf_counter(), time.process_time()
                forward(precision)
                wall[precision].append(time.perf_counter() - start_wall)
                cpu[precision].append(time.process_time() - start_cpu)
            print(
                f"round {round_index + 1}: "
                + ", ".join(
                    f"{p} {wall[p][-1]:.2f}s wall / {cpu[p][-1]:.2f}s CPU" for p in CPU_PRECISIONS
                )
                + f" (load {_load_average():.1f})",
                flush=True,
            )

    def ratios(times: dict[str, list[float]], precision: str) -> list[float]:
        return sorted(a / b for a, b in zip(times["fp32"], times[precision]))

    rows = [
        f"ViT model {args.arch}, T={args.frames}, {args.size} px, batch {args.batch} clips, "
        f"{torch.get_num_threads()} torch thread(s), {args.rounds} interleaved rounds",
        "",
        "| precision | clips/s (wall, median) | speed-up (wall): median [min-max] "
        "| CPU s/clip (median) | speed-up (CPU time): median [min-max] | min cosine to fp32 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for precision in CPU_PRECISIONS:
        w, c = ratios(wall, precision), ratios(cpu, precision)
        rows.append(
            f"| {precision} | {args.batch / statistics.median(wall[precision]):.2f} "
            f"| {statistics.median(w):.2f}x [{w[0]:.2f}-{w[-1]:.2f}] "
            f"| {statistics.median(cpu[precision]) / args.batch:.2f} "
            f"| {statistics.median(c):.2f}x [{c[0]:.2f}-{c[-1]:.2f}] "
            f"| {cosine[precision]:.5f} |"
        )
    return rows


def measure_agreement(args: argparse.Namespace) -> list[str]:
    """Compare precisions on the demo's validation clips: with the exported model of a finished
    demo (``--demo-report``), or with the demo's main model trained briefly here."""
    from text4vis.data.annotations import read_annotations

    if args.demo_report:
        report = Path(args.demo_report)
        records = read_annotations(report / "data" / "val.txt")
        videos = [str(report / "data" / r.path) for r in records]
        labels = torch.tensor([r.label for r in records])
        title = f"exported model of the demo report {report}"
        return _agreement_rows(report / "model", videos, labels, title)

    from text4vis.engine.train import fit
    from text4vis_demo.runs import RunSpec, spec_config
    from text4vis_demo.settings import DemoSettings, base_config_dict, make_demo_dataset

    settings = DemoSettings(
        epochs=args.demo_epochs, val_per_class=args.val_per_class, num_workers=0
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        dataset = make_demo_dataset(out / "data", settings, progress=False)
        base = base_config_dict(settings, dataset, out)
        cfg = spec_config(base, RunSpec("text", "transformer", 0, 0))
        summary = fit(cfg, run_dir=out / "run")
        records = read_annotations(dataset.val_list)
        videos = [str(dataset.root / r.path) for r in records]
        labels = torch.tensor([r.label for r in records])
        title = (
            "demo main model (demo-vit, text classifier, temporal transformer) trained "
            f"{args.demo_epochs} epochs"
        )
        return _agreement_rows(Path(summary.model_dir), videos, labels, title)


def _agreement_rows(
    model_dir: Path, videos: list[str], labels: torch.Tensor, title: str
) -> list[str]:
    """The agreement table of every CPU precision against fp32 on ``videos``."""
    from text4vis.predict import Predictor

    results = {}
    for precision in CPU_PRECISIONS:
        predictor = Predictor.from_pretrained(
            model_dir, device="cpu", precision=precision, num_workers=0
        )
        embeddings, errors = predictor.embed_videos(videos)
        if errors:
            raise RuntimeError(f"unreadable validation clips: {errors}")
        emb = torch.stack([embeddings[i] for i in range(len(videos))])[:, 0]  # [N, D]
        _, weight = predictor.classifier_for(None)
        scores = predictor.scores(emb[:, None], weight)  # [N, C]
        results[precision] = (emb, scores.argmax(dim=-1))
        if precision == "fp32":
            best_two = scores.topk(2, dim=-1).values  # [N, 2]
            margin = best_two[:, 0] - best_two[:, 1]  # fp32's lead of top-1 over top-2
    reference_emb, reference_top1 = results["fp32"]
    val_top1 = (reference_top1 == labels).float().mean().item()
    rows = [
        f"{title}: fp32 validation top-1 {100 * val_top1:.1f}%, {len(videos)} validation clips",
        "",
        "| precision | same top-1 as fp32 | min cosine to fp32 | mean cosine to fp32 "
        "| fp32 probability lead (top-1 minus top-2) of the clips that differ |",
        "|---|---:|---:|---:|---|",
    ]
    for precision, (emb, top1) in results.items():
        same = top1 == reference_top1
        cos = F.cosine_similarity(emb, reference_emb, dim=-1)
        leads = ", ".join(f"{value:.4f}" for value in margin[~same].tolist()) or "-"
        rows.append(
            f"| {precision} | {100 * same.float().mean().item():.1f}% ({int(same.sum())}/"
            f"{len(top1)}) | {cos.min().item():.5f} | {cos.mean().item():.5f} | {leads} |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="ViT-B-32", help="open_clip architecture (ViT-B-32)")
    parser.add_argument("--frames", type=int, default=8, help="T (8)")
    parser.add_argument("--size", type=int, default=224, help="input size (224)")
    parser.add_argument("--batch", type=int, default=1, help="clips per forward (1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 = per core)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved timed rounds (7)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds first (1)")
    parser.add_argument("--demo-epochs", type=int, default=6, help="training epochs (6)")
    parser.add_argument("--val-per-class", type=int, default=10, help="validation clips (10)")
    parser.add_argument("--skip-agreement", action="store_true", help="speed table only")
    parser.add_argument(
        "--demo-report",
        default="",
        help="agreement on the exported model of a finished `text4vis demo` report folder "
        "(its model/ and data/val.txt) instead of a model trained briefly here",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    warnings.filterwarnings("ignore", message="No pretrained weights")
    torch.set_num_threads(args.threads)
    loads = [_load_average()]
    speed = measure_speed(args)
    loads.append(_load_average())
    agreement = [] if args.skip_agreement else measure_agreement(args)
    loads.append(_load_average())
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = " plus uncommitted changes" if _git("status", "--porcelain") else ""
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, capability "
        f"{torch.backends.cpu.get_cpu_capability()}; torch {torch.__version__}; "
        f"commit {commit}{dirty}"
    )
    print(
        "1-minute load average at start / after speed / at end: "
        + " / ".join(f"{load:.1f}" for load in loads)
    )
    print()
    print("\n".join(speed))
    if agreement:
        print()
        print("\n".join(agreement))


if __name__ == "__main__":
    main()

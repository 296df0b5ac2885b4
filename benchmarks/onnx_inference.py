"""ONNX export and ONNX Runtime inference against torch on the CPU, in one run.

1. **Export**: ``text4vis.models.export.export_onnx`` of a random-weight model (open_clip
   architecture by name, temporal transformer, 16 classes): seconds for the video graph and its
   int8 variant, file sizes.
2. **Speed**: clips/s of torch fp32, torch int8 (``prepare_inference``, as ``predict
   --precision int8``), ONNX Runtime fp32 and ONNX Runtime int8 (``video.int8.onnx``), on the
   same uint8 clips ``[B, T, S, S, 3]`` (normalisation inside every model). Interleaved rounds,
   one forward each per round, so that the load of a shared machine hits all of them; each
   round gives a ratio to torch fp32 and the table shows the median and the spread. Wall clock
   and CPU time of the process (with ``--threads 1`` the CPU time is the work per core). The
   cosine of each variant's video embeddings to torch fp32's and the top-1 agreement of their
   logits are measured on the same clips.
3. **Agreement on a trained model** (``--model DIR --videos DIR [--labels FILE]``): the model
   exported with ``--int8``; per video, the top-1 label of ONNX Runtime fp32 and int8
   (:class:`OnnxPredictor`) against :class:`text4vis.Predictor` fp32, on the model's own
   classes and on new label names (through the text graph).

Run::

    .venv/bin/python benchmarks/onnx_inference.py                       # ViT-B-32, T=8, 224 px
    .venv/bin/python benchmarks/onnx_inference.py --arch tiny-vit --size 32 --frames 4
    .venv/bin/python -m text4vis demo --quick --out /tmp/dq      # the demo's quick model, then:
    .venv/bin/python benchmarks/onnx_inference.py --skip-speed --model /tmp/dq/model \
        --videos /tmp/dq/data/videos --labels /tmp/dq/data/labels_unseen.csv
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

VARIANTS = ("torch fp32", "torch int8", "ort fp32", "ort int8")


def _load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def measure(args: argparse.Namespace, directory: Path) -> list[str]:
    """Export, then interleaved rounds; Markdown lines."""
    from text4vis.config import DataConfig, load_config
    from text4vis.engine.loops import prepare_inference
    from text4vis.models.export import export_onnx
    from text4vis.models.factory import build_model

    cfg = load_config(
        None,
        [
            f"model.arch={args.arch}",
            "model.temporal=transformer",
            f"model.temporal_layers={args.temporal_layers}",
            "model.classifier=random",
            f"data.num_segments={args.frames}",
            f"data.input_size={args.size}",
        ],
    )
    torch.manual_seed(0)
    model = build_model(cfg, [f"class {i}" for i in range(16)]).eval()
    data = DataConfig(
        num_segments=args.frames, input_size=args.size, resize_size=round(args.size * 256 / 224)
    )
    summary = export_onnx(model, directory, data=data, int8=True)
    files = {k: v for k, v in summary.files.items() if k.endswith(".onnx")}

    torch.set_num_threads(args.threads)
    int8_model, _ = prepare_inference(copy.deepcopy(model), "int8", "cpu")
    sessions = {
        "ort fp32": _session(directory / "video.onnx", args.threads),
        "ort int8": _session(directory / "video.int8.onnx", args.threads),
    }
    clips = np.random.default_rng(0).integers(
        0, 256, (args.batch, args.frames, args.size, args.size, 3), dtype=np.uint8
    )
    video = torch.from_numpy(clips).permute(0, 1, 4, 2, 3)  # [B, T, S, S, 3] -> [B, T, 3, S, S]

    def forward(variant: str) -> tuple[np.ndarray, np.ndarray]:
        """(logits, embeddings) of one forward pass."""
        if variant.startswith("torch"):
            net: Any = model if variant == "torch fp32" else int8_model
            with torch.inference_mode():
                emb = net.encode_video(video)
                return net.logits_from_embeddings(emb).numpy(), emb.numpy()
        logits, emb = sessions[variant].run(None, {"video": clips})
        return logits, emb

    reference_logits, reference = forward("torch fp32")
    cosine, agreement = {}, {}
    for variant in VARIANTS:
        logits, emb = forward(variant)
        cosine[variant] = float(
            F.cosine_similarity(torch.from_numpy(emb), torch.from_numpy(reference), dim=-1).min()
        )
        agreement[variant] = float((logits.argmax(-1) == reference_logits.argmax(-1)).mean())
    for _ in range(args.warmup):
        for variant in VARIANTS:
            forward(variant)
    wall: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for round_index in range(args.rounds):
        for variant in VARIANTS:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            forward(variant)
            wall[variant].append(time.perf_counter() - start_wall)
            cpu[variant].append(time.process_time() - start_cpu)
        logging.info(
            "round %d: %s (load %.1f)",
            round_index + 1,
            ", ".join(f"{v} {wall[v][-1]:.2f}s" for v in VARIANTS),
            _load_average(),
        )

    def ratios(times: dict[str, list[float]], variant: str) -> list[float]:
        return sorted(a / b for a, b in zip(times["torch fp32"], times[variant]))

    rows = [
        f"{args.arch} (random weights), temporal transformer ({args.temporal_layers} layers), "
        f"T={args.frames}, {args.size} px, batch {args.batch} clips, {args.threads} thread(s), "
        f"{args.rounds} interleaved rounds",
        "",
        "export: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in summary.seconds.items())
        + "; files: "
        + ", ".join(f"{k} {v / 1e6:.1f} MB" for k, v in files.items()),
        "",
        "| variant | clips/s (wall, median) | speed-up (wall): median [min-max] "
        "| CPU ms/clip (median) | speed-up (CPU time): median [min-max] "
        "| min cosine to torch fp32 | top-1 agreement |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for variant in VARIANTS:
        w, c = ratios(wall, variant), ratios(cpu, variant)
        rows.append(
            f"| {variant} | {args.batch / statistics.median(wall[variant]):.2f} "
            f"| {statistics.median(w):.2f}x [{w[0]:.2f}-{w[-1]:.2f}] "
            f"| {1000 * statistics.median(cpu[variant]) / args.batch:.2f} "
            f"| {statistics.median(c):.2f}x [{c[0]:.2f}-{c[-1]:.2f}] "
            f"| {cosine[variant]:.5f} | {agreement[variant]:.2f} |"
        )
    return rows


def agreement_on_model(args: argparse.Namespace, directory: Path) -> list[str]:
    """Top-1 of ONNX Runtime fp32 / int8 against Predictor fp32 on a trained model's videos,
    for its own classes and (``--labels``) new label names."""
    from text4vis.data.discovery import find_videos
    from text4vis.data.labels import parse_labels
    from text4vis.models.export import export_saved_model
    from text4vis.onnx_runtime import OnnxPredictor
    from text4vis.predict import Predictor

    export_saved_model(args.model, directory, int8=True)
    videos = find_videos([args.videos])[: args.max_videos]
    reference = Predictor.from_pretrained(args.model, precision="fp32", num_workers=0)
    runtimes = {
        precision: OnnxPredictor.from_export(directory, precision=precision, batch_size=8)
        for precision in ("fp32", "int8")
    }
    rows = [
        "",
        f"trained model {args.model}: top-1 on {len(videos)} videos of {args.videos}",
        "",
        "| labels | runtime | top-1 agreement with Predictor fp32 | with ONNX Runtime fp32 |",
        "|---|---|---:|---:|",
    ]
    label_sets: dict[str, list[str] | None] = {"own classes": None}
    if args.labels:
        label_sets[f"{args.labels} (new names, text graph)"] = parse_labels(args.labels)
    for name, labels in label_sets.items():
        want = [r[0]["label"] for r in reference.predict(videos, labels=labels, top_k=1)]
        got = {
            precision: [r[0]["label"] for r in runtime.predict(videos, labels=labels, top_k=1)]
            for precision, runtime in runtimes.items()
        }
        for precision, top1 in got.items():
            to_torch = np.mean([a == b for a, b in zip(top1, want)])
            to_fp32 = np.mean([a == b for a, b in zip(top1, got["fp32"])])
            rows.append(f"| {name} | ONNX Runtime {precision} | {to_torch:.4f} | {to_fp32:.4f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="ViT-B-32")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--temporal-layers", type=int, default=6)
    parser.add_argument("--batch", type=int, default=4, help="clips per forward pass")
    parser.add_argument("--threads", type=int, default=1, help="torch and ORT threads")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--model", default=None, help="a trained model folder (agreement)")
    parser.add_argument("--videos", default=None, help="its videos (a folder), for agreement")
    parser.add_argument("--labels", default=None, help="new label names (a CSV or a,b,c)")
    parser.add_argument("--max-videos", type=int, default=400)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="onnx_bench_") as tmp:
        if not args.skip_speed:
            rows += measure(args, Path(tmp) / "random")
        if args.model:
            if not args.videos:
                parser.error("--model needs --videos DIR")
            rows += agreement_on_model(args, Path(tmp) / "trained")
    print("\n".join(rows))


if __name__ == "__main__":
    main()

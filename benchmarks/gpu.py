"""GPU throughput: ViT-B/16, 8 frames, 224 px, bf16 (the setting of the paper's table 12).

One run measures, on one GPU:

- **inference** clips/s over a batch sweep (``model(video)`` under ``torch.inference_mode`` and
  bf16 autocast), eager and with ``torch.compile``;
- **training** clips/s with the paper's recipe (AdamW betas 0.9/0.98, weight decay 0.2, the
  encoder at 0.1x the learning rate, cross-entropy against a frozen classifier of 400 classes,
  bf16 autocast), batch 32 per GPU, eager and compiled (``train.compile``), fused AdamW as
  ``train.fused_adamw=auto`` picks it on CUDA: the **bare step** (forward, backward, optimizer
  step on one resident batch) and the **trainer's step** (``text4vis.engine.train.fit`` on JPEG
  frame folders: its gradient-norm check and clipping, schedule, host synchronisations, loss
  bookkeeping, and under ``torchrun`` its all-reduces), timed over its second epoch without the
  time spent waiting for the loader (that share is in the note);
- the **fraction of peak**: FLOPs per clip counted with ``torch.utils.flop_counter`` (forward,
  and forward + backward for a training step; attention included: the count runs with the
  math attention backend, whose matrix products the counter sees on every device) times clips/s,
  over the GPU's dense bf16 peak (table below by GPU name, or ``--peak-tflops``);
- **peak memory** of each setting (CUDA allocator);
- the **data loader's** clips/s with all CPU cores as workers, training augmentation, from mp4
  and from JPEG frame folders (synthetic 428x320 videos written on the fly), so that one run tells
  whether data or compute limits training.

TF32 is set as the trainer sets it (``run.tf32``, on by default). The GPU is named with its
variant (H100 SXM, PCIe or NVL: their peaks differ), from its name and SM count.

It prints a markdown table and writes JSON with the GPU, driver, torch/CUDA versions and the git
commit. Weights are random (open_clip architecture by name): speed does not depend on them.
Without a usable GPU it stops at once with the reason (``--smoke`` runs on the CPU, and
``--device cpu`` runs the full setting there, which takes hours).

    python benchmarks/gpu.py                       # a few minutes on one GPU
    python benchmarks/gpu.py --smoke               # tiny model on the CPU, seconds (tests use it)
    python benchmarks/gpu.py --skip-compile --batches 1 16 64 --json out.json
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger("benchmarks.gpu")

# Dense (no sparsity) bf16 tensor-core peak in TFLOP/s from the vendors' datasheets, matched in
# this order against the GPU's model name (gpu_model: the device name with the H100 / H200
# variant made explicit; more specific names first).
PEAK_BF16_TFLOPS: list[tuple[str, float]] = [
    ("H200 NVL", 835.5),
    ("H200", 989.4),
    ("H100 NVL", 835.5),
    ("H100 PCIe", 756.0),
    ("H100 SXM", 989.4),
    ("A100", 312.0),
    ("L40S", 362.05),
    ("L4", 121.0),
    ("A10", 125.0),
]
PAPER_TABLE_12 = "ViT-B/16, 8 frames: 126.5 clips/s inference on one A100 (the paper's table 12)"


@dataclass
class Setting:
    """What to measure (the full run, or the tiny ``--smoke`` one)."""

    arch: str = "ViT-B-16"
    frames: int = 8
    size: int = 224
    classes: int = 400
    precision: str = "bf16"
    batches: list[int] = field(default_factory=lambda: [1, 8, 32, 64, 128, 256])
    train_batch: int = 32
    iters: int = 10
    warmup: int = 3
    compile: bool = True
    loader_videos: int = 16
    loader_batches: int = 0  # timed loader batches (0 = 4 per worker)
    loader_workers: int = 0  # 0 = every CPU core
    trainer_steps: int = 10  # optimizer steps per epoch of the trainer's timed run (2 epochs)


@dataclass
class Row:
    """One measured line of the table."""

    mode: str  # inference | training | loader
    variant: str  # eager | compiled | mp4 | frames
    batch: int
    clips_per_s: float | None = None
    tflops: float | None = None
    fraction_of_peak: float | None = None
    peak_memory_gib: float | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            cwd=Path(__file__).resolve().parent,  # the commit of this script, wherever it runs
        ).stdout.strip()
    except OSError:
        return ""


def environment(device: torch.device) -> dict[str, Any]:
    """GPU, driver, versions, commit: what the recorded figures need beside them."""
    info: dict[str, Any] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain")),
        "device": str(device),
        "gpu": None,
        "driver": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info["gpu"] = props.name
        info["gpu_model"] = gpu_model(props.name, props.multi_processor_count)
        info["sm_count"] = props.multi_processor_count
        info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        info["tf32"] = torch.backends.cuda.matmul.allow_tf32
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            info["driver"] = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=20,
                    check=False,
                )
                .stdout.splitlines()[0]
                .strip()
            )
    return info


def gpu_model(name: str, sm_count: int | None = None) -> str:
    """The device name with the H100 / H200 variant made explicit: ``"NVIDIA H100 SXM"``,
    ``"... PCIe"`` or ``"... NVL"`` (other GPUs: the name as it is).

    The SXM boards name themselves by memory ("NVIDIA H100 80GB HBM3"); the PCIe card says
    "PCIe" and has 114 SMs (SXM and NVL have 132); the NVL cards say "NVL".
    """
    for family in ("H100", "H200"):
        if family not in name or any(v in name for v in ("SXM", "PCIe", "NVL")):
            continue
        variant = "PCIe" if sm_count == 114 else "SXM"
        return f"{name} ({family} {variant})"
    return name


def peak_tflops(
    gpu_name: str | None, override: float | None, sm_count: int | None = None
) -> float | None:
    """Dense bf16 peak of the GPU: the override, else the table, else None (unknown)."""
    if override:
        return override
    if not gpu_name:
        return None
    model = gpu_model(gpu_name, sm_count)
    for pattern, value in PEAK_BF16_TFLOPS:
        if pattern in model:
            return value
    return None


def build_model(setting: Setting, device: torch.device) -> torch.nn.Module:
    """The video model with random weights: image encoder + 6-layer T-Trans + frozen classifier
    (built as training builds it, seeded with ``train.seed`` = 0)."""
    from text4vis.config import Config, DataConfig, ModelConfig
    from text4vis.models import factory

    model_cfg = ModelConfig(
        arch=setting.arch, pretrained="", temporal="transformer", classifier="random"
    )
    cfg = Config(
        model=model_cfg, data=DataConfig(num_segments=setting.frames, input_size=setting.size)
    )
    names = [f"class {i}" for i in range(setting.classes)]
    return factory.build_model(cfg, names).to(device)


def _clips(batch: int, setting: Setting, device: torch.device) -> torch.Tensor:
    """Random uint8 clips [B, T, 3, S, S], what the data loaders give: the model converts and
    normalises them on the device, so that cost is in every measured step."""
    shape = (batch, setting.frames, 3, setting.size, setting.size)
    return torch.randint(0, 256, shape, dtype=torch.uint8, device=device)


def count_flops(model: torch.nn.Module, setting: Setting, device: torch.device) -> tuple[int, int]:
    """FLOPs of one clip: (forward, forward + backward), in fp32 with math attention."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    video = torch.randn(1, setting.frames, 3, setting.size, setting.size, device=device)
    model.train()  # the training path of attention: F.scaled_dot_product_attention
    with sdpa_kernel(SDPBackend.MATH):
        counter = FlopCounterMode(display=False)
        with counter:
            logits = model(video)
        forward = counter.get_total_flops()
        counter = FlopCounterMode(display=False)
        with counter:
            logits = model(video)
            logits.float().logsumexp(dim=1).sum().backward()
        training = counter.get_total_flops()
    model.zero_grad(set_to_none=True)
    return forward, training


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_gib(device: torch.device) -> float | None:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return None  # the CPU has no per-phase peak to reset


def time_per_call(fn: Callable[[], Any], *, iters: int, warmup: int, device: torch.device) -> float:
    """Seconds per call of ``fn`` after ``warmup`` calls (compilation happens there)."""
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    _sync(device)
    return (time.perf_counter() - start) / iters


def _autocast(device: torch.device, precision: str) -> Any:
    from text4vis.runtime import autocast_context

    return autocast_context(device, precision)


def _is_oom(exc: BaseException) -> bool:
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc)


def measure_inference(
    model: torch.nn.Module, setting: Setting, device: torch.device, variant: str
) -> list[Row]:
    """Clips/s of ``model(video)`` for each batch size (stops at the first out-of-memory)."""
    model.eval()
    rows = []
    for batch in setting.batches:
        _reset_memory(device)
        video = _clips(batch, setting, device)

        def forward(video: torch.Tensor = video) -> None:
            with torch.inference_mode(), _autocast(device, setting.precision):
                model(video)

        try:
            seconds = time_per_call(forward, iters=setting.iters, warmup=setting.warmup,
                                    device=device)  # fmt: skip
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not _is_oom(exc):
                raise
            rows.append(Row("inference", variant, batch, note="out of memory"))
            break
        rows.append(
            Row(
                "inference",
                variant,
                batch,
                batch / seconds,
                peak_memory_gib=_peak_memory_gib(device),
            )  # fmt: skip
        )
        log.info("inference %s batch %d: %.1f clips/s", variant, batch, batch / seconds)
        del video
    return rows


def measure_training(
    model: torch.nn.Module, setting: Setting, device: torch.device, variant: str
) -> Row:
    """Clips/s of training steps with the paper's recipe (fresh optimizer, random labels)."""
    from text4vis.engine.acceleration import use_fused_adamw
    from text4vis.engine.optim import build_optimizer

    model.train()
    _reset_memory(device)
    optimizer = build_optimizer(
        model, None, lr=5e-5, weight_decay=0.2, visual_lr_ratio=0.1, betas=(0.9, 0.98),
        fused=use_fused_adamw("auto", device),
    )  # fmt: skip
    batch = setting.train_batch
    video = _clips(batch, setting, device)
    labels = torch.randint(0, setting.classes, (batch,), device=device)
    scaler = torch.amp.GradScaler(device.type, enabled=setting.precision == "fp16")

    def step() -> None:
        with _autocast(device, setting.precision):
            loss = F.cross_entropy(model(video), labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)

    try:
        seconds = time_per_call(step, iters=setting.iters, warmup=setting.warmup, device=device)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
        if not _is_oom(exc):
            raise
        return Row("training", variant, batch, note="out of memory")
    row = Row("training", variant, batch, batch / seconds, peak_memory_gib=_peak_memory_gib(device))
    log.info("training %s batch %d: %.1f clips/s", variant, batch, batch / seconds)
    return row


def measure_trainer(
    setting: Setting, device: torch.device, root: Path, frame_list: Path, variant: str
) -> Row:
    """Clips/s of the trainer's own step: :func:`text4vis.engine.train.fit` for 2 epochs of
    ``trainer_steps`` steps on the JPEG frame folders (the paper's recipe as in
    :func:`measure_training`; RandAugment off to spare the loader), timed over the second epoch
    without the time its steps waited for batches."""
    from text4vis.config import Config, DataConfig, ModelConfig, RunConfig, TrainConfig
    from text4vis.data import read_annotations
    from text4vis.data.annotations import write_annotations
    from text4vis.data.labels import write_labels
    from text4vis.engine.train import fit

    workers = setting.loader_workers or os.cpu_count() or 1
    batch = setting.train_batch
    records = read_annotations(frame_list)
    needed = setting.trainer_steps * batch
    train_list = write_annotations(
        root / "trainer.txt", (records * (-(-needed // len(records))))[:needed]
    )
    labels = write_labels(root / "labels.csv", [f"class {i}" for i in range(setting.classes)])
    cfg = Config(
        data=DataConfig(
            root=str(root), train_list=str(train_list), labels=str(labels), format="frames",
            num_segments=setting.frames, input_size=setting.size,
            resize_size=round(setting.size * 256 / 224), batch_size=batch, num_workers=workers,
            randaugment=False,
        ),
        model=ModelConfig(arch=setting.arch, pretrained="", temporal="transformer",
                          classifier="random"),
        train=TrainConfig(epochs=2, warmup_epochs=0.0, precision=setting.precision,
                          checkpoint_minutes=0.0, keep_previous=False,
                          compile=variant == "compiled"),
        run=RunConfig(root=str(root / "runs"), device=str(device), progress=False,
                      log_every=10**6),
    )  # fmt: skip
    _reset_memory(device)
    try:
        summary = fit(cfg)
    except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
        if not _is_oom(exc):
            raise
        return Row("trainer", variant, batch, note="out of memory")
    epoch = summary.history[-1]  # the second epoch: warm caches, compiled graphs
    compute_s = epoch["epoch_time_s"] * (1.0 - epoch["data_wait"])
    clips_per_s = setting.trainer_steps * batch / compute_s
    note = (f"fit(), steps without loader waits ({epoch['data_wait']:.0%} of the epoch waited "
            f"for {workers} workers)")  # fmt: skip
    peak = epoch["peak_mem_mb"] / 1024 if device.type == "cuda" else None
    log.info("trainer %s batch %d: %.1f clips/s (%s)", variant, batch, clips_per_s, note)
    return Row("trainer", variant, batch, clips_per_s, peak_memory_gib=peak, note=note)


def measure_loader(setting: Setting, root: Path, source: str, list_file: Path) -> Row:
    """Clips per second of the training data pipeline alone (all cores as workers)."""
    from text4vis.config import Config
    from text4vis.data import build_dataset, build_loader, read_annotations

    workers = setting.loader_workers or os.cpu_count() or 1
    cfg = Config()
    cfg.data.root = str(root)
    cfg.data.format = "video" if source == "mp4" else "frames"
    cfg.data.num_segments = setting.frames
    cfg.data.input_size = setting.size
    cfg.data.resize_size = round(setting.size * 256 / 224)
    cfg.data.batch_size = setting.train_batch
    cfg.data.num_workers = workers
    # Timed from the first batch on: the workers start together, so about one batch per worker
    # is already made then and the rate is overestimated by about workers / timed batches (1/4
    # with the default of 4 batches per worker).
    timed = setting.loader_batches or 4 * workers
    needed = (timed + 1) * setting.train_batch
    records = read_annotations(list_file)
    records = records * max(1, -(-needed // len(records)))
    loader = build_loader(build_dataset(cfg, "train", records=records), cfg, "train", seed=0)
    iterator = iter(loader)
    next(iterator)  # worker start-up
    start = time.perf_counter()
    clips = 0
    for _ in range(timed):
        clips += next(iterator)["video"].shape[0]
    seconds = time.perf_counter() - start
    del iterator
    note = f"{workers} workers, training augmentation (RandAugment included)"
    log.info("loader %s: %.1f clips/s", source, clips / seconds)
    return Row("loader", source, setting.train_batch, clips / seconds, note=note)


def _with_flops(rows: list[Row], flops_per_clip: int, peak: float | None) -> None:
    for row in rows:
        if row.clips_per_s is None:
            continue
        row.tflops = row.clips_per_s * flops_per_clip / 1e12
        if peak:
            row.fraction_of_peak = row.tflops / peak


def markdown(rows: list[Row]) -> str:
    """The rows as a markdown table."""

    def fmt(value: float | None, pattern: str) -> str:
        return "" if value is None else format(value, pattern)

    lines = [
        "| mode | variant | batch | clips/s | TFLOP/s | of peak | peak memory GiB | note |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.mode} | {r.variant} | {r.batch} | {fmt(r.clips_per_s, '.1f')} | "
            f"{fmt(r.tflops, '.3g')} | {fmt(r.fraction_of_peak, '.1%')} | "
            f"{fmt(r.peak_memory_gib, '.2f')} | {r.note} |"
        )
    return "\n".join(lines)


def run(setting: Setting, device: torch.device, peak_override: float | None) -> dict[str, Any]:
    """Every measurement of one setting; returns the JSON document."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from data import make_data  # benchmarks/data.py: the synthetic 428x320 videos

    env = environment(device)
    peak = peak_tflops(env["gpu"], peak_override, env.get("sm_count"))
    model = build_model(setting, device)
    forward_flops, train_flops = count_flops(model, setting, device)
    log.info("FLOPs per clip: forward %.4g G, training step %.4g G",
             forward_flops / 1e9, train_flops / 1e9)  # fmt: skip
    rows: list[Row] = []
    variants = ["eager", "compiled"] if setting.compile else ["eager"]
    for variant in variants:
        if variant == "compiled":
            start = time.perf_counter()
            model.compile()  # in place, as train.compile does
            log.info("torch.compile set up in %.1fs (compiles on first calls)",
                     time.perf_counter() - start)  # fmt: skip
        inference = measure_inference(model, setting, device, variant)
        _with_flops(inference, forward_flops, peak)
        training = [measure_training(model, setting, device, variant)]
        training[0].note = "bare step: forward, backward, optimizer on one resident batch"
        _with_flops(training, train_flops, peak)
        rows += inference + training
    del model
    _reset_memory(device)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        frames = max(2 * setting.frames, 16)
        video_list, frame_list = make_data(root, setting.loader_videos, frames)
        log.info("synthetic data written in %.1fs", time.perf_counter() - start)
        for source, list_file in (("mp4", video_list), ("frames", frame_list)):
            rows.append(measure_loader(setting, root, source, list_file))
        trainer = [measure_trainer(setting, device, root, frame_list, v) for v in variants]
        _with_flops(trainer, train_flops, peak)
        rows += trainer
    return {
        "environment": env,
        "setting": asdict(setting),
        "peak_bf16_tflops": peak,
        "flops_per_clip": {"forward": forward_flops, "training_step": train_flops},
        "paper": PAPER_TABLE_12,
        "rows": [r.to_dict() for r in rows],
    }


def smoke_setting() -> Setting:
    """A tiny model and a few iterations: runs on the CPU in seconds.

    In fp32: CPUs without bf16 instructions emulate it at ~20x the cost; the GPU run's bf16 goes
    through the same autocast helper.
    """
    return Setting(arch="tiny-vit", frames=4, size=32, classes=10, precision="fp32",
                   batches=[1, 2], train_batch=2,
                   iters=2, warmup=1, compile=False, loader_videos=2, loader_batches=1,
                   loader_workers=1, trainer_steps=2)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny model on the CPU, seconds")
    parser.add_argument(
        "--device", default=None,
        help="default: cuda (the run stops with the reason when CUDA is not usable); cpu with "
        "--smoke",
    )  # fmt: skip
    parser.add_argument("--arch", default=None, help="open_clip architecture (ViT-B-16)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help="inference sweep")
    parser.add_argument("--train-batch", type=int, default=None, help="training batch (32)")
    parser.add_argument("--iters", type=int, default=None, help="timed calls per setting")
    parser.add_argument("--skip-compile", action="store_true", help="eager only")
    parser.add_argument("--compile", action="store_true", help="also compiled in --smoke")
    parser.add_argument("--loader-workers", type=int, default=None, help="0 = all CPU cores")
    parser.add_argument(
        "--peak-tflops", type=float, default=None,
        help="the GPU's dense bf16 peak in TFLOP/s (default: from a table by GPU name)",
    )  # fmt: skip
    parser.add_argument("--json", default="gpu_benchmark.json", help="where to write the JSON")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    setting = smoke_setting() if args.smoke else Setting()
    if args.arch:
        setting.arch = args.arch
    if args.batches:
        setting.batches = args.batches
    if args.train_batch:
        setting.train_batch = args.train_batch
    if args.iters:
        setting.iters = args.iters
    if args.loader_workers is not None:
        setting.loader_workers = args.loader_workers
    setting.compile = (setting.compile or args.compile) and not args.skip_compile
    from text4vis.config import RunConfig
    from text4vis.runtime import cuda_problem, set_tf32

    device = torch.device(args.device or ("cpu" if args.smoke else "cuda"))
    if device.type == "cuda":
        problem = cuda_problem()
        if problem is not None:
            log.error("CUDA is not usable: %s. (--smoke measures a tiny model on the CPU; "
                      "--device cpu the full setting, for hours)", problem)  # fmt: skip
            return 2
    elif not args.smoke:
        log.warning("--device %s: the figures below are CPU figures, not the GPU benchmark", device)
    set_tf32(device, RunConfig().tf32)  # as the trainer does (run.tf32, on by default)

    result = run(setting, device, args.peak_tflops)
    env = result["environment"]
    print(f"# text4vis GPU benchmark: {setting.arch}, {setting.frames} frames, {setting.size} px, "
          f"{setting.precision}")  # fmt: skip
    print()
    print(f"- device: {env.get('gpu_model') or env['device']}, {env.get('sm_count')} SMs, "
          f"{env.get('gpu_memory_gib')} GiB, driver {env['driver']}, torch {env['torch']}, "
          f"CUDA {env['cuda']}, TF32 {env.get('tf32')}, {env['cpu_count']} CPU cores")  # fmt: skip
    print(f"- commit: {env['commit'][:12]}{' (uncommitted changes)' if env['uncommitted_changes'] else ''}"
          f", {env['date_utc']}, `{env['command']}`")  # fmt: skip
    flops = result["flops_per_clip"]
    peak = result["peak_bf16_tflops"]
    print(f"- FLOPs per clip: forward {flops['forward'] / 1e9:.4g} G, training step "
          f"{flops['training_step'] / 1e9:.4g} G; peak {peak or 'unknown'} TFLOP/s bf16 dense")  # fmt: skip
    print(f"- paper: {PAPER_TABLE_12}")
    print()
    print(markdown([Row(**r) for r in result["rows"]]))
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

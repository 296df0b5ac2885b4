"""Training data throughput: text4vis's pipeline against a plain reference, measured in one run.

Measures clips/s of training batches (T=8 frames, full augmentation: RandomResizedCrop 224, flip,
grayscale 0.2, RandAugment(2, 9), CLIP normalisation) from mp4 files and from JPEG frame folders,
with 0 and 2 DataLoader workers:

- ``text4vis``: :func:`text4vis.data.build_dataset` + :func:`text4vis.data.build_loader` (PyAV
  seeking decode or batched JPEG decode, v2 transforms on the uint8 clip tensor, fused normalise).
- ``reference``: what the paper's training pipeline does (see :class:`ReferenceDataset`): decord
  reads each sampled mp4 frame, PIL each JPEG; short side to 256 (bicubic), the paper's random
  sized crop to 224, flip, grayscale, per frame on PIL images; one stack, float, normalise. No
  RandAugment: the paper's code configures it but never applies it. Both pipelines draw the same
  frame indices (TSN segments).

The mp4 reference needs decord (``pip install 'text4vis[decord]'``). The synthetic videos are
428x320 (the short side of the paper's ``se320`` lists), with a seeded moving pattern plus noise
so JPEG and H.264 do real work. "CPU ms/clip" (process + workers, from ``/proc``) is the cost
per core. Run::

    .venv/bin/python benchmarks/data.py            # ~5 minutes on 2 busy cores
    .venv/bin/python benchmarks/data.py --videos 32 --batches 8 --workers 0 2 4
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import platform
import random
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from text4vis.config import Config
from text4vis.data import build_dataset, build_loader, read_annotations
from text4vis.data.sampling import segment_train_indices
from text4vis.data.synthetic import code_frames, write_frame_folder, write_mp4
from text4vis.data.transforms import CLIP_MEAN, CLIP_STD

T = 8
SIZE = 224


def make_data(root: Path, videos: int, frames: int, seed: int = 0) -> tuple[Path, Path]:
    """Write ``videos`` clips as mp4 (crf 23, keyframe every 25 frames) and JPEG folders (q90)."""
    from text4vis.data.annotations import VideoRecord, write_annotations

    rng = np.random.default_rng(seed)
    video_records, frame_records = [], []
    for v in range(videos):
        clip = code_frames(frames, 320, 428, seed=seed + v).astype(np.int16)
        grain = rng.normal(0, 10, size=(4, 320, 428, 3)).astype(np.int16)
        clip = np.clip(clip + grain[np.arange(frames) % 4], 0, 255).astype(np.uint8)
        write_mp4(root / f"v{v}.mp4", clip, crf=23, gop=25)
        write_frame_folder(root / f"f{v}", clip, quality=90)
        video_records.append(VideoRecord(f"v{v}.mp4", None, v % 4))
        frame_records.append(VideoRecord(f"f{v}", frames, v % 4))
    return (
        write_annotations(root / "videos.txt", video_records),
        write_annotations(root / "frames.txt", frame_records),
    )


class ReferenceDataset(torch.utils.data.Dataset):
    """What the paper's training pipeline does, written here from its description (datasets/ and
    utils/Augmentation.py of whwu95/Text4Vis; no code copied):

    - frames: the folder is listed (``os.listdir``) to count its frames, then each sampled JPEG
      is opened with PIL and converted to RGB;
    - mp4: ``decord.VideoReader`` opens the file (FFmpeg's default threads) and each sampled frame
      is read on its own (``reader[k].asnumpy()``), then wrapped as a PIL RGB image;
    - per frame on PIL images: the short side resized to 256 (bicubic), one random sized crop
      per clip (area 0.08-1, aspect 3/4-4/3, sides swapped with probability 0.5, ten attempts,
      else resize + random crop) resized to 224 (bilinear), horizontal flip 0.5, grayscale 0.2;
    - ``np.concatenate`` of the frames along channels, one float conversion and /255, then the
      mean/std normalisation in place.

    RandAugment is configured in the paper's code but never applied, so the reference does not
    apply it; text4vis's pipeline does (full augmentation). Both draw the same TSN frame indices.
    """

    def __init__(self, root: Path, list_file: Path, repeat: int, seed: int = 0) -> None:
        self.root = root
        self.records = read_annotations(list_file) * repeat
        self.seed = seed

    def __len__(self) -> int:
        return len(self.records)

    def _images(self, index: int, rng: np.random.Generator) -> list:
        from PIL import Image

        record = self.records[index]
        path = self.root / record.path
        if record.num_frames is not None:
            count = len(os.listdir(path))  # the paper counts the folder's files
            indices = segment_train_indices(count, T, rng)
            return [
                Image.open(path / f"img_{k + 1:05d}.jpg").convert("RGB") for k in indices.tolist()
            ]
        try:
            import decord
        except ImportError:
            raise SystemExit(
                "the mp4 reference reads with decord, as the paper does: "
                "pip install 'text4vis[decord]' (or run with --sources frames)"
            ) from None

        reader = decord.VideoReader(str(path))
        indices = segment_train_indices(len(reader), T, rng)
        return [Image.fromarray(reader[k].asnumpy()).convert("RGB") for k in indices.tolist()]

    @staticmethod
    def _sized_crop(images: list, rng: random.Random) -> list:
        from PIL import Image
        from torchvision.transforms import functional as F

        width, height = images[0].size
        for _ in range(10):
            area = rng.uniform(0.08, 1.0) * width * height
            aspect = rng.uniform(3 / 4, 4 / 3)
            w = int(round(math.sqrt(area * aspect)))
            h = int(round(math.sqrt(area / aspect)))
            if rng.random() < 0.5:
                w, h = h, w
            if w <= width and h <= height:
                x, y = rng.randint(0, width - w), rng.randint(0, height - h)
                return [
                    img.crop((x, y, x + w, y + h)).resize((SIZE, SIZE), Image.BILINEAR)
                    for img in images
                ]
        images = [F.resize(img, SIZE, Image.BILINEAR) for img in images]
        width, height = images[0].size
        x, y = rng.randint(0, width - SIZE), rng.randint(0, height - SIZE)
        return [img.crop((x, y, x + SIZE, y + SIZE)) for img in images]

    def __getitem__(self, index: int) -> dict:
        from PIL import Image
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as F

        rng = np.random.default_rng([self.seed, index])
        draws = random.Random(int(rng.integers(0, 2**31)))
        images = self._images(index, rng)
        images = [F.resize(img, 256, InterpolationMode.BICUBIC) for img in images]
        images = self._sized_crop(images, draws)
        if draws.random() < 0.5:
            images = [img.transpose(Image.FLIP_LEFT_RIGHT) for img in images]
        if draws.random() < 0.2:
            images = [F.rgb_to_grayscale(img, num_output_channels=3) for img in images]
        stacked = np.concatenate(images, axis=2)  # [H, W, 3T]
        tensor = torch.from_numpy(stacked).permute(2, 0, 1).contiguous().float().div(255)
        mean = torch.tensor(CLIP_MEAN * T)[:, None, None]
        std = torch.tensor(CLIP_STD * T)[:, None, None]
        tensor.sub_(mean).div_(std)  # [3T, S, S]
        return {"video": tensor.view(1, T, 3, SIZE, SIZE), "label": self.records[index].label}


def _load_average() -> float:
    """The 1-minute load average (other programs competing for the cores)."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def _process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _child_pids(pid: int) -> list[int]:
    """Every live descendant process of ``pid`` (Linux ``/proc``: each thread's children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:  # the thread ended meanwhile
            continue
        for child in map(int, children):
            found += [child, *_child_pids(child)]
    return found


def _children_cpu_seconds() -> dict[int, float]:
    """CPU seconds so far of each live child process of this one (the DataLoader workers).

    Read from ``/proc`` for every descendant rather than from a loader's private worker list,
    which a wrapping loader (text4vis's) does not expose. Keyed by pid, so that a measurement
    counts only the CPU each process spent between its two readings."""
    seconds: dict[int, float] = {}
    for child in _child_pids(os.getpid()):
        try:
            seconds[child] = _process_cpu_seconds(child)
        except OSError:  # exited between listing and reading
            continue
    return seconds


def measure(loader, batches: int) -> tuple[float, float]:
    """Clips per second (wall clock) and CPU seconds per clip, over ``batches`` batches after
    one warm-up batch (worker start-up).

    The CPU time is this process's plus its DataLoader workers' (read from ``/proc``). It is the
    work of the pipeline, much less affected than wall time by other programs competing for the
    cores (though not immune: shared caches and hyper-threads still slow it). With workers it
    also counts their prefetching of the next batches at the end, and not of the ones prefetched
    before the start, which roughly cancel in a steady stream.
    """
    iterator = iter(loader)
    next(iterator)
    start, own_start, children_start = (
        time.perf_counter(),
        time.process_time(),
        _children_cpu_seconds(),
    )
    clips = 0
    for _ in range(batches):
        batch = next(iterator)
        clips += batch["video"].shape[0]
    wall = time.perf_counter() - start
    children = _children_cpu_seconds()
    cpu = time.process_time() - own_start
    cpu += sum(seconds - children_start.get(pid, 0.0) for pid, seconds in children.items())
    del iterator
    return clips / wall, cpu / clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--videos", type=int, default=12, help="synthetic videos")
    parser.add_argument("--frames", type=int, default=48, help="frames per video")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=3, help="timed batches per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per setting")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument(
        "--sources", nargs="+", choices=("mp4", "frames"), default=["mp4", "frames"]
    )
    parser.add_argument(
        "--no-randaugment",
        action="store_true",
        help="text4vis without RandAugment (the augmentation the paper's code applies)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)  # like a DataLoader worker; the machine's cores go to workers
    repeat = max(1, -(-(args.batches + 1) * args.rounds * args.batch_size // args.videos))
    rows = []
    loads = [_load_average()]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        lists = dict(zip(("mp4", "frames"), make_data(root, args.videos, args.frames)))
        print(f"data written in {time.perf_counter() - start:.1f}s")
        for source, list_file in lists.items():
            if source not in args.sources:
                continue
            for workers in args.workers:
                cfg = Config()
                cfg.data.root = str(root)
                cfg.data.format = "video" if source == "mp4" else "frames"
                cfg.data.num_segments = T
                cfg.data.num_workers = workers
                cfg.data.batch_size = args.batch_size
                cfg.data.randaugment = not args.no_randaugment
                records = read_annotations(list_file) * repeat
                ours = build_dataset(cfg, "train", records=records)
                reference = ReferenceDataset(root, list_file, repeat)

                def ref_loader(dataset=reference, workers=workers):
                    return torch.utils.data.DataLoader(
                        dataset,
                        batch_size=args.batch_size,
                        shuffle=True,
                        num_workers=workers,
                        generator=torch.Generator().manual_seed(0),
                        persistent_workers=workers > 0,
                    )

                # Alternate the pipelines (ABAB...) so that both see the same machine load; the
                # ratio of each adjacent pair is the speed-up, and the median pair is reported.
                # Each measurement gets a fresh loader that is shut down afterwards, so no
                # worker of the other pipeline keeps prefetching in the background.
                pairs = []
                for _ in range(args.rounds):
                    ours_rate, ours_cpu = measure(
                        build_loader(ours, cfg, "train", seed=0), args.batches
                    )
                    gc.collect()
                    ref_rate, ref_cpu = measure(ref_loader(), args.batches)
                    gc.collect()
                    pairs.append((ours_rate / ref_rate, ours_rate, ref_rate, ours_cpu, ref_cpu))
                    cpu = (
                        f", CPU/clip {1e3 * ours_cpu:.0f} vs {1e3 * ref_cpu:.0f} ms "
                        f"(x{ref_cpu / ours_cpu:.2f})"
                    )
                    print(
                        f"{source:6s} workers={workers}: text4vis {ours_rate:6.1f} clips/s, "
                        f"reference {ref_rate:6.1f} clips/s, x{ours_rate / ref_rate:.2f}{cpu}",
                        flush=True,
                    )
                loads.append(_load_average())
                pairs.sort()
                rows.append((source, workers, *pairs[(len(pairs) - 1) // 2][1:]))
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain"], capture_output=True, text=True
    ).stdout.strip()
    print()
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} "
        f"torch thread(s) in the main process, {os.cpu_count()} CPUs"
    )
    print(
        "1-minute load average at the start and after each setting: "
        + ", ".join(f"{load:.1f}" for load in loads)
    )
    print(
        f"commit: {commit}{' plus uncommitted changes' if dirty else ''}  torch {torch.__version__}"
    )
    print(
        f"{args.videos} videos x {args.frames} frames at 428x320, batch {args.batch_size}, "
        f"{args.rounds} rounds of {args.batches} timed batches (median pair shown); "
        f"text4vis {'without' if args.no_randaugment else 'with'} RandAugment"
    )
    print()
    print(
        "| source | workers | text4vis clips/s | reference clips/s | speed-up (wall) "
        "| CPU ms/clip text4vis / reference | speed-up (CPU) |"
    )
    print("|---|---|---|---|---|---|---|")
    for source, workers, ours_rate, ref_rate, ours_cpu, ref_cpu in rows:
        cpu = f"{1e3 * ours_cpu:.0f} / {1e3 * ref_cpu:.0f} | {ref_cpu / ours_cpu:.2f}x"
        print(
            f"| {source} | {workers} | {ours_rate:.1f} | {ref_rate:.1f} "
            f"| {ours_rate / ref_rate:.2f}x | {cpu} |"
        )


if __name__ == "__main__":
    main()

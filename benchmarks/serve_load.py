"""`text4vis serve` under concurrent load: latency, throughput, errors and the server's memory.

The server runs as its own process (``python -m text4vis serve``) on a free loopback port, one
per batching setting (``--max-batch 1``: every request its own forward pass; ``--max-batch 8``:
concurrent requests share one). For each number of concurrent clients (1, 4, 16) the clients,
threads of this process with one HTTP connection each, send requests back to back for a fixed
time: ``--rounds`` parts of ``--duration`` seconds, the settings' parts interleaved so that the
drifting load of a shared machine falls on each. Every request labels one video (an upload, or
by path with ``--by path``) with the same label names, round robin over the videos given.

Reported per row: requests done, throughput (answers/s), latency p50 and p99 of the answered
requests, 503s (the queue refusing, intended under overload), other errors (must be 0), the mean
videos per forward pass (the server's ``/v1/health`` counters over the row), and the server's
memory: resident at the start and the end of the row, and its peak so far (``VmHWM`` of
``/proc/PID/status``).

``--soak SECONDS`` instead: one server under the first ``--clients`` number of clients for that
long, its ``VmRSS`` / ``RssAnon`` / ``RssFile`` / threads sampled every ``--sample-every``
seconds; reported: the series, first / last / peak RSS, and a line fitted over the second half
(slope per minute and per 1,000 requests, residual standard deviation). ``--by health`` loads
the HTTP stack alone; ``--server-env KEY=VALUE`` sets the server's environment (e.g.
``MALLOC_ARENA_MAX=2``), for experiments.

Loopback only, bounded: ``--rounds x --duration`` seconds per row, ``--max-requests`` per part.
Run::

    .venv/bin/python -m text4vis demo --quick --out /tmp/dq --no-progress     # /tmp/dq/model
    .venv/bin/python benchmarks/serve_load.py --model /tmp/dq/model \\
        --videos /tmp/dq/data/videos/val --rounds 4 --duration 10
    .venv/bin/python benchmarks/serve_load.py --model /tmp/dq/model \
        --videos /tmp/dq/data/videos/val --soak 600 --sample-every 15 --clients 16 --batches 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

LABELS = [
    "a red circle moving left",
    "a blue square moving right",
    "a green triangle moving up",
    "a yellow circle moving down",
    "a green circle blinking",
]


@dataclass
class Row:
    """One batching setting x number of clients."""

    max_batch: int
    clients: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    refused: int = 0  # 503
    errors: dict[str, int] = field(default_factory=dict)  # anything else: status or exception
    mean_batch: float = 0.0
    batches: int = 0  # forward passes and videos in them (the server's counters)
    videos: int = 0
    rss_start_mib: float = 0.0
    rss_mib: float = 0.0
    hwm_mib: float = 0.0

    def cells(self) -> list[str]:
        answered = len(self.latencies_ms)
        ordered = sorted(self.latencies_ms)
        p50 = statistics.median(ordered) if ordered else float("nan")
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")
        errors = sum(self.errors.values())
        return [
            "on" if self.max_batch > 1 else "off",
            str(self.max_batch),
            str(self.clients),
            str(answered + self.refused + errors),
            f"{answered / self.seconds:.1f}",
            f"{p50:.0f}",
            f"{p99:.0f}",
            str(self.refused),
            str(errors) + (f" {self.errors}" if errors else ""),
            f"{self.mean_batch:.2f}",
            f"{self.rss_start_mib:.0f} -> {self.rss_mib:.0f}",
            f"{self.hwm_mib:.0f}",
        ]


HEADER = [
    "batching",
    "max batch",
    "clients",
    "requests",
    "answers/s",
    "p50 ms",
    "p99 ms",
    "503",
    "other errors",
    "videos/forward",
    "server RSS MiB (start -> end)",
    "server peak MiB",
]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def process_status(pid: int) -> dict[str, float]:
    """Memory (MiB) and thread count of a process from ``/proc/PID/status`` (Linux): ``VmRSS``
    (resident), ``RssAnon`` (of it, anonymous: the heap, malloc arenas, tensors), ``RssFile``
    (mapped files: libraries), ``VmHWM`` (peak resident), ``Threads``."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            values[key] = int(rest.split()[0]) / 1024  # kB -> MiB
        elif key == "Threads":
            values[key] = int(rest)
    return values


def memory_mib(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of a process in MiB (Linux)."""
    values = process_status(pid)
    return values["VmRSS"], values["VmHWM"]


def start_server(args: argparse.Namespace, max_batch: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "text4vis", "serve", "--model", str(args.model)]
    command += ["--allow", str(args.videos), "--port", str(port), "--device", "cpu"]
    command += ["--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    command += ["--max-queue", str(args.max_queue), "--timeout", str(args.timeout)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    for setting in args.server_env:
        key, _, value = setting.partition("=")
        env[key] = value
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        try:
            if httpx.get(url + "/v1/health", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the server did not start: {process.communicate()[1][-2000:]}")
        time.sleep(0.3)


def stop_server(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def one_request(client: httpx.Client, video: Path, by: str) -> httpx.Response:
    if by == "health":  # the HTTP stack alone: no upload, no decoding, no model
        return client.get("/v1/health")
    if by == "path":
        return client.post("/v1/label", json={"path": video.name, "labels": LABELS, "top_k": 3})
    return client.post(
        "/v1/label/upload",
        files={"video": (video.name, video.read_bytes(), "video/mp4")},
        data={"labels": ", ".join(LABELS), "top_k": "3"},
    )


def load(
    url: str,
    row: Row,
    videos: list[Path],
    args: argparse.Namespace,
    duration: float | None = None,
    max_requests: int | None = None,
) -> None:
    """``row.clients`` threads send requests back to back for ``duration`` seconds
    (``args.duration``), ``max_requests`` (``args.max_requests``) at most."""
    lock = threading.Lock()
    stop_at = time.monotonic() + (args.duration if duration is None else duration)
    limit = args.max_requests if max_requests is None else max_requests
    sent = [0]

    def client_loop(number: int) -> None:
        with httpx.Client(base_url=url, timeout=args.timeout + 10) as client:
            position = number
            while time.monotonic() < stop_at:
                with lock:
                    if sent[0] >= limit:
                        return
                    sent[0] += 1
                video = videos[position % len(videos)]
                position += row.clients
                start = time.perf_counter()
                try:
                    response = one_request(client, video, args.by)
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed_ms = 1000 * (time.perf_counter() - start)
                with lock:
                    if status == 200:
                        row.latencies_ms.append(elapsed_ms)
                    elif status == 503:
                        row.refused += 1
                    else:
                        row.errors[str(status)] = row.errors.get(str(status), 0) + 1

    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(row.clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    row.seconds = time.monotonic() - began


# -- the soak: one server under steady load, its memory sampled over time ------------------------


@dataclass
class Sample:
    """The server process at one moment of a soak."""

    seconds: float  # since the load began
    requests: int  # answered, refused and failed so far
    rss_mib: float
    anon_mib: float
    file_mib: float
    threads: int


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``(slope, residual standard deviation)`` of ``ys`` over ``xs``."""
    slope, intercept = statistics.linear_regression(xs, ys)
    residuals = [y - (intercept + slope * x) for x, y in zip(xs, ys)]
    return slope, statistics.pstdev(residuals)


def soak_summary(samples: list[Sample]) -> dict[str, float]:
    """First, last and peak RSS (MiB) of a soak, and a line fitted to its second half (the first
    half holds the warm-up: allocator pools, worker threads): the slope in MiB per minute and
    per 1,000 requests, the residuals' standard deviation (the noise around the line) and the
    rise of the line over that half."""
    half = [sample for sample in samples if sample.seconds >= samples[-1].seconds / 2]
    minutes = [sample.seconds / 60 for sample in half]
    rss = [sample.rss_mib for sample in half]
    per_minute, noise = fit_line(minutes, rss)
    per_1000, _ = fit_line([sample.requests / 1000 for sample in half], rss)
    return {
        "first_mib": samples[0].rss_mib,
        "last_mib": samples[-1].rss_mib,
        "peak_mib": max(sample.rss_mib for sample in samples),
        "second_half_samples": len(half),
        "slope_mib_per_min": per_minute,
        "slope_mib_per_1000_requests": per_1000,
        "residual_sd_mib": noise,
        "rise_mib": per_minute * (minutes[-1] - minutes[0]),
    }


def soak(
    url: str, pid: int, videos: list[Path], args: argparse.Namespace
) -> tuple[Row, list[Sample]]:
    """``args.clients`` (the first number) clients for ``args.soak`` seconds; the server's memory
    every ``args.sample_every`` seconds (and at the start and the end)."""
    row = Row(int(args.batches.split(",")[0]), int(args.clients.split(",")[0]))
    worker = threading.Thread(
        target=load, args=(url, row, videos, args, args.soak, 10**9), name="soak-load"
    )
    samples: list[Sample] = []

    def sample(began: float) -> None:
        status = process_status(pid)
        done = len(row.latencies_ms) + row.refused + sum(row.errors.values())
        samples.append(
            Sample(
                time.monotonic() - began,
                done,
                status["VmRSS"],
                status["RssAnon"],
                status["RssFile"],
                int(status["Threads"]),
            )
        )
        last = samples[-1]
        print(
            f"{last.seconds:7.1f} s {last.requests:8d} requests  RSS {last.rss_mib:7.1f} MiB "
            f"(anon {last.anon_mib:7.1f}, file {last.file_mib:6.1f})  {last.threads} threads",
            file=sys.stderr,
            flush=True,
        )

    began = time.monotonic()
    worker.start()
    sample(began)
    while worker.is_alive():
        worker.join(timeout=max(0.0, began + args.sample_every * len(samples) - time.monotonic()))
        if worker.is_alive():
            sample(began)
    sample(began)
    return row, samples


def batching_counts(url: str) -> tuple[int, int]:
    stats = httpx.get(url + "/v1/health", timeout=10).json()["batching"]
    return stats["batches"], stats["videos"]


def machine_line() -> str:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"commit {commit}"
    )


def run_soak(args: argparse.Namespace, videos: list[Path]) -> int:
    max_batch = int(args.batches.split(",")[0])
    load_before = os.getloadavg()
    process, url = start_server(args, max_batch)
    try:
        with httpx.Client(base_url=url, timeout=args.timeout) as client:
            for video in videos[:4]:  # warm-up
                assert one_request(client, video, args.by).status_code == 200
        row, samples = soak(url, process.pid, videos, args)
        hwm = memory_mib(process.pid)[1]
    finally:
        stop_server(process)
    load_after = os.getloadavg()
    summary = soak_summary(samples)
    print(
        f"{machine_line()}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
        f"soak of {args.soak:g} s, {row.clients} clients, requests by {args.by}, server "
        f"--max-batch {max_batch}, OMP_NUM_THREADS={args.threads}"
        + "".join(f", {setting}" for setting in args.server_env)
        + "\n"
    )
    print("| s | requests | RSS MiB | anon MiB | file MiB | threads |")
    print("|---:|---:|---:|---:|---:|---:|")
    for s in samples:
        print(
            f"| {s.seconds:.0f} | {s.requests} | {s.rss_mib:.1f} | {s.anon_mib:.1f} | "
            f"{s.file_mib:.1f} | {s.threads} |"
        )
    errors = sum(row.errors.values())
    print(
        f"\n{len(row.latencies_ms)} answered ({len(row.latencies_ms) / row.seconds:.1f}/s), "
        f"{row.refused} refused (503), {errors} other errors {row.errors or ''}; "
        f"RSS first {summary['first_mib']:.1f}, last {summary['last_mib']:.1f}, peak "
        f"{summary['peak_mib']:.1f} MiB (VmHWM {hwm:.1f}); second half: "
        f"{summary['slope_mib_per_min']:+.2f} MiB/min "
        f"({summary['slope_mib_per_1000_requests']:+.3f} MiB per 1,000 requests), "
        f"{summary['rise_mib']:+.1f} MiB over the half, residual sd "
        f"{summary['residual_sd_mib']:.2f} MiB over {summary['second_half_samples']} samples"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "samples": [s.__dict__ for s in samples],
                    "summary": summary,
                    "answered": len(row.latencies_ms),
                    "refused": row.refused,
                    "errors": row.errors,
                },
                indent=1,
            )
        )
    return 1 if errors else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a saved model folder")
    parser.add_argument("--videos", type=Path, required=True, help="a folder of .mp4 clips")
    parser.add_argument("--clients", default="1,4,16", help="concurrent clients per row")
    parser.add_argument("--batches", default="1,8", help="--max-batch of the server, one per run")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per row")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved parts of each row")
    parser.add_argument(
        "--max-requests", type=int, default=20_000, help="requests per part of a row at most"
    )
    parser.add_argument("--max-wait-ms", type=float, default=10.0)
    parser.add_argument("--max-queue", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the server")
    parser.add_argument(
        "--by",
        choices=["upload", "path", "health"],
        default="upload",
        help="label an upload, label by path, or only GET /v1/health (the HTTP stack alone)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable of the server (repeatable), e.g. MALLOC_ARENA_MAX=2",
    )
    parser.add_argument(
        "--soak",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="instead of the table: one server (the first --batches) and the first --clients "
        "number of clients for SECONDS, the server's memory sampled over time; reports the "
        "series and the slope of RSS over the second half",
    )
    parser.add_argument(
        "--sample-every", type=float, default=15.0, help="seconds between samples of a soak"
    )
    parser.add_argument("--json", type=Path, help="also write the rows (or the soak) here")
    args = parser.parse_args()
    args.videos = args.videos.resolve()
    videos = sorted(args.videos.glob("*.mp4"))[:64]
    if not videos:
        parser.error(f"no .mp4 in {args.videos}")
    if args.soak:
        return run_soak(args, videos)
    clients = [int(c) for c in args.clients.split(",")]
    settings = [int(b) for b in args.batches.split(",")]
    rows = {(b, i): Row(b, count) for i, count in enumerate(clients) for b in settings}
    load_before = os.getloadavg()
    # Every setting has its own server, all started first; their rows are interleaved (round by
    # round, setting after setting) so that the shared machine's drifting load falls on each.
    servers: dict[int, tuple[subprocess.Popen, str]] = {}
    try:
        for max_batch in settings:
            servers[max_batch] = start_server(args, max_batch)
            with httpx.Client(base_url=servers[max_batch][1], timeout=args.timeout) as client:
                for video in videos[:4]:  # warm-up
                    assert one_request(client, video, args.by).status_code == 200
        for position, count in enumerate(clients):
            for round_number in range(args.rounds):
                for max_batch in settings:
                    process, url = servers[max_batch]
                    row = rows[max_batch, position]
                    part = Row(max_batch, count)
                    batches0, videos0 = batching_counts(url)
                    if round_number == 0:
                        row.rss_start_mib = memory_mib(process.pid)[0]
                    load(url, part, videos, args)
                    batches1, videos1 = batching_counts(url)
                    row.batches += batches1 - batches0
                    row.videos += videos1 - videos0
                    row.seconds += part.seconds
                    row.latencies_ms += part.latencies_ms
                    row.refused += part.refused
                    for key, value in part.errors.items():
                        row.errors[key] = row.errors.get(key, 0) + value
                    row.rss_mib, row.hwm_mib = memory_mib(process.pid)
                    row.mean_batch = row.videos / max(1, row.batches)
                    part.rss_mib, part.hwm_mib = row.rss_mib, row.hwm_mib
                    print(" | ".join(part.cells()), file=sys.stderr, flush=True)
    finally:
        for process, _ in servers.values():
            stop_server(process)
    load_after = os.getloadavg()
    print(
        f"{machine_line()}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
        f"{args.rounds} x {args.duration:g} s per row (interleaved), requests by {args.by}, {len(videos)} clips, server "
        f"OMP_NUM_THREADS={args.threads}, --max-wait-ms {args.max_wait_ms:g}, "
        f"--max-queue {args.max_queue}\n"
    )
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "|".join("---" if i < 3 else "---:" for i in range(len(HEADER))) + "|")
    for row in rows.values():
        print("| " + " | ".join(row.cells()) + " |")
    if args.json:
        args.json.write_text(
            json.dumps([{"cells": dict(zip(HEADER, r.cells()))} for r in rows.values()], indent=1)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

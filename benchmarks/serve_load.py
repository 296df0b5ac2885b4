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

Loopback only, bounded: ``--rounds x --duration`` seconds per row, ``--max-requests`` per part.
Run::

    .venv/bin/python -m text4vis demo --quick --out /tmp/dq --no-progress     # /tmp/dq/model
    .venv/bin/python benchmarks/serve_load.py --model /tmp/dq/model \\
        --videos /tmp/dq/data/videos/val --rounds 4 --duration 10
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


def memory_mib(pid: int) -> tuple[float, float]:
    """``(VmRSS, VmHWM)`` of a process in MiB (Linux)."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024  # kB -> MiB
    return values["VmRSS"], values["VmHWM"]


def start_server(args: argparse.Namespace, max_batch: int) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "text4vis", "serve", "--model", str(args.model)]
    command += ["--allow", str(args.videos), "--port", str(port), "--device", "cpu"]
    command += ["--max-batch", str(max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    command += ["--max-queue", str(args.max_queue), "--timeout", str(args.timeout)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
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
    if by == "path":
        return client.post("/v1/label", json={"path": video.name, "labels": LABELS, "top_k": 3})
    return client.post(
        "/v1/label/upload",
        files={"video": (video.name, video.read_bytes(), "video/mp4")},
        data={"labels": ", ".join(LABELS), "top_k": "3"},
    )


def load(url: str, row: Row, videos: list[Path], args: argparse.Namespace) -> None:
    """``row.clients`` threads send requests back to back for ``args.duration`` seconds."""
    lock = threading.Lock()
    stop_at = time.monotonic() + args.duration
    sent = [0]

    def client_loop(number: int) -> None:
        with httpx.Client(base_url=url, timeout=args.timeout + 10) as client:
            position = number
            while time.monotonic() < stop_at:
                with lock:
                    if sent[0] >= args.max_requests:
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


def batching_counts(url: str) -> tuple[int, int]:
    stats = httpx.get(url + "/v1/health", timeout=10).json()["batching"]
    return stats["batches"], stats["videos"]


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
    parser.add_argument("--by", choices=["upload", "path"], default="upload")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    args.videos = args.videos.resolve()
    videos = sorted(args.videos.glob("*.mp4"))[:64]
    if not videos:
        parser.error(f"no .mp4 in {args.videos}")
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
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"commit {commit}; load average {load_before[0]:.1f} before, {load_after[0]:.1f} after; "
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

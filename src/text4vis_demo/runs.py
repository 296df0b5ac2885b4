"""Launching the demos' training runs: in-process runs of the trainer (tables 6-8) and torchrun
jobs of several processes (table 9), and the evaluations the report adds to them.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from text4vis_demo.log import get_logger
from text4vis_demo.settings import INITS, TABLE6_TEMPORAL, TWO_SHOT_INITS, DemoSettings
from text4vis_demo.statistics import Record, mean_and_std

__all__ = [
    "JobResult",
    "LabelScore",
    "PredictExample",
    "RunResult",
    "RunSpec",
    "direction_groups",
    "direction_metrics",
    "eta_seconds",
    "evaluate_list",
    "lda_classifier",
    "log_run_start",
    "motion_group",
    "predict_example",
    "read_epochs",
    "run_specs",
    "run_torchrun_job",
    "spec_config",
    "train_run",
]

logger = get_logger(__name__)

# Environment variables of an enclosing torchrun that must not leak into the jobs we launch.
_DIST_ENV = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def eta_seconds(elapsed: float, number: int, total: int) -> float:
    """Time left before run ``number`` (1-based) of ``total`` starts, from the mean time of the
    runs so far (NaN before the first has finished)."""
    if number <= 1:
        return float("nan")
    return elapsed / (number - 1) * (total - number + 1)


def log_run_start(number: int, total: int, started: float, what: str) -> None:
    """Log ``[run number/total] what; <s> so far, ETA <s>`` before run ``number`` (1-based) of
    ``total``; ``started`` is the ``time.perf_counter()`` taken before the first run."""
    elapsed = time.perf_counter() - started
    logger.info(
        "[run %d/%d] %s; %.0fs so far, ETA %.0fs",
        number,
        total,
        what,
        elapsed,
        eta_seconds(elapsed, number, total),
    )


# ----------------------------------------------------------------------------------------------
# In-process runs (tables 6-8)
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One training run of the demo."""

    classifier: str  # model.classifier
    temporal: str  # model.temporal
    shot: int  # data.shot (0 = all clips)
    seed: int  # train.seed, model.classifier_seed, data.shot_seed
    visual: str = "pretrained"  # "pretrained" (stage 0's weights) or "scratch" (random init)

    @property
    def key(self) -> str:
        """The run's name: its folder under ``runs/`` and its entry in ``metrics.json``."""
        data = f"{self.shot}shot" if self.shot else "full"
        suffix = "-scratch" if self.visual == "scratch" else ""
        return f"{self.classifier}-{self.temporal}-{data}-s{self.seed}{suffix}"


def run_specs(settings: DemoSettings) -> list[RunSpec]:
    """The training runs, seed-major so that a first complete seed comes early."""
    specs = []
    for seed in range(settings.seeds):
        # Table 6 (its text run is also table 8's transformer row).
        specs += [RunSpec(init, TABLE6_TEMPORAL, 0, seed) for init in INITS]
        # Tables 7 and 8 with mean pooling (TAP), full data and 2 shots.
        specs += [RunSpec(init, "mean", 0, seed) for init in ("text", "learnable")]
        specs += [RunSpec(init, "mean", settings.shot, seed) for init in ("text", "learnable")]
        # Table 6's frozen classifiers in the same 2-shot regime: where a prior in the rows
        # matters most (the text run above is their text row).
        specs += [RunSpec(init, "mean", settings.shot, seed) for init in TWO_SHOT_INITS]
        if settings.pretrain:  # what pretraining changes: table 6's text row from a random encoder
            specs.append(RunSpec("text", TABLE6_TEMPORAL, 0, seed, "scratch"))
    return specs


def spec_config(base: dict[str, Any], spec: RunSpec, classifier_file: str = "") -> Any:
    """The run's :class:`~text4vis.config.Config`: the shared ``base`` with the spec's switches."""
    from text4vis.config import config_from_dict

    values = json.loads(json.dumps(base))  # deep copy
    values["model"].update(
        {
            "classifier": spec.classifier,
            "classifier_file": classifier_file,
            "classifier_seed": spec.seed,
            "temporal": spec.temporal,
        }
    )
    values["data"].update({"shot": spec.shot, "shot_seed": spec.seed})
    values["train"]["seed"] = spec.seed
    if spec.visual == "scratch":  # the same run without stage 0: random encoder, one lr
        values["model"]["pretrained"] = ""
        values["train"]["visual_lr_ratio"] = 1.0
    values["run"]["name"] = spec.key
    return config_from_dict(values)


@dataclass
class RunResult(Record):
    """What one training run of the demo measured (an entry of ``metrics.json["runs"]``)."""

    spec: RunSpec
    run_dir: str  # relative to the report folder
    model_dir: str  # the run's exported model, relative to the report folder
    val_top1: float  # final validation top-1 (fraction)
    val_top5: float | None
    val_mean_class_acc: float | None
    time_s: float  # wall time of the run
    # per epoch: epoch, train_loss, train_top1, val_top1, and the validation clips right and in
    # all per class (val_correct, val_videos: label order; None where the run kept none)
    history: list[dict[str, Any]]


def train_run(spec: RunSpec, base: dict[str, Any], class_names: list[str], out: Path) -> RunResult:
    """Train one run with the library's trainer into ``out/runs/<key>``.

    An ``lda`` run first fits its classifier on the features of its own initial encoder
    (:func:`lda_classifier`) and trains with it as ``model.classifier_file``.

    Args:
        spec: the run.
        base: the shared config (:func:`~text4vis_demo.settings.base_config_dict`).
        class_names: the seen classes.
        out: the report folder.
    """
    from text4vis.engine.train import fit

    run_dir = out / "runs" / spec.key
    classifier_file = ""
    if spec.classifier == "lda":
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg = spec_config(base, spec)
        classifier_file = str(lda_classifier(cfg, class_names, run_dir / "lda.safetensors"))
    cfg = spec_config(base, spec, classifier_file)
    run_start = time.perf_counter()
    summary = fit(cfg, run_dir=run_dir)
    final = summary.final
    per_class = _per_class_by_epoch(Path(summary.run_dir))
    return RunResult(
        spec=spec,
        run_dir=str(Path(summary.run_dir).relative_to(out)),
        model_dir=str(Path(summary.model_dir).relative_to(out)),
        val_top1=final["val_top1"],
        val_top5=final.get("val_top5"),
        val_mean_class_acc=final.get("val_mean_class_acc"),
        time_s=time.perf_counter() - run_start,
        history=[
            {
                **{k: row.get(k) for k in ("epoch", "train_loss", "train_top1", "val_top1")},
                **per_class.get(row.get("epoch"), {"val_correct": None, "val_videos": None}),
            }
            for row in summary.history
        ],
    )


def _per_class_by_epoch(run_dir: Path) -> dict[int, dict[str, list[int]]]:
    """The trainer's per-class validation counts (``val_per_class`` records of metrics.jsonl),
    by epoch."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    out = {}
    for line in path.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get("kind") == "val_per_class":
            out[int(record["epoch"])] = {
                "val_correct": record["correct"],
                "val_videos": record["videos"],
            }
    return out


def lda_classifier(cfg: Any, class_names: list[str], path: Path) -> Path:
    """Fit LDA on the features of the *initial* visual encoder of this run, save the artifact.

    ``fit`` seeds torch with ``train.seed`` before building the model and the visual encoder is
    built before the classifier, so the features come from exactly the encoder the LDA run starts
    from: stage 0's pretrained encoder (as the paper fits LDA on CLIP's features), or a random
    one when the demo runs without stage 0.
    """
    import torch

    from text4vis.data import build_dataset, build_loader, read_annotations
    from text4vis.engine.loops import extract_features
    from text4vis.models.classifier import build_classifier, save_classifier
    from text4vis.models.factory import build_model
    from text4vis.runtime import select_device

    feature_cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, classifier="random", classifier_file="")
    )
    device = select_device(cfg.run.device)
    model = build_model(feature_cfg, class_names).to(device)
    records = read_annotations(cfg.data.train_list, num_classes=len(class_names))
    dataset = build_dataset(cfg, "val", records=records, class_names=class_names)
    loader = build_loader(dataset, cfg, "val", seed=cfg.train.seed, batch_size=cfg.eval.batch_size)
    with torch.no_grad():
        _, features, labels = extract_features(model, loader, device=device, expected=len(dataset))
    artifact = build_classifier(
        "lda",
        class_names=class_names,
        embed_dim=model.embed_dim,
        features=features,
        labels=labels,
    )
    artifact.metadata["extra"] = {
        "num_features": int(features.shape[0]),
        "encoder": f"initial visual encoder of the run ({cfg.model.pretrained or 'random'})",
    }
    save_classifier(artifact, path)
    return path


def evaluate_list(model: Any, cfg: Any, list_path: Path, class_names: list[str]) -> Any:
    """Single-view evaluation of ``model`` on a list file: an EvalResult with per-class results."""
    from text4vis.data import build_dataset, build_loader
    from text4vis.engine.loops import predict_scores
    from text4vis.engine.metrics import evaluate_scores
    from text4vis.runtime import select_device

    eval_cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, test_list=str(list_path), num_clips=1, num_crops=1)
    )
    device = select_device(cfg.run.device)
    model = model.to(device)
    dataset = build_dataset(eval_cfg, "test", class_names=class_names)
    loader = build_loader(dataset, eval_cfg, "test", seed=cfg.train.seed)
    indices, scores, labels = predict_scores(
        model, loader, device=device, precision="fp32", expected=len(dataset)
    )
    return evaluate_scores(indices, scores, labels)


def direction_metrics(result: Any, classes: list[Any]) -> dict[str, float]:
    """Accuracy on the direction-dependent classes and how often the reversed partner is chosen.

    Args:
        result: an EvalResult over the seen classes (``scores`` and ``labels``).
        classes: the seen :class:`~text4vis.data.actions.ActionClass` list, in label order.
    """
    from text4vis.data.actions import direction_dependent

    dd = direction_dependent(classes)
    partner = {i: classes.index(classes[i].reversed) for i in dd}
    predictions = result.scores.argmax(dim=1)
    labels = result.labels
    mask = [int(y) in partner for y in labels.tolist()]
    chosen = [(int(p), int(y)) for p, y, m in zip(predictions, labels, mask) if m]
    others = [(int(p), int(y)) for p, y, m in zip(predictions, labels, mask) if not m]
    return {
        "top1": float(result.metrics["top1"]),
        "direction_top1": sum(p == y for p, y in chosen) / max(len(chosen), 1),
        "reversed_partner_rate": sum(p == partner[y] for p, y in chosen) / max(len(chosen), 1),
        "other_top1": sum(p == y for p, y in others) / max(len(others), 1),
        "num_direction_videos": len(chosen),
        "num_other_videos": len(others),
    }


def motion_group(action: Any) -> str:
    """The direction pair a class belongs to, e.g. ``"moving left / moving right"``."""
    return " / ".join(sorted((action.motion, action.reversed.motion)))


def direction_groups(result: Any, classes: list[Any]) -> dict[str, dict[str, float]]:
    """Per direction pair (left/right, up/down, rotations, growing/shrinking): top-1, how often
    the time-reversed partner is chosen, and the clips measured.

    Args:
        result: an EvalResult over the seen classes (``scores`` and ``labels``).
        classes: the seen :class:`~text4vis.data.actions.ActionClass` list, in label order.
    """
    from text4vis.data.actions import direction_dependent

    predictions = result.scores.argmax(dim=1).tolist()
    labels = result.labels.tolist()
    groups: dict[str, dict[str, int]] = {}
    for i in direction_dependent(classes):
        partner = classes.index(classes[i].reversed)
        row = groups.setdefault(
            motion_group(classes[i]), {"correct": 0, "partner": 0, "num_videos": 0}
        )
        for p, y in zip(predictions, labels):
            if y == i:
                row["num_videos"] += 1
                row["correct"] += p == y
                row["partner"] += p == partner
    return {
        name: {
            "top1": row["correct"] / max(row["num_videos"], 1),
            "reversed_partner_rate": row["partner"] / max(row["num_videos"], 1),
            "num_videos": row["num_videos"],
        }
        for name, row in sorted(groups.items())
    }


@dataclass
class LabelScore(Record):
    """One ranked label of a prediction."""

    label: str
    score: float


@dataclass
class PredictExample(Record):
    """The exported model's zero-shot top-3 for one unseen clip (what ``text4vis predict``
    prints for it)."""

    video: str  # relative to the report folder
    top3: list[LabelScore]
    true_label: str | None = None


def predict_example(model_dir: Path, video: Path, labels: list[str]) -> PredictExample:
    """Rank ``labels`` for one clip with an exported model, as ``text4vis predict`` does."""
    from text4vis.predict import Predictor

    predictor = Predictor.from_pretrained(model_dir, device="cpu")
    ranked = predictor.predict([video], labels=labels, top_k=3)[0]
    return PredictExample(
        video=str(video.relative_to(model_dir.parent)),
        top3=[LabelScore(item["label"], item["score"]) for item in ranked],
    )


# ----------------------------------------------------------------------------------------------
# torchrun jobs (table 9)
# ----------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _job_command(config: Path, run_dir: Path, overrides: list[str], nproc: int) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        "-m",
        "text4vis",
        "train",
        str(config),
        "--run-dir",
        str(run_dir),
    ]
    for value in overrides:
        command += ["--set", value]
    return command


def read_epochs(run_dir: Path) -> list[dict[str, float]]:
    """Rows of the run's ``metrics.csv`` (one per finished epoch), numbers as floats."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [
            {k: float(v) for k, v in row.items() if v not in ("", None)}
            for row in csv.DictReader(handle)
        ]


@dataclass
class JobResult(Record):
    """What one torchrun job measured (rank 0's ``metrics.csv``, the clock, the exit status)."""

    top1: float  # final validation top-1 (fraction)
    top5: float
    num_val_videos: int
    final_train_loss: float
    steps: int  # optimizer steps
    train_time_s: float  # sum of the epoch times (training loop only)
    epoch_time_s: list[float]
    epoch_time_mean_s: float
    epoch_time_std_s: float  # 0.0 for one epoch
    steady_epochs: int  # epochs after the first (all when there are fewer than 3)
    steady_epoch_time_mean_s: float
    steady_epoch_time_std_s: float | None  # None for one steady epoch
    wall_s: float  # the whole job: start-up, training, validation, export
    load_avg_1min: list[float]  # the machine's load before and after
    peak_mem_mb_rank0: float
    exit_code: int
    run_dir: str
    log: str  # torchrun's console output
    command: list[str]


def run_torchrun_job(
    name: str,
    config: Path,
    run_dir: Path,
    overrides: list[str],
    *,
    nproc: int,
    epochs: int,
    timeout_s: float,
) -> JobResult:
    """Train ``config`` as a torchrun job of ``nproc`` processes, as a user launches one.

    Its console output goes to ``run_dir/torchrun.log``; progress is logged per finished epoch.

    Args:
        name: the run's name (``run.name``; in messages).
        config: the YAML config.
        run_dir: the run folder (emptied first).
        overrides: ``--set`` values.
        nproc: processes.
        epochs: epochs the config trains (checked at the end).
        timeout_s: the job is stopped after this long (an error).

    Returns:
        Final accuracy, loss and steps, the epoch times (all, and the steady ones after the
        first when there are at least 3), wall time, load average, memory, the command.

    Raises:
        RuntimeError: the job timed out, failed, or did not finish its epochs (the message
            names its log file).
    """
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    command = _job_command(config, run_dir, [*overrides, f"run.name={name}"], nproc)
    log_path = run_dir / "torchrun.log"
    load_before = os.getloadavg()[0]  # other work on the machine slows the run down
    start = time.perf_counter()
    returncode = _watch_job(name, command, run_dir, log_path, epochs, timeout_s)
    wall = time.perf_counter() - start
    load_after = os.getloadavg()[0]
    if returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(
            f"run {name}: torchrun exited with status {returncode} (a worker failed); "
            f"full output in {log_path}:\n{tail}"
        )
    history = read_epochs(run_dir)
    if len(history) != epochs or not (run_dir / "model").is_dir():
        raise RuntimeError(
            f"run {name} exited 0 but finished {len(history)} of {epochs} epochs or exported "
            f"no model; see {log_path}"
        )
    return _job_result(
        history,
        wall_s=wall,
        load_avg_1min=[load_before, load_after],
        exit_code=returncode,
        run_dir=run_dir,
        log_path=log_path,
        command=command,
    )


def _watch_job(
    name: str,
    command: list[str],
    run_dir: Path,
    log_path: Path,
    epochs: int,
    timeout_s: float,
) -> int:
    """Run ``command`` with its output in ``log_path``, logging each epoch it finishes; stop it
    after ``timeout_s``. Returns its exit status.

    Raises:
        RuntimeError: the job ran past ``timeout_s``.
    """
    env = {k: v for k, v in os.environ.items() if k not in _DIST_ENV}
    env.update({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    start = time.perf_counter()
    with log_path.open("w") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        done = 0
        while process.poll() is None:
            if time.perf_counter() - start > timeout_s:
                process.kill()
                process.wait()
                raise RuntimeError(
                    f"run {name} took more than {timeout_s:.0f}s and was stopped; see {log_path}"
                )
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=1.0)
            finished = len(read_epochs(run_dir))
            if finished > done:
                done = finished
                logger.info(
                    "  %s: epoch %d/%d done (%.0fs)",
                    name,
                    done,
                    epochs,
                    time.perf_counter() - start,
                )
    return process.returncode


def _job_result(
    history: list[dict[str, float]],
    *,
    wall_s: float,
    load_avg_1min: list[float],
    exit_code: int,
    run_dir: Path,
    log_path: Path,
    command: list[str],
) -> JobResult:
    """A finished job's result from rank 0's epoch rows and what the launcher measured."""
    epoch_times = [r["epoch_time_s"] for r in history]
    mean, std = mean_and_std(epoch_times)
    # Epoch 1 also pays one-off costs (first batches, allocator warm-up): the per-epoch cost the
    # comparisons use leaves it out when there are at least 3 epochs.
    steady = epoch_times[1:] if len(epoch_times) >= 3 else epoch_times
    steady_mean, steady_std = mean_and_std(steady)
    final = history[-1]
    return JobResult(
        top1=float(final["val_top1"]),
        top5=float(final["val_top5"]),
        num_val_videos=int(final["val_num_videos"]),
        final_train_loss=float(final["train_loss"]),
        steps=int(final["step"]),
        train_time_s=sum(epoch_times),
        epoch_time_s=epoch_times,
        epoch_time_mean_s=mean,
        epoch_time_std_s=0.0 if std is None else std,
        steady_epochs=len(steady),
        steady_epoch_time_mean_s=steady_mean,
        steady_epoch_time_std_s=steady_std,
        wall_s=wall_s,
        load_avg_1min=load_avg_1min,
        peak_mem_mb_rank0=max(r["peak_mem_mb"] for r in history),
        exit_code=exit_code,
        run_dir=str(run_dir),
        log=str(log_path),
        command=command,
    )

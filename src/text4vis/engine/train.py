"""The trainer: :func:`fit` runs the paper's recipe from a config, in one process or under DDP.

One code path for every setting:

- launched plainly, it trains in one process on ``run.device`` (CPU or one GPU); launched with
  ``torchrun --nproc_per_node N -m text4vis train ...`` it starts a process group (nccl on GPU,
  gloo on CPU; each process on ``cuda:LOCAL_RANK``, an explicit ``cuda:N`` is refused) and wraps
  model and objective together in ``DistributedDataParallel`` (buffers broadcast only when a
  step changes some, i.e. BatchNorm running statistics; ``train.compile`` compiles the wrapped
  step, see :mod:`text4vis.engine.acceleration`);
- autocast in bf16 / fp16 (with a gradient scaler) / fp32; gradient accumulation over
  ``train.grad_accum`` micro-batches with ``no_sync`` on all but the last, so gradients are
  all-reduced once per optimizer step; optional gradient-norm clipping; the learning rate is set
  from :func:`~text4vis.engine.optim.lr_at_step` before every optimizer step;
- the loss comes from an objective object (:mod:`text4vis.engine.objectives`), so the contrastive
  paradigm uses the same loop;
- few host synchronisations: the running loss and accuracy sums live on the device
  (:class:`EpochTotals`) and are read every ``run.log_every`` steps and at the epoch's end; a
  step reads one small tensor, the all-reduced flags every rank needs to agree on (non-finite
  step, preemption request, timed checkpoint due by rank 0's clock);
- ``last`` is written after every epoch and every ``train.checkpoint_minutes``; ``best`` when the
  validation top-1 improves; the trained model is exported with ``save_pretrained`` into
  ``<run>/model``.

Exact resume: the data order and augmentation of a batch depend only on (seed, epoch, position in
the epoch) through the data module's seeded loader, the schedule is a function of the step, and the
checkpoint holds optimizer, scaler and RNG states. A run resumed from a checkpoint written after
step k of an epoch skips the first k steps' batches of that epoch and ends with the same weights
as an uninterrupted run (bit-identical on the CPU).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import resource
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from text4vis import distributed as dist_utils
from text4vis.config import Config, config_to_dict, dump_config
from text4vis.data.dataset import FAILED_VIDEOS_FILE, FailureTracker, build_dataset
from text4vis.data.few_shot import write_few_shot_list
from text4vis.data.labels import read_labels
from text4vis.data.loaders import build_loader, set_epoch
from text4vis.engine.acceleration import (
    apply_channels_last,
    buffers_change_in_training,
    compile_model,
)
from text4vis.engine.checkpoint import (
    CHECKPOINT_DIR,
    atomic_torch_save,
    capture_rng_state,
    resolve_resume,
    restore_rng_state,
)
from text4vis.engine.config_checks import validate_config
from text4vis.engine.loops import predict_scores
from text4vis.engine.metrics import EvalResult, evaluate_scores
from text4vis.engine.numerics import NonFiniteSteps, check_finite_weights
from text4vis.engine.objectives import TrainStep, build_objective
from text4vis.engine.optim import (
    LRSchedule,
    build_train_optimizer,
    load_optimizer_state,
    set_lr,
)
from text4vis.engine.preemption import PreemptionHandler
from text4vis.engine.tracking import MetricsWriter, plot_curves
from text4vis.errors import CheckpointError, ConfigError, UsageError
from text4vis.models.factory import (
    CHECKPOINT_FORMAT_VERSION,
    TRAIN_CONFIG_NAME,
    build_model,
    load_checkpoint,
    load_initial_weights,
)
from text4vis.runs import create_run_dir
from text4vis.runtime import autocast_context, check_train_precision, set_tf32

__all__ = [
    "STOP_ENV",
    "EpochTotals",
    "TrainState",
    "TrainSummary",
    "fit",
    "peak_memory_mb",
]

logger = logging.getLogger("text4vis.engine.train")

STOP_ENV = "TEXT4VIS_STOP_AFTER_STEPS"  # testing hook: stop (after a checkpoint) at this step


@dataclass
class TrainState:
    """Counters and history of a run (saved in every checkpoint).

    Attributes:
        epoch: epochs completed.
        step: optimizer steps taken since the start of the run.
        epoch_step: optimizer steps taken inside the current (unfinished) epoch.
        best_top1: best validation top-1 so far (None before the first validation).
        best_epoch: epoch (1-based) of ``best_top1``.
        history: one dict of metrics per finished epoch.
        decode_failures: unreadable training videos met so far (all ranks).
        partial_epoch: sums over all ranks of ``loss_sum``, ``correct`` and ``seen`` for the
            steps of the unfinished epoch, so that a resumed epoch reports the same means.
    """

    epoch: int = 0
    step: int = 0
    epoch_step: int = 0
    best_top1: float | None = None
    best_epoch: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    decode_failures: int = 0
    partial_epoch: dict[str, float] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if hasattr(self, key):
                setattr(self, key, value)


@dataclass
class TrainSummary:
    """What :func:`fit` returns.

    Attributes:
        run_dir: the run folder.
        stopped: True when stopped early (``stop_after_steps`` or preemption); no model was
            exported then.
        preempted: True when stopped by SIGTERM / SIGUSR1 (see
            :mod:`text4vis.engine.preemption`); ``text4vis train`` then exits with status 75.
        epoch: epochs completed.
        step: optimizer steps taken.
        best_top1: best validation top-1 (None without validation).
        best_epoch: its epoch (1-based).
        final: metrics of the last epoch.
        history: one dict of metrics per epoch.
        model_dir: the exported model folder (None when stopped).
    """

    run_dir: str
    stopped: bool
    preempted: bool
    epoch: int
    step: int
    best_top1: float | None
    best_epoch: int | None
    final: dict[str, Any]
    history: list[dict[str, Any]]
    model_dir: str | None

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON values."""
        return asdict(self)


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: CUDA allocator peak on GPU, peak resident set on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _SkipSampler(torch.utils.data.Sampler):
    """The keys of ``base`` after the first ``skip`` (resume in the middle of an epoch)."""

    def __init__(self, base: Any, skip: int) -> None:
        self.base = base
        self.skip = skip

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)

    def __iter__(self) -> Iterator[Any]:
        return itertools.islice(iter(self.base), self.skip, None)


def _skip_batches(loader: Any, skip: int) -> Iterator[Any]:
    """Iterate the loader from its ``skip``-th batch of the current epoch.

    Training items are a function of their sampler key ``(index, epoch)`` (see
    :mod:`text4vis.data.dataset`), so the batches after ``skip`` are those an uninterrupted epoch
    would give. A standard ``DataLoader`` restarts from the sampler's ``skip * batch_size``-th key
    without decoding the skipped clips; other iterables are drawn and dropped.
    """
    if skip == 0:
        return iter(loader)
    if isinstance(loader, torch.utils.data.DataLoader) and loader.batch_size is not None:
        workers = loader.num_workers
        resumed = torch.utils.data.DataLoader(
            loader.dataset,
            batch_size=loader.batch_size,
            sampler=_SkipSampler(loader.sampler, skip * loader.batch_size),
            num_workers=workers,
            collate_fn=loader.collate_fn,
            pin_memory=loader.pin_memory,
            drop_last=loader.drop_last,
            worker_init_fn=loader.worker_init_fn,
            prefetch_factor=loader.prefetch_factor if workers > 0 else None,
            persistent_workers=False,
        )
        return iter(resumed)
    iterator = iter(loader)
    for _ in range(skip):
        next(iterator)
    return iterator


def _config_differences(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return diffs


def _stop_after_steps(explicit: int | None) -> int | None:
    if explicit is not None:
        return explicit
    value = os.environ.get(STOP_ENV, "")
    if not value:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise UsageError(f"{STOP_ENV}={value!r} must be an integer step count") from exc


@dataclass
class _TrainData:
    """Labels and datasets of a run, read before anything is built or written."""

    class_names: list[str]
    train_set: Any
    val_set: Any | None


def _read_data(cfg: Config) -> _TrainData:
    """Read and check the label file, the lists and the few-shot choice (no files written).

    Raises:
        ValueError / FileNotFoundError / AnnotationError: naming the key or file at fault.
    """
    if not cfg.data.labels:
        raise ConfigError("data.labels is empty; set it to the label CSV (id,name)")
    if not cfg.data.train_list:
        raise ConfigError("data.train_list is empty; set it to the training list file")
    class_names = read_labels(cfg.data.labels)
    # The few-shot choice is made once, by build_dataset; fit writes it into the run folder.
    train_set = build_dataset(cfg, "train", class_names=class_names)
    val_set = None
    if cfg.data.val_list:
        val_set = build_dataset(cfg, "val", class_names=class_names)
    return _TrainData(class_names, train_set, val_set)


@dataclass
class EpochTotals:
    """Running sums of one epoch on this rank, kept on the training device.

    Each micro-batch adds its loss, correct predictions and clip count with device operations
    only, so a training step reads none of them back to the host (on a GPU every read waits for
    the queued kernels). The host reads the logging window every ``run.log_every`` steps
    (:meth:`read_window`) and the epoch sums at the epoch's end or at a mid-epoch checkpoint
    (:meth:`global_sums`), all-reduced over the ranks. Micro-batches with a non-finite loss are
    left out, as their optimizer step is skipped.

    Attributes:
        sums: float64 ``[5]`` on the device: ``loss * clips``, correct predictions and clips
            since the epoch's start (on rank 0 including the global sums of the steps done
            before a resume), then ``loss * clips`` and clips of the current logging window.
        resumed_clips: the clips of the steps done before a resume (all ranks; rank 0 only).
        clips: clips this rank processed in this process (the throughput's numerator).
        data_time: seconds spent waiting for batches.
        start: ``time.perf_counter()`` when the epoch (or its resumed part) started.
    """

    sums: Tensor
    resumed_clips: float = 0.0
    clips: int = 0
    data_time: float = 0.0
    start: float = field(default_factory=time.perf_counter)

    @classmethod
    def begin(cls, device: torch.device, partial: dict[str, float]) -> EpochTotals:
        """Totals of an epoch starting now; ``partial`` holds the global sums of its steps done
        before a resume (``TrainState.partial_epoch``; pass it on rank 0 only)."""
        first = [
            partial.get("loss_sum", 0.0),
            partial.get("correct", 0.0),
            partial.get("seen", 0.0),
        ]
        sums = torch.tensor([*first, 0.0, 0.0], dtype=torch.float64, device=device)
        return cls(sums=sums, resumed_clips=float(partial.get("seen", 0.0)))

    def add(self, loss: Tensor, logits: Tensor | None, labels: Tensor) -> Tensor:
        """Add one micro-batch (nothing when its loss is not finite).

        Returns:
            Whether the loss is finite: a boolean tensor on the device (not read here).
        """
        n = labels.shape[0]
        self.clips += n
        value = loss.detach().to(torch.float64)
        finite = torch.isfinite(value)
        if logits is not None:
            correct = (logits.argmax(dim=1) == labels).sum().to(torch.float64)
        else:
            correct = value.new_zeros(())
        clips = value.new_full((), float(n))
        update = torch.stack([value * n, correct, clips, value * n, clips])
        self.sums += torch.where(finite, update, 0.0)
        return finite

    def read_window(self) -> float:
        """The mean loss of the logging window over all ranks (one host read), and a new window."""
        window = dist_utils.all_reduce_tensor(self.sums[3:].clone())
        loss_sum, count = window.tolist()
        self.sums[3:] = 0.0
        return loss_sum / max(count, 1)

    def global_sums(self) -> dict[str, float]:
        """``loss_sum``, ``correct`` and ``seen`` of the epoch so far, summed over all ranks."""
        total = dist_utils.all_reduce_tensor(self.sums[:3].clone())
        return dict(zip(("loss_sum", "correct", "seen"), total.tolist()))

    def summary(self, *, with_accuracy: bool) -> dict[str, Any]:
        """The epoch's training metrics (all ranks; one all-reduce and one host read)."""
        elapsed = time.perf_counter() - self.start
        values = torch.cat([self.sums[:3], self.sums.new_full((1,), float(self.clips))])
        loss_sum, correct, seen, clips = dist_utils.all_reduce_tensor(values).tolist()
        return {
            "train_loss": loss_sum / max(seen, 1),
            "train_top1": correct / max(seen, 1) if with_accuracy else None,
            "clips_per_s": clips / max(elapsed, 1e-9),
            "data_wait": self.data_time / max(elapsed, 1e-9),
            "epoch_time_s": elapsed,
        }


@dataclass
class _StepOutcome:
    """What every rank agreed on after an optimizer step (one all-reduce, one host read)."""

    lr: float
    finite: bool
    preempted: bool
    checkpoint_due: bool


class _Trainer:
    """State and pieces of one :func:`fit` call (kept together to keep the loop readable)."""

    def __init__(
        self,
        cfg: Config,
        device: torch.device,
        run_path: Path,
        checkpoint: dict[str, Any] | None,
        data: _TrainData,
    ) -> None:
        self.cfg = cfg
        self.device = device
        self.run_path = run_path
        self.world_size = dist_utils.get_world_size()
        self.rank = dist_utils.get_rank()
        tc = cfg.train
        if tc.grad_accum < 1:
            raise ConfigError(f"train.grad_accum must be >= 1, got {tc.grad_accum}")
        check_train_precision(tc.precision)

        self.class_names = data.class_names
        self._build_modules(fresh=checkpoint is None)
        self.optimizer = build_train_optimizer(self.model, self.objective, tc, device)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.scaler = torch.amp.GradScaler(device.type, enabled=tc.precision == "fp16")

        self.train_set = data.train_set
        self.train_loader = build_loader(self.train_set, cfg, "train", seed=tc.seed)
        # Unreadable training videos, reported by the batches of every rank.
        self.failures = FailureTracker(
            len(self.train_set),
            cfg.data.max_failure_fraction,
            run_path / FAILED_VIDEOS_FILE if self.rank == 0 else None,
        )
        self.val_set = data.val_set
        self.val_loader = None
        if self.val_set is not None:
            self.val_loader = build_loader(
                self.val_set, cfg, "val", seed=tc.seed, batch_size=cfg.eval.batch_size
            )
        self.steps_per_epoch = len(self.train_loader) // tc.grad_accum
        self.schedule = LRSchedule.from_epochs(
            base_lr=tc.lr,
            min_lr=tc.min_lr,
            warmup_epochs=tc.warmup_epochs,
            epochs=tc.epochs,
            steps_per_epoch=self.steps_per_epoch,
        )
        self.state = TrainState()
        self.nonfinite = NonFiniteSteps(tc.max_nonfinite_steps)  # skipped steps
        if checkpoint is not None:
            self._restore(checkpoint)
        self.metrics = MetricsWriter(
            run_path, resume_step=self.state.step if checkpoint is not None else None
        )
        self.last_checkpoint_time = time.monotonic()
        self.logits_in_training = True  # False once the objective returns no logits
        self._epoch_train: dict[str, Any] = {}
        # Installed by fit(); polled after every optimizer step (all ranks agree).
        self.preemption = PreemptionHandler()

    def _build_modules(self, *, fresh: bool) -> None:
        """The model on the device, the objective, and the module a training step calls.

        Under ``torchrun`` the step module (model and objective) is wrapped in DDP, which
        broadcasts buffers only when a training step changes some (BatchNorm running stats);
        with ``train.compile`` it is compiled after the wrapping (see
        :mod:`text4vis.engine.acceleration`).
        """
        cfg, device, tc = self.cfg, self.device, self.cfg.train
        self.model = build_model(cfg, self.class_names)
        if tc.init_from and fresh:  # on resume the checkpoint has the weights
            load_initial_weights(self.model, tc.init_from)
        self.model.to(device)
        if tc.channels_last:
            apply_channels_last(self.model)
        if tc.compile:
            # In place (parameter names and checkpoints unchanged): forward and encode_video,
            # as validation runs them; the training step below inlines them.
            compile_model(self.model)
        self.objective = build_objective(cfg, self.model, self.class_names).to(device)
        step: nn.Module = TrainStep(self.model, self.objective)
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        if dist_utils.is_distributed():
            self.ddp = nn.parallel.DistributedDataParallel(
                step,
                device_ids=[device] if device.type == "cuda" else None,
                broadcast_buffers=buffers_change_in_training(step),
            )
            step = self.ddp
        if tc.compile:
            step = torch.compile(step)  # after DDP: its buckets' all-reduce overlaps backward
        self.step_module = step

    # -- checkpoints ---------------------------------------------------------------------------

    def _checkpoint_state(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT_VERSION,
            "complete": True,
            "epoch": self.state.epoch,
            "step": self.state.step,
            "epoch_step": self.state.epoch_step,
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.schedule.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "rng": capture_rng_state(),
            "train_state": self.state.state_dict(),
            "class_names": list(self.class_names),
            "failed_videos": dict(self.failures.failed),
            "config": config_to_dict(self.cfg),
            # What rebuilds the model without its pretrained weights (= config.json of model/);
            # JSON round trip: plain values only, as weights_only loading needs.
            "architecture": json.loads(json.dumps(self.model.architecture(), default=str)),
            "classifier_metadata": json.loads(
                json.dumps(self.model.classifier_metadata, default=str)
            ),
            "world_size": self.world_size,
            "nonfinite": self.nonfinite.state_dict(),
        }

    def save(self, *names: str) -> None:
        """Write the checkpoint as ``checkpoints/<name>.pt`` for each name (rank 0 only)."""
        self.objective.export_classifier(self.model)  # every rank: keep replicas identical
        # Every rank checks (replicas are identical), so all stop together on bad weights.
        check_finite_weights(self.model.state_dict(), f"checkpoint {', '.join(names)}")
        if self.rank == 0:
            state = self._checkpoint_state()
            for name in names:
                path = atomic_torch_save(
                    state,
                    self.run_path / CHECKPOINT_DIR / f"{name}.pt",
                    keep_previous=name == "last" and self.cfg.train.keep_previous,
                )
                logger.info("saved %s (epoch %d, step %d)", path, self.state.epoch, self.state.step)
        self.last_checkpoint_time = time.monotonic()

    def _checkpoint_clock(self) -> float:
        """1.0 when ``train.checkpoint_minutes`` have passed by rank 0's clock, else 0.0.

        Only rank 0 ever says 1.0, so the sum over ranks (taken with the step's other flags in
        :meth:`_agree_on_step`) is rank 0's decision, the same on every rank.
        """
        minutes = self.cfg.train.checkpoint_minutes
        if minutes <= 0 or self.rank != 0:
            return 0.0
        return float(time.monotonic() - self.last_checkpoint_time > 60 * minutes)

    def _restore(self, ckpt: dict[str, Any]) -> None:
        if ckpt.get("scheduler") and ckpt["scheduler"] != self.schedule.state_dict():
            raise CheckpointError(
                f"the checkpoint's schedule {ckpt['scheduler']} differs from this run's "
                f"{self.schedule.state_dict()}: resume with the same train.epochs, lr, "
                "warmup, batch size, grad_accum and number of processes"
            )
        if ckpt.get("class_names") not in (None, list(self.class_names)):
            raise CheckpointError("the checkpoint was trained on other class names (data.labels)")
        self.model.load_state_dict(ckpt["model"])
        self.objective.load_state_dict(ckpt["objective"])
        # This run's train.fused_adamw, not the checkpoint's.
        load_optimizer_state(self.optimizer, ckpt["optimizer"])
        if ckpt.get("scaler") is not None:
            self.scaler.load_state_dict(ckpt["scaler"])
        restore_rng_state(ckpt["rng"])
        self.failures.failed = dict(ckpt.get("failed_videos", {}))
        self.nonfinite.load_state_dict(ckpt.get("nonfinite", {}))
        self.state.load_state_dict(ckpt["train_state"])
        logger.info(
            "resumed at epoch %d, step %d (%d steps into the epoch)",
            self.state.epoch,
            self.state.step,
            self.state.epoch_step,
        )

    # -- the loop ------------------------------------------------------------------------------

    def _progress(self, epoch: int) -> Any:
        if not (self.cfg.run.progress and self.rank == 0):
            return None

        return tqdm(
            total=self.steps_per_epoch,
            initial=self.state.epoch_step,
            desc=f"epoch {epoch + 1}/{self.cfg.train.epochs}",
            dynamic_ncols=True,
        )

    def train_epoch(self, epoch: int, stop_at: int | None) -> bool:
        """Run the rest of ``epoch``; returns True when stopped early (``stop_at`` or a
        preemption signal)."""
        set_epoch(self.train_loader, epoch)
        batches = _skip_batches(
            self.train_loader, self.state.epoch_step * self.cfg.train.grad_accum
        )
        bar = self._progress(epoch)
        self.step_module.train()
        # The sums of steps done before a resume are carried by rank 0 (they are global sums).
        totals = EpochTotals.begin(self.device, self.state.partial_epoch if self.rank == 0 else {})
        self.state.partial_epoch = {}
        stopped = False
        try:
            while self.state.epoch_step < self.steps_per_epoch and not stopped:
                outcome = self._train_step(batches, totals)
                stopped = self._after_step(epoch, outcome, totals, bar, stop_at)
        finally:
            if bar is not None:
                bar.close()
        self._epoch_train = totals.summary(with_accuracy=self.logits_in_training)
        return stopped

    def _forward_backward(
        self, batches: Iterator[Any], totals: EpochTotals, *, last_micro: bool
    ) -> tuple[Tensor, Tensor, Any]:
        """One micro-batch: forward, backward (gradients all-reduced only on the last one).

        Returns:
            ``(loss, finite, indices)``: the detached loss and whether it is finite (device
            tensors, not read here) and the batch's dataset indices.
        """
        tc = self.cfg.train
        t0 = time.perf_counter()
        batch = next(batches)
        totals.data_time += time.perf_counter() - t0
        # Local failures only; ranks merge them at the end of the epoch.
        self.failures.update(batch.get("failures", []), check=False)
        video = batch["video"].to(self.device, non_blocking=True)
        labels = torch.as_tensor(batch["label"]).to(self.device, non_blocking=True)
        if video.ndim != 6 or video.shape[1] != 1:
            raise ValueError(
                f"training batches must hold video [B, 1, T, 3, H, W] (one view per "
                f"clip, as the training transform gives), got {tuple(video.shape)}"
            )
        video = video[:, 0]  # [B, 1, T, 3, H, W] -> [B, T, 3, H, W]
        sync = self.ddp.no_sync() if self.ddp is not None and not last_micro else nullcontext()
        with sync:
            with autocast_context(self.device, tc.precision):
                loss, logits = self.step_module(video, labels)
            self.scaler.scale(loss / tc.grad_accum).backward()
        if logits is None:  # e.g. the contrastive objective: no class scores in training
            self.logits_in_training = False
        finite = totals.add(loss, logits, labels)
        return loss.detach(), finite, batch["index"]

    def _gradient_norm(self) -> Tensor:
        """Clip the gradients (``train.clip_grad``) and return their total norm (a device
        tensor; 0 under fp16 without clipping, where the scaler finds infinite gradients)."""
        tc = self.cfg.train
        if tc.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            return torch.nn.utils.clip_grad_norm_(self.params, tc.clip_grad)
        grads = [p.grad for p in self.params if p.grad is not None]
        if self.scaler.is_enabled() or not grads:
            return torch.zeros((), device=self.device)
        return torch.nn.utils.get_total_norm(grads)

    def _agree_on_step(self, bad: Tensor) -> tuple[bool, bool, bool]:
        """``(finite, preempted, checkpoint_due)`` as every rank agrees on them.

        One all-reduce of three numbers and one host read per step (the only ones a step
        makes): whether the step was non-finite on some rank, whether some rank was asked to
        stop (:mod:`text4vis.engine.preemption`) and whether rank 0's clock says a timed
        checkpoint is due. So every rank skips the same steps and stops and saves after the
        same step (a stop asked for during the rest of this step is seen at the next).
        """
        flags = torch.stack(
            [
                bad.to(torch.float64),
                bad.new_full((), self.preemption.local_request(), dtype=torch.float64),
                bad.new_full((), self._checkpoint_clock(), dtype=torch.float64),
            ]
        )
        nonfinite, requests, due = dist_utils.all_reduce_tensor(flags).tolist()
        return nonfinite == 0, self.preemption.agree(requests), due > 0

    def _train_step(self, batches: Iterator[Any], totals: EpochTotals) -> _StepOutcome:
        """``train.grad_accum`` micro-batches and one optimizer step (skipped, on every rank,
        when a loss or the gradient is not finite on some rank)."""
        accum = self.cfg.train.grad_accum
        losses, finite_parts, indices = [], [], []
        for micro in range(accum):
            loss, finite, index = self._forward_backward(
                batches, totals, last_micro=micro == accum - 1
            )
            losses.append(loss)
            finite_parts.append(finite)
            indices.append(index)
        lr = self.schedule(self.state.step)
        set_lr(self.optimizer, lr)
        grad_norm = self._gradient_norm()
        bad = ~torch.stack(finite_parts).all()
        if not self.scaler.is_enabled():  # fp16: infinite gradients are the scaler's to handle
            bad = bad | ~torch.isfinite(grad_norm)
        finite, preempted, due = self._agree_on_step(bad)
        if finite or self.scaler.is_enabled():
            self.scaler.step(self.optimizer)
            self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self._record_finiteness(finite, losses, grad_norm, indices)
        self.state.step += 1
        self.state.epoch_step += 1
        return _StepOutcome(lr=lr, finite=finite, preempted=preempted, checkpoint_due=due)

    def _record_finiteness(
        self, finite: bool, losses: list[Tensor], grad_norm: Tensor, indices: list[Any]
    ) -> None:
        """Count a skipped step (:class:`NonFiniteSteps`); its values are read only then."""
        if finite:
            self.nonfinite.record(
                finite=True, step=self.state.step + 1, loss=0.0, grad_norm=0.0, videos=[]
            )
            return
        values = torch.stack([*losses, grad_norm.to(losses[0])]).tolist()
        loss = next((v for v in values[:-1] if not math.isfinite(v)), values[-2])
        self.nonfinite.record(
            finite=False,
            step=self.state.step + 1,
            loss=loss,
            grad_norm=values[-1],
            videos=[self.train_set.path_of(int(i)) for part in indices for i in part],
        )

    def _after_step(
        self,
        epoch: int,
        outcome: _StepOutcome,
        totals: EpochTotals,
        bar: Any,
        stop_at: int | None,
    ) -> bool:
        """Progress, the logging window every ``run.log_every`` steps, and a mid-epoch
        checkpoint when stopping or when one is due; returns True when the run stops here."""
        elapsed = time.perf_counter() - totals.start
        clips_per_s = totals.clips * self.world_size / max(elapsed, 1e-9)
        data_wait = totals.data_time / max(elapsed, 1e-9)
        if bar is not None:
            bar.update(1)
        if self.state.step % max(1, self.cfg.run.log_every) == 0:
            loss = totals.read_window()
            if bar is not None:
                bar.set_postfix(
                    loss=f"{loss:.4f}",
                    lr=f"{outcome.lr:.2e}",
                    clips_s=f"{clips_per_s:.1f}",
                    data=f"{data_wait:.0%}",
                )
            self.metrics.log(
                "train",
                {
                    "step": self.state.step,
                    "epoch": epoch + self.state.epoch_step / self.steps_per_epoch,
                    "loss": loss,
                    "lr": outcome.lr,
                    "clips_per_s": clips_per_s,
                    "data_wait": data_wait,
                },
            )
        stopped = outcome.preempted or (stop_at is not None and self.state.step >= stop_at)
        mid_epoch = self.state.epoch_step < self.steps_per_epoch  # else saved after it
        if (stopped or outcome.checkpoint_due) and mid_epoch:
            self.state.partial_epoch = totals.global_sums()
            self.save("last")
            self.state.partial_epoch = {}
        return stopped

    def validate(self) -> EvalResult:
        """Evaluate on the validation list: metrics, per-class accuracy and confusion matrix."""
        assert self.val_loader is not None and self.val_set is not None
        self.objective.export_classifier(self.model)
        indices, scores, labels = predict_scores(
            self.model,
            self.val_loader,
            device=self.device,
            precision=self.cfg.train.precision,
            aggregate=self.cfg.eval.aggregate,
            expected=len(self.val_set),
            progress=self.cfg.run.progress,
        )
        return evaluate_scores(indices, scores, labels, multilabel=self.cfg.eval.multilabel)

    def run(self, stop_at: int | None) -> TrainSummary:
        cfg = self.cfg
        logger.info(
            "training %d epochs x %d steps (%d clips per step on %d process(es)), lr %.2e",
            cfg.train.epochs,
            self.steps_per_epoch,
            cfg.data.batch_size * cfg.train.grad_accum * self.world_size,
            self.world_size,
            cfg.train.lr,
        )
        if stop_at is not None and self.state.step >= stop_at:
            raise UsageError(
                f"stop_after_steps={stop_at} but the run is already at step {self.state.step}"
            )
        while self.state.epoch < cfg.train.epochs:
            stopped = self.train_epoch(self.state.epoch, stop_at)
            if stopped and self.state.epoch_step < self.steps_per_epoch:
                return self._stop()
            self._end_epoch()
            if self.state.epoch < cfg.train.epochs and self.preemption.should_stop():
                stopped = True  # a signal during validation or the save: stop at the epoch's end
            if stopped:
                return self._stop()
        self._finish()
        return self._summary(stopped=False)

    def _end_epoch(self) -> None:
        """Close the epoch just trained: its row of metrics (validation when due), the log
        line, and the ``last`` (and ``best``) checkpoints."""
        self.state.epoch += 1
        self.state.epoch_step = 0
        row: dict[str, Any] = {"epoch": self.state.epoch, "step": self.state.step}
        row.update(self._epoch_train)
        row["lr"] = self.schedule(max(0, self.state.step - 1))
        row["peak_mem_mb"] = peak_memory_mb(self.device)
        self.failures.synchronize()
        row["decode_failures"] = len(self.failures.failed)
        row["skipped_steps"] = self.nonfinite.total  # non-finite loss or gradient, all epochs
        self.state.decode_failures = len(self.failures.failed)
        self.failures.check()
        if self._validation_due():
            row.update(self._validate_and_log())
        self.state.history.append(row)
        self.metrics.write_epochs(self.state.history)
        logger.info(
            "epoch %d: loss %.4f%s%s, %.1f clips/s, data wait %.0f%%, peak memory %.0f MiB",
            self.state.epoch,
            row["train_loss"],
            f", train top-1 {row['train_top1']:.3f}" if row["train_top1"] is not None else "",
            f", val top-1 {row['val_top1']:.3f}" if "val_top1" in row else "",
            row["clips_per_s"],
            100 * row["data_wait"],
            row["peak_mem_mb"],
        )
        names = ["last"]
        top1 = row.get("val_top1")
        if top1 is not None and (self.state.best_top1 is None or top1 > self.state.best_top1):
            self.state.best_top1 = float(top1)
            self.state.best_epoch = self.state.epoch
            names.append("best")
        self.save(*names)

    def _validation_due(self) -> bool:
        every = self.cfg.train.eval_every
        is_last = self.state.epoch == self.cfg.train.epochs
        return self.val_loader is not None and (
            is_last or (every > 0 and self.state.epoch % every == 0)
        )

    def _validate_and_log(self) -> dict[str, Any]:
        """Validate, log the metrics and the per-class counts; returns the ``val_*`` columns."""
        result = self.validate()
        val = result.metrics
        self.metrics.log("val", {"step": self.state.step, "epoch": self.state.epoch, **val})
        # Per class, in label order: which classes lag, and when each is learnt.
        self.metrics.log(
            "val_per_class",
            {
                "step": self.state.step,
                "epoch": self.state.epoch,
                "correct": result.confusion.diagonal().tolist(),
                "videos": result.confusion.sum(dim=1).tolist(),
            },
        )
        return {f"val_{k}": v for k, v in val.items()}

    def _finish(self) -> None:
        self.objective.export_classifier(self.model)
        check_finite_weights(self.model.state_dict(), f"the model folder {self.run_path / 'model'}")
        if self.rank == 0:
            self.model.save_pretrained(self.run_path / "model", data_config=self.cfg.data)
            self.objective.save_artifacts(self.run_path / "model", self.model, self.cfg)
            # The full training config beside the weights: zero-shot rebuilds the text side
            # (including a random tower, from train.seed) from it.
            dump_config(self.cfg, self.run_path / "model" / TRAIN_CONFIG_NAME)
            records = []
            if self.metrics.jsonl.exists():
                records = [
                    json.loads(line)
                    for line in self.metrics.jsonl.read_text().splitlines()
                    if line.strip()
                ]
            train_records = [r for r in records if r.get("kind") == "train"]
            plot_curves(train_records, self.state.history, self.run_path / "curves.png")
            logger.info("exported the trained model to %s", self.run_path / "model")
        self.metrics.close()

    def _stop(self) -> TrainSummary:
        """Log where the run stopped (``last.pt`` is written) and return the summary."""
        preempted = self.preemption.should_stop()
        where = (
            f"after step {self.state.step} (epoch {self.state.epoch + 1}, "
            f"{self.state.epoch_step} of {self.steps_per_epoch} steps into it)"
            if self.state.epoch_step
            else f"after step {self.state.step} (end of epoch {self.state.epoch})"
        )
        last = self.run_path / CHECKPOINT_DIR / "last.pt"
        if preempted:
            logger.warning(
                "preempted by %s: stopped %s; checkpoint %s; continue with --resume auto (or "
                "--resume %s)",
                self.preemption.reason,
                where,
                last,
                self.run_path,
            )
        else:
            logger.info("stopped %s as asked; checkpoint %s", where, last)
        self.metrics.close()
        return self._summary(stopped=True, preempted=preempted)

    def _summary(self, *, stopped: bool, preempted: bool = False) -> TrainSummary:
        return TrainSummary(
            run_dir=str(self.run_path),
            stopped=stopped,
            preempted=preempted,
            epoch=self.state.epoch,
            step=self.state.step,
            best_top1=self.state.best_top1,
            best_epoch=self.state.best_epoch,
            final=self.state.history[-1] if self.state.history else {},
            history=list(self.state.history),
            model_dir=None if stopped else str(self.run_path / "model"),
        )


def fit(
    cfg: Config,
    *,
    resume: str | None = None,
    run_dir: str | Path | None = None,
    stop_after_steps: int | None = None,
) -> TrainSummary:
    """Train a video recognizer as ``cfg`` says, in one process or under ``torchrun``.

    Args:
        cfg: the resolved config.
        resume: ``"auto"`` (newest complete checkpoint of ``run.name``, fresh start when none),
            a checkpoint file or a run folder; None starts fresh.
        run_dir: the run folder to use; default: a new ``<run.root>/<run.name>/<timestamp>``, or
            the folder of the checkpoint being resumed.
        stop_after_steps: stop after this many optimizer steps since the start of the run,
            writing ``last`` first (for tests and time-limited jobs; also read from the
            ``TEXT4VIS_STOP_AFTER_STEPS`` environment variable).

    Returns:
        The :class:`TrainSummary` of the run (``preempted`` when SIGTERM / SIGUSR1 stopped it).
    """
    validate_config(cfg)
    with dist_utils.process_group(cfg.run.device) as device:
        set_tf32(device, cfg.run.tf32)
        ckpt_path = None
        if dist_utils.is_main_process():
            ckpt_path = resolve_resume(resume, cfg.run.root, cfg.run.name)
        ckpt_path = dist_utils.broadcast_object(None if ckpt_path is None else str(ckpt_path))
        checkpoint = load_checkpoint(ckpt_path) if ckpt_path else None
        # Labels, lists and the few-shot choice first: a wrong path fails before any weight
        # is loaded or the run folder is created.
        data = _read_data(cfg)
        if checkpoint is not None and checkpoint.get("class_names") not in (
            None,
            list(data.class_names),
        ):
            raise CheckpointError(
                f"{ckpt_path} was trained on other class names than {cfg.data.labels}; resume "
                "with the label file it was trained with"
            )
        if run_dir is None and ckpt_path is not None:
            path = Path(ckpt_path)
            run_dir = path.parent.parent if path.parent.name == CHECKPOINT_DIR else path.parent
        run = create_run_dir(
            cfg, path=run_dir, resumed_from=None if ckpt_path is None else str(ckpt_path)
        )
        if data.train_set.few_shot is not None and dist_utils.is_main_process():
            write_few_shot_list(run.path, *data.train_set.few_shot)
        if checkpoint is not None:
            logger.info("resuming from %s", ckpt_path)
            diffs = [
                d
                for d in _config_differences(checkpoint.get("config", {}), config_to_dict(cfg))
                if not d.startswith("run.")
            ]
            for diff in diffs:
                logger.warning("config differs from the checkpoint's: %s", diff)
        trainer = _Trainer(cfg, device, run.path, checkpoint, data)
        # The trainer copied what it needs; the whole CPU checkpoint (weights and optimizer
        # moments, several times the model's size) is not kept for the rest of the run.
        del checkpoint
        with trainer.preemption:  # SIGTERM / SIGUSR1: finish the step, save, stop
            return trainer.run(_stop_after_steps(stop_after_steps))

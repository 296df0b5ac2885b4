"""Host synchronisations of a training step, counted on the CPU.

On a GPU every read of a device value (``.item()``, ``float(t)``, ``.tolist()``, ``bool(t)``) waits
for the kernels queued before it, and every ``broadcast_object`` is a collective plus such a
read. The trainer keeps its running sums on the device and reads them every ``run.log_every``
steps; a step itself makes one read (the all-reduced flags of :meth:`_Trainer._agree_on_step`).
These tests count the reads of whole epochs of :func:`text4vis.engine.train.fit` on in-memory
batches, and check that the logged losses are the losses the steps computed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from text4vis import distributed as dist_utils
from text4vis.config import load_config
from text4vis.engine import train as train_module
from text4vis.engine.objectives import TrainStep

STEPS, ACCUM, BATCH, LOG_EVERY = 12, 2, 4, 4
CLASSES = ["red thing", "green thing", "blue thing", "yellow thing"]
READS = ("item", "tolist", "__float__", "__int__", "__bool__")


class _Dataset:
    few_shot = None

    def __len__(self) -> int:
        return STEPS * ACCUM * BATCH

    def path_of(self, index: int) -> str:
        return f"clip{index}.mp4"


class _Loader:
    """Batches as the training loader gives them (one view per clip), made once."""

    sampler = None
    dataset = None

    def __init__(self) -> None:
        generator = torch.Generator().manual_seed(0)
        self.batches = [
            {
                "video": torch.randint(
                    0, 256, (BATCH, 1, 4, 3, 32, 32), generator=generator, dtype=torch.uint8
                ),
                "label": torch.randint(0, len(CLASSES), (BATCH,), generator=generator),
                "index": torch.arange(i * BATCH, (i + 1) * BATCH),
            }
            for i in range(STEPS * ACCUM)
        ]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Any:
        return iter(self.batches)


def _config(tmp_path: Path, *extra: str) -> Any:
    return load_config(
        None,
        [
            "data.train_list=unused.txt",
            "data.labels=unused.csv",
            "data.num_segments=4",
            "data.input_size=32",
            "data.resize_size=36",
            f"data.batch_size={BATCH}",
            "model.arch=tiny-vit",
            "model.temporal=mean",
            "model.classifier=orthogonal",
            "train.epochs=2",
            "train.warmup_epochs=0.5",
            f"train.grad_accum={ACCUM}",
            "train.clip_grad=1.0",
            "train.precision=fp32",
            "train.checkpoint_minutes=60",  # the timed-checkpoint flag is computed every step
            f"run.root={tmp_path}",
            "run.progress=false",
            f"run.log_every={LOG_EVERY}",
            "run.device=cpu",
            *extra,
        ],
    )


@pytest.fixture
def counted_fit(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``fit`` on in-memory batches; returns (summary, reads per epoch, micro-batch losses)."""
    loader = _Loader()
    # train.py imports build_loader at the top: patch the name it calls.
    monkeypatch.setattr(train_module, "build_loader", lambda *args, **kwargs: loader)
    monkeypatch.setattr(
        train_module,
        "_read_data",
        lambda cfg: train_module._TrainData(list(CLASSES), _Dataset(), None),
    )
    losses: list[torch.Tensor] = []
    forward = TrainStep.forward

    def recording_forward(self: TrainStep, video: torch.Tensor, labels: torch.Tensor) -> Any:
        loss, logits = forward(self, video, labels)
        losses.append(loss.detach().clone())  # no read: kept for the check after the run
        return loss, logits

    monkeypatch.setattr(TrainStep, "forward", recording_forward)
    counts = {"reads": 0, "active": False}

    def counting(name: str, original: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if counts["active"]:
                counts["reads"] += 1
            return original(*args, **kwargs)

        wrapper.__name__ = name
        return wrapper

    for name in READS:
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    for name in ("broadcast_object", "all_reduce_sum"):
        monkeypatch.setattr(dist_utils, name, counting(name, getattr(dist_utils, name)))
    per_epoch: list[int] = []
    train_epoch = train_module._Trainer.train_epoch

    def counted_epoch(self: Any, epoch: int, stop_at: int | None) -> bool:
        counts["reads"], counts["active"] = 0, True
        try:
            return train_epoch(self, epoch, stop_at)
        finally:
            counts["active"] = False
            per_epoch.append(counts["reads"])

    monkeypatch.setattr(train_module._Trainer, "train_epoch", counted_epoch)

    def run(cfg: Any) -> tuple[Any, list[int], list[torch.Tensor]]:
        summary = train_module.fit(cfg)
        return summary, per_epoch, losses

    return run


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param((), id="cross-entropy"),
        pytest.param(
            ("model.classifier=text", "train.objective=contrastive"), id="contrastive-offline"
        ),
        pytest.param(
            (
                "model.classifier=text",
                "train.objective=contrastive",
                "train.text_online=true",
                "train.text_lr_ratio=1.0",
            ),
            id="contrastive-online",
        ),
    ],
)
def test_one_host_read_per_step_and_the_same_logged_losses(
    counted_fit: Any, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    summary, per_epoch, losses = counted_fit(_config(tmp_path, *extra))
    assert summary.step == 2 * STEPS and len(per_epoch) == 2
    # One read per step (the agreed flags), one per logging window, one for the epoch's sums.
    bound = STEPS + math.ceil(STEPS / LOG_EVERY) + 1
    for reads in per_epoch:
        assert reads <= bound, (per_epoch, bound)
    # Before: float(loss) and float(correct) per micro-batch, float(grad norm) per step, i.e.
    # 5 reads per step at grad_accum=2. Now well under 2.
    assert max(per_epoch) / STEPS < 1.5

    # The logged window losses are the clip-weighted means of the losses the steps computed.
    values = [float(loss) for loss in losses]
    assert len(values) == 2 * STEPS * ACCUM and all(math.isfinite(v) for v in values)
    expected = []
    for window in range(2 * STEPS // LOG_EVERY):
        part = values[window * LOG_EVERY * ACCUM : (window + 1) * LOG_EVERY * ACCUM]
        loss_sum = 0.0
        for value in part:
            loss_sum += value * BATCH
        expected.append(loss_sum / (len(part) * BATCH))
    records = [
        json.loads(line)
        for line in (Path(summary.run_dir) / "metrics.jsonl").read_text().splitlines()
    ]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(LOG_EVERY, 2 * STEPS + 1, LOG_EVERY))
    assert [r["loss"] for r in train] == expected
    for epoch, row in enumerate(summary.history):
        part = values[epoch * STEPS * ACCUM : (epoch + 1) * STEPS * ACCUM]
        loss_sum = 0.0
        for value in part:
            loss_sum += value * BATCH
        assert row["train_loss"] == loss_sum / (len(part) * BATCH)

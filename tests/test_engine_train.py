"""End-to-end training on synthetic coloured clips: learning, exact resume, DDP equivalence.

The clips are real mp4 files (PyAV); each class is a colour, so a tiny random ViT learns it in a
few epochs. Models use the ``tiny-vit`` architecture (32 px) with mean pooling and an orthogonal
frozen classifier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import COLOURS, overrides, write_colour_clips
from text4vis.config import dump_config, load_config
from text4vis.data.annotations import write_annotations
from text4vis.data.labels import write_labels
from text4vis.engine.train import fit
from text4vis.models.factory import load_checkpoint


@pytest.fixture(scope="module")
def colour_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    write_labels(root / "labels.csv", [f"{name} thing" for name in COLOURS])
    write_annotations(root / "train.txt", write_colour_clips(root, per_class=6, seed=0))
    write_annotations(root / "val.txt", write_colour_clips(root, per_class=3, seed=1))
    return root


def weights(run_dir: str) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run_dir) / "model" / "model.safetensors"))


def test_training_learns_and_writes_run_folder(colour_data, tmp_path):
    cfg = load_config(None, overrides(colour_data, tmp_path, "train.epochs=3", "run.name=learn"))
    summary = fit(cfg)
    history = summary.history
    assert len(history) == 3 and summary.step == 3 * 6  # 24 clips / batch 4
    # chance is 1/4 on the held-out clips; a colour is easy once the encoder adapts
    assert history[-1]["val_top1"] >= 0.75, history
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"], history
    run = Path(summary.run_dir)
    for name in ("metrics.jsonl", "metrics.csv", "curves.png", "config.yaml", "log.txt"):
        assert (run / name).is_file(), name
    assert (run / "checkpoints" / "last.pt").is_file() and (
        run / "checkpoints" / "best.pt"
    ).is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == list(range(1, 19))
    assert sum(r["kind"] == "val" for r in records) == 3
    # One per-class record per validation, in label order, that adds up to the val record.
    vals = [r for r in records if r["kind"] == "val"]
    per_class = [r for r in records if r["kind"] == "val_per_class"]
    assert [r["epoch"] for r in per_class] == [1, 2, 3] == [r["epoch"] for r in vals]
    for val, counts in zip(vals, per_class):
        assert len(counts["correct"]) == len(counts["videos"]) == 4  # classes
        assert all(0 <= c <= n for c, n in zip(counts["correct"], counts["videos"]))
        assert sum(counts["videos"]) == val["num_videos"]
        assert sum(counts["correct"]) == round(val["top1"] * val["num_videos"])
    csv_lines = (run / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 4 and "val_top1" in csv_lines[0] and "clips_per_s" in csv_lines[0]
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert best["train_state"]["best_top1"] == max(h["val_top1"] for h in history)

    # The exported model reproduces the validation accuracy of the last epoch.
    from text4vis.data.dataset import build_dataset
    from text4vis.data.loaders import build_loader
    from text4vis.engine.loops import predict_scores
    from text4vis.engine.metrics import evaluate_scores
    from text4vis.models.video import VideoRecognizer

    model = VideoRecognizer.from_pretrained(run / "model")
    dataset = build_dataset(cfg, "val")
    loader = build_loader(dataset, cfg, "val", seed=0)
    result = evaluate_scores(
        *predict_scores(model, loader, device=torch.device("cpu"), expected=len(dataset))
    )
    assert result.metrics["top1"] == pytest.approx(history[-1]["val_top1"])


@pytest.mark.parametrize(
    "variant",
    [
        (),
        pytest.param(
            # loader workers, every augmentation, the temporal transformer
            ("data.num_workers=2", "data.randaugment=true", "data.grayscale=0.2",
             "model.temporal=transformer"),
            marks=pytest.mark.slow,
            id="workers-randaugment",
        ),
    ],
    ids=lambda v: "fast" if not v else None,
)  # fmt: skip
def test_stop_and_resume_is_bit_identical(colour_data, tmp_path, variant):
    # Augmentation on (random resized crop, flip), accumulation and clipping on: every piece of
    # state a resume must restore is exercised. 24 clips / (batch 4 x accum 2) = 3 steps/epoch.
    extra = ("train.epochs=2", "train.grad_accum=2", "train.clip_grad=1.0", *variant)
    reference = fit(load_config(None, overrides(colour_data, tmp_path / "a", *extra)))
    assert reference.step == 6

    cfg = load_config(None, overrides(colour_data, tmp_path / "b", *extra))
    stopped = fit(cfg, stop_after_steps=4)  # in the middle of epoch 2
    assert stopped.stopped and stopped.step == 4 and stopped.model_dir is None
    ckpt = load_checkpoint(Path(stopped.run_dir) / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["epoch_step"]) == (1, 4, 1)
    resumed = fit(cfg, resume="auto")
    assert resumed.run_dir == stopped.run_dir and resumed.step == 6

    expected, got = weights(reference.run_dir), weights(resumed.run_dir)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    # the resumed run's epoch table matches the uninterrupted one
    assert [h["train_loss"] for h in resumed.history] == pytest.approx(
        [h["train_loss"] for h in reference.history], abs=0, rel=0
    )
    lines = (Path(resumed.run_dir) / "metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines if '"train"' in line]
    assert steps == list(range(1, 7))  # no step logged twice


@pytest.mark.process
def test_ddp_two_processes_match_one_process(colour_data, tmp_path):
    """2 gloo processes x batch 1 x 2 accumulated micro-batches == 1 process x batch 4.

    The training sampler deals the same shuffled order to the ranks in turn, so every optimizer
    step sees the same 4 clips; accumulation skips the all-reduce of the first micro-batch.

    Tolerance 1e-6 (absolute; weights are of magnitude <= 1): gradients are averaged over ranks
    in another summation order than one process's batch mean (measured difference 2.4e-7).
    """
    # Adam's update is blind to the gradient's scale unless eps dominates sqrt(v): with eps=1 the
    # step is ~ lr * momentum of the gradient, so a wrong average over ranks or micro-batches shows.
    common = ("train.epochs=1", "train.seed=3", "train.eps=1.0", "train.lr=0.05")
    single = fit(load_config(None, overrides(colour_data, tmp_path / "one", *common)))

    config_path = tmp_path / "ddp.yaml"
    micro = ("data.batch_size=1", "train.grad_accum=2")
    cfg = load_config(None, overrides(colour_data, tmp_path / "two", *common, *micro))
    dump_config(cfg, config_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TEXT4VIS_DEBUG": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "text4vis",
            "train",
            str(config_path),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["step"] == single.step == 6
    expected, got = weights(single.run_dir), weights(summary["run_dir"])
    for key in expected:
        diff = (expected[key] - got[key]).abs().max().item()
        assert diff <= 1e-6, (key, diff)
    # training moved the weights by orders of magnitude more than the tolerance
    from text4vis.data.labels import read_labels
    from text4vis.models.factory import build_model

    cfg_single = load_config(None, overrides(colour_data, tmp_path / "one", *common))
    initial = build_model(cfg_single, read_labels(cfg_single.data.labels)).state_dict()
    assert (initial["visual.conv1.weight"] - got["visual.conv1.weight"]).abs().max() > 1e-4


def test_resume_honours_a_changed_fused_adamw_setting(caplog):
    """Optimizer.load_state_dict would restore the checkpoint's implementation choice."""
    from text4vis.engine.optim import build_optimizer, load_optimizer_state

    def make(fused: bool) -> tuple[torch.nn.Linear, torch.optim.AdamW]:
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        opt = build_optimizer(
            model, None, lr=0.1, weight_decay=0.1, visual_lr_ratio=1.0, fused=fused
        )
        return model, opt

    def step(model: torch.nn.Linear, opt: torch.optim.AdamW) -> None:
        model(torch.ones(2, 4)).sum().backward()
        opt.step()
        opt.zero_grad()

    model, loop = make(fused=False)
    step(model, loop)
    saved = loop.state_dict()
    resumed_model, fused = make(fused=True)
    resumed_model.load_state_dict(model.state_dict())
    with caplog.at_level("INFO", logger="text4vis.engine.optim"):
        load_optimizer_state(fused, saved)
    assert all(group["fused"] for group in fused.param_groups)
    assert "fused: None -> True" in caplog.text
    # The moments and step count are the checkpoint's: the next step equals the loop's.
    step(model, loop)
    step(resumed_model, fused)
    for a, b in zip(model.parameters(), resumed_model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_the_loaded_checkpoint_is_not_kept_during_the_run(colour_data, tmp_path, monkeypatch):
    """fit drops the CPU checkpoint (weights and optimizer moments) once the trainer restored
    it, instead of holding it in host memory for the whole run."""
    import gc
    import weakref

    from text4vis.engine import train as train_module

    cfg = load_config(None, overrides(colour_data, tmp_path, "train.epochs=1", "run.name=drop"))
    first = fit(cfg, stop_after_steps=2)
    assert first.stopped

    class Checkpoint(dict):  # a dict that can be referenced weakly
        pass

    refs = []
    load = train_module.load_checkpoint

    def tracked_load(path):
        checkpoint = Checkpoint(load(path))
        refs.append(weakref.ref(checkpoint))
        return checkpoint

    alive = []
    run = train_module._Trainer.run

    def checking_run(self, stop_at):
        gc.collect()
        alive.append(refs[-1]() is not None)
        return run(self, stop_at)

    monkeypatch.setattr(train_module, "load_checkpoint", tracked_load)
    monkeypatch.setattr(train_module._Trainer, "run", checking_run)
    resumed = fit(cfg, resume=first.run_dir)
    assert resumed.step == 6 and refs and alive == [False]


def test_cuda_n_is_refused_under_torchrun(monkeypatch):
    """run.device=cuda:N would put every torchrun process on GPU N: refused before any CUDA
    work, with the fix; cuda / auto resolve per LOCAL_RANK."""
    from text4vis import distributed as dist_utils

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    refused = pytest.raises(ValueError, match=r"run.device='cuda:0'.*run.device=cuda.*LOCAL_RANK")
    with refused, dist_utils.process_group("cuda:0"):
        pass
    dist_utils.check_device_for_ranks("cuda")
    dist_utils.check_device_for_ranks("auto")
    monkeypatch.setenv("WORLD_SIZE", "1")
    dist_utils.check_device_for_ranks("cuda:1")  # one process: any GPU


def test_ddp_broadcasts_buffers_only_when_training_changes_them():
    """Frozen classifier, CoOp prompts and pixel normalisation are constants (no broadcast);
    a ResNet's BatchNorm running statistics change in training (broadcast kept)."""
    from text4vis.config import config_from_dict
    from text4vis.engine.acceleration import buffers_change_in_training
    from text4vis.engine.objectives import TrainStep, build_objective
    from text4vis.models.video import VideoRecognizer

    names = ["a", "b", "c"]
    expected = {("tiny-vit", "orthogonal"): False, ("tiny-vit", "text"): False}
    expected[("tiny-rn", "orthogonal")] = True
    for (arch, classifier), changes in expected.items():
        cfg = config_from_dict({"model": {"arch": arch, "classifier": classifier}})
        model = VideoRecognizer.from_config(cfg.model, names, num_frames=2, image_size=32)
        step = TrainStep(model, build_objective(cfg, model, names))
        assert any(True for _ in step.buffers())
        assert buffers_change_in_training(step) is changes, (arch, classifier)
    coop = config_from_dict({"model": {"arch": "tiny-vit", "prompt": "coop"}})
    model = VideoRecognizer.from_config(coop.model, names, num_frames=2, image_size=32)
    assert any("prefix" in n or "suffix" in n for n, _ in model.named_buffers())
    assert not buffers_change_in_training(model)


@pytest.mark.slow
def test_compile_covers_encode_video_and_the_contrastive_step():
    """train.compile compiles what forward, encode_video (contrastive objective, embedding
    loops) and the training step call, with the outputs of the eager model."""
    import copy
    import shutil

    from torch._dynamo.utils import counters

    from text4vis.config import config_from_dict
    from text4vis.engine.acceleration import compile_model
    from text4vis.engine.objectives import TrainStep, build_objective
    from text4vis.models.video import VideoRecognizer

    if shutil.which("gcc") is None and shutil.which("cc") is None:
        pytest.skip("torch.compile (inductor) on the CPU needs a C compiler; no gcc or cc found")
    names = ["a", "b", "c"]
    cfg = config_from_dict(
        {
            "model": {"arch": "tiny-vit", "temporal": "transformer", "classifier": "text"},
            "train": {"objective": "contrastive"},
        }
    )
    torch.manual_seed(0)
    model = VideoRecognizer.from_config(cfg.model, names, num_frames=2, image_size=32)
    eager = copy.deepcopy(model)
    names_before = list(model.state_dict())
    assert compile_model(model) is model and list(model.state_dict()) == names_before
    video = torch.randn(4, 2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 0])
    counters.clear()
    with torch.no_grad():
        torch.testing.assert_close(model.encode_video(video), eager.encode_video(video))
        assert counters["stats"]["unique_graphs"] >= 1  # encode_video ran compiled graphs
        torch.testing.assert_close(model(video), eager(video))
    # The trainer's training step: model and objective compiled together (after DDP there).
    step = torch.compile(TrainStep(model, build_objective(cfg, model, names)))
    eager_step = TrainStep(eager, build_objective(cfg, eager, names))
    loss, _ = step(video, labels)
    eager_loss, _ = eager_step(video, labels)
    torch.testing.assert_close(loss, eager_loss)
    loss.backward()
    eager_loss.backward()
    for (name, p), q in zip(model.named_parameters(), eager.parameters()):
        if p.requires_grad:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)

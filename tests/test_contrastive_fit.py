"""End-to-end: the contrastive objective through the trainer (``fit``) on synthetic colour clips.

Slow (a minute or more each on two CPU cores): run with ``make test-slow``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import COLOURS, overrides, write_colour_clips
from text4vis.config import load_config
from text4vis.data.annotations import write_annotations
from text4vis.data.labels import write_labels

pytestmark = pytest.mark.slow

NAMES = [f"{name} thing" for name in COLOURS]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    write_labels(root / "labels.csv", NAMES)
    write_annotations(root / "train.txt", write_colour_clips(root, per_class=6, seed=0))
    write_annotations(root / "val.txt", write_colour_clips(root, per_class=3, seed=1))
    return root


def contrastive_overrides(data: Path, runs: Path, online: bool) -> list[str]:
    return overrides(
        data,
        runs,
        "model.classifier=text",
        "train.objective=contrastive",
        f"train.text_online={str(online).lower()}",
        "train.text_lr_ratio=1.0",
        "train.epochs=3",
    )


def test_offline_contrastive_trains_and_evaluates_like_ce(data: Path, tmp_path: Path) -> None:
    from text4vis.engine.train import fit
    from text4vis.models.video import VideoRecognizer

    cfg = load_config(None, contrastive_overrides(data, tmp_path, online=False))
    summary = fit(cfg)
    history = summary.history
    assert history[-1]["val_top1"] >= 0.75, history  # chance is 0.25
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"], history
    # The exported model keeps the frozen text classifier it was trained against.
    exported = VideoRecognizer.from_pretrained(Path(summary.run_dir) / "model")
    torch.manual_seed(cfg.train.seed)
    fresh = VideoRecognizer.from_config(cfg.model, NAMES, num_frames=4, image_size=32)
    torch.testing.assert_close(exported.classifier_weight(), fresh.classifier_weight())


def test_online_contrastive_exports_the_trained_text_side(data: Path, tmp_path: Path) -> None:
    from text4vis.engine.contrastive import TEXT_TOWER_FILE
    from text4vis.engine.objectives import build_objective
    from text4vis.engine.train import fit
    from text4vis.models.factory import build_model, load_checkpoint
    from text4vis.models.video import VideoRecognizer

    cfg = load_config(None, contrastive_overrides(data, tmp_path, online=True))
    summary = fit(cfg)
    run = Path(summary.run_dir)
    # Rebuild the trained objective from the checkpoint and compare with the exported model.
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    model = build_model(cfg, NAMES)
    objective = build_objective(cfg, model, NAMES)
    objective.load_state_dict(ckpt["objective"])
    exported = VideoRecognizer.from_pretrained(run / "model")
    torch.testing.assert_close(exported.classifier_weight(), objective.text.class_embeddings())
    assert (run / "model" / TEXT_TOWER_FILE).is_file()
    # Loading the folder points the text side at the trained tower (for new class names).
    assert exported.model_cfg.text_pretrained == str(run / "model" / TEXT_TOWER_FILE)

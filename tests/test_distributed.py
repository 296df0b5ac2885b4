"""Distributed evaluation (2 gloo processes) counts every video once and matches one process."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from text4vis import distributed
from text4vis.config import load_config
from text4vis.data.loaders import build_loader
from text4vis.engine.loops import extract_features, predict_scores
from text4vis.engine.metrics import evaluate_scores

NUM_VIDEOS = 7  # odd: the two ranks get 4 and 3 videos
NUM_CLASSES = 5


class StandInVideos(torch.utils.data.Dataset):
    """Seeded random clips [V=2, T=3, 3, 4, 4] with labels; no decoding."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.videos = torch.randn(NUM_VIDEOS, 2, 3, 3, 4, 4, generator=gen)
        self.labels = torch.randint(0, NUM_CLASSES, (NUM_VIDEOS,), generator=gen)

    def __len__(self) -> int:
        return NUM_VIDEOS

    def __getitem__(self, index: int) -> dict:
        return {"video": self.videos[index], "label": int(self.labels[index]), "index": index}


class StandInModel(nn.Module):
    """Mean colour of a clip -> linear logits; ``encode_video`` for features."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, NUM_CLASSES)
        with torch.no_grad():
            self.proj.weight.copy_(torch.arange(15.0).reshape(5, 3).sin())
            self.proj.bias.zero_()
        self.class_names = [str(c) for c in range(NUM_CLASSES)]
        self.embed_dim = NUM_CLASSES

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.mean(dim=(1, 3, 4)))  # [B, T, 3, H, W] -> [B, 3] -> [B, C]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_video(x)


def _evaluate(rank: int | None = None, world_size: int | None = None) -> dict:
    cfg = load_config(None, ["eval.batch_size=2", "data.num_workers=0"])
    dataset = StandInVideos()
    loader = build_loader(dataset, cfg, "test", seed=0, rank=rank, world_size=world_size)
    model = StandInModel()
    device = torch.device("cpu")
    out = {}
    for mode in ("prob", "logit"):
        indices, scores, labels = predict_scores(
            model, loader, device=device, aggregate=mode, expected=NUM_VIDEOS
        )
        result = evaluate_scores(indices, scores, labels, multilabel=True)
        out[mode] = (indices, scores, labels, result.metrics, result.confusion)
    out["features"] = extract_features(model, loader, device=device, expected=NUM_VIDEOS)
    out["local_count"] = len(loader.sampler)
    return out


def _worker(rank: int, store: str, result_path: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        result = _evaluate()  # rank and world size come from the process group
        counts = [None, None]
        dist.all_gather_object(counts, result["local_count"])
        result["counts"] = counts
        if rank == 0:
            torch.save(result, result_path)
    finally:
        dist.barrier()
        dist.destroy_process_group()


@pytest.mark.process
def test_two_process_evaluation_equals_one_process(tmp_path):
    single = _evaluate(rank=0, world_size=1)
    assert not distributed.is_distributed()
    path = tmp_path / "ddp.pt"
    mp.spawn(_worker, args=(str(tmp_path / "store"), str(path)), nprocs=2, join=True)
    ddp = torch.load(path, weights_only=False)
    assert ddp["counts"] == [4, 3]  # no padding: every video on exactly one rank
    for mode in ("prob", "logit"):
        indices, scores, labels, metrics, confusion = ddp[mode]
        s_indices, s_scores, s_labels, s_metrics, s_confusion = single[mode]
        assert indices.tolist() == list(range(NUM_VIDEOS))
        assert torch.equal(indices, s_indices) and torch.equal(labels, s_labels)
        assert torch.equal(scores, s_scores)  # per-video work is the same arithmetic
        assert metrics == s_metrics and metrics["num_videos"] == NUM_VIDEOS
        assert torch.equal(confusion, s_confusion) and int(confusion.sum()) == NUM_VIDEOS
    for got, expected in zip(ddp["features"], single["features"]):
        assert torch.equal(got, expected)
    # direct restatement of the prob aggregation for one video
    model = StandInModel()
    video = StandInVideos()[3]["video"]  # [V, T, 3, H, W]
    with torch.no_grad():
        expected = model(video).softmax(-1).mean(0)
    assert torch.allclose(single["prob"][1][3], expected)


class WithUnreadable(StandInVideos):
    """Videos 2 and 3 are unreadable and skipped (as ``data.skip_unreadable`` makes them)."""

    video_shape = (2, 3, 3, 4, 4)

    def __getitem__(self, index: int) -> dict:
        if index in (2, 3):
            return {"video": None, "label": 0, "index": index, "path": f"v{index}.mp4",
                    "reason": "truncated"}  # fmt: skip
        return super().__getitem__(index)


def test_skipped_videos_are_reported_not_counted():
    cfg = load_config(None, ["eval.batch_size=2", "data.num_workers=0"])
    dataset = WithUnreadable()
    loader = build_loader(dataset, cfg, "test", seed=0, rank=0, world_size=1)  # batch {2,3}: empty
    skipped: list = []
    indices, scores, _ = predict_scores(
        StandInModel(), loader, device=torch.device("cpu"), expected=NUM_VIDEOS, skipped=skipped
    )
    assert indices.tolist() == [0, 1, 4, 5, 6] and scores.shape == (5, NUM_CLASSES)
    assert skipped == [(2, "v2.mp4", "truncated"), (3, "v3.mp4", "truncated")]
    with pytest.raises(RuntimeError, match="distinct videos"):  # a video lost otherwise: error
        predict_scores(StandInModel(), loader, device=torch.device("cpu"), expected=NUM_VIDEOS + 1)

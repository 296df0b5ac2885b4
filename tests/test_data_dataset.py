"""Dataset, failure handling, few-shot and zero-shot subsets, samplers and loaders."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import small_data_config
from text4vis.config import Config, DataConfig
from text4vis.data import (
    AnnotationError,
    EvalSampler,
    FailureTracker,
    TooManyFailuresError,
    TrainSampler,
    VideoDecodeError,
    VideoRecord,
    build_dataset,
    build_loader,
    few_shot_indices,
    half_class_splits,
    read_annotations,
)
from text4vis.data.dataset import VideoDataset, collate_clips
from text4vis.data.few_shot import FEW_SHOT_FILE, class_subset_ids, write_few_shot_list
from text4vis.data.sampling import build_sampler, segment_test_indices
from text4vis.data.synthetic import read_frame_index, write_synthetic_dataset

T = 4
SIZE = 32


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_dataset(
        root, num_classes=4, videos_per_class=3, num_frames=16, height=48, width=64, seed=1
    )


def _cfg(synthetic, **data) -> Config:
    return small_data_config(
        synthetic.root,
        synthetic.labels,
        synthetic.video_list,
        num_segments=T,
        input_size=SIZE,
        batch_size=3,
        eval_batch_size=4,
        **data,
    )


def _with_bad_files(synthetic, folder: Path) -> tuple[list[VideoRecord], set[str]]:
    """The synthetic video records plus a zero-byte file, a truncated mp4 and a text file."""
    records = read_annotations(synthetic.video_list)
    good = synthetic.root / records[0].path
    (folder / "empty.mp4").write_bytes(b"")
    (folder / "truncated.mp4").write_bytes(good.read_bytes()[:700])
    (folder / "notes.mp4").write_text("not a video\n" * 40)
    bad = [
        VideoRecord(str(folder / name), None, 1)
        for name in ("empty.mp4", "truncated.mp4", "notes.mp4")
    ]
    mixed = records[:4] + bad[:1] + records[4:8] + bad[1:2] + records[8:] + bad[2:]
    return mixed, {str(synthetic.root / r.path) for r in bad}


def test_train_item_shape_and_determinism(synthetic):
    dataset = build_dataset(_cfg(synthetic), "train")
    before = torch.get_rng_state()
    item = dataset[(2, 0)]
    assert torch.equal(torch.get_rng_state(), before)  # the process RNG is left alone
    assert item["video"].shape == (1, T, 3, SIZE, SIZE) and item["video"].dtype == torch.uint8
    assert item["label"] == synthetic.labels_of[2] and item["index"] == 2 and item["failures"] == []
    assert torch.equal(dataset[(2, 0)]["video"], item["video"])  # a pure function of the key
    assert not torch.equal(dataset[(2, 1)]["video"], item["video"])  # new epoch, new clip


def test_training_epoch_skips_and_lists_exactly_the_bad_files(synthetic, tmp_path):
    records, bad_paths = _with_bad_files(synthetic, tmp_path)
    cfg = _cfg(synthetic, num_workers=2)
    dataset = build_dataset(cfg, "train", records=records)
    loader = build_loader(dataset, cfg, "train", seed=0)
    tracker = FailureTracker(len(dataset), 0.5, tmp_path / "failed_videos.txt")
    seen = 0
    for batch in loader:
        tracker.update(batch["failures"])
        seen += len(batch["index"])
        for index in batch["index"].tolist():
            assert records[index].path.endswith(".mp4")
            assert str(synthetic.root / records[index].path) not in bad_paths
    assert seen == len(records)  # 15 items, batches of 3: the epoch finished
    assert set(tracker.failed) == bad_paths
    listed = (tmp_path / "failed_videos.txt").read_text().splitlines()
    assert {line.split("\t")[0] for line in listed} == bad_paths
    assert all(line.split("\t")[1] for line in listed)  # every entry has a reason


def test_failure_fraction_stops_with_clear_error(synthetic, tmp_path):
    records, _ = _with_bad_files(synthetic, tmp_path)
    cfg = _cfg(synthetic)
    dataset = build_dataset(cfg, "train", records=records)
    tracker = FailureTracker(len(dataset), 0.1, tmp_path / "failed.txt")
    with pytest.raises(TooManyFailuresError, match=r"max_failure_fraction=0.1.*failed.txt"):
        for batch in build_loader(dataset, cfg, "train", seed=0):
            tracker.update(batch["failures"])


def test_retries_are_bounded(tmp_path, synthetic):
    (tmp_path / "a.mp4").write_bytes(b"")
    records = [VideoRecord(str(tmp_path / "a.mp4"), None, 0)] * 3
    dataset = build_dataset(_cfg(synthetic, max_retries=2), "train", records=records)
    with pytest.raises(VideoDecodeError, match="3 videos in a row"):
        dataset[(0, 0)]


def test_evaluation_raises_or_skips_and_reports(synthetic, tmp_path):
    records, bad_paths = _with_bad_files(synthetic, tmp_path)
    cfg = _cfg(synthetic)
    strict = build_dataset(cfg, "val", records=records)
    with pytest.raises(VideoDecodeError, match="empty.mp4"):
        strict[4]
    lenient = build_dataset(_cfg(synthetic, skip_unreadable=True), "val", records=records)
    kept, skipped = [], []
    for batch in build_loader(lenient, cfg, "val", seed=0):
        assert batch["video"].shape[1:] == (1, T, 3, SIZE, SIZE)
        kept += batch["index"].tolist()
        skipped += batch["skipped"]
    assert sorted(kept + [s[0] for s in skipped]) == list(range(len(records)))
    assert {s[1] for s in skipped} == bad_paths and all(s[2] for s in skipped)
    empty = collate_clips([lenient[4]], video_shape=lenient.video_shape)
    assert empty["video"].shape == (0, 1, T, 3, SIZE, SIZE) and len(empty["skipped"]) == 1


def test_test_views_decode_the_sampled_frames(synthetic):
    records = read_annotations(synthetic.frame_list)
    dataset = VideoDataset(
        records,
        root=synthetic.root,
        sampler=build_sampler("segment", T, train=False, num_clips=3),
        transform=lambda clip: torch.from_numpy(clip)[None],  # raw frames [1, T, H, W, 3]
        train=False,
    )
    video = dataset[5]["video"]  # [clips, T, H, W, 3]
    decoded = [[read_frame_index(f) for f in clip.numpy()] for clip in video]
    assert decoded == segment_test_indices(16, T, 3).tolist()
    cfg = _cfg(synthetic, format="frames", num_clips=2, num_crops=3)
    cfg.data.test_list = cfg.data.val_list = str(synthetic.frame_list)
    assert build_dataset(cfg, "test")[0]["video"].shape == (6, T, 3, SIZE, SIZE)
    assert build_dataset(cfg, "val")[0]["video"].shape == (1, T, 3, SIZE, SIZE)


def test_workers_do_not_change_the_clips(synthetic):
    cfg = _cfg(synthetic)
    dataset = build_dataset(cfg, "train")
    first = next(iter(build_loader(dataset, cfg, "train", seed=3)))
    cfg.data.num_workers = 2
    loader = build_loader(dataset, cfg, "train", seed=3)
    again = next(iter(loader))
    assert torch.equal(first["index"], again["index"])
    assert torch.equal(first["video"], again["video"])
    loader.sampler.set_epoch(1)
    assert not torch.equal(next(iter(loader))["index"], first["index"])


def test_format_mismatch_is_an_error(synthetic):
    with pytest.raises(AnnotationError, match="data.format=frames"):
        build_dataset(
            _cfg(synthetic, format="video"), "train", records=read_annotations(synthetic.frame_list)
        )
    with pytest.raises(ValueError, match="unknown data.decoder 'opencv'"):
        build_dataset(_cfg(synthetic, decoder="opencv"), "train")
    with pytest.raises(ValueError, match="data.test_list"):
        cfg = _cfg(synthetic)
        cfg.data.val_list = ""
        build_dataset(cfg, "test")


def test_few_shot_same_on_every_rank_and_repeated(synthetic, tmp_path, monkeypatch):
    labels = [i % 5 for i in range(50)]
    rank0 = few_shot_indices(labels, 2, seed=7)
    monkeypatch.setenv("RANK", "1")  # a second simulated rank draws the same subset
    rank1 = few_shot_indices(labels, 2, seed=7)
    assert rank0 == rank1 and len(rank0) == 10
    assert sorted(labels[i] for i in rank0) == sorted(list(range(5)) * 2)
    assert few_shot_indices(labels, 2, seed=8) != rank0
    with pytest.raises(ValueError, match="fewer than data.shot=11"):
        few_shot_indices(labels, 11, seed=0)
    cfg = _cfg(synthetic, shot=1, shot_seed=0)
    on_rank1 = build_dataset(cfg, "train")
    assert not (tmp_path / FEW_SHOT_FILE).exists()  # building writes nothing (fit does, rank 0)
    monkeypatch.setenv("RANK", "0")
    on_rank0 = build_dataset(cfg, "train")
    assert on_rank0.records == on_rank1.records
    assert on_rank0.few_shot is not None  # the one selection of the run, for fit to write
    write_few_shot_list(tmp_path, *on_rank0.few_shot)
    written = read_annotations(tmp_path / FEW_SHOT_FILE)
    assert sorted(r.label for r in written) == [0, 1, 2, 3]
    assert len(on_rank0) == 12  # 4 clips repeated 3x: the iterations of the full 12-clip epoch
    assert set(on_rank0.records) == set(written)


def test_half_class_splits_and_subsets(tmp_path):
    splits = half_class_splits(10, num_splits=10)
    assert len(splits) == 10 and all(len(s) == 5 and s == sorted(set(s)) for s in splits)
    assert len({tuple(s) for s in splits}) > 5 and half_class_splits(10) == splits
    assert splits[0] == sorted(np.random.default_rng(0).choice(10, 5, replace=False).tolist())
    (tmp_path / "sub.csv").write_text("id,name\n0,swim\n1,jump\n")
    assert class_subset_ids(tmp_path / "sub.csv", ["jump", "run", "swim"]) == [2, 0]
    (tmp_path / "bad.csv").write_text("id,name\n0,fly\n")
    with pytest.raises(AnnotationError, match="fly"):
        class_subset_ids(tmp_path / "bad.csv", ["jump"])


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_eval_sampler_covers_every_index_once(world_size):
    for size in (7, 11, 1):
        shards = [list(EvalSampler(size, rank=r, world_size=world_size)) for r in range(world_size)]
        flat = [i for shard in shards for i in shard]
        assert sorted(flat) == list(range(size))  # every index once, no padded duplicates
        assert [len(s) for s in shards] == [
            len(EvalSampler(size, rank=r, world_size=world_size)) for r in range(world_size)
        ]


def test_eval_loader_over_three_ranks(synthetic):
    cfg = _cfg(synthetic)
    records = read_annotations(synthetic.video_list)[:7]
    dataset = build_dataset(cfg, "val", records=records)
    seen = []
    for rank in range(3):
        for batch in build_loader(dataset, cfg, "val", seed=0, rank=rank, world_size=3):
            seen += batch["index"].tolist()
    assert sorted(seen) == list(range(7))


def test_train_sampler_ranks_and_epochs():
    shards = [list(TrainSampler(10, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)  # padded to 12 so ranks stay in step
    assert {i for s in shards for i, _ in s} == set(range(10))
    assert all(epoch == 0 for s in shards for _, epoch in s)
    tiny = [list(TrainSampler(2, seed=0, rank=r, world_size=5)) for r in range(5)]
    assert all(len(s) == 1 for s in tiny) and {i for s in tiny for i, _ in s} == {0, 1}
    sampler = TrainSampler(10, seed=1, rank=0, world_size=1)
    first = [i for i, _ in sampler]
    sampler.set_epoch(1)
    second = list(sampler)
    assert sorted(i for i, _ in second) == list(range(10)) and [i for i, _ in second] != first
    assert {e for _, e in second} == {1}


def test_copy_of_list_with_relative_root(synthetic, tmp_path):
    # An empty data.root resolves list paths against the list file's folder.
    copy = tmp_path / "copy"
    shutil.copytree(synthetic.root, copy)
    cfg = _cfg(synthetic)
    cfg.data.root = ""
    cfg.data.train_list = str(copy / synthetic.video_list.name)
    dataset = build_dataset(cfg, "train")
    assert Path(dataset.path_of(0)).is_relative_to(copy)
    assert dataset[(0, 0)]["video"].shape == (1, T, 3, SIZE, SIZE)


def test_eval_unreadable_video_error_names_the_fix(tmp_path: Path) -> None:
    from text4vis.data import VideoDecodeError
    from text4vis.data.dataset import build_dataset

    (tmp_path / "bad.mp4").write_bytes(b"not a video")
    cfg = Config(data=DataConfig(root=str(tmp_path), num_segments=2, input_size=32))
    dataset = build_dataset(cfg, "test", records=[VideoRecord("bad.mp4", None, 0)])
    with pytest.raises(VideoDecodeError, match=r"bad\.mp4.*data\.skip_unreadable=true") as info:
        dataset[0]
    assert info.value.path.endswith("bad.mp4") and info.value.reason  # still machine-readable

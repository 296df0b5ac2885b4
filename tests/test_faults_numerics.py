"""Non-finite losses: skipped and counted, a stop after too many in a row, never saved weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import overrides
from test_engine_train import colour_data  # noqa: F401 (fixture)
from text4vis.config import load_config
from text4vis.data.dataset import VideoDataset
from text4vis.data.transforms import normalize_video
from text4vis.engine.numerics import (
    NonFiniteLossError,
    NonFiniteWeightsError,
    check_finite_weights,
)
from text4vis.engine.train import fit
from text4vis.models.factory import load_checkpoint


def _poison(monkeypatch, names: set[str] | None) -> None:
    """Videos whose clips are NaN (a corrupt input); None: every video.

    The loaders give uint8 clips, which cannot hold NaN; here every clip becomes the normalised
    float clip the model also accepts, and the poisoned ones NaN."""
    real_load = VideoDataset.load

    def load(self, index, rng):
        clip = normalize_video(real_load(self, index, rng))
        if names is None or Path(self.path_of(index)).name in names:
            return torch.full_like(clip, math.nan)
        return clip

    monkeypatch.setattr(VideoDataset, "load", load)


def _all_finite(state: dict) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in state.values() if t.is_floating_point())


def test_a_corrupt_video_skips_its_step_and_the_run_finishes(colour_data, tmp_path, monkeypatch):  # noqa: F811
    _poison(monkeypatch, {"s0_1_2.mp4"})
    cfg = load_config(None, overrides(colour_data, tmp_path, "train.epochs=1", "data.val_list="))
    summary = fit(cfg)
    # 24 clips, batch 4: 6 steps; the poisoned video is in one of them
    assert summary.step == 6 and not summary.stopped
    assert [h["skipped_steps"] for h in summary.history] == [1]
    run = Path(summary.run_dir)
    log = (run / "log.txt").read_text()
    assert "skipped: loss nan" in log and "s0_1_2.mp4" in log
    assert _all_finite(load_checkpoint(run / "checkpoints" / "last.pt")["model"])
    assert _all_finite(load_file(str(run / "model" / "model.safetensors")))
    assert load_checkpoint(run / "checkpoints" / "last.pt")["nonfinite"]["total"] == 1


def test_too_many_in_a_row_stop_naming_the_steps_and_videos(colour_data, tmp_path, monkeypatch):  # noqa: F811
    _poison(monkeypatch, None)
    extra = ("train.epochs=1", "data.val_list=", "train.max_nonfinite_steps=3")
    cfg = load_config(None, overrides(colour_data, tmp_path, *extra))
    with pytest.raises(
        NonFiniteLossError, match=r"steps 1\.\.3: 3 optimizer steps in a row"
    ) as info:
        fit(cfg)
    assert ".mp4" in str(info.value) and "loss nan" in str(info.value)
    assert not list(tmp_path.glob("*/*/checkpoints/*.pt"))  # nothing was saved


def test_weights_blown_to_infinity_are_never_saved(colour_data, tmp_path, monkeypatch):  # noqa: F811
    # An update that overflows (a faulty kernel, a learning rate far too high): after the second
    # step one weight is infinite; the following losses are NaN and skipped, and the checkpoint
    # at the end of the epoch is refused.
    real_step = torch.optim.AdamW.step
    calls = [0]

    def overflowing_step(self, *args, **kwargs):
        result = real_step(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == 2:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(math.inf)
        return result

    monkeypatch.setattr(torch.optim.AdamW, "step", overflowing_step)
    extra = ("train.epochs=1", "data.val_list=", "train.max_nonfinite_steps=100")
    cfg = load_config(None, overrides(colour_data, tmp_path, *extra))
    with pytest.raises(NonFiniteWeightsError, match="refusing to write checkpoint last"):
        fit(cfg)
    assert calls[0] == 2  # the steps after the overflow were skipped
    assert not list(tmp_path.glob("*/*/checkpoints/*.pt"))
    assert not list(tmp_path.glob("*/*/model/*"))


def test_check_finite_weights_names_the_tensors():
    state = {"a": torch.zeros(2), "b": torch.tensor([1.0, math.inf]), "n": torch.tensor([3])}
    with pytest.raises(NonFiniteWeightsError, match=r"write best: 1 tensors .*\(b\)"):
        check_finite_weights(state, "best")
    check_finite_weights({"a": torch.zeros(2)}, "best")

"""Stage 0 of the demo: captioned stills, the exported weight file, zero-shot by attribute."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from text4vis.data.actions import BACKGROUNDS, COLOURS, MOTIONS, SHAPES
from text4vis.data.captions import (
    POSITIONS,
    SIZES,
    StillAttributes,
    all_still_attributes,
    heldout_combinations,
    is_heldout,
    make_captioned_images,
    render_still,
)
from text4vis_demo.pretrain import export_open_clip_weights, zero_shot_attributes


def read_list(path: Path) -> list[tuple[str, int]]:
    rows = []
    for line in path.read_text().splitlines():
        name, label = line.split()
        rows.append((name, int(label)))
    return rows


@pytest.fixture(scope="module")
def stills(tmp_path_factory: pytest.TempPathFactory):
    return make_captioned_images(
        tmp_path_factory.mktemp("stills"), num_train=400, num_heldout=60, progress=False
    )


def test_captions_describe_stills_without_motion_words():
    attributes = all_still_attributes()
    assert len(attributes) == len({a.caption for a in attributes}) == 4 * 3 * 2 * 9 * 3
    motion_words = {w for m in MOTIONS for w in m.split()} - {"left", "right"}
    for a in attributes:
        words = set(re.findall(r"[a-z\-]+", a.caption))
        assert not words & motion_words, a.caption
        assert not any(m in a.caption for m in MOTIONS), a.caption
        for value in (a.colour, a.shape, a.size, a.background):
            assert value in words
        assert a.position in a.caption


def test_heldout_combinations_are_absent_from_training(stills):
    held = heldout_combinations()
    assert len(held) == 24  # two positions for each of the 12 colour-shape objects
    captions = [line.split(",", 1)[1] for line in stills.captions.read_text().splitlines()[1:]]
    assert captions == [a.caption for a in stills.attributes]
    train = read_list(stills.train_list)
    heldout = read_list(stills.heldout_list)
    assert len(train) == 400 and len(heldout) == 60
    assert not any(is_heldout(stills.attributes[y], held) for _, y in train)
    assert all(is_heldout(stills.attributes[y], held) for _, y in heldout)
    # Every value of every attribute is still seen in training: only combinations are new.
    seen = [stills.attributes[y] for _, y in train]
    for name, values in (
        ("colour", COLOURS),
        ("shape", SHAPES),
        ("size", SIZES),
        ("position", POSITIONS),
        ("background", BACKGROUNDS),
    ):
        assert {getattr(a, name) for a in seen} == set(values), name
    for name, _ in train[:3] + heldout[:3]:
        assert (stills.root / name).is_file()


@pytest.mark.parametrize("position", POSITIONS)
def test_a_still_shows_its_object_where_the_caption_says(position: str):
    attributes = StillAttributes("red", "square", "small", position, "mottled")
    image = render_still(attributes, np.random.default_rng(3), size=32).astype(np.float32)
    # The red object: pixels far redder than green and blue (the background is near grey).
    mask = (image[..., 0] - image[..., 1:].max(axis=-1)) > 80
    assert mask.sum() > 4
    ys, xs = np.nonzero(mask)
    row, col = divmod(POSITIONS.index(position), 3)
    assert int(xs.mean() // (32 / 3)) == col and int(ys.mean() // (32 / 3)) == row


def test_zero_shot_attributes_scores_each_attribute_separately():
    attributes = all_still_attributes()
    index = {a: i for i, a in enumerate(attributes)}
    text = torch.nn.functional.normalize(torch.randn(len(attributes), 16), dim=-1)
    held = [i for i, a in enumerate(attributes) if is_heldout(a, heldout_combinations())]
    labels = torch.tensor(held[:20])
    # Image features that match the caption with the wrong colour, right everything else.
    wrong_colour = [
        index[attributes[i].replace(colour="blue" if attributes[i].colour != "blue" else "red")]
        for i in labels.tolist()
    ]
    result, caption_top1 = zero_shot_attributes(text[labels], labels, text, attributes, held)
    assert all(r["top1"] == 100.0 for r in result.values()) and caption_top1 == 100.0
    result, _ = zero_shot_attributes(text[wrong_colour], labels, text, attributes, held)
    assert result["colour"]["top1"] == 0.0 and result["colour"]["chance"] == 25.0
    assert result["position"]["chance"] == pytest.approx(100 / 9)


@pytest.mark.parametrize("arch", ["demo-rn", "demo-vit"])
def test_the_stage0_weight_file_loads_with_model_pretrained(tmp_path: Path, arch: str):
    from text4vis.config import ModelConfig
    from text4vis.models.video import VideoRecognizer

    cfg = ModelConfig(
        arch=arch,
        temporal="mean",
        classifier="random",
        logit_scale=100.0,
    )
    torch.manual_seed(0)
    trained = VideoRecognizer.from_config(cfg, ["a", "b"], num_frames=1, image_size=32)
    with torch.no_grad():
        for p in trained.visual.parameters():
            p.add_(0.01 * torch.randn_like(p))
        for b in trained.visual.buffers():  # the ResNet's batch-norm statistics travel too
            if b.is_floating_point():
                b.add_(0.01 * torch.rand_like(b))
        trained.logit_scale.fill_(float(np.log(42.0)))
    path = export_open_clip_weights(trained, arch, tmp_path / "w.safetensors")

    torch.manual_seed(1)  # another random init: every visual tensor must come from the file
    loaded = VideoRecognizer.from_config(
        ModelConfig(**{**vars(cfg), "pretrained": str(path), "logit_scale": 0.0}),
        ["a", "b"],
        num_frames=1,
        image_size=32,
    )
    expected = trained.visual.state_dict()
    for key, value in loaded.visual.state_dict().items():
        torch.testing.assert_close(value, expected[key], msg=key)
    assert float(loaded.logit_scale.exp()) == pytest.approx(42.0, rel=1e-5)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.visual.eval()(x), trained.visual.eval()(x))

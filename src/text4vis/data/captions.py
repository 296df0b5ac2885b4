"""Captioned still images from the synthetic-actions world, for image-text pretraining.

The demo's stage 0 makes its own small vision-language model before it transfers it to video, as
the paper transfers CLIP. Its data are still images drawn with the renderer of
:mod:`text4vis.data.actions` (the same shapes, colours, backgrounds, sensor noise and frame size
as the action clips), each captioned in plain language from the attributes it was drawn with::

    "a small red circle at the top left on a striped background"

A caption describes a still image: colour, shape, size, position (a 3 x 3 grid) and background
texture, never a motion. Every distinct caption is one "class" of the image list, so that the
library's image path (an image file is a one-frame video) and its contrastive objective with a
fixed text side (the captions' sentence embeddings) train the image encoder, with no side script.

Some (colour, shape, position) combinations are *held out*: no training image shows them, and the
held-out test images show only them, so the pretrained model's zero-shot accuracy on them measures
whether it learned the attributes rather than the training captions.

Files written by :func:`make_captioned_images` under ``root``::

    captions.csv        id,name: every caption of the world (training and held-out), in id order
    train.txt           `images/train/NNNNN.png id` lines (ids index captions.csv)
    heldout.txt         `images/heldout/NNNNN.png id` lines, only held-out combinations
    attributes.json     the attributes of every caption id, the held-out combinations
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from text4vis.data.actions import (
    BACKGROUNDS,
    COLOURS,
    SHAPES,
    _background,
    _object_alpha,
)

__all__ = [
    "POSITIONS",
    "SIZES",
    "CaptionedImages",
    "StillAttributes",
    "all_still_attributes",
    "heldout_combinations",
    "make_captioned_images",
    "render_still",
]

logger = logging.getLogger("text4vis.data.captions")

# A 3 x 3 grid of positions, row-major from the top left, as a caption names them.
POSITIONS = (
    "at the top left",
    "at the top",
    "at the top right",
    "on the left",
    "in the centre",
    "on the right",
    "at the bottom left",
    "at the bottom",
    "at the bottom right",
)
# Object radius as a fraction of the frame: the action clips draw radii from 0.09 (a shrinking
# object's smallest) to about 0.3 (a growing one's largest); the stills cover that range.
SIZES: dict[str, tuple[float, float]] = {"small": (0.09, 0.15), "large": (0.19, 0.27)}


@dataclass(frozen=True)
class StillAttributes:
    """What one still image shows: one object on a background."""

    colour: str  # one of COLOURS
    shape: str  # one of SHAPES
    size: str  # one of SIZES
    position: str  # one of POSITIONS
    background: str  # one of BACKGROUNDS

    @property
    def caption(self) -> str:
        """The plain-language caption, e.g. ``"a small red circle at the top left on a striped
        background"``."""
        return f"a {self.size} {self.colour} {self.shape} {self.position} on a {self.background} background"

    def replace(self, **changes: str) -> StillAttributes:
        """A copy with some attributes changed (for the zero-shot candidates of one attribute)."""
        values = {**vars(self), **changes}
        return StillAttributes(**values)


def all_still_attributes() -> list[StillAttributes]:
    """Every attribute combination of the world, in caption-id order (4*3*2*9*3 = 648)."""
    return [
        StillAttributes(c, s, z, p, b)
        for c, s, z, p, b in itertools.product(COLOURS, SHAPES, SIZES, POSITIONS, BACKGROUNDS)
    ]


def heldout_combinations() -> set[tuple[str, str, str]]:
    """The (colour, shape, position) triples no training image shows: two positions per object.

    Each of the 12 colour-shape objects loses two of its nine positions, spread so that every
    colour, shape and position still appears in training many times over: the held-out images
    test new *combinations* of seen attributes, as the video demo's unseen classes do.
    """
    held = set()
    for i, (colour, shape) in enumerate(itertools.product(COLOURS, SHAPES)):
        for k in (i % len(POSITIONS), (i * 4 + 5) % len(POSITIONS)):
            held.add((colour, shape, POSITIONS[k]))
    return held


def is_heldout(attributes: StillAttributes, held: set[tuple[str, str, str]]) -> bool:
    """Whether a still's (colour, shape, position) is one of the held-out combinations."""
    return (attributes.colour, attributes.shape, attributes.position) in held


def render_still(
    attributes: StillAttributes, rng: np.random.Generator, *, size: int = 32
) -> np.ndarray:
    """Draw one still image of ``attributes`` with the action clips' renderer.

    Position and radius are drawn inside the named grid cell and size range; rotation,
    brightness, background texture parameters and noise vary as in the clips.

    Returns:
        uint8 array [H, W, 3] (RGB).
    """
    if attributes.colour not in COLOURS:
        raise ValueError(f"unknown colour {attributes.colour!r}; choose one of {sorted(COLOURS)}")
    if attributes.position not in POSITIONS:
        raise ValueError(f"unknown position {attributes.position!r}; choose one of {POSITIONS}")
    low, high = SIZES[attributes.size]
    radius = rng.uniform(low, high) * size
    cell = POSITIONS.index(attributes.position)
    row, col = divmod(cell, 3)
    # The object's centre lies in its third of the frame, and the whole object inside the frame.
    margin = radius * 1.1
    centre = []
    for index in (col, row):
        lo = max(index * size / 3, margin)
        hi = min((index + 1) * size / 3, size - margin)
        if lo > hi:  # a large object in a side cell: as close to that side as it fits
            lo = hi = margin if index == 0 else size - margin if index == 2 else size / 2
        centre.append(rng.uniform(lo, hi))
    background = _background(rng, size, BACKGROUNDS.index(attributes.background))
    colour = np.asarray(COLOURS[attributes.colour], dtype=np.float32) * rng.uniform(0.8, 1.0)
    noise_sigma = rng.uniform(2.0, 6.0)
    angle = rng.uniform(0, 2 * math.pi)
    alpha = _object_alpha(attributes.shape, size, centre[0], centre[1], radius, angle)[..., None]
    image = background * (1 - alpha) + colour * alpha
    image = image + rng.normal(0.0, noise_sigma, size=image.shape)
    return np.clip(image, 0, 255).round().astype(np.uint8)


@dataclass
class CaptionedImages:
    """The files of a written captioned-stills dataset (paths absolute)."""

    root: Path  # folder the list-file paths are relative to
    captions: Path  # `id,name` CSV of every caption
    train_list: Path  # training images (no held-out combination)
    heldout_list: Path  # held-out images (only held-out combinations)
    attributes: list[StillAttributes]  # caption id -> attributes
    heldout: set[tuple[str, str, str]]  # the held-out (colour, shape, position) triples


def make_captioned_images(
    root: str | Path,
    *,
    seed: int = 0,
    num_train: int = 6000,
    num_heldout: int = 480,
    size: int = 32,
    progress: bool = True,
) -> CaptionedImages:
    """Render and write captioned stills under ``root`` (PNG, lossless).

    Training images draw their caption uniformly from the combinations that are not held out;
    held-out images uniformly from those that are. The same arguments give the same files.

    Args:
        root: output folder (created).
        seed: seed of every random choice.
        num_train: training images.
        num_heldout: held-out test images.
        size: image height and width (the action clips' frame size).
        progress: show a progress bar.
    """
    if num_train < 1 or num_heldout < 1:
        raise ValueError(
            f"num_train and num_heldout must be at least 1, got {num_train} and {num_heldout}"
        )
    root = Path(root).resolve()
    attributes = all_still_attributes()
    held = heldout_combinations()
    pools = {
        "train": [i for i, a in enumerate(attributes) if not is_heldout(a, held)],
        "heldout": [i for i, a in enumerate(attributes) if is_heldout(a, held)],
    }
    counts = {"train": num_train, "heldout": num_heldout}
    bar = tqdm(
        total=num_train + num_heldout, desc="captioned stills", unit="img", disable=not progress
    )
    for code, split in enumerate(("train", "heldout")):
        folder = root / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        choice = np.random.default_rng([seed, 10 + code])
        ids = choice.choice(pools[split], size=counts[split], replace=True)
        lines = []
        for k, caption_id in enumerate(ids.tolist()):
            # One stream per image, as for the clips: files do not depend on the writing order.
            rng = np.random.default_rng([seed, 20 + code, k])
            pixels = render_still(attributes[caption_id], rng, size=size)
            relative = f"images/{split}/{k:05d}.png"
            Image.fromarray(pixels).save(root / relative)
            lines.append(f"{relative} {caption_id}")
            bar.update()
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    bar.close()
    rows = ["id,name", *(f"{i},{a.caption}" for i, a in enumerate(attributes))]
    (root / "captions.csv").write_text("\n".join(rows) + "\n")
    description = {
        "seed": seed,
        "size": size,
        "attributes": [vars(a) for a in attributes],
        "heldout_combinations": sorted(list(t) for t in held),
        "num_train": num_train,
        "num_heldout": num_heldout,
    }
    (root / "attributes.json").write_text(json.dumps(description, indent=2) + "\n")
    logger.info(
        "wrote %d training and %d held-out captioned stills (%d captions, %d held out) to %s",
        num_train,
        num_heldout,
        len(attributes),
        len(pools["heldout"]),
        root,
    )
    return CaptionedImages(
        root=root,
        captions=root / "captions.csv",
        train_list=root / "train.txt",
        heldout_list=root / "heldout.txt",
        attributes=attributes,
        heldout=held,
    )

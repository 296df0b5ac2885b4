"""Synthetic actions: seeded, procedurally drawn clips of simple objects, for the demo and tests.

Every clip shows one object (a circle, square or triangle in red, green, blue or yellow) on a
textured background, doing one motion. A class is named in plain language from its attributes,
``"a red circle moving left"``, so that a text encoder can embed the names like any other label
set. The class list is fixed data (below), chosen so that

- most classes come in *direction pairs*: the same object doing a motion and its time-reversal
  (left/right, up/down, clockwise/counter-clockwise, growing/shrinking). The two classes of a pair
  show the same set of frames in opposite order, so only temporal order tells them apart: a model
  that averages frame embeddings over time cannot separate them;
- nuisance factors vary per clip: start position, speed, size, rotation, brightness, background
  texture and colours, sensor noise; the set of frames of a motion and of its reversal have the
  same distribution (the start is drawn so that both directions cover the same positions);
- a set of *unseen* classes recombines seen attributes (a seen object with a seen motion it never
  did in training), for zero-shot recognition with a classifier built from the new names.

Clips are written as real mp4 files (H.264 through PyAV, with
:func:`text4vis.data.synthetic.write_mp4`) with list files (``path label``) and label CSVs
(``id,name``), the formats users give the library, so that the demo exercises the real decoding,
sampling and augmentation path.

Files written by :func:`make_actions_dataset` under ``root``::

    labels_seen.csv     id,name of the seen classes
    labels_unseen.csv   id,name of the unseen classes (ids 0..U-1)
    train.txt           `videos/train/NAME.mp4 label` lines, seen classes
    val.txt             seen classes, held-out clips
    unseen.txt          unseen classes (labels index labels_unseen.csv)
    classes.json        attributes of every class (shape, colour, motion, direction pair)
    videos/{train,val,unseen}/*.mp4
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from text4vis.data.synthetic import write_mp4

__all__ = [
    "BACKGROUNDS",
    "COLOURS",
    "MOTIONS",
    "REVERSED_MOTION",
    "SHAPES",
    "ActionClass",
    "ActionsDataset",
    "action_classes",
    "direction_dependent",
    "make_actions_dataset",
    "render_clip",
]

logger = logging.getLogger("text4vis.data.actions")

SHAPES = ("circle", "square", "triangle")
# Saturated RGB so that colour survives H.264's 4:2:0 chroma subsampling at 32 px.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 35, 35),
    "green": (35, 190, 60),
    "blue": (40, 80, 235),
    "yellow": (235, 215, 35),
}
MOTIONS = (
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "rotating clockwise",
    "rotating counter-clockwise",
    "growing",
    "shrinking",
    "standing still",
    "blinking",
)
# Each directional motion played backwards is its partner; "standing still" and "blinking" have
# none (reversed, a clip of them is another clip of the same class).
REVERSED_MOTION = {
    "moving left": "moving right",
    "moving right": "moving left",
    "moving up": "moving down",
    "moving down": "moving up",
    "rotating clockwise": "rotating counter-clockwise",
    "rotating counter-clockwise": "rotating clockwise",
    "growing": "shrinking",
    "shrinking": "growing",
}

# (colour, shape, motion pair) of the seen classes: both directions of each pair are classes.
# Every colour-shape combination appears at least once; rotations use no circle (invisible).
_SEEN_PAIRS = (
    ("red", "circle", ("moving left", "moving right")),
    ("blue", "square", ("moving left", "moving right")),
    ("green", "triangle", ("moving up", "moving down")),
    ("yellow", "circle", ("moving up", "moving down")),
    ("yellow", "square", ("rotating clockwise", "rotating counter-clockwise")),
    ("red", "triangle", ("rotating clockwise", "rotating counter-clockwise")),
    ("blue", "circle", ("growing", "shrinking")),
    ("green", "square", ("growing", "shrinking")),
    ("blue", "triangle", ("standing still",)),
    ("red", "square", ("standing still",)),
    ("green", "circle", ("blinking",)),
    ("yellow", "triangle", ("blinking",)),
)
# Unseen: a seen object with a seen motion it never does in the seen set.
_UNSEEN_PAIRS = (
    ("yellow", "triangle", ("moving left", "moving right")),
    ("red", "square", ("moving up", "moving down")),
    ("green", "square", ("rotating clockwise", "rotating counter-clockwise")),
    ("red", "circle", ("growing", "shrinking")),
    ("yellow", "circle", ("standing still",)),
    ("blue", "square", ("blinking",)),
)


@dataclass(frozen=True)
class ActionClass:
    """One synthetic action class: an object (colour, shape) doing a motion."""

    colour: str  # one of COLOURS
    shape: str  # one of SHAPES
    motion: str  # one of MOTIONS

    @property
    def name(self) -> str:
        """The plain-language class name, e.g. ``"a red circle moving left"``."""
        return f"a {self.colour} {self.shape} {self.motion}"

    @property
    def reversed(self) -> ActionClass | None:
        """The class whose clips are this class's clips played backwards (None if no partner)."""
        partner = REVERSED_MOTION.get(self.motion)
        return None if partner is None else ActionClass(self.colour, self.shape, partner)


def action_classes() -> tuple[list[ActionClass], list[ActionClass]]:
    """The seen (training) and unseen (zero-shot) classes, in label-id order.

    Returns:
        ``(seen, unseen)``: 20 seen classes (16 in direction pairs) and 10 unseen classes
        (8 in direction pairs) made of seen colours, shapes and motions in new combinations.
    """

    def expand(pairs: tuple) -> list[ActionClass]:
        return [ActionClass(c, s, m) for c, s, motions in pairs for m in motions]

    return expand(_SEEN_PAIRS), expand(_UNSEEN_PAIRS)


def direction_dependent(classes: list[ActionClass]) -> list[int]:
    """Indices of the classes whose time-reversed partner is also in ``classes``."""
    present = set(classes)
    return [i for i, c in enumerate(classes) if c.reversed is not None and c.reversed in present]


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------


# Background textures in the order of _background's ``kind`` (the stills' captions name them).
BACKGROUNDS = ("mottled", "striped", "checkered")


def _background(rng: np.random.Generator, size: int, kind: int | None = None) -> np.ndarray:
    """A textured, low-saturation background, float [H,W,3] in 0..255.

    ``kind`` picks the texture (an index into :data:`BACKGROUNDS`); None draws it from ``rng``.
    """
    base = rng.uniform(70, 170)
    tint = rng.uniform(-12, 12, size=3)
    amplitude = rng.uniform(12, 35)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind is None:
        kind = int(rng.integers(3))
    if kind == 0:  # smooth noise: a coarse random grid upsampled bilinearly
        cells = int(rng.integers(3, 7))
        coarse = rng.uniform(-1, 1, size=(cells + 1, cells + 1))
        gy, gx = yy / (size - 1) * cells, xx / (size - 1) * cells
        y0, x0 = np.minimum(gy.astype(int), cells - 1), np.minimum(gx.astype(int), cells - 1)
        fy, fx = gy - y0, gx - x0
        pattern = (
            coarse[y0, x0] * (1 - fy) * (1 - fx)
            + coarse[y0 + 1, x0] * fy * (1 - fx)
            + coarse[y0, x0 + 1] * (1 - fy) * fx
            + coarse[y0 + 1, x0 + 1] * fy * fx
        )
    elif kind == 1:  # stripes at a random angle and frequency
        angle = rng.uniform(0, math.pi)
        period = rng.uniform(4, 12)
        phase = rng.uniform(0, 2 * math.pi)
        pattern = np.sin(
            (xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period + phase
        )
    else:  # checkerboard of random cell size and offset
        cell = int(rng.integers(3, 9))
        oy, ox = rng.integers(cell, size=2)
        pattern = (((yy + oy) // cell + (xx + ox) // cell) % 2) * 2.0 - 1.0
    image = base + amplitude * pattern[..., None] + tint  # [H,W,3]
    return np.clip(image, 0, 255)


def _polygon_sdf(
    px: np.ndarray, py: np.ndarray, cx: float, cy: float, radius: float, sides: int, angle: float
) -> np.ndarray:
    """Signed distance (negative inside) to a regular polygon, from its edge half-planes."""
    apothem = radius * math.cos(math.pi / sides)
    distance = np.full(px.shape, -np.inf, dtype=np.float32)
    for k in range(sides):
        # Outward normal of edge k; image y points down, so a positive angle turns clockwise.
        theta = angle + (2 * k + 1) * math.pi / sides
        nx, ny = math.cos(theta), math.sin(theta)
        distance = np.maximum(distance, (px - cx) * nx + (py - cy) * ny - apothem)
    return distance


def _object_alpha(
    shape: str, size: int, cx: float, cy: float, radius: float, angle: float
) -> np.ndarray:
    """Anti-aliased coverage [H,W] of the object at pixel centres."""
    py, px = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    if shape == "circle":
        sdf = np.hypot(px - cx, py - cy) - radius
    elif shape == "square":
        sdf = _polygon_sdf(px, py, cx, cy, radius * 1.15, 4, angle)
    elif shape == "triangle":
        sdf = _polygon_sdf(px, py, cx, cy, radius * 1.35, 3, angle)
    else:
        raise ValueError(f"unknown shape {shape!r}; choose one of {list(SHAPES)}")
    return np.clip(0.5 - sdf, 0.0, 1.0)


def render_clip(
    action: ActionClass, rng: np.random.Generator, *, size: int = 32, num_frames: int = 16
) -> np.ndarray:
    """Draw one clip of ``action`` with nuisance factors drawn from ``rng``.

    Args:
        action: the class to draw.
        rng: the source of every random choice (position, speed, size, background, noise).
        size: frame height and width in pixels (even, for H.264).
        num_frames: frames in the clip.

    Returns:
        uint8 array [T, H, W, 3] (RGB).
    """
    if action.motion not in MOTIONS:
        raise ValueError(f"unknown motion {action.motion!r}; choose one of {list(MOTIONS)}")
    if action.colour not in COLOURS:
        raise ValueError(f"unknown colour {action.colour!r}; choose one of {sorted(COLOURS)}")
    if num_frames < 2:
        raise ValueError(f"num_frames must be at least 2 to show a motion, got {num_frames}")
    background = _background(rng, size)
    colour = np.asarray(COLOURS[action.colour], dtype=np.float32) * rng.uniform(0.8, 1.0)
    noise_sigma = rng.uniform(2.0, 6.0)
    steps = np.arange(num_frames, dtype=np.float32) / (num_frames - 1)  # 0..1 over the clip

    radius = np.full(num_frames, rng.uniform(0.13, 0.22) * size, dtype=np.float32)
    angle = np.full(num_frames, rng.uniform(0, 2 * math.pi), dtype=np.float32)
    visible = np.ones(num_frames, dtype=bool)
    margin = float(radius[0]) * 1.2
    centre_x = np.full(num_frames, rng.uniform(margin, size - margin), dtype=np.float32)
    centre_y = np.full(num_frames, rng.uniform(margin, size - margin), dtype=np.float32)

    motion = action.motion
    if motion in ("moving left", "moving right", "moving up", "moving down"):
        travel = rng.uniform(0.35, 0.6) * (size - 2 * margin)  # px over the whole clip
        start = rng.uniform(margin, size - margin - travel)  # the lower end of the path
        path = start + travel * steps
        forward = motion in ("moving right", "moving down")  # image x right, y down
        path = path if forward else path[::-1]
        if motion in ("moving left", "moving right"):
            centre_x = path.astype(np.float32)
        else:
            centre_y = path.astype(np.float32)
    elif motion in ("rotating clockwise", "rotating counter-clockwise"):
        turn = rng.uniform(0.5, 1.0) * math.pi  # radians over the whole clip
        angles = angle[0] + turn * steps  # increasing angle: clockwise on screen (y points down)
        angle = (angles if motion == "rotating clockwise" else angles[::-1]).astype(np.float32)
        radius = radius * 1.2  # larger, so that corners show the turn
    elif motion in ("growing", "shrinking"):
        small = rng.uniform(0.09, 0.13) * size
        large = small * rng.uniform(1.8, 2.3)
        sizes = small + (large - small) * steps
        radius = (sizes if motion == "growing" else sizes[::-1]).astype(np.float32)
        margin = large * 1.1
        centre_x[:] = rng.uniform(margin, size - margin)
        centre_y[:] = rng.uniform(margin, size - margin)
    elif motion == "blinking":
        period = int(rng.integers(2, 4))  # frames on, then the same number off
        phase = int(rng.integers(2 * period))
        visible = ((np.arange(num_frames) + phase) // period) % 2 == 0
    # "standing still" keeps the constant arrays drawn above.

    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    for t in range(num_frames):
        image = background.copy()
        if visible[t]:
            alpha = _object_alpha(
                action.shape,
                size,
                float(centre_x[t]),
                float(centre_y[t]),
                float(radius[t]),
                float(angle[t]),
            )[..., None]  # [H,W,1]
            image = image * (1 - alpha) + colour * alpha
        image = image + rng.normal(0.0, noise_sigma, size=image.shape)
        frames[t] = np.clip(image, 0, 255).round().astype(np.uint8)
    return frames


# ----------------------------------------------------------------------------------------------
# Writing a dataset
# ----------------------------------------------------------------------------------------------


@dataclass
class ActionsDataset:
    """The files of a written synthetic-actions dataset (paths are absolute)."""

    root: Path  # folder the list-file paths are relative to
    labels_seen: Path  # `id,name` CSV of the seen classes
    labels_unseen: Path  # `id,name` CSV of the unseen classes
    train_list: Path  # seen classes, training clips
    val_list: Path  # seen classes, held-out clips
    unseen_list: Path  # unseen classes, labels in labels_unseen's ids
    seen: list[ActionClass]  # seen classes in label order
    unseen: list[ActionClass]  # unseen classes in label order


_SPLIT_CODES = {"train": 0, "val": 1, "unseen": 2}


def _clip_rng(seed: int, split: str, class_index: int, clip_index: int) -> np.random.Generator:
    # One independent stream per clip: the data do not depend on the order clips are written.
    return np.random.default_rng([seed, _SPLIT_CODES[split], class_index, clip_index])


def _slug(name: str) -> str:
    return name.removeprefix("a ").replace(" ", "_").replace("-", "_")


def _write_labels(path: Path, classes: list[ActionClass]) -> None:
    lines = ["id,name", *(f"{i},{c.name}" for i, c in enumerate(classes))]
    path.write_text("\n".join(lines) + "\n")


def make_actions_dataset(
    root: str | Path,
    *,
    seed: int = 0,
    train_per_class: int = 16,
    val_per_class: int = 6,
    unseen_per_class: int = 6,
    size: int = 32,
    num_frames: int = 16,
    fps: int = 8,
    progress: bool = True,
) -> ActionsDataset:
    """Render and write the synthetic-actions dataset under ``root``.

    The same arguments give the same pixels (one seeded stream per clip).

    Args:
        root: output folder (created; existing files are overwritten).
        seed: seed of every random choice.
        train_per_class: training clips per seen class.
        val_per_class: validation clips per seen class.
        unseen_per_class: test clips per unseen class.
        size: frame height and width (even).
        num_frames: frames per clip.
        fps: frame rate written in the mp4 files.
        progress: show a progress bar.

    Returns:
        The paths of the written files and the class lists.
    """
    if size % 2 or size < 16:
        raise ValueError(f"size must be an even number >= 16 (H.264 needs even sizes), got {size}")
    for name, count in (
        ("train_per_class", train_per_class),
        ("val_per_class", val_per_class),
        ("unseen_per_class", unseen_per_class),
    ):
        if count < 1:
            raise ValueError(f"{name} must be at least 1, got {count}")
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    seen, unseen = action_classes()
    plan = [
        ("train", seen, train_per_class, root / "train.txt"),
        ("val", seen, val_per_class, root / "val.txt"),
        ("unseen", unseen, unseen_per_class, root / "unseen.txt"),
    ]
    total = sum(len(classes) * count for _, classes, count, _ in plan)
    bar = tqdm(total=total, desc="synthetic actions", unit="clip", disable=not progress)
    for split, classes, count, list_path in plan:
        lines = []
        for label, action in enumerate(classes):
            for k in range(count):
                frames = render_clip(
                    action, _clip_rng(seed, split, label, k), size=size, num_frames=num_frames
                )
                relative = f"videos/{split}/{_slug(action.name)}_{k:03d}.mp4"
                write_mp4(root / relative, frames, fps=fps)
                lines.append(f"{relative} {label}")
                bar.update()
        list_path.write_text("\n".join(lines) + "\n")
    bar.close()
    _write_labels(root / "labels_seen.csv", seen)
    _write_labels(root / "labels_unseen.csv", unseen)
    description = {
        "seed": seed,
        "size": size,
        "num_frames": num_frames,
        "fps": fps,
        "seen": [vars(c) | {"name": c.name} for c in seen],
        "unseen": [vars(c) | {"name": c.name} for c in unseen],
        "direction_dependent_seen": direction_dependent(seen),
        "direction_dependent_unseen": direction_dependent(unseen),
    }
    (root / "classes.json").write_text(json.dumps(description, indent=2) + "\n")
    logger.info(
        "wrote %d synthetic clips (%d seen, %d unseen classes) to %s",
        total,
        len(seen),
        len(unseen),
        root,
    )
    return ActionsDataset(
        root=root,
        labels_seen=root / "labels_seen.csv",
        labels_unseen=root / "labels_unseen.csv",
        train_list=root / "train.txt",
        val_list=root / "val.txt",
        unseen_list=root / "unseen.txt",
        seen=seen,
        unseen=unseen,
    )

"""The synthetic-actions generator: class design, motions, determinism and files on disk."""

from __future__ import annotations

import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pytest

from text4vis.data import open_video, read_annotations, read_labels
from text4vis.data.actions import (
    COLOURS,
    MOTIONS,
    SHAPES,
    ActionClass,
    action_classes,
    direction_dependent,
    make_actions_dataset,
    render_clip,
)


def object_mask(frames: np.ndarray, colour: str) -> np.ndarray:
    """Pixels close to the object's colour: bool [T, H, W] (backgrounds are desaturated)."""
    target = np.asarray(COLOURS[colour], dtype=np.float32)
    distance = np.linalg.norm(frames.astype(np.float32) - target, axis=-1)
    return distance < 70


def centroids(mask: np.ndarray) -> np.ndarray:
    """(x, y) centre of the mask in every frame: [T, 2]."""
    out = []
    for m in mask:
        ys, xs = np.nonzero(m)
        out.append((xs.mean(), ys.mean()))
    return np.asarray(out)


def test_class_design():
    seen, unseen = action_classes()
    assert len(seen) == 20 and len(unseen) == 10
    assert len(set(seen)) == len(seen) and not set(seen) & set(unseen)
    names = [c.name for c in seen + unseen]
    assert len(set(names)) == len(names)
    assert seen[0].name == "a red circle moving left"
    for c in seen + unseen:
        assert c.colour in COLOURS and c.shape in SHAPES and c.motion in MOTIONS
        assert not (c.shape == "circle" and c.motion.startswith("rotating"))  # invisible
    # Unseen classes recombine seen attributes: the object and the motion were both seen, never
    # together.
    seen_objects = {(c.colour, c.shape) for c in seen}
    seen_motions = {c.motion for c in seen}
    for c in unseen:
        assert (c.colour, c.shape) in seen_objects and c.motion in seen_motions
        assert all((s.colour, s.shape, s.motion) != (c.colour, c.shape, c.motion) for s in seen)
    # Direction pairs: the time-reversed partner of most classes is a class too.
    dd = direction_dependent(seen)
    assert len(dd) == 16
    for i in dd:
        assert seen[i].reversed in seen and seen[i].reversed.reversed == seen[i]
    assert ActionClass("red", "circle", "blinking").reversed is None


def test_render_is_seeded_and_shaped():
    action = ActionClass("blue", "square", "moving up")
    a = render_clip(action, np.random.default_rng(3), size=32, num_frames=12)
    b = render_clip(action, np.random.default_rng(3), size=32, num_frames=12)
    c = render_clip(action, np.random.default_rng(4), size=32, num_frames=12)
    assert a.shape == (12, 32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize(
    ("motion", "axis", "sign"),
    [("moving left", 0, -1), ("moving right", 0, 1), ("moving up", 1, -1), ("moving down", 1, 1)],
)
def test_translations_move_the_object_the_named_way(motion, axis, sign):
    for seed in range(3):
        frames = render_clip(ActionClass("red", "circle", motion), np.random.default_rng(seed))
        path = centroids(object_mask(frames, "red"))[:, axis]
        assert sign * (path[-1] - path[0]) > 3  # pixels, in the named direction
        other = centroids(object_mask(frames, "red"))[:, 1 - axis]
        assert np.ptp(other) < 1.5  # and not along the other axis


def test_growing_and_shrinking_change_the_area():
    for seed in range(3):
        grow = object_mask(
            render_clip(ActionClass("blue", "circle", "growing"), np.random.default_rng(seed)),
            "blue",
        ).sum(axis=(1, 2))
        shrink = object_mask(
            render_clip(ActionClass("blue", "circle", "shrinking"), np.random.default_rng(seed)),
            "blue",
        ).sum(axis=(1, 2))
        assert grow[-1] > 2 * grow[0] and shrink[0] > 2 * shrink[-1]


def vertex_angle(mask: np.ndarray) -> float:
    """Angle (image coordinates, y down) of the object pixel farthest from the centroid."""
    ys, xs = np.nonzero(mask)
    cx, cy = xs.mean(), ys.mean()
    far = np.argmax((xs - cx) ** 2 + (ys - cy) ** 2)
    return math.atan2(ys[far] - cy, xs[far] - cx)


@pytest.mark.parametrize("motion", ["rotating clockwise", "rotating counter-clockwise"])
def test_rotation_direction_on_screen(motion):
    turns = []
    for seed in range(4):
        frames = render_clip(ActionClass("red", "triangle", motion), np.random.default_rng(seed))
        mask = object_mask(frames, "red")
        # A triangle repeats every 120 degrees; steps between frames are far smaller.
        steps = [
            (vertex_angle(mask[t + 1]) - vertex_angle(mask[t]) + math.pi / 3) % (2 * math.pi / 3)
            - math.pi / 3
            for t in range(len(mask) - 1)
        ]
        turns.append(sum(steps))
    # With y pointing down, a growing angle is clockwise as seen on the screen.
    expected = 1 if motion == "rotating clockwise" else -1
    assert all(expected * turn > 0.5 for turn in turns), turns


def test_direction_partners_are_time_reversals():
    """With the same random draws, a class and its partner differ by frame order only (up to
    the sensor noise): what a model that averages over time cannot tell apart."""
    seen, _ = action_classes()
    for i in direction_dependent(seen):
        action, partner = seen[i], seen[i].reversed
        a = render_clip(action, np.random.default_rng(11))
        b = render_clip(partner, np.random.default_rng(11))
        # Object pixels of the partner are those of the class played backwards ...
        mask_a, mask_b = object_mask(a, action.colour), object_mask(b, action.colour)
        backwards = (mask_a[::-1] != mask_b).mean()
        forwards = (mask_a != mask_b).mean()
        assert backwards < 0.005, action.name
        assert forwards > max(0.015, 10 * backwards), action.name  # ... not played forwards
        # ... and the rest differs by the sensor noise only (its sigma is at most 6).
        assert np.abs(a[::-1].astype(int) - b).mean() < 8


def test_blinking_hides_the_object_in_some_frames():
    frames = render_clip(ActionClass("green", "circle", "blinking"), np.random.default_rng(0))
    area = object_mask(frames, "green").sum(axis=(1, 2))
    assert (area == 0).any() and (area > 10).any()
    still = render_clip(ActionClass("blue", "triangle", "standing still"), np.random.default_rng(0))
    assert np.ptp(centroids(object_mask(still, "blue")), axis=0).max() < 0.5


def test_render_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown motion"):
        render_clip(ActionClass("red", "circle", "jumping"), np.random.default_rng(0))
    with pytest.raises(ValueError, match="unknown shape"):
        render_clip(ActionClass("red", "hexagon", "growing"), np.random.default_rng(0))
    with pytest.raises(ValueError, match="even"):
        make_actions_dataset("unused", size=31)


def test_dataset_files_use_the_user_formats(tmp_path):
    ds = make_actions_dataset(
        tmp_path / "acts",
        seed=5,
        train_per_class=2,
        val_per_class=1,
        unseen_per_class=1,
        num_frames=8,
        progress=False,
    )
    seen, unseen = action_classes()
    assert read_labels(ds.labels_seen) == [c.name for c in seen]
    assert read_labels(ds.labels_unseen) == [c.name for c in unseen]
    train = read_annotations(ds.train_list, num_classes=len(seen))
    val = read_annotations(ds.val_list, num_classes=len(seen))
    test = read_annotations(ds.unseen_list, num_classes=len(unseen))
    assert (len(train), len(val), len(test)) == (40, 20, 10)
    assert sorted(r.label for r in train) == sorted(list(range(20)) * 2)
    assert all(r.num_frames is None for r in train)  # video files, not frame folders
    paths = {r.path for r in train} | {r.path for r in val} | {r.path for r in test}
    assert len(paths) == 70  # every clip is its own file
    description = json.loads((ds.root / "classes.json").read_text())
    assert description["direction_dependent_seen"] == direction_dependent(seen)

    # A decoded clip is the rendered one (H.264 is lossy: close, not equal).
    record = test[3]
    reader = open_video(ds.root / record.path)
    assert reader.num_frames == 8
    decoded = np.asarray(reader.frames(list(range(8))))
    assert decoded.shape == (8, 32, 32, 3)
    rendered = render_clip(unseen[record.label], np.random.default_rng([5, 2, 3, 0]), num_frames=8)
    assert np.abs(decoded.astype(int) - rendered).mean() < 6
    other = render_clip(unseen[record.label], np.random.default_rng([5, 2, 3, 1]), num_frames=8)
    assert np.abs(decoded.astype(int) - other).mean() > 10


def test_dataset_is_reproducible(tmp_path):
    kwargs = {"train_per_class": 1, "val_per_class": 1, "unseen_per_class": 1, "num_frames": 4}
    a = make_actions_dataset(tmp_path / "a", seed=1, progress=False, **kwargs)
    b = make_actions_dataset(tmp_path / "b", seed=1, progress=False, **kwargs)
    assert a.train_list.read_text() == b.train_list.read_text()
    files = sorted(path.relative_to(a.root) for path in a.root.rglob("*.mp4"))
    assert files and files == sorted(path.relative_to(b.root) for path in b.root.rglob("*.mp4"))
    differing = [str(f) for f in files if (a.root / f).read_bytes() != (b.root / f).read_bytes()]
    assert differing == []


@pytest.mark.process
def test_dataset_bytes_are_the_same_in_another_process(tmp_path):
    # Another process (torch imported first, as in training) writes the same bytes: the demo's
    # data, and so its numbers, do not depend on the process that wrote it.
    kwargs = {"train_per_class": 1, "val_per_class": 1, "unseen_per_class": 1, "num_frames": 4}

    def digests(root):
        return {
            str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.mp4"))
        }

    here = make_actions_dataset(tmp_path / "here", seed=1, progress=False, **kwargs)
    code = (
        "import sys, torch\n"
        "from text4vis.data.actions import make_actions_dataset\n"
        f"make_actions_dataset(sys.argv[1], seed=1, progress=False, **{kwargs!r})\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "there")], check=True, timeout=300)
    mine, theirs = digests(here.root), digests(tmp_path / "there")
    assert mine and sorted(mine) == sorted(theirs)
    assert [name for name in mine if mine[name] != theirs[name]] == []

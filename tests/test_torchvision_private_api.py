"""The parts of torchvision's private API that text4vis's uint8 RandAugment relies on.

``text4vis.data.transforms._rand_augment_class`` subclasses ``v2.RandAugment`` and overrides its
per-operation hook. If a torchvision release renames or reshapes what is checked here, the fast
kernels would be bypassed silently (slower, still correct) or receive arguments they misread;
these tests fail first and say what changed, so the subclass can be adapted (or dropped in favour
of plain ``v2.RandAugment``, which gives the same bytes, slower).
"""

from __future__ import annotations

import inspect

import pytest
import torch
import torchvision
from torchvision import tv_tensors
from torchvision.transforms import v2

from text4vis.data import transforms
from text4vis.data.transforms import _rand_augment_class

HOOK = "_apply_image_or_video_transform"
WHAT = f"(torchvision {torchvision.__version__}; see text4vis.data.transforms._rand_augment_class)"


def test_the_per_operation_hook_exists_with_its_arguments() -> None:
    hook = getattr(v2.RandAugment, HOOK, None)
    assert hook is not None, f"v2.RandAugment.{HOOK} is gone {WHAT}"
    params = list(inspect.signature(hook).parameters)
    expected = ["self", "image", "transform_id", "magnitude", "interpolation", "fill"]
    assert params == expected, f"v2.RandAugment.{HOOK} now takes {params}, not {expected} {WHAT}"


def test_the_operation_names_are_the_ones_with_fast_kernels() -> None:
    space = getattr(v2.RandAugment, "_AUGMENTATION_SPACE", None)
    assert isinstance(space, dict), f"v2.RandAugment._AUGMENTATION_SPACE is gone {WHAT}"
    fast = set(transforms._FAST_OPS) | set(_rand_augment_class()._WARPS)
    missing = sorted(fast - set(space))
    assert not missing, f"v2.RandAugment no longer names the operations {missing} {WHAT}"


def test_forward_calls_the_hook_with_the_stored_interpolation_and_fill_dict() -> None:
    calls = []

    class Recording(_rand_augment_class()):
        def _apply_image_or_video_transform(
            self, image, transform_id, magnitude, interpolation, fill
        ):
            calls.append((transform_id, interpolation, fill))
            return super()._apply_image_or_video_transform(
                image, transform_id, magnitude, interpolation, fill
            )

    augment = Recording(num_ops=2, magnitude=9)
    video = tv_tensors.Video(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8))
    torch.manual_seed(0)
    augment(video)
    assert len(calls) == 2, f"v2.RandAugment.forward no longer calls {HOOK} once per op {WHAT}"
    for _op, interpolation, fill in calls:
        assert augment._is_nearest(interpolation), (
            f"v2.RandAugment passes interpolation={interpolation!r}, not a nearest mode {WHAT}"
        )
        assert isinstance(fill, dict) and fill.get("others", 0) is None, (
            f"v2.RandAugment passes fill={fill!r}, not {{'others': None}} {WHAT}"
        )


@pytest.mark.parametrize("op", ["Brightness", "Sharpness", "Rotate"])
def test_the_fast_kernels_are_really_reached(op: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Force one operation through forward and check that text4vis's kernel (not v2's) ran.
    reached = []
    if op == "Rotate":
        original = transforms._remap
        monkeypatch.setattr(transforms, "_remap", lambda *a: reached.append(op) or original(*a))
    else:
        kernel = transforms._FAST_OPS[op]
        monkeypatch.setitem(transforms._FAST_OPS, op, lambda *a: reached.append(op) or kernel(*a))
    augment = _rand_augment_class()(num_ops=1, magnitude=9)
    augment._AUGMENTATION_SPACE = {op: v2.RandAugment._AUGMENTATION_SPACE[op]}
    video = tv_tensors.Video(torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8))
    reference = v2.RandAugment(num_ops=1, magnitude=9)
    reference._AUGMENTATION_SPACE = augment._AUGMENTATION_SPACE
    torch.manual_seed(0)
    got = augment(video)
    torch.manual_seed(0)
    assert torch.equal(got, reference(video))
    assert reached == [op], f"the uint8 {op} kernel was bypassed by v2.RandAugment.forward {WHAT}"

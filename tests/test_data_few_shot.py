"""Few-shot subsets and class splits."""

from __future__ import annotations

import pytest


def test_half_class_splits_refuse_single_class_splits() -> None:
    from text4vis.data.few_shot import half_class_splits

    for num_classes in (2, 3):
        with pytest.raises(ValueError, match="at least 4 classes.*--protocol full"):
            half_class_splits(num_classes)
    assert all(len(split) == 2 for split in half_class_splits(4))

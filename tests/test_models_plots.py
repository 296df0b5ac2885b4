"""Class-similarity plots: which rows --classes selects."""

from __future__ import annotations

import pytest
import torch


def test_plot_rows_match_normalised_class_names() -> None:
    from text4vis.models.classifier import ClassifierArtifact, ClassifierError
    from text4vis.models.plots import select_rows

    artifact = ClassifierArtifact(
        torch.eye(3), {"class_names": ["playing_guitar", "RedThing", "archery"]}
    )
    rows, labels = select_rows(artifact, ["playing guitar", "red thing", "2"])
    assert rows == [0, 1, 2] and labels == ["playing_guitar", "RedThing", "archery"]
    with pytest.raises(ClassifierError, match="'purple' is neither"):
        select_rows(artifact, ["purple"])

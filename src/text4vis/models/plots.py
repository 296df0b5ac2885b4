"""Correlation maps of classifiers (the paper's Figure 1): inter-class cosine similarity."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from text4vis.data.labels import match_class_names
from text4vis.models.classifier import ClassifierArtifact, ClassifierError

__all__ = ["class_similarity", "plot_class_similarity", "select_rows"]


def class_similarity(weight: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between the rows of ``W [C, D]``: ``[C, C]``."""
    w = F.normalize(weight.float(), dim=-1)
    return w @ w.T


def select_rows(
    artifact: ClassifierArtifact, classes: Sequence[str] | None, max_classes: int = 40
) -> tuple[list[int], list[str]]:
    """Row indices and labels to plot: named classes, row numbers, or the first ``max_classes``.

    A name matches as written or after normalisation (``green thing`` = ``green_thing``).
    """
    names = artifact.class_names or [str(i) for i in range(artifact.weight.shape[0])]
    if not classes:
        rows = list(range(min(max_classes, len(names))))
        return rows, [names[i] for i in rows]

    rows = []
    # A name as written or normalised ("playing guitar" = "playing_guitar"), else a row number.
    for item, row in zip(classes, match_class_names(classes, names)):
        if row is not None:
            rows.append(row)
        elif item.isdigit() and int(item) < len(names):
            rows.append(int(item))
        else:
            raise ClassifierError(
                f"class {item!r} is neither a class name of the classifier nor a row number "
                f"below {len(names)}; names start with {names[:5]}"
            )
    return rows, [names[i] for i in rows]


def plot_class_similarity(
    artifact: ClassifierArtifact,
    out: str | Path,
    *,
    classes: Sequence[str] | None = None,
    max_classes: int = 40,
) -> Path:
    """Write a PNG heat map of the inter-class cosine similarity of chosen classifier rows."""
    import matplotlib  # on use: slow to import, and only this plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, labels = select_rows(artifact, classes, max_classes)
    sim = class_similarity(artifact.weight[rows]).numpy()
    size = max(4.0, 0.3 * len(rows) + 2.0)
    fig, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(sim, cmap="viridis", vmin=float(sim.min()), vmax=1.0)
    ax.set_xticks(range(len(rows)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    init = artifact.metadata.get("initializer", "classifier")
    ax.set_title(f"inter-class cosine similarity ({init})")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out

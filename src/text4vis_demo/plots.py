"""The main demo's figures (training curves, the paper's figure 1) and figure 1's numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "offdiagonal_correlation",
    "partner_cosine_by_group",
    "partner_similarity",
    "plot_correlation_maps",
    "plot_init_curves",
]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_init_curves(curves: dict[str, list[list[dict[str, Any]]]], path: Path) -> Path:
    """Validation top-1 and training loss per epoch, one line per initialiser (mean over seeds,
    shaded between the seeds' min and max).

    Args:
        curves: per initialiser, one history per seed (rows with ``epoch``, ``val_top1``,
            ``train_loss``).
        path: the PNG to write.
    """
    plt = _pyplot()
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.2))
    for init, histories in curves.items():
        epochs = [row["epoch"] for row in histories[0]]
        for ax, key, scale in ((ax_acc, "val_top1", 100.0), (ax_loss, "train_loss", 1.0)):
            rows = [[scale * h[i][key] for h in histories] for i in range(len(epochs))]
            mean = [sum(r) / len(r) for r in rows]
            (line,) = ax.plot(epochs, mean, marker="o", markersize=3, label=init)
            if len(histories) > 1:
                ax.fill_between(
                    epochs,
                    [min(r) for r in rows],
                    [max(r) for r in rows],
                    color=line.get_color(),
                    alpha=0.15,
                )
    seeds = len(next(iter(curves.values())))
    ax_acc.set_title(f"validation top-1 (seen classes), mean of {seeds} seed(s)")
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("top-1 (%)")
    ax_loss.set_title("training loss (cross-entropy)")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("loss")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_correlation_maps(
    text_weight: Any, learned_weight: Any, class_names: list[str], path: Path
) -> Path:
    """The paper's figure 1: inter-class cosine similarity of the text classifier (left) and of
    a learned vision-only classifier (right)."""
    from text4vis.models.plots import class_similarity

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(15, 7))
    titles = ("text classifier (all-MiniLM-L6-v2)", "learned vision-only classifier")
    for ax, weight, title in zip(axes, (text_weight, learned_weight), titles):
        sim = class_similarity(weight).numpy()
        image = ax.imshow(sim, cmap="viridis", vmin=float(sim.min()), vmax=1.0)
        ax.set_xticks(range(len(class_names)), class_names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=6)
        ax.set_title(title)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def partner_similarity(weight: Any, classes: list[Any]) -> dict[str, float]:
    """Mean cosine between the rows of time-reversed partners, and between all other pairs."""
    from text4vis.data.actions import direction_dependent
    from text4vis.models.plots import class_similarity

    sim = class_similarity(weight)
    pairs = {(i, classes.index(classes[i].reversed)) for i in direction_dependent(classes)}
    partner = [float(sim[i, j]) for i, j in pairs]
    others = [
        float(sim[i, j])
        for i in range(len(classes))
        for j in range(len(classes))
        if i != j and (i, j) not in pairs
    ]
    return {
        "text_cosine_reversed_partners": sum(partner) / max(len(partner), 1),
        "text_cosine_other_pairs": sum(others) / max(len(others), 1),
    }


def partner_cosine_by_group(weight: Any, classes: list[Any]) -> dict[str, float]:
    """Mean cosine between the rows of time-reversed partners, per direction pair
    (:func:`~text4vis_demo.runs.motion_group`)."""
    from text4vis.data.actions import direction_dependent
    from text4vis.models.plots import class_similarity
    from text4vis_demo.runs import motion_group

    sim = class_similarity(weight)
    values: dict[str, list[float]] = {}
    for i in direction_dependent(classes):
        j = classes.index(classes[i].reversed)
        values.setdefault(motion_group(classes[i]), []).append(float(sim[i, j]))
    return {name: sum(v) / len(v) for name, v in sorted(values.items())}


def offdiagonal_correlation(a: Any, b: Any) -> float:
    """Pearson correlation of the off-diagonal entries of two class-similarity matrices."""
    import torch

    from text4vis.models.plots import class_similarity

    sa, sb = class_similarity(a), class_similarity(b)
    mask = ~torch.eye(sa.shape[0], dtype=torch.bool)
    x, y = sa[mask].double(), sb[mask].double()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x.norm() * y.norm()).clamp_min(1e-12))

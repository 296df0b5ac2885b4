"""Classifier heads and their initialisers (the paper's section 2.2 and table 6).

A classifier module's ``forward()`` returns the row-normalised matrix ``W [C, D]``; the video model
computes ``logits = scale * normalize(video) @ W.T``.

* :class:`FrozenClassifier` holds W as a persistent buffer, normalised once at build time and never
  modified in place (it is not a parameter, so no optimizer can touch it).
* :class:`LearnableClassifier` is the "vision-only" baseline: W is a parameter (initialised
  N(0, 1/D)), normalised at every forward pass so the logit formula stays the same.
* :class:`TemplateBankClassifier` holds one frozen W per prompt template and, in training mode,
  uses one template per step, drawn as a seeded function of the step count; in evaluation mode
  it uses its ``eval_weight`` (the single template, as in the paper).

Initialisers are functions that return a new tensor: ``text`` (see :mod:`text4vis.models.text`),
``random`` (rows ~ N(0, I)), ``orthogonal`` (the first C rows of the Q of a QR of a D x D Gaussian),
``lda`` (multi-class Fisher LDA coefficients, closed form in torch) and ``file``.

An artifact file is safetensors: tensor ``weight [C, D]`` and string metadata ``initializer``,
``encoder``, ``prompt``, ``templates`` (JSON list), ``class_names`` (JSON list), ``embed_dim``,
``num_classes``, ``sha256`` (of the float32 weight bytes) and free-form ``extra`` (JSON).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from text4vis.errors import Text4VisError

if TYPE_CHECKING:
    from text4vis.models.text import TextEncoder

__all__ = [
    "INITIALIZERS",
    "ClassifierArtifact",
    "ClassifierError",
    "FrozenClassifier",
    "LearnableClassifier",
    "TemplateBankClassifier",
    "build_classifier",
    "lda_coefficients",
    "lda_fit",
    "load_classifier",
    "orthogonal_weight",
    "random_weight",
    "save_classifier",
    "weight_hash",
]

INITIALIZERS = ("text", "lda", "random", "orthogonal", "file")

logger = logging.getLogger("text4vis.models.classifier")


class ClassifierError(Text4VisError, ValueError):
    """A classifier cannot be built, loaded or used as asked; the message says how to fix it."""


# ----------------------------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------------------------


class FrozenClassifier(nn.Module):
    """A fixed classifier: ``W [C, D]`` stored normalised in a persistent buffer.

    Args:
        weight: ``[C, D]``; copied and L2-normalised row-wise (the caller's tensor is untouched).
    """

    weight: torch.Tensor

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        if weight.ndim != 2:
            raise ClassifierError(f"classifier weight must be [C, D], got {tuple(weight.shape)}")
        self.register_buffer("weight", F.normalize(weight.detach().float(), dim=-1).clone())

    def forward(self) -> torch.Tensor:
        return self.weight


class LearnableClassifier(nn.Module):
    """The vision-only baseline: a learnable W, normalised at each forward pass.

    Args:
        num_classes: C.
        embed_dim: D.
        generator: seeded generator of the N(0, 1/D) initialisation.
    """

    def __init__(
        self, num_classes: int, embed_dim: int, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        init = torch.randn(num_classes, embed_dim, generator=generator) * embed_dim**-0.5
        self.weight = nn.Parameter(init)

    def forward(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=-1)


class TemplateBankClassifier(nn.Module):
    """Frozen per-template classifiers; one sampled per training step, ``eval_weight`` otherwise.

    The template of a training forward pass is a pure function of ``seed`` and the number of
    training forward passes so far. That count is module state: the persistent int64 buffer
    ``step`` (in ``state_dict``), so a checkpoint round trip continues the same template
    sequence. State dicts written before the buffer existed load with the count left as it is
    (0 for a new module), as those versions did on resume.

    Args:
        bank: ``[K, C, D]`` one classifier per template (normalised here).
        eval_weight: ``[C, D]`` classifier used in evaluation mode.
        seed: seed of the generator that picks the template of each training step.
    """

    # 2: the draw counter ``step`` is a buffer (version 1 kept it as a plain attribute).
    _version = 2

    bank: torch.Tensor
    weight: torch.Tensor
    step: torch.Tensor

    def __init__(self, bank: torch.Tensor, eval_weight: torch.Tensor, seed: int = 0) -> None:
        super().__init__()
        self.register_buffer("bank", F.normalize(bank.detach().float(), dim=-1).clone())
        self.register_buffer("weight", F.normalize(eval_weight.detach().float(), dim=-1).clone())
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))
        self.seed = seed
        # Host copy of ``step``: forward reads it without a device sync and writes the buffer.
        self._count = 0

    @property
    def draws(self) -> int:
        """Training forward passes so far (the next draw uses this count)."""
        return self._count

    def forward(self) -> torch.Tensor:
        if not self.training:
            return self.weight
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self._count)
        self._count += 1
        self.step.fill_(self._count)  # asynchronous on a GPU: no host sync
        k = int(torch.randint(self.bank.shape[0], (1,), generator=generator))
        return self.bank[k]

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        key = prefix + "step"
        version = local_metadata.get("version")
        if key not in state_dict and (version is None or version < 2):
            # Written before the counter was saved (or filtered, e.g. train.init_from): keep the
            # current count rather than failing a strict load.
            if prefix + "bank" in state_dict:
                logger.warning(
                    "%sstep is not in the loaded state (saved by an older text4vis): template "
                    "sampling continues from draw %d, not from where that run stopped",
                    prefix,
                    self._count,
                )
            state_dict[key] = self.step.detach().clone()
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._count = int(self.step)


# ----------------------------------------------------------------------------------------------
# Initialisers (each returns a new tensor)
# ----------------------------------------------------------------------------------------------


def random_weight(num_classes: int, embed_dim: int, seed: int = 0) -> torch.Tensor:
    """Rows drawn from N(0, I_D): ``[C, D]``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(num_classes, embed_dim, generator=generator)


def orthogonal_weight(num_classes: int, embed_dim: int, seed: int = 0) -> torch.Tensor:
    """The first C rows of the orthogonal Q of the QR decomposition of a D x D Gaussian.

    Raises:
        ClassifierError: when C > D (at most D orthonormal rows exist in R^D).
    """
    if num_classes > embed_dim:
        raise ClassifierError(
            f"orthogonal classifier: {num_classes} classes need {num_classes} orthonormal rows, "
            f"but the embedding has only D={embed_dim} dimensions; use C <= D, or another "
            "initialiser (random, text, lda)"
        )
    generator = torch.Generator().manual_seed(seed)
    gaussian = torch.randn(embed_dim, embed_dim, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(gaussian)  # q [D, D] orthogonal: rows are orthonormal too
    return q[:num_classes].float().clone()


def lda_fit(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int, shrinkage: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multi-class Fisher LDA as a linear classifier, in closed form (CPU or GPU).

    With class means ``mu_k``, priors ``pi_k`` (class frequencies) and the pooled within-class
    covariance ``S = sum_k pi_k Cov_k`` (biased, as scikit-learn), the discriminant of class k is
    ``x . (S^-1 mu_k) - mu_k . S^-1 mu_k / 2 + log pi_k``. A ridge of ``shrinkage * trace(S)/D``
    keeps S invertible when N is small.

    Args:
        features: ``[N, D]``.
        labels: ``[N]`` integers in ``[0, num_classes)``; every class needs a sample.
        num_classes: C.
        shrinkage: relative ridge added to S.

    Returns:
        ``coef [C, D]`` and ``intercept [C]`` (float32, on the features' device).
    """
    if features.ndim != 2 or labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ClassifierError(
            f"LDA needs features [N, D] and labels [N], got {tuple(features.shape)} and "
            f"{tuple(labels.shape)}"
        )
    x = features.double()
    y = labels.long().to(x.device)
    if y.min() < 0 or y.max() >= num_classes:
        raise ClassifierError(f"LDA labels must be in [0, {num_classes}), got {y.min()}..{y.max()}")
    counts = torch.bincount(y, minlength=num_classes).double()  # [C]
    missing = (counts == 0).nonzero().flatten().tolist()
    if missing:
        raise ClassifierError(
            f"LDA: classes {missing[:10]} have no feature vectors; extract features for every "
            "class of the training split"
        )
    n, d = x.shape
    sums = torch.zeros(num_classes, d, dtype=x.dtype, device=x.device).index_add_(0, y, x)
    means = sums / counts[:, None]  # [C, D]
    centred = x - means[y]  # [N, D]
    scatter = centred.T @ centred / n  # [D, D] = sum_k pi_k Cov_k
    ridge = shrinkage * torch.trace(scatter) / d
    scatter = scatter + ridge * torch.eye(d, dtype=x.dtype, device=x.device)
    coef = torch.linalg.solve(scatter, means.T).T  # [C, D]
    priors = counts / n
    intercept = -0.5 * (means * coef).sum(dim=1) + priors.log()
    return coef.float(), intercept.float()


def lda_coefficients(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """The LDA discriminant coefficients ``[C, D]`` (see :func:`lda_fit`)."""
    return lda_fit(features, labels, num_classes)[0]


# ----------------------------------------------------------------------------------------------
# Artifacts
# ----------------------------------------------------------------------------------------------


def weight_hash(weight: torch.Tensor) -> str:
    """SHA-256 of the float32 little-endian bytes of ``weight``."""
    data = weight.detach().float().cpu().contiguous().numpy().astype("<f4").tobytes()
    return hashlib.sha256(data).hexdigest()


@dataclass
class ClassifierArtifact:
    """A built classifier: the normalised ``weight [C, D]`` and what made it."""

    weight: torch.Tensor
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        """Class names in row order ([] when unknown)."""
        return list(self.metadata.get("class_names", []))

    def check(self, class_names: Sequence[str] | None = None, embed_dim: int | None = None) -> None:
        """Raise :class:`ClassifierError` unless the artifact fits these classes and width."""
        c, d = self.weight.shape
        if embed_dim is not None and d != embed_dim:
            raise ClassifierError(
                f"classifier has width {d} but the model embeds to D={embed_dim}; rebuild it "
                "for this backbone (text4vis classifier ...)"
            )
        if class_names is not None:
            names = list(class_names)
            if len(names) != c:
                raise ClassifierError(
                    f"classifier has {c} rows but there are {len(names)} class names; rebuild "
                    "it for this label file"
                )
            stored = self.class_names
            if stored and stored != names:
                diff = next(i for i, (a, b) in enumerate(zip(stored, names)) if a != b)
                raise ClassifierError(
                    f"classifier row {diff} is {stored[diff]!r} but class {diff} is "
                    f"{names[diff]!r}; rebuild the classifier for this label file"
                )


def save_classifier(artifact: ClassifierArtifact, path: str | Path) -> Path:
    """Write an artifact as safetensors (tensor ``weight`` + string metadata)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    weight = artifact.weight.detach().float().cpu().contiguous()
    meta: dict[str, str] = {}
    for key, value in artifact.metadata.items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    meta["num_classes"], meta["embed_dim"] = str(weight.shape[0]), str(weight.shape[1])
    meta["sha256"] = weight_hash(weight)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"weight": weight}, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


_JSON_KEYS = {"class_names", "templates", "extra"}


def load_classifier(path: str | Path) -> ClassifierArtifact:
    """Read an artifact written by :func:`save_classifier` and verify its content hash.

    Raises:
        FileNotFoundError: no such file.
        ClassifierError: not a classifier artifact, or the hash does not match the weight.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"classifier file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            raw_meta = dict(handle.metadata() or {})
            names = list(handle.keys())
            if "weight" not in names:
                raise ClassifierError(
                    f"{path}: no tensor named 'weight'; expected a classifier artifact made by "
                    "`text4vis classifier`"
                )
            weight = handle.get_tensor("weight")
    except ClassifierError:
        raise
    except Exception as exc:
        raise ClassifierError(f"{path}: not a readable safetensors file ({exc})") from exc
    if weight.ndim != 2:
        raise ClassifierError(f"{path}: weight must be [C, D], got {tuple(weight.shape)}")
    meta: dict[str, Any] = {}
    for key, value in raw_meta.items():
        meta[key] = json.loads(value) if key in _JSON_KEYS else value
    expected = meta.get("sha256")
    if expected and expected != weight_hash(weight):
        raise ClassifierError(
            f"{path}: the weight does not match its recorded sha256 (file modified or corrupt); "
            "rebuild it with `text4vis classifier`"
        )
    return ClassifierArtifact(weight=weight.float(), metadata=meta)


def build_classifier(
    init: str,
    *,
    class_names: Sequence[str],
    embed_dim: int,
    text_encoder: TextEncoder | None = None,
    features: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    seed: int = 0,
    path: str | Path | None = None,
    prompt: str = "template",
    template: str = "a video of a person {}.",
    templates: Sequence[str] | None = None,
) -> ClassifierArtifact:
    """Build a classifier artifact with one of the paper's initialisers.

    Args:
        init: ``text`` | ``lda`` | ``random`` | ``orthogonal`` | ``file``.
        class_names: the C class names, in label-id order.
        embed_dim: D, the video embedding width.
        text_encoder: needed by ``text``.
        features: ``[N, D]`` visual features, needed by ``lda``.
        labels: ``[N]`` labels of ``features``.
        seed: seed of ``random`` / ``orthogonal``.
        path: artifact file, needed by ``file``.
        prompt: text prompt form (``classname`` | ``template`` | ``templates``) for ``text``.
        template: the single template of ``prompt="template"``.
        templates: the template list of ``prompt="templates"`` (averaged).

    Returns:
        The artifact; its weight is ``[C, D]`` with unit rows.

    Raises:
        ClassifierError: unknown initialiser (the message lists the valid ones), missing inputs,
            or C > D for ``orthogonal``.
    """
    names = list(class_names)
    c = len(names)
    meta: dict[str, Any] = {"initializer": init, "class_names": names, "encoder": ""}
    if init == "random":
        weight = random_weight(c, embed_dim, seed)
        meta["extra"] = {"seed": seed}
    elif init == "orthogonal":
        weight = orthogonal_weight(c, embed_dim, seed)
        meta["extra"] = {"seed": seed}
    elif init == "lda":
        if features is None or labels is None:
            raise ClassifierError(
                "the lda initialiser needs visual features and labels: extract them with "
                "`text4vis features CONFIG --checkpoint CKPT --out feats.safetensors` and pass "
                "`--features feats.safetensors`"
            )
        if features.shape[1] != embed_dim:
            raise ClassifierError(
                f"LDA features have width {features.shape[1]}, the model embeds to D={embed_dim}"
            )
        weight = lda_coefficients(features, labels, c)
        meta["extra"] = {"num_features": int(features.shape[0])}
    elif init == "text":
        if text_encoder is None:
            raise ClassifierError("the text initialiser needs a text encoder")
        from text4vis.models.text import build_text_classifier, resolve_templates

        chosen = resolve_templates(prompt, template, templates)
        weight = build_text_classifier(
            text_encoder, names, prompt=prompt, template=template, templates=templates
        )
        meta.update(text_encoder.describe())
        meta["prompt"], meta["templates"] = prompt, chosen
    elif init == "file":
        if not path:
            raise ClassifierError(
                "the file initialiser needs a classifier artifact: set model.classifier_file"
            )
        artifact = load_classifier(path)
        artifact.check(names, embed_dim)
        return artifact
    else:
        raise ClassifierError(
            f"unknown classifier initialiser {init!r}; choose one of {list(INITIALIZERS)}"
        )
    if weight.shape != (c, embed_dim):
        raise ClassifierError(
            f"{init} classifier has shape {tuple(weight.shape)}, expected ({c}, {embed_dim})"
        )
    return ClassifierArtifact(weight=F.normalize(weight.float(), dim=-1), metadata=meta)

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import open_clip
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from text4vis.errors import CheckpointError, ConfigError, MissingFileError
from text4vis.models.backbones import create_clip, weights_loaded_afterwards
from text4vis.models.text import (
    CoOpClassifier,
    TextEncoder,
    build_text_classifier,
    build_text_encoder,
    resolve_templates,
    template_embeddings,
)
from text4vis.registry import Registry

if TYPE_CHECKING:
    from text4vis.config import ModelConfig

__all__ = [
    "CLASSIFIERS",
    "CONFIG_CLASSIFIERS",
    "INITIALIZERS",
    "STORAGES",
    "ClassifierArtifact",
    "ClassifierError",
    "FrozenClassifier",
    "LearnableClassifier",
    "ClassifierRequest",
    "ClassifierSpec",
    "Storage",
    "TemplateBankClassifier",
    "build_classifier",
    "build_classifier_module",
    "classifier_name",
    "register_classifier",
    "register_initializer",
    "register_storage",
    "rebuild_classifier_module",
    "storage_of",
    "lda_coefficients",
    "lda_fit",
    "load_classifier",
    "orthogonal_weight",
    "random_weight",
    "save_classifier",
    "weight_hash",
]

logger = logging.getLogger("text4vis.models.classifier")


ClassifierError = ConfigError  # the older name, kept importable


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
    sequence.

    Args:
        bank: ``[K, C, D]`` one classifier per template (normalised here).
        eval_weight: ``[C, D]`` classifier used in evaluation mode.
        seed: seed of the generator that picks the template of each training step.
    """

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

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._count = int(self.step)  # the host copy follows the loaded counter


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
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"classifier file {path} does not exist")
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


# ----------------------------------------------------------------------------------------------
# The registry: every classifier registers itself below
# ----------------------------------------------------------------------------------------------


@dataclass
class ClassifierRequest:
    """What a model config's classifier is built from.

    Attributes:
        model_cfg: the ``model`` section of the config.
        class_names: the C class names in label order.
        clip: the open_clip model the backbone came from (its text tower is reused).
        embed_dim: D, the video embedding width.
    """

    model_cfg: ModelConfig
    class_names: list[str]
    clip: nn.Module
    embed_dim: int


ModuleBuilder = Callable[["ClassifierRequest"], tuple[nn.Module, dict[str, Any]]]
ArtifactMaker = Callable[..., "ClassifierArtifact"]


@dataclass(frozen=True)
class ClassifierSpec:
    """One classifier of the registry.

    Attributes:
        build: ``ClassifierRequest -> (module, metadata)``, the classifier of a model config.
        storage: how a model saves and rebuilds it (a key of :data:`STORAGES`).
        artifact: for fixed-matrix initialisers, ``(class_names, embed_dim, **inputs) ->
            ClassifierArtifact`` (used by :func:`build_classifier` and ``text4vis classifier``).
        selected_by: the config key that selects it (``model.classifier`` or ``model.prompt``).
    """

    build: Callable[[ClassifierRequest], tuple[nn.Module, dict[str, Any]]]
    storage: str
    artifact: Callable[..., ClassifierArtifact] | None = None
    selected_by: str = "model.classifier"


# The paper's classifiers (section 2.2, table 6), by name; each registers itself below with
# :func:`register_classifier` or :func:`register_initializer`. Adding one is one decorated function.
CLASSIFIERS: Registry[ClassifierSpec] = Registry(
    "classifier", key="model.classifier", error=ClassifierError
)


def register_classifier(
    name: str, *, storage: str, selected_by: str = "model.classifier"
) -> Callable[[ModuleBuilder], ModuleBuilder]:
    """Decorator registering a classifier by its module builder
    ``ClassifierRequest -> (module, metadata)``.

    Args:
        name: the registry name.
        storage: how a model saves and rebuilds it (a key of :data:`STORAGES`).
        selected_by: the config key that selects it.
    """

    def decorator(build: ModuleBuilder) -> ModuleBuilder:
        CLASSIFIERS.register(name)(ClassifierSpec(build, storage, selected_by=selected_by))
        return build

    return decorator


def register_initializer(name: str) -> Callable[[ArtifactMaker], ArtifactMaker]:
    """Decorator registering a fixed-matrix initialiser by its artifact function
    ``(class_names, embed_dim, **inputs) -> ClassifierArtifact``; the classifier of a model config
    that selects it is that artifact, frozen."""

    def decorator(make: ArtifactMaker) -> ArtifactMaker:
        CLASSIFIERS.register(name)(ClassifierSpec(_frozen_from_artifact(name), "frozen", make))
        return make

    return decorator


def _frozen_from_artifact(name: str) -> Callable[[ClassifierRequest], tuple[nn.Module, dict]]:
    """The module builder of a fixed-matrix initialiser: its artifact, frozen."""

    def build(request: ClassifierRequest) -> tuple[nn.Module, dict[str, Any]]:
        mc = request.model_cfg
        inputs: dict[str, Any] = {"seed": mc.classifier_seed, "path": mc.classifier_file}
        if name == "text":
            if mc.template_mode not in ("average", "sample"):
                raise ClassifierError(
                    f"model.template_mode={mc.template_mode!r}; choose 'average' or 'sample'"
                )
            inputs["text_encoder"] = build_text_encoder(
                mc, clip_model=request.clip, embed_dim=request.embed_dim
            )
            inputs.update(prompt=mc.prompt, template=mc.template, templates=mc.template_set)
        if name in ("lda", "file") and not mc.classifier_file:
            hint = (
                "build it with `text4vis classifier CONFIG --init lda --features FEATS --out FILE`"
                if name == "lda"
                else "build one with `text4vis classifier CONFIG --init ... --out FILE`"
            )
            raise ClassifierError(
                f"model.classifier={name} needs model.classifier_file (a classifier artifact); "
                f"{hint} and set model.classifier_file=FILE"
            )
        # A trained LDA classifier is stored as an artifact file: the model reads that file.
        init = "file" if name == "lda" else name
        artifact = build_classifier(
            init, class_names=request.class_names, embed_dim=request.embed_dim, **inputs
        )
        return FrozenClassifier(artifact.weight), artifact.metadata

    return build


# ----------------------------------------------------------------------------------------------
# The classifiers (registration order is the order names are listed in)
# ----------------------------------------------------------------------------------------------


@register_initializer("text")
def _text_artifact(names: list[str], embed_dim: int, **inputs: Any) -> ClassifierArtifact:
    encoder = inputs["text_encoder"]
    if encoder is None:
        raise ClassifierError("the text initialiser needs a text encoder")

    prompt, template, templates = inputs["prompt"], inputs["template"], inputs["templates"]
    chosen = resolve_templates(prompt, template, templates)
    weight = build_text_classifier(
        encoder, names, prompt=prompt, template=template, templates=templates
    )
    return ClassifierArtifact(weight, {**encoder.describe(), "prompt": prompt, "templates": chosen})


@register_classifier(
    "templates", storage="templates", selected_by="model.prompt=templates, template_mode=sample"
)
def _build_template_bank(request: ClassifierRequest) -> tuple[nn.Module, dict[str, Any]]:
    mc, names = request.model_cfg, request.class_names
    encoder = build_text_encoder(mc, clip_model=request.clip, embed_dim=request.embed_dim)
    bank = template_embeddings(encoder, names, "templates", templates=mc.template_set)
    eval_weight = template_embeddings(encoder, names, "template", mc.template)[0]
    meta = {
        "initializer": "text",
        "prompt": "templates-sample",
        "templates": resolve_templates("templates", templates=mc.template_set),
        **encoder.describe(),
    }
    return TemplateBankClassifier(bank, eval_weight, mc.classifier_seed), meta


@register_classifier("coop", storage="coop", selected_by="model.prompt=coop")
def _build_coop(request: ClassifierRequest) -> tuple[nn.Module, dict[str, Any]]:
    mc = request.model_cfg
    if mc.text_encoder != "clip":
        raise ClassifierError("prompt 'coop' runs the CLIP text tower; set model.text_encoder=clip")
    weights = mc.text_pretrained or mc.pretrained
    text_clip = request.clip if weights == mc.pretrained else None
    if text_clip is None:
        text_clip = create_clip(mc.arch, weights)
    tokenizer = open_clip.get_tokenizer(mc.arch.replace("/", "-"))
    module = CoOpClassifier(
        text_clip, tokenizer, request.class_names, mc.coop_context, mc.classifier_seed
    )
    return module, {"initializer": "text", "prompt": "coop"}


@register_initializer("lda")
def _lda_artifact(names: list[str], embed_dim: int, **inputs: Any) -> ClassifierArtifact:
    features, labels = inputs["features"], inputs["labels"]
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
    weight = lda_coefficients(features, labels, len(names))
    return ClassifierArtifact(weight, {"extra": {"num_features": int(features.shape[0])}})


@register_initializer("random")
def _random_artifact(names: list[str], embed_dim: int, **inputs: Any) -> ClassifierArtifact:
    seed = inputs["seed"]
    return ClassifierArtifact(random_weight(len(names), embed_dim, seed), {"extra": {"seed": seed}})


@register_initializer("orthogonal")
def _orthogonal_artifact(names: list[str], embed_dim: int, **inputs: Any) -> ClassifierArtifact:
    seed = inputs["seed"]
    weight = orthogonal_weight(len(names), embed_dim, seed)
    return ClassifierArtifact(weight, {"extra": {"seed": seed}})


@register_initializer("file")
def _file_artifact(names: list[str], embed_dim: int, **inputs: Any) -> ClassifierArtifact:
    path = inputs["path"]
    if not path:
        raise ClassifierError(
            "the file initialiser needs a classifier artifact: set model.classifier_file"
        )
    artifact = load_classifier(path)
    artifact.check(names, embed_dim)
    return artifact


@register_classifier("learnable", storage="learnable")
def _build_learnable(request: ClassifierRequest) -> tuple[nn.Module, dict[str, Any]]:
    generator = torch.Generator().manual_seed(request.model_cfg.classifier_seed)
    module = LearnableClassifier(len(request.class_names), request.embed_dim, generator)
    return module, {"initializer": "learnable"}


# ----------------------------------------------------------------------------------------------
# How a model saves and rebuilds its classifier
# ----------------------------------------------------------------------------------------------


Rebuild = Callable[["ModelConfig", list[str], int, dict[str, torch.Tensor], str], nn.Module]


@dataclass(frozen=True)
class Storage:
    """How a model saves one form of classifier module and rebuilds it.

    Attributes:
        module_type: the module class.
        separate_file: saved as a classifier artifact (``classifier.safetensors``) beside the
            model's weights, since it is a fixed matrix; otherwise its tensors are model weights.
        rebuild: ``(model_cfg, class_names, embed_dim, classifier tensors, where) -> module``,
            from a checkpoint's ``classifier.*`` tensors (learnable and CoOp modules get their
            weights from the model's state dict afterwards).
    """

    module_type: type[nn.Module]
    separate_file: bool
    rebuild: Rebuild


# The storage kinds by name: the ``classifier_kind`` of a saved model's config.json.
STORAGES: Registry[Storage] = Registry(
    "classifier storage", key="classifier_kind", error=ClassifierError
)


def register_storage(
    kind: str, module_type: type[nn.Module], *, separate_file: bool
) -> Callable[[Rebuild], Rebuild]:
    """Decorator registering a storage kind by its rebuild function (see :class:`Storage`)."""

    def decorator(rebuild: Rebuild) -> Rebuild:
        STORAGES.register(kind)(Storage(module_type, separate_file, rebuild))
        return rebuild

    return decorator


@register_storage("frozen", FrozenClassifier, separate_file=True)
def _rebuild_frozen(
    model_cfg: ModelConfig, class_names: list[str], embed_dim: int, head: dict, where: str
) -> nn.Module:
    if "weight" not in head:
        raise CheckpointError(f"{where}: no classifier.weight tensor")
    return FrozenClassifier(head["weight"])


@register_storage("templates", TemplateBankClassifier, separate_file=True)
def _rebuild_templates(
    model_cfg: ModelConfig, class_names: list[str], embed_dim: int, head: dict, where: str
) -> nn.Module:
    if not {"bank", "weight"} <= set(head):
        raise CheckpointError(f"{where}: no classifier.bank / classifier.weight tensors")
    return TemplateBankClassifier(head["bank"], head["weight"], model_cfg.classifier_seed)


@register_storage("learnable", LearnableClassifier, separate_file=False)
def _rebuild_learnable(
    model_cfg: ModelConfig, class_names: list[str], embed_dim: int, head: dict, where: str
) -> nn.Module:
    return LearnableClassifier(len(class_names), embed_dim)  # weights loaded afterwards


@register_storage("coop", CoOpClassifier, separate_file=False)
def _rebuild_coop(
    model_cfg: ModelConfig, class_names: list[str], embed_dim: int, head: dict, where: str
) -> nn.Module:
    """A CoOp classifier with a randomly initialised text tower (weights loaded afterwards)."""
    with weights_loaded_afterwards():  # its text tower is loaded from the saved state
        clip = create_clip(model_cfg.arch, "")
    tokenizer = open_clip.get_tokenizer(model_cfg.arch.replace("/", "-"))
    return CoOpClassifier(clip, tokenizer, class_names, model_cfg.coop_context)


def storage_of(module: nn.Module | None) -> str:
    """The storage kind of a classifier module (``none`` for no classifier)."""
    if module is None:
        return "none"
    for kind, storage in STORAGES.items():
        if isinstance(module, storage.module_type):
            return kind
    raise ClassifierError(
        f"classifier module {type(module).__name__} is not one of the registry's "
        f"{list(STORAGES)}; register it with text4vis.models.classifier.register_storage"
    )


def rebuild_classifier_module(
    kind: str,
    model_cfg: ModelConfig,
    class_names: list[str],
    embed_dim: int,
    head: dict[str, torch.Tensor],
    where: str,
) -> nn.Module:
    """Rebuild a saved classifier of storage ``kind`` (see :data:`STORAGES`).

    Raises:
        ClassifierError: an unknown kind (the message lists the valid ones).
    """
    if kind not in STORAGES:
        raise ClassifierError(
            f"{where}: unknown classifier_kind {kind!r}; choose one of {sorted(STORAGES)} (or none)"
        )
    return STORAGES.get(kind).rebuild(model_cfg, class_names, embed_dim, head, where)


# The values ``model.classifier`` takes, and the initialisers of fixed classifier artifacts.
CONFIG_CLASSIFIERS = tuple(n for n, s in CLASSIFIERS.items() if s.selected_by == "model.classifier")
INITIALIZERS = tuple(n for n, s in CLASSIFIERS.items() if s.artifact is not None)


def classifier_name(model_cfg: ModelConfig) -> str:
    """The registry name a model config selects: ``model.classifier``, except that a text
    classifier with CoOp prompts is ``coop`` and one with sampled templates is ``templates``.

    Raises:
        ClassifierError: an unknown ``model.classifier`` (the message lists the valid ones).
    """
    name = model_cfg.classifier
    if name not in CONFIG_CLASSIFIERS:
        raise ClassifierError(
            f"unknown classifier {name!r} (model.classifier); choose one of "
            f"{list(CONFIG_CLASSIFIERS)}"
        )
    if name == "text" and model_cfg.prompt == "coop":
        return "coop"
    if name == "text" and model_cfg.prompt == "templates" and model_cfg.template_mode == "sample":
        return "templates"
    return name


def build_classifier_module(request: ClassifierRequest) -> tuple[nn.Module, dict[str, Any]]:
    """The classifier module a model config asks for, and its metadata."""
    return CLASSIFIERS.get(classifier_name(request.model_cfg)).build(request)


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
    """Build a classifier artifact with one of the paper's fixed-matrix initialisers.

    Args:
        init: one of :data:`INITIALIZERS` (``text`` | ``lda`` | ``random`` | ``orthogonal`` |
            ``file``).
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
    if init not in INITIALIZERS:
        raise ClassifierError(
            f"unknown classifier initialiser {init!r}; choose one of {list(INITIALIZERS)}"
        )
    names = list(class_names)
    make = CLASSIFIERS.get(init).artifact
    assert make is not None
    made = make(
        names,
        embed_dim,
        text_encoder=text_encoder,
        features=features,
        labels=labels,
        seed=seed,
        path=path,
        prompt=prompt,
        template=template,
        templates=templates,
    )
    if init == "file":
        return made  # a stored artifact, checked against the names and width
    weight = made.weight
    if weight.shape != (len(names), embed_dim):
        raise ClassifierError(
            f"{init} classifier has shape {tuple(weight.shape)}, expected ({len(names)}, {embed_dim})"
        )
    meta: dict[str, Any] = {"initializer": init, "class_names": names, "encoder": ""}
    meta.update(made.metadata)
    return ClassifierArtifact(weight=F.normalize(weight.float(), dim=-1), metadata=meta)

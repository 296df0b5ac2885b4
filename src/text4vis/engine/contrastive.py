"""The contrastive video-text paradigm the paper compares against (table 9, appendix C.3).

ActionCLIP-style training: each clip's video embedding is matched against the text embedding of
its class prompt with a symmetric InfoNCE loss scaled by CLIP's logit scale, instead of
cross-entropy over a frozen classifier.

**Batch gather.** With ``M`` processes of ``N`` clips each, every rank computes its ``N x NM``
logits (video -> text and text -> video) against the features gathered from all ranks
(:func:`gather_with_grad`), so that together the ranks cover the whole ``NM x NM`` similarity
matrix (the paper's algorithm 1). With the gather off, each rank sees only its local ``N x N``.

**Gradient convention.** The backward pass of :func:`gather_with_grad` sends every rank the *sum*
over ranks of the gradients with respect to its own slice. Each rank's loss is the mean over its
``N`` rows. DDP then averages the parameter gradients over the ``M`` ranks, so the gradient the
optimizer sees is exactly the gradient of the global loss: the mean over all ``NM`` rows of the
``NM x NM`` matrix, the same number one process computes over the concatenated batch. (Rank
``r``'s features enter every rank's loss, so its parameter gradient is
``d(sum_s L_s)/d theta`` through its own features; averaging over ranks gives
``d(mean_s L_s)/d theta``.) No extra scaling of the per-rank loss is needed, and none must be
added; the mean of the per-rank losses equals the global loss. ``tests/test_contrastive_ddp.py``
checks both statements on two gloo processes. This holds for equal local batches (the training
loader drops the last incomplete batch unless a rank's share is under one batch); the gather
also accepts unequal ones, and DDP's averaging then weights each rank's rows by
``1 / (M * N_rank)``, as it does for cross-entropy.

**Same-class pairs.** Clips of the same class in a batch share a text prompt. With
``same_class_positive=True`` (default, as ActionCLIP does) each row's target is uniform over the
entries with the row's label; with ``False`` only the diagonal entry is positive and every other
pair, same-class ones included, is a negative.

**Text side.** *Offline*: the fixed text embeddings of the class prompts, which are the rows of
the model's frozen text classifier (``model.classifier="text"``), so evaluation needs nothing
new. *Online*: the model's text encoder inside the objective, trained with
``lr * train.text_lr_ratio``: the CLIP text tower (``model.text_encoder=clip``) or a
sentence-transformers / ``hf:`` encoder's own transformer (the paper's language-only text
encoders). It re-encodes the class prompts of each batch, and
:meth:`ContrastiveObjective.export_classifier` writes its class-prompt embeddings into the
model's classifier so that ``eval`` measures the trained pair;
:meth:`ContrastiveObjective.save_text_tower` writes the trained tower into the model folder (an
open_clip weight file, or an encoder folder), which the folder's loader adopts, so that
``zeroshot`` encodes new class names with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.distributed as dist
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.nn import functional as F

from text4vis.config import Config, ConfigError
from text4vis.data.labels import normalize_class_name
from text4vis.engine.objective_base import ObjectiveBase, register_objective
from text4vis.models.backbones import create_clip, register_model_configs
from text4vis.models.text import (
    HFTextEncoder,
    TransformerTextTower,
    build_text_encoder,
    float32_master_weights,
    resolve_templates,
)
from text4vis.models.video import TEXT_ENCODER_DIR, TEXT_TOWER_FILE

__all__ = [
    "ContrastiveObjective",
    "ContrastiveOutput",
    "TEXT_ENCODER_DIR",
    "TEXT_TOWER_FILE",
    "OfflineTextEmbeddings",
    "OnlineTextTower",
    "build_contrastive_objective",
    "build_online_text_tower",
    "contrastive_loss",
    "contrastive_targets",
    "gather_sizes",
    "gather_with_grad",
    "model_logit_scale",
]

logger = logging.getLogger("text4vis.engine.contrastive")


# ----------------------------------------------------------------------------------------------
# Batch gather with gradient
# ----------------------------------------------------------------------------------------------


def _process_group() -> Any | None:
    """``torch.distributed`` when a process group of more than one rank runs, else None."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def _host_group(dist: Any) -> Any:
    """A process group whose collectives run on CPU tensors: the default group under gloo, a
    gloo group beside an NCCL one (made once, by every rank at the same call)."""
    if "gloo" in str(dist.get_backend()):
        return None  # the default group
    world = dist.group.WORLD
    cached = _HOST_GROUPS.get("gloo")
    if cached is None or cached[0] is not world:
        cached = (world, dist.new_group(backend="gloo"))
        _HOST_GROUPS["gloo"] = cached
    return cached[1]


# The gloo group of the running NCCL job, with the default group it was made for.
_HOST_GROUPS: dict[str, tuple[Any, Any]] = {}


def gather_sizes(n: int, device: torch.device | str = "cpu") -> list[int]:
    """The local batch size of every rank, in rank order (``[n]`` without a process group).

    The sizes are host integers and are exchanged as such, over a gloo group (the default one,
    or one made beside NCCL), so that the GPU's queue is never waited for: an NCCL all-gather of
    device tensors read back with ``.item()`` would block the host at every training step.

    Args:
        n: this rank's number of rows.
        device: unused (the exchange runs on the CPU); kept for callers that pass it.
    """
    dist = _process_group()
    if dist is None:
        return [n]
    local = torch.tensor([n], dtype=torch.long)
    sizes = [torch.zeros_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, local, group=_host_group(dist))
    return torch.cat(sizes).tolist()  # CPU tensors: no device synchronisation


def _all_gather_rows(x: Tensor, sizes: tuple[int, ...] | list[int]) -> Tensor:
    """Plain all-gather along dim 0 (no autograd) of rows whose count differs per rank."""
    # all_gather needs equal shapes: pad to the largest local batch, strip afterwards.
    max_n = max(sizes)
    x = x.detach().contiguous()
    if x.shape[0] < max_n:
        x = torch.cat([x, x.new_zeros((max_n - x.shape[0], *x.shape[1:]))])
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)])  # [sum(sizes), ...]


class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0 whose backward returns each rank the summed grad of its slice."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, sizes: tuple[int, ...]) -> Tensor:  # type: ignore[override]
        ctx.sizes, ctx.rank = sizes, dist.get_rank()
        return _all_gather_rows(x, sizes)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        # Every rank holds d(L_rank)/d(gathered); the sum over ranks of this rank's slice is
        # d(sum of all ranks' losses)/d(local rows). all_reduce works on gloo and NCCL alike
        # (gloo has no reduce_scatter), and [NM, D] is small next to the model's gradients.
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]], None


def gather_with_grad(x: Tensor, sizes: list[int] | None = None) -> Tensor:
    """Concatenate ``x`` from every rank along dim 0, keeping the graph.

    Rank order is preserved, so rank ``r``'s rows start at ``sum(sizes[:r])``. The backward
    pass gives each rank the sum over all ranks of the gradient of its own slice (see the module
    docstring for why this, combined with DDP's gradient averaging, yields the gradient of the
    global loss). Identity without a process group or at world size 1.

    Args:
        x: local rows ``[n, ...]``.
        sizes: every rank's ``n`` (from :func:`gather_sizes`); gathered here when None. Ranks
            may hold different numbers of rows.

    Returns:
        ``[sum(sizes), ...]``.
    """
    if _process_group() is None:
        return x
    if sizes is None:
        sizes = gather_sizes(x.shape[0], x.device)
    return _GatherWithGrad.apply(x, tuple(sizes))


def _gather_no_grad(x: Tensor, sizes: list[int]) -> Tensor:
    """All-gather of a tensor that carries no gradient (labels)."""
    if _process_group() is None:
        return x
    return _all_gather_rows(x, sizes)


# ----------------------------------------------------------------------------------------------
# Symmetric InfoNCE
# ----------------------------------------------------------------------------------------------


def contrastive_targets(
    row_labels: Tensor, col_labels: Tensor, row_offset: int = 0, *, same_class_positive: bool
) -> Tensor:
    """Target distribution of each row of the ``N x K`` similarity matrix.

    Args:
        row_labels: ``[N]`` labels of this rank's clips.
        col_labels: ``[K]`` labels of the columns (all gathered clips, or the local ones).
        row_offset: column index of row 0's own pair (its position in the gathered batch).
        same_class_positive: True: uniform over the columns with the row's label (ActionCLIP's
            soft target); False: one-hot on the row's own pair, so other clips of the same class
            are negatives.

    Returns:
        ``[N, K]`` float, each row summing to 1.
    """
    n, k = row_labels.shape[0], col_labels.shape[0]
    if row_offset < 0 or row_offset + n > k:
        raise ValueError(f"rows {row_offset}..{row_offset + n} do not fit in {k} columns")
    if same_class_positive:
        same = (row_labels[:, None] == col_labels[None, :]).float()  # [N, K]
        return same / same.sum(dim=1, keepdim=True)
    targets = torch.zeros(n, k, device=row_labels.device)
    rows = torch.arange(n, device=row_labels.device)
    targets[rows, rows + row_offset] = 1.0
    return targets


@dataclass
class ContrastiveOutput:
    """What :func:`contrastive_loss` computed on this rank.

    Attributes:
        loss: scalar, ``(loss_video + loss_text) / 2`` (mean over this rank's rows).
        loss_video: video -> text cross-entropy.
        loss_text: text -> video cross-entropy.
        logits_video: ``[N, K]`` scaled similarities of local videos to all texts.
        logits_text: ``[N, K]`` scaled similarities of local texts to all videos.
        targets: ``[N, K]`` target distribution of both directions.
    """

    loss: Tensor
    loss_video: Tensor
    loss_text: Tensor
    logits_video: Tensor
    logits_text: Tensor
    targets: Tensor


def contrastive_loss(
    video: Tensor,
    text: Tensor,
    labels: Tensor,
    logit_scale: Tensor | float,
    *,
    gather: bool = True,
    same_class_positive: bool = True,
) -> ContrastiveOutput:
    """Symmetric video-text InfoNCE of this rank's clips (the paper's algorithm 1).

    Features are L2-normalised and compared in float32 with autocast off (inputs cast to
    float32), so bf16 / fp16 autocast never rounds the scaled similarities. With ``gather`` (and a process group),
    the columns are the features of every rank (``K = NM``) and gradients flow back through the
    gather; otherwise ``K = N``.

    Args:
        video: ``[N, D]`` video embeddings (before normalisation).
        text: ``[N, D]`` text embeddings of each clip's class prompt.
        labels: ``[N]`` class ids (decide the same-class pairs).
        logit_scale: the multiplier of the cosine similarities (CLIP's ``exp(logit_scale)``).
        gather: gather the features of all ranks.
        same_class_positive: see :func:`contrastive_targets`.
    """
    if video.shape != text.shape or video.ndim != 2 or labels.shape != video.shape[:1]:
        raise ValueError(
            f"expected video [N, D], text [N, D] and labels [N]; got {tuple(video.shape)}, "
            f"{tuple(text.shape)} and {tuple(labels.shape)}"
        )
    # float32 throughout, autocast off: under bf16 autocast the matrix products would round
    # the scaled similarities (logit scale 100) by up to about 0.25.
    with torch.autocast(video.device.type, enabled=False):
        video = F.normalize(video.float(), dim=-1)
        text = F.normalize(text.float(), dim=-1)
        scale = logit_scale.float() if isinstance(logit_scale, Tensor) else logit_scale
        if gather and _process_group() is not None:
            sizes = gather_sizes(video.shape[0])
            offset = sum(sizes[: dist.get_rank()])
            all_video = gather_with_grad(video, sizes)  # [NM, D]
            all_text = gather_with_grad(text, sizes)  # [NM, D]
            all_labels = _gather_no_grad(labels, sizes)  # [NM]
        else:
            offset, all_video, all_text, all_labels = 0, video, text, labels
        logits_video = scale * video @ all_text.t()  # [N, K]
        logits_text = scale * text @ all_video.t()  # [N, K]
        targets = contrastive_targets(
            labels, all_labels, offset, same_class_positive=same_class_positive
        )
        loss_video = F.cross_entropy(logits_video, targets)
        loss_text = F.cross_entropy(logits_text, targets)
    return ContrastiveOutput(
        loss=(loss_video + loss_text) / 2,
        loss_video=loss_video,
        loss_text=loss_text,
        logits_video=logits_video,
        logits_text=logits_text,
        targets=targets,
    )


# ----------------------------------------------------------------------------------------------
# Text side: fixed embeddings or a trained tower
# ----------------------------------------------------------------------------------------------


class OfflineTextEmbeddings(nn.Module):
    """Fixed, pre-computed text embeddings of the class prompts (nothing to train).

    Args:
        weight: ``[C, D]`` one embedding per class (normalised or not; the loss normalises).
    """

    weight: Tensor

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        if weight.ndim != 2:
            raise ValueError(f"expected class embeddings [C, D], got {tuple(weight.shape)}")
        # A copy, never a view of the model's classifier: nothing here may change it.
        self.register_buffer("weight", weight.detach().clone().float(), persistent=False)

    def forward(self, class_ids: Tensor) -> Tensor:
        """``[U]`` class ids -> ``[U, D]`` embeddings."""
        return self.weight[class_ids]

    @torch.no_grad()
    def class_embeddings(self) -> Tensor:
        """``[C, D]`` L2-normalised embeddings of every class (the classifier to evaluate with)."""
        return F.normalize(self.weight, dim=-1)


class OnlineTextTower(nn.Module):
    """A trainable text tower re-encoding the class prompts at every step.

    Args:
        text_model: a module with ``encode_text(tokens [n, L]) -> [n, D]``: an open_clip CLIP
            whose image tower was dropped, a
            :class:`~text4vis.models.text.TransformerTextTower` (sentence-transformers or
            ``hf:``), or any stand-in with that method.
        prompt_tokens: ``[C, P, L]`` token ids of ``P`` prompts per class; the embeddings of a
            class are the mean of its ``P`` normalised prompt embeddings.
    """

    prompt_tokens: Tensor
    text_model: Any  # an nn.Module with encode_text

    def __init__(self, text_model: nn.Module, prompt_tokens: Tensor) -> None:
        super().__init__()
        if prompt_tokens.ndim != 3:
            raise ValueError(f"expected prompt tokens [C, P, L], got {tuple(prompt_tokens.shape)}")
        float32_master_weights(text_model, what="the online text tower")
        self.text_model = text_model
        self.register_buffer("prompt_tokens", prompt_tokens, persistent=False)

    @property
    def num_classes(self) -> int:
        return int(self.prompt_tokens.shape[0])

    def forward(self, class_ids: Tensor) -> Tensor:
        """``[U]`` class ids -> ``[U, D]`` embeddings (with gradient to the tower)."""
        tokens = self.prompt_tokens[class_ids]  # [U, P, L]
        u, p, length = tokens.shape
        emb = self.text_model.encode_text(tokens.reshape(u * p, length))  # [U*P, D]
        emb = F.normalize(emb.float(), dim=-1).reshape(u, p, -1)  # [U, P, D]
        return emb.mean(dim=1)  # [U, D]

    @torch.no_grad()
    def class_embeddings(self, batch_size: int = 256) -> Tensor:
        """``[C, D]`` L2-normalised embeddings of every class from the current tower (in eval
        mode: a tower with dropout gives the same classifier every time)."""
        was_training = self.training
        self.eval()
        try:
            ids = torch.arange(self.num_classes, device=self.prompt_tokens.device)
            parts = [self(chunk) for chunk in ids.split(batch_size)]
        finally:
            self.train(was_training)
        return F.normalize(torch.cat(parts), dim=-1)


# ----------------------------------------------------------------------------------------------
# The objective
# ----------------------------------------------------------------------------------------------


def model_logit_scale(model: nn.Module) -> Tensor:
    """The multiplier of the model's cosine similarities: ``exp`` of its stored log scale.

    :class:`~text4vis.models.video.VideoRecognizer` keeps CLIP's convention (a parameter holding
    the log, trained when ``model.learn_logit_scale``), so the contrastive loss uses the very
    scale the model is evaluated with.
    """
    scale: Tensor = model.logit_scale  # type: ignore[assignment]
    return scale.exp()


class ContrastiveObjective(ObjectiveBase):
    """Video-text symmetric InfoNCE as a training objective (see the module docstring).

    ``forward(model, video, labels)`` embeds the clips with ``model.encode_video``, takes the
    text embedding of each clip's class (each distinct class of the batch encoded once), and
    returns ``(loss, logits)``: ``logits [B, C]`` are the scaled cosines against every class's
    text embedding when those are fixed (offline), ``None`` with an online tower (re-encoding
    every class at each step would cost more than the loss).

    Args:
        text: :class:`OfflineTextEmbeddings` or :class:`OnlineTextTower`.
        class_names: names of the classes, in id order (for :meth:`export_classifier`).
        gather: gather features over ranks (the paper's batch gather).
        same_class_positive: same-class pairs are positives (soft target) or negatives.
        text_lr_ratio: learning-rate ratio (to ``train.lr``) of an online tower.
    """

    text: OfflineTextEmbeddings | OnlineTextTower

    def __init__(
        self,
        text: OfflineTextEmbeddings | OnlineTextTower,
        class_names: list[str],
        *,
        gather: bool = True,
        same_class_positive: bool = True,
        text_lr_ratio: float = 0.1,
    ) -> None:
        super().__init__()
        if text_lr_ratio <= 0:
            raise ConfigError(
                f"train.text_lr_ratio must be > 0, got {text_lr_ratio}; use text_online=false "
                "for a fixed text side"
            )
        self.text = text
        self.class_names = list(class_names)
        self.gather = gather
        self.same_class_positive = same_class_positive
        self.lr_ratio = text_lr_ratio
        self.online = isinstance(text, OnlineTextTower)
        if not self.online:
            for p in text.parameters():
                p.requires_grad_(False)

    def forward(  # type: ignore[override]
        self, model: Any, video: Tensor, labels: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        video_emb = model.encode_video(video)  # [B, D]
        if self.online:
            # Each distinct class of the batch encoded once (torch.unique waits for the device,
            # but encoding every clip's prompts would cost more).
            classes, inverse = torch.unique(labels, return_inverse=True)  # [U], [B]
            text_emb = self.text(classes)[inverse]  # [U, D] -> [B, D]
        else:
            text_emb = self.text(labels)  # [B, D]: a lookup, nothing to encode
        scale = model_logit_scale(model)
        out = contrastive_loss(
            video_emb,
            text_emb,
            labels,
            scale,
            gather=self.gather,
            same_class_positive=self.same_class_positive,
        )
        logits = None
        if not self.online:
            with torch.no_grad(), torch.autocast(video.device.type, enabled=False):
                weight = self.text.class_embeddings()  # [C, D], float32
                emb = F.normalize(video_emb.detach().float(), dim=-1)
                logits = scale.float() * emb @ weight.t()  # [B, C], float32
        return out.loss, logits

    @torch.no_grad()
    def export_classifier(self, model: Any) -> None:
        """Make the model's frozen classifier the current text embeddings of the class prompts.

        For an online tower this writes the trained tower's class-prompt embeddings into the
        model (``model.set_classifier``), so that ``eval`` and a saved model measure what was
        trained; call it before every evaluation and before saving. Offline, the classifier
        already holds these embeddings and is left as it is.
        """
        if self.online:
            model.set_classifier(
                self.text.class_embeddings(),
                self.class_names,
                {"initializer": "text", "source": "online text tower (contrastive objective)"},
            )

    def save_artifacts(self, directory: Any, model: Any, cfg: Any) -> None:
        """Save the trained text tower beside an exported model (online only)."""
        self.save_text_tower(directory, model, cfg.model.arch)

    def save_text_tower(self, directory: str | Path, model: Any, arch: str) -> Path | None:
        """Write the trained text tower (online only) where a model folder's loader finds it.

        A CLIP tower: ``<directory>/text_tower.safetensors``, a complete open_clip state dict
        of ``arch``: the trained text tower, and the image tower taken from ``model.visual``
        (the trained one) for every key that architecture has, so it loads with
        ``model.text_pretrained=<file>``. Image-tower keys ``model.visual`` lacks are taken
        from a fresh ``arch`` model and logged; only the text tower of this file is meant to be
        used. A sentence-transformers or ``hf:`` tower: the folder
        ``<directory>/text_encoder/``, which ``model.text_pretrained=<folder>`` loads.
        :meth:`text4vis.models.video.VideoRecognizer.from_pretrained` points the model config
        at either, so ``zeroshot`` and ``predict --labels`` encode new class names with the
        trained tower.

        Returns:
            The file or folder, or None for an offline text side (nothing was trained).
        """
        if not isinstance(self.text, OnlineTextTower):
            return None

        if isinstance(self.text.text_model, TransformerTextTower):
            folder = self.text.text_model.save(Path(directory) / TEXT_ENCODER_DIR)
            logger.info(
                "saved the trained text encoder to %s (use model.text_pretrained=%s)",
                folder,
                folder,
            )
            return folder

        state, filled = _complete_clip_state(
            create_clip(arch).state_dict(),
            text=self.text.text_model.state_dict(),
            visual={f"visual.{k}": v for k, v in model.visual.state_dict().items()},
        )
        if filled:
            logger.info(
                "text tower file: %d image-tower tensors not in the trained model (e.g. %s) "
                "taken from a fresh %s; the file is meant for its text tower",
                len(filled),
                filled[0],
                arch,
            )
        path = Path(directory) / TEXT_TOWER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(path))
        logger.info("saved the trained text tower to %s (use model.text_pretrained=%s)", path, path)
        return path


def _complete_clip_state(
    reference: dict[str, Tensor], *, text: dict[str, Tensor], visual: dict[str, Tensor]
) -> tuple[dict[str, Tensor], list[str]]:
    """An open_clip state dict with the keys of ``reference`` (a fresh model of the
    architecture): the text tower's tensors from ``text``, the image tower's from ``visual``
    where it has the key at the same shape, else from ``reference``.

    Returns:
        The state dict and the image-tower keys taken from ``reference``.
    """
    state: dict[str, Tensor] = {}
    filled = []
    for key, value in reference.items():
        if key.startswith("visual."):
            trained = visual.get(key)
            if trained is None or trained.shape != value.shape:
                filled.append(key)
                trained = value
            state[key] = trained
        else:
            state[key] = text[key]
    return state, filled


# ----------------------------------------------------------------------------------------------
# Construction from the config
# ----------------------------------------------------------------------------------------------


def _check_config(cfg: Config) -> None:
    model_cfg = cfg.model
    if model_cfg.classifier != "text":
        raise ConfigError(
            f"train.objective=contrastive matches videos with the text embeddings of the class "
            f"prompts, which are also the classifier it is evaluated with; model.classifier must "
            f"be 'text', got {model_cfg.classifier!r}. Set model.classifier=text"
        )
    if model_cfg.prompt == "coop" or (
        model_cfg.prompt == "templates" and model_cfg.template_mode != "average"
    ):
        raise ConfigError(
            f"train.objective=contrastive needs fixed class prompts; model.prompt="
            f"{model_cfg.prompt!r} with template_mode={model_cfg.template_mode!r} is not "
            "supported. Use model.prompt=classname|template, or templates with "
            "model.template_mode=average"
        )


def build_online_text_tower(
    cfg: Config, class_names: list[str], embed_dim: int | None = None
) -> OnlineTextTower:
    """The trainable text side of ``cfg.model`` over the class prompts.

    ``model.text_encoder=clip``: the CLIP text tower of ``model.arch`` (image tower dropped),
    with weights from ``model.text_pretrained`` (or ``model.pretrained`` when empty). A
    sentence-transformers or ``hf:`` encoder: that model's own weights, through
    :class:`~text4vis.models.text.TransformerTextTower`, with the same fixed projection to
    ``embed_dim`` the model's text classifier was built with. Either way the initial class
    embeddings are the classifier's; prompts follow ``model.prompt``.

    Args:
        cfg: the training config.
        class_names: the classes, in id order.
        embed_dim: D of the video model (needed for a projection of a non-CLIP encoder).
    """
    model_cfg = cfg.model
    templates = resolve_templates(model_cfg.prompt, model_cfg.template, model_cfg.template_set)
    names = [normalize_class_name(n) for n in class_names]
    texts = [t.format(n) for n in names for t in templates]  # class-major: C*P texts
    text_model: nn.Module
    if model_cfg.text_encoder == "clip":
        register_model_configs()
        text_model = create_clip(model_cfg.arch, model_cfg.text_pretrained or model_cfg.pretrained)
        text_model.visual = nn.Identity()  # only encode_text is used; no second image tower
        for name in ("logit_scale", "logit_bias"):  # CLIP's own scale is not this loss's
            param = getattr(text_model, name, None)
            if isinstance(param, nn.Parameter):
                param.requires_grad_(False)
        tokens = open_clip.get_tokenizer(model_cfg.arch.replace("/", "-"))(texts)  # [C*P, L]
    else:
        encoder = build_text_encoder(model_cfg, embed_dim=embed_dim)
        assert isinstance(encoder, HFTextEncoder)
        text_model = TransformerTextTower(encoder)
        tokens = text_model.tokenize(texts)  # [C*P, L]
    tokens = tokens.reshape(len(names), len(templates), -1)  # [C, P, L]
    return OnlineTextTower(text_model, tokens)


def _classifier_weight(model: nn.Module) -> Tensor:
    get_weight = getattr(model, "classifier_weight", None)
    weight = get_weight() if callable(get_weight) else None
    if not isinstance(weight, Tensor) or weight.ndim != 2:
        raise TypeError(
            f"the contrastive objective needs the model's frozen text classifier weight [C, D] "
            f"(model.classifier_weight()); {type(model).__name__} has none"
        )
    return weight


@register_objective("contrastive")
def build_contrastive_objective(
    cfg: Config, model: nn.Module, class_names: list[str]
) -> ContrastiveObjective:
    """The objective ``train.objective=contrastive`` asks for.

    Reads ``train.gather``, ``train.text_online``, ``train.text_lr_ratio`` and
    ``train.same_class_positive``. Offline, the text side is a copy of the model's frozen text
    classifier (the class-prompt embeddings). Online, the trainable text tower is built and the
    model's classifier is set to its class-prompt embeddings right away, so that the classifier
    and the trained text side agree from the first step.

    Raises:
        ConfigError: a model config the contrastive paradigm cannot use (the message says why).
    """
    _check_config(cfg)
    train = cfg.train
    text: OfflineTextEmbeddings | OnlineTextTower
    if train.text_online:
        text = build_online_text_tower(
            cfg, class_names, embed_dim=int(_classifier_weight(model).shape[1])
        )
        # On the model's device before the class prompts are encoded (export_classifier
        # below): on a GPU run, encoding every class prompt on the CPU would take minutes.
        text.to(_classifier_weight(model).device)
    else:
        text = OfflineTextEmbeddings(_classifier_weight(model))
    objective = ContrastiveObjective(
        text,
        class_names,
        gather=train.gather,
        same_class_positive=train.same_class_positive,
        text_lr_ratio=train.text_lr_ratio,
    )
    if train.text_online:
        objective.export_classifier(model)
    logger.info(
        "contrastive objective: gather=%s, text %s%s, same-class pairs as %s",
        train.gather,
        "online" if train.text_online else "offline",
        f" (lr ratio {train.text_lr_ratio})" if train.text_online else "",
        "positives" if train.same_class_positive else "negatives",
    )
    return objective

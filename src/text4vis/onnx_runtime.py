"""Label videos with an exported model (``text4vis export``), without PyTorch.

This module imports onnxruntime, numpy, PyAV (through :mod:`text4vis.data.decoders`), Pillow
(resizing), and for new label names ``tokenizers`` (sentence-transformers / ``hf:`` text
encoders) or ``regex`` and ``ftfy`` (CLIP's BPE tokenizer); never torch. The package's own
dependencies include torch, so a machine without it installs the ``runtime`` extra's packages
and the package without its dependencies::

    pip install onnxruntime numpy av pillow simplejpeg tokenizers regex ftfy
    pip install --no-deps text4vis

::

    from text4vis.onnx_runtime import OnnxPredictor

    predictor = OnnxPredictor.from_export("exported/")           # precision="int8" for the int8 graph
    predictor.predict(["a.mp4"], top_k=5)                         # the model's own classes
    predictor.predict(["a.mp4"], labels=["dancing", "cooking"])   # new labels, via text.onnx
    # -> [[{"label": "dancing", "score": 0.93}, ...]]  (one list per video, as Predictor.predict)

Videos are read as :class:`text4vis.Predictor` reads them: the same frame samplers
(:mod:`text4vis.data.sampling`, pure numpy) and decoders; the short side resized to
``resize_size`` (bilinear with antialiasing: Pillow's filter, which torchvision's antialiased
resize of uint8 frames follows to within 1 grey level) and a centre crop (or 3 crops) of
``input_size``. Scores are the softmax over the label set of ``logit_scale * cos(video, W)``,
averaged over views; ``W`` holds the model's own classifier rows, or for other label names the
normalised mean of the text graph's embeddings of each label in every prompt template (the
prompt policy of :mod:`text4vis.models.zero_shot`, whose templates the export records).
"""

from __future__ import annotations

import hashlib
import html
import json
import logging
import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from tqdm.auto import tqdm

from text4vis.config import DataConfig
from text4vis.data.decoders import VideoDecodeError, VideoReader, open_video
from text4vis.data.labels import check_labels, match_class_names, normalize_class_name
from text4vis.data.sampling import build_sampler
from text4vis.errors import Text4VisError
from text4vis.errors import UsageError as PredictError
from text4vis.results import VideoPrediction, rankings_or_raise

__all__ = [
    "ClipBpeTokenizer",
    "ExportFolderError",
    "HFTokenizer",
    "OnnxPredictor",
    "is_export",
    "parse_views",
    "read_export",
]

logger = logging.getLogger("text4vis.onnx_runtime")

EXPORT_JSON = "export.json"  # the names of text4vis.models.export (which imports torch)
EXPORT_FORMAT = "text4vis-onnx"
SUPPORTED_VERSIONS = (1,)
PRECISIONS = ("fp32", "int8")
_RUNTIME_EXTRA = "pip install 'text4vis[runtime]'"


class ExportFolderError(Text4VisError):
    """A folder is not a (complete, readable) export, or lacks what was asked of it."""


def is_export(path: str | Path) -> bool:
    """Whether ``path`` is an export folder (holds an ``export.json`` of this format)."""
    description = Path(path) / EXPORT_JSON
    if not description.is_file():
        return False
    try:
        return json.loads(description.read_text()).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def read_export(directory: str | Path) -> dict[str, Any]:
    """The ``export.json`` of an export folder, checked.

    Raises:
        ExportFolderError: no such folder, no ``export.json`` (not an export, or an export cut
            short), or a format this runtime does not read.
    """
    directory = Path(directory)
    path = directory / EXPORT_JSON
    if not path.is_file():
        raise ExportFolderError(
            f"{path} not found: give a folder written by `text4vis export MODEL --format onnx "
            "--out DIR` (an export that stopped early has none; run it again)"
        )
    try:
        description = json.loads(path.read_text())
    except ValueError as exc:
        raise ExportFolderError(f"{path}: not valid JSON ({exc}); export the model again") from exc
    if not isinstance(description, dict) or description.get("format") != EXPORT_FORMAT:
        raise ExportFolderError(f"{path}: 'format' must be {EXPORT_FORMAT!r}; not an export")
    version = description.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise ExportFolderError(
            f"{path}: format_version {version!r} is not one this runtime reads "
            f"({list(SUPPORTED_VERSIONS)}); export again with this text4vis version"
        )
    return description


def _session(path: Path, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ExportFolderError(f"reading an export needs onnxruntime: {_RUNTIME_EXTRA}") from exc
    if not path.is_file():
        raise ExportFolderError(f"{path} not found; export the model again")
    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (``F.normalize``'s epsilon of 1e-12)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = np.exp(x - x.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Tokenizers
# ----------------------------------------------------------------------------------------------


class ClipBpeTokenizer:
    """CLIP's byte-level BPE tokenizer from an export's vocabulary and merges, in numpy.

    Computes what open_clip's default tokenizer computes: the text cleaned (ftfy, HTML entities
    unescaped twice, whitespace collapsed, lower case), split by CLIP's pattern, each piece's
    UTF-8 bytes mapped to characters and merged by rank, then ``[start] ids [end]`` truncated
    (end token kept) and zero-padded to the context length.

    Args:
        data: the content of ``tokenizer/clip_bpe.json`` (vocab, merges, byte_encoder,
            pattern, special_tokens).
        context_length: L.
        sot_id: id of the start-of-text token.
        eot_id: id of the end-of-text token.
    """

    def __init__(self, data: dict[str, Any], context_length: int, sot_id: int, eot_id: int):
        try:
            import regex
        except ImportError as exc:
            raise ExportFolderError(f"CLIP tokenization needs regex: {_RUNTIME_EXTRA}") from exc
        self.vocab: dict[str, int] = data["vocab"]
        self.ranks = {(a, b): rank for rank, (a, b) in enumerate(data["merges"])}
        self.byte_chars = {int(b): c for b, c in data["byte_encoder"].items()}
        self.pattern = regex.compile(data["pattern"], regex.IGNORECASE)
        self.special = set(data["special_tokens"])
        self.context_length = int(context_length)
        self.sot_id, self.eot_id = int(sot_id), int(eot_id)
        self._pieces: dict[str, list[str]] = {}

    @staticmethod
    def clean(text: str) -> str:
        """ftfy, HTML unescaping (twice), collapsed whitespace, lower case."""
        try:
            import ftfy
        except ImportError as exc:
            raise ExportFolderError(f"CLIP tokenization needs ftfy: {_RUNTIME_EXTRA}") from exc
        text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
        return " ".join(text.split()).lower()

    def merge(self, word: str) -> list[str]:
        """BPE of one byte-mapped word: symbols start as characters (the last one marked as the
        end of a word); the adjacent pair of lowest rank is merged everywhere, until no pair
        has a rank."""
        if word in self.special:
            return [word]
        cached = self._pieces.get(word)
        if cached is not None:
            return cached
        symbols = [*word[:-1], word[-1] + "</w>"]
        while len(symbols) > 1:
            pairs = list(zip(symbols, symbols[1:]))
            best = min(pairs, key=lambda pair: self.ranks.get(pair, math.inf))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(symbols):
                if i + 1 < len(symbols) and (symbols[i], symbols[i + 1]) == best:
                    merged.append(symbols[i] + symbols[i + 1])
                    i += 2
                else:
                    merged.append(symbols[i])
                    i += 1
            symbols = merged
        self._pieces[word] = symbols
        return symbols

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, without the start and end tokens."""
        ids: list[int] = []
        for piece in self.pattern.findall(self.clean(text)):
            word = "".join(self.byte_chars[b] for b in piece.encode("utf-8"))
            ids.extend(self.vocab[symbol] for symbol in self.merge(word))
        return ids

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``{"input_ids": int64 [N, L]}``."""
        out = np.zeros((len(texts), self.context_length), dtype=np.int64)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > self.context_length:
                ids = ids[: self.context_length]
                ids[-1] = self.eot_id
            out[row, : len(ids)] = ids
        return {"input_ids": out}


class HFTokenizer:
    """A Hugging Face ``tokenizer.json`` read with the ``tokenizers`` library: padded to the
    longest text, truncated at ``max_length``.

    Args:
        path: the ``tokenizer.json``.
        max_length: truncation length (the encoder's maximum sequence length).
        pad_id: the padding token's id.
        pad_token: the padding token.
    """

    def __init__(self, path: Path, max_length: int, pad_id: int, pad_token: str) -> None:
        try:
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise ExportFolderError(
                f"this text encoder needs tokenizers: {_RUNTIME_EXTRA}"
            ) from exc
        if not path.is_file():
            raise ExportFolderError(f"{path} not found; export the model again")
        self.tokenizer = Tokenizer.from_file(str(path))
        self.tokenizer.enable_truncation(max_length=int(max_length))
        self.tokenizer.enable_padding(pad_id=int(pad_id), pad_token=pad_token)

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """``{"input_ids", "attention_mask"}``: int64 ``[N, L]`` each."""
        encodings = self.tokenizer.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }


# ----------------------------------------------------------------------------------------------
# Frames
# ----------------------------------------------------------------------------------------------


def resize_short_side(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[T, H, W, 3]`` with the short side resized to ``size`` (the long side to
    ``int(size * long / short)``, as torchvision computes it), bilinear with antialiasing."""
    from PIL import Image

    t, h, w, _ = frames.shape
    if w <= h:
        new_w, new_h = size, int(size * h / w)
    else:
        new_w, new_h = int(size * w / h), size
    if (new_h, new_w) == (h, w):
        return frames
    out = np.empty((t, new_h, new_w, 3), dtype=np.uint8)
    for i, frame in enumerate(frames):
        out[i] = np.asarray(
            Image.fromarray(frame).resize((new_w, new_h), Image.Resampling.BILINEAR)
        )
    return out


def crop_views(frames: np.ndarray, size: int, num_crops: int) -> list[np.ndarray]:
    """Square crops of ``[..., H, W, 3]``: the centre one (torchvision's rounding), or three
    along the long side (as :func:`text4vis.data.transforms.three_crops`, which needs torch)."""
    h, w = frames.shape[-3:-1]
    if min(h, w) < size:
        raise ValueError(f"cannot take {size}px crops from {h}x{w} frames")
    if num_crops == 1:
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
        return [frames[..., top : top + size, left : left + size, :]]
    if w >= h:
        top = (h - size) // 2
        return [
            frames[..., top : top + size, x : x + size, :] for x in (0, (w - size) // 2, w - size)
        ]
    left = (w - size) // 2
    return [
        frames[..., y : y + size, left : left + size, :] for y in (0, (h - size) // 2, h - size)
    ]


def parse_views(views: str) -> tuple[int, int]:
    """``"CLIPSxCROPS"`` -> ``(clips, crops)``; crops 1 or 3. Raises ValueError otherwise."""
    clips, _, crops = views.lower().partition("x")
    try:
        num_clips, num_crops = int(clips), int(crops)
    except ValueError:
        num_clips = num_crops = 0
    if num_clips < 1 or num_crops not in (1, 3):
        raise ValueError(
            f"views {views!r}: expected CLIPSxCROPS with CROPS 1 or 3, e.g. 1x1 or 4x3"
        )
    return num_clips, num_crops


# ----------------------------------------------------------------------------------------------
# The predictor
# ----------------------------------------------------------------------------------------------


class OnnxPredictor:
    """Ranked labels for videos with an exported model, on ONNX Runtime (no PyTorch).

    The counterpart of :class:`text4vis.Predictor`: the same arguments where they apply, the
    same results (:meth:`predict`, :meth:`predict_files`).

    Args:
        directory: the export folder.
        precision: ``fp32`` (``video.onnx``) or ``int8`` (``video.int8.onnx``, written by
            ``text4vis export --int8``).
        templates: prompt templates for new labels: None (the export's), ``"classname"``, a
            template-set name, one template with ``{}``, or a list of templates.
        views: ``"CLIPSxCROPS"``, e.g. ``"1x1"`` or ``"4x3"``.
        batch_size: videos per run of the video graph.
        num_workers: threads decoding the videos of a batch (0 = in the calling thread).
        threads: ONNX Runtime's intra-op threads (0 = its default, all cores).
        progress: show a progress bar over the batches of :meth:`embed_videos`.

    Raises:
        ExportFolderError: not an export, or no int8 graph when ``precision="int8"``.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        precision: str = "fp32",
        templates: str | Sequence[str] | None = None,
        views: str = "1x1",
        batch_size: int = 8,
        num_workers: int = 0,
        threads: int = 0,
        progress: bool = False,
    ) -> None:
        self.directory = Path(directory)
        self.description = read_export(self.directory)
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: choose one of {list(PRECISIONS)}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be 0 or more, got {num_workers}")
        video = self.description["video"]
        file = video["file"] if precision == "fp32" else video.get("int8_file")
        if file is None:
            raise ExportFolderError(
                f"{self.directory}: the export has no int8 graph; export with --int8, or use "
                "precision fp32"
            )
        self.precision = precision
        self.threads = threads
        self.video_session = _session(self.directory / file, threads)
        self.video_outputs: list[str] = list(video["outputs"])
        pre = self.description["preprocessing"]
        self.num_frames = int(pre["num_segments"])
        self.input_size = int(pre["input_size"])
        self.resize_size = int(pre["resize_size"])
        self.frame_template = str(pre["frame_template"])
        self.frame_start_index = int(pre["frame_start_index"])
        self.num_clips, self.num_crops = parse_views(views)
        self.sampler = build_sampler(
            pre["sampling"],
            self.num_frames,
            train=False,
            num_clips=self.num_clips,
            dense_stride=int(pre["dense_stride"]),
        )
        self.logit_scale = float(self.description["logit_scale"])
        self.labels: list[str] = list(self.description["labels"])
        classifier = self.description.get("classifier")
        self.classifier_initializer = classifier["initializer"] if classifier else None
        self._weight: np.ndarray | None = None
        if classifier:
            self._weight = np.load(self.directory / classifier["file"]).astype(np.float32)
        self.templates = templates
        self.batch_size, self.num_workers = batch_size, num_workers
        self.progress = progress
        self._identity: str | None = None
        self._text_session: Any = None
        self._tokenizer: Any = None
        self._classifiers: dict[tuple[tuple[str, ...], tuple[str, ...]], np.ndarray] = {}

    @classmethod
    def from_export(cls, directory: str | Path, **kwargs: Any) -> OnnxPredictor:
        """A predictor for an export folder; keyword arguments as for :class:`OnnxPredictor`."""
        return cls(directory, **kwargs)

    # ------------------------------------------------------------------------------------------
    # The model: what a video index records of it (text4vis.search.VideoEmbedder)
    # ------------------------------------------------------------------------------------------

    @property
    def data(self) -> DataConfig:
        """How videos are found and read, as the data settings of a PyTorch
        :class:`~text4vis.predict.Predictor` say it (a video index compares them)."""
        pre = self.description["preprocessing"]
        return DataConfig(
            num_segments=self.num_frames,
            input_size=self.input_size,
            resize_size=self.resize_size,
            sampling=pre["sampling"],
            dense_stride=int(pre["dense_stride"]),
            decoder="pyav",  # read_views opens videos with open_video's default, PyAV
            frame_template=self.frame_template,
            frame_start_index=self.frame_start_index,
        )

    @property
    def embed_dim(self) -> int:
        """D, the width of the video and text embeddings."""
        return int(self.description["embed_dim"])

    @property
    def arch(self) -> str:
        """The source model's backbone architecture, as the export records it."""
        return str((self.description.get("model") or {}).get("arch", ""))

    def model_identity(self) -> str:
        """The identity of the embeddings this export computes: the source model's content hash
        (``source.identity`` of ``export.json``, the hash a :class:`text4vis.Predictor` of that
        model gives), so an index of the model is searched with its export and the reverse. An
        export written before the hash was recorded gets ``onnx:`` and a hash of its fp32 video
        graph, classifier and text graph: comparable with no PyTorch model (export it again to
        mix them)."""
        if self._identity is None:
            recorded = (self.description.get("source") or {}).get("identity")
            if isinstance(recorded, str) and recorded:
                self._identity = recorded
            else:
                digest = hashlib.sha256()
                block = self.description.get("text") or {}
                classifier = self.description.get("classifier") or {}
                for name in (
                    self.description["video"]["file"],
                    classifier.get("file"),
                    block.get("file"),
                ):
                    if name:
                        with open(self.directory / name, "rb") as handle:
                            for part in iter(lambda: handle.read(1 << 24), b""):
                                digest.update(part)
                self._identity = "onnx:" + digest.hexdigest()
        return self._identity

    def export_record(self) -> dict[str, Any]:
        """What a video index records of the export beside the model's identity: the SHA-256
        of its ``export.json`` and the graph's precision."""
        content = (self.directory / EXPORT_JSON).read_bytes()
        return {
            "export_json_sha256": hashlib.sha256(content).hexdigest(),
            "precision": self.precision,
        }

    # ------------------------------------------------------------------------------------------
    # Text
    # ------------------------------------------------------------------------------------------

    @property
    def has_text(self) -> bool:
        """Whether the export has a text graph (new label names work)."""
        return self.description.get("text") is not None

    def _text(self) -> tuple[Any, Any]:
        if self._text_session is None:
            block = self.description.get("text")
            if block is None:
                raise PredictError(
                    f"{self.directory}: the export has no text graph, so it scores only the "
                    f"model's own classes ({', '.join(self.labels[:10])}); export again with the "
                    "text side to use other label names"
                )
            spec = block["tokenizer"]
            if spec["kind"] == "clip-bpe":
                data = json.loads((self.directory / spec["file"]).read_text())
                self._tokenizer = ClipBpeTokenizer(
                    data, spec["context_length"], spec["sot_id"], spec["eot_id"]
                )
            elif spec["kind"] == "hf":
                self._tokenizer = HFTokenizer(
                    self.directory / spec["file"],
                    spec["max_length"],
                    spec["pad_id"],
                    spec["pad_token"],
                )
            else:
                raise ExportFolderError(
                    f"{self.directory / EXPORT_JSON}: unknown text.tokenizer.kind "
                    f"{spec['kind']!r}; expected 'clip-bpe' or 'hf'"
                )
            self._text_session = _session(self.directory / block["file"], self.threads)
        return self._text_session, self._tokenizer

    def encode_text(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """L2-normalised text embeddings ``[N, D]`` (float32) through the text graph."""
        session, tokenizer = self._text()
        chunks = [
            session.run(None, tokenizer(list(texts[i : i + batch_size])))[0]
            for i in range(0, len(texts), batch_size)
        ]
        if not chunks:
            return np.zeros((0, int(self.description["embed_dim"])), dtype=np.float32)
        return np.concatenate(chunks).astype(np.float32)

    def resolve_templates(self, templates: str | Sequence[str] | None = None) -> list[str]:
        """The prompt templates of new labels (see :class:`OnnxPredictor`'s ``templates``)."""
        templates = templates if templates is not None else self.templates
        if templates is None:
            recorded = (self.description.get("text") or {}).get("templates")
            if recorded is None:
                raise PredictError(
                    "this model learned CoOp prompt vectors for its own classes, so it has no "
                    "prompt for new class names; give prompt templates explicitly "
                    "(templates='a video of {}.')"
                )
            return list(recorded)
        sets = self.description.get("template_sets", {})
        if isinstance(templates, str):
            if templates == "classname":
                return ["{}"]
            if templates in sets:
                return list(sets[templates])
            chosen = [templates]
        else:
            chosen = list(templates)
        for template in chosen:
            if template.count("{}") != 1:
                raise PredictError(
                    f"template {template!r}: give 'classname', a template set "
                    f"({', '.join(sorted(sets))}) or templates with exactly one '{{}}' where the "
                    "label goes, e.g. 'a video of {}.'"
                )
        if not chosen:
            raise PredictError("the template list is empty")
        return chosen

    def classifier_for(
        self,
        labels: Sequence[str] | None = None,
        templates: str | Sequence[str] | None = None,
    ) -> tuple[list[str], np.ndarray]:
        """The label names and the normalised classifier ``W [C, D]`` for a label set (the rules
        of :meth:`text4vis.Predictor.classifier_for`)."""
        own = self.labels if self._weight is not None else []
        if labels is None:
            if not own:
                raise PredictError(
                    "this model has no classes of its own; give label names (labels=[...])"
                )
            return list(own), self._weight  # type: ignore[return-value]
        names = check_labels(labels)
        rows = match_class_names(names, own)
        if own and None not in rows:
            return names, self._weight[np.array(rows, dtype=np.int64)]  # type: ignore[index]
        if own and self.classifier_initializer != "text":
            raise PredictError(
                f"this model was trained with a {self.classifier_initializer!r} classifier, so "
                "its video embeddings are not aligned with text and cannot score new labels; use "
                f"labels among its own classes ({', '.join(own[:10])}"
                f"{' ...' if len(own) > 10 else ''})"
            )
        chosen = self.resolve_templates(templates)
        key = (tuple(names), tuple(chosen))
        if key not in self._classifiers:
            words = [normalize_class_name(n) for n in names]
            texts = [t.format(w) for t in chosen for w in words]  # K*C texts, template-major
            embeddings = self.encode_text(texts).reshape(len(chosen), len(names), -1)  # [K, C, D]
            self._classifiers[key] = _normalize(embeddings.mean(axis=0))  # [C, D]
            logger.info(
                "built a text classifier for %d labels x %d templates", len(names), len(chosen)
            )
        return names, self._classifiers[key]

    # ------------------------------------------------------------------------------------------
    # Videos
    # ------------------------------------------------------------------------------------------

    def open_video(self, path: str | Path) -> VideoReader:
        """A reader of a video file or frame folder with the export's frame names (one
        decoding thread)."""
        return open_video(
            str(path),
            frame_template=self.frame_template,
            start_index=self.frame_start_index,
            threads=1,
        )

    def sample_frames(self, num_frames: int) -> np.ndarray:
        """The frame numbers of each evaluation clip of a video of ``num_frames`` frames: int64
        ``[clips, T]`` (evaluation samplers draw nothing at random)."""
        return self.sampler(num_frames, np.random.default_rng(0))

    def read_views(self, path: str | Path) -> np.ndarray:
        """Decode, sample, resize and crop one video: uint8 ``[V, T, S, S, 3]`` (V = clips x
        crops, clip-major, as the evaluation datasets order them).

        Raises:
            VideoDecodeError: the video cannot be read.
        """
        reader: Any = self.open_video(path)
        try:
            indices = self.sample_frames(reader.num_frames)  # [clips, T]
            frames = reader.frames(indices.reshape(-1))  # [clips*T, H, W, 3]
        finally:
            if hasattr(reader, "close"):
                reader.close()
        frames = resize_short_side(np.asarray(frames), self.resize_size)
        clips = frames.reshape(indices.shape[0], indices.shape[1], *frames.shape[1:])
        views = [v for clip in clips for v in crop_views(clip, self.input_size, self.num_crops)]
        return np.ascontiguousarray(np.stack(views))  # [V, T, S, S, 3]

    def run_video(self, clips: np.ndarray) -> dict[str, np.ndarray]:
        """The video graph on uint8 clips ``[B, T, S, S, 3]``: ``{"embeddings": [B, D]}`` and,
        for a model with a classifier, ``{"logits": [B, C]}`` (its own classes)."""
        outputs = self.video_session.run(None, {"video": np.ascontiguousarray(clips)})
        return dict(zip(self.video_outputs, outputs))

    def load_views(self, path: str | Path) -> np.ndarray:
        """:meth:`read_views`, any failure to read the video raised as a VideoDecodeError (a
        frame too small to crop is the video's fault, as :class:`text4vis.Predictor` reports
        it).

        Raises:
            VideoDecodeError: the video cannot be read.
        """
        try:
            return self.read_views(path)
        except VideoDecodeError:
            raise
        except Exception as exc:  # reported per video, as Predictor does
            raise VideoDecodeError(str(path), f"{type(exc).__name__}: {exc}") from exc

    def _read(self, path: str) -> np.ndarray | str:
        try:
            return self.load_views(path)
        except VideoDecodeError as exc:
            return exc.reason

    def embed_videos(
        self, videos: Sequence[str | Path]
    ) -> tuple[dict[int, np.ndarray], dict[int, str]]:
        """Video embeddings of every view: position -> float32 ``[V, D]`` (before L2
        normalisation), and position -> reason for the videos that could not be read."""
        paths = [str(v) for v in videos]
        embeddings: dict[int, np.ndarray] = {}
        errors: dict[int, str] = {}
        pool = ThreadPoolExecutor(self.num_workers) if self.num_workers > 0 else None
        bar = None
        if self.progress and paths:
            bar = tqdm(total=len(paths), desc="predict", unit="video", dynamic_ncols=True)
        try:
            for start in range(0, len(paths), self.batch_size):
                batch = paths[start : start + self.batch_size]
                read = list(pool.map(self._read, batch)) if pool else [self._read(p) for p in batch]
                done = [(start + i, v) for i, v in enumerate(read) if isinstance(v, np.ndarray)]
                for i, value in enumerate(read):
                    if isinstance(value, str):
                        errors[start + i] = value
                if bar is not None:
                    bar.update(len(batch))
                if not done:
                    continue
                stacked = np.concatenate([views for _, views in done])  # [sum V, T, S, S, 3]
                out = self.run_video(stacked)["embeddings"]  # [sum V, D]
                offset = 0
                for index, views in done:
                    embeddings[index] = out[offset : offset + len(views)]
                    offset += len(views)
        finally:
            if pool is not None:
                pool.shutdown()
            if bar is not None:
                bar.close()
        return embeddings, errors

    def scores(self, embeddings: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Per-video scores ``[N, C]`` from view embeddings ``[N, V, D]`` and ``W [C, D]``: the
        softmax of ``logit_scale * cos`` per view, averaged over the views."""
        logits = self.logit_scale * _normalize(embeddings) @ _normalize(weight).T  # [N, V, C]
        return _softmax(logits).mean(axis=1)

    # ------------------------------------------------------------------------------------------
    # One video at a time (the server's interface: text4vis.serve.model.ServedModel)
    # ------------------------------------------------------------------------------------------

    @property
    def class_names(self) -> list[str]:
        """The model's own classes (empty when the export has no classifier)."""
        return list(self.labels) if self._weight is not None else []

    def embed_views(self, views: Sequence[np.ndarray]) -> np.ndarray:
        """One run of the video graph over several videos' views (each of :meth:`load_views`,
        the same V): ``N x [V, T, S, S, 3] -> float32 [N, V, D]``, before L2 normalisation."""
        stacked = np.stack(list(views))  # [N, V, T, S, S, 3]
        n, v = stacked.shape[:2]
        out = self.run_video(stacked.reshape(n * v, *stacked.shape[2:]))["embeddings"]
        return np.asarray(out, dtype=np.float32).reshape(n, v, -1)  # [N, V, D]

    def score_views(self, embeddings: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """:meth:`scores` (the name :class:`text4vis.Predictor` gives it for NumPy arrays)."""
        return self.scores(embeddings, weight)

    def trim_classifiers(self, keep: int) -> None:
        """Forget the oldest cached text classifiers beyond ``keep`` label sets."""
        while len(self._classifiers) > max(keep, 0):
            self._classifiers.pop(next(iter(self._classifiers)))

    def timeline(
        self,
        video: str | Path,
        *,
        window: float,
        stride: float | None = None,
        labels: Sequence[str] | None = None,
        top_k: int | None = 5,
    ) -> NoReturn:
        """Refused: timelines of long videos (:meth:`text4vis.Predictor.timeline`) run on the
        PyTorch model only.

        Raises:
            UsageError: always, naming the reason and what to do instead.
        """
        raise PredictError(
            f"{self.directory} is an export (text4vis export), and timelines of long videos "
            "run on the PyTorch model only; use the model folder the export was made from "
            "(--model MODEL_DIR) for timelines"
        )

    def predict_files(
        self,
        videos: Sequence[str | Path],
        labels: Sequence[str] | None = None,
        top_k: int | None = 5,
        *,
        templates: str | Sequence[str] | None = None,
    ) -> list[VideoPrediction]:
        """Like :meth:`predict`, but an unreadable video gives an error entry instead of raising.

        Returns:
            One :class:`~text4vis.predict.VideoPrediction` per video, in the order given.
        """
        if isinstance(videos, (str, Path)):
            videos = [videos]
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be at least 1 (or None for all labels), got {top_k}")
        names, weight = self.classifier_for(labels, templates)  # text side first: fails fast
        embeddings, errors = self.embed_videos(videos)
        results = [VideoPrediction(str(video)) for video in videos]
        done = sorted(embeddings)
        if done:
            scores = self.scores(np.stack([embeddings[i] for i in done]), weight)  # [N, C]
            k = len(names) if top_k is None else min(top_k, len(names))
            order = np.argsort(-scores, axis=-1, kind="stable")[:, :k]  # best first
            for row, index in enumerate(done):
                results[index].predictions = [
                    {"label": names[c], "score": float(scores[row, c])} for c in order[row]
                ]
        for index, reason in errors.items():
            results[index].error = reason
        failed = len(errors)
        logger.info("labelled %d videos (%d unreadable)", len(results) - failed, failed)
        return results

    def predict(
        self,
        videos: Sequence[str | Path],
        labels: Sequence[str] | None = None,
        top_k: int | None = 5,
        *,
        templates: str | Sequence[str] | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Ranked labels for each video, as :meth:`text4vis.Predictor.predict`.

        Returns:
            Per video, ``[{"label": str, "score": float}, ...]`` sorted by score, best first.

        Raises:
            VideoDecodeError: some videos could not be read (all are named).
        """
        results = self.predict_files(videos, labels, top_k, templates=templates)
        return rankings_or_raise(results, "OnnxPredictor.predict_files")

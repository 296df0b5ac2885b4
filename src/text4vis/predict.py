"""Recognise your own videos with your own label names.

:class:`Predictor` wraps a :class:`~text4vis.models.video.VideoRecognizer` for end users: give it
video files (or frame folders) and a list of label names, get back, per video, the labels ranked
by score::

    predictor = Predictor.from_pretrained("runs/k400/model")     # a trained model (or a .pt)
    predictor = Predictor.from_backbone("ViT-B-16", "ViT-B-16.pt")  # zero-shot CLIP, mean pooling
    predictor.predict(["a.mp4", "b.mp4"], labels=["dancing", "cooking"], top_k=5)
    # -> [[{"label": "dancing", "score": 0.93}, {"label": "cooking", "score": 0.07}], [...]]

Scores are the softmax over the label set of ``logit_scale * cos(video, W)``, where ``W [C, D]``
holds one row per label; with several views per video (``views="4x3"``) the per-view softmax
probabilities are averaged (as in evaluation), so the scores of a video sum to 1 over the labels.

Where the rows of ``W`` come from:

- ``labels=None``: the model's own classifier and class names (a trained model).
- labels that are all among the model's own class names: the matching rows of its own
  classifier (whatever initialiser trained it).
- any other labels: a text classifier built from the labels with the model's text encoder and
  prompt templates (zero-shot, the paper's section 3.5; the prompt policy of
  :mod:`text4vis.models.zero_shot`). It is built once per label set and
  cached under a content hash of (labels, templates, encoder), so repeated calls with the same
  labels never run the text encoder again.

Videos are decoded in DataLoader workers with the data module's evaluation sampler and
transforms, batched through the model under ``torch.inference_mode``. An unreadable video does not
stop the others: :meth:`Predictor.predict_files` returns an error entry for it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from text4vis.config import Config, DataConfig, EvalConfig, ModelConfig
from text4vis.data.annotations import VideoRecord
from text4vis.data.dataset import VideoDataset
from text4vis.data.decoders import FrameFolderReader, VideoDecodeError, VideoReader, open_video
from text4vis.data.labels import check_labels, match_class_names
from text4vis.data.loaders import build_loader
from text4vis.data.sampling import build_sampler
from text4vis.data.transforms import CLIP_MEAN, CLIP_STD
from text4vis.engine.loops import aggregate_views, iterate_views, parse_views, prepare_inference
from text4vis.errors import UsageError
from text4vis.live import LiveSession
from text4vis.models.backbones import create_clip, embed_dim_of
from text4vis.models.factory import load_saved_model
from text4vis.models.integrity import model_identity
from text4vis.models.temporal import build_temporal_head
from text4vis.models.text import ClipTextEncoder, TextEncoder, build_text_encoder
from text4vis.models.video import VideoRecognizer, scaled_cosine_logits
from text4vis.models.zero_shot import build_zero_shot_classifier, zero_shot_templates
from text4vis.results import VideoPrediction, rankings_or_raise
from text4vis.runtime import inference_precision, select_device
from text4vis.timeline import Timeline, build_timeline, embed_video_windows

__all__ = [
    "PredictError",
    "Predictor",
    "VideoPrediction",
]

logger = logging.getLogger("text4vis.predict")


PredictError = UsageError  # the older name, kept importable


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


class _ReportingDataset:
    """Wraps an evaluation dataset so that any failure to load a video becomes a skipped item.

    The data module already turns decode errors into skipped items; this also catches errors of
    other kinds (a sampler or transform rejecting an odd video) so that one bad file cannot stop
    the others. The reason is kept and shown to the user, never hidden.
    """

    def __init__(self, dataset: Any, known_errors: dict[int, str] | None = None) -> None:
        self.dataset = dataset
        self.known_errors = dict(known_errors or {})  # index -> reason found before loading
        self.video_shape = dataset.video_shape

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        try:
            if index in self.known_errors:
                raise VideoDecodeError(self.dataset.path_of(index), self.known_errors[index])
            return self.dataset[index]
        except VideoDecodeError as exc:
            reason = exc.reason
        except Exception as exc:  # reported per video: see the class docstring
            reason = f"{type(exc).__name__}: {exc}"
        return {
            "video": None,
            "label": 0,
            "index": index,
            "path": self.dataset.path_of(index),
            "reason": reason,
        }


# ----------------------------------------------------------------------------------------------
# The predictor
# ----------------------------------------------------------------------------------------------


def _image_size_of(model: VideoRecognizer) -> int:
    if model.image_size is not None:
        return int(model.image_size)
    size = getattr(model.visual, "image_size", None)
    if isinstance(size, (tuple, list)):
        if len(set(size)) != 1:
            raise PredictError(f"non-square model input {tuple(size)} is not supported")
        size = size[0]
    if size is None:
        raise PredictError("cannot tell the model's input size; pass image_size=")
    return int(size)


class Predictor:
    """Ranked labels for videos, with a trained model or a CLIP backbone.

    Build it with :meth:`from_pretrained` (any saved model) or :meth:`from_backbone`
    (or pass a model). Moves the model to ``device`` and puts it in evaluation mode.

    Args:
        model: the video recognizer.
        text_encoder: encoder for new label names (built on first use when None; see
            ``text_encoder_factory``).
        text_encoder_factory: builds the text encoder when first needed (default: the model
            config's text encoder, with its weights and fixed projection).
        encoder_id: identity of the text encoder in classifier cache keys (default: the given
            encoder's description, else the model config's text encoder, weights and width).
        templates: prompt templates for new labels: None (the model's own prompt settings),
            ``"classname"``, a template-set name (``"kinetics"``, ``"short"``), one template with
            ``{}``, or a list of templates (averaged).
        data: how videos are read and cut into views (default: derived from the model: its frame
            count and input size, resize to 256/224 of it, PyAV).
        views: ``"CLIPSxCROPS"``, e.g. ``"1x1"`` or ``"4x3"``.
        batch_size: videos per forward pass.
        num_workers: DataLoader decoding processes (0 = decode in this process).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        precision: ``auto`` (bf16 on a GPU, fp32 on the CPU) | ``fp32`` | ``bf16`` | ``fp16`` |
            ``int8`` (CPU: dynamic quantization of the linear layers, the fastest there; see
            :data:`text4vis.runtime.INFERENCE_PRECISIONS`).
        progress: show a progress bar over batches.
    """

    def __init__(
        self,
        model: VideoRecognizer,
        *,
        text_encoder: TextEncoder | None = None,
        text_encoder_factory: Callable[[], TextEncoder] | None = None,
        encoder_id: str | None = None,
        templates: str | Sequence[str] | None = None,
        data: DataConfig | None = None,
        views: str = "1x1",
        batch_size: int = 8,
        num_workers: int = 0,
        device: str = "auto",
        precision: str = "auto",
        progress: bool = False,
    ) -> None:
        self.device = select_device(device)
        # int8 rebuilds the model's linear layers in place (CPU only); the others autocast.
        self.precision = inference_precision(precision, self.device, source="precision")
        # A video index records the identity of the weights it was embedded with; int8 rewrites
        # them, so their identity is taken first (benchmarks/cpu_inference.py measures the int8
        # embeddings at cosine >= 0.99 to fp32's: comparable in one index). Otherwise it is
        # hashed on first use and kept: building an index asks for it twice.
        self._loaded_identity: str | None = None
        if self.precision == "int8":
            self._loaded_identity = self._hash(model)
        self.model, self._autocast = prepare_inference(
            model.to(self.device).eval(), self.precision, self.device
        )
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        if num_workers < 0:
            raise UsageError(f"num_workers must be 0 or more, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.progress = progress
        self.num_clips, self.num_crops = parse_views(views)
        self.data = data if data is not None else self.default_data_config(model)
        self.templates = templates
        self._text_encoder = text_encoder
        self._text_encoder_factory = text_encoder_factory or self._default_text_encoder
        cfg = model.model_cfg
        if encoder_id is None and text_encoder is not None:
            encoder_id = json.dumps(text_encoder.describe(), sort_keys=True)
        self.encoder_id = encoder_id or (
            f"{cfg.text_encoder}|{cfg.text_pretrained or cfg.pretrained}|{cfg.arch}|"
            f"seed={cfg.classifier_seed}|D={model.embed_dim}"
        )
        self._classifiers: dict[str, torch.Tensor] = {}  # content hash -> normalised W [C, D]

    # ------------------------------------------------------------------------------------------
    # Construction
    # ------------------------------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, path: str | Path, **kwargs: Any) -> Predictor:
        """A predictor for a saved model: a model folder (a training run's ``model/``, or
        ``text4vis import-official --out DIR``), a training checkpoint
        (``runs/.../checkpoints/last.pt``) or an official checkpoint, read by
        :func:`text4vis.models.factory.load_saved_model`. Keyword arguments go to
        :class:`Predictor`.

        A checkpoint's data settings (frames, input size, resize, decoder) are its config's; a
        folder's are the preprocessing it records (see :meth:`default_data_config`).

        Raises:
            MissingFileError: nothing at ``path``, or a folder without its files.
            CheckpointError: a file that is not a complete text4vis or official checkpoint.
            PredictError: a checkpoint trained without the frozen classifier.
        """
        saved = load_saved_model(path)
        if saved.kind == "checkpoint":
            objective = saved.config.train.objective
            if objective != "ce":
                raise PredictError(
                    f"{path}: trained with the {objective!r} objective; predict supports models "
                    "trained with the frozen classifier (train.objective=ce)"
                )
            if saved.model.classifier is None:
                raise PredictError(f"{path}: the checkpoint's model holds no classifier weights")
            saved.model.classifier_metadata["checkpoint"] = str(path)
            kwargs.setdefault("data", saved.config.data)
        return cls(saved.model, **kwargs)

    @classmethod
    def from_backbone(
        cls,
        arch: str,
        weights: str = "",
        *,
        num_frames: int = 8,
        image_size: int | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Zero-shot CLIP: a backbone's image encoder with mean pooling over frames (TAP) and its
        own text tower for the labels.

        Args:
            arch: open_clip architecture (``ViT-B-16``, ``RN50``, ``tiny-vit`` ...).
            weights: open_clip pretrained tag or local weight file (``""`` = random weights,
                only useful for tests).
            num_frames: T, frames sampled per video.
            image_size: input resolution (None = the architecture's).
            **kwargs: passed to :class:`Predictor`.
        """
        if not weights:
            logger.warning(
                "%s with random weights: the predictions mean nothing (tests only); pass weights",
                arch,
            )
        clip: Any = create_clip(arch, weights, image_size=image_size)
        embed_dim = embed_dim_of(clip)
        model_cfg = ModelConfig(arch=arch, pretrained=weights, temporal="mean")
        visual: nn.Module = clip.visual
        model = VideoRecognizer(
            visual,
            build_temporal_head("mean", embed_dim=embed_dim, visual=visual),
            None,
            [],
            embed_dim=embed_dim,
            logit_scale=float(clip.logit_scale.detach().exp()),
            num_frames=num_frames,
            image_size=image_size,
            model_cfg=model_cfg,
        )
        # The text tower shares the CLIP model (and so its device) with the image encoder.
        encoder = ClipTextEncoder(
            clip,
            open_clip.get_tokenizer(arch.replace("/", "-")),
            f"clip:{arch}/{weights or 'random'}",
        )
        predictor = cls(model, text_encoder=encoder, **kwargs)
        clip.to(predictor.device)
        return predictor

    def model_identity(self) -> str:
        """The content hash of the model as it was given
        (:func:`text4vis.models.integrity.model_identity`), before any int8 rewrite: what a video
        index checks, so that an index embedded at one precision is searched and updated at
        another. Hashed once per predictor."""
        if self._loaded_identity is None:
            self._loaded_identity = self._hash(self.model)
        return self._loaded_identity

    @staticmethod
    def _hash(model: VideoRecognizer) -> str:
        return model_identity(model)

    @property
    def embed_dim(self) -> int:
        """D, the width of the video and text embeddings."""
        return int(self.model.embed_dim)

    @property
    def arch(self) -> str:
        """The backbone architecture's name (``model.arch`` of the model's config)."""
        return str(getattr(self.model.model_cfg, "arch", ""))

    @staticmethod
    def default_data_config(model: VideoRecognizer) -> DataConfig:
        """Data settings for a model: the preprocessing recorded by ``save_pretrained`` when the
        folder has it, else its T and input size with the short side resized to 256/224 of the
        input size; segment sampling, PyAV."""
        recorded = getattr(model, "preprocessing", None)
        if recorded is not None:
            mean, std = list(recorded["mean"]), list(recorded["std"])
            if not (_close(mean, CLIP_MEAN) and _close(std, CLIP_STD)):
                raise PredictError(
                    f"the model folder records mean {mean} / std {std}, but text4vis transforms "
                    f"normalise with CLIP's {list(CLIP_MEAN)} / {list(CLIP_STD)}"
                )
            return DataConfig(
                num_segments=int(recorded["num_segments"]),
                input_size=int(recorded["input_size"]),
                resize_size=int(recorded["resize_size"]),
            )
        size = _image_size_of(model)
        return DataConfig(
            num_segments=model.num_frames,
            input_size=size,
            resize_size=int(round(size * 256 / 224)),
        )

    def _default_text_encoder(self) -> TextEncoder:
        cfg = self.model.model_cfg
        if cfg.text_encoder == "clip" and not (cfg.text_pretrained or cfg.pretrained):
            raise PredictError(
                "the model config names no CLIP weights (model.pretrained and "
                "model.text_pretrained are empty), so its text tower would be random and new "
                "labels meaningless; use the model's own classes (omit --labels / labels=None, "
                "or give a subset of them), or rebuild with model.text_pretrained set"
            )
        encoder = build_text_encoder(cfg, embed_dim=self.model.embed_dim)
        if isinstance(encoder, ClipTextEncoder):
            # Only the text tower is used; drop the second copy of the image encoder.
            encoder.model.visual = nn.Identity()
            encoder.model.to(self.device)
        return encoder

    @property
    def text_encoder(self) -> TextEncoder:
        """The text encoder for new labels (built on first access)."""
        if self._text_encoder is None:
            self._text_encoder = self._text_encoder_factory()
        return self._text_encoder

    # ------------------------------------------------------------------------------------------
    # Classifiers
    # ------------------------------------------------------------------------------------------

    def classifier_key(self, labels: Sequence[str], templates: Sequence[str]) -> str:
        """Content hash of a text classifier: labels, templates and text-encoder identity."""
        payload = json.dumps(
            {"labels": list(labels), "templates": list(templates), "encoder": self.encoder_id},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode("utf-8")).hexdigest()

    def classifier_for(
        self,
        labels: Sequence[str] | None = None,
        templates: str | Sequence[str] | None = None,
    ) -> tuple[list[str], torch.Tensor]:
        """The label names and normalised classifier ``W [C, D]`` (on the CPU) for a label set.

        Args:
            labels: None for the model's own classes; else label names (see the module doc for
                when the model's own rows are used and when a text classifier is built).
            templates: override the predictor's templates for this label set.

        Raises:
            LabelError: a bad label list.
            PredictError: no labels and no own classes, or a model that cannot take new labels.
        """
        model = self.model
        own = list(model.class_names) if model.classifier is not None else []
        if labels is None:
            if not own:
                raise PredictError(
                    "this model has no classes of its own; give label names "
                    "(labels=[...] / --labels)"
                )
            return own, model.classifier_weight().detach().float().cpu()

        names = check_labels(labels)
        own_rows = match_class_names(names, own)
        if own and None not in own_rows:
            rows = torch.tensor(own_rows)
            weight = model.classifier_weight().detach().float().cpu()
            return names, weight.index_select(0, rows)  # [C, D] in the order asked
        cfg = model.model_cfg
        if own and cfg.classifier != "text":
            raise PredictError(
                f"this model was trained with a {cfg.classifier!r} classifier, so its video "
                "embeddings are not aligned with text and cannot score new labels; use labels "
                f"among its own classes ({', '.join(own[:10])}{' ...' if len(own) > 10 else ''})"
            )

        chosen = zero_shot_templates(cfg, templates if templates is not None else self.templates)
        key = self.classifier_key(names, chosen)
        if key not in self._classifiers:
            built = build_zero_shot_classifier(self.text_encoder, names, chosen)
            self._classifiers[key] = built.detach().float().cpu()
            logger.info(
                "built a text classifier for %d labels x %d templates (%s)",
                len(names),
                len(chosen),
                key[:12],
            )
        return names, self._classifiers[key]

    # ------------------------------------------------------------------------------------------
    # Videos
    # ------------------------------------------------------------------------------------------

    def _dataset(self, paths: Sequence[str]) -> _ReportingDataset:
        data = dataclasses.replace(
            self.data, num_clips=self.num_clips, num_crops=self.num_crops, skip_unreadable=True
        )
        records = []
        known_errors: dict[int, str] = {}
        for index, path in enumerate(paths):
            num_frames = None
            if Path(path).is_dir():
                # A frame folder: count its frames here so that the dataset reads it with the
                # configured file names; a folder without frames is reported, not loaded.
                try:
                    num_frames = FrameFolderReader(
                        path, frame_template=data.frame_template, start_index=data.frame_start_index
                    ).num_frames
                except VideoDecodeError as exc:
                    known_errors[index], num_frames = exc.reason, 1
            records.append(VideoRecord(str(path), num_frames, 0))
        dataset = VideoDataset.from_data_config(records, data, root="", train=False)
        return _ReportingDataset(dataset, known_errors)

    def _loader_config(self) -> Config:
        return Config(
            data=dataclasses.replace(self.data, num_workers=self.num_workers),
            eval=EvalConfig(batch_size=self.batch_size),
        )

    def embed_videos(
        self, videos: Sequence[str | Path]
    ) -> tuple[dict[int, torch.Tensor], dict[int, str]]:
        """Video embeddings of every view, decoded in workers and batched through the model.

        Args:
            videos: video files or frame folders.

        Returns:
            ``(embeddings, errors)``: position in ``videos`` -> float ``[V, D]`` (before L2
            normalisation, on the CPU), and position -> reason for videos that failed.
        """
        paths = [str(v) for v in videos]
        embeddings: dict[int, torch.Tensor] = {}
        errors: dict[int, str] = {}
        if not paths:
            return embeddings, errors
        dataset = self._dataset(paths)
        loader = build_loader(
            dataset,
            self._loader_config(),
            "test",
            seed=0,
            batch_size=self.batch_size,
            rank=0,
            world_size=1,
        )
        with torch.inference_mode():
            for batch in iterate_views(
                self.model,
                loader,
                output="embeddings",
                device=self.device,
                precision=self._autocast,
                progress=self.progress,
                desc="predict",
            ):
                for index, _path, reason in batch.skipped:
                    errors[int(index)] = reason
                for row, index in enumerate(batch.indices.tolist()):
                    embeddings[int(index)] = batch.values[row]  # [V, D]
        # Copies made outside inference mode are ordinary tensors callers may modify in place.
        return {i: e.clone() for i, e in embeddings.items()}, errors

    def scores(self, embeddings: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Per-video scores ``[N, C]`` from view embeddings ``[N, V, D]`` and ``W [C, D]``: the
        softmax of ``logit_scale * cos`` per view, averaged over the views."""
        scale = float(self.model.logit_scale.detach().exp())
        n, v, d = embeddings.shape
        unit = F.normalize(weight.float(), dim=-1)  # [C, D]
        logits = scaled_cosine_logits(embeddings.reshape(n * v, d).float(), unit, scale)
        return aggregate_views(logits.reshape(n, v, -1), "prob")  # [N, V, C] -> [N, C]

    # ------------------------------------------------------------------------------------------
    # One video at a time (the server's interface: text4vis.serve.model.ServedModel)
    # ------------------------------------------------------------------------------------------

    @property
    def num_frames(self) -> int:
        """T, the frames sampled per clip."""
        return self.data.num_segments

    @property
    def class_names(self) -> list[str]:
        """The model's own classes (empty when it has no classifier)."""
        return list(self.model.class_names or []) if self.model.classifier is not None else []

    def open_video(self, path: str | Path) -> VideoReader:
        """A reader of a video file or frame folder with the data settings' decoder and frame
        names (one decoding thread)."""
        data = self.data
        return open_video(
            path, data.decoder, data.frame_template, data.frame_start_index, threads=1
        )

    def sample_frames(self, num_frames: int) -> np.ndarray:
        """The frame numbers of each evaluation clip of a video of ``num_frames`` frames: int64
        ``[clips, T]`` (evaluation samplers draw nothing at random)."""
        data = self.data
        sampler = build_sampler(
            data.sampling,
            data.num_segments,
            train=False,
            num_clips=self.num_clips,
            dense_stride=data.dense_stride,
        )
        return sampler(num_frames, np.random.default_rng(0))

    def load_views(self, path: str | Path) -> torch.Tensor:
        """One video's views as the model takes them: float ``[V, T, 3, S, S]``, sampled and
        transformed as :meth:`predict` does (frame folders included).

        Raises:
            VideoDecodeError: the video cannot be read.
        """
        item = self._dataset([str(path)])[0]
        if item.get("video") is None:
            raise VideoDecodeError(str(path), str(item.get("reason", "unreadable")))
        return item["video"]

    def embed_views(self, views: Sequence[torch.Tensor]) -> np.ndarray:
        """One forward pass over several videos' views (each of :meth:`load_views`, the same V):
        ``N x [V, T, 3, S, S] -> float32 [N, V, D]`` as a NumPy array, before L2 normalisation."""
        video = torch.stack(list(views))  # [N, V, T, 3, S, S]
        batch = {
            "video": video,
            "label": torch.zeros(len(video), dtype=torch.long),
            "index": torch.arange(len(video)),
        }
        with torch.inference_mode():
            (out,) = iterate_views(
                self.model,
                [batch],
                output="embeddings",
                device=self.device,
                precision=self._autocast,  # as embed_videos runs (fp32 for int8 models)
            )
        return out.values.float().cpu().numpy().copy()  # [N, V, D]

    def score_views(self, embeddings: np.ndarray, weight: torch.Tensor) -> np.ndarray:
        """:meth:`scores` on a NumPy array of embeddings ``[N, V, D]``: float32 ``[N, C]``."""
        return self.scores(torch.from_numpy(np.asarray(embeddings)), weight).numpy()

    def trim_classifiers(self, keep: int) -> None:
        """Forget the oldest cached text classifiers beyond ``keep`` label sets (a server
        whose clients send ever new label sets keeps its memory bounded)."""
        while len(self._classifiers) > max(keep, 0):
            self._classifiers.pop(next(iter(self._classifiers)))

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
            One :class:`VideoPrediction` per video, in the order given.
        """
        if isinstance(videos, (str, Path)):
            videos = [videos]
        if top_k is not None and top_k < 1:
            raise UsageError(f"top_k must be at least 1 (or None for all labels), got {top_k}")
        names, weight = self.classifier_for(labels, templates)  # text side first: fails fast
        embeddings, errors = self.embed_videos(videos)
        results = [VideoPrediction(str(video)) for video in videos]
        done = sorted(embeddings)
        if done:
            scores = self.scores(torch.stack([embeddings[i] for i in done]), weight)  # [N, C]
            k = len(names) if top_k is None else min(top_k, len(names))
            values, order = scores.topk(k, dim=-1)  # sorted, best first
            for row, index in enumerate(done):
                results[index].predictions = [
                    {"label": names[c], "score": float(s)}
                    for s, c in zip(values[row].tolist(), order[row].tolist())
                ]
        for index, reason in errors.items():
            results[index].error = reason
        missing = [r.video for r in results if r.predictions is None and r.error is None]
        if missing:  # the loader must return every video or report it
            raise RuntimeError(f"no result for {missing[:5]}")
        failed = sum(r.error is not None for r in results)
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
        """Ranked labels for each video.

        Args:
            videos: video files or frame folders (a single path counts as a list of one).
            labels: label names; None for a trained model's own classes.
            top_k: labels returned per video (capped at the number of labels; None = all).
            templates: prompt templates for new labels (overrides the predictor's).

        Returns:
            Per video, ``[{"label": str, "score": float}, ...]`` sorted by score, best first;
            scores are probabilities over the whole label set.

        Raises:
            VideoDecodeError: some videos could not be read (all are named; the others were
                computed; use :meth:`predict_files` to keep their results).
        """
        results = self.predict_files(videos, labels, top_k, templates=templates)
        return rankings_or_raise(results, "Predictor.predict_files")

    # ------------------------------------------------------------------------------------------
    # Long videos
    # ------------------------------------------------------------------------------------------

    def timeline(
        self,
        video: str | Path,
        *,
        window: float,
        stride: float | None = None,
        labels: Sequence[str] | None = None,
        top_k: int | None = 5,
        smooth: int = 1,
        fps: float | None = None,
        templates: str | Sequence[str] | None = None,
    ) -> Timeline:
        """Labels over time: every ``window`` seconds of the video, every ``stride`` seconds,
        and the runs of one label merged into segments (:mod:`text4vis.timeline`).

        The file is decoded once, front to back, holding only the frames of the windows that
        overlap the current time: the time grows linearly with the duration and the memory does
        not. Times come from the stream's timestamps (variable frame rate and a start offset
        included; a rotated file is turned upright). One view per window (the centre crop).

        Args:
            video: a video file, or a frame folder (with ``fps``).
            window: window length in seconds (the model's T frames are sampled inside it).
            stride: seconds between window starts (default: ``window``, no overlap); at most
                ``window``.
            labels: label names; None for a trained model's own classes.
            top_k: labels kept per window (None = all).
            smooth: average the probabilities of this many windows centred on each window
                before ranking and merging (1 = none).
            fps: frame rate of a frame folder (its frame k is at ``k / fps`` seconds).
            templates: prompt templates for new labels (overrides the predictor's).

        Returns:
            A :class:`~text4vis.timeline.Timeline` with ``windows`` and ``segments``.

        Raises:
            VideoDecodeError: the video cannot be read.
            UsageError: a bad window, stride, smooth or top_k, or a frame folder without fps.
        """

        return build_timeline(
            self,
            str(video),
            window=window,
            stride=window if stride is None else stride,
            labels=labels,
            top_k=top_k,
            smooth=smooth,
            fps=fps,
            templates=templates,
        )

    def embed_windows(
        self, video: str | Path, spans: Callable[[float | None], Iterable[tuple[float, float]]]
    ) -> tuple[list[tuple[float, float]], np.ndarray]:
        """Embeddings of windows of a video in one front-to-back read, as :meth:`timeline` reads
        it (:func:`text4vis.timeline.embed_video_windows`; what a segment index stores).

        Args:
            video: a video file or frame folder.
            spans: given the duration the container states (None when unknown), the windows
                ``(start, end)`` in increasing start.

        Returns:
            The windows read (ends cut to the video's end) and their video embeddings float32
            ``[N, D]``, not normalised.

        Raises:
            VideoDecodeError: the video cannot be read.
            UsageError: no window reaches a frame.
        """
        kept, embedded, _ = embed_video_windows(self, str(video), spans)
        return kept, embedded.float().numpy()

    def timeline_files(self, videos: Sequence[str | Path], **kwargs: Any) -> list[Timeline]:
        """:meth:`timeline` for several videos; an unreadable one gets an error entry (the
        others are still labelled). Keyword arguments go to :meth:`timeline`."""

        results = []
        for video in videos:
            try:
                results.append(self.timeline(video, **kwargs))
            except VideoDecodeError as exc:
                results.append(Timeline(str(video), error=exc.reason))
        return results

    def live(
        self,
        source: str,
        *,
        window: float = 4.0,
        stride: float = 2.0,
        labels: Sequence[str] | None = None,
        top_k: int | None = 5,
        retry: int = 0,
        timeout: float = 10.0,
    ) -> LiveSession:
        """Labels while a stream plays: an iterator of :class:`~text4vis.live.LiveResult`, one
        per ``stride`` seconds of stream, each over the latest ``window`` seconds
        (:mod:`text4vis.live`).

        Args:
            source: a camera device (``/dev/video0``), a URL FFmpeg reads (rtsp, http, udp,
                srt ...), a file, or ``-`` for standard input.
            window: seconds of the latest frames labelled each time.
            stride: stream seconds between windows (at most ``window``).
            labels: label names; None for a trained model's own classes.
            top_k: labels per result.
            retry: times a source that fails is reopened.
            timeout: seconds a network read may stall before it counts as a failure.

        Returns:
            A :class:`~text4vis.live.LiveSession`: iterate it; its ``summary`` says how it
            ended; ``stop()`` ends it from another thread.
        """

        return LiveSession(
            self,
            source,
            window=window,
            stride=stride,
            labels=labels,
            top_k=top_k,
            retry=retry,
            timeout=timeout,
        )


def _close(a: Sequence[float], b: Sequence[float], tol: float = 1e-6) -> bool:
    return len(a) == len(b) and all(abs(float(x) - float(y)) <= tol for x, y in zip(a, b))

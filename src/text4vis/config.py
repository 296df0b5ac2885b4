"""One typed configuration tree for every command.

The tree is made of dataclasses with a default and a comment for every field. A run's
configuration is resolved in three layers, later ones winning:

1. the defaults below,
2. a YAML file (``text4vis train configs/k400/vitb16_f8.yaml``),
3. ``--set section.key=value`` overrides on the command line (values parsed as YAML scalars or
   lists, so ``--set train.lr=1e-4`` gives a float and ``--set model.tokent1d_blocks=[0,4,8]``
   a list).

Unknown keys and wrong types are errors that name the key, list the valid ones and suggest the
closest match; nothing is silently ignored. A field with a fixed set of values is typed
``Literal[...]`` (the aliases below the error class): that is where each set of choices is written,
and the loader rejects any other value, naming the key, the value and the choices.
``dump_config`` -> ``load_config`` round-trips.

YAML values may reference environment variables as ``${VAR}`` or ``${VAR:-default}`` so that
configs shipped with the package carry no absolute paths.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from text4vis.errors import ConfigError, parser_problem, read_user_text

__all__ = [
    "AGGREGATIONS",
    "PROTOCOLS",
    "Aggregation",
    "ClassifierName",
    "Config",
    "ConfigError",
    "DataConfig",
    "DecoderName",
    "EvalConfig",
    "FusedAdamW",
    "ModelConfig",
    "ObjectiveName",
    "PromptForm",
    "RunConfig",
    "SamplingName",
    "TemplateMode",
    "TemplateSetName",
    "TemporalHeadName",
    "TrainConfig",
    "TrainPrecision",
    "VideoFormat",
    "ZeroShotProtocol",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
    "parse_override",
]


# ----------------------------------------------------------------------------------------------
# The choices: each set of allowed values, written once
# ----------------------------------------------------------------------------------------------
# Where a registry holds the implementations (temporal heads, classifiers, objectives) its names
# are the same; tests/test_config.py checks that they agree.

VideoFormat = Literal["video", "frames"]  # mp4/avi/... files, or folders of JPEGs
DecoderName = Literal["pyav", "torchcodec", "decord"]  # text4vis.data.decoders.DECODERS
SamplingName = Literal["segment", "dense"]  # TSN segments over the video, or a dense window
TemporalHeadName = Literal["mean", "transformer", "tokent1d", "t1d"]  # models.temporal
# models.classifier.CONFIG_CLASSIFIERS ("templates" and "coop" are chosen by model.prompt)
ClassifierName = Literal["text", "lda", "random", "orthogonal", "file", "learnable"]
PromptForm = Literal["classname", "template", "templates", "coop"]
TemplateMode = Literal["average", "sample"]  # templates: average them, or sample one per step
TemplateSetName = Literal["kinetics", "short"]  # models.text.TEMPLATE_SETS
TrainPrecision = Literal["bf16", "fp16", "fp32"]  # autocast precisions (text4vis.runtime)
ObjectiveName = Literal["ce", "contrastive"]  # engine.objectives
FusedAdamW = Literal["auto", "always", "never"]
Aggregation = Literal["prob", "logit"]  # views averaged as softmax probabilities or raw logits
ZeroShotProtocol = Literal["full", "half", "splits"]  # all classes, half-class splits, subsets


# ----------------------------------------------------------------------------------------------
# The tree
# ----------------------------------------------------------------------------------------------


@dataclass
class DataConfig:
    """Where the videos are and how clips are sampled and augmented."""

    root: str = ""  # folder that list-file paths are relative to ("" = relative to the list file)
    train_list: str = ""  # training list file (`path label` or `dir num_frames label` per line)
    val_list: str = ""  # validation list file, evaluated after every epoch when set
    test_list: str = ""  # list used by `eval`, `features` and `zeroshot` ("" = val_list)
    labels: str = ""  # label CSV with header `id,name`; class names in id order
    format: VideoFormat = "video"  # "video" (mp4/avi/... files) or "frames" (folders of JPEGs)
    decoder: DecoderName = "pyav"  # video decoder: pyav | torchcodec | decord
    frame_template: str = "img_{:05d}.jpg"  # file name of frame k inside a frame folder
    frame_start_index: int = 1  # index of the first frame file in a frame folder
    num_segments: int = 8  # T: frames sampled per clip
    sampling: SamplingName = "segment"  # "segment" (TSN, uniform over the video) or "dense"
    dense_stride: int = 2  # frame stride between sampled frames when sampling="dense"
    num_clips: int = 1  # temporal views at test time (the 4 of "4x3")
    num_crops: int = 1  # spatial views at test time: 1 (centre) or 3 (left/centre/right)
    input_size: int = 224  # crop size fed to the model (336 for ViT-L-14-336)
    resize_size: int = 256  # short side before cropping
    random_resized_crop: bool = True  # training augmentation: RandomResizedCrop
    crop_scale_min: float = 0.08  # RandomResizedCrop: smallest crop area (fraction of the frame)
    flip: bool = True  # training augmentation: horizontal flip with probability 0.5
    grayscale: float = 0.2  # training augmentation: probability of grayscale (0 disables)
    randaugment: bool = True  # training augmentation: RandAugment
    randaugment_n: int = 2  # RandAugment number of operations
    randaugment_m: int = 9  # RandAugment magnitude
    batch_size: int = 32  # clips per process per step
    num_workers: int = 4  # DataLoader workers per process
    shot: int = 0  # K clips per class for few-shot training (0 = all data)
    shot_seed: int = 0  # seed of the few-shot subset (the same on every rank)
    max_retries: int = 10  # training: how many other videos to try when one is unreadable
    max_failure_fraction: float = 0.01  # training: stop when this share of reads failed
    skip_unreadable: bool = False  # evaluation: skip and report unreadable videos (else raise)


@dataclass
class ModelConfig:
    """The video recognizer: visual backbone, temporal head, classifier and text side."""

    arch: str = "ViT-B-16"  # open_clip architecture name (or a tiny test architecture)
    pretrained: str = ""  # open_clip pretrained tag or a local weight file ("" = random init)
    temporal: TemporalHeadName = "transformer"  # temporal head: mean | transformer | tokent1d | t1d
    temporal_layers: int = 6  # depth of the temporal transformer
    tokent1d_blocks: list[int] = field(default_factory=list)  # ViT blocks with TokenT1D ([] = all)
    classifier: ClassifierName = "text"  # text | lda | random | orthogonal | file | learnable
    classifier_file: str = ""  # saved classifier artifact (classifier="file" or "lda")
    classifier_seed: int = 0  # seed of the random / orthogonal initialisers
    text_encoder: str = "clip"  # "clip" or "sentence-transformers:NAME" / "hf:NAME"
    text_pretrained: str = ""  # weights of the text side: the CLIP text tower's ("" = same as
    # `pretrained`), or a folder of the sentence-transformers / hf: encoder's ("" = its NAME)
    prompt: PromptForm = "template"  # classname | template | templates | coop
    template: str = "a video of a person {}."  # the single template (prompt="template")
    template_set: TemplateSetName = "kinetics"  # named template set (prompt="templates")
    template_mode: TemplateMode = "average"  # templates: "average" them or "sample" one per step
    coop_context: int = 4  # CoOp: number M of learnable context tokens
    logit_scale: float = 0.0  # initial logit scale (0 = take CLIP's, 100 for a random model)
    learn_logit_scale: bool = False  # whether the logit scale is trained
    grad_checkpointing: bool = False  # recompute activations in the backward pass to save memory


@dataclass
class TrainConfig:
    """Optimisation: the paper's table A.3 by default."""

    epochs: int = 30  # training epochs
    warmup_epochs: float = 5.0  # linear warm-up epochs before the cosine decay
    lr: float = 5e-5  # peak learning rate of the new parameters
    min_lr: float = 5e-6  # learning rate at the end of the cosine decay
    visual_lr_ratio: float = 0.1  # learning-rate ratio of the pretrained visual encoder
    weight_decay: float = 0.2  # AdamW weight decay (none on biases, norms, embeddings, scale)
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])  # AdamW betas
    eps: float = 1e-8  # AdamW epsilon
    precision: TrainPrecision = "bf16"  # bf16 | fp16 | fp32 (autocast; fp16: a gradient scaler)
    grad_accum: int = 1  # micro-batches accumulated per optimizer step
    clip_grad: float = 0.0  # max gradient norm (0 = no clipping)
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    objective: ObjectiveName = "ce"  # "ce" (frozen classifier) or "contrastive" (InfoNCE)
    gather: bool = True  # contrastive: gather features from all ranks (the paper's batch gather)
    text_online: bool = False  # contrastive: train the text tower (else fixed text embeddings)
    text_lr_ratio: float = 0.1  # contrastive: learning-rate ratio of an online text tower
    same_class_positive: bool = True  # contrastive: same-class pairs in a batch are positives
    checkpoint_minutes: float = 30.0  # also save `last` every N minutes (0 = per epoch only)
    keep_previous: bool = True  # keep the replaced `last` as previous.pt (resume's fallback)
    max_nonfinite_steps: int = 10  # stop after this many consecutive non-finite losses (skipped)
    eval_every: int = 1  # validate every this many epochs (0 = only at the end)
    seed: int = 0  # seed of model initialisation, sampling and augmentation
    init_from: str = ""  # fine-tune from this trained model (.pt or folder), classifier excepted
    compile: bool = False  # torch.compile the model's forward (parameter names are unchanged)
    fused_adamw: FusedAdamW = "auto"  # fused AdamW kernel: auto (CUDA and CPU) | always | never
    channels_last: bool = False  # ResNet backbones: channels-last memory format (GPU convs)


# The values of eval.aggregate and eval.protocol as tuples, for the command line's choices.
AGGREGATIONS: tuple[str, ...] = typing.get_args(Aggregation)
PROTOCOLS: tuple[str, ...] = typing.get_args(ZeroShotProtocol)


@dataclass
class EvalConfig:
    """Evaluation and zero-shot protocols."""

    views: str = "1x1"  # CLIPSxCROPS, e.g. "4x3" (overrides data.num_clips / num_crops)
    aggregate: Aggregation = "prob"  # average views as softmax "prob"abilities or raw "logit"s
    batch_size: int = 16  # videos per process per step
    protocol: ZeroShotProtocol = "full"  # zero-shot protocol: full | half | splits
    num_splits: int = 10  # half protocol: number of seeded half-class splits
    split_files: list[str] = field(default_factory=list)  # splits protocol: label files of subsets
    features: str = ""  # cached features file (from `text4vis features`) to skip decoding
    multilabel: bool = False  # report mAP (ActivityNet-style) in addition to top-k


@dataclass
class RunConfig:
    """Where results go and how the process runs."""

    name: str = "run"  # run name: results go to <root>/<name>/<timestamp>/
    root: str = "runs"  # root folder of run folders
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    tf32: bool = True  # training on CUDA: TF32 tensor cores for float32 matmuls and convolutions
    log_level: str = "INFO"  # logging level
    log_every: int = 20  # steps between metric log lines
    progress: bool = True  # show progress bars (rank 0 only)


@dataclass
class Config:
    """The whole configuration of a run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    run: RunConfig = field(default_factory=RunConfig)


# ----------------------------------------------------------------------------------------------
# Conversion and validation
# ----------------------------------------------------------------------------------------------

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(value: str, key: str) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(
            f"{key}: environment variable {name} is not set; export it or give a default "
            f"as ${{{name}:-value}}"
        )

    return _ENV_PATTERN.sub(replace, value)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(str(choice) for choice in typing.get_args(tp))
    if origin is list:
        (inner,) = typing.get_args(tp)
        return f"list[{_type_name(inner)}]"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str, expand_env: bool = True) -> Any:
    """Check ``value`` against the annotated type ``tp``; int -> float is the only conversion."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key, expand_env)
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(
                f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}"
            )
        return [_coerce(v, inner, f"{key}[{i}]", expand_env) for i, v in enumerate(value)]
    if origin is Literal:
        return _choice(value, typing.get_args(tp), key, expand_env)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return _expand_env(value, key) if expand_env else value
    else:  # pragma: no cover - only the types above are used in the tree
        raise TypeError(f"unsupported config type {tp!r} for {key}")
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def _choice(value: Any, choices: tuple[Any, ...], key: str, expand_env: bool) -> Any:
    """``value`` when it is one of ``choices`` (a ``Literal`` field), else a ConfigError."""
    if isinstance(value, str):
        if not expand_env and _ENV_PATTERN.search(value):
            return value  # checked once the variable is expanded
        value = _expand_env(value, key) if expand_env else value
    if value in choices and type(value) in {type(c) for c in choices}:
        return value
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ConfigError(
        f"{key}: {value!r} is not a valid choice{hint}; choose one of {list(choices)}"
    )


def _unknown_key_error(key: str, valid: list[str], prefix: str) -> ConfigError:
    full_valid = [f"{prefix}{v}" for v in valid]
    close = difflib.get_close_matches(f"{prefix}{key}", full_valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    return ConfigError(
        f"unknown key {prefix}{key}{hint} Valid keys under {prefix.rstrip('.') or 'the top level'}: "
        f"{', '.join(sorted(valid))}"
    )


def _build(cls: type, values: dict[str, Any], prefix: str, expand_env: bool = True) -> Any:
    if not isinstance(values, dict):
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__} {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise _unknown_key_error(str(key), list(fields), prefix)
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(
                tp, value if value is not None else {}, f"{prefix}{key}.", expand_env
            )
        else:
            kwargs[key] = _coerce(value, tp, f"{prefix}{key}", expand_env)
    return cls(**kwargs)


def config_from_dict(values: dict[str, Any] | None, *, expand_env: bool = True) -> Config:
    """Build a validated :class:`Config` from nested dictionaries (missing keys keep defaults).

    Args:
        values: nested ``{section: {key: value}}`` dictionaries.
        expand_env: replace ``${VAR}`` / ``${VAR:-default}`` in strings (an unset variable
            without a default is an error); False keeps the strings as written.
    """
    return _build(Config, values or {}, "", expand_env)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Nested plain dictionaries of a config (or one of its sections)."""
    return dataclasses.asdict(config)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into a key path and a YAML-parsed value."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.lr=1e-4")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"override {text!r} has an empty key; write section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"override {text!r}: value is not valid YAML ({parser_problem(exc)})"
        ) from exc
    if isinstance(value, str) and _looks_like_float(value):
        value = float(value)  # YAML 1.1 reads "1e-4" as a string; users mean a number
    return key.split("."), value


def _looks_like_float(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+", text.strip()))


def _fix_yaml_floats(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _fix_yaml_floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fix_yaml_floats(v) for v in value]
    if isinstance(value, str) and _looks_like_float(value):
        return float(value)
    return value


def apply_overrides(values: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return ``values`` with each ``a.b=c`` override applied (later overrides win)."""
    result = dict(values)
    for text in overrides:
        path, value = parse_override(text)
        update: dict[str, Any] = {path[-1]: value}
        for part in reversed(path[:-1]):
            update = {part: update}
        # Validate the path now so the error names the override, not a merged dict.
        try:
            _check_path(path, text)
        except ConfigError as exc:
            if str(exc).startswith("override"):
                raise
            raise ConfigError(f"override {text!r}: {exc}") from None
        result = _merge(result, update)
    return result


def _check_path(path: list[str], text: str) -> None:
    cls: Any = Config
    prefix = ""
    for i, part in enumerate(path):
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"override {text!r}: {prefix.rstrip('.')} is not a section")
        names = [f.name for f in dataclasses.fields(cls)]
        if part not in names:
            raise _unknown_key_error(part, names, prefix)
        cls = typing.get_type_hints(cls)[part]
        prefix += part + "."
        if i == len(path) - 1 and dataclasses.is_dataclass(cls):
            raise ConfigError(
                f"override {text!r}: {prefix.rstrip('.')} is a section; set one of its keys"
            )


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist (looked in {path.resolve().parent})")
    try:
        values = yaml.safe_load(read_user_text(path, ConfigError))
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{path}: not valid YAML: {parser_problem(exc)}") from exc
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(values).__name__}")
    return _fix_yaml_floats(values)


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Resolve defaults <- YAML file <- ``--set`` overrides into a validated :class:`Config`.

    Args:
        path: YAML file, or None for defaults only.
        overrides: ``section.key=value`` strings.

    Raises:
        ConfigError: a missing file, an unknown key or a wrong type, named in the message.
    """
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = read_yaml(path)
            # Errors in the file name the file. Environment variables are expanded only after
            # the overrides, so `--set key=value` can stand in for an unset ${VAR}.
            config_from_dict(values, expand_env=False)
        except ConfigError as exc:
            if str(exc).startswith(str(path)):
                raise
            raise ConfigError(f"{path}: {exc}") from exc
    values = apply_overrides(values, overrides or [])
    return config_from_dict(values)


def dump_config(config: Config, path: str | Path | None = None) -> str:
    """Write the resolved config as YAML (to ``path`` when given) and return the text."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False, default_flow_style=False)
    if path is not None:
        Path(path).write_text(text)
    return text

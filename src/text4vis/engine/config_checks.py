"""Config checks: semantic checks of a config before a long run starts.

:mod:`text4vis.config` already rejects unknown keys and wrong types; this module checks that the
values make sense together (a known architecture, head, classifier, objective, precision, views,
a schedule whose warm-up fits in the run ...), so that a typo fails in a second instead of after
the first epoch. Every problem found is listed in one error.
"""

from __future__ import annotations

import typing

import open_clip

from text4vis.config import AGGREGATIONS, PROTOCOLS, Config, ConfigError, PromptForm
from text4vis.engine.loops import parse_views
from text4vis.engine.objectives import available_objectives
from text4vis.models.backbones import register_model_configs
from text4vis.models.classifier import CONFIG_CLASSIFIERS
from text4vis.models.temporal import TEMPORAL_HEADS
from text4vis.runtime import TRAIN_PRECISIONS

__all__ = ["config_problems", "validate_config"]

# The prompt forms (model.prompt), as typed in the config.
PROMPTS: tuple[str, ...] = typing.get_args(PromptForm)


def config_problems(cfg: Config, *, check_arch: bool = True) -> list[str]:
    """Every problem of ``cfg`` as a message naming the key (empty when the config is fine).

    Args:
        cfg: the resolved config.
        check_arch: look ``model.arch`` up in open_clip's list of architectures.
    """
    problems: list[str] = []
    d, m, t, e = cfg.data, cfg.model, cfg.train, cfg.eval

    def need(condition: bool, message: str) -> None:
        if not condition:
            problems.append(message)

    need(d.num_segments >= 1, f"data.num_segments={d.num_segments}: needs at least 1 frame")
    need(d.batch_size >= 1, f"data.batch_size={d.batch_size}: must be >= 1")
    need(d.num_workers >= 0, f"data.num_workers={d.num_workers}: must be >= 0")
    need(d.shot >= 0, f"data.shot={d.shot}: must be >= 0 (0 = all data)")
    need(d.input_size >= 1, f"data.input_size={d.input_size}: must be >= 1")
    need(d.sampling in ("segment", "dense"), f"data.sampling={d.sampling!r}: segment | dense")
    need(d.num_crops in (1, 3), f"data.num_crops={d.num_crops}: 1 or 3")
    need(
        m.temporal in TEMPORAL_HEADS,
        f"model.temporal={m.temporal!r}: choose one of {list(TEMPORAL_HEADS.names())}",
    )
    need(
        m.classifier in CONFIG_CLASSIFIERS,
        f"model.classifier={m.classifier!r}: one of {CONFIG_CLASSIFIERS}",
    )
    need(m.prompt in PROMPTS, f"model.prompt={m.prompt!r}: choose one of {list(PROMPTS)}")
    need(m.logit_scale >= 0, f"model.logit_scale={m.logit_scale}: must be >= 0 (0 = CLIP's)")
    need(t.epochs >= 1, f"train.epochs={t.epochs}: must be >= 1")
    need(
        0 <= t.warmup_epochs <= t.epochs,
        f"train.warmup_epochs={t.warmup_epochs}: must be within 0..train.epochs={t.epochs}",
    )
    need(t.lr > 0, f"train.lr={t.lr}: must be > 0")
    need(0 <= t.min_lr <= t.lr, f"train.min_lr={t.min_lr}: must be within 0..train.lr={t.lr}")
    need(t.visual_lr_ratio >= 0, f"train.visual_lr_ratio={t.visual_lr_ratio}: must be >= 0")
    need(t.weight_decay >= 0, f"train.weight_decay={t.weight_decay}: must be >= 0")
    need(
        len(t.betas) == 2 and all(0 <= b < 1 for b in t.betas),
        f"train.betas={t.betas}: two numbers in [0, 1), e.g. [0.9, 0.98]",
    )
    need(
        t.precision in TRAIN_PRECISIONS,
        f"train.precision={t.precision!r}: choose {TRAIN_PRECISIONS}",
    )
    need(t.grad_accum >= 1, f"train.grad_accum={t.grad_accum}: must be >= 1")
    need(t.clip_grad >= 0, f"train.clip_grad={t.clip_grad}: must be >= 0 (0 = off)")
    need(0 <= t.label_smoothing < 1, f"train.label_smoothing={t.label_smoothing}: in [0, 1)")
    need(
        t.objective in available_objectives(),
        f"train.objective={t.objective!r}: choose one of {available_objectives()}",
    )
    need(t.checkpoint_minutes >= 0, f"train.checkpoint_minutes={t.checkpoint_minutes}: >= 0")
    need(
        t.max_nonfinite_steps >= 1,
        f"train.max_nonfinite_steps={t.max_nonfinite_steps}: >= 1 (consecutive skipped steps)",
    )
    need(t.eval_every >= 0, f"train.eval_every={t.eval_every}: must be >= 0")
    try:
        parse_views(e.views)
    except ValueError as exc:
        problems.append(f"eval.views: {exc}")
    need(e.aggregate in AGGREGATIONS, f"eval.aggregate={e.aggregate!r}: one of {AGGREGATIONS}")
    need(e.batch_size >= 1, f"eval.batch_size={e.batch_size}: must be >= 1")
    need(
        e.protocol in PROTOCOLS,
        f"eval.protocol={e.protocol!r}: {' | '.join(PROTOCOLS)}",
    )
    need(e.num_splits >= 1, f"eval.num_splits={e.num_splits}: must be >= 1")
    need(
        e.protocol != "splits" or bool(e.split_files),
        "eval.protocol=splits needs eval.split_files (label CSVs of the class subsets)",
    )
    need(cfg.run.log_every >= 1, f"run.log_every={cfg.run.log_every}: must be >= 1")
    if check_arch and not m.arch.startswith(("hf-hub:", "local-dir:")):
        register_model_configs()  # the package's tiny test architectures
        known = open_clip.list_models()
        need(
            m.arch.replace("/", "-") in known,
            f"model.arch={m.arch!r} is not an open_clip architecture (e.g. RN50, ViT-B-32, "
            "ViT-B-16, ViT-L-14, ViT-L-14-336, tiny-vit)",
        )
    return problems


def validate_config(cfg: Config, *, check_arch: bool = True) -> None:
    """Raise :class:`~text4vis.config.ConfigError` listing every problem of ``cfg``."""
    problems = config_problems(cfg, check_arch=check_arch)
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))

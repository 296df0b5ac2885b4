"""A classifier for new class names: the one zero-shot builder and its one prompt policy.

:func:`build_zero_shot_classifier` embeds every (template, class name) pair with a text encoder
and averages the normalised embeddings per class (``W [C, D]``, unit rows, a new tensor). The
templates come from :func:`zero_shot_templates`, the prompt policy shared by ``text4vis zeroshot``,
:class:`~text4vis.predict.Predictor` and ``text4vis classifier``:

- a model trained with ``model.prompt`` ``classname`` / ``template`` / ``templates`` (averaged) is
  tested with the same prompt;
- a model trained with sampled templates (``template_mode=sample``) is tested with its single
  ``model.template``, as in the paper;
- a model trained with CoOp context vectors cannot take new names (the context was learned for
  its own classes): :class:`ZeroShotError`, which says to give templates explicitly. There is no
  silent fallback; a caller that wants one passes ``templates=`` (e.g. ``"a video of {}."``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from text4vis.errors import UsageError
from text4vis.models.backbones import create_clip, embed_dim_of
from text4vis.models.text import (
    TEMPLATE_SETS,
    TextEncoder,
    TextEncoderError,
    build_text_classifier,
    build_text_encoder,
    resolve_templates,
)

if TYPE_CHECKING:
    from text4vis.config import ModelConfig
    from text4vis.models.factory import SavedModel

__all__ = [
    "ZeroShotError",
    "build_zero_shot_classifier",
    "saved_text_encoder",
    "zero_shot_templates",
]


ZeroShotError = UsageError  # the older name, kept importable


def zero_shot_templates(
    model_cfg: ModelConfig, templates: str | Sequence[str] | None = None
) -> list[str]:
    """The prompt templates for new class names (the policy in the module docstring).

    Args:
        model_cfg: the model's config (its ``prompt``, ``template``, ``template_set``,
            ``template_mode``).
        templates: None for the model's own prompt; else ``"classname"``, a template-set name
            (``"kinetics"``, ``"short"``), one template with ``{}``, or a list of templates.

    Raises:
        ZeroShotError: a CoOp model and no ``templates``.
        TextEncoderError: an unknown set name or a template without ``{}``.
    """
    if templates is None:
        prompt = model_cfg.prompt
        if prompt == "coop":
            raise ZeroShotError(
                "this model learned CoOp prompt vectors for its own classes, so it has no prompt "
                "for new class names; score its own classes (a subset of them), or give prompt "
                "templates explicitly (templates='a video of {}.' / --templates)"
            )
        if prompt == "templates" and model_cfg.template_mode == "sample":
            prompt = (
                "template"  # trained with one sampled template per step: test with the single one
            )
        return resolve_templates(prompt, model_cfg.template, model_cfg.template_set)
    if isinstance(templates, str):
        if templates == "classname":
            return ["{}"]
        if templates in TEMPLATE_SETS:
            return list(TEMPLATE_SETS[templates])
        if "{}" in templates:
            return resolve_templates("template", templates)
        raise TextEncoderError(
            f"templates {templates!r}: give 'classname', a template set "
            f"({', '.join(sorted(TEMPLATE_SETS))}) or one template with '{{}}' where the label "
            "goes, e.g. 'a video of {}.'"
        )
    return resolve_templates("templates", templates=list(templates))


def build_zero_shot_classifier(
    encoder: TextEncoder, class_names: Sequence[str], templates: Sequence[str]
) -> torch.Tensor:
    """Text classifier ``W [C, D]`` of ``class_names``: per class, the normalised mean of its
    normalised template embeddings (class names are normalised first). No gradient; a new tensor.
    """
    with torch.no_grad():
        return build_text_classifier(
            encoder, list(class_names), prompt="templates", templates=list(templates)
        )


def saved_text_encoder(saved: SavedModel, *, seed: int | None = None) -> TextEncoder:
    """The text encoder a saved model was trained with, rebuilt from its recorded config.

    A randomly initialised CLIP text tower (no ``pretrained``) is rebuilt with the training seed
    and the image size the backbone was built for, so that it is the tower the model was trained
    with (the frozen classifier of its own classes is reproduced exactly).
    """
    mc = saved.config.model
    # Same seed and image size as build_model: a random tower is rebuilt identically.
    torch.manual_seed(saved.config.train.seed if seed is None else seed)
    clip = (
        create_clip(mc.arch, mc.pretrained, image_size=saved.image_size)
        if mc.text_encoder == "clip"
        else None
    )
    embed_dim = embed_dim_of(clip) if clip is not None else None
    if embed_dim is None:
        embed_dim = int(saved.model.embed_dim)
    return build_text_encoder(mc, clip_model=clip, embed_dim=embed_dim)

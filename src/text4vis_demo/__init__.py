"""The embedded default: the paper's ablations at toy scale on synthetic actions, on the CPU.

This package lives beside the library (as ``open_clip_train`` beside ``open_clip``): it imports
:mod:`text4vis`, never the reverse. ``text4vis demo`` reaches it through the CLI's entry-point
group ``text4vis.commands`` (:mod:`text4vis_demo.command`); ``python -m text4vis_demo`` is the
same command. ``python -m text4vis_demo.compare`` compares two ``metrics.json`` files number by
number, ``python -m text4vis_demo.probe`` trains the temporal transformer alone on a report's
stage-0 frame embeddings. The synthetic worlds it draws (:mod:`text4vis.data.actions`,
:mod:`text4vis.data.captions`) stay in the library, where the tests and users can make toy
datasets too.

:func:`run_demo` (``text4vis demo``) writes a synthetic-actions dataset
(:mod:`text4vis.data.actions`: real mp4 files, list files, label CSVs), trains small video
recognizers on it with the library's own trainer (:func:`text4vis.engine.train.fit`: real
decoding, TSN sampling, augmentation, the real :class:`~text4vis.models.video.VideoRecognizer`
and frozen classifiers) and writes a report folder:

- ``report.md``: each table beside the paper's numbers, whether the orderings agree, seeds and
  spread, the exported model and the ``text4vis predict`` command that uses it;
- ``metrics.json``: every figure of the report (and the per-epoch histories);
- ``curves_init.png`` (validation top-1 and training loss per epoch for each classifier
  initialisation), ``correlation_maps.png`` (the paper's figure 1: inter-class cosine similarity
  of the text classifier and of a learned vision-only classifier);
- ``model/``: the main model (text classifier, temporal transformer), ``save_pretrained`` format;
- ``data/``: the dataset; ``runs/``: one run folder per training run (config, log, metrics,
  checkpoints, curves).

The experiments (seeds ``0..seeds-1``; the dataset is the same for every seed):

1. classifier initialisation (table 6, with the temporal transformer, the paper's ablation
   default): ``text`` (all-MiniLM-L6-v2, the paper's language-only
   "DistilBERT" row), ``lda`` (Fisher LDA of the features of the pretrained visual encoder on the
   training clips), ``random``, ``orthogonal`` and the ``learnable`` vision-only head;
2. data regimes (table 7, with mean pooling as in the paper): zero-shot on the unseen classes,
   2-shot and full training, for the text classifier (vision-text) and the learnable head
   (vision-only);
3. temporal modelling (table 8): mean pooling (TAP) vs the temporal transformer, overall and on the
   direction-dependent classes (those whose time-reversed partner is also a class).

:func:`run_contrastive_demo` (``text4vis demo --contrastive``) is table 9 on the same data and
the same pretrained pair (stage 0's image encoder, all-MiniLM-L6-v2): cross-entropy over the
frozen text classifier vs four contrastive variants, each a torchrun job.

The visual encoder is a small CLIP ResNet (``demo-rn``). No pretrained CLIP weights are available
offline, so the main demo first makes its own vision-language model (stage 0,
:mod:`~text4vis_demo.pretrain`: image-text pretraining on captioned stills of the same world
against the frozen all-MiniLM-L6-v2 caption embeddings); every run of tables 6-8 loads that weight
file with ``model.pretrained`` and fine-tunes it at ``lr * visual_lr_ratio`` (0.1), as the paper
fine-tunes CLIP, and one text run per seed starts from a random encoder instead, to show what
pretraining changes. Every number in the report is measured in the run that writes it.

Modules: :mod:`~text4vis_demo.pretrain` (stage 0), :mod:`~text4vis_demo.settings` (sizes,
shared config, the dataset),
:mod:`~text4vis_demo.runs` (training runs and torchrun jobs), :mod:`~text4vis_demo.statistics`
(accuracy summaries, standard errors, judging a claim), :mod:`~text4vis_demo.paper` (the paper's
numbers and claims, as data), :mod:`~text4vis_demo.metrics` (typed results),
:mod:`~text4vis_demo.plots`, :mod:`~text4vis_demo.report` (the reports: Jinja2 templates in
``templates/`` rendered from the typed metrics), :mod:`~text4vis_demo.ablations` (tables 6-8),
:mod:`~text4vis_demo.contrastive` (table 9), :mod:`~text4vis_demo.compare` (two ``metrics.json``
files number by number), :mod:`~text4vis_demo.probe`, :mod:`~text4vis_demo.command` (the
``demo`` command), :mod:`~text4vis_demo.log` (loggers under the library's ``text4vis``).
"""

from __future__ import annotations

import importlib
from typing import Any

# Public name -> module that defines it, imported on first access (PEP 562): `text4vis demo`'s
# command module (text4vis_demo.command) is imported by every `text4vis` run to list the command,
# and must not load torch, Jinja2 or the experiments (a machine with only the ONNX runtime has
# none of them).
_LAZY = {
    "run_demo": "text4vis_demo.ablations",
    "run_contrastive_demo": "text4vis_demo.contrastive",
    "DemoMetrics": "text4vis_demo.metrics",
    "PAPER": "text4vis_demo.paper",
    "PAPER_TABLE9": "text4vis_demo.paper",
    "TABLE9_CLAIMS": "text4vis_demo.paper",
    "TABLE_CLAIMS": "text4vis_demo.paper",
    "DemoSettings": "text4vis_demo.settings",
    "demo_settings": "text4vis_demo.settings",
    "make_demo_dataset": "text4vis_demo.settings",
    "Claim": "text4vis_demo.statistics",
    "Judgement": "text4vis_demo.statistics",
    "judge_claim": "text4vis_demo.statistics",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'text4vis_demo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "PAPER",
    "PAPER_TABLE9",
    "TABLE9_CLAIMS",
    "TABLE_CLAIMS",
    "Claim",
    "DemoMetrics",
    "DemoSettings",
    "Judgement",
    "demo_settings",
    "judge_claim",
    "make_demo_dataset",
    "run_contrastive_demo",
    "run_demo",
]

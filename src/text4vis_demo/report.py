"""The reports: ``report.md`` of the main demo and ``contrastive_report.md`` of table 9.

Both render a metrics dict (what the demo writes as JSON), so every number printed is one of
``metrics.json``; neither computes anything new.
"""

from __future__ import annotations

from typing import Any

from text4vis_demo.runs import RunSpec
from text4vis_demo.settings import DEMO_ARCH_TEXT, TABLE6_TEMPORAL

__all__ = ["format_stats", "render_contrastive_report", "render_report"]

_TABLE6_HEAD = {"mean": "mean pooling", "transformer": "temporal transformer"}[TABLE6_TEMPORAL]
# Table 6's rows, by initialiser.
_INIT_LABELS = {
    "text": "text (MiniLM; paper: DistilBERT)",
    "lda": "LDA",
    "random": "random normal",
    "orthogonal": "random orthogonal",
    "learnable": "learnable (vision-only)",
}


def format_stats(stats: dict[str, Any] | None) -> str:
    """An accuracy summary (``Stats.to_dict()``) as report text: ``mean ± std`` over seeds, or
    ``value (SE x)`` for one seed."""
    if stats is None:
        return "n/a"
    if stats["std"] is None:
        return f"{stats['mean']:.1f} (SE {stats['se']:.1f})"
    return f"{stats['mean']:.1f} ± {stats['std']:.1f}"


def _text_minus(text: dict[str, Any], others: list[dict[str, Any]], key: str) -> str:
    """Text's ``key`` mean minus each other row's, in points: ``"+1.2 and -0.3"``."""
    return " and ".join(f"{text[key]['mean'] - o[key]['mean']:+.1f}" for o in others)


def _render_table6_groups(
    t6: dict[str, Any], t8: dict[str, Any], figure1: dict[str, Any] | None
) -> list[str]:
    """Table 6's final models per class group (direction-dependent and other classes), with
    text minus random and orthogonal in each: whether the text rows of time-reversed partners,
    nearly one vector, cost the text classifier where only temporal order names the class."""
    rows = {init: row for init, row in t6.items() if row.get("direction_top1")}
    if not rows:
        return []
    out = [
        "Table 6's final models per class group (as table 8 splits them: "
        f"{t8['num_direction_videos']} validation clips of classes whose time-reversed partner "
        f"is also a class, {t8['num_other_videos']} of the other classes):",
        "",
        "| classifier | direction-dependent classes | other classes | picks the time-reversed "
        "partner |",
        "|---|---|---|---|",
    ]
    for init, row in rows.items():
        out.append(
            f"| {_INIT_LABELS.get(init, init)} | {format_stats(row['direction_top1'])} | "
            f"{format_stats(row['other_top1'])} | {format_stats(row['reversed_partner_rate'])} |"
        )
    out.append("")
    text, others = rows.get("text"), [rows[k] for k in ("random", "orthogonal") if k in rows]
    if text and others:

        def gap(key: str) -> str:
            return _text_minus(text, others, key)

        cosine = ""
        if figure1:
            cosine = (
                " The text rows of two time-reversed partners have a mean cosine of "
                f"{figure1['text_cosine_reversed_partners']:.2f} (other pairs of classes "
                f"{figure1['text_cosine_other_pairs']:.2f}, figure 1 below); random rows are "
                "nearly orthogonal for every pair."
            )
        out.append(
            "Text minus random and orthogonal, in points: direction-dependent classes "
            f"{gap('direction_top1')}, other classes {gap('other_top1')}.{cosine}"
        )
        out.append("")
    return out


def _render_table6_early_groups(t6: dict[str, Any], early: int) -> list[str]:
    """Table 6's runs per class group early in training (after epoch 1 and the early epoch), with
    text minus random and orthogonal: where the text classifier's head start is, and whether it
    lasts to the epoch table 6's early column reads."""
    keys = ("first_direction_top1", "first_other_top1", "early_direction_top1", "early_other_top1")
    rows = {init: row for init, row in t6.items() if all(row.get(k) for k in keys)}
    if not rows:
        return []
    out = [
        f"Early in training, per class group (validation top-1 after epoch 1 and after epoch "
        f"{early}, the epoch of table 6's early column):",
        "",
        "| classifier | direction-dependent, epoch 1 | other classes, epoch 1 | "
        f"direction-dependent, epoch {early} | other classes, epoch {early} |",
        "|---|---|---|---|---|",
    ]
    for init, row in rows.items():
        cells = " | ".join(format_stats(row[k]) for k in keys)
        out.append(f"| {_INIT_LABELS.get(init, init)} | {cells} |")
    out.append("")
    text, others = rows.get("text"), [rows[k] for k in ("random", "orthogonal") if k in rows]
    if text and others:

        def gap(key: str) -> str:
            return _text_minus(text, others, key)

        out += [
            "Text minus random and orthogonal, in points: after epoch 1, direction-dependent "
            f"classes {gap(keys[0])}, other classes {gap(keys[1])}; after epoch {early}, "
            f"direction-dependent classes {gap(keys[2])}, other classes {gap(keys[3])}.",
            "",
        ]
    return out


def _render_training_fit(m: dict[str, Any]) -> list[str]:
    """Table 6's runs' training top-1 in their last epoch, mean over the seeds: whether the runs
    fit their own training clips (the direction pairs included) within the schedule."""
    runs, seeds = m.get("runs", {}), m["seeds"]
    parts = []
    for init in m["table6"]:
        keys = [RunSpec(init, TABLE6_TEMPORAL, 0, seed).key for seed in seeds]
        values = [runs[k]["history"][-1].get("train_top1") for k in keys if k in runs]
        if len(values) == len(seeds) and all(v is not None for v in values):
            parts.append(f"{_INIT_LABELS.get(init, init)} {100 * sum(values) / len(values):.1f}")
    if not parts:
        return []
    return [
        f"Training top-1 in the last of the {m['settings']['epochs']} epochs (augmented training "
        "clips, over the epoch; mean over the seeds): " + ", ".join(parts) + ". Where it stays "
        "well below 100, the runs have not fit the direction pairs of their own training clips "
        "either: `scripts/probe_temporal_head.py` trains the temporal transformer alone, for as "
        "many epochs as asked, on fixed stage-0 frame embeddings of these clips.",
        "",
    ]


def _two_shot(row: dict[str, Any]) -> str:
    stats = row.get("two_shot_top1")
    return "—" if stats is None else format_stats(stats)


def _paper(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def render_report(m: dict[str, Any]) -> str:
    """``report.md`` from the metrics (every number printed comes from ``m``)."""
    s = m["settings"]
    seeds = m["seeds"]
    t6, t7, t8 = m["table6"], m["table7"], m["table8"]
    ds = m["dataset"]
    lines: list[str] = []
    add = lines.append
    add("# text4vis demo: the paper's ablations at toy scale")
    add("")
    add(
        f"Mode **{m['mode']}**; {len(seeds)} training seed(s) {seeds}. Numbers are top-1 %: "
        "with several seeds, mean ± sample standard deviation over the seeds (per-seed values in "
        "`metrics.json`); with one seed, the value and its binomial standard error (SE) on the "
        "evaluation set, which says how much a different set of clips would move it. "
        f"Total time {m['timing_s']['total_s']:.0f} s, peak memory "
        f"{m['peak_rss_mb']['main_process']:.0f} MB (main process), torch threads "
        f"{m['torch_threads']}."
    )
    add("")
    add(
        f"**Data**: synthetic actions (`data/`), {len(ds['seen_classes'])} seen classes "
        f"({ds['train_clips']} training and {ds['val_clips']} validation clips) and "
        f"{len(ds['unseen_classes'])} unseen classes ({ds['unseen_clips']} clips), "
        f"{s['size']}x{s['size']} px, {s['clip_frames']} frames per mp4 clip, "
        f"{s['num_segments']} sampled per clip. Classes are named from attributes, e.g. "
        f'"{ds["seen_classes"][0]}"; most come in direction pairs that only temporal order '
        f"tells apart. **Model**: {DEMO_ARCH_TEXT}, "
        + (
            "pretrained by the demo itself in stage 0 (below) and loaded with "
            f"`model.pretrained`, learning at lr x {s['visual_lr_ratio']:g} as the paper "
            "fine-tunes CLIP"
            if m.get("stage0")
            else "trained from scratch (no stage 0)"
        )
        + ", the text classifier from all-MiniLM-L6-v2 (the paper's "
        f'language-only "DistilBERT" row), {s["epochs"]} epochs, batch {s["batch_size"]}, '
        f"AdamW lr {s['lr']:g}. The paper's numbers are Kinetics-400 with a CLIP-pretrained "
        "ViT-B/16: compare orderings, not values."
    )
    add("")
    if m.get("stage0"):
        lines.extend(_render_stage0(m["stage0"], t7["chance_unseen"]))
    add(f"## Table 6: classifier initialisation (temporal head: {_TABLE6_HEAD})")
    add("")
    early = m["early_epoch"]
    add(
        f"| classifier | paper top-1 | demo top-1 | demo top-1 at epoch {early} | "
        "demo mean over epochs | demo 2-shot (mean pooling) |"
    )
    add("|---|---|---|---|---|---|")
    for init, row in t6.items():
        add(
            f"| {_INIT_LABELS[init]} | {_paper(row['paper_top1'])} | {format_stats(row['top1'])} | "
            f"{format_stats(row['early_top1'])} | {format_stats(row['mean_curve_top1'])} | "
            f"{_two_shot(row)} |"
        )
    scratch = m.get("scratch")
    if scratch:
        add(
            f"| text, encoder from scratch (no stage 0) | — | {format_stats(scratch['top1'])} | "
            f"{format_stats(scratch['early_top1'])} | "
            f"{format_stats(scratch['mean_curve_top1'])} | — |"
        )
    add("")
    if m.get("stage0"):
        add(
            "Every row but the last starts from stage 0's pretrained encoder; LDA is fitted on "
            "its features of the training clips, as the paper fits LDA on CLIP's. The last row "
            "is the text row with a randomly initialised encoder learning at the full lr: what "
            "pretraining changes. The 2-shot column trains the same frozen classifiers on "
            "2 clips per class with mean pooling, table 7's few-shot regime (its text and "
            "learnable entries are table 7's 2-shot runs). Training curves: `curves_init.png`."
        )
    else:
        add(
            "LDA here is fitted on the features of the *untrained* visual encoder (the paper "
            "used its pretrained CLIP encoder). Training curves: `curves_init.png`."
        )
    add("")
    add("![curves](curves_init.png)")
    add("")
    lines.extend(_render_table6_groups(t6, t8, m.get("figure1")))
    lines.extend(_render_table6_early_groups(t6, m["early_epoch"]))
    lines.extend(_render_training_fit(m))
    add("## Table 7: data regimes, vision-text vs vision-only (mean pooling)")
    add("")
    add(
        "| | paper zero-shot | demo zero-shot | paper 2-shot | demo 2-shot | paper full | demo full |"
    )
    add("|---|---|---|---|---|---|---|")
    for key, label in (("vision_only", "vision-only"), ("vision_text", "vision-text")):
        paper = t7["paper"][key]
        row = t7[key]
        add(
            f"| {label} | {_paper(paper['zero_shot'])} | {format_stats(row['zero_shot'])} | "
            f"{_paper(paper['two_shot'])} | {format_stats(row['two_shot'])} | "
            f"{_paper(paper['full'])} | {format_stats(row['full'])} |"
        )
    add("")
    add(
        f"Zero-shot is measured on the unseen classes (chance {t7['chance_unseen']:.1f}%) with a "
        "text classifier of their names for vision-text, and with random rows for vision-only "
        "(a learned head has no rows for classes it never saw). 2-shot and full are validation "
        f"top-1 on the seen classes (chance {t7['chance_seen']:.1f}%)."
        + (
            " Table 6's text model trained from a random encoder (no stage 0; temporal "
            f"transformer) scores {format_stats(scratch['zero_shot'])} zero-shot."
            if scratch
            else ""
        )
    )
    add("")
    add("## Table 8: temporal modelling (text classifier)")
    add("")
    add(
        "| temporal head | paper top-1 | demo top-1 | demo top-1, direction-dependent classes | "
        "demo top-1, other classes | picks the time-reversed partner |"
    )
    add("|---|---|---|---|---|---|")
    for key, label in (("mean", "mean pooling (TAP)"), ("transformer", "temporal transformer")):
        row = t8[key]
        add(
            f"| {label} | {_paper(row['paper_top1'])} | {format_stats(row['top1'])} | "
            f"{format_stats(row['direction_top1'])} | {format_stats(row['other_top1'])} | "
            f"{format_stats(row['reversed_partner_rate'])} |"
        )
    add("")
    add(
        f"Direction-dependent: {t8['num_direction_videos']} validation clips of classes whose "
        f"time-reversed partner is also a class; other: {t8['num_other_videos']} clips. Mean "
        "pooling is blind to frame order, so on a direction pair it can at best guess. The paper "
        "reports no per-class split."
    )
    if t8.get("groups"):
        lines.extend(_render_groups(t8["groups"], m["figure1"]))
    add("")
    add("## Do the orderings agree with the paper?")
    add("")
    add("| table | claim | measured | verdict |")
    add("|---|---|---|---|")
    for c in m["claims"]:
        measured = f"{c['a']} {c['a_mean']:.1f} vs {c['b']} {c['b_mean']:.1f}"
        add(
            f"| {c['table']} | {c['claim']} | {measured} | **{c['verdict']}** ({c['confidence']}) |"
        )
    agree = sum(c["verdict"] == "agrees" for c in m["claims"])
    add("")
    add(f"{agree} of {len(m['claims'])} orderings agree with the paper in this run.")
    add("")
    add("## Figure 1: inter-class correlation of classifiers")
    add("")
    f1 = m["figure1"]
    add(
        "Cosine similarity between class rows of the text classifier (left) and of the learnable "
        f"vision-only classifier after training (right, run `{f1['learned_from_run']}`). Pearson "
        "correlation of their off-diagonal entries: "
        f"{f1['offdiagonal_pearson_text_vs_learned']:.2f} (text vs a random matrix: "
        f"{f1['offdiagonal_pearson_text_vs_random']:.2f}). In the text encoder's space the names "
        "of time-reversed partners are almost the same vector (mean cosine "
        f"{f1['text_cosine_reversed_partners']:.2f}, other pairs "
        f"{f1['text_cosine_other_pairs']:.2f}): the text classifier gives the two directions of a "
        "motion nearly the same row, so it separates them by a small margin."
    )
    add("")
    add("![correlation maps](correlation_maps.png)")
    add("")
    add("## The exported model")
    add("")
    add(
        f"`model/` holds the main model (text classifier, temporal transformer, run "
        f"`{m['main_model']['from_run']}`), written with `save_pretrained`. Load it with "
        '`text4vis.VideoRecognizer.from_pretrained("model")`, or label videos with new names '
        "(from the report folder):"
    )
    add("")
    example = m["predict_example"]
    add("```")
    add(f"text4vis predict {example['video']} --model model --labels data/labels_unseen.csv")
    add("```")
    add("")
    zero_shot = m["main_model"].get("zero_shot")
    if zero_shot:
        add(
            f"Its zero-shot top-1 on the {zero_shot['num_videos']} clips of the unseen classes "
            f"(their names as the classifier): {zero_shot['top1']:.1f}% (chance "
            f"{zero_shot['chance']:.1f}%)."
        )
        add("")
    truth = example.get("true_label")
    add(
        f"Its zero-shot top-3 for `{example['video']}` (an unseen class"
        + (f", truly {truth!r}" if truth else "")
        + "), measured in this run:"
    )
    add("")
    for item in example["top3"]:
        add(f"- {item['label']}: {item['score']:.3f}")
    add("")
    add("## Time")
    add("")
    timing = m["timing_s"]
    add(
        (f"Stage 0 {timing['pretrain_s']:.0f} s; " if "pretrain_s" in timing else "")
        + f"Dataset {timing['dataset_s']:.0f} s, training {timing['training_s']:.0f} s "
        f"({len(m['runs'])} runs), evaluations {timing['evaluation_s']:.0f} s, figures and "
        f"export {timing['figures_export_s']:.0f} s; total {timing['total_s']:.0f} s."
    )
    if m.get("cpu_s"):
        cpu, load = m["cpu_s"], m.get("load_average_1min", {})
        loads = [v for v in (load.get("start"), load.get("end")) if v is not None]
        add(
            f"CPU time {cpu['main_process'] + cpu['children']:.0f} s (main process "
            f"{cpu['main_process']:.0f} s, decoding workers {cpu['children']:.0f} s)"
            + (
                f"; 1-minute load average {loads[0]:.1f} at the start, {loads[-1]:.1f} at the "
                "end (above the core count, other work shared the CPU and the wall time grows)"
                if loads
                else ""
            )
            + "."
        )
    add("")
    return "\n".join(lines)


def _render_stage0(stage0: dict[str, Any], chance_unseen: float) -> list[str]:
    """The report's stage-0 section: what was pretrained and its held-out zero-shot accuracy."""
    st = stage0["settings"]
    lines = [
        "## Stage 0: the demo's own vision-language model",
        "",
        f"Before any video, the image encoder is pretrained on {st['num_train']} captioned still "
        "images of the same world (one object: colour, shape, size, position in a 3x3 grid, "
        'background texture; captions like "a small red circle at the top left on a striped '
        f'background", no motion words), {stage0["num_captions"]} captions in all. Its image '
        "embeddings are aligned with the *frozen* all-MiniLM-L6-v2 embeddings of the captions "
        f"(prompt `{st['template']}`) by the symmetric image-text InfoNCE of CLIP: the library's "
        "trainer with `train.objective=contrastive` and a fixed text side, each image a one-frame "
        f"video ({st['epochs']} epochs, batch {st['batch_size']}, lr {st['lr']:g}; learned logit "
        f"scale {stage0['logit_scale']:.1f}). The image tower is written as an open_clip weight "
        f"file, `{stage0['weights']}`, that the video runs load with `model.pretrained=...`.",
        "",
        f"Zero-shot on {st['num_heldout']} held-out stills, whose colour-shape-position "
        f"combinations ({stage0['num_heldout_captions']} captions) no training image shows: for "
        "each attribute, the true caption against the captions that change only that attribute.",
        "",
        "| attribute | zero-shot accuracy | chance |",
        "|---|---|---|",
    ]
    for name, row in stage0["zero_shot"].items():
        lines.append(f"| {name} | {row['top1']:.1f} | {row['chance']:.1f} |")
    lines.append(
        f"| exact caption among the {stage0['num_heldout_captions']} held-out ones | "
        f"{stage0['caption_top1']:.1f} | {100 / stage0['num_heldout_captions']:.1f} |"
    )
    video = stage0.get("zero_shot_unseen_video")
    if video:
        lines += [
            "",
            "The stage-0 model itself, before any video training (mean of its frame embeddings), "
            f"on the unseen video classes: {format_stats(video)} top-1 (chance "
            f"{chance_unseen:.1f}%); it has never seen a motion word or a moving object.",
        ]
    seen = stage0.get("seen_video_attributes")
    if seen:
        cells = ", ".join(
            f"{name} {row['top1']:.1f} (chance {row['chance']:.1f})" for name, row in seen.items()
        )
        lines += [
            "",
            "The same stage-0 model on the *seen* validation clips, with the text classifier of "
            f"the seen names: how often its prediction has the right {cells}. This is all the "
            "head start the text classifier can carry into table 6; the rest must be learnt "
            "from the videos.",
        ]
    first = stage0.get("first_epoch_top1")
    if first:
        cells = ", ".join(f"{name} {format_stats(stats)}" for name, stats in first.items())
        lines += [
            "",
            f"Validation top-1 after the *first* epoch (table 6's runs, {_TABLE6_HEAD}; "
            "`scratch` is the text row "
            f"without stage 0): {cells}. Table 6 compares the classifiers later (its early "
            "column) and at the end.",
        ]
    lines.append("")
    return lines


def _render_groups(groups: dict[str, Any], figure1: dict[str, Any]) -> list[str]:
    """Table 8 per direction pair, beside the text cosine of the two names."""
    cosines = figure1.get("text_cosine_reversed_partners_by_group", {})
    lines = [
        "",
        "Per direction pair: top-1 of its clips, then how often the time-reversed partner is "
        "chosen instead, and the cosine of the two names' text embeddings (near 1: the text "
        "classifier gives both directions almost the same row):",
        "",
        "| direction pair | text cosine of the names | mean pooling: top-1 / partner | "
        "temporal transformer: top-1 / partner |",
        "|---|---|---|---|",
    ]
    for group in groups.get("mean", {}):
        cells = [
            f"{groups[k][group]['top1']['mean']:.1f} / "
            f"{groups[k][group]['reversed_partner_rate']['mean']:.1f}"
            for k in ("mean", "transformer")
        ]
        cosine = cosines.get(group)
        lines.append(
            f"| {group} | {'—' if cosine is None else f'{cosine:.3f}'} | {cells[0]} | {cells[1]} |"
        )
    return lines


def _mark(value: bool) -> str:
    return "✓" if value else "✗"


def render_contrastive_report(m: dict[str, Any]) -> str:
    """``contrastive_report.md`` from the metrics (every number printed comes from ``m``)."""
    s = m["settings"]
    rows = m["rows"]
    lines: list[str] = []
    add = lines.append
    add("# text4vis demo: ours vs the contrastive paradigm (the paper's table 9) at toy scale")
    add("")
    add(
        f"Mode **{m['mode']}**, seed {m['seed']}. Every row is one DDP run of {m['processes']} "
        f"gloo processes ({m['torch_threads_per_process']} torch thread each) launched with "
        "`python -m torch.distributed.run ... -m text4vis train config.yaml --set ...`, global "
        f"batch {m['global_batch']} ({m['per_process_batch']} clips per process), so the "
        f"gathered similarity matrix is {m['global_batch']}x{m['global_batch']} and the local "
        f"one {m['per_process_batch']}x{m['per_process_batch']}. Same data, seed, initial "
        f"weights and schedule for every row: {s['epochs']} epoch(s), AdamW lr {s['lr']:g}, "
        f"{m['dataset']['train_clips']} training clips of {m['dataset']['seen_classes']} "
        f"synthetic-action classes; top-1 on the {m['dataset']['val_clips']} held-out clips of "
        "the same classes (single view)."
    )
    add("")
    tower = m["text_tower"]
    init = tower["initial_text_classifier"]
    image = m["image_encoder"]
    add(
        "**The pretrained pair.** Every row starts from the pair the main demo transfers: the "
        f"`{image['arch']}` image encoder of the demo's stage 0 (`{image['weights']}`), aligned "
        f"there with the frozen `{tower['encoder']}` caption embeddings, and that same "
        f"{tower['weights']} as the text side. The CE and offline rows keep its class "
        "embeddings fixed (the frozen classifier); the online rows train MiniLM's own weights "
        "(`train.text_online=true`). Both pretrained towers learn at lr x "
        f"{image['lr_ratio']:g}, as the paper fine-tunes CLIP. Initial class embeddings: mean "
        f"cosine between classes {init['offdiag_cos_mean']:.2f}, max "
        f"{init['offdiag_cos_max']:.3f} (time-reversed partners are the near-duplicates)."
    )
    add("")
    stage0 = m.get("stage0")
    if stage0:
        zs = stage0["zero_shot"]
        add(
            f"Stage 0 ran here ({m['timing_s']['stage0_s']:.0f} s): held-out zero-shot image "
            "accuracy "
            + ", ".join(f"{k} {v['top1']:.1f}% (chance {v['chance']:.1f}%)" for k, v in zs.items())
            + ". Pass a main demo's weight file (`--pretrained "
            "<report>/pretrain/demo_pretrained.safetensors`) to skip it."
        )
        add("")
    add("## Table 9")
    add("")
    add(
        "| row | paradigm | batch gather | text encoder | paper top-1 | demo top-1 | "
        "paper V100-days | paper cost / ours | demo training time (s) | demo time / ours | "
        "demo wall time (s) | demo wall / ours |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for key, r in rows.items():
        gather = _mark(r["gather"]) if r["paradigm"] == "contrastive" else "✗"
        text = "online" if r["text_online"] else "offline"
        label = "Ours (CE)" if r["paradigm"] == "ours" else "Contrastive"
        add(
            f"| `{key}` | {label} | {gather} | {text} | {r['paper_top1']:.1f} | {100 * r['top1']:.1f} | "
            f"{r['paper_v100_days']:.1f} | {r['paper_cost_ratio_vs_ce']:.2f} | "
            f"{r['train_time_s']:.1f} | {r['train_time_ratio_vs_ce']:.2f} | "
            f"{r['wall_s']:.1f} | {r['wall_ratio_vs_ce']:.2f} |"
        )
    add("")
    add(
        "Demo training time: the sum of the training loop's epoch times on rank 0 (no start-up, "
        "validation or export); wall time: the whole `torchrun` job (start-up of 2 Python "
        "processes, training, validation, export). Ratios divide by the CE row's time; the "
        "paper's V100-days ratio is the same idea on 8 GPUs at ViT-B/16 scale. One run per row, "
        "so there is no seed spread; the accuracy noise is the binomial standard error on "
        f"{m['dataset']['val_clips']} clips; the time per epoch (below) is the mean over the "
        "epochs after the first (all epochs when there are fewer than 3), its noise the standard "
        "error over those epochs."
    )
    add("")
    loads = [x for r in rows.values() for x in r.get("load_avg_1min", [])]
    if loads:
        add(
            f"The machine's 1-minute load average, read before and after each run, was "
            f"{min(loads):.1f} to {max(loads):.1f} on {m['cpu_count']} CPUs (the runs' own "
            "processes count in it; any other work on the machine shares the cores and adds to "
            "the times, unevenly between rows)."
        )
        add("")
    online = [(k, r) for k, r in rows.items() if "trained_text_classifier" in r]
    if online:
        parts = ", ".join(
            f"{k} {r['trained_text_classifier']['offdiag_cos_mean']:.2f}" for k, r in online
        )
        add(
            "Mean cosine between class embeddings after training the online towers: "
            f"{parts} (initial: {init['offdiag_cos_mean']:.2f})."
        )
        add("")
    add("## Do the orderings agree with the paper?")
    add("")
    add("| measure | claim (paper) | paper | demo | verdict |")
    add("|---|---|---|---|---|")
    for c in m["claims"]:
        top1 = c["kind"] == "top-1"
        if c["noise_2se"] is None:
            confidence = "one epoch, no spread: not conclusive"
        elif c["conclusive"]:
            confidence = f"gap beyond 2 standard errors ({c['noise_2se']:.2f})"
        else:
            confidence = f"gap within 2 standard errors ({c['noise_2se']:.2f}): not conclusive"
        paper = f"{c['a']} {c['paper_a']:.1f} vs {c['b']} {c['paper_b']:.1f}"
        demo = (
            f"{c['a']} {c['demo_a']:.1f} vs {c['b']} {c['demo_b']:.1f}"
            if top1
            else f"{c['a']} {c['demo_a']:.2f} vs {c['b']} {c['demo_b']:.2f} s"
        )
        add(
            f"| {c['kind']} | {c['claim']} | {paper}{'' if top1 else ' V100-days'} | {demo} | "
            f"**{c['verdict']}** ({confidence}) |"
        )
    for kind in ("top-1", "time per epoch"):
        subset = [c for c in m["claims"] if c["kind"] == kind]
        agree = sum(c["verdict"] == "agrees" for c in subset)
        firm = sum(c["verdict"] == "agrees" and c["conclusive"] for c in subset)
        against = sum(c["verdict"] == "disagrees" and c["conclusive"] for c in subset)
        add("")
        add(
            f"{kind}: {agree} of {len(subset)} orderings agree with the paper ({firm} beyond "
            f"the noise); {against} disagree beyond the noise."
        )
    add("")
    add(
        f"Ranking by top-1, paper: {m['paper_ranking_top1']}; demo: {m['demo_ranking_top1']}"
        + (" (the same)." if m["paper_ranking_top1"] == m["demo_ranking_top1"] else ".")
    )
    add("")
    add(
        f"What differs from the paper: {DEMO_ARCH_TEXT}, pretrained by the demo's stage 0 on "
        "captioned stills, instead of a CLIP-pretrained ViT-B/16, synthetic clips instead of "
        "Kinetics-400, all-MiniLM-L6-v2 (6 layers, 22.7M weights, far larger than the image "
        "encoder) instead of CLIP's text encoder, so training it online weighs more against "
        f"the image side than in the paper, a global batch of {m['global_batch']} instead of "
        "256, and gloo on CPU cores where the gather is cheap next to the model. Compare "
        "orderings, not values."
    )
    add("")
    add("## Reproduce one row")
    add("")
    add("```")
    add(
        "python -m torch.distributed.run --nproc_per_node 2 -m text4vis train config.yaml "
        "--set train.objective=contrastive --set train.gather=true --set train.text_online=true"
    )
    add("```")
    add("")
    add(
        "`config.yaml` in this folder is the shared config; each run's folder `runs/<row>/` holds "
        "its config, log, metrics, exported model and `torchrun.log`."
    )
    add("")
    t = m["timing_s"]
    add(
        f"Time: dataset {t['dataset_s']:.0f} s, stage 0 {t['stage0_s']:.0f} s, training runs "
        f"{t['training_s']:.0f} s; total {t['total_s']:.0f} s."
    )
    add("")
    return "\n".join(lines)

"""The contrastive objective in one process: targets, loss formula, text side, optimizer groups."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from text4vis.engine.contrastive import (
    ContrastiveObjective,
    OfflineTextEmbeddings,
    OnlineTextTower,
    contrastive_loss,
    contrastive_targets,
    gather_with_grad,
)
from tiny_towers import TinyTextModel

DIM = 8
NUM_CLASSES = 4


class TinyVideoModel(nn.Module):
    """Stand-in with the VideoRecognizer surface the objective uses."""

    def __init__(self) -> None:
        super().__init__()
        self.frame = nn.Linear(3 * 4 * 4, DIM)
        self.logit_scale = nn.Parameter(torch.tensor(20.0).log(), requires_grad=False)  # log
        self.classifier_weight: torch.Tensor | None = None
        self.classifier_names: list[str] | None = None

    def encode_video(self, x: torch.Tensor) -> torch.Tensor:
        b, t = x.shape[:2]
        return self.frame(x.reshape(b * t, -1)).reshape(b, t, DIM).mean(dim=1)  # [B, D]

    def set_classifier(
        self, weight: torch.Tensor, class_names: list[str], metadata: object = None
    ) -> None:
        self.classifier_weight, self.classifier_names = weight.clone(), list(class_names)


def features(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, DIM, generator=torch.Generator().manual_seed(seed))


def test_targets_positive_soft_and_negative_one_hot() -> None:
    labels = torch.tensor([2, 0, 2, 1, 2])
    soft = contrastive_targets(labels, labels, same_class_positive=True)
    third = 1 / 3
    want_soft = torch.tensor(
        [
            [third, 0, third, 0, third],
            [0, 1, 0, 0, 0],
            [third, 0, third, 0, third],
            [0, 0, 0, 1, 0],
            [third, 0, third, 0, third],
        ]
    )
    torch.testing.assert_close(soft, want_soft)
    torch.testing.assert_close(
        contrastive_targets(labels, labels, same_class_positive=False), torch.eye(5)
    )


def test_targets_with_offset_into_gathered_columns() -> None:
    rows = torch.tensor([1, 3])
    cols = torch.tensor([1, 0, 1, 3, 2])  # the rows are columns 2 and 3
    torch.testing.assert_close(
        contrastive_targets(rows, cols, 2, same_class_positive=False),
        torch.tensor([[0.0, 0, 1, 0, 0], [0, 0, 0, 1, 0]]),
    )
    torch.testing.assert_close(
        contrastive_targets(rows, cols, 2, same_class_positive=True),
        torch.tensor([[0.5, 0, 0.5, 0, 0], [0, 0, 0, 1, 0]]),
    )
    with pytest.raises(ValueError, match="do not fit"):
        contrastive_targets(rows, cols, 4, same_class_positive=False)


def test_loss_restates_clip_infonce_when_labels_are_distinct() -> None:
    video, text = features(6, 0), features(6, 1)
    labels = torch.arange(6)
    scale = 7.0
    sims = scale * F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).t()  # [N, N]
    want = (F.cross_entropy(sims, labels) + F.cross_entropy(sims.t(), labels)) / 2
    for positive in (True, False):  # distinct labels: the switch must not matter
        out = contrastive_loss(video, text, labels, scale, same_class_positive=positive)
        torch.testing.assert_close(out.loss, want)
        torch.testing.assert_close(out.logits_text, sims.t())


def test_same_class_switch_changes_the_loss_on_repeated_labels() -> None:
    video, text = features(5, 2), features(5, 3)
    labels = torch.tensor([2, 0, 2, 1, 2])
    scale = 5.0
    pos = contrastive_loss(video, text, labels, scale, same_class_positive=True)
    neg = contrastive_loss(video, text, labels, scale, same_class_positive=False)
    assert abs(pos.loss.item() - neg.loss.item()) > 1e-3
    # Restated: soft cross-entropy against the equal-label distribution, both directions.
    sims = scale * F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).t()
    q = (labels[:, None] == labels[None, :]).float()
    q = q / q.sum(1, keepdim=True)
    want = (
        -(q * sims.log_softmax(1)).sum(1).mean() - (q * sims.t().log_softmax(1)).sum(1).mean()
    ) / 2
    torch.testing.assert_close(pos.loss, want)


def test_gather_is_identity_in_one_process() -> None:
    x = features(3, 4).requires_grad_()
    assert gather_with_grad(x) is x


def test_loss_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="expected video"):
        contrastive_loss(features(3, 0), features(4, 0), torch.arange(3), 1.0)


def make_objective(online: bool, **kwargs: object) -> ContrastiveObjective:
    torch.manual_seed(0)
    if online:
        tokens = torch.randint(
            0, 20, (NUM_CLASSES, 2, 3), generator=torch.Generator().manual_seed(1)
        )
        text: nn.Module = OnlineTextTower(TinyTextModel(DIM), tokens)
    else:
        text = OfflineTextEmbeddings(features(NUM_CLASSES, 5))
    names = [f"class {i}" for i in range(NUM_CLASSES)]
    return ContrastiveObjective(text, names, **kwargs)  # type: ignore[arg-type]


def train_one_step(online: bool) -> tuple[ContrastiveObjective, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = TinyVideoModel()
    objective = make_objective(online, text_lr_ratio=0.5)
    before = {k: v.clone() for k, v in objective.state_dict(keep_vars=False).items()}
    before.update({f"buffer.{n}": b.clone() for n, b in objective.named_buffers()})
    groups = [{"params": list(model.frame.parameters()), "lr": 0.1, "lr_ratio": 1.0}]
    groups += objective.param_groups(lr=0.1, weight_decay=0.0)
    optimizer = torch.optim.SGD(groups, lr=0.1)
    video = torch.randn(6, 2, 3, 4, 4, generator=torch.Generator().manual_seed(6))
    labels = torch.tensor([0, 1, 1, 2, 3, 0])
    loss, logits = objective(model, video, labels)
    loss.backward()
    optimizer.step()
    return objective, before


def test_online_tower_moves_and_has_its_own_lr() -> None:
    objective, before = train_one_step(online=True)
    groups = objective.param_groups(lr=0.1, weight_decay=0.2)
    assert groups and all(g["lr"] == pytest.approx(0.05) for g in groups)
    assert {id(p) for g in groups for p in g["params"]} == {
        id(p) for p in objective.text.parameters()
    }
    after = objective.state_dict()
    moved = [k for k in after if not torch.equal(after[k], before[k])]
    assert "text.text_model.proj.weight" in moved
    assert "text.text_model.token_embedding.weight" in moved


def test_offline_text_stays_fixed_and_has_no_params() -> None:
    objective, before = train_one_step(online=False)
    assert objective.extra_parameters() == []
    assert objective.param_groups(lr=0.1, weight_decay=0.2) == []
    torch.testing.assert_close(objective.text.weight, before["buffer.text.weight"], rtol=0, atol=0)


def test_offline_logits_are_scaled_cosines_to_every_class() -> None:
    model = TinyVideoModel()
    objective = make_objective(online=False)
    video = torch.randn(3, 2, 3, 4, 4, generator=torch.Generator().manual_seed(7))
    _, logits = objective(model, video, torch.tensor([0, 1, 3]))
    assert logits is not None and logits.shape == (3, NUM_CLASSES)
    want = (
        20.0
        * F.normalize(model.encode_video(video), dim=-1)
        @ F.normalize(objective.text.weight, dim=-1).t()
    )
    torch.testing.assert_close(logits, want)
    online = make_objective(online=True)
    assert online(model, video, torch.tensor([0, 1, 3]))[1] is None


def test_export_classifier_writes_the_trained_tower_embeddings() -> None:
    objective, _ = train_one_step(online=True)
    model = TinyVideoModel()
    objective.export_classifier(model)
    assert model.classifier_names == objective.class_names
    tower = objective.text
    with torch.no_grad():
        emb = F.normalize(tower.text_model.encode_text(tower.prompt_tokens.reshape(-1, 3)), dim=-1)
    want = F.normalize(emb.reshape(NUM_CLASSES, 2, DIM).mean(1), dim=-1)
    torch.testing.assert_close(model.classifier_weight, want)
    offline = make_objective(online=False)
    model = TinyVideoModel()
    offline.export_classifier(model)
    assert model.classifier_weight is None  # offline: the classifier already is the text side


def test_text_lr_ratio_must_be_positive() -> None:
    with pytest.raises(ValueError, match="text_lr_ratio"):
        make_objective(online=True, text_lr_ratio=0.0)


CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
CONTRASTIVE_KEYS = {"objective", "gather", "text_online", "text_lr_ratio", "same_class_positive"}


def test_table9_configs_cover_the_four_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    from text4vis.config import config_to_dict, load_config

    monkeypatch.setenv("K400_ROOT", "/data/k400")
    cfgs = {p.stem: load_config(p) for p in sorted((CONFIG_DIR / "contrastive").glob("*.yaml"))}
    rows = {(c.train.gather, c.train.text_online) for c in cfgs.values()}
    assert len(cfgs) == 4 and rows == {(g, o) for g in (True, False) for o in (True, False)}
    for cfg in cfgs.values():
        assert cfg.train.objective == "contrastive" and cfg.model.classifier == "text"
        assert cfg.model.arch == "ViT-B-16" and cfg.data.num_segments == 8

    def recipe(cfg: object) -> dict[str, object]:
        values = config_to_dict(cfg)
        values["train"] = {
            k: v for k, v in values["train"].items() if k not in CONTRASTIVE_KEYS | {"objective"}
        }
        values["run"] = {k: v for k, v in values["run"].items() if k != "name"}
        return values

    recipes = [recipe(c) for c in cfgs.values()]
    assert all(r == recipes[0] for r in recipes)  # only the contrastive switches differ
    ce_path = CONFIG_DIR / "k400" / "vitb16_f8.yaml"
    if ce_path.is_file():  # the cross-entropy row, when it exists, shares the recipe
        ce = recipe(load_config(ce_path))
        paths = {"root", "train_list", "val_list", "test_list", "labels"}
        for values in (ce, recipes[0]):
            values["data"] = {k: v for k, v in values["data"].items() if k not in paths}
        for section in ("model", "data", "train"):  # eval / run settings may differ
            assert ce[section] == recipes[0][section], section


def test_similarities_are_float32_under_bf16_autocast() -> None:
    """At logit scale 100 bf16 would round the logits by up to about 0.25; the loss computes
    them in float32 whatever the autocast or the input dtype."""
    video, text, labels = features(16, 0), features(16, 1), torch.tensor([0, 1, 2, 3] * 4)
    scale = torch.tensor(100.0)
    want = contrastive_loss(video, text, labels, scale)
    for inputs in ((video, text), (video.bfloat16(), text.bfloat16())):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = contrastive_loss(*inputs, labels, scale)
        plain = contrastive_loss(inputs[0].float(), inputs[1].float(), labels, scale)
        for name in ("logits_video", "logits_text", "loss"):
            value = getattr(got, name)
            assert value.dtype == torch.float32, name
            assert torch.equal(value, getattr(plain, name)), name
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what the loss must not do
        rounded = scale * F.normalize(video, dim=-1) @ F.normalize(text, dim=-1).t()
    assert rounded.dtype == torch.bfloat16
    assert (rounded.float() - want.logits_video).abs().max() > 1e-2


def test_offline_logits_are_float32_under_bf16_autocast() -> None:
    model = TinyVideoModel()
    objective = make_objective(online=False)
    video = torch.randn(5, 2, 3, 4, 4, generator=torch.Generator().manual_seed(8))
    labels = torch.tensor([0, 1, 3, 2, 1])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, logits = objective(model, video, labels)
        emb = model.encode_video(video)  # bf16 under autocast, as the objective gets it
    assert logits is not None and logits.dtype == torch.float32 and loss.dtype == torch.float32
    weight = F.normalize(objective.text.weight, dim=-1)
    want = 20.0 * F.normalize(emb.float(), dim=-1) @ weight.t()
    torch.testing.assert_close(logits, want, rtol=0, atol=1e-5)


def test_a_half_precision_online_tower_trains_in_float32() -> None:
    tokens = torch.randint(0, 20, (NUM_CLASSES, 2, 3), generator=torch.Generator().manual_seed(1))
    tower = OnlineTextTower(TinyTextModel(DIM).half(), tokens)
    assert {p.dtype for p in tower.parameters()} == {torch.float32}

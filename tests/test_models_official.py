"""Importing a checkpoint in the paper's released layout, checked against a re-statement."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from text4vis.cli import main
from text4vis.models.backbones import create_clip
from text4vis.models.video import NoClassifierError, VideoRecognizer

D, LAYERS, POSITIONS, T = 64, 2, 20, 5


@pytest.fixture(scope="module")
def paper_checkpoint(tmp_path_factory):
    torch.manual_seed(7)
    clip = create_clip("tiny-vit", quick_gelu=True).eval()  # OpenAI CLIP uses QuickGELU
    generator = torch.Generator().manual_seed(3)

    def rand(*shape, scale=0.05):
        return torch.randn(*shape, generator=generator) * scale

    fusion = {"frame_position_embeddings.weight": rand(POSITIONS, D, scale=0.5)}
    for i in range(LAYERS):
        p = f"transformer.resblocks.{i}."
        fusion.update(
            {
                p + "attn.in_proj_weight": rand(3 * D, D, scale=0.2),
                p + "attn.in_proj_bias": rand(3 * D),
                p + "attn.out_proj.weight": rand(D, D, scale=0.2),
                p + "attn.out_proj.bias": rand(D),
                p + "ln_1.weight": 1 + rand(D),
                p + "ln_1.bias": rand(D),
                p + "mlp.c_fc.weight": rand(4 * D, D, scale=0.2),
                p + "mlp.c_fc.bias": rand(4 * D),
                p + "mlp.c_proj.weight": rand(D, 4 * D, scale=0.2),
                p + "mlp.c_proj.bias": rand(D),
                p + "ln_2.weight": 1 + rand(D),
                p + "ln_2.bias": rand(D),
            }
        )
    state = {f"module.visual.{k}": v for k, v in clip.visual.state_dict().items()}
    state.update({f"module.fusion_model.{k}": v for k, v in fusion.items()})
    state["module.logit_scale"] = torch.tensor(math.log(42.0))
    state["module.token_embedding.weight"] = torch.zeros(8, D)  # text tower: ignored
    path = tmp_path_factory.mktemp("ckpt") / "k400-tiny.pt"
    torch.save({"epoch": 29, "model_state_dict": state, "best_prec1": 0.5}, path)
    return path, clip, fusion


def paper_encode_video(clip, fusion, x):
    """The paper's model written out: CLIP frames -> T-Trans (pre-LN, QuickGELU) -> mean."""
    b, t = x.shape[:2]
    with torch.no_grad():
        frames = clip.visual(x.flatten(0, 1)).reshape(b, t, D)
    h = frames + fusion["frame_position_embeddings.weight"][:t]
    heads = D // 64
    for i in range(LAYERS):
        p = f"transformer.resblocks.{i}."
        y = F.layer_norm(h, (D,), fusion[p + "ln_1.weight"], fusion[p + "ln_1.bias"])
        q, k, v = (y @ fusion[p + "attn.in_proj_weight"].T + fusion[p + "attn.in_proj_bias"]).chunk(
            3, -1
        )
        q, k, v = (z.reshape(b, t, heads, -1).transpose(1, 2) for z in (q, k, v))
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // heads), dim=-1)
        o = (attn @ v).transpose(1, 2).reshape(b, t, D)
        h = h + o @ fusion[p + "attn.out_proj.weight"].T + fusion[p + "attn.out_proj.bias"]
        y = F.layer_norm(h, (D,), fusion[p + "ln_2.weight"], fusion[p + "ln_2.bias"])
        y = y @ fusion[p + "mlp.c_fc.weight"].T + fusion[p + "mlp.c_fc.bias"]
        y = y * torch.sigmoid(1.702 * y)  # QuickGELU
        h = h + y @ fusion[p + "mlp.c_proj.weight"].T + fusion[p + "mlp.c_proj.bias"]
    return (h + frames).mean(dim=1)


def test_import_matches_paper_model(paper_checkpoint, tmp_path):
    path, clip, fusion = paper_checkpoint
    assert main(["import-official", str(path), "--out", str(tmp_path / "imported")]) == 0
    model = VideoRecognizer.from_pretrained(tmp_path / "imported").eval()
    assert model.model_cfg.arch == "tiny-vit" and model.model_cfg.temporal == "transformer"
    assert model.model_cfg.temporal_layers == LAYERS
    x = torch.randn(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ours = model.encode_video(x)
    reference = paper_encode_video(clip, fusion, x)
    assert float((ours - reference).abs().max()) <= 1e-4
    assert float(reference.abs().mean()) > 0.1  # a non-trivial comparison
    assert float(model.logit_scale.exp()) == pytest.approx(42.0, rel=1e-5)
    with pytest.raises(NoClassifierError, match="set_classifier"):
        model(x)


def test_import_with_labels_and_text_weights(paper_checkpoint, tmp_path):
    path, clip, _ = paper_checkpoint
    text_weights = tmp_path / "clip.pt"
    torch.save(clip.state_dict(), text_weights)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,name\n0,PlayingGuitar\n1,swimming\n2,riding_horse\n")
    argv = ["import-official", str(path), "--out", str(tmp_path / "m"), "--labels", str(labels)]
    assert main([*argv, "--text-weights", str(text_weights)]) == 0
    model = VideoRecognizer.from_pretrained(tmp_path / "m").eval()
    assert model.class_names == ["PlayingGuitar", "swimming", "riding_horse"]
    x = torch.randn(1, T, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert model(x).shape == (1, 3)


def test_not_a_paper_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    torch.save({"model_state_dict": {"fc.weight": torch.zeros(2, 2)}}, bad)
    assert main(["import-official", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "visual" in capsys.readouterr().err


def test_load_model_reads_an_official_checkpoint_directly(paper_checkpoint, tmp_path):
    from text4vis.models.factory import load_model, load_saved_model

    path, clip, fusion = paper_checkpoint
    saved = load_saved_model(path)
    assert saved.kind == "official" and saved.config.model.temporal == "transformer"
    x = torch.randn(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ours = load_model(path).encode_video(x)
    reference = paper_encode_video(clip, fusion, x)
    assert float((ours - reference).abs().max()) <= 1e-4

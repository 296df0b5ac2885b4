"""Importing a checkpoint in the paper's released layout, checked against a re-statement."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from text4vis.cli import main
from text4vis.errors import UsageError
from text4vis.models.backbones import BackboneError, create_clip
from text4vis.models.factory import load_model
from text4vis.models.official import import_official
from text4vis.models.video import VideoRecognizer

D, LAYERS, POSITIONS, T = 64, 2, 20, 5


def _random_fusion(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A temporal transformer in the paper's key layout, random weights."""

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
    return fusion


def write_paper_checkpoint(path, clip, fusion, *, prefix="module."):
    """Save a checkpoint the way the paper's training script does (DDP keeps ``module.``)."""
    state = {f"{prefix}visual.{k}": v for k, v in clip.visual.state_dict().items()}
    state.update({f"{prefix}fusion_model.{k}": v for k, v in (fusion or {}).items()})
    state[f"{prefix}logit_scale"] = torch.tensor(math.log(42.0))
    state[f"{prefix}token_embedding.weight"] = torch.zeros(8, D)  # text tower: ignored
    torch.save({"epoch": 29, "model_state_dict": state, "best_prec1": 0.5}, path)
    return path


@pytest.fixture(scope="module")
def paper_checkpoint(tmp_path_factory):
    torch.manual_seed(7)
    clip = create_clip("tiny-vit", quick_gelu=True).eval()  # OpenAI CLIP uses QuickGELU
    fusion = _random_fusion(torch.Generator().manual_seed(3))
    path = tmp_path_factory.mktemp("ckpt") / "k400-tiny.pt"
    return write_paper_checkpoint(path, clip, fusion), clip, fusion


# ---------------------------------------------------------------------------------------------
# The paper's model restated from its equations, in float64 (nothing taken from text4vis).
# ---------------------------------------------------------------------------------------------


def _layer_norm(z, weight, bias, eps):
    mean = z.mean(-1, keepdim=True)
    var = (z - mean).pow(2).mean(-1, keepdim=True)
    return weight * (z - mean) / torch.sqrt(var + eps) + bias


def _block(h, w, p, heads, eps):
    """CLIP's pre-LN residual attention block (QuickGELU MLP) on ``h [B, L, W]``."""
    b, length, width = h.shape
    dh = width // heads
    y = _layer_norm(h, w[p + "ln_1.weight"], w[p + "ln_1.bias"], eps)
    qkv = y @ w[p + "attn.in_proj_weight"].T + w[p + "attn.in_proj_bias"]
    q, k, v = (z.reshape(b, length, heads, dh).transpose(1, 2) for z in qkv.split(width, -1))
    attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)
    o = (attn @ v).transpose(1, 2).reshape(b, length, width)
    h = h + o @ w[p + "attn.out_proj.weight"].T + w[p + "attn.out_proj.bias"]
    y = _layer_norm(h, w[p + "ln_2.weight"], w[p + "ln_2.bias"], eps)
    y = y @ w[p + "mlp.c_fc.weight"].T + w[p + "mlp.c_fc.bias"]
    y = y * torch.sigmoid(1.702 * y)
    return h + y @ w[p + "mlp.c_proj.weight"].T + w[p + "mlp.c_proj.bias"]


def _vit_frames(visual_state, frames, heads):
    """CLIP's ViT image encoder: patches, class token, positions, ln_pre, blocks, ln_post, proj."""
    w = {k: v.double() for k, v in visual_state.items()}
    patch = w["conv1.weight"].shape[-1]
    x = F.conv2d(frames.double(), w["conv1.weight"], stride=patch).flatten(2).transpose(1, 2)
    cls = w["class_embedding"].expand(x.shape[0], 1, -1)
    x = torch.cat([cls, x], dim=1) + w["positional_embedding"]  # [N, 1 + g*g, W]
    x = _layer_norm(x, w["ln_pre.weight"], w["ln_pre.bias"], 1e-5)  # CLIP's own epsilon
    layers = len({k.split(".")[2] for k in w if k.startswith("transformer.resblocks.")})
    for i in range(layers):
        x = _block(x, w, f"transformer.resblocks.{i}.", heads, 1e-5)
    return _layer_norm(x[:, 0], w["ln_post.weight"], w["ln_post.bias"], 1e-5) @ w["proj"]


def paper_encode_video(clip, fusion, x):
    """CLIP frames -> T-Trans (pre-LN, QuickGELU, LN epsilon 1e-12) or TAP -> ``[B, D]``.

    ViT frames are restated from the equations; a ResNet's frames come from open_clip's
    ModifiedResNet (OpenAI's module, same key names) run in float64.
    """
    from open_clip.transformer import VisionTransformer

    b, t = x.shape[:2]
    visual = clip.visual
    if isinstance(visual, VisionTransformer):
        heads = visual.transformer.resblocks[0].attn.num_heads
        frames = _vit_frames(visual.state_dict(), x.flatten(0, 1), heads)
    else:
        with torch.no_grad():
            frames = copy.deepcopy(visual).double()(x.flatten(0, 1).double())
    frames = frames.reshape(b, t, -1)  # [B, T, D]
    if not fusion:
        return frames.mean(dim=1)
    w = {k: v.double() for k, v in fusion.items()}
    h = frames + w["frame_position_embeddings.weight"][:t]
    for i in range(LAYERS):
        h = _block(h, w, f"transformer.resblocks.{i}.", max(1, D // 64), 1e-12)
    return (h + frames).mean(dim=1)


def _relative_error(ours, reference):
    return float((ours.double() - reference).abs().max() / reference.abs().max())


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
    assert ours.dtype == torch.float32
    assert _relative_error(ours, reference) <= 1e-5
    assert float(reference.abs().mean()) > 0.1  # a non-trivial comparison
    assert float(model.logit_scale.exp()) == pytest.approx(42.0, rel=1e-5)
    with pytest.raises(UsageError, match="set_classifier"):
        model(x)


@pytest.mark.parametrize("arch", ["tiny-vit", "tiny-rn"])
@pytest.mark.parametrize("temporal", ["transformer", "mean"])
@pytest.mark.parametrize("prefix", ["module.", ""])
def test_import_encoders_heads_and_prefixes(arch, temporal, prefix, tmp_path):
    """ViT and ResNet encoders, T-Trans and TAP, with and without DDP's ``module.`` prefix."""
    torch.manual_seed(11)
    clip = create_clip(arch, quick_gelu=True).eval()
    fusion = _random_fusion(torch.Generator().manual_seed(5)) if temporal == "transformer" else {}
    path = write_paper_checkpoint(tmp_path / "paper.pt", clip, fusion, prefix=prefix)
    import_official(path, tmp_path / "imported")
    model = VideoRecognizer.from_pretrained(tmp_path / "imported").eval()
    assert (model.model_cfg.arch, model.model_cfg.temporal) == (arch, temporal)
    x = torch.randn(3, T, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model.encode_video(x)
    reference = paper_encode_video(clip, fusion, x)
    assert float(reference.abs().max()) > 0.1
    assert _relative_error(ours, reference) <= 1e-5


def test_model_config_for_an_encoder_open_clip_does_not_name(tmp_path, capsys, monkeypatch):
    import json

    import open_clip.factory

    config = {
        "embed_dim": D,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 48,
            "head_width": 24,
            "patch_size": 16,
        },
        "text_cfg": {
            "context_length": 16,
            "vocab_size": 49408,
            "width": 32,
            "heads": 1,
            "layers": 1,
        },
    }
    config_file = tmp_path / "paper-custom-vit.json"
    config_file.write_text(json.dumps(config))
    # Build the encoder the checkpoint holds (open_clip's model builder takes a config dict).
    torch.manual_seed(4)
    clip = open_clip.model.CLIP(
        D,
        open_clip.model.CLIPVisionCfg(**config["vision_cfg"]),
        open_clip.model.CLIPTextCfg(**config["text_cfg"]),
        quick_gelu=True,
    ).eval()
    fusion = _random_fusion(torch.Generator().manual_seed(6))
    path = write_paper_checkpoint(tmp_path / "custom.pt", clip, fusion)

    out = tmp_path / "imported"
    assert main(["import-official", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--model-config" in err and "register_model_configs" not in err

    with pytest.raises(SystemExit):  # one or the other
        main(
            [
                "import-official",
                str(path),
                "--out",
                str(out),
                "--arch",
                "tiny-vit",
                "--model-config",
                str(config_file),
            ]
        )
    assert "not allowed with" in capsys.readouterr().err

    assert (
        main(["import-official", str(path), "--out", str(out), "--model-config", str(config_file)])
        == 0
    )
    assert (out / "model_configs" / "paper-custom-vit.json").is_file()
    # A new process knows only what the folder brings: forget the registration made above.
    config_file.unlink()
    monkeypatch.delitem(open_clip.factory._MODEL_CONFIGS, "paper-custom-vit")
    model = load_model(out)  # the one loader (every command reads folders through it)
    assert model.model_cfg.arch == "paper-custom-vit"
    x = torch.randn(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        ours = model.encode_video(x)
    assert _relative_error(ours, paper_encode_video(clip, fusion, x)) <= 1e-5


def test_model_config_errors(tmp_path, paper_checkpoint):
    path, _, _ = paper_checkpoint
    bad = tmp_path / "bad.json"
    bad.write_text('{"embed_dim": 64, "vision_cfg": {}}')
    with pytest.raises(BackboneError, match="text_cfg"):
        import_official(path, tmp_path / "o", model_config=bad)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        import_official(path, tmp_path / "o", model_config=tmp_path / "missing.json")
    clash = tmp_path / "ViT-B-16.json"
    clash.write_text('{"embed_dim": 64, "vision_cfg": {}, "text_cfg": {}}')
    with pytest.raises(BackboneError, match="rename"):
        import_official(path, tmp_path / "o", model_config=clash)


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
    from text4vis.models.factory import load_saved_model

    path, clip, fusion = paper_checkpoint
    saved = load_saved_model(path)
    assert saved.kind == "official" and saved.config.model.temporal == "transformer"
    x = torch.randn(2, T, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        ours = load_model(path).encode_video(x)
    reference = paper_encode_video(clip, fusion, x)
    assert float((ours - reference).abs().max()) <= 1e-4

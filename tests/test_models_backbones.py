"""open_clip backbones: tiny architectures and every local weight-file format."""

from __future__ import annotations

import logging

import pytest
import torch

from text4vis.models.backbones import (
    RANDOM_INIT_MESSAGE,
    BackboneError,
    create_clip,
    read_state_dict,
    weights_loaded_afterwards,
)


@pytest.fixture(scope="module")
def source():
    """A tiny CLIP with QuickGELU (as OpenAI's), random weights, in eval mode."""
    torch.manual_seed(1)
    return create_clip("tiny-vit", quick_gelu=True).eval()


def outputs(model):
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(2, 3, 32, 32, generator=generator)
    with torch.no_grad():
        return model.encode_image(image)


def test_tiny_architectures_build():
    vit, rn = create_clip("tiny-vit"), create_clip("tiny-rn")
    assert outputs(vit.eval()).shape == (2, 64) and outputs(rn.eval()).shape == (2, 64)
    assert create_clip("tiny-vit", image_size=48).visual.image_size == (48, 48)


def test_openai_state_dict_with_extra_keys(source, tmp_path):
    state = {k: v.half() if v.ndim == 2 else v for k, v in source.state_dict().items()}
    state.update(
        input_resolution=torch.tensor(32),
        context_length=torch.tensor(32),
        vocab_size=torch.tensor(49408),
    )
    path = tmp_path / "openai.pt"
    torch.save(state, path)
    loaded, kind = read_state_dict(path)
    assert kind == "openai" and "input_resolution" not in loaded
    model = create_clip("tiny-vit", str(path)).eval()
    # OpenAI format -> QuickGELU is chosen automatically; weights went through fp16.
    torch.testing.assert_close(outputs(model), outputs(source), atol=2e-2, rtol=2e-2)
    assert not torch.allclose(outputs(model), outputs(create_clip("tiny-vit").eval()))


def random_init_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if RANDOM_INIT_MESSAGE in r.getMessage()]


def test_random_init_warning_silenced_only_inside_the_block(caplog):
    with caplog.at_level(logging.WARNING):
        create_clip("tiny-vit")  # really random: open_clip says so
        assert len(random_init_warnings(caplog)) == 1
        caplog.clear()
        with weights_loaded_afterwards():
            create_clip("tiny-vit")
            logging.getLogger("open_clip.factory").warning("another open_clip warning")
            logging.warning("a root warning")
        assert random_init_warnings(caplog) == []
        assert [r.getMessage() for r in caplog.records] == [
            "another open_clip warning",
            "a root warning",
        ]
        create_clip("tiny-vit")  # the filter is gone again
        assert len(random_init_warnings(caplog)) == 1


def test_open_clip_checkpoint_and_safetensors(source, tmp_path, caplog):
    from safetensors.torch import save_file

    ckpt = tmp_path / "epoch_1.pt"
    torch.save(
        {"epoch": 1, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, ckpt
    )
    with caplog.at_level(logging.WARNING):
        model = create_clip("tiny-vit", str(ckpt), quick_gelu=True).eval()
    assert random_init_warnings(caplog) == []  # the file's weights were loaded
    assert torch.equal(outputs(model), outputs(source))
    st = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(st))
    assert torch.equal(
        outputs(create_clip("tiny-vit", str(st), quick_gelu=True).eval()), outputs(source)
    )


def test_torchscript_archive(source, tmp_path):
    class Holder(torch.nn.Module):
        def __init__(self, clip):
            super().__init__()
            for name, child in clip.named_children():
                self.add_module(name, child)
            for name, param in clip.named_parameters(recurse=False):
                self.register_parameter(name, param)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    scripted = torch.jit.script(Holder(source))
    path = tmp_path / "ViT-tiny.pt"
    torch.jit.save(scripted, str(path))
    state, kind = read_state_dict(path)
    assert kind == "openai-jit"
    model = create_clip("tiny-vit", str(path)).eval()
    assert torch.equal(outputs(model), outputs(source))


def test_errors_name_the_fix(tmp_path):
    with pytest.raises(BackboneError, match="Did you mean"):
        create_clip("tiny-vitt")
    with pytest.raises(BackboneError, match="local weight file"):
        create_clip("tiny-vit", "openai")
    with pytest.raises(FileNotFoundError, match="no such weight file"):
        create_clip("tiny-vit", str(tmp_path / "missing.pt"))
    bad = tmp_path / "rn.pt"
    torch.save(create_clip("tiny-rn").state_dict(), bad)
    with pytest.raises(BackboneError, match="do not fit"):
        create_clip("tiny-vit", str(bad))


def test_failed_tag_download_names_local_file(monkeypatch):
    import open_clip

    def offline(*args, **kwargs):
        raise RuntimeError("Failed to download weights for tag 'openai': no network")

    monkeypatch.setattr(open_clip, "create_model", offline)
    with pytest.raises(BackboneError, match="model.pretrained=/path/to/that/file"):
        create_clip("ViT-B-32", "openai")

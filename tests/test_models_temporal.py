"""The temporal transformer against the paper's equations, written out in float64.

T-Trans (paper, section 4.4 and figure 2; CLIP's block design):

    h_0 = x + P[:T]                                   frame position embeddings
    a_l = h_{l-1} + MHA(LN_1(h_{l-1}))                pre-LN attention, residual
    h_l = a_l + W_2 QuickGELU(W_1 LN_2(a_l) + b_1) + b_2
    v   = mean_t (h_L + x)                            residual around the stack, mean over time

    LN(z) = gamma * (z - mean(z)) / sqrt(var(z) + eps) + beta, biased variance, eps = 1e-12

The epsilon is the one constant the text leaves out; the paper's code uses 1e-12 (TF style, inside
the square root). On frame embeddings of small variance a different epsilon moves the output by
far more than float64 rounding, so these tests fail if the normalisation ever changes.
"""

from __future__ import annotations

import math

import pytest
import torch

from text4vis.models.temporal import TEMPORAL_LAYER_NORM_EPS, TemporalTransformer

WIDTH, LAYERS, HEADS, FRAMES = 128, 2, 2, 6  # heads = WIDTH // 64, as the paper's code sets


def layer_norm(z: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float):
    mean = z.mean(-1, keepdim=True)
    var = (z - mean).pow(2).mean(-1, keepdim=True)  # biased, as in LN
    return gamma * (z - mean) / torch.sqrt(var + eps) + beta


def paper_t_trans(params: dict[str, torch.Tensor], x: torch.Tensor, eps: float) -> torch.Tensor:
    """The equations of the module docstring, with nothing taken from the module under test."""
    b, t, d = x.shape
    dh = d // HEADS
    h = x + params["frame_position_embeddings.weight"][:t]
    for i in range(LAYERS):
        p = f"transformer.resblocks.{i}."
        y = layer_norm(h, params[p + "ln_1.weight"], params[p + "ln_1.bias"], eps)
        qkv = y @ params[p + "attn.in_proj_weight"].T + params[p + "attn.in_proj_bias"]
        q, k, v = (z.reshape(b, t, HEADS, dh).transpose(1, 2) for z in qkv.split(d, dim=-1))
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)  # [B, H, T, T]
        o = (weights @ v).transpose(1, 2).reshape(b, t, d)
        h = h + o @ params[p + "attn.out_proj.weight"].T + params[p + "attn.out_proj.bias"]
        y = layer_norm(h, params[p + "ln_2.weight"], params[p + "ln_2.bias"], eps)
        y = y @ params[p + "mlp.c_fc.weight"].T + params[p + "mlp.c_fc.bias"]
        y = y * torch.sigmoid(1.702 * y)  # QuickGELU
        h = h + y @ params[p + "mlp.c_proj.weight"].T + params[p + "mlp.c_proj.bias"]
    return (h + x).mean(dim=1)


@pytest.fixture(scope="module")
def head_and_inputs():
    generator = torch.Generator().manual_seed(12)
    head = TemporalTransformer(WIDTH, LAYERS, max_frames=8).double().eval()
    assert len(head.transformer.resblocks) == LAYERS
    params = {}
    with torch.no_grad():
        for name, value in head.state_dict().items():
            noise = torch.randn(value.shape, generator=generator, dtype=torch.float64)
            if name.endswith("ln_1.weight") or name.endswith("ln_2.weight"):
                new = 1 + 0.1 * noise
            elif "frame_position" in name:
                new = 0.003 * noise  # small, like trained position embeddings
            else:
                new = 0.1 * noise
            params[name] = new
        head.load_state_dict(params)
    # Frame embeddings of small variance (about 1e-5 per vector): the regime where the epsilon
    # matters, as for the frame embeddings of some ResNet encoders.
    x = 0.003 * torch.randn(3, FRAMES, WIDTH, generator=generator, dtype=torch.float64)
    return head, params, x


def test_epsilon_is_the_papers():
    assert TEMPORAL_LAYER_NORM_EPS == 1e-12
    head = TemporalTransformer(64, 1)
    norms = [m for m in head.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert len(norms) == 2 and all(m.eps == TEMPORAL_LAYER_NORM_EPS for m in norms)


def test_output_pinned_to_the_papers_equations_in_float64(head_and_inputs):
    head, params, x = head_and_inputs
    with torch.no_grad():
        ours = head(x)
    expected = paper_t_trans(params, x, eps=1e-12)
    assert ours.dtype == torch.float64 and ours.shape == (3, WIDTH)
    scale = float(expected.abs().max())
    assert scale > 1e-2  # a non-trivial output
    # float64 rounding only: a change of epsilon or of the normalisation is far above this.
    assert float((ours - expected).abs().max()) <= 1e-12 * scale


def test_the_pin_sees_a_change_of_epsilon(head_and_inputs):
    """The same equations with torch's default epsilon 1e-5 are far outside the tolerance."""
    head, params, x = head_and_inputs
    with torch.no_grad():
        ours = head(x)
    other = paper_t_trans(params, x, eps=1e-5)
    scale = float(other.abs().max())
    assert float((ours - other).abs().max()) > 1e-4 * scale


def test_tokent1d_starts_as_the_papers_quarter_shift():
    """TokenT1D's kernel starts as the shift of the paper's code: 1/4 of channels each way."""
    from text4vis.models.backbones import create_clip
    from text4vis.models.temporal import TokenT1D, shift_kernel

    visual = create_clip("tiny-vit").visual
    head = TokenT1D(visual, [0])
    kernel = head.convs["0"].weight.detach()
    width = kernel.shape[0]
    assert torch.equal(kernel, shift_kernel(width, 4))
    assert int(kernel[:, 0, 2].sum()) == width // 4  # take the next frame
    assert int(kernel[:, 0, 0].sum()) == width // 4  # take the previous frame
    assert int(kernel[:, 0, 1].sum()) == width - 2 * (width // 4)


def test_t_trans_initialisation_follows_the_papers_code():
    torch.manual_seed(0)
    head = TemporalTransformer(256, 1)
    block = head.transformer.resblocks[0]
    # Linear and embedding weights N(0, 0.02)
    for weight in (
        block.mlp.c_fc.weight,
        block.attn.out_proj.weight,
        head.frame_position_embeddings.weight,
    ):
        assert abs(float(weight.std()) - 0.02) < 0.002
    # the packed input projection keeps torch's Xavier-uniform: bound sqrt(6 / (D + 3D))
    bound = math.sqrt(6 / (256 + 3 * 256))
    in_proj = block.attn.in_proj_weight
    assert float(in_proj.abs().max()) <= bound and float(in_proj.abs().max()) > 0.9 * bound
    assert float(block.attn.in_proj_bias.abs().max()) == 0.0
    assert float(block.mlp.c_fc.bias.abs().max()) == 0.0
    assert torch.equal(block.ln_1.weight, torch.ones(256))

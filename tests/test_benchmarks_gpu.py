"""benchmarks/gpu.py: FLOP count against the transformer formula, and the --smoke run."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

GPU_BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmarks_gpu", GPU_BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    sys.modules["benchmarks_gpu"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("benchmarks_gpu", None)


def vit_video_flops(*, frames, size, patch, width, layers, embed, t_layers, classes):
    """Matrix-product FLOPs (2 per multiply-add) of CLIP ViT frames + T-Trans + classifier."""
    tokens = (size // patch) ** 2 + 1

    def block(n, d):  # qkv, scores, weighted values, output projection, 4x MLP
        return 2 * n * d * 3 * d + 2 * n * n * d * 2 + 2 * n * d * d + 2 * n * d * 4 * d * 2

    image = 2 * (size // patch) ** 2 * patch * patch * 3 * width  # patch embedding
    image += layers * block(tokens, width) + 2 * width * embed  # blocks, projection
    return frames * image + t_layers * block(frames, embed) + 2 * embed * classes


def test_counted_flops_follow_the_formula_attention_included(bench):
    setting = bench.smoke_setting()
    model = bench.build_model(setting, torch.device("cpu"))
    forward, training = bench.count_flops(model, setting, torch.device("cpu"))
    expected = vit_video_flops(frames=setting.frames, size=setting.size, patch=8, width=64,
                               layers=2, embed=64, t_layers=6, classes=setting.classes)  # fmt: skip
    assert forward == expected
    # backward: two products per forward product (input and weight gradients) except where no
    # gradient is needed (the input pixels): between 2x and 3x the forward
    assert 2 * forward < training <= 3 * forward


def test_peak_table(bench):
    assert bench.peak_tflops("NVIDIA H100 PCIe", None) == 756.0
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", None) == 989.4
    assert bench.peak_tflops("NVIDIA H100 NVL", None) == 835.5
    assert bench.peak_tflops("NVIDIA H200", None, 132) == 989.4
    assert bench.peak_tflops("NVIDIA H200 NVL", None) == 835.5
    assert bench.peak_tflops("NVIDIA L4", None) == 121.0
    assert bench.peak_tflops("NVIDIA L40S", None) == 362.05
    assert bench.peak_tflops("NVIDIA A100-SXM4-80GB", None) == 312.0
    assert bench.peak_tflops("Unknown GPU", None) is None
    assert bench.peak_tflops("NVIDIA A100-SXM4-80GB", 100.0) == 100.0


def test_h100_variants_are_told_apart(bench):
    assert bench.gpu_model("NVIDIA H100 80GB HBM3", 132).endswith("(H100 SXM)")
    assert bench.gpu_model("NVIDIA H100 PCIe", 114) == "NVIDIA H100 PCIe"
    assert bench.gpu_model("NVIDIA H100 NVL", 132) == "NVIDIA H100 NVL"
    # a name without the form factor: the PCIe card has 114 SMs, SXM and NVL 132
    assert bench.gpu_model("NVIDIA H100", 114).endswith("(H100 PCIe)")
    assert bench.peak_tflops("NVIDIA H100", None, 114) == 756.0
    assert bench.gpu_model("NVIDIA A100-SXM4-80GB", 108) == "NVIDIA A100-SXM4-80GB"


def test_without_cuda_the_full_run_stops_at_once_with_the_reason(bench, tmp_path, caplog):
    out = tmp_path / "gpu.json"
    with caplog.at_level("ERROR"):
        assert bench.main(["--json", str(out)]) == 2  # not hours of ViT-B/16 on the CPU
    assert "CUDA is not usable: " in caplog.text
    assert not out.exists()


def test_smoke_run_writes_table_and_json(bench, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "gpu.json"
    assert bench.main(["--smoke", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| mode | variant | batch | clips/s |" in printed
    result = json.loads(out.read_text())
    env = result["environment"]
    for key in ("gpu", "driver", "torch", "cuda", "commit", "cpu_count", "date_utc"):
        assert key in env
    assert len(env["commit"]) == 40  # the repository's commit, from any working directory
    rows = result["rows"]
    kinds = {(r["mode"], r["variant"], r["batch"]) for r in rows}
    assert {("inference", "eager", 1), ("inference", "eager", 2), ("training", "eager", 2),
            ("trainer", "eager", 2), ("loader", "mp4", 2),
            ("loader", "frames", 2)} <= kinds  # fmt: skip
    assert all(r["clips_per_s"] > 0 for r in rows)
    assert result["flops_per_clip"]["forward"] > 0
    for r in rows:
        if r["mode"] != "loader":
            flops = result["flops_per_clip"]["forward" if r["mode"] == "inference" else
                                              "training_step"]  # fmt: skip
            assert r["tflops"] == pytest.approx(r["clips_per_s"] * flops / 1e12)

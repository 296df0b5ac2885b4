"""The CPU suite stays on the CPU on a GPU machine; gpu tests fail loudly when asked to.

A CUDA machine is simulated under the suite's real ``conftest.py``: an inner pytest session loads
a plugin that makes this process report 2 CUDA devices (``torch.cuda.is_available()`` True,
``set_device`` a no-op), so ``run.device=auto`` would resolve to ``cuda:0`` wherever the pin is
missing. Probe tests then check what a non-``gpu`` test gets in the places the CPU suite resolves
its device: ``select_device("auto")`` in a test and in a module-scoped fixture, the configs
``overrides`` / ``small_data_config`` write, and the processes a test starts. A ``gpu`` probe
checks that the pin leaves gpu tests their GPUs.

Also: ``make test-gpu`` / ``make bench-gpu`` exit non-zero with the reason when CUDA is not
usable, and :func:`text4vis.runtime.diagnose_cuda` names a driver/wheel mismatch.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from text4vis.runtime import diagnose_cuda

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

FAKE_CUDA_PLUGIN = '''
"""Loaded with -p before conftest.py: this CPU process reports two CUDA devices."""
import torch

torch.cuda.is_available = lambda: True
torch.cuda.device_count = lambda: 2
torch.cuda.set_device = lambda device: None
'''

PROBES = """
import os
import subprocess
import sys

import pytest
import torch

from conftest import overrides, small_data_config
from text4vis.config import load_config
from text4vis.runtime import select_device


@pytest.fixture(scope="module")
def fixture_device():
    return select_device("auto")  # set up before the test's function-scoped fixtures


def test_auto_is_the_cpu(tmp_path):
    assert select_device("auto").type == "cpu"


def test_module_fixture_got_the_cpu(fixture_device):
    assert fixture_device.type == "cpu"


def test_configs_pin_the_cpu(tmp_path):
    assert load_config(None, overrides(tmp_path, tmp_path)).run.device == "cpu"
    cfg = small_data_config(tmp_path, tmp_path / "l.csv", tmp_path / "v.txt", num_segments=2,
                            input_size=32, batch_size=1, eval_batch_size=1)
    assert cfg.run.device == "cpu"


def test_started_processes_see_no_gpu():
    code = "import os; print(repr(os.environ.get('CUDA_VISIBLE_DEVICES')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip() == "''"


@pytest.mark.gpu
def test_gpu_tests_keep_the_gpu():
    assert select_device("auto") == torch.device("cuda", 0)
    assert torch.cuda.device_count() == 2


@pytest.mark.gpu(devices=3)
def test_three_gpus():
    raise AssertionError("runs only with 3 CUDA devices")
"""

GPU_PROBE = """
import pytest


@pytest.mark.gpu
def test_needs_cuda():
    pass


def test_cpu():
    pass
"""


def run_inner_session(
    root: Path, probes: str, *, fake_cuda: bool, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """pytest over ``probes`` in ``root`` with the suite's conftest (and the fake CUDA plugin)."""
    root.mkdir()
    shutil.copy(TESTS / "conftest.py", root / "conftest.py")
    (root / "fake_cuda.py").write_text(FAKE_CUDA_PLUGIN)
    (root / "test_probes.py").write_text(textwrap.dedent(probes))
    (root / "pytest.ini").write_text("[pytest]\nmarkers =\n    gpu: needs CUDA\n")
    plugin = ["-p", "fake_cuda"] if fake_cuda else []
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rsfE", "-p", "no:cacheprovider", *plugin],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", **(env or {})},
    )


def outcome_counts(output: str) -> dict[str, int]:
    summary = output.strip().splitlines()[-1]
    return {word: int(n) for n, word in re.findall(r"(\d+) (\w+)", summary)}


@pytest.mark.process
def test_non_gpu_tests_run_on_the_cpu_of_a_cuda_machine(tmp_path: Path) -> None:
    result = run_inner_session(tmp_path / "inner", PROBES, fake_cuda=True)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert outcome_counts(result.stdout) == {"passed": 5, "skipped": 1}, output[-4000:]
    assert "needs 3 CUDA device(s), found 2" in result.stdout


@pytest.mark.process
def test_gpu_tests_fail_without_cuda_when_required(tmp_path: Path) -> None:
    # This test is not marked gpu, so its inner session sees no CUDA on any machine.
    skipped = run_inner_session(tmp_path / "skip", GPU_PROBE, fake_cuda=False)
    assert skipped.returncode == 0, skipped.stdout[-4000:]
    assert outcome_counts(skipped.stdout) == {"passed": 1, "skipped": 1}
    required = run_inner_session(
        tmp_path / "fail", GPU_PROBE, fake_cuda=False, env={"TEXT4VIS_REQUIRE_GPU": "1"}
    )
    assert required.returncode == 1, required.stdout[-4000:]
    assert outcome_counts(required.stdout) == {"passed": 1, "error": 1}
    assert "TEXT4VIS_REQUIRE_GPU=1 but CUDA is not usable:" in required.stdout


def make_target(target: str) -> subprocess.CompletedProcess[str]:
    """``make TARGET`` with this interpreter and without (re)installing the environment."""
    stamp = ".make-test-stamp-never-built"
    return subprocess.run(
        ["make", "-o", stamp, f"STAMP={stamp}", f"PY={sys.executable}", target],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTEST_ARGS": "--collect-only"},
    )


@pytest.mark.process
@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("target", ["test-gpu", "bench-gpu"])
def test_make_gpu_targets_fail_without_cuda(target: str) -> None:
    result = make_target(target)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-4000:]
    assert "CUDA is not usable: " in output
    # it stopped at the check: no test was collected, no benchmark started
    assert "pytest" not in output and "benchmarks/gpu.py" not in output, output[-4000:]


def test_diagnosis_names_a_driver_too_old_for_the_wheel() -> None:
    message = diagnose_cuda(
        torch_version="2.9.1+cu130",
        torch_cuda="13.0",
        driver_version="550.54.15",
        driver_cuda="12.4",
    )
    assert message.startswith("driver/wheel mismatch:")
    assert "CUDA 13.0" in message and "550.54.15" in message and "CUDA up to 12.4" in message
    # without nvidia-smi, from torch's warning (the driver API's version number)
    warning = (
        "CUDA initialization: The NVIDIA driver on your system is too old (found version 12020)."
    )
    message = diagnose_cuda(torch_version="2.9.1+cu130", torch_cuda="13.0", warning=warning)
    assert message.startswith("driver/wheel mismatch:") and "CUDA up to 12.2" in message
    # a driver new enough is not called a mismatch
    message = diagnose_cuda(
        torch_version="2.9.1+cu130", torch_cuda="13.0", driver_version="580.65", driver_cuda="13.0"
    )
    assert "mismatch" not in message and "580.65" in message


def test_diagnosis_of_other_causes() -> None:
    assert "CPU-only build" in diagnose_cuda(torch_version="2.9.1+cpu", torch_cuda=None)
    hidden = diagnose_cuda(torch_version="2.9.1", torch_cuda="13.0", visible_devices="")
    assert "CUDA_VISIBLE_DEVICES=''" in hidden
    no_driver = diagnose_cuda(
        torch_version="2.9.1", torch_cuda="13.0", smi_error="nvidia-smi is not on PATH"
    )
    assert no_driver.startswith("no NVIDIA driver answers (nvidia-smi is not on PATH)")


def test_set_tf32_switches_cuda_matmuls_and_convolutions_only() -> None:
    import torch

    from text4vis.config import Config
    from text4vis.runtime import set_tf32

    assert Config().run.tf32 is True  # on by default for training
    flags = torch.backends.cuda.matmul, torch.backends.cudnn
    before = [flag.allow_tf32 for flag in flags]
    try:  # setting the flags needs no GPU
        set_tf32(torch.device("cuda", 0), True)
        assert all(flag.allow_tf32 for flag in flags)
        set_tf32(torch.device("cpu"), False)  # the CPU: left alone
        assert all(flag.allow_tf32 for flag in flags)
        set_tf32("cuda:1", False)
        assert not any(flag.allow_tf32 for flag in flags)
    finally:
        for flag, value in zip(flags, before):
            flag.allow_tf32 = value

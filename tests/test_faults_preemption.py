"""Preemption: SIGTERM / SIGUSR1 stop a real training process after the step in flight.

The run writes ``last.pt``, logs where it stopped and exits with status 75; ``--resume auto`` then
ends with the same weights as an uninterrupted run (bit-identical on the CPU). The signals are real:
the process sends them to itself at a chosen step (``tests/fault_driver.py``), one of them while a
checkpoint is being written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import overrides
from test_engine_train import colour_data, weights  # noqa: F401 (fixture)
from text4vis.config import dump_config, load_config
from text4vis.engine.preemption import PREEMPTED_EXIT_STATUS
from text4vis.engine.train import fit
from text4vis.models.factory import load_checkpoint

DRIVER = Path(__file__).with_name("fault_driver.py")
# 24 clips / (batch 4 x accum 2) = 3 steps per epoch, 2 epochs
EXTRA = ("train.epochs=2", "train.grad_accum=2", "train.clip_grad=1.0")


def _env(**fault: str) -> dict[str, str]:
    src = str(Path(__file__).parents[1] / "src")
    path = os.pathsep.join([src, str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
    # The in-process runs' thread count: CPU kernels may sum in another order with other counts.
    threads = str(torch.get_num_threads())
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": threads, **fault}


def _assert_same_weights(expected_run: str, got_run: str) -> None:
    expected, got = weights(expected_run), weights(got_run)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


@pytest.mark.slow  # three trainings, one in a subprocess: run by `make test-faults`
def test_sigterm_stops_after_the_step_and_resumes_bit_identically(colour_data, tmp_path):  # noqa: F811
    reference = fit(load_config(None, overrides(colour_data, tmp_path / "a", *EXTRA)))
    assert reference.step == 6

    cfg = load_config(None, overrides(colour_data, tmp_path / "b", *EXTRA))
    config_path = tmp_path / "b.yaml"
    dump_config(cfg, config_path)
    # SIGTERM in the middle of step 2 (of epoch 1), and a second one while last.pt is written.
    env = _env(FAULT_SIGNAL_AT_STEP="2", FAULT_SIGNAL_DURING_SAVE="1")
    result = subprocess.run(
        [sys.executable, str(DRIVER), "train", str(config_path)],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == PREEMPTED_EXIT_STATUS, result.stderr[-3000:]
    assert "preempted by SIGTERM: stopped after step 2 (epoch 1, 2 of 3 steps into it)" in (
        result.stderr
    ), result.stderr[-3000:]
    assert "received again" in result.stderr  # the second signal came during the save
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert summary["preempted"] and summary["step"] == 2 and summary["model_dir"] is None
    run = Path(summary["run_dir"])
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert (ckpt["epoch"], ckpt["step"], ckpt["epoch_step"]) == (0, 2, 2)
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["last.pt"]  # no partial file
    log = (run / "log.txt").read_text()
    assert "preempted by SIGTERM" in log and "--resume auto" in log

    resumed = fit(cfg, resume="auto")
    assert resumed.run_dir == str(run) and resumed.step == 6 and not resumed.preempted
    _assert_same_weights(reference.run_dir, resumed.run_dir)


@pytest.mark.slow
def test_sigusr1_on_one_torchrun_rank_stops_every_rank_after_the_same_step(colour_data, tmp_path):  # noqa: F811
    """2 gloo processes; only rank 1 gets SIGUSR1 (in step 4); both stop after step 4, and
    ``--resume auto`` under torchrun ends where one uninterrupted process does (1e-5: gloo sums
    gradients in another order than one process's batch mean)."""
    # As in test_ddp_two_processes_match_one_process: eps=1 makes a wrong average over ranks show.
    common = (*EXTRA[:1], "train.seed=3", "train.eps=1.0", "train.lr=0.05")
    # 1 process x 4 clips == 2 ranks x 2 clips a step: the sampler deals the same 4 clips
    reference = fit(load_config(None, overrides(colour_data, tmp_path / "a", *common)))
    cfg = load_config(None, overrides(colour_data, tmp_path / "b", *common, "data.batch_size=2"))
    config_path = tmp_path / "b.yaml"
    dump_config(cfg, config_path)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=2", str(DRIVER), "train", str(config_path)]  # fmt: skip
    env = _env(FAULT_SIGNAL_AT_STEP="4", FAULT_SIGNAL="SIGUSR1", FAULT_SIGNAL_RANK="1")
    result = subprocess.run(torchrun, capture_output=True, text=True, timeout=400, env=env)
    # rank 1 got the signal; rank 0 learnt it from the all-reduced flag in the same step
    assert "preempted by SIGUSR1: stopped after step 4 " in result.stderr, result.stderr[-4000:]
    assert "preempted by another rank's signal: stopped after step 4 " in result.stderr
    # torchrun reports its workers' status 75 as a failure of its own
    assert result.returncode != 0 and f"exitcode  : {PREEMPTED_EXIT_STATUS}" in result.stderr
    run = Path(json.loads(result.stdout[result.stdout.index("{") :])["run_dir"])
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["step"] == 4 and ckpt["world_size"] == 2

    resumed = subprocess.run(
        [*torchrun, "--resume", "auto"], capture_output=True, text=True, timeout=400, env=_env()
    )
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    summary = json.loads(resumed.stdout[resumed.stdout.index("{") :])
    assert summary["run_dir"] == str(run) and summary["step"] == reference.step
    # gloo sums gradients in another order than one process's batch mean: close, not identical
    expected, got = weights(reference.run_dir), weights(str(run))
    for key in expected:
        assert (expected[key] - got[key]).abs().max().item() <= 1e-5, key

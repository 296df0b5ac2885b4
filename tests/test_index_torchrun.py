"""`torchrun ... -m text4vis index`: two gloo processes give the index one process gives, and a run
killed part way resumes without embedding its finished units again."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from text4vis.index_shards import SHARDS_NAME
from text4vis.search import VideoIndex

# Run under torchrun: rank 1 kills itself (SIGKILL) right after writing its first unit.
DRIVER = """
import os, signal, sys
import text4vis.index_shards as shards
if os.environ.get("RANK") == "1":
    real = shards.write_index
    def write_then_die(*args, **kwargs):
        real(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
    shards.write_index = write_then_die
from text4vis.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _torchrun(args: list[str], tmp_path: Path, driver: Path | None = None) -> Any:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    target = [str(driver)] if driver else ["-m", "text4vis"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc-per-node=2", *target, *args]  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=500, env=env, cwd=tmp_path
    )


@pytest.mark.process
def test_two_processes_index_as_one_and_resume_after_a_kill(
    demo_search_model: dict[str, Any], tmp_path: Path
):
    from text4vis.predict import Predictor

    clips = sorted((demo_search_model["dataset"].root / "videos" / "val").glob("*.mp4"))[:10]
    folder = tmp_path / "videos"
    folder.mkdir()
    for clip in clips:
        shutil.copy(clip, folder / clip.name)
    model = demo_search_model["model_dir"]
    predictor = Predictor.from_pretrained(model, device="cpu", num_workers=0, batch_size=2)
    single = VideoIndex.build([folder], predictor, tmp_path / "single", chunk_size=2)

    out = tmp_path / "sharded"
    args = ["index", str(folder), "--model", str(model), "--out", str(out), "--device", "cpu",
            "--workers", "0", "--batch-size", "2", "--chunk-size", "2", "--no-progress", "--json"]  # fmt: skip
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    killed = _torchrun(args, tmp_path, driver)
    assert killed.returncode != 0, killed.stderr[-3000:]
    assert not (out / "index.json").exists()  # nothing merged
    done = sorted(
        p.name for p in (out / SHARDS_NAME).glob("*/unit-*") if (p / "index.json").exists()
    )
    assert "unit-000001" in done  # rank 1's first unit was written before it died

    resumed = _torchrun(args, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    report = json.loads(resumed.stdout[resumed.stdout.index("{") :])
    # 10 videos in 5 units of 2: the units written before the kill are not embedded again
    assert report["embedded"] == 10 - 2 * len(done) and report["videos"] == 10
    assert not (out / SHARDS_NAME).exists()  # removed after the merge

    merged = VideoIndex.load(out)
    assert list(merged.videos) == list(single.videos)  # same rows, same order
    np.testing.assert_allclose(merged.embeddings, single.embeddings, rtol=0, atol=1e-6)
    assert merged.info.model.identity == single.info.model.identity
    assert merged.info.data == single.info.data and merged.info.inputs == single.info.inputs
    hits = merged.search_vectors(single.embeddings[3:4], top_k=1)[0]
    assert hits[0].video == single.videos.path(3)

"""`torchrun --nproc_per_node 2 -m app train ...` on CPU (gloo): real processes, real DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
from train_fixtures import write_config, write_fake_cache

from app.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_two_process_torchrun_ends_with_identical_weights(tmp_path):
    cache = write_fake_cache(tmp_path / "cache", per_class=8, splits={"train": 0.75, "test": 0.25})
    config = write_config(tmp_path / "ddp.toml", cache=cache,
                          train={"epochs": 2, "device": "cpu", "threads": 1})
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "app", "train", "--config", str(config), "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "ddp"
    log = (run / "log.txt").read_text()
    # each rank hashes its weights at the end; the engine fails the run if the digests differ
    assert "weights identical on all 2 ranks" in log
    assert "x2" in log.splitlines()[0], "the run should report 2 processes"
    digest = log.split("weights identical on all 2 ranks (sha256 ")[1][:16]

    import hashlib

    import torch

    ckpt = load_checkpoint(run / "checkpoints" / "last")
    h = hashlib.sha256()
    for name, t in sorted(ckpt.model.state_dict().items()):
        h.update(name.encode())
        h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    assert h.hexdigest()[:16] == digest, "rank 0's checkpoint is not the weights the ranks agreed on"
    assert safetensors.torch.load_file(str(run / "checkpoints" / "best.safetensors"))
    # two ranks, each with half the batches: the epoch has half the steps of a single process
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3
    result = json.loads((run / "test_metrics.json").read_text())
    assert result["num_clips"] == 6, "evaluation must gather every clip from both ranks exactly once"

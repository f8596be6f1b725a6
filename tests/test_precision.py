"""`precision = "bf16"`: the forward under torch.autocast, weights and the recurrent state in float32;
results close to float32's (the oracle: the same model in float32)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_fixtures import write_config, write_fake_cache

from app.precision import autocast
from models import create_model

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


@pytest.mark.parametrize("name", ["tt_gru", "tt_lstm"])
def test_bf16_forward_is_close_to_float32_and_keeps_a_float32_state(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=5, in_modes=(4, 6, 8, 12), hidden_modes=(2, 4, 4, 4),
                         ranks=(1, 4, 4, 4, 1)).eval()
    x = torch.randint(0, 256, (4, 12, 24, 32, 3), dtype=torch.uint8)
    lengths = torch.tensor([12, 9, 5, 1])
    with torch.no_grad():
        ref = model(x, lengths)
        with autocast(CPU, "bf16"):
            low = model(x, lengths).float()
            gx = torch.zeros(2, 3 * model.hidden_size, dtype=torch.bfloat16)
            assert all(s.dtype == torch.float32 for s in model._zero_state(gx))
    assert ref.dtype == torch.float32
    torch.testing.assert_close(low, ref, atol=0.05, rtol=0.05)  # bf16 keeps ~3 significant digits
    assert not torch.equal(low, ref), "autocast had no effect"


def test_bf16_training_runs_and_writes_float32_weights(tmp_path):
    cache = write_fake_cache(tmp_path / "cache", per_class=6, splits={"train": 0.75, "test": 0.25})
    losses = {}
    for precision in ("fp32", "bf16"):
        config = write_config(tmp_path / f"{precision}.toml", cache=cache,
                              train={"epochs": 2, "device": "cpu", "precision": precision, "name": precision})
        r = subprocess.run([sys.executable, "-m", "app", "train", "--config", str(config), "--no-progress"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert r.returncode == 0, r.stderr[-2000:]
        rows = (tmp_path / "runs" / precision / "metrics.csv").read_text().splitlines()
        losses[precision] = float(rows[1].split(",")[rows[0].split(",").index("train_loss")])
        meta = json.loads((tmp_path / "runs" / precision / "checkpoints" / "best.json").read_text())
        assert meta["train_config"]["train"]["precision"] == precision
    assert abs(losses["bf16"] - losses["fp32"]) < 0.05 * abs(losses["fp32"]) + 0.02


def test_bf16_classify_gives_the_same_top_labels(tmp_path):
    out = {}
    for precision in ("fp32", "bf16"):
        r = subprocess.run([sys.executable, "-m", "app", "classify", str(ROOT / "data/samples"), "--checkpoint",
                            str(ROOT / "data/models/demo_tt_gru"), "--output", str(tmp_path / precision),
                            "--precision", precision, "--no-progress"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert r.returncode == 3, r.stderr  # the bundled non-video
        out[precision] = [json.loads(line) for line in (tmp_path / precision / "predictions.jsonl").open()]
    for a, b in zip(out["fp32"], out["bf16"]):
        assert a["path"] == b["path"]
        if a["error"] is None:
            assert a["labels"][0]["label"] == b["labels"][0]["label"]
            assert abs(a["labels"][0]["score"] - b["labels"][0]["score"]) < 0.05


def test_tensorboard_logs_the_curves_when_installed(tmp_path):
    pytest.importorskip("torch.utils.tensorboard", reason="tensorboard is optional")
    from app.config import load_config
    from app.train import train_experiment

    cache = write_fake_cache(tmp_path / "cache", per_class=4, splits={"train": 0.75, "test": 0.25})
    config = write_config(tmp_path / "tb.toml", cache=cache, train={"epochs": 2, "device": "cpu", "name": "tb"})
    train_experiment(load_config(config), progress=False)
    events = list((tmp_path / "runs" / "tb" / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert [e.step for e in acc.Scalars("train_loss")] == [1, 2]


@pytest.mark.parametrize("name", ["tt_gru", "tt_lstm"])
def test_a_model_cast_to_bfloat16_runs_in_bfloat16(name):
    """Without autocast, a model whose weights are bfloat16 keeps a bfloat16 state (as before)."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, in_modes=(4, 6, 8, 12), hidden_modes=(2, 2, 2, 2),
                         ranks=(1, 2, 2, 2, 1)).eval().to(torch.bfloat16)
    x = torch.randint(0, 256, (2, 5, 24, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        out = model(x, torch.tensor([5, 3]))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()

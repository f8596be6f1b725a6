"""The training engine on tiny real caches: run folder, k-fold summary, evaluate, cache errors, and
bit-exact resume after SIGKILL of a real training process."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch
from train_fixtures import write_config, write_fake_cache

from app.__main__ import main
from app.checkpoint import load_checkpoint
from app.config import load_config
from app.train import TIMING_COLUMNS, load_resume, train_experiment
from data.specs import PixelSpec
from preprocessing.cache import read_cache

ROOT = Path(__file__).resolve().parent.parent


def test_run_folder_checkpoints_and_metrics(tmp_path):
    cache = write_fake_cache(tmp_path / "cache", per_class=8, splits={"train": 0.75, "test": 0.25})
    cfg = load_config(write_config(tmp_path / "exp.toml", cache=cache, train={"epochs": 4, "plots": True}))
    result = train_experiment(cfg)
    run = tmp_path / "runs" / "exp"
    for name in ("config.toml", "log.txt", "metrics.csv", "curves.png", "confusion.png", "resume.pt",
                 "test_metrics.json", "checkpoints/best.json", "checkpoints/best.safetensors",
                 "checkpoints/last.json", "checkpoints/last.safetensors"):
        assert (run / name).is_file(), f"missing {name}"
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"]), "training did not lower the loss"
    # reading batches takes some of every epoch (here in the training process), never all of it
    assert all(0 < float(r["data_share"]) < 1 for r in rows), [r["data_share"] for r in rows]
    assert load_config(run / "config.toml") == cfg  # the resolved config round trips
    ckpt = load_checkpoint(run)
    assert ckpt.model_name == "tt_gru" and ckpt.class_names == ["a", "b", "c"]
    assert ckpt.input_spec == PixelSpec(size=(8, 6), fps=24.0)
    assert ckpt.train_config["model"]["in_modes"] == [2, 3, 4, 6]
    # the training clips' median length, a classify timeline's default window
    seconds = sorted(e.frames / 24.0 for e in read_cache(cache).entries)
    assert seconds[0] <= ckpt.clip_seconds <= seconds[-1]
    saved = json.loads((run / "test_metrics.json").read_text())
    assert saved["num_clips"] == 6 and saved["accuracy"] == result["accuracy"]
    assert 0.0 <= saved["accuracy"] <= 1.0 and len(saved["confusion"]) == 3
    # the resume state is plain tensors and containers: it loads with weights_only=True
    state = load_resume(run / "resume.pt")
    assert state["epoch"] == 4 and state["batch"] == 0 and len(state["history"]) == 4

    # evaluate reproduces the test metrics of the best checkpoint
    assert main(["evaluate", "--checkpoint", str(run), "--output", str(tmp_path / "ev.json")]) == 0
    ev = json.loads((tmp_path / "ev.json").read_text())
    assert ev["metrics"]["accuracy"] == pytest.approx(saved["accuracy"])
    assert ev["metrics"]["confusion"] == saved["confusion"]


def test_k_fold_runs_every_fold_and_summarizes(tmp_path):
    cache = write_fake_cache(tmp_path / "cache", dataset="ucf11", per_class=6, groups_per_class=3)
    cfg = load_config(write_config(
        tmp_path / "cv.toml", cache=cache, dataset="ucf11",
        data={"split": "group", "num_folds": 3}, train={"epochs": 1, "steps_per_epoch": 2},
    ))
    summary = train_experiment(cfg)
    run = tmp_path / "runs" / "cv"
    assert summary["folds"] == 3 and len(summary["accuracy"]["values"]) == 3
    assert json.loads((run / "summary.json").read_text()) == summary
    seen_test = []
    for k in range(3):
        test_cfg = load_checkpoint(run / f"fold{k}").train_config
        assert test_cfg["data"]["fold"] == k and test_cfg["data"]["split"] == "group"
        seen_test.append(json.loads((run / f"fold{k}" / "test_metrics.json").read_text())["num_clips"])
    assert sum(seen_test) == 18  # every clip is tested exactly once over the folds


def test_multi_label_uses_bce_and_map(tmp_path):
    cache = write_fake_cache(tmp_path / "cache", dataset="hollywood2", per_class=6, multi_label=True,
                             splits={"train": 0.5, "test": 0.5})
    cfg = load_config(write_config(tmp_path / "h2.toml", cache=cache, dataset="hollywood2",
                                   train={"epochs": 1}))
    result = train_experiment(cfg)
    assert 0.0 <= result["map"] <= 1.0 and "confusion" not in result
    assert "val_map" in result


def test_missing_and_stale_cache_name_the_preprocess_command(tmp_path, capsys):
    config = write_config(tmp_path / "exp.toml", cache=tmp_path / "nope")
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, "the error must be one line"
    assert f"python -m app preprocess --dataset folder --root <DATASET_ROOT> --cache {tmp_path / 'nope'}" in err
    assert "--fps 24 --size 8x6" in err

    write_fake_cache(tmp_path / "cache12", fps=12.0)
    config = write_config(tmp_path / "exp.toml", cache=tmp_path / "cache12", data={"root": "/videos"})
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "12 fps" in err and "--root /videos" in err and "--fps 24" in err


def test_model_and_frame_size_mismatch_is_a_usage_error(tmp_path, capsys):
    cache = write_fake_cache(tmp_path / "cache", splits={"train": 0.75, "test": 0.25})
    config = write_config(tmp_path / "exp.toml", cache=cache)
    assert main(["train", "--config", str(config), "--model.in_modes=[2,3,4,7]"]) == 2
    assert "in_modes [2, 3, 4, 7] multiply to 168" in capsys.readouterr().err


def _train_cmd(config: Path, name: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "app", "train", "--config", str(config), f"--train.name={name}", *extra]


def test_resume_from_a_state_saved_before_data_seconds_existed(tmp_path):
    """A resume state written before the epoch sums had "data_seconds" resumes (that sum starts at 0)
    and the resumed epoch still reports a data share."""
    from app.train import save_resume

    cache = write_fake_cache(tmp_path / "cache", per_class=4, splits={"train": 0.75, "test": 0.25})
    cfg = load_config(write_config(tmp_path / "exp.toml", cache=cache, train={"epochs": 1}))
    train_experiment(cfg)
    state_file = tmp_path / "runs" / "exp" / "resume.pt"
    state = load_resume(state_file)
    del state["sums"]["data_seconds"], state["format"]
    save_resume(state_file, state)
    two = load_config(write_config(tmp_path / "exp.toml", cache=cache, train={"epochs": 2}))
    train_experiment(two, resume=True)
    rows = list(csv.DictReader((tmp_path / "runs" / "exp" / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2] and 0 < float(rows[-1]["data_share"]) < 1


@pytest.mark.slow
def test_resume_after_sigkill_reproduces_the_uninterrupted_run(tmp_path):
    cache = write_fake_cache(tmp_path / "cache", per_class=14, splits={"train": 0.8, "test": 0.2})
    config = write_config(
        tmp_path / "exp.toml", cache=cache,
        data={"batch_size": 2, "workers": 1, "max_frames": 5, "batch_frames": 7},  # most batches in 2 parts
        train={"epochs": 3, "deterministic": True, "save_every_steps": 1, "threads": 1},
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(_train_cmd(config, "full"), cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)

    proc = subprocess.Popen(_train_cmd(config, "killed"), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file = tmp_path / "runs" / "killed" / "resume.pt"
    deadline = time.monotonic() + 240
    killed_at = None
    while time.monotonic() < deadline and proc.poll() is None:
        if state_file.is_file():
            try:
                state = load_resume(state_file)
            except Exception:  # noqa: BLE001 - caught mid-rename; read again
                time.sleep(0.05)
                continue
            if state["epoch"] >= 1 and state["batch"] >= 2:  # inside the second epoch
                proc.send_signal(signal.SIGKILL)
                killed_at = (state["epoch"], state["batch"])
                break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "could not kill the run mid-epoch"
    assert not (tmp_path / "runs" / "killed" / "test_metrics.json").exists()

    subprocess.run(_train_cmd(config, "killed", "--resume"), cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=300)
    full = safetensors.torch.load_file(str(tmp_path / "runs" / "full" / "checkpoints" / "last.safetensors"))
    resumed = safetensors.torch.load_file(str(tmp_path / "runs" / "killed" / "checkpoints" / "last.safetensors"))
    assert full.keys() == resumed.keys()
    for name in full:
        assert torch.equal(full[name], resumed[name]), f"{name} differs after resume (killed at {killed_at})"
    rows = lambda run: [  # noqa: E731
        {k: v for k, v in r.items() if k not in TIMING_COLUMNS}
        for r in csv.DictReader((tmp_path / "runs" / run / "metrics.csv").open())
    ]
    assert rows("full") == rows("killed")
    log = (tmp_path / "runs" / "killed" / "log.txt").read_text()
    assert "resumed from" in log and f"epoch {killed_at[0]}, batch" in log


@pytest.mark.parametrize("multi_label", [False, True])
def test_a_batch_in_micro_batches_takes_the_whole_batch_step(multi_label):
    """train_step on a batch given as parts (gradient accumulation under a frame budget) against
    the same step on the whole batch: same loss, logits and updated weights (no dropout)."""
    from app.train import classifier_weights, train_step
    from data.batch import pad_collate
    from models import create_model

    g = torch.Generator().manual_seed(0)
    K, lengths = 3, [7, 2, 5, 3, 6]
    items = [(torch.randint(0, 256, (n, 6, 8, 3), generator=g, dtype=torch.uint8),
              (torch.rand(K, generator=g) > 0.5).float() if multi_label else torch.tensor(i % K), f"c{i}")
             for i, n in enumerate(lengths)]  # fmt: skip
    results = []
    for parts in ([[0, 1, 2, 3, 4]], [[0, 4], [2], [1, 3]]):
        torch.manual_seed(1)
        model = create_model("tt_gru", num_classes=K, in_modes=(2, 3, 4, 6), hidden_modes=(2, 2, 2, 2),
                             ranks=(1, 2, 2, 2, 1), dropout=0.0, recurrent_dropout=0.0)  # fmt: skip
        opt = torch.optim.Adam(model.parameters(), lr=0.01)
        batches = [pad_collate([items[i] for i in part]) for part in parts]
        loss, logits, y = train_step(model, batches, opt, None, l2=0.01, l2_weights=classifier_weights(model),
                                     grad_clip=0.5, multi_label=multi_label, device=torch.device("cpu"),
                                     loss_scale=float(K) if multi_label else 1.0)  # fmt: skip
        order = [i for part in parts for i in part]
        back = torch.tensor(order).argsort()
        results.append((loss, logits[back], y[back], {k: v.clone() for k, v in model.state_dict().items()}))
    (loss0, logits0, y0, w0), (loss1, logits1, y1, w1) = results
    torch.testing.assert_close(loss1, loss0)
    torch.testing.assert_close(logits1, logits0)
    assert torch.equal(y1, y0)
    for name in w0:
        torch.testing.assert_close(w1[name], w0[name], msg=name)


def test_sum_over_classes_scales_the_data_gradient_by_k():
    """train.loss = "sum_classes" (the YouTube-8M starter's loss) is K times the mean's gradient."""
    from app.train import train_step
    from data.batch import Batch
    from models import create_model

    torch.manual_seed(0)
    K = 5
    batch = Batch(x=torch.randn(4, 1, 6), lengths=torch.ones(4, dtype=torch.long),
                  y=(torch.rand(4, K) > 0.5).float(), ids=list("abcd"))  # fmt: skip
    grads = []
    for scale in (1.0, float(K)):
        torch.manual_seed(1)
        model = create_model("logistic", num_classes=K, input_size=6)  # the same weights both times
        opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: keep the weights, read the gradient
        loss, _, _ = train_step(model, batch, opt, None, l2=0.0, l2_weights=[], grad_clip=0.0,
                                multi_label=True, device=torch.device("cpu"), loss_scale=scale)  # fmt: skip
        grads.append((loss.item(), model.classifier.weight.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0])  # the reported loss stays the mean
    torch.testing.assert_close(grads[1][1], K * grads[0][1])
    assert grads[0][1].abs().sum() > 0

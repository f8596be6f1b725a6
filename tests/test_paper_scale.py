"""scripts/make_paper_scale.py: the stand-ins have each dataset's size, layout and statistics at
scale 1.0 (planned, not written), and at CI size (scale 0.01, clips cut to 5%) the whole chain runs:
make -> preprocess -> train (fold 0) -> evaluate, through the real command line."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_cli

from data.layouts import list_clips
from preprocessing import probe
from scripts import make_paper_scale as mps

ROOT = Path(__file__).resolve().parent.parent


def test_full_size_plans_match_the_datasets(tmp_path):
    rng = np.random.default_rng(0)
    ucf = mps.ucf11_clips(tmp_path / "u", 1.0, rng, 1.0)
    assert len(ucf) == 1600
    classes = Counter(c.path.parts[-3] for c in ucf)
    groups = {c.path.parent.name for c in ucf}
    assert len(classes) == 11 and len(groups) == 11 * 25
    at_24 = np.array([c.frames for c in ucf]) * 24 * 1001 / 30000  # source frames at 29.97 -> 24 fps
    assert 203 <= at_24.min() and at_24.max() <= 1493 and 440 < at_24.mean() < 530
    h2 = mps.hollywood2_clips(tmp_path / "h", 1.0, rng, 1.0)
    assert Counter(c.path.name.startswith("actioncliptrain") for c in h2) == {True: 823, False: 884}
    assert 0.1 < np.mean([len(c.motions) == 2 for c in h2]) < 0.3  # multi-label clips
    celebs = mps.celebrity_clips(tmp_path / "c", 1.0, rng, 1.0)
    assert len(celebs) == 1910 and len({c.path.name.split("_", 3)[3] for c in celebs}) == 47
    assert {c.frames // 2 for c in celebs} <= set(range(2, 86))  # 2-85 frames at 12 fps
    assert len({m for c in celebs for m in c.motions}) == 47  # one motion per person


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    out = tmp_path_factory.mktemp("standins")
    for dataset in ("ucf11", "hollywood2", "celebrities"):
        mps.make(dataset, out / dataset, scale=0.01, length_scale=0.05, workers=1)
    return out


@pytest.mark.parametrize("dataset,n,classes,size,rate", [
    ("ucf11", 55, 11, (320, 240), 30000 / 1001),
    ("hollywood2", 24, 12, (468, 200), 24.0),
    ("celebrities", 235, 47, (320, 240), 24.0),
])
def test_ci_size_stand_ins_read_as_their_dataset(standins, dataset, n, classes, size, rate):
    clips = list_clips(dataset, standins / dataset)
    assert len(clips) == n and len({label for c in clips for label in c.labels}) == classes
    info = probe(clips[0].path)
    assert (info.width, info.height) == size and info.fps == pytest.approx(rate, rel=1e-3)
    if dataset == "ucf11":
        assert Counter(c.group.rsplit("_", 1)[0] for c in clips).most_common(1)[0][1] == 5  # 5 groups a class
        assert info.codec == "mpeg1video"
    if dataset == "hollywood2":
        assert Counter(c.split for c in clips) == {"train": 12, "test": 12}
        assert any(len(c.labels) == 2 for c in clips) or n < 30


def test_each_ucf11_clip_shows_its_class_colour(standins):
    """The learnable cue: the object's hue in the decoded pixels (saturated, bright ones, averaged)
    is the clip's class's (k / 11 around the wheel), for every clip of the CI-size stand-in."""
    import colorsys

    from preprocessing import video_to_array

    for clip in list_clips("ucf11", standins / "ucf11"):
        (label,) = clip.labels
        a = video_to_array(clip.path, fps=24.0, size=(160, 120)).astype(np.float32) / 255  # (T, H, W, 3)
        hi, lo = a.max(-1), a.min(-1)
        paint = ((hi - lo) > 0.7 * hi) & (hi > 0.6)  # the object's full-saturation pixels
        assert paint.mean() > 0.05, clip.path
        hue = colorsys.rgb_to_hsv(*a[paint].mean(0))[0]
        want = mps.UCF11_CLASSES.index(label) / 11
        assert min(abs(hue - want), 1 - abs(hue - want)) < 0.03, (clip.path, hue, want)


def test_the_whole_chain_at_ci_size(standins, tmp_path, capsys):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    r = run_cli(capsys, ["preprocess", "--dataset", "ucf11", "--root", str(standins / "ucf11"), "--cache", str(cache),
                         "--size", "32x24", "--workers", "2", "--no-progress"])
    assert r.returncode == 0, r.stderr
    overrides = [f'--data.root="{standins / "ucf11"}"', f'--data.cache="{cache}"', "--data.size=[32, 24]",
                 '--data.split="group"', "--model.in_modes=[4, 8, 8, 9]", "--train.epochs=2",
                 f'--train.out_dir="{runs}"', "--fold", "0", "--no-progress"]
    r = run_cli(capsys, ["train", "--config", str(ROOT / "app/configs/ucf11_tt_gru.toml"), *overrides])
    assert r.returncode == 0, r.stderr
    run = runs / "ucf11_tt_gru" / "fold0"
    metrics = json.loads((run / "test_metrics.json").read_text())
    assert metrics["num_clips"] == 11  # one group of five per class is the test fold
    out = tmp_path / "eval.json"
    r = run_cli(capsys, ["evaluate", "--checkpoint", str(run), "--output", str(out)])
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["metrics"]["accuracy"] == pytest.approx(metrics["accuracy"])

"""Datasets over the frame cache: the authors' folds, group folds, validation carving, length buckets,
time windows, and the missing / stale / incomplete cache errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader
from train_fixtures import write_fake_cache

from data.batch import pad_collate
from data.config import DataConfig
from data.datasets import (
    BucketBatchSampler,
    DataError,
    authors_folds,
    build_datasets,
    carve_validation,
    eval_batches,
    group_folds,
    open_cache,
    split_by_frames,
)
from preprocessing.cache import CacheMeta, write_clip, write_manifest
from preprocessing.cache import open_cache as create_cache


def test_authors_folds_match_their_code():
    # Tuyki/TT_RNN UCF11 script: np.random.seed(11111986); shuffle_inds = np.random.choice(range(N), N, False);
    # clips = clips[shuffle_inds]; CV_splits = np.array_split(np.arange(N), 5); test = clips[CV_splits[k]]
    N = 1600
    clips = np.array([f"clip{i:04d}" for i in range(N)])
    np.random.seed(11111986)
    shuffled = clips[np.random.choice(range(N), N, False)]
    ours = authors_folds(N, num_folds=5, seed=11111986)
    for k, part in enumerate(np.array_split(np.arange(N), 5)):
        assert list(clips[ours[k]]) == list(shuffled[part])
    assert sorted(np.concatenate(ours).tolist()) == list(range(N))


def test_group_folds_keep_groups_whole_and_balance_classes():
    labels = [f"c{c}" for c in range(3) for _ in range(25 * 4)]  # 3 classes x 25 groups x 4 clips
    groups = [f"c{c}_g{g}" for c in range(3) for g in range(25) for _ in range(4)]
    folds = group_folds(labels, groups, num_folds=5, seed=11111986)
    assert sorted(np.concatenate(folds).tolist()) == list(range(len(labels)))
    group_fold = {}
    for k, idx in enumerate(folds):
        for i in idx:
            assert group_fold.setdefault(groups[i], k) == k, f"group {groups[i]} in two folds"
        for c in range(3):  # 5 groups of each class per fold
            assert len({groups[i] for i in idx if labels[i] == f"c{c}"}) == 5


def test_carve_validation_is_stratified_and_group_aware():
    labels = ["a"] * 40 + ["b"] * 20
    train_idx = np.arange(0, 60, 1)[::-1][:50]  # some subset, in any order
    tr, val = carve_validation(train_idx, labels=labels, groups=None, fraction=0.2, seed=1)
    assert set(tr) | set(val) == set(train_idx) and not set(tr) & set(val)
    assert sum(labels[i] == "b" for i in val) >= 1 and sum(labels[i] == "a" for i in val) >= 1
    groups = [f"g{i // 5}" for i in range(60)]
    tr, val = carve_validation(train_idx, labels=labels, groups=groups, fraction=0.25, seed=1)
    assert not {groups[i] for i in tr} & {groups[i] for i in val}, "a group on both sides"
    tr2, val2 = carve_validation(train_idx, labels=labels, groups=groups, fraction=0.25, seed=1)
    assert list(val) == list(val2), "not a function of the seed"


def test_bucket_sampler_is_a_function_of_seed_and_epoch():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 300, size=103).tolist()
    s = BucketBatchSampler(lengths, batch_size=8, seed=3)
    s.set_epoch(0)
    a = [[i for i, _ in b] for b in s]
    s.set_epoch(0)
    assert [[i for i, _ in b] for b in s] == a
    assert sorted(i for b in a for i in b) == list(range(103)), "each clip once per epoch"
    s.set_epoch(1)
    assert [[i for i, _ in b] for b in s] != a
    assert all(e == 1 for b in s for _, e in b), "keys carry the epoch"
    # buckets: a batch's lengths are close together, far closer than random batches
    spread = np.mean([np.ptp([lengths[i] for i in b]) for b in a])
    assert spread < 40
    # mid-epoch resume skips exactly the batches already done
    s.set_epoch(1, start_batch=5)
    full = BucketBatchSampler(lengths, batch_size=8, seed=3)
    full.set_epoch(1)
    assert list(s) == list(full)[5:] and len(s) == len(full) - 5


def test_bucket_sampler_shards_ranks_evenly():
    lengths = list(range(1, 42))  # 41 clips, batch 4 -> 11 batches, padded to 12 for 2 ranks
    ranks = [BucketBatchSampler(lengths, batch_size=4, seed=0, rank=r, num_replicas=2) for r in range(2)]
    for r in ranks:
        r.set_epoch(2)
    b0, b1 = list(ranks[0]), list(ranks[1])
    assert len(b0) == len(b1) == 6
    assert {i for b in b0 + b1 for i, _ in b} == set(range(41))
    ev = [eval_batches(lengths, batch_size=4, rank=r, num_replicas=2) for r in range(2)]
    assert sorted(i for part in ev for b in part for i in b) == list(range(41)), "eval: each clip exactly once"


def test_cached_clips_windows_and_targets(tmp_path):
    cache = write_fake_cache(tmp_path / "c", per_class=4, lengths=(9, 12), splits={"train": 0.5, "test": 0.5})
    cfg = DataConfig(dataset="folder", cache=str(cache), size=(8, 6), max_frames=4, val_fraction=0.0)
    data = build_datasets(cfg, seed=5)
    ds = data.train
    assert ds.lengths == [4] * len(ds)
    x, y, clip_id = ds[(0, 0)]
    assert x.dtype == torch.uint8 and x.shape == (4, 6, 8, 3) and isinstance(clip_id, str)
    assert int(y) == data.class_names.index(ds.entries[0].labels[0])
    starts = {ds.window(0, epoch)[0] for epoch in range(20)}
    assert len(starts) > 1, "training windows should move between epochs"
    assert ds.window(0, 3) == ds.window(0, 3), "a window is a function of (seed, epoch, clip)"
    T = ds.entries[0].frames
    assert ds.window(0, None) == ((T - 4) // 2, (T - 4) // 2 + 4), "evaluation takes the center"
    full = np.load(cache / "clips" / ds.entries[0].npy)
    s, e = ds.window(0, 7)
    assert torch.equal(ds[(0, 7)][0], torch.from_numpy(full[s:e]))


@pytest.mark.parametrize("multi_label", [False, True])
def test_a_batch_read_in_one_call_equals_the_collated_items(tmp_path, multi_label):
    """CachedClips.__getitems__ (what the DataLoader calls) against pad_collate of the items one by
    one: whole clips and windows, in the main process and through a worker's shared memory."""
    cache = write_fake_cache(tmp_path / "c", per_class=4, lengths=(3, 12), multi_label=multi_label)
    for max_frames in (0, 6):
        cfg = DataConfig(dataset="folder", cache=str(cache), size=(8, 6), max_frames=max_frames, val_fraction=0.0)
        ds = build_datasets(cfg, seed=5, fold=0).train
        keys = [(i, 3) for i in range(len(ds))][::-1]
        torch.full((len(keys), 12, 6, 8, 3), 255, dtype=torch.uint8)  # freed memory holding 255s
        got = ds.__getitems__(keys)
        want = pad_collate([ds[k] for k in keys])
        assert len(set(got.lengths.tolist())) > 1, "the batch should need padding"
        for a, b in zip(got, want, strict=True):
            assert a == b if isinstance(a, list) else torch.equal(a, b)
        via_worker = next(iter(DataLoader(ds, batch_sampler=[keys], num_workers=1, collate_fn=pad_collate)))
        assert torch.equal(via_worker.x, want.x) and via_worker.ids == want.ids


def test_split_by_frames_keeps_each_part_within_the_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=40)
    for budget in (0, 50, 150, 400, 10_000):
        for batch in (rng.permutation(40)[:16].tolist(), [3], list(range(40))):
            parts = split_by_frames(batch, lengths, budget)
            assert sorted(i for p in parts for i in p) == sorted(batch), "each clip exactly once"
            if budget == 0:
                assert parts == [batch]
                continue
            for p in parts:
                assert len(p) == 1 or len(p) * max(lengths[p]) <= budget, (budget, lengths[p])
            # parts are as full as the budget allows: the next part's first clip did not fit
            for p in parts[:-1]:
                assert (len(p) + 1) * max(lengths[p]) > budget
    assert split_by_frames([0, 1, 2, 3], [10, 40, 30, 20], 60) == [[1], [2, 3], [0]]


def test_bucket_sampler_with_a_frame_budget_yields_each_batch_as_its_parts():
    lengths = np.random.default_rng(1).integers(5, 300, size=103).tolist()
    whole = BucketBatchSampler(lengths, batch_size=8, seed=3)
    cut = BucketBatchSampler(lengths, batch_size=8, seed=3, batch_frames=600)
    for s in (whole, cut):
        s.set_epoch(2, start_batch=3)
    plan = cut.plan()
    assert [sorted(k for part in parts for k in part) for parts in plan] == [sorted(b) for b in whole]
    assert list(cut) == [part for parts in plan for part in parts] and len(cut) == len(list(cut))
    assert len(list(cut)) > len(plan) > 0, "some batches should be cut"
    assert all(len(p) == 1 or len(p) * max(lengths[i] for i, _ in p) <= 600 for p in cut)


def test_eval_batches_with_a_frame_budget():
    lengths = np.random.default_rng(2).integers(1, 200, size=77)
    batches = eval_batches(lengths, batch_size=8, batch_frames=500)
    assert sorted(i for b in batches for i in b) == list(range(77)), "each clip exactly once"
    assert all(len(b) <= 8 and (len(b) == 1 or len(b) * max(lengths[b]) <= 500) for b in batches)
    assert max(len(b) for b in batches) == 8 and len(batches) > len(eval_batches(lengths, batch_size=8))
    assert eval_batches([], batch_size=4, batch_frames=10) == []


def test_protocols_split_cleanly(tmp_path):
    cache = write_fake_cache(tmp_path / "u", dataset="ucf11", per_class=10, groups_per_class=5)
    cfg = DataConfig(dataset="ucf11", cache=str(cache), size=(8, 6), val_fraction=0.2)
    seen = []
    for k in range(5):
        d = build_datasets(cfg, fold=k)
        test, train, val = (set(getattr(d, s).ids) for s in ("test", "train", "val"))
        assert not (test & train) and not (test & val) and not (train & val)
        assert len(test | train | val) == 30 and d.info["fold"] == k
        seen += sorted(test)
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 30
    g = build_datasets(DataConfig(dataset="ucf11", cache=str(cache), size=(8, 6), split="group"), fold=1)
    groups = lambda ds: {e.group for e in ds.entries}  # noqa: E731
    assert not groups(g.test) & (groups(g.train) | groups(g.val))

    h = write_fake_cache(tmp_path / "h", dataset="hollywood2", per_class=4, multi_label=True,
                         splits={"train": 0.5, "test": 0.5})
    d = build_datasets(DataConfig(dataset="hollywood2", cache=str(h), size=(8, 6), val_fraction=0.25))
    assert d.multi_label and all(e.split == "test" for e in d.test.entries)
    assert all(e.split == "train" for e in d.train.entries + d.val.entries)
    _, y, _ = d.train[0]
    assert y.dtype == torch.float32 and y.shape == (3,) and y.sum() >= 1


def test_cache_errors_name_the_command(tmp_path):
    cfg = DataConfig(dataset="folder", cache=str(tmp_path / "missing"), root="/data/demo", size=(8, 6))
    with pytest.raises(DataError, match=r"run `python -m app preprocess --dataset folder --root /data/demo"):
        open_cache(cfg)
    cache = write_fake_cache(tmp_path / "c", size=(8, 6))
    with pytest.raises(DataError, match=r"holds folder at 24 fps 8x6, the config wants folder at 24 fps 16x12"):
        open_cache(DataConfig(dataset="folder", cache=str(cache), size=(16, 12)))

    # a dataset root at hand: clips missing from the cache and changed sources are caught
    root = tmp_path / "videos"
    for name in ("a/1.mp4", "a/2.mp4"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x" * 10)
    cache = tmp_path / "partial"
    meta = CacheMeta(dataset="folder", fps=24.0, size=(8, 6), root=str(root))
    create_cache(cache, meta)
    st = (root / "a/1.mp4").stat()
    entry = write_clip(cache, np.zeros((2, 6, 8, 3), np.uint8), clip_id="a/1.mp4", path="a/1.mp4", labels=("a",),
                       group=None, split=None, fps=24.0, source_size=st.st_size, source_mtime_ns=st.st_mtime_ns,
                       backend="pyav")
    write_manifest(cache, meta, [entry], "manifest.json")
    cfg = DataConfig(dataset="folder", cache=str(cache), root=str(root), size=(8, 6))
    with pytest.raises(DataError, match="incomplete: 1 of 2 clips"):
        open_cache(cfg)
    (root / "a/2.mp4").unlink()
    assert len(open_cache(cfg)) == 1
    (root / "a/1.mp4").write_bytes(b"changed!!!!")
    with pytest.raises(DataError, match="stale"):
        open_cache(cfg)
    assert Path(cfg.cache).is_dir()


def test_yt8m_exclude_files_holds_a_slice_of_the_train_glob_out(tmp_path):
    """data.exclude_files removes a tuning slice from the train glob (it can then be scored as val_files)."""
    from data.yt8m import write_yt8m

    rng = np.random.default_rng(0)
    for k in range(3):
        videos = [{"id": f"s{k}v{i}", "labels": [int(k)], "rgb": rng.normal(size=1024).astype(np.float32),
                   "audio": rng.normal(size=128).astype(np.float32)} for i in range(2)]
        write_yt8m(tmp_path / f"train{k:04d}.tfrecord", videos, level="video")
    glob_all, held = str(tmp_path / "train*.tfrecord"), str(tmp_path / "train0002.tfrecord")
    cfg = DataConfig(dataset="yt8m", train_files=glob_all, exclude_files=held, val_files=held, workers=0)
    splits = build_datasets(cfg, seed=0)
    assert [p.name for p in splits.train.files] == ["train0000.tfrecord", "train0001.tfrecord"]
    assert [p.name for p in splits.val.files] == ["train0002.tfrecord"]
    assert [p.name for p in build_datasets(DataConfig(dataset="yt8m", train_files=glob_all), seed=0).train.files] == [
        f"train{k:04d}.tfrecord" for k in range(3)
    ]
    with pytest.raises(DataError, match="leaves no file"):
        build_datasets(DataConfig(dataset="yt8m", train_files=held, exclude_files=glob_all), seed=0)

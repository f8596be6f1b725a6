"""YouTube-8M reader: writer round trips, real shards, CRC failures, sharding across workers/ranks."""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.utils.data import DataLoader

from data.batch import pad_collate
from data.tfrecord_io import TFRecordError, count_records, iter_records
from data.yt8m import (
    YT8MDataset,
    assign_work,
    load_arrays,
    parse_record,
    read_vocabulary,
    read_yt8m,
    write_yt8m,
)
from models.common import FEATURE_DIM, NUM_CLASSES
from preprocessing.features import dequantize, quantize

SHARED = Path(__file__).resolve().parents[2] / "shared" / "yt8m"


def _videos(n: int, level: str, seed: int, prefix: str, frames: tuple[int, int] = (1, 12)) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        labels = sorted(rng.choice(NUM_CLASSES, size=int(rng.integers(0, 4)), replace=False).tolist())
        if level == "video":
            rgb, audio = rng.normal(size=1024).astype(np.float32), rng.normal(size=128).astype(np.float32)
        else:
            T = int(rng.integers(*frames))
            rgb = rng.integers(0, 256, (T, 1024), dtype=np.uint8)
            audio = rng.integers(0, 256, (T, 128), dtype=np.uint8)
        out.append({"id": f"{prefix}{i:03d}", "labels": labels, "rgb": rgb, "audio": audio})
    return out


@pytest.mark.parametrize("level", ["video", "frame"])
@pytest.mark.parametrize("message", ["sequence_example", "example"])
def test_writer_reader_round_trip(tmp_path, level, message):
    videos = _videos(6, level, seed=1, prefix="v")
    path = tmp_path / "shard.tfrecord"
    assert write_yt8m(path, videos, level=level, message=message) == 6
    assert count_records(path) == 6
    got = list(read_yt8m(str(path), level=level))
    assert [r.id for r in got] == [v["id"] for v in videos]
    for rec, v in zip(got, videos):
        assert rec.labels.tolist() == v["labels"]
        assert rec.features.dtype == np.float32
        if level == "video":
            assert rec.features.shape == (1, FEATURE_DIM)
            np.testing.assert_array_equal(rec.features[0], np.concatenate([v["rgb"], v["audio"]]))
        else:
            want = dequantize(np.concatenate([v["rgb"], v["audio"]], axis=1))
            assert rec.features.shape == (len(v["rgb"]), FEATURE_DIM)
            np.testing.assert_array_equal(rec.features, want)


def test_dequantize_matches_starter_formula_and_quantize_inverts():
    q = np.arange(256, dtype=np.uint8)
    np.testing.assert_allclose(dequantize(q), q * 4.0 / 255 + 4.0 / 512 - 2, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(quantize(dequantize(q)), q)


def test_frame_cap_keeps_the_first_frames(tmp_path):
    videos = _videos(1, "frame", seed=2, prefix="long", frames=(310, 311))
    path = tmp_path / "long.tfrecord"
    write_yt8m(path, videos, level="frame")
    (rec,) = read_yt8m(path, level="frame")
    assert rec.features.shape == (300, FEATURE_DIM)
    np.testing.assert_array_equal(rec.features[-1, :1024], dequantize(videos[0]["rgb"][299]))
    (short,) = read_yt8m(path, level="frame", max_frames=7)
    assert short.features.shape == (7, FEATURE_DIM)


def test_wrong_level_is_a_clear_error(tmp_path):
    path = tmp_path / "video.tfrecord"
    write_yt8m(path, _videos(1, "video", seed=3, prefix="x"), level="video")
    with pytest.raises(TFRecordError, match=r"video\.tfrecord: record at byte 0.*level='video'"):
        list(read_yt8m(path, level="frame"))


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["length", "payload"])
def test_flipped_byte_names_shard_and_offset(tmp_path, where):
    path = tmp_path / "train0007.tfrecord"
    write_yt8m(path, _videos(3, "video", seed=4, prefix="c"), level="video")
    offsets = [off for off, _ in iter_records(path)]
    second = offsets[1]
    _flip(path, second + (2 if where == "length" else 12 + 40))
    kind = "length CRC" if where == "length" else "data CRC"
    with pytest.raises(TFRecordError, match=rf"train0007\.tfrecord: corrupt record at byte {second} \({kind} mismatch\)"):
        list(read_yt8m(path, level="video"))
    ds = YT8MDataset(pattern=str(path), level="video")
    with pytest.raises(TFRecordError, match=rf"train0007\.tfrecord.*byte {second}"):
        list(ds)


def test_truncated_shard_is_an_error(tmp_path):
    path = tmp_path / "cut.tfrecord"
    write_yt8m(path, _videos(2, "video", seed=5, prefix="t"), level="video")
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(TFRecordError, match=r"cut\.tfrecord: truncated record at byte \d+"):
        list(read_yt8m(path, level="video"))


@pytest.mark.parametrize("num_files,consumers", [(5, 4), (3, 4), (1, 4), (2, 3), (8, 8)])
def test_assign_work_covers_every_record_once(num_files, consumers):
    records = 7
    seen = Counter()
    for c in range(consumers):
        for f, k, j in assign_work(num_files, c, consumers):
            seen.update((f, i) for i in range(records) if i % k == j)
    assert seen == Counter({(f, i): 1 for f in range(num_files) for i in range(records)})


def _write_shards(folder: Path, counts: list[int], level: str = "video") -> list[str]:
    ids = []
    for s, n in enumerate(counts):
        videos = _videos(n, level, seed=10 + s, prefix=f"s{s}_")
        write_yt8m(folder / f"part{s:02d}.tfrecord", videos, level=level)
        ids += [v["id"] for v in videos]
    return ids


def _rank_main(rank: int, world: int, init: str, pattern: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        ds = YT8MDataset(pattern=pattern, level="video", shuffle_buffer=4, seed=3)
        loader = DataLoader(ds, batch_size=None, num_workers=2)
        ids = [item[2] for item in loader]
        Path(out_dir, f"rank{rank}.txt").write_text("\n".join(ids))
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("counts", [[5, 6, 4], [3, 2, 4, 1, 5, 2]])
def test_two_ranks_two_workers_read_each_record_once(tmp_path, counts):
    shards = tmp_path / "shards"
    shards.mkdir()
    want = _write_shards(shards, counts)
    out = tmp_path / "out"
    out.mkdir()
    init = f"file://{tmp_path / 'rendezvous'}"
    # fork: the children inherit the imported modules (spawn would re-import torch, ~20 s here)
    mp.start_processes(
        _rank_main, args=(2, init, str(shards / "*.tfrecord"), str(out)), nprocs=2, join=True, start_method="fork"
    )
    per_rank = [(out / f"rank{r}.txt").read_text().split("\n") for r in range(2)]
    got = [i for ids in per_rank for i in ids if i]
    assert sorted(got) == sorted(want)  # no duplicates, no losses
    assert all(len([i for i in ids if i]) > 0 for ids in per_rank)


def test_shuffle_is_seeded_and_changes_with_epoch(tmp_path):
    _write_shards(tmp_path, [9, 8, 7])
    ds = YT8MDataset(pattern=str(tmp_path / "*.tfrecord"), level="video", shuffle_buffer=5, seed=1)
    ds.set_epoch(0)
    a = [item[2] for item in ds]
    b = [item[2] for item in ds]
    ds.set_epoch(1)
    c = [item[2] for item in ds]
    plain = [item[2] for item in YT8MDataset(pattern=str(tmp_path / "*.tfrecord"), level="video")]
    assert a == b and a != c and sorted(a) == sorted(c) == sorted(plain)
    assert a != plain and plain == sorted(plain)  # unshuffled: file order, record order


def test_items_collate_with_pad_collate(tmp_path):
    videos = _videos(5, "frame", seed=6, prefix="f")
    write_yt8m(tmp_path / "f.tfrecord", videos, level="frame")
    loader = DataLoader(YT8MDataset(pattern=str(tmp_path / "f.tfrecord"), level="frame"), batch_size=5, collate_fn=pad_collate)
    (batch,) = list(loader)
    T = max(len(v["rgb"]) for v in videos)
    assert batch.x.shape == (5, T, FEATURE_DIM) and batch.x.dtype == torch.float32
    assert batch.lengths.tolist() == [len(v["rgb"]) for v in videos]
    assert batch.y.shape == (5, NUM_CLASSES)
    assert batch.y.sum(1).tolist() == [len(v["labels"]) for v in videos]
    assert batch.ids == [v["id"] for v in videos]


def test_bundled_vocabulary():
    names = read_vocabulary()
    assert len(names) == NUM_CLASSES and all(names)
    assert names[:2] == ["Game", "Video game"]
    if (SHARED / "vocabulary.csv").is_file():
        assert read_vocabulary(SHARED / "vocabulary.csv") == names


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/yt8m is not available")
@pytest.mark.parametrize("split,first,count", [("train", 64, 18654), ("validate", None, None)])
def test_real_shards_read_completely(split, first, count):
    """Every record of the shards is read (train: the first 64 shards, 18,654 videos; the later ones
    are counted by their framing in the test below)."""
    files = sorted((SHARED / split).glob("*.tfrecord"))[:first]
    assert files
    x, y, ids = load_arrays([str(f) for f in files])
    assert sum(count_records(f) for f in files) == len(ids)
    if count is not None:
        assert len(ids) == count
    assert x.shape == (len(ids), FEATURE_DIM) and np.isfinite(x).all()
    assert -2.0 <= x.min() and x.max() <= 2.0 + 4 / 512  # means of dequantized values
    assert y.shape == (len(ids), NUM_CLASSES) and (y.sum(1) >= 1).all()
    assert len(set(ids)) == len(ids)
    # Real video-level records are SequenceExamples with an empty feature_lists part.
    _, first = next(iter_records(files[0]))
    from tfrecord import example_pb2

    msg = example_pb2.SequenceExample()
    msg.ParseFromString(first)
    assert msg.HasField("feature_lists") and not msg.feature_lists.feature_list
    rec = parse_record(first, level="video")
    np.testing.assert_array_equal(rec.features[0], x[0])


def test_no_files_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no YouTube-8M files"):
        YT8MDataset(pattern=str(tmp_path / "*.tfrecord"))
    assert os.path.isdir(tmp_path)


def test_bench_train_times_the_streamed_epoch_against_its_own_batches(tmp_path):
    """scripts.bench_train on YouTube-8M shards: the in-memory epoch is the loader's epoch (same
    videos, same batches, same order through a worker; the bench asserts it) and every video counts."""
    from scripts.bench_train import bench

    ids = _write_shards(tmp_path / "shards", [7, 5, 9])
    config = tmp_path / "yt8m.toml"
    config.write_text(
        '[data]\ndataset = "yt8m"\nlevel = "video"\n'
        f'train_files = "{tmp_path}/shards/*.tfrecord"\ntest_files = "{tmp_path}/shards/part00.tfrecord"\n'
        "shuffle_buffer = 8\nbatch_size = 4\nworkers = 1\n"
        '[model]\nname = "logistic"\n[train]\nepochs = 1\n'
    )
    r = bench(str(config), cache=str(tmp_path / "unused"), repeats=1, workers=1, max_clips=0)
    assert r["clips"] == len(ids) == 21 and r["batches"] == 6  # 5 x 4 + 1 in one worker's stream
    assert r["loader_s"] > 0 and r["memory_s"] > 0


@pytest.mark.parametrize("level,workers", [("video", 0), ("video", 2), ("frame", 1)])
def test_batches_made_in_the_reader_equal_the_collated_items(tmp_path, level, workers, monkeypatch):
    """`YT8MDataset.batches` (whole batches built where the records are read, in shared memory in a
    worker) against the plain stream of items collated by pad_collate: the same videos in the same
    batches, bit for bit, with the shuffle on and uneven shards (a last short batch per worker).
    Its batch tensors start out as NaN here, so every value it leaves unwritten shows."""
    import data.batch
    import data.yt8m

    fresh = data.batch.batch_tensor
    for module in (data.batch, data.yt8m):
        monkeypatch.setattr(module, "batch_tensor", lambda shape, dtype: fresh(shape, dtype).fill_(float("nan")))
    ids = _write_shards(tmp_path, [7, 5, 9], level=level)
    ds = YT8MDataset(pattern=str(tmp_path / "*.tfrecord"), level=level, shuffle_buffer=6, seed=3)
    ds.set_epoch(2)
    items = list(DataLoader(ds, batch_size=4, num_workers=workers, collate_fn=pad_collate))
    batches = list(DataLoader(ds.batches(4), batch_size=None, num_workers=workers, collate_fn=pad_collate))
    assert sorted(i for b in batches for i in b.ids) == sorted(ids)
    assert [b.ids for b in batches] == [b.ids for b in items]
    for got, want in zip(batches, items):
        assert not got.x.isnan().any() and not got.y.isnan().any()
        assert torch.equal(got.x, want.x) and torch.equal(got.lengths, want.lengths)
        assert torch.equal(got.y, want.y) and got.y.dtype == want.y.dtype == torch.float32

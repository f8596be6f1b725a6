"""The frame cache (preprocessing/cache.py): round trips, merging, validation, unsafe manifests."""

import json

import numpy as np
import pytest

from preprocessing.cache import (
    CLIPS_DIR,
    CacheError,
    CacheMeta,
    array_sha256,
    load_clip,
    npy_name,
    npy_path,
    open_cache,
    read_array,
    read_array_into,
    read_cache,
    verify_cache,
    write_clip,
    write_manifest,
)

META = CacheMeta(dataset="folder", fps=24.0, size=(8, 6), root="/data/demo")


def frames(seed, t=5):
    return np.random.default_rng(seed).integers(0, 256, (t, 6, 8, 3), dtype=np.uint8)


def add_clip(cache_dir, clip_id, array, **overrides):
    fields = dict(
        clip_id=clip_id,
        path=f"{clip_id}.mp4",
        labels=("pan",),
        group=None,
        split="train",
        fps=24.0,
        source_size=100,
        source_mtime_ns=1,
        backend="pyav",
    )
    return write_clip(cache_dir, array, **{**fields, **overrides})


@pytest.fixture
def cache(tmp_path):
    open_cache(tmp_path, META)
    return tmp_path


def test_round_trip_memory_mapped(cache):
    a, b = frames(0, t=5), frames(1, t=3)
    add_clip(cache, "train/pan/b", b, labels=("pan", "zoom"), group="g1")
    add_clip(cache, "train/pan/a", a)
    index = read_cache(cache)
    assert index.meta == META and len(index) == 2
    assert [e.clip_id for e in index.entries] == ["train/pan/a", "train/pan/b"]  # sorted by id
    assert index.labels == ["pan", "zoom"]
    entry = index.by_id()["train/pan/b"]
    assert entry.labels == ("pan", "zoom") and entry.group == "g1" and entry.shape == (3, 6, 8, 3)
    assert entry.sha256 == array_sha256(b) and entry.size == (8, 6) and entry.frames == 3
    loaded = load_clip(cache, entry)
    assert isinstance(loaded, np.memmap) and not loaded.flags.writeable
    np.testing.assert_array_equal(loaded, b)
    np.testing.assert_array_equal(load_clip(cache, index.entries[0], mmap=False), a)
    assert str(index.source_path(entry)) == "/data/demo/train/pan/b.mp4"
    assert verify_cache(cache) == []


def test_shard_manifests_and_records_merge(cache):
    e1 = add_clip(cache, "c1", frames(1))
    e2 = add_clip(cache, "c2", frames(2))
    write_manifest(cache, META, [e1], "manifest.shard-0-of-2.json")
    write_manifest(cache, META, [e2], "manifest.shard-1-of-2.json")
    e3 = add_clip(cache, "c3", frames(3))  # a clip of a run that was killed before its manifest
    assert [e.clip_id for e in read_cache(cache).entries] == ["c1", "c2", "c3"]
    # A cache shipped with manifests only (no records) reads the same.
    for record in (cache / CLIPS_DIR).glob("*.json"):
        record.unlink()
    write_manifest(cache, META, [e3], "manifest.json")
    assert [e.clip_id for e in read_cache(cache).entries] == ["c1", "c2", "c3"]


def test_npy_names_are_safe_and_stable():
    name = npy_name("train/pan left/../x.mp4")
    assert name == npy_name("train/pan left/../x.mp4") and "/" not in name and name.endswith(".npy")
    assert npy_name("a/b") != npy_name("a_b")  # the hash keeps ids apart that read alike


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("path", "../../etc/passwd", "outside the dataset root"),
        ("path", "/etc/passwd", "outside the dataset root"),
        ("npy", "../../etc/passwd", "unsafe array name"),
        ("npy", "sub/dir.npy", "unsafe array name"),
        ("npy", ".hidden.npy", "unsafe array name"),
    ],
)
def test_manifest_paths_that_escape_are_rejected(cache, field, value, message):
    entry = add_clip(cache, "c1", frames(1)).to_json()
    (cache / CLIPS_DIR / npy_name("c1").replace(".npy", ".json")).unlink()
    (cache / "manifest.json").write_text(json.dumps({"clips": [{**entry, field: value}]}))
    with pytest.raises(CacheError, match=message):
        read_cache(cache)


def test_missing_or_wrong_arrays_are_reported(cache):
    entry = add_clip(cache, "c1", frames(1))
    add_clip(cache, "c2", frames(2))
    np.save(cache / CLIPS_DIR / entry.npy, frames(1, t=4))  # wrong length
    with pytest.raises(CacheError, match=r"c1: .* holds \(4, 6, 8, 3\)"):
        read_cache(cache)
    np.save(cache / CLIPS_DIR / entry.npy, frames(1))
    assert len(read_cache(cache)) == 2
    path = cache / CLIPS_DIR / entry.npy
    path.write_bytes(path.read_bytes()[:-10])  # right header, pixels cut short (as after a power cut)
    with pytest.raises(CacheError, match="c1: .* bytes of pixels"):
        read_cache(cache)
    path.unlink()
    with pytest.raises(CacheError, match="c1: .* is missing"):
        read_cache(cache)
    assert len(read_cache(cache, check_arrays=False)) == 2


def test_verify_cache_detects_changed_pixels(cache):
    entry = add_clip(cache, "c1", frames(1))
    path = cache / CLIPS_DIR / entry.npy
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same header and shape, one pixel changed
    path.write_bytes(bytes(data))
    assert len(read_cache(cache)) == 1  # shapes are still right
    assert verify_cache(cache) == [f"c1: {entry.npy} does not match its sha256"]


def test_cache_settings_are_checked(tmp_path):
    with pytest.raises(CacheError, match="not a frame cache"):
        read_cache(tmp_path)
    open_cache(tmp_path, META)
    open_cache(tmp_path, META)  # same settings: fine
    with pytest.raises(CacheError, match="use another cache folder"):
        open_cache(tmp_path, CacheMeta(dataset="folder", fps=12.0, size=(8, 6), root="/data/demo"))


def test_temporary_files_are_ignored(cache):
    add_clip(cache, "c1", frames(1))
    (cache / CLIPS_DIR / ".c2.json.abc.tmp").write_text("{half a rec")
    (cache / CLIPS_DIR / ".c2.npy.abc.tmp").write_bytes(b"\x93NUMPY")
    assert [e.clip_id for e in read_cache(cache).entries] == ["c1"]


def test_write_clip_checks_the_array(cache):
    with pytest.raises(AssertionError, match="uint8"):
        add_clip(cache, "c1", frames(1).astype(np.float32))


def test_plain_read_equals_np_load_and_falls_back_on_other_layouts(cache):
    a = frames(3, t=4)
    entry = add_clip(cache, "c1", a)
    path = npy_path(cache, entry)
    fast = read_array(path, entry.shape, mmap=False)  # the header-matching path
    np.testing.assert_array_equal(fast, np.load(path))
    assert fast.flags.writeable and fast.dtype == np.uint8 and fast.shape == a.shape
    np.save(path, np.asfortranarray(a))  # same pixels, another layout: np.load's path reads it
    np.testing.assert_array_equal(read_array(path, entry.shape, mmap=False), a)
    np.save(path, a.astype(np.int16))  # same shape, wrong dtype: refused by name
    with pytest.raises(CacheError, match=r"c1.*int16, the record says \(4, 6, 8, 3\) uint8"):
        read_array(path, entry.shape, mmap=False)
    path.write_bytes(b"not an array")
    with pytest.raises(CacheError, match="cannot read"):
        read_array(path, entry.shape, mmap=False)


def test_read_into_a_buffer_equals_the_window_of_np_load(cache):
    a = frames(3, t=7)
    entry = add_clip(cache, "c1", a)
    path = npy_path(cache, entry)
    for layout in ("as saved", "fortran"):  # one readinto at the window's offset; np.load's path
        if layout == "fortran":
            np.save(path, np.asfortranarray(a))
        for start, n in ((0, 7), (2, 3), (6, 1)):
            out = np.full((n, *a.shape[1:]), 255, np.uint8)
            read_array_into(path, entry.shape, out, start)
            np.testing.assert_array_equal(out, a[start : start + n], err_msg=f"{layout} {start}+{n}")
    np.save(path, a[:5])  # a shorter array than the record says: refused by name
    with pytest.raises(CacheError, match="c1"):
        read_array_into(path, entry.shape, np.zeros((2, *a.shape[1:]), np.uint8), 0)

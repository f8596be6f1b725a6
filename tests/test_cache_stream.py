"""The cache writer streams (preprocessing/cache.py ClipWriter, data/preprocess_job.py): clips are
decoded with VideoChunks and appended to a temporary .npy a chunk at a time. The file is np.save's,
byte for byte; the record is the one the whole-array path wrote; a RESTART mid-write gives the right
file; the disk is checked before writing (no output cap on this path), and a full disk ends the run
with no temporary file left."""

import errno
import io
import json
import os
import re
import shutil
from collections import namedtuple

import numpy as np
import pytest
from test_decode import AVI, CARPHONE, UCF11
from test_decode_chunks import write_backwards

from app.__main__ import main
from data.preprocess_job import PreprocessConfig, run_preprocess
from preprocessing import RESTART, VideoChunks, decode_video, video_to_array
from preprocessing import cache as cache_module
from preprocessing import decode as decode_module
from preprocessing.cache import (
    CLIPS_DIR,
    CacheError,
    CacheMeta,
    ClipWriter,
    _read_exact_npy,
    array_sha256,
    check_entry,
    npy_path,
    open_cache,
    read_cache,
    read_record,
    verify_cache,
    write_clip,
)

SIZE = (32, 24)
FIELDS = dict(path="a.mp4", labels=("pan",), group=None, split=None, fps=24.0, source_size=1, source_mtime_ns=1)


def frames(seed, t=5):
    return np.random.default_rng(seed).integers(0, 256, (t, 6, 8, 3), dtype=np.uint8)


def np_save_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def tmp_files(folder):
    return sorted(p.name for p in folder.rglob(".*.tmp"))


@pytest.fixture
def cache(tmp_path):
    open_cache(tmp_path, CacheMeta(dataset="folder", fps=24.0, size=(8, 6), root="/data"))
    return tmp_path


# --- ClipWriter ------------------------------------------------------------------------------------


@pytest.mark.parametrize("t", [0, 1, 7, 100_001])
def test_write_clip_writes_np_save_bytes(cache, t):
    """The header is reserved for 0 frames and rewritten with T in place: the file is exactly what np.save
    writes, so the plain reader's header check takes it (no np.load parse)."""
    array = np.random.default_rng(t).integers(0, 256, (t, 2, 3, 3), dtype=np.uint8)
    entry = write_clip(cache, array, clip_id="c", backend="pyav", **FIELDS)
    path = npy_path(cache, entry)
    assert path.read_bytes() == np_save_bytes(array)
    assert entry.sha256 == array_sha256(array) and entry.frames == t and entry.size == (3, 2)
    fast = _read_exact_npy(path, entry.shape)
    assert fast is not None and np.array_equal(fast, array)
    assert verify_cache(cache) == [] and tmp_files(cache) == []


def test_chunks_and_restart_give_the_array_and_its_hash(cache):
    a, b = frames(1, t=9), frames(2, t=4)
    with ClipWriter(cache, clip_id="c", **FIELDS) as writer:
        writer.restart()  # nothing written yet: nothing to drop
        writer.append(a[:3])
        writer.append(a[3:])
        assert writer.frames == 9 and len(tmp_files(cache)) == 1
        writer.restart()  # the decoder starts again: back to the header, hash reset
        for chunk in (b[:1], b[1:3], b[3:]):
            writer.append(chunk)
        entry = writer.finish("opencv")
    path = npy_path(cache, entry)
    assert path.read_bytes() == np_save_bytes(b)
    assert entry.sha256 == array_sha256(b) and entry.frames == 4 and entry.backend == "opencv"
    assert read_record(cache, "c") == entry and check_entry(cache, entry, verify_hash=True) is None
    assert tmp_files(cache) == []


def test_an_error_inside_the_writer_leaves_nothing(cache):
    with pytest.raises(KeyboardInterrupt), ClipWriter(cache, clip_id="c", **FIELDS) as writer:
        writer.append(frames(1))
        raise KeyboardInterrupt
    assert tmp_files(cache) == [] and not list((cache / CLIPS_DIR).iterdir())
    with pytest.raises(AssertionError, match="chunk of"), ClipWriter(cache, clip_id="c", **FIELDS) as writer:
        writer.append(frames(1))
        writer.append(np.zeros((1, 6, 9, 3), np.uint8))  # another frame size
    assert tmp_files(cache) == []


Usage = namedtuple("Usage", "total used free")


def test_reserve_checks_the_disk_once_per_growth(cache, monkeypatch):
    calls = []

    def usage(path):
        calls.append(path)
        return Usage(total=10**6, used=0, free=10_000)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    frame = (6, 8, 3)  # 144 bytes a frame, 128 bytes of header
    with ClipWriter(cache, clip_id="train/c", **FIELDS) as writer:
        writer.reserve(60, frame)  # 128 + 8640 bytes: fits
        writer.reserve(60, frame)  # nothing new: no second look at the disk
        writer.reserve(10, frame)
        assert len(calls) == 1
        with pytest.raises(OSError, match="No space left on device for train/c: needs 10.0 KiB, 9.8 KiB free on") as e:
            writer.reserve(70, frame)  # 128 + 10,080 bytes > 10,000
        assert e.value.errno == errno.ENOSPC and str(cache / CLIPS_DIR) in str(e.value)
        writer.append(np.zeros((40, *frame), np.uint8))
        writer.reserve(70, frame)  # 30 frames to go: 4,320 bytes fit in what is free now
        with pytest.raises(CacheError, match=r"^needs 1.4 MiB, more than the whole disk of .* \(976.6 KiB\)$"):
            writer.reserve(10_000, frame)
    assert tmp_files(cache) == []


# --- the preprocess job ----------------------------------------------------------------------------


def make_dataset(root, clips):
    """A `folder` dataset: class/<name> copies of the given videos."""
    for name, source in clips.items():
        dest = root / "cls" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if callable(source):
            source(dest)
        else:
            shutil.copy(source, dest)
    return root


def preprocess(root, cache, **kwargs):
    config = PreprocessConfig(dataset="folder", root=root, cache_dir=cache, fps=24.0, size=SIZE, **kwargs)
    return run_preprocess(config)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Three real clips (MPEG-1 PS, AVI with packed B-frames, H.264) and one whose timestamps go
    backwards after 77 output frames: VideoChunks' default 64-frame chunks give a RESTART mid-write."""
    root = tmp_path_factory.mktemp("dataset")
    return make_dataset(root, {"ucf11.mpg": UCF11, "xvid.avi": AVI, "carphone.mp4": CARPHONE,
                               "backwards.mkv": lambda p: write_backwards(p)})  # fmt: skip


def test_streamed_clips_equal_video_to_array_and_the_old_records(dataset, tmp_path, monkeypatch):
    restarts = []
    real_restart = ClipWriter.restart

    def spy_restart(self):
        restarts.append(self._entry.clip_id)
        real_restart(self)

    monkeypatch.setattr(ClipWriter, "restart", spy_restart)
    summary = preprocess(dataset, tmp_path / "cache")
    assert (summary.ok, summary.failed) == (4, 0)
    assert restarts == ["cls/backwards.mkv"], restarts  # a RESTART mid-write, and only there
    index = read_cache(tmp_path / "cache")
    for entry in index.entries:
        source = dataset / entry.path
        decoded = decode_video(source, fps=24.0, size=SIZE, threads=1)  # the old path's decode
        path = npy_path(tmp_path / "cache", entry)
        assert path.read_bytes() == np_save_bytes(decoded.frames)  # what the old np.save wrote
        assert np.array_equal(np.load(path), video_to_array(source, fps=24.0, size=SIZE))
        assert (entry.frames, entry.sha256, entry.backend) == (
            len(decoded.frames), array_sha256(decoded.frames), decoded.backend
        )
    assert verify_cache(tmp_path / "cache") == [] and tmp_files(tmp_path / "cache") == []
    chunks = VideoChunks(dataset / "cls" / "backwards.mkv", fps=24.0, size=SIZE)
    assert any(item is RESTART for item in chunks)  # the default chunk size does give one here


def test_output_cap_does_not_apply_to_the_cache(dataset, tmp_path, monkeypatch):
    monkeypatch.setattr(decode_module, "MAX_OUTPUT_BYTES", 3 * SIZE[0] * SIZE[1] * 3)  # three frames
    with pytest.raises(decode_module.VideoDecodeError, match="span too long"):
        video_to_array(UCF11, fps=24.0, size=SIZE)
    summary = preprocess(dataset, tmp_path / "cache")
    assert (summary.ok, summary.failed) == (4, 0)
    entry = read_cache(tmp_path / "cache").by_id()["cls/ucf11.mpg"]
    assert entry.frames == 86 and verify_cache(tmp_path / "cache") == []


def test_disk_check_refuses_a_clip_that_does_not_fit(dataset, tmp_path, monkeypatch, capsys):
    """300 KB free: the first clip (86 frames of 32x24: 194 KiB) fits; the second (157 frames: 353 KiB)
    is refused when it outgrows the space: the run ends with one line naming the clip and the sizes,
    and leaves no temporary file."""
    root = make_dataset(tmp_path / "videos", {"a.mpg": UCF11, "b.avi": AVI})  # 86 and 157 frames
    cache = tmp_path / "cache"
    real = shutil.disk_usage

    def little_free(path):  # 300 KB (130 frames of 32x24) less what the cache holds so far
        used = sum(f.stat().st_size for f in cache.rglob("*") if f.is_file())
        return Usage(total=real(path).total, used=used, free=300_000 - used)

    monkeypatch.setattr(shutil, "disk_usage", little_free)
    with pytest.raises(OSError, match=r"No space left on device for cls/b.avi: needs [\d.]+ KiB, [\d.]+ KiB free on"):
        preprocess(root, cache)
    assert tmp_files(cache) == [] and read_record(cache, "cls/b.avi") is None
    assert list(read_cache(cache).by_id()) == ["cls/a.mpg"]  # the clip before it is whole
    assert main(["preprocess", "--dataset", "folder", "--root", str(root), "--cache", str(cache),
                 "--size", "32x24", "--no-progress"]) == 1  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert re.match(r"error: No space left on device for cls/b.avi: needs [\d.]+ KiB, [\d.]+ KiB free on ", err[-1])
    assert tmp_files(cache) == [] and not (cache / "failures.jsonl").exists()
    monkeypatch.setattr(shutil, "disk_usage", real)
    assert preprocess(root, cache).ok == 1  # with room, the same run completes the cache


def test_a_clip_bigger_than_the_whole_disk_fails_alone(tmp_path, monkeypatch):
    root = make_dataset(tmp_path / "videos", {"a.mpg": UCF11, "b.mp4": CARPHONE})  # 86 and 96 frames
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(total=210_000, used=0, free=210_000))
    summary = preprocess(root, tmp_path / "cache")
    assert (summary.ok, summary.failed) == (1, 1)
    failure = json.loads(summary.failures.read_text())
    assert failure["clip_id"] == "cls/b.mp4" and re.match(r"needs [\d.]+ KiB, more than the whole disk", failure["reason"])
    assert tmp_files(tmp_path / "cache") == []


def test_disk_filling_up_midway_ends_the_run_without_a_tmp_file(tmp_path, monkeypatch):
    """The check passes (the disk looks empty) but a write fails with ENOSPC, as when other writers
    fill the disk: the run ends with that error, the partial file is removed, nothing is recorded."""
    root = make_dataset(tmp_path / "videos", {"a.mpg": UCF11})
    real_fdopen = os.fdopen

    class FillingFile(io.BufferedWriter):
        def write(self, data):
            if self.tell() > 50_000:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return super().write(data)

    monkeypatch.setattr(cache_module.os, "fdopen", lambda fd, mode: FillingFile(real_fdopen(fd, "wb", buffering=0)))
    with pytest.raises(OSError) as e:
        preprocess(root, tmp_path / "cache")
    assert e.value.errno == errno.ENOSPC
    assert tmp_files(tmp_path / "cache") == [] and not list((tmp_path / "cache" / CLIPS_DIR).iterdir())


def test_a_header_that_lies_about_the_length_does_not_stop_the_run(dataset, tmp_path, monkeypatch):
    """Only the frames actually decided count against the disk, not the container's claimed length."""
    monkeypatch.setattr(decode_module.VideoChunks, "expected_frames", property(lambda self: 10**12, lambda self, v: None), raising=False)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(total=10**9, used=0, free=10**9))
    summary = preprocess(dataset, tmp_path / "cache")
    assert (summary.ok, summary.failed) == (4, 0)

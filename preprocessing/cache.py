"""The on-disk frame cache: one uint8 `(T, H, W, 3)` `.npy` per clip, a JSON record per clip, manifests.

Layout of a cache folder:

    cache.json                      dataset, fps, size [W, H], dataset root, format version
    clips/<name>.npy                the frames of one clip (np.save format, memory-mappable), written a
                                    chunk at a time by `ClipWriter` (a long clip never sits whole in RAM)
    clips/<name>.json               that clip's record (a `CacheEntry`), written after its .npy
    manifest.json                   all records of a full run, gathered at its end (one file to read)
    manifest.shard-I-of-N.json      the same for one shard of a sharded run
    failures.jsonl                  one line per clip that failed (clip_id, path, reason); per shard too

Crash safety: every file is written to a temporary name and renamed, and a clip's record only after
its array, so a run killed at any moment (even `kill -9`) leaves whole clips or nothing; a record is
the proof that its array is complete. Records and manifests are also fsynced (preprocessing/fileio.py); the
arrays are not: they are large derived data, and waiting for the disk on each one slows the writes
down (docs/BENCHMARKS.md, "Decoding"), while without it the kernel writes them
back as decoding goes on. If a power failure loses an array, its file size no
longer matches its header and record: readers report it and the next preprocess run decodes that clip
again. Readers take the union of the manifests and
the records (records win), so the clips of a killed or sharded run are visible without a merge step.

Disk space: a clip's length has no cap here (MAX_OUTPUT_BYTES is `video_to_array`'s, for arrays held in
memory). Instead `ClipWriter.reserve` checks, before the first frame is written and again whenever the
decoder plans more frames, that the clip fits: one that does not fit in the free space ends the run
with one ENOSPC line naming the clip and the sizes, as a disk that fills up midway does; one larger
than the whole disk fails alone.

Paths in records are checked before use: an array name is a plain file name inside `clips/`, a source
path stays inside the dataset root. A manifest saying `../../etc/passwd` is rejected.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import hashlib
import io
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePosixPath

import numpy as np

from preprocessing.fileio import atomic_open, write_json
from preprocessing.names import original_name, printable_name

CACHE_VERSION = 1
META_FILE = "cache.json"
CLIPS_DIR = "clips"
_NPY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.npy$")


class CacheError(Exception):
    """A cache folder that is missing, from other settings, malformed or unsafe (one-line message)."""


@dataclass(frozen=True)
class CacheMeta:
    """Settings shared by every clip of a cache."""

    dataset: str  # layout name (data/layouts.py): folder, ucf11, hollywood2, celebrities
    fps: float  # sampling rate of every array
    size: tuple[int, int]  # (width, height) of every frame
    root: str  # absolute path of the dataset root the sources were read from
    version: int = CACHE_VERSION  # cache format version


@dataclass(frozen=True)
class CacheEntry:
    """One cached clip: what it is, where it came from, and how to check its array."""

    clip_id: str  # the dataset's clip id (data/layouts.py)
    path: str  # source video relative to the dataset root, '/'-separated
    labels: tuple[str, ...]  # class names (several for multi-label datasets)
    group: str | None  # source-video group for group-aware folds, if the dataset has one
    split: str | None  # "train" / "val" / "test" if the dataset defines one
    frames: int  # T, the array's first dimension
    fps: float  # sampling rate (equals the cache's)
    size: tuple[int, int]  # (width, height) of each frame
    source_size: int  # bytes of the source file when decoded (with mtime: is the array stale?)
    source_mtime_ns: int  # modification time of the source file when decoded
    sha256: str  # hex digest of the array's bytes (C order)
    npy: str  # file name of the array inside <cache>/clips/
    backend: str  # decoder that produced it: "pyav" or "opencv"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (self.frames, self.size[1], self.size[0], 3)

    def to_json(self) -> dict:
        d = asdict(self)
        d["labels"], d["size"] = list(self.labels), list(self.size)
        return d

    @classmethod
    def from_json(cls, d: dict, *, where: str) -> CacheEntry:
        """Build and check an entry read from disk; `where` names the file in error messages."""
        names = {f.name for f in fields(cls)}
        missing = names - d.keys()
        if missing:
            raise CacheError(f"{where}: entry {d.get('clip_id')!r} lacks {', '.join(sorted(missing))}")
        try:
            entry = cls(
                **{
                    **{k: d[k] for k in names},
                    "labels": tuple(str(x) for x in d["labels"]),
                    "size": (int(d["size"][0]), int(d["size"][1])),
                    "frames": int(d["frames"]),
                    "fps": float(d["fps"]),
                    "source_size": int(d["source_size"]),
                    "source_mtime_ns": int(d["source_mtime_ns"]),
                }
            )
        except (TypeError, ValueError, IndexError, KeyError) as e:
            raise CacheError(f"{where}: malformed entry {d.get('clip_id')!r}: {e}") from None
        _check_names(entry, where)
        return entry


@dataclass(frozen=True)
class CacheIndex:
    """Everything a cache holds: its settings and its entries sorted by clip id."""

    cache_dir: Path
    meta: CacheMeta
    entries: tuple[CacheEntry, ...]

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def labels(self) -> list[str]:
        """Sorted class names over all entries."""
        return sorted({label for e in self.entries for label in e.labels})

    def by_id(self) -> dict[str, CacheEntry]:
        return {e.clip_id: e for e in self.entries}

    def source_path(self, entry: CacheEntry) -> Path:
        """The source video of `entry` (under the dataset root)."""
        return Path(self.meta.root) / original_name(entry.path)


# --- reading ---------------------------------------------------------------------------------------


def read_meta(cache_dir: str | os.PathLike) -> CacheMeta:
    path = Path(cache_dir) / META_FILE
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        meta = CacheMeta(
            dataset=str(d["dataset"]),
            fps=float(d["fps"]),
            size=(int(d["size"][0]), int(d["size"][1])),
            root=str(d["root"]),
            version=int(d.get("version", CACHE_VERSION)),
        )
    except FileNotFoundError:
        raise CacheError(
            f"{cache_dir} is not a frame cache (no {META_FILE}); run `python -m app preprocess`"
        ) from None
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise CacheError(f"{path}: malformed ({e})") from None
    if meta.version != CACHE_VERSION:
        raise CacheError(f"{path}: cache format {meta.version}, this code reads {CACHE_VERSION}; rebuild it")
    return meta


def read_cache(cache_dir: str | os.PathLike, *, check_arrays: bool = True) -> CacheIndex:
    """Read a cache: its settings and all entries (manifests of full and sharded runs, plus records).

    With `check_arrays`, every entry's .npy must exist with the recorded shape (a header read, cheap);
    `verify_cache` also checks the hashes. Raises CacheError.
    """
    cache_dir = Path(cache_dir)
    meta = read_meta(cache_dir)
    entries: dict[str, CacheEntry] = {}
    for manifest in sorted(cache_dir.glob("manifest*.json")):
        try:
            clips = json.loads(manifest.read_text(encoding="utf-8"))["clips"]
        except (ValueError, KeyError, TypeError) as e:
            raise CacheError(f"{manifest}: malformed manifest ({e})") from None
        for d in clips:
            entry = CacheEntry.from_json(d, where=str(manifest))
            entries[entry.clip_id] = entry
    for entry in _read_records(cache_dir):
        entries[entry.clip_id] = entry
    entries = _without_legacy_duplicates(entries)
    index = CacheIndex(cache_dir, meta, tuple(entries[k] for k in sorted(entries)))
    if check_arrays:
        problems = [p for e in index.entries if (p := check_entry(cache_dir, e))]
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise CacheError(f"{cache_dir}: {'; '.join(problems[:3])}{more}; re-run preprocess to repair")
    return index


def _without_legacy_duplicates(entries: dict[str, CacheEntry]) -> dict[str, CacheEntry]:
    """Drop an entry recorded under a raw id (a name with a tab, a newline...: written before ids
    became printable names) when the same clip is also recorded under its printable id."""
    return {k: e for k, e in entries.items() if printable_name(k) == k or printable_name(k) not in entries}


def load_clip(cache_dir: str | os.PathLike, entry: CacheEntry, *, mmap: bool = True) -> np.ndarray:
    """The uint8 (T, H, W, 3) frames of `entry`; memory-mapped read-only unless `mmap=False`."""
    return read_array(npy_path(cache_dir, entry), entry.shape, mmap=mmap)


def read_array(path: str | os.PathLike, shape: tuple[int, ...], *, mmap: bool = True) -> np.ndarray:
    """The uint8 array of `shape` in the .npy file at `path` (CacheError when it is not that).

    Without mmap, a file laid out exactly as np.save writes such an array (checked byte for byte
    against that header) is read in one call with no header parsing: np.load's header parse
    (`ast.literal_eval`) costs as much as reading a small clip such as the demo set's 8x24x32x3
    (docs/BENCHMARKS.md, "Training epoch, data loading overhead"). Anything else goes through
    np.load, which also gives the error message.
    """
    if not mmap:
        array = _read_exact_npy(path, tuple(shape))
        if array is not None:
            return array
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise CacheError(f"{path}: cannot read ({e})") from None
    if array.shape != tuple(shape) or array.dtype != np.uint8:
        raise CacheError(f"{path}: shape {array.shape} {array.dtype}, the record says {tuple(shape)} uint8")
    return array


def read_array_into(path: str | os.PathLike, shape: tuple[int, ...], out: np.ndarray, start: int = 0) -> None:
    """Frames start:start+len(out) of the uint8 array of `shape` at `path`, written into `out`
    (C-contiguous, shape (n, *shape[1:])). A file laid out as np.save writes it is read with one
    readinto at the window's offset (no buffer between the file and `out`: a batch of long clips
    is read straight into its padded tensor); anything else through `read_array` (mapped).
    CacheError when the file is not that array."""
    if not _readinto_exact(path, shape, out, start):
        out[...] = read_array(path, shape)[start : start + out.shape[0]]


@functools.lru_cache(maxsize=256)
def _npy_header(shape: tuple[int, ...]) -> bytes:
    """The header np.save writes for a C-ordered uint8 array of `shape`."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _readinto_exact(path: str | os.PathLike, shape: tuple[int, ...], out: np.ndarray, start: int) -> bool:
    """Frames start:start+len(out) read into `out` when the file is exactly what np.save writes for
    a uint8 array of `shape` (size and header checked byte for byte); False otherwise (the caller's
    np.load path then reads it, or says what is wrong)."""
    n, frame = out.shape[0], math.prod(shape[1:])
    assert out.shape == (n, *shape[1:]) and out.flags.c_contiguous and 0 <= start <= start + n <= shape[0]
    header = _npy_header(tuple(shape))
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size != len(header) + math.prod(shape) or f.read(len(header)) != header:
                return False
            f.seek(len(header) + start * frame)
            # (a 1-D byte view: memoryview cannot cast a shape with a zero in it)
            return f.readinto(out.reshape(-1).view(np.uint8)) == n * frame  # short: a file cut meanwhile
    except OSError:
        return False


def _read_exact_npy(path: str | os.PathLike, shape: tuple[int, ...]) -> np.ndarray | None:
    """The whole array when the file is exactly what np.save writes (see `_readinto_exact`), else None."""
    array = np.empty(shape, np.uint8)  # writable, so torch.from_numpy takes it without a copy or a warning
    return array if _readinto_exact(path, shape, array, 0) else None


def npy_path(cache_dir: str | os.PathLike, entry: CacheEntry) -> Path:
    _check_names(entry, "entry")
    return Path(cache_dir) / CLIPS_DIR / entry.npy


def check_entry(cache_dir: str | os.PathLike, entry: CacheEntry, *, verify_hash: bool = False) -> str | None:
    """None when the entry's array is present and right (shape from the header; hash if asked)."""
    path = npy_path(cache_dir, entry)
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = _HEADER_READERS.get(version)
            if read_header is None:
                return f"{entry.clip_id}: {path.name} has .npy format {version}"
            shape, fortran, dtype = read_header(f)
            data_bytes = os.fstat(f.fileno()).st_size - f.tell()
    except FileNotFoundError:
        return f"{entry.clip_id}: {path.name} is missing"
    except (OSError, ValueError) as e:
        return f"{entry.clip_id}: {path.name} unreadable ({e})"
    if shape != entry.shape or dtype != np.uint8 or fortran:
        return f"{entry.clip_id}: {path.name} holds {shape} {dtype}, the record says {entry.shape} uint8"
    if data_bytes != math.prod(shape):
        return f"{entry.clip_id}: {path.name} has {data_bytes} bytes of pixels, its header says {math.prod(shape)}"
    if verify_hash and array_sha256(load_clip(cache_dir, entry)) != entry.sha256:
        return f"{entry.clip_id}: {path.name} does not match its sha256"
    return None


_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def verify_cache(cache_dir: str | os.PathLike) -> list[str]:
    """Every problem of a cache (missing or altered arrays), hashes included; [] when all is well."""
    index = read_cache(cache_dir, check_arrays=False)
    return [p for e in index.entries if (p := check_entry(cache_dir, e, verify_hash=True))]


def _read_records(cache_dir: Path) -> list[CacheEntry]:
    out = []
    for record in sorted((cache_dir / CLIPS_DIR).glob("[!.]*.json")):
        try:
            d = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CacheError(f"{record}: unreadable record ({e})") from None
        out.append(CacheEntry.from_json(d, where=str(record)))
    return out


def _check_names(entry: CacheEntry, where: str) -> None:
    """Refuse names that would read or write outside the cache folder or the dataset root."""
    if not _NPY_NAME.match(entry.npy):
        raise CacheError(f"{where}: entry {entry.clip_id!r} has an unsafe array name {entry.npy!r}")
    try:
        source = original_name(entry.path)
    except ValueError:
        source = ""  # not a printable name: refused below
    rel = PurePosixPath(source)
    # A backslash or a drive colon is only a separator on Windows; on POSIX it is part of a name.
    windows_escape = os.name == "nt" and ("\\" in source or ":" in rel.parts[0])
    if not source or rel.is_absolute() or ".." in rel.parts or windows_escape:
        raise CacheError(
            f"{where}: entry {entry.clip_id!r} has a source path {entry.path!r} outside the dataset root"
        )


# --- writing (used by the preprocess job) ----------------------------------------------------------


def npy_name(clip_id: str) -> str:
    """A stable, safe file name for a clip id: readable part plus a hash (ids may hold '/')."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", clip_id).strip("._-")[:80] or "clip"
    digest = hashlib.sha1(clip_id.encode("utf-8")).hexdigest()[:10]
    return f"{readable}-{digest}.npy"


def array_sha256(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).data).hexdigest()


def open_cache(cache_dir: str | os.PathLike, meta: CacheMeta) -> None:
    """Create a cache for `meta`, or check that an existing one was built with the same settings."""
    cache_dir = Path(cache_dir)
    (cache_dir / CLIPS_DIR).mkdir(parents=True, exist_ok=True)
    if (cache_dir / META_FILE).exists():
        old = read_meta(cache_dir)
        if (old.dataset, old.fps, tuple(old.size)) != (meta.dataset, meta.fps, tuple(meta.size)):
            raise CacheError(
                f"{cache_dir} holds {old.dataset} at {old.fps:g} fps {old.size[0]}x{old.size[1]}, not "
                f"{meta.dataset} at {meta.fps:g} fps {meta.size[0]}x{meta.size[1]}; use another cache folder"
            )
        if old == meta:
            return
    write_json(cache_dir / META_FILE, {**asdict(meta), "size": list(meta.size)})


def record_path(cache_dir: str | os.PathLike, clip_id: str) -> Path:
    return Path(cache_dir) / CLIPS_DIR / npy_name(clip_id).replace(".npy", ".json")


def write_clip(
    cache_dir: str | os.PathLike,
    frames: np.ndarray,
    *,
    clip_id: str,
    path: str,
    labels: tuple[str, ...],
    group: str | None,
    split: str | None,
    fps: float,
    source_size: int,
    source_mtime_ns: int,
    backend: str,
) -> CacheEntry:
    """Write one clip's whole array, then its record (each atomically); return the record. For callers
    that hold the array (tests, synthetic data): it goes through `ClipWriter`, as decoded clips do."""
    with ClipWriter(
        cache_dir,
        clip_id=clip_id,
        path=path,
        labels=labels,
        group=group,
        split=split,
        fps=fps,
        source_size=source_size,
        source_mtime_ns=source_mtime_ns,
    ) as writer:
        writer.append(frames)
        return writer.finish(backend)


class ClipWriter:
    """Stream one clip into the cache a chunk at a time: its `.npy` array, then its record.

    Frames are appended to a temporary file beside the final one, so a clip of any length never sits
    whole in memory. The file is np.save's layout byte for byte (what `read_array` reads fastest):
    numpy pads its header so that the first dimension can grow to 21 digits, so the header written for
    0 frames is overwritten in place with the final count. The sha256 grows with the pixels (the same
    digest as `array_sha256` of the whole array). `restart()` truncates back to the header (a
    decoder's RESTART). `finish` renames the file (atomic, deliberately not fsynced: module docstring)
    and writes the record; leaving the `with` block without `finish` (an error, a failed decode, Ctrl-C)
    removes the temporary file.

    Use:  with ClipWriter(cache_dir, clip_id=..., ...) as w: w.reserve(n, shape); w.append(chunk) ...;
          entry = w.finish(backend)
    """

    def __init__(
        self,
        cache_dir: str | os.PathLike,
        *,
        clip_id: str,
        path: str,
        labels: tuple[str, ...],
        group: str | None,
        split: str | None,
        fps: float,
        source_size: int,
        source_mtime_ns: int,
    ):
        self.cache_dir = Path(cache_dir)
        self._entry = CacheEntry(  # the record without what the frames decide (filled in by finish)
            clip_id=clip_id, path=path, labels=tuple(labels), group=group, split=split, frames=0, fps=fps,
            size=(0, 0), source_size=source_size, source_mtime_ns=source_mtime_ns, sha256="",
            npy=npy_name(clip_id), backend="",
        )  # fmt: skip
        self.path = npy_path(cache_dir, self._entry)  # checks the names before anything is written
        self.frames = 0  # frames appended since the start or the last restart
        self._frame_shape: tuple[int, ...] | None = None  # (H, W, 3), from the first chunk
        self._header = b""
        self._file: io.BufferedWriter | None = None
        self._tmp: str | None = None
        self._hash = hashlib.sha256()
        self._reserved = 0  # the most frames `reserve` found room for

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()

    def append(self, frames: np.ndarray) -> None:
        """Append uint8 `(k, H, W, 3)` frames (every chunk of a clip the same H, W)."""
        assert frames.dtype == np.uint8 and frames.ndim == 4 and frames.shape[3] == 3, (
            f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
        if self._file is None:
            self._open(tuple(frames.shape[1:]))
        assert frames.shape[1:] == self._frame_shape, f"chunk of {frames.shape[1:]} after {self._frame_shape}"
        flat = np.ascontiguousarray(frames).reshape(-1)  # the bytes in C order, no copy when contiguous
        self._file.write(flat.data)
        self._hash.update(flat.data)
        self.frames += len(frames)

    def restart(self) -> None:
        """Drop the frames appended so far (the decoder starts the clip again from frame 0)."""
        if self._file is not None:
            self._file.seek(len(self._header))
            self._file.truncate()
        self._hash = hashlib.sha256()
        self.frames = 0

    def reserve(self, frames: int, frame_shape: tuple[int, ...]) -> None:
        """Check, before writing them, that a clip of `frames` frames of `frame_shape` fits on the disk.

        More than the whole file system holds: CacheError (this clip fails; a damaged header or wild
        timestamps can ask for that). More than is free: OSError ENOSPC naming the clip and the numbers,
        which ends the run as a full disk does (the clips after it would not fit either; recording
        them as failed would let training take the cache as complete). Checks the disk only when
        `frames` grows past what was checked, so it can be called at every chunk."""
        if frames <= self._reserved:
            return
        frame_bytes = math.prod(frame_shape)
        header = len(_npy_header((0, *frame_shape)))
        whole = header + frames * frame_bytes
        need = whole - (len(self._header) + self.frames * frame_bytes if self._file is not None else 0)
        folder = self.path.parent
        usage = shutil.disk_usage(folder)
        if whole > usage.total:
            raise CacheError(  # the job prints it after the clip's id
                f"needs {format_bytes(whole)}, more than the whole disk of {folder} ({format_bytes(usage.total)})"
            )
        if need > usage.free:
            raise OSError(
                errno.ENOSPC,
                f"No space left on device for {self._entry.clip_id}: needs {format_bytes(need)}, "
                f"{format_bytes(usage.free)} free on {folder}",
            )
        self._reserved = frames

    def finish(self, backend: str) -> CacheEntry:
        """Write the final header, publish the array, then its record; return the record."""
        assert self._file is not None, "no frames appended"
        height, width, _ = self._frame_shape
        entry = dataclasses.replace(
            self._entry, frames=self.frames, size=(width, height), sha256=self._hash.hexdigest(), backend=backend
        )
        header = _npy_header(entry.shape)
        assert len(header) == len(self._header), "numpy's .npy header does not keep room to grow (numpy < 1.23?)"
        self._file.seek(0)
        self._file.write(header)
        self._file.close()
        self._file = None
        os.replace(self._tmp, self.path)
        self._tmp = None
        write_record(self.cache_dir, entry)
        return entry

    def discard(self) -> None:
        """Remove the temporary file, if any (a no-op after `finish`)."""
        if self._file is not None:
            with contextlib.suppress(OSError):  # closing flushes: on a full disk that fails again
                self._file.close()
            self._file = None
        if self._tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._tmp)
            self._tmp = None

    def _open(self, frame_shape: tuple[int, ...]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self._tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self._file = os.fdopen(fd, "wb")
        self._frame_shape = frame_shape
        self._header = _npy_header((0, *frame_shape))
        self._file.write(self._header)


def format_bytes(nbytes: float) -> str:
    """`nbytes` for a message: 12.3 GiB, 300.0 KiB."""
    units = ("KiB", "MiB", "GiB", "TiB")
    value, i = nbytes / 1024, 0
    while value >= 1024 and i < len(units) - 1:
        value, i = value / 1024, i + 1
    return f"{value:.1f} {units[i]}"


def write_record(cache_dir: str | os.PathLike, entry: CacheEntry) -> None:
    write_json(record_path(cache_dir, entry.clip_id), entry.to_json())


def read_record(cache_dir: str | os.PathLike, clip_id: str) -> CacheEntry | None:
    """The record of `clip_id`, or None when there is none or it cannot be read."""
    path = record_path(cache_dir, clip_id)
    try:
        return CacheEntry.from_json(json.loads(path.read_text(encoding="utf-8")), where=str(path))
    except (OSError, ValueError, CacheError):
        return None


def write_manifest(
    cache_dir: str | os.PathLike, meta: CacheMeta, entries: list[CacheEntry], name: str
) -> Path:
    """Gather records into one manifest file (`manifest.json` or `manifest.shard-I-of-N.json`)."""
    path = Path(cache_dir) / name
    payload = {**asdict(meta), "size": list(meta.size), "clips": [e.to_json() for e in entries]}
    write_json(path, payload)
    return path


def write_failures(path: str | os.PathLike, failures: list[dict]) -> None:
    """JSON lines `{"clip_id", "path", "reason"}`; written whole (an empty file means no failures)."""
    with atomic_open(path, "w", encoding="utf-8") as f:
        for failure in failures:
            f.write(json.dumps(failure, sort_keys=True) + "\n")

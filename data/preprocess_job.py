"""The `preprocess` job: decode every clip of a dataset into the frame cache, resumably and in parallel.

- Resumable: a clip whose record matches its source (size and mtime), the settings and an intact
  array is skipped, so a killed run (even `kill -9`) is finished by running it again.
- `workers` processes decode in parallel, one reused scaler each; each worker writes its clips
  itself, so arrays never travel between processes. A worker is one core: it decodes with one FFmpeg
  thread (`decoder_threads=1`), so N workers use N cores, the unit a cluster scheduler hands out
  (`--cpus-per-task`). `decoder_threads=0` lets FFmpeg add frame threads (one process on many cores).
- `shard=(i, n)` takes every n-th clip (by sorted clip id) starting at i: n jobs of a Slurm array fill
  one cache together, and a later run without a shard reuses all of it.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from data.layouts import ClipInfo, list_clips
from preprocessing.cache import (
    CLIPS_DIR,
    CacheEntry,
    CacheError,
    CacheMeta,
    ClipWriter,
    check_entry,
    npy_path,
    open_cache,
    read_record,
    record_path,
    write_failures,
    write_manifest,
    write_record,
)
from preprocessing.decode import RESTART, VideoChunks, VideoDecodeError
from preprocessing.names import original_name, printable_name, printable_text
from preprocessing.workers import die_with_parent, worker_context

log = logging.getLogger(__name__)

_STALE_TMP_SECONDS = 3600  # temporary files older than this were left by a killed run



@dataclass(frozen=True)
class PreprocessConfig:
    """One preprocess run."""

    dataset: str  # layout name: folder, ucf11, hollywood2, celebrities
    root: Path  # dataset root folder
    cache_dir: Path  # cache folder (created if needed)
    fps: float  # sampling rate
    size: tuple[int, int]  # (width, height) of the cached frames
    workers: int = 1  # decoding processes; 1 decodes in this process
    decoder_threads: int = 1  # FFmpeg threads per worker: 1 (a worker is one core) or 0 (FFmpeg's choice)
    shard: tuple[int, int] | None = None  # (i, n), 0 <= i < n: this run's share of the clips
    backend: str = "auto"  # decoder: auto (PyAV, OpenCV fallback), pyav, opencv


@dataclass(frozen=True)
class ClipResult:
    """What happened to one clip."""

    clip_id: str
    status: str  # "ok" (decoded now), "skipped" (already cached), "failed"
    frames: int  # frames in the cache for this clip (0 when failed)
    reason: str | None = None  # one-line reason when failed
    entry: CacheEntry | None = None  # the cache record (None when failed)


@dataclass(frozen=True)
class Summary:
    ok: int
    skipped: int
    failed: int
    frames: int  # frames decoded in this run (ok clips)
    seconds: float
    manifest: Path
    failures: Path


def default_workers() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def shard_clips(clips: list[ClipInfo], shard: tuple[int, int] | None) -> list[ClipInfo]:
    """This shard's clips: every n-th clip in clip-id order, starting at the i-th."""
    clips = sorted(clips, key=lambda c: c.clip_id)
    if shard is None:
        return clips
    i, n = shard
    assert 0 <= i < n, f"shard index must be in [0, {n}), got {i}"
    return clips[i::n]


def run_preprocess(
    config: PreprocessConfig,
    *,
    on_plan: Callable[[int, int], None] | None = None,
    on_result: Callable[[ClipResult], None] | None = None,
) -> Summary:
    """Run the job. `on_plan(total, skipped)` is called once the cached clips are known, `on_result`
    for every clip decoded or failed (progress bars live in the CLI)."""
    start = time.perf_counter()
    root = Path(config.root).resolve()
    cache_dir = Path(config.cache_dir)
    meta = CacheMeta(dataset=config.dataset, fps=float(config.fps), size=tuple(config.size), root=str(root))
    clips = shard_clips(list_clips(config.dataset, root), config.shard)
    open_cache(cache_dir, meta)
    _remove_stale_tmp(cache_dir)

    results: dict[str, ClipResult] = {}
    todo = []
    for clip in clips:
        _drop_legacy_record(cache_dir, clip)
        entry = _cached_entry(cache_dir, clip, root, meta)
        if entry is not None:
            results[clip.clip_id] = ClipResult(clip.clip_id, "skipped", entry.frames, entry=entry)
        else:
            todo.append(clip)
    if on_plan is not None:
        on_plan(len(clips), len(results))

    tasks = [_Task(clip, root, cache_dir, meta, config.backend, config.decoder_threads) for clip in todo]
    for result in _run_tasks(tasks, config.workers):
        results[result.clip_id] = result
        if on_result is not None:
            on_result(result)

    suffix = "" if config.shard is None else f".shard-{config.shard[0]}-of-{config.shard[1]}"
    ordered = [results[c.clip_id] for c in clips]
    manifest = write_manifest(
        cache_dir, meta, [r.entry for r in ordered if r.entry is not None], f"manifest{suffix}.json"
    )
    failures_path = cache_dir / f"failures{suffix}.jsonl"
    by_id = {c.clip_id: c for c in clips}
    write_failures(
        failures_path,
        [
            {"clip_id": r.clip_id, "path": _relative(by_id[r.clip_id].path, root), "reason": r.reason}
            for r in ordered
            if r.status == "failed"
        ],
    )
    counts = {s: sum(r.status == s for r in ordered) for s in ("ok", "skipped", "failed")}
    return Summary(
        **counts,
        frames=sum(r.frames for r in ordered if r.status == "ok"),
        seconds=time.perf_counter() - start,
        manifest=manifest,
        failures=failures_path,
    )


# --- skipping what is cached -----------------------------------------------------------------------


def _relative(path: Path, root: Path) -> str:
    """The path under the dataset root as the cache records it (its printable form)."""
    return printable_name(Path(path).relative_to(root).as_posix())


def _drop_legacy_record(cache_dir: Path, clip: ClipInfo) -> None:
    """Remove the record and array of `clip` under its raw id, left by a run from before ids became
    printable names (only names with a control character differ): the clip is cached under its
    printable id, and must not be listed twice."""
    raw = original_name(clip.clip_id)
    if raw == clip.clip_id:
        return
    try:
        legacy = read_record(cache_dir, raw)
    except (CacheError, UnicodeEncodeError):  # not valid UTF-8: the old code could not cache it
        return
    if legacy is not None:
        npy_path(cache_dir, legacy).unlink(missing_ok=True)
        record_path(cache_dir, raw).unlink(missing_ok=True)


def _cached_entry(cache_dir: Path, clip: ClipInfo, root: Path, meta: CacheMeta) -> CacheEntry | None:
    """The clip's record if its array is still right for the source file and the settings."""
    entry = read_record(cache_dir, clip.clip_id)
    if entry is None:
        return None
    try:
        stat = Path(clip.path).stat()
    except OSError:
        return None
    if (
        entry.path != _relative(clip.path, root)
        or entry.fps != meta.fps
        or tuple(entry.size) != tuple(meta.size)
        or entry.source_size != stat.st_size
        or entry.source_mtime_ns != stat.st_mtime_ns
        or check_entry(cache_dir, entry) is not None
    ):
        return None
    if (entry.labels, entry.group, entry.split) != (clip.labels, clip.group, clip.split):
        # Same pixels, new annotations (e.g. edited ClipSets): update the record only.
        entry = dataclasses.replace(entry, labels=clip.labels, group=clip.group, split=clip.split)
        write_record(cache_dir, entry)
    return entry


def _remove_stale_tmp(cache_dir: Path) -> None:
    """Delete temporary files a killed run left (old ones only: a parallel shard may be writing)."""
    now = time.time()
    for tmp in (cache_dir / CLIPS_DIR).glob(".*.tmp"):
        try:
            if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                tmp.unlink()
        except OSError:
            pass


# --- decoding, in this process or in a pool --------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    clip: ClipInfo
    root: Path
    cache_dir: Path
    meta: CacheMeta
    backend: str
    threads: int


def _process(task: _Task) -> ClipResult:
    """Decode one clip and write it to the cache (runs in a worker); a reason is one printable line."""
    result = _decode_and_write(task)
    if result.reason is not None:
        result = dataclasses.replace(result, reason=printable_text(result.reason, os.fspath(task.clip.path)))
    return result


def _decode_and_write(task: _Task) -> ClipResult:
    """Decode one clip and stream it into the cache, a chunk at a time (a long clip never sits whole in
    memory; the disk is checked as the clip grows instead of capping the output: ClipWriter.reserve).

    A clip that cannot be decoded is a failed clip; an error writing the cache (full disk, read-only
    folder) ends the run: recording good clips as failed videos would let training take the cache
    as complete without them."""
    clip = task.clip
    try:
        stat = Path(clip.path).stat()  # before decoding: a file changed meanwhile is redone next run
    except OSError as e:
        return ClipResult(clip.clip_id, "failed", 0, reason=_failure_reason(e, clip.path))
    chunks = VideoChunks(
        clip.path, fps=task.meta.fps, size=task.meta.size, backend=task.backend, threads=task.threads
    )
    try:
        with ClipWriter(
            task.cache_dir,
            clip_id=clip.clip_id,
            path=_relative(clip.path, task.root),
            labels=clip.labels,
            group=clip.group,
            split=clip.split,
            fps=task.meta.fps,
            source_size=stat.st_size,
            source_mtime_ns=stat.st_mtime_ns,
        ) as writer:
            for chunk in _decoded(chunks):
                if chunk is RESTART:
                    writer.restart()
                    continue
                # the frames decided so far, not the header's estimate: a header that lies about the
                # length (a 2-second clip claiming 1,000 hours) must not stop a run
                writer.reserve(chunks.planned_frames, chunk.shape[1:])
                writer.append(chunk)
            entry = writer.finish(chunks.backend)
    except _ClipFailed as e:
        return ClipResult(clip.clip_id, "failed", 0, reason=e.reason)
    except CacheError as e:  # a name the cache refuses (a '\\' or ':' in it), a clip bigger than the disk
        return ClipResult(clip.clip_id, "failed", 0, reason=str(e))
    return ClipResult(clip.clip_id, "ok", entry.frames, entry=entry)


class _ClipFailed(Exception):
    """The decoder gave up on a clip (args: the one-line reason)."""

    @property
    def reason(self) -> str:
        return self.args[0]


def _decoded(chunks: VideoChunks) -> Iterator:
    """The chunks (and RESTARTs) of `chunks`; whatever goes wrong while decoding becomes _ClipFailed,
    so that it fails this clip only, while an error writing the cache (raised by the caller's body, not
    here) ends the run."""
    it = iter(chunks)
    while True:
        try:
            chunk = next(it)
        except StopIteration:
            return
        except Exception as e:  # one bad clip must not end a run of thousands; the reason is kept
            raise _ClipFailed(_failure_reason(e, chunks.path)) from e
        yield chunk


def _failure_reason(e: Exception, path: str | os.PathLike) -> str:
    """Why a clip failed, in one line."""
    if isinstance(e, VideoDecodeError):
        return e.reason
    if isinstance(e, FileNotFoundError):
        return "no such file"
    log.debug("unexpected error on %s", path, exc_info=True)
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def file_size(path: str | os.PathLike) -> int:
    """Bytes of `path`, 0 when it cannot be read (the decoder reports the reason): what work is
    ordered by, largest first (decode time grows with file size)."""
    try:
        return os.stat(path).st_size
    except OSError:  # the worker reports the reason
        return 0


def _run_tasks(tasks: list[_Task], workers: int) -> Iterator[ClipResult]:
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _process(task)
        return
    # Largest files first (decode time grows with file size): a long clip left for the end would keep
    # one worker busy while the others idle; this is the longest-processing-time-first rule.
    tasks = sorted(tasks, key=lambda task: -file_size(task.clip.path))
    context = worker_context()
    with concurrent.futures.ProcessPoolExecutor(
        min(workers, len(tasks)), mp_context=context, initializer=die_with_parent, initargs=(os.getpid(),)
    ) as pool:
        futures = [pool.submit(_process, task) for task in tasks]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise

"""Damaged YouTube-8M TFRecord shards: what a half-finished download or a flipped bit does to the
reader (data/tfrecord_io.py + data/yt8m.py).

    cases = build_shards(tmp_dir, seed=0)     # list[Case] (tests/robustness/corpus.py's Case)

Shards are written with the project's writer in the dataset's schema (video level and frame level,
SequenceExample and Example), then truncated, flipped in their framing or their payloads, given
valid framing around bytes that are not a record, or a length field that promises more than the
file holds. Each case says what reading it at its level must do: "array" read every record,
"error" raise TFRecordError, "either" one or the other (records before the damage may come out).
Reading yields records of float32 (T, 1152) or raises TFRecordError naming the file; nothing else.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from .corpus import Case, flip_bytes, rng_for

LEVELS = {"video": "video", "frame": "frame", "example_video": "video", "example_frame": "frame"}


def _records(kind: str, n: int, seed: int) -> list[bytes]:
    from data.yt8m import encode_record
    from preprocessing.features import quantize

    rng = rng_for(seed, kind)
    level = LEVELS[kind]
    message = "example" if kind.startswith("example") else "sequence_example"
    out = []
    for i in range(n):
        if level == "video":
            rgb, audio = rng.normal(size=1024).astype(np.float32), rng.normal(size=128).astype(np.float32)
        else:
            T = int(rng.integers(2, 8))
            rgb, audio = quantize(rng.normal(size=(T, 1024))), quantize(rng.normal(size=(T, 128)))
        labels = sorted({int(x) for x in rng.integers(0, 3862, size=3)})
        out.append(encode_record(video_id=f"{kind}{i:02d}", labels=labels, rgb=rgb, audio=audio, level=level,
                                 message=message))
    return out


def level_of(case: Case) -> str:
    return LEVELS[case.name.split(".", 1)[0]]


def build_shards(out_dir: str | os.PathLike, *, seed: int = 0) -> list[Case]:
    """Write >= 60 shards (good and damaged) into `out_dir` and return their cases, sorted by name."""
    from data.tfrecord_io import frame_record

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cases: list[Case] = []

    def add(name: str, data: bytes, expect: str, origin: str) -> None:
        (out / name).write_bytes(data)
        cases.append(Case(name, out / name, expect, origin))

    for kind in LEVELS:
        records = _records(kind, 4, seed)
        data = b"".join(frame_record(r) for r in records)
        n = len(data)
        add(f"{kind}.good.tfrecord", data, "array", f"shard: 4 {kind} records")
        first_end = len(frame_record(records[0]))
        cuts = {5, 12, first_end - 3, first_end, first_end + 10} | {
            int(n * f) for f in rng_for(seed, f"{kind}.cuts").uniform(0.05, 0.99, 4)
        }
        for cut in sorted(c for c in cuts if 0 < c < n):
            # cut at a record boundary: a shorter but whole shard
            add(f"{kind}.trunc-{cut}.tfrecord", data[:cut], "array" if cut == first_end else "either",
                f"truncated shard: {cut} of {n} bytes")
        for i, count in enumerate((1, 3)):
            name = f"{kind}.lenflip-{i}.tfrecord"
            add(name, flip_bytes(data, rng_for(seed, name), count, 0, 12), "error", "header flips: length or its CRC")
        for i, count in enumerate((1, 8, 64)):
            name = f"{kind}.dataflip-{i}.tfrecord"
            add(name, flip_bytes(data, rng_for(seed, name), count, 12, n), "either", f"payload flips: {count} bytes")
        # valid framing (CRCs right) around a damaged payload: the protobuf parser sees it
        bad_payload = flip_bytes(records[1], rng_for(seed, f"{kind}.payload"), 6, 0, len(records[1]))
        add(f"{kind}.framed-flips.tfrecord", frame_record(records[0]) + frame_record(bad_payload), "either",
            "payload flips: inside correct framing")
        add(f"{kind}.framed-cut.tfrecord", frame_record(records[0][: len(records[0]) // 2]), "error",
            "payload flips: half a record inside correct framing")
    # framing that lies about the length, with a correct CRC of that lie
    from data.tfrecord_io import masked_crc32c

    header = struct.pack("<Q", 2**62)
    add("video.huge-length.tfrecord", header + struct.pack("<I", masked_crc32c(header)) + b"\0" * 64, "error",
        "special: a length field of 2**62 with a valid CRC")
    add("video.empty.tfrecord", b"", "array", "special: an empty shard (no records)")
    add("video.text.tfrecord", b"this is not a TFRecord shard\n" * 4, "error", "special: text")
    add("video.zero-length-record.tfrecord", frame_record(b""), "error", "special: one record of 0 bytes")
    add("video.not-a-record.tfrecord", frame_record(b"\x0a\x02\x08\x01" * 8), "error",
        "special: valid framing around a protobuf that is not a record")
    return sorted(cases, key=lambda c: c.name)


def read_target(path: str) -> str:
    """Watchdog target: read every record of a shard at its level; describe what came out."""
    from data.yt8m import read_yt8m

    level = LEVELS[Path(path).name.split(".", 1)[0]]
    n = 0
    for rec in read_yt8m(path, level=level):
        assert rec.features.dtype.name == "float32" and rec.features.ndim == 2, rec.features.dtype
        assert rec.features.shape[1] == 1152 and (level == "frame" or rec.features.shape[0] == 1), rec.features.shape
        assert np.isfinite(rec.features).all(), "non-finite features"
        n += 1
    return f"records={n}"


def check_shards(cases: list[Case], outcomes) -> list[str]:
    problems = []
    for case, o in zip(cases, outcomes):
        where = f"{case.name} ({case.origin})"
        if o.status in ("crash", "hang"):
            problems.append(f"{where}: {o.status}: {o.detail.splitlines()[0] if o.detail else ''}")
        elif case.expect == "array" and o.status != "ok":
            problems.append(f"{where}: must read, got {o.error_type}: {o.detail}")
        elif case.expect == "error" and o.status != "error":
            problems.append(f"{where}: must be refused with TFRecordError, got {o.detail}")
        elif o.status == "error" and (str(case.path) not in o.detail or "\n" in o.detail):
            problems.append(f"{where}: the error is not one line naming the file: {o.detail!r}")
    return problems


def make_feature_checkpoint(path: Path) -> Path:
    """A video-level logistic model over YouTube-8M features (3,862 classes), saved as a checkpoint."""
    import torch

    from app.checkpoint import save_checkpoint
    from data.yt8m import read_vocabulary
    from models import create_model

    torch.manual_seed(0)
    model = create_model("logistic", num_classes=3862)
    save_checkpoint(path, model, class_names=read_vocabulary(), multi_label=True,
                    input_spec={"kind": "features", "dims": 1152, "level": "video"})
    return path


def check_classify_shards(cases: list[Case], outcomes, run, out_dir: Path) -> list[str]:
    """classify (video-level checkpoint) on the shard folder: one or more rows per shard, as many
    classified rows as the reader gives for a video-level shard, one error row where it fails."""
    import json

    problems = []
    if run.returncode != 3:
        problems.append(f"classify exited {run.returncode}, expected 3: {run.stderr[-500:]}")
    if "Traceback" in run.stderr:
        problems.append("classify printed a traceback: " + run.stderr[run.stderr.index("Traceback"):][:300])
    jsonl = out_dir / "predictions.jsonl"
    if not jsonl.exists():
        return problems + ["no predictions.jsonl"]
    rows = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    for case, o in zip(cases, outcomes):
        mine = [r for r in rows if r["path"] == str(case.path) or r["path"].startswith(f"{case.path}#")]
        if not mine:
            problems.append(f"{case.name}: no row in predictions.jsonl")
            continue
        if any(r["error"] and "\n" in r["error"] for r in mine):
            problems.append(f"{case.name}: an error row is not one line")
        if level_of(case) != "video" or case.name == "video.empty.tfrecord":
            continue  # frame-level shards fail at video level; an empty file is refused before reading
        ok = sum(r["error"] is None for r in mine)
        if o.status == "ok" and (ok != int(o.detail.split("=")[1]) or len(mine) != ok):
            problems.append(f"{case.name}: {ok} rows classified, the reader gives {o.detail}")
        if o.status == "error" and sum(r["error"] is not None for r in mine) != 1:
            problems.append(f"{case.name}: the reader fails, classify shows {len(mine) - ok} error rows")
    return problems

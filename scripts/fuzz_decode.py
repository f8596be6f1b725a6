"""Coverage-guided fuzzing (atheris + libFuzzer) of the decoder and of the TFRecord / YouTube-8M reader.

    python -m scripts.fuzz_decode --seconds 60                    # the decoder
    python -m scripts.fuzz_decode --target tfrecord --seconds 60  # raw TFRecord file bytes
    python -m scripts.fuzz_decode --target record --seconds 60    # record payloads with valid CRCs

atheris is an optional dependency (not in requirements.txt): `pip install atheris`, or into a
throwaway folder with `pip install --target /tmp/atheris_site atheris` and `PYTHONPATH=/tmp/atheris_site`.

Targets, and the only exceptions each may raise (anything else is a finding):
- decode:   bytes -> a temporary file -> `video_to_array(path, fps=4, size=(32, 24))`: VideoDecodeError;
- tfrecord: bytes -> a temporary `.tfrecord` -> every record at video and at frame level: TFRecordError;
- record:   bytes framed as one record with correct CRCs (so the protobuf parser sees them): TFRecordError.
Seeds are small valid inputs written at start (PyAV clips in several containers, cuts of the real
sample clips; YouTube-8M records of both levels and both message types). The fuzzer runs in a child
process; when it stops on a finding (an undeclared exception, a crash, a hang past --timeout, memory
past --rss-mb), the input is copied to --save-dir (tests/robustness/regressions/, where
tests/robustness/test_regressions.py replays every file) and the exit status is 1. Python code of
`preprocessing` and `data` is instrumented for coverage; FFmpeg and protobuf are C and are not, so for
them this is mutation fuzzing around the seeds.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
TARGETS = ("decode", "tfrecord", "record")
SAVE_DIR = REPO / "tests" / "robustness" / "regressions"
# The decoder refuses outputs above MAX_OUTPUT_BYTES (8 GiB); the fuzzer lowers it so that an input
# whose timestamps ask for a lot of frames is refused long before libFuzzer's memory limit.
FUZZ_OUTPUT_BYTES = 256 * 2**20


def _atheris():
    try:
        import atheris
    except ImportError:
        print(
            "error: atheris is not installed. It is an optional dependency of the fuzz targets only:\n"
            "  pip install atheris\n"
            "or, without touching the environment:\n"
            "  pip install --target /tmp/atheris_site atheris && "
            "PYTHONPATH=/tmp/atheris_site python -m scripts.fuzz_decode ...",
            file=sys.stderr,
        )
        sys.exit(2)
    return atheris


# --- seeds ---------------------------------------------------------------------------------------------


def _clip(path: Path, *, fmt: str, codec: str, pix_fmt: str, frames: int, options: dict | None = None,
          rotation: int | None = None) -> None:
    import av
    import numpy as np

    rng = np.random.default_rng(len(path.name))
    base = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    with av.open(str(path), "w", format=fmt, options={"fflags": "+bitexact"}) as out:
        stream = out.add_stream(codec, rate=24, options={"flags": "+bitexact", **(options or {})})
        stream.width, stream.height, stream.pix_fmt = 32, 24, pix_fmt
        stream.codec_context.thread_count = 1
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for t in range(frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.roll(base, t, axis=1), format="rgb24")))
        out.mux(stream.encode())


def write_decode_seeds(folder: Path) -> None:
    """Small valid videos in the containers and codecs the project meets, plus cuts of real clips."""
    _clip(folder / "ffv1.mkv", fmt="matroska", codec="ffv1", pix_fmt="yuv420p", frames=4)
    _clip(folder / "mjpeg.avi", fmt="avi", codec="mjpeg", pix_fmt="yuvj420p", frames=4)
    _clip(folder / "mpeg4_bframes.avi", fmt="avi", codec="mpeg4", pix_fmt="yuv420p", frames=8,
          options={"bf": "2"})
    _clip(folder / "h264.mp4", fmt="mp4", codec="libx264", pix_fmt="yuv420p", frames=8)
    _clip(folder / "mpeg1.mpg", fmt="mpeg", codec="mpeg1video", pix_fmt="yuv420p", frames=8)
    _clip(folder / "vp8.webm", fmt="webm", codec="libvpx", pix_fmt="yuv420p", frames=4)
    _clip(folder / "rotated.mp4", fmt="mp4", codec="mpeg4", pix_fmt="yuv420p", frames=4, rotation=90)
    for name, cut in (("ucf11_v_shooting_01_01.mpg", 16384), ("mmaction2_test_xvid_packedB.avi", 24576)):
        (folder / f"cut_{name}").write_bytes((SAMPLES / name).read_bytes()[:cut])


def _records(level: str, message: str, n: int) -> list[bytes]:
    import numpy as np

    from data.yt8m import encode_record

    rng = np.random.default_rng(n)
    out = []
    for i in range(n):
        if level == "video":
            rgb, audio = rng.normal(size=1024).astype(np.float32), rng.normal(size=128).astype(np.float32)
        else:
            rgb = rng.integers(0, 256, (3, 1024), dtype=np.uint8)
            audio = rng.integers(0, 256, (3, 128), dtype=np.uint8)
        out.append(encode_record(video_id=f"v{i}", labels=[i, 7], rgb=rgb, audio=audio, level=level,
                                 message=message))
    return out


def write_record_seeds(folder: Path, *, framed: bool) -> None:
    """YouTube-8M records: framed TFRecord files (`framed`) or bare serialized protos."""
    from data.tfrecord_io import frame_record

    for level in ("video", "frame"):
        for message in ("sequence_example", "example"):
            records = _records(level, message, 2)
            name = f"{level}_{message}"
            if framed:
                (folder / f"{name}.tfrecord").write_bytes(b"".join(frame_record(r) for r in records))
            else:
                (folder / f"{name}.pb").write_bytes(records[0])
    (folder / "empty").write_bytes(b"")


# --- the targets (run in the fuzzing child) ----------------------------------------------------------


def _decode_target(scratch: Path):
    import preprocessing.decode as decode
    from preprocessing import VideoDecodeError, video_to_array

    decode.MAX_OUTPUT_BYTES = FUZZ_OUTPUT_BYTES
    path = scratch / "input"

    def one(data: bytes) -> None:
        path.write_bytes(data)
        try:
            frames = video_to_array(path, fps=4.0, size=(32, 24), threads=1)
        except VideoDecodeError as e:
            assert "\n" not in str(e), f"multi-line error: {e!r}"
            return
        assert frames.dtype.name == "uint8" and frames.shape[1:] == (24, 32, 3) and len(frames) >= 1, (
            f"bad array {frames.dtype} {frames.shape}"
        )

    return one


def _reader_target(scratch: Path, *, framed: bool):
    from data.tfrecord_io import TFRecordError, frame_record
    from data.yt8m import read_yt8m

    path = scratch / "input.tfrecord"

    def one(data: bytes) -> None:
        path.write_bytes(frame_record(data) if framed else data)
        for level in ("video", "frame"):
            try:
                for rec in read_yt8m(path, level=level):
                    assert rec.features.ndim == 2 and rec.features.shape[1] == 1152, rec.features.shape
                    assert rec.features.dtype.name == "float32", rec.features.dtype
            except TFRecordError as e:
                assert str(path) in str(e), f"the error does not name the file: {e}"

    return one


def _child(target: str, libfuzzer_args: list[str]) -> None:
    atheris = _atheris()
    with atheris.instrument_imports(include=["preprocessing", "data"]):
        import data.tfrecord_io  # noqa: F401
        import data.yt8m  # noqa: F401
        import preprocessing.decode  # noqa: F401
    scratch = Path(tempfile.mkdtemp(prefix="vidclass_fuzz_"))
    one = _decode_target(scratch) if target == "decode" else _reader_target(scratch, framed=target == "record")
    atheris.Setup([sys.argv[0], *libfuzzer_args], one)
    atheris.Fuzz()


# --- the driver --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scripts.fuzz_decode", description=__doc__.splitlines()[0])
    p.add_argument("--target", choices=TARGETS, default="decode", help="what to fuzz (default: decode)")
    p.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    p.add_argument("--timeout", type=int, default=10, help="seconds one input may take: longer is a hang")
    p.add_argument("--rss-mb", type=int, default=2048, help="memory limit: more is a finding (default 2048)")
    p.add_argument("--max-len", type=int, default=65536, help="largest input in bytes (default 65536)")
    p.add_argument("--save-dir", default=str(SAVE_DIR), help="where findings are copied")
    p.add_argument("--seed", type=int, default=0, help="libFuzzer's random seed (default 0)")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    args, rest = p.parse_known_args(argv)
    if args._child:
        _child(args.target, rest)
        return 0
    _atheris()  # fail early and clearly when it is missing

    work = Path(tempfile.mkdtemp(prefix=f"vidclass_fuzz_{args.target}_"))
    try:
        seeds, artifacts = work / "corpus", work / "artifacts"
        seeds.mkdir()
        artifacts.mkdir()
        if args.target == "decode":
            write_decode_seeds(seeds)
        else:
            write_record_seeds(seeds, framed=args.target == "tfrecord")
        n_seeds = len(list(seeds.iterdir()))
        cmd = [
            sys.executable, "-m", "scripts.fuzz_decode", "--_child", "--target", args.target, str(seeds),
            f"-max_total_time={args.seconds}", f"-timeout={args.timeout}", f"-rss_limit_mb={args.rss_mb}",
            f"-max_len={args.max_len}", f"-seed={args.seed}", f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1",
        ]
        print(f"fuzzing {args.target} for {args.seconds} s from {n_seeds} seeds ...", flush=True)
        run = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                             timeout=args.seconds + 10 * args.timeout + 120)
        log = run.stdout + run.stderr
        runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log)
        done = re.findall(r"Done (\d+) runs in (\d+) second", log)
        executed = int(runs[-1]) if runs else int(done[-1][0]) if done else None
        findings = sorted(artifacts.iterdir())
        save = Path(args.save_dir)
        saved = []
        for f in findings:
            save.mkdir(parents=True, exist_ok=True)
            kind = f.name.split("-", 1)[0]  # crash / timeout / oom / leak
            digest = hashlib.sha1(f.read_bytes()).hexdigest()[:12]
            ext = ".tfrecord" if args.target != "decode" else ".bin"
            dest = save / f"{'decode' if args.target == 'decode' else 'tfrecord'}-{kind}-{digest}{ext}"
            data = f.read_bytes()
            if args.target == "record":
                from data.tfrecord_io import frame_record

                data = frame_record(data)  # saved as the file the reader saw
            dest.write_bytes(data)
            saved.append(dest)
        print(f"target: {args.target}; inputs executed: {executed if executed is not None else 'unknown'}; "
              f"seconds: {args.seconds}; findings: {len(findings)}")
        if findings:
            tail = "\n".join(line for line in log.splitlines()[-60:])
            print(tail)
            for dest in saved:
                print(f"saved: {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}")
            return 1
        if run.returncode != 0:
            print(log[-4000:])
            print(f"the fuzzer exited with status {run.returncode} without a finding")
            return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

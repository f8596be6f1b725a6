"""VideoChunks (preprocessing/decode.py): a video decoded in bounded chunks. The chunks after the last
RESTART, concatenated, are `video_to_array`'s array byte for byte, on the real sample clips and on
lossless clips written here; RESTART comes where the contract says (timestamps that go backwards late,
PyAV failing mid-file); no chunk holds more than `chunk_frames` frames; the output cap is
`video_to_array`'s only."""

import pickle
from fractions import Fraction

import av
import numpy as np
import pytest
from test_decode import AVI, CARPHONE, NASA, ROTATED, SAMPLES, UCF11, VIDEOS, noise_frames, write_video

from preprocessing import RESTART, VideoChunks, VideoDecodeError, decode_video, video_to_array
from preprocessing import decode as decode_module

CHUNK_SIZES = (1, 7, 64)


def collect(chunks: VideoChunks) -> tuple[np.ndarray, int, list]:
    """(frames after the last RESTART, number of RESTARTs, every item) of one iteration; checks each chunk."""
    items = list(chunks)
    restarts = [i for i, item in enumerate(items) if item is RESTART]
    after = items[restarts[-1] + 1 :] if restarts else items
    for chunk in after:
        assert chunk is not RESTART
        assert chunk.dtype == np.uint8 and chunk.ndim == 4 and chunk.shape[3] == 3
        assert 1 <= len(chunk) <= chunks.chunk_frames, (len(chunk), chunks.chunk_frames)
    return np.concatenate(after), len(restarts), items


def assert_chunks_equal_array(path, sizes=CHUNK_SIZES, **kwargs) -> np.ndarray:
    """For each chunk size: the chunks, concatenated, are video_to_array's bytes; same backend as decode_video."""
    decoded = decode_video(path, **kwargs)
    expected = decoded.frames
    for chunk_frames in sizes:
        chunks = VideoChunks(path, chunk_frames=chunk_frames, **kwargs)
        frames, _, _ = collect(chunks)
        assert frames.shape == expected.shape, (chunk_frames, frames.shape, expected.shape)
        assert frames.tobytes() == expected.tobytes(), f"chunk_frames={chunk_frames}: other pixels"
        assert chunks.backend == decoded.backend
        assert chunks.planned_frames == len(expected)
    return expected


# --- the real sample clips -------------------------------------------------------------------------

REAL_CASES = [
    dict(fps=24, size=(32, 24)),
    dict(fps=24, size=(32, 24), max_frames=50),
    dict(fps=None, size=(16, 12)),
    dict(fps=7, size=(48, 36), max_frames=9),
    dict(fps=60, size=(16, 12)),  # upsampling: frames repeated across chunk boundaries
    dict(fps=24, size=(16, 12), backend="opencv"),
]


@pytest.mark.parametrize("kwargs", REAL_CASES, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()))
@pytest.mark.parametrize("name", VIDEOS)
def test_real_clips_chunks_equal_video_to_array(name, kwargs):
    assert_chunks_equal_array(SAMPLES / name, **kwargs)


def test_second_video_stream_and_upscaling_in_chunks():
    assert_chunks_equal_array(NASA, stream=1, fps=12, size=None, sizes=(7, 64))  # 480x270, other rate
    assert_chunks_equal_array(CARPHONE, fps=24, size=(352, 288), sizes=(7,))  # 176x144 upscaled
    assert_chunks_equal_array(ROTATED, fps=5, size=None, sizes=(4,))  # rotated 180, VFR, full size


def test_expected_frames_is_the_header_estimate_once_iteration_starts():
    for path in (CARPHONE, NASA, ROTATED, AVI, UCF11):
        chunks = VideoChunks(path, fps=24, size=(16, 12), chunk_frames=7)
        assert chunks.expected_frames is None and chunks.backend is None  # nothing opened yet
        it = iter(chunks)
        next(it)
        assert chunks.backend == "pyav"
        total = len(video_to_array(path, fps=24, size=(16, 12)))
        assert chunks.expected_frames is not None and abs(chunks.expected_frames - total) <= 3, (path, total)
        capped = VideoChunks(path, fps=24, size=(16, 12), max_frames=10)
        next(iter(capped))
        assert capped.expected_frames == 10
    opencv = VideoChunks(CARPHONE, fps=24, size=(16, 12), backend="opencv")
    next(iter(opencv))
    assert opencv.backend == "opencv" and abs(opencv.expected_frames - 96) <= 1


# --- lossless clips written here -------------------------------------------------------------------


@pytest.fixture(scope="module")
def lossless(tmp_path_factory):
    """The clips test_decode.py decodes: 20 noise frames at 10 fps (mkv, mov, avi), a VFR clip starting
    at 0.5 s, a rotated one."""
    folder = tmp_path_factory.mktemp("lossless")
    source = noise_frames(20)
    pts_ms = [500, 540, 600, 610, 760, 900, 1000, 1010, 1300, 1340]
    return {
        "mkv": write_video(folder / "clip.mkv", source),
        "mov": write_video(folder / "clip.mov", source, codec="png"),
        "avi": write_video(folder / "clip.avi", source),
        "vfr": write_video(folder / "vfr.mkv", noise_frames(10), pts=pts_ms, time_base=Fraction(1, 1000)),
        "rot": write_video(folder / "rot.mov", noise_frames(3), codec="png", rotation=90),
    }


@pytest.mark.parametrize("clip", ["mkv", "mov", "avi", "vfr", "rot"])
@pytest.mark.parametrize(
    "kwargs",
    [dict(fps=24, size=None), dict(fps=5, size=(16, 12)), dict(fps=None, size=None), dict(fps=24, size=None, max_frames=13),
     dict(fps=24, size=None, backend="opencv")],
    ids=["24fps", "5fps", "every-frame", "max13", "opencv"],
)  # fmt: skip
def test_lossless_clips_chunks_equal_video_to_array(lossless, clip, kwargs):
    assert_chunks_equal_array(lossless[clip], sizes=(1, 3, 7, 64), **kwargs)


# --- RESTART ---------------------------------------------------------------------------------------


def write_backwards(path, *, n=100, backwards_at=80, rate=25):
    """Lossless noise frames whose timestamps go backwards once, at frame `backwards_at` (dts stays
    monotonic, so the muxer takes it): pts i+1, except frames `backwards_at` and the next, swapped."""
    frames = noise_frames(n)
    tb = Fraction(1, rate)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "bgr0"
        stream.time_base = stream.codec_context.time_base = tb
        packets = []
        for i, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = i, tb
            packets += stream.encode(frame)
        packets += stream.encode()
        for i, packet in enumerate(packets):
            packet.dts = i
            packet.pts = {backwards_at: i + 2, backwards_at + 1: i}.get(i, i + 1)
            container.mux(packet)
    with av.open(str(path)) as container:
        pts = [f.pts for f in container.decode(video=0)]
    assert pts[backwards_at + 1] < pts[backwards_at] and sorted(pts) != pts
    return frames


@pytest.fixture(scope="module")
def backwards(tmp_path_factory):
    path = tmp_path_factory.mktemp("backwards") / "late_backwards.mkv"
    return path, write_backwards(path)


@pytest.mark.parametrize("chunk_frames", CHUNK_SIZES)
def test_timestamps_going_backwards_late_yield_restart(backwards, chunk_frames):
    """80 frames by timestamps (77 output frames at 24 fps: more than any chunk here), then a frame
    earlier than the one before: PyAV decodes again with index timing, and the frames handed out
    so far must be dropped."""
    path, source = backwards
    frames, restarts, items = collect(VideoChunks(path, fps=24, size=None, chunk_frames=chunk_frames))
    assert restarts == 1 and items[0] is not RESTART  # only after frames were handed out
    before = np.concatenate(items[: next(i for i, item in enumerate(items) if item is RESTART)])
    assert len(before) >= chunk_frames and before.tobytes() == frames[: len(before)].tobytes()  # same start
    assert frames.tobytes() == video_to_array(path, fps=24, size=None).tobytes()
    index_timed = [k * 25 // 24 for k in range(len(source) * 24 // 25)]  # frame i at i / 25 s
    assert frames.tobytes() == source[index_timed].tobytes()


def test_no_restart_when_nothing_was_handed_out(backwards):
    path, _ = backwards
    _, restarts, _ = collect(VideoChunks(path, fps=24, size=None, chunk_frames=1000))
    assert restarts == 0


def test_remuxed_packed_b_frames_yield_restart(tmp_path):
    """The AVI's packets in Matroska keep their jumping timestamps (test_decode.py): with one-frame
    chunks, the first frames are out before the jump is seen."""
    remuxed = tmp_path / "xvid_packed_b.mkv"
    with av.open(str(AVI)) as src, av.open(str(remuxed), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    frames, restarts, _ = collect(VideoChunks(remuxed, fps=24, size=(32, 24), chunk_frames=1))
    assert restarts == 1
    assert frames.tobytes() == video_to_array(remuxed, fps=24, size=(32, 24)).tobytes()
    assert frames.tobytes() == video_to_array(AVI, fps=24, size=(32, 24)).tobytes()


def test_pyav_failing_mid_file_restarts_with_opencv(lossless, monkeypatch):
    """PyAV raises after 10 converted frames (24 output frames; backend auto): OpenCV decodes the file from frame 0."""
    clip = lossless["mkv"]
    opencv = video_to_array(clip, fps=24, size=None, backend="opencv")
    real, calls = decode_module._to_rgb, []

    def failing_to_rgb(frame, size):
        calls.append(1)
        if len(calls) > 10:
            raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")
        return real(frame, size)

    monkeypatch.setattr(decode_module, "_to_rgb", failing_to_rgb)
    for chunk_frames, expect_restart in ((7, True), (64, False)):
        calls.clear()
        chunks = VideoChunks(clip, fps=24, size=None, chunk_frames=chunk_frames)
        frames, restarts, _ = collect(chunks)
        assert restarts == int(expect_restart) and chunks.backend == "opencv"
        assert frames.tobytes() == opencv.tobytes()
    calls.clear()
    decoded = decode_video(clip, fps=24, size=None)
    assert decoded.backend == "opencv" and decoded.frames.tobytes() == opencv.tobytes()
    calls.clear()
    with pytest.raises(VideoDecodeError, match="Invalid data"):  # backend "pyav": no fallback
        list(VideoChunks(clip, fps=24, size=None, backend="pyav", chunk_frames=7))


def test_restart_is_one_readable_object():
    assert repr(RESTART) == "RESTART"
    assert pickle.loads(pickle.dumps(RESTART)) is RESTART  # across worker processes too


# --- memory and the output cap ---------------------------------------------------------------------


def test_output_cap_is_video_to_array_only(lossless, monkeypatch):
    clip = lossless["mkv"]
    expected = video_to_array(clip, fps=24, size=None)  # 48 frames of 32x24
    monkeypatch.setattr(decode_module, "MAX_OUTPUT_BYTES", 10 * 32 * 24 * 3)  # 10 frames
    with pytest.raises(VideoDecodeError, match="span too long.*max_frames"):
        video_to_array(clip, fps=24, size=None)
    assert video_to_array(clip, fps=24, size=None, max_frames=10).tobytes() == expected[:10].tobytes()
    for chunk_frames in (1, 7, 64):
        frames, _, _ = collect(VideoChunks(clip, fps=24, size=None, chunk_frames=chunk_frames))
        assert frames.tobytes() == expected.tobytes()


def test_a_frame_repeated_for_years_comes_out_in_bounded_chunks(tmp_path):
    """The last frame 10 hours after the others: the chunks stay small and come out at once (the
    caller decides when to stop); video_to_array refuses it after one chunk."""
    source = noise_frames(4)
    clip = write_video(tmp_path / "jump.mkv", source, pts=[0, 1, 2, 24 * 3600 * 10], time_base=Fraction(1, 24))
    chunks = VideoChunks(clip, fps=24, size=(160, 120), chunk_frames=16)  # 50 GB at 160x120 in all
    it = iter(chunks)
    got = [next(it) for _ in range(50)]
    it.close()
    assert all(len(c) == 16 for c in got) and chunks.planned_frames >= 24 * 3600 * 10
    assert all(np.array_equal(c, np.broadcast_to(got[-1][0], c.shape)) for c in got[1:])  # the third frame
    with pytest.raises(VideoDecodeError, match="GiB"):
        video_to_array(clip, fps=24, size=(160, 120))


# --- errors ----------------------------------------------------------------------------------------


def test_errors_come_from_iteration_not_construction(tmp_path):
    chunks = VideoChunks(tmp_path / "absent.mp4")  # nothing opened yet
    with pytest.raises(VideoDecodeError, match="no such file"):
        list(chunks)
    with pytest.raises(VideoDecodeError, match="Invalid data|could not open"):
        list(VideoChunks(SAMPLES / "corrupt_not_a_video.mp4"))


def test_truncation_is_raised_after_chunks_were_handed_out(tmp_path):
    """A copy cut to 30%: PyAV decodes what is there, and only the end says it is short of its header."""
    cut = tmp_path / AVI.name
    cut.write_bytes(AVI.read_bytes()[: int(AVI.stat().st_size * 0.3)])
    got = []
    with pytest.raises(VideoDecodeError, match="truncated") as info:
        for chunk in VideoChunks(cut, fps=24, size=(16, 12), chunk_frames=4):
            got.append(chunk)
    assert got and "\n" not in str(info.value)
    with pytest.raises(VideoDecodeError, match="truncated"):
        video_to_array(cut, fps=24, size=(16, 12))

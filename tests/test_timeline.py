"""The timeline (app/timeline.py): each segment's scores equal those of the same stretch of the video
cut out into a file of its own and classified whole; the whole-video scores of the streaming pass
equal the model on `video_to_array`'s array; the CLI writes timeline.csv / timeline.jsonl, on its
own for long videos and only then. Videos are lossless FFV1 (yuv444p) at the model's 24 fps, so
cutting a file changes no decoded frame."""

import copy
import csv
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from cli_helpers import run_cli

from app.checkpoint import load_checkpoint, save_checkpoint
from app.inference import InferenceOptions, classify, discover_inputs
from app.timeline import segment_bounds, timeline_window
from models import create_model
from preprocessing import video_to_array

FPS, W, H = 24, 16, 12  # 16*12*3 = 576 = 8*8*9


def write_video(path: Path, frames: np.ndarray) -> Path:
    with av.open(str(path), "w", format="avi") as out:  # index timing: exact 24 fps
        stream = out.add_stream("ffv1", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv444p"
        for img in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def moving_frames(seconds: float, seed: int) -> np.ndarray:
    """Content that changes over time (so segments differ): a pattern that pans, then flips."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    n = round(seconds * FPS)
    return np.stack([np.roll(base if t < n // 2 else 255 - base, t, axis=1) for t in range(n)])


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("tt_gru", num_classes=4, in_modes=(8, 8, 9), hidden_modes=(2, 2, 2), ranks=(1, 2, 2, 1))
    path = tmp_path_factory.mktemp("ckpt") / "tt_gru"
    save_checkpoint(path, model, class_names=["a", "b", "c", "d"], input_spec={"kind": "pixels", "size": [W, H], "fps": FPS})
    return load_checkpoint(path)


def scores(ckpt, path, **options) -> dict:
    (p,) = classify(discover_inputs([path]), ckpt, options=InferenceOptions(top_k=4, **options)).predictions
    assert p.ok, p.error
    return p


def as_dict(labels):
    return dict(labels)


@pytest.mark.parametrize("workers,chunk_frames,ring_slots", [(0, 7, None), (1, 64, None), (1, 7, 2)])
def test_each_segment_scores_as_its_own_file(tmp_path, checkpoint, workers, chunk_frames, ring_slots, monkeypatch):
    """In the main process; through a worker; and through a worker whose shared-memory ring has two
    slots, so that each slot is written again and again (the worker waits for the consumer)."""
    if ring_slots is not None:
        import app.decoding

        monkeypatch.setattr(app.decoding, "AHEAD_BYTES", ring_slots * chunk_frames * W * H * 3)
    frames = moving_frames(7.5, seed=1)
    video = write_video(tmp_path / "long.avi", frames)
    p = scores(checkpoint, video, timeline=1.5, timeline_window=2.0, workers=workers, chunk_frames=chunk_frames)
    # 2 s windows every 1.5 s over 7.5 s: starts 0, 1.5, ..., 6.0, the last ones cut at the end
    assert [(s.start, s.end) for s in p.segments] == [(0.0, 2.0), (1.5, 3.5), (3.0, 5.0), (4.5, 6.5), (6.0, 7.5)]
    for s in p.segments:
        cut = write_video(tmp_path / f"cut_{s.start}.avi", frames[round(s.start * FPS) : round(s.end * FPS)])
        alone = scores(checkpoint, cut, timeline=0)
        np.testing.assert_allclose(
            [as_dict(s.labels)[k] for k in "abcd"], [as_dict(alone.labels)[k] for k in "abcd"], atol=1e-5
        )
    # the whole video, from the same streaming pass, is the model on the decoder's whole array
    x = torch.from_numpy(video_to_array(video, fps=FPS, size=(W, H)))[None]
    with torch.inference_mode():
        ref = torch.softmax(checkpoint.model(x, torch.tensor([x.shape[1]])), -1)[0]
    np.testing.assert_allclose([as_dict(p.labels)[k] for k in "abcd"], ref.numpy(), atol=1e-5)
    assert p.frames == x.shape[1] == len(frames)


def test_segments_do_not_all_agree_on_changing_content(tmp_path, checkpoint):
    """A guard on the test above: the two halves of the video differ, so must their scores."""
    video = write_video(tmp_path / "v.avi", moving_frames(8, seed=2))
    p = scores(checkpoint, video, timeline=4.0, timeline_window=4.0, workers=0)
    first, second = (as_dict(s.labels) for s in p.segments)
    assert max(abs(first[k] - second[k]) for k in "abcd") > 1e-3


def test_windowed_models_give_the_same_timeline(tmp_path, checkpoint):
    """Without the stream (padded batches of whole videos) the segments are the same."""
    video = write_video(tmp_path / "v.avi", moving_frames(5, seed=3))
    a = scores(checkpoint, video, timeline=1.0, timeline_window=2.0, workers=0)
    b = scores(checkpoint, video, timeline=1.0, timeline_window=2.0, workers=0, stream=False)
    assert [(s.start, s.end) for s in a.segments] == [(s.start, s.end) for s in b.segments]
    for s, t in zip(a.segments, b.segments):
        np.testing.assert_allclose([v for _, v in s.labels], [v for _, v in t.labels], atol=1e-5)


def test_the_automatic_rule():
    opts = InferenceOptions()
    # 10 s windows: a 20-minute video gets back-to-back segments, a 90-second one none
    assert timeline_window(opts, fps=24, expected_frames=24 * 1200, clip_seconds=None, pixels=True) == (240, 240)
    assert timeline_window(opts, fps=24, expected_frames=24 * 90, clip_seconds=None, pixels=True) is None
    assert timeline_window(opts, fps=24, expected_frames=None, clip_seconds=None, pixels=True) is None
    # the checkpoint's training clips set the window; 1-s clips still need a minute of video
    assert timeline_window(opts, fps=24, expected_frames=24 * 59, clip_seconds=1.0, pixels=True) is None
    assert timeline_window(opts, fps=24, expected_frames=24 * 60, clip_seconds=1.0, pixels=True) == (24, 24)
    assert timeline_window(InferenceOptions(timeline=0), fps=24, expected_frames=10**6, clip_seconds=None, pixels=True) is None
    # feature models: only when asked, back-to-back segments of the stride by default
    assert timeline_window(opts, fps=1, expected_frames=10**4, clip_seconds=None, pixels=False) is None
    assert timeline_window(InferenceOptions(timeline=5), fps=1, expected_frames=300, clip_seconds=None, pixels=False) == (5, 5)
    assert segment_bounds(10, (4, 3)) == [(0, 4), (3, 7), (6, 10), (9, 10)]


def test_the_cli_writes_the_timeline_of_long_videos_only(tmp_path, checkpoint, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    write_video(folder / "long.avi", moving_frames(61, seed=4))  # >= 1 minute and >= 10 windows of 1 s
    write_video(folder / "short.avi", moving_frames(3, seed=5))
    out = tmp_path / "out"
    r = run_cli(capsys, ["classify", str(folder), "--checkpoint", str(checkpoint.path), "--output", str(out),
                         "--timeline-window", "1", "--workers", "0", "--no-progress"])
    assert r.returncode == 0, r.stderr
    (line,) = (out / "timeline.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["path"].endswith("long.avi") and len(record["segments"]) == 61
    assert record["segments"][-1]["start"] == 60.0 and record["segments"][-1]["end"] == 61.0
    rows = list(csv.DictReader((out / "timeline.csv").open()))
    assert len(rows) == 61 * 4 and {r["path"] for r in rows} == {record["path"]}
    top = [r for r in rows if r["rank"] == "1"]
    assert [s["labels"][0]["label"] for s in record["segments"]] == [r["label"] for r in top]
    # asked for explicitly: every video gets one; 0: none, and no timeline files
    r = run_cli(capsys, ["classify", str(folder), "--checkpoint", str(checkpoint.path), "--output", str(out / "x"),
                         "--timeline", "0", "--workers", "0", "--no-progress"])
    assert r.returncode == 0 and not (out / "x" / "timeline.csv").exists()


def test_feature_models_score_segments_of_frame_features(tmp_path):
    """A YouTube-8M frame-level model: `--timeline 5` scores 5-frame (5-second) stretches."""
    torch.manual_seed(0)
    model = create_model("qrnn", num_classes=6, hidden_size=8, num_layers=1).eval()
    ckpt_path = save_checkpoint(tmp_path / "qrnn", model, class_names=list("uvwxyz"),
                                input_spec={"kind": "features", "dims": 1152, "level": "frame"}, multi_label=True)
    x = np.random.default_rng(0).normal(size=(23, 1152)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    ckpt = load_checkpoint(ckpt_path)
    (p,) = classify(discover_inputs([tmp_path / "v.npy"]), ckpt,
                    options=InferenceOptions(top_k=6, timeline=5, workers=0)).predictions
    assert [(s.start, s.end) for s in p.segments] == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    with torch.inference_mode():
        for s in p.segments:
            part = torch.from_numpy(x[int(s.start) : int(s.end)])[None]
            ref = torch.sigmoid(ckpt.model(part, torch.tensor([part.shape[1]])))[0]
            np.testing.assert_allclose([dict(s.labels)[c] for c in "uvwxyz"], ref.numpy(), atol=1e-5)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_decoder_restart_mid_video_starts_the_video_over(tmp_path, checkpoint, workers):
    """Timestamps that go backwards after 80 frames make the decoder start over with index timing
    (RESTART, after chunks were sent): the stream must drop what it ran and take the frames again,
    so the scores, timeline included, are those of `video_to_array`'s frames."""
    from test_decode_chunks import write_backwards

    video = tmp_path / "late_backwards.mkv"
    write_backwards(video)
    p = scores(checkpoint, video, timeline=1.0, timeline_window=1.0, workers=workers, chunk_frames=16)
    x = torch.from_numpy(video_to_array(video, fps=FPS, size=(W, H)))
    assert p.frames == x.shape[0]
    with torch.inference_mode():
        ref = torch.softmax(checkpoint.model(x[None], torch.tensor([x.shape[0]])), -1)[0]
        np.testing.assert_allclose([as_dict(p.labels)[k] for k in "abcd"], ref.numpy(), atol=1e-5)
        for s in p.segments:
            part = x[round(s.start * FPS) : round(s.end * FPS)]
            seg = torch.softmax(checkpoint.model(part[None], torch.tensor([part.shape[0]])), -1)[0]
            np.testing.assert_allclose([as_dict(s.labels)[k] for k in "abcd"], seg.numpy(), atol=1e-5)


def test_long_videos_report_their_progress(tmp_path, checkpoint):
    video = write_video(tmp_path / "v.avi", moving_frames(6, seed=6))
    seen = []
    classify(discover_inputs([video]), checkpoint, options=InferenceOptions(workers=0, chunk_frames=16),
             on_progress=lambda path, done, total: seen.append((path, done, total)))
    assert {path for path, _, _ in seen} == {str(video)}
    done = [d for _, d, _ in seen]
    assert done == sorted(done) and 0 < done[-1] <= 6.0 and len(set(done)) >= 3
    assert {t for _, _, t in seen} == {6.0}  # the header's length


def test_models_that_read_whole_videos_refuse_one_over_the_cap(tmp_path, checkpoint, monkeypatch):
    """Without the stream the frames are held whole: a video over video_to_array's output cap gets one
    error and the others are classified."""
    import preprocessing.decode

    long = write_video(tmp_path / "long.avi", moving_frames(4, seed=7))  # 96 frames
    short = write_video(tmp_path / "short.avi", moving_frames(1, seed=8))  # 24 frames
    monkeypatch.setattr(preprocessing.decode, "MAX_OUTPUT_BYTES", 50 * W * H * 3)
    preds = classify(discover_inputs([long, short]), checkpoint,
                     options=InferenceOptions(workers=0, stream=False, chunk_frames=16)).predictions
    assert [p.ok for p in preds] == [False, True]
    with pytest.raises(preprocessing.decode.VideoDecodeError) as refused:  # video_to_array's own words
        preprocessing.decode.check_output_size(str(long), 64, (W, H))  # refused at the 4th 16-frame chunk
    assert preds[0].error == str(refused.value)


def test_cli_limits_and_leftovers(tmp_path, checkpoint, capsys):
    """Absurd --timeline values are usage errors; a rerun without a timeline removes an old one;
    NaN scores (a broken checkpoint) are null in the JSON files, which stay valid JSON."""
    video = write_video(tmp_path / "v.avi", moving_frames(3, seed=9))
    out = tmp_path / "out"
    base = ["classify", str(video), "--checkpoint", str(checkpoint.path), "--output", str(out), "--workers", "0",
            "--no-progress"]
    for flag, value in (("--timeline", "1e308"), ("--timeline-window", "nan"), ("--timeline", "-1")):
        r = run_cli(capsys, [*base, flag, value])
        assert r.returncode == 2 and "Traceback" not in r.stderr and flag in r.stderr
    assert run_cli(capsys, [*base, "--timeline", "1"]).returncode == 0
    assert (out / "timeline.csv").exists()
    assert run_cli(capsys, [*base, "--timeline", "0"]).returncode == 0
    assert not (out / "timeline.csv").exists() and not (out / "timeline.jsonl").exists()

    model = copy.deepcopy(checkpoint.model)  # the fixture's model is shared
    with torch.no_grad():
        model.classifier.bias[0] = float("nan")
    broken = tmp_path / "broken"
    save_checkpoint(broken, model, class_names=checkpoint.class_names,
                    input_spec=checkpoint.input_spec.to_json())
    run_cli(capsys, ["classify", str(video), "--checkpoint", str(broken), "--output", str(out), "--workers", "0",
                     "--timeline", "1", "--no-progress"])
    for name in ("predictions.jsonl", "timeline.jsonl"):
        for line in (out / name).read_text().splitlines():
            json.loads(line, parse_constant=lambda c, name=name: pytest.fail(f"{name} holds {c}"))

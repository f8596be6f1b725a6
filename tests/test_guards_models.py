"""Guards against independent oracles: cache / inference pixel parity, the bundled demo model's
accuracy on its own test split, QRNN direction, pooling and zoneout, the TT layer entry by entry,
the end of a variable-frame-rate clip, and the VGGish log-mel front end.

Each test computes what the code should give a second way (a plain loop, packet timestamps read
separately, a hand-computed value); tests/robustness/mutants_{models,decode}.py seed the mistakes
these tests must catch."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from app.__main__ import main as app_main
from app.checkpoint import load_checkpoint, read_input_spec
from models import create_model
from models.qrnn import QRNN, QRNNLayer
from models.tt import TTLinear
from preprocessing.cache import load_clip, read_cache
from preprocessing.decode import video_to_array
from preprocessing.features import log_mel_examples

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "data" / "samples"
DEMO_MODEL = REPO / "data" / "models" / "demo_tt_gru"
VFR_SAMPLE = SAMPLES / "moviepy_fire2_vfr_rot180.mp4"


# --- 1. the cache holds exactly the pixels classify decodes ----------------------------------------


# rotation + VFR timestamps, AVI with packed B-frames (index timing), MPEG-1 PS (start time 0.5 s)
PARITY_CLIPS = (
    "moviepy_fire2_vfr_rot180.mp4", "mmaction2_test_xvid_packedB.avi", "ucf11_v_shooting_01_01.mpg",
)


def test_preprocess_cache_equals_video_to_array_byte_for_byte(tmp_path, capsys):
    """`python -m app preprocess --dataset folder` at the bundled model's input format, then each
    cached array against `video_to_array` called separately (what classify's workers call with
    the checkpoint's PixelSpec): same shape, same bytes, and the record's sha256 is that of those bytes."""
    spec = read_input_spec(DEMO_MODEL)
    fps, size = spec.fps, spec.size  # (24.0, (32, 24))
    root, cache = tmp_path / "videos", tmp_path / "cache"
    for i, name in enumerate(PARITY_CLIPS):
        (root / f"class{i}").mkdir(parents=True)
        shutil.copy(SAMPLES / name, root / f"class{i}" / name)
    code = app_main(["preprocess", "--dataset", "folder", "--root", str(root), "--cache", str(cache), "--fps",
                     f"{fps:g}", "--size", f"{size[0]}x{size[1]}", "--workers", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    index = read_cache(cache)
    assert sorted(Path(e.path).name for e in index.entries) == sorted(PARITY_CLIPS)
    for entry in index.entries:
        cached = load_clip(cache, entry, mmap=False)
        fresh = video_to_array(root / entry.path, fps=fps, size=size)  # default threads, as classify
        assert fresh.shape[1:] == (size[1], size[0], 3) and fresh.dtype == np.uint8
        assert cached.shape == fresh.shape, entry.path
        assert cached.tobytes() == fresh.tobytes(), f"{entry.path}: cache and inference pixels differ"
        assert entry.sha256 == hashlib.sha256(fresh.tobytes()).hexdigest()


# --- 2. the bundled demo model on the demo test split ----------------------------------------------


def _demo_test_split(out: Path) -> list[tuple[str, Path]]:
    """The 210 test clips of `make_demo` (default DemoConfig), written as `make_demo` writes them.

    make_demo draws the test scenes from the same generator after the 4,000 training scenes, so the
    generator is replayed through the training scenes and their camera paths (no rendering: only the
    draws matter). Checked once byte for byte against a full `make_demo` run (all 210 files equal);
    a change to make_demo's order of draws must be mirrored here."""
    from data.synthetic import (
        CLASSES,
        SAMPLES_DIR,
        TEST_SOURCES,
        TRAIN_SOURCES,
        DemoConfig,
        camera_path,
        load_footage,
        make_scenes,
        render,
        write_video,
    )

    cfg = DemoConfig()
    rng = np.random.default_rng(cfg.seed)
    clips = []
    width = cfg.canvas_scale * cfg.size[0]
    for split, names, n_scenes in (("train", TRAIN_SOURCES, cfg.train_scenes),
                                   ("test", TEST_SOURCES, cfg.test_scenes)):
        footage = {Path(n).stem: load_footage(SAMPLES_DIR / n, width=width, fps=cfg.fps) for n in names}
        for k, scene in enumerate(make_scenes(footage, n_scenes, cfg, rng)):
            src = footage[scene.source]
            canvas = (src.shape[1], src.shape[2]) if scene.transpose else (src.shape[2], src.shape[1])
            for label in CLASSES:
                path = camera_path(label, scene, canvas, cfg, rng)
                if split == "test":
                    frames = render(src, path, scene, cfg.size, footage_step=cfg.footage_step)
                    file = out / label / f"{scene.source}_{k:04d}.mp4"
                    write_video(file, frames, fps=cfg.fps, codec=cfg.codec, quality=cfg.quality)
                    clips.append((label, file))
    return clips


def test_bundled_demo_model_accuracy_on_the_demo_test_split(tmp_path):
    """README / docs/RESULTS.md: test accuracy 0.976 on the 210 held-out clips (30 scenes x 7 classes
    of a video training never saw). The whole split (~3 s), decoded as preprocess decodes it; the
    floor 0.9 leaves room for codec / CPU differences (each clip is 0.48% of the score)."""
    ckpt = load_checkpoint(DEMO_MODEL)
    fps, size = ckpt.input_spec.fps, ckpt.input_spec.size
    clips = _demo_test_split(tmp_path / "test")
    assert len(clips) == 210
    # (210, 8, H, W, 3), decoded as preprocess decodes them
    x = torch.from_numpy(np.stack([video_to_array(p, fps=fps, size=size) for _, p in clips]))
    y = torch.tensor([ckpt.class_names.index(label) for label, _ in clips])
    with torch.inference_mode():
        pred = ckpt.model.eval()(x, torch.full((len(clips),), x.shape[1])).argmax(1)
    accuracy = (pred == y).double().mean().item()
    assert accuracy >= 0.9, f"bundled demo model: test accuracy {accuracy:.3f} < 0.9 (documented 0.976)"
    assert all((pred[y == c] == c).any() for c in range(len(ckpt.class_names)))  # no class lost entirely


# --- 3. QRNN: backward direction, pooled step, zoneout ---------------------------------------------


def _plain_direction(layer: QRNNLayer, x: torch.Tensor, *, zoneout_eval: float = 0.0) -> torch.Tensor:
    """The paper's equations as a loop over time for ONE sequence x (L, D) -> h (L, H), float64:
    window-k causal gates (oldest tap first, zeros before the start), Z, F, O, I blocks,
    keep = (1 - f) * (1 - zoneout) at evaluation, c_t = (1 - keep) c_{t-1} + keep z (or i z), h = o c."""
    L, D = x.shape
    H, k = layer.hidden_size, layer.window
    W = layer.conv.weight.detach().double().view(-1, k, D)
    b = layer.conv.bias.detach().double()
    c = torch.zeros(H, dtype=torch.float64)
    out = []
    for t in range(L):
        g = b.clone()
        for j in range(k):
            s = t - (k - 1) + j
            if s >= 0:
                g = g + W[:, j] @ x[s].double()
        z, f = torch.tanh(g[:H]), torch.sigmoid(g[H : 2 * H])
        keep = (1 - f) * (1 - zoneout_eval)
        u = torch.sigmoid(g[3 * H :]) * z if layer.pooling == "ifo" else keep * z
        c = (1 - keep) * c + u
        out.append(c if layer.pooling == "f" else torch.sigmoid(g[2 * H : 3 * H]) * c)
    return torch.stack(out)


def test_qrnn_backward_direction_runs_backward_in_time_within_each_length():
    """Oracle: per sequence, the backward layer's plain loop over the REVERSED valid part, reversed
    back; the forward layer's loop over the valid part; zeros in the padding (padding holds junk)."""
    torch.manual_seed(0)
    qrnn = QRNN(3, 4, window=2, bidirectional=True).double().eval()
    lengths = [6, 4, 1]
    x = torch.randn(3, 6, 3, dtype=torch.float64)
    for b, n in enumerate(lengths):
        x[b, n:] = 50 * torch.randn(6 - n, 3)
    with torch.no_grad():
        out = qrnn(x, torch.tensor(lengths))  # (B, T, 2H)
    fwd, bwd = qrnn.layers[0]
    for b, n in enumerate(lengths):
        torch.testing.assert_close(out[b, :n, :4], _plain_direction(fwd, x[b, :n]))
        torch.testing.assert_close(out[b, :n, 4:], _plain_direction(bwd, x[b, :n].flip(0)).flip(0))
        if n < 6:
            assert out[b, n:].abs().max() == 0
    # hand check: at the last true step the backward direction has seen only that step
    with torch.no_grad():
        torch.testing.assert_close(out[1, 3, 4:], _plain_direction(bwd, x[1, 3:4])[0])


@pytest.mark.parametrize("dense", [False, True])
def test_qrnn_last_pooling_takes_backward_channels_at_step_0(dense):
    """pool="last": forward channels at the last true step, backward channels at step 0 (where the
    backward direction ends), input channels (dense) at the last true step. Oracle: the final states
    of the two plain loops (forward over the valid part, backward over it reversed), l2-normalized
    input times sqrt(D) by hand, and the linear head applied by hand."""
    torch.manual_seed(1)
    D, H, K = 5, 3, 4
    model = create_model("qrnn", num_classes=K, input_size=D, hidden_size=H, num_layers=1, window=2,
                         bidirectional=True, dense=dense, pool="last").double().eval()
    x = torch.randn(2, 6, D, dtype=torch.float64)
    lengths = [6, 3]
    with torch.no_grad():
        logits = model(x, torch.tensor(lengths))
    fwd, bwd = model.qrnn.layers[0]
    for b, n in enumerate(lengths):
        xn = x[b, :n] / x[b, :n].norm(dim=-1, keepdim=True) * math.sqrt(D)
        parts = [_plain_direction(fwd, xn)[-1], _plain_direction(bwd, xn.flip(0))[-1]]
        pooled = torch.cat(([xn[-1]] if dense else []) + parts)
        want = model.classifier.weight.detach() @ pooled + model.classifier.bias.detach()
        torch.testing.assert_close(logits[b], want)


def test_qrnn_zoneout_at_evaluation_scales_the_update_by_one_minus_p():
    """p = 0.2 (p and 1 - p differ): evaluation uses the expectation keep = (1 - f) * 0.8 at every
    step. Oracle: the plain loop with that scaling; and the first step's f-pooling by hand."""
    torch.manual_seed(2)
    x = torch.randn(6, 2, 4, dtype=torch.float64)
    for pooling in ("f", "fo"):
        layer = QRNNLayer(4, 5, pooling=pooling, zoneout=0.2).double().eval()
        with torch.no_grad():
            y = layer(x)
        for b in range(2):
            torch.testing.assert_close(y[:, b], _plain_direction(layer, x[:, b], zoneout_eval=0.2))
    with torch.no_grad():  # f-pooling, step 0 from c_{-1} = 0: h = 0.8 (1 - f) z
        g = layer.conv(x[0])
        z, f = torch.tanh(g[:, :5]), torch.sigmoid(g[:, 5:10])
        o = torch.sigmoid(g[:, 10:])
    torch.testing.assert_close(y[0], o * 0.8 * (1 - f) * z)


def test_qrnn_zoneout_in_training_keeps_the_old_state_with_probability_p():
    """Training: each unit's update (1 - f) z survives with probability 1 - p = 0.8, unscaled.
    Oracle: at T = 1 from c0 = 0, h / ((1 - f) z) is the mask itself; its mean over 20,000 units."""
    torch.manual_seed(3)
    layer = QRNNLayer(4, 40, pooling="f", zoneout=0.2).double().train()
    x = torch.randn(1, 500, 4, dtype=torch.float64)
    with torch.no_grad():
        h = layer(x)[0]
        g = layer.conv(x[0])
        update = (1 - torch.sigmoid(g[:, 40:80])) * torch.tanh(g[:, :40])
    m = (h / update)[update.abs() > 1e-6]
    assert torch.all((m - 0).abs().lt(1e-9) | (m - 1).abs().lt(1e-9))  # a mask: 0 or 1, not rescaled
    assert abs(m.mean().item() - 0.8) < 0.02


# --- TT layer: the matrix entry by entry ----------------------------------------------------------


def test_tt_layer_equals_the_matrix_built_entry_by_entry(monkeypatch):
    """W[(j1..jd), (i1..id)] = G1[:, i1, j1, :] @ ... @ Gd[:, id, jd, :], row-major flat indices
    (i1, j1 most significant), built with a loop over every index; the layer is x @ W.T + b for
    every split of the contraction (merge = 1..d); the second shape is one where inference takes the
    two-step path (`_tt_linear_two_steps`) at merge 2 (its size threshold lowered to let it)."""
    monkeypatch.setattr("models.tt._MIN_STEP_MACS", 1)
    for in_modes, out_modes, ranks in [((2, 3, 2), (3, 1, 2), (1, 2, 3, 1)), ((2, 6, 8), (2, 4, 3), (1, 2, 2, 1))]:
        _check_tt_layer_entry_by_entry(in_modes, out_modes, ranks)


def _check_tt_layer_entry_by_entry(in_modes, out_modes, ranks):
    for merge in (1, 2, 3):
        torch.manual_seed(4)
        layer = TTLinear(in_modes=in_modes, out_modes=out_modes, ranks=ranks, merge=merge).double()
        with torch.no_grad():
            for core in layer.cores:
                core.normal_()
            layer.bias.normal_()
        cores = [c.detach() for c in layer.cores]
        W = torch.zeros(math.prod(out_modes), math.prod(in_modes), dtype=torch.float64)
        for i in itertools.product(*map(range, in_modes)):
            for j in itertools.product(*map(range, out_modes)):
                m = torch.eye(1, dtype=torch.float64)
                for core, ik, jk in zip(cores, i, j):
                    m = m @ core[:, ik, jk, :]
                W[np.ravel_multi_index(j, out_modes), np.ravel_multi_index(i, in_modes)] = m[0, 0]
        x = torch.randn(4, math.prod(in_modes), dtype=torch.float64)
        with torch.no_grad():
            torch.testing.assert_close(layer(x), x @ W.T + layer.bias)
            torch.testing.assert_close(layer.dense_weight(), W)


# --- 4. the end of a variable-frame-rate clip -----------------------------------------------------


# frame times (ms) and the durations stored with them: the last frame is shown 500 ms, far from
# 1 / average_rate; 250 ms is exactly output slot 6 at 24 fps (a frame change on a target time)
VFR_PTS_MS = [0, 100, 250, 400, 420, 700]
VFR_DURATIONS_MS = [100, 150, 150, 20, 280, 500]


def _noise(n: int) -> np.ndarray:
    """Frame i is noise seeded by i (equal pixels prove which source frame came out)."""
    return np.stack([np.random.default_rng(i).integers(0, 256, (24, 32, 3), np.uint8) for i in range(n)])


def _write_vfr(path: Path, frames: np.ndarray, pts_ms: list[int], durations_ms: list[int]) -> Path:
    """Lossless clip (ffv1 in mkv, png in mp4) with the given frame times and stored durations."""
    codec = "ffv1" if path.suffix == ".mkv" else "png"
    tb = Fraction(1, 1000)
    duration_of = dict(zip(pts_ms, durations_ms))
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "bgr0" if codec == "ffv1" else "rgb24"
        stream.time_base = stream.codec_context.time_base = tb
        packets = []
        for image, t in zip(frames, pts_ms):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = t, tb
            packets += stream.encode(frame)
        packets += stream.encode()
        for packet in packets:  # intra-only codec: one packet per frame, same pts
            packet.duration = round(duration_of[packet.pts] * tb / packet.time_base)
            container.mux(packet)
    return path


def _packet_times(path: Path) -> tuple[list[Fraction], Fraction, Fraction]:
    """(frame times from the stream start, end = last pts + that packet's duration, 1 / average_rate),
    from the demuxed packets only (nothing decoded)."""
    with av.open(str(path)) as c:
        vs = c.streams.video[0]
        packets = sorted((p.pts, p.duration) for p in c.demux(vs) if p.size)
        tb, rate = vs.time_base, vs.average_rate
    start = packets[0][0]
    times = [Fraction(p - start) * tb for p, _ in packets]
    return times, Fraction(packets[-1][0] - start + packets[-1][1]) * tb, 1 / Fraction(rate)


def _frame_on_screen(times: list[Fraction], end: Fraction, fps: int) -> list[int]:
    """Plain loop: slots k < end * fps; slot k shows the last frame whose time is <= k / fps."""
    slots = range(math.floor(end * fps))
    return [max(i for i, t in enumerate(times) if t <= Fraction(k, fps)) for k in slots]


def _source_ids(output: np.ndarray, source: np.ndarray) -> list[int]:
    return [next((i for i, s in enumerate(source) if np.array_equal(o, s)), -1) for o in output]


@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_vfr_clip_ends_at_its_last_pts_plus_the_stored_duration(tmp_path, suffix):
    """24 fps output of a VFR clip: the count follows last pts + the last packet's duration (1.2 s ->
    28 frames), not 1 / average_rate; every slot holds the frame on screen at k / 24."""
    source = _noise(len(VFR_PTS_MS))
    clip = _write_vfr(tmp_path / f"vfr{suffix}", source, VFR_PTS_MS, VFR_DURATIONS_MS)
    times, end, one_over_rate = _packet_times(clip)
    assert end == Fraction(6, 5)
    assert math.floor((times[-1] + one_over_rate) * 24) != 28  # the clip tells the two rules apart
    out = video_to_array(clip, fps=24, size=None)
    assert len(out) == math.floor(end * 24) == 28
    assert _source_ids(out, source) == _frame_on_screen(times, end, 24)


def test_bundled_vfr_sample_frame_count_follows_its_packet_timestamps():
    """The bundled VFR phone clip: 24 fps output count = floor(24 * (last pts + its duration)), from
    its packets read separately (57 frames)."""
    times, end, _ = _packet_times(VFR_SAMPLE)
    out = video_to_array(VFR_SAMPLE, fps=24, size=(32, 24))
    assert len(out) == math.floor(end * 24) == 57


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="ffprobe not installed")
def test_vfr_end_agrees_with_ffprobe_packets(tmp_path):
    """Same rule with ffprobe as the packet reader (skipped where ffprobe is absent)."""
    clip = _write_vfr(tmp_path / "vfr.mkv", _noise(len(VFR_PTS_MS)), VFR_PTS_MS, VFR_DURATIONS_MS)
    for path in (clip, VFR_SAMPLE):
        probe = subprocess.run(
            [shutil.which("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_entries",
             "packet=pts_time,duration_time", "-of", "json", str(path)],
            capture_output=True, check=True, text=True,
        ).stdout  # fmt: skip
        packets = sorted((Fraction(p["pts_time"]), Fraction(p["duration_time"]))
                         for p in json.loads(probe)["packets"])
        end = packets[-1][0] + packets[-1][1] - packets[0][0]
        assert len(video_to_array(path, fps=24, size=(32, 24))) == math.floor(end * 24)


# --- 5. the VGGish log-mel front end --------------------------------------------------------------


def _vggish_log_mel_reference(wave: np.ndarray) -> np.ndarray:
    """VGGish's documented front end (vggish_params / mel_features.py), written out in float64:
    16 kHz, 25 ms periodic-Hann windows every 10 ms, |rfft| over 512 points, 64 HTK-mel triangles
    from 125 to 7500 Hz (mel = 1127 ln(1 + f / 700); the DC bin unweighted), log(mel + 0.01),
    then non-overlapping examples of 96 frames, frames in time order, bands in the last axis."""
    sr, win, hop, n_fft, bands = 16000, 400, 160, 512, 64
    mel = lambda hz: 1127.0 * math.log(1.0 + hz / 700.0)  # noqa: E731
    edges = [mel(125.0) + (mel(7500.0) - mel(125.0)) * e / (bands + 1) for e in range(bands + 2)]
    n_bins = n_fft // 2 + 1
    weights = np.zeros((n_bins, bands))
    for k in range(1, n_bins):  # bin 0 (DC) keeps weight 0
        m = mel(k * (sr / 2) / (n_bins - 1))
        for b in range(bands):
            lo, mid, hi = edges[b : b + 3]
            weights[k, b] = max(0.0, min((m - lo) / (mid - lo), (hi - m) / (hi - mid)))
    window = np.array([0.5 - 0.5 * math.cos(2 * math.pi * n / win) for n in range(win)])
    frames = []
    for start in range(0, len(wave) - win + 1, hop):
        magnitude = np.abs(np.fft.rfft(wave[start : start + win].astype(np.float64) * window, n=n_fft))
        frames.append(np.log(magnitude @ weights + 0.01))
    E = len(frames) // 96
    return np.array([frames[e * 96 : (e + 1) * 96] for e in range(E)]).reshape(E, 96, bands)


def test_log_mel_examples_match_a_plain_vggish_front_end():
    """A 2.5 s synthetic signal (chirp 200 Hz -> 6 kHz, a 440 Hz tone, seeded noise): 248 frames ->
    2 examples, each value within float32 rounding of the float64 reference."""
    t = np.arange(40000) / 16000
    wave = (0.4 * np.sin(2 * np.pi * (200 * t + (5800 / 5.0) * t**2))
            + 0.2 * np.sin(2 * np.pi * 440 * t) + 0.05 * np.random.default_rng(0).standard_normal(len(t)))
    got = log_mel_examples(wave.astype(np.float32))
    want = _vggish_log_mel_reference(wave.astype(np.float32))
    assert got.shape == want.shape == (2, 96, 64) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_log_mel_framing_of_silence_by_hand():
    """Hand computation: 1 s of silence is 1 + (16000 - 400) // 160 = 98 frames -> one 96-frame
    example, every band log(0 + 0.01); 0.95 s (93 frames) is not a whole example."""
    got = log_mel_examples(np.zeros(16000, np.float32))
    assert got.shape == (1, 96, 64)
    np.testing.assert_allclose(got, np.log(0.01), rtol=0, atol=1e-6)
    assert log_mel_examples(np.zeros(15200, np.float32)).shape == (0, 96, 64)

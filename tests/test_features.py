"""The raw-video -> YouTube-8M feature extractor: clear errors without weights, no pickle, the
Inception/PCA math against a plain reference, the log-mel front end on a pure tone, audio decoding,
and a raw video classified by a feature checkpoint through the CLI. Weights are random (real ones
cannot be downloaded here) but written to disk in the real formats and loaded by the real loader."""

import json
import pickle
import shutil
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import safetensors.torch
import torch
from torchvision.models import inception_v3

from app.__main__ import main
from app.checkpoint import save_checkpoint
from models import create_model
from preprocessing import video_to_array
from preprocessing.features import (
    FILES,
    FeatureExtractorError,
    LogMelConfig,
    VGGish,
    dequantize,
    load_audio,
    load_feature_extractor,
    log_mel_examples,
)


def _clip_with_audio(path: Path, seconds: int = 3, tone_hz: float = 440.0, audio: bool = True) -> None:
    """64x48 video at 8 fps (+ a 16 kHz sine on an AAC track)."""
    with av.open(str(path), "w") as out:
        v = out.add_stream("mpeg4", rate=8)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = out.add_stream("aac", rate=16000, layout="mono") if audio else None
        for t in range(seconds * 8):
            img = np.full((48, 64, 3), (t * 10) % 256, np.uint8)
            for p in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        if a is not None:
            n = 1024
            wave = np.sin(2 * np.pi * tone_hz * np.arange(seconds * 16000) / 16000).astype(np.float32)
            for s in range(0, len(wave), n):
                frame = av.AudioFrame.from_ndarray(wave[None, s : s + n], format="fltp", layout="mono")
                frame.sample_rate, frame.pts, frame.time_base = 16000, s, Fraction(1, 16000)
                for p in a.encode(frame):
                    out.mux(p)
            for p in a.encode(None):
                out.mux(p)
        for p in v.encode():
            out.mux(p)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random weights in the real on-disk formats (Inception ~100 MB, VGGish ~290 MB)."""
    d = tmp_path_factory.mktemp("yt8m_weights")
    torch.manual_seed(0)
    inc = inception_v3(weights=None, aux_logits=True, init_weights=False)
    safetensors.torch.save_file({k: v.contiguous() for k, v in inc.state_dict().items()}, d / FILES["inception"])
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in VGGish().state_dict().items()}
    vgg = {k: torch.randn(s) * (2 / s[1:].numel()) ** 0.5 if len(s) > 1 else torch.zeros(s) for k, s in shapes.items()}
    safetensors.torch.save_file(vgg, d / FILES["vggish"])
    rng = np.random.default_rng(0)
    np.save(d / FILES["pca_mean"], rng.normal(size=2048).astype(np.float32) * 0.1)
    np.save(d / FILES["pca_eigenvecs"], (rng.normal(size=(1024, 2048)) / 45).astype(np.float32))  # transposed: accepted
    np.save(d / FILES["pca_eigenvals"], rng.uniform(0.01, 0.1, size=1024).astype(np.float32))
    np.savez(d / FILES["vggish_pca"], pca_eigen_vectors=(rng.normal(size=(128, 128)) / 11).astype(np.float32),
             pca_means=rng.normal(size=(128, 1)).astype(np.float32))
    yield d, inc.eval()
    shutil.rmtree(d)  # ~400 MB: do not leave it in pytest's kept temp folders


@pytest.fixture(scope="module")
def extractor(weights):
    return load_feature_extractor(weights[0])


def test_missing_weights_fail_with_one_sentence(tmp_path):
    with pytest.raises(FeatureExtractorError) as e:
        load_feature_extractor(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and all(name in msg for name in FILES.values()) and "--feature-weights" not in msg
    assert "cannot be downloaded" in msg
    with pytest.raises(FeatureExtractorError, match="does not exist"):
        load_feature_extractor(tmp_path / "nope")


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_pca_file_is_refused_without_running_code(tmp_path, weights):
    d, _ = weights
    evil = tmp_path / "w"
    evil.mkdir()
    for name in FILES.values():
        (evil / name).symlink_to(d / name)
    (evil / FILES["pca_mean"]).unlink()
    np.save(evil / FILES["pca_mean"], np.array([_Evil(tmp_path / "MARKER")], dtype=object), allow_pickle=True)
    with pytest.raises(FeatureExtractorError, match="not a plain .npy"):
        load_feature_extractor(evil)
    (evil / FILES["vggish"]).unlink()
    (evil / FILES["vggish"]).write_bytes(pickle.dumps(_Evil(tmp_path / "MARKER")))
    (evil / FILES["pca_mean"]).unlink()
    (evil / FILES["pca_mean"]).symlink_to(d / FILES["pca_mean"])
    with pytest.raises(FeatureExtractorError, match="safetensors"):
        load_feature_extractor(evil)
    assert not (tmp_path / "MARKER").exists()


def test_visual_features_match_a_plain_reference(weights, extractor):
    d, inc = weights
    frames = np.random.default_rng(1).integers(0, 256, (1, 299, 299, 3), dtype=np.uint8)
    got = extractor.visual(frames)
    # reference: torchvision model on ImageNet-normalized input, pool features, PCA + whitening in float64
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    inc.fc = torch.nn.Identity()
    with torch.inference_mode():
        pool = inc(x).double().numpy()
    mean = np.load(d / FILES["pca_mean"]).astype(np.float64)
    vecs = np.load(d / FILES["pca_eigenvecs"]).astype(np.float64).T  # stored transposed
    vals = np.load(d / FILES["pca_eigenvals"]).astype(np.float64)
    ref = ((pool - mean) @ vecs) / np.sqrt(vals + 1e-4)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


def test_log_mel_of_a_pure_tone_peaks_at_its_frequency():
    cfg = LogMelConfig()
    wave = np.sin(2 * np.pi * 1000.0 * np.arange(2 * 16000) / 16000).astype(np.float32)
    ex = log_mel_examples(wave, cfg)
    assert ex.shape == (2, 96, 64)
    mel = lambda hz: 1127.0 * np.log1p(hz / 700.0)  # noqa: E731
    centers = np.linspace(mel(cfg.mel_min_hz), mel(cfg.mel_max_hz), cfg.mel_bins + 2)[1:-1]
    peak = int(ex.mean(axis=(0, 1)).argmax())
    assert abs(centers[peak] - mel(1000.0)) < (centers[1] - centers[0])


def test_load_audio(tmp_path):
    _clip_with_audio(tmp_path / "a.mp4")
    wave = load_audio(tmp_path / "a.mp4")
    assert wave.dtype == np.float32 and abs(len(wave) - 3 * 16000) < 2048
    spectrum = np.abs(np.fft.rfft(wave[4000:12000]))
    assert abs(spectrum.argmax() * 16000 / 8000 - 440) < 10  # the tone survives AAC + resampling
    _clip_with_audio(tmp_path / "silent.mp4", audio=False)
    assert load_audio(tmp_path / "silent.mp4").shape == (0,)


@pytest.mark.slow
def test_raw_video_classified_by_a_feature_model(tmp_path, weights, extractor, capsys):
    d, _ = weights
    clip = tmp_path / "clip.mp4"
    _clip_with_audio(clip, seconds=2)
    feats = extractor.extract(video_to_array(clip, fps=1.0, size=(299, 299)), load_audio(clip))
    assert feats.shape == (2, 1152)
    np.testing.assert_allclose(dequantize(np.rint((feats + 2 - 4 / 512) * 255 / 4).astype(np.uint8)), feats, atol=1e-6)

    torch.manual_seed(0)
    model = create_model("frame_logistic", num_classes=6)
    ckpt = save_checkpoint(tmp_path / "fl", model, class_names=list("abcdef"),
                           input_spec={"kind": "features", "dims": 1152, "level": "frame"}, multi_label=True)
    out = tmp_path / "out"
    code = main(["classify", str(clip), "--checkpoint", str(ckpt), "--output", str(out), "--workers", "0",
                 "--feature-weights", str(d), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    row = json.loads((out / "predictions.jsonl").read_text())
    assert row["error"] is None and row["frames"] == 2
    with torch.inference_mode():
        ref = torch.sigmoid(model.eval()(torch.from_numpy(feats)[None], torch.tensor([2])))[0]
    assert row["labels"][0]["label"] == "abcdef"[int(ref.argmax())]
    assert abs(row["labels"][0]["score"] - float(ref.max())) < 1e-5

"""Raw video -> YouTube-8M style features (1024 visual + 128 audio per second), from LOCAL weights.

YouTube-8M (Abu-El-Haija et al. 2016, arXiv:1609.08675, section 3.3) describes every second of video
by the 2048-d pool features of an ImageNet Inception network on one frame, reduced by PCA (with
whitening) to 1024 dims, plus a 128-d VGGish audio embedding (Hershey et al. 2017), PCA'd; both are
quantized to 8 bits. Feature models (QRNN, logistic, ...) are trained on those numbers, so a raw
video must go through the same chain before such a model can classify it.

Nothing can be downloaded here, so every weight comes from a folder given by the user
(`--feature-weights DIR`), and loading fails with one sentence naming what is missing:

    inception_v3.safetensors   torchvision `inception_v3` state dict (aux_logits included, as
                               torchvision ships it); the frame network
    pca_mean.npy               (2048,)        mean subtracted before the projection
    pca_eigenvecs.npy          (2048, 1024)   projection (the (1024, 2048) transpose is accepted)
    pca_eigenvals.npy          (1024,)        whitening: divide by sqrt(eigenvals + 1e-4)
    vggish.safetensors         VGGish state dict in the layout of `VGGish` below (the torch port's)
    vggish_pca_params.npz      `pca_eigen_vectors` (128, 128), `pca_means` (128,) or (128, 1)

The `.npy`/`.npz` files are read with `allow_pickle=False` and the weights with safetensors, so a
weight folder can never run code.

Honest caveat: the dataset used the 2015 TensorFlow Inception graph (inception-2015-12-05), which is
NOT torchvision's `inception_v3` (different training and preprocessing). With torchvision-layout
weights the visual features approximate the dataset's, they do not reproduce them, and a model
trained on real YouTube-8M features will be less accurate on them. A port of the 2015 graph's
weights into torchvision's layout would close the gap; that conversion is not part of this project.

Per second (1 fps): the frame is resized to 299x299 (aspect not kept, as the dataset's extractor
did), scaled to [0, 1] and normalized with ImageNet mean/std (torchvision's convention), run
through Inception to the 2048-d pool, PCA'd, whitened, then quantized to uint8 and dequantized the
way the dataset's reader does, so values sit on the same 8-bit grid as real records. Audio: mono
16 kHz, log-mel patches of 0.96 s (VGGish's front end), embedding, PCA, same quantization. A video
with no audio track gets the audio vector of a zero embedding after PCA and a warning.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

log = logging.getLogger(__name__)

# YouTube-8M stores each feature as one byte: x = q * 4/255 + 4/512 - 2 (docs/DESIGN.md, "YouTube-8M").
_QUANT_SCALE = np.float32(4.0 / 255.0)
_QUANT_BIAS = np.float32(4.0 / 512.0 - 2.0)


def dequantize(q: np.ndarray) -> np.ndarray:
    """uint8 -> float32 in [-2 + 4/512, 2 + 4/512]: `q * 4/255 + 4/512 - 2`."""
    return q.astype(np.float32) * _QUANT_SCALE + _QUANT_BIAS


def quantize(x: np.ndarray) -> np.ndarray:
    """float -> uint8, the inverse of `dequantize` up to rounding (for writing test files)."""
    return np.clip(np.rint((np.asarray(x, np.float32) - _QUANT_BIAS) / _QUANT_SCALE), 0, 255).astype(np.uint8)


FILES = {
    "inception": "inception_v3.safetensors",
    "pca_mean": "pca_mean.npy",
    "pca_eigenvecs": "pca_eigenvecs.npy",
    "pca_eigenvals": "pca_eigenvals.npy",
    "vggish": "vggish.safetensors",
    "vggish_pca": "vggish_pca_params.npz",
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class FeatureExtractorError(Exception):
    """The feature weights are missing or malformed. The message is one sentence."""


# ----------------------------------------------------------------------------- VGGish front end


@dataclass(frozen=True)
class LogMelConfig:
    sample_rate: int = 16000  # Hz; audio is resampled to this
    window_seconds: float = 0.025  # STFT window (400 samples)
    hop_seconds: float = 0.010  # STFT hop (160 samples)
    mel_bins: int = 64  # mel bands
    mel_min_hz: float = 125.0  # lowest band edge
    mel_max_hz: float = 7500.0  # highest band edge
    log_offset: float = 0.01  # log(mel + offset) avoids log(0)
    example_frames: int = 96  # 0.96 s of 10 ms frames per VGGish example (non-overlapping)


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    return 1127.0 * np.log1p(np.asarray(hz, np.float64) / 700.0)  # HTK mel scale, as VGGish


def mel_matrix(cfg: LogMelConfig, num_fft_bins: int) -> np.ndarray:
    """(num_fft_bins, mel_bins) triangular filters on the mel scale; the DC bin gets no weight."""
    nyquist = cfg.sample_rate / 2.0
    bin_mel = _hz_to_mel(np.linspace(0.0, nyquist, num_fft_bins))
    edges = np.linspace(_hz_to_mel(cfg.mel_min_hz), _hz_to_mel(cfg.mel_max_hz), cfg.mel_bins + 2)
    lower, center, upper = edges[:-2], edges[1:-1], edges[2:]
    up = (bin_mel[:, None] - lower) / (center - lower)
    down = (upper - bin_mel[:, None]) / (upper - center)
    weights = np.maximum(0.0, np.minimum(up, down))
    weights[0, :] = 0.0
    return weights.astype(np.float32)


def log_mel_examples(audio: np.ndarray, cfg: LogMelConfig = LogMelConfig()) -> np.ndarray:
    """float32 mono waveform (N,) in [-1, 1] -> float32 (E, 96, 64) log-mel examples of 0.96 s."""
    win = round(cfg.window_seconds * cfg.sample_rate)
    hop = round(cfg.hop_seconds * cfg.sample_rate)
    n_fft = 1 << (win - 1).bit_length()  # 512
    if audio.shape[0] < win:
        return np.zeros((0, cfg.example_frames, cfg.mel_bins), np.float32)
    n_frames = 1 + (audio.shape[0] - win) // hop
    idx = np.arange(win)[None, :] + hop * np.arange(n_frames)[:, None]  # (F, win)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    spec = np.abs(np.fft.rfft(audio[idx] * window, n=n_fft))  # (F, n_fft/2 + 1)
    mel = np.log(spec @ mel_matrix(cfg, spec.shape[1]) + cfg.log_offset).astype(np.float32)  # (F, 64)
    E = mel.shape[0] // cfg.example_frames
    return mel[: E * cfg.example_frames].reshape(E, cfg.example_frames, cfg.mel_bins)  # (E, 96, 64)


class VGGish(nn.Module):
    """VGGish (Hershey et al. 2017): a VGG-like net on (E, 1, 96, 64) log-mel -> (E, 128) embeddings."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out, pool in ((64, True), (128, True), (256, False), (256, True), (512, False), (512, True)):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2, 2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 6 * 4, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, 128),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        E = x.shape[0]
        x = self.features(x)  # (E, 512, 6, 4)
        x = x.permute(0, 2, 3, 1).reshape(E, -1)  # (E, 6*4*512), TensorFlow's NHWC flatten order
        return self.embeddings(x)  # (E, 128)


# ----------------------------------------------------------------------------- audio loading


def load_audio(path: str | os.PathLike, *, sample_rate: int = 16000) -> np.ndarray:
    """The first audio stream as float32 mono (N,) at `sample_rate`; (0,) when there is none."""
    import av

    chunks = []
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == "audio"]
        if not streams:
            return np.zeros(0, np.float32)
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        for frame in container.decode(streams[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):  # flush
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


# ----------------------------------------------------------------------------- the extractor


class FeatureExtractor:
    """Inception + PCA (visual) and VGGish + PCA (audio). `extract(frames, audio) -> (T, 1152)`."""

    fps = 1.0  # one feature vector per second, like the dataset
    size = (299, 299)  # (W, H) Inception input
    sample_rate = 16000

    def __init__(
        self,
        *,
        inception: nn.Module,
        pca_mean: np.ndarray,
        pca_eigenvecs: np.ndarray,
        pca_eigenvals: np.ndarray,
        vggish: nn.Module,
        vggish_pca_vectors: np.ndarray,
        vggish_pca_means: np.ndarray,
        batch_size: int = 16,
    ) -> None:
        self.inception = inception.eval()
        self.vggish = vggish.eval()
        self.pca_mean = pca_mean.astype(np.float32)  # (2048,)
        self.pca_eigenvecs = pca_eigenvecs.astype(np.float32)  # (2048, 1024)
        self.pca_scale = (1.0 / np.sqrt(pca_eigenvals.astype(np.float64) + 1e-4)).astype(
            np.float32
        )  # (1024,)
        self.vggish_pca_vectors = vggish_pca_vectors.astype(np.float32)  # (128, 128)
        self.vggish_pca_means = vggish_pca_means.reshape(-1).astype(np.float32)  # (128,)
        self.batch_size = batch_size
        self.mel = LogMelConfig(sample_rate=self.sample_rate)

    @torch.inference_mode()
    def visual(self, frames: np.ndarray) -> np.ndarray:
        """uint8 (T, 299, 299, 3) RGB -> float32 (T, 1024) whitened PCA features (not quantized)."""
        T, H, W, _ = frames.shape
        assert (W, H) == self.size, f"frames must be {self.size[0]}x{self.size[1]}, got {W}x{H}"
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        pools = []
        for s in range(0, T, self.batch_size):
            x = (
                torch.from_numpy(frames[s : s + self.batch_size]).permute(0, 3, 1, 2).float() / 255.0
            )  # (b, 3, H, W)
            pools.append(self.inception((x - mean) / std).numpy())  # (b, 2048)
        pool = np.concatenate(pools) if pools else np.zeros((0, 2048), np.float32)
        return ((pool - self.pca_mean) @ self.pca_eigenvecs) * self.pca_scale  # (T, 1024)

    @torch.inference_mode()
    def audio(self, waveform: np.ndarray | None) -> np.ndarray:
        """float32 mono 16 kHz (N,) -> float32 (E, 128) PCA'd VGGish embeddings, one per 0.96 s."""
        examples = log_mel_examples(np.zeros(0, np.float32) if waveform is None else waveform, self.mel)
        if examples.shape[0] == 0:
            return np.zeros((0, 128), np.float32)
        emb = self.vggish(torch.from_numpy(examples)[:, None]).numpy()  # (E, 128)
        return (emb - self.vggish_pca_means) @ self.vggish_pca_vectors.T  # (E, 128)

    def extract(self, frames: np.ndarray, waveform: np.ndarray | None) -> np.ndarray:
        """Frames at 1 fps, 299x299 + the waveform -> float32 (T, 1152) on the dataset's 8-bit grid."""
        rgb = self.visual(frames)  # (T, 1024)
        aud = self.audio(waveform)  # (E, 128)
        T = rgb.shape[0]
        if aud.shape[0] == 0:
            log.warning("no audio: using the audio features of a silent embedding")
            aud = np.zeros((T, 128), np.float32)
        elif aud.shape[0] < T:  # the audio ends a little before the last sampled frame
            aud = np.concatenate([aud, np.repeat(aud[-1:], T - aud.shape[0], axis=0)])
        x = np.concatenate([rgb, aud[:T]], axis=1)  # (T, 1152)
        return dequantize(quantize(np.clip(x, -2.0, 2.0)))


def load_feature_extractor(weights_dir: str | os.PathLike) -> FeatureExtractor:
    """Build the extractor from the local files listed in the module docstring."""
    import safetensors
    import safetensors.torch
    from torchvision.models import inception_v3

    d = Path(weights_dir)
    if not d.is_dir():
        raise FeatureExtractorError(f"feature weights folder {d} does not exist; {_HOW}")
    missing = [name for name in FILES.values() if not (d / name).is_file()]
    if missing:
        raise FeatureExtractorError(f"feature weights folder {d} lacks {', '.join(missing)}; {_HOW}")

    def npy(key: str, shape: tuple[int, ...]) -> np.ndarray:
        path = d / FILES[key]
        try:
            a = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise FeatureExtractorError(f"{path} is not a plain .npy array ({e})") from None
        if a.shape != shape and a.T.shape == shape:
            a = a.T
        if a.shape != shape:
            raise FeatureExtractorError(f"{path} has shape {a.shape}, expected {shape}")
        return a

    def weights(key: str, build) -> nn.Module:
        """Build on the meta device (no random init of ~100M parameters), then take the file's tensors."""
        path = d / FILES[key]
        with torch.device("meta"):
            model = build()
        try:
            state = safetensors.torch.load_file(str(path))
        except (OSError, safetensors.SafetensorError) as e:
            raise FeatureExtractorError(f"{path} is not a readable safetensors file ({e})") from None
        result = model.load_state_dict(state, strict=False, assign=True)
        if result.missing_keys or result.unexpected_keys:
            raise FeatureExtractorError(
                f"{path} does not match the expected architecture (missing {result.missing_keys[:3]}, "
                f"unexpected {result.unexpected_keys[:3]})"
            )
        return model

    inception = weights("inception", lambda: inception_v3(weights=None, aux_logits=True, init_weights=False))
    inception.fc = nn.Identity()  # keep the 2048-d pool features
    vggish = weights("vggish", VGGish)
    try:
        with np.load(d / FILES["vggish_pca"], allow_pickle=False) as z:
            vectors, means = np.asarray(z["pca_eigen_vectors"]), np.asarray(z["pca_means"])
    except (OSError, ValueError, KeyError) as e:
        raise FeatureExtractorError(
            f"{d / FILES['vggish_pca']} is not an .npz with pca_eigen_vectors and pca_means ({e})"
        ) from None
    if vectors.shape != (128, 128) or means.size != 128:
        raise FeatureExtractorError(f"{d / FILES['vggish_pca']}: expected (128, 128) vectors and 128 means")
    return FeatureExtractor(
        inception=inception,
        pca_mean=npy("pca_mean", (2048,)),
        pca_eigenvecs=npy("pca_eigenvecs", (2048, 1024)),
        pca_eigenvals=npy("pca_eigenvals", (1024,)),
        vggish=vggish,
        vggish_pca_vectors=vectors,
        vggish_pca_means=means,
    )


_HOW = (
    "put " + ", ".join(FILES.values()) + " there (Inception and VGGish weights converted to "
    "safetensors, the PCA matrices as .npy/.npz; see preprocessing/features.py), since they cannot be "
    "downloaded here"
)

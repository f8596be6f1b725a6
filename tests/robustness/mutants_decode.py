"""Seeded mistakes in decoding, fps sampling, resizing, rotation, the end of VFR clips, the cache's
parity with inference, and the audio features (see tests/robustness/mutations.py; run with
`python -m tests.robustness.mutations -k decode`)."""

from tests.robustness.mutations import Mutation

GUARDS = "tests/test_guards_models.py"

MUTATIONS = (
    Mutation(
        "a forked worker's garbage collector frees the parent's unreachable decoder (and hangs)",
        "preprocessing/workers.py", "    gc.freeze()\n", "",
        ("tests/test_workers.py",),
    ),
    Mutation(
        "fps rule: a frame starting exactly on a slot misses it", "preprocessing/sampling.py",
        "k_end = math.ceil(t_next * self.fps)",
        "k_end = math.floor(t_next * self.fps) + 1",
        (GUARDS, "-k", "vfr_clip_ends"),
    ),
    Mutation(
        "fps rule: output length rounded up", "preprocessing/sampling.py",
        "return max(1, math.floor(end_time * self.fps))",
        "return max(1, math.ceil(end_time * self.fps))",
        (GUARDS, "-k", "vfr"),
    ),
    Mutation(
        "VFR end: last frame lasts 1 / average_rate", "preprocessing/decode.py",
        "duration = Fraction(pending.duration) * tb",
        "duration = 1 / Fraction(rate)",
        (GUARDS, "-k", "vfr_clip_ends"),
    ),
    Mutation(
        "resize with bilinear instead of area", "preprocessing/decode.py",
        'interpolation="AREA"',
        'interpolation="BILINEAR"',
        ("tests/test_decode.py", "-k", "resize_uses_area"),
    ),
    Mutation(
        "rotation applied clockwise", "preprocessing/decode.py",
        "np.rot90(image, k=rotation // 90)",
        "np.rot90(image, k=-rotation // 90)",
        ("tests/test_decode.py", "-k", "rotation_metadata"),
    ),
    Mutation(
        "stream start time not subtracted", "preprocessing/decode.py",
        "t = Fraction(frame.pts - start) * tb",
        "t = Fraction(frame.pts) * tb",
        ("tests/test_decode.py", "-k", "start_offset"),
    ),
    Mutation(
        "cache writes BGR frames", "data/preprocess_job.py",
        "                writer.append(chunk)\n",
        "                writer.append(chunk[..., ::-1].copy())\n",
        (GUARDS, "-k", "preprocess_cache_equals"),
    ),
    Mutation(
        "cache decoded with another backend than inference", "data/preprocess_job.py",
        "backend=task.backend, threads=task.threads",
        'backend="opencv", threads=task.threads',
        (GUARDS, "-k", "preprocess_cache_equals"),
    ),
    Mutation(
        "mel scale with 1000 Hz instead of 700 Hz", "preprocessing/features.py",
        "/ 700.0)",
        "/ 1000.0)",
        (GUARDS, "-k", "log_mel_examples_match"),
    ),
    Mutation(
        "symmetric instead of periodic Hann window", "preprocessing/features.py",
        "np.arange(win) / win)",
        "np.arange(win) / (win - 1))",
        (GUARDS, "-k", "log_mel_examples_match"),
    ),
    Mutation(
        "log-mel examples cut from the transposed spectrogram", "preprocessing/features.py",
        "return mel[: E * cfg.example_frames].reshape(E, cfg.example_frames, cfg.mel_bins)",
        "return mel[: E * cfg.example_frames].T.reshape(E, cfg.example_frames, cfg.mel_bins)",
        (GUARDS, "-k", "log_mel_examples_match"),
    ),
    Mutation(
        "chunks: the last frame held back is dropped when it is alone in its chunk", "preprocessing/decode.py",
        "        if n > excess:\n            yield buf[: n - excess]",
        "        if n > excess + 1:\n            yield buf[: n - excess]",
        ("tests/test_decode_chunks.py", "-k", "lossless_clips_chunks_equal"),
    ),
    Mutation(
        "chunks: RESTART not passed on after frames were handed out", "preprocessing/decode.py",
        "                if yielded:\n                    yield RESTART",
        "                if False:\n                    yield RESTART",
        ("tests/test_decode_chunks.py", "-k", "restart"),
    ),
    Mutation(
        "video_to_array keeps the frames decoded before a RESTART", "preprocessing/decode.py",
        "            parts.clear()\n",
        "            pass\n",
        ("tests/test_decode_chunks.py", "-k", "restart"),
    ),
    Mutation(
        "chunks: a full chunk goes out at once, before the clip's end can cut its last frame",
        "preprocessing/decode.py",
        "                    if n == self.chunk_frames:\n"
        "                        yielded = True\n"
        "                        yield buf\n"
        "                        buf, n = None, 0\n"
        "                    if buf is None:\n"
        "                        buf = np.empty((self.chunk_frames, *image.shape), np.uint8)\n"
        "                    take = min(repeats, self.chunk_frames - n)\n"
        "                    buf[n : n + take] = image\n"
        "                    n, repeats = n + take, repeats - take\n",
        "                    if buf is None:\n"
        "                        buf = np.empty((self.chunk_frames, *image.shape), np.uint8)\n"
        "                    take = min(repeats, self.chunk_frames - n)\n"
        "                    buf[n : n + take] = image\n"
        "                    n, repeats = n + take, repeats - take\n"
        "                    if n == self.chunk_frames:\n"
        "                        yielded = True\n"
        "                        yield buf\n"
        "                        buf, n = None, 0\n",
        ("tests/test_decode_chunks.py", "-k", "chunks_equal"),
    ),
)

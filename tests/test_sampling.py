"""The fps sampling rule (preprocessing/sampling.py) against a plain-loop reference."""

import math
import random
from fractions import Fraction

from preprocessing.sampling import FpsSampler, sample_indices


def reference_indices(times, end_time, fps):
    """The rule as written in docs/DESIGN.md, "Decoding": for each t_k = k / fps, the last frame with time <= t_k."""
    fps = Fraction(fps)
    count = max(1, math.floor(Fraction(end_time) * fps))
    out = []
    for k in range(count):
        on_screen = [i for i, t in enumerate(times) if Fraction(t) <= Fraction(k) / fps]
        out.append(on_screen[-1] if on_screen else 0)
    return out


def test_upsampling_10_to_24_fps_repeats_the_frame_on_screen():
    times = [Fraction(i, 10) for i in range(20)]
    got = sample_indices(times, Fraction(2), 24)
    assert len(got) == 48
    assert got == [k * 10 // 24 for k in range(48)]


def test_downsampling_10_to_5_fps_drops_every_other_frame():
    times = [Fraction(i, 10) for i in range(20)]
    assert sample_indices(times, Fraction(2), 5) == list(range(0, 20, 2))


def test_fps_none_keeps_every_frame():
    assert sample_indices([0, Fraction(1, 3), Fraction(1, 2)], 1, None) == [0, 1, 2]


def test_count_is_floor_of_duration_times_fps():
    # UCF11: 108 frames at 30000/1001 fps -> D = 3.6036 s -> 86 frames at 24 fps (what FFmpeg gives).
    rate = Fraction(30000, 1001)
    times = [i / rate for i in range(108)]
    assert len(sample_indices(times, 108 / rate, 24)) == 86


def test_short_clip_gives_one_frame():
    assert sample_indices([0], Fraction(1, 30), 5) == [0]


def test_matches_reference_on_random_variable_frame_rates():
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 30)
        gaps = [Fraction(rng.randint(0, 90), 1000) for _ in range(n)]
        start = Fraction(rng.randint(0, 50), 1000)  # first frame slightly after t=0
        times = [start + sum(gaps[:i]) for i in range(n)]
        end = times[-1] + Fraction(rng.randint(1, 60), 1000)
        fps = rng.choice([5, 12, 24, Fraction(30000, 1001), 60])
        assert sample_indices(times, end, fps) == reference_indices(times, end, fps), (times, end, fps)


def test_streaming_sampler_hands_out_each_slot_once():
    sampler = FpsSampler(24)
    counts = [sampler.slots_until(Fraction(i, 10)) for i in range(1, 21)]
    assert sum(counts) == sampler.filled == 48
    assert sampler.total(Fraction(2), 20) == 48

"""The fps sampling rule, as pure functions of frame times (see docs/DESIGN.md, "Decoding").

Target times are `t_k = k / fps` for `k = 0 .. floor(D * fps) - 1`, where `D` is the time of the last
frame plus one frame duration (times measured from the stream's start). Output `k` is the frame on
screen at `t_k`: the last frame whose time is <= `t_k` (the first frame where no frame is on screen
yet). Upsampling repeats frames, downsampling drops them. A clip shorter than one output period still
gives one frame, so that every decodable clip yields an array.

Times are exact `Fraction`s: `k / 24` and `i / 10` compare exactly, so which source frame lands in
which slot never depends on float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction


def as_fraction(x: float | int | Fraction) -> Fraction:
    """An exact rate or time: `29.97002997...` becomes 30000/1001, `24.0` becomes 24."""
    return x if isinstance(x, Fraction) else Fraction(x).limit_denominator(1_000_000)


class FpsSampler:
    """The sampling rule applied while frames stream past, one frame behind the decoder.

    Feed frame times in display order; when frame `i + 1` arrives, `slots_until(t_{i+1})` says how
    many output slots frame `i` fills. After the last frame, `total(end_time)` gives the output length
    (the caller trims or pads with the last frame to that length). `fps=None` keeps every frame.
    """

    def __init__(self, fps: float | Fraction | None):
        assert fps is None or fps > 0, f"fps must be positive, got {fps}"
        self.fps = None if fps is None else as_fraction(fps)
        self.filled = 0  # output slots handed out so far (slots 0 .. filled-1)

    def slots_until(self, t_next: Fraction) -> int:
        """Slots the frame on screen just before `t_next` fills: targets `filled <= k` with `t_k < t_next`."""
        if self.fps is None:
            self.filled += 1
            return 1
        k_end = math.ceil(t_next * self.fps)  # number of k >= 0 with k / fps < t_next
        n = max(0, k_end - self.filled)
        self.filled += n
        return n

    def total(self, end_time: Fraction, num_frames: int) -> int:
        """Output length for a clip whose last frame ends at `end_time` (= D) after `num_frames` frames."""
        if self.fps is None:
            return num_frames
        return max(1, math.floor(end_time * self.fps))


def sample_indices(
    times: Sequence[Fraction | float], end_time: Fraction | float, fps: float | Fraction | None
) -> list[int]:
    """Source frame index for each output slot: the reference form of the rule, on a list of times.

    `times` are the display times of the frames in display order (non-decreasing), `end_time` is D.
    """
    assert len(times) > 0, "need at least one frame"
    sampler = FpsSampler(fps)
    out: list[int] = []
    for i in range(1, len(times)):
        out += [i - 1] * sampler.slots_until(as_fraction(times[i]))
    total = sampler.total(as_fraction(end_time), len(times))
    out += [len(times) - 1] * max(0, total - len(out))
    return out[:total]

"""The timeline of a long video: what the model says about each stretch of it.

Semantics (README, "Timeline"): segment j covers frames [j*S, j*S + L) of the frames the model sees,
cut at the video's end, for j = 0, 1, ... while j*S < T; each is scored from a fresh state, so its
scores are those of that stretch classified on its own (as if cut out into its own file). L, the
window, defaults to the length of the model's training clips (`Checkpoint.clip_seconds`; 10 s when
the checkpoint does not record it); S, the stride, is `--timeline SECONDS`. The segments come from
the same streaming pass as the whole-video scores.

`--timeline` unset means automatic: on, with S = L, for a pixel model's videos at least
`AUTO_FACTOR` windows and `AUTO_MIN_SECONDS` long (by the container's header), off otherwise; feature
models (YouTube-8M) get a timeline only when asked, since a 300-frame record is its training clip.
`--timeline 0` turns it off.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from app.inputs import InferenceOptions

DEFAULT_WINDOW_SECONDS = 10.0  # when the checkpoint does not record its training clips' length
AUTO_FACTOR = 10  # automatic timeline: videos at least this many windows long ...
AUTO_MIN_SECONDS = 60.0  # ... and at least this long


@dataclass
class SegmentScores:
    """One timeline segment: seconds [start, end) and its top-k (label, score), best first."""

    start: float
    end: float
    labels: list[tuple[str, float]] = field(default_factory=list)


def window_seconds(options: InferenceOptions, clip_seconds: float | None) -> float:
    """The segment length L in seconds."""
    if options.timeline_window:
        return options.timeline_window
    return clip_seconds or DEFAULT_WINDOW_SECONDS


def timeline_window(
    options: InferenceOptions, *, fps: float, expected_frames: int | None, clip_seconds: float | None, pixels: bool
) -> tuple[int, int] | None:
    """(L, S) in frames for a video of about `expected_frames` frames at `fps`, or None: no timeline."""
    if options.timeline == 0:
        return None
    length = window_seconds(options, clip_seconds)
    if options.timeline is None:  # automatic
        seconds = (expected_frames or 0) / fps
        if not pixels or seconds < max(AUTO_FACTOR * length, AUTO_MIN_SECONDS):
            return None
        stride = length
    else:
        stride = options.timeline
        if not pixels and not options.timeline_window:
            length = stride  # feature models: back-to-back segments of S seconds (YouTube-8M's 5 s)
    return max(1, round(length * fps)), max(1, round(stride * fps))


def segment_bounds(frames: int, window: tuple[int, int]) -> list[tuple[int, int]]:
    """[(start, stop)] frames of each segment of a `frames`-long input (the plain rule above)."""
    length, stride = window
    return [(a, min(a + length, frames)) for a in range(0, frames, stride)]

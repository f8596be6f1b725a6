"""models.stream.ClipStream: videos fed chunk by chunk, several at once, with timeline segments,
against the oracle of each clip (or stretch of frames) run alone through the model's forward."""

from __future__ import annotations

import pytest
import torch

from models.registry import create_model

H, W = 4, 6
D = H * W * 3
CONFIGS = {
    "tt_gru": dict(in_modes=(4, 3, 6), hidden_modes=(2, 2, 2), ranks=(1, 2, 2, 1), num_classes=5),
    "tt_lstm": dict(in_modes=(4, 3, 6), hidden_modes=(2, 2, 2), ranks=(1, 2, 2, 1), num_classes=5),
    "gru": dict(input_size=D, hidden_size=8, num_classes=5),
    "lstm": dict(input_size=D, hidden_size=8, num_classes=5),
}


def make(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, **CONFIGS[name]).eval()


def clip(T: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (T, H, W, 3), dtype=torch.uint8, generator=g)


def alone(model, frames: torch.Tensor) -> torch.Tensor:
    return model(frames[None], torch.tensor([frames.shape[0]]))[0]


def feed_in_chunks(stream, key, frames, chunk):
    for s in range(0, frames.shape[0], chunk):
        stream.feed(key, frames[s : s + chunk])


@pytest.mark.parametrize("name", sorted(CONFIGS))
@torch.inference_mode()
def test_chunked_videos_with_segments_equal_each_stretch_alone(name):
    model = make(name)
    videos = {"a": clip(37, 1), "b": clip(5, 2), "c": clip(23, 3)}
    window = (10, 4)  # segments of 10 frames, one every 4
    stream, done = model.stream(), {}
    for key in videos:
        stream.open(key, window)
    # interleave chunks of different sizes, advancing in between as a classify loop would
    sizes = (3, 7, 1, 16, 5, 40)
    for step, chunk in enumerate(sizes):
        fed = sum(sizes[:step])
        for key, frames in videos.items():
            if fed < frames.shape[0]:
                stream.feed(key, frames[fed : fed + chunk])
                if fed + chunk >= frames.shape[0]:
                    stream.close(key)
        done.update(stream.advance(2 + step))
    done.update(stream.advance())
    assert len(stream) == 0 and sorted(done) == sorted(videos)
    for key, frames in videos.items():
        torch.testing.assert_close(done[key], alone(model, frames), rtol=1e-5, atol=1e-5)
        segments = sorted((s.start, s.stop, s.logits) for s in stream.segments if s.key == key)
        T = frames.shape[0]
        starts = list(range(0, T, window[1]))
        assert [(a, b) for a, b, _ in segments] == [(s, min(s + window[0], T)) for s in starts]
        for a, b, logits in segments:
            torch.testing.assert_close(logits, alone(model, frames[a:b]), rtol=1e-5, atol=1e-5)


@torch.inference_mode()
def test_the_buffer_is_what_has_not_been_run_and_a_dropped_video_leaves_no_trace():
    model = make("tt_gru")
    stream = model.stream()
    stream.open("long")
    stream.open("broken")
    feed_in_chunks(stream, "long", clip(30, 4), 8)
    stream.feed("broken", clip(6, 5))
    assert stream.backlog() == 30
    stream.advance(12)
    assert stream.backlog() == 18 and stream.position("long") == 12 and stream.position("broken") == 6
    stream.drop("broken")  # e.g. the decoder failed after 6 frames
    stream.open("broken")  # ... or restarted it from frame 0
    frames = clip(9, 6)
    stream.add("whole", frames)
    stream.feed("broken", frames)
    stream.close("broken")
    stream.close("long")
    done = dict(stream.advance())
    torch.testing.assert_close(done["broken"], alone(model, frames))
    torch.testing.assert_close(done["whole"], alone(model, frames))
    torch.testing.assert_close(done["long"], alone(model, clip(30, 4)))


@torch.inference_mode()
def test_a_video_waiting_for_frames_does_not_hold_back_the_others():
    model = make("tt_lstm")
    stream = model.stream()
    stream.open("slow")
    stream.feed("slow", clip(3, 7))
    stream.add("fast", clip(20, 8))
    done = dict(stream.advance())  # "slow" has run its 3 frames and waits; "fast" ends
    assert list(done) == ["fast"] and stream.position("slow") == 3
    stream.feed("slow", clip(4, 9))
    stream.close("slow")
    done = dict(stream.advance())
    torch.testing.assert_close(done["slow"], alone(model, torch.cat([clip(3, 7), clip(4, 9)])))

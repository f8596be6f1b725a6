"""Seeded mistakes in classify's input discovery and scoring."""

from tests.robustness.mutations import Mutation

MUTATIONS = (
    Mutation(
        "hidden files are classified", "app/inputs.py",
        "                    if not f.startswith(\".\"):", "                    if True:",
        ("tests/test_classify.py", "-k", "discovery"),
    ),
    Mutation(
        "a file named twice gets two rows", "app/inputs.py",
        "        if key not in seen:\n", "        if True:\n",
        ("tests/test_classify.py", "-k", "discovery"),
    ),
    Mutation(
        "a multi-label checkpoint scored with softmax", "app/inference.py",
        "return torch.sigmoid(logits) if self.ckpt.multi_label else torch.softmax(logits, dim=-1)",
        "return torch.softmax(logits, dim=-1)",
        ("tests/test_classify_yt8m.py", "-k", "kaggle"),
    ),
    Mutation(
        "--max-frames not passed to the decoders", "app/decoding.py",
        "        max_frames=options.max_frames, thumbnails=", "        max_frames=None, thumbnails=",
        ("tests/test_classify.py", "-k", "max_frames"),
    ),
    Mutation(
        "a checkpoint's frame size read as (H, W)", "data/specs.py",
        "return PixelSpec(size=(int(size[0]), int(size[1])), fps=float(fps))",
        "return PixelSpec(size=(int(size[1]), int(size[0])), fps=float(fps))",
        ("tests/test_project.py", "-k", "input_specs"),  # saved and loaded through it, a test model swaps twice
    ),
    Mutation(
        "a timeline segment runs one frame short", "models/stream.py",
        "self._add_row(_Row(v, v.pos, v.pos + v.window[0]))",
        "self._add_row(_Row(v, v.pos, v.pos + v.window[0] - 1))",
        ("tests/test_timeline.py", "-k", "own_file"),
    ),
    Mutation(
        "a video's rows see another video's frames", "models/stream.py",
        "            gx = gx[:, [column[id(self._rows[i].video)] for i in active]]",
        "            gx = gx[:, [0 for i in active]]",
        ("tests/test_stream.py",),
    ),
    Mutation(
        "the video waiting behind a crashed one is lost", "app/decoding.py",
        "        self._todo.extend(reversed(w.assigned))", "        pass",
        ("tests/test_decoder_crash.py",),
    ),
    Mutation(
        "the automatic timeline ignores the video's length", "app/timeline.py",
        "        if not pixels or seconds < max(AUTO_FACTOR * length, AUTO_MIN_SECONDS):",
        "        if not pixels:",
        ("tests/test_timeline.py", "-k", "automatic"),
    ),
    Mutation(
        "a decoder restart keeps the frames run before it", "app/streaming.py",
        "            self.stream.drop(key)\n            self.stream.open(key, live.window)",
        "            pass",
        ("tests/test_timeline.py", "-k", "restart"),
    ),
    Mutation(
        "the main process reads the wrong shared-memory slot", "app/decoding.py",
        "buffer=self.buffer, offset=slot * self.slot_bytes)", "buffer=self.buffer, offset=0)",
        ("tests/test_timeline.py", "-k", "own_file"),
    ),
    Mutation(
        "a model reading whole videos counts only the last chunk against the cap", "app/inference.py",
        "held[ev.index] += len(ev.frames)", "held[ev.index] = len(ev.frames)",
        ("tests/test_timeline.py", "-k", "whole_videos"),
    ),
)

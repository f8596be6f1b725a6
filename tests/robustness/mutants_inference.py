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
        "scores = torch.sigmoid(logits) if self.ckpt.multi_label else torch.softmax(logits, dim=-1)",
        "scores = torch.softmax(logits, dim=-1)",
        ("tests/test_classify_yt8m.py", "-k", "kaggle"),
    ),
    Mutation(
        "--max-frames not passed to the decoders", "app/inputs.py",
        "        max_frames=options.max_frames, thumbnails=", "        max_frames=None, thumbnails=",
        ("tests/test_classify.py", "-k", "max_frames"),
    ),
    Mutation(
        "a checkpoint's frame size read as (H, W)", "data/specs.py",
        "return PixelSpec(size=(int(size[0]), int(size[1])), fps=float(fps))",
        "return PixelSpec(size=(int(size[1]), int(size[0])), fps=float(fps))",
        ("tests/test_project.py", "-k", "input_specs"),  # saved and loaded through it, a test model swaps twice
    ),
)

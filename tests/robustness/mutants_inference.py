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
        "the decoder's fps and size swapped from the checkpoint", "app/inputs.py",
        '    return float(spec["fps"]), (int(spec["size"][0]), int(spec["size"][1]))',
        '    return float(spec["fps"]), (int(spec["size"][1]), int(spec["size"][0]))',
        ("tests/test_classify.py", "-k", "match_the_model"),
    ),
)

"""Seeded mistakes in dataset layouts and splits."""

from tests.robustness.mutations import Mutation

MUTATIONS = (
    Mutation(
        "a batch read in one call leaves its padding unwritten", "data/datasets.py",
        "            x[row, stop - start :] = 0\n", "",
        ("tests/test_datasets.py", "-k", "read_in_one_call"),
    ),
    Mutation(
        "a micro-batch closed one clip early (at the budget, not above it)", "data/datasets.py",
        "if part and (len(part) + 1) * int(lengths[part[0]]) > batch_frames:",
        "if part and (len(part) + 1) * int(lengths[part[0]]) >= batch_frames:",
        ("tests/test_datasets.py", "-k", "split_by_frames"),
    ),
    Mutation(
        "evaluation batches ignore the frame budget", "data/datasets.py",
        "full = len(batch) == batch_size or (batch_frames > 0 and",
        "full = len(batch) == batch_size or (batch_frames < 0 and",
        ("tests/test_datasets.py", "-k", "eval_batches"),
    ),
    Mutation(
        "clips dealt to folds one by one (a group lands in two folds)", "data/datasets.py",
        "    fold = np.array([fold_of_group[g] for g in groups])",
        "    fold = np.arange(len(groups)) % num_folds",
        ("tests/test_datasets.py", "-k", "group_folds"),
    ),
    Mutation(
        "validation carved without regard to groups", "data/datasets.py",
        "        if groups is not None:\n            class_groups", "        if False:\n            class_groups",
        ("tests/test_datasets.py", "-k", "carve_validation"),
    ),
    Mutation(
        "folder label taken from the split folder", "data/layouts.py",
        "            label_depth = 2 if split else 1", "            label_depth = 1",
        ("tests/test_layouts.py", "-k", "folder_labels"),
    ),
    Mutation(
        "authors' folds drawn with another generator", "data/datasets.py",
        "    shuffled = np.random.RandomState(seed).choice(range(n), n, False)",
        "    shuffled = np.random.default_rng(seed).permutation(n)",
        ("tests/test_datasets.py", "-k", "authors_folds"),
    ),
    Mutation(
        "plain numbered files taken as one source group", "data/layouts.py",
        "        usable = bool(labels) and all(matches) and len(counts) >= 2",
        "        usable = bool(labels) and any(matches) and len(counts) >= 2",
        ("tests/test_layouts.py", "-k", "ucf_style"),
    ),
    Mutation(
        "fit resumes a run folder whose videos changed", "app/commands/fit.py",
        "    if listed.is_file() and listed.read_text(encoding=\"utf-8\") != videos:",
        "    if False:",
        ("tests/test_fit.py", "-k", "resumes"),
    ),
    Mutation(
        "padded batches (pad_collate's, the YouTube-8M reader's) leave the padding unwritten", "data/batch.py",
        "        rows[i, x.shape[0] :] = 0\n",
        "",
        ("tests/test_yt8m_reader.py", "-k", "batches_made"),
    ),
    Mutation(
        "YouTube-8M batches made in the reader give every label to the first video", "data/yt8m.py",
        "rows = np.repeat(np.arange(len(records)), [len(r.labels) for r in records])",
        "rows = np.zeros(sum(len(r.labels) for r in records), np.int64)",
        ("tests/test_yt8m_reader.py", "-k", "batches_made"),
    ),
)

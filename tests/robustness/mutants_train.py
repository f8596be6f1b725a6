"""Seeded mistakes in the training objective, schedule, resume and DDP paths (app/train.py) and the
tests that catch them (tests/test_guards_train.py)."""

from __future__ import annotations

from tests.robustness.mutations import Mutation

FILE = "app/train.py"
GUARDS = "tests/test_guards_train.py"

MUTATIONS = (
    Mutation(
        "each micro-batch's loss taken as a whole batch's (accumulated gradients too large)", FILE,
        "loss = loss_fn(logits, y, multi_label) * (sizes[k] / total)", "loss = loss_fn(logits, y, multi_label)",
        ("tests/test_train.py", "-k", "micro_batches"),
    ),
    Mutation(
        "the L2 penalty added once per micro-batch", FILE,
        "            if last and l2_weights:", "            if l2_weights:",
        ("tests/test_train.py", "-k", "micro_batches"),
    ),
    Mutation(
        "a resume state saved before data_seconds existed is taken as it is (no sum started)", FILE,
        "st.sums = {**_zero_sums(), **st.sums}", "st.sums = dict(st.sums)",
        ("tests/test_train.py", "-k", "before_data_seconds"),
    ),
    Mutation(
        "softmax cross-entropy instead of BCE for multi-label", FILE,
        "return F.binary_cross_entropy_with_logits(logits, y.float())",
        "return F.cross_entropy(logits, y.float())",
        (GUARDS, "-k", "loss_fn"),
    ),
    Mutation(
        "L2 penalty averaged over the weights instead of summed", FILE,
        "l2 * sum((w * w).sum() for w in l2_weights)", "l2 * sum((w * w).mean() for w in l2_weights)",
        (GUARDS, "-k", "l2_penalty"),
    ),
    Mutation(
        "L2 penalty covers the classifier biases too", FILE,
        'return [p for name, p in head.named_parameters() if name.endswith("weight")]',
        "return [p for name, p in head.named_parameters()]",
        (GUARDS, "-k", "l2_penalty"),
    ),
    Mutation(
        "the engine passes the learning rate as the L2 factor", FILE,
        "l2=tc.l2, l2_weights=run.l2_weights", "l2=tc.lr, l2_weights=run.l2_weights",
        (GUARDS, "-k", "l2_from_config"),
    ),
    Mutation(
        "gradients clipped by value instead of by global norm", FILE,
        "nn.utils.clip_grad_norm_(model.parameters(), grad_clip)",
        "nn.utils.clip_grad_value_(model.parameters(), grad_clip)",
        (GUARDS, "-k", "gradient_clipping"),
    ),
    Mutation(
        "early stopping one epoch late (> patience)", FILE,
        "return self.epoch >= tc.epochs or bool(tc.patience and self.bad_epochs >= tc.patience)",
        "return self.epoch >= tc.epochs or bool(tc.patience and self.bad_epochs > tc.patience)",
        (GUARDS, "-k", "early_stopping"),
    ),
    Mutation(
        "an equal validation score counts as an improvement", FILE,
        "(current > best if run.higher_better else current < best)",
        "(current >= best if run.higher_better else current <= best)",
        (GUARDS, "-k", "early_stopping"),
    ),
    Mutation(
        "LR decays smoothly every step instead of in a staircase", FILE,
        "return decay ** ((step * batch_examples) // every_examples)",
        "return decay ** (step * batch_examples / every_examples)",
        (GUARDS, "-k", "staircase"),
    ),
    Mutation(
        "LR staircase counts the current batch as seen (off by one step)", FILE,
        "return decay ** ((step * batch_examples) // every_examples)",
        "return decay ** (((step + 1) * batch_examples) // every_examples)",
        (GUARDS, "-k", "staircase"),
    ),
    Mutation(
        "LR scheduler state not restored on resume", FILE,
        '    run.scheduler.load_state_dict(saved["scheduler"])\n', "",
        (GUARDS, "-k", "resume_mid_epoch_continues"),
    ),
    Mutation(
        "YouTube-8M resume replays one batch too few", FILE,
        "for _ in range(st.batch):", "for _ in range(st.batch - 1):",
        (GUARDS, "-k", "yt8m_mid_epoch_resume"),
    ),
    Mutation(
        "under DDP the LR staircase counts one rank's batch only", FILE,
        "batch_examples = cfg.data.batch_size * dist_info.world", "batch_examples = cfg.data.batch_size",
        (GUARDS, "-k", "two_process_ddp"),
    ),
    Mutation(
        "DDP ranks all step through every batch (sampler not sharded by rank)", FILE,
        "rank=dist_info.rank, num_replicas=dist_info.world, batch_frames=cfg.data.batch_frames,",
        "rank=0, num_replicas=1, batch_frames=cfg.data.batch_frames,",
        (GUARDS, "-k", "two_process_ddp"),
    ),
    Mutation(
        "--precision bf16 ignored (autocast never enabled)", "app/precision.py",
        'enabled=precision == "bf16")', "enabled=False)",
        ("tests/test_precision.py", "-k", "forward_is_close"),
    ),
    Mutation(
        "under autocast the recurrent state drops to bfloat16", "models/pixels.py",
        "    return torch.float32 if low and torch.is_autocast_enabled(gx.device.type) else gx.dtype",
        "    return gx.dtype",
        ("tests/test_precision.py", "-k", "forward_is_close"),
    ),
    Mutation(
        "the fused GRU backward forgets the recurrent dropout mask", "models/gru_recurrence.py",
        "        if mask is not None:\n            dhd.mul_(mask[:n])", "        pass",
        ("tests/test_gru_recurrence.py",),
    ),
    Mutation(
        "the fused GRU backward skips the path through z * h", "models/gru_recurrence.py",
        "torch.addcmul(dhd, g, z[a:b], out=g)", "g.copy_(dhd)",
        ("tests/test_gru_recurrence.py",),
    ),
    Mutation(
        "bench_train reads the in-memory YouTube-8M epoch in another epoch's order", "scripts/bench_train.py",
        "    epoch_zero(0)\n    if streamed:",
        "    epoch_zero(1)\n    if streamed:",
        ("tests/test_yt8m_reader.py", "-k", "bench_train"),
    ),
    Mutation(
        "the tuning script's soft targets add the teacher / class frequency unweighted", "scripts/train_yt8m_quick.py",
        "return y if w <= 0 else (1 - w) * y + w * q", "return y if w <= 0 else (1 - w) * y + q",
        ("tests/test_train_yt8m_quick.py", "-k", "label_smoothing"),
    ),
    Mutation(
        "the tuning script's AdamW decays the biases too", "scripts/train_yt8m_quick.py",
        '{"params": rest, "weight_decay": 0.0}', '{"params": rest, "weight_decay": weight_decay}',
        ("tests/test_train_yt8m_quick.py", "-k", "weight_decay"),
    ),
    Mutation(
        "learning-curve subsets drawn with a seed that depends on their size (not nested)", "scripts/train_yt8m_quick.py",
        "np.random.default_rng(1234).permutation(total)[:n]", "np.random.default_rng(n).permutation(total)[:n]",
        ("tests/test_train_yt8m_quick.py", "-k", "nested"),
    ),
    Mutation(
        "train.class_priors is read but never applied", FILE,
        "    if tc.class_priors:  # a resumed run's saved weights replace these", "    if False:",
        (GUARDS, "-k", "class_priors"),
    ),
    Mutation(
        "class priors floored at 1 / N: a class no video carries is as likely as one that one video carries", FILE,
        "floor=1.0 / (n + 1))", "floor=1.0 / n)",
        (GUARDS, "-k", "class_priors"),
    ),
)

"""vidclass application: the CLI (`python -m app ...`), training engine, checkpoints, metrics,
the batch inference entrypoint, reports and plots."""

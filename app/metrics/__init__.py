"""Evaluation metrics: `app.metrics.yt8m` (YouTube-8M) and `app.metrics.classification`."""

"""Runnable scripts: reproduction recipes and benchmarks (`python -m scripts.<name>`)."""

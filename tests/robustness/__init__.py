"""The reliability suite: damaged inputs derived from the real sample clips, a watchdog that runs each
one in a separate process, and the tests and report built on them (docs/RELIABILITY.md).

    corpus.py      build_corpus(out_dir, seed=0): >= 200 damaged or unusual inputs, each with what
                   the decoder must do with it (return frames, refuse it, or either)
    watchdog.py    run_cases(...): every input in a worker process with a per-input time limit, so a
                   decoder hang or crash is a finding, not a stuck or dead test run
    run.py         python -m tests.robustness.run: build, decode, classify, print the figures
"""

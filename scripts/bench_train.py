"""Time one training epoch of TT-GRU and GRU on the cached demo set, with the real data pipeline
(memory-mapped cache -> DataLoader workers -> length buckets -> padding) and with the same batches
already in memory, to show the data-loading overhead of the pipeline.

    python -m scripts.bench_train [--cache cache/demo] [--configs A.toml B.toml] [--repeats 3]
    python -m scripts.bench_train --configs app/configs/yt8m_video_{logistic,moe,qrnn}.toml --repeats 1

YouTube-8M configs stream their TFRecords (parse, multi-hot labels, collate in the loader workers);
their in-memory variant is the same epoch's batches read once beforehand (--max-clips does not
apply: the config's train_files are the epoch).

Without a cache at --cache, the demo set is generated and preprocessed into a temporary folder first.
Both variants run the same optimizer steps (app.train.train_step) on the same batches in the same
order from the same initial weights; each is timed `--repeats` times, alternating, and the median
is reported, after one untimed warm-up epoch of each (it starts the persistent DataLoader workers).
The overhead is (loader epoch - in-memory epoch) / loader epoch. Timings on a shared
machine are noisy: read the ratios, measured side by side in one run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, IterableDataset

from app.__main__ import main as app_main
from app.config import load_config
from app.train import Dist, build_model, classifier_weights, train_loader, train_step
from data.batch import pad_collate
from data.datasets import build_datasets


def _epoch(model, batches, cfg, multi_label: bool) -> float:
    """Seconds for one pass of optimizer steps over `batches` (an iterable of Batch)."""
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.train.lr)
    l2_weights = classifier_weights(model)
    model.train()
    t0 = time.perf_counter()
    for batch in batches:
        train_step(model, batch, optimizer, None, l2=cfg.train.l2, l2_weights=l2_weights,
                   grad_clip=cfg.train.grad_clip, multi_label=multi_label, device=torch.device("cpu"))
    return time.perf_counter() - t0


def bench(config: str, cache: str, repeats: int, workers: int | None, max_clips: int) -> dict:
    cfg = load_config(config, [f"--data.cache={cache}"])
    if workers is not None:
        cfg = cfg.replace("data", workers=workers)
    data = build_datasets(cfg.data, seed=cfg.train.seed)
    streamed = isinstance(data.train, IterableDataset)  # YouTube-8M's TFRecords
    if max_clips and not streamed and len(data.train) > max_clips:  # an evenly spaced share of the split
        step = len(data.train) // max_clips
        data.train.entries = data.train.entries[::step][:max_clips]
    torch.manual_seed(cfg.train.seed)
    init = build_model(cfg, num_classes=len(data.class_names), input_spec=data.input_spec)
    state = {k: v.clone() for k, v in init.state_dict().items()}
    loader, sampler = train_loader(data.train, cfg, seed=cfg.train.seed, dist_info=Dist(), pin=False)
    epoch_zero = (data.train if streamed else sampler).set_epoch
    epoch_zero(0)
    if streamed:  # the same batches in the same order: one consumer reads the shards alike in or out of a worker
        in_memory = list(DataLoader(data.train, batch_size=cfg.data.batch_size, collate_fn=pad_collate))
        epoch_zero(0)
        assert [b.ids for b in loader] == [b.ids for b in in_memory], "the loader's batches differ from the in-memory ones"
    else:
        in_memory = [pad_collate([data.train[key] for key in keys]) for keys in sampler]
    loader_times, memory_times = [], []
    for batches in (loader, in_memory):  # warm-up: start the (persistent) workers, touch the cache pages
        epoch_zero(0)
        init.load_state_dict(state)
        _epoch(init, batches, cfg, data.multi_label)
    for _ in range(repeats):
        for variant, times in (("loader", loader_times), ("memory", memory_times)):
            init.load_state_dict(state)
            epoch_zero(0)
            times.append(_epoch(init, loader if variant == "loader" else in_memory, cfg, data.multi_label))
    t_loader, t_memory = statistics.median(loader_times), statistics.median(memory_times)
    clips = sum(b.x.shape[0] for b in in_memory)
    return {
        "model": cfg.model.name, "clips": clips, "batches": len(in_memory), "workers": cfg.data.workers,
        "loader_s": t_loader, "memory_s": t_memory, "overhead": (t_loader - t_memory) / t_loader,
        "clips_per_s": clips / t_loader, "memory_clips_per_s": clips / t_memory,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["app/configs/demo_tt_gru.toml", "app/configs/demo_gru.toml"],
                   help="experiment configs to time (default: the demo TT-GRU and GRU)")
    p.add_argument("--cache", default="cache/demo", help="demo cache (built in a temp folder if missing)")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs per variant (median reported)")
    p.add_argument("--workers", type=int, help="DataLoader workers (default: the config's)")
    p.add_argument("--max-clips", type=int, default=5000, help="clips in the timed epoch (0: the whole split)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = Path(args.cache)
    tmp = None
    needs_cache = any(load_config(c).data.dataset != "yt8m" for c in args.configs)
    if needs_cache and not (cache / "cache.json").is_file():
        tmp = tempfile.TemporaryDirectory(prefix="bench_train_")
        cfg = load_config(args.configs[0])
        demo, cache = Path(tmp.name) / "demo", Path(tmp.name) / "cache"
        W, H = cfg.data.size
        print(f"no cache at {args.cache}: generating the demo set in {tmp.name}", flush=True)
        assert app_main(["make-demo", "--out", str(demo), "--size", f"{W}x{H}", "--train-scenes", "800"]) == 0
        assert app_main(["preprocess", "--dataset", "folder", "--root", str(demo), "--cache", str(cache),
                         "--fps", f"{cfg.data.fps:g}", "--size", f"{W}x{H}", "--workers", "2",
                         "--no-progress"]) == 0
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, cache {cache}")
    print("| model | train clips | batches | workers | epoch, DataLoader (s) | epoch, in memory (s) | "
          "loading overhead | clips/s | clips/s, in memory |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for config in args.configs:
        r = bench(config, str(cache), args.repeats, args.workers, args.max_clips)
        print(f"| {r['model']} | {r['clips']} | {r['batches']} | {r['workers']} | {r['loader_s']:.2f} | "
              f"{r['memory_s']:.2f} | {100 * r['overhead']:.1f}% | {r['clips_per_s']:.0f} | "
              f"{r['memory_clips_per_s']:.0f} |", flush=True)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Export a checkpoint to ONNX or TorchScript for deployment (see app/export.py for the I/O contract).

    python -m app export --checkpoint CKPT --format onnx|torchscript [--output PATH] [--max-frames T]

The exported graph takes a fixed number of steps T (zero-pad shorter clips and pass their lengths)
and any batch size; it is verified against the eager model before it is written. A JSON sidecar
`PATH.json` holds class names, input spec and shapes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True, help="checkpoint: NAME.json / NAME.safetensors / run folder")
    p.add_argument("--format", required=True, choices=["onnx", "torchscript"], help="export format")
    p.add_argument("--output", default=None, help="output file (default: beside the checkpoint)")
    p.add_argument("--max-frames", type=int, default=None,
                   help="time steps of the exported graph (default: 10 s at the checkpoint's fps; 300 / 1 for "
                        "frame- / video-level YouTube-8M models)")


def run(args: argparse.Namespace) -> int:
    from app.checkpoint import CheckpointError, describe_size, load_checkpoint
    from app.export import SUFFIX, ExportError, default_max_frames, export_checkpoint

    if args.max_frames is not None and args.max_frames < 1:
        raise UsageError(f"--max-frames must be at least 1, got {args.max_frames}")
    try:
        ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as e:
        raise UsageError(" ".join(str(e).split())) from None
    output = Path(args.output) if args.output else ckpt.path.with_suffix(SUFFIX[args.format])
    steps = args.max_frames or default_max_frames(ckpt)
    try:
        path = export_checkpoint(ckpt, output, fmt=args.format, max_frames=steps)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"exported {ckpt.model_name} to {path} ({args.format}, {steps} steps, any batch size, "
          f"{describe_size(Path(path).stat().st_size)}); sidecar {path}.json")
    return 0

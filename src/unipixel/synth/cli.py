"""``unipixel synth``: write a synthetic train/val/test split (``main(argv) -> int``, wired by unipixel.cli).

Example::

    unipixel synth --seed 0 --split test --out data/synth/test
    unipixel synth --seed 0 --split train --out data/synth/train --num-images 20000 --num-videos 10000 --workers 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from . import DEFAULT_COUNTS, SPLITS, SynthOptions, generate_split


def build_parser(prog: str = "unipixel synth") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description="Generate a deterministic synthetic UniPixel split "
        "(all tasks, images and videos, reference dataset formats + samples.jsonl).",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (mixed with the split name)")
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument("--out", required=True, help="output directory (created; existing files are overwritten)")
    defaults = ", ".join(f"{k}: {v[0]}/{v[1]}" for k, v in DEFAULT_COUNTS.items())
    p.add_argument(
        "--num-images", type=int, default=None, help=f"image scenes (default per split: {defaults})"
    )
    p.add_argument("--num-videos", type=int, default=None, help="video scenes (default per split, see above)")
    p.add_argument("--width", type=int, default=112)
    p.add_argument("--height", type=int, default=112)
    p.add_argument("--min-objects", type=int, default=1)
    p.add_argument("--max-objects", type=int, default=4)
    p.add_argument("--min-frames", type=int, default=8)
    p.add_argument("--max-frames", type=int, default=16)
    p.add_argument(
        "--frame-format",
        choices=("png", "jpg"),
        default="png",
        help="png: lossless; jpg: the reference readers' '{frame}.jpg' paths",
    )
    p.add_argument("--workers", type=int, default=1, help="processes (output does not depend on it)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not (1 <= args.min_objects <= args.max_objects):
        print("error: need 1 <= --min-objects <= --max-objects", file=sys.stderr)
        return 2
    if not (2 <= args.min_frames <= args.max_frames):
        print("error: need 2 <= --min-frames <= --max-frames", file=sys.stderr)
        return 2
    if min(args.width, args.height) < 48:
        print("error: frames must be at least 48x48 pixels", file=sys.stderr)
        return 2
    opts = SynthOptions(
        seed=args.seed,
        split=args.split,
        num_images=args.num_images,
        num_videos=args.num_videos,
        width=args.width,
        height=args.height,
        min_objects=args.min_objects,
        max_objects=args.max_objects,
        min_frames=args.min_frames,
        max_frames=args.max_frames,
        frame_format=args.frame_format,
    )
    t0 = time.perf_counter()
    manifest = generate_split(opts, args.out, workers=args.workers)
    c = manifest["counts"]
    print(
        f"wrote {c['samples']} samples ({c['images']} images, {c['videos']} videos) to {args.out} "
        f"in {time.perf_counter() - t0:.1f}s"
    )
    print(json.dumps(c["per_task"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

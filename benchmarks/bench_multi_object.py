"""Benchmark: segmenting 3 objects vs 1 object vs 3 separate one-object runs (tiny checkpoint, 8-frame video).

UniPixel's design encodes each frame once per request and propagates all objects together; the reference
re-encodes every frame for every ``<|seg|>`` and tracks objects one at a time. This script measures, on the
golden tiny checkpoint and an 8-frame clip, the median wall time of

* the full model forward (LLM + SAM 2) with 1 and with 3 ``<|seg|>`` tokens, and 3 separate 1-object forwards;
* the SAM 2 stage alone: encode + batched track of 3 objects, of 1 object, and 3 × (encode + track 1 object)
  (the reference's cost model),

and prints the ratios (target: 3 objects ≤ 1.3 × 1 object). It is a benchmark, not a test.

    python benchmarks/bench_multi_object.py [--fixture tests/data/golden] [--repeats 7] [--frames 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

from unipixel import UniPixelForConditionalGeneration
from unipixel.media import load_media
from unipixel.processing import UniPixelProcessor
from unipixel.sam2.tracker import Sam2Tracker


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fixture", default=str(Path(__file__).resolve().parents[1] / "tests" / "data" / "golden"))
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.fixture)
    manifest = json.loads((root / "golden.json").read_text())
    ckpt = next(p.parent for p in root.glob("*/config.json"))
    model = UniPixelForConditionalGeneration.from_pretrained(ckpt, sam2_config_dirs=[root / "sam2_configs"]).eval()
    proc = UniPixelProcessor.from_pretrained(ckpt)
    base = load_file(str(root / "inputs_video_T4.safetensors"))["frames_uint8"].numpy()
    reps = -(-args.frames // base.shape[0])
    frames = np.concatenate([base if i % 2 == 0 else base[::-1] for i in range(reps)])[: args.frames]
    media = load_media(frames)
    size = model.config.sam2_image_size
    cfg = manifest["config"]

    def prepared(n: int) -> dict:
        response = " ".join(f"[{i}] <|seg|>" for i in range(n))
        return proc.prepare(
            media, "Please segment the objects.", response=response, min_pixels=cfg["min_pixels"],
            max_pixels=cfg["max_pixels"], sam2_image_size=size,
        ).model_kwargs

    one, three = prepared(1), prepared(3)

    @torch.inference_mode()
    def forward(kw: dict) -> None:
        out = model(**kw)
        _ = out.tracks[0].binary_masks  # materialise the full-resolution masks, as a user would

    e2e_1 = median_time(lambda: forward(one), args.repeats)
    e2e_3 = median_time(lambda: forward(three), args.repeats)
    e2e_sep = median_time(lambda: [forward(one) for _ in range(3)], args.repeats)

    tracker = Sam2Tracker(model.sam2)
    sam_frames = one["sam2_frames"][0]
    frame_size = one["frame_size"][0]
    with torch.inference_mode():
        hidden3 = model(**three).seg_queries

    @torch.inference_mode()
    def sam(n: int, separate: bool = False) -> None:
        if separate:
            for i in range(n):
                feats = tracker.encode_frames(sam_frames)
                _ = tracker.track(feats, hidden3[i : i + 1], frame_size).binary_masks
        else:
            feats = tracker.encode_frames(sam_frames)
            _ = tracker.track(feats, hidden3[:n], frame_size).binary_masks

    sam_1 = median_time(lambda: sam(1), args.repeats)
    sam_3 = median_time(lambda: sam(3), args.repeats)
    sam_sep = median_time(lambda: sam(3, separate=True), args.repeats)

    print(f"checkpoint {ckpt} | {args.frames} frames {media.frame_size} | SAM 2 at {size}px | "
          f"torch threads {torch.get_num_threads()} | median of {args.repeats}")
    print(f"{'stage':<26}{'1 object':>12}{'3 objects':>12}{'3 x 1 object':>15}{'3obj/1obj':>11}{'3obj/3x1':>10}")
    for name, a, b, c in (("full forward (LLM+SAM 2)", e2e_1, e2e_3, e2e_sep), ("SAM 2 encode + track", sam_1, sam_3, sam_sep)):
        print(f"{name:<26}{a * 1e3:>10.1f}ms{b * 1e3:>10.1f}ms{c * 1e3:>13.1f}ms{b / a:>10.2f}x{b / c:>9.2f}x")
    print("target: 3 objects <= 1.3x one object")


if __name__ == "__main__":
    main()

"""Benchmark: batched DAVIS J&F (``unipixel.eval.metrics.j_and_f``) vs a plain per-frame implementation.

The per-frame baseline (:mod:`unipixel.eval.davis_plain`) is the straightforward transliteration of the DAVIS
toolkit (``db_eval_iou`` and ``f_measure``): for every frame, numpy IoU, ``seg2bmap`` boundaries and a disk
dilation done as the OR of one shifted copy per disk offset (no OpenCV/SciPy), then precision/recall/F. Both compute the same formula, so the
values must agree exactly; the script prints both times, the speed-up and the max absolute difference.

    python benchmarks/bench_metrics.py                      # 50 expressions x 30 frames x 480x854
    python benchmarks/bench_metrics.py --expressions 5      # quick run
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from unipixel.eval import davis_plain as plain
from unipixel.eval import metrics as M

# ----------------------------------------------------------------------------------------------------------
# data: random-ish moving blobs; predictions = shifted / perturbed ground truth
# ----------------------------------------------------------------------------------------------------------


def _draw_ellipse(m: np.ndarray, cy: float, cx: float, ry: float, rx: float, value: bool = True) -> None:
    h, w = m.shape
    y0, y1 = max(int(cy - ry), 0), min(int(cy + ry) + 2, h)
    x0, x1 = max(int(cx - rx), 0), min(int(cx + rx) + 2, w)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    if value:
        m[y0:y1, x0:x1] |= inside
    else:
        m[y0:y1, x0:x1] &= ~inside


def make_expression(rng: np.random.Generator, t: int, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """One expression: a GT object of 1-3 ellipses drifting over ``t`` frames, and a noisy prediction."""
    gt = np.zeros((t, h, w), dtype=bool)
    pred = np.zeros((t, h, w), dtype=bool)
    parts = [
        (
            rng.uniform(0.2, 0.8) * h,
            rng.uniform(0.2, 0.8) * w,
            rng.uniform(0.05, 0.3) * h,
            rng.uniform(0.05, 0.3) * w,
        )
        for _ in range(rng.integers(1, 4))
    ]
    vel = rng.normal(0, 0.004, size=2) * (h, w)
    off = rng.normal(0, 4, size=2)  # systematic prediction offset in pixels
    quality = rng.uniform()  # some expressions are predicted well, others badly
    vanish = rng.integers(t // 2, t + 6)  # the object may leave the scene -> empty GT frames
    for k in range(t):
        if k < vanish:
            for cy, cx, ry, rx in parts:
                _draw_ellipse(gt[k], cy + vel[0] * k, cx + vel[1] * k, ry, rx)
        if quality < 0.1 and k % 3 == 0:
            continue  # missed frame -> empty prediction
        jitter = rng.normal(0, 2, size=2)
        for cy, cx, ry, rx in parts:
            s = 1 + rng.normal(0, 0.05)
            _draw_ellipse(
                pred[k],
                cy + vel[0] * k + off[0] + jitter[0],
                cx + vel[1] * k + off[1] + jitter[1],
                ry * s,
                rx * s,
            )
        if quality < 0.5:  # distractor blob and a hole
            _draw_ellipse(
                pred[k], rng.uniform(0, h), rng.uniform(0, w), rng.uniform(5, 40), rng.uniform(5, 40)
            )
            _draw_ellipse(pred[k], parts[0][0], parts[0][1], parts[0][2] / 4, parts[0][3] / 4, value=False)
    return pred, gt


# ----------------------------------------------------------------------------------------------------------
# plain per-frame baseline (DAVIS formulas, numpy, one frame at a time)
# ----------------------------------------------------------------------------------------------------------


# ----------------------------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--expressions", type=int, default=50)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=854)
    ap.add_argument("--bound-th", type=float, default=M.DEFAULT_BOUND_TH)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    e, t, h, w = args.expressions, args.frames, args.height, args.width
    print(
        f"data: {e} expressions x {t} frames x {h}x{w} ({e * t} frame pairs), bound_th={args.bound_th} "
        f"(radius {M.disk_radius(h, w, args.bound_th)} px)"
    )
    print(
        f"host: {platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
        f"numpy {np.__version__} (both implementations single-threaded numpy)"
    )

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    data = [make_expression(rng, t, h, w) for _ in range(e)]
    print(
        f"generated in {time.perf_counter() - t0:.1f} s; "
        f"mean GT area {np.mean([g.mean() for _, g in data]) * 100:.1f}% of the frame, "
        f"empty GT frames {sum(int((~g.any(axis=(1, 2))).sum()) for _, g in data)}"
    )

    M.j_and_f(data[0][0][:2], data[0][1][:2], args.bound_th)  # warm-up (allocator, caches)

    t0 = time.perf_counter()
    ours = [M.j_and_f(p, g, args.bound_th) for p, g in data]
    t_ours = time.perf_counter() - t0

    t0 = time.perf_counter()
    base = [plain.j_and_f_frames(p, g, args.bound_th) for p, g in data]
    t_base = time.perf_counter() - t0

    d_jframe = max(float(np.abs(o.j_frames - b[0]).max()) for o, b in zip(ours, base, strict=True))
    d_fframe = max(float(np.abs(o.f_frames - b[1]).max()) for o, b in zip(ours, base, strict=True))
    d_j = max(abs(o.j - float(b[0].mean())) for o, b in zip(ours, base, strict=True))
    d_f = max(abs(o.f - float(b[1].mean())) for o, b in zip(ours, base, strict=True))
    agg_o = M.aggregate_j_and_f(ours)
    agg_b = M.aggregate_j_and_f([(float(b[0].mean()), float(b[1].mean())) for b in base])

    n = e * t
    print(f"batched j_and_f   : {t_ours:8.2f} s  ({t_ours / n * 1e3:7.2f} ms/frame)")
    print(f"per-frame baseline: {t_base:8.2f} s  ({t_base / n * 1e3:7.2f} ms/frame)")
    print(f"speed-up          : {t_base / t_ours:8.1f}x")
    print(
        f"max |diff| per-frame J {d_jframe:.3g}, per-frame F {d_fframe:.3g}, "
        f"per-expression J {d_j:.3g}, F {d_f:.3g}"
    )
    print(
        f"dataset (ours)     J {agg_o['J'] * 100:.4f}  F {agg_o['F'] * 100:.4f}  J&F {agg_o['J&F'] * 100:.4f}"
    )
    print(
        f"dataset (baseline) J {agg_b['J'] * 100:.4f}  F {agg_b['F'] * 100:.4f}  J&F {agg_b['J&F'] * 100:.4f}"
    )


if __name__ == "__main__":
    main()

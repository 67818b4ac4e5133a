"""The DAVIS toolkit's per-frame J and F, transliterated plainly (numpy only, one frame at a time).

Slow on purpose: this is the straightforward reading of ``db_eval_iou`` / ``f_measure`` (``seg2bmap``
boundaries, a disk dilation done as the OR of one shifted copy per disk offset, then precision/recall/F) that
the batched implementation in :mod:`unipixel.eval.metrics` must reproduce exactly. The tests and
``benchmarks/bench_metrics.py`` use it as their oracle and baseline; evaluation code should use
:func:`unipixel.eval.metrics.j_and_f`.
"""

from __future__ import annotations

import numpy as np

__all__ = ["radius", "seg2bmap", "dilate", "f_from_maps", "f_frame", "j_frame", "j_and_f_frames"]


def radius(h: int, w: int, bound_th: float = 0.008) -> int:
    """Dilation radius: ``bound_th`` pixels when ≥ 1, else ``ceil(bound_th · image diagonal)``."""
    return int(bound_th) if bound_th >= 1 else int(np.ceil(bound_th * np.linalg.norm((h, w))))


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """DAVIS ``_seg2bmap`` on one (H, W) mask: a pixel is a boundary when it differs from its right, lower or
    lower-right neighbour (last row: right only; last column: lower only; never the bottom-right pixel)."""
    seg = seg.astype(bool)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b


def dilate(b: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation of one (H, W) map by the disk ``dy² + dx² ≤ r²`` (outside the image ignored)."""
    h, w = b.shape
    out = np.zeros_like(b)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            if dy * dy + dx * dx > r * r:
                continue
            out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] |= b[
                max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
            ]
    return out


def f_from_maps(fg_b: np.ndarray, gt_b: np.ndarray, fg_dil: np.ndarray, gt_dil: np.ndarray) -> float:
    """Boundary F from the two boundary maps and their dilations (DAVIS' empty-boundary conventions)."""
    n_fg, n_gt = int(fg_b.sum()), int(gt_b.sum())
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = int((fg_b & gt_dil).sum()) / float(n_fg)
        recall = int((gt_b & fg_dil).sum()) / float(n_gt)
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def f_frame(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """DAVIS F of one frame."""
    r = radius(*pred.shape, bound_th)
    fg_b, gt_b = seg2bmap(pred), seg2bmap(gt)
    return f_from_maps(fg_b, gt_b, dilate(fg_b, r), dilate(gt_b, r))


def j_frame(pred: np.ndarray, gt: np.ndarray) -> float:
    """DAVIS J (IoU) of one frame; 1 when both masks are empty."""
    union = int((pred | gt).sum())
    return 1.0 if union == 0 else int((pred & gt).sum()) / union


def j_and_f_frames(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J and F of (T, H, W) masks, one frame at a time."""
    js = np.array([j_frame(p, g) for p, g in zip(pred, gt, strict=True)])
    fs = np.array([f_frame(p, g, bound_th) for p, g in zip(pred, gt, strict=True)])
    return js, fs

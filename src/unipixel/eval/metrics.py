"""Evaluation metrics of the UniPixel benchmarks (reference-design §7, §8, §10).

All mask inputs may be numpy arrays or torch tensors (moved to the CPU) of any dtype; a pixel is foreground when
it is non-zero (``mask != 0``, i.e. ``astype(bool)`` as in the reference), so 0/1, 0/255 and boolean masks are
equivalent. Results are Python floats or float64 numpy arrays. Only numpy is needed (torch is not imported).

Contents
--------
* DAVIS region similarity J (:func:`region_iou`, :func:`region_iou_batch`) and boundary measure F
  (:func:`boundary_map`, :func:`boundary_f`, :func:`boundary_f_batch`), per-expression :func:`j_and_f` and
  dataset aggregation :func:`aggregate_j_and_f` (MeViS / Ref-DAVIS17 / Ref-SAV / ReVOS / GroundMoRe).
* Image referring segmentation: :func:`iou_counts`, :func:`cumulative_iou` (cIoU), :func:`generalized_iou`
  (gIoU), the streaming :class:`IoUAccumulator`; box accuracy (:func:`mask_to_box`,
  :func:`remove_small_components`, :func:`box_iou`, :func:`box_hit`, :func:`box_accuracy`).
* ReVOS: :func:`revos_accuracy` ("A"), :func:`revos_robustness` ("R"), :func:`revos_expression_metrics`,
  :func:`revos_aggregate` (overall = mean of the referring and reasoning subset means).
* GroundMoRe: :func:`groundmore_sample_indices`, :func:`groundmore_action_window`, :func:`groundmore_aggregate`.
* PixelQA: :func:`volumetric_iou`, :func:`volumetric_f1`, :func:`pixelqa_aggregate`.
* Multiple choice: :func:`parse_choice`, :func:`parse_choice_reference`, :func:`mc_accuracy`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch tensors are accepted but torch is not imported at run time
    import torch

    MaskLike = np.ndarray | torch.Tensor
else:
    MaskLike = Any

__all__ = [
    "DEFAULT_BOUND_TH",
    "GROUNDMORE_QTYPES",
    "IoUAccumulator",
    "JFResult",
    "aggregate_j_and_f",
    "boundary_f",
    "boundary_f_batch",
    "boundary_map",
    "box_accuracy",
    "box_hit",
    "box_iou",
    "cumulative_iou",
    "disk_kernel",
    "disk_radius",
    "generalized_iou",
    "groundmore_action_window",
    "groundmore_aggregate",
    "groundmore_sample_indices",
    "iou_counts",
    "j_and_f",
    "mask_to_box",
    "mc_accuracy",
    "parse_choice",
    "parse_choice_reference",
    "pixelqa_aggregate",
    "region_iou",
    "region_iou_batch",
    "remove_small_components",
    "revos_accuracy",
    "revos_aggregate",
    "revos_expression_metrics",
    "revos_robustness",
    "volumetric_f1",
    "volumetric_iou",
]

DEFAULT_BOUND_TH = 0.008
"""DAVIS boundary tolerance: a fraction (< 1) of the image diagonal, or a pixel radius (>= 1)."""

GROUNDMORE_QTYPES = ("Causal", "Sequential", "Counterfactual", "Descriptive")

# frames per chunk of the packed J/F computation: at most this many 64-bit words per packed array
# (keeps the temporaries cache-resident; the result does not depend on it)
_CHUNK_WORDS = 1 << 16


# ----------------------------------------------------------------------------------------------------------
# input handling
# ----------------------------------------------------------------------------------------------------------


def _is_tensor(x: Any) -> bool:
    return hasattr(x, "detach") and hasattr(x, "cpu")  # torch.Tensor, without importing torch


def _tensor_to_numpy(x: Any) -> np.ndarray:
    x = x.detach().cpu()
    try:
        return x.numpy()
    except TypeError:  # dtypes numpy lacks (bfloat16, ...)
        return x.float().numpy()


def _as_bool_np(x: MaskLike) -> np.ndarray:
    """Foreground map ``x != 0`` as a numpy bool array (a bool numpy input is used as is, not copied)."""
    if _is_tensor(x):
        x = _tensor_to_numpy(x if str(x.dtype) == "torch.bool" else x != 0)
    a = np.asarray(x)
    return a if a.dtype == np.bool_ else a != 0


def _pair(pred: MaskLike, gt: MaskLike, ndim: int | None) -> tuple[np.ndarray, np.ndarray]:
    p, g = _as_bool_np(pred), _as_bool_np(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    if ndim is not None and p.ndim != ndim:
        raise ValueError(f"expected {ndim}-D masks, got shape {p.shape}")
    return p, g


# ----------------------------------------------------------------------------------------------------------
# bit-packed rows: pixel x of a row is bit x % 64 of 64-bit word x // 64 (zero padding beyond the width)
# ----------------------------------------------------------------------------------------------------------

_U64 = np.dtype("<u8")
_ONE, _S63 = np.uint64(1), np.uint64(63)
_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _pack(m: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` bool → ``(N, H, ceil(W / 64))`` little-endian uint64 words."""
    n, h, w = m.shape
    k = (w + 63) // 64
    b = np.packbits(m, axis=-1, bitorder="little")
    if b.shape[-1] != 8 * k:
        buf = np.zeros((n, h, 8 * k), dtype=np.uint8)
        buf[..., : b.shape[-1]] = b
        b = buf
    return b.view(_U64)


def _popcount(x: np.ndarray) -> np.ndarray:
    """Number of set bits per frame of an ``(N, H, K)`` word array (int64 ``(N,)``)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x).sum(axis=(1, 2), dtype=np.int64)
    return _POP8[x.view(np.uint8)].sum(axis=(1, 2), dtype=np.int64)


def _shift_px(x: np.ndarray, s: int) -> np.ndarray:
    """Move pixels along the row: ``out[x] = in[x + s]`` (``s`` > 0) or ``in[x - |s|]`` (``s`` < 0), 0 < |s| < 64."""
    a = np.uint64(abs(s))
    c = np.uint64(64 - abs(s))
    if s > 0:
        out = x >> a
        out[..., :-1] |= x[..., 1:] << c
    else:
        out = x << a
        out[..., 1:] |= x[..., :-1] >> c
    return out


def _bmap_packed(x: np.ndarray, width: int) -> np.ndarray:
    """DAVIS ``seg2bmap`` on packed rows (see :func:`boundary_map` for the definition)."""
    right = _shift_px(x, 1)
    down = np.zeros_like(x)
    down[:, :-1] = x[:, 1:]
    down_right = np.zeros_like(x)
    down_right[:, :-1] = right[:, 1:]
    b = (x ^ right) | (x ^ down) | (x ^ down_right)
    b[:, -1] = x[:, -1] ^ right[:, -1]  # last row: right neighbour only
    last_col = np.zeros(x.shape[-1], dtype=_U64)
    last_col[(width - 1) // 64] = _ONE << np.uint64((width - 1) % 64)
    b = (b & ~last_col) | ((x ^ down) & last_col)  # last column: lower neighbour only
    b[:, -1] &= ~last_col  # bottom-right pixel is never a boundary
    return b


def _dilate_packed(b: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation of packed rows by the disk of ``radius`` (pixels beyond the image are dropped).

    Row ``dy`` of the disk spans ``|dx| <= w(dy) = floor(sqrt(r² - dy²))``: each needed horizontal dilation
    ``[-w, w]`` is built incrementally with word shifts, then ``out[y] = OR_dy hdil_{w(|dy|)}[y + dy]``.
    """
    widths = [math.isqrt(radius * radius - d * d) for d in range(radius + 1)]
    hdil: dict[int, np.ndarray] = {0: b}
    cur, reach = b, 0
    for target in sorted(set(widths)):
        while reach < target:
            step = min(target - reach, 2 * reach + 1, 63)  # [-reach, reach] ⊕ {-step, 0, step} has no gaps
            cur = cur | _shift_px(cur, step) | _shift_px(cur, -step)
            reach += step
        hdil[target] = cur
    out = hdil[widths[0]].copy()
    h = b.shape[1]
    for dy in range(1, min(radius, h - 1) + 1):
        src = hdil[widths[dy]]
        out[:, :-dy] |= src[:, dy:]
        out[:, dy:] |= src[:, :-dy]
    return out


def _chunks(n: int, words_per_frame: int) -> range:
    return range(0, n, max(1, _CHUNK_WORDS // max(1, words_per_frame)))


# ----------------------------------------------------------------------------------------------------------
# DAVIS region similarity J
# ----------------------------------------------------------------------------------------------------------


def region_iou_batch(pred: MaskLike, gt: MaskLike) -> np.ndarray:
    """DAVIS region similarity J of every frame of an ``(N, H, W)`` stack.

    ``J_n = |P_n ∧ G_n| / |P_n ∨ G_n|`` with ``J_n := 1`` when the union is empty (both masks empty), as
    ``db_eval_iou`` of the DAVIS toolkit. Returns a float64 array of shape ``(N,)``.
    """
    p, g = _pair(pred, gt, 3)
    n, h, w = p.shape
    inter = np.empty(n, dtype=np.int64)
    union = np.empty(n, dtype=np.int64)
    step = _chunks(n, h * ((w + 63) // 64)).step
    for s in range(0, n, step):
        pp, gg = _pack(p[s : s + step]), _pack(g[s : s + step])
        e = s + pp.shape[0]
        inter[s:e], union[s:e] = _popcount(pp & gg), _popcount(pp | gg)
    return _iou_from_counts(inter, union)


def _iou_from_counts(inter: np.ndarray, union: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inter / union
    j[union == 0] = 1.0
    return j


def region_iou(pred: MaskLike, gt: MaskLike) -> float:
    """DAVIS region similarity J of one frame: ``|P ∧ G| / |P ∨ G|``, 1 when both masks are empty."""
    p, g = _pair(pred, gt, 2)
    return float(region_iou_batch(p[None], g[None])[0])


# ----------------------------------------------------------------------------------------------------------
# DAVIS boundary measure F
# ----------------------------------------------------------------------------------------------------------


def disk_radius(height: int, width: int, bound_th: float = DEFAULT_BOUND_TH) -> int:
    """Boundary tolerance radius in pixels.

    ``ceil(bound_th * ||(H, W)||_2)`` when ``bound_th < 1`` (DAVIS default 0.008 of the diagonal; 8 px for
    480×854), otherwise ``bound_th`` pixels. A non-integer pixel radius is rounded down (the reference would
    build an even-sized, off-centre ``skimage`` disk from it, which is not reproduced).
    """
    if bound_th < 0:
        raise ValueError(f"bound_th must be >= 0, got {bound_th}")
    if bound_th >= 1:
        return int(math.floor(bound_th))
    # np.linalg.norm exactly as the reference, so the ceil lands on the same integer
    return int(np.ceil(bound_th * np.linalg.norm((height, width))))


def disk_kernel(radius: int) -> np.ndarray:
    """Disk structuring element ``{(dy, dx): dy² + dx² <= r²}`` of shape ``(2r+1, 2r+1)`` (``skimage`` disk)."""
    r = np.arange(-radius, radius + 1)
    return (r[:, None] ** 2 + r[None, :] ** 2) <= radius**2


def boundary_map(mask: MaskLike) -> np.ndarray:
    """DAVIS/BSDS ``seg2bmap`` boundary of a binary mask (2-D, or a ``(N, H, W)`` stack), same resolution.

    For pixel ``(y, x)`` off the last row/column: ``b = m ^ m[y, x+1] | m ^ m[y+1, x] | m ^ m[y+1, x+1]``
    (the boundary is offset half a pixel towards the origin); on the last row only the right neighbour is
    compared, on the last column only the lower one; the bottom-right pixel is never a boundary. The image
    border is *not* a boundary, so an all-foreground mask has an empty boundary map.
    """
    m = _as_bool_np(mask)
    if m.ndim not in (2, 3):
        raise ValueError(f"expected a 2-D mask or a 3-D stack, got shape {m.shape}")
    m3 = m if m.ndim == 3 else m[None]
    w = m3.shape[-1]
    packed = _bmap_packed(_pack(m3), w)
    out = np.unpackbits(packed.view(np.uint8), axis=-1, count=w, bitorder="little").astype(bool)
    return out if m.ndim == 3 else out[0]


def _f_from_counts(
    n_fg: np.ndarray, n_gt: np.ndarray, fg_match: np.ndarray, gt_match: np.ndarray
) -> np.ndarray:
    """Boundary F-measure from counts with the DAVIS ``f_measure`` conventions (float64, same operation order)."""
    n_fg = n_fg.astype(np.float64)
    n_gt = n_gt.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_fg > 0, fg_match / np.maximum(n_fg, 1.0), 1.0)
        recall = np.where(n_gt > 0, gt_match / np.maximum(n_gt, 1.0), 1.0)
        precision = np.where((n_fg > 0) & (n_gt == 0), 0.0, precision)  # predicted boundary, no GT boundary
        recall = np.where((n_fg == 0) & (n_gt > 0), 0.0, recall)  # GT boundary, nothing predicted
        denom = precision + recall
        f = np.where(denom > 0, 2 * precision * recall / np.where(denom > 0, denom, 1.0), 0.0)
    return f


def _jf_packed(p: np.ndarray, g: np.ndarray, bound_th: float, with_j: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame J (if ``with_j``) and boundary F of bool ``(N, H, W)`` stacks, chunk by chunk."""
    n, h, w = p.shape
    radius = disk_radius(h, w, bound_th)
    j = np.full(n, np.nan)
    f = np.empty(n, dtype=np.float64)
    step = _chunks(n, h * ((w + 63) // 64)).step
    for s in range(0, n, step):
        pp, gg = _pack(p[s : s + step]), _pack(g[s : s + step])
        e = s + pp.shape[0]
        if with_j:
            j[s:e] = _iou_from_counts(_popcount(pp & gg), _popcount(pp | gg))
        bp, bg = _bmap_packed(pp, w), _bmap_packed(gg, w)
        fg_match = _popcount(bp & _dilate_packed(bg, radius))  # predicted boundary pixels near a GT boundary
        gt_match = _popcount(bg & _dilate_packed(bp, radius))  # GT boundary pixels near a predicted boundary
        f[s:e] = _f_from_counts(_popcount(bp), _popcount(bg), fg_match, gt_match)
    return j, f


def boundary_f_batch(pred: MaskLike, gt: MaskLike, bound_th: float = DEFAULT_BOUND_TH) -> np.ndarray:
    """DAVIS boundary F-measure of every frame of an ``(N, H, W)`` stack (float64 array ``(N,)``).

    Per frame: boundaries ``B_P``, ``B_G`` by :func:`boundary_map`; radius ``r`` by :func:`disk_radius`;
    ``D(·)`` = binary dilation with the disk of radius ``r`` (:func:`disk_kernel`; pixels outside the image do
    not contribute, as ``cv2.dilate``); ``precision = |B_P ∧ D(B_G)| / |B_P|``,
    ``recall = |B_G ∧ D(B_P)| / |B_G|``, ``F = 2PR / (P + R)`` (0 when ``P + R = 0``). Conventions on the
    *boundary* maps (as DAVIS ``f_measure``): both empty → F = 1; exactly one empty → F = 0. Note that an
    all-foreground mask has an empty boundary map.

    Implementation: all frames at once (in cache-sized chunks) on bit-packed rows (64 pixels per uint64 word):
    boundary maps, disk dilation (row-wise word shifts + vertical ORs of the disk's rows) and popcounts. The
    result is identical, bit for bit, to the per-frame DAVIS computation.
    """
    p, g = _pair(pred, gt, 3)
    return _jf_packed(p, g, bound_th, with_j=False)[1]


def boundary_f(pred: MaskLike, gt: MaskLike, bound_th: float = DEFAULT_BOUND_TH) -> float:
    """DAVIS boundary F-measure of one frame (2-D masks); see :func:`boundary_f_batch` for the definition."""
    p, g = _pair(pred, gt, 2)
    return float(boundary_f_batch(p[None], g[None], bound_th)[0])


# ----------------------------------------------------------------------------------------------------------
# per-expression J&F and dataset aggregation
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JFResult:
    """J/F of one expression: ``j`` / ``f`` are the means of the per-frame values ``j_frames`` / ``f_frames``."""

    j: float
    f: float
    j_frames: np.ndarray
    f_frames: np.ndarray

    @property
    def jf(self) -> float:
        """``(J + F) / 2``."""
        return (self.j + self.f) / 2


def j_and_f(pred_video: MaskLike, gt_video: MaskLike, bound_th: float = DEFAULT_BOUND_TH) -> JFResult:
    """DAVIS J and F of one expression over a ``(T, H, W)`` video (a 2-D mask counts as one frame).

    ``J = mean_t region_iou(P_t, G_t)`` and ``F = mean_t boundary_f(P_t, G_t)`` over all T frames
    (``eval_seg.py`` / ``eval_revos.py``; GroundMoRe's ``nanmean`` is the same since no frame gives NaN);
    ``J&F = (J + F) / 2``.
    """
    p, g = _pair(pred_video, gt_video, None)
    if p.ndim == 2:
        p, g = p[None], g[None]
    if p.ndim != 3 or p.shape[0] == 0:
        raise ValueError(f"expected a non-empty (T, H, W) video, got shape {p.shape}")
    jf, ff = _jf_packed(p, g, bound_th, with_j=True)
    return JFResult(j=float(jf.mean()), f=float(ff.mean()), j_frames=jf, f_frames=ff)


def _jf_pair(r: Any) -> tuple[float, float]:
    if isinstance(r, JFResult):
        return r.j, r.f
    if isinstance(r, Mapping):
        return float(r["J"]), float(r["F"])
    j, f = r
    return float(j), float(f)


def aggregate_j_and_f(
    results: Iterable[JFResult | Mapping[str, float] | tuple[float, float]],
) -> dict[str, float]:
    """Dataset J, F, J&F: ``J = mean_e J_e``, ``F = mean_e F_e`` over expressions ``e``, ``J&F = (J + F) / 2``.

    Items are :class:`JFResult`, ``{"J": .., "F": ..}`` mappings or ``(J, F)`` pairs. Values are fractions
    (multiply by 100 for the reported numbers). Returns ``{"J", "F", "J&F", "n"}``; NaN when empty.
    """
    pairs = [_jf_pair(r) for r in results]
    if not pairs:
        return {"J": math.nan, "F": math.nan, "J&F": math.nan, "n": 0}
    arr = np.asarray(pairs, dtype=np.float64)
    j, f = float(arr[:, 0].mean()), float(arr[:, 1].mean())
    return {"J": j, "F": f, "J&F": (j + f) / 2, "n": len(pairs)}


# ----------------------------------------------------------------------------------------------------------
# cIoU / gIoU (RefCOCO family, ReasonSeg)
# ----------------------------------------------------------------------------------------------------------


def iou_counts(pred: MaskLike, gt: MaskLike, valid: MaskLike | None = None) -> tuple[int, int]:
    """Per-sample ``(intersection, union)`` pixel counts ``(Σ P∧G∧V, Σ (P∨G)∧V)``; ``V`` = ``valid`` or all."""
    p, g = _pair(pred, gt, None)
    inter, union = p & g, p | g
    if valid is not None:
        v = _as_bool_np(valid)
        inter, union = inter & v, union & v
    return int(np.count_nonzero(inter)), int(np.count_nonzero(union))


def cumulative_iou(inters: Sequence[float] | np.ndarray, unions: Sequence[float] | np.ndarray) -> float:
    """cIoU = ``Σ_i inter_i / Σ_i union_i`` over all samples (large objects weigh more); 1 if ``Σ union = 0``."""
    ti, tu = float(np.sum(inters, dtype=np.float64)), float(np.sum(unions, dtype=np.float64))
    return 1.0 if tu == 0 else ti / tu


def generalized_iou(inters: Sequence[float] | np.ndarray, unions: Sequence[float] | np.ndarray) -> float:
    """gIoU = ``mean_i (inter_i / union_i)`` with a per-sample IoU of 1 when ``union_i = 0`` (empty/empty).

    NaN when there are no samples.
    """
    i = np.asarray(inters, dtype=np.float64)
    u = np.asarray(unions, dtype=np.float64)
    if i.size == 0:
        return math.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        ious = np.where(u > 0, i / np.where(u > 0, u, 1.0), 1.0)
    return float(ious.mean())


class IoUAccumulator:
    """Streaming cIoU / gIoU (and optional box accuracy) over image samples.

    ``update(pred, gt)`` per sample (or ``add(inter, union)`` with precomputed counts); ``ciou`` =
    ``Σ inter / Σ union``; ``giou`` = mean per-sample IoU (1 for empty/empty). ``add_hit`` records box hits for
    ``box_acc`` (mean hit). ``merge`` combines accumulators of data shards.
    """

    def __init__(self) -> None:
        self.inter_sum = 0
        self.union_sum = 0
        self.iou_sum = 0.0
        self.count = 0
        self.hits = 0
        self.hit_count = 0

    def add(self, inter: float, union: float) -> float:
        """Add one sample's counts; returns its IoU."""
        iou = 1.0 if union == 0 else inter / union
        self.inter_sum += inter
        self.union_sum += union
        self.iou_sum += iou
        self.count += 1
        return iou

    def update(self, pred: MaskLike, gt: MaskLike, valid: MaskLike | None = None) -> float:
        """Add one sample from its masks; returns its IoU."""
        return self.add(*iou_counts(pred, gt, valid))

    def add_hit(self, hit: bool) -> None:
        """Record whether the predicted box of a sample hit its GT box (IoU >= 0.5)."""
        self.hits += int(bool(hit))
        self.hit_count += 1

    def merge(self, other: IoUAccumulator) -> IoUAccumulator:
        """Add the state of ``other`` (e.g. another shard) into this accumulator; returns ``self``."""
        self.inter_sum += other.inter_sum
        self.union_sum += other.union_sum
        self.iou_sum += other.iou_sum
        self.count += other.count
        self.hits += other.hits
        self.hit_count += other.hit_count
        return self

    @property
    def ciou(self) -> float:
        return 1.0 if self.union_sum == 0 else self.inter_sum / self.union_sum

    @property
    def giou(self) -> float:
        return self.iou_sum / self.count if self.count else math.nan

    @property
    def box_acc(self) -> float:
        return self.hits / self.hit_count if self.hit_count else math.nan

    def result(self) -> dict[str, float]:
        """``{"cIoU", "gIoU", "n"}`` plus ``"BBoxAcc"`` when hits were recorded (fractions)."""
        out: dict[str, float] = {"cIoU": self.ciou, "gIoU": self.giou, "n": self.count}
        if self.hit_count:
            out["BBoxAcc"] = self.box_acc
        return out


# ----------------------------------------------------------------------------------------------------------
# boxes
# ----------------------------------------------------------------------------------------------------------


def _find(parent: list[int], i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return root


def remove_small_components(mask: MaskLike, min_area: int, connectivity: int = 8) -> np.ndarray:
    """Drop the connected components of a 2-D mask with fewer than ``min_area`` pixels.

    ``connectivity`` 8 (as ``cv2.connectedComponentsWithStats(..., connectivity=8)`` in ``infer_seg.get_min_box``)
    or 4. Run-length union-find: horizontal runs of adjacent rows are merged when they touch (8-connectivity:
    ``s_b <= e_a`` and ``s_a <= e_b`` with exclusive ends; 4-connectivity: strict). Returns a bool array.
    """
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    m = _as_bool_np(mask)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {m.shape}")
    if min_area <= 1 or not m.any():
        return m.copy()
    h, w = m.shape
    padded = np.zeros((h, w + 2), dtype=np.int8)
    padded[:, 1:-1] = m
    d = np.diff(padded, axis=1)
    rows, starts = np.nonzero(d == 1)
    _, ends = np.nonzero(d == -1)
    nrun = rows.size
    parent = list(range(nrun))
    first = np.searchsorted(rows, np.arange(h + 1)).tolist()
    st, en = starts.tolist(), ends.tolist()
    slack = 0 if connectivity == 8 else 1
    for r in range(1, h):
        i, i_end, j, j_end = first[r - 1], first[r], first[r], first[r + 1]
        while i < i_end and j < j_end:
            if st[j] + slack <= en[i] and st[i] + slack <= en[j]:
                ri, rj = _find(parent, i), _find(parent, j)
                if ri != rj:
                    parent[rj] = ri
            if en[i] < en[j]:
                i += 1
            else:
                j += 1
    roots = np.fromiter((_find(parent, k) for k in range(nrun)), dtype=np.int64, count=nrun)
    area = np.bincount(roots, weights=(ends - starts), minlength=nrun)
    keep = area[roots] >= min_area
    acc = np.zeros(h * (w + 1) + 1, dtype=np.int32)
    np.add.at(acc, rows[keep] * (w + 1) + starts[keep], 1)
    np.add.at(acc, rows[keep] * (w + 1) + ends[keep], -1)
    return np.cumsum(acc[:-1]).reshape(h, w + 1)[:, :w] > 0


def mask_to_box(mask: MaskLike, min_area: int = 0) -> tuple[int, int, int, int] | None:
    """Tight box ``(x_min, y_min, x_max, y_max)`` of a 2-D mask with **inclusive** max coordinates.

    As ``infer_seg.get_min_box``: with ``min_area > 0`` the 8-connected components smaller than ``min_area`` are
    removed first (the reference uses ``min_area=10``). Returns ``None`` for an empty (or emptied) mask.
    Note the reference then compares this inclusive box with continuous ``xyxy`` GT boxes (no +1).
    """
    m = _as_bool_np(mask)
    if min_area > 0:
        m = remove_small_components(m, min_area)
    ys = np.flatnonzero(m.any(axis=1))
    if ys.size == 0:
        return None
    xs = np.flatnonzero(m.any(axis=0))
    return int(xs[0]), int(ys[0]), int(xs[-1]), int(ys[-1])


def box_iou(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> np.ndarray | float:
    """IoU of ``xyxy`` boxes with continuous areas ``(x2 - x1)(y2 - y1)`` (no +1, as ``nncore.ops.bbox_iou``).

    ``a`` and ``b`` are ``(4,)`` or broadcastable ``(..., 4)``; a zero union gives 0. Returns a float for two
    single boxes, else an array.
    """
    a_ = np.asarray(a, dtype=np.float64)
    b_ = np.asarray(b, dtype=np.float64)
    lt = np.maximum(a_[..., :2], b_[..., :2])
    rb = np.minimum(a_[..., 2:], b_[..., 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.clip(a_[..., 2] - a_[..., 0], 0, None) * np.clip(a_[..., 3] - a_[..., 1], 0, None)
    area_b = np.clip(b_[..., 2] - b_[..., 0], 0, None) * np.clip(b_[..., 3] - b_[..., 1], 0, None)
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    return float(iou) if iou.ndim == 0 else iou


def box_hit(pred_mask: MaskLike, gt_box: Sequence[float], thr: float = 0.5, min_area: int = 10) -> bool:
    """``infer_seg`` box hit: IoU(:func:`mask_to_box` (pred, min_area), gt_box) >= thr; empty prediction misses."""
    box = mask_to_box(pred_mask, min_area=min_area)
    return box is not None and box_iou(box, gt_box) >= thr


def box_accuracy(
    pred_boxes: Sequence[Sequence[float] | None], gt_boxes: Sequence[Sequence[float]], thr: float = 0.5
) -> float:
    """Box accuracy = fraction of samples with ``IoU(pred_box, gt_box) >= thr`` (``None`` prediction = miss)."""
    if len(pred_boxes) != len(gt_boxes):
        raise ValueError("pred_boxes and gt_boxes differ in length")
    if not gt_boxes:
        return math.nan
    hits = [p is not None and box_iou(p, g) >= thr for p, g in zip(pred_boxes, gt_boxes, strict=True)]
    return float(np.mean(hits))


# ----------------------------------------------------------------------------------------------------------
# ReVOS
# ----------------------------------------------------------------------------------------------------------


def _video3(x: MaskLike) -> np.ndarray:
    a = _tensor_to_numpy(x) if _is_tensor(x) else np.asarray(x)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"expected a (T, H, W) video, got shape {a.shape}")
    return a


def _reference_u8(x: np.ndarray) -> np.ndarray:
    """GT / foreground as the reference holds them: uint8 (instance counts where instances overlap)."""
    return (x != 0).astype(np.uint8) if x.dtype == np.bool_ else x.astype(np.uint8)


def revos_accuracy(pred_video: MaskLike, gt_video: MaskLike, reference_bug: bool = False) -> float:
    """ReVOS "A" (R2-VOS pixel accuracy): ``A = mean_t mean_pixels [P_t == G_t]`` on binary masks.

    Reference bug (§7.3, §10.13): ``eval_revos.py`` reads predictions as 0/255 PNGs and compares them with the
    0/1 GT (``np.mean(gt == pred)``), so only jointly-background pixels count as correct. With
    ``reference_bug=True`` that is reproduced: prediction → ``255 * (P != 0)``, GT taken as given in uint8
    (a bool GT becomes 0/1; an instance-count GT stays a count, as the reference's ``+=`` of RLE decodes).
    """
    p, g = _video3(pred_video), _video3(gt_video)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    if reference_bug:
        p_u8 = (p != 0).astype(np.uint8) * np.uint8(255)
        eq = _reference_u8(g) == p_u8
    else:
        eq = (p != 0) == (g != 0)
    return float(eq.mean(axis=(1, 2)).mean())


def revos_robustness(
    pred_video: MaskLike, gt_video: MaskLike, foreground_video: MaskLike, reference_bug: bool = False
) -> float:
    """ReVOS "R" (R2-VOS robustness): ``R = mean_t max(1 - |P_t ∧ ¬G_t| / (|F_t| + 1e-6), 0)``.

    ``F_t`` is the video's foreground (union of all annotated objects, ``mask_dict_foreground.json``); the
    correct version binarises P, G and F, so ``|P ∧ ¬G|`` counts false-positive pixels and ``|F|`` foreground
    pixels.

    Reference bug: ``neg = ((1 - gt) * pred).sum()`` in **uint8** with 0/255 predictions scales every false
    positive by 255 (and where overlapping instances make ``gt = 2``, ``1 - gt`` wraps to 255 and
    ``255 * 255`` wraps to 1), while ``pos`` sums the per-instance foreground counts. ``reference_bug=True``
    reproduces this bit for bit from boolean predictions and GT/foreground as the reference holds them
    (bool → 0/1, instance counts as given).
    """
    p, g, fg = _video3(pred_video), _video3(gt_video), _video3(foreground_video)
    if not (p.shape == g.shape == fg.shape):
        raise ValueError(f"shapes differ: pred {p.shape}, gt {g.shape}, foreground {fg.shape}")
    if reference_bug:
        p_u8 = (p != 0).astype(np.uint8) * np.uint8(255)
        neg = ((np.uint8(1) - _reference_u8(g)) * p_u8).sum(axis=(1, 2)).astype(np.float64)
        pos = _reference_u8(fg).sum(axis=(1, 2)).astype(np.float64)
    else:
        neg = ((p != 0) & (g == 0)).sum(axis=(1, 2)).astype(np.float64)
        pos = (fg != 0).sum(axis=(1, 2)).astype(np.float64)
    r = np.maximum(1 - neg / (pos + 1e-6), 0.0)
    return float(r.mean())


def revos_expression_metrics(
    pred_video: MaskLike,
    gt_video: MaskLike,
    foreground_video: MaskLike,
    bound_th: float = DEFAULT_BOUND_TH,
    reference_bug: bool = False,
) -> dict[str, float]:
    """ReVOS metrics of one expression: ``{"J", "F", "JF", "A", "R"}`` (fractions).

    J/F as :func:`j_and_f` (unaffected by the 0/255 bug since both are binarised); A and R as
    :func:`revos_accuracy` / :func:`revos_robustness` (``reference_bug`` selects the buggy reference variant).
    A video without predictions scores 0 for all four in the reference (pass zeros to :func:`revos_aggregate`).
    """
    jf = j_and_f(pred_video, gt_video, bound_th)
    return {
        "J": jf.j,
        "F": jf.f,
        "JF": jf.jf,
        "A": revos_accuracy(pred_video, gt_video, reference_bug),
        "R": revos_robustness(pred_video, gt_video, foreground_video, reference_bug),
    }


def revos_aggregate(
    records: Iterable[Mapping[str, Any]], round_like_reference: bool = False
) -> dict[str, dict[str, float]]:
    """ReVOS dataset numbers from per-expression records ``{"type_id": 0|1, "J", "F", "A", "R"}`` (fractions).

    Per subset (``type_id`` 0 = "referring", 1 = "reason"): ``M = mean_e M_e`` for M in J, F, A, R and
    ``JF = (J + F) / 2``; **overall** = mean of the two subset values for every metric (not the mean over all
    expressions). An empty subset gives NaN (as the reference). ``round_like_reference`` rounds each
    per-expression value to two decimals in percent before averaging, as ``eval_revos.py`` does.
    """
    keys = ("J", "F", "A", "R")
    subsets: dict[int, list[list[float]]] = {0: [], 1: []}
    for rec in records:
        tid = int(rec["type_id"])
        if tid not in subsets:
            raise ValueError(f"unknown ReVOS type_id {tid}")
        vals = [float(rec[k]) for k in keys]
        if round_like_reference:
            vals = [round(100 * v, 2) / 100 for v in vals]
        subsets[tid].append(vals)
    out: dict[str, dict[str, float]] = {}
    for tid, name in ((0, "referring"), (1, "reason")):
        arr = np.asarray(subsets[tid], dtype=np.float64).reshape(-1, len(keys))
        means = arr.mean(axis=0) if arr.shape[0] else np.full(len(keys), np.nan)
        res = {k: float(v) for k, v in zip(keys, means, strict=True)}
        res["JF"] = (res["J"] + res["F"]) / 2
        res["n"] = arr.shape[0]
        out[name] = res
    overall = {k: (out["referring"][k] + out["reason"][k]) / 2 for k in (*keys, "JF")}
    overall["n"] = out["referring"]["n"] + out["reason"]["n"]
    out["overall"] = overall
    return out


# ----------------------------------------------------------------------------------------------------------
# GroundMoRe
# ----------------------------------------------------------------------------------------------------------


def groundmore_sample_indices(num_frames: int, num_samples: int = 20) -> np.ndarray:
    """The evaluated frame indices: ``np.linspace(0, num_frames - 1, num_samples, dtype=int)`` (20 by default)."""
    return np.linspace(0, num_frames - 1, num=num_samples, dtype=int)


def _seconds(t: str) -> int:
    parts = [int(p) for p in t.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return parts[0] * 3600 + parts[1] * 60 + parts[2]


def groundmore_action_window(
    video_name: str, action_start: str, action_end: str, fps: int = 6
) -> tuple[int, int]:
    """Inclusive frame-index window ``[start, end]`` in which the GroundMoRe GT mask is non-empty.

    The clip start ``MMSS`` is parsed from ``video_name[-9:]`` (``..._MMSS_MMSS``); with times in seconds,
    ``start = (t(action_start) - t(clip)) * fps`` and ``end = (t(action_end) - t(clip)) * fps - 1``. Frames
    outside the window get an empty GT mask (``eval_groundmore.py``).
    """
    clip = video_name[-9:].split("_")[0]
    clip_s = _seconds(f"{clip[:2]}:{clip[2:]}")
    return (_seconds(action_start) - clip_s) * fps, (_seconds(action_end) - clip_s) * fps - 1


def groundmore_aggregate(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """GroundMoRe numbers from per-expression records ``{"q_type", "J", "F"}`` (fractions).

    ``"overall"``: ``J = mean_e J_e``, ``F = mean_e F_e``, ``JF = (J + F) / 2`` over all expressions; the same
    per question type (Causal, Sequential, Counterfactual, Descriptive, plus any other type present; a standard
    type without expressions gives NaN). Each entry also has ``"n"``.
    """
    recs = list(records)
    groups: dict[str, list[Mapping[str, Any]]] = {q: [] for q in GROUNDMORE_QTYPES}
    for r in recs:
        groups.setdefault(str(r["q_type"]), []).append(r)
    out = {"overall": aggregate_j_and_f(recs)}
    for q, rs in groups.items():
        out[q] = aggregate_j_and_f(rs)
    return {k: {"J": v["J"], "F": v["F"], "JF": v["J&F"], "n": v["n"]} for k, v in out.items()}


# ----------------------------------------------------------------------------------------------------------
# PixelQA volumetric J / F
# ----------------------------------------------------------------------------------------------------------


def volumetric_iou(pred: MaskLike, gt: MaskLike) -> float:
    """PixelQA J: IoU over the whole ``T×H×W`` stack, ``|P ∧ G| / (|P ∨ G| + 1e-6)``.

    Both empty → 0 (not 1, unlike DAVIS J), as ``compute_iou_volume`` in the reference. Computed in float64
    (the reference uses float32; differences are below 1e-6 relative).
    """
    p, g = _pair(pred, gt, None)
    inter, union = float(np.count_nonzero(p & g)), float(np.count_nonzero(p | g))
    return inter / (union + 1e-6)


def volumetric_f1(pred: MaskLike, gt: MaskLike) -> float:
    """PixelQA F: pixel F1 over the whole stack (not the DAVIS boundary measure).

    ``precision = TP / (TP + FP + 1e-6)``, ``recall = TP / (TP + FN + 1e-6)``,
    ``F = 2PR / (P + R + 1e-6)``; both empty → 0. Float64 (reference: float32).
    """
    p, g = _pair(pred, gt, None)
    tp = float(np.count_nonzero(p & g))
    fp = float(np.count_nonzero(p & ~g))
    fn = float(np.count_nonzero(~p & g))
    precision = tp / (tp + fp + 1e-6)
    recall = tp / (tp + fn + 1e-6)
    return 2 * precision * recall / (precision + recall + 1e-6)


def pixelqa_aggregate(j_values: Iterable[float], f_values: Iterable[float]) -> dict[str, float]:
    """PixelQA dataset J, F, J&F: means over **all objects of all samples** (flattened), ``J&F = (J + F) / 2``."""
    j = np.asarray(list(j_values), dtype=np.float64)
    f = np.asarray(list(f_values), dtype=np.float64)
    if j.size == 0 or f.size == 0:
        return {"J": math.nan, "F": math.nan, "J&F": math.nan, "n": int(j.size)}
    jm, fm = float(j.mean()), float(f.mean())
    return {"J": jm, "F": fm, "J&F": (jm + fm) / 2, "n": int(j.size)}


# ----------------------------------------------------------------------------------------------------------
# multiple-choice answers
# ----------------------------------------------------------------------------------------------------------

# leading option: "B", "B.", "(B)", "B) text", "[C]", "(C) something", "b:"; a bare leading "(B" too
_LEAD_RE = re.compile(r"^[\s*]*(?:[(\[]\s*([A-Z])\b|[(\[]?\s*([A-Za-z])\s*(?:[)\].:,*]|$))")
# explicit phrase: "The best option is (B)", "Best Option: (A", "Answer: C", "the correct answer is B"
_PHRASE_RE = re.compile(
    r"(?i:(?:best|correct|right)\s+(?:option|answer|choice)|answer|option|choice)\s*(?:(?i:is)\s*)?[:\-]?\s*"
    r"[(\[]?\s*([A-Z])\b"
)
# any parenthesised capital letter: "... so (D) ..."
_PAREN_RE = re.compile(r"[(\[]([A-Z])[)\]]")


def _letters(num_options: int | None, letters: str | Sequence[str] | None) -> set[str] | None:
    if letters is not None:
        return {str(c).upper() for c in letters}
    if num_options is not None:
        return {chr(ord("A") + i) for i in range(num_options)}
    return None


def parse_choice(
    response: str, num_options: int | None = None, letters: str | Sequence[str] | None = None
) -> str | None:
    """Extract the chosen option letter (upper case) from a model response, or ``None``.

    Rules, in order (the first one that yields an allowed letter wins):
    1. a leading option: ``"B"``, ``"B."``, ``"(B)"``, ``"B) text"``, ``"(C) something"``, ``"(B"``, ``"b:"``
       (a leading letter must be followed by ``) ] . : ,`` or the end, so ``"A dog"`` is not an answer);
    2. an explicit phrase: ``"The best option is (B)"``, ``"Best Option: (A"``, ``"Answer: C"``;
    3. the first parenthesised capital letter anywhere: ``"... (D) ..."``.
    Allowed letters are ``letters`` or the first ``num_options`` letters (default: any letter). Responses are
    usually the continuation of the assistant prefix ``"The best option is ("``, e.g. ``"B) The man ..."``.
    """
    allowed = _letters(num_options, letters)
    text = response.strip()
    candidates: list[str] = []
    m = _LEAD_RE.match(text)
    if m:
        candidates.append((m.group(1) or m.group(2)).upper())
    candidates.extend(x.upper() for x in _PHRASE_RE.findall(text))
    candidates.extend(_PAREN_RE.findall(text))
    for c in candidates:
        if allowed is None or c in allowed:
            return c
    return None


def parse_choice_reference(
    response: str, num_options: int | None = None, letters: str | Sequence[str] | None = None
) -> str | None:
    """The reference ``eval_general.check_ans`` parser: first space-separated token, lower-cased, with
    ``( ) .`` removed, its first character if longer; ``None`` ("failed") unless it is an allowed letter.

    (The reference raises on an empty token; this returns ``None``.) E.g. ``"The best option is (B)"`` → None
    (``"t"`` is not an option), ``"(B) text"`` → ``"B"``.
    """
    allowed = _letters(num_options, letters)
    b = response.lower().split(" ")[0].replace("(", "").replace(")", "").replace(".", "")
    if not b:
        return None
    c = b[0].upper()
    if allowed is None:
        return c if "A" <= c <= "Z" else None
    return c if c in allowed else None


def mc_accuracy(
    responses: Sequence[str],
    answers: Sequence[str | int],
    num_options: int | Sequence[int] | None = None,
    tasks: Sequence[str | Sequence[str]] | None = None,
    reference_parser: bool = False,
) -> dict[str, dict[str, float]]:
    """Multiple-choice accuracy overall (``"all"``) and per task, as ``eval_general.py``.

    ``acc = #correct / #samples`` where unparsable responses ("failed") count as wrong; each entry is
    ``{"n", "failed", "correct", "acc"}`` (acc 0 when n = 0). ``answers`` are letters (``"B"``) or 0-based
    indices; ``num_options`` is one count for all or one per sample; a sample's task may be a list of tasks
    (counted in each). ``reference_parser`` switches :func:`parse_choice` for :func:`parse_choice_reference`.
    """
    n = len(responses)
    if len(answers) != n or (tasks is not None and len(tasks) != n):
        raise ValueError("responses, answers and tasks differ in length")
    if num_options is None or isinstance(num_options, int):
        opts: list[int | None] = [num_options] * n
    else:
        opts = list(num_options)
    parse = parse_choice_reference if reference_parser else parse_choice
    table: dict[str, dict[str, float]] = {}

    def bump(key: str, failed: bool, correct: bool) -> None:
        e = table.setdefault(key, {"n": 0, "failed": 0, "correct": 0, "acc": 0.0})
        e["n"] += 1
        e["failed"] += int(failed)
        e["correct"] += int(correct)

    for i in range(n):
        ans = answers[i]
        gt = chr(ord("A") + ans) if isinstance(ans, (int, np.integer)) else str(ans).strip().upper()
        pred = parse(responses[i], opts[i])
        keys = ["all"]
        if tasks is not None:
            t = tasks[i]
            keys += [t] if isinstance(t, str) else list(t)
        for k in keys:
            bump(k, pred is None, pred is not None and pred == gt)
    table.setdefault("all", {"n": 0, "failed": 0, "correct": 0, "acc": 0.0})
    for e in table.values():
        e["acc"] = e["correct"] / e["n"] if e["n"] else 0.0
    return table

"""Tests of ``unipixel.eval.metrics`` against slow, obviously-correct reference implementations."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
import torch

from unipixel.eval import davis_plain as plain
from unipixel.eval import metrics as M

# ----------------------------------------------------------------------------------------------------------
# slow references (plain loops, written from the definitions)
# ----------------------------------------------------------------------------------------------------------


def ref_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    inter = union = 0
    for p, g in zip(pred.ravel().tolist(), gt.ravel().tolist(), strict=True):
        inter += bool(p) and bool(g)
        union += bool(p) or bool(g)
    return 1.0 if union == 0 else inter / union


def ref_seg2bmap_loops(seg: np.ndarray) -> np.ndarray:
    """DAVIS seg2bmap with explicit pixel loops: compare each pixel with its right, lower and lower-right
    neighbours; last row: right only; last column: lower only; the bottom-right pixel is never a boundary."""
    m = seg.astype(bool)
    h, w = m.shape
    b = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            if y == h - 1 and x == w - 1:
                continue
            if y == h - 1:
                b[y, x] = m[y, x] != m[y, x + 1]
            elif x == w - 1:
                b[y, x] = m[y, x] != m[y + 1, x]
            else:
                b[y, x] = m[y, x] != m[y, x + 1] or m[y, x] != m[y + 1, x] or m[y, x] != m[y + 1, x + 1]
    return b


def ref_dilate_loops(b: np.ndarray, r: int) -> np.ndarray:
    """Binary dilation by the disk {dy² + dx² <= r²}, pixel by pixel (pixels outside the image ignored)."""
    h, w = b.shape
    out = np.zeros_like(b, dtype=bool)
    for y in range(h):
        for x in range(w):
            if not b[y, x]:
                continue
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    if dy * dy + dx * dx <= r * r and 0 <= y + dy < h and 0 <= x + dx < w:
                        out[y + dy, x + dx] = True
    return out


def ref_boundary_f_loops(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    r = plain.radius(*pred.shape, bound_th)
    fg_b, gt_b = ref_seg2bmap_loops(pred), ref_seg2bmap_loops(gt)
    return plain.f_from_maps(fg_b, gt_b, ref_dilate_loops(fg_b, r), ref_dilate_loops(gt_b, r))


def test_plain_davis_oracle_matches_the_pixel_loops() -> None:
    """The per-frame oracle shared with the benchmark (``davis_plain``) equals the pixel-loop reading of DAVIS."""
    rng = np.random.default_rng(7)
    for h, w in ((1, 1), (5, 9), (17, 12)):
        m = blobs(rng, h, w)
        assert np.array_equal(plain.seg2bmap(m), ref_seg2bmap_loops(m))
        for r in (0, 1, 3):
            assert np.array_equal(plain.dilate(m, r), ref_dilate_loops(m, r))
        g = blobs(rng, h, w)
        assert plain.f_frame(m, g, 2) == ref_boundary_f_loops(m, g, 2)


def blobs(rng: np.random.Generator, h: int, w: int, n: int = 3) -> np.ndarray:
    """A union of random ellipses (plus a few specks), as a bool mask."""
    yy, xx = np.mgrid[:h, :w]
    m = np.zeros((h, w), dtype=bool)
    for _ in range(n):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        ry, rx = rng.uniform(1, max(1.5, h / 3)), rng.uniform(1, max(1.5, w / 3))
        m |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    m[rng.integers(0, h, 3), rng.integers(0, w, 3)] ^= True
    return m


# ----------------------------------------------------------------------------------------------------------
# J
# ----------------------------------------------------------------------------------------------------------


def test_region_iou_conventions():
    z = np.zeros((5, 7), bool)
    o = np.ones((5, 7), bool)
    assert M.region_iou(z, z) == 1.0
    assert M.region_iou(z, o) == 0.0
    assert M.region_iou(o, o) == 1.0
    a = z.copy()
    a[2, 3] = True
    assert M.region_iou(a, a) == 1.0
    b = a.copy()
    b[2, 4] = True
    assert M.region_iou(a, b) == 0.5


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (4, 4), (13, 29), (64, 37)])
def test_region_iou_random(shape):
    rng = np.random.default_rng(sum(shape))
    pred = rng.random((6, *shape)) < 0.4
    gt = rng.random((6, *shape)) < 0.4
    gt[0] = pred[0] = False  # empty/empty frame
    batch = M.region_iou_batch(pred, gt)
    for t in range(6):
        assert batch[t] == ref_iou(pred[t], gt[t])
        assert M.region_iou(pred[t], gt[t]) == batch[t]


def test_input_types_equivalent():
    rng = np.random.default_rng(0)
    p, g = blobs(rng, 40, 50), blobs(rng, 40, 50)
    ref = (M.region_iou(p, g), M.boundary_f(p, g))
    for conv in (
        lambda m: m.astype(np.uint8) * 255,
        lambda m: m.astype(np.float32),
        lambda m: torch.from_numpy(m),
        lambda m: torch.from_numpy(m.astype(np.int64)),
        lambda m: torch.from_numpy(m).to(torch.bfloat16),
    ):
        assert (M.region_iou(conv(p), conv(g)), M.boundary_f(conv(p), conv(g))) == ref
    with pytest.raises(ValueError):
        M.region_iou(p, g[:-1])
    gt_t = torch.from_numpy(g).to(torch.bfloat16)
    assert M.revos_accuracy(torch.from_numpy(p), gt_t) == M.revos_accuracy(p, g)


# ----------------------------------------------------------------------------------------------------------
# boundary map and F
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (6, 1), (2, 2), (3, 5), (17, 23), (30, 11)])
def test_boundary_map_matches_loops(shape):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    for density in (0.0, 0.2, 0.5, 1.0):
        m = rng.random(shape) < density
        assert np.array_equal(M.boundary_map(m), ref_seg2bmap_loops(m))
    stack = rng.random((4, *shape)) < 0.5
    assert np.array_equal(M.boundary_map(stack), np.stack([ref_seg2bmap_loops(s) for s in stack]))


def test_disk_kernel_and_packed_dilation():
    rng = np.random.default_rng(1)
    for r in range(0, 12):
        k = M.disk_kernel(r)
        assert k.shape == (2 * r + 1, 2 * r + 1) and k[r].all() and k[:, r].all()
        assert k.sum() == sum(
            1 for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= r * r
        )
    for shape in [(1, 1), (5, 64), (9, 65), (13, 130), (40, 7)]:
        b = rng.random((2, *shape)) < 0.05
        b[1] = False
        b[1, 0, -1] = b[1, -1, 0] = True  # corners: dilation must not wrap across rows or words
        for r in (0, 1, 3, 8, 20):
            got = np.unpackbits(
                M._dilate_packed(M._pack(b), r).view(np.uint8), axis=-1, count=shape[1], bitorder="little"
            ).astype(bool)
            assert np.array_equal(got, np.stack([ref_dilate_loops(x, r) for x in b])), (shape, r)
    assert M.disk_radius(480, 854) == 8  # ceil(0.008 * 979.6)
    assert M.disk_radius(10, 10) == 1
    assert M.disk_radius(100, 100, 3) == 3
    assert M.disk_radius(100, 100, 3.7) == 3


def test_boundary_f_hand_cases():
    z = np.zeros((10, 10), bool)
    o = np.ones((10, 10), bool)
    a = z.copy()
    a[5, 5] = True
    assert M.boundary_f(z, z) == 1.0  # both boundaries empty
    assert M.boundary_f(a, z) == 0.0  # predicted boundary, no GT boundary
    assert M.boundary_f(z, a) == 0.0  # GT boundary, nothing predicted
    assert M.boundary_f(a, a) == 1.0
    assert M.boundary_f(o, o) == 1.0
    # DAVIS quirk: the image border is not a boundary, so a full-frame mask has no boundary at all
    assert M.boundary_map(o).sum() == 0
    assert M.boundary_f(o, z) == 1.0 and M.region_iou(o, z) == 0.0
    # single pixel: 4 boundary pixels {(5,5),(5,4),(4,5),(4,4)}; radius ceil(0.008*14.1)=1 (a plus shape).
    b = z.copy()
    b[5, 7] = True  # boundary {(5,7),(5,6),(4,7),(4,6)}: 2 of 4 pixels within the plus of each other
    assert M.boundary_map(a).sum() == 4
    assert M.boundary_f(a, b) == 0.5
    # corner pixel: bottom-right boundary pixel is forced to 0 -> 3 boundary pixels
    c = z.copy()
    c[-1, -1] = True
    assert M.boundary_map(c).sum() == 3
    # far apart -> P = R = 0 -> F = 0
    d = z.copy()
    d[0, 0] = True
    assert M.boundary_f(c, d) == 0.0


def test_boundary_f_thin_lines():
    h, w = 40, 60  # radius ceil(0.008 * 72.1) = 1
    gt = np.zeros((h, w), bool)
    gt[20, 5:55] = True
    for shift, bound_th in [(0, 0.008), (1, 0.008), (2, 0.008), (2, 2), (3, 2), (10, 0.2)]:
        pred = np.zeros((h, w), bool)
        pred[20 + shift, 5:55] = True
        got = M.boundary_f(pred, gt, bound_th)
        assert got == ref_boundary_f_loops(pred, gt, bound_th), (shift, bound_th)
    vert = np.zeros((h, w), bool)
    vert[3:37, 30] = True
    assert M.boundary_f(vert, gt) == ref_boundary_f_loops(vert, gt)
    diag = np.eye(h, w, dtype=bool)
    assert M.boundary_f(diag, np.roll(diag, 1, axis=1)) == ref_boundary_f_loops(
        diag, np.roll(diag, 1, axis=1)
    )


@pytest.mark.parametrize(
    "shape,bound_th",
    [
        ((1, 1), 0.008),
        ((1, 8), 0.008),
        ((8, 1), 0.5),
        ((2, 3), 1),
        ((5, 5), 0.3),
        ((17, 23), 0.008),
        ((23, 17), 0.1),
        ((31, 45), 0.05),
        ((12, 40), 3),
        ((40, 12), 0),
    ],
)
def test_boundary_f_random_vs_loops(shape, bound_th):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    n = 6
    pred = np.stack([blobs(rng, *shape) if i % 2 else rng.random(shape) < 0.3 for i in range(n)])
    gt = np.stack([blobs(rng, *shape) if i % 3 else rng.random(shape) < 0.3 for i in range(n)])
    gt[0] = False
    batch = M.boundary_f_batch(pred, gt, bound_th)
    for t in range(n):
        want = ref_boundary_f_loops(pred[t], gt[t], bound_th)
        assert batch[t] == want, (t, batch[t], want)  # bit-identical, not just close
        assert M.boundary_f(pred[t], gt[t], bound_th) == want


@pytest.mark.parametrize("shape", [(120, 213), (97, 131)])
def test_boundary_f_blobs_vs_numpy_reference(shape):
    rng = np.random.default_rng(shape[1])
    pred = np.stack([blobs(rng, *shape, n=4) for _ in range(5)])
    gt = pred.copy()
    gt[1:] = np.stack([blobs(rng, *shape, n=4) for _ in range(4)])
    gt[2] = np.roll(pred[2], (2, -3), axis=(0, 1))  # near miss: partly within tolerance
    for bound_th in (0.008, 0.03):
        batch = M.boundary_f_batch(pred, gt, bound_th)
        want = [plain.f_frame(p, g, bound_th) for p, g in zip(pred, gt, strict=True)]
        assert batch.tolist() == want


def test_boundary_f_davis_size_frame():
    rng = np.random.default_rng(7)
    pred = blobs(rng, 480, 854, n=5)
    gt = np.roll(pred, (6, -5), axis=(0, 1)) | blobs(rng, 480, 854, n=1)
    assert M.boundary_f(pred, gt) == plain.f_frame(pred, gt)


def test_boundary_f_chunking(monkeypatch):
    rng = np.random.default_rng(3)
    pred = rng.random((7, 20, 30)) < 0.5
    gt = rng.random((7, 20, 30)) < 0.5
    full = M.boundary_f_batch(pred, gt)
    full_j = M.region_iou_batch(pred, gt)
    monkeypatch.setattr(M, "_CHUNK_WORDS", 2 * 20)  # 2 frames of 20 rows x 1 word per chunk
    assert np.array_equal(M.boundary_f_batch(pred, gt), full)
    assert np.array_equal(M.region_iou_batch(pred, gt), full_j)
    r = M.j_and_f(pred, gt)
    assert np.array_equal(r.f_frames, full) and np.array_equal(r.j_frames, full_j)


def test_j_and_f_and_aggregation():
    rng = np.random.default_rng(11)
    pred = np.stack([blobs(rng, 33, 47) for _ in range(5)])
    gt = np.stack([blobs(rng, 33, 47) for _ in range(5)])
    r = M.j_and_f(pred, gt)
    j = np.mean([ref_iou(p, g) for p, g in zip(pred, gt, strict=True)])
    f = np.mean([ref_boundary_f_loops(p, g) for p, g in zip(pred, gt, strict=True)])
    assert r.j == pytest.approx(j, abs=1e-15) and r.f == pytest.approx(f, abs=1e-15)
    assert r.jf == pytest.approx((j + f) / 2)
    assert M.j_and_f(pred[0], gt[0]).j == M.region_iou(pred[0], gt[0])  # 2-D = one frame
    agg = M.aggregate_j_and_f([r, (0.5, 0.25), {"J": 0.0, "F": 1.0}])
    assert agg["J"] == pytest.approx((r.j + 0.5) / 3)
    assert agg["F"] == pytest.approx((r.f + 1.25) / 3)
    assert agg["J&F"] == pytest.approx((agg["J"] + agg["F"]) / 2) and agg["n"] == 3
    assert math.isnan(M.aggregate_j_and_f([])["J"])


# ----------------------------------------------------------------------------------------------------------
# cIoU / gIoU
# ----------------------------------------------------------------------------------------------------------


def test_ciou_vs_giou():
    big = np.zeros((20, 20), bool)
    big[:10, :10] = True  # 100 px, predicted perfectly
    small_gt = np.zeros((20, 20), bool)
    small_gt[15:17, 15:20] = True  # 10 px, missed
    empty = np.zeros((20, 20), bool)
    acc = M.IoUAccumulator()
    assert acc.update(big, big) == 1.0
    assert acc.update(empty, small_gt) == 0.0
    assert acc.ciou == pytest.approx(100 / 110)  # dominated by the large object
    assert acc.giou == pytest.approx(0.5)  # every sample weighs the same
    assert acc.update(empty, empty) == 1.0  # empty/empty: IoU 1 for gIoU, nothing for cIoU
    assert acc.ciou == pytest.approx(100 / 110) and acc.giou == pytest.approx(2 / 3)
    inters, unions = [100, 0, 0], [100, 10, 0]
    assert M.cumulative_iou(inters, unions) == acc.ciou
    assert M.generalized_iou(inters, unions) == pytest.approx(acc.giou)
    assert M.iou_counts(big, small_gt) == (0, 110)
    valid = np.ones((20, 20), bool)
    valid[15:] = False
    assert M.iou_counts(big, small_gt, valid) == (0, 100)
    other = M.IoUAccumulator()
    other.add(5, 10)
    other.add_hit(True)
    acc.merge(other)
    res = acc.result()
    assert res["n"] == 4 and res["cIoU"] == pytest.approx(105 / 120) and res["BBoxAcc"] == 1.0
    assert math.isnan(M.IoUAccumulator().giou) and math.isnan(M.generalized_iou([], []))


# ----------------------------------------------------------------------------------------------------------
# boxes
# ----------------------------------------------------------------------------------------------------------


def ref_components(m: np.ndarray, connectivity: int) -> list[list[tuple[int, int]]]:
    h, w = m.shape
    seen = np.zeros_like(m, dtype=bool)
    nbrs = [
        (dy, dx)
        for dy in (-1, 0, 1)
        for dx in (-1, 0, 1)
        if (dy or dx) and (connectivity == 8 or not dy * dx)
    ]
    comps = []
    for y in range(h):
        for x in range(w):
            if m[y, x] and not seen[y, x]:
                seen[y, x] = True
                q, comp = deque([(y, x)]), []
                while q:
                    cy, cx = q.popleft()
                    comp.append((cy, cx))
                    for dy, dx in nbrs:
                        ny, nx = cy + dy, cx + dx
                        if 0 <= ny < h and 0 <= nx < w and m[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            q.append((ny, nx))
                comps.append(comp)
    return comps


@pytest.mark.parametrize("connectivity", [4, 8])
def test_remove_small_components_vs_flood_fill(connectivity):
    rng = np.random.default_rng(connectivity)
    for shape, density in [
        ((30, 40), 0.3),
        ((25, 25), 0.55),
        ((1, 30), 0.5),
        ((30, 1), 0.5),
        ((12, 50), 0.7),
    ]:
        m = rng.random(shape) < density
        for min_area in (2, 5, 10):
            want = np.zeros_like(m)
            for comp in ref_components(m, connectivity):
                if len(comp) >= min_area:
                    for y, x in comp:
                        want[y, x] = True
            assert np.array_equal(M.remove_small_components(m, min_area, connectivity), want)


def test_mask_to_box_and_box_accuracy():
    m = np.zeros((50, 60), bool)
    assert M.mask_to_box(m) is None
    m[10:20, 30:41] = True
    assert M.mask_to_box(m) == (30, 10, 40, 19)  # inclusive max
    m[45, 2] = True  # a 1-px speck
    assert M.mask_to_box(m) == (2, 10, 40, 45)
    assert M.mask_to_box(m, min_area=10) == (30, 10, 40, 19)
    assert M.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert M.box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert M.box_iou((0, 0, 0, 0), (0, 0, 0, 0)) == 0.0
    assert np.allclose(M.box_iou([[0, 0, 10, 10], [0, 0, 5, 10]], [0, 0, 10, 10]), [1.0, 0.5])
    assert M.box_hit(m, (30, 10, 40, 19))
    assert not M.box_hit(m, (30, 10, 40, 19), min_area=0)  # the speck blows the box up
    assert not M.box_hit(np.zeros((5, 5)), (0, 0, 1, 1))
    assert M.box_accuracy([(0, 0, 10, 10), None, (0, 0, 4, 10)], [(0, 0, 10, 10)] * 3) == pytest.approx(1 / 3)


# ----------------------------------------------------------------------------------------------------------
# ReVOS
# ----------------------------------------------------------------------------------------------------------


def literal_reference_a_r(gt_u8, pred_u8, fg_u8):
    """Transliteration of eval_revos' get_r2vos_accuracy/robustness on uint8 arrays (pred 0/255)."""
    accs, robs = [], []
    for g, p, f in zip(gt_u8, pred_u8, fg_u8, strict=True):
        accs.append(np.mean(g == p))
        neg = ((1 - g) * p).sum()
        pos = f.sum()
        robs.append(max(1 - neg / (pos + 1e-6), 0.0))
    return float(np.array(accs).mean()), float(np.array(robs).mean())


def test_revos_a_r_correct_and_reference_bug():
    gt = np.zeros((2, 4, 5), np.uint8)
    gt[:, 1:3, 1:4] = 1  # 6 px object
    pred = np.zeros((2, 4, 5), bool)
    pred[0, 1:3, 1:4] = True  # frame 0 perfect
    pred[1, 0, :] = True  # frame 1: 5 false positives, 6 misses
    fg = gt.copy()
    fg[:, 3, 0] = 1  # another object in the video: 7 foreground px
    a = M.revos_accuracy(pred, gt)
    assert a == pytest.approx((1.0 + 9 / 20) / 2)
    r = M.revos_robustness(pred, gt, fg)
    assert r == pytest.approx((1.0 + (1 - 5 / (7 + 1e-6))) / 2)
    # the reference compares 0/255 predictions with 0/1 GT: only jointly-zero pixels count
    a_bug = M.revos_accuracy(pred, gt, reference_bug=True)
    r_bug = M.revos_robustness(pred, gt, fg, reference_bug=True)
    assert a_bug == pytest.approx((14 / 20 + 9 / 20) / 2)
    assert r_bug == pytest.approx((1.0 + 0.0) / 2)  # 5 * 255 false-positive "pixels" -> clipped to 0
    assert (a_bug, r_bug) == literal_reference_a_r(gt, pred.astype(np.uint8) * 255, fg)


def test_revos_reference_bug_random_with_overlaps():
    rng = np.random.default_rng(5)
    for _ in range(5):
        gt = (rng.random((3, 9, 11)) < 0.3).astype(np.uint8) + (rng.random((3, 9, 11)) < 0.2)  # counts 0..2
        fg = gt + (rng.random((3, 9, 11)) < 0.2)
        pred = rng.random((3, 9, 11)) < 0.4
        want = literal_reference_a_r(gt.astype(np.uint8), pred.astype(np.uint8) * 255, fg.astype(np.uint8))
        got = (M.revos_accuracy(pred, gt, True), M.revos_robustness(pred, gt, fg, True))
        assert got == want
        # the correct version binarises everything
        gb, fb = gt != 0, fg != 0
        acc = np.mean([np.mean(g == p) for g, p in zip(gb, pred, strict=True)])
        rob = np.mean(
            [max(1 - (p & ~g).sum() / (f.sum() + 1e-6), 0.0) for g, p, f in zip(gb, pred, fb, strict=True)]
        )
        assert M.revos_accuracy(pred, gt) == pytest.approx(acc)
        assert M.revos_robustness(pred, gt, fg) == pytest.approx(rob)


def test_revos_expression_and_aggregate():
    rng = np.random.default_rng(9)
    gt = np.stack([blobs(rng, 20, 30) for _ in range(3)])
    pred = np.stack([blobs(rng, 20, 30) for _ in range(3)])
    e = M.revos_expression_metrics(pred, gt, gt)
    jf = M.j_and_f(pred, gt)
    assert (e["J"], e["F"], e["JF"]) == (jf.j, jf.f, jf.jf)
    recs = [
        {"type_id": 0, "J": 0.8, "F": 0.6, "A": 0.9, "R": 0.7},
        {"type_id": 0, "J": 0.6, "F": 0.4, "A": 0.7, "R": 0.5},
        {"type_id": 0, "J": 0.7, "F": 0.5, "A": 0.8, "R": 0.6},
        {"type_id": 1, "J": 0.1, "F": 0.3, "A": 0.5, "R": 0.2},
    ]
    out = M.revos_aggregate(recs)
    assert out["referring"]["J"] == pytest.approx(0.7) and out["referring"]["JF"] == pytest.approx(0.6)
    assert out["reason"]["F"] == pytest.approx(0.3) and out["reason"]["n"] == 1
    # overall = mean of the two subset means (0.4), not the mean over all expressions (0.55)
    assert out["overall"]["J"] == pytest.approx(0.4)
    assert out["overall"]["JF"] == pytest.approx((0.6 + 0.2) / 2)
    assert out["overall"]["A"] == pytest.approx((0.8 + 0.5) / 2)
    rounded = M.revos_aggregate(
        [{"type_id": 0, "J": 0.123456, "F": 0, "A": 0, "R": 0}], round_like_reference=True
    )
    assert rounded["referring"]["J"] == pytest.approx(0.1235)
    assert math.isnan(rounded["reason"]["J"])


# ----------------------------------------------------------------------------------------------------------
# GroundMoRe
# ----------------------------------------------------------------------------------------------------------


def test_groundmore_helpers():
    assert M.groundmore_sample_indices(100).tolist() == np.linspace(0, 99, 20, dtype=int).tolist()
    assert len(M.groundmore_sample_indices(7)) == 20
    # clip starting at 01:30; action 01:32 - 01:35 at 6 fps -> frames 12 .. 29
    assert M.groundmore_action_window("abcd_0130_0145", "01:32", "01:35") == (12, 29)
    recs = [
        {"q_type": "Causal", "J": 0.4, "F": 0.6},
        {"q_type": "Causal", "J": 0.2, "F": 0.4},
        {"q_type": "Descriptive", "J": 0.9, "F": 0.7},
    ]
    out = M.groundmore_aggregate(recs)
    assert out["overall"]["J"] == pytest.approx(0.5) and out["overall"]["JF"] == pytest.approx(1.6 / 3)
    assert out["Causal"]["JF"] == pytest.approx(0.4) and out["Causal"]["n"] == 2
    assert out["Descriptive"]["J"] == pytest.approx(0.9)
    assert math.isnan(out["Sequential"]["J"]) and out["Counterfactual"]["n"] == 0


# ----------------------------------------------------------------------------------------------------------
# PixelQA
# ----------------------------------------------------------------------------------------------------------


def test_pixelqa_volumetric():
    z = np.zeros((4, 6, 6), bool)
    assert M.volumetric_iou(z, z) == 0.0  # both empty -> 0 (reference convention)
    assert M.volumetric_f1(z, z) == 0.0
    gt = z.copy()
    gt[:2, :3, :3] = True  # 18 px
    pred = z.copy()
    pred[1:3, :3, :3] = True  # 18 px, 9 overlap
    assert M.volumetric_iou(pred, gt) == pytest.approx(9 / (27 + 1e-6))
    p = r = 9 / (18 + 1e-6)
    assert M.volumetric_f1(pred, gt) == pytest.approx(2 * p * r / (p + r + 1e-6))
    assert M.volumetric_iou(gt, gt) == pytest.approx(1.0, abs=1e-6)
    # volumetric J differs from the mean of per-frame J
    assert M.volumetric_iou(pred, gt) != pytest.approx(M.region_iou_batch(pred, gt).mean())
    # float32 torch formula of the reference agrees closely
    pt, gtt = torch.from_numpy(pred), torch.from_numpy(gt)
    ref_j = ((pt & gtt).sum().float() / ((pt | gtt).sum().float() + 1e-6)).item()
    assert M.volumetric_iou(pt, gtt) == pytest.approx(ref_j, rel=1e-6)
    agg = M.pixelqa_aggregate([0.5, 1.0, 0.0], [0.25, 0.5, 0.75])
    assert agg == {"J": 0.5, "F": 0.5, "J&F": 0.5, "n": 3}


# ----------------------------------------------------------------------------------------------------------
# multiple choice
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,want",
    [
        ("The best option is (B)", "B"),
        ("B.", "B"),
        ("B", "B"),
        ("b", "B"),
        ("(C) something", "C"),
        ("C) the man opens the door", "C"),
        ("Best Option: (A", "A"),
        ("Best Option: (A) the cat", "A"),
        ("Answer: D", "D"),
        ("The answer is C.", "C"),
        ("[B]", "B"),
        ("  (d)", "D"),
        ("**B**", "B"),
        ("I think it is (C).", "C"),
        ("A dog is running", None),
        ("I don't know", None),
        ("", None),
        ("E.", None),  # only 4 options
    ],
)
def test_parse_choice(text, want):
    assert M.parse_choice(text, num_options=4) == want


def test_parse_choice_reference_and_accuracy():
    assert M.parse_choice_reference("(B) text", 4) == "B"
    assert M.parse_choice_reference("B.", 4) == "B"
    assert M.parse_choice_reference("The best option is (B)", 4) is None  # "t"
    assert M.parse_choice_reference("Dog", 4) == "D"  # first char of a longer token
    assert M.parse_choice_reference("", 4) is None
    assert M.parse_choice("B) x", letters="AB") == "B" and M.parse_choice("C) x", letters="AB") is None
    res = M.mc_accuracy(
        ["B) a", "(A)", "nonsense", "The best option is (C)"],
        ["B", 0, "A", "D"],
        num_options=4,
        tasks=["t1", "t1", "t2", ["t2", "t3"]],
    )
    assert res["all"] == {"n": 4, "failed": 1, "correct": 2, "acc": 0.5}
    assert res["t1"]["acc"] == 1.0 and res["t2"]["acc"] == 0.0 and res["t2"]["failed"] == 1
    assert res["t3"]["n"] == 1
    ref = M.mc_accuracy(["B) a", "The best option is (B)"], ["B", "B"], num_options=4, reference_parser=True)
    assert ref["all"]["correct"] == 1 and ref["all"]["failed"] == 1
    assert M.mc_accuracy([], [])["all"]["acc"] == 0.0

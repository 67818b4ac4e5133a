"""Visual prompts: points / boxes for ``<|ref|>`` and masks for ``<|mem|>``.

Coordinate conventions (they matter for parity with the released weights):

* The reference encodes points and boxes in the **S x S squashed SAM 2 frame** (S = ``sam2_image_size``,
  768 for the released models; aspect ratio not kept), as ``(x, y)`` *pixel indices*; SAM's prompt encoder
  adds 0.5 itself to reach pixel centres.  When prompts are derived from ground-truth masks, the mask is first
  resized to S x S (bilinear + antialias on 0/1 floats, then ``> 0``) and the point/box is read off that
  mask.  :func:`mask_to_sam_prompt` reproduces the golden fixtures exactly this way.
* User prompts are given in **original** pixel coordinates of a frame of size (H, W).  :func:`point_to_sam`
  and :func:`box_to_sam` map pixel indices through pixel centres, ``x_s = (x + 0.5) * S / W - 0.5``, so that
  pixel (i, j) of the frame lands on the S-space pixel that covers it.
* Boxes derived from masks are ``int32`` in the reference (``mask_to_box`` works on integer index grids and
  PixelQA uses no noise), and the model sees those integers.  :func:`box_to_sam` therefore returns ``int32``
  coordinates by default (``int_box_coords=True``), rounding outwards (floor for the top-left corner, ceil for
  the bottom-right one), which mimics the slight dilation of the reference's resized-mask boxes.

Masks for ``<|mem|>`` are turned into ``refer_mask`` tensors at merged-token resolution with
:func:`build_refer_mask`, and :func:`mem_prompt_text` writes the matching region prefix of the prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "SamPrompt",
    "POINT_LABEL",
    "BOX_LABELS",
    "point_to_sam",
    "box_to_sam",
    "resize_mask",
    "squared_distance_transform",
    "mask_center_point",
    "mask_tight_box",
    "sample_box_with_noise",
    "sample_point_uniform",
    "mask_to_sam_prompt",
    "prompt_frame_position",
    "collate_prompts",
    "build_refer_mask",
    "mem_frame_groups",
    "mem_prompt_text",
]

POINT_LABEL = 1
BOX_LABELS = (2, 3)

MaskLike = np.ndarray | torch.Tensor


class SamPrompt(NamedTuple):
    """One object's prompt in the model's format.

    ``coords``: (1, n, 2) ``(x, y)`` in S-space; float32 for points, int32 (default) or float32 for boxes.
    ``labels``: (1, n) int32; ``[[1]]`` for a positive point, ``[[2, 3]]`` for a box.
    """

    coords: torch.Tensor
    labels: torch.Tensor

    @property
    def kind(self) -> str:
        return "point" if self.coords.shape[1] == 1 else "box"


# ----------------------------------------------------------------------------------------------------------
# user prompts in original pixel coordinates


def _check_geometry(frame_size: Sequence[int], image_size: int) -> tuple[int, int]:
    if len(frame_size) != 2:
        raise ValueError(f"frame_size must be (H, W), got {tuple(frame_size)}")
    h, w = int(frame_size[0]), int(frame_size[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"frame_size must be positive, got (H, W) = ({h}, {w})")
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return h, w


def _to_sam_axis(v: float, size: int, image_size: int) -> float:
    """Map a pixel index of an axis of length ``size`` to the squashed S axis through pixel centres."""
    return min(max((v + 0.5) * image_size / size - 0.5, 0.0), image_size - 1.0)


def _check_inside(
    name: str, value: float, limit: int, axis: str, frame_size: tuple[int, int], closed: bool = False
) -> None:
    """``0 <= value < limit`` (a pixel index), or ``<= limit`` when ``closed`` (a box's far edge, which results
    write exclusive, so that a returned box can be passed back)."""
    if not (np.isfinite(value) and 0 <= value and (value <= limit if closed else value < limit)):
        interval = f"[0, {limit}]" if closed else f"[0, {limit})"
        raise ValueError(
            f"{name}={value} is outside the frame: {axis} must be in {interval} for a frame of "
            f"(H, W) = {frame_size}"
        )


def point_to_sam(
    points_xy: Sequence[float] | np.ndarray | torch.Tensor,
    frame_size: Sequence[int],
    image_size: int,
) -> SamPrompt:
    """A positive point ``(x, y)`` in original pixels -> SAM 2 prompt in the S x S squashed frame.

    The model accepts exactly one point per object (two prompt tokens incl. padding), so ``points_xy`` must
    hold one point, shaped (2,) or (1, 2).

    Returns:
        ``SamPrompt(coords float32 (1, 1, 2), labels int32 [[1]])``.
    """
    h, w = _check_geometry(frame_size, image_size)
    p = torch.as_tensor(points_xy, dtype=torch.float64).reshape(-1)
    if p.numel() != 2:
        raise ValueError(
            f"expected a single point (x, y), got {p.numel()} values; "
            "the model encodes exactly one point or one box per object"
        )
    x, y = float(p[0]), float(p[1])
    _check_inside("point x", x, w, "x", (h, w))
    _check_inside("point y", y, h, "y", (h, w))
    coords = torch.tensor(
        [[[_to_sam_axis(x, w, image_size), _to_sam_axis(y, h, image_size)]]], dtype=torch.float32
    )
    return SamPrompt(coords, torch.tensor([[POINT_LABEL]], dtype=torch.int32))


def box_to_sam(
    box_xyxy: Sequence[float] | np.ndarray | torch.Tensor,
    frame_size: Sequence[int],
    image_size: int,
    int_box_coords: bool = True,
) -> SamPrompt:
    """A box ``(x1, y1, x2, y2)`` in original pixels (corner pixel indices, inclusive) -> SAM 2 prompt.

    ``x2 = W`` / ``y2 = H`` are accepted as the frame's far edge (the boxes in results are exclusive there).

    Args:
        int_box_coords: reproduce the reference's int32 box coordinates (default).  The corners are rounded
            outwards (floor top-left, ceil bottom-right).  ``False`` keeps float32 coordinates.

    Returns:
        ``SamPrompt(coords (1, 2, 2) int32|float32, labels int32 [[2, 3]])``.
    """
    h, w = _check_geometry(frame_size, image_size)
    b = torch.as_tensor(box_xyxy, dtype=torch.float64).reshape(-1)
    if b.numel() != 4:
        raise ValueError(f"expected one box (x1, y1, x2, y2), got {b.numel()} values")
    x1, y1, x2, y2 = (float(v) for v in b)
    for name, v, lim, axis in (
        ("x1", x1, w, "x"),
        ("y1", y1, h, "y"),
        ("x2", x2, w, "x"),
        ("y2", y2, h, "y"),
    ):
        _check_inside(f"box {name}", v, lim, axis, (h, w), closed=name in ("x2", "y2"))
    if x2 < x1:
        raise ValueError(f"box has x2={x2} < x1={x1}; expected (x1, y1, x2, y2) with x1 <= x2")
    if y2 < y1:
        raise ValueError(f"box has y2={y2} < y1={y1}; expected (x1, y1, x2, y2) with y1 <= y2")
    sx1, sx2 = _to_sam_axis(x1, w, image_size), _to_sam_axis(x2, w, image_size)
    sy1, sy2 = _to_sam_axis(y1, h, image_size), _to_sam_axis(y2, h, image_size)
    labels = torch.tensor([list(BOX_LABELS)], dtype=torch.int32)
    if int_box_coords:
        eps = 1e-6  # keep exact integers exact despite float error in the mapping
        c = [
            [np.floor(sx1 + eps), np.floor(sy1 + eps)],
            [np.ceil(sx2 - eps), np.ceil(sy2 - eps)],
        ]
        return SamPrompt(torch.tensor([c], dtype=torch.int32), labels)
    return SamPrompt(torch.tensor([[[sx1, sy1], [sx2, sy2]]], dtype=torch.float32), labels)


# ----------------------------------------------------------------------------------------------------------
# prompts from ground-truth masks (datasets, PixelQA)


def _as_bool_mask(mask: MaskLike, what: str = "mask") -> torch.Tensor:
    m = torch.as_tensor(np.asarray(mask)) if isinstance(mask, np.ndarray) else mask.detach().cpu()
    if m.ndim != 2:
        raise ValueError(f"{what}: expected a 2-D (H, W) mask, got shape {tuple(m.shape)}")
    return m != 0 if m.dtype != torch.bool else m


def resize_mask(mask: MaskLike, size: int | Sequence[int]) -> torch.Tensor:
    """Resize (..., H, W) masks the reference's way: bilinear + antialias on 0/1 floats, then ``> 0``.

    ``> 0`` keeps every pixel touched by the object, so small/thin objects never vanish (the box/point read
    off the result is slightly dilated).  This reproduces the golden point/box prompts exactly.
    """
    m = torch.as_tensor(np.asarray(mask)) if isinstance(mask, np.ndarray) else mask.detach().cpu()
    if m.ndim < 2:
        raise ValueError(f"expected (..., H, W) masks, got shape {tuple(m.shape)}")
    out_hw = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    lead = m.shape[:-2]
    x = (m != 0).float().reshape(-1, 1, *m.shape[-2:])
    if tuple(x.shape[-2:]) != out_hw:
        x = F.interpolate(x, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return (x > 0).reshape(*lead, *out_hw)


def squared_distance_transform(mask: MaskLike) -> torch.Tensor:
    """Exact squared Euclidean distance of every True pixel to the nearest False pixel (0 on False pixels).

    Pure torch: a vertical pass (distance to the nearest background pixel in the same column, via cumulative
    max/min of background row indices) followed by an exact horizontal min-plus pass
    ``D(y, x) = min_x' g(y, x')^2 + (x - x')^2`` restricted to the foreground bounding box (columns outside it
    are background and are dominated by the box's neighbouring columns).  Equivalent to OpenCV's
    ``distanceTransform(DIST_L2, DIST_MASK_PRECISE)`` squared.  Pixels with no background anywhere get a
    distance larger than any real one.
    """
    fg = _as_bool_mask(mask)
    h, w = fg.shape
    out = torch.zeros((h, w), dtype=torch.int64)
    if not fg.any():
        return out
    big = h + w + 1
    rows = torch.arange(h, dtype=torch.int64).unsqueeze(1).expand(h, w)
    bg = ~fg
    above = torch.where(bg, rows, torch.full_like(rows, -big)).cummax(0).values
    below = torch.where(bg, rows, torch.full_like(rows, h + big)).flip(0).cummin(0).values.flip(0)
    g = torch.minimum(rows - above, below - rows).clamp(max=big)
    g2 = g * g
    ys, xs = torch.nonzero(fg, as_tuple=True)
    r0, r1 = int(ys.min()), int(ys.max()) + 1
    c0, c1 = int(xs.min()), int(xs.max()) + 1
    e0, e1 = max(c0 - 1, 0), min(c1 + 1, w)
    cand = torch.arange(e0, e1, dtype=torch.int64)
    tgt = torch.arange(c0, c1, dtype=torch.int64)
    dx2 = (tgt[:, None] - cand[None, :]) ** 2  # (Wb, Wc)
    sub = g2[r0:r1, e0:e1]  # (R, Wc)
    if int(sub.max()) + int(dx2.max()) < 2**31:  # int32 halves the memory traffic of the min-plus pass
        dx2, sub = dx2.to(torch.int32), sub.to(torch.int32)
    chunk = max(1, (1 << 22) // max(1, dx2.numel()))
    res = torch.empty((r1 - r0, c1 - c0), dtype=torch.int64)
    for i in range(0, r1 - r0, chunk):
        res[i : i + chunk] = (sub[i : i + chunk, None, :] + dx2[None]).amin(-1).to(torch.int64)
    out[r0:r1, c0:c1] = torch.where(fg[r0:r1, c0:c1], res, torch.zeros_like(res))
    return out


def _require_nonempty(m: torch.Tensor, what: str) -> None:
    if not m.any():
        raise ValueError(f"{what}: the mask is empty, no prompt can be derived from it")


def mask_center_point(mask: MaskLike) -> SamPrompt:
    """The mask pixel farthest from the mask boundary (SAM 2 ``get_next_point(..., 'center')``).

    As in SAM 2's ``sample_one_point_from_error_center`` with no prediction: the mask is zero-padded by one
    pixel (so the image border counts as boundary), the exact L2 distance transform is taken, the padding is
    cropped and the first maximum in raster order (numpy ``argmax``) wins.

    Returns:
        ``SamPrompt(coords float32 (1, 1, 2) = [[[x, y]]], labels int32 [[1]])`` in the mask's pixel grid.
    """
    m = _as_bool_mask(mask)
    _require_nonempty(m, "mask_center_point")
    d2 = squared_distance_transform(F.pad(m, (1, 1, 1, 1)))[1:-1, 1:-1]
    idx = int(torch.argmax(d2.reshape(-1)))  # torch.argmax returns the first maximal index
    w = m.shape[1]
    coords = torch.tensor([[[idx % w, idx // w]]], dtype=torch.float32)
    return SamPrompt(coords, torch.tensor([[POINT_LABEL]], dtype=torch.int32))


def _tight_box(m: torch.Tensor) -> tuple[int, int, int, int]:
    ys, xs = torch.nonzero(m, as_tuple=True)
    return int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())


def mask_tight_box(mask: MaskLike) -> SamPrompt:
    """Exact tight box (SAM 2 ``mask_to_box``: inclusive min/max pixel indices), int32 like the reference.

    Returns:
        ``SamPrompt(coords int32 (1, 2, 2) = [[[x1, y1], [x2, y2]]], labels int32 [[2, 3]])``.
    """
    m = _as_bool_mask(mask)
    _require_nonempty(m, "mask_tight_box")
    x1, y1, x2, y2 = _tight_box(m)
    return SamPrompt(
        torch.tensor([[[x1, y1], [x2, y2]]], dtype=torch.int32),
        torch.tensor([list(BOX_LABELS)], dtype=torch.int32),
    )


def sample_box_with_noise(
    mask: MaskLike,
    rng: np.random.Generator | None = None,
    noise: float = 0.1,
    noise_bound: float = 20.0,
) -> SamPrompt:
    """Tight box jittered like SAM training (``sample_box_points``), used for ``ref_box`` / ``mem_box`` data.

    Each coordinate moves by ``U(-1, 1) * min(noise * side, noise_bound)`` (side = box width for x, height
    for y, measured as ``max - min`` of the inclusive indices) and is clamped to ``[0, W-1] x [0, H-1]``.
    ``noise <= 0`` returns the exact int32 box (as PixelQA does with ``noise=-1``).

    Returns:
        ``SamPrompt(coords float32 (1, 2, 2), labels int32 [[2, 3]])`` (int32 coords when ``noise <= 0``).
    """
    if noise <= 0:
        return mask_tight_box(mask)
    m = _as_bool_mask(mask)
    _require_nonempty(m, "sample_box_with_noise")
    h, w = m.shape
    x1, y1, x2, y2 = _tight_box(m)
    rng = rng if rng is not None else np.random.default_rng()
    max_dx = min((x2 - x1) * noise, noise_bound)
    max_dy = min((y2 - y1) * noise, noise_bound)
    jitter = (2 * rng.random(4) - 1) * np.array([max_dx, max_dy, max_dx, max_dy])
    box = np.array([x1, y1, x2, y2], dtype=np.float64) + jitter
    box = np.clip(box, 0, np.array([w - 1, h - 1, w - 1, h - 1], dtype=np.float64))
    return SamPrompt(
        torch.tensor(box.reshape(1, 2, 2), dtype=torch.float32),
        torch.tensor([list(BOX_LABELS)], dtype=torch.int32),
    )


def sample_point_uniform(mask: MaskLike, rng: np.random.Generator | None = None) -> SamPrompt:
    """A positive point drawn uniformly among the mask pixels (SAM 2 ``get_next_point(..., 'uniform')``).

    Returns:
        ``SamPrompt(coords float32 (1, 1, 2) (integer pixel indices), labels int32 [[1]])``.
    """
    m = _as_bool_mask(mask)
    _require_nonempty(m, "sample_point_uniform")
    ys, xs = torch.nonzero(m, as_tuple=True)
    rng = rng if rng is not None else np.random.default_rng()
    k = int(rng.integers(0, ys.numel()))
    coords = torch.tensor([[[int(xs[k]), int(ys[k])]]], dtype=torch.float32)
    return SamPrompt(coords, torch.tensor([[POINT_LABEL]], dtype=torch.int32))


PromptKind = Literal["center_point", "uniform_point", "tight_box", "noisy_box"]


def mask_to_sam_prompt(
    mask: MaskLike,
    image_size: int,
    kind: PromptKind,
    rng: np.random.Generator | None = None,
) -> SamPrompt:
    """Prompt for one object from its (H, W) mask at original resolution, in S-space.

    The mask is resized to S x S with :func:`resize_mask` first, exactly as the reference does before calling
    SAM's point/box samplers.  ``center_point`` / ``tight_box`` are the deterministic PixelQA prompts;
    ``uniform_point`` / ``noisy_box`` the training ones.
    """
    m = resize_mask(_as_bool_mask(mask), image_size)
    if kind == "center_point":
        return mask_center_point(m)
    if kind == "tight_box":
        return mask_tight_box(m)
    if kind == "uniform_point":
        return sample_point_uniform(m, rng)
    if kind == "noisy_box":
        return sample_box_with_noise(m, rng)
    raise ValueError(f"unknown prompt kind {kind!r}")


def prompt_frame_position(frame_index: int, frame_indices: Sequence[int] | np.ndarray) -> int:
    """Position of an original frame index among the sampled frames (the value ``point_frames`` needs).

    Raises ValueError when the frame was not sampled; sample with
    :func:`unipixel.media.sample_frame_indices_with_keep` to guarantee it is.
    """
    idx = np.asarray(frame_indices).reshape(-1)
    hits = np.nonzero(idx == frame_index)[0]
    if hits.size == 0:
        raise ValueError(
            f"prompt frame {frame_index} is not among the sampled frames {idx.tolist()}; sample frames so that "
            "it is kept (sample_frame_indices_with_keep)"
        )
    return int(hits[0])


def collate_prompts(prompts: Sequence[SamPrompt], frames: Sequence[int]) -> dict[str, object]:
    """One sample's prompts in the model's input format (object order = ``<|ref|>`` order in the text).

    Returns ``point_coords`` (list of (1, n, 2) tensors), ``point_labels`` (list of (1, n) int32 tensors) and
    ``point_frames`` (LongTensor (n_obj,) of positions among the sampled frames).
    """
    if len(prompts) != len(frames):
        raise ValueError(f"got {len(prompts)} prompts but {len(frames)} prompt frames")
    return {
        "point_coords": [p.coords for p in prompts],
        "point_labels": [p.labels for p in prompts],
        "point_frames": torch.tensor([int(f) for f in frames], dtype=torch.int64),
    }


# ----------------------------------------------------------------------------------------------------------
# <|mem|> inputs


def build_refer_mask(
    masks: MaskLike,
    grid_thw: Sequence[int] | torch.Tensor | np.ndarray,
    patch_size: int = 14,
    merge_size: int = 2,
    temporal_patch_size: int = 2,
) -> torch.Tensor:
    """Per-object masks at original resolution -> ``refer_mask`` (gt, O, gh/2, gw/2) bool.

    As the reference builds it: odd T duplicates the last frame; temporal max-pool over frame pairs (one
    temporal group of the vision tower); bilinear antialiased resize of the 0/1 floats to
    (gh*14, gw*14) = the LLM frame size; 28 x 28 max-pool (one merged token); ``> 0``.  Any touched token
    counts, so the result is slightly dilated.

    Args:
        masks: (T, O, H, W) bool/0-1 masks of the T sampled frames (before even padding).
        grid_thw: the video's ``(gt, gh, gw)`` (shape (3,) or (1, 3)).
    """
    m = torch.as_tensor(np.asarray(masks)) if isinstance(masks, np.ndarray) else masks.detach().cpu()
    if m.ndim != 4:
        raise ValueError(f"masks must be (T, O, H, W), got shape {tuple(m.shape)}")
    g = torch.as_tensor(np.asarray(grid_thw) if not isinstance(grid_thw, torch.Tensor) else grid_thw)
    g = g.reshape(-1)
    if g.numel() != 3:
        raise ValueError(f"grid_thw must hold (gt, gh, gw), got {g.tolist()}")
    gt, gh, gw = (int(v) for v in g)
    if gh % merge_size or gw % merge_size:
        raise ValueError(f"grid (gh, gw) = ({gh}, {gw}) must be divisible by merge_size {merge_size}")
    m = _pad_frames(m != 0, temporal_patch_size)
    t, o, h, w = m.shape
    if t != gt * temporal_patch_size:
        raise ValueError(
            f"{m.shape[0]} (padded) frames do not match grid_t={gt} x temporal_patch_size={temporal_patch_size}"
        )
    x = m.reshape(gt, temporal_patch_size, o, h, w).amax(1).float()
    size = (gh * patch_size, gw * patch_size)
    if (h, w) != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    k = patch_size * merge_size
    return F.max_pool2d(x, kernel_size=k, stride=k) > 0


def _pad_frames(m: torch.Tensor, multiple: int) -> torch.Tensor:
    """Repeat the last entry of the first axis up to a multiple of ``multiple``."""
    pad = -m.shape[0] % multiple
    if pad == 0:
        return m
    return torch.cat([m, m[-1:].expand(pad, *m.shape[1:])], dim=0)


def mem_frame_groups(refer_mask: torch.Tensor) -> list[list[int]]:
    """Per object, the 1-based first frame ``2*g + 1`` of every temporal group g where its mask is non-empty.

    This is what the region prefix lists (``<t>-<t+1>``) and also the order of the ``<|mem|>`` embeddings
    the model pools (object-major, time ascending).
    """
    if refer_mask.ndim != 4:
        raise ValueError(f"refer_mask must be (gt, O, h, w), got shape {tuple(refer_mask.shape)}")
    present = refer_mask.flatten(2).any(-1)  # (gt, O)
    return [
        [2 * gi + 1 for gi in range(present.shape[0]) if bool(present[gi, o])]
        for o in range(present.shape[1])
    ]


def mem_prompt_text(
    refer_mask: torch.Tensor,
    num_frames: int | None = None,
    is_image: bool = False,
    object_ids: Sequence[int | str] | None = None,
    mem_token: str = "<|mem|>",
) -> str:
    """The region prefix the reference prepends to the first user turn for ``<|mem|>`` inputs.

    Video: ``"Here is a video with {T} frames denoted as <1> to <{T}>. The highlighted regions are as
    follows:\\n"`` then per object ``"[{oid}]: <t>-<t+1> <|mem|> ...\\n"`` for every non-empty temporal group
    (t = 2g+1; T = number of sampled frames before even padding, so an odd T can mention frame T+1 — the
    reference does this too).  Image: ``"Here is an image with the following highlighted regions:\\n"`` then
    ``"[{oid}]: <|mem|>\\n"``.

    One ``<|mem|>`` is written per non-empty (object, group) so that the token count always equals the number
    of embeddings the model pools; an object whose mask is empty everywhere gets a bare ``"[{oid}]:"`` line
    [inferred: the reference never feeds empty masks, PixelQA replaces them by all-ones masks].

    Args:
        refer_mask: output of :func:`build_refer_mask` (gt, O, h, w).
        num_frames: T; defaults to ``2 * gt`` for videos.
        is_image: write the image variant (requires gt == 1).
        object_ids: ids written in brackets (default 0..O-1).
    """
    groups = mem_frame_groups(refer_mask)
    ids = list(range(len(groups))) if object_ids is None else list(object_ids)
    if len(ids) != len(groups):
        raise ValueError(f"got {len(ids)} object ids for {len(groups)} objects in refer_mask")
    if is_image:
        if refer_mask.shape[0] != 1:
            raise ValueError(f"an image has one temporal group, refer_mask has {refer_mask.shape[0]}")
        lines = [f"[{oid}]:" + (f" {mem_token}" if g else "") for oid, g in zip(ids, groups, strict=True)]
        return "Here is an image with the following highlighted regions:\n" + "".join(
            f"{ln}\n" for ln in lines
        )
    t = 2 * int(refer_mask.shape[0]) if num_frames is None else int(num_frames)
    text = (
        f"Here is a video with {t} frames denoted as <1> to <{t}>. The highlighted regions are as follows:\n"
    )
    for oid, g in zip(ids, groups, strict=True):
        text += f"[{oid}]:" + "".join(f" <{s}>-<{s + 1}> {mem_token}" for s in g) + "\n"
    return text

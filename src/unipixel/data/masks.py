"""Shared helpers of the segmentation dataset readers: masks → COCO RLE, frame listing, file checks, prompts.

Every reader stores masks as COCO RLE dicts ``{"size": [h, w], "counts": str}`` (compressed, ASCII counts) so a
:class:`~unipixel.data.schema.Sample` stays JSON-serialisable.  The decoders here accept what the datasets ship:

* COCO polygons (list of ``[x0, y0, x1, y1, ...]``), uncompressed RLE (``counts`` list, e.g. COCO crowd
  annotations) and compressed RLE (``counts`` str/bytes) — :func:`to_rle`, via pycocotools like the reference;
* per-frame RLE lists with ``None`` for "object absent" (ReVOS / MeViS / LV-VIS / Ref-SAV ``mask_dict``) —
  :func:`union_rles`;
* palette/grayscale PNGs holding object ids (DAVIS / YouTube-VOS / GroundMoRe) — :func:`read_id_png`;
* LabelMe polygons drawn the way the reference draws them with OpenCV (ReasonSeg) — :func:`draw_polygon`.

Convention used by all readers: a video sample has a mask on **every** frame of its media; a frame where the
annotation says the object is absent gets an *empty* RLE (so "GT empty" is explicit and J := 1 when the
prediction is empty too), never a missing key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from .schema import SEG

__all__ = [
    "encode_mask",
    "decode_rle",
    "empty_rle",
    "to_rle",
    "union_rles",
    "rle_size",
    "draw_polygon",
    "read_id_png",
    "image_size",
    "list_frames",
    "numeric_stem_key",
    "load_json",
    "require_file",
    "require_dir",
    "normalize_query",
    "query_prompt",
    "sentence_prompt",
    "explanatory_prompt",
    "question_prompt",
    "description_prompt",
    "SEG_RESPONSE",
]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")

# ----------------------------------------------------------------------------------------------------------
# RLE


def encode_mask(mask: np.ndarray) -> dict[str, Any]:
    """(H, W) bool/0-1 array → compressed COCO RLE with ASCII ``counts`` (JSON-friendly)."""
    m = np.asfortranarray(np.asarray(mask).astype(np.uint8, copy=False) > 0, dtype=np.uint8)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {m.shape}")
    rle = mask_utils.encode(m)
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (compressed or uncompressed) → (H, W) bool array."""
    return mask_utils.decode(_compressed(rle, "mask")).astype(bool)


def empty_rle(height: int, width: int) -> dict[str, Any]:
    return encode_mask(np.zeros((height, width), dtype=np.uint8))


def rle_size(rle: dict[str, Any]) -> tuple[int, int]:
    h, w = rle["size"]
    return int(h), int(w)


def _compressed(rle: Any, what: str) -> dict[str, Any]:
    """Any COCO RLE dict → pycocotools' compressed form (``counts`` bytes)."""
    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError(f"{what}: expected a COCO RLE dict with 'size' and 'counts', got {_short(rle)}")
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE (COCO iscrowd annotations)
        return mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    if not isinstance(counts, bytes):
        raise ValueError(
            f"{what}: RLE counts must be a str, bytes or list of ints, got {type(counts).__name__}"
        )
    return {"size": [h, w], "counts": counts}


def _ascii(rle: dict[str, Any]) -> dict[str, Any]:
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def _short(x: Any, n: int = 80) -> str:
    s = repr(x)
    return s if len(s) <= n else s[:n] + "..."


def to_rle(segmentation: Any, height: int, width: int, what: str = "segmentation") -> dict[str, Any]:
    """A COCO ``segmentation`` (polygon list, uncompressed or compressed RLE) → one compressed RLE dict.

    Polygons of one object are merged (union), as ``frPyObjects`` + ``merge`` in the reference.  Uncompressed
    RLE (crowd annotations, ``counts`` a list) is handled too — the reference would crash on it (§10.16).
    """
    if isinstance(segmentation, dict):
        rle = _compressed(segmentation, what)
        if rle_size(rle) != (height, width):
            raise ValueError(
                f"{what}: RLE size {rle_size(rle)} differs from the image size {(height, width)}"
            )
        return _ascii(rle)
    if isinstance(segmentation, list) and segmentation:
        polys = segmentation if isinstance(segmentation[0], list) else [segmentation]
        for p in polys:
            if not isinstance(p, list) or len(p) < 6 or len(p) % 2:
                raise ValueError(
                    f"{what}: a polygon needs an even number (>= 6) of coordinates, got {_short(p)}"
                )
        rles = mask_utils.frPyObjects([[float(v) for v in p] for p in polys], height, width)
        return _ascii(mask_utils.merge(rles))
    raise ValueError(f"{what}: expected a polygon list or an RLE dict, got {_short(segmentation)}")


def union_rles(rles: Iterable[Any], size: tuple[int, int] | None, what: str = "mask") -> dict[str, Any]:
    """Union of RLEs (``None`` entries = absent object) → one compressed RLE; all ``None`` → empty mask.

    ``size`` is used when every entry is ``None``; it is checked against the RLE sizes otherwise.
    """
    comp = [_compressed(r, what) for r in rles if r is not None]
    if not comp:
        if size is None:
            raise ValueError(f"{what}: no RLE and no frame size to build an empty mask")
        return empty_rle(*size)
    sizes = {rle_size(r) for r in comp}
    if len(sizes) > 1 or (size is not None and sizes != {tuple(size)}):
        raise ValueError(f"{what}: RLE sizes {sorted(sizes)} differ (expected {size})")
    if len(comp) == 1:
        return _ascii(comp[0])
    return _ascii(mask_utils.merge(comp, intersect=False))


def first_rle_size(entries: Iterable[Any]) -> tuple[int, int] | None:
    """Size of the first non-``None`` RLE among ``entries`` (``None`` if all are ``None``)."""
    for r in entries:
        if r is not None:
            if not isinstance(r, dict) or "size" not in r:
                raise ValueError(f"expected a COCO RLE dict or None, got {_short(r)}")
            return int(r["size"][0]), int(r["size"][1])
    return None


# ----------------------------------------------------------------------------------------------------------
# Polygons drawn like OpenCV (ReasonSeg)

_XY_SHIFT = 16
_XY_ONE = 1 << _XY_SHIFT


def _cdiv(a: int, b: int) -> int:
    """C integer division (truncates toward zero), as in OpenCV's edge slopes."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _line8(canvas: np.ndarray, value: int, x0: int, y0: int, x1: int, y1: int) -> None:
    """8-connected Bresenham line from the left end point, as ``cv2.line(..., 1, LINE_8)`` (no clipping)."""
    h, w = canvas.shape
    if x1 < x0:
        x0, y0, x1, y1 = x1, y1, x0, y0
    dx, dy = x1 - x0, y1 - y0
    sy = -1 if dy < 0 else 1
    dy = abs(dy)
    steep = dy > dx
    major, minor = (dy, dx) if steep else (dx, dy)
    err = major - 2 * minor
    x, y = x0, y0
    for _ in range(major + 1):
        if 0 <= x < w and 0 <= y < h:
            canvas[y, x] = value
        step_minor = err < 0
        err += -2 * minor + (2 * major if step_minor else 0)
        if steep:
            y += sy
            x += 1 if step_minor else 0
        else:
            x += 1
            y += sy if step_minor else 0


def draw_polygon(canvas: np.ndarray, points: Sequence[Sequence[float]], value: int) -> None:
    """Fill ``points`` with ``value`` in place like ``cv2.polylines(.., True, v, 1)`` + ``cv2.fillPoly(.., v)``.

    The reference (``process_masks`` 'polygon') casts points to int32 (truncation) and draws with OpenCV;
    OpenCV is not a dependency here, so this re-implements its non-antialiased rasteriser: 16.16 fixed-point
    edges with truncated slopes, spans ``[ceil(x_left), floor(x_right)]`` per row, plus the 8-connected outline.
    Verified pixel-identical to OpenCV 4.x/5.x for polygons whose vertices lie inside the image; vertices
    outside the image can differ by a few boundary pixels (OpenCV clips the outline segments first).
    """
    arr = np.asarray(points, dtype=np.float64).reshape(-1, 2).astype(np.int32)  # truncation, as the reference
    pts = [(int(x), int(y)) for x, y in arr]
    if not pts:
        return
    h, w = canvas.shape
    edges = []
    for i in range(len(pts)):
        (x0, y0), (x1, y1) = pts[i - 1], pts[i]
        _line8(canvas, value, x0, y0, x1, y1)
        if y0 == y1:
            continue
        fx0, fx1 = x0 << _XY_SHIFT, x1 << _XY_SHIFT
        slope = _cdiv(fx1 - fx0, y1 - y0)
        edges.append((y0, y1, fx0, slope) if y0 < y1 else (y1, y0, fx1, slope))
    if len(edges) < 2:
        return
    for y in range(max(min(e[0] for e in edges), 0), min(max(e[1] for e in edges), h)):
        xs = sorted(xt + (y - yt) * s for yt, yb, xt, s in edges if yt <= y < yb)
        for a, b in zip(xs[0::2], xs[1::2], strict=False):  # an odd trailing x is ignored, as OpenCV
            left, right = (a + _XY_ONE - 1) >> _XY_SHIFT, b >> _XY_SHIFT
            if left < w and right >= 0:
                canvas[y, max(left, 0) : min(right, w - 1) + 1] = value


# ----------------------------------------------------------------------------------------------------------
# PNG id maps, frames, files


def read_id_png(path: Path) -> np.ndarray:
    """Object-id map of a palette ('P') or grayscale PNG (DAVIS / YouTube-VOS / GroundMoRe annotations)."""
    if not path.is_file():
        raise FileNotFoundError(f"annotation PNG not found: {path}")
    with Image.open(path) as im:
        if im.mode not in ("P", "L", "I", "I;16"):
            raise ValueError(
                f"{path}: expected a palette or grayscale PNG of object ids, got mode {im.mode!r}"
            )
        return np.asarray(im).astype(np.int64)


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image, reading only its header (used to size empty masks)."""
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    with Image.open(path) as im:
        return im.height, im.width


_LEADING_NON_DIGITS = re.compile(r"^\D*")


def numeric_stem_key(path: Path) -> tuple[int, str]:
    """Sort key ``int(stem without its leading non-digits)`` ('frame_000012' → 12), as GroundMoRe's loader."""
    digits = _LEADING_NON_DIGITS.sub("", path.stem)
    try:
        return int(digits), path.name
    except ValueError:
        raise ValueError(f"cannot read a frame number from file name {path.name!r} ({path.parent})") from None


def list_frames(folder: Path, exts: Sequence[str] = IMAGE_EXTS) -> list[Path]:
    """Image files of ``folder`` ordered by frame number (:func:`numeric_stem_key`)."""
    require_dir(folder, "frame folder")
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts]
    return sorted(files, key=numeric_stem_key)


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{what} not found: {path}")
    return path


def load_json(path: Path, what: str) -> Any:
    """Read a JSON file; a missing file raises FileNotFoundError and bad JSON a ValueError, both naming it."""
    require_file(path, what)
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{what} {path} is not valid JSON: {e}") from None


def get_field(entry: Any, key: str, where: str, types: type | tuple[type, ...] | None = None) -> Any:
    """``entry[key]`` with a clear error naming ``where`` when the entry is not a dict, lacks it or has a bad type."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a JSON object, got {_short(entry)}")
    if key not in entry:
        raise ValueError(f"{where}: missing field {key!r} (has {sorted(entry)})")
    value = entry[key]
    if types is not None and not isinstance(value, types):
        names = types.__name__ if isinstance(types, type) else "/".join(t.__name__ for t in types)
        raise ValueError(f"{where}: field {key!r} should be {names}, got {_short(value)}")
    return value


# ----------------------------------------------------------------------------------------------------------
# Prompt templates: the single template per type that the reference evaluation (infer_seg.py) uses (§4.2)

SEG_RESPONSE = f"The target is {SEG}."  # first of the reference's SEG_RESPONSES


def normalize_query(query: str) -> str:
    """Reference query normalisation: strip '.', lower-case the first char, drop a leading 'the '/'an '/'a '."""
    q = query.strip(".")
    if not q:
        raise ValueError(f"empty referring expression {query!r}")
    q = q[0].lower() + q[1:]
    for article in ("the ", "an ", "a "):
        if q.startswith(article):
            q = q[len(article) :]
    return q


def query_prompt(query: str, is_image: bool) -> str:
    return f"Please segment the {normalize_query(query)} in this {'image' if is_image else 'video'}."


def sentence_prompt(sentence: str) -> str:
    return f"{sentence} Please provide the segmentation mask."


def explanatory_prompt(sentence: str) -> str:
    return f"{sentence} Please provide the segmentation mask and explain why."


def question_prompt(question: str) -> str:
    return f"{question} Please answer the question and provide the segmentation mask."


def description_prompt(description: str) -> str:
    return f"Please segment the object according to the description: {description}"

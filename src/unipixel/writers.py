"""Output writers: overlays (PNG/JPEG/GIF/MP4), indexed palette PNGs, RLE JSON and benchmark submissions.

Why one module: the CLI, the demo, the HTTP server and the evaluation scripts all need the same few output
formats, and each must be written so that an interrupted run never leaves a half-written file that a later
step (an evaluation server, a zip, a browser) would take for a valid one.  Every file here is therefore written
through :func:`unipixel.results.atomic_output` (temp file in the same directory + ``os.replace``), parent
directories are created, and bad inputs raise ``ValueError`` naming the problem.

Masks are accepted in many shapes (see :func:`as_object_masks`): a :class:`~unipixel.results.UniPixelResult`,
``ObjectResult``\\ s, ``MaskTrack``\\ s, ``{id: masks}`` mappings or plain arrays.

Layouts written (facts about the benchmarks, not code taken from them):

* DAVIS-style indexed PNGs: ``<root>/<video>/<frame:05d>.png``, 'P' mode, DAVIS (= PASCAL VOC) palette,
  pixel value ``object id + 1``, 0 = background.
* Ref-YouTube-VOS: ``<root>/Annotations/<video_id>/<expression_id>/<frame_name>.png``, one binary 0/255 PNG per
  frame; the server takes a zip whose top level is ``Annotations/``.
* MeViS (valid / test servers): ``<root>/<video_id>/<expression_id>/<frame_name>.png`` 0/255 PNGs; the zip
  packages the video folders directly (no ``Annotations/`` level) -- as the MeViS README's sample submission
  shows.  Both functions take ``subdir`` to override this.
"""

from __future__ import annotations

import functools
import os
import zipfile
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from unipixel.results import (
    MaskTrack,
    ObjectResult,
    OverlapRule,
    UniPixelResult,
    _as_bool_masks,
    _to_numpy,
    atomic_output,
    paint_label_map,
)

__all__ = [
    "davis_palette",
    "object_color",
    "as_object_masks",
    "overlay_frames",
    "write_overlay",
    "write_palette_png",
    "write_palette_pngs",
    "read_palette_png",
    "write_rle_json",
    "write_davis_submission",
    "write_ytvos_submission",
    "write_mevis_submission",
    "write_binary_mask_png",
    "zip_submission",
    "video_encoder",
]

PathLike = str | os.PathLike[str]
MasksInput = Any  # UniPixelResult | ObjectResult | MaskTrack | Mapping[int, ...] | Sequence[...] | array

IMAGE_SUFFIXES = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
VIDEO_SUFFIXES = {".gif", ".mp4"}
_TMP_SUFFIX = ".tmp"


# ----------------------------------------------------------------------------------------------------------
# colours


@functools.lru_cache(maxsize=1)
def davis_palette() -> tuple[int, ...]:
    """The 256-entry DAVIS palette (identical to the PASCAL VOC colour map) as a flat RGB tuple (768 ints).

    Index 0 is black, 1 = (128, 0, 0), 2 = (0, 128, 0), 3 = (128, 128, 0), ... : the bits of the index are
    spread over the high bits of R, G and B.  DAVIS tools read only the indices, but viewers show these colours.
    """
    pal: list[int] = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return tuple(pal)


def object_color(obj_id: int) -> tuple[int, int, int]:
    """Deterministic, well-separated, bright RGB colour for an object id (golden-ratio hue steps).

    Why not the DAVIS palette for overlays: its first colours are dark (128, 0, 0) and hard to see when blended
    onto photos; the golden-ratio sequence keeps neighbouring ids far apart in hue for any number of objects.
    """
    h = (0.07 + obj_id * 0.6180339887498949) % 1.0
    s, v = (0.85, 1.0) if obj_id % 2 == 0 else (0.65, 0.9)
    i = int(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r, g, b = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i % 6]
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


# ----------------------------------------------------------------------------------------------------------
# input normalisation


def as_object_masks(masks: MasksInput) -> list[tuple[int, MaskTrack, list[float]]]:
    """Normalise mask inputs to ``[(object id, MaskTrack, per-row scores)]``.

    Accepted: ``UniPixelResult``; ``ObjectResult``; ``MaskTrack`` (id 0); ``{id: MaskTrack | array}``; a
    sequence of ``ObjectResult`` / ``MaskTrack`` / arrays (ids = ``ObjectResult.id`` or the position); an array or
    tensor of shape (N, T, H, W) (N objects), (T, H, W) (one object over T frames) or (H, W) (one object, one
    frame).
    """
    if isinstance(masks, UniPixelResult):
        return [(o.id, o.masks, list(o.scores)) for o in masks.objects]
    if isinstance(masks, ObjectResult):
        return [(masks.id, masks.masks, list(masks.scores))]
    if isinstance(masks, MaskTrack):
        return [(0, masks, [])]
    if isinstance(masks, Mapping):
        return [(int(k), _as_track(v), []) for k, v in masks.items()]
    if isinstance(masks, (list, tuple)):
        out: list[tuple[int, MaskTrack, list[float]]] = []
        for i, m in enumerate(masks):
            if isinstance(m, ObjectResult):
                out.append((m.id, m.masks, list(m.scores)))
            else:
                out.append((i, _as_track(m), []))
        return out
    arr = _to_numpy(masks)
    if arr.ndim == 4:
        return [(i, MaskTrack(arr[i]), []) for i in range(arr.shape[0])]
    if arr.ndim in (2, 3):
        return [(0, MaskTrack(arr), [])]
    raise ValueError(f"cannot interpret masks of type {type(masks).__name__} with shape {arr.shape}")


def _as_track(m: Any) -> MaskTrack:
    if isinstance(m, MaskTrack):
        return m
    if isinstance(m, ObjectResult):
        return m.masks
    return MaskTrack(m)


def _as_frames(frames: Any) -> np.ndarray:
    """(T, H, W, 3) uint8 from (T, H, W, 3) / (H, W, 3) arrays, tensors or a list of PIL images."""
    if isinstance(frames, Image.Image):
        frames = [frames]
    if isinstance(frames, (list, tuple)) and frames and isinstance(frames[0], Image.Image):
        frames = np.stack([np.asarray(f.convert("RGB")) for f in frames])
    arr = _to_numpy(frames)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) or (H, W, 3) RGB; got shape {arr.shape}")
    if arr.dtype != np.uint8:
        if np.issubdtype(arr.dtype, np.floating) and arr.size and float(arr.max()) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    return arr


def _resize_mask(m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if m.shape == hw:
        return m
    im = Image.fromarray(m.astype(np.uint8) * 255).resize((hw[1], hw[0]), Image.Resampling.NEAREST)
    return np.asarray(im) > 127


def _boundary(m: np.ndarray, thickness: int) -> np.ndarray:
    """Inner boundary of a mask (pixels with a 4-neighbour outside), grown to ``thickness`` pixels.

    The image border counts as inside (edge padding), so masks touching the border are not outlined along it.
    """
    p = np.pad(m, 1, mode="edge")
    interior = p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    b = m & ~interior
    for _ in range(max(0, thickness - 1)):
        q = np.pad(b, 1)
        b = b | q[:-2, 1:-1] | q[2:, 1:-1] | q[1:-1, :-2] | q[1:-1, 2:]
    return b & m


def _anchor(m: np.ndarray) -> tuple[int, int]:
    """A foreground pixel near the centroid (the centroid itself may fall outside a concave mask)."""
    ys, xs = np.nonzero(m)
    cy, cx = ys.mean(), xs.mean()
    k = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return int(xs[k]), int(ys[k])


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """PIL's bundled default font (no downloads); scalable on Pillow >= 10.1, bitmap fallback otherwise."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _draw_id(
    img: Image.Image, text: str, xy: tuple[int, int], color: tuple[int, int, int], size: int
) -> None:
    draw = ImageDraw.Draw(img)
    font = _font(size)
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    tw, th = x1 - x0, y1 - y0
    pad = max(1, size // 6)
    w, h = img.size
    left = min(max(0, xy[0] - tw // 2 - pad), max(0, w - tw - 2 * pad))
    top = min(max(0, xy[1] - th // 2 - pad), max(0, h - th - 2 * pad))
    draw.rectangle([left, top, left + tw + 2 * pad, top + th + 2 * pad], fill=color)
    lum = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    draw.text(
        (left + pad - x0, top + pad - y0), text, fill=(0, 0, 0) if lum > 140 else (255, 255, 255), font=font
    )


# ----------------------------------------------------------------------------------------------------------
# overlays


def overlay_frames(
    frames: Any,
    masks: MasksInput,
    *,
    alpha: float = 0.45,
    draw_ids: bool = True,
    draw_contours: bool = True,
    frame_indices: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """Blend every object's masks onto the frames; returns new uint8 (T, H, W, 3) frames.

    Each object gets :func:`object_color` of its id (same colour on every frame and in every output), a
    solid contour, and its id drawn near the mask centre with PIL's default font.  Objects are painted in
    order, so later objects cover earlier ones where they overlap.

    Frame alignment: ``frame_indices`` gives the original index of each row of ``frames``.  If omitted, a
    track with exactly T rows is mapped row by row; otherwise rows are looked up by original index, assuming
    ``frames`` is the clip from frame 0.  Frames without a mask are returned unchanged.  Masks of another
    resolution are resized (nearest) to the frame size.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    out = _as_frames(frames).copy()
    t_len, h, w = out.shape[:3]
    hw = (h, w)
    objs = as_object_masks(masks)
    fi = None if frame_indices is None else np.asarray(frame_indices, dtype=np.int64).reshape(-1)
    if fi is not None and fi.shape[0] != t_len:
        raise ValueError(f"frame_indices has {fi.shape[0]} entries for {t_len} frames")
    thickness = max(1, round(min(h, w) / 256))
    font_size = max(10, min(h, w) // 24)
    labels: list[list[tuple[int, tuple[int, int], tuple[int, int, int]]]] = [[] for _ in range(t_len)]
    for obj_id, track, _ in objs:
        color = np.asarray(object_color(obj_id), dtype=np.float32)
        positional = fi is None and len(track) == t_len
        for row in range(t_len):
            if positional:
                t: int | None = row
            else:
                t = track.row_of(int(fi[row]) if fi is not None else row)
            if t is None:
                continue
            m = _resize_mask(track.mask(t), hw)
            if not m.any():
                continue
            px = out[row][m].astype(np.float32)
            out[row][m] = np.clip(np.rint(px * (1.0 - alpha) + color * alpha), 0, 255).astype(np.uint8)
            if draw_contours:
                out[row][_boundary(m, thickness)] = color.astype(np.uint8)
            if draw_ids:
                labels[row].append((obj_id, _anchor(m), object_color(obj_id)))
    if draw_ids:
        for row, items in enumerate(labels):
            if not items:
                continue
            img = Image.fromarray(out[row])
            for obj_id, xy, color in items:
                _draw_id(img, str(obj_id), xy, color, font_size)
            out[row] = np.asarray(img)
    return out


@functools.lru_cache(maxsize=1)
def video_encoder() -> str:
    """Name of the H.264 or MPEG-4 Part 2 encoder this PyAV build offers (``libx264`` preferred)."""
    import av

    for name in ("libx264", "h264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - codec lookup raises various errors for missing encoders
            continue
    raise RuntimeError("this PyAV build has no libx264/h264/mpeg4 encoder; write a .gif instead")


def _write_mp4(tmp: Path, frames: np.ndarray, fps: float, crf: int) -> None:
    import av

    t, h, w = frames.shape[:3]
    # yuv420p subsamples chroma 2x2: odd sizes are padded by repeating the last row/column.
    ph, pw = h % 2, w % 2
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    codec = video_encoder()
    rate = Fraction(fps).limit_denominator(1001)
    container = av.open(str(tmp), mode="w", format="mp4")
    try:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height = w + pw, h + ph
        stream.pix_fmt = "yuv420p"
        if codec in ("libx264", "h264"):
            stream.options = {"crf": str(crf), "preset": "veryfast"}
        else:  # MPEG-4 Part 2 has no CRF: give it a generous bit rate instead
            stream.bit_rate = max(1_000_000, int(stream.width * stream.height * float(rate) * 0.3))
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    finally:
        container.close()


def _write_gif(tmp: Path, frames: np.ndarray, fps: float) -> None:
    images = [Image.fromarray(f) for f in frames]
    duration = max(10, int(round(1000.0 / fps)))  # GIF stores centiseconds; browsers clamp < 20 ms anyway
    images[0].save(
        tmp, format="GIF", save_all=True, append_images=images[1:], duration=duration, loop=0, optimize=False
    )


def write_overlay(
    path: PathLike,
    frames: Any,
    masks: MasksInput | None = None,
    *,
    fps: float = 10.0,
    alpha: float = 0.45,
    draw_ids: bool = True,
    draw_contours: bool = True,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    crf: int = 20,
) -> Path:
    """Render :func:`overlay_frames` and write it; the format follows the extension.

    ``.png``/``.jpg``/``.jpeg``: exactly one frame.  ``.gif``: PIL, looping, ``1000 / fps`` ms per frame (note:
    PIL merges identical consecutive frames into one longer frame, so the decoded count can be lower while the
    playback time stays right).  ``.mp4``: PyAV, H.264 (libx264, CRF ``crf``) or MPEG-4 Part 2 if no H.264
    encoder exists, yuv420p, odd sizes padded to even.  ``masks=None`` writes the frames as they are.
    """
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in IMAGE_SUFFIXES and suffix not in VIDEO_SUFFIXES:
        raise ValueError(f"unsupported overlay extension {p.suffix!r}; use .png, .jpg, .gif or .mp4")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    rendered = _as_frames(frames)
    if masks is not None:
        rendered = overlay_frames(
            rendered,
            masks,
            alpha=alpha,
            draw_ids=draw_ids,
            draw_contours=draw_contours,
            frame_indices=frame_indices,
        )
    if rendered.shape[0] == 0:
        raise ValueError("no frames to write")
    with atomic_output(p) as tmp:
        if suffix in IMAGE_SUFFIXES:
            if rendered.shape[0] != 1:
                raise ValueError(
                    f"{p.name}: a {suffix} file holds one frame, got {rendered.shape[0]}; use .gif or .mp4"
                )
            kwargs = {"quality": 95} if IMAGE_SUFFIXES[suffix] == "JPEG" else {}
            Image.fromarray(rendered[0]).save(tmp, format=IMAGE_SUFFIXES[suffix], **kwargs)
        elif suffix == ".gif":
            _write_gif(tmp, rendered, fps)
        else:
            _write_mp4(tmp, rendered, fps, crf)
    return p


# ----------------------------------------------------------------------------------------------------------
# palette PNGs and RLE JSON


def write_palette_png(path: PathLike, label_map: np.ndarray) -> Path:
    """Write an (H, W) integer map (values 0..255) as an indexed 'P' PNG with the DAVIS palette."""
    arr = _to_numpy(label_map)
    if arr.ndim != 2:
        raise ValueError(f"label map must be 2-D, got shape {arr.shape}")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise ValueError("palette PNG values must be in 0..255 (at most 255 objects)")
    img = Image.fromarray(arr.astype(np.uint8))
    img.putpalette(list(davis_palette()))
    with atomic_output(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


def read_palette_png(path: PathLike, return_palette: bool = False) -> Any:
    """Read an indexed PNG back as an (H, W) uint8 array of indices (and its flat RGB palette if asked).

    Why: round-trip checks and evaluation of written predictions must see the *indices*, never the RGB
    colours a viewer shows.  'L' images are returned as is; RGB images are rejected.
    """
    with Image.open(path) as im:
        if im.mode not in ("P", "L", "1"):
            raise ValueError(f"{path}: expected an indexed ('P') or grey PNG, got mode {im.mode!r}")
        arr = np.asarray(im if im.mode != "1" else im.convert("L"), dtype=np.uint8).copy()
        pal = im.getpalette() if im.mode == "P" else None
    return (arr, pal) if return_palette else arr


def _png_name(name: str) -> str:
    """Frame name -> PNG file name: keep a stem, replace an image suffix, add ``.png``."""
    stem, ext = os.path.splitext(name)
    return (stem if ext.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".webp"} else name) + ".png"


def _check_ids(objs: list[tuple[int, MaskTrack, list[float]]]) -> None:
    ids = [i for i, _, _ in objs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"object ids must be unique, got {ids}")
    bad = [i for i in ids if not 0 <= i <= 254]
    if bad:
        raise ValueError(f"palette PNGs store id + 1 in one byte: ids must be 0..254, got {bad}")


def _result_frames_and_size(masks: MasksInput) -> tuple[list[int], tuple[int, int] | None]:
    objs = as_object_masks(masks)
    if isinstance(masks, UniPixelResult):
        frames = sorted(set(masks.frame_indices) | {int(f) for _, tr, _ in objs for f in tr.frame_indices})
        size = masks.frame_size or (objs[0][1].size if objs else None)
    else:
        frames = sorted({int(f) for _, tr, _ in objs for f in tr.frame_indices})
        size = objs[0][1].size if objs else None
    return frames, size


def write_palette_pngs(
    directory: PathLike,
    masks: MasksInput,
    frame_names: Sequence[str] | None = None,
    *,
    overlap: OverlapRule = "last",
    frame_indices: Sequence[int] | None = None,
    name_format: str = "{:05d}",
) -> list[Path]:
    """One indexed PNG per frame: pixel value = object id + 1, 0 = background, DAVIS palette.

    Frames written: ``frame_indices`` if given (frames without masks come out empty), else every frame that
    has a mask (for a result, also its ``frame_indices``).  File names: ``frame_names[k]`` for the k-th written
    frame (an image suffix is replaced by ``.png``), else ``name_format.format(original_frame_index)``.

    Overlaps: ``"last"`` (default) -- the later object in the result's order wins, as when painting in order;
    ``"score"`` -- the higher per-frame object score wins (objects without scores lose to scored ones).
    """
    if overlap not in ("last", "score"):
        raise ValueError(f"overlap must be 'last' or 'score', got {overlap!r}")
    objs = as_object_masks(masks)
    _check_ids(objs)
    frames, size = _result_frames_and_size(masks)
    if frame_indices is not None:
        frames = [int(f) for f in frame_indices]
    if size is None:
        raise ValueError("cannot size empty PNGs: no objects and no frame_size")
    if frame_names is not None and len(frame_names) != len(frames):
        raise ValueError(f"{len(frame_names)} frame_names for {len(frames)} frames")
    out_dir = Path(directory)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for k, f in enumerate(frames):
        name = _png_name(frame_names[k]) if frame_names is not None else _png_name(name_format.format(f))
        paths.append(write_palette_png(out_dir / name, paint_label_map(objs, f, size, overlap)))
    return paths


def write_rle_json(path: PathLike, result: UniPixelResult, indent: int | None = None) -> Path:
    """Per-object COCO RLE JSON: :meth:`UniPixelResult.to_dict` written atomically (read back with
    :meth:`UniPixelResult.from_json`)."""
    return result.to_json(path, indent=indent)


# ----------------------------------------------------------------------------------------------------------
# benchmark submissions


def write_davis_submission(
    root: PathLike,
    video_name: str,
    result: MasksInput,
    *,
    num_frames: int | None = None,
    overlap: OverlapRule = "last",
) -> list[Path]:
    """DAVIS/Annotations-style indexed PNGs ``<root>/<video_name>/<frame:05d>.png`` (value = id + 1).

    ``num_frames`` writes every frame ``0..num_frames-1`` (the DAVIS evaluator expects one PNG per frame; frames
    the model did not segment come out empty); otherwise only the frames that have masks.
    """
    frames = None if num_frames is None else list(range(int(num_frames)))
    return write_palette_pngs(Path(root) / video_name, result, overlap=overlap, frame_indices=frames)


def write_binary_mask_png(path: PathLike, mask: np.ndarray) -> Path:
    """Write an (H, W) mask as an 8-bit grey PNG with values 0/255 (what the RVOS servers read)."""
    m = _as_bool_masks(mask)
    if m.shape[0] != 1:
        raise ValueError(f"expected one (H, W) mask, got shape {m.shape}")
    img = Image.fromarray(m[0].astype(np.uint8) * 255)
    with atomic_output(path) as tmp:
        img.save(tmp, format="PNG")
    return Path(path)


Combine = Literal["first", "union"]


def _expression_tracks(
    masks: MasksInput, n_frames: int, combine: Combine
) -> tuple[list[MaskTrack], tuple[int, int]]:
    """Tracks to merge for one expression (row-aligned with the caller's frame names) and the mask size."""
    if combine not in ("first", "union"):
        raise ValueError(f"combine must be 'first' or 'union', got {combine!r}")
    objs = as_object_masks(masks)
    if not objs:
        size = masks.frame_size if isinstance(masks, UniPixelResult) else None
        if size is None:
            raise ValueError("no objects and no frame_size: cannot write empty masks")
        return [], (int(size[0]), int(size[1]))
    chosen = [tr for _, tr, _ in (objs[:1] if combine == "first" else objs)]
    for tr in chosen:
        if len(tr) != n_frames:
            raise ValueError(f"an object has {len(tr)} mask frames but {n_frames} frame names were given")
        if tr.size != chosen[0].size:
            raise ValueError(f"objects have different mask sizes {tr.size} and {chosen[0].size}")
    return chosen, chosen[0].size


def _write_rvos_expression(
    root: PathLike,
    subdir: str,
    video_id: str,
    expression_id: str | int,
    masks: MasksInput,
    frame_names: Sequence[str],
    combine: Combine,
) -> list[Path]:
    base = Path(root) / subdir if subdir else Path(root)
    out_dir = base / str(video_id) / str(expression_id)
    tracks, size = _expression_tracks(masks, len(frame_names), combine)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, name in enumerate(frame_names):  # one frame at a time: long videos never need the dense stack
        m = np.zeros(size, dtype=bool)
        for tr in tracks:
            m |= tr.mask(k)
        paths.append(write_binary_mask_png(out_dir / _png_name(str(name)), m))
    return paths


def write_ytvos_submission(
    root: PathLike,
    video_id: str,
    expression_id: str | int,
    masks: MasksInput,
    frame_names: Sequence[str],
    *,
    combine: Combine = "first",
    subdir: str = "Annotations",
) -> list[Path]:
    """Ref-YouTube-VOS layout ``<root>/Annotations/<video_id>/<expression_id>/<frame_name>.png`` (0/255 PNGs).

    ``masks`` rows are matched to ``frame_names`` by position.  With several objects, ``combine="first"``
    keeps the first one (the reference scores only the first ``<|seg|>``), ``"union"`` merges them.  A result
    without objects writes all-zero masks (as the reference does on failure).
    """
    return _write_rvos_expression(root, subdir, video_id, expression_id, masks, frame_names, combine)


def write_mevis_submission(
    root: PathLike,
    video_id: str,
    expression_id: str | int,
    masks: MasksInput,
    frame_names: Sequence[str],
    *,
    combine: Combine = "first",
    subdir: str = "",
) -> list[Path]:
    """MeViS layout ``<root>/<video_id>/<expression_id>/<frame_name>.png`` (0/255 PNGs).

    Same as :func:`write_ytvos_submission` except that the MeViS server wants the video folders at the top of
    the zip (no ``Annotations/`` level); pass ``subdir="Annotations"`` for a tree identical to Ref-YouTube-VOS.
    """
    return _write_rvos_expression(root, subdir, video_id, expression_id, masks, frame_names, combine)


def zip_submission(root: PathLike, zip_path: PathLike, *, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    """Zip every file under ``root`` (paths relative to ``root``, sorted) into ``zip_path`` atomically.

    Leftover temp files of interrupted writers (``.<name>.*.tmp``) and the zip itself are skipped.
    """
    src = Path(root)
    if not src.is_dir():
        raise FileNotFoundError(f"submission root {src} is not a directory")
    dst = Path(zip_path).resolve()
    files = sorted(
        p
        for p in src.rglob("*")
        if p.is_file()
        and p.resolve() != dst
        and not (p.name.startswith(".") and p.name.endswith(_TMP_SUFFIX))
    )
    if not files:
        raise ValueError(f"submission root {src} contains no files")
    with atomic_output(dst) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=compression) as zf:
            for p in files:
                zf.write(p, p.relative_to(src).as_posix())
    return Path(zip_path)

"""Media loading and the two visual preprocessing paths of UniPixel.

UniPixel feeds every input (image, frame folder, video file) to two consumers:

* the Qwen2.5-VL vision tower, which receives the frames as a *frame-list video*: each frame is resized
  with the qwen-vl-utils ``smart_resize`` rule (factor 28) using PIL bicubic, the list is padded to an even
  length by repeating the last frame (so an image becomes two identical frames = one temporal group), and the
  HF video processor is called with ``do_resize=False``; frame lists always get fps 2, hence
  ``second_per_grid_ts = temporal_patch_size / 2 = 1.0``;
* SAM 2, which receives the same frames squashed to ``S x S`` (aspect ratio not kept), ImageNet-normalised.

Everything here works on uint8 RGB numpy frames of shape ``(T, H, W, 3)`` so that the two paths start from
identical pixels.  Video files are decoded with PyAV; when only ``num_frames`` frames are requested, the file
is demuxed once to count frames and decoded once more keeping only the sampled frames, so the whole clip is
never held in memory.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

__all__ = [
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Media",
    "count_frames",
    "load_media",
    "sample_frame_indices",
    "sample_frame_indices_with_keep",
    "smart_resize",
    "resize_for_llm",
    "pad_to_even",
    "sam2_transform",
    "llm_pixel_budget",
    "llm_video_inputs",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_EXTENSIONS: frozenset[str] = frozenset(
    {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".flv", ".wmv", ".mpg", ".mpeg", ".3gp", ".ts", ".gif"}
)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

SamplingMode = Literal["uniform", "random", "all"]

# qwen-vl-utils constants (the reference resizes frame lists with its rules, not with the HF processor's).
MAX_ASPECT_RATIO = 200
FRAME_FACTOR = 2


@dataclass
class Media:
    """Decoded frames plus the metadata the pipeline needs.

    Attributes:
        frames: uint8 RGB array of shape (T, H, W, 3) (T = 1 for images).
        fps: native frame rate of a video file, ``None`` for images, frame folders and arrays.
        is_image: True only for single images (path, PIL image, (H, W, 3) array); it decides e.g. whether the
            region prompt says "image" or "video".  Frame sequences of length 1 are not images.
        frame_indices: original index of every kept frame (int64, length T), needed to map predictions
            back to the source clip and to place prompt frames.
        source: human-readable description of where the frames came from.
        total_frames: number of frames in the source before sampling.
    """

    frames: np.ndarray
    fps: float | None
    is_image: bool
    frame_indices: np.ndarray
    source: str
    total_frames: int | None = None

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frame_size(self) -> tuple[int, int]:
        """(H, W) of the original frames (SAM 2 masks are returned at this size)."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])


# ----------------------------------------------------------------------------------------------------------
# frame sampling


def sample_frame_indices(
    num_total: int,
    num_frames: int | None,
    mode: SamplingMode = "uniform",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Pick which of ``num_total`` frames to keep.

    * ``"uniform"`` (evaluation / inference): the reference's ``load_frames`` formula
      ``round(arange(0, n, (n - 1) / (k - 1)))``, i.e. ``round(i * (n - 1) / (k - 1))`` for i in 0..k-1, so the
      first and the last frame are always kept.  Rounding is numpy's half-to-even, as in the reference.
      ``k == 1`` keeps frame 0 (the limit of the formula; the reference divides by zero there).
    * ``"random"`` (training): split ``[0, n)`` into k equal segments (boundaries ``linspace(0, n, k+1)``
      truncated to int) and draw one index uniformly inside each segment.
    * ``"all"``: every frame.

    When ``num_total <= num_frames`` (or ``num_frames`` is None) every frame is returned: the reference
    never up-samples a short clip by repeating frames.

    Returns:
        int64 array of sorted original frame indices.
    """
    if num_total <= 0:
        raise ValueError(f"cannot sample frames from a clip with {num_total} frames")
    if mode not in ("uniform", "random", "all"):
        raise ValueError(f"unknown sampling mode {mode!r}; expected 'uniform', 'random' or 'all'")
    if num_frames is not None and num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if mode == "all" or num_frames is None or num_total <= num_frames:
        return np.arange(num_total, dtype=np.int64)
    if num_frames == 1:
        return np.zeros(1, dtype=np.int64)
    if mode == "uniform":
        step = (num_total - 1) / (num_frames - 1)
        return np.round(np.arange(num_frames) * step).astype(np.int64)
    rng = rng if rng is not None else np.random.default_rng()
    bounds = np.linspace(0, num_total, num_frames + 1).astype(np.int64)
    lo, hi = bounds[:-1], np.maximum(bounds[1:], bounds[:-1] + 1)
    return (lo + np.floor(rng.random(num_frames) * (hi - lo)).astype(np.int64)).astype(np.int64)


def sample_frame_indices_with_keep(num_total: int, num_frames: int, keep: int) -> np.ndarray:
    """Uniform sampling that is guaranteed to contain frame ``keep``.

    Used when a visual prompt lives on a specific frame (VideoRefer-Bench / PixelQA, reference
    ``load_frames_with_inds_keep``): the uniformly sampled index nearest to ``keep`` (first one on ties) is
    replaced by ``keep``.  [inferred from the reference's description; it keeps the order sorted because
    ``keep`` lies between the neighbours of the index it replaces.]
    """
    if not 0 <= keep < num_total:
        raise ValueError(f"keep frame {keep} is outside the clip (0..{num_total - 1})")
    idx = sample_frame_indices(num_total, num_frames, "uniform")
    if keep not in idx:
        idx[int(np.argmin(np.abs(idx - keep)))] = keep
    return idx


# ----------------------------------------------------------------------------------------------------------
# loading


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB conversion as qwen-vl-utils does it: transparent images are composited over white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.split()[3])
        return background
    return img.convert("RGB")


def _read_image(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            # Phone photos store "rotate 90°" in EXIF; viewers apply it, so prompts and masks must too.
            upright = ImageOps.exif_transpose(img)
            return np.asarray(_to_rgb(upright), dtype=np.uint8).copy()
    except OSError as e:  # PIL raises UnidentifiedImageError (an OSError) for corrupt files
        raise ValueError(f"cannot read image {path}: {e}") from e


_NUMBER = re.compile(r"\d+")


def _frame_sort_key(path: Path) -> tuple[Any, ...]:
    """Sort key for frame files: the last integer in the file name ('frame_00012.jpg' -> 12), then the name."""
    nums = _NUMBER.findall(path.stem)
    return (int(nums[-1]) if nums else -1, path.name)


def _list_frame_files(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not files:
        raise ValueError(
            f"frame folder {folder} contains no image files (looked for {sorted(IMAGE_EXTENSIONS)})"
        )
    if all(_NUMBER.search(p.stem) for p in files):
        return sorted(files, key=_frame_sort_key)
    # Without numbers everywhere fall back to a natural sort of the names.
    return sorted(files, key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.name)])


def _stack_frames(frames: Sequence[np.ndarray], what: str) -> np.ndarray:
    sizes = {f.shape[:2] for f in frames}
    if len(sizes) > 1:
        raise ValueError(f"{what}: all frames must have the same size, got (H, W) sizes {sorted(sizes)}")
    return np.stack(frames, axis=0)


def _check_array(arr: np.ndarray, what: str) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise ValueError(f"{what}: expected dtype uint8 (0..255 RGB), got {arr.dtype}")
    if arr.ndim not in (3, 4) or arr.shape[-1] != 3:
        raise ValueError(f"{what}: expected shape (H, W, 3) or (T, H, W, 3), got {tuple(arr.shape)}")
    if arr.ndim == 4 and arr.shape[0] == 0:
        raise ValueError(f"{what}: the frame array is empty (T = 0)")
    if arr.shape[-3] == 0 or arr.shape[-2] == 0:
        raise ValueError(f"{what}: frames have zero size {tuple(arr.shape)}")
    return arr


def _select(
    num_total: int,
    num_frames: int | None,
    sampling: SamplingMode,
    rng: np.random.Generator | None,
    indices: Sequence[int] | None,
) -> np.ndarray:
    if indices is not None:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == 0:
            raise ValueError("indices must not be empty")
        bad = idx[(idx < 0) | (idx >= num_total)]
        if bad.size:
            raise ValueError(f"frame indices {bad.tolist()} are outside the clip (0..{num_total - 1})")
        return idx
    return sample_frame_indices(num_total, num_frames, sampling, rng)


def _open_container(path: Path) -> Any:
    import av

    try:
        container = av.open(str(path))
    except Exception as e:  # av.error.* (InvalidDataError, ...) are not a stable hierarchy across versions
        raise ValueError(f"cannot open video {path}: {e}") from e
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path} has no video stream")
    return container


def _count_video_frames(path: Path) -> int:
    """Count frames by demuxing (no decoding); packets of a video stream carry one frame each."""
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        count = 0
        for packet in container.demux(stream):
            if packet.size > 0:
                count += 1
        return count
    finally:
        container.close()


def _decode_video(path: Path, wanted: set[int] | None) -> tuple[dict[int, np.ndarray], int, float | None]:
    """Decode frames in presentation order, keeping only ``wanted`` (all when None).

    Returns (kept frames by index, number of frames decoded, fps).  Stops as soon as the last wanted frame
    has been decoded, so sampling the start of a long clip is cheap.
    """
    container = _open_container(path)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        last = max(wanted) if wanted else None
        kept: dict[int, np.ndarray] = {}
        n = 0
        try:
            for frame in container.decode(stream):
                if wanted is None or n in wanted:
                    kept[n] = frame.to_ndarray(format="rgb24")
                n += 1
                if last is not None and n > last:
                    break
        except Exception as e:
            if n == 0:
                raise ValueError(f"cannot decode video {path}: {e}") from e
            # A truncated tail: keep what was decoded (the count below tells the caller).
        return kept, n, fps
    finally:
        container.close()


def _load_video(
    path: Path,
    num_frames: int | None,
    sampling: SamplingMode,
    rng: np.random.Generator | None,
    indices: Sequence[int] | None,
) -> Media:
    if indices is None and (num_frames is None or sampling == "all"):
        kept, n, fps = _decode_video(path, None)
        if n == 0:
            raise ValueError(f"video {path} contains no decodable frames")
        idx = np.arange(n, dtype=np.int64)
    else:
        total = _count_video_frames(path)
        if total == 0:
            raise ValueError(f"video {path} contains no frames")
        idx = _select(total, num_frames, sampling, rng, indices)
        kept, n, fps = _decode_video(path, set(idx.tolist()))
        if n == 0:
            raise ValueError(f"video {path} contains no decodable frames")
        if len(kept) < len(set(idx.tolist())):
            # The packet count over-estimated the decodable frames: decode everything once to get the true
            # count, then sample again against it.  Explicit indices cannot be repaired.
            if indices is not None:
                raise ValueError(
                    f"video {path} has only {n} decodable frames; requested indices up to {int(idx.max())}"
                )
            _, n_true, _ = _decode_video(path, set())
            total = n_true
            idx = _select(total, num_frames, sampling, rng, None)
            kept, n, fps = _decode_video(path, set(idx.tolist()))
        n = total
    frames = _stack_frames([kept[int(i)] for i in idx], f"video {path}")
    return Media(frames, fps, False, idx, str(path), total_frames=int(n))


def _load_frame_files(
    files: Sequence[Path],
    source: str,
    num_frames: int | None,
    sampling: SamplingMode,
    rng: np.random.Generator | None,
    indices: Sequence[int] | None,
) -> Media:
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"frame file not found: {f}")
        if f.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"unsupported frame file extension {f.suffix!r} ({f}); expected an image")
    idx = _select(len(files), num_frames, sampling, rng, indices)
    frames = _stack_frames([_read_image(files[int(i)]) for i in idx], source)
    return Media(frames, None, False, idx, source, total_frames=len(files))


def _from_array(
    arr: np.ndarray,
    what: str,
    num_frames: int | None,
    sampling: SamplingMode,
    rng: np.random.Generator | None,
    indices: Sequence[int] | None,
) -> Media:
    arr = _check_array(arr, what)
    if arr.ndim == 3:
        return Media(np.ascontiguousarray(arr[None]), None, True, np.zeros(1, np.int64), what, 1)
    idx = _select(arr.shape[0], num_frames, sampling, rng, indices)
    return Media(np.ascontiguousarray(arr[idx]), None, False, idx, what, int(arr.shape[0]))


def count_frames(source: str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor | Sequence[Any]) -> int:
    """How many frames ``source`` has (1 for an image), without decoding a video (its packets are counted).

    Lets callers choose frame indices before they decode anything (e.g. keep the frame a prompt points at).
    Raises like :func:`load_media` on a missing path or an unsupported source.
    """
    if isinstance(source, Image.Image):
        return 1
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return 1 if source.ndim == 3 else int(source.shape[0])
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"media not found: {path}")
        if path.is_dir():
            return len(_list_frame_files(path))
        ext = path.suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            return 1
        if ext in VIDEO_EXTENSIONS:
            return _count_video_frames(path)
        raise ValueError(
            f"unsupported media extension {ext!r} for {path}; images: {sorted(IMAGE_EXTENSIONS)}, "
            f"videos: {sorted(VIDEO_EXTENSIONS)}"
        )
    if isinstance(source, Sequence):
        return len(source)
    raise ValueError(f"unsupported media source of type {type(source).__name__}")


def load_media(
    source: str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor | Sequence[Any],
    num_frames: int | None = None,
    sampling: SamplingMode = "uniform",
    rng: np.random.Generator | None = None,
    indices: Sequence[int] | None = None,
) -> Media:
    """Load an image, a video or a frame sequence as uint8 RGB frames.

    Args:
        source: an image file, a video file (decoded with PyAV), a folder of frame images (ordered by the
            last number in each file name, like the reference), a PIL image, a list of PIL images or image
            paths, a uint8 numpy array (H, W, 3) / (T, H, W, 3), or a uint8 torch tensor of the same shapes
            (channels-first (3, H, W) / (T, 3, H, W) tensors are accepted too).
        num_frames: keep at most this many frames (None = all).  Images ignore it.
        sampling: ``"uniform"``, ``"random"`` or ``"all"``; see :func:`sample_frame_indices`.
        rng: generator for ``"random"`` sampling.
        indices: explicit original frame indices to keep (overrides ``num_frames``/``sampling``).

    Only the selected frames are decoded/read for video files, frame folders and path lists.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: unsupported extension, empty folder, a video without frames, wrong array shape/dtype,
            frames of different sizes in one sequence.
    """
    if isinstance(source, Image.Image):
        frame = np.asarray(_to_rgb(source), dtype=np.uint8).copy()
        return Media(frame[None], None, True, np.zeros(1, np.int64), "PIL image", 1)
    if isinstance(source, torch.Tensor):
        t = source.detach().cpu()
        if t.dtype != torch.uint8:
            raise ValueError(f"tensor input: expected dtype torch.uint8, got {t.dtype}")
        if t.ndim in (3, 4) and t.shape[-1] != 3 and t.shape[-3] == 3:
            t = t.movedim(-3, -1)  # channels-first -> channels-last
        return _from_array(t.numpy(), "tensor", num_frames, sampling, rng, indices)
    if isinstance(source, np.ndarray):
        return _from_array(source, "array", num_frames, sampling, rng, indices)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"media not found: {path}")
        if path.is_dir():
            return _load_frame_files(
                _list_frame_files(path), f"frame folder {path}", num_frames, sampling, rng, indices
            )
        ext = path.suffix.lower()
        if ext in IMAGE_EXTENSIONS:
            return Media(_read_image(path)[None], None, True, np.zeros(1, np.int64), str(path), 1)
        if ext in VIDEO_EXTENSIONS:
            return _load_video(path, num_frames, sampling, rng, indices)
        raise ValueError(
            f"unsupported media extension {ext!r} for {path}; images: {sorted(IMAGE_EXTENSIONS)}, "
            f"videos: {sorted(VIDEO_EXTENSIONS)}"
        )
    if isinstance(source, Sequence):
        items = list(source)
        if not items:
            raise ValueError("empty frame list")
        if all(isinstance(x, (str, os.PathLike)) for x in items):
            return _load_frame_files(
                [Path(x) for x in items], "frame list", num_frames, sampling, rng, indices
            )
        if all(isinstance(x, Image.Image) for x in items):
            idx = _select(len(items), num_frames, sampling, rng, indices)
            frames = [np.asarray(_to_rgb(items[int(i)]), dtype=np.uint8) for i in idx]
            return Media(_stack_frames(frames, "frame list"), None, False, idx, "frame list", len(items))
        if all(isinstance(x, np.ndarray) for x in items):
            for x in items:
                if x.ndim != 3:
                    raise ValueError(f"frame list: each array must be (H, W, 3), got {tuple(x.shape)}")
            idx = _select(len(items), num_frames, sampling, rng, indices)
            frames = [_check_array(items[int(i)], "frame list") for i in idx]
            return Media(_stack_frames(frames, "frame list"), None, False, idx, "frame list", len(items))
        kinds = sorted({type(x).__name__ for x in items})
        raise ValueError(f"frame list must hold only paths, only PIL images or only arrays, got {kinds}")
    raise ValueError(f"unsupported media source of type {type(source).__name__}")


# ----------------------------------------------------------------------------------------------------------
# LLM (Qwen2.5-VL) path


def smart_resize(
    height: int,
    width: int,
    factor: int = 28,
    min_pixels: int = 128 * 28 * 28,
    max_pixels: int = 256 * 28 * 28,
) -> tuple[int, int]:
    """Target (h, w) for the Qwen2.5-VL vision tower (the qwen-vl-utils rule the reference uses).

    Both sides are rounded to the nearest multiple of ``factor`` (at least ``factor``); if the area then
    exceeds ``max_pixels`` the image is scaled down keeping the aspect ratio and *floored* to multiples of
    ``factor``; if it is below ``min_pixels`` it is scaled up and *ceiled*.  Python's ``round`` (half to
    even) is used, as in the reference.

    Raises:
        ValueError: non-positive sizes, aspect ratio above 200, or a side that would shrink to 0 (an extremely
            elongated image under a small ``max_pixels``; the reference would crash later on it).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got height={height}, width={width}")
    ratio = max(height, width) / min(height, width)
    if ratio > MAX_ASPECT_RATIO:
        raise ValueError(f"absolute aspect ratio must be at most {MAX_ASPECT_RATIO}, got {ratio:.1f}")
    h_bar = max(factor, round(height / factor) * factor)
    w_bar = max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar = math.floor(height / beta / factor) * factor
        w_bar = math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    if h_bar < factor or w_bar < factor:
        raise ValueError(
            f"image {height}x{width} is too small/elongated for max_pixels={max_pixels}: "
            f"a side would be resized to {min(h_bar, w_bar)} < {factor}"
        )
    return h_bar, w_bar


def llm_pixel_budget(
    num_frames: int,
    sample_frames: int = 16,
    min_pixels: int = 128 * 28 * 28,
    max_pixels: int = 256 * 28 * 28,
) -> tuple[int, int]:
    """Per-frame (min_pixels, max_pixels) of the reference inference/eval scripts.

    ``max_pixels * max(1, min(sample_frames // num_frames, sample_frames))``: fewer frames get more pixels
    each, so an image (1 frame) is allowed 16x the per-frame budget of a 16-frame clip.
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    return min_pixels, max_pixels * max(1, min(sample_frames // num_frames, sample_frames))


def resize_for_llm(
    frames: np.ndarray,
    min_pixels: int,
    max_pixels: int,
    factor: int = 28,
) -> np.ndarray:
    """Resize (T, H, W, 3) uint8 frames to the ``smart_resize`` size with PIL bicubic, frame by frame.

    The reference resizes frame lists one PIL image at a time (``image.resize((w, h))``, default bicubic);
    PIL returns an unchanged copy when the size already matches, so this is the identity then.
    """
    frames = _check_array(np.asarray(frames), "resize_for_llm")
    if frames.ndim == 3:
        frames = frames[None]
    h, w = frames.shape[1:3]
    new_h, new_w = smart_resize(h, w, factor=factor, min_pixels=min_pixels, max_pixels=max_pixels)
    if (new_h, new_w) == (h, w):
        return frames
    out = np.empty((frames.shape[0], new_h, new_w, 3), dtype=np.uint8)
    for i, f in enumerate(frames):
        out[i] = np.asarray(Image.fromarray(f).resize((new_w, new_h), Image.Resampling.BICUBIC))
    return out


def pad_to_even(frames: np.ndarray | torch.Tensor, multiple: int = FRAME_FACTOR) -> np.ndarray | torch.Tensor:
    """Repeat the last frame until the count is a multiple of ``multiple`` (2 = Qwen's temporal patch).

    The reference pads frame lists this way before the processor, so an image becomes two identical frames.
    Works on numpy arrays and torch tensors with frames on the first axis.
    """
    n = frames.shape[0]
    if n == 0:
        raise ValueError("cannot pad an empty frame sequence")
    pad = -n % multiple
    if pad == 0:
        return frames
    if isinstance(frames, torch.Tensor):
        return torch.cat([frames, frames[-1:].expand(pad, *frames.shape[1:])], dim=0)
    return np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)], axis=0)


def llm_video_inputs(
    frames: np.ndarray,
    processor: Any,
    min_pixels: int,
    max_pixels: int,
    fps: float = 2.0,
) -> dict[str, torch.Tensor]:
    """Vision-tower inputs for a frame-list "video", exactly as the reference builds them.

    smart resize (PIL bicubic) -> even padding -> HF ``Qwen2VLVideoProcessor`` with ``do_resize=False`` and
    ``do_sample_frames=False``.  ``processor`` may be the video processor itself or a full processor with a
    ``video_processor`` attribute.  Frame lists get fps 2 in the reference, so
    ``second_per_grid_ts = temporal_patch_size / fps = 1.0``.

    Returns:
        dict with ``pixel_values_videos`` (N, C*t*p*p) float32, ``video_grid_thw`` (1, 3) int64 and
        ``second_per_grid_ts`` (1,) float32.
    """
    vp = getattr(processor, "video_processor", processor)
    resized = pad_to_even(resize_for_llm(frames, min_pixels, max_pixels), vp.temporal_patch_size)
    video = torch.from_numpy(np.ascontiguousarray(resized)).permute(0, 3, 1, 2)
    kwargs: dict[str, Any] = {"do_resize": False, "do_sample_frames": False, "return_tensors": "pt"}
    if hasattr(vp, "cap_pixels_per_frame"):
        kwargs["cap_pixels_per_frame"] = False  # irrelevant without resizing; silences a transformers warning
    out = vp(videos=[video], **kwargs)
    return {
        "pixel_values_videos": out["pixel_values_videos"],
        "video_grid_thw": out["video_grid_thw"],
        "second_per_grid_ts": torch.tensor([vp.temporal_patch_size / fps], dtype=torch.float32),
    }


# ----------------------------------------------------------------------------------------------------------
# SAM 2 path


def sam2_transform(
    frames: np.ndarray | torch.Tensor,
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    chunk: int = 16,
) -> torch.Tensor:
    """SAM 2 input: (T, H, W, 3) uint8 -> (T, 3, S, S) float32.

    ``/255`` -> bilinear, antialiased resize to S x S (aspect ratio NOT kept; masks come back by resizing the
    logits to (H, W)) -> ImageNet mean/std.  Identical to the reference's ``ToTensor -> Resize((S, S)) ->
    Normalize``.  Frames are converted in chunks so a long clip never exists as full-resolution floats.
    """
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = _check_array(np.asarray(frames), "sam2_transform")
    if frames.ndim == 3:
        frames = frames[None]
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    out = torch.empty((frames.shape[0], 3, image_size, image_size), dtype=torch.float32)
    for i in range(0, frames.shape[0], chunk):
        x = torch.from_numpy(np.ascontiguousarray(frames[i : i + chunk])).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-2:] != (image_size, image_size):
            x = F.interpolate(
                x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
            )
        out[i : i + chunk] = (x - m) / s
    return out

"""``unipixel serve``: an HTTP server (FastAPI + uvicorn) that answers prompts about images/videos with text
plus per-object COCO-RLE masks.

Why it looks the way it does:

* **One model, one worker thread.**  A UniPixel model is large and not re-entrant (generation keeps per-call
  state), and running two requests at once on one GPU/CPU only makes both slower.  Every request is therefore
  queued onto a single-thread executor that owns the model; the asyncio event loop never runs inference, so
  ``/health`` and new uploads stay responsive while the model is busy.
* **Bounded everything.**  Request bodies (413), frames per request (422), prompt length (422), frame size
  (422) and the queue itself (503 + ``Retry-After``) are limited, because one careless client must not be able
  to exhaust the memory of a shared inference box.  Bodies are counted while they stream in, so an oversized
  upload is refused without being buffered.
* **Reject early, explain clearly.**  Everything that can be checked without the model (JSON syntax, point and
  box shapes, prompt frames against the clip length, coordinates against the frame size, whether the media
  decodes) is checked *before* a request takes a queue slot, and every 4xx names the field and how to fix it:
  ``{"error": {"status", "code", "field", "message", "hint"}, "request_id"}``.
* **Results are the library's results.**  The 200 body is :meth:`UniPixelResult.to_dict` (so
  ``UniPixelResult.from_dict(response.json())`` works) plus ``request_id`` and server timings merged into
  ``timings``.
* **Loopback by default, no server-side file access by default.**  There is no authentication; binding another
  interface or enabling ``--media-root`` (JSON requests naming files on the server) is an explicit choice.

Endpoints: ``POST /v1/predict``, ``POST /v1/pixelqa`` (multipart upload or JSON with base64 media),
``GET /health``, ``GET /v1/info``; interactive docs at ``/docs`` (OpenAPI at ``/openapi.json``).

    unipixel serve --model PATH --host 127.0.0.1 --port 8000 --max-upload-mb 50 --max-frames 64 --queue-size 64
"""

# No ``from __future__ import annotations``: FastAPI resolves the handlers' ``Request`` annotations at
# runtime, and fastapi is imported lazily inside ``create_app`` (it is an optional dependency).
import argparse
import asyncio
import base64
import binascii
import concurrent.futures
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ApiError", "ServerConfig", "create_app", "build_parser", "main"]

log = logging.getLogger("unipixel.server")

API_VERSION = "v1"
# Room for the non-file form fields / JSON keys on top of the media itself.
_BODY_SLACK = 256 * 1024
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_PIL_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "TIFF": ".tif", "GIF": ".gif"}
_MIME_SUFFIX = {
    "image/jpeg": ".jpg", "image/png": ".png", "image/webp": ".webp", "image/bmp": ".bmp", "image/tiff": ".tif",
    "image/gif": ".gif", "video/mp4": ".mp4", "video/webm": ".webm", "video/quicktime": ".mov",
    "video/x-matroska": ".mkv", "video/x-msvideo": ".avi",
}

POINTS_HINT = "a JSON list of [x, y] or [x, y, frame] in original pixels, e.g. [[120, 88]] or [[120, 88, 5]]"
BOXES_HINT = "a JSON list of [x1, y1, x2, y2] or [x1, y1, x2, y2, frame] in original pixels, e.g. [[10, 20, 200, 180]]"
MASKS_HINT = (
    'a JSON list of COCO RLE objects with an optional frame, e.g. [{"size": [H, W], "counts": "...", "frame": 0}] '
    "(size = the media's frame size)"
)
OPTIONS_HINT = 'a JSON list of 2-26 answer strings, e.g. ["Chasing it.", "Ignoring it."]'


# ----------------------------------------------------------------------------------------------------------
# configuration and errors


@dataclass
class ServerConfig:
    """Everything ``unipixel serve`` can be told; defaults are the documented CLI defaults."""

    model: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    device: str | None = None
    dtype: str | None = None
    sam2_config_dirs: list[str] = field(default_factory=list)
    num_frames: int = 16
    max_new_tokens: int = 256
    max_new_tokens_limit: int = 1024
    min_pixels: int | None = None
    max_pixels: int | None = None
    max_upload_bytes: int = 50 * 1024 * 1024
    max_frames: int = 64
    max_frame_side: int = 4096
    max_prompt_chars: int = 4000
    queue_size: int = 64
    media_root: str | None = None
    tmp_dir: str | None = None
    torch_threads: int | None = None
    access_log: bool = True
    log_level: str = "info"

    def limits(self) -> dict[str, Any]:
        """The limits a client needs to know (served by ``/v1/info``)."""
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_frames": self.max_frames,
            "max_frame_side": self.max_frame_side,
            "max_prompt_chars": self.max_prompt_chars,
            "max_new_tokens": self.max_new_tokens_limit,
            "queue_size": self.queue_size,
            "default_num_frames": self.num_frames,
            "default_max_new_tokens": self.max_new_tokens,
            "server_side_paths": self.media_root is not None,
        }


class ApiError(Exception):
    """A client-visible error: HTTP status + stable machine-readable code + the offending field + a fix hint."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        hint: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.hint = hint
        self.headers = dict(headers or {})

    def body(self, request_id: str | None) -> dict[str, Any]:
        return {
            "error": {
                "status": self.status, "code": self.code, "field": self.field, "message": self.message,
                "hint": self.hint,
            },
            "request_id": request_id,
        }


def _bad(field_name: str, message: str, hint: str | None = None, code: str = "invalid_field") -> ApiError:
    return ApiError(422, code, message, field=field_name, hint=hint)


# ----------------------------------------------------------------------------------------------------------
# request specs (validated before a request is queued)


@dataclass
class MediaProbe:
    """What a cheap look at the media tells us (header / demux only, no full decode)."""

    path: Path
    is_image: bool
    total_frames: int
    height: int
    width: int


@dataclass
class PredictSpec:
    prompt: str
    points: list[list[float]] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    masks: list[tuple[dict[str, Any], int]] = field(default_factory=list)
    num_frames: int = 16
    max_new_tokens: int = 256
    sam2_frames: str = "sampled"
    response: str | None = None
    include_masks: bool = True


@dataclass
class PixelQASpec:
    question: str
    options: list[str]
    points: list[list[float]] = field(default_factory=list)
    boxes: list[list[float]] = field(default_factory=list)
    num_frames: int = 16
    include_masks: bool = True


PREDICT_FIELDS = {
    "prompt", "points", "boxes", "masks", "num_frames", "max_new_tokens", "sam2_frames", "response",
    "include_masks",
}
PIXELQA_FIELDS = {"question", "options", "points", "boxes", "num_frames", "include_masks"}
MEDIA_FIELDS = {"file", "media_base64", "media_filename", "media_path"}


def _maybe_json(value: Any, name: str, hint: str) -> Any:
    """Form fields carry JSON as text; JSON bodies carry it natively."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if not text:
        return []
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise _bad(name, f"{name} is not valid JSON ({err.msg} at character {err.pos})", f"send {hint}",
                   code="invalid_json") from None


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _coords(value: Any, name: str, n: int, hint: str) -> list[list[float]]:
    """Validate points (n=2) / boxes (n=4): lists of n numbers plus an optional integer frame index."""
    data = _maybe_json(value, name, hint)
    if data is None:
        return []
    if not isinstance(data, list):
        raise _bad(name, f"{name} must be a list, got {type(data).__name__}", f"send {hint}")
    if data and all(_number(v) is not None for v in data):
        data = [data]  # a single point/box without the outer list: accept it, it is unambiguous
    out: list[list[float]] = []
    for i, item in enumerate(data):
        if not isinstance(item, list) or len(item) not in (n, n + 1):
            raise _bad(name, f"{name}[{i}] must be a list of {n} numbers plus an optional frame index, got {item!r}",
                       f"send {hint}")
        nums = [_number(v) for v in item]
        if any(v is None for v in nums):
            raise _bad(name, f"{name}[{i}] contains a non-numeric or non-finite value: {item!r}", f"send {hint}")
        vals = [float(v) for v in nums if v is not None]
        if len(vals) == n + 1 and (vals[n] < 0 or vals[n] != int(vals[n])):
            raise _bad(name, f"{name}[{i}]: the frame index must be a non-negative integer, got {item[n]!r}",
                       f"send {hint}")
        if n == 4 and (vals[2] <= vals[0] or vals[3] <= vals[1]):
            raise _bad(name, f"{name}[{i}] = {item!r} is empty: x2 must exceed x1 and y2 must exceed y1",
                       "boxes are [x1, y1, x2, y2] (top-left, bottom-right corner)")
        out.append(vals)
    return out


def _masks(value: Any) -> list[tuple[dict[str, Any], int]]:
    data = _maybe_json(value, "masks", MASKS_HINT)
    if data is None:
        return []
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise _bad("masks", f"masks must be a list, got {type(data).__name__}", f"send {MASKS_HINT}")
    from .data.schema import rle_problem

    out = []
    for i, item in enumerate(data):
        ok = (
            isinstance(item, dict) and isinstance(item.get("counts"), (str, list))
            and isinstance(item.get("size"), list) and len(item["size"]) == 2
            and all(isinstance(s, int) and s > 0 for s in item["size"])
        )
        frame = item.get("frame", 0) if isinstance(item, dict) else 0
        if not ok or not isinstance(frame, int) or isinstance(frame, bool) or frame < 0:
            raise _bad("masks", f"masks[{i}] is not a COCO RLE with a non-negative integer frame", f"send {MASKS_HINT}")
        problem = rle_problem({"size": item["size"], "counts": item["counts"]})
        if problem:  # decoded here, not on the model thread
            raise _bad("masks", f"masks[{i}]: {problem}", f"send {MASKS_HINT}")
        out.append(({"size": item["size"], "counts": item["counts"]}, frame))
    return out


def _int(value: Any, name: str, default: int, lo: int, hi: int) -> int:
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    hint = f"{name} must be an integer between {lo} and {hi}"
    if isinstance(value, bool):
        raise _bad(name, f"{name} must be an integer, got {value!r}", hint)
    try:
        num = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError):
        num = None
    if num is None:
        raise _bad(name, f"{name} must be an integer, got {value!r}", hint)
    if not lo <= num <= hi:
        code = "too_many_frames" if name == "num_frames" and num > hi else "out_of_range"
        raise _bad(name, f"{name}={num} is outside the allowed range {lo}..{hi}", hint, code=code)
    return num


def _bool(value: Any, name: str, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    s = str(value).strip().lower()
    if s in ("1", "true", "yes", "on"):
        return True
    if s in ("0", "false", "no", "off"):
        return False
    if not s:
        return default
    raise _bad(name, f"{name} must be true or false, got {value!r}")


def _text(value: Any, name: str, limit: int, *, required: bool) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise _bad(name, f"{name} is required and must not be empty", code="missing_field",
                       hint=f"send a non-empty {name} string")
        return None
    if not isinstance(value, str):
        raise _bad(name, f"{name} must be a string, got {type(value).__name__}")
    if len(value) > limit:
        raise _bad(name, f"{name} has {len(value)} characters; this server accepts at most {limit}",
                   code="too_long", hint=f"shorten the {name}")
    return value


def _check_unknown(fields: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(fields) - allowed - MEDIA_FIELDS)
    if unknown:
        raise _bad(unknown[0], f"unknown field(s) {unknown}", f"allowed fields: {sorted(allowed | MEDIA_FIELDS)}",
                   code="unknown_field")


def parse_predict(fields: Mapping[str, Any], cfg: ServerConfig) -> PredictSpec:
    """Validate the fields of a predict request (form strings or JSON values)."""
    _check_unknown(fields, PREDICT_FIELDS)
    sam2 = fields.get("sam2_frames") or "sampled"
    if sam2 not in ("sampled", "all"):
        raise _bad("sam2_frames", f"sam2_frames must be 'sampled' or 'all', got {sam2!r}",
                   "'sampled': masks on the frames the language model saw; 'all': on every frame of the video")
    return PredictSpec(
        prompt=_text(fields.get("prompt"), "prompt", cfg.max_prompt_chars, required=True) or "",
        points=_coords(fields.get("points"), "points", 2, POINTS_HINT),
        boxes=_coords(fields.get("boxes"), "boxes", 4, BOXES_HINT),
        masks=_masks(fields.get("masks")),
        num_frames=_int(fields.get("num_frames"), "num_frames", min(cfg.num_frames, cfg.max_frames), 1,
                        cfg.max_frames),
        max_new_tokens=_int(fields.get("max_new_tokens"), "max_new_tokens", cfg.max_new_tokens, 1,
                            cfg.max_new_tokens_limit),
        sam2_frames=sam2,
        response=_text(fields.get("response"), "response", cfg.max_prompt_chars, required=False),
        include_masks=_bool(fields.get("include_masks"), "include_masks", True),
    )


def parse_pixelqa(fields: Mapping[str, Any], cfg: ServerConfig) -> PixelQASpec:
    """Validate the fields of a PixelQA request."""
    _check_unknown(fields, PIXELQA_FIELDS)
    options = _maybe_json(fields.get("options"), "options", OPTIONS_HINT)
    if (
        not isinstance(options, list) or not 2 <= len(options) <= 26
        or not all(isinstance(o, str) and o.strip() for o in options)
    ):
        raise _bad("options", "options must be a list of 2-26 non-empty strings", f"send {OPTIONS_HINT}")
    if sum(len(o) for o in options) > cfg.max_prompt_chars:
        raise _bad("options", f"options are longer than {cfg.max_prompt_chars} characters in total", code="too_long")
    spec = PixelQASpec(
        question=_text(fields.get("question"), "question", cfg.max_prompt_chars, required=True) or "",
        options=options,
        points=_coords(fields.get("points"), "points", 2, POINTS_HINT),
        boxes=_coords(fields.get("boxes"), "boxes", 4, BOXES_HINT),
        num_frames=_int(fields.get("num_frames"), "num_frames", min(cfg.num_frames, cfg.max_frames), 1,
                        cfg.max_frames),
        include_masks=_bool(fields.get("include_masks"), "include_masks", True),
    )
    if not spec.points and not spec.boxes:
        raise _bad("points", "PixelQA needs at least one point or box prompt",
                   "refer to the object as [0] in the question and send points=[[x, y]] or boxes=[[x1, y1, x2, y2]]")
    return spec


def check_against_media(probe: MediaProbe, spec: PredictSpec | PixelQASpec, cfg: ServerConfig) -> None:
    """Checks that need the media's size / length but not the model: frame limits, prompt frames, coordinates."""
    h, w, t = probe.height, probe.width, probe.total_frames
    if max(h, w) > cfg.max_frame_side:
        raise _bad("file", f"the media is {w}x{h}; this server accepts frames of at most {cfg.max_frame_side} px "
                   "per side", "downscale the media before sending it", code="frame_too_large")
    if isinstance(spec, PredictSpec) and spec.sam2_frames == "all" and not probe.is_image and t > cfg.max_frames:
        raise _bad("sam2_frames", f"sam2_frames='all' would segment all {t} frames of the video; this server's "
                   f"limit is {cfg.max_frames} frames per request", "use sam2_frames='sampled' or a shorter clip",
                   code="too_many_frames")
    where = "the image (frame 0 only)" if probe.is_image else f"the video's {t} frames (0..{t - 1})"
    prompts = [("points", p, 2) for p in spec.points] + [("boxes", b, 4) for b in spec.boxes]
    masks = spec.masks if isinstance(spec, PredictSpec) else []
    frames_used = set()
    for name, vals, n in prompts:
        frame = int(vals[n]) if len(vals) == n + 1 else 0
        if frame >= t:
            raise _bad(name, f"{name} frame index {frame} is outside {where}",
                       "frame indices are original frame numbers of the uploaded media")
        frames_used.add(frame)
        xs, ys = vals[0:n:2], vals[1:n:2]
        if min(xs) < 0 or max(xs) > w or min(ys) < 0 or max(ys) > h or (n == 2 and (xs[0] >= w or ys[0] >= h)):
            raise _bad(name, f"{name} {vals[:n]} lies outside the {w}x{h} frame",
                       "coordinates are original pixels: a point 0 <= x < width, 0 <= y < height; a box's "
                       "corners 0 <= x <= width, 0 <= y <= height")
    for i, (rle, frame) in enumerate(masks):
        if frame >= t:
            raise _bad("masks", f"masks[{i}] frame index {frame} is outside {where}")
        if list(rle["size"]) != [h, w]:
            raise _bad("masks", f"masks[{i}] has size {rle['size']} but the media's frames are [{h}, {w}] (H, W)",
                       f"send {MASKS_HINT}")
        frames_used.add(frame)
    if not probe.is_image and len(frames_used) > spec.num_frames:
        raise _bad("num_frames", f"the prompts sit on {len(frames_used)} different frames but only "
                   f"num_frames={spec.num_frames} are sampled", "raise num_frames or put prompts on fewer frames")


# ----------------------------------------------------------------------------------------------------------
# media handling


def _scrub(message: str, path: Path) -> str:
    """Error text without server-side temp paths (they mean nothing to the client and leak layout)."""
    return message.replace(str(path), "<upload>").replace(str(path.parent), "<tmp>")


def probe_media(path: Path) -> MediaProbe:
    """Look at a file's header (image) or container (video) without decoding it fully.

    Raises an ``ApiError`` 415 when it is neither, so undecodable uploads never take a queue slot.
    """
    from PIL import Image

    from .media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise ApiError(415, "unsupported_media", f"folder {path.name!r} contains no image frames",
                           field="media_path")
        first = probe_media(files[0])
        return MediaProbe(path, False, len(files), first.height, first.width)
    ext = path.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        try:
            with Image.open(path) as img:
                img.verify()  # must come right after open
            with Image.open(path) as img:
                w, h = img.size
                if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF "rotate 90°": decoded upright, W and H swap
                    w, h = h, w
        except Exception as err:  # PIL raises many types (UnidentifiedImageError, SyntaxError, OSError ...)
            raise ApiError(415, "undecodable_media", f"the upload is not a readable image ({_scrub(str(err), path)})", field="file",
                           hint="send a JPEG/PNG/WebP/BMP/TIFF image or a video (MP4, WebM, MOV, MKV, AVI, GIF)") from None
        return MediaProbe(path, True, 1, h, w)
    if ext in VIDEO_EXTENSIONS:
        import av

        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise ValueError("no video stream")
                stream = container.streams.video[0]
                w, h = int(stream.codec_context.width), int(stream.codec_context.height)
                count = sum(1 for pkt in container.demux(stream) if pkt.size > 0)
        except Exception as err:  # av.error.* is not a stable hierarchy across PyAV versions
            raise ApiError(415, "undecodable_media", f"the upload is not a readable video ({_scrub(str(err), path)})", field="file",
                           hint="send an MP4/WebM/MOV/MKV/AVI/GIF video or a JPEG/PNG/WebP image") from None
        if count == 0 or w <= 0 or h <= 0:
            raise ApiError(415, "undecodable_media", "the video has no frames", field="file")
        return MediaProbe(path, False, count, h, w)
    raise ApiError(415, "unsupported_media", f"unsupported media type {ext!r}", field="file",
                   hint=f"images: {sorted(IMAGE_EXTENSIONS)}; videos: {sorted(VIDEO_EXTENSIONS)}")


def _sniff_suffix(head: bytes, filename: str | None, content_type: str | None) -> str:
    """The extension ``load_media`` should see: the client's, else the MIME type's, else from the bytes."""
    from .media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    ext = Path(filename or "").suffix.lower()
    if ext in IMAGE_EXTENSIONS or ext in VIDEO_EXTENSIONS:
        return ext
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime in _MIME_SUFFIX:
        return _MIME_SUFFIX[mime]
    if head.startswith(b"\x89PNG"):
        return ".png"
    if head.startswith(b"\xff\xd8\xff"):
        return ".jpg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ".webp"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return ".gif"
    if head.startswith(b"BM"):
        return ".bmp"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return ".tif"
    return ".mp4"  # PyAV probes the container from the content, whatever the extension says


class _TempFiles:
    """Per-server temp directory for uploads: every file is removed after its request, the directory at exit."""

    def __init__(self, parent: str | None) -> None:
        if parent:
            Path(parent).mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix="unipixel-serve-", dir=parent))

    def new(self, suffix: str) -> Path:
        fd, name = tempfile.mkstemp(dir=self.root, suffix=suffix)
        os.close(fd)
        return Path(name)

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


# ----------------------------------------------------------------------------------------------------------
# the model queue


class ModelQueue:
    """One loaded model behind a single worker thread; at most ``queue_size`` requests waiting or running.

    The event loop only awaits futures, so it stays responsive.  Cancelling :meth:`submit` while the job is
    still waiting cancels the executor future, so the job never reaches the model.
    """

    def __init__(self, queue_size: int) -> None:
        self.queue_size = queue_size
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="unipixel-model")
        self.pending = 0  # waiting + running; only touched on the event loop thread
        self.running = 0
        self.served = 0
        self.failed = 0
        self.cancelled = 0
        self._avg_s: float | None = None
        self._lock = threading.Lock()

    def retry_after_s(self) -> int:
        """Rough time until a slot frees up: queue length times the average service time."""
        return max(1, math.ceil((self._avg_s or 1.0) * max(self.pending, 1)))

    async def submit(self, fn: Callable[[], Any]) -> Any:
        if self.pending >= self.queue_size:
            wait = self.retry_after_s()
            raise ApiError(503, "queue_full", f"the server is busy ({self.pending} requests queued, limit "
                           f"{self.queue_size})", hint=f"retry after {wait} s", headers={"Retry-After": str(wait)})
        self.pending += 1

        def timed() -> Any:
            with self._lock:
                self.running += 1
            t0 = time.perf_counter()
            try:
                return fn()
            finally:
                dt = time.perf_counter() - t0
                with self._lock:
                    self.running -= 1
                    self._avg_s = dt if self._avg_s is None else 0.8 * self._avg_s + 0.2 * dt

        loop = asyncio.get_running_loop()
        future = self.executor.submit(timed)

        def finished(f: concurrent.futures.Future) -> None:
            # Counted when the job really ends (or is dropped before it starts), not when its awaiting request
            # goes away: a job already on the model keeps its queue slot until the model is free again.
            def account() -> None:
                self.pending -= 1
                if f.cancelled():
                    self.cancelled += 1
                elif f.exception() is not None:
                    self.failed += 1
                else:
                    self.served += 1

            try:
                loop.call_soon_threadsafe(account)
            except RuntimeError:  # the loop has closed (server shut down): nothing left to account for
                pass

        future.add_done_callback(finished)
        return await asyncio.wrap_future(future)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


# ----------------------------------------------------------------------------------------------------------
# ASGI guard: request ids and streaming body limit


class _BodyTooLarge(ApiError):
    """413 quoting the media-file limit users configure (``max_upload_bytes``), not the internal body limit
    (which adds room for the form fields and base64's 4/3)."""

    def __init__(self, media_limit: int, field_name: str | None = None) -> None:
        super().__init__(413, "payload_too_large",
                         f"the media file exceeds this server's limit of {media_limit} bytes (max_upload_bytes)",
                         field=field_name, hint="send a smaller file (see max_upload_bytes in GET /v1/info)")


class _Guard:
    """Pure ASGI middleware: assigns ``X-Request-ID`` and refuses oversized bodies while they stream in.

    A ``Content-Length`` above the limit is answered with 413 before any byte of the body is read; chunked
    bodies are counted and abort with 413 as soon as they cross it.  Body-size enforcement has to live below
    FastAPI, because the multipart parser would otherwise spool the whole upload first.
    """

    def __init__(self, app: Any, media_limit: int) -> None:
        self.app = app
        self.media_limit = media_limit  # max_upload_bytes: the media file; the body may add form fields / base64
        self.body_limit = media_limit + _BODY_SLACK
        self.json_limit = math.ceil(media_limit * 4 / 3) + _BODY_SLACK

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = headers.get("x-request-id", "")
        rid = rid if _REQUEST_ID_RE.match(rid) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        is_json = headers.get("content-type", "").split(";")[0].strip().lower() == "application/json"
        limit = self.json_limit if is_json else self.body_limit
        field_name = "media_base64" if is_json else "file"

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            err = _BodyTooLarge(self.media_limit, field_name)
            await _send_json(send_with_id, err.status, err.body(rid), {"Connection": "close"})
            return
        received = 0

        async def counted_receive() -> MutableMapping[str, Any]:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(self.media_limit, field_name)
            return message

        await self.app(scope, counted_receive, send_with_id)


async def _send_json(send: Any, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


def _peak_rss_mb() -> float | None:
    """VmHWM of this process (peak resident memory) in MiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


# ----------------------------------------------------------------------------------------------------------
# OpenAPI documentation (the request bodies are parsed by hand, so they are described here)


def _request_body_doc(kind: str) -> dict[str, Any]:
    coords = {
        "points": {"type": "string", "description": f"JSON: {POINTS_HINT}. Refer to object k as [k] in the prompt."},
        "boxes": {"type": "string", "description": f"JSON: {BOXES_HINT}."},
        "num_frames": {"type": "integer", "description": "frames sampled from a video for the language model "
                       "(default: server --frames; at most --max-frames)"},
        "include_masks": {"type": "boolean", "default": True, "description": "false: omit the RLE masks "
                          "(boxes, areas and scores are still returned)"},
    }
    media = {
        "file": {"type": "string", "format": "binary", "description": "an image (JPEG/PNG/WebP/BMP/TIFF) or a "
                 "video (MP4/WebM/MOV/MKV/AVI/GIF)"},
    }
    json_media = {
        "media_base64": {"type": "string", "description": "the file, base64 (a data: URL is accepted)"},
        "media_filename": {"type": "string", "description": "optional name whose extension says image/video"},
        "media_path": {"type": "string", "description": "a file or frame folder under the server's --media-root "
                       "(disabled unless --media-root is set)"},
    }
    if kind == "predict":
        own = {
            "prompt": {"type": "string", "description": "the question/instruction, e.g. 'Please segment the red "
                       "ball.' or 'What is [0] doing?'"},
            "masks": {"type": "string", "description": f"JSON: {MASKS_HINT}; become <|mem|> region prompts"},
            "max_new_tokens": {"type": "integer", "description": "generation length (default: server "
                               "--max-new-tokens)"},
            "sam2_frames": {"type": "string", "enum": ["sampled", "all"], "default": "sampled",
                            "description": "'all' segments every frame of the video (counted against max_frames)"},
            "response": {"type": "string", "description": "optional teacher-forced answer: no generation; masks "
                         "for each <|seg|> in it, e.g. '[0] <|seg|>' to segment the prompted object"},
        }
        required = ["prompt"]
        form_example = {"prompt": "What is [0] doing?", "points": "[[84, 56, 2]]", "num_frames": 8}
        json_example = {"prompt": "Please segment the red square.", "media_base64": "<base64 of shapes.mp4>",
                        "media_filename": "shapes.mp4", "num_frames": 8}
    else:
        own = {
            "question": {"type": "string", "description": "multiple-choice question referring to prompted objects "
                         "as [0], [1], ..."},
            "options": {"type": "string", "description": f"JSON: {OPTIONS_HINT}"},
        }
        required = ["question", "options"]
        form_example = {"question": "What is [0] doing?", "options": '["Moving right.", "Standing still."]',
                        "points": "[[84, 56, 0]]"}
        json_example = {**form_example, "options": ["Moving right.", "Standing still."], "points": [[84, 56, 0]],
                        "media_base64": "<base64>", "media_filename": "clip.mp4"}
    form_schema = {"type": "object", "required": [*required, "file"], "properties": {**own, **coords, **media}}
    json_props = {**own, **coords, **json_media}
    for key in ("points", "boxes", "masks", "options"):
        if key in json_props:
            json_props[key] = {**json_props[key], "type": "array"}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": form_schema, "example": form_example},
                "application/json": {"schema": {"type": "object", "required": required, "properties": json_props},
                                     "example": json_example},
            },
        }
    }


_ERROR_EXAMPLE = {
    "error": {"status": 422, "code": "invalid_json", "field": "points",
              "message": "points is not valid JSON (Expecting value at character 1)", "hint": f"send {POINTS_HINT}"},
    "request_id": "5f0c...",
}
_RESULT_EXAMPLE = {
    "format": "unipixel-result", "version": 1, "request_id": "5f0c...", "model": "UniPixel-3B",
    "text": "The red square <|seg|> moves right.", "clean_text": "The red square [0] moves right.",
    "prompt": "Please segment the red square.", "frame_size": [112, 168], "frame_indices": [0, 2, 5, 7],
    "llm_frame_indices": [0, 2, 5, 7], "media": {"source": "upload.mp4", "is_image": False, "fps": 4.0},
    "timings": {"queue_wait_s": 0.01, "media_decode_s": 0.02, "preprocess_s": 0.2, "model_s": 2.1, "total_s": 2.4},
    "objects": [{"id": 0, "label": "The red square", "source": "generated", "scores": [0.97, 0.95, 0.96, 0.9],
                 "span": [15, 22], "clean_span": [15, 18], "token_index": None,
                 "size": [112, 168], "frame_indices": [0, 2, 5, 7], "boxes": [[10, 20, 40, 50], None, None, None],
                 "areas": [900, 0, 0, 0],
                 "masks": [{"size": [112, 168], "counts": c} for c in ("Xc02...", "PPa8", "PPa8", "PPa8")]}],
    "choice": None,
}


def _responses_doc() -> dict[int | str, dict[str, Any]]:
    def err(desc: str) -> dict[str, Any]:
        return {"description": desc, "content": {"application/json": {"example": _ERROR_EXAMPLE}}}

    return {
        200: {"description": "answer text + objects with per-frame COCO RLE masks (UniPixelResult.to_dict() plus "
              "request_id, model and server timings)", "content": {"application/json": {"example": _RESULT_EXAMPLE}}},
        413: err("body larger than max_upload_bytes"),
        415: err("media that cannot be decoded, or an unsupported content type"),
        422: err("invalid field: bad JSON, bad prompt spec, too many frames, prompt too long, ..."),
        503: err("queue full (see Retry-After)"),
    }


# ----------------------------------------------------------------------------------------------------------
# the application


def create_app(cfg: ServerConfig, api: Any | None = None) -> Any:
    """Build the FastAPI app. ``api`` (a loaded :class:`~unipixel.api.UniPixel`) is loaded in the background at startup if None (/health says "loading" meanwhile)."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException as StarletteHTTPException

    state: dict[str, Any] = {"api": api, "started": time.time(), "model_name": None}
    queue = ModelQueue(cfg.queue_size)
    temps = _TempFiles(cfg.tmp_dir)
    media_root = Path(cfg.media_root).resolve() if cfg.media_root else None

    def load_model() -> Any:
        from .api import UniPixel

        if cfg.torch_threads:
            import torch

            torch.set_num_threads(cfg.torch_threads)

        kwargs: dict[str, Any] = {"num_frames": cfg.num_frames, "max_new_tokens": cfg.max_new_tokens}
        for key in ("device", "dtype", "min_pixels", "max_pixels"):
            if getattr(cfg, key) is not None:
                kwargs[key] = getattr(cfg, key)
        if cfg.sam2_config_dirs:
            kwargs["sam2_config_dirs"] = list(cfg.sam2_config_dirs)
        return UniPixel.from_pretrained(cfg.model, **kwargs)

    def set_api(up: Any) -> None:
        state["api"] = up
        state["model_name"] = Path(str(getattr(up.model, "name_or_path", "") or cfg.model or "builtin")).name

    async def load_in_background() -> None:
        """The model loads after the socket is bound, so /health can answer 503 "loading" meanwhile (a 7B load
        takes minutes; a liveness probe must not see a refused connection and restart the server)."""
        log.info("loading model %s ...", cfg.model or "(built-in)")
        t0 = time.perf_counter()
        try:
            # On the model thread, so thread-local torch state (grad mode, threads) matches inference.
            set_api(await asyncio.get_running_loop().run_in_executor(queue.executor, load_model))
        except Exception as err:  # noqa: BLE001 - reported by /health (500), which makes orchestrators restart us
            state["load_error"] = f"{type(err).__name__}: {err}"
            log.error("the model failed to load: %s", state["load_error"])
            return
        log.info("model loaded in %.1f s", time.perf_counter() - t0)

    @asynccontextmanager
    async def lifespan(app: Any) -> Any:
        state["started"] = time.time()
        loader = None
        if state["api"] is None:
            loader = asyncio.ensure_future(load_in_background())
        else:
            set_api(state["api"])
        try:
            yield
        finally:
            if loader is not None and not loader.done():
                loader.cancel()
            queue.shutdown()
            temps.cleanup()

    app = FastAPI(
        title="UniPixel HTTP API",
        version=API_VERSION,
        lifespan=lifespan,
        description=(
            "Pixel-level vision-language answers: send an image or video plus a prompt (and optional point / box "
            "/ mask prompts), get the answer text and one object per `<|seg|>` with per-frame COCO RLE masks, "
            "boxes and scores. Requests run one at a time on one loaded model, in arrival order. Every error is "
            "`{\"error\": {status, code, field, message, hint}, \"request_id\"}`."
        ),
    )

    def rid(request: Request) -> str:
        return getattr(request.state, "request_id", None) or uuid.uuid4().hex

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return JSONResponse(err.body(rid(request)), status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        loc = ".".join(str(p) for p in first.get("loc", ()) if p not in ("body", "query"))
        e = ApiError(422, "invalid_field", str(first.get("msg", "invalid request")), field=loc or None)
        return JSONResponse(e.body(rid(request)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        e = ApiError(err.status_code, "http_error", str(err.detail))
        return JSONResponse(e.body(rid(request)), status_code=err.status_code, headers=err.headers)

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, err: Exception) -> JSONResponse:
        log.exception("request %s failed", rid(request))
        e = ApiError(500, "internal_error", f"internal error ({type(err).__name__}); the server log has the "
                     "traceback under this request id")
        return JSONResponse(e.body(rid(request)), status_code=500)

    # -------------------------------------------------------------- reading a request

    async def read_request(request: Request) -> tuple[dict[str, Any], Path | None, list[Any]]:
        """(fields, media path, cleanup paths).  The media is written to a named temp file with an extension
        ``load_media`` understands; JSON requests may instead name a file under ``--media-root``."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        cleanup: list[Path] = []
        if ctype == "multipart/form-data":
            try:
                form = await request.form(max_files=1, max_fields=32)
            except _BodyTooLarge:
                raise
            except Exception as err:  # starlette raises HTTPException/MultiPartException for broken bodies
                detail = getattr(err, "detail", None) or str(err)
                raise _bad("body", f"the multipart body cannot be parsed ({detail})",
                           "send multipart/form-data with one 'file' part and text fields") from None
            try:
                fields: dict[str, Any] = {}
                upload = None
                for key, value in form.multi_items():
                    if hasattr(value, "read"):  # UploadFile
                        if key != "file":
                            raise _bad(key, f"unexpected file field {key!r}", "send the media as the 'file' field")
                        upload = value
                    else:
                        fields[key] = value
                if upload is None:
                    raise _bad("file", "no media: the multipart body has no 'file' part", code="missing_field",
                               hint="attach the image/video as the 'file' field")
                path = await run_in_threadpool(save_upload, upload.file, upload.filename, upload.content_type)
                cleanup.append(path)
                return fields, path, cleanup
            finally:
                await form.close()
        if ctype == "application/json":
            raw = await request.body()
            try:
                data = await run_in_threadpool(json.loads, raw)  # tens of MB of base64: keep it off the loop
            except (json.JSONDecodeError, UnicodeDecodeError) as err:
                raise _bad("body", f"the JSON body is not valid JSON ({err})", code="invalid_json") from None
            if not isinstance(data, dict):
                raise _bad("body", "the JSON body must be an object", code="invalid_json")
            if data.get("media_path") is not None:
                return data, resolve_media_path(data["media_path"]), cleanup
            b64 = data.get("media_base64")
            if not isinstance(b64, str) or not b64:
                raise _bad("media_base64", "no media: send media_base64 (or media_path if the server allows it)",
                           code="missing_field")
            path = await run_in_threadpool(save_base64, b64, data.get("media_filename"))
            cleanup.append(path)
            return data, path, cleanup
        raise ApiError(415, "unsupported_content_type", f"unsupported Content-Type {ctype or '(none)'!r}",
                       hint="send multipart/form-data (with a 'file' part) or application/json (with media_base64)")

    def save_upload(src: Any, filename: str | None, content_type: str | None) -> Path:
        head = src.read(16)
        path = temps.new(_sniff_suffix(head, filename, content_type))
        size = len(head)
        with open(path, "wb") as dst:
            dst.write(head)
            while chunk := src.read(1 << 20):
                size += len(chunk)
                if size > cfg.max_upload_bytes:
                    dst.close()
                    path.unlink(missing_ok=True)
                    raise _BodyTooLarge(cfg.max_upload_bytes, "file")
                dst.write(chunk)
        if size == 0:
            path.unlink(missing_ok=True)
            raise ApiError(415, "undecodable_media", "the uploaded file is empty", field="file")
        return path

    def save_base64(b64: str, filename: Any) -> Path:
        mime = None
        if b64.startswith("data:"):
            header, _, b64 = b64.partition(",")
            mime = header[5:].split(";")[0]
        b64 = "".join(b64.split())  # `base64 FILE` wraps lines at 76 columns
        if len(b64) * 3 // 4 > cfg.max_upload_bytes + 3:
            raise _BodyTooLarge(cfg.max_upload_bytes, "media_base64")
        try:
            data = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError) as err:
            raise _bad("media_base64", f"media_base64 is not valid base64 ({err})",
                       "encode the file's bytes with standard base64 (RFC 4648)") from None
        if len(data) > cfg.max_upload_bytes:
            raise _BodyTooLarge(cfg.max_upload_bytes, "media_base64")
        if not data:
            raise ApiError(415, "undecodable_media", "media_base64 decodes to an empty file", field="media_base64")
        path = temps.new(_sniff_suffix(data[:16], filename if isinstance(filename, str) else None, mime))
        path.write_bytes(data)
        return path

    def resolve_media_path(value: Any) -> Path:
        if media_root is None:
            raise _bad("media_path", "server-side paths are disabled on this server",
                       "upload the file (multipart 'file') or send media_base64", code="forbidden_field")
        if not isinstance(value, str) or not value:
            raise _bad("media_path", "media_path must be a non-empty string")
        path = (media_root / value).resolve()
        if not path.is_relative_to(media_root):
            raise ApiError(403, "forbidden_path", "media_path points outside the server's media root",
                           field="media_path", hint="use a path relative to --media-root")
        if not path.exists():
            raise _bad("media_path", f"media_path {value!r} does not exist under the media root", code="not_found")
        return path

    # -------------------------------------------------------------- running a request

    async def handle(request: Request, kind: str) -> Response:
        t0 = time.perf_counter()
        request_id = rid(request)
        if state["api"] is None:
            if state.get("load_error"):
                raise ApiError(500, "load_failed", f"the model failed to load: {state['load_error']}")
            raise ApiError(503, "loading", "the model is still loading", headers={"Retry-After": "5"})
        fields, path, cleanup = await read_request(request)
        try:
            spec = parse_predict(fields, cfg) if kind == "predict" else parse_pixelqa(fields, cfg)
            assert path is not None
            probe = await run_in_threadpool(probe_media, path)
            check_against_media(probe, spec, cfg)
            check_object_markers(spec)
            t_submit = time.perf_counter()

            def job() -> bytes:
                return run_job(spec, probe, request_id, t0, t_submit)

            body = await run_unless_disconnected(request, queue.submit(job))
            return Response(content=body, media_type="application/json")
        finally:
            for p in cleanup:
                p.unlink(missing_ok=True)

    async def run_unless_disconnected(request: Request, work: Awaitable[bytes]) -> bytes:
        """Await ``work`` but cancel it if the client hangs up first: a request still waiting in the queue is
        then dropped before it reaches the model (clients that time out and retry would otherwise fill the
        queue with work nobody reads).  A request already on the model runs to completion."""
        task = asyncio.ensure_future(work)

        async def disconnected() -> None:
            while (await request.receive())["type"] != "http.disconnect":
                pass

        watcher = asyncio.ensure_future(disconnected())
        try:
            await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server is shutting down: do not leave the job queued
            task.cancel()
            raise
        finally:
            watcher.cancel()
        if not task.done():
            task.cancel()  # a job still waiting is dropped; one already on the model finishes (and is counted)
            log.info("request %s: client disconnected, dropped", rid(request))
            raise ApiError(499, "client_closed_request", "the client closed the connection")
        return task.result()

    def run_job(spec: PredictSpec | PixelQASpec, probe: MediaProbe, request_id: str, t0: float,
                t_submit: float) -> bytes:
        """Runs on the model thread: decode the media, run the model, serialise the result (off the loop)."""
        from .results import decode_rle

        up = state["api"]
        t_start = time.perf_counter()
        keep = [int(p[2]) for p in spec.points if len(p) == 3] + [int(b[4]) for b in spec.boxes if len(b) == 5]
        masks: list[tuple[Any, int]] = []
        if isinstance(spec, PredictSpec):
            masks = [(decode_rle([rle])[0], frame) for rle, frame in spec.masks]
            keep += [f for _, f in masks]
        try:
            if isinstance(spec, PredictSpec) and spec.sam2_frames == "all":
                media: Any = str(probe.path)  # predict must see the file to segment every frame
            else:
                media = up.load(str(probe.path), spec.num_frames, keep)
        except (ValueError, FileNotFoundError) as err:
            raise ApiError(415, "undecodable_media", f"the media cannot be decoded: {_scrub(str(err), probe.path)}",
                           field="file") from None
        t_decoded = time.perf_counter()
        try:
            if isinstance(spec, PredictSpec):
                result = up.predict(
                    media, spec.prompt, points=spec.points, boxes=spec.boxes, masks=masks,
                    num_frames=spec.num_frames, max_new_tokens=spec.max_new_tokens, sam2_frames=spec.sam2_frames,
                    response=spec.response,
                )
            else:
                result = up.pixelqa(media, spec.question, spec.options, points=spec.points, boxes=spec.boxes,
                                    num_frames=spec.num_frames)
        except ValueError as err:  # the API's own input checks (e.g. points given but no [k] in the prompt)
            msg = _scrub(str(err), probe.path)
            raise ApiError(422, "invalid_request", msg, field=_guess_field(msg)) from None
        out = result.to_dict(include_masks=spec.include_masks)
        out["media"] = {**out.get("media", {}), "source": "upload" if probe.path.parent == temps.root
                        else str(probe.path.relative_to(media_root) if media_root else probe.path.name)}
        out["request_id"] = request_id
        out["model"] = state["model_name"]
        now = time.perf_counter()
        out["timings"] = {
            **out.get("timings", {}),
            "queue_wait_s": t_start - t_submit,
            "media_decode_s": t_decoded - t_start,
            "total_s": now - t0,
        }
        return json.dumps(out, ensure_ascii=False).encode("utf-8")

    # -------------------------------------------------------------- routes

    @app.post("/v1/predict", summary="Answer a prompt about an image/video; objects with RLE masks",
              openapi_extra=_request_body_doc("predict"), responses=_responses_doc())  # type: ignore[arg-type]
    async def predict(request: Request) -> Response:
        """Multipart (`file` + form fields; JSON-valued fields as JSON text) or JSON (`media_base64`).

        Points/boxes are in original pixels with an optional original frame index and become `[0]`, `[1]`, ...
        in the prompt. The reply is `UniPixelResult.to_dict()` (answer, `clean_text`, one object per mask with
        per-frame COCO RLE, boxes, areas, scores) plus `request_id`, `model` and server timings.
        """
        return await handle(request, "predict")

    @app.post("/v1/pixelqa", summary="PixelQA: segment the prompted objects, then answer a multiple-choice question",
              openapi_extra=_request_body_doc("pixelqa"), responses=_responses_doc())  # type: ignore[arg-type]
    async def pixelqa(request: Request) -> Response:
        """Two model passes (segment the `[k]` objects, then answer from their masks); `choice` holds
        the parsed option letter (null when the answer names none)."""
        return await handle(request, "pixelqa")

    @app.get("/health", summary="Liveness/readiness: model loaded, queue depth, uptime")
    async def health() -> JSONResponse:
        loaded = state["api"] is not None
        failed = state.get("load_error")
        body = {
            "status": "ok" if loaded else ("load_failed" if failed else "loading"),
            **({"error": failed} if failed else {}),
            "model_loaded": loaded,
            "queue_depth": max(queue.pending - queue.running, 0),
            "in_flight": queue.running,
            "queue_size": queue.queue_size,
            "served": queue.served,
            "failed": queue.failed,
            "cancelled": queue.cancelled,
            "uptime_s": round(time.time() - state["started"], 3),
            "peak_rss_mb": _peak_rss_mb(),
        }
        return JSONResponse(body, status_code=200 if loaded else (500 if failed else 503))

    @app.get("/v1/info", summary="Model, device and request limits")
    async def info() -> JSONResponse:
        up = state["api"]
        model: dict[str, Any] = {"name": state["model_name"], "path": str(cfg.model) if cfg.model else "builtin"}
        if up is not None:
            model.update(device=str(up.model.device), dtype=str(up.model.dtype).replace("torch.", ""),
                         min_pixels=up.min_pixels, max_pixels=up.max_pixels)
        from . import __version__ as pkg_version

        return JSONResponse({
            "api_version": API_VERSION, "unipixel_version": pkg_version, "model": model, "limits": cfg.limits(),
            "endpoints": ["POST /v1/predict", "POST /v1/pixelqa", "GET /health", "GET /v1/info", "GET /docs"],
        })

    app.add_middleware(_Guard, media_limit=cfg.max_upload_bytes)
    app.state.queue = queue
    app.state.temp_root = temps.root
    return app


def check_object_markers(spec: PredictSpec | PixelQASpec) -> None:
    """The API's ``[k]`` checks, before the request takes a queue slot: every point / box is referred to as ``[k]``
    and every ``[k]`` names an object of the request (points, then boxes, then masks)."""
    from .api import UniPixel, _check_markers

    is_qa = isinstance(spec, PixelQASpec)
    field, text = ("question", spec.question) if is_qa else ("prompt", spec.prompt)
    n_ref = len(spec.points) + len(spec.boxes)
    n_obj = n_ref + (0 if is_qa else len(spec.masks))
    hint = "write [0], [1], ... for the points first, then the boxes" + ("" if is_qa else ", then the masks")
    try:
        UniPixel._with_ref_tokens(text, n_ref)
        _check_markers(text, range(n_obj), hint)
    except ValueError as err:
        raise _bad(field, str(err), hint) from None


def _guess_field(message: str) -> str | None:
    """The request field an API error is about (prompt kinds first: their messages also say "frame")."""
    if "prompt refers to" in message:  # an unknown [k] in the prompt: fix the prompt (or add the object)
        return "prompt"
    for name in ("point", "box", "mask", "prompt", "option", "num_frames", "frame"):
        if name in message:
            return {"point": "points", "box": "boxes", "mask": "masks", "option": "options",
                    "frame": "num_frames"}.get(name, name)
    return None


# ----------------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="unipixel serve",
        description="Serve a UniPixel model over HTTP (FastAPI): POST /v1/predict, POST /v1/pixelqa, GET /health, "
        "GET /v1/info, docs at /docs. One model, requests queued and run one at a time.",
    )
    p.add_argument("--model", help="checkpoint directory or hub id (default: the built-in model)")
    p.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1; there is no auth)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="default: bf16 on CUDA, fp32 on CPU")
    p.add_argument("--sam2-config-dir", action="append", default=[], metavar="DIR",
                   help="extra directory of SAM 2 YAML configs (repeatable; needed for custom checkpoints)")
    p.add_argument("--frames", type=int, default=16, help="default frames sampled from a video (default 16)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="default generation length (default 256)")
    p.add_argument("--max-new-tokens-limit", type=int, default=1024, help="largest max_new_tokens a client may ask")
    p.add_argument("--min-pixels", type=int, help="LLM pixel budget per frame, lower bound (default: reference)")
    p.add_argument("--max-pixels", type=int, help="LLM pixel budget per frame, upper bound (default: reference)")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="largest upload in MiB (413 above; default 50)")
    p.add_argument("--max-frames", type=int, default=64, help="most frames one request may process (default 64)")
    p.add_argument("--max-frame-side", type=int, default=4096, help="largest frame width/height (default 4096)")
    p.add_argument("--max-prompt-chars", type=int, default=4000, help="longest prompt (default 4000)")
    p.add_argument("--queue-size", type=int, default=64, help="requests waiting or running before 503 (default 64)")
    p.add_argument("--media-root", help="allow JSON requests to name files under this directory (default: off)")
    p.add_argument("--tmp-dir", help="where uploads are staged (default: the system temp dir)")
    p.add_argument("--torch-threads", type=int, help="CPU threads for torch ops (default: torch's choice; 1-2 "
                   "avoids thrashing on a shared CPU box)")
    p.add_argument("--no-access-log", action="store_true", help="do not log every request")
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """Validate CLI values (a bad limit should fail at startup, not on the first request)."""
    for name in ("frames", "max_new_tokens", "max_new_tokens_limit", "max_frames", "max_frame_side",
                 "max_prompt_chars", "queue_size"):
        if getattr(args, name) < 1:
            raise SystemExit(f"error: --{name.replace('_', '-')} must be >= 1")
    if args.max_upload_mb <= 0:
        raise SystemExit("error: --max-upload-mb must be > 0")
    if args.media_root and not Path(args.media_root).is_dir():
        raise SystemExit(f"error: --media-root {args.media_root!r} is not a directory")
    return ServerConfig(
        model=args.model, host=args.host, port=args.port, device=args.device, dtype=args.dtype,
        sam2_config_dirs=list(args.sam2_config_dir), num_frames=min(args.frames, args.max_frames),
        max_new_tokens=min(args.max_new_tokens, args.max_new_tokens_limit),
        max_new_tokens_limit=args.max_new_tokens_limit, min_pixels=args.min_pixels, max_pixels=args.max_pixels,
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_frames=args.max_frames,
        max_frame_side=args.max_frame_side, max_prompt_chars=args.max_prompt_chars, queue_size=args.queue_size,
        media_root=args.media_root, tmp_dir=args.tmp_dir, torch_threads=args.torch_threads, access_log=not args.no_access_log,
        log_level=args.log_level,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``unipixel serve ...``: parse flags, build the app (the model loads in the background once the socket is bound), run uvicorn until stopped."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    cfg = config_from_args(args)
    try:
        import uvicorn
    except ModuleNotFoundError as err:
        raise SystemExit(f"error: the HTTP server needs fastapi and uvicorn ({err}); "
                         "pip install fastapi uvicorn python-multipart") from None
    logging.basicConfig(level=cfg.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding %s: this server has no authentication; anyone who can reach it can use the model",
                    cfg.host)
    if cfg.device is not None:  # refuse an unusable device before uvicorn starts (and prints a startup traceback)
        from .api import _resolve_device

        try:
            _resolve_device(cfg.device)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
    if cfg.model is not None and not Path(str(cfg.model)).exists() and str(cfg.model).count("/") != 1:
        raise SystemExit(f"error: model not found: {cfg.model} (a checkpoint directory or an org/name hub id)")
    app = create_app(cfg)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level, access_log=cfg.access_log,
                timeout_graceful_shutdown=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())

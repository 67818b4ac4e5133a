"""The web demo: ``unipixel demo`` starts a Gradio app around :class:`unipixel.api.UniPixel`.

Upload an image or a video, pick the prompt frame with a slider, click points or two-click boxes on it (or
paint a mask), type a prompt that refers to them as ``[0]``, ``[1]``, ... and submit.  The answer comes back
with every object id highlighted in the colour its mask has in the overlay (an image, or an mp4 that plays the
masks), plus the per-object RLE JSON as a download.

Why it is built this way (and how it differs from the reference demo, reference-design §9.2):

* everything goes through the public API (``UniPixel.load`` / ``predict``) and the shared writers
  (``overlay_frames`` colours, ``write_overlay`` mp4/png, ``write_rle_json``), so the demo shows exactly what
  the CLI and the Python API return, with the same object ids and colours;
* an answer without ``<|seg|>`` is a normal outcome (the reference crashes on it): the text is shown, the
  overlay shows the frames the model saw, and the JSON has no objects;
* point and box prompts with a frame index are supported (the reference demo had only a painted mask);
* the callbacks are plain functions of a :class:`DemoState` so that they are unit-tested without a browser
  (``tests/test_demo.py``), and one real headless-browser test drives the whole page
  (``tests/test_demo_browser.py``);
* the model is not thread-safe, so predictions run one at a time in the Gradio queue, while the light UI
  events (clicks, frame changes) have their own unlimited concurrency and never wait behind a prediction.

Object numbering follows the API: point prompts first, then boxes, then painted masks (``[k]`` in the prompt
refers to the k-th of that order); the prompt list and the markers on the frame always show the current
numbering.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import itertools
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from .writers import _draw_id, object_color, overlay_frames, write_overlay, write_rle_json

try:
    import gradio as gr
except ModuleNotFoundError as err:  # pragma: no cover - exercised only in installs without the extra
    raise ModuleNotFoundError(
        f"the web demo needs Gradio ({err}); install it with `pip install 'gradio>=6,<7'`"
    ) from err

__all__ = [
    "DemoState",
    "PromptItem",
    "PredictionOutput",
    "load_preview",
    "display_scale",
    "shown_frame",
    "shown_to_original",
    "render_frame",
    "add_click",
    "add_painted_mask",
    "clear_prompts",
    "undo_prompt",
    "ordered_prompts",
    "describe_prompts",
    "suggest_prompt",
    "editor_mask",
    "highlight_segments",
    "run_prediction",
    "build_demo",
    "main",
]

Mode = Literal["point", "box"]
MODES: tuple[str, ...] = ("point", "box")
MAX_PREVIEW_FRAMES = 120  # frames decoded for the slider; bounds memory for long videos
MAX_ALL_FRAMES = 300  # "masks on every frame" decodes the whole video (twice): refused above this many frames
MAX_PREVIEW_SIDE = 960  # preview frames kept per session are shrunk to this long side
MIN_DISPLAY_SIDE = 640  # small frames are enlarged to this long side for clicking (see display_scale)
EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "examples"  # present in a source checkout only
_REQUEST_IDS = itertools.count()
_MARKER_RE = re.compile(r"\[(\d+)\]")


# ----------------------------------------------------------------------------------------------------------
# state


@dataclass
class PromptItem:
    """One visual prompt as the user made it: original frame index and original pixel coordinates."""

    kind: Literal["point", "box", "mask"]
    frame: int
    coords: tuple[float, ...] = ()  # (x, y) for points, (x1, y1, x2, y2) for boxes
    mask: np.ndarray | None = None  # (H, W) bool for masks


@dataclass
class DemoState:
    """Per-session state: the uploaded media, its preview frames and the visual prompts made so far.

    ``frames`` are at most :data:`MAX_PREVIEW_FRAMES` uniformly sampled frames (all of them for short clips),
    shrunk to at most :data:`MAX_PREVIEW_SIDE` pixels (the session keeps them in memory: a 1080p clip would
    cost gigabytes); ``frame_indices`` their original indices, ``size`` the original (H, W).  Prompts store
    original frame indices and original pixel coordinates, so the API gets them exactly as for the CLI.
    """

    source: str | None = None
    frames: np.ndarray | None = None
    size: tuple[int, int] = (0, 0)
    frame_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    is_image: bool = True
    fps: float | None = None
    total_frames: int = 0
    prompts: list[PromptItem] = field(default_factory=list)
    pending: tuple[float, float, int] | None = None  # first corner (x, y, frame) of a box being drawn

    @property
    def loaded(self) -> bool:
        """True once media has been uploaded."""
        return self.frames is not None and self.frames.shape[0] > 0

    def frame_at(self, pos: int) -> tuple[np.ndarray, int]:
        """Preview frame at slider position ``pos`` (clamped) and its original frame index."""
        if not self.loaded:
            raise ValueError("upload an image or a video first")
        assert self.frames is not None
        p = int(min(max(int(pos), 0), self.frames.shape[0] - 1))
        return self.frames[p], int(self.frame_indices[p])


@dataclass
class PredictionOutput:
    """What one submit produces, independent of Gradio (the UI wrapper turns it into component updates)."""

    segments: list[tuple[str, str | None]]
    color_map: dict[str, str]
    overlay_path: Path
    is_video: bool
    json_path: Path
    details: str
    result: Any


# ----------------------------------------------------------------------------------------------------------
# pure callbacks (unit-tested)


def load_preview(path: str | os.PathLike[str], max_frames: int = MAX_PREVIEW_FRAMES) -> DemoState:
    """Decode ``path`` for the prompt-frame slider (at most ``max_frames`` frames) into a fresh state."""
    from .media import load_media

    media = load_media(path, num_frames=max_frames)
    frames = media.frames
    h, w = int(frames.shape[1]), int(frames.shape[2])
    if max(h, w) > MAX_PREVIEW_SIDE:
        f = MAX_PREVIEW_SIDE / max(h, w)
        new = (max(1, round(w * f)), max(1, round(h * f)))
        frames = np.stack([np.asarray(Image.fromarray(x).resize(new, Image.Resampling.BILINEAR)) for x in frames])
    return DemoState(
        source=os.fspath(path),
        frames=frames,
        size=(h, w),
        frame_indices=np.asarray(media.frame_indices, dtype=np.int64),
        is_image=bool(media.is_image),
        fps=media.fps,
        total_frames=int(media.total_frames or media.num_frames),
    )


def ordered_prompts(state: DemoState) -> list[PromptItem]:
    """Prompts in the order the API numbers them: points, then boxes, then masks (``[k]`` = k-th here)."""
    return [p for kind in ("point", "box", "mask") for p in state.prompts if p.kind == kind]


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*color)


def _enlargement(h: int, w: int) -> int:
    """Integer factor that brings a small frame's long side to at least :data:`MIN_DISPLAY_SIDE`."""
    return max(1, math.ceil(MIN_DISPLAY_SIDE / max(int(h), int(w), 1)))


def shown_frame(state: DemoState, pos: int) -> tuple[np.ndarray, int]:
    """The frame as the page shows it (preview frame, small ones enlarged) and its original frame index.

    Why enlarge: browsers show a small image at its natural size (Gradio scales images down, never up), and
    a 168x112 frame is hard to click precisely, so small frames are repeated (nearest neighbour) up to
    :data:`MIN_DISPLAY_SIDE` pixels on the long side.
    """
    frame, orig = state.frame_at(pos)
    k = _enlargement(*frame.shape[:2])
    if k > 1:
        frame = np.repeat(np.repeat(frame, k, axis=0), k, axis=1)
    return frame, orig


def display_scale(state: DemoState) -> float:
    """Shown pixels per original pixel (> 1 for enlarged small frames, < 1 for shrunk large ones).

    Gradio reports clicks in shown pixels: original = shown / scale (see :func:`shown_to_original`).
    """
    if not state.loaded or not state.size[1]:
        return 1.0
    assert state.frames is not None
    pw = int(state.frames.shape[2])
    return pw * _enlargement(int(state.frames.shape[1]), pw) / state.size[1]


def shown_to_original(state: DemoState, x: float, y: float) -> tuple[float, float]:
    """Original pixel (column, row) under the shown pixel ``(x, y)``."""
    s = display_scale(state)
    return float(math.floor((x + 0.5) / s)), float(math.floor((y + 0.5) / s))


def render_frame(state: DemoState, pos: int) -> np.ndarray:
    """:func:`shown_frame` at ``pos`` with the prompts made on that frame drawn on it.

    Prompts are drawn in :func:`unipixel.writers.object_color` of their number, i.e. the colour the result's
    object with the same id gets in the overlay.
    """
    frame, orig = shown_frame(state, pos)
    s = display_scale(state)
    items = [(k, p) for k, p in enumerate(ordered_prompts(state)) if p.frame == orig]
    masks = {k: p.mask for k, p in items if p.kind == "mask" and p.mask is not None}
    out = overlay_frames(frame, masks, draw_ids=False)[0] if masks else frame  # masks resized to the frame
    img = Image.fromarray(np.ascontiguousarray(out))
    h, w = out.shape[:2]
    r = max(4, min(h, w) // 60)
    width = max(2, min(h, w) // 200)
    font_size = max(12, min(h, w) // 22)
    for k, p in items:
        color = object_color(k)
        if p.kind == "point":
            x, y = ((c + 0.5) * s for c in p.coords)
            ImageDraw.Draw(img).ellipse([x - r, y - r, x + r, y + r], fill=color, outline=(255, 255, 255),
                                        width=max(1, r // 3))
            _draw_id(img, f"[{k}]", (int(x), int(y - r - font_size)), color, font_size)
        elif p.kind == "box":
            x1, y1, x2, y2 = (c * s for c in p.coords)
            ImageDraw.Draw(img).rectangle([x1, y1, x2 - 1, y2 - 1], outline=color, width=width)
            _draw_id(img, f"[{k}]", (int(x1) + font_size, int(y1) + font_size // 2), color, font_size)
        else:
            assert p.mask is not None
            ys, xs = np.nonzero(p.mask)
            if xs.size:
                _draw_id(img, f"[{k}]", (int(xs.mean() * s), int(ys.mean() * s)), color, font_size)
    if state.pending is not None and state.pending[2] == orig:
        x, y = ((c + 0.5) * s for c in state.pending[:2])
        draw = ImageDraw.Draw(img)
        for fill, wd in (((0, 0, 0), width + 2), ((255, 255, 255), width)):
            draw.line([x - 2 * r, y, x + 2 * r, y], fill=fill, width=wd)
            draw.line([x, y - 2 * r, x, y + 2 * r], fill=fill, width=wd)
    return np.asarray(img)


def add_click(state: DemoState, pos: int, x: float, y: float, mode: str) -> DemoState:
    """A click at original pixel ``(x, y)`` (see :func:`shown_to_original`) of the frame at slider ``pos``.

    ``mode="point"`` adds a point; ``mode="box"``: the first click stores a corner, the second completes the
    box (a second click on another frame starts a new box there).  Returns a new state.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    _, orig = state.frame_at(pos)
    h, w = state.size
    x = float(min(max(x, 0), w - 1))
    y = float(min(max(y, 0), h - 1))
    prompts = list(state.prompts)
    if mode == "point":
        prompts.append(PromptItem("point", orig, (x, y)))
        return dataclasses.replace(state, prompts=prompts, pending=None)
    if state.pending is None or state.pending[2] != orig:
        return dataclasses.replace(state, pending=(x, y, orig))
    px, py, _ = state.pending
    x1, x2 = sorted((px, x))
    y1, y2 = sorted((py, y))
    # Both clicked pixels are inside the box: exclusive x2/y2 (the results.py convention) = last pixel + 1.
    box = (x1, y1, min(x2 + 1, float(w)), min(y2 + 1, float(h)))
    prompts.append(PromptItem("box", orig, box))
    return dataclasses.replace(state, prompts=prompts, pending=None)


def editor_mask(value: Any, size: tuple[int, int]) -> np.ndarray | None:
    """The painted region of a ``gr.ImageEditor`` value as an (H, W) bool mask (None if nothing painted).

    Any non-transparent pixel of any layer counts; a canvas of another size is resized (nearest) to ``size``.
    """
    if not isinstance(value, dict):
        return None
    painted: np.ndarray | None = None
    for layer in value.get("layers") or []:
        arr = np.asarray(layer)
        if arr.ndim != 3 or arr.shape[-1] != 4:
            continue
        m = arr[..., 3] > 0
        painted = m if painted is None or painted.shape != m.shape else painted | m
    if painted is None or not painted.any():
        return None
    if painted.shape != tuple(size):
        im = Image.fromarray(painted.astype(np.uint8) * 255).resize((size[1], size[0]), Image.Resampling.NEAREST)
        painted = np.asarray(im) > 127
    return painted


def add_painted_mask(state: DemoState, pos: int, editor_value: Any) -> DemoState:
    """Add the mask painted in the editor as a mask (region) prompt on the frame at ``pos``."""
    _, orig = state.frame_at(pos)
    mask = editor_mask(editor_value, state.size)
    if mask is None:
        raise ValueError("paint a region on the frame first (brush in the mask editor)")
    return dataclasses.replace(state, prompts=[*state.prompts, PromptItem("mask", orig, mask=mask)])


def clear_prompts(state: DemoState) -> DemoState:
    """Remove every prompt (and a half-drawn box)."""
    return dataclasses.replace(state, prompts=[], pending=None)


def undo_prompt(state: DemoState) -> DemoState:
    """Remove a half-drawn box corner, else the most recently added prompt."""
    if state.pending is not None:
        return dataclasses.replace(state, pending=None)
    return dataclasses.replace(state, prompts=list(state.prompts[:-1]))


def describe_prompts(state: DemoState) -> str:
    """Markdown list of the prompts with their current ``[k]`` numbers (what to write in the question)."""
    lines = []
    for k, p in enumerate(ordered_prompts(state)):
        if p.kind == "point":
            what = "point ({:.0f}, {:.0f})".format(*p.coords)
        elif p.kind == "box":
            what = "box ({:.0f}, {:.0f}) – ({:.0f}, {:.0f})".format(*p.coords)
        else:
            assert p.mask is not None
            what = f"painted mask ({int(p.mask.sum())} px)"
        lines.append(f"- <span style='color:{_hex(object_color(k))}'>■</span> **[{k}]** {what} on frame {p.frame}")
    if state.pending is not None:
        lines.append(f"- box corner at ({state.pending[0]:.0f}, {state.pending[1]:.0f}) — click the opposite corner")
    if not lines:
        return "No visual prompts. Click the frame to add a point (or switch to *box* and click two corners)."
    return "\n".join(lines)


def suggest_prompt(state: DemoState, current: str) -> str:
    """Prefill the question with ``[0]``.. references when prompts exist and the user has typed nothing."""
    n = len(state.prompts)
    if current.strip() or n == 0:
        return current
    refs = " and ".join(f"[{k}]" for k in range(n))
    return f"What is {refs} doing?" if n == 1 else f"What are {refs} doing?"


def _object_labels(result: Any, n_prompts: int) -> dict[int, str]:
    """Display label per object id / prompt number: ``"object k"``, or ``"k: <label>"`` when known."""
    labels = {k: f"object {k}" for k in range(n_prompts)}
    for o in result.objects:
        labels[o.id] = f"{o.id}: {o.label}" if o.label else f"object {o.id}"
    return labels


def highlight_segments(result: Any, n_prompts: int = 0) -> tuple[list[tuple[str, str | None]], dict[str, str]]:
    """``gr.HighlightedText`` value and colour map for ``result.clean_text``.

    Every ``[k]`` marker whose ``k`` is an object id (a mask in the overlay) or a visual-prompt number is
    labelled and coloured with :func:`object_color` ``(k)`` — the overlay's colour for that id; the rest of
    the text is unlabelled.  Works for answers without any object (then only prompt references are marked).
    """
    text = result.clean_text
    labels = _object_labels(result, n_prompts)
    segments: list[tuple[str, str | None]] = []
    color_map: dict[str, str] = {}
    pos = 0
    for m in _MARKER_RE.finditer(text):
        k = int(m.group(1))
        if k not in labels:
            continue
        if m.start() > pos:
            segments.append((text[pos : m.start()], None))
        segments.append((m.group(0), labels[k]))
        color_map[labels[k]] = _hex(object_color(k))
        pos = m.end()
    if pos < len(text) or not segments:
        segments.append((text[pos:], None))
    return segments, color_map


def _playback_fps(n_frames: int, fps: float | None, total_frames: int, all_frames: bool) -> float:
    """Frame rate that makes the overlay last about as long as the source (clamped to 1..30 fps)."""
    if not fps:
        return 2.0
    rate = fps if all_frames else n_frames * fps / max(total_frames, 1)
    return float(min(max(rate, 1.0), 30.0))


def _details(result: Any, seen: Sequence[int]) -> str:
    """Markdown summary: objects, frames, timings — what the JSON holds, readable at a glance."""
    lines = []
    if not result.objects:
        lines.append("**No masks:** the answer contains no `<|seg|>` token, so nothing was segmented.")
    for o in result.objects:
        present = [int(f) for f in o.masks.present()]
        score = "n/a" if o.mean_score is None else f"{o.mean_score:.2f}"
        label = f" “{o.label}”" if o.label else ""
        lines.append(
            f"- <span style='color:{_hex(object_color(o.id))}'>■</span> **[{o.id}]**{label}: mask on "
            f"{len(present)} of {len(o.masks)} frames, mean score {score}"
        )
    frames = ", ".join(str(f) for f in seen[:32]) + (" …" if len(seen) > 32 else "")
    lines.append(f"\nFrames the model saw: {frames}")
    if result.timings:
        t = ", ".join(f"{k} {v:.2f} s" for k, v in result.timings.items())
        lines.append(f"\nTimings: {t}")
    return "\n".join(lines)


def run_prediction(
    api: Any,
    state: DemoState,
    prompt: str,
    out_dir: str | os.PathLike[str],
    *,
    num_frames: int | None = None,
    all_frames: bool = False,
    max_new_tokens: int | None = None,
    max_all_frames: int = MAX_ALL_FRAMES,
) -> PredictionOutput:
    """Run ``api.predict`` on the state's media and prompts; write the overlay and the RLE JSON.

    The media is loaded here with :meth:`UniPixel.load` (keeping the prompt frames) and handed to ``predict``
    as a ``Media`` so the overlay is drawn on exactly the frames the model saw.  ``all_frames`` asks SAM 2 for
    masks on every frame of a video (the overlay then plays at the native frame rate).

    Raises:
        ValueError: no media, an empty prompt, or a prompt the API rejects (e.g. prompts without ``[k]``).
    """
    if not state.loaded or state.source is None:
        raise ValueError("upload an image or a video first")
    if not prompt.strip():
        raise ValueError("type a question or instruction")
    from .media import load_media

    ordered = ordered_prompts(state)
    points = [(*p.coords, p.frame) for p in ordered if p.kind == "point"]
    boxes = [(*p.coords, p.frame) for p in ordered if p.kind == "box"]
    masks = [(p.mask, p.frame) for p in ordered if p.kind == "mask"]
    n_ref = len(points) + len(boxes)
    extra: dict[str, Any] = {}
    if masks and n_ref:
        # Region prompts are numbered after the points and boxes, as the prompt list shows them.
        extra["mem_object_ids"] = [n_ref + j for j in range(len(masks))]
    keep = [p.frame for p in ordered]
    if all_frames and not state.is_image and state.total_frames > max_all_frames:
        raise ValueError(
            f"masks on every frame are limited to {max_all_frames} frames and this video has {state.total_frames}; "
            "untick 'Masks on every video frame' (masks on the sampled frames) or trim the video"
        )
    media = api.load(state.source, num_frames, keep)
    video_all = all_frames and not media.is_image
    result = api.predict(
        state.source if video_all else media, prompt, points=points, boxes=boxes, masks=masks,
        num_frames=num_frames, sam2_frames="all" if video_all else "sampled", max_new_tokens=max_new_tokens,
        **extra,
    )
    shown = load_media(state.source) if video_all else media
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = Path(state.source).stem or "media"
    overlay_path = out / (f"{stem}_overlay.png" if shown.is_image else f"{stem}_overlay.mp4")
    fps = _playback_fps(shown.num_frames, state.fps, state.total_frames, video_all)
    frames = shown.frames
    scale = _enlargement(frames.shape[1], frames.shape[2])
    if scale > 1:  # small media: draw on enlarged frames (masks are scaled nearest) so the overlay is legible
        frames = np.repeat(np.repeat(frames, scale, axis=1), scale, axis=2)
    write_overlay(overlay_path, frames, result, frame_indices=shown.frame_indices, fps=fps)
    json_path = write_rle_json(out / f"{stem}_unipixel.json", result)
    segments, color_map = highlight_segments(result, len(ordered))
    return PredictionOutput(
        segments=segments,
        color_map=color_map,
        overlay_path=overlay_path,
        is_video=not shown.is_image,
        json_path=json_path,
        details=_details(result, [int(f) for f in media.frame_indices]),
        result=result,
    )


# ----------------------------------------------------------------------------------------------------------
# Gradio app


def _slider_label(state: DemoState, pos: int) -> str:
    if not state.loaded:
        return "Upload an image or a video."
    _, orig = state.frame_at(pos)
    if state.is_image:
        return "Image — click it to add prompts."
    return f"Prompt frame: original frame **{orig}** of {state.total_frames} (fps {state.fps or 'n/a'})."


def _editor_value(state: DemoState, pos: int) -> dict[str, Any] | None:
    if not state.loaded:
        return None
    frame, _ = shown_frame(state, pos)  # as clicked; editor_mask scales the painting to the original size
    return {"background": frame, "layers": [], "composite": None}


def build_demo(
    api: Any,
    *,
    work_dir: str | os.PathLike[str] | None = None,
    examples: Sequence[tuple[str, str]] | None = None,
    max_preview_frames: int = MAX_PREVIEW_FRAMES,
    max_all_frames: int = MAX_ALL_FRAMES,
) -> gr.Blocks:
    """The Gradio app for a loaded :class:`~unipixel.api.UniPixel` (``api``).

    ``work_dir`` receives one folder per prediction (overlay + JSON; default: a temp dir removed at exit).
    ``examples`` are ``(media path, prompt)`` pairs (default: the repository's ``examples/`` when present).
    """
    if work_dir is None:
        work_dir = tempfile.mkdtemp(prefix="unipixel-demo-")
        atexit.register(shutil.rmtree, work_dir, True)
    root = Path(work_dir)
    if examples is None:
        ex = EXAMPLES_DIR / "shapes.mp4"
        examples = [(str(ex), "Please segment the moving red object in this video.")] if ex.exists() else []
    default_frames = int(getattr(api, "num_frames", 16) or 16)
    default_tokens = int(getattr(api, "max_new_tokens", 256) or 256)

    def _prompt_views(state: DemoState, pos: int, text: str) -> tuple[Any, ...]:
        frame = render_frame(state, pos) if state.loaded else None
        return state, frame, describe_prompts(state), suggest_prompt(state, text)

    def _cleared_outputs() -> tuple[Any, ...]:
        """Answer, overlays, JSON and details emptied: a new media must not show the previous one's results."""
        return (gr.HighlightedText(value=None), gr.Image(value=None, visible=False), gr.Video(value=None, visible=False),
                None, "")

    def on_media(path: str | None) -> tuple[Any, ...]:
        # The prompt text is neither read nor written here: an example sets media and prompt together, and
        # echoing a stale prompt back would overwrite the example's.
        empty = DemoState()
        no_media = (empty, None, gr.Slider(value=0, maximum=1, interactive=False), _slider_label(empty, 0),
                    None, describe_prompts(empty), *_cleared_outputs())
        if not path:
            return no_media
        try:
            state = load_preview(path, max_preview_frames)
        except (ValueError, OSError) as err:
            # The previous media's state is dropped too, so a later submit cannot run on it silently.
            gr.Warning(f"cannot read {Path(path).name}: {str(err).replace(str(path), Path(path).name)}")
            return no_media
        n = int(state.frames.shape[0]) if state.frames is not None else 1
        # A slider needs maximum > minimum: a single image gets a disabled 0..1 slider.
        slider = gr.Slider(value=0, minimum=0, maximum=max(n - 1, 1), step=1, interactive=n > 1)
        return (state, render_frame(state, 0), slider, _slider_label(state, 0), _editor_value(state, 0),
                describe_prompts(state), *_cleared_outputs())

    def on_frame(state: DemoState, pos: float) -> tuple[Any, ...]:
        if not state.loaded:
            return None, _slider_label(state, 0), None
        return render_frame(state, int(pos)), _slider_label(state, int(pos)), _editor_value(state, int(pos))

    def on_select(state: DemoState, pos: float, mode: str, text: str, evt: gr.SelectData) -> tuple[Any, ...]:
        if not state.loaded:
            raise gr.Error("upload an image or a video first")
        # Gradio reports pixels of the shown (enlarged or shrunk) image
        x, y = shown_to_original(state, float(evt.index[0]), float(evt.index[1]))
        return _prompt_views(add_click(state, int(pos), x, y, mode), int(pos), text)

    def on_add_mask(state: DemoState, pos: float, editor: Any, text: str) -> tuple[Any, ...]:
        try:
            new = add_painted_mask(state, int(pos), editor)
        except ValueError as err:
            raise gr.Error(str(err)) from err
        return (*_prompt_views(new, int(pos), text), _editor_value(new, int(pos)))

    def on_clear(state: DemoState, pos: float, text: str) -> tuple[Any, ...]:
        return _prompt_views(clear_prompts(state), int(pos), text)

    def on_undo(state: DemoState, pos: float, text: str) -> tuple[Any, ...]:
        return _prompt_views(undo_prompt(state), int(pos), text)

    def on_submit(
        state: DemoState, text: str, num_frames: float, all_frames: bool, max_new_tokens: float
    ) -> tuple[Any, ...]:
        out_dir = root / f"{next(_REQUEST_IDS):05d}"
        try:
            res = run_prediction(
                api, state, text, out_dir, num_frames=int(num_frames), all_frames=bool(all_frames),
                max_new_tokens=int(max_new_tokens), max_all_frames=max_all_frames,
            )
        except ValueError as err:
            raise gr.Error(str(err)) from err
        answer = gr.HighlightedText(value=res.segments, color_map=res.color_map)
        image = gr.Image(value=str(res.overlay_path) if not res.is_video else None, visible=not res.is_video)
        video = gr.Video(value=str(res.overlay_path) if res.is_video else None, visible=res.is_video)
        return answer, image, video, str(res.json_path), res.details

    with gr.Blocks(title="UniPixel demo", analytics_enabled=False) as demo:
        state = gr.State(DemoState())
        gr.Markdown(
            "## UniPixel — pixel-level answers for images and videos\n"
            "Upload media, choose a frame, click **points** (or two corners of a **box**) or paint a mask, "
            "and ask about them as `[0]`, `[1]`, … — or just ask to *segment* something. "
            "Object ids in the answer have the colour of their masks in the overlay."
        )
        with gr.Row():
            with gr.Column(scale=1):
                media = gr.File(
                    label="Image or video", file_types=["image", "video"], type="filepath",
                    elem_id="media-upload",
                )
                frame_info = gr.Markdown(_slider_label(DemoState(), 0), elem_id="frame-info")
                slider = gr.Slider(0, 1, value=0, step=1, label="Prompt frame", interactive=False,
                                   elem_id="frame-slider")
                frame_view = gr.Image(
                    label="Click to add a point / box corner", interactive=False, type="numpy",
                    format="png", elem_id="prompt-frame",
                )
                with gr.Row():
                    mode = gr.Radio(list(MODES), value="point", label="Click adds", elem_id="click-mode")
                    undo_btn = gr.Button("Undo", size="sm", elem_id="undo-btn")
                    clear_btn = gr.Button("Clear prompts", size="sm", elem_id="clear-btn")
                prompt_list = gr.Markdown(describe_prompts(DemoState()), elem_id="prompt-list")
                with gr.Accordion("Paint a mask (region prompt)", open=False):
                    editor = gr.ImageEditor(
                        label="Paint over the region, then add it", sources=(), type="numpy",
                        layers=False, transforms=(), elem_id="mask-editor",
                    )
                    add_mask_btn = gr.Button("Add painted mask", size="sm", elem_id="add-mask-btn")
            with gr.Column(scale=1):
                prompt = gr.Textbox(
                    label="Prompt", lines=2, elem_id="prompt-text",
                    placeholder="e.g. “Please segment the red square.” or “What is [0] doing?”",
                )
                with gr.Accordion("Options", open=False):
                    num_frames = gr.Slider(1, 64, value=default_frames, step=1, label="Frames the model sees")
                    all_frames = gr.Checkbox(False, label="Masks on every video frame (slower)")
                    max_tokens = gr.Slider(1, 1024, value=default_tokens, step=1, label="Max new tokens")
                submit = gr.Button("Submit", variant="primary", elem_id="submit-btn")
                answer = gr.HighlightedText(label="Answer", elem_id="answer", show_legend=False)
                overlay_image = gr.Image(label="Masks", interactive=False, elem_id="overlay-image", visible=False)
                overlay_video = gr.Video(
                    label="Masks", interactive=False, autoplay=True, loop=True, elem_id="overlay-video",
                    visible=False,
                )
                json_file = gr.File(label="Result JSON (per-object COCO RLE)", interactive=False,
                                    elem_id="result-json")
                details = gr.Markdown(elem_id="details")
        if examples:
            gr.Examples(examples=[list(e) for e in examples], inputs=[media, prompt], label="Examples")

        ui = {"concurrency_limit": None, "show_progress": "hidden"}
        media.change(on_media, [media], [state, frame_view, slider, frame_info, editor, prompt_list,
                                         answer, overlay_image, overlay_video, json_file, details],
                     concurrency_limit=None)
        slider.change(on_frame, [state, slider], [frame_view, frame_info, editor], **ui)
        frame_view.select(on_select, [state, slider, mode, prompt], [state, frame_view, prompt_list, prompt], **ui)
        add_mask_btn.click(on_add_mask, [state, slider, editor, prompt],
                           [state, frame_view, prompt_list, prompt, editor], **ui)
        clear_btn.click(on_clear, [state, slider, prompt], [state, frame_view, prompt_list, prompt], **ui)
        undo_btn.click(on_undo, [state, slider, prompt], [state, frame_view, prompt_list, prompt], **ui)
        # One model, not thread-safe: predictions share one concurrency slot.
        for trigger in (submit.click, prompt.submit):
            trigger(on_submit, [state, prompt, num_frames, all_frames, max_tokens],
                    [answer, overlay_image, overlay_video, json_file, details],
                    concurrency_limit=1, concurrency_id="model")
    return demo


# ----------------------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    """``unipixel demo`` options."""
    p = argparse.ArgumentParser(prog="unipixel demo", description="Start the UniPixel web demo (Gradio).")
    p.add_argument("--model", help="checkpoint directory or hub id (default: the built-in model)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; 0.0.0.0 = all)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--frames", type=int, default=16, help="default number of frames the model sees (16)")
    p.add_argument("--min-pixels", type=int, help="min pixels per frame for the language model")
    p.add_argument("--max-pixels", type=int, help="max pixels per frame for the language model")
    p.add_argument("--max-new-tokens", type=int, default=256, help="default answer length limit (256)")
    p.add_argument("--work-dir", help="where overlays/JSON are written (default: a temp dir removed at exit)")
    p.add_argument("--max-upload-mb", type=float, default=200.0, help="largest upload in MiB (default 200)")
    p.add_argument("--max-all-frames", type=int, default=MAX_ALL_FRAMES,
                   help=f"longest video for 'masks on every frame' (default {MAX_ALL_FRAMES})")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Load the model and serve the demo until interrupted; returns the process exit code."""
    args = build_parser().parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home from a local demo
    from .api import UniPixel, error_line

    kwargs: dict[str, Any] = {"num_frames": args.frames, "max_new_tokens": args.max_new_tokens}
    if args.min_pixels:
        kwargs["min_pixels"] = args.min_pixels
    if args.max_pixels:
        kwargs["max_pixels"] = args.max_pixels
    print(f"loading {args.model or 'the built-in model'} ...", file=sys.stderr, flush=True)
    try:
        api = UniPixel.from_pretrained(args.model, device=args.device, **kwargs)
    except (OSError, ValueError) as err:  # a missing checkpoint (OSError), a bad device / dtype (ValueError)
        print(f"error: cannot load the model: {error_line(err)}", file=sys.stderr)
        if args.model is None and isinstance(err, OSError):
            print("hint: run `unipixel demo --model PATH` with a UniPixel checkpoint directory", file=sys.stderr)
        return 2
    demo = build_demo(api, work_dir=args.work_dir, max_all_frames=args.max_all_frames)
    demo.queue(max_size=32)
    demo.launch(server_name=args.host, server_port=args.port, ssr_mode=False, show_error=True,
                max_file_size=int(args.max_upload_mb * 1024 * 1024))  # bytes
    return 0


if __name__ == "__main__":
    sys.exit(main())

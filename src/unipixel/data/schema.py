"""The one sample schema every dataset reader yields and every trainer / evaluator consumes.

A :class:`Sample` is plain data (JSON-serialisable through :meth:`Sample.to_dict`):

* ``media``: where the pixels are — an image file, a video file, a folder of frames or an explicit list of frame
  files — plus, optionally, which original frames to use (``frame_indices``) and the frame rate;
* ``conversation``: alternating ``user``/``assistant`` turns; text may contain ``<|ref|>`` (one per visual prompt
  of an object), ``<|mem|>`` (written by the processor from object masks; datasets use the region prefix only
  through ``Sample.task`` conventions), and ``<|seg|>`` (one per object to segment, in object order);
* ``objects``: annotated objects with stable integer ids, per-frame masks (COCO RLE dicts, keyed by the index of
  the frame in the media's frame list), an optional visual prompt, and free-form attributes;
* ``task`` / ``meta``: task name (see :data:`TASKS`) and dataset-specific extras (answer options, the correct
  option, question type...). ``meta["has_gt"] = False`` marks server-only splits whose objects have no masks.

:func:`validate_sample` explains, in one message, everything wrong with a sample.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

TASKS = (
    "ref_seg",  # referring segmentation (image or video)
    "reason_seg",  # reasoning segmentation (answer + mask [+ explanation])
    "region_caption",  # caption of objects given by <|ref|> or <|mem|>
    "region_qa",  # question about objects given by <|ref|> or <|mem|>
    "pixelqa",  # refer by point/box -> segment with ids -> multiple-choice answer
    "general_qa",  # plain image/video QA (no pixel output)
)
PROMPT_KINDS = ("point", "box", "mask")
REF, SEG, MEM = "<|ref|>", "<|seg|>", "<|mem|>"


@dataclass
class MediaRef:
    """Where a sample's pixels live. Exactly one of ``path`` / ``frames`` is set."""

    path: str | None = None
    frames: list[str] | None = None
    is_image: bool = False
    frame_indices: list[int] | None = None
    fps: float | None = None


@dataclass
class VisualPrompt:
    """A user-style prompt for one object, in original pixel coordinates, on frame ``frame``.

    ``point``: ``[x, y]``; ``box``: ``[x1, y1, x2, y2]``; ``mask``: uses the object's mask on ``frame``.
    """

    kind: str
    frame: int = 0
    point: list[float] | None = None
    box: list[float] | None = None


@dataclass
class ObjectAnnotation:
    """One object: id, masks per frame (COCO RLE ``{"size": [h, w], "counts": str}``), prompt, attributes."""

    id: int
    masks: dict[int, dict[str, Any]] = field(default_factory=dict)
    prompt: VisualPrompt | None = None
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Turn:
    role: str
    text: str


@dataclass
class Sample:
    id: str
    task: str
    media: MediaRef
    conversation: list[Turn]
    objects: list[ObjectAnnotation] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Sample:
        objects = []
        for o in d.get("objects", []):
            prompt = VisualPrompt(**o["prompt"]) if o.get("prompt") else None
            masks = {int(k): v for k, v in o.get("masks", {}).items()}
            objects.append(ObjectAnnotation(id=o["id"], masks=masks, prompt=prompt, attributes=o.get("attributes", {})))
        return cls(
            id=d["id"],
            task=d["task"],
            media=MediaRef(**d["media"]),
            conversation=[Turn(**t) for t in d["conversation"]],
            objects=objects,
            meta=d.get("meta", {}),
        )


class SampleError(ValueError):
    """A sample that does not follow the schema; the message lists every problem found."""


def read_sample_line(line: str, where: str = "sample") -> Sample:
    """One JSONL line → :class:`Sample`; a line that is not JSON or not a sample dict is a :class:`SampleError`
    naming ``where`` (e.g. ``file.jsonl:12``) and the missing or unexpected field."""
    import json

    try:
        d = json.loads(line)
    except json.JSONDecodeError as err:
        raise SampleError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(d, dict):
        raise SampleError(f"{where}: a sample is a JSON object, got {type(d).__name__}")
    if isinstance(d.get("id"), int) and not isinstance(d.get("id"), bool):
        d["id"] = str(d["id"])  # numeric ids are common in exported data; the schema's ids are strings
    missing = [k for k in ("id", "task", "media", "conversation") if k not in d]
    if missing:
        raise SampleError(f"{where}: missing field(s) {missing}; a sample has id, task, media, conversation, objects")
    try:
        return Sample.from_dict(d)
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        raise SampleError(f"{where}: {type(err).__name__}: {err} (see the sample schema in unipixel.data.schema)") from None


def resolve_media_paths(sample: Sample, base: str | Path) -> Sample:
    """Make ``sample``'s relative media paths (file or frame list) relative to ``base`` (the JSONL's folder), in
    place; returns the sample."""
    m = sample.media
    if m.path is not None and not Path(m.path).is_absolute():
        m.path = str(Path(base) / m.path)
    if m.frames is not None:
        m.frames = [f if Path(f).is_absolute() else str(Path(base) / f) for f in m.frames]
    return sample


def _count(text: str, token: str) -> int:
    return len(re.findall(re.escape(token), text))


def rle_problem(rle: dict[str, Any]) -> str | None:
    """Why a COCO RLE dict cannot be decoded into a mask of its ``size`` (None if it can)."""
    size = rle.get("size")
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        return f"RLE size must be [height, width] of positive integers, got {size!r}"
    counts = rle.get("counts")
    h, w = size
    if isinstance(counts, list):
        if not all(isinstance(c, int) and c >= 0 for c in counts) or sum(counts) != h * w:
            return f"uncompressed RLE counts must be non-negative integers summing to {h}*{w}"
        return None
    if not isinstance(counts, str):
        return f"RLE counts must be a compressed string or a list of run lengths, got {type(counts).__name__}"
    try:
        from pycocotools import mask as mask_utils

        area = int(mask_utils.area({"size": [h, w], "counts": counts.encode()}))
    except Exception as err:  # pycocotools raises plain Exceptions on corrupt strings
        return f"RLE counts do not decode ({err})"
    if not 0 <= area <= h * w:
        return f"RLE counts do not decode into a {h}x{w} mask (area {area})"
    return None


def validate_sample(sample: Sample) -> None:
    """Raise :class:`SampleError` naming every problem in ``sample`` (and how to fix it); return if valid."""
    problems: list[str] = []
    if not isinstance(sample.id, str) or not sample.id:
        problems.append(f"id must be a non-empty string, got {sample.id!r}")
    if sample.task not in TASKS:
        problems.append(f"task {sample.task!r} is not one of {TASKS}")
    m = sample.media
    if (m.path is None) == (m.frames is None):
        problems.append("media needs exactly one of 'path' (image/video/folder) or 'frames' (list of frame files)")
    if m.frames is not None and not m.frames:
        problems.append("media.frames is empty")
    if m.is_image and m.frames is not None and len(m.frames) != 1:
        problems.append(f"an image sample has exactly one frame, got {len(m.frames)}")
    if not sample.conversation:
        problems.append("conversation is empty")
    for i, turn in enumerate(sample.conversation):
        want = "user" if i % 2 == 0 else "assistant"
        if turn.role != want:
            problems.append(f"turn {i} has role {turn.role!r}; turns alternate user/assistant starting with user")
    for i, turn in enumerate(sample.conversation):
        if not isinstance(turn.text, str) or (turn.role == "user" and not turn.text.strip()):
            problems.append(f"turn {i} ({turn.role}) has no text")
    user_text = " ".join(str(t.text) for t in sample.conversation if t.role == "user")
    all_text = " ".join(str(t.text) for t in sample.conversation)
    ids = [o.id for o in sample.objects]
    if len(set(ids)) != len(ids):
        problems.append(f"object ids are not unique: {ids}")
    n_ref = _count(user_text, REF)
    prompted = [o for o in sample.objects if o.prompt is not None and o.prompt.kind in ("point", "box")]
    if n_ref != len(prompted):
        problems.append(
            f"{n_ref} {REF} tokens in user turns but {len(prompted)} objects with a point/box prompt; "
            "write one <|ref|> per prompted object, in object order"
        )
    n_seg = _count(all_text, SEG)
    with_masks = [o for o in sample.objects if o.masks]
    if sample.task in ("ref_seg", "reason_seg", "pixelqa") and n_seg == 0:
        problems.append(f"a {sample.task} sample needs at least one {SEG} in the conversation")
    # Server-only splits (e.g. MeViS valid) have no ground truth: objects exist but carry no masks.
    has_gt = sample.meta.get("has_gt", True) is not False
    if has_gt and n_seg and n_seg != len(with_masks):
        problems.append(f"{n_seg} {SEG} tokens but {len(with_masks)} objects with masks; one <|seg|> per object")
    if _count(all_text, MEM):
        problems.append(f"{MEM} must not be written in the data: the processor writes it from the object masks")
    for o in sample.objects:
        p = o.prompt
        if p is not None:
            if p.kind not in PROMPT_KINDS:
                problems.append(f"object {o.id}: prompt kind {p.kind!r} not in {PROMPT_KINDS}")
            if p.kind == "point" and (p.point is None or len(p.point) != 2):
                problems.append(f"object {o.id}: a point prompt needs point=[x, y]")
            if p.kind == "box":
                if p.box is None or len(p.box) != 4:
                    problems.append(f"object {o.id}: a box prompt needs box=[x1, y1, x2, y2]")
                elif p.box[2] < p.box[0] or p.box[3] < p.box[1]:
                    problems.append(f"object {o.id}: box {p.box} has x2 < x1 or y2 < y1")
            if p.kind == "mask" and p.frame not in o.masks:
                problems.append(f"object {o.id}: a mask prompt on frame {p.frame} but no mask on that frame")
            if p.frame < 0:
                problems.append(f"object {o.id}: prompt frame {p.frame} is negative")
        sizes = set()
        for t, rle in o.masks.items():
            if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
                problems.append(f"object {o.id} frame {t}: mask is not a COCO RLE dict with 'size' and 'counts'")
            else:
                sizes.add(tuple(rle["size"]))
                bad = rle_problem(rle)
                if bad:
                    problems.append(f"object {o.id} frame {t}: {bad}")
            if t < 0:
                problems.append(f"object {o.id}: negative frame index {t}")
            elif m.is_image and t != 0:
                problems.append(f"object {o.id}: a mask on frame {t} of an image (an image has frame 0 only)")
            elif m.frames is not None and t >= len(m.frames):
                problems.append(f"object {o.id}: a mask on frame {t} but the media lists {len(m.frames)} frames")
            elif m.frame_indices is not None and t >= len(m.frame_indices):
                problems.append(
                    f"object {o.id}: a mask on frame {t} but media.frame_indices has {len(m.frame_indices)} entries"
                )
        if len(sizes) > 1:
            problems.append(f"object {o.id}: masks have different sizes {sorted(sizes)}")
    if problems:
        raise SampleError(f"sample {sample.id!r} is invalid:\n- " + "\n- ".join(problems))

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


def _count(text: str, token: str) -> int:
    return len(re.findall(re.escape(token), text))


def validate_sample(sample: Sample) -> None:
    """Raise :class:`SampleError` naming every problem in ``sample`` (and how to fix it); return if valid."""
    problems: list[str] = []
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
    user_text = " ".join(t.text for t in sample.conversation if t.role == "user")
    all_text = " ".join(t.text for t in sample.conversation)
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
            if t < 0:
                problems.append(f"object {o.id}: negative frame index {t}")
        if len(sizes) > 1:
            problems.append(f"object {o.id}: masks have different sizes {sorted(sizes)}")
    if problems:
        raise SampleError(f"sample {sample.id!r} is invalid:\n- " + "\n- ".join(problems))

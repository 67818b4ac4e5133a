"""Task sample builders: one scene -> samples of every task the model has, plus reference-format records.

Prompt and response wording follows the reference (reference-design §4): segmentation query / sentence /
explanatory templates and responses (random in the train split, the fixed evaluation template in val/test),
the ``<|ref|>`` caption prompts, the region convention (``[k]`` in the text, ``prompt.kind == "mask"`` in
the schema; the processor writes the region prefix and ``<|mem|>``), and PixelQA (``[k] <|ref|>`` in the
question, ``[k] <|seg|>`` in the answer, ``(A) ...`` options and "Please only give the best option.").

Besides :class:`~unipixel.data.schema.Sample` objects, each builder records what the reference-format
writers (:mod:`unipixel.synth.formats`) need: RefCOCO refs for single-object image expressions, ReVOS
expressions for video segmentation, VideoRefer-Bench Q/D entries for video region tasks and PixelQA.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..data.schema import MediaRef, ObjectAnnotation, Sample, Turn, VisualPrompt
from .language import (
    QA,
    Expression,
    absent_phrase,
    caption,
    counting_questions,
    full_np,
    multi_expressions,
    ordered_left_to_right,
    reasoning_queries,
    referring_expressions,
    region_questions,
)
from .world import Scene, SceneObject, encode_rle, mask_center

__all__ = ["SceneRecord", "build_scene_samples", "SEG_RESPONSES", "LETTERS"]

# Reference templates (reference-design §4.2 / §4.3 / §4.5).
SEG_IMAGE_QUERY_PROMPTS = [
    "Can you segment the {} in this image?",
    "Please segment the {} in this image.",
    "Can you find the {} in the image?",
    "Segment the {} in the image.",
    "Track the {} in this image.",
    "Where is the {} in this image? Please respond with the segmentation mask.",
    "What is the {}? Please output the segmentation mask.",
]
SEG_VIDEO_QUERY_PROMPTS = [p.replace("image", "video") for p in SEG_IMAGE_QUERY_PROMPTS]
SEG_EXPLANATORY_PROMPTS = [
    "{} Please provide the segmentation mask and explain why.",
    "{} Respond with the segmentation mask and explain the reason.",
    "{} Output the segmentation mask and give some explanations.",
    "{} Provide the segmentation mask while answering the question.",
    "{} Segment the relevant target and answer the question.",
]
SEG_RESPONSES = [
    "The target is <|seg|>.",
    "The segmentation result is <|seg|>.",
    "Sure, the segmentation mask is <|seg|>.",
    "Sure, it is <|seg|>.",
    "<|seg|>.",
]
REF_CAPTION_PROMPTS = [
    "Give me a short description of {}.",
    "Could you describe the region shown as {} in the picture concisely?",
    "What is {}? Describe it briefly.",
]
MEM_SEG_PROMPTS = [
    "{} Please localize the relevant objects with IDs.",
    "{} Segment all the relevant target(s) with ID(s) in the video.",
    "{} Can you segment the target object(s) with ID(s) in the video?",
    "Please segment the mentioned objects with IDs in the question: {}",
    "Find and track the relevant objects with IDs in the query: {}",
]
BEST_OPTION = "Please only give the best option."
LETTERS = "ABCDEFGH"


@dataclass
class SceneRecord:
    """One rendered scene, its samples and the records for the reference-format files."""

    name: str
    scene: Scene
    media: MediaRef  # paths relative to the split directory
    frame_names: list[str]  # frame file stems (ReVOS/MeViS style), one per frame
    samples: list[Sample] = field(default_factory=list)
    refer: list[dict[str, Any]] = field(default_factory=list)  # image: {"object", "sent", "sample_id"}
    revos: list[dict[str, Any]] = field(default_factory=list)  # video: {"exp", "obj_ids", "type_id", ...}
    bench_q: list[dict[str, Any]] = field(default_factory=list)  # video region QA (mask prompts)
    bench_d: list[dict[str, Any]] = field(default_factory=list)  # video region captions (mask prompts)
    pixelqa: list[dict[str, Any]] = field(default_factory=list)  # video PixelQA (Bench-Q layout)


class _Ctx:
    """Per-scene builder state: rng, split policy and the running sample index."""

    def __init__(self, rec: SceneRecord, rng: np.random.Generator, split: str, prefix: str) -> None:
        self.rec, self.rng, self.split, self.prefix = rec, rng, split, prefix
        self.scene = rec.scene
        self.where = "image" if self.scene.is_image else "video"
        self.train = split == "train"
        self._n = 0

    def pick(self, items: list[Any], eval_index: int = 0) -> Any:
        """Random template in train; the reference's fixed evaluation template otherwise."""
        return items[int(self.rng.integers(len(items)))] if self.train else items[eval_index]

    def choice(self, items: list[Any]) -> Any:
        return items[int(self.rng.integers(len(items)))]

    def sample(
        self, task: str, conv: list[tuple[str, str]], objects: list[ObjectAnnotation], **meta: Any
    ) -> Sample:
        sid = f"{self.prefix}-{self.rec.name}-{self._n:02d}-{task}"
        self._n += 1
        turns = [Turn("user" if i % 2 == 0 else "assistant", text) for i, (_, text) in enumerate(conv)]
        s = Sample(
            id=sid,
            task=task,
            media=self.rec.media,
            conversation=turns,
            objects=objects,
            meta={"source": "synthetic", "scene": self.rec.name, "split": self.split, **meta},
        )
        self.rec.samples.append(s)
        return s

    # -- masks and prompts
    def seg_masks(self, ids: tuple[int, ...] | list[int]) -> dict[int, dict[str, Any]]:
        """Union of the visible masks of ``ids`` on every frame (empty frames included: explicit GT)."""
        out = {}
        for t in range(self.scene.num_frames):
            m = np.zeros((self.scene.height, self.scene.width), dtype=bool)
            for i in ids:
                v = self.scene.objects[i].visible
                assert v is not None
                m |= v[t]
            out[t] = encode_rle(m)
        return out

    def region_masks(self, o: SceneObject) -> dict[int, dict[str, Any]]:
        """Visible masks on the frames where the object is visible (what a user would paint)."""
        assert o.visible is not None
        return {t: encode_rle(o.visible[t]) for t in range(self.scene.num_frames) if o.visible[t].any()}

    def prompt_frame(self, o: SceneObject) -> int:
        """A frame where the object shows at least half of its best visible area."""
        areas = [o.visible_area(t) for t in range(self.scene.num_frames)]
        good = [t for t, a in enumerate(areas) if a >= 0.5 * max(areas) and a > 0]
        return int(self.choice(good))

    def visual_prompt(self, o: SceneObject, kind: str, frame: int) -> VisualPrompt:
        """Point: mask centre (val/test, PixelQA protocol) or a uniform mask pixel (train); box: tight box."""
        assert o.visible is not None
        m = o.visible[frame]
        if kind == "point":
            if self.train:
                ys, xs = np.nonzero(m)
                j = int(self.rng.integers(xs.size))
                return VisualPrompt("point", frame, point=[float(xs[j]), float(ys[j])])
            x, y = mask_center(m)
            return VisualPrompt("point", frame, point=[float(x), float(y)])
        if kind == "box":
            b = o.bbox(frame)
            assert b is not None
            return VisualPrompt("box", frame, box=[float(v) for v in b])
        return VisualPrompt("mask", frame)

    def attrs(self, o: SceneObject) -> dict[str, Any]:
        return {"scene_id": o.id, "caption": caption(o, self.scene), **o.spec.attrs(), "motion": o.motion}


def _union_attrs(scene: Scene, ids: tuple[int, ...]) -> dict[str, Any]:
    return {"scene_ids": list(ids), "captions": [caption(scene.objects[i], scene) for i in ids]}


def _mc(ctx: _Ctx, qa: QA) -> tuple[list[str], str, str]:
    """Shuffle the options; return ``["(A) x", ...]``, the answer letter and ``"(B) y"``."""
    opts = list(qa.options)
    order = ctx.rng.permutation(len(opts))
    shuffled = [opts[int(i)] for i in order]
    lines = [f"({LETTERS[i]}) {o}" for i, o in enumerate(shuffled)]
    k = shuffled.index(qa.answer)
    return lines, LETTERS[k], lines[k]


def _fill(question: str, n: int, style: str) -> str:
    """Substitute object mentions: 'mask' -> [k], 'ref' -> [k] <|ref|>, 'videorefer' -> <objectk><region>."""
    if style == "mask":
        return question.format(*[f"[{k}]" for k in range(n)])
    if style == "ref":
        return question.format(*[f"[{k}] <|ref|>" for k in range(n)])
    return question.format(*[f"<object{k}><region>" for k in range(n)])


# ------------------------------------------------------------------------------------------ builders


def _ref_seg(ctx: _Ctx) -> None:
    exprs = referring_expressions(ctx.rng, ctx.scene)
    by_kind: dict[str, list[Expression]] = {}
    for e in exprs:
        by_kind.setdefault(e.kind, []).append(e)
    kinds = sorted(by_kind)
    chosen: list[Expression] = []
    for _ in range(2):
        # prefer the richer kinds (spatial/relation/motion) over plain attributes half of the time
        rich = [k for k in kinds if k != "attribute"]
        kind = ctx.choice(rich) if rich and ctx.rng.random() < 0.6 else ctx.choice(kinds)
        e = ctx.choice(by_kind[kind])
        if e not in chosen:
            chosen.append(e)
    templates = SEG_IMAGE_QUERY_PROMPTS if ctx.scene.is_image else SEG_VIDEO_QUERY_PROMPTS
    for e in chosen:
        o = ctx.scene.objects[e.targets[0]]
        q = ctx.pick(templates, 1).format(e.text)
        s = ctx.sample(
            "ref_seg",
            [("u", q), ("a", ctx.pick(SEG_RESPONSES))],
            [ObjectAnnotation(0, ctx.seg_masks(e.targets), attributes=ctx.attrs(o))],
            expression=e.text,
            expression_type=e.kind,
            targets=list(e.targets),
        )
        if ctx.scene.is_image:
            ctx.rec.refer.append({"object": o.id, "sent": e.text, "sample_id": s.id})
        else:
            ctx.rec.revos.append({"exp": e.text, "obj_ids": list(e.targets), "type_id": 0, "sample_id": s.id})
    multi = multi_expressions(ctx.scene)
    if multi and ctx.rng.random() < 0.7:
        e = ctx.choice(multi)
        if ctx.rng.random() < 0.5:  # reference convention: one <|seg|> for the union of all targets
            q = ctx.pick(templates, 1).format(e.text)
            s = ctx.sample(
                "ref_seg",
                [("u", q), ("a", ctx.pick(SEG_RESPONSES))],
                [
                    ObjectAnnotation(
                        0, ctx.seg_masks(e.targets), attributes=_union_attrs(ctx.scene, e.targets)
                    )
                ],
                expression=e.text,
                expression_type=e.kind,
                targets=list(e.targets),
                multi="union",
            )
            if not ctx.scene.is_image:
                ctx.rec.revos.append(
                    {"exp": e.text, "obj_ids": list(e.targets), "type_id": 0, "sample_id": s.id}
                )
        else:  # one mask per object with IDs, IDs given left to right
            ids = ordered_left_to_right(ctx.scene, e.targets)
            q = f"Please segment each of the {e.text} in this {ctx.where} with IDs, from left to right."
            a = " ".join(f"[{k}] <|seg|>" for k in range(len(ids)))
            objs = [
                ObjectAnnotation(k, ctx.seg_masks([i]), attributes=ctx.attrs(ctx.scene.objects[i]))
                for k, i in enumerate(ids)
            ]
            ctx.sample(
                "ref_seg",
                [("u", q), ("a", a)],
                objs,
                expression=e.text,
                expression_type=e.kind,
                targets=list(ids),
                multi="ids",
            )


def _reason_seg(ctx: _Ctx) -> None:
    rs = reasoning_queries(ctx.scene)
    if not rs:
        return
    r = ctx.choice(rs)
    q = ctx.pick(SEG_EXPLANATORY_PROMPTS).format(r.question)
    a = f"{ctx.pick(SEG_RESPONSES)} {r.explanation}"
    attrs = (
        ctx.attrs(ctx.scene.objects[r.targets[0]])
        if len(r.targets) == 1
        else _union_attrs(ctx.scene, r.targets)
    )
    s = ctx.sample(
        "reason_seg",
        [("u", q), ("a", a)],
        [ObjectAnnotation(0, ctx.seg_masks(r.targets), attributes=attrs)],
        query=r.question,
        explanation=r.explanation,
        reasoning_type=r.kind,
        targets=list(r.targets),
    )
    if not ctx.scene.is_image:
        ctx.rec.revos.append(
            {
                "exp": r.question,
                "obj_ids": list(r.targets),
                "type_id": 1,
                "explanation": r.explanation,
                "sample_id": s.id,
            }
        )


def _region_caption(ctx: _Ctx) -> None:
    o = ctx.choice(ctx.scene.objects)
    kind = ctx.choice(["mask", "mask", "point", "box"])
    frame = ctx.prompt_frame(o)
    cap = caption(o, ctx.scene)
    if kind == "mask":
        k = int(ctx.rng.integers(16)) if ctx.train else 0
        q = f"Please give a short description of the highlighted object [{k}] in the {ctx.where}."
        obj = ObjectAnnotation(k, ctx.region_masks(o), ctx.visual_prompt(o, "mask", frame), ctx.attrs(o))
    else:
        q = ctx.pick(REF_CAPTION_PROMPTS).format("<|ref|>")
        obj = ObjectAnnotation(0, {}, ctx.visual_prompt(o, kind, frame), ctx.attrs(o))
    s = ctx.sample("region_caption", [("u", q), ("a", cap)], [obj], prompt_kind=kind, caption=cap)
    if kind == "mask" and not ctx.scene.is_image:
        ctx.rec.bench_d.append({"sample_id": s.id, "caption": cap, "frame_idx": frame, "objects": [o.id]})


def _pick_objects(ctx: _Ctx, max_n: int) -> tuple[int, ...]:
    n = min(len(ctx.scene.objects), 1 + int(ctx.rng.random() < 0.4) * (max_n - 1))
    ids = ctx.rng.permutation(len(ctx.scene.objects))[:n]
    return tuple(int(i) for i in ids)


def _region_qa(ctx: _Ctx) -> None:
    ids = _pick_objects(ctx, 2)
    qas = region_questions(ctx.rng, ctx.scene, ids)
    qa: QA = ctx.choice(qas)
    kind = ctx.choice(["mask", "mask", "point", "box"])
    objs = [ctx.scene.objects[i] for i in ids]
    frames = _prompt_frames(ctx, objs)
    frame = frames[0]
    if kind == "mask":
        anns = [
            ObjectAnnotation(k, ctx.region_masks(o), ctx.visual_prompt(o, "mask", f), ctx.attrs(o))
            for k, (o, f) in enumerate(zip(objs, frames, strict=True))
        ]
        question = _fill(qa.question, len(objs), "mask")
    else:
        anns = [
            ObjectAnnotation(k, {}, ctx.visual_prompt(o, kind, f), ctx.attrs(o))
            for k, (o, f) in enumerate((o, ctx.prompt_frame(o)) for o in objs)
        ]
        question = _fill(qa.question, len(objs), "ref")
    meta: dict[str, Any] = {"prompt_kind": kind, "question_type": qa.kind, "answer_text": qa.answer}
    if ctx.scene.is_image:  # short answers on images
        ctx.sample("region_qa", [("u", question), ("a", qa.answer)], anns, **meta)
        return
    lines, letter, answer_line = _mc(ctx, qa)
    text = question + "\nOptions:\n" + "\n".join(lines) + "\n" + BEST_OPTION
    s = ctx.sample("region_qa", [("u", text), ("a", answer_line)], anns, options=lines, answer=letter, **meta)
    if kind == "mask" and len(set(frames)) == 1:
        ctx.rec.bench_q.append(
            {
                "sample_id": s.id,
                "question": _fill(qa.question, len(objs), "videorefer"),
                "options": lines,
                "answer": answer_line,
                "type": qa.kind,
                "frame_idx": frame,
                "objects": list(ids),
            }
        )


def _prompt_frames(ctx: _Ctx, objs: list[SceneObject]) -> list[int]:
    """One prompt frame for all objects where they are all well visible (VideoRefer/PixelQA use a single
    ``frame_idx``); otherwise each object's own prompt frame."""
    good = [
        t
        for t in range(ctx.scene.num_frames)
        if all(
            o.visible_area(t) >= 0.5 * max(o.visible_area(u) for u in range(ctx.scene.num_frames))
            for o in objs
        )
    ]
    if good:
        t = int(ctx.choice(good))
        return [t] * len(objs)
    return [ctx.prompt_frame(o) for o in objs]


def _pixelqa(ctx: _Ctx) -> None:
    ids = _pick_objects(ctx, 2)
    objs = [ctx.scene.objects[i] for i in ids]
    qa: QA = ctx.choice(region_questions(ctx.rng, ctx.scene, ids))
    frames = _prompt_frames(ctx, objs)
    frame = frames[0]
    kinds = [ctx.choice(["point", "box"]) for _ in objs]
    anns = [
        ObjectAnnotation(k, ctx.seg_masks([o.id]), ctx.visual_prompt(o, kd, f), ctx.attrs(o))
        for k, (o, kd, f) in enumerate(zip(objs, kinds, frames, strict=True))
    ]
    lines, letter, answer_line = _mc(ctx, qa)
    opts = "\nOptions:\n" + "\n".join(lines)
    mem_question = _fill(qa.question, len(objs), "ref") + opts
    turn1 = ctx.pick(MEM_SEG_PROMPTS).format(mem_question)
    seg = " ".join(f"[{k}] <|seg|>" for k in range(len(objs)))
    turn2 = _fill(qa.question, len(objs), "mask") + opts + "\n" + BEST_OPTION
    s = ctx.sample(
        "pixelqa",
        [("u", turn1), ("a", seg), ("u", turn2), ("a", answer_line)],
        anns,
        options=lines,
        answer=letter,
        answer_text=qa.answer,
        question_type=qa.kind,
        prompt_kinds=kinds,
    )
    if not ctx.scene.is_image and len(set(frames)) == 1:
        ctx.rec.pixelqa.append(
            {
                "sample_id": s.id,
                "question": _fill(qa.question, len(objs), "videorefer"),
                "options": lines,
                "answer": answer_line,
                "type": qa.kind,
                "frame_idx": frame,
                "objects": list(ids),
                "prompt_kinds": kinds,
            }
        )


def _general_qa(ctx: _Ctx) -> None:
    phrase = absent_phrase(ctx.rng, ctx.scene)
    if ctx.rng.random() < 0.5:
        templates = SEG_IMAGE_QUERY_PROMPTS if ctx.scene.is_image else SEG_VIDEO_QUERY_PROMPTS
        q = ctx.pick(templates, 1).format(phrase)
    else:
        q = f"Is there a {phrase} in this {ctx.where}?"
    a = f"No, the {phrase} is not present in this {ctx.where}."
    s = ctx.sample(
        "general_qa",
        [("u", q), ("a", a)],
        [],
        question_type="absent",
        expression=phrase,
        answer_text="not present",
    )
    if not ctx.scene.is_image:
        ctx.rec.revos.append({"exp": phrase, "obj_ids": [], "type_id": 0, "sample_id": s.id})
    c: QA = ctx.choice(counting_questions(ctx.scene))
    ctx.sample(
        "general_qa", [("u", c.question), ("a", c.answer)], [], question_type="count", answer_text=c.answer
    )


def build_scene_samples(rec: SceneRecord, rng: np.random.Generator, split: str, prefix: str) -> SceneRecord:
    """Fill ``rec`` with samples of every task for its scene (each builder may add 0..3 samples)."""
    ctx = _Ctx(rec, rng, split, prefix)
    _ref_seg(ctx)
    _reason_seg(ctx)
    _region_caption(ctx)
    _region_qa(ctx)
    _pixelqa(ctx)
    _general_qa(ctx)
    return rec


def describe(o: SceneObject) -> str:
    """Full noun phrase of an object (re-exported for writers and tests)."""
    return full_np(o)

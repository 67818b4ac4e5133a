"""Evaluation protocols: how one dataset sample is turned into model calls and per-sample scores.

Every protocol has a name, a kind (which sample runner it uses) and parameters; the defaults reproduce the
reference's evaluation scripts (reference-design §7, §8) and are printed with, and stored in, every result:

* ``infer_seg`` (``infer_seg.py``): the reader's evaluation prompt, greedy generation (512 new tokens), the LLM
  sees 16 uniformly sampled frames with the per-frame pixel budget ``min 128·28², max 256·28²·⌊16/T⌋`` (an
  image: 4096·28²), **SAM 2 segments every frame** of the clip, and only the **first** ``<|seg|>`` mask is
  scored (per GT object, the predicted mask of the same rank).  Alternatives: ``infer_seg_sampled`` (SAM 2 on
  the 16 sampled frames, scored on those only, as ``tools/inference.py``), ``infer_seg_teacher`` (the answer is
  teacher-forced, so a mask always exists: a diagnostic of mask quality independent of the text).
* ``videorefer_q`` / ``videorefer_d`` (``infer_videorefer_{q,d}.py``): 16 frames among the annotated frames,
  the prompt frame always kept; GT masks as ``<|mem|>`` region prompts; Q: ``min 100·28², max 144·28²·⌊16/T⌋``
  and assistant prefix "The best option is ("; D: 128/256·28², free description (LLM judge).
* ``pixelqa`` (``infer_pixelqa.py``, §8): step A teacher-forces "[k] <|seg|>" for the point/box-referred
  objects (masks on the 16 sampled frames, SAM 2 prompted on frame 0); step B answers from the predicted masks
  (empty → all-ones) as ``<|mem|>`` prompts; J/F are volumetric IoU / pixel F1.
* ``general_mc`` (``infer_general.py``): video at 2 fps, at most 16 frames, 256·28², assistant prefix from the
  reader ("Best Option: ("), 256 new tokens.
* ``synthetic``: every task of the synthetic world with the conventions it was generated with.

Multiple-choice answers are parsed from the generated continuation with the reference parser (first token)
by default (``parser="reference"``); ``parser="robust"`` uses :func:`unipixel.eval.metrics.parse_choice` on
the whole answer.  The model is only reached through :func:`call_model`, the one place that depends on
:class:`unipixel.api.UniPixel` internals (explicit object order, pixel budget per call, SAM 2 frames).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.masks import decode_rle
from ..data.schema import Sample
from ..media import IMAGE_EXTENSIONS, Media, llm_pixel_budget, load_media, sample_frame_indices
from ..media import sample_frame_indices_with_keep as _keep_one
from . import metrics as M

PIX = 28 * 28
MC_PREFIX = "The best option is ("


@dataclass(frozen=True)
class Protocol:
    """A named evaluation protocol: ``kind`` selects the sample runner, ``params`` its settings."""

    name: str
    kind: str
    description: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def with_overrides(self, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """The protocol's parameters with ``overrides`` applied; unknown keys are an error (typo guard)."""
        unknown = sorted(set(overrides) - set(self.params))
        if unknown:
            raise ValueError(
                f"protocol {self.name!r} has no parameter(s) {unknown}; parameters: {', '.join(sorted(self.params))}"
            )
        for key, value in overrides.items():
            _check_param(self.name, key, value, self.params[key])
        return {**self.params, **overrides}


# Parameters whose value is one of a few words (checked when overridden, before any sample runs).
PARAM_CHOICES: dict[str, tuple[str, ...]] = {
    "sam2_frames": ("all", "sampled"),
    "mask_select": ("first", "union"),
    "parser": ("reference", "robust"),
}


def _check_param(protocol: str, key: str, value: Any, default: Any) -> None:
    """An override must have its default's type (ints may stand for floats) and, for word-valued parameters,
    be one of the known words: a typo fails the run up front instead of turning every sample into a failure."""
    where = f"--param {key}={value!r} (protocol {protocol!r})"
    if key in PARAM_CHOICES and value not in PARAM_CHOICES[key]:
        raise ValueError(f"{where}: must be one of {PARAM_CHOICES[key]}")
    if default is None or key in PARAM_CHOICES:
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        raise ValueError(f"{where}: expected {type(default).__name__} like the default {default!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ValueError(f"{where}: must not be negative")


_SEG = {
    "num_frames": 16,
    "sam2_frames": "all",
    "mask_select": "first",
    "teacher_forcing": False,
    "max_new_tokens": 512,
    "min_pixels": 128 * PIX,
    "max_pixels": 256 * PIX,
    "box_min_area": 10,
}
_REGION = {
    "num_frames": 16,
    "min_pixels": 100 * PIX,
    "max_pixels": 144 * PIX,
    "max_new_tokens": 512,
    "parser": "reference",
}

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in [
        Protocol(
            "infer_seg",
            "seg",
            "reference infer_seg.py: 16 frames to the LLM, all frames to SAM 2, greedy, first mask scored",
            _SEG,
        ),
        Protocol(
            "infer_seg_sampled",
            "seg",
            "SAM 2 on the 16 LLM frames only (tools/inference.py); scored on those frames",
            {**_SEG, "sam2_frames": "sampled"},
        ),
        Protocol(
            "infer_seg_teacher",
            "seg",
            "answer teacher-forced ('The target is <|seg|>.'): mask quality without text generation",
            {**_SEG, "teacher_forcing": True},
        ),
        Protocol(
            "videorefer_q",
            "region_mc",
            "reference infer_videorefer_q.py: 16 annotated frames (prompt frame "
            "kept), GT masks as <|mem|>, 'The best option is ('",
            _REGION,
        ),
        Protocol(
            "videorefer_d",
            "region_caption",
            "reference infer_videorefer_d.py: GT masks as <|mem|>, free description scored by an LLM judge",
            {**_REGION, "min_pixels": 128 * PIX, "max_pixels": 256 * PIX},
        ),
        Protocol(
            "pixelqa",
            "pixelqa",
            "reference infer_pixelqa.py: step A teacher-forced '[k] <|seg|>' from "
            "points/boxes, step B answers from the predicted masks",
            {
                "num_frames": 16,
                "min_pixels": 128 * PIX,
                "max_pixels": 256 * PIX,
                "max_new_tokens": 512,
                "parser": "reference",
            },
        ),
        Protocol(
            "general_mc",
            "mc",
            "reference infer_general.py: 2 fps, <= 16 frames, 'Best Option: ('",
            {
                "num_frames": 16,
                "fps": 2.0,
                "min_pixels": 128 * PIX,
                "max_pixels": 256 * PIX,
                "max_new_tokens": 256,
                "parser": "reference",
            },
        ),
        Protocol(
            "synthetic",
            "synthetic",
            "synthetic world: every task with its generation conventions "
            "(no assistant prefix, robust answer parsing, SAM 2 on all frames)",
            {**_SEG, "parser": "robust", "assistant_prefix": ""},
        ),
    ]
}


def get_protocol(name: str) -> Protocol:
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; available: {', '.join(PROTOCOLS)}") from None


# ----------------------------------------------------------------------------------------------------------
# media


def _is_image(sample: Sample) -> bool:
    m = sample.media
    if m.is_image:
        return True
    return m.path is not None and Path(m.path).suffix.lower() in IMAGE_EXTENSIONS


def frame_count(sample: Sample) -> int:
    """Number of frame *positions* of a sample: masks and prompt frames of the readers are keyed by them."""
    m = sample.media
    if _is_image(sample):
        return 1
    if m.frame_indices is not None:
        return len(m.frame_indices)
    if m.frames is not None:
        return len(m.frames)
    assert m.path is not None
    full = load_media(m.path, num_frames=1)  # demuxes once to count, decodes one frame
    return int(full.total_frames or full.num_frames)


def load_positions(sample: Sample, positions: Sequence[int] | None = None) -> Media:
    """Decode the frames at ``positions`` (all when None); ``Media.frame_indices`` are set to the positions so
    that predicted masks line up with the reader's GT keys."""
    m = sample.media
    if _is_image(sample):
        src = m.path if m.path is not None else (m.frames or [None])[0]
        return load_media(src)
    n = frame_count(sample)
    pos = list(range(n)) if positions is None else [int(p) for p in positions]
    if m.frames is not None:
        files = m.frames if m.frame_indices is None else [m.frames[i] for i in m.frame_indices]
        media = load_media([files[p] for p in pos])
    else:
        assert m.path is not None
        originals = m.frame_indices if m.frame_indices is not None else range(n)
        media = load_media(m.path, indices=[int(originals[p]) for p in pos])
    media.frame_indices = np.asarray(pos, dtype=np.int64)
    media.is_image = False
    return media


def subset(media: Media, rows: Sequence[int]) -> Media:
    """Rows ``rows`` of an already decoded media (no second decode for the LLM's sampled frames)."""
    r = np.asarray(rows, dtype=np.int64)
    return Media(
        frames=media.frames[r],
        fps=media.fps,
        is_image=media.is_image,
        frame_indices=media.frame_indices[r],
        source=media.source,
        total_frames=media.total_frames,
    )


def sample_positions(n: int, k: int, keep: Sequence[int] = ()) -> list[int]:
    """Uniform positions (reference ``load_frames``), keeping the prompt frames (``load_frames_with_inds_keep``)."""
    keep = sorted(set(int(x) for x in keep))
    if n <= k:
        return list(range(n))
    if not keep:
        return [int(i) for i in sample_frame_indices(n, k, "uniform")]
    if len(keep) == 1:
        return [int(i) for i in _keep_one(n, k, keep[0])]
    from ..api import keep_frames_sampling

    return [int(i) for i in keep_frames_sampling(n, k, keep)]


def gt_stack(obj_masks: Mapping[int, Any], positions: Sequence[int], size: tuple[int, int]) -> np.ndarray:
    """(T, H, W) GT over ``positions`` from a reader's ``{position: RLE}``; missing positions are empty."""
    out = np.zeros((len(positions), *size), dtype=bool)
    for row, p in enumerate(positions):
        rle = obj_masks.get(int(p))
        if rle is not None:
            m = decode_rle(rle)
            if m.shape != tuple(size):
                raise ValueError(f"GT mask of size {m.shape} does not match the frame size {tuple(size)}")
            out[row] = m
    return out


# ----------------------------------------------------------------------------------------------------------
# the one adapter to the model


@contextlib.contextmanager
def _budget(api: Any, lo: int, hi: int) -> Iterator[None]:
    old = (api.min_pixels, api.max_pixels)
    api.min_pixels, api.max_pixels = lo, hi
    try:
        yield
    finally:
        api.min_pixels, api.max_pixels = old


def call_model(
    api: Any,
    media: Media,
    prompt: str,
    objects: Sequence[Any] = (),
    *,
    params: Mapping[str, Any],
    response: str | None = None,
    assistant_prefix: str | None = None,
    sam2_media: Media | None = None,
    mem_object_ids: Sequence[int] | None = None,
) -> Any:
    """One greedy model call with the protocol's pixel budget (per frame, scaled by ``⌊num_frames/T⌋`` as the
    reference) and explicit object order (``UniPixel.predict`` would put all points before all boxes)."""
    lo, hi = llm_pixel_budget(
        max(media.num_frames, 1),
        int(params["num_frames"]),
        int(params["min_pixels"]),
        int(params["max_pixels"]),
    )
    with _budget(api, lo, hi):
        return api.run(
            media,
            prompt,
            list(objects),
            response=response,
            assistant_prefix=assistant_prefix or None,
            max_new_tokens=int(params["max_new_tokens"]),
            do_sample=False,
            sam2_media=sam2_media,
            mem_object_ids=list(mem_object_ids) if mem_object_ids is not None else None,
        )


def _object_prompt(**kw: Any) -> Any:
    from ..processing import ObjectPrompt

    return ObjectPrompt(**kw)


# ----------------------------------------------------------------------------------------------------------
# sample runners


@dataclass
class Outcome:
    """What one sample produced: the JSON record fields and, for video segmentation, the first predicted
    track over all scored frames (written as PNGs by the runner when asked / for server submissions)."""

    record: dict[str, Any]
    video_mask: np.ndarray | None = None
    frame_positions: list[int] | None = None


def _objects_json(result: Any) -> list[dict[str, Any]]:
    return [
        {
            "id": int(o.id),
            "frames": [int(i) for i in o.masks.frame_indices],
            "rles": o.masks.rles(),
            "scores": [round(float(s), 5) for s in o.scores],
        }
        for o in result.objects
    ]


def _continuation(text: str, prefix: str | None) -> str:
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def _parse(text: str, prefix: str | None, n_options: int, parser: str) -> str | None:
    if parser == "reference":
        return M.parse_choice_reference(_continuation(text, prefix), n_options)
    if parser == "robust":
        return M.parse_choice(text, n_options)
    raise ValueError(f"parser must be 'reference' or 'robust', got {parser!r}")


def _pred_masks(result: Any, n: int, size: tuple[int, int], t: int, select: str) -> list[np.ndarray]:
    """The masks scored against ``n`` GT objects: the i-th predicted one for GT i (``first``; missing → empty)
    or the union of all predictions for every GT object (``union``)."""
    arrays = [o.masks.array() for o in result.objects]
    empty = np.zeros((t, *size), dtype=bool)
    if select == "union":
        u = np.any(np.stack(arrays), axis=0) if arrays else empty
        return [u] * n
    if select != "first":
        raise ValueError(f"mask_select must be 'first' or 'union', got {select!r}")
    return [arrays[i] if i < len(arrays) else empty for i in range(n)]


def run_seg(api: Any, sample: Sample, p: Mapping[str, Any]) -> Outcome:
    """Referring / reasoning segmentation of an image or a video (``infer_seg.py``)."""
    prompt = sample.conversation[0].text
    response = None
    if p["teacher_forcing"]:
        response = sample.conversation[1].text if len(sample.conversation) > 1 else "The target is <|seg|>."
    has_gt = sample.meta.get("has_gt", True) is not False
    if _is_image(sample):
        media = load_positions(sample)
        res = call_model(api, media, prompt, params=p, response=response)
        size = media.frame_size
        n = max(len(sample.objects), 1)
        preds = [m[0] for m in _pred_masks(res, n, size, 1, p["mask_select"])]
        rec: dict[str, Any] = {"text": res.text, "objects": _objects_json(res)}
        if not has_gt:
            rec["scores"] = {"kind": "submission"}
            return Outcome(rec)
        ignore = sample.meta.get("ignore_mask")
        valid = ~decode_rle(ignore) if ignore else None
        inter = union = 0
        hits = []
        for pred, obj in zip(preds, sample.objects, strict=False):
            gt = gt_stack(obj.masks, [0], size)[0]
            i, u = M.iou_counts(pred, gt, valid)
            inter, union = inter + i, union + u
            box = sample.meta.get("gt_box") if len(sample.objects) == 1 else obj.attributes.get("box")
            if box is not None:
                hits.append(M.box_hit(pred, box, min_area=int(p["box_min_area"])))
        rec["scores"] = {
            "kind": "image",
            "inter": int(inter),
            "union": int(union),
            "iou": inter / union if union else 1.0,
            "hit": all(hits) if hits else None,
        }
        return Outcome(rec)

    n_total = frame_count(sample)
    if p["sam2_frames"] == "all":
        full = load_positions(sample)
        llm_rows = sample_positions(n_total, int(p["num_frames"]))
        media, sam2_media, scored = subset(full, llm_rows), full, list(range(n_total))
    elif p["sam2_frames"] == "sampled":
        scored = sample_positions(n_total, int(p["num_frames"]))
        media, sam2_media = load_positions(sample, scored), None
    else:
        raise ValueError(f"sam2_frames must be 'all' or 'sampled', got {p['sam2_frames']!r}")
    res = call_model(api, media, prompt, params=p, response=response, sam2_media=sam2_media)
    size = media.frame_size
    n = max(len(sample.objects), 1)
    preds = _pred_masks(res, n, size, len(scored), p["mask_select"])
    rec = {
        "text": res.text,
        "objects": _objects_json(res),
        "llm_frames": [int(i) for i in media.frame_indices],
    }
    out = Outcome(rec, video_mask=preds[0], frame_positions=scored)
    if not has_gt:
        rec["scores"] = {"kind": "submission"}
        return out
    js, fs, accs = [], [], []
    for pred, obj in zip(preds, sample.objects, strict=False):
        gt = gt_stack(obj.masks, scored, size)
        r = M.j_and_f(pred, gt)
        js.append(r.j)
        fs.append(r.f)
        accs.append(M.revos_accuracy(pred, gt))
    rec["scores"] = {
        "kind": "video",
        "J": float(np.mean(js)),
        "F": float(np.mean(fs)),
        "A": float(np.mean(accs)),
    }
    return out


def _region_media(sample: Sample, p: Mapping[str, Any]) -> tuple[Media, list[int]]:
    """16 positions among the annotated frames with every prompt frame kept (``load_frames_with_inds_keep``).

    Returns the media and, per loaded row, the reader's frame position (the key of its GT masks).  A sample
    the reader marks ``single_frame_mode`` (one annotated frame of a longer video) is sampled from the whole
    video with the annotated frame forced in, as the reference does; its other rows get position -1 (no mask).
    """
    keep = [o.prompt.frame for o in sample.objects if o.prompt is not None]
    m = sample.media
    if (
        sample.meta.get("single_frame_mode")
        and m.path is not None
        and m.frame_indices
        and not _is_image(sample)
    ):
        annotated = int(m.frame_indices[0])
        total = int(load_media(m.path, num_frames=1).total_frames or 1)
        originals = sample_positions(total, int(p["num_frames"]), [annotated])
        media = load_media(m.path, indices=originals)
        media.is_image = False  # frame_indices stay the original (unique) indices
        return media, [0 if o == annotated else -1 for o in originals]
    positions = sample_positions(frame_count(sample), int(p["num_frames"]), keep)
    return load_positions(sample, positions), positions


def _mem_objects(sample: Sample, media: Media, positions: Sequence[int]) -> tuple[list[Any], list[int]]:
    objs, ids = [], []
    for o in sample.objects:
        if o.prompt is not None and o.prompt.kind != "mask":
            continue
        track = gt_stack(o.masks, positions, media.frame_size)
        if not track.any():  # the prompt frame is always sampled, so only a reader bug gets here
            raise ValueError(f"object [{o.id}] has no mask on the sampled frames {list(positions)}")
        objs.append(_object_prompt(frame=0, mask=track))
        ids.append(int(o.id))
    return objs, ids


def _ref_objects(sample: Sample, positions: Sequence[int]) -> list[Any]:
    """Point/box prompts in object order (= ``<|ref|>`` order), frames as rows of the loaded media."""
    out = []
    for o in sample.objects:
        pr = o.prompt
        if pr is None or pr.kind not in ("point", "box"):
            continue
        row = list(positions).index(int(pr.frame))
        out.append(
            _object_prompt(frame=row, point=pr.point)
            if pr.kind == "point"
            else _object_prompt(frame=row, box=pr.box)
        )
    return out


def run_region_mc(api: Any, sample: Sample, p: Mapping[str, Any]) -> Outcome:
    """VideoRefer-Bench-Q: region multiple choice with GT masks as ``<|mem|>``."""
    media, positions = _region_media(sample, p)
    objs, ids = _mem_objects(sample, media, positions)
    prefix = sample.meta.get("assistant_prefix", MC_PREFIX)
    res = call_model(
        api, media, sample.conversation[0].text, objs, params=p, assistant_prefix=prefix, mem_object_ids=ids
    )
    n_opt = len(sample.meta.get("options", [])) or None
    choice = _parse(res.text, prefix, n_opt or 26, p["parser"])
    answer = str(sample.meta.get("answer", "")).upper()
    rec = {
        "text": res.text,
        "choice": choice,
        "llm_frames": positions,
        "scores": {
            "kind": "mc",
            "choice": choice,
            "answer": answer,
            "correct": choice == answer,
            "task": sample.meta.get("type") or sample.meta.get("task"),
        },
    }
    return Outcome(rec)


def run_region_caption(api: Any, sample: Sample, p: Mapping[str, Any]) -> Outcome:
    """VideoRefer-Bench-D: free description of the highlighted object; scored later by the judge."""
    media, positions = _region_media(sample, p)
    objs, ids = _mem_objects(sample, media, positions)
    res = call_model(api, media, sample.conversation[0].text, objs, params=p, mem_object_ids=ids)
    rec = {
        "text": res.text,
        "prediction": res.clean_text,
        "reference": sample.meta.get("caption"),
        "question": sample.conversation[0].text,
        "llm_frames": positions,
        "scores": {"kind": "caption"},
    }
    return Outcome(rec)


def _pixelqa_steps(
    api: Any,
    sample: Sample,
    p: Mapping[str, Any],
    step_a: str,
    step_a_response: str,
    step_b: str,
    prefix: str | None,
) -> dict[str, Any]:
    media, positions = _region_media(sample, p)
    refs = _ref_objects(sample, positions)
    seg = call_model(api, media, step_a, refs, params=p, response=step_a_response)
    n = len(sample.objects)
    size = media.frame_size
    preds = _pred_masks(seg, n, size, len(positions), "first")
    js, fs = [], []
    for pred, obj in zip(preds, sample.objects, strict=True):
        gt = gt_stack(obj.masks, positions, size)
        js.append(M.volumetric_iou(pred, gt))
        fs.append(M.volumetric_f1(pred, gt))
    mem = [
        _object_prompt(frame=0, mask=m if m.any() else np.ones_like(m)) for m in preds
    ]  # reference: empty → ones
    ans = call_model(
        api,
        media,
        step_b,
        mem,
        params=p,
        assistant_prefix=prefix,
        mem_object_ids=[int(o.id) for o in sample.objects],
    )
    options = sample.meta.get("options", [])
    choice = _parse(ans.text, prefix, len(options) or 26, p["parser"])
    answer = str(sample.meta.get("answer", "")).upper()
    return {
        "text": ans.text,
        "choice": choice,
        "objects": _objects_json(seg),
        "llm_frames": positions,
        "scores": {
            "kind": "mc",
            "choice": choice,
            "answer": answer,
            "correct": choice == answer,
            "task": sample.meta.get("type") or sample.meta.get("question_type"),
            "j_values": js,
            "f_values": fs,
        },
    }


def run_pixelqa(api: Any, sample: Sample, p: Mapping[str, Any]) -> Outcome:
    """PixelQA (§8) from the reader's step texts."""
    m = sample.meta
    return Outcome(
        _pixelqa_steps(
            api,
            sample,
            p,
            m["step_a_prompt"],
            m["step_a_response"],
            m["step_b_question"],
            m.get("assistant_prefix", MC_PREFIX),
        )
    )


def run_mc(api: Any, sample: Sample, p: Mapping[str, Any]) -> Outcome:
    """General video multiple choice (MVBench / Video-MME): 2 fps, at most ``num_frames`` frames, in the
    question's ``start``/``end`` window when given."""
    m = sample.media
    assert m.path is not None or m.frames is not None
    if _is_image(sample):
        media = load_positions(sample)
    elif m.path is not None and Path(m.path).is_file():
        probe = load_media(m.path, num_frames=1)
        total, fps = int(probe.total_frames or 1), float(probe.fps or 30.0)
        lo, hi = 0, total - 1
        if "start" in sample.meta and "end" in sample.meta:
            lo = max(0, min(total - 1, int(round(float(sample.meta["start"]) * fps))))
            hi = max(lo, min(total - 1, int(round(float(sample.meta["end"]) * fps))))
        span = hi - lo + 1
        k = max(1, min(int(p["num_frames"]), int(np.ceil(span / fps * float(p["fps"])))))
        idx = [lo + int(i) for i in sample_frame_indices(span, k, "uniform")]
        media = load_media(m.path, indices=idx)
    else:
        n = frame_count(sample)
        media = load_positions(sample, sample_positions(n, int(p["num_frames"])))
    prefix = sample.meta.get("assistant_prefix")
    res = call_model(api, media, sample.conversation[0].text, params=p, assistant_prefix=prefix)
    n_opt = len(sample.meta.get("options", [])) or 26
    choice = _parse(res.text, prefix, n_opt, p["parser"])
    answer = str(sample.meta.get("answer", "")).upper()
    return Outcome(
        {
            "text": res.text,
            "choice": choice,
            "llm_frames": [int(i) for i in media.frame_indices],
            "scores": {
                "kind": "mc",
                "choice": choice,
                "answer": answer,
                "correct": choice == answer,
                "task": sample.meta.get("task"),
            },
        }
    )


def run_synthetic(api: Any, sample: Sample, p: Mapping[str, Any]) -> Outcome:
    """The synthetic world: dispatch on the sample's task (see :mod:`unipixel.synth.tasks`)."""
    from .benchmarks import normalize_answer

    image = _is_image(sample)
    conv = sample.conversation
    prefix = p.get("assistant_prefix") or None
    if sample.task in ("ref_seg", "reason_seg"):
        out = run_seg(api, sample, p)
        out.record["group"] = {"family": "image_seg" if image else "video_seg"}
        return out
    if sample.task == "pixelqa":
        rec = _pixelqa_steps(api, sample, p, conv[0].text, conv[1].text, conv[2].text, prefix)
        rec["group"] = {"family": "pixelqa"}
        return Outcome(rec)
    # region caption / region QA / general QA: generate and compare
    n = frame_count(sample)
    keep = [o.prompt.frame for o in sample.objects if o.prompt is not None]
    positions = [0] if image else sample_positions(n, int(p["num_frames"]), keep)
    media = load_positions(sample, None if image else positions)
    mems, ids = _mem_objects(sample, media, positions)
    refs = _ref_objects(sample, positions)
    res = call_model(
        api, media, conv[0].text, refs + mems, params=p, assistant_prefix=prefix, mem_object_ids=ids or None
    )
    rec: dict[str, Any] = {"text": res.text, "llm_frames": positions}
    options = sample.meta.get("options")
    if sample.task == "region_qa" and options:
        choice = _parse(res.text, prefix, len(options), p["parser"])
        answer = str(sample.meta.get("answer", "")).upper()
        rec.update(
            choice=choice,
            group={"family": "region_mc"},
            scores={
                "kind": "mc",
                "choice": choice,
                "answer": answer,
                "correct": choice == answer,
                "task": sample.meta.get("question_type"),
            },
        )
    else:
        target = conv[1].text if len(conv) > 1 else ""
        fam = "caption" if sample.task == "region_caption" else "answer"
        rec.update(
            group={"family": fam},
            scores={"kind": "exact", "correct": normalize_answer(res.text) == normalize_answer(target)},
        )
    return Outcome(rec)


RUNNERS = {
    "seg": run_seg,
    "region_mc": run_region_mc,
    "region_caption": run_region_caption,
    "pixelqa": run_pixelqa,
    "mc": run_mc,
    "synthetic": run_synthetic,
}

# meta fields copied into every record so aggregation needs no second pass over the dataset
GROUP_FIELDS = ("type_id", "subset", "q_type", "task", "type", "vid", "exp_id")


def run_sample(api: Any, sample: Sample, protocol: Protocol, params: Mapping[str, Any]) -> Outcome:
    """Run ``sample`` under ``protocol`` (with resolved ``params``) and return its record (without ids)."""
    out = RUNNERS[protocol.kind](api, sample, params)
    group = {k: sample.meta[k] for k in GROUP_FIELDS if k in sample.meta and sample.meta[k] is not None}
    out.record["group"] = {**group, **out.record.get("group", {})}
    return out


def failed_record(sample: Sample, protocol: Protocol, error: str) -> dict[str, Any]:
    """Record of a sample whose model call raised: scored like the reference's fallback (an empty mask for
    segmentation, a "failed" answer for multiple choice), so failures lower the score instead of vanishing."""
    kind = protocol.kind
    task = sample.task
    has_gt = sample.meta.get("has_gt", True) is not False
    scores: dict[str, Any]
    if (kind == "synthetic" and task in ("ref_seg", "reason_seg")) or kind == "seg":
        if not has_gt:
            scores = {"kind": "submission"}
        elif _is_image(sample):
            union = 0
            for o in sample.objects:
                for rle in o.masks.values():
                    union += int(decode_rle(rle).sum())
            scores = {
                "kind": "image",
                "inter": 0,
                "union": union,
                "iou": 0.0 if union else 1.0,
                "hit": False if sample.meta.get("gt_box") is not None else None,
            }
        else:
            js, fs = [], []
            for o in sample.objects:
                gt = np.stack([decode_rle(r) for _, r in sorted(o.masks.items())]) if o.masks else None
                if gt is None:
                    continue
                r = M.j_and_f(np.zeros_like(gt), gt)
                js.append(r.j)
                fs.append(r.f)
            scores = {
                "kind": "video",
                "J": float(np.mean(js)) if js else 0.0,
                "F": float(np.mean(fs)) if fs else 0.0,
                "A": 0.0,
            }
    elif kind == "region_caption":
        scores = {"kind": "caption"}
    elif kind == "synthetic" and (
        task in ("region_caption", "general_qa") or (task == "region_qa" and not sample.meta.get("options"))
    ):
        scores = {"kind": "exact", "correct": False}
    else:
        scores = {
            "kind": "mc",
            "choice": None,
            "answer": str(sample.meta.get("answer", "")).upper(),
            "correct": False,
            "task": sample.meta.get("type") or sample.meta.get("task"),
            **(
                {"j_values": [0.0] * len(sample.objects), "f_values": [0.0] * len(sample.objects)}
                if task == "pixelqa"
                else {}
            ),
        }
    group = {k: sample.meta[k] for k in GROUP_FIELDS if k in sample.meta and sample.meta[k] is not None}
    if kind == "synthetic":
        fam = {
            "ref_seg": "video_seg",
            "reason_seg": "video_seg",
            "pixelqa": "pixelqa",
            "region_caption": "caption",
        }.get(task, "answer")
        if task in ("ref_seg", "reason_seg") and _is_image(sample):
            fam = "image_seg"
        if task == "region_qa" and sample.meta.get("options"):
            fam = "region_mc"
        group["family"] = fam
    return {"text": None, "error": error, "scores": scores, "group": group}

"""PixelQA (design doc §8): VideoRefer-Bench-Q questions whose objects are referred only by a point or box.

Protocol of the reference (``infer_pixelqa.py --prompt_type {point, box, mix}``):

* Step A (segmentation, teacher-forced): user ``"{mem_question}. Please localize the relevant objects with
  IDs."`` and assistant ``mem_response``, where ``mem_question`` is the Bench-Q ``Question`` with every
  ``<objectK><region>`` -> ``"[K] <|ref|>"`` (a bare ``<region>`` of a single-object question -> id 0) and
  ``mem_response = "[K] <|seg|> [K'] <|seg|> ..."`` in object order.  The ``". "`` join is literal, so a
  question ending in "?" gives "?. Please ..." exactly as the reference does.
* Step B (answering): region prefix from the *predicted* masks (written by the processor) + ``"{Question with
  [K]}\\nOptions:\\n(A) ...\\nPlease only give the best option."``, assistant prefix ``"The best option is ("``.

The sample itself is the step-A conversation (task ``pixelqa``); ``meta`` carries both steps' texts:
``step_a_prompt``, ``step_a_response``, ``step_b_question``, ``assistant_prefix``, ``options`` (bare texts),
``answer`` (letter) and ``prompt_type``.

Prompts are derived from the GT mask on the prompt frame (``frame_idx``), in original pixel coordinates:
point = the mask pixel farthest from the boundary, box = the exact inclusive tight box.  The reference reads
them off the mask resized to the 768x768 SAM frame; each object's ``attributes["prompt_source"]``
(``"mask_center"`` / ``"mask_tight_box"``) lets a parity-minded evaluator re-derive them there with
``unipixel.visual_prompts.mask_to_sam_prompt`` from the object's mask on ``prompt.frame``.

``mix``: the reference picks point or box per object with an unseeded draw (§10.14), so its numbers are not
reproducible; here the draw is ``numpy.random.default_rng([seed, entry])`` (50/50 per object, in object
order), so a given ``seed`` always yields the same prompts, independent of sharding or filtering.

Layout: the VideoRefer-Bench-Q layout (see :mod:`.videorefer`): ``{root}/VideoRefer-Bench-Q.json`` and videos
under ``{root}/videos``.  GT masks cover every annotated frame (J/F are computed over the sampled frames).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..registry import register_reader
from ..schema import REF, SEG, MediaRef, ObjectAnnotation, Sample, Turn
from .videorefer import (
    BENCH_Q_PREFIX,
    ReaderFormatError,
    dense_masks,
    entry_rng,
    iter_entries,
    load_json_list,
    mask_box_prompt,
    mask_center_prompt,
    mcq_prompt,
    media_path,
    normalise_options,
    parse_bench_entry,
    rewrite_region_tags,
    rle_area,
)

STEP_A_SUFFIX = ". Please localize the relevant objects with IDs."
PROMPT_TYPES = ("point", "box", "mix")


def _question(e: dict[str, Any], where: str) -> str:
    q = e.get("Question")
    if not isinstance(q, str):
        raise ReaderFormatError(f"{where}: missing string field 'Question'")
    return q


@register_reader(
    "pixelqa",
    splits=("test",),
    description="PixelQA on VideoRefer-Bench-Q: point/box-referred objects -> '[K] <|seg|>' -> multiple choice",
)
def read_pixelqa(
    root: Path,
    split: str,
    *,
    prompt_type: str = "point",
    seed: int = 0,
    ann_file: str = "VideoRefer-Bench-Q.json",
    video_dir: str | None = None,
    check_media: bool = False,
) -> Iterator[Sample]:
    """PixelQA samples; ``prompt_type`` is 'point', 'box' or 'mix' (seeded by ``seed``, see module doc)."""
    if prompt_type not in PROMPT_TYPES:
        raise ValueError(f"prompt_type must be one of {PROMPT_TYPES}, got {prompt_type!r}")
    ann_path = root / ann_file
    entries = load_json_list(ann_path, "VideoRefer-Bench-Q annotation file (PixelQA)")
    vdir = Path(video_dir) if video_dir else root / "videos"

    def convert(i: int, e: Any) -> Sample:
        eid, prompt_t, frame_idx, pos, masks, where = parse_bench_entry(
            e, i, ann_path.name, single_frame=False
        )
        question = _question(e, where)
        options, letter = normalise_options(e.get("options"), e.get("Answer"), where)
        [mem_q], order = rewrite_region_tags(
            [question], lambda oid, first: f"[{oid}] {REF}" if first else f"[{oid}]"
        )
        [plain_q], _ = rewrite_region_tags([question], lambda oid, first: f"[{oid}]")
        if len(order) != len(masks):
            raise ReaderFormatError(f"{where}: {len(order)} objects mentioned but {len(masks)} annotated")
        rng = entry_rng(seed, "pixelqa", i)
        objects = []
        for oid, m in zip(order, masks, strict=True):
            rle = m[prompt_t]
            if rle_area(rle) == 0:
                raise ReaderFormatError(
                    f"{where}: object [{oid}] has an empty mask on the prompt frame {prompt_t}"
                )
            kind = prompt_type if prompt_type != "mix" else ("point" if rng.random() < 0.5 else "box")
            if kind == "point":
                prompt, source = mask_center_prompt(rle, pos[prompt_t]), "mask_center"
            else:
                prompt, source = mask_box_prompt(rle, pos[prompt_t]), "mask_tight_box"
            objects.append(
                ObjectAnnotation(
                    id=oid,
                    masks=dense_masks(m, pos, len(frame_idx)),
                    prompt=prompt,
                    attributes={"prompt_source": source},
                )
            )
        step_a = f"{mem_q}{STEP_A_SUFFIX}"
        response = " ".join(f"[{o.id}] {SEG}" for o in objects)
        return Sample(
            id=f"pixelqa/{eid}",
            task="pixelqa",
            media=MediaRef(path=media_path(vdir, e["video"], where, check_media), frame_indices=frame_idx),
            conversation=[Turn("user", step_a), Turn("assistant", response)],
            objects=objects,
            meta={
                "dataset": "pixelqa",
                "prompt_type": prompt_type,
                "seed": seed,
                "step_a_prompt": step_a,
                "step_a_response": response,
                "step_b_question": mcq_prompt(plain_q, options),
                "assistant_prefix": BENCH_Q_PREFIX,
                "options": options,
                "answer": letter,
                "type": e.get("type"),
                "prompt_frame_index": prompt_t,
                "source_id": eid,
            },
        )

    return iter_entries(entries, convert, "raise", "pixelqa")

"""ViCaS caption-grounded video referral segmentation (design doc §4.2 "sentence" prompts, §5 ``vicas``).

Layout (§5 names the pieces; the rest follows the public ViCaS release):

* split lists: ``{root}/splits/v1.0/{split}.json`` = list of video ids;
* annotations: either one file ``{root}/annotations_wo_masks_v1.0.json`` (a list of per-video objects or a
  ``{video_id: object}`` dict) or one file per video ``{root}/annotations/v1.0/{video_id}.json``; a video object
  has ``"object_referrals": [{"prompt": str, "track_ids": [int...]}]`` and ``"segmentations"``: one entry per
  frame, ``{"track_ids": [...], "mask_rles": [RLE...], "is_gt": bool}``;
* masks are inline (``mask_rles``) or, for the "wo_masks" file, in ``{root}/masks/{video_id}/{i}.json`` for
  frame i: either a list of RLEs aligned with that frame's ``track_ids`` or ``{"track_ids", "mask_rles"}``;
* frames: ``{root}/video_frames/{video_id}/`` (sorted frame files; frame i = segmentation entry i).

One ``ref_seg`` sample per referral: the target is the union of its tracks' masks (one object, one
``<|seg|>``).  The frame list (``MediaRef.frame_indices``) holds the annotated frames (``is_gt`` not false,
or every frame with ``include_non_gt=True``); a frame where no referred track is visible gets an empty mask
so absence is supervised too.  Train: query and response templates drawn with a per-referral seed; val/test:
the reference's fixed evaluation templates ("{q} Please provide the segmentation mask." / "The target is
<|seg|>.").
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..registry import register_reader
from ..schema import MediaRef, ObjectAnnotation, Sample, Turn
from .videorefer import (
    ReaderFormatError,
    check_no_special_tokens,
    entry_rng,
    iter_entries,
    load_json,
    mask_to_rle,
    to_rle,
    union_rles,
)

SENTENCE_TEMPLATES = (
    "{} Please provide the segmentation mask.",
    "{} Please respond with the segmentation mask.",
    "{} Output the segmentation mask.",
    "{} Give me the segmentation results directly.",
    "{} Segment the target directly.",
)
SEG_RESPONSES = (
    "The target is <|seg|>.",
    "The segmentation result is <|seg|>.",
    "Sure, the segmentation mask is <|seg|>.",
    "Sure, it is <|seg|>.",
    "<|seg|>.",
)


def _video_ann(root: Path, vid: str, combined: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    if combined is not None:
        if vid not in combined:
            raise ReaderFormatError(
                f"video {vid} is listed in the split but missing from the annotation file"
            )
        return combined[vid], f"annotation of video {vid}"
    path = root / "annotations" / "v1.0" / f"{vid}.json"
    ann = load_json(path, f"ViCaS annotation of video {vid}")
    if not isinstance(ann, dict):
        raise ReaderFormatError(f"{path}: expected a JSON object")
    return ann, path.name


def _frame_masks(
    root: Path, vid: str, seg: Any, i: int, where: str
) -> tuple[list[int], list[dict[str, Any]]]:
    if not isinstance(seg, dict):
        raise ReaderFormatError(f"{where}: segmentations[{i}] must be an object")
    tids, rles = seg.get("track_ids"), seg.get("mask_rles")
    if rles is None:
        data = load_json(root / "masks" / vid / f"{i}.json", f"ViCaS mask file of video {vid} frame {i}")
        if isinstance(data, dict):
            tids, rles = data.get("track_ids", tids), data.get("mask_rles")
        else:
            rles = data
    if not isinstance(tids, list) or not isinstance(rles, list) or len(tids) != len(rles):
        raise ReaderFormatError(f"{where}: frame {i} needs equally long 'track_ids' and 'mask_rles' lists")
    return [int(t) for t in tids], [to_rle(r, where=f"{where} frame {i}") for r in rles]


@register_reader(
    "vicas", splits=("train", "val", "test"), description="ViCaS caption-grounded referral video segmentation"
)
def read_vicas(
    root: Path,
    split: str,
    *,
    seed: int = 0,
    include_non_gt: bool = False,
    ann_file: str = "annotations_wo_masks_v1.0.json",
    on_error: str = "raise",
) -> Iterator[Sample]:
    """One sample per (video, object referral); see the module docstring for layout and templates."""
    split_path = root / "splits" / "v1.0" / f"{split}.json"
    ids = load_json(split_path, f"ViCaS split list ({split})")
    if not isinstance(ids, list):
        raise ReaderFormatError(f"{split_path} must hold a JSON list of video ids")
    combined = None
    if (root / ann_file).is_file():
        data = load_json(root / ann_file, "ViCaS annotation file")
        if isinstance(data, list):
            combined = {str(a.get("video_id")): a for a in data if isinstance(a, dict)}
        elif isinstance(data, dict):
            combined = {str(k): v for k, v in data.items()}
        else:
            raise ReaderFormatError(
                f"{root / ann_file} must hold a list or a {{video_id: annotation}} object"
            )
    train = split == "train"

    def video_samples(vid: str) -> list[Sample]:
        ann, where = _video_ann(root, vid, combined)
        refs, segs = ann.get("object_referrals"), ann.get("segmentations")
        if not isinstance(refs, list) or not isinstance(segs, list):
            raise ReaderFormatError(f"{where}: needs 'object_referrals' and 'segmentations' lists")
        frames = [
            i
            for i, s in enumerate(segs)
            if include_non_gt or not (isinstance(s, dict) and s.get("is_gt") is False)
        ]
        per_frame = {i: _frame_masks(root, vid, segs[i], i, where) for i in frames}
        out = []
        for r, ref in enumerate(refs):
            w = f"{where} object_referrals[{r}]"
            if (
                not isinstance(ref, dict)
                or not isinstance(ref.get("prompt"), str)
                or not isinstance(ref.get("track_ids"), list)
            ):
                raise ReaderFormatError(f"{w}: needs a string 'prompt' and a 'track_ids' list")
            check_no_special_tokens([ref["prompt"]], w)
            want = {int(t) for t in ref["track_ids"]}
            masks = {}
            for p, i in enumerate(frames):
                tids, rles = per_frame[i]
                hit = [rl for t, rl in zip(tids, rles, strict=True) if t in want]
                if hit:
                    masks[p] = union_rles(hit)
                elif rles:
                    h, wd = rles[0]["size"]
                    masks[p] = mask_to_rle(np.zeros((h, wd), dtype=np.uint8))
                elif "height" in ann and "width" in ann:
                    masks[p] = mask_to_rle(np.zeros((int(ann["height"]), int(ann["width"])), dtype=np.uint8))
            if not masks:
                continue
            query = ref["prompt"].strip()
            if train:
                rng = entry_rng(seed, "vicas", vid, r)
                q = SENTENCE_TEMPLATES[int(rng.integers(len(SENTENCE_TEMPLATES)))].format(query)
                a = SEG_RESPONSES[int(rng.integers(len(SEG_RESPONSES)))]
            else:
                q, a = SENTENCE_TEMPLATES[0].format(query), SEG_RESPONSES[0]
            out.append(
                Sample(
                    id=f"vicas/{split}/{vid}/{r}",
                    task="ref_seg",
                    media=MediaRef(path=str(root / "video_frames" / vid), frame_indices=frames),
                    conversation=[Turn("user", q), Turn("assistant", a)],
                    objects=[ObjectAnnotation(id=0, masks=masks, attributes={"track_ids": sorted(want)})],
                    meta={"dataset": "vicas", "video_id": vid, "referral_index": r, "query": query},
                )
            )
        return out

    return iter_entries(ids, lambda i, vid: video_samples(str(vid)), on_error, f"vicas {split}")

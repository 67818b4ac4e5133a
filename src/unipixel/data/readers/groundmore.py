"""GroundMoRe motion-grounded video reasoning: answer a question and segment the object (design doc §5, §7.3).

Layout (``root`` = the reference's ``data/groundmore``)::

    {root}/trainval_v2.json, {root}/test_v2.json
            {"videos": {vid: {"questions": {qid: {"question": str, "answer": str, "q_type": "Causal" |
             "Sequential" | "Counterfactual" | "Descriptive", "obj_id": "1" or "1, 2",
             "action_start": "MM:SS", "action_end": "MM:SS"}}}}}
    {root}/annotations/{vid}/images/{frame}.jpg    frames ("frame_000012.jpg" or "0000012.jpg")
    {root}/annotations/{vid}/masks/{frame}.png     palette PNG of object ids (only some frames have one)

Frames are ordered by the number in their name.  ``train`` (split of ``trainval_v2.json``) keeps only the frames
that have a mask PNG (reference training).  ``test`` keeps the 20 uniformly spaced frames
``linspace(0, n - 1, 20).astype(int)`` the evaluation scores (§7.3); a frame without a PNG has an empty GT.
Videos listed in the JSON without an ``annotations/{vid}`` folder are skipped, as in the reference (a warning
gives the count).

One sample per question (task ``reason_seg``): "{question}? Please answer the question and provide the
segmentation mask." (a missing '?' is added) → "{answer} <|seg|>.", one object whose mask is the union of
``png == id`` over the question's object ids.  ``action_window`` (default: on for ``test``) empties the GT
outside the action's frames ``[(t_start − t_clip)·6, (t_end − t_clip)·6 − 1]`` with the clip start parsed from
the video name, exactly what ``eval_groundmore.py`` scores (training uses the raw masks).  The window is in
frame positions of the sorted frame list; the evaluation derives frame file names from those positions, which
is the same thing when frames are named by their 0-based index (the released layout).  ``meta`` keeps
``q_type``, ``answer``, ``obj_id``, ``action_start``/``action_end``, ``action_window``, ``frame_names`` and
``frame_indices`` (positions in the full video).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ...eval.metrics import groundmore_action_window, groundmore_sample_indices
from ..masks import (
    SEG,
    encode_mask,
    get_field,
    image_size,
    list_frames,
    load_json,
    question_prompt,
    read_id_png,
)
from ..registry import register_reader
from ..schema import MediaRef, ObjectAnnotation, Sample, Turn

META_FILES = {"train": "trainval_v2.json", "test": "test_v2.json"}
EVAL_FRAMES = 20


def _obj_ids(value: Any, where: str) -> list[int]:
    try:
        if isinstance(value, int):
            return [value]
        ids = [int(p) for p in str(value).split(",") if p.strip()]
    except ValueError:
        raise ValueError(f"{where}: obj_id {value!r} is not an id or a comma-separated list of ids") from None
    if not ids:
        raise ValueError(f"{where}: obj_id is empty")
    return ids


@register_reader(
    "groundmore", splits=("train", "test"), description="GroundMoRe motion-grounded video QA + seg"
)
def read_groundmore(root: Path, split: str, *, action_window: bool | None = None) -> Iterator[Sample]:
    """GroundMoRe samples (see the module docstring)."""
    if split not in META_FILES:
        raise ValueError(f"GroundMoRe splits are {tuple(META_FILES)}, not {split!r}")
    root = Path(root)
    meta_path = root / META_FILES[split]
    videos = get_field(load_json(meta_path, f"GroundMoRe {split} file"), "videos", str(meta_path), dict)
    window = (split == "test") if action_window is None else action_window
    anno_root = root / "annotations"
    missing = [vid for vid in videos if not (anno_root / vid).is_dir()]
    if missing:
        warnings.warn(
            f"GroundMoRe {split}: {len(missing)} of {len(videos)} videos have no folder under {anno_root} and are "
            f"skipped (as in the reference), e.g. {missing[:3]}",
            stacklevel=2,
        )
    return _samples(split, videos, meta_path, anno_root, window, set(missing))


def _frames(split: str, vid_dir: Path) -> tuple[list[Path], list[Path | None], list[int], int]:
    """(frame files, mask PNG per frame or None, frame positions in the video, number of video frames)."""
    if split == "train":
        masks: list[Path | None] = list(list_frames(vid_dir / "masks", exts=(".png",)))
        frames = [vid_dir / "images" / f"{m.stem}.jpg" for m in masks if m is not None]
        all_frames = list_frames(vid_dir / "images", exts=(".jpg",))
        pos = {p.name: i for i, p in enumerate(all_frames)}
        return frames, masks, [pos.get(f.name, -1) for f in frames], len(all_frames)
    all_frames = list_frames(vid_dir / "images", exts=(".jpg",))
    if not all_frames:
        raise FileNotFoundError(f"no .jpg frames in {vid_dir / 'images'}")
    keep = [int(i) for i in groundmore_sample_indices(len(all_frames), EVAL_FRAMES)]
    frames = [all_frames[i] for i in keep]
    masks = [vid_dir / "masks" / f"{f.stem}.png" for f in frames]
    masks = [m if m is not None and m.is_file() else None for m in masks]
    return frames, masks, keep, len(all_frames)


def _samples(
    split: str, videos: dict[str, Any], meta_path: Path, anno_root: Path, window: bool, missing: set[str]
) -> Iterator[Sample]:
    for vid, v in videos.items():
        if vid in missing:
            continue
        where_v = f"{meta_path} video {vid!r}"
        questions = get_field(v, "questions", where_v, dict)
        frames, mask_paths, positions, num_video_frames = _frames(split, anno_root / vid)
        if not frames:
            continue
        id_maps = [read_id_png(m) if m is not None else None for m in mask_paths]
        size = next((m.shape for m in id_maps if m is not None), None) or image_size(frames[0])
        empty = np.zeros(size, dtype=bool)
        for qid, q in questions.items():
            where = f"{where_v} question {qid!r}"
            question = get_field(q, "question", where, str).strip()
            if not question.endswith("?"):
                question += "?"
            answer = get_field(q, "answer", where, str)
            ids = _obj_ids(get_field(q, "obj_id", where), where)
            start_s, end_s = q.get("action_start"), q.get("action_end")
            span = None
            if window:
                if start_s is None or end_s is None:
                    raise ValueError(f"{where}: action_start/action_end are needed for the action window")
                span = groundmore_action_window(vid, str(start_s), str(end_s))
            masks = {}
            for t, (ids_map, pos) in enumerate(zip(id_maps, positions, strict=True)):
                inside = span is None or span[0] <= pos <= span[1]
                m = np.isin(ids_map, ids) if ids_map is not None and inside else empty
                if m.shape != tuple(size):
                    raise ValueError(
                        f"{anno_root / vid}: mask {mask_paths[t]} has size {m.shape}, expected {size}"
                    )
                masks[t] = encode_mask(m)
            yield Sample(
                id=f"groundmore/{split}/{vid}/{qid}",
                task="reason_seg",
                media=MediaRef(frames=[str(f) for f in frames], is_image=False),
                conversation=[Turn("user", question_prompt(question)), Turn("assistant", f"{answer} {SEG}.")],
                objects=[ObjectAnnotation(id=0, masks=masks)],
                meta={
                    "dataset": "groundmore",
                    "split": split,
                    "vid": vid,
                    "exp_id": str(qid),
                    "question": question,
                    "answer": answer,
                    "q_type": q.get("q_type"),
                    "type": "question",
                    "obj_id": ids,
                    "action_start": start_s,
                    "action_end": end_s,
                    "action_window": list(span) if span is not None else None,
                    "frame_names": [f.stem for f in frames],
                    "frame_indices": positions,
                    "num_video_frames": num_video_frames,
                    "has_gt": True,
                    "submission": False,
                },
            )

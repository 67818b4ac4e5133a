"""ReVOS reasoning video object segmentation (design doc §5, §7.3) + the ``meta_expressions`` helpers shared by
the MeViS, LV-VIS and Ref-SAV (valid) readers.

Layout (``root`` = the reference's ``data/revos``)::

    {root}/meta_expressions_{train,valid}_.json   {"videos": {vid: {"frames": [name, ...],
                                                   "expressions": {exp_id: {"exp": str, "obj_id": [int],
                                                   "anno_id": [int], "type_id": 0|1}}}}}
    {root}/mask_dict.json                          {str(anno_id): [RLE | null per frame of the video]}
    {root}/{vid}/{name}.jpg                        frames (vid may contain '/', e.g. "TAO/...")

One sample per expression: prompt "{exp} Please provide the segmentation mask." when the expression ends with
'?' (the reference's 'sentence' type), else "Please segment the {query} in this video."; assistant "The target
is <|seg|>.".  One object whose mask on every frame is the union of the expression's ``anno_id`` RLEs (an
expression without objects gets empty masks; J then rewards an empty prediction).  ``type_id`` 0/1 →
``meta["subset"]`` "referring"/"reasoning" (the two subsets are scored separately and averaged, §7.3) and the
task ``ref_seg`` / ``reason_seg``; ``subset=`` filters.  ``train`` follows the reference loader: expressions
without objects are skipped and, with ``crop_tao=True`` (default), TAO videos are grouped by object set and
cropped to the first..last frame where the group's first expression has a mask (groups shorter than 2 frames
dropped); ``meta["frame_offset"]`` is the index of the first kept frame in the full video.
``valid`` keeps every expression and every frame (the evaluation split).  ReVOS' ``mask_dict_foreground.json``
(for the "R" metric) is not read here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..masks import (
    SEG_RESPONSE,
    first_rle_size,
    get_field,
    image_size,
    load_json,
    query_prompt,
    sentence_prompt,
    union_rles,
)
from ..registry import register_reader
from ..schema import MediaRef, ObjectAnnotation, Sample, Turn

SUBSETS = {0: "referring", 1: "reasoning"}

# ----------------------------------------------------------------------------------------------------------
# shared meta_expressions + mask_dict helpers


def load_videos(meta_path: Path, what: str) -> dict[str, Any]:
    """``meta_expressions[...]["videos"]`` with each video's ``frames`` and ``expressions`` checked."""
    data = load_json(meta_path, what)
    videos = get_field(data, "videos", str(meta_path), dict)
    for vid, v in videos.items():
        where = f"{meta_path} video {vid!r}"
        frames = get_field(v, "frames", where, list)
        if not frames:
            raise ValueError(f"{where}: 'frames' is empty")
        get_field(v, "expressions", where, dict)
    return videos


def load_mask_dict(mask_path: Path, what: str) -> dict[str, Any]:
    data = load_json(mask_path, what)
    if not isinstance(data, dict):
        raise ValueError(f"{mask_path}: expected an object {{anno_id: [RLE | null per frame]}}")
    return data


def anno_tracks(
    mask_dict: dict[str, Any], anno_ids: list[Any], num_frames: int, where: str, mask_path: Path
) -> list[list[Any]]:
    """Per anno_id, its per-frame RLE list (checked to have one entry per frame)."""
    tracks = []
    for a in anno_ids:
        key = str(a)
        if key not in mask_dict:
            raise ValueError(f"{where}: anno_id {a} is not in {mask_path}")
        track = mask_dict[key]
        if not isinstance(track, list) or len(track) != num_frames:
            n = len(track) if isinstance(track, list) else type(track).__name__
            raise ValueError(f"{where}: {mask_path} entry {key} has {n} frames, the video has {num_frames}")
        tracks.append(track)
    return tracks


def union_track(
    tracks: list[list[Any]], num_frames: int, size: tuple[int, int], where: str
) -> dict[int, Any]:
    """Frame position → union RLE of ``tracks`` (empty where every track is ``None``)."""
    return {
        t: union_rles((tr[t] for tr in tracks), size, what=f"{where} frame {t}") for t in range(num_frames)
    }


class SizeCache:
    """Frame size of a video: from any RLE in its annotations, else from the first frame's header."""

    def __init__(self) -> None:
        self._sizes: dict[str, tuple[int, int]] = {}

    def get(self, vid: str, tracks: list[list[Any]], first_frame: Path) -> tuple[int, int]:
        if vid not in self._sizes:
            size = None
            for tr in tracks:
                size = first_rle_size(tr)
                if size is not None:
                    break
            self._sizes[vid] = size if size is not None else image_size(first_frame)
        return self._sizes[vid]


def video_sample(
    *,
    sample_id: str,
    task: str,
    frame_paths: list[Path],
    prompt: str,
    response: str,
    masks: dict[int, Any] | None,
    meta: dict[str, Any],
) -> Sample:
    """A one-object video sample; ``masks=None`` = no ground truth (server-evaluated split).

    A sample without ground truth keeps its ``<|seg|>`` answer but its object has no masks, so
    :func:`~unipixel.data.schema.validate_sample` rejects it; ``meta["has_gt"]`` is False and
    ``meta["submission"]`` True so evaluators write prediction PNGs for the server instead of scoring.
    """
    meta = {**meta, "has_gt": masks is not None, "submission": masks is None}
    return Sample(
        id=sample_id,
        task=task,
        media=MediaRef(frames=[str(p) for p in frame_paths], is_image=False),
        conversation=[Turn("user", prompt), Turn("assistant", response)],
        objects=[ObjectAnnotation(id=0, masks=masks or {})],
        meta=meta,
    )


@dataclass
class ExpressionRecord:
    """One expression of a meta_expressions file with its decoded per-frame GT (or None)."""

    vid: str
    qid: str
    entry: dict[str, Any]
    frame_names: list[str]
    frame_paths: list[Path]
    masks: dict[int, Any] | None
    obj_ids: list[Any]
    anno_ids: list[Any]


def iter_expressions(
    videos: dict[str, Any],
    meta_path: Path,
    mask_dict: dict[str, Any] | None,
    mask_path: Path | None,
    frame_root: Path,
    *,
    skip_no_object: bool,
    ext: str = ".jpg",
) -> Iterator[ExpressionRecord]:
    """Expressions in file order; masks = union of ``anno_id`` tracks on every frame (None without mask_dict)."""
    sizes = SizeCache()
    for vid, v in videos.items():
        names = [str(n) for n in v["frames"]]
        paths = [frame_root / vid / f"{n}{ext}" for n in names]
        for qid, e in v["expressions"].items():
            where = f"{meta_path} video {vid!r} expression {qid!r}"
            get_field(e, "exp", where, str)
            obj_ids = list(e.get("obj_id", []) or [])
            anno_ids: list[Any] = []
            if mask_dict is not None:
                anno_ids = get_field(e, "anno_id", where, list)
                if "obj_id" in e and len(obj_ids) != len(anno_ids):
                    raise ValueError(f"{where}: obj_id {obj_ids} and anno_id {anno_ids} differ in length")
            if skip_no_object and not (anno_ids if mask_dict is not None else obj_ids):
                continue
            masks = None
            if mask_dict is not None and mask_path is not None:
                tracks = anno_tracks(mask_dict, anno_ids, len(names), where, mask_path)
                if not tracks:  # size from the video's other expressions, else the first frame
                    tracks_for_size = [
                        mask_dict[str(a)]
                        for other in v["expressions"].values()
                        for a in (other.get("anno_id") or [])
                        if str(a) in mask_dict
                    ]
                else:
                    tracks_for_size = tracks
                size = sizes.get(vid, tracks_for_size, paths[0])
                masks = union_track(tracks, len(names), size, where)
            yield ExpressionRecord(vid, str(qid), e, names, paths, masks, obj_ids, list(anno_ids))


def nonempty_frames(masks: dict[int, Any]) -> list[int]:
    """Frame positions whose RLE is non-empty (cheap: an all-zero RLE has a single run)."""
    from pycocotools import mask as mask_utils

    out = []
    for t, rle in masks.items():
        if mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode("ascii")}) > 0:
            out.append(t)
    return out


# ----------------------------------------------------------------------------------------------------------
# ReVOS


def _revos_prompt(exp: str) -> tuple[str, str]:
    query = exp.strip()
    if query.endswith("?"):
        return "sentence", sentence_prompt(query)
    return "query", query_prompt(query, is_image=False)


@register_reader("revos", splits=("train", "valid"), description="ReVOS reasoning video object segmentation")
def read_revos(
    root: Path, split: str, *, subset: str | None = None, crop_tao: bool | None = None
) -> Iterator[Sample]:
    """ReVOS samples (see the module docstring); ``subset`` = "referring" | "reasoning" | None (both)."""
    if subset not in (None, *SUBSETS.values()):
        raise ValueError(f"subset must be one of {tuple(SUBSETS.values())} or None, got {subset!r}")
    root = Path(root)
    meta_path = root / f"meta_expressions_{split}_.json"
    mask_path = root / "mask_dict.json"
    videos = load_videos(meta_path, f"ReVOS {split} meta_expressions file")
    mask_dict = load_mask_dict(mask_path, "ReVOS mask_dict file")
    crop = (split == "train") if crop_tao is None else crop_tao
    return _revos_samples(root, split, subset, crop, videos, meta_path, mask_dict, mask_path)


def _revos_samples(
    root: Path,
    split: str,
    subset: str | None,
    crop: bool,
    videos: dict[str, Any],
    meta_path: Path,
    mask_dict: dict[str, Any],
    mask_path: Path,
) -> Iterator[Sample]:
    records = iter_expressions(videos, meta_path, mask_dict, mask_path, root, skip_no_object=split == "train")
    current_vid: str | None = None
    groups: dict[str, list[ExpressionRecord]] = {}

    def flush() -> Iterator[Sample]:
        for recs in groups.values():
            s, e = 0, len(recs[0].frame_names)
            if crop and recs[0].vid.split("/")[0] == "TAO":
                assert recs[0].masks is not None
                hit = nonempty_frames(recs[0].masks)
                if not hit:
                    continue
                s, e = hit[0], hit[-1] + 1
                if e - s < 2:
                    continue
            for r in recs:
                yield from _revos_sample(r, split, subset, s, e)

    for r in records:
        if r.vid != current_vid:
            yield from flush()
            groups, current_vid = {}, r.vid
        key = "_".join(str(o) for o in sorted(r.obj_ids)) if crop and r.vid.split("/")[0] == "TAO" else "none"
        groups.setdefault(key, []).append(r)
    yield from flush()


def _revos_sample(r: ExpressionRecord, split: str, subset: str | None, s: int, e: int) -> Iterator[Sample]:
    where = f"ReVOS video {r.vid!r} expression {r.qid!r}"
    type_id = r.entry.get("type_id", 0)
    if type_id not in SUBSETS:
        raise ValueError(f"{where}: type_id {type_id!r} is not 0 (referring) or 1 (reasoning)")
    sub = SUBSETS[type_id]
    if subset is not None and sub != subset:
        return
    kind, prompt = _revos_prompt(r.entry["exp"])
    assert r.masks is not None
    masks = {t - s: r.masks[t] for t in range(s, e)}
    yield video_sample(
        sample_id=f"revos/{split}/{r.vid}/{r.qid}",
        task="reason_seg" if sub == "reasoning" else "ref_seg",
        frame_paths=r.frame_paths[s:e],
        prompt=prompt,
        response=SEG_RESPONSE,
        masks=masks,
        meta={
            "dataset": "revos",
            "split": split,
            "vid": r.vid,
            "exp_id": r.qid,
            "exp": r.entry["exp"],
            "type": kind,
            "type_id": type_id,
            "subset": sub,
            "obj_id": r.obj_ids,
            "anno_id": r.anno_ids,
            "frame_names": r.frame_names[s:e],
            "frame_offset": s,
        },
    )

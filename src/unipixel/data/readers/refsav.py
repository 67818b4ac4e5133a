"""Ref-SAV long-description video segmentation (design doc §5 ``ref_sav`` / ``ref_sav_eval``, §7.3).

Two layouts, as in the reference (``root`` = ``data/ref_sav``):

``valid`` (evaluation, ``ref_sav_eval``)::

    {root}/valid/meta_expressions_valid.json   {"videos": {vid: {"frames": [...], "expressions": {exp_id:
                                               {"exp": description, "obj_id": [int], "anno_id": [int]}}}}}
    {root}/valid/mask_dict.json                {str(anno_id): [RLE | null per frame]}
    {root}/valid/videos/{vid}/{name}.jpg

``train`` (``ref_sav``; videos and masks are SA-V's, under ``sav_root``, default ``root.parent / "sav"``, i.e.
the reference's ``data/sav``)::

    {root}/Ref-SAV-Min-Ratio-0.3.json          {vid: {"video_path": "<dir>/sav_train/.../{vid}.mp4",
                                               "anno_path": "<dir>/sav_train/.../{vid}_manual.json",
                                               "objects": {obj_id: {"video_id", "obj_id", "formated", ...}}}}
    {sav_root}/sav_train/.../{vid}.mp4         (the first path component of video_path/anno_path is dropped)
    {sav_root}/sav_train/.../{vid}_manual.json SA-V annotation: "masklet"[annotated frame][object] = RLE

SA-V annotates every 4th frame, so a training sample's media is the mp4 with ``frame_indices`` = 0, 4, 8, ...
(one per ``masklet`` entry; the reference decodes every 4th frame) and masks are keyed by position in that
list.  The object's column in ``masklet`` is ``masklet_id.index(obj_id)`` when the file lists ``masklet_id``
(the reference indexes by ``int(obj_id)`` directly; both agree on SA-V where ids are 0..n-1).

Samples (task ``ref_seg``, one object): "Please segment the object according to the description: {text}" →
"The target is <|seg|>.".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..masks import SEG_RESPONSE, description_prompt, empty_rle, get_field, load_json, to_rle
from ..registry import register_reader
from ..schema import MediaRef, ObjectAnnotation, Sample, Turn
from .revos import iter_expressions, load_mask_dict, load_videos, video_sample

TRAIN_META = "Ref-SAV-Min-Ratio-0.3.json"
SAV_STRIDE = 4


@register_reader(
    "ref_sav", splits=("train", "valid"), description="Ref-SAV long-description video segmentation"
)
def read_ref_sav(root: Path, split: str, *, sav_root: str | Path | None = None) -> Iterator[Sample]:
    """Ref-SAV samples (see the module docstring for the two layouts)."""
    root = Path(root)
    if split == "valid":
        meta_path = root / "valid" / "meta_expressions_valid.json"
        mask_path = root / "valid" / "mask_dict.json"
        videos = load_videos(meta_path, "Ref-SAV valid meta_expressions file")
        mask_dict = load_mask_dict(mask_path, "Ref-SAV valid mask_dict file")
        return _valid_samples(root, videos, meta_path, mask_dict, mask_path)
    if split != "train":
        raise ValueError(f"Ref-SAV splits are 'train' and 'valid', not {split!r}")
    meta_path = root / TRAIN_META
    meta = load_json(meta_path, "Ref-SAV training file")
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: expected an object {{video_id: {{video_path, anno_path, objects}}}}")
    sav = Path(sav_root) if sav_root is not None else root.parent / "sav"
    return _train_samples(meta, meta_path, sav)


def _valid_samples(
    root: Path, videos: dict[str, Any], meta_path: Path, mask_dict: dict[str, Any], mask_path: Path
) -> Iterator[Sample]:
    for r in iter_expressions(
        videos, meta_path, mask_dict, mask_path, root / "valid" / "videos", skip_no_object=False
    ):
        text = r.entry["exp"].strip()
        yield video_sample(
            sample_id=f"ref_sav/valid/{r.vid}/{r.qid}",
            task="ref_seg",
            frame_paths=r.frame_paths,
            prompt=description_prompt(text),
            response=SEG_RESPONSE,
            masks=r.masks,
            meta={
                "dataset": "ref_sav",
                "split": "valid",
                "vid": r.vid,
                "exp_id": r.qid,
                "exp": text,
                "type": "description",
                "obj_id": r.obj_ids,
                "anno_id": r.anno_ids,
                "frame_names": r.frame_names,
            },
        )


def _strip_first(p: str, where: str, key: str) -> str:
    parts = p.split("/", 1)
    if len(parts) != 2 or not parts[1]:
        raise ValueError(f"{where}: {key} {p!r} should look like '<dir>/sav_train/...'")
    return parts[1]


def _train_samples(meta: dict[str, Any], meta_path: Path, sav: Path) -> Iterator[Sample]:
    for vid, v in meta.items():
        where = f"{meta_path} video {vid!r}"
        video = sav / _strip_first(get_field(v, "video_path", where, str), where, "video_path")
        anno_path = sav / _strip_first(get_field(v, "anno_path", where, str), where, "anno_path")
        objects = get_field(v, "objects", where, dict)
        if not objects:
            continue
        anno = load_json(anno_path, "SA-V manual annotation")
        masklet = get_field(anno, "masklet", str(anno_path), list)
        if not masklet:
            raise ValueError(f"{anno_path}: 'masklet' is empty")
        ids = anno.get("masklet_id")
        h, w = anno.get("video_height"), anno.get("video_width")
        for qid, obj in objects.items():
            owhere = f"{where} object {qid!r}"
            oid = get_field(obj, "obj_id", owhere)
            if str(oid) != str(qid) or str(obj.get("video_id", vid)) != str(vid):
                raise ValueError(
                    f"{owhere}: obj_id {oid!r} / video_id {obj.get('video_id')!r} do not match the keys"
                )
            text = get_field(obj, "formated", owhere, str).strip()
            col = list(ids).index(int(oid)) if isinstance(ids, list) and int(oid) in ids else int(oid)
            masks = {}
            for t, frame in enumerate(masklet):
                if not isinstance(frame, list) or col >= len(frame):
                    raise ValueError(
                        f"{anno_path}: masklet[{t}] has no entry for object {oid} (column {col})"
                    )
                rle = frame[col]
                if rle is None:  # not expected in SA-V, but an absent object is an empty mask
                    if h is None or w is None:
                        raise ValueError(
                            f"{anno_path}: masklet[{t}][{col}] is null and the video size is unknown"
                        )
                    masks[t] = empty_rle(int(h), int(w))
                    continue
                size = get_field(rle, "size", f"{anno_path} masklet[{t}][{col}]", list)
                masks[t] = to_rle(rle, int(size[0]), int(size[1]), what=f"{anno_path} masklet[{t}][{col}]")
            yield Sample(
                id=f"ref_sav/train/{vid}/{qid}",
                task="ref_seg",
                media=MediaRef(path=str(video), frame_indices=[SAV_STRIDE * t for t in range(len(masklet))]),
                conversation=[Turn("user", description_prompt(text)), Turn("assistant", SEG_RESPONSE)],
                objects=[ObjectAnnotation(id=0, masks=masks)],
                meta={
                    "dataset": "ref_sav",
                    "split": "train",
                    "vid": vid,
                    "exp_id": str(qid),
                    "exp": text,
                    "type": "description",
                    "obj_id": [int(oid)],
                    "anno_path": str(anno_path),
                    "frame_stride": SAV_STRIDE,
                    "has_gt": True,
                    "submission": False,
                },
            )

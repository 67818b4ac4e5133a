"""LV-VIS category tracking as referring segmentation (design doc §5): the query is the class name.

Layout (``root`` = the reference's ``data/lvvis``)::

    {root}/meta_expressions.json        {"videos": {vid: {"frames": [...], "expressions": {exp_id: {"exp":
                                        class_name, "obj_id": [int], "anno_id": [int]}}}}}
    {root}/mask_dict.json               {str(anno_id): [RLE | null per frame]}
    {root}/train/JPEGImages/{vid}/{name}.jpg

Only ``train`` exists (the reference raises for other splits: the validation masks are not public).  One sample
per expression with objects (task ``ref_seg``): "Please segment the {class name with '_' → ' '} in this
video." → "The target is <|seg|>.", one object = union of the expression's ``anno_id`` RLEs on every frame.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..masks import SEG_RESPONSE, query_prompt
from ..registry import register_reader
from ..schema import Sample
from .revos import iter_expressions, load_mask_dict, load_videos, video_sample


@register_reader("lvvis", splits=("train",), description="LV-VIS category tracking (query = class name)")
def read_lvvis(root: Path, split: str = "train") -> Iterator[Sample]:
    """LV-VIS training samples (see the module docstring)."""
    if split != "train":
        raise ValueError(f"LV-VIS has masks only for 'train', not {split!r}")
    root = Path(root)
    meta_path, mask_path = root / "meta_expressions.json", root / "mask_dict.json"
    videos = load_videos(meta_path, "LV-VIS meta_expressions file")
    mask_dict = load_mask_dict(mask_path, "LV-VIS mask_dict file")
    return _samples(root, videos, meta_path, mask_dict, mask_path)


def _samples(
    root: Path, videos: dict[str, Any], meta_path: Path, mask_dict: dict[str, Any], mask_path: Path
) -> Iterator[Sample]:
    for r in iter_expressions(
        videos, meta_path, mask_dict, mask_path, root / "train" / "JPEGImages", skip_no_object=True
    ):
        query = r.entry["exp"].replace("_", " ").strip()
        yield video_sample(
            sample_id=f"lvvis/train/{r.vid}/{r.qid}",
            task="ref_seg",
            frame_paths=r.frame_paths,
            prompt=query_prompt(query, is_image=False),
            response=SEG_RESPONSE,
            masks=r.masks,
            meta={
                "dataset": "lvvis",
                "split": "train",
                "vid": r.vid,
                "exp_id": r.qid,
                "exp": r.entry["exp"],
                "type": "query",
                "obj_id": r.obj_ids,
                "anno_id": r.anno_ids,
                "frame_names": r.frame_names,
            },
        )

"""MeViS motion-expression video segmentation (design doc §5, §7.3).

Layout (``root`` = the reference's ``data/mevis``)::

    {root}/{train,valid_u,valid}/meta_expressions.json   {"videos": {vid: {"frames": [name, ...],
                                                          "expressions": {exp_id: {"exp": str,
                                                          "obj_id": [int], "anno_id": [int]}}}}}
    {root}/{train,valid_u}/mask_dict.json                {str(anno_id): [RLE | null per frame]}
    {root}/{split}/JPEGImages/{vid}/{name}.jpg

One sample per expression (task ``ref_seg``): "Please segment the {query} in this video." → "The target is
<|seg|>.", one object whose mask on every frame is the union of the expression's ``anno_id`` RLEs.
``train`` skips expressions without objects (reference); ``valid_u`` (the locally scored split, §7.3) keeps all.
``valid`` has no masks (server evaluation): its samples carry ``meta["has_gt"] = False`` /
``meta["submission"] = True`` and an object without masks (they do not pass ``validate_sample``, which requires
a mask per ``<|seg|>``); predictions are written as PNGs ``{vid}/{exp_id}/{frame}.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..masks import SEG_RESPONSE, query_prompt
from ..registry import register_reader
from ..schema import Sample
from .revos import iter_expressions, load_mask_dict, load_videos, video_sample


@register_reader(
    "mevis", splits=("train", "valid_u", "valid"), description="MeViS motion-expression video segmentation"
)
def read_mevis(root: Path, split: str) -> Iterator[Sample]:
    """MeViS samples of ``split`` (see the module docstring)."""
    split_dir = Path(root) / split
    meta_path = split_dir / "meta_expressions.json"
    videos = load_videos(meta_path, f"MeViS {split} meta_expressions file")
    mask_path = split_dir / "mask_dict.json" if split != "valid" else None
    mask_dict = load_mask_dict(mask_path, f"MeViS {split} mask_dict file") if mask_path else None
    return _samples(split, split_dir, videos, meta_path, mask_dict, mask_path)


def _samples(
    split: str,
    split_dir: Path,
    videos: dict[str, Any],
    meta_path: Path,
    mask_dict: dict[str, Any] | None,
    mask_path: Path | None,
) -> Iterator[Sample]:
    records = iter_expressions(
        videos, meta_path, mask_dict, mask_path, split_dir / "JPEGImages", skip_no_object=split == "train"
    )
    for r in records:
        exp = r.entry["exp"].strip()
        yield video_sample(
            sample_id=f"mevis/{split}/{r.vid}/{r.qid}",
            task="ref_seg",
            frame_paths=r.frame_paths,
            prompt=query_prompt(exp, is_image=False),
            response=SEG_RESPONSE,
            masks=r.masks,
            meta={
                "dataset": "mevis",
                "split": split,
                "vid": r.vid,
                "exp_id": r.qid,
                "exp": exp,
                "type": "query",
                "obj_id": r.obj_ids,
                "anno_id": r.anno_ids,
                "frame_names": r.frame_names,
            },
        )

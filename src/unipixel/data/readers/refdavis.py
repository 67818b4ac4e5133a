"""Ref-DAVIS17 referring video object segmentation as the reference uses it (design doc §5, §7.3).

Layout (``root`` = the reference's ``data/ref_davis17``)::

    {root}/meta_expressions/{train,valid}/meta_expressions.json
            {"videos": {vid: {"frames": [name, ...], "expressions": {exp_id: {"exp": str, "obj_id": "1"}}}}}
    {root}/{train,valid}/mask_dict.pkl          {str(i): [RLE | None per frame]}, i = running expression index
    {root}/DAVIS/JPEGImages/480p/{vid}/{name}.jpg
    {root}/DAVIS/Annotations/480p/{vid}/{name}.png   DAVIS palette PNGs (object ids), used when there is no pickle

``masks="auto"`` (default) reads ``mask_dict.pkl`` (restricted unpickler) when present, else the palette PNGs
(GT = ``png == int(obj_id)``); ``"mask_dict"`` / ``"annotations"`` force one source.

The running index ``i``: ``eval_seg.py`` assigns it over **sorted** video ids × **sorted** expression ids (string
sort), while the reference's training loader counts in file order; ``index_order="sorted"`` (default, what is
scored) or ``"file"``.  They agree whenever the JSON is already sorted.  All expressions are kept, including the
few without any mask (empty GT on every frame), and the evaluation pools all expressions (not the official
per-annotator protocol, §7.3).  One sample per expression (task ``ref_seg``): "Please segment the {query} in
this video." → "The target is <|seg|>.".
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ..registry import register_reader
from ..schema import Sample
from .refytvos import read_ytvos_style


@register_reader("ref_davis17", splits=("train", "valid"), description="Ref-DAVIS17 referring VOS")
def read_ref_davis17(
    root: Path, split: str, *, masks: str = "auto", index_order: str = "sorted"
) -> Iterator[Sample]:
    """Ref-DAVIS17 samples (see the module docstring for ``masks`` and ``index_order``)."""
    root = Path(root)
    return read_ytvos_style(
        dataset="ref_davis17",
        split=split,
        meta_path=root / "meta_expressions" / split / "meta_expressions.json",
        pkl_path=root / split / "mask_dict.pkl",
        frame_root=root / "DAVIS" / "JPEGImages" / "480p",
        anno_root=root / "DAVIS" / "Annotations" / "480p",
        masks=masks,
        index_order=index_order,
    )

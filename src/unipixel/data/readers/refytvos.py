"""Ref-YouTube-VOS referring video object segmentation (design doc §5, §7.3) + helpers shared with Ref-DAVIS17.

Layout (``root`` = the reference's ``data/ref_youtube_vos``; the ``Annotations`` folder is the public release's)::

    {root}/meta_expressions/{train,valid}/meta_expressions.json
            {"videos": {vid: {"frames": [name, ...], "expressions": {exp_id: {"exp": str, "obj_id": "1"}}}}}
    {root}/mask_dict.pkl                    reference format: {str(i): [RLE | None per frame]}, ``i`` = running
                                            index over the train expressions in file order
    {root}/{train,valid}/JPEGImages/{vid}/{name}.jpg
    {root}/train/Annotations/{vid}/{name}.png   public format: palette PNG of object ids

Masks (``masks=``): ``"mask_dict"`` reads ``mask_dict.pkl`` like the reference (through the restricted
unpickler of :mod:`unipixel.data.safe_pickle`); ``"annotations"`` reads the public palette PNGs
(GT = ``png == int(obj_id)``); ``"auto"`` (default) uses the pickle when present, else the PNGs.

One sample per expression (task ``ref_seg``): "Please segment the {query} in this video." → "The target is
<|seg|>.", one object with a mask on every listed frame.  ``valid`` is evaluated by the challenge server only:
its samples have ``meta["has_gt"] = False`` / ``meta["submission"] = True`` and an object without masks (they
fail ``validate_sample``, which needs a mask per ``<|seg|>``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..masks import SEG_RESPONSE, encode_mask, get_field, query_prompt, read_id_png, union_rles
from ..registry import register_reader
from ..safe_pickle import load_pickle
from ..schema import Sample
from .revos import SizeCache, load_videos, video_sample

MASK_MODES = ("auto", "mask_dict", "annotations")


def ordered_expressions(videos: dict[str, Any], order: str) -> list[tuple[str, str, int]]:
    """(vid, exp_id, running index) for every expression; ``order`` "file" (loader) or "sorted" (eval_seg)."""
    if order not in ("file", "sorted"):
        raise ValueError(f"index_order must be 'file' or 'sorted', got {order!r}")
    vids = sorted(videos) if order == "sorted" else list(videos)
    out, idx = [], 0
    for vid in vids:
        qids = list(videos[vid]["expressions"])
        for qid in sorted(qids) if order == "sorted" else qids:
            out.append((vid, qid, idx))
            idx += 1
    return out


def load_pickle_mask_dict(path: Path, num_expressions: int) -> dict[str, Any]:
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a dict {{str(index): [RLE | None per frame]}}, got {type(data).__name__}"
        )
    if len(data) != num_expressions:
        raise ValueError(
            f"{path} has {len(data)} entries but the meta_expressions file has {num_expressions} expressions"
        )
    return data


def read_ytvos_style(
    *,
    dataset: str,
    split: str,
    meta_path: Path,
    pkl_path: Path | None,
    frame_root: Path,
    anno_root: Path | None,
    masks: str,
    index_order: str,
) -> Iterator[Sample]:
    """Ref-YouTube-VOS / Ref-DAVIS17 samples; ``pkl_path = anno_root = None`` → no ground truth."""
    if masks not in MASK_MODES:
        raise ValueError(f"masks must be one of {MASK_MODES}, got {masks!r}")
    videos = load_videos(meta_path, f"{dataset} {split} meta_expressions file")
    order = ordered_expressions(videos, index_order)
    mode = masks
    if pkl_path is None and anno_root is None:
        mode = "none"
    elif mode == "auto":
        mode = "mask_dict" if pkl_path is not None and pkl_path.is_file() else "annotations"
    if mode == "mask_dict" and pkl_path is None:
        raise ValueError(f"{dataset} {split}: no mask_dict.pkl in this layout; use masks='annotations'")
    if mode == "annotations" and (anno_root is None or not anno_root.is_dir()):
        if pkl_path is not None and masks == "auto":
            raise FileNotFoundError(
                f"{dataset} {split}: neither {pkl_path} nor the annotation folder {anno_root} exists"
            )
        raise FileNotFoundError(f"{dataset} {split}: annotation folder not found: {anno_root}")
    mask_dict = load_pickle_mask_dict(pkl_path, len(order)) if mode == "mask_dict" and pkl_path else None
    return _samples(
        dataset, split, videos, meta_path, order, mode, mask_dict, pkl_path, frame_root, anno_root
    )


def _samples(
    dataset: str,
    split: str,
    videos: dict[str, Any],
    meta_path: Path,
    order: list[tuple[str, str, int]],
    mode: str,
    mask_dict: dict[str, Any] | None,
    pkl_path: Path | None,
    frame_root: Path,
    anno_root: Path | None,
) -> Iterator[Sample]:
    sizes = SizeCache()
    png_cache: tuple[str, list[np.ndarray]] | None = None
    for vid, qid, idx in order:
        v = videos[vid]
        names = [str(n) for n in v["frames"]]
        paths = [frame_root / vid / f"{n}.jpg" for n in names]
        where = f"{meta_path} video {vid!r} expression {qid!r}"
        e = v["expressions"][qid]
        exp = get_field(e, "exp", where, str).strip()
        obj_id = e.get("obj_id")
        gt: dict[int, Any] | None = None
        if mode == "mask_dict":
            assert mask_dict is not None
            track = mask_dict.get(str(idx))
            if not isinstance(track, list) or len(track) != len(names):
                n = len(track) if isinstance(track, list) else "no"
                raise ValueError(
                    f"{where}: {pkl_path} entry {idx} has {n} frames, the video has {len(names)}"
                )
            size = sizes.get(vid, [[m for m in track if isinstance(m, dict)]], paths[0])
            gt = {
                t: union_rles(m if isinstance(m, list) else [m], size, what=f"{where} frame {t}")
                for t, m in enumerate(track)
            }
        elif mode == "annotations":
            assert anno_root is not None
            if obj_id is None:
                raise ValueError(f"{where}: missing field 'obj_id' (needed to read the annotation PNGs)")
            try:
                oid = int(obj_id)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: obj_id {obj_id!r} is not an integer") from None
            if png_cache is None or png_cache[0] != vid:
                png_cache = (vid, [read_id_png(anno_root / vid / f"{n}.png") for n in names])
            gt = {t: encode_mask(ids == oid) for t, ids in enumerate(png_cache[1])}
        yield video_sample(
            sample_id=f"{dataset}/{split}/{vid}/{qid}",
            task="ref_seg",
            frame_paths=paths,
            prompt=query_prompt(exp, is_image=False),
            response=SEG_RESPONSE,
            masks=gt,
            meta={
                "dataset": dataset,
                "split": split,
                "vid": vid,
                "exp_id": qid,
                "exp": exp,
                "type": "query",
                "obj_id": obj_id,
                "anno_index": idx,
                "mask_source": mode,
                "frame_names": names,
            },
        )


@register_reader("ref_youtube_vos", splits=("train", "valid"), description="Ref-YouTube-VOS referring VOS")
def read_ref_youtube_vos(
    root: Path, split: str, *, masks: str = "auto", index_order: str = "file"
) -> Iterator[Sample]:
    """Ref-YouTube-VOS samples; ``valid`` has no ground truth (server evaluation)."""
    root = Path(root)
    has_gt = split == "train"
    return read_ytvos_style(
        dataset="ref_youtube_vos",
        split=split,
        meta_path=root / "meta_expressions" / split / "meta_expressions.json",
        pkl_path=root / "mask_dict.pkl" if has_gt else None,
        frame_root=root / split / "JPEGImages",
        anno_root=root / split / "Annotations" if has_gt else None,
        masks=masks,
        index_order=index_order,
    )

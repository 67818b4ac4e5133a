"""ReasonSeg (LISA) reasoning segmentation on images (design doc §5, §7.2, §10.12).

Layout (``root`` = the reference's ``data/lisa/reason_seg/ReasonSeg``)::

    {root}/{train,val,test}/{name}.jpg
    {root}/{train,val,test}/{name}.json      LabelMe-style: {"text": [str, ...], "is_sentence": bool,
                                             "shapes": [{"label": "target"|"ignore"|"flag",
                                                         "shape_type": "polygon", "points": [[x, y], ...],
                                                         "image_name": "{name}.jpg"}, ...]}
    {root}/explanatory/train.json            [{"image": "{name}.jpg", "query": str, "outputs": str}, ...]

One sample per text (task ``reason_seg``): ``is_sentence`` → "{text} Please provide the segmentation mask.",
otherwise the query template "Please segment the {query} in this image."; assistant "The target is <|seg|>.".
For ``train`` with ``explanatory=True`` (reference default) each image listed in ``explanatory/train.json`` also
gives an explanatory sample: "{query} Please provide the segmentation mask and explain why." answered by
"The target is <|seg|>. {outputs}".  ``meta`` holds ``image``, ``qid`` (text index or "exp"), ``type``,
``is_sentence``, ``ignore_mask`` and ``reference_ignore_bug``.

Masks are drawn as the reference draws them: "flag" shapes dropped, polygons sorted by area (largest first, so
smaller shapes paint over larger ones), points truncated to int, outline + fill like OpenCV
(:func:`unipixel.data.masks.draw_polygon`); the GT mask is the pixels whose last label is "target".

"ignore" regions — **behaviour differs from the reference by default**:

* default (``reference_ignore_bug=False``): pixels whose last label is "ignore" are returned as
  ``meta["ignore_mask"]`` (COCO RLE of the image, or ``None`` when there is no ignore shape), so a metric can
  exclude them (``iou_counts(pred, gt, valid=~ignore)``) as LISA intended (label 255 = ignore);
* ``reference_ignore_bug=True``: the reference paints "ignore" with −1 into a uint8 canvas, which OpenCV
  saturates to 0, so ignore regions silently become background and its ``keep = gt != -1`` is a no-op
  (§10.12); ``meta["ignore_mask"]`` is then ``None`` and scores match the reference's.

The target mask is the same in both modes; only whether ignore pixels are scored differs.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..masks import (
    SEG_RESPONSE,
    draw_polygon,
    encode_mask,
    explanatory_prompt,
    get_field,
    image_size,
    load_json,
    query_prompt,
    require_dir,
    sentence_prompt,
)
from ..registry import register_reader
from ..schema import MediaRef, ObjectAnnotation, Sample, Turn

TARGET, IGNORE = 1, 255


def _shapes(meta: Any, json_path: Path, image_name: str) -> list[dict[str, Any]]:
    shapes = []
    for i, shape in enumerate(get_field(meta, "shapes", str(json_path), list)):
        where = f"{json_path} shapes[{i}]"
        label = get_field(shape, "label", where, str)
        if label not in ("target", "ignore", "flag"):
            raise ValueError(f"{where}: label {label!r} is not 'target', 'ignore' or 'flag'")
        if label == "flag":
            continue
        if shape.get("shape_type", "polygon") != "polygon":
            raise ValueError(f"{where}: shape_type {shape.get('shape_type')!r} is not 'polygon'")
        if "image_name" in shape and shape["image_name"] != image_name:
            raise ValueError(f"{where}: image_name {shape['image_name']!r} does not match {image_name!r}")
        points = get_field(shape, "points", where, list)
        if len(points) < 1 or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in points):
            raise ValueError(f"{where}: points must be a list of [x, y] pairs")
        shapes.append(shape)
    return shapes


def draw_reasonseg_masks(
    shapes: list[dict[str, Any]], height: int, width: int, reference_ignore_bug: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(target, ignore) bool masks of one image, drawn in the reference's order (largest polygon first)."""
    areas = []
    for shape in shapes:
        tmp = np.zeros((height, width), dtype=np.uint8)
        draw_polygon(tmp, shape["points"], 1)
        areas.append(int(tmp.sum()))
    order = list(np.argsort(areas)[::-1])  # same (unstable) argsort as the reference for ties
    canvas = np.zeros((height, width), dtype=np.uint8)
    for j in order:
        shape = shapes[int(j)]
        if shape["label"] == "target":
            value = TARGET
        else:
            value = 0 if reference_ignore_bug else IGNORE  # uint8(-1) saturates to 0 in OpenCV
        draw_polygon(canvas, shape["points"], value)
    return canvas == TARGET, canvas == IGNORE


@register_reader(
    "reason_seg", splits=("train", "val", "test"), description="ReasonSeg (LISA) reasoning segmentation",
    data_dir="lisa/reason_seg/ReasonSeg",
)
def read_reason_seg(
    root: Path, split: str, *, explanatory: bool = True, reference_ignore_bug: bool = False
) -> Iterator[Sample]:
    """ReasonSeg samples; see the module docstring for ``explanatory`` and ``reference_ignore_bug``."""
    root = Path(root)
    split_dir = require_dir(root / split, f"ReasonSeg {split} folder")
    images = sorted(split_dir.glob("*.jpg"))
    if not images:
        raise FileNotFoundError(f"no .jpg images in {split_dir}")
    exp_meta: dict[str, Any] = {}
    if split == "train" and explanatory:
        exp_path = root / "explanatory" / "train.json"
        entries = load_json(exp_path, "ReasonSeg explanatory file")
        if not isinstance(entries, list):
            raise ValueError(f"{exp_path}: expected a list of {{image, query, outputs}} entries")
        for i, e in enumerate(entries):
            exp_meta[Path(get_field(e, "image", f"{exp_path}[{i}]", str)).stem] = e
        stems = {p.stem for p in images}
        unknown = sorted(set(exp_meta) - stems)
        if unknown:
            raise ValueError(
                f"{exp_path}: {len(unknown)} entries name images not in {split_dir}: {unknown[:5]}"
            )
    return _samples(split, images, exp_meta, reference_ignore_bug)


def _samples(
    split: str, images: list[Path], exp_meta: dict[str, Any], reference_ignore_bug: bool
) -> Iterator[Sample]:
    for image in images:
        json_path = image.with_suffix(".json")
        meta = load_json(json_path, "ReasonSeg annotation")
        texts = get_field(meta, "text", str(json_path), list)
        is_sentence = bool(get_field(meta, "is_sentence", str(json_path)))
        shapes = _shapes(meta, json_path, image.name)
        h, w = image_size(image)
        target, ignore = draw_reasonseg_masks(shapes, h, w, reference_ignore_bug)
        rle = encode_mask(target)
        ignore_rle = encode_mask(ignore) if ignore.any() else None
        media = MediaRef(path=str(image), is_image=True)

        items: list[tuple[Any, str, str, str, str]] = []  # (qid, type, query, prompt, response)
        for qid, text in enumerate(texts):
            if not isinstance(text, str):
                raise ValueError(f"{json_path}: text[{qid}] is not a string: {text!r}")
            if is_sentence:
                items.append((qid, "sentence", text, sentence_prompt(text), SEG_RESPONSE))
            else:
                items.append((qid, "query", text, query_prompt(text, is_image=True), SEG_RESPONSE))
        if image.stem in exp_meta:
            e = exp_meta[image.stem]
            where = f"explanatory entry for {image.name}"
            query = get_field(e, "query", where, str)
            outputs = get_field(e, "outputs", where, str)
            items.append(
                ("exp", "explanatory", query, explanatory_prompt(query), f"{SEG_RESPONSE} {outputs}")
            )

        for qid, kind, query, prompt, response in items:
            yield Sample(
                id=f"reason_seg/{split}/{image.stem}/{qid}",
                task="reason_seg",
                media=media,
                conversation=[Turn("user", prompt), Turn("assistant", response)],
                objects=[ObjectAnnotation(id=0, masks={0: rle})],
                meta={
                    "dataset": "reason_seg",
                    "split": split,
                    "image": image.stem,
                    "qid": qid,
                    "type": kind,
                    "query": query,
                    "is_sentence": is_sentence,
                    "ignore_mask": ignore_rle,
                    "reference_ignore_bug": reference_ignore_bug,
                },
            )

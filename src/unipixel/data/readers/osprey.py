"""Osprey-724K region chat on images (design doc §4.4, §5): ``osprey_conversation``, ``osprey_pos_neg``,
``osprey_detail_description``.

Layout (the design doc names the fields; file names follow the public Osprey-724K release):
``{root}/osprey_conversation.json``, ``{root}/osprey_lvis_positive_negative.json`` and
``{root}/osprey_detail_description.json``, each a list of ``{"file_name", "height", "width",
"annotation": [{"segmentation": polygons | RLE, ...}], "conversations": [{"from", "value"}...]}`` (detail
description: ``"description": ["<region1>: text", ...]`` instead of conversations, one per region); images
under ``image_dir`` (default ``root / "images"``, i.e. COCO train2017 for these files).

Conventions (as in the reference, which follows Osprey's loaders):

* ``<regionN>`` -> ``[N]``; region N is ``annotation[N-1]`` and becomes the object with id N, with a mask
  prompt; every annotated region is an object (the processor's region prefix lists them all), all turns kept.
* clean-ups: ``<image>`` placeholders are dropped; a COCO-2014-style name ``COCO_train2014_000000xxxxxx.jpg``
  is reduced to its last ``_`` part (Osprey's ``file_name.split('_')[-1]``, pointing into train2017) for
  the conversation and detail files; the positive/negative file is used as is.
* detail description: one turn per region, question "Can you provide me with a detailed description of the
  region in the picture marked by [N]?" (the design doc quotes one of the reference's 30 prompts, so only
  that one is used), answer = the description with its ``"<regionN>: "`` head removed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..registry import register_reader
from ..schema import MediaRef, ObjectAnnotation, Sample, Turn, VisualPrompt
from .videorefer import (
    ReaderFormatError,
    check_no_special_tokens,
    iter_entries,
    llava_turns,
    load_json_list,
    media_path,
    rle_area,
    to_rle,
)

DETAIL_PROMPT = "Can you provide me with a detailed description of the region in the picture marked by {}?"
_REGION = re.compile(r"<region(\d+)>")
_DESC_HEAD = re.compile(r"^\s*<region\d+>\s*:\s*")


def _image_name(name: str, clean: bool) -> str:
    if clean and re.match(r"^COCO_[A-Za-z]+\d*_\d+\.\w+$", Path(name).name):
        return Path(name).name.split("_")[-1]
    return name


def _regions(e: dict[str, Any], where: str) -> list[dict[str, Any]]:
    for key in ("file_name", "height", "width", "annotation"):
        if key not in e:
            raise ReaderFormatError(f"{where}: missing field {key!r}")
    anns = e["annotation"]
    if not isinstance(anns, list) or not anns:
        raise ReaderFormatError(f"{where}: 'annotation' must be a non-empty list of regions")
    h, w = int(e["height"]), int(e["width"])
    out = []
    for j, a in enumerate(anns):
        if not isinstance(a, dict) or "segmentation" not in a:
            raise ReaderFormatError(f"{where}: annotation[{j}] has no 'segmentation'")
        rle = to_rle(a["segmentation"], h, w, where=f"{where} annotation[{j}]")
        if tuple(rle["size"]) != (h, w):
            raise ReaderFormatError(
                f"{where}: annotation[{j}] mask size {rle['size']} != image size {[h, w]}"
            )
        out.append(rle)
    return out


def _tags_to_ids(text: str, n: int, where: str) -> str:
    def sub(m: re.Match[str]) -> str:
        k = int(m.group(1))
        if not 1 <= k <= n:
            raise ReaderFormatError(f"{where}: <region{k}> but the entry has {n} regions")
        return f"[{k}]"

    return _REGION.sub(sub, text)


def _objects(rles: list[dict[str, Any]], where: str) -> list[ObjectAnnotation]:
    for j, r in enumerate(rles):
        if rle_area(r) == 0:
            raise ReaderFormatError(f"{where}: region {j + 1} has an empty mask")
    return [
        ObjectAnnotation(id=j + 1, masks={0: r}, prompt=VisualPrompt("mask", frame=0))
        for j, r in enumerate(rles)
    ]


def _read(
    root: Path, name: str, ann_file: str, image_dir: str | None, on_error: str, check_media: bool, clean: bool
) -> Iterator[Sample]:
    ann_path = root / ann_file
    entries = load_json_list(ann_path, f"Osprey-724K annotation file ({name})")
    idir = Path(image_dir) if image_dir else root / "images"

    def convert(i: int, e: Any) -> Sample | None:
        where = f"{ann_path.name} entry {i}"
        if not isinstance(e, dict):
            raise ReaderFormatError(f"{where}: expected a JSON object, got {type(e).__name__}")
        rles = _regions(e, where)
        if name == "osprey_detail_description":
            desc = e.get("description")
            if (
                not isinstance(desc, list)
                or len(desc) != len(rles)
                or not all(isinstance(d, str) for d in desc)
            ):
                raise ReaderFormatError(
                    f"{where}: 'description' must hold one string per region ({len(rles)})"
                )
            check_no_special_tokens(desc, where)
            conv = []
            for j, d in enumerate(desc):
                conv += [
                    Turn("user", DETAIL_PROMPT.format(f"[{j + 1}]")),
                    Turn("assistant", _tags_to_ids(_DESC_HEAD.sub("", d).strip(), len(rles), where)),
                ]
            task = "region_caption"
        else:
            if not e.get("conversations"):
                return None  # Osprey skips entries without a QA pair
            turns = llava_turns(e["conversations"], where)
            if len(turns) % 2:
                turns = turns[:-1]  # a dangling question has no answer to learn
            check_no_special_tokens((t for _, t in turns), where)
            conv = [Turn(r, _tags_to_ids(t, len(rles), where)) for r, t in turns]
            task = "region_qa"
        fname = _image_name(str(e["file_name"]), clean)
        return Sample(
            id=f"{name}/{e.get('id', i)}",
            task=task,
            media=MediaRef(path=media_path(idir, fname, where, check_media), is_image=True),
            conversation=conv,
            objects=_objects(rles, where),
            meta={"dataset": name, "source_id": str(e.get("id", i)), "file_name": e["file_name"]},
        )

    return iter_entries(entries, convert, on_error, name)


@register_reader("osprey_conversation", splits=("train",), description="Osprey-724K region conversations")
def read_osprey_conversation(
    root: Path,
    split: str,
    *,
    ann_file: str = "osprey_conversation.json",
    image_dir: str | None = None,
    on_error: str = "raise",
    check_media: bool = False,
) -> Iterator[Sample]:
    """Multi-turn region chat on COCO images; ``<regionN>`` -> ``[N]``."""
    return _read(root, "osprey_conversation", ann_file, image_dir, on_error, check_media, clean=True)


@register_reader(
    "osprey_pos_neg", splits=("train",), description="Osprey-724K LVIS positive/negative region QA"
)
def read_osprey_pos_neg(
    root: Path,
    split: str,
    *,
    ann_file: str = "osprey_lvis_positive_negative.json",
    image_dir: str | None = None,
    on_error: str = "raise",
    check_media: bool = False,
) -> Iterator[Sample]:
    """Yes/no region questions on LVIS images; ``<regionN>`` -> ``[N]``; file names used as given."""
    return _read(root, "osprey_pos_neg", ann_file, image_dir, on_error, check_media, clean=False)


@register_reader(
    "osprey_detail_description", splits=("train",), description="Osprey-724K detailed region descriptions"
)
def read_osprey_detail_description(
    root: Path,
    split: str,
    *,
    ann_file: str = "osprey_detail_description.json",
    image_dir: str | None = None,
    on_error: str = "raise",
    check_media: bool = False,
) -> Iterator[Sample]:
    """One question/description turn per region, in region order."""
    return _read(root, "osprey_detail_description", ann_file, image_dir, on_error, check_media, clean=True)

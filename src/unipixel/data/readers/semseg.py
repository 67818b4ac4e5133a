"""Semantic and part segmentation datasets as referring segmentation (design doc §4.2, §5):
``ade20k``, ``cocostuff``, ``mapillary`` (class-id label PNGs) and ``paco_lvis``, ``pascal_part`` (COCO-format
part annotations).

Conversion (as in the reference, which inherits it from LISA): per image, up to ``max_classes`` (3) of the
classes present are drawn — with ``numpy.random.default_rng([seed, image])`` here, so the choice is
reproducible and independent of iteration order — and each becomes one turn: a query template from §4.2
("Can you segment the {} in this image?" ...) with the normalised class name, and a response template
("The target is <|seg|>." ...), both drawn from the same generator.  Each class is one object (the union of
its pixels / instances) with one ``<|seg|>``.  Part names are "{obj} {part}" or "{part} of the {obj}" (50/50,
seeded); ``_`` becomes a space and a parenthesised LVIS qualifier (``"bottle_(drink)"``) is dropped.

Layouts (§5 only says "label PNG dirs under data/lisa/..." / "COCO-format json"; these are LISA's layouts,
with ``root`` = the LISA data folder):

* ade20k: ``ade20k/images/training/X.jpg`` + ``ade20k/annotations/training/X.png``; label v in 1..150 is class
  v-1 of ``ade20k_classes.json`` (LISA's list of the 150 names, default ``{root}/ade20k/ade20k_classes.json``);
  0 is unlabelled.
* cocostuff: ``cocostuff/train2017/X.png`` + ``coco/train2017/X.jpg``; ``cocostuff_classes.txt`` with ``"id:
  name"`` lines (default ``{root}/cocostuff/cocostuff_classes.txt``); 255 is unlabelled; names containing "-"
  (the merged "-other"/"-stuff" style classes) are ignored as LISA does.
* mapillary: ``mapillary/training/v2.0/labels/X.png`` + ``mapillary/training/images/X.jpg``; names are the
  lower-cased ``readable`` fields of ``mapillary/config_v2.0.json`` (value = index); "unlabeled" is ignored.
* paco_lvis: ``vlpart/paco/annotations/paco_lvis_v1_train.json`` with images under ``coco/``;
  pascal_part: ``vlpart/pascal_part/train.json`` with images under
  ``vlpart/pascal_part/VOCdevkit/VOC2010/JPEGImages/``.  Only part categories (``"obj:part"``) are used.

The reference's class lists and IGNORE_OIDS live in its code and are not reproduced in the design doc;
``ignore_classes`` (names) overrides the defaults above.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..registry import register_reader
from ..schema import MediaRef, ObjectAnnotation, Sample, Turn
from .vicas import SEG_RESPONSES
from .videorefer import (
    ReaderFormatError,
    entry_rng,
    iter_entries,
    load_json,
    mask_to_rle,
    rle_area,
    to_rle,
    union_rles,
)

IMAGE_QUERY_TEMPLATES = (
    "Can you segment the {} in this image?",
    "Please segment the {} in this image.",
    "Can you find the {} in the image?",
    "Segment the {} in the image.",
    "Track the {} in this image.",
    "Where is the {} in this image? Please respond with the segmentation mask.",
    "What is the {}? Please output the segmentation mask.",
)
MAX_CLASSES = 3


def normalise_query(q: str) -> str:
    """§4.2: strip '.', lower-case the first character, drop a leading "the " / "an " / "a "."""
    q = q.strip().strip(".").strip()
    if q:
        q = q[0].lower() + q[1:]
    for art in ("the ", "an ", "a "):
        if q.startswith(art):
            q = q[len(art) :]
            break
    return q


def _clean_name(name: str) -> str:
    name = re.sub(r"_?\([^)]*\)", "", name)
    return name.replace("_", " ").strip()


def _turns(names: Sequence[str], rng: np.random.Generator) -> list[Turn]:
    conv = []
    for n in names:
        q = IMAGE_QUERY_TEMPLATES[int(rng.integers(len(IMAGE_QUERY_TEMPLATES)))].format(normalise_query(n))
        conv += [Turn("user", q), Turn("assistant", SEG_RESPONSES[int(rng.integers(len(SEG_RESPONSES)))])]
    return conv


def _pick(n: int, k: int, rng: np.random.Generator) -> list[int]:
    """Up to ``k`` of ``n`` items, in the drawn order (the turn order)."""
    return [int(x) for x in rng.permutation(n)[: min(k, n)]]


# ----------------------------------------------------------------------------------------------------------
# label-PNG datasets


def _ade_classes(path: Path) -> dict[int, str]:
    names = load_json(path, "ADE20K class list")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ReaderFormatError(f"{path}: expected a JSON list of class names")
    return {i + 1: n for i, n in enumerate(names)}  # PNG value v -> class v-1; 0 = unlabelled


def _cocostuff_classes(path: Path) -> dict[int, str]:
    if not path.is_file():
        raise FileNotFoundError(f"COCO-Stuff class list not found: {path}")
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^\s*(\d+)\s*:\s*(.+?)\s*$", line)
        if m:
            out[int(m.group(1))] = m.group(2)
    if not out:
        raise ReaderFormatError(f"{path}: no 'id: name' lines found")
    return out


def _mapillary_classes(path: Path) -> dict[int, str]:
    cfg = load_json(path, "Mapillary Vistas config")
    labels = cfg.get("labels") if isinstance(cfg, dict) else None
    if not isinstance(labels, list) or not all(isinstance(x, dict) and "readable" in x for x in labels):
        raise ReaderFormatError(f"{path}: expected {{'labels': [{{'readable': name}}, ...]}}")
    return {i: str(x["readable"]).lower() for i, x in enumerate(labels)}


_PNG_LAYOUT: dict[str, dict[str, Any]] = {
    "ade20k": {
        "labels": "ade20k/annotations/training",
        "images": "ade20k/images/training",
        "classes": "ade20k/ade20k_classes.json",
        "load": _ade_classes,
        "ignore": lambda n: False,
    },
    "cocostuff": {
        "labels": "cocostuff/train2017",
        "images": "coco/train2017",
        "classes": "cocostuff/cocostuff_classes.txt",
        "load": _cocostuff_classes,
        "ignore": lambda n: "-" in n,
    },
    "mapillary": {
        "labels": "mapillary/training/v2.0/labels",
        "images": "mapillary/training/images",
        "classes": "mapillary/config_v2.0.json",
        "load": _mapillary_classes,
        "ignore": lambda n: n.strip().lower() == "unlabeled",
    },
}


def _read_png_dataset(
    name: str,
    root: Path,
    seed: int,
    max_classes: int,
    classes_file: str | None,
    ignore_classes: Sequence[str] | None,
    on_error: str,
) -> Iterator[Sample]:
    lay = _PNG_LAYOUT[name]
    classes: dict[int, str] = lay["load"](root / (classes_file or lay["classes"]))
    ignore: Callable[[str], bool] = (
        lay["ignore"] if ignore_classes is None else (lambda n: n in set(ignore_classes))
    )
    keep = {v: n for v, n in classes.items() if not ignore(n)}
    label_dir, image_dir = root / lay["labels"], root / lay["images"]
    if not label_dir.is_dir():
        raise FileNotFoundError(f"{name} label folder not found: {label_dir}")
    labels = sorted(label_dir.glob("*.png"))

    def convert(i: int, path: Path) -> Sample | None:
        try:
            with Image.open(path) as im:
                lab = np.asarray(im)
        except OSError as e:
            raise ReaderFormatError(f"{name}: cannot read label image {path}: {e}") from e
        if lab.ndim != 2:
            raise ReaderFormatError(
                f"{name}: label image {path} must be single-channel (class ids), got {lab.shape}"
            )
        present = [int(v) for v in np.unique(lab) if int(v) in keep]
        if not present:
            return None
        rng = entry_rng(seed, name, path.stem)
        chosen = [present[j] for j in _pick(len(present), max_classes, rng)]
        objects = [
            ObjectAnnotation(
                id=k, masks={0: mask_to_rle(lab == v)}, attributes={"class_id": v, "class_name": keep[v]}
            )
            for k, v in enumerate(chosen)
        ]
        return Sample(
            id=f"{name}/{path.stem}",
            task="ref_seg",
            media=MediaRef(path=str(image_dir / f"{path.stem}.jpg"), is_image=True),
            conversation=_turns([keep[v] for v in chosen], rng),
            objects=objects,
            meta={"dataset": name, "label_file": str(path)},
        )

    return iter_entries(labels, convert, on_error, name)


def _png_reader(name: str, what: str) -> Any:
    @register_reader(
        name, splits=("train",), description=f"{what} semantic segmentation as referring segmentation"
    )
    def read(
        root: Path,
        split: str,
        *,
        seed: int = 0,
        max_classes: int = MAX_CLASSES,
        classes_file: str | None = None,
        ignore_classes: Sequence[str] | None = None,
        on_error: str = "raise",
    ) -> Iterator[Sample]:
        """Up to ``max_classes`` seeded classes per label image, one "segment the {class}" turn each."""
        return _read_png_dataset(name, root, seed, max_classes, classes_file, ignore_classes, on_error)

    read.__name__ = f"read_{name}"
    return read


read_ade20k = _png_reader("ade20k", "ADE20K")
read_cocostuff = _png_reader("cocostuff", "COCO-Stuff")
read_mapillary = _png_reader("mapillary", "Mapillary Vistas v2.0")


# ----------------------------------------------------------------------------------------------------------
# COCO-format part datasets

_PART_LAYOUT = {
    "paco_lvis": ("vlpart/paco/annotations/paco_lvis_v1_train.json", "coco"),
    "pascal_part": ("vlpart/pascal_part/train.json", "vlpart/pascal_part/VOCdevkit/VOC2010/JPEGImages"),
}


def part_name(cat_name: str, rng: np.random.Generator) -> str | None:
    """``"obj:part"`` -> "{obj} {part}" or "{part} of the {obj}" (50/50); None for a non-part category."""
    if ":" not in cat_name:
        return None
    obj, part = (_clean_name(x) for x in cat_name.split(":", 1))
    return f"{obj} {part}" if rng.random() < 0.5 else f"{part} of the {obj}"


def _read_part_dataset(
    name: str,
    root: Path,
    seed: int,
    max_classes: int,
    ann_file: str | None,
    image_dir: str | None,
    on_error: str,
) -> Iterator[Sample]:
    default_ann, default_img = _PART_LAYOUT[name]
    ann_path = root / (ann_file or default_ann)
    data = load_json(ann_path, f"{name} annotation file")
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise ReaderFormatError(
            f"{ann_path}: expected a COCO json with 'images', 'annotations' and 'categories'"
        )
    cats = {}
    for c in data["categories"]:
        if not isinstance(c, dict) or "id" not in c or not isinstance(c.get("name"), str):
            raise ReaderFormatError(f"{ann_path}: category {c!r:.60} needs 'id' and 'name'")
        cats[c["id"]] = c["name"]
    by_image: dict[Any, list[dict[str, Any]]] = defaultdict(list)
    for a in data["annotations"]:
        if (
            not isinstance(a, dict)
            or "image_id" not in a
            or "category_id" not in a
            or "segmentation" not in a
        ):
            raise ReaderFormatError(
                f"{ann_path}: annotation {a!r:.60} needs image_id, category_id and segmentation"
            )
        if ":" in cats.get(a["category_id"], ""):
            by_image[a["image_id"]].append(a)
    idir = Path(image_dir) if image_dir else root / default_img

    def convert(i: int, img: Any) -> Sample | None:
        where = f"{ann_path.name} image {i}"
        if not isinstance(img, dict) or not all(k in img for k in ("id", "file_name", "height", "width")):
            raise ReaderFormatError(f"{where}: needs id, file_name, height and width")
        h, w = int(img["height"]), int(img["width"])
        per_cat: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        for a in by_image.get(img["id"], []):
            if a.get("iscrowd", 0) and not isinstance(a["segmentation"], dict):
                continue
            rle = to_rle(a["segmentation"], h, w, where=f"{where} annotation {a.get('id')}")
            if rle_area(rle):
                per_cat[a["category_id"]].append(rle)
        if not per_cat:
            return None
        cat_ids = sorted(per_cat)
        rng = entry_rng(seed, name, str(img["id"]))
        chosen = [cat_ids[j] for j in _pick(len(cat_ids), max_classes, rng)]
        names = [part_name(cats[c], rng) or cats[c] for c in chosen]
        objects = [
            ObjectAnnotation(
                id=k, masks={0: union_rles(per_cat[c])}, attributes={"category_id": c, "category": cats[c]}
            )
            for k, c in enumerate(chosen)
        ]
        return Sample(
            id=f"{name}/{img['id']}",
            task="ref_seg",
            media=MediaRef(path=str(idir / img["file_name"]), is_image=True),
            conversation=_turns(names, rng),
            objects=objects,
            meta={"dataset": name, "image_id": img["id"], "names": names},
        )

    return iter_entries(data["images"], convert, on_error, name)


def _part_reader(name: str, what: str) -> Any:
    @register_reader(
        name, splits=("train",), description=f"{what} part segmentation as referring segmentation"
    )
    def read(
        root: Path,
        split: str,
        *,
        seed: int = 0,
        max_classes: int = MAX_CLASSES,
        ann_file: str | None = None,
        image_dir: str | None = None,
        on_error: str = "raise",
    ) -> Iterator[Sample]:
        """Up to ``max_classes`` seeded part categories per image, one "segment the {part name}" turn each."""
        return _read_part_dataset(name, root, seed, max_classes, ann_file, image_dir, on_error)

    read.__name__ = f"read_{name}"
    return read


read_paco_lvis = _part_reader("paco_lvis", "PACO-LVIS")
read_pascal_part = _part_reader("pascal_part", "PASCAL-Part")

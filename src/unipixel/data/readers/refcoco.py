"""RefCOCO / RefCOCO+ / RefCOCOg / RefCLEF referring segmentation (REFER layout; design doc §5, §7.2, §10.16).

Registered names and default ``split_by``: ``refcoco`` (unc), ``refcoco+`` (unc), ``refcocog`` (umd; ``google``
also works), ``refclef`` (unc; ``berkeley`` also works).  ``root`` is the reference's ``data/lisa/refer_seg``::

    {root}/{dataset}/refs({split_by}).p     REFER pickle: list of refs {ref_id, ann_id, image_id, split,
                                            category_id, sentences: [{sent_id, sent, raw, tokens}], ...}
    {root}/{dataset}/instances.json         COCO-style {images, annotations, categories}
    {root}/images/mscoco/images/train2014/  images of refcoco / refcoco+ / refcocog
    {root}/images/saiapr_tc-12/             images of refclef

The pickle is read with :func:`unipixel.data.safe_pickle.load_pickle` (plain data only), never ``pickle.load``.

Splits follow the REFER API: ``train`` / ``val`` exact; ``test`` = every split containing "test";
``testA`` / ``testB`` / ``testC`` = splits containing that letter (so ``testAB`` refs count in both).

Samples (task ``ref_seg``): for the evaluation splits one per sentence, as evaluation does (§7.2) — user "Please segment the
{query} in this image." (reference query normalisation), assistant "The target is <|seg|>.", one object whose
mask (frame 0) is the annotation's segmentation decoded with pycocotools: polygons, compressed RLE and the
uncompressed RLE of crowd annotations (the reference would crash on the latter, §10.16).  The GT box (xyxy,
used for "BBox Acc") is in ``meta["gt_box"]`` and the object's ``attributes["box"]``.  The ``train`` split
(or ``group_by_image=True``) has the training layout instead: one multi-turn sample per image with one turn and
one object per sentence; the trainer keeps at most ``FeatureConfig.max_conv_turns`` (3) random turns of it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..masks import SEG_RESPONSE, get_field, load_json, query_prompt, require_file, to_rle
from ..registry import register_reader
from ..safe_pickle import load_pickle
from ..schema import MediaRef, ObjectAnnotation, Sample, Turn

COCO_IMAGES = "images/mscoco/images/train2014"
CLEF_IMAGES = "images/saiapr_tc-12"

DEFAULT_SPLIT_BY = {"refcoco": "unc", "refcoco+": "unc", "refcocog": "umd", "refclef": "unc"}


def _split_matches(split: str, ref_split: str) -> bool:
    """REFER ``getRefIds(split=...)`` semantics."""
    if split in ("testA", "testB", "testC"):
        return split[-1] in ref_split
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def _load(root: Path, dataset: str, split_by: str) -> tuple[list[Any], dict[Any, Any], dict[Any, Any]]:
    data_dir = root / dataset
    refs = load_pickle(require_file(data_dir / f"refs({split_by}).p", f"{dataset} REFER refs pickle"))
    if not isinstance(refs, list):
        raise ValueError(
            f"{data_dir / f'refs({split_by}).p'}: expected a list of refs, got {type(refs).__name__}"
        )
    instances_path = data_dir / "instances.json"
    instances = load_json(instances_path, f"{dataset} instances file")
    images = {
        get_field(im, "id", f"{instances_path} images[{i}]"): im
        for i, im in enumerate(get_field(instances, "images", str(instances_path), list))
    }
    anns = {
        get_field(a, "id", f"{instances_path} annotations[{i}]"): a
        for i, a in enumerate(get_field(instances, "annotations", str(instances_path), list))
    }
    return refs, images, anns


def read_refer(
    root: Path,
    split: str,
    *,
    dataset: str,
    split_by: str | None = None,
    group_by_image: bool | None = None,
    image_root: str | Path | None = None,
) -> Iterator[Sample]:
    """Samples of one REFER dataset/split (see the module docstring). ``group_by_image`` defaults to the
    reference's choice: grouped per image for ``train``, one sample per sentence for the evaluation splits.

    The annotation files are read (and missing ones reported) at call time; samples are built lazily.
    """
    split_by = split_by or DEFAULT_SPLIT_BY[dataset]
    if group_by_image is None:
        group_by_image = split == "train"
    refs, images, anns = _load(root, dataset, split_by)
    img_dir = (
        Path(image_root)
        if image_root is not None
        else root / (CLEF_IMAGES if dataset == "refclef" else COCO_IMAGES)
    )
    return _samples(root, split, dataset, split_by, group_by_image, refs, images, anns, img_dir)


def _samples(
    root: Path,
    split: str,
    dataset: str,
    split_by: str,
    group_by_image: bool,
    refs: list[Any],
    images: dict[Any, Any],
    anns: dict[Any, Any],
    img_dir: Path,
) -> Iterator[Sample]:
    pickle_name = f"{root / dataset}/refs({split_by}).p"

    by_image: dict[Any, list[dict[str, Any]]] = {}
    seen_splits: set[str] = set()
    for i, ref in enumerate(refs):
        where = f"{pickle_name} ref #{i}"
        ref_split = get_field(ref, "split", where, str)
        seen_splits.add(ref_split)
        if _split_matches(split, ref_split):
            by_image.setdefault(get_field(ref, "image_id", where), []).append(ref)
    if not by_image:
        raise ValueError(
            f"{pickle_name}: no refs in split {split!r}; the pickle has splits {sorted(seen_splits)}"
        )

    name = dataset
    for image_id, img_refs in by_image.items():
        if image_id not in images:
            raise ValueError(
                f"{pickle_name}: image_id {image_id} is not in {root / dataset / 'instances.json'}"
            )
        img = images[image_id]
        where_img = f"{root / dataset / 'instances.json'} image {image_id}"
        h = int(get_field(img, "height", where_img))
        w = int(get_field(img, "width", where_img))
        file_name = get_field(img, "file_name", where_img, str)
        media = MediaRef(path=str(img_dir / file_name), is_image=True)

        turns: list[tuple[str, dict[str, Any], dict[str, Any]]] = []  # (prompt, rle, meta)
        for ref in img_refs:
            ref_id = get_field(ref, "ref_id", f"{pickle_name} ref of image {image_id}")
            where = f"{pickle_name} ref {ref_id}"
            ann_id = get_field(ref, "ann_id", where)
            if ann_id not in anns:
                raise ValueError(f"{where}: ann_id {ann_id} is not in {root / dataset / 'instances.json'}")
            ann = anns[ann_id]
            seg = get_field(ann, "segmentation", f"annotation {ann_id}")
            rle = to_rle(seg, h, w, what=f"annotation {ann_id} segmentation")
            x, y, bw, bh = (float(v) for v in get_field(ann, "bbox", f"annotation {ann_id}", list))
            box = [x, y, x + bw, y + bh]
            for j, sent in enumerate(get_field(ref, "sentences", where, list)):
                text = get_field(sent, "sent", f"{where} sentence #{j}", str)
                meta = {
                    "dataset": dataset,
                    "split_by": split_by,
                    "split": split,
                    "ref_split": ref["split"],
                    "image_id": image_id,
                    "file_name": file_name,
                    "ref_id": ref_id,
                    "ann_id": ann_id,
                    "sent_id": sent.get("sent_id", j),
                    "category_id": ref.get("category_id"),
                    "sentence": text,
                    "gt_box": box,
                    "iscrowd": int(ann.get("iscrowd", 0)),
                    "type": "query",
                }
                turns.append((query_prompt(text, is_image=True), rle, meta))

        if group_by_image:
            conv: list[Turn] = []
            objects = []
            for k, (prompt, rle, meta) in enumerate(turns):
                conv += [Turn("user", prompt), Turn("assistant", SEG_RESPONSE)]
                objects.append(
                    ObjectAnnotation(
                        id=k, masks={0: rle}, attributes={"box": meta["gt_box"], **_obj_attrs(meta)}
                    )
                )
            yield Sample(
                id=f"{name}/{split_by}/{split}/image{image_id}",
                task="ref_seg",
                media=media,
                conversation=conv,
                objects=objects,
                meta={
                    "dataset": dataset,
                    "split_by": split_by,
                    "split": split,
                    "image_id": image_id,
                    "file_name": file_name,
                    "turns": [
                        {k: m[k] for k in ("ref_id", "ann_id", "sent_id", "sentence")} for _, _, m in turns
                    ],
                },
            )
            continue
        for prompt, rle, meta in turns:
            yield Sample(
                id=f"{name}/{split_by}/{split}/{meta['sent_id']}",
                task="ref_seg",
                media=media,
                conversation=[Turn("user", prompt), Turn("assistant", SEG_RESPONSE)],
                objects=[
                    ObjectAnnotation(
                        id=0, masks={0: rle}, attributes={"box": meta["gt_box"], **_obj_attrs(meta)}
                    )
                ],
                meta=meta,
            )


def _obj_attrs(meta: dict[str, Any]) -> dict[str, Any]:
    return {"ref_id": meta["ref_id"], "ann_id": meta["ann_id"], "category_id": meta["category_id"]}


@register_reader(
    "refcoco", splits=("train", "val", "test", "testA", "testB"), description="RefCOCO (REFER, unc)",
    data_dir="lisa/refer_seg",
)
def read_refcoco(root: Path, split: str, **options: Any) -> Iterator[Sample]:
    """RefCOCO referring segmentation (REFER pickle + instances.json)."""
    return read_refer(Path(root), split, dataset="refcoco", **options)


@register_reader(
    "refcoco+", splits=("train", "val", "test", "testA", "testB"), description="RefCOCO+ (REFER, unc)",
    data_dir="lisa/refer_seg",
)
def read_refcoco_plus(root: Path, split: str, **options: Any) -> Iterator[Sample]:
    """RefCOCO+ referring segmentation (REFER pickle + instances.json)."""
    return read_refer(Path(root), split, dataset="refcoco+", **options)


@register_reader(
    "refcocog", splits=("train", "val", "test"), description="RefCOCOg (REFER, umd or google)",
    data_dir="lisa/refer_seg",
)
def read_refcocog(root: Path, split: str, **options: Any) -> Iterator[Sample]:
    """RefCOCOg referring segmentation (REFER pickle + instances.json)."""
    return read_refer(Path(root), split, dataset="refcocog", **options)


@register_reader(
    "refclef", splits=("train", "val", "test", "testA", "testB", "testC"), description="RefCLEF (REFER, unc)",
    data_dir="lisa/refer_seg",
)
def read_refclef(root: Path, split: str, **options: Any) -> Iterator[Sample]:
    """RefCLEF referring segmentation on SAIAPR TC-12 images (REFER pickle + instances.json)."""
    return read_refer(Path(root), split, dataset="refclef", **options)

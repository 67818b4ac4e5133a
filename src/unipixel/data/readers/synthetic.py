"""Reader of split directories written by ``unipixel synth`` (:mod:`unipixel.synth`).

``format="samples"`` (default) yields the complete split from ``samples.jsonl`` (every task, images and
videos), with media paths made absolute.  The other formats read the reference-format views the generator
writes next to it, the way the reference's loaders read the real datasets (reference-design §5, §7), so the
two views can be checked against each other and the reference-format code paths exercised on synthetic data:

* ``"revos"``: ``videos/meta_expressions_{train|valid}_.json`` (val and test both use ``valid``) + ``videos/mask_dict.json``; one
  ``ref_seg`` (type_id 0) or ``reason_seg`` (type_id 1) sample per expression with a target, GT = union of
  the expression's anno_ids per frame (empty frames included), evaluation templates; expressions without a
  target are skipped (as the reference does in training).
* ``"refcoco"``: ``refer_seg/refcoco/{instances.json, refs(unc).p}``; one ``ref_seg`` sample per sentence,
  mask decoded from the COCO polygon.
* ``"videorefer"``: ``videorefer/VideoRefer-Bench-Q.json`` -> ``region_qa`` samples (mask prompts on
  ``frame_idx``, question with ``[k]``), ``videorefer/VideoRefer-Bench-D.json`` -> ``region_caption``.

The split argument must match the directory's ``manifest.json`` (a split directory holds one split).
"""

from __future__ import annotations

import json
import pickle
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pycocotools.mask as mask_utils

from ..registry import register_reader
from ..schema import MediaRef, ObjectAnnotation, Sample, Turn, VisualPrompt

_REVOS_SPLIT = {"train": "train", "val": "valid", "test": "valid"}
_EMPTY_CACHE: dict[tuple[int, int], dict[str, Any]] = {}


def _absolute(media: MediaRef, root: Path) -> MediaRef:
    if media.path is not None:
        media.path = str(root / media.path)
    if media.frames is not None:
        media.frames = [str(root / f) for f in media.frames]
    return media


def _empty_rle(h: int, w: int) -> dict[str, Any]:
    if (h, w) not in _EMPTY_CACHE:
        import numpy as np

        r = mask_utils.encode(np.zeros((h, w), dtype=np.uint8, order="F"))
        _EMPTY_CACHE[(h, w)] = {"size": [h, w], "counts": r["counts"].decode("ascii")}
    return dict(_EMPTY_CACHE[(h, w)])


def _union(rles: list[dict[str, Any]]) -> dict[str, Any]:
    if len(rles) == 1:
        return rles[0]
    objs = [{"size": r["size"], "counts": r["counts"].encode("ascii")} for r in rles]
    u = mask_utils.merge(objs, intersect=False)
    return {"size": [int(u["size"][0]), int(u["size"][1])], "counts": u["counts"].decode("ascii")}


def _frame_files(video_dir: Path, names: list[str]) -> list[str]:
    """``{name}.jpg`` as the reference expects, else whatever extension the generator used."""
    out = []
    for n in names:
        for ext in (".jpg", ".png"):
            p = video_dir / f"{n}{ext}"
            if p.exists():
                out.append(str(p))
                break
        else:
            raise FileNotFoundError(f"frame {n} not found in {video_dir} (.jpg or .png)")
    return out


def _read_samples(root: Path) -> Iterator[Sample]:
    with (root / "samples.jsonl").open() as f:
        for line in f:
            if line.strip():
                s = Sample.from_dict(json.loads(line))
                s.media = _absolute(s.media, root)
                yield s


def _read_revos(root: Path, split: str) -> Iterator[Sample]:
    meta = json.loads((root / "videos" / f"meta_expressions_{_REVOS_SPLIT[split]}_.json").read_text())[
        "videos"
    ]
    masks = json.loads((root / "videos" / "mask_dict.json").read_text())
    for vid, v in meta.items():
        frames = _frame_files(root / "videos" / vid, v["frames"])
        for qid, e in v["expressions"].items():
            if not e["anno_id"]:
                continue
            per_anno = [masks[str(a)] for a in e["anno_id"]]
            size = next(r["size"] for m in per_anno for r in m if r is not None)
            gt = {}
            for t in range(len(frames)):
                present = [m[t] for m in per_anno if m[t] is not None]
                gt[t] = _union(present) if present else _empty_rle(*size)
            query = e["exp"].strip()
            if e.get("type_id", 0) == 1 or query.endswith("?"):
                task, q = "reason_seg", f"{query} Please provide the segmentation mask."
                a = "The target is <|seg|>." + (f" {e['explanation']}" if e.get("explanation") else "")
            else:
                task, q, a = "ref_seg", f"Please segment the {query} in this video.", "The target is <|seg|>."
            yield Sample(
                id=f"revos-{vid}-{qid}",
                task=task,
                media=MediaRef(frames=frames),
                conversation=[Turn("user", q), Turn("assistant", a)],
                objects=[ObjectAnnotation(0, gt, attributes={"obj_ids": e["obj_id"]})],
                meta={
                    "source": "synthetic/revos",
                    "expression": query,
                    "type_id": e.get("type_id", 0),
                    "sample_id": e.get("sample_id"),
                },
            )


def _read_refcoco(root: Path, split: str) -> Iterator[Sample]:
    base = root / "refer_seg" / "refcoco"
    inst = json.loads((base / "instances.json").read_text())
    refs = pickle.loads((base / "refs(unc).p").read_bytes())
    images = {im["id"]: im for im in inst["images"]}
    anns = {a["id"]: a for a in inst["annotations"]}
    for ref in refs:
        if ref["split"] != split:
            continue
        im, ann = images[ref["image_id"]], anns[ref["ann_id"]]
        h, w = im["height"], im["width"]
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], h, w))
        m = {"size": [h, w], "counts": rle["counts"].decode("ascii")}
        for sent in ref["sentences"]:
            yield Sample(
                id=f"refcoco-{sent['sent_id']}",
                task="ref_seg",
                media=MediaRef(path=str(root / "images" / im["file_name"]), is_image=True),
                conversation=[
                    Turn("user", f"Please segment the {sent['sent']} in this image."),
                    Turn("assistant", "The target is <|seg|>."),
                ],
                objects=[ObjectAnnotation(0, {0: m}, attributes={"bbox": ann["bbox"]})],
                meta={
                    "source": "synthetic/refcoco",
                    "expression": sent["sent"],
                    "sample_id": sent.get("sample_id"),
                },
            )


def _bench_objects(entry: dict[str, Any]) -> list[ObjectAnnotation]:
    frame = int(entry["frame_idx"])
    return [
        ObjectAnnotation(k, {int(t): a["segmentation"] for t, a in obj.items()}, VisualPrompt("mask", frame))
        for k, obj in enumerate(entry["annotation"])
    ]


def _read_videorefer(root: Path) -> Iterator[Sample]:
    base = root / "videorefer"
    for e in json.loads((base / "VideoRefer-Bench-Q.json").read_text()):
        frames = sorted(p for p in (root / "videos" / e["video"]).iterdir() if p.suffix in (".jpg", ".png"))
        q = re.sub(r"<object(\d+)><region>", r"[\1]", e["Question"]).replace("<region>", "[0]")
        q = re.sub(r"<object(\d+)>", r"[\1]", q)
        text = q + "\nOptions:\n" + "\n".join(e["options"]) + "\nPlease only give the best option."
        yield Sample(
            id=f"videorefer-q-{e['id']}",
            task="region_qa",
            media=MediaRef(frames=[str(p) for p in frames]),
            conversation=[Turn("user", text), Turn("assistant", e["Answer"])],
            objects=_bench_objects(e),
            meta={
                "source": "synthetic/videorefer_bench_q",
                "options": e["options"],
                "answer": e["Answer"][1],
                "question_type": e["type"],
                "sample_id": e.get("sample_id"),
            },
        )
    for e in json.loads((base / "VideoRefer-Bench-D.json").read_text()):
        frames = sorted(p for p in (root / "videos" / e["video"]).iterdir() if p.suffix in (".jpg", ".png"))
        yield Sample(
            id=f"videorefer-d-{e['id']}",
            task="region_caption",
            media=MediaRef(frames=[str(p) for p in frames]),
            conversation=[
                Turn("user", "Please give a short description of the highlighted object [0] in the video."),
                Turn("assistant", e["caption"]),
            ],
            objects=_bench_objects(e),
            meta={
                "source": "synthetic/videorefer_bench_d",
                "caption": e["caption"],
                "sample_id": e.get("sample_id"),
            },
        )


@register_reader("synthetic", splits=("train", "val", "test"), data_dir="synthetic/{split}")
def read_synthetic(root: Path, split: str, format: str = "samples") -> Iterator[Sample]:
    """Synthetic world split written by ``unipixel synth`` (samples.jsonl or its reference-format views)."""
    root = Path(root)
    manifest = root / "manifest.json"
    if manifest.exists():
        have = json.loads(manifest.read_text())["options"]["split"]
        if have != split:
            raise ValueError(f"{root} holds the synthetic {have!r} split, not {split!r}")
    if format == "samples":
        return _read_samples(root)
    if format == "revos":
        return _read_revos(root, split)
    if format == "refcoco":
        return _read_refcoco(root, split)
    if format == "videorefer":
        return _read_videorefer(root)
    raise ValueError(f"unknown synthetic format {format!r}; use samples, revos, refcoco or videorefer")

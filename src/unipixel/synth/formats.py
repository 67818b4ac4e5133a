"""Writers for the reference's on-disk dataset formats (reference-design §5) and the project's samples.jsonl.

One split directory holds (paths relative to it)::

    manifest.json                                  options, counts, file list (no timestamps: reproducible)
    samples.jsonl                                  every sample, ``Sample.to_dict()`` per line (relative paths)
    images/img00000.png                            images
    videos/vid00000/00000.png                      video frames (ReVOS layout: <root>/<vid>/<frame>.<ext>)
    videos/meta_expressions_{train|valid}_.json   ReVOS: videos/<vid>/{frames, expressions/<qid>/
                                                   {exp, obj_id, anno_id, type_id}} (+ "explanation" for
                                                   reasoning expressions); type_id 0 referring, 1 reasoning;
                                                   empty obj_id = the target is not present
    videos/mask_dict.json                          ReVOS/MeViS: anno_id -> per-frame RLE or None
    refer_seg/refcoco/instances.json               COCO instances of the images (polygon segmentation,
                                                   xywh bbox, shapes as categories)
    refer_seg/refcoco/refs(unc).p                  REFER pickle: single-object image expressions
    videorefer/VideoRefer-Bench-Q.json             mask-prompted video region QA (multiple choice)
    videorefer/VideoRefer-Bench-D.json             mask-prompted video region captions
    pixelqa/VideoRefer-Bench-Q.json                video PixelQA (Bench-Q layout + "prompt_kinds")

JSON is written with a fixed layout and the pickle with a fixed protocol, so the same scenes give the same
bytes.  Each reference-format entry also carries the ``sample_id`` of its samples.jsonl twin (an extra key
the reference readers ignore) so the two views can be cross-checked.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .tasks import SceneRecord
from .world import encode_rle

__all__ = [
    "REVOS_SPLIT",
    "write_frames",
    "write_samples",
    "write_revos",
    "write_refcoco",
    "write_videorefer",
    "dump_json",
]

# ReVOS has only train and valid files; a synthetic split directory holds one split, so val and test both
# use the evaluation name and the real ``revos`` reader reads them with split="valid".
REVOS_SPLIT = {"train": "train", "val": "valid", "test": "valid"}
REFER_PROTOCOL = 4


def dump_json(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, separators=(",", ":"), ensure_ascii=True) + "\n")


def write_frames(rec: SceneRecord, root: Path, ext: str) -> None:
    """PNG is lossless (exact colours); JPEG (quality 95, 4:4:4) matches the reference's ``{n}.jpg`` paths."""
    paths = [rec.media.path] if rec.media.path is not None else list(rec.media.frames or [])
    for frame, rel in zip(rec.scene.frames, paths, strict=True):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        img = Image.fromarray(frame)
        if ext == "png":
            img.save(p, format="PNG")
        else:
            img.save(p, format="JPEG", quality=95, subsampling=0)


def write_samples(records: Iterable[SceneRecord], path: Path) -> int:
    n = 0
    with path.open("w") as f:
        for rec in records:
            for s in rec.samples:
                f.write(json.dumps(s.to_dict(), separators=(",", ":"), ensure_ascii=True) + "\n")
                n += 1
    return n


def write_revos(records: list[SceneRecord], root: Path, split: str) -> dict[str, int]:
    """ReVOS layout for video segmentation expressions; one anno_id per (video, object), global running id."""
    videos: dict[str, Any] = {}
    mask_dict: dict[str, Any] = {}
    next_anno, n_exp = 0, 0
    for rec in records:
        if rec.scene.is_image:
            continue
        anno_of: dict[int, int] = {}
        for o in rec.scene.objects:
            assert o.visible is not None
            anno_of[o.id] = next_anno
            mask_dict[str(next_anno)] = [encode_rle(m) if m.any() else None for m in o.visible]
            next_anno += 1
        exps: dict[str, Any] = {}
        for q, e in enumerate(rec.revos):
            entry: dict[str, Any] = {
                "exp": e["exp"],
                "obj_id": list(e["obj_ids"]),
                "anno_id": [anno_of[i] for i in e["obj_ids"]],
                "type_id": e["type_id"],
            }
            if "explanation" in e:
                entry["explanation"] = e["explanation"]
            entry["sample_id"] = e["sample_id"]
            exps[str(q)] = entry
            n_exp += 1
        videos[rec.name] = {"vid_id": rec.name, "frames": rec.frame_names, "expressions": exps}
    dump_json({"videos": videos}, root / "videos" / f"meta_expressions_{REVOS_SPLIT[split]}_.json")
    dump_json(mask_dict, root / "videos" / "mask_dict.json")
    return {"videos": len(videos), "expressions": n_exp, "anno_ids": next_anno}


def write_refcoco(records: list[SceneRecord], root: Path, split: str) -> dict[str, int]:
    """REFER API layout (``instances.json`` + ``refs(unc).p``) for single-object image expressions.

    Segmentations are the exact polygons the world rasterised (images never overlap), so
    ``pycocotools.mask.frPyObjects(segmentation, h, w)`` gives back the ground-truth mask bit for bit.
    """
    from .world import SHAPES

    images, anns, refs = [], [], []
    cats = [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)]
    cat_id = {s: i + 1 for i, s in enumerate(SHAPES)}
    ann_id, sent_id = 0, 0
    for img_id, rec in enumerate((r for r in records if r.scene.is_image), start=1):
        sc = rec.scene
        file_name = Path(str(rec.media.path)).name
        images.append({"id": img_id, "file_name": file_name, "height": sc.height, "width": sc.width})
        ann_of: dict[int, int] = {}
        for o in sc.objects:
            assert o.full is not None
            ann_id += 1
            ann_of[o.id] = ann_id
            ys, xs = np.nonzero(o.full[0])
            x1, y1, x2, y2 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
            anns.append(
                {
                    "id": ann_id,
                    "image_id": img_id,
                    "category_id": cat_id[o.spec.shape],
                    "segmentation": [o.polygons[0]],
                    "area": int(o.full[0].sum()),
                    "bbox": [float(x1), float(y1), float(x2 - x1 + 1), float(y2 - y1 + 1)],
                    "iscrowd": 0,
                }
            )
        by_obj: dict[int, list[dict[str, Any]]] = {}
        for r in rec.refer:
            by_obj.setdefault(r["object"], []).append(r)
        for oid in sorted(by_obj):
            sents = []
            for r in by_obj[oid]:
                sent_id += 1
                sents.append(
                    {
                        "sent_id": sent_id,
                        "sent": r["sent"],
                        "raw": r["sent"],
                        "tokens": r["sent"].split(),
                        "sample_id": r["sample_id"],
                    }
                )
            refs.append(
                {
                    "ref_id": len(refs) + 1,
                    "ann_id": ann_of[oid],
                    "image_id": img_id,
                    "category_id": cat_id[sc.objects[oid].spec.shape],
                    "split": split,
                    "file_name": file_name,
                    "sent_ids": [s["sent_id"] for s in sents],
                    "sentences": sents,
                }
            )
    out = root / "refer_seg" / "refcoco"
    dump_json(
        {
            "info": {"description": "unipixel synthetic world"},
            "images": images,
            "annotations": anns,
            "categories": cats,
        },
        out / "instances.json",
    )
    # pickle memoises by object identity, so strings shared or not (e.g. after a worker round trip) would
    # change the bytes; a JSON round trip gives every value a fresh object: canonical, reproducible output.
    canonical = json.loads(json.dumps(refs))
    (out / "refs(unc).p").write_bytes(pickle.dumps(canonical, protocol=REFER_PROTOCOL))
    return {"images": len(images), "annotations": len(anns), "refs": len(refs), "sentences": sent_id}


def _annotation(rec: SceneRecord, obj_ids: list[int]) -> list[dict[str, Any]]:
    out = []
    for i in obj_ids:
        o = rec.scene.objects[i]
        assert o.visible is not None
        out.append(
            {
                str(t): {"segmentation": encode_rle(o.visible[t])}
                for t in range(rec.scene.num_frames)
                if o.visible[t].any()
            }
        )
    return out


def write_videorefer(records: list[SceneRecord], root: Path) -> dict[str, int]:
    """VideoRefer-Bench-Q/D layout (``video`` = frame folder relative to ``videos/``, ``frame_idx`` a str)."""
    bench_q, bench_d, pixelqa = [], [], []
    for rec in records:
        for e in rec.bench_q:
            bench_q.append(
                {
                    "id": len(bench_q),
                    "video": rec.name,
                    "Question": e["question"],
                    "type": e["type"],
                    "options": e["options"],
                    "Answer": e["answer"],
                    "frame_idx": str(e["frame_idx"]),
                    "annotation": _annotation(rec, e["objects"]),
                    "sample_id": e["sample_id"],
                }
            )
        for e in rec.bench_d:
            bench_d.append(
                {
                    "id": len(bench_d),
                    "video": rec.name,
                    "caption": e["caption"],
                    "frame_idx": str(e["frame_idx"]),
                    "annotation": _annotation(rec, e["objects"]),
                    "sample_id": e["sample_id"],
                }
            )
        for e in rec.pixelqa:
            pixelqa.append(
                {
                    "id": len(pixelqa),
                    "video": rec.name,
                    "Question": e["question"],
                    "type": e["type"],
                    "options": e["options"],
                    "Answer": e["answer"],
                    "frame_idx": str(e["frame_idx"]),
                    "annotation": _annotation(rec, e["objects"]),
                    "prompt_kinds": e["prompt_kinds"],
                    "sample_id": e["sample_id"],
                }
            )
    dump_json(bench_q, root / "videorefer" / "VideoRefer-Bench-Q.json")
    dump_json(bench_d, root / "videorefer" / "VideoRefer-Bench-D.json")
    dump_json(pixelqa, root / "pixelqa" / "VideoRefer-Bench-Q.json")
    return {"bench_q": len(bench_q), "bench_d": len(bench_d), "pixelqa": len(pixelqa)}

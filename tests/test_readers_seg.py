"""Segmentation dataset readers: fixtures written in each dataset's on-disk format, decoded back and validated."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from unipixel.data.masks import decode_rle, draw_polygon, encode_mask, to_rle
from unipixel.data.registry import available_readers, read_dataset
from unipixel.data.safe_pickle import UnsafePickleError, load_pickle, loads_pickle
from unipixel.data.schema import Sample, SampleError, Turn, validate_sample

H, W = 6, 8

# ----------------------------------------------------------------------------------------------------------
# fixture helpers


def _jpg(path: Path, h: int = H, w: int = W) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(path)


def _png_ids(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(ids.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 12))
    im.save(path)


def _rle(mask: np.ndarray) -> dict[str, Any]:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(r["size"]), "counts": r["counts"].decode("ascii")}


def _box(y0: int, y1: int, x0: int, x1: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def _runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts (column-major runs starting with background)."""
    runs, cur, n = [], False, 0
    for v in mask.ravel(order="F"):
        if v != cur:
            runs.append(n)
            cur, n = v, 0
        n += 1
    return [*runs, n]


def _dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _masks(sample: Sample, obj: int = 0) -> dict[int, np.ndarray]:
    return {t: decode_rle(r) for t, r in sample.objects[obj].masks.items()}


def _user(sample: Sample) -> str:
    return sample.conversation[0].text


# ----------------------------------------------------------------------------------------------------------
# shared helpers


def test_safe_pickle_roundtrip_and_refusal(tmp_path: Path) -> None:
    data = {"a": [1, 2.5, None, True, b"xy", (1, 2), {3}, frozenset({4}), "é"]}
    for proto in range(6):
        assert loads_pickle(pickle.dumps(data, protocol=proto)) == data
    p = tmp_path / "evil.p"
    p.write_bytes(pickle.dumps(Path("x"), protocol=2))
    with pytest.raises(UnsafePickleError, match=r"pathlib.*PosixPath|pathlib"):
        load_pickle(p)

    class Boom:
        def __reduce__(self) -> tuple[Any, ...]:
            import os

            return (os.system, ("echo hacked",))

    with pytest.raises(UnsafePickleError, match="system"):
        loads_pickle(pickle.dumps(Boom()))
    with pytest.raises(FileNotFoundError, match="missing.p"):
        load_pickle(tmp_path / "missing.p")


def test_to_rle_formats_and_polygon_drawing() -> None:
    poly = [[1.0, 1.0, 5.0, 1.0, 5.0, 4.0, 1.0, 4.0]]
    m = _box(2, 4, 1, 6)
    uncompressed = {"size": [H, W], "counts": _runs(m)}
    assert np.array_equal(decode_rle(to_rle(uncompressed, H, W)), m)
    assert np.array_equal(decode_rle(to_rle(_rle(m), H, W)), m)
    assert decode_rle(to_rle(poly, H, W)).sum() > 0
    with pytest.raises(ValueError, match="polygon"):
        to_rle([[1, 2, 3]], H, W)
    canvas = np.zeros((H, W), np.uint8)
    draw_polygon(canvas, [[1.7, 1], [4, 1], [4, 3], [1, 3]], 5)  # 1.7 truncates to 1, like the reference
    assert np.array_equal(canvas == 5, _box(1, 4, 1, 5))


# ----------------------------------------------------------------------------------------------------------
# RefCOCO family


def _refer_fixture(
    root: Path, dataset: str = "refcoco", split_by: str = "unc"
) -> tuple[np.ndarray, np.ndarray]:
    crowd = _box(2, 6, 5, 8)
    runs = _runs(crowd)  # uncompressed RLE, as COCO stores iscrowd=1 masks
    instances = {
        "images": [{"id": 7, "file_name": "COCO_train2014_000000000007.jpg", "height": H, "width": W}],
        "annotations": [
            {
                "id": 70,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 0,
                "bbox": [1, 1, 3, 3],
                "segmentation": [[1.0, 1.0, 3.0, 1.0, 3.0, 3.0, 1.0, 3.0]],
            },
            {
                "id": 71,
                "image_id": 7,
                "category_id": 1,
                "iscrowd": 1,
                "bbox": [5, 2, 3, 4],
                "segmentation": {"size": [H, W], "counts": runs},
            },
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    refs = [
        {
            "ref_id": 1,
            "ann_id": 70,
            "image_id": 7,
            "split": "val",
            "category_id": 1,
            "file_name": "x.jpg",
            "sentences": [
                {"sent_id": 10, "sent": "The man on left.", "raw": "The man on left.", "tokens": []},
                {"sent_id": 11, "sent": "a small man", "raw": "", "tokens": []},
            ],
        },
        {
            "ref_id": 2,
            "ann_id": 71,
            "image_id": 7,
            "split": "testAB",
            "category_id": 1,
            "file_name": "x.jpg",
            "sentences": [{"sent_id": 12, "sent": "crowd right", "raw": "", "tokens": []}],
        },
    ]
    _dump(root / dataset / "instances.json", instances)
    (root / dataset / f"refs({split_by}).p").write_bytes(pickle.dumps(refs, protocol=2))
    _jpg(root / "images/mscoco/images/train2014/COCO_train2014_000000000007.jpg")
    # the polygon is drawn by pycocotools exactly as the reference draws it
    poly_mask = mask_utils.decode(
        mask_utils.merge(mask_utils.frPyObjects(instances["annotations"][0]["segmentation"], H, W))
    )
    return poly_mask.astype(bool), crowd


def test_refcoco_per_sentence_and_crowd(tmp_path: Path) -> None:
    poly_mask, crowd = _refer_fixture(tmp_path)
    val = list(read_dataset("refcoco", tmp_path, "val"))
    assert [s.meta["sent_id"] for s in val] == [10, 11]
    for s in val:
        validate_sample(s)
        assert s.media.is_image and s.media.path.endswith("COCO_train2014_000000000007.jpg")
        assert np.array_equal(_masks(s)[0], poly_mask)
        assert s.meta["gt_box"] == [1.0, 1.0, 4.0, 4.0]
        assert s.conversation[1].text == "The target is <|seg|>."
    assert _user(val[0]) == "Please segment the man on left in this image."
    assert _user(val[1]) == "Please segment the small man in this image."
    for split in ("testA", "testB", "test"):  # REFER: 'testAB' belongs to testA, testB and test
        (s,) = list(read_dataset("refcoco", tmp_path, split))
        validate_sample(s)
        assert s.meta["iscrowd"] == 1 and np.array_equal(_masks(s)[0], crowd)
    grouped = list(read_dataset("refcoco", tmp_path, "val", group_by_image=True))
    assert len(grouped) == 1 and len(grouped[0].objects) == 2 and len(grouped[0].conversation) == 4
    validate_sample(grouped[0])
    assert len(list(read_dataset("refcoco", tmp_path, "val", group_by_image=False))) == 2

    from unipixel.train.dataset import _keep_turns  # the trainer keeps at most max_conv_turns of them

    one = _keep_turns(grouped[0], 1, np.random.default_rng(0))
    assert len(one.conversation) == 2 and len(one.objects) == 1
    k = [o.id for o in grouped[0].objects].index(one.objects[0].id)
    assert one.conversation == grouped[0].conversation[2 * k : 2 * k + 2]  # each turn keeps its own object
    assert _keep_turns(grouped[0], 3, np.random.default_rng(0)) is grouped[0]
    chat = dataclasses.replace(grouped[0], task="general_qa", objects=[],
                               conversation=[Turn(r, f"{r} {i}") for i in range(5) for r in ("user", "assistant")])
    assert _keep_turns(chat, 1, np.random.default_rng(0)) is chat  # general QA keeps every turn
    refs_file = tmp_path / "refcoco" / "refs(unc).p"
    refs = pickle.loads(refs_file.read_bytes())
    refs_file.write_bytes(pickle.dumps([{**r, "split": "train"} for r in refs], protocol=2))
    train = list(read_dataset("refcoco", tmp_path, "train"))  # the reference's training layout by default
    assert all(len(s.conversation) == 2 * len(s.objects) for s in train) and max(len(s.objects) for s in train) > 1


def test_refcoco_variants_and_errors(tmp_path: Path) -> None:
    _refer_fixture(tmp_path, "refcocog", "umd")
    assert len(list(read_dataset("refcocog", tmp_path, "val"))) == 2
    with pytest.raises(FileNotFoundError, match=r"refs\(google\)\.p"):
        read_dataset("refcocog", tmp_path, "val", split_by="google")
    with pytest.raises(ValueError, match="no refs in split"):
        list(read_dataset("refcocog", tmp_path, "train"))
    (tmp_path / "refcocog" / "instances.json").unlink()
    with pytest.raises(FileNotFoundError, match="instances.json"):
        read_dataset("refcocog", tmp_path, "val")
    _refer_fixture(tmp_path, "refcoco+")
    (tmp_path / "refcoco+" / "refs(unc).p").write_bytes(pickle.dumps([Path("x")]))
    with pytest.raises(UnsafePickleError, match="pathlib"):
        read_dataset("refcoco+", tmp_path, "val")
    _refer_fixture(tmp_path, "refclef")
    refs = load_pickle(tmp_path / "refclef" / "refs(unc).p")
    del refs[0]["sentences"][0]["sent"]
    (tmp_path / "refclef" / "refs(unc).p").write_bytes(pickle.dumps(refs))
    with pytest.raises(ValueError, match="missing field 'sent'"):
        list(read_dataset("refclef", tmp_path, "val"))


# ----------------------------------------------------------------------------------------------------------
# ReasonSeg


def _reasonseg_fixture(root: Path) -> None:
    _jpg(root / "val" / "a.jpg")
    shapes = [
        {
            "label": "target",
            "shape_type": "polygon",
            "points": [[0, 0], [6, 0], [6, 4], [0, 4]],
            "image_name": "a.jpg",
        },
        {
            "label": "ignore",
            "shape_type": "polygon",
            "points": [[2, 1], [3, 1], [3, 2], [2, 2]],
            "image_name": "a.jpg",
        },
        {"label": "flag", "shape_type": "polygon", "points": [[7, 5], [7, 5], [7, 5]], "image_name": "a.jpg"},
    ]
    _dump(root / "val" / "a.json", {"text": ["What can hold water?"], "is_sentence": True, "shapes": shapes})
    _jpg(root / "train" / "b.jpg")
    b_shapes = [{**shapes[0], "image_name": "b.jpg"}]
    _dump(root / "train" / "b.json", {"text": ["the cup.", "mug"], "is_sentence": False, "shapes": b_shapes})
    _dump(
        root / "explanatory" / "train.json",
        [{"image": "b.jpg", "query": "What holds tea?", "outputs": "A cup."}],
    )


def test_reasonseg_ignore_handling(tmp_path: Path) -> None:
    _reasonseg_fixture(tmp_path)
    big, small = _box(0, 5, 0, 7), _box(1, 3, 2, 4)
    (s,) = list(read_dataset("reason_seg", tmp_path, "val"))
    validate_sample(s)
    assert _user(s) == "What can hold water? Please provide the segmentation mask."
    assert np.array_equal(_masks(s)[0], big & ~small)
    assert np.array_equal(decode_rle(s.meta["ignore_mask"]), small)
    (b,) = list(read_dataset("reason_seg", tmp_path, "val", reference_ignore_bug=True))
    assert b.meta["ignore_mask"] is None and np.array_equal(_masks(b)[0], big & ~small)


def test_reasonseg_train_explanatory_and_errors(tmp_path: Path) -> None:
    _reasonseg_fixture(tmp_path)
    samples = list(read_dataset("reason_seg", tmp_path, "train"))
    for s in samples:
        validate_sample(s)
    assert [_user(s) for s in samples] == [
        "Please segment the cup in this image.",
        "Please segment the mug in this image.",
        "What holds tea? Please provide the segmentation mask and explain why.",
    ]
    assert samples[2].conversation[1].text == "The target is <|seg|>. A cup."
    assert len(list(read_dataset("reason_seg", tmp_path, "train", explanatory=False))) == 2
    bad = json.loads((tmp_path / "val" / "a.json").read_text())
    bad["shapes"][0]["label"] = "tagret"
    _dump(tmp_path / "val" / "a.json", bad)
    with pytest.raises(ValueError, match="'tagret'"):
        list(read_dataset("reason_seg", tmp_path, "val"))
    (tmp_path / "explanatory" / "train.json").unlink()
    with pytest.raises(FileNotFoundError, match="explanatory"):
        read_dataset("reason_seg", tmp_path, "train")


# ----------------------------------------------------------------------------------------------------------
# meta_expressions + mask_dict datasets (ReVOS, MeViS, LV-VIS, Ref-SAV valid)

A1 = [_box(0, 2, 0, 2), None, _box(1, 3, 1, 3)]
A2 = [_box(4, 6, 4, 6), _box(4, 6, 5, 8), None]


def _mask_dict() -> dict[str, Any]:
    return {
        "1": [None if m is None else _rle(m) for m in A1],
        "2": [None if m is None else _rle(m) for m in A2],
    }


def _union(*tracks: list[Any]) -> list[np.ndarray]:
    out = []
    for t in range(3):
        m = np.zeros((H, W), bool)
        for tr in tracks:
            if tr[t] is not None:
                m |= tr[t]
        out.append(m)
    return out


def _frames(root: Path, vid: str, names: list[str]) -> None:
    for n in names:
        _jpg(root / vid / f"{n}.jpg")


NAMES = ["00000", "00005", "00010"]


def _check_track(s: Sample, expected: list[np.ndarray]) -> None:
    got = _masks(s)
    assert sorted(got) == list(range(len(expected)))
    for t, m in enumerate(expected):
        assert np.array_equal(got[t], m), t


def test_revos(tmp_path: Path) -> None:
    videos = {
        "MeViS/v1": {
            "frames": NAMES,
            "expressions": {
                "0": {"exp": "The left cats.", "obj_id": [1, 2], "anno_id": [1, 2], "type_id": 0},
                "1": {"exp": "Which animal is hungry?", "obj_id": [1], "anno_id": [1], "type_id": 1},
                "2": {"exp": "a dog", "obj_id": [], "anno_id": [], "type_id": 0},
            },
        },
        "TAO/v2": {
            "frames": NAMES,
            "expressions": {
                "0": {"exp": "the car", "obj_id": [2], "anno_id": [2], "type_id": 0},
            },
        },
    }
    _dump(tmp_path / "meta_expressions_valid_.json", {"videos": videos})
    _dump(tmp_path / "meta_expressions_train_.json", {"videos": videos})
    _dump(tmp_path / "mask_dict.json", _mask_dict())
    _frames(tmp_path, "MeViS/v1", NAMES)
    samples = list(read_dataset("revos", tmp_path, "valid"))
    assert [s.meta["exp_id"] for s in samples] == ["0", "1", "2", "0"]
    for s in samples:
        validate_sample(s)
        assert len(s.media.frames) == 3 and not s.media.is_image
    s0, s1, s2, _ = samples
    assert _user(s0) == "Please segment the left cats in this video."
    assert _user(s1) == "Which animal is hungry? Please provide the segmentation mask."
    assert (s0.task, s0.meta["subset"], s1.task, s1.meta["subset"]) == (
        "ref_seg",
        "referring",
        "reason_seg",
        "reasoning",
    )
    _check_track(s0, _union(A1, A2))
    _check_track(s1, _union(A1))
    _check_track(s2, _union())  # no object: empty GT on every frame
    assert [s.meta["exp_id"] for s in read_dataset("revos", tmp_path, "valid", subset="reasoning")] == ["1"]
    train = list(read_dataset("revos", tmp_path, "train"))
    assert [(s.meta["vid"], s.meta["exp_id"]) for s in train] == [
        ("MeViS/v1", "0"),
        ("MeViS/v1", "1"),
        ("TAO/v2", "0"),
    ]
    tao = train[2]  # cropped to the first..last frame with a mask (frames 0..1)
    assert tao.meta["frame_offset"] == 0 and tao.meta["frame_names"] == NAMES[:2]
    _check_track(tao, _union(A2)[:2])
    videos["MeViS/v1"]["expressions"]["0"]["anno_id"] = [1, 9]
    _dump(tmp_path / "meta_expressions_valid_.json", {"videos": videos})
    with pytest.raises(ValueError, match="anno_id 9 is not in .*mask_dict.json"):
        list(read_dataset("revos", tmp_path, "valid"))
    (tmp_path / "mask_dict.json").unlink()
    with pytest.raises(FileNotFoundError, match="mask_dict.json"):
        read_dataset("revos", tmp_path, "valid")


def test_mevis_splits(tmp_path: Path) -> None:
    exps = {
        "0": {"exp": "The cat jumping", "obj_id": [1], "anno_id": [1]},
        "1": {"exp": "nothing", "obj_id": [], "anno_id": []},
    }
    for split in ("train", "valid_u"):
        _dump(
            tmp_path / split / "meta_expressions.json",
            {"videos": {"v1": {"frames": NAMES, "expressions": exps}}},
        )
        _dump(tmp_path / split / "mask_dict.json", _mask_dict())
    _dump(
        tmp_path / "valid" / "meta_expressions.json",
        {"videos": {"v9": {"frames": NAMES, "expressions": {"0": {"exp": "the cat"}}}}},
    )
    train = list(read_dataset("mevis", tmp_path, "train"))
    assert len(train) == 1 and _user(train[0]) == "Please segment the cat jumping in this video."
    valid_u = list(read_dataset("mevis", tmp_path, "valid_u"))
    assert len(valid_u) == 2
    for s in train + valid_u:
        validate_sample(s)
        assert s.meta["has_gt"] and s.media.frames[0].endswith(f"{s.meta['split']}/JPEGImages/v1/00000.jpg")
    _check_track(valid_u[0], _union(A1))
    (sub,) = list(read_dataset("mevis", tmp_path, "valid"))
    assert sub.meta["has_gt"] is False and sub.meta["submission"] is True and not sub.objects[0].masks
    validate_sample(sub)  # server-only split: objects without masks are valid when has_gt is False
    sub.meta["has_gt"] = True
    with pytest.raises(SampleError, match="1 <\\|seg\\|> tokens but 0 objects with masks"):
        validate_sample(sub)
    (tmp_path / "valid" / "meta_expressions.json").write_text('{"videos": {"v9": {"frames": []')
    with pytest.raises(ValueError, match="not valid JSON"):
        read_dataset("mevis", tmp_path, "valid")
    _dump(
        tmp_path / "valid" / "meta_expressions.json",
        {"videos": {"v9": {"frames": NAMES, "expressions": {"0": {}}}}},
    )
    with pytest.raises(ValueError, match="missing field 'exp'"):
        list(read_dataset("mevis", tmp_path, "valid"))


def test_lvvis(tmp_path: Path) -> None:
    exps = {"0": {"exp": "traffic_light", "obj_id": [2], "anno_id": [2]}}
    _dump(tmp_path / "meta_expressions.json", {"videos": {"v1": {"frames": NAMES, "expressions": exps}}})
    _dump(tmp_path / "mask_dict.json", _mask_dict())
    (s,) = list(read_dataset("lvvis", tmp_path, "train"))
    validate_sample(s)
    assert _user(s) == "Please segment the traffic light in this video."
    _check_track(s, _union(A2))
    assert s.media.frames[2].endswith("train/JPEGImages/v1/00010.jpg")


def test_ref_sav_valid_and_train(tmp_path: Path) -> None:
    exps = {"0": {"exp": "A white dog runs to the left.", "obj_id": [1], "anno_id": [1]}}
    _dump(
        tmp_path / "valid" / "meta_expressions_valid.json",
        {"videos": {"sav_1": {"frames": NAMES, "expressions": exps}}},
    )
    _dump(tmp_path / "valid" / "mask_dict.json", _mask_dict())
    (s,) = list(read_dataset("ref_sav", tmp_path, "valid"))
    validate_sample(s)
    assert _user(s) == "Please segment the object according to the description: A white dog runs to the left."
    _check_track(s, _union(A1))
    sav = tmp_path.parent / "sav"
    m0, m1 = _box(0, 3, 0, 3), _box(2, 5, 2, 5)
    _dump(
        sav / "sav_train/sav_000/sav_000001_manual.json",
        {
            "video_height": H,
            "video_width": W,
            "masklet_id": [0, 1],
            "masklet": [[_rle(m0), _rle(m1)], [_rle(m1), _rle(m0)]],
        },
    )
    _dump(
        tmp_path / "Ref-SAV-Min-Ratio-0.3.json",
        {
            "sav_000001": {
                "video_path": "x/sav_train/sav_000/sav_000001.mp4",
                "anno_path": "x/sav_train/sav_000/sav_000001_manual.json",
                "objects": {"1": {"video_id": "sav_000001", "obj_id": 1, "formated": "The red ball."}},
            }
        },
    )
    (t,) = list(read_dataset("ref_sav", tmp_path, "train"))
    validate_sample(t)
    assert t.media.path == str(sav / "sav_train/sav_000/sav_000001.mp4") and t.media.frame_indices == [0, 4]
    assert np.array_equal(_masks(t)[0], m1) and np.array_equal(_masks(t)[1], m0)
    (tmp_path / "Ref-SAV-Min-Ratio-0.3.json").unlink()
    with pytest.raises(FileNotFoundError, match="Ref-SAV-Min-Ratio-0.3.json"):
        read_dataset("ref_sav", tmp_path, "train")


# ----------------------------------------------------------------------------------------------------------
# Ref-YouTube-VOS, Ref-DAVIS17 (PNG palettes or mask_dict.pkl)


def _id_maps() -> list[np.ndarray]:
    maps = []
    for t in range(3):
        ids = np.zeros((H, W), np.uint8)
        ids[_box(0, 3, 0, 3 + t)] = 1
        ids[_box(4, 6, 4, 8)] = 2
        maps.append(ids)
    return maps


def test_ref_youtube_vos(tmp_path: Path) -> None:
    meta = {
        "videos": {
            "vb": {
                "frames": NAMES,
                "expressions": {
                    "0": {"exp": "a person", "obj_id": "1"},
                    "1": {"exp": "the dog", "obj_id": "2"},
                },
            }
        }
    }
    _dump(tmp_path / "meta_expressions/train/meta_expressions.json", meta)
    maps = _id_maps()
    for n, ids in zip(NAMES, maps, strict=True):
        _png_ids(tmp_path / "train/Annotations/vb" / f"{n}.png", ids)
    s0, s1 = list(read_dataset("ref_youtube_vos", tmp_path, "train"))
    for s in (s0, s1):
        validate_sample(s)
        assert s.meta["mask_source"] == "annotations"
    assert _user(s1) == "Please segment the dog in this video."
    _check_track(s0, [m == 1 for m in maps])
    _check_track(s1, [m == 2 for m in maps])
    # reference format: mask_dict.pkl keyed by running expression index (file order)
    pkl = {"0": [_rle(m == 2) for m in maps], "1": [None, _rle(maps[0] == 1), None]}
    (tmp_path / "mask_dict.pkl").write_bytes(pickle.dumps(pkl, protocol=2))
    p0, p1 = list(read_dataset("ref_youtube_vos", tmp_path, "train"))
    assert p0.meta["mask_source"] == "mask_dict"
    _check_track(p0, [m == 2 for m in maps])
    _check_track(p1, [np.zeros((H, W), bool), maps[0] == 1, np.zeros((H, W), bool)])
    _dump(
        tmp_path / "meta_expressions/valid/meta_expressions.json",
        {"videos": {"vz": {"frames": NAMES, "expressions": {"0": {"exp": "a cat"}}}}},
    )
    (v,) = list(read_dataset("ref_youtube_vos", tmp_path, "valid"))
    assert v.meta["submission"] and v.media.frames[0].endswith("valid/JPEGImages/vz/00000.jpg")
    (tmp_path / "mask_dict.pkl").write_bytes(pickle.dumps({"0": [], "1": []}))
    with pytest.raises(ValueError, match="entry 0 has 0 frames"):
        list(read_dataset("ref_youtube_vos", tmp_path, "train"))


def test_ref_davis17(tmp_path: Path) -> None:
    meta = {
        "videos": {
            "bmx": {
                "frames": NAMES,
                "expressions": {
                    "1": {"exp": "a bike", "obj_id": "2"},
                    "0": {"exp": "a rider", "obj_id": "1"},
                },
            }
        }
    }
    _dump(tmp_path / "meta_expressions/valid/meta_expressions.json", meta)
    maps = _id_maps()
    for n, ids in zip(NAMES, maps, strict=True):
        _png_ids(tmp_path / "DAVIS/Annotations/480p/bmx" / f"{n}.png", ids)
    png = {s.meta["exp_id"]: s for s in read_dataset("ref_davis17", tmp_path, "valid")}
    _check_track(png["0"], [m == 1 for m in maps])
    _check_track(png["1"], [m == 2 for m in maps])
    assert png["0"].media.frames[0].endswith("DAVIS/JPEGImages/480p/bmx/00000.jpg")
    # eval_seg order: sorted exp ids -> "0" is index 0 although it comes second in the file
    pkl = {"0": [_rle(m == 1) for m in maps], "1": [_rle(m == 2) for m in maps]}
    (tmp_path / "valid").mkdir()
    (tmp_path / "valid/mask_dict.pkl").write_bytes(pickle.dumps(pkl))
    samples = list(read_dataset("ref_davis17", tmp_path, "valid"))
    assert [(s.meta["exp_id"], s.meta["anno_index"]) for s in samples] == [("0", 0), ("1", 1)]
    for s in samples:
        validate_sample(s)
        _check_track(s, [m == int(s.meta["obj_id"]) for m in maps])
    file_order = list(read_dataset("ref_davis17", tmp_path, "valid", index_order="file"))
    assert [(s.meta["exp_id"], s.meta["anno_index"]) for s in file_order] == [("1", 0), ("0", 1)]
    with pytest.raises(FileNotFoundError, match="meta_expressions.json"):
        read_dataset("ref_davis17", tmp_path, "train")


# ----------------------------------------------------------------------------------------------------------
# GroundMoRe


def test_groundmore(tmp_path: Path) -> None:
    vid = "abc_0001_0010"  # clip starts at 00:01
    n = 22
    for i in range(n):
        _jpg(tmp_path / "annotations" / vid / "images" / f"frame_{i:06d}.jpg")
    ids = np.zeros((H, W), np.uint8)
    ids[_box(0, 2, 0, 2)] = 1
    ids[_box(3, 5, 3, 5)] = 2
    for i in (0, 7, 12, 21):
        _png_ids(tmp_path / "annotations" / vid / "masks" / f"frame_{i:06d}.png", ids)
    questions = {
        "q1": {
            "question": "Who is going to throw the ball",
            "answer": "The boy",
            "q_type": "Causal",
            "obj_id": "1, 2",
            "action_start": "00:02",
            "action_end": "00:03",
        }
    }
    _dump(
        tmp_path / "test_v2.json",
        {"videos": {vid: {"questions": questions}, "missing_0001_0002": {"questions": {}}}},
    )
    _dump(tmp_path / "trainval_v2.json", {"videos": {vid: {"questions": questions}}})
    with pytest.warns(UserWarning, match="1 of 2 videos"):
        (s,) = list(read_dataset("groundmore", tmp_path, "test"))
    validate_sample(s)
    assert (
        _user(s)
        == "Who is going to throw the ball? Please answer the question and provide the segmentation mask."
    )
    assert s.conversation[1].text == "The boy <|seg|>."
    keep = np.linspace(0, n - 1, 20).astype(int).tolist()
    assert s.meta["frame_indices"] == keep and len(s.media.frames) == 20
    assert s.meta["action_window"] == [6, 11] and s.meta["q_type"] == "Causal"
    got = _masks(s)
    for t, i in enumerate(keep):  # GT only inside the action window and where a PNG exists (frame 7)
        expected = np.isin(ids, [1, 2]) if i == 7 else np.zeros((H, W), bool)
        assert np.array_equal(got[t], expected), i
    (tr,) = list(read_dataset("groundmore", tmp_path, "train"))
    validate_sample(tr)
    assert tr.meta["frame_indices"] == [0, 7, 12, 21] and all(m.any() for m in _masks(tr).values())
    questions["q1"]["obj_id"] = "one"
    _dump(tmp_path / "trainval_v2.json", {"videos": {vid: {"questions": questions}}})
    with pytest.raises(ValueError, match="obj_id 'one'"):
        list(read_dataset("groundmore", tmp_path, "train"))


# ----------------------------------------------------------------------------------------------------------
# registry


def test_segmentation_readers_registered() -> None:
    readers = available_readers()
    expected = {
        "refcoco": ("val", "testA", "testB"),
        "refcoco+": ("val", "testA", "testB"),
        "refcocog": ("val", "test"),
        "refclef": ("testC",),
        "reason_seg": ("train", "val", "test"),
        "revos": ("train", "valid"),
        "mevis": ("train", "valid_u", "valid"),
        "lvvis": ("train",),
        "ref_youtube_vos": ("train", "valid"),
        "ref_davis17": ("valid",),
        "ref_sav": ("train", "valid"),
        "groundmore": ("train", "test"),
    }
    for name, splits in expected.items():
        assert name in readers, name
        assert set(splits) <= set(readers[name].splits), name
    assert encode_mask(np.ones((2, 2), bool))["size"] == [2, 2]

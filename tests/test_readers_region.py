"""Region / referring / general-QA dataset readers on tiny fixtures written in each dataset's on-disk layout.

Every fixture is built in ``tmp_path`` at test time (no dataset files are committed); each test checks that the
samples validate, decode to the masks that were written, and carry the reference's prompt texts and answers,
and that missing files / malformed entries fail with a message naming the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from unipixel.data.readers.videorefer import ReaderFormatError
from unipixel.data.registry import read_dataset
from unipixel.data.schema import REF, SEG, Sample, validate_sample

H, W = 24, 32


def rect(x1: int, y1: int, x2: int, y2: int, h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), dtype=np.uint8)
    m[y1 : y2 + 1, x1 : x2 + 1] = 1
    return m


def rle(m: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}


def decode(r: dict) -> np.ndarray:
    return mask_utils.decode({"size": r["size"], "counts": r["counts"].encode("ascii")}).astype(bool)


def dump(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def read(name: str, root: Path, split: str, **kw: object) -> list[Sample]:
    samples = list(read_dataset(name, root, split, **kw))
    for s in samples:
        validate_sample(s)
        back = Sample.from_dict(json.loads(json.dumps(s.to_dict())))  # samples are plain JSON data
        assert back.to_dict() == s.to_dict()
    return samples


# ----------------------------------------------------------------------------------------------------------
# VideoRefer-700K

A0 = {3: rect(2, 2, 9, 9), 7: rect(4, 3, 12, 10)}
A1 = {3: rect(20, 10, 28, 20), 7: rect(18, 12, 30, 22)}


@pytest.fixture
def videorefer_root(tmp_path: Path) -> Path:
    root = tmp_path / "VideoRefer-700K"
    short = [
        {
            "id": 11,
            "video": "clips/a.mp4",
            "conversations": [
                {"from": "human", "value": "<video>\nWhat is <region> doing?"},
                {"from": "gpt", "value": "A dog is running."},
            ],
            "annotation": [{"3": {}, "7": {}}],
        }
    ]
    dump(root / "videorefer-short-caption-500k-wo-masks.json", short)
    dump(root / "masks_short_caption" / "11.json", [{str(t): rle(m) for t, m in A0.items()}])
    qa = [
        {
            "id": 5,
            "video": "clips/b.mp4",
            "conversations": [
                {"from": "human", "value": "<video>\nWhat does <object0><region> give <object1><region>?"},
                {"from": "gpt", "value": "<object0><region> gives a ball to <object1><region>."},
            ],
            "annotation": [{"3": None, "7": None}, {"3": None, "7": None}],
        },
        {  # too low ratio: skipped like the reference
            "id": 6,
            "video": "clips/c.mp4",
            "ratio": 0.1,
            "conversations": [{"from": "human", "value": "<region>?"}, {"from": "gpt", "value": "x"}],
            "annotation": [{"3": None}],
        },
    ]
    dump(root / "videorefer-qa-75k-wo-masks.json", qa)
    # list-of-RLE form aligned with the annotation's frame keys
    dump(root / "masks_qa" / "5.json", [[rle(A0[3]), rle(A0[7])], [rle(A1[3]), rle(A1[7])]])
    dump(root / "masks_qa" / "6.json", [[rle(A0[3])]])
    return root


def test_videorefer_short_caption_mem(videorefer_root: Path) -> None:
    [s] = read("videorefer_short_caption", videorefer_root, "train", seed=1)
    assert s.task == "region_caption" and s.media.frame_indices == [3, 7]
    assert s.media.path.endswith("videos/clips/a.mp4")
    [o] = s.objects
    assert 0 <= o.id < 16 and s.conversation[0].text == f"What is [{o.id}] doing?"
    assert s.conversation[1].text == "A dog is running."
    assert o.prompt.kind == "mask" and o.prompt.frame == 0
    for pos, t in enumerate([3, 7]):
        np.testing.assert_array_equal(decode(o.masks[pos]), A0[t].astype(bool))
    # seeded: same seed -> same id, and the text never carries <|mem|>
    assert read("videorefer_short_caption", videorefer_root, "train", seed=1)[0].objects[0].id == o.id


def test_videorefer_short_caption_ref(videorefer_root: Path) -> None:
    for kind in ("point", "box"):
        [s] = read("videorefer_short_caption_ref", videorefer_root, "train", prompt_type=kind)
        assert s.conversation[0].text == f"What is {REF} doing?"
        p = s.objects[0].prompt
        assert p.kind == kind
        m = decode(s.objects[0].masks[p.frame])
        if kind == "point":
            x, y = p.point
            assert m[int(y), int(x)]
        else:
            x1, y1, x2, y2 = p.box
            ys, xs = np.nonzero(m)
            assert abs(x1 - xs.min()) <= 2 and abs(x2 - xs.max()) <= 2 and abs(y1 - ys.min()) <= 2


def test_videorefer_qa_and_mem(videorefer_root: Path) -> None:
    [s] = read("videorefer_qa", videorefer_root, "train")  # entry 6 skipped (ratio < 0.3)
    assert s.task == "region_qa"
    assert s.conversation[0].text == "What does [0] give [1]?"
    assert s.conversation[1].text == "[0] gives a ball to [1]."
    assert [o.id for o in s.objects] == [0, 1]
    np.testing.assert_array_equal(decode(s.objects[1].masks[1]), A1[7].astype(bool))

    [m] = read("videorefer_qa_mem", videorefer_root, "train", seed=3)
    assert m.task == "pixelqa"
    text = m.conversation[0].text
    assert text.count(REF) == 2 and f"[0] {REF}" in text and f"[1] {REF}" in text
    assert "\nOptions:\n(" in text and ") [0] gives a ball to [1]." in text
    assert m.conversation[1].text == f"[0] {SEG} [1] {SEG}"
    assert all(o.prompt.kind in ("point", "box") for o in m.objects)


def test_videorefer_missing_mask_file(videorefer_root: Path) -> None:
    (videorefer_root / "masks_qa" / "5.json").unlink()
    with pytest.raises(FileNotFoundError, match="5.json"):
        read("videorefer_qa", videorefer_root, "train")
    # skip mode drops the entry instead
    assert read("videorefer_qa", videorefer_root, "train", on_error="skip") == []


def test_videorefer_missing_annotation_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="videorefer-detailed-caption-125k-wo-masks.json"):
        read("videorefer_detailed_caption", tmp_path, "train")


def test_videorefer_malformed_entry(videorefer_root: Path) -> None:
    data = json.loads((videorefer_root / "videorefer-qa-75k-wo-masks.json").read_text())
    del data[0]["video"]
    dump(videorefer_root / "videorefer-qa-75k-wo-masks.json", data)
    with pytest.raises(ReaderFormatError, match="entry 0: missing field 'video'"):
        read("videorefer_qa", videorefer_root, "train")


# ----------------------------------------------------------------------------------------------------------
# VideoRefer-Bench-Q / -D and PixelQA


@pytest.fixture
def bench_root(tmp_path: Path) -> Path:
    root = tmp_path / "bench"
    q = [
        {
            "id": 0,
            "video": "v0.mp4",
            "Question": "What is <object0><region> doing near <object2><region>?",
            "type": "Basic Questions",
            "options": ["(A) Sleeping", "(B) Eating", "(C) Running", "(D) Sitting"],
            "Answer": "(C) Running",
            "frame_idx": "7",
            "annotation": [
                {str(t): {"segmentation": rle(m)} for t, m in A0.items()},
                {str(t): {"segmentation": rle(m)} for t, m in A1.items()},
            ],
        },
        {
            "id": 1,
            "video": "v1.mp4",
            "Question": "What color is <region>?",
            "type": "Sequential Questions",
            "options": ["Red", "Blue"],
            "Answer": "B",
            "frame_idx": 3,
            "annotation": [{"3": {"segmentation": rle(A0[3])}, "9": {"segmentation": rle(A0[7])}}],
        },
    ]
    dump(root / "VideoRefer-Bench-Q.json", q)
    d = [{**q[1], "caption": "A small red car drives away."}]
    for k in ("Question", "options", "Answer"):
        del d[0][k]
    dump(root / "VideoRefer-Bench-D.json", d)
    return root


def test_bench_q(bench_root: Path) -> None:
    s0, s1 = read("videorefer_bench_q", bench_root, "test")
    assert s0.conversation[0].text == (
        "What is [0] doing near [2]?\nOptions:\n(A) Sleeping\n(B) Eating\n(C) Running\n(D) Sitting\n"
        "Please only give the best option."
    )
    assert len(s0.conversation) == 1 and s0.task == "region_qa"
    assert s0.meta["answer"] == "C" and s0.meta["options"][2] == "Running"
    assert s0.meta["assistant_prefix"] == "The best option is ("
    assert [o.id for o in s0.objects] == [0, 2]
    assert s0.media.frame_indices == [3, 7] and all(o.prompt.frame == 1 for o in s0.objects)
    np.testing.assert_array_equal(decode(s0.objects[1].masks[0]), A1[3].astype(bool))
    assert s1.meta["answer"] == "B" and s1.objects[0].id == 0
    assert "What color is [0]?\nOptions:\n(A) Red\n(B) Blue" in s1.conversation[0].text

    single = read("videorefer_bench_q", bench_root, "test", single_frame=True)[0]
    assert single.media.frame_indices == [3, 7]  # frames still sampled among all annotated frames
    assert not decode(single.objects[0].masks[0]).any()  # only the prompt frame keeps its mask
    np.testing.assert_array_equal(decode(single.objects[0].masks[1]), A0[7].astype(bool))


def test_bench_q_bad_answer(bench_root: Path) -> None:
    data = json.loads((bench_root / "VideoRefer-Bench-Q.json").read_text())
    data[1]["Answer"] = "Z"
    dump(bench_root / "VideoRefer-Bench-Q.json", data)
    with pytest.raises(ReaderFormatError, match="entry 1: answer 'Z' matches none of the options"):
        read("videorefer_bench_q", bench_root, "test")


def test_bench_d(bench_root: Path) -> None:
    [s] = read("videorefer_bench_d", bench_root, "test")
    assert (
        s.conversation[0].text
        == "Please give a detailed description of the highlighted object [0] in the video."
    )
    assert s.meta["caption"] == "A small red car drives away." and s.media.frame_indices == [3, 9]


def test_pixelqa(bench_root: Path) -> None:
    pts = read("pixelqa", bench_root, "test", prompt_type="point")
    s0 = pts[0]
    assert s0.task == "pixelqa"
    assert s0.conversation[0].text == (
        f"What is [0] {REF} doing near [2] {REF}?. Please localize the relevant objects with IDs."
    )
    assert s0.conversation[1].text == f"[0] {SEG} [2] {SEG}"
    assert s0.meta["step_a_prompt"] == s0.conversation[0].text
    assert s0.meta["step_a_response"] == s0.conversation[1].text
    assert s0.meta["step_b_question"].startswith("What is [0] doing near [2]?\nOptions:\n(A) Sleeping")
    assert s0.meta["step_b_question"].endswith("Please only give the best option.")
    assert s0.meta["assistant_prefix"] == "The best option is (" and s0.meta["answer"] == "C"
    # centre point of rect(4, 3, 12, 10) on frame 7 (position 1): farthest from the boundary
    p = s0.objects[0].prompt
    assert p.kind == "point" and p.frame == 1
    assert A0[7][int(p.point[1]), int(p.point[0])] and 6 <= p.point[0] <= 10 and 5 <= p.point[1] <= 8

    boxes = read("pixelqa", bench_root, "test", prompt_type="box")
    assert boxes[0].objects[0].prompt.box == [4.0, 3.0, 12.0, 10.0]
    assert boxes[0].objects[1].prompt.box == [18.0, 12.0, 30.0, 22.0]
    assert boxes[0].objects[0].attributes["prompt_source"] == "mask_tight_box"

    kinds = {
        seed: [
            o.prompt.kind
            for s in read("pixelqa", bench_root, "test", prompt_type="mix", seed=seed)
            for o in s.objects
        ]
        for seed in range(6)
    }
    assert kinds[2] == [
        o.prompt.kind
        for s in read("pixelqa", bench_root, "test", prompt_type="mix", seed=2)
        for o in s.objects
    ]
    assert len({tuple(v) for v in kinds.values()}) > 1  # the seed matters
    with pytest.raises(ValueError, match="prompt_type"):
        read("pixelqa", bench_root, "test", prompt_type="scribble")


def test_pixelqa_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="VideoRefer-Bench-Q.json"):
        read("pixelqa", tmp_path, "test")


# ----------------------------------------------------------------------------------------------------------
# Inst-IT


def test_inst_it_image(tmp_path: Path) -> None:
    dump(
        tmp_path / "inst_it_dataset_image_51k_w_mask.json",
        [
            {
                "image_id": "im1",
                "image_path": "a/im1.jpg",
                "instance_level_caption": {
                    "2": {"short": "A red cup."},
                    "1": {"short": "A man."},
                    "3": {"x": 1},
                },
                "segmentations": {
                    "1": {"mask": rle(A0[3])},
                    "2": {"mask": rle(A1[3])},
                    "3": {"mask": rle(A0[7])},
                },
            }
        ],
    )
    s1, s2 = read("inst_it_image_short_caption_raw_ref", tmp_path, "train", prompt_type="box")
    assert s1.media.is_image and s1.media.path.endswith("images/a/im1.jpg")
    assert s1.conversation[0].text in (
        "Give me a short description of <|ref|>.",
        "Could you describe the region shown as <|ref|> in the picture concisely?",
    )
    assert (s1.conversation[1].text, s2.conversation[1].text) == ("A man.", "A red cup.")
    np.testing.assert_array_equal(decode(s2.objects[0].masks[0]), A1[3].astype(bool))


@pytest.fixture
def instit_video_root(tmp_path: Path) -> Path:
    segs = {
        "000002.jpg": {"3": {"mask": rle(A0[3])}, "1": {"mask": rle(A1[3])}},
        "000010.jpg": {"3": {"mask": rle(A0[7])}},
    }
    dump(
        tmp_path / "inst_it_dataset_video_21k_w_mask.json",
        [
            {
                "video_id": "v9",
                "video_path": "v9",
                "question_answer_pairs": [
                    {"question": "What does [3] do to [1] at <1>?", "answer": "[3] pushes [1]."},
                    {"question": "Where is [7]?", "answer": "Gone."},  # [7] has no mask: skipped
                ],
                "segmentations": segs,
            }
        ],
    )
    return tmp_path


def test_inst_it_video_qa(instit_video_root: Path) -> None:
    [s] = read("inst_it_video_qa_raw", instit_video_root, "train", single_frame_prob=0.0)
    assert (
        s.conversation[0].text == "What does [3] do to [1] at <1>?"
        and s.conversation[1].text == "[3] pushes [1]."
    )
    assert [o.id for o in s.objects] == [1, 3]  # sorted ids, not set order (design doc §10.11)
    assert s.media.frames[0].endswith("videos/v9/000002.jpg") and len(s.media.frames) == 2
    obj3 = s.objects[1]
    np.testing.assert_array_equal(decode(obj3.masks[1]), A0[7].astype(bool))
    assert not decode(s.objects[0].masks[1]).any()  # absent on frame 2: explicit empty mask
    [one] = read("inst_it_video_qa_raw", instit_video_root, "train", single_frame_prob=1.0)
    assert one.meta["single_frame_masks"] and not decode(one.objects[1].masks[1]).any()


def test_inst_it_video_qa_mem(instit_video_root: Path) -> None:
    [s] = read("inst_it_video_qa_raw_mem", instit_video_root, "train", seed=4)
    text = s.conversation[0].text
    assert text.count(REF) == 2 and text.index(f"[3] {REF}") < text.index(f"[1] {REF}")
    assert [o.id for o in s.objects] == [3, 1]  # first-mention order = <|ref|> order
    assert s.conversation[1].text == f"[3] {SEG} [1] {SEG}"


def test_inst_it_malformed(instit_video_root: Path) -> None:
    p = instit_video_root / "inst_it_dataset_video_21k_w_mask.json"
    data = json.loads(p.read_text())
    data[0]["question_answer_pairs"][0] = {"question": "only a question"}
    dump(p, data)
    with pytest.raises(
        ReaderFormatError, match=r"question_answer_pairs\[0\] needs string 'question' and 'answer'"
    ):
        read("inst_it_video_qa_raw", instit_video_root, "train")


# ----------------------------------------------------------------------------------------------------------
# Osprey


def poly(x1: int, y1: int, x2: int, y2: int) -> list[list[float]]:
    return [[x1, y1, x2, y1, x2, y2, x1, y2]]


def test_osprey(tmp_path: Path) -> None:
    base = {
        "height": H,
        "width": W,
        "annotation": [{"segmentation": poly(2, 2, 10, 10)}, {"segmentation": rle(A1[3])}],
    }
    dump(
        tmp_path / "osprey_conversation.json",
        [
            {
                **base,
                "id": 7,
                "file_name": "COCO_train2014_000000000042.jpg",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat is <region1> next to <region2>?"},
                    {"from": "gpt", "value": "<region1> is a cat beside a dog."},
                ],
            }
        ],
    )
    dump(
        tmp_path / "osprey_detail_description.json",
        [
            {
                **base,
                "file_name": "000000000042.jpg",
                "description": ["<region1>: A cat.", "<region2>: A dog."],
            }
        ],
    )
    [c] = read("osprey_conversation", tmp_path, "train")
    assert c.media.path.endswith("images/000000000042.jpg") and c.media.is_image
    assert c.conversation[0].text == "What is [1] next to [2]?"
    assert c.conversation[1].text == "[1] is a cat beside a dog."
    assert [o.id for o in c.objects] == [1, 2]
    expect = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly(2, 2, 10, 10), H, W))).astype(
        bool
    )
    np.testing.assert_array_equal(decode(c.objects[0].masks[0]), expect)
    [d] = read("osprey_detail_description", tmp_path, "train")
    assert d.conversation[0].text == (
        "Can you provide me with a detailed description of the region in the picture marked by [1]?"
    )
    assert [t.text for t in d.conversation[1::2]] == ["A cat.", "A dog."]
    with pytest.raises(FileNotFoundError, match="osprey_lvis_positive_negative.json"):
        read("osprey_pos_neg", tmp_path, "train")


def test_osprey_bad_region_tag(tmp_path: Path) -> None:
    dump(
        tmp_path / "osprey_lvis_positive_negative.json",
        [
            {
                "file_name": "x.jpg",
                "height": H,
                "width": W,
                "annotation": [{"segmentation": rle(A0[3])}],
                "conversations": [
                    {"from": "human", "value": "Is <region3> a cat?"},
                    {"from": "gpt", "value": "No"},
                ],
            }
        ],
    )
    with pytest.raises(ReaderFormatError, match="<region3> but the entry has 1 regions"):
        read("osprey_pos_neg", tmp_path, "train")


# ----------------------------------------------------------------------------------------------------------
# ViCaS


def _vicas_ann(inline: bool) -> dict:
    segs = [
        {"is_gt": True, "track_ids": [1, 2], "mask_rles": [rle(A0[3]), rle(A1[3])]},
        {"is_gt": False, "track_ids": [], "mask_rles": []},
        {"is_gt": True, "track_ids": [2], "mask_rles": [rle(A1[7])]},
    ]
    if not inline:
        for s in segs:
            del s["mask_rles"]
    return {
        "video_id": "vid1",
        "height": H,
        "width": W,
        "object_referrals": [
            {"prompt": "The dog chasing the ball", "track_ids": [1]},
            {"prompt": "Both animals", "track_ids": [1, 2]},
        ],
        "segmentations": segs,
    }


def test_vicas_inline(tmp_path: Path) -> None:
    dump(tmp_path / "splits" / "v1.0" / "train.json", ["vid1"])
    dump(tmp_path / "annotations" / "v1.0" / "vid1.json", _vicas_ann(inline=True))
    a, b = read("vicas", tmp_path, "train")
    assert a.task == "ref_seg" and a.media.frame_indices == [0, 2]  # the is_gt=False frame is left out
    assert a.conversation[0].text.startswith("The dog chasing the ball ")
    assert SEG in a.conversation[1].text
    np.testing.assert_array_equal(decode(a.objects[0].masks[0]), A0[3].astype(bool))
    assert not decode(a.objects[0].masks[1]).any()  # track 1 absent on frame 2
    np.testing.assert_array_equal(decode(b.objects[0].masks[0]), (A0[3] | A1[3]).astype(bool))
    dump(tmp_path / "splits" / "v1.0" / "val.json", ["vid1"])
    [v, _] = read("vicas", tmp_path, "val")
    assert v.conversation[0].text == "The dog chasing the ball Please provide the segmentation mask."
    assert v.conversation[1].text == "The target is <|seg|>."


def test_vicas_wo_masks(tmp_path: Path) -> None:
    dump(tmp_path / "splits" / "v1.0" / "train.json", ["vid1"])
    dump(tmp_path / "annotations_wo_masks_v1.0.json", [_vicas_ann(inline=False)])
    dump(tmp_path / "masks" / "vid1" / "0.json", [rle(A0[3]), rle(A1[3])])
    with pytest.raises(FileNotFoundError, match=r"vid1/2\.json"):
        read("vicas", tmp_path, "train")
    dump(tmp_path / "masks" / "vid1" / "2.json", {"track_ids": [2], "mask_rles": [rle(A1[7])]})
    _, b = read("vicas", tmp_path, "train")
    np.testing.assert_array_equal(decode(b.objects[0].masks[1]), A1[7].astype(bool))


def test_vicas_missing_split(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"splits/v1.0/test\.json"):
        read("vicas", tmp_path, "test")


# ----------------------------------------------------------------------------------------------------------
# semantic / part segmentation


def _png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.astype(np.uint8)).save(path)


def test_ade20k(tmp_path: Path) -> None:
    lab = np.zeros((H, W), dtype=np.uint8)
    lab[:8] = 1  # "wall"
    lab[8:16, :10] = 3  # "sky"
    lab[16:, 20:] = 4  # "The Floor." -> "Floor" (first char lower-cased, "the " dropped)
    lab[16:, :5] = 2  # "building"
    _png(tmp_path / "ade20k" / "annotations" / "training" / "ADE_1.png", lab)
    dump(tmp_path / "ade20k" / "ade20k_classes.json", ["wall", "building", "sky", "The Floor."])
    [s] = read("ade20k", tmp_path, "train", seed=0)
    assert s.media.path.endswith("ade20k/images/training/ADE_1.jpg") and s.media.is_image
    assert len(s.objects) == 3 and len(s.conversation) == 6
    names = {"wall": 1, "building": 2, "sky": 3, "Floor": 4}
    for k, o in enumerate(s.objects):
        cname = o.attributes["class_name"]
        clean = "Floor" if cname == "The Floor." else cname
        assert clean in s.conversation[2 * k].text
        assert SEG in s.conversation[2 * k + 1].text
        np.testing.assert_array_equal(decode(o.masks[0]), lab == names[clean])
    again = read("ade20k", tmp_path, "train", seed=0)[0]
    assert [t.text for t in again.conversation] == [t.text for t in s.conversation]
    assert len(read("ade20k", tmp_path, "train", max_classes=1)[0].objects) == 1


def test_cocostuff_ignores_dash_classes(tmp_path: Path) -> None:
    lab = np.full((H, W), 255, dtype=np.uint8)
    lab[:5] = 0
    lab[10:] = 1
    _png(tmp_path / "cocostuff" / "train2017" / "000000000009.png", lab)
    (tmp_path / "cocostuff").mkdir(exist_ok=True)
    (tmp_path / "cocostuff" / "cocostuff_classes.txt").write_text("0: person\n1: wall-brick\n")
    [s] = read("cocostuff", tmp_path, "train")
    assert [o.attributes["class_name"] for o in s.objects] == ["person"]
    assert s.media.path.endswith("coco/train2017/000000000009.jpg")


def test_mapillary(tmp_path: Path) -> None:
    lab = np.full((H, W), 2, dtype=np.uint8)  # "unlabeled" everywhere but one car
    lab[4:9, 6:20] = 1
    _png(tmp_path / "mapillary" / "training" / "v2.0" / "labels" / "m1.png", lab)
    labels = [{"readable": "Bird"}, {"readable": "Car"}, {"readable": "Unlabeled"}]
    dump(tmp_path / "mapillary" / "config_v2.0.json", {"labels": labels})
    [s] = read("mapillary", tmp_path, "train")
    [o] = s.objects
    assert o.attributes["class_name"] == "car" and "car" in s.conversation[0].text
    np.testing.assert_array_equal(decode(o.masks[0]), lab == 1)
    assert s.media.path.endswith("mapillary/training/images/m1.jpg")


def test_mapillary_missing_config(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config_v2.0.json"):
        read("mapillary", tmp_path, "train")


def test_paco_lvis_parts(tmp_path: Path) -> None:
    coco = {
        "images": [{"id": 1, "file_name": "train2017/000000000001.jpg", "height": H, "width": W}],
        "categories": [{"id": 10, "name": "bottle_(drink):cap"}, {"id": 11, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 10, "segmentation": poly(1, 1, 5, 5)},
            {"id": 2, "image_id": 1, "category_id": 10, "segmentation": poly(20, 10, 25, 15)},
            {"id": 3, "image_id": 1, "category_id": 11, "segmentation": poly(0, 0, 30, 20)},
        ],
    }
    dump(tmp_path / "vlpart" / "paco" / "annotations" / "paco_lvis_v1_train.json", coco)
    [s] = read("paco_lvis", tmp_path, "train")
    [o] = s.objects  # the whole-object category "dog" is not a part
    assert s.meta["names"][0] in ("bottle cap", "cap of the bottle")
    assert s.meta["names"][0] in s.conversation[0].text
    expect = mask_utils.decode(
        mask_utils.merge(mask_utils.frPyObjects(poly(1, 1, 5, 5) + poly(20, 10, 25, 15), H, W))
    ).astype(bool)
    np.testing.assert_array_equal(decode(o.masks[0]), expect)
    assert s.media.path.endswith("coco/train2017/000000000001.jpg")
    coco["annotations"][0].pop("segmentation")
    dump(tmp_path / "vlpart" / "paco" / "annotations" / "paco_lvis_v1_train.json", coco)
    with pytest.raises(ReaderFormatError, match="needs image_id, category_id and segmentation"):
        read("paco_lvis", tmp_path, "train")


# ----------------------------------------------------------------------------------------------------------
# general QA


def test_llava_and_videogpt_plus(tmp_path: Path) -> None:
    dump(
        tmp_path / "llava_v1_5_mix665k_with_videogpt_plus_576k.json",
        [
            {
                "id": "a",
                "image": "coco/train2017/1.jpg",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat is this?"},
                    {"from": "gpt", "value": "A cat."},
                    {"from": "human", "value": "Color?"},
                    {"from": "gpt", "value": "Black."},
                ],
            },
            {
                "id": "b",
                "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
            },
            {
                "id": "c",
                "video": "vid/2.mp4",
                "conversations": [
                    {"from": "human", "value": "<video>\nDescribe."},
                    {"from": "gpt", "value": "People dance."},
                ],
            },
        ],
    )
    a, c = read("llava_instruct_665k_videogpt_plus_576k", tmp_path, "train")
    assert (
        a.task == "general_qa"
        and a.media.is_image
        and [t.text for t in a.conversation] == ["What is this?", "A cat.", "Color?", "Black."]
    )
    assert not c.media.is_image and c.conversation[0].text == "Describe."
    with pytest.raises(ReaderFormatError, match="entry 1: text-only"):
        read("llava_instruct_665k_videogpt_plus_576k", tmp_path, "train", text_only="raise")
    with pytest.raises(FileNotFoundError, match="llava_v1_5_mix665k.json"):
        read("llava_instruct_665k", tmp_path, "train")

    dump(
        tmp_path / "instruction_tuning" / "vcg.json",
        [
            {
                "id": 1,
                "video": "x.mp4",
                "conversations": [
                    {"from": "human", "value": "<video>\nWhat happens?"},
                    {"from": "gpt", "value": "A goal."},
                ],
            }
        ],
    )
    dump(
        tmp_path / "instruction_tuning" / "bad.json",
        [{"id": 2, "video": "y.mp4", "conversations": [{"from": "gpt", "value": "answer first"}]}],
    )
    with pytest.raises(ReaderFormatError, match="bad.json entry 0: conversation turns must alternate"):
        read("videogpt_plus_576k", tmp_path, "train")
    [v] = read(
        "videogpt_plus_576k", tmp_path, "train", ann_files=["vcg.json"], video_dirs={"vcg.json": "/data/vcg"}
    )
    assert v.media.path == "/data/vcg/x.mp4" and v.conversation[1].text == "A goal."


def test_mvbench(tmp_path: Path) -> None:
    dump(
        tmp_path / "json" / "action_sequence.json",
        [
            {
                "video": "A1.mp4",
                "question": "What did the person do first?",
                "candidates": ["Sat", "Ran", "Ate"],
                "answer": "Ran",
                "start": 1.5,
                "end": 8.0,
            }
        ],
    )
    dump(
        tmp_path / "json" / "episodic_reasoning.json",
        [{"video": "ep1", "question": "Who spoke?", "candidates": ["Ross", "Joey"], "answer": "Joey"}],
    )
    a, e = read("mvbench", tmp_path, "test", tasks=["Action Sequence", "Episodic Reasoning"])
    assert a.conversation[0].text == (
        "What did the person do first?\nOptions:\n(A) Sat\n(B) Ran\n(C) Ate\nPlease only give the best option."
    )
    assert a.meta["answer"] == "B" and a.meta["assistant_prefix"] == "Best Option: ("
    assert (a.meta["start"], a.meta["end"]) == (1.5, 8.0) and a.meta["task"] == "Action Sequence"
    assert a.media.path.endswith("video/star/Charades_v1_480/A1.mp4")
    assert e.meta["frame_folder"] and e.meta["answer"] == "B"
    with pytest.raises(FileNotFoundError, match="action_prediction.json.*action_antonym.json"):
        read("mvbench", tmp_path, "test")
    with pytest.raises(ValueError, match="unknown MVBench task"):
        read("mvbench", tmp_path, "test", tasks=["Nope"])


def test_videomme(tmp_path: Path) -> None:
    rows = [
        {
            "video_id": "001",
            "duration": "short",
            "domain": "Sports",
            "sub_category": "Football",
            "videoID": "abc",
            "question_id": "001-1",
            "task_type": "Counting Problem",
            "question": "How many goals?",
            "options": ["A. 1", "B. 2", "C. 3", "D. 4"],
            "answer": "C",
        },
    ]
    (tmp_path / "videomme.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "subtitle").mkdir()
    (tmp_path / "subtitle" / "abc.srt").write_text(
        "1\n00:00:01,000 --> 00:00:02,000\n<i>Goal!</i>\n\n2\n00:00:03,000 --> 00:00:04,000\nWhat a shot\n"
    )
    [s] = read("videomme", tmp_path, "test", ann_file="videomme.jsonl", subtitles=True)
    assert s.conversation[0].text == (
        "How many goals?\nOptions:\n(A) 1\n(B) 2\n(C) 3\n(D) 4\nPlease only give the best option."
    )
    assert s.meta["answer"] == "C" and s.meta["subtitles"] == ["Goal!", "What a shot"]
    assert s.media.path.endswith("data/abc.mp4") and s.meta["duration"] == "short"
    with pytest.raises(FileNotFoundError, match="test-00000-of-00001.parquet"):
        read("videomme", tmp_path, "test")
    rows[0]["options"] = "A. 1"
    dump(tmp_path / "bad.json", rows)
    with pytest.raises(ReaderFormatError, match="row 0: 'options' must be a non-empty list"):
        read("videomme", tmp_path, "test", ann_file="bad.json")

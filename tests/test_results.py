"""Tests for unipixel.results: MaskTrack conversions, id/label/clean-text rules, build_result and JSON I/O."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from unipixel import results as R
from unipixel.results import (
    MaskTrack,
    ObjectResult,
    UniPixelResult,
    assign_object_ids,
    build_result,
    clean_answer_text,
    decode_rle,
    encode_rle,
    find_seg_spans,
    guess_label,
)

SEG = "<|seg|>"


def _rand_masks(t: int, h: int, w: int, seed: int = 0, p: float = 0.4) -> np.ndarray:
    return np.random.default_rng(seed).random((t, h, w)) < p


# ----------------------------------------------------------------------------------------------------------
# RLE / MaskTrack


@pytest.mark.parametrize("shape", [(3, 7, 5), (1, 1, 1), (2, 33, 17), (4, 16, 16)])
def test_rle_round_trip_exact(shape):
    m = _rand_masks(*shape, seed=sum(shape))
    m[0] = False  # an empty frame
    rles = encode_rle(m)
    assert len(rles) == shape[0]
    assert all(isinstance(r["counts"], str) and r["size"] == list(shape[1:]) for r in rles)
    json.dumps(rles)  # JSON-ready
    back = decode_rle(rles)
    assert back.dtype == np.bool_ and back.flags.c_contiguous
    np.testing.assert_array_equal(back, m)


def test_masktrack_conversions_and_single_pixel():
    m = np.zeros((3, 9, 11), dtype=bool)
    m[1, 4, 7] = True  # single pixel
    m[2, 2:5, 1:4] = True
    tr = MaskTrack(m, frame_indices=[10, 20, 30])
    assert len(tr) == 3 and tr.size == (9, 11)
    np.testing.assert_array_equal(tr.areas(), [0, 1, 9])
    assert tr.boxes() == [None, (7, 4, 8, 5), (1, 2, 4, 5)]
    assert tr.boxes(inclusive=True) == [None, (7, 4, 7, 4), (1, 2, 3, 4)]
    np.testing.assert_array_equal(tr.present(), [20, 30])
    assert tr.row_of(20) == 1 and tr.row_of(21) is None
    np.testing.assert_array_equal(tr.mask_at(20), m[1])
    assert tr.mask_at(5) is None
    assert tr.rle(1) == tr.rles()[1]
    assert tr.rle_at(20) == tr.rle(1) and tr.rle_at(21) is None
    assert tr.first_present() == 20 and MaskTrack(np.zeros((2, 9, 11), bool)).first_present() is None
    assert mask_utils.area(tr.rles()).tolist() == [0, 1, 9]
    np.testing.assert_array_equal(tr.array(), m)


def test_masktrack_compact_drops_dense_and_keeps_content():
    m = np.zeros((8, 64, 64), dtype=bool)
    m[:, 10:30, 20:40] = True
    tr = MaskTrack(m)
    dense_bytes = tr.nbytes
    assert not tr.is_compact
    assert tr.compact() is tr and tr.is_compact
    assert tr.nbytes < dense_bytes / 10
    np.testing.assert_array_equal(tr.array(), m)
    np.testing.assert_array_equal(tr.mask(3), m[3])
    np.testing.assert_array_equal(tr.areas(), m.reshape(8, -1).sum(1))
    assert tr.boxes()[0] == (20, 10, 40, 30)
    # returned arrays are copies: mutating them must not corrupt the track
    a = tr.array()
    a[:] = False
    assert tr.areas().sum() == m.sum()


def test_masktrack_from_torch_and_logits():
    logits = torch.randn(2, 6, 5, dtype=torch.bfloat16)
    tr = MaskTrack(logits)  # floats = logits > 0
    np.testing.assert_array_equal(tr.array(), logits.float().numpy() > 0)
    tr2 = MaskTrack.from_logits(logits[None], threshold=0.5)  # (1, T, H, W) as the reference stores it
    np.testing.assert_array_equal(tr2.array(), logits.float().numpy() > 0.5)
    tr3 = MaskTrack(torch.ones(4, 3, dtype=torch.bool))  # (H, W) -> one frame
    assert len(tr3) == 1 and tr3.areas().tolist() == [12]


def test_masktrack_from_rles_variants():
    m = _rand_masks(3, 5, 7, seed=3)
    rles = encode_rle(m)
    # bytes counts, None entries and uncompressed list counts are all accepted
    as_bytes = [{"size": r["size"], "counts": r["counts"].encode()} for r in rles]
    tr = MaskTrack.from_rles([as_bytes[0], None, rles[2]], frame_indices=[0, 4, 8])
    np.testing.assert_array_equal(tr.array()[0], m[0])
    assert not tr.array()[1].any()
    np.testing.assert_array_equal(tr.array()[2], m[2])
    unc = {"size": [5, 7], "counts": [7, 1, 27]}  # column-major runs: 7 zeros, 1 one, 27 zeros
    one = MaskTrack.from_rles([unc])
    assert one.areas().tolist() == [1] and one.array()[0, 2, 1]
    assert len(MaskTrack.from_rles([None, None], size=(2, 3))) == 2
    with pytest.raises(ValueError, match="size"):
        MaskTrack.from_rles([None])
    with pytest.raises(ValueError, match="size"):
        MaskTrack.from_rles(rles, size=(9, 9))


def test_masktrack_validation():
    with pytest.raises(ValueError, match="exactly one"):
        MaskTrack()
    with pytest.raises(ValueError, match="frame_indices"):
        MaskTrack(np.zeros((2, 3, 3), bool), frame_indices=[0])
    with pytest.raises(ValueError, match="unique"):
        MaskTrack(np.zeros((2, 3, 3), bool), frame_indices=[1, 1])
    with pytest.raises(ValueError, match="shape"):
        MaskTrack(np.zeros((1, 2, 3, 3), bool)[:, :, :, :, None])


def test_masktrack_streaming_append_matches_batch():
    m = _rand_masks(5, 13, 9, seed=7)
    tr = MaskTrack.empty((13, 9))
    assert len(tr) == 0 and tr.array().shape == (0, 13, 9) and tr.boxes() == []
    for i, f in enumerate(m):
        tr.append(i * 2, f)
    assert tr.is_compact
    np.testing.assert_array_equal(tr.array(), m)
    np.testing.assert_array_equal(tr.frame_indices, np.arange(5) * 2)
    assert tr.rles() == MaskTrack(m).rles()
    with pytest.raises(ValueError, match="already"):
        tr.append(2, m[0])
    with pytest.raises(ValueError, match="append expects"):
        tr.append(99, np.zeros((3, 3), bool))
    # appending to a dense track compacts it first and keeps earlier rows
    dense = MaskTrack(m[:2])
    dense.append(7, m[2])
    np.testing.assert_array_equal(dense.array(), m[:3])


def test_masktrack_dict_round_trip():
    m = _rand_masks(2, 4, 6, seed=1)
    tr = MaskTrack(m, [3, 9])
    back = MaskTrack.from_dict(json.loads(json.dumps(tr.to_dict())))
    np.testing.assert_array_equal(back.array(), m)
    np.testing.assert_array_equal(back.frame_indices, [3, 9])


# ----------------------------------------------------------------------------------------------------------
# answer text: spans, ids, labels, clean text


def test_special_tokens_match_tokenizer_module():
    from unipixel import tokenizer

    assert (R.REF_TOKEN, R.SEG_TOKEN, R.MEM_TOKEN) == (
        tokenizer.REF_TOKEN,
        tokenizer.SEG_TOKEN,
        tokenizer.MEM_TOKEN,
    )


def test_find_seg_spans():
    text = f"a {SEG} b{SEG}"
    spans = find_seg_spans(text)
    assert spans == [(2, 9), (11, 18)]
    assert all(text[s:e] == SEG for s, e in spans)
    assert find_seg_spans("no masks here") == []


def test_assign_object_ids():
    t = f"[1] {SEG} and the cat {SEG} and [0]: {SEG}"
    assert assign_object_ids(t, find_seg_spans(t)) == [1, 2, 0]
    t2 = f"the dog {SEG}, the cat {SEG}"
    assert assign_object_ids(t2, find_seg_spans(t2)) == [0, 1]
    # duplicates: the first "[0]" keeps 0, the second becomes the next free id
    t3 = f"[0] {SEG} [0] {SEG}"
    assert assign_object_ids(t3, find_seg_spans(t3)) == [0, 1]
    # input objects (no span) come first and take free ids
    t4 = f"[0] {SEG}"
    assert assign_object_ids(t4, find_seg_spans(t4), num_objects=3) == [1, 2, 0]
    with pytest.raises(ValueError):
        assign_object_ids(t2, find_seg_spans(t2), num_objects=1)
    # a chat session's earlier ids are reserved for unnamed objects; a named object keeps its id
    t5 = f"the dog {SEG}, [0] {SEG}, the cat {SEG}"
    assert assign_object_ids(t5, find_seg_spans(t5), reserved={0, 1}) == [2, 0, 3]


def test_guess_label():
    t = f"Sure, the tallest giraffe {SEG} is next to [3] {SEG}, and it is {SEG}. His left hand {SEG}"
    spans = find_seg_spans(t)
    assert [guess_label(t, s) for s in spans] == ["the tallest giraffe", None, None, "His left hand"]
    long = "x " * 3 + "the " + " ".join(f"w{i}" for i in range(20)) + f" {SEG}"
    assert guess_label(long, find_seg_spans(long)[0]) == "the w0 w1 w2 w3 w4 w5 w6"
    for text, want in ((f"Sure, the red car is {SEG}.", "the red car"), (f"The target is {SEG}.", None),
                       (f"Sure, the segmentation mask is {SEG}.", None), (f"The small blue cross {SEG}", "The small blue cross")):
        assert guess_label(text, find_seg_spans(text)[0]) == want, text


@pytest.mark.parametrize(
    ("text", "ids", "expected"),
    [
        (f"It is {SEG}.<|im_end|>", [0], "It is [0]."),
        (f"[0] {SEG} the man and [1] {SEG}.", [0, 1], "[0] the man and [1]."),
        (f"The dog{SEG}is here", [2], "The dog [2] is here"),
        (f"  {SEG} <|endoftext|>", [0], "[0]"),
        (f"[5] {SEG}.", [0], "[5] [0]."),  # marker names another id -> the real id is inserted
        ("no seg <|im_end|>", [], "no seg"),
    ],
)
def test_clean_answer_text(text, ids, expected):
    clean, spans = clean_answer_text(text, find_seg_spans(text), ids)
    assert clean == expected
    for sp, i in zip(spans, ids, strict=True):
        assert sp is not None and clean[sp[0] : sp[1]] == f"[{i}]"


def test_clean_answer_text_without_insertion():
    text = f"It is {SEG}. [1] {SEG}"
    clean, spans = clean_answer_text(text, find_seg_spans(text), [0, 1], insert_ids=False)
    assert clean == "It is. [1]"
    assert spans[0] is None and clean[spans[1][0] : spans[1][1]] == "[1]"


# ----------------------------------------------------------------------------------------------------------
# build_result / UniPixelResult


def _example_result() -> tuple[UniPixelResult, list[np.ndarray]]:
    text = f"Sure, the red car {SEG} is behind [3] {SEG}.<|im_end|>"
    masks = [_rand_masks(4, 10, 12, seed=s) for s in range(3)]
    logits = [torch.tensor([0.0, 2.0, -2.0, 1.0]), None, np.array([[-1.0], [0.0], [0.5], [4.0]])]
    res = build_result(
        text,
        tracks=[
            torch.from_numpy(masks[0]),
            masks[1].astype(np.float32) * 2 - 1,
            MaskTrack(masks[2], [0, 5, 10, 15]),
        ],
        object_score_logits=logits,
        frame_indices=[0, 5, 10, 15],
        llm_frame_indices=[0, 15],
        token_indices=[None, 41, 57],
        media={"source": Path("clip.mp4"), "fps": np.float64(25.0), "is_image": False},
        timings={"generate": 1.5},
        prompt="Where is the car?",
    )
    return res, masks


def test_build_result_objects():
    res, masks = _example_result()
    assert res.clean_text == "Sure, the red car [1] is behind [3]."
    assert res.ids == [0, 1, 3]
    inp, car, other = res.objects
    assert inp.source == "input" and inp.span is None and inp.clean_span is None and inp.label is None
    assert (
        car.source == "generated"
        and res.text[car.span[0] : car.span[1]] == SEG
        and car.label == "the red car"
    )
    assert res.text[other.span[0] : other.span[1]] == f"[3] {SEG}" and other.label is None
    assert res.clean_text[other.clean_span[0] : other.clean_span[1]] == "[3]"
    np.testing.assert_allclose(inp.scores, 1 / (1 + np.exp(-np.array([0.0, 2.0, -2.0, 1.0]))), rtol=1e-6)
    assert car.scores == [] and car.mean_score is None
    assert len(other.scores) == 4 and other.scores[1] == 0.5
    assert other.token_index == 57 and inp.token_index is None
    assert res.frame_indices == [0, 5, 10, 15] and res.llm_frame_indices == [0, 15]
    assert res.frame_size == (10, 12)
    assert all(o.masks.is_compact for o in res.objects)
    for o, m in zip(res.objects, masks, strict=True):
        np.testing.assert_array_equal(o.masks.array(), m)
    assert res.object(3) is other
    with pytest.raises(KeyError):
        res.object(2)


def test_build_result_no_objects_and_errors():
    res = build_result("I cannot find it.<|im_end|>", tracks=[], frame_size=(4, 5), frame_indices=[0, 1])
    assert res.objects == [] and res.clean_text == "I cannot find it." and res.frame_indices == [0, 1]
    assert res.label_map(0).shape == (4, 5) and not res.label_map(0).any()
    with pytest.raises(ValueError, match="only 0 mask tracks"):
        build_result(f"it is {SEG}", tracks=[])
    with pytest.raises(ValueError, match="size"):
        build_result(f"{SEG}{SEG}", tracks=[np.zeros((1, 3, 3), bool), np.zeros((1, 4, 3), bool)])
    with pytest.raises(ValueError, match="scores"):
        build_result(f"{SEG}", tracks=[np.zeros((2, 3, 3), bool)], scores=[[0.5]])
    with pytest.raises(ValueError, match="labels"):
        build_result(f"{SEG}", tracks=[np.zeros((2, 3, 3), bool)], labels=["a", "b"])
    with pytest.raises(ValueError, match="either"):
        build_result(
            f"{SEG}", tracks=[np.zeros((1, 3, 3), bool)], scores=[[1.0]], object_score_logits=[[1.0]]
        )


def test_build_result_explicit_sources_and_labels():
    text = f"[0] {SEG} [1] {SEG}"
    res = build_result(
        text,
        tracks=[np.ones((1, 2, 2), bool)] * 2,
        sources=["input", "input"],
        labels=["man", None],
        compact=False,
    )
    assert [o.source for o in res.objects] == ["input", "input"]
    assert [o.label for o in res.objects] == ["man", None]
    assert not res.objects[0].masks.is_compact


def test_label_map_overlap_rules():
    a = np.zeros((1, 4, 4), bool)
    a[0, :, :3] = True
    b = np.zeros((1, 4, 4), bool)
    b[0, :, 2:] = True
    res = build_result(f"{SEG} {SEG}", tracks=[a, b], scores=[[0.9], [0.2]])
    last = res.label_map(0)
    assert (last[:, :2] == 1).all() and (last[:, 2:] == 2).all()
    by_score = res.label_map(0, overlap="score")
    assert (by_score[:, :3] == 1).all() and (by_score[:, 3] == 2).all()
    with pytest.raises(ValueError, match="overlap"):
        res.label_map(0, overlap="max")  # type: ignore[arg-type]


def test_to_dict_from_dict_json_round_trip(tmp_path):
    res, masks = _example_result()
    d = res.to_dict()
    s = json.dumps(d)  # fully JSON-serialisable (numpy scalars, paths converted)
    assert d["format"] == "unipixel-result" and d["version"] == 1
    assert d["media"] == {"source": "clip.mp4", "fps": 25.0, "is_image": False}
    assert d["objects"][1]["boxes"][0] == list(res.objects[1].masks.boxes()[0])
    back = UniPixelResult.from_dict(json.loads(s))
    assert back.to_dict() == d
    for o, m in zip(back.objects, masks, strict=True):
        np.testing.assert_array_equal(o.masks.array(), m)

    path = tmp_path / "sub" / "result.json"
    assert res.to_json(path) == path
    loaded = UniPixelResult.from_json(path)
    assert loaded.to_dict() == d
    assert os.listdir(path.parent) == ["result.json"]
    assert (path.stat().st_mode & 0o777) == (0o666 & ~R._UMASK)

    light = res.to_dict(include_masks=False)
    assert "masks" not in light["objects"][0]
    with pytest.raises(ValueError, match="include_masks"):
        UniPixelResult.from_dict(light)
    with pytest.raises(ValueError, match="format"):
        UniPixelResult.from_dict({**d, "format": "other"})
    with pytest.raises(ValueError, match="newer"):
        UniPixelResult.from_dict({**d, "version": 99})


def test_object_result_defaults_round_trip():
    o = ObjectResult(id=4, masks=MaskTrack(np.zeros((1, 2, 2), bool)))
    back = ObjectResult.from_dict(o.to_dict())
    assert back.id == 4 and back.scores == [] and back.span is None and back.source == "generated"
    assert back.masks.boxes() == [None]


def test_to_json_is_atomic(tmp_path, monkeypatch):
    res, _ = _example_result()
    path = tmp_path / "r.json"
    path.write_text("previous")

    def boom(self, data, encoding=None):
        with open(self, "w") as f:
            f.write(data[:10])  # partial write, then failure
        raise OSError("disk full")

    monkeypatch.setattr(Path, "write_text", boom)
    with pytest.raises(OSError, match="disk full"):
        res.to_json(path)
    monkeypatch.undo()
    assert path.read_text() == "previous"  # old content intact
    assert os.listdir(tmp_path) == ["r.json"]  # no temp file left
    with pytest.raises(IsADirectoryError):
        res.to_json(tmp_path)

"""Tests for the synthetic world generator (unipixel.synth) and the "synthetic" dataset reader."""

from __future__ import annotations

import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from unipixel.data.registry import read_dataset
from unipixel.data.schema import Sample, validate_sample
from unipixel.synth import SynthOptions, build_records, generate_split, split_seed
from unipixel.synth.cli import main
from unipixel.synth.language import (
    ATTR_ORDER,
    matches,
    multi_expressions,
    reasoning_queries,
    referring_expressions,
)
from unipixel.synth.world import COLORS, SHAPES, SIZES, TEXTURES, SceneConfig, decode_rle, make_video_scene

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools vs numpy 2 copy= warning

SMALL = SynthOptions(seed=3, split="test", num_images=24, num_videos=12)


@pytest.fixture(scope="module")
def split_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "test"
    generate_split(SMALL, out)
    return out


@pytest.fixture(scope="module")
def records():  # type: ignore[no-untyped-def]
    return build_records(SMALL)


def _samples(root: Path) -> list[Sample]:
    return [Sample.from_dict(json.loads(line)) for line in (root / "samples.jsonl").read_text().splitlines()]


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _parse_np(text: str) -> dict[str, str]:
    """Inverse of noun_phrase for attribute expressions ("large red circle", "striped object")."""
    vocab = {"size": SIZES, "texture": TEXTURES, "color": tuple(COLORS), "shape": SHAPES}
    desc = {}
    for word in text.split():
        for key in ATTR_ORDER:
            if word in vocab[key]:
                desc[key] = word
        if word.endswith("es") and word[:-2] in SHAPES:
            desc["shape"] = word[:-2]
        elif word.endswith("s") and word[:-1] in SHAPES:
            desc["shape"] = word[:-1]
    return desc


# ------------------------------------------------------------------------------------------ structure


def test_all_samples_valid_and_every_task_present(split_dir: Path) -> None:
    samples = _samples(split_dir)
    for s in samples:
        validate_sample(s)
    tasks = {(s.task, s.media.is_image) for s in samples}
    for task in ("ref_seg", "reason_seg", "region_caption", "region_qa", "pixelqa", "general_qa"):
        assert (task, True) in tasks and (task, False) in tasks, task
    manifest = json.loads((split_dir / "manifest.json").read_text())
    assert manifest["counts"]["samples"] == len(samples)
    for rel in manifest["files"].values():
        assert (split_dir / rel).is_file(), rel


def test_deterministic_byte_identical_and_worker_independent(tmp_path: Path) -> None:
    opts = SynthOptions(seed=11, split="val", num_images=6, num_videos=3)
    generate_split(opts, tmp_path / "a")
    generate_split(opts, tmp_path / "b", workers=2)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")


def test_splits_and_seeds_differ_and_prefix_is_stable() -> None:
    assert len({split_seed(0, s) for s in ("train", "val", "test")}) == 3
    a = build_records(SynthOptions(seed=0, split="train", num_images=3, num_videos=0))
    b = build_records(SynthOptions(seed=0, split="test", num_images=3, num_videos=0))
    c = build_records(SynthOptions(seed=0, split="train", num_images=5, num_videos=0))
    assert not np.array_equal(a[0].scene.frames, b[0].scene.frames)
    for x, y in zip(a, c[:3], strict=True):  # more scenes keep the first ones unchanged
        assert np.array_equal(x.scene.frames, y.scene.frames)


# ----------------------------------------------------------------------------------------- semantics


def test_render_and_occlusion_consistent(records) -> None:  # type: ignore[no-untyped-def]
    for rec in records:
        sc = rec.scene
        for t in range(sc.num_frames):
            cover = np.zeros((sc.height, sc.width), dtype=int)
            for o in sc.objects:
                assert not (o.visible[t] & ~o.full[t]).any()  # visible is part of the extent
                cover += o.visible[t]
                if o.spec.texture == "solid" and o.visible[t].any():
                    assert (sc.frames[t][o.visible[t]] == np.asarray(COLORS[o.spec.color])).all()
            assert cover.max() <= 1  # visible masks never overlap
            bg = cover == 0
            assert (sc.frames[t][bg] == np.asarray(sc.background, dtype=np.uint8)).all()
            # the nearer object wins where two extents overlap
            for a in sc.objects:
                for b in sc.objects:
                    if a.depth > b.depth:
                        assert not (b.visible[t] & a.full[t]).any()
        if sc.is_image:
            assert all(np.array_equal(o.visible, o.full) for o in sc.objects)  # images never overlap


def test_occlusion_happens_in_videos() -> None:
    occluded = 0
    for i in range(30):
        sc = make_video_scene(np.random.default_rng(i), SceneConfig())
        occluded += any(o.occlusion_ratio(t) > 0.2 for o in sc.objects for t in range(sc.num_frames))
    assert occluded >= 5


def test_expressions_are_unique(records) -> None:  # type: ignore[no-untyped-def]
    n_checked = 0
    for rec in records:
        sc = rec.scene
        rng = np.random.default_rng(0)
        for e in referring_expressions(rng, sc):
            assert len(e.targets) == 1
            if e.kind == "attribute":
                desc = _parse_np(e.text)
                assert [o.id for o in sc.objects if matches(o, desc)] == list(e.targets), e
                n_checked += 1
            if e.kind == "spatial" and e.text.startswith("leftmost object"):
                xs = sorted((o.centers[0, 0], o.id) for o in sc.objects)
                assert xs[0][1] == e.targets[0]
            if e.kind == "motion":
                o = sc.objects[e.targets[0]]
                assert o.visible.any()
        for e in multi_expressions(sc):
            assert len(e.targets) >= 2
            if e.kind == "multi":
                desc = _parse_np(e.text)
                assert tuple(o.id for o in sc.objects if matches(o, desc)) == e.targets, e
        for r in reasoning_queries(sc):
            assert r.targets and r.question.endswith((".", "?"))
    assert n_checked > 20


def test_sample_semantics(split_dir: Path) -> None:
    for s in _samples(split_dir):
        if s.task in ("ref_seg", "reason_seg", "pixelqa"):
            for o in s.objects:  # every segmentation target is visible somewhere
                assert any(decode_rle(m).any() for m in o.masks.values()), s.id
                if not s.media.is_image:
                    assert len(o.masks) == len(s.media.frames or [])  # explicit GT on every frame
        for o in s.objects:
            p = o.prompt
            if p is None:
                continue
            if p.kind == "mask":
                assert decode_rle(o.masks[p.frame]).any()
            if p.kind in ("point", "box") and o.masks:
                m = decode_rle(o.masks[p.frame])
                if p.kind == "point":
                    assert m[int(p.point[1]), int(p.point[0])], s.id
                else:
                    ys, xs = np.nonzero(m)
                    assert p.box == [xs.min(), ys.min(), xs.max(), ys.max()], s.id
        if s.task in ("pixelqa", "region_qa") and "options" in s.meta:
            letter = s.meta["answer"]
            line = next(o for o in s.meta["options"] if o.startswith(f"({letter})"))
            assert line == f"({letter}) {s.meta['answer_text']}"
            assert s.conversation[-1].text == line
            assert s.conversation[-2].text.endswith("Please only give the best option.")
        if s.task == "pixelqa":
            assert s.conversation[1].text == " ".join(f"[{k}] <|seg|>" for k in range(len(s.objects)))
        if s.meta.get("question_type") == "absent":
            assert "not present" in s.conversation[-1].text
            assert not s.objects


def test_absent_phrases_match_nothing(records) -> None:  # type: ignore[no-untyped-def]
    by_scene = {r.name: r.scene for r in records}
    for rec in records:
        for s in rec.samples:
            if s.meta.get("question_type") == "absent":
                desc = _parse_np(s.meta["expression"])
                assert desc and not any(matches(o, desc) for o in by_scene[rec.name].objects), s.meta


# ------------------------------------------------------------------------------ reference formats


def _by_id(root: Path) -> dict[str, Sample]:
    return {s.id: s for s in _samples(root)}


def _same_masks(a: dict[int, dict], b: dict[int, dict]) -> bool:
    return sorted(a) == sorted(b) and all(np.array_equal(decode_rle(a[t]), decode_rle(b[t])) for t in a)


def test_revos_view_matches_samples(split_dir: Path) -> None:
    ref = _by_id(split_dir)
    n = 0
    for s in read_dataset("synthetic", split_dir, "test", format="revos"):
        validate_sample(s)
        twin = ref[s.meta["sample_id"]]
        assert twin.meta.get("expression", twin.meta.get("query")) == s.meta["expression"]
        assert _same_masks(s.objects[0].masks, twin.objects[0].masks)
        n += 1
    meta = json.loads((split_dir / "videos" / "meta_expressions_valid_.json").read_text())["videos"]
    absent = [e for v in meta.values() for e in v["expressions"].values() if not e["obj_id"]]
    assert n > 10 and absent  # no-target expressions are written with empty obj_id, like ReVOS


def test_refcoco_view_matches_samples(split_dir: Path) -> None:
    ref = _by_id(split_dir)
    refs = pickle.loads((split_dir / "refer_seg" / "refcoco" / "refs(unc).p").read_bytes())
    assert refs and all(r["split"] == "test" for r in refs)
    n = 0
    for s in read_dataset("synthetic", split_dir, "test", format="refcoco"):
        twin = ref[s.meta["sample_id"]]
        assert _same_masks(s.objects[0].masks, twin.objects[0].masks)  # polygons decode exactly
        assert Path(s.media.path).is_file()
        n += 1
    assert n > 10


def test_videorefer_view_matches_samples(split_dir: Path) -> None:
    ref = _by_id(split_dir)
    n = 0
    for s in read_dataset("synthetic", split_dir, "test", format="videorefer"):
        validate_sample(s)
        twin = ref[s.meta["sample_id"]]
        assert s.conversation == twin.conversation
        for a, b in zip(s.objects, twin.objects, strict=True):
            assert a.prompt == b.prompt and _same_masks(a.masks, b.masks)
        n += 1
    assert n > 0
    pq = json.loads((split_dir / "pixelqa" / "VideoRefer-Bench-Q.json").read_text())
    for e in pq:
        assert e["Question"].count("<region>") == len(e["annotation"])
        assert e["Answer"] in e["options"]
        for obj in e["annotation"]:
            rle = obj[e["frame_idx"]]["segmentation"]
            assert mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}) > 0


def test_reader_samples_absolute_and_split_checked(split_dir: Path) -> None:
    samples = list(read_dataset("synthetic", split_dir, "test"))
    assert len(samples) == len(_samples(split_dir))
    for s in samples[:50]:
        for p in [s.media.path] if s.media.path else s.media.frames:
            assert Path(p).is_absolute() and Path(p).is_file()
    with pytest.raises(ValueError, match="holds the synthetic 'test' split"):
        list(read_dataset("synthetic", split_dir, "train"))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    rc = main(
        [
            "--seed",
            "1",
            "--split",
            "train",
            "--out",
            str(out),
            "--num-images",
            "3",
            "--num-videos",
            "2",
            "--width",
            "96",
            "--height",
            "64",
            "--frame-format",
            "jpg",
            "--max-frames",
            "8",
        ]
    )
    assert rc == 0 and "samples" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["frame_format"] == "jpg"
    assert list((out / "videos").glob("vid00000/*.jpg"))
    samples = list(read_dataset("synthetic", out, "train", format="revos"))
    assert all(Path(f).suffix == ".jpg" for s in samples for f in s.media.frames)
    assert main(["--out", str(out), "--min-objects", "3", "--max-objects", "2"]) == 2


def test_mask_center_matches_visual_prompts(records) -> None:  # type: ignore[no-untyped-def]
    from unipixel.synth.world import mask_center
    from unipixel.visual_prompts import mask_center_point

    for rec in records[:20]:
        for o in rec.scene.objects:
            t = int(np.argmax(o.visible.reshape(o.visible.shape[0], -1).sum(1)))
            want = mask_center_point(o.visible[t]).coords.reshape(-1).tolist()
            assert mask_center(o.visible[t]) == (int(want[0]), int(want[1]))
    edge = np.zeros((9, 9), dtype=bool)
    edge[:4, :5] = True  # touches the border: the border counts as background
    want = mask_center_point(edge).coords.reshape(-1).tolist()
    assert mask_center(edge) == (int(want[0]), int(want[1]))


def test_project_readers_read_the_synthetic_formats(tmp_path: Path) -> None:
    """The real-dataset readers (revos, refcoco, videorefer_bench_q/d, pixelqa) read a synthetic split."""
    out = tmp_path / "jpg"
    generate_split(SynthOptions(seed=5, split="test", num_images=10, num_videos=8, frame_format="jpg"), out)
    ref = _by_id(out)
    revos = list(read_dataset("revos", out / "videos", "valid"))
    assert revos
    for s in revos:
        for f in s.media.frames or []:
            assert Path(f).is_file()
    n_refer = 0
    for s in read_dataset("refcoco", out / "refer_seg", "test", image_root=out / "images"):
        assert Path(s.media.path).is_file()
        n_refer += 1
    assert n_refer == sum(
        len(r["sentences"]) for r in pickle.loads((out / "refer_seg/refcoco/refs(unc).p").read_bytes())
    )
    q = list(read_dataset("videorefer_bench_q", out / "videorefer", "test", video_dir=str(out / "videos")))
    d = list(read_dataset("videorefer_bench_d", out / "videorefer", "test", video_dir=str(out / "videos")))
    p = list(read_dataset("pixelqa", out / "pixelqa", "test", video_dir=str(out / "videos")))
    assert p and len(q) + len(d) > 0
    bench = json.loads((out / "pixelqa" / "VideoRefer-Bench-Q.json").read_text())
    for s, e in zip(p, bench, strict=True):
        twin = ref[e["sample_id"]]
        assert s.meta["answer"] == twin.meta["answer"]

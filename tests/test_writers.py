"""Tests for unipixel.writers: overlays, GIF/MP4, palette PNGs, submissions, zips and atomic writes."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from unipixel import writers as W
from unipixel.results import MaskTrack, UniPixelResult, build_result
from unipixel.writers import (
    davis_palette,
    object_color,
    overlay_frames,
    read_palette_png,
    write_davis_submission,
    write_mevis_submission,
    write_overlay,
    write_palette_pngs,
    write_rle_json,
    write_ytvos_submission,
    zip_submission,
)

SEG = "<|seg|>"


def _frames(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _two_objects(t: int = 3, h: int = 20, w: int = 24) -> UniPixelResult:
    a = np.zeros((t, h, w), bool)
    a[:, 2:10, 2:12] = True
    b = np.zeros((t, h, w), bool)
    b[:, 6:16, 8:20] = True  # overlaps a
    b[0] = False  # empty on the first frame
    return build_result(
        f"[0] {SEG} and [1] {SEG}",
        tracks=[a, b],
        scores=[[0.9] * t, [0.95] * t],
        frame_indices=list(range(0, 2 * t, 2)),
    )


def _decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def _listing(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------------------------------------
# colours


def test_davis_palette_and_object_colors():
    pal = davis_palette()
    assert len(pal) == 768
    assert pal[:12] == (0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0)
    assert pal[3 * 255 : 3 * 256] == (224, 224, 192)
    colors = [object_color(i) for i in range(20)]
    assert colors == [object_color(i) for i in range(20)]  # deterministic
    assert len(set(colors)) == 20
    assert all(max(c) >= 200 for c in colors)  # bright enough to see on photos


# ----------------------------------------------------------------------------------------------------------
# overlays


def test_overlay_changes_only_masked_pixels():
    res = _two_objects()
    frames = _frames(3, 20, 24)
    out = overlay_frames(frames, res, draw_ids=False)
    assert out.shape == frames.shape and out.dtype == np.uint8
    union = res.objects[0].masks.array() | res.objects[1].masks.array()
    np.testing.assert_array_equal(out[~union], frames[~union])
    assert (out[union] != frames[union]).any(axis=-1).mean() > 0.9
    # contour pixels carry the object's colour exactly
    assert tuple(out[1, 2, 5]) == object_color(0)
    # no blending, no contours, no ids -> frames unchanged
    same = overlay_frames(frames, res, alpha=0.0, draw_ids=False, draw_contours=False)
    np.testing.assert_array_equal(same, frames)
    # input not modified
    assert not np.shares_memory(out, frames)


def test_overlay_ids_and_edge_cases():
    frames = np.zeros((2, 15, 9, 3), np.uint8)
    m = np.zeros((2, 15, 9), bool)
    m[1, 7, 4] = True  # single pixel on frame 1, empty frame 0
    out = overlay_frames(frames, m, draw_ids=True)
    assert not out[0].any()  # empty mask: frame untouched
    assert (
        out[1].any() and out[1].sum() > np.asarray(object_color(0)).sum()
    )  # label box drawn around the pixel
    with pytest.raises(ValueError, match="alpha"):
        overlay_frames(frames, m, alpha=2.0)
    with pytest.raises(ValueError, match="frames"):
        overlay_frames(np.zeros((4, 4)), m)


def test_overlay_frame_alignment_and_resize():
    # track on original frames 2 and 4 of a 5-frame clip; frames given as the full clip
    m = np.ones((2, 4, 4), bool)
    tr = MaskTrack(m, frame_indices=[2, 4])
    frames = np.zeros((5, 8, 8, 3), np.uint8)  # masks are 4x4 -> resized to 8x8
    out = overlay_frames(frames, {7: tr}, draw_ids=False)
    assert [bool(out[i].any()) for i in range(5)] == [False, False, True, False, True]
    assert out[2].any(axis=-1).all()
    # explicit frame_indices of the given frames
    out2 = overlay_frames(frames[:2], tr, draw_ids=False, frame_indices=[4, 3])
    assert out2[0].any() and not out2[1].any()
    with pytest.raises(ValueError, match="frame_indices"):
        overlay_frames(frames, tr, frame_indices=[0])


def test_write_overlay_png_jpg(tmp_path):
    res = build_result(f"it is {SEG}", tracks=[np.eye(7, 9, dtype=bool)])
    frame = _frames(1, 7, 9)[0]
    p = write_overlay(tmp_path / "a" / "img.png", frame, res)
    assert np.asarray(Image.open(p)).shape == (7, 9, 3)
    j = write_overlay(tmp_path / "img.JPG", frame, res)
    assert Image.open(j).format == "JPEG"
    with pytest.raises(ValueError, match="one frame"):
        write_overlay(tmp_path / "multi.png", _frames(2, 7, 9), None)
    assert not (tmp_path / "multi.png").exists()
    with pytest.raises(ValueError, match="extension"):
        write_overlay(tmp_path / "x.bmp", frame, res)
    assert sorted(os.listdir(tmp_path)) == ["a", "img.JPG"]


@pytest.mark.parametrize(("h", "w"), [(20, 24), (15, 17)])
def test_write_overlay_gif_and_mp4_decodable(tmp_path, h, w):
    t = 5
    frames = _frames(t, h, w, seed=h)
    m = np.zeros((t, h, w), bool)
    m[:, 3:9, 4:10] = True
    res = build_result(f"{SEG}", tracks=[m])
    gif = write_overlay(tmp_path / "o.gif", frames, res, fps=5)
    dec = _decode(gif)
    assert len(dec) == t and dec[0].shape == (h, w, 3)
    with Image.open(gif) as im:
        assert im.n_frames == t and im.info["loop"] == 0 and im.info["duration"] == 200
    mp4 = write_overlay(tmp_path / "o.mp4", frames, res, fps=12.5)
    dec = _decode(mp4)
    assert len(dec) == t
    assert dec[0].shape == (h + h % 2, w + w % 2, 3)  # yuv420p needs even sizes: padded
    with av.open(str(mp4)) as c:
        assert float(c.streams.video[0].average_rate) == pytest.approx(12.5)
    # encoded content is close to the overlay (lossy, but not garbage)
    expect = overlay_frames(frames, res)
    err = np.abs(dec[2][:h, :w].astype(int) - expect[2].astype(int)).mean()
    assert err < 40
    assert sorted(os.listdir(tmp_path)) == ["o.gif", "o.mp4"]


def test_video_encoder_available():
    assert W.video_encoder() in ("libx264", "h264", "mpeg4")


# ----------------------------------------------------------------------------------------------------------
# palette PNGs, RLE JSON


@pytest.mark.parametrize("overlap", ["last", "score"])
def test_palette_png_round_trip(tmp_path, overlap):
    res = _two_objects()
    paths = write_palette_pngs(tmp_path / "pal", res, overlap=overlap)
    assert [p.name for p in paths] == ["00000.png", "00002.png", "00004.png"]
    for p, f in zip(paths, res.frame_indices, strict=True):
        with Image.open(p) as im:
            assert im.mode == "P"
        got, pal = read_palette_png(p, return_palette=True)
        assert tuple(pal[:768]) == davis_palette()
        np.testing.assert_array_equal(got, res.label_map(f, overlap=overlap))
    lm = read_palette_png(paths[1])
    assert set(np.unique(lm)) == {0, 1, 2}
    # overlap region rows 6..9, cols 8..11: object 1 (value 2) wins both by order and by score
    assert (lm[6:10, 8:12] == 2).all()
    assert (lm[2:6, 2:12] == 1).all()
    # first frame: object 1 empty
    assert set(np.unique(read_palette_png(paths[0]))) == {0, 1}


def test_palette_png_score_overlap_prefers_higher_score(tmp_path):
    a = np.ones((1, 4, 4), bool)
    b = np.ones((1, 4, 4), bool)
    res = build_result(f"{SEG}{SEG}", tracks=[a, b], scores=[[0.8], [0.3]])
    (p,) = write_palette_pngs(tmp_path, res, overlap="score")
    assert (read_palette_png(p) == 1).all()
    (q,) = write_palette_pngs(tmp_path / "last", res)
    assert (read_palette_png(q) == 2).all()


def test_palette_png_names_ids_and_errors(tmp_path):
    m = np.zeros((2, 5, 3), bool)
    m[1, 4, 2] = True
    paths = write_palette_pngs(tmp_path, {41: MaskTrack(m)}, frame_names=["a.jpg", "b"])
    assert [p.name for p in paths] == ["a.png", "b.png"]
    assert read_palette_png(paths[1])[4, 2] == 42 and read_palette_png(paths[0]).max() == 0
    with pytest.raises(ValueError, match="0..254"):
        write_palette_pngs(tmp_path, {255: MaskTrack(m)})
    with pytest.raises(ValueError, match="frame_names"):
        write_palette_pngs(tmp_path, MaskTrack(m), frame_names=["x"])
    with pytest.raises(ValueError, match="overlap"):
        write_palette_pngs(tmp_path, MaskTrack(m), overlap="max")  # type: ignore[arg-type]
    Image.new("RGB", (2, 2)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="mode"):
        read_palette_png(tmp_path / "rgb.png")


def test_write_rle_json(tmp_path):
    res = _two_objects()
    p = write_rle_json(tmp_path / "out" / "masks.json", res)
    back = UniPixelResult.from_json(p)
    for a, b in zip(back.objects, res.objects, strict=True):
        np.testing.assert_array_equal(a.masks.array(), b.masks.array())
        assert a.id == b.id and a.scores == b.scores


# ----------------------------------------------------------------------------------------------------------
# benchmark submissions


def test_davis_submission_layout(tmp_path):
    res = _two_objects()  # masks on frames 0, 2, 4
    paths = write_davis_submission(tmp_path, "bear", res, num_frames=6)
    assert _listing(tmp_path) == [f"bear/{i:05d}.png" for i in range(6)]
    assert len(paths) == 6
    assert read_palette_png(tmp_path / "bear" / "00001.png").max() == 0
    assert set(np.unique(read_palette_png(tmp_path / "bear" / "00002.png"))) == {0, 1, 2}
    only = write_davis_submission(tmp_path / "b", "bear", res)
    assert [p.name for p in only] == ["00000.png", "00002.png", "00004.png"]


def test_ytvos_and_mevis_submission_and_zip(tmp_path):
    res = _two_objects(t=2)
    names = ["00000", "00005"]
    yt = tmp_path / "yt"
    write_ytvos_submission(yt, "vid1", 0, res, names)
    write_ytvos_submission(yt, "vid1", "1", res, names, combine="union")
    empty = build_result("nothing", tracks=[], frame_size=(20, 24))
    write_ytvos_submission(yt, "vid2", 0, empty, ["00010.jpg"])
    assert _listing(yt) == [
        "Annotations/vid1/0/00000.png",
        "Annotations/vid1/0/00005.png",
        "Annotations/vid1/1/00000.png",
        "Annotations/vid1/1/00005.png",
        "Annotations/vid2/0/00010.png",
    ]
    with Image.open(yt / "Annotations/vid1/0/00005.png") as im:
        assert im.mode == "L"
        first = np.asarray(im)
    assert set(np.unique(first)) == {0, 255}
    np.testing.assert_array_equal(first == 255, res.objects[0].masks.array()[1])
    union = np.asarray(Image.open(yt / "Annotations/vid1/1/00005.png")) == 255
    np.testing.assert_array_equal(union, res.objects[0].masks.array()[1] | res.objects[1].masks.array()[1])
    assert not np.asarray(Image.open(yt / "Annotations/vid2/0/00010.png")).any()

    mv = tmp_path / "mevis"
    write_mevis_submission(mv, "0ab4afe7fb46", 3, res.objects[1], names)
    assert _listing(mv) == ["0ab4afe7fb46/3/00000.png", "0ab4afe7fb46/3/00005.png"]
    with pytest.raises(ValueError, match="frame names"):
        write_mevis_submission(mv, "v", 0, res, ["00000"])

    z = zip_submission(yt, tmp_path / "sub.zip")
    with zipfile.ZipFile(z) as zf:
        assert zf.namelist() == _listing(yt)
        with zf.open("Annotations/vid1/0/00005.png") as f:
            np.testing.assert_array_equal(np.asarray(Image.open(f)), first)
    # a zip written inside the root does not include itself; stray temp files are skipped
    (mv / ".x.png.abc.tmp").write_bytes(b"partial")
    z2 = zip_submission(mv, mv / "mevis.zip")
    with zipfile.ZipFile(z2) as zf:
        assert zf.namelist() == ["0ab4afe7fb46/3/00000.png", "0ab4afe7fb46/3/00005.png"]
    with pytest.raises(FileNotFoundError):
        zip_submission(tmp_path / "missing", tmp_path / "m.zip")


# ----------------------------------------------------------------------------------------------------------
# atomicity


def _no_temp_files(d: Path) -> bool:
    return not any(p.name.endswith(".tmp") for p in d.rglob("*"))


def test_png_write_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "f.png"
    real_save = Image.Image.save

    def failing_save(self, fp, *args, **kwargs):
        real_save(self, fp, *args, **kwargs)  # the bytes hit the temp file ...
        raise OSError("simulated crash")  # ... then the writer dies

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError, match="simulated"):
        W.write_palette_png(target, np.zeros((3, 3), np.uint8))
    assert not target.exists() and _no_temp_files(tmp_path)
    # an existing file survives a failed overwrite untouched
    monkeypatch.undo()
    W.write_palette_png(target, np.ones((3, 3), np.uint8))
    before = target.read_bytes()
    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(OSError):
        W.write_palette_png(target, np.zeros((3, 3), np.uint8))
    assert target.read_bytes() == before and _no_temp_files(tmp_path)


def test_mp4_and_gif_failure_leaves_no_partial_file(tmp_path, monkeypatch):
    frames = _frames(4, 8, 8)
    calls = {"n": 0}
    real = av.VideoFrame.from_ndarray

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("encoder died")
        return real(*args, **kwargs)

    monkeypatch.setattr(av.VideoFrame, "from_ndarray", flaky)
    with pytest.raises(RuntimeError, match="encoder died"):
        write_overlay(tmp_path / "v.mp4", frames)
    monkeypatch.undo()

    def gif_fail(*args, **kwargs):
        raise OSError("gif failed")

    monkeypatch.setattr(W, "_write_gif", gif_fail)
    with pytest.raises(OSError):
        write_overlay(tmp_path / "v.gif", frames)
    assert os.listdir(tmp_path) == []


def test_zip_failure_leaves_no_partial_zip(tmp_path, monkeypatch):
    root = tmp_path / "root"
    write_mevis_submission(root, "v", 0, np.ones((2, 3, 3), bool), ["a", "b"])
    real_write = zipfile.ZipFile.write
    n = {"k": 0}

    def failing_write(self, *args, **kwargs):
        n["k"] += 1
        if n["k"] == 2:
            raise OSError("no space")
        return real_write(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "write", failing_write)
    with pytest.raises(OSError, match="no space"):
        zip_submission(root, tmp_path / "s.zip")
    assert sorted(os.listdir(tmp_path)) == ["root"]

"""Tests for unipixel.media: loading, sampling, LLM and SAM 2 preprocessing (golden parity included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from unipixel import media
from unipixel.media import (
    Media,
    llm_pixel_budget,
    llm_video_inputs,
    load_media,
    pad_to_even,
    resize_for_llm,
    sam2_transform,
    sample_frame_indices,
    sample_frame_indices_with_keep,
    smart_resize,
)

GOLDEN = Path(__file__).parent / "data" / "golden"


def _golden_inputs(name: str) -> dict[str, torch.Tensor]:
    safetensors = pytest.importorskip("safetensors.torch")
    path = GOLDEN / f"inputs_video_{name}.safetensors"
    if not path.exists():
        pytest.skip(f"golden fixture {path} missing")
    return safetensors.load_file(str(path))


def _colour_frames(n: int, h: int = 32, w: int = 48) -> np.ndarray:
    """Flat grey frames whose level encodes the frame index (grey survives YUV 4:2:0 coding)."""
    frames = np.zeros((n, h, w, 3), dtype=np.uint8)
    for i in range(n):
        frames[i] = (i * 8) % 256
    return frames


def _write_video(path: Path, frames: np.ndarray, fps: int = 10, codec: str = "mpeg4") -> None:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec == "mpeg4":
            stream.options = {"qscale": "1"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


# ---------------------------------------------------------------------------------------------- sampling


def test_uniform_sampling_matches_reference_formula() -> None:
    for n, k in [(100, 16), (17, 16), (50, 8), (4, 3), (1000, 7)]:
        ref = np.round(np.arange(0, n, (n - 1) / (k - 1))).astype(np.int64)  # the reference's expression
        got = sample_frame_indices(n, k, "uniform")
        np.testing.assert_array_equal(got, ref)
        assert got[0] == 0 and got[-1] == n - 1 and len(got) == k
    # half-to-even rounding as numpy does it: n=4, k=3 -> 0, 1.5, 3 -> 0, 2, 3
    np.testing.assert_array_equal(sample_frame_indices(4, 3), [0, 2, 3])


def test_sampling_edge_cases() -> None:
    np.testing.assert_array_equal(sample_frame_indices(5, 16), np.arange(5))  # short clip: all frames
    np.testing.assert_array_equal(sample_frame_indices(5, None), np.arange(5))
    np.testing.assert_array_equal(sample_frame_indices(9, 3, "all"), np.arange(9))
    np.testing.assert_array_equal(sample_frame_indices(9, 1), [0])
    with pytest.raises(ValueError, match="0 frames"):
        sample_frame_indices(0, 4)
    with pytest.raises(ValueError, match="positive"):
        sample_frame_indices(10, 0)
    with pytest.raises(ValueError, match="sampling mode"):
        sample_frame_indices(10, 4, "bogus")  # type: ignore[arg-type]


def test_random_segment_sampling() -> None:
    rng = np.random.default_rng(0)
    n, k = 103, 8
    bounds = np.linspace(0, n, k + 1).astype(int)
    seen = set()
    for _ in range(50):
        idx = sample_frame_indices(n, k, "random", rng)
        assert len(idx) == k and idx.dtype == np.int64
        assert np.all(idx >= bounds[:-1]) and np.all(idx < bounds[1:])
        seen.add(tuple(idx))
    assert len(seen) > 1
    a = sample_frame_indices(n, k, "random", np.random.default_rng(3))
    b = sample_frame_indices(n, k, "random", np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)


def test_sampling_with_keep() -> None:
    idx = sample_frame_indices_with_keep(100, 16, 37)
    assert 37 in idx and len(idx) == 16 and np.all(np.diff(idx) > 0)
    assert np.array_equal(sample_frame_indices_with_keep(100, 16, 0), sample_frame_indices(100, 16))
    with pytest.raises(ValueError, match="outside"):
        sample_frame_indices_with_keep(10, 4, 10)


# ---------------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_load_video_file_sampled_and_all(tmp_path: Path, codec: str) -> None:
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"{codec} encoder not available")
    frames = _colour_frames(30)
    path = tmp_path / "clip.mp4"
    _write_video(path, frames, codec=codec)

    full = load_media(path)
    assert isinstance(full, Media) and not full.is_image
    assert full.frames.shape == (30, 32, 48, 3) and full.frames.dtype == np.uint8
    assert full.fps == pytest.approx(10.0) and full.total_frames == 30
    np.testing.assert_array_equal(full.frame_indices, np.arange(30))

    m = load_media(path, num_frames=4)
    np.testing.assert_array_equal(m.frame_indices, sample_frame_indices(30, 4))
    assert m.total_frames == 30
    for f, i in zip(m.frames, m.frame_indices, strict=True):
        assert abs(float(f.mean()) - (i * 8) % 256) < 3.5, "wrong frame decoded"
    np.testing.assert_array_equal(m.frames, full.frames[m.frame_indices])

    # decoding stops right after the last wanted frame instead of running through the clip
    kept, decoded, _ = media._decode_video(path, {0, 3})
    assert sorted(kept) == [0, 3] and decoded == 4

    sel = load_media(path, indices=[3, 7])
    np.testing.assert_array_equal(sel.frames, full.frames[[3, 7]])
    with pytest.raises(ValueError, match="outside"):
        load_media(path, indices=[30])


def test_load_image_and_folder(tmp_path: Path) -> None:
    frames = _colour_frames(12, 20, 30)
    folder = tmp_path / "frames"
    folder.mkdir()
    # numbers without zero padding: lexicographic order would put 10 before 2
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"frame_{i}.png")
    (folder / "notes.txt").write_text("ignored")

    m = load_media(folder)
    assert m.frames.shape == (12, 20, 30, 3) and not m.is_image and m.fps is None
    np.testing.assert_array_equal(m.frames, frames)
    m = load_media(str(folder), num_frames=3)
    np.testing.assert_array_equal(m.frame_indices, [0, 6, 11])  # round(5.5) = 6 (half to even)
    np.testing.assert_array_equal(m.frames, frames[[0, 6, 11]])

    img = load_media(folder / "frame_5.png")
    assert img.is_image and img.frames.shape == (1, 20, 30, 3)
    np.testing.assert_array_equal(img.frames[0], frames[5])

    lst = load_media([folder / "frame_1.png", str(folder / "frame_2.png")])
    np.testing.assert_array_equal(lst.frames, frames[1:3])


def test_load_in_memory_sources() -> None:
    frames = _colour_frames(5, 8, 10)
    m = load_media(frames, num_frames=3)
    np.testing.assert_array_equal(m.frames, frames[[0, 2, 4]])
    assert not m.is_image
    m = load_media(frames[2])
    assert m.is_image and m.frames.shape == (1, 8, 10, 3)
    m = load_media(torch.from_numpy(frames))
    np.testing.assert_array_equal(m.frames, frames)
    m = load_media(torch.from_numpy(frames).permute(0, 3, 1, 2))  # channels-first tensor
    np.testing.assert_array_equal(m.frames, frames)
    m = load_media(Image.fromarray(frames[1]))
    assert m.is_image
    np.testing.assert_array_equal(m.frames[0], frames[1])
    m = load_media([Image.fromarray(f) for f in frames])
    np.testing.assert_array_equal(m.frames, frames)
    # RGBA is composited over white like qwen-vl-utils does
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    m = load_media(Image.fromarray(rgba, "RGBA"))
    assert (m.frames == 255).all()


def test_load_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_media(tmp_path / "missing.mp4")
    bad = tmp_path / "file.xyz"
    bad.write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported media extension"):
        load_media(bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no image files"):
        load_media(empty)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    with pytest.raises(ValueError, match="video"):
        load_media(broken)
    with pytest.raises(ValueError, match="uint8"):
        load_media(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="shape"):
        load_media(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="empty"):
        load_media(np.zeros((0, 4, 4, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="same size"):
        load_media([Image.new("RGB", (4, 4)), Image.new("RGB", (5, 4))])
    with pytest.raises(ValueError, match="empty frame list"):
        load_media([])
    with pytest.raises(ValueError, match="torch.uint8"):
        load_media(torch.zeros(2, 4, 4, 3))


def test_zero_frame_video(tmp_path: Path) -> None:
    import av

    path = tmp_path / "empty.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height = 16, 16
        container.start_encoding()  # write a header although no frame follows
    for n in (None, 4):
        with pytest.raises(ValueError, match="no video stream|no (decodable )?frames|cannot open"):
            load_media(path, num_frames=n)


# ---------------------------------------------------------------------------------------------- LLM path


def test_smart_resize() -> None:
    assert smart_resize(112, 168, 28, 3136, 25088) == (112, 168)
    assert smart_resize(100, 150, 28, 3136, 25088) == (112, 140)  # round(3.57)=4, round(5.36)=5
    h, w = smart_resize(1080, 1920, 28, 128 * 784, 256 * 784)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 256 * 784 and (h, w) == (336, 588)
    h, w = smart_resize(20, 30, 28, 128 * 784, 256 * 784)
    assert h * w >= 128 * 784 and h % 28 == 0 and w % 28 == 0
    assert smart_resize(10, 10, 28, 1, 10**6) == (28, 28)
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2500)
    with pytest.raises(ValueError, match="positive"):
        smart_resize(0, 10)
    with pytest.raises(ValueError, match="too small"):
        smart_resize(28, 5000, 28, 3136, 25088)


def test_llm_pixel_budget() -> None:
    assert llm_pixel_budget(16) == (128 * 784, 256 * 784)
    assert llm_pixel_budget(1) == (128 * 784, 16 * 256 * 784)
    assert llm_pixel_budget(40) == (128 * 784, 256 * 784)


def test_resize_for_llm_and_padding() -> None:
    frames = _colour_frames(3, 100, 150)
    out = resize_for_llm(frames, 3136, 25088)
    assert out.shape == (3, 112, 140, 3)
    ref = np.asarray(Image.fromarray(frames[1]).resize((140, 112), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(out[1], ref)
    same = _colour_frames(2, 56, 84)
    assert resize_for_llm(same, 3136, 25088) is same
    padded = pad_to_even(frames)
    assert padded.shape[0] == 4
    np.testing.assert_array_equal(padded[3], frames[2])
    assert pad_to_even(padded) is padded
    one = pad_to_even(torch.from_numpy(frames[:1]))
    assert isinstance(one, torch.Tensor) and one.shape[0] == 2 and torch.equal(one[0], one[1])


@pytest.mark.parametrize("name", ["T1", "T4"])
def test_llm_video_inputs_match_golden(name: str) -> None:
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torchvision")
    data = _golden_inputs(name)
    proc = transformers.Qwen2VLVideoProcessor.from_pretrained(str(GOLDEN / "ckpt_tiny"))
    out = llm_video_inputs(data["frames_uint8"].numpy(), proc, min_pixels=3136, max_pixels=25088)
    assert torch.equal(out["video_grid_thw"], data["video_grid_thw"])
    diff = (out["pixel_values_videos"] - data["pixel_values_videos"]).abs().max().item()
    assert diff <= 1e-6, diff
    assert torch.equal(out["second_per_grid_ts"], data["second_per_grid_ts"])


# ---------------------------------------------------------------------------------------------- SAM 2 path


@pytest.mark.parametrize("name", ["T1", "T4"])
def test_sam2_transform_matches_golden(name: str) -> None:
    data = _golden_inputs(name)
    out = sam2_transform(data["frames_uint8"].numpy(), data["sam2_frames"].shape[-1])
    assert out.dtype == torch.float32 and out.shape == data["sam2_frames"].shape
    assert (out - data["sam2_frames"]).abs().max().item() <= 1e-5
    # chunking must not change anything
    out2 = sam2_transform(data["frames_uint8"], data["sam2_frames"].shape[-1], chunk=1)
    assert torch.equal(out, out2)


def test_sam2_transform_matches_torchvision() -> None:
    tvf = pytest.importorskip("torchvision.transforms.functional")
    frames = np.random.default_rng(0).integers(0, 256, (2, 37, 53, 3), dtype=np.uint8)
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    ref = tvf.normalize(
        tvf.resize(x, [64, 64], tvf.InterpolationMode.BILINEAR, antialias=True),
        [0.485, 0.456, 0.406],
        [0.229, 0.224, 0.225],
    )
    assert (sam2_transform(frames, 64) - ref).abs().max().item() <= 1e-6


def test_count_frames_and_prompt_frames_decode_only_what_is_kept(tmp_path: Path, monkeypatch) -> None:
    from unipixel.api import UniPixel
    from unipixel.media import count_frames

    root = Path(__file__).resolve().parents[1]
    video = root / "examples" / "shapes.mp4"
    total = load_media(video).num_frames
    assert count_frames(video) == total and count_frames(root / "examples" / "synth_image.png") == 1
    arr = np.zeros((5, 8, 8, 3), np.uint8)
    assert count_frames(arr) == 5 and count_frames(arr[0]) == 1 and count_frames([arr[0]] * 3) == 3
    with pytest.raises(FileNotFoundError):
        count_frames(tmp_path / "none.mp4")

    decoded: list[set[int] | None] = []
    real = media._decode_video
    monkeypatch.setattr(media, "_decode_video", lambda path, wanted: decoded.append(wanted) or real(path, wanted))
    api = UniPixel.__new__(UniPixel)
    api.num_frames = 4
    got = api.load(video, 4, keep=[total - 2])
    assert total - 2 in got.frame_indices.tolist() and got.num_frames == 4
    assert decoded and all(w is not None and len(w) <= 4 for w in decoded)  # never the whole video


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone photo stored sideways with EXIF "rotate 90°" is read upright, as viewers (and users) see it."""
    img = Image.new("RGB", (200, 100), (255, 0, 0))
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "phone.jpg", exif=exif)
    assert load_media(tmp_path / "phone.jpg").frames.shape == (1, 200, 100, 3)

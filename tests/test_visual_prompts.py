"""Tests for unipixel.visual_prompts (golden parity for the prompts of cases c, c2, d, e)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from unipixel.visual_prompts import (
    SamPrompt,
    box_to_sam,
    build_refer_mask,
    collate_prompts,
    mask_center_point,
    mask_tight_box,
    mask_to_sam_prompt,
    mem_frame_groups,
    mem_prompt_text,
    point_to_sam,
    prompt_frame_position,
    resize_mask,
    sample_box_with_noise,
    sample_point_uniform,
    squared_distance_transform,
)

GOLDEN = Path(__file__).parent / "data" / "golden"


def _load(name: str) -> dict[str, torch.Tensor]:
    safetensors = pytest.importorskip("safetensors.torch")
    path = GOLDEN / name
    if not path.exists():
        pytest.skip(f"golden fixture {path} missing")
    return safetensors.load_file(str(path))


def _manifest() -> dict:
    path = GOLDEN / "golden.json"
    if not path.exists():
        pytest.skip("golden.json missing")
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------- golden parity


def _golden_prompt_cases() -> list[tuple[str, str, int]]:
    return [
        ("case_c_video_ref_point_box_forward.safetensors", "c_video_ref_point_box_forward", 0),
        ("case_c_video_ref_point_box_forward.safetensors", "c_video_ref_point_box_forward", 1),
        ("case_c2_image_ref_box_generate.safetensors", "c2_image_ref_box_generate", 0),
        ("case_e_train_forward.safetensors", "e_train_forward", 0),
    ]


@pytest.mark.parametrize(("file", "case", "k"), _golden_prompt_cases())
def test_prompts_from_masks_match_golden(file: str, case: str, k: int) -> None:
    """Point = centre point, box = tight box, both on the mask resized to S x S; exact values and dtypes."""
    manifest = _manifest()
    spec = manifest["cases"][case]
    vp = spec["visual_prompts"][k]
    inputs = _load(f"inputs_video_{spec['video']}.safetensors")
    data = _load(file)
    image_size = manifest["config"]["model_args"]["sam2_image_size"]
    mask = inputs["object_masks"][vp["frame"], vp["obj"]]
    kind = "center_point" if vp["kind"] == "point" else "tight_box"
    prompt = mask_to_sam_prompt(mask, image_size, kind)
    want_c, want_l = data[f"input.point_coords.{k}"], data[f"input.point_labels.{k}"]
    assert prompt.coords.dtype == want_c.dtype and prompt.labels.dtype == want_l.dtype
    assert torch.equal(prompt.coords, want_c), (prompt.coords, want_c)
    assert torch.equal(prompt.labels, want_l)
    assert prompt.kind == vp["kind"]
    assert int(data["input.point_frames"][k]) == vp["frame"]


def test_collate_matches_golden_case_c() -> None:
    spec = _manifest()["cases"]["c_video_ref_point_box_forward"]
    inputs = _load("inputs_video_T4.safetensors")
    data = _load("case_c_video_ref_point_box_forward.safetensors")
    prompts, frames = [], []
    for vp in spec["visual_prompts"]:
        kind = "center_point" if vp["kind"] == "point" else "tight_box"
        prompts.append(mask_to_sam_prompt(inputs["object_masks"][vp["frame"], vp["obj"]], 128, kind))
        frames.append(vp["frame"])
    batch = collate_prompts(prompts, frames)
    assert torch.equal(batch["point_frames"], data["input.point_frames"])
    for k, (c, lab) in enumerate(zip(batch["point_coords"], batch["point_labels"], strict=True)):
        assert torch.equal(c, data[f"input.point_coords.{k}"]) and torch.equal(
            lab, data[f"input.point_labels.{k}"]
        )
    with pytest.raises(ValueError, match="prompt frames"):
        collate_prompts(prompts, [0])


def _case_d_masks() -> tuple[torch.Tensor, torch.Tensor]:
    spec = _manifest()["cases"]["d_video_mem_generate"]
    assert "object 1 mask zeroed in frames 0-1" in spec["note"]
    inputs = _load(f"inputs_video_{spec['video']}.safetensors")
    masks = inputs["object_masks"].bool().clone()
    masks[0:2, 1] = False
    return masks, torch.tensor(spec["video_grid_thw"][0])


def test_build_refer_mask_matches_golden_case_d() -> None:
    masks, grid = _case_d_masks()
    want = _load("case_d_video_mem_generate.safetensors")["input.refer_mask"].bool()
    got = build_refer_mask(masks, grid)
    assert got.dtype == torch.bool and got.shape == want.shape
    assert torch.equal(got, want)
    # numpy / uint8 input and a (1, 3) grid give the same result
    assert torch.equal(build_refer_mask(masks.numpy().astype(np.uint8), grid[None]), want)


def test_mem_prompt_text_matches_golden_case_d() -> None:
    spec = _manifest()["cases"]["d_video_mem_generate"]
    masks, grid = _case_d_masks()
    refer = build_refer_mask(masks, grid)
    assert mem_frame_groups(refer) == spec["mem_frame_groups"]
    prefix = mem_prompt_text(refer, num_frames=masks.shape[0])
    assert spec["prompt"].startswith(prefix)
    assert spec["prompt"][len(prefix) :].startswith("What is [0] doing with [1]?")
    assert prefix.count("<|mem|>") == sum(len(g) for g in spec["mem_frame_groups"])


# ------------------------------------------------------------------------------------- user prompts


def test_point_to_sam_mapping() -> None:
    p = point_to_sam((0, 0), (112, 168), 128)
    assert isinstance(p, SamPrompt) and p.coords.shape == (1, 1, 2) and p.coords.dtype == torch.float32
    assert torch.equal(p.labels, torch.tensor([[1]], dtype=torch.int32))
    # x shrinks (168 -> 128) and is clamped at the border; y grows (112 -> 128): (0 + 0.5) * 128 / 112 - 0.5
    assert torch.allclose(p.coords, torch.tensor([[[0.0, 0.5 * 128 / 112 - 0.5]]]))
    # pixel centres map to pixel centres: the middle of the frame stays in the middle
    p = point_to_sam(torch.tensor([[83.5, 55.5]]), (112, 168), 128)
    assert torch.allclose(p.coords, torch.tensor([[[63.5, 63.5]]]))
    p = point_to_sam(np.array([167, 111]), (112, 168), 128)
    assert torch.allclose(
        p.coords, torch.tensor([[[127.0, 128 - 0.5 * 128 / 112 - 0.5]]])
    )  # mirror of (0, 0)
    # same-size frame: identity
    assert torch.equal(point_to_sam((5, 7), (128, 128), 128).coords, torch.tensor([[[5.0, 7.0]]]))


def test_point_to_sam_validation() -> None:
    with pytest.raises(ValueError, match=r"x=168.0 is outside the frame.*\(112, 168\)"):
        point_to_sam((168, 5), (112, 168), 128)
    with pytest.raises(ValueError, match=r"y=-1.0 is outside"):
        point_to_sam((5, -1), (112, 168), 128)
    with pytest.raises(ValueError, match="single point"):
        point_to_sam([[1, 2], [3, 4]], (112, 168), 128)
    with pytest.raises(ValueError, match="frame_size"):
        point_to_sam((1, 2), (0, 10), 128)


def test_box_to_sam() -> None:
    b = box_to_sam((0, 0, 167, 111), (112, 168), 128)
    assert b.coords.dtype == torch.int32 and b.coords.shape == (1, 2, 2)
    assert torch.equal(b.coords, torch.tensor([[[0, 0], [127, 127]]], dtype=torch.int32))
    assert torch.equal(b.labels, torch.tensor([[2, 3]], dtype=torch.int32))
    f = box_to_sam((10, 20, 100, 90), (112, 168), 128, int_box_coords=False)
    assert f.coords.dtype == torch.float32 and f.kind == "box"
    i = box_to_sam((10, 20, 100, 90), (112, 168), 128)
    # int coordinates round outwards
    assert torch.equal(i.coords[0, 0], torch.floor(f.coords[0, 0]).int())
    assert torch.equal(i.coords[0, 1], torch.ceil(f.coords[0, 1]).int())
    # a tight box of a GT mask, mapped from original pixels, lands within a pixel of the reference's
    # (resized-mask) box of golden case c2 and exactly on it here
    inputs = _load("inputs_video_T1.safetensors")
    m = inputs["object_masks"][0, 1].bool()
    ys, xs = torch.nonzero(m, as_tuple=True)
    user = box_to_sam((int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())), tuple(m.shape), 128)
    ref = _load("case_c2_image_ref_box_generate.safetensors")["input.point_coords.0"]
    assert (user.coords - ref).abs().max() <= 1


def test_box_to_sam_validation() -> None:
    with pytest.raises(ValueError, match=r"x2=5.0 < x1=10.0"):
        box_to_sam((10, 0, 5, 4), (112, 168), 128)
    with pytest.raises(ValueError, match=r"y2=1.0 < y1=3.0"):
        box_to_sam((0, 3, 5, 1), (112, 168), 128)
    with pytest.raises(ValueError, match=r"box y2=112.5 is outside the frame.*\(112, 168\)"):
        box_to_sam((0, 0, 5, 112.5), (112, 168), 128)
    edge = box_to_sam((0, 0, 168, 112), (112, 168), 128)  # a result's exclusive box can be passed back
    assert edge.coords.tolist() == box_to_sam((0, 0, 167, 111), (112, 168), 128).coords.tolist()
    with pytest.raises(ValueError, match=r"box x1=168.0 is outside"):
        box_to_sam((168, 0, 168, 5), (112, 168), 128)
    with pytest.raises(ValueError, match="one box"):
        box_to_sam((0, 0, 5), (112, 168), 128)


def test_prompt_frame_position() -> None:
    assert prompt_frame_position(30, [0, 10, 30, 99]) == 2
    with pytest.raises(ValueError, match="not among the sampled frames"):
        prompt_frame_position(31, [0, 10, 30, 99])


# ------------------------------------------------------------------------------------- masks -> prompts


def _brute_force_sq_edt(m: np.ndarray) -> np.ndarray:
    fg, bg = np.argwhere(m), np.argwhere(~m)
    out = np.zeros(m.shape, dtype=np.int64)
    if len(fg) and len(bg):
        d = ((fg[:, None, :] - bg[None, :, :]) ** 2).sum(-1).min(1)
        out[fg[:, 0], fg[:, 1]] = d
    return out


def test_squared_distance_transform_is_exact() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(3, 30, 2)
        m = rng.random((h, w)) < rng.uniform(0.3, 0.95)
        m = np.pad(m, 1)  # every pixel has a background pixel somewhere
        got = squared_distance_transform(m).numpy()
        np.testing.assert_array_equal(got, _brute_force_sq_edt(m))
    assert squared_distance_transform(np.zeros((4, 5), bool)).sum() == 0


def test_mask_center_point_conventions() -> None:
    m = np.zeros((10, 12), bool)
    m[2:7, 3:10] = True  # 5 x 7 rectangle: rows 2..6, cols 3..9
    p = mask_center_point(m)
    assert p.coords.dtype == torch.float32 and torch.equal(p.labels, torch.tensor([[1]], dtype=torch.int32))
    # max distance 3 on row 4 for cols 5..7: the first in raster order wins
    assert p.coords.tolist() == [[[5.0, 4.0]]]
    # the image border counts as boundary (mask is zero-padded)
    full = np.ones((5, 9), bool)
    assert mask_center_point(full).coords.tolist() == [[[2.0, 2.0]]]  # first of x = 2..6 (distance 3)
    one = np.zeros((5, 5), bool)
    one[4, 0] = True
    assert mask_center_point(one).coords.tolist() == [[[0.0, 4.0]]]
    with pytest.raises(ValueError, match="empty"):
        mask_center_point(np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="2-D"):
        mask_center_point(np.zeros((1, 4, 4), bool))


def test_mask_center_point_large_is_fast() -> None:
    m = torch.zeros(768, 768, dtype=torch.bool)
    m[40:700, 10:750] = True
    p = mask_center_point(m)
    # centre row band: distance limited by the vertical extent (rows 40..699 -> 330)
    assert p.coords.tolist() == [[[339.0, 369.0]]]


def test_tight_and_noisy_boxes() -> None:
    m = torch.zeros(50, 60, dtype=torch.bool)
    m[10:31, 5:46] = True  # x 5..45 (w 40), y 10..30 (h 20)
    b = mask_tight_box(m)
    assert b.coords.dtype == torch.int32 and b.coords.tolist() == [[[5, 10], [45, 30]]]
    assert b.labels.tolist() == [[2, 3]]
    rng = np.random.default_rng(0)
    for _ in range(50):
        nb = sample_box_with_noise(m, rng)
        assert nb.coords.dtype == torch.float32
        c = nb.coords[0]
        assert (c[:, 0] - torch.tensor([5.0, 45.0])).abs().max() <= 4.0 + 1e-5  # min(0.1 * 40, 20)
        assert (c[:, 1] - torch.tensor([10.0, 30.0])).abs().max() <= 2.0 + 1e-5  # min(0.1 * 20, 20)
    big = torch.zeros(600, 600, dtype=torch.bool)
    big[0:600, 100:599] = True
    for _ in range(20):
        c = sample_box_with_noise(big, rng).coords[0]
        assert c.min() >= 0 and c.max() <= 599  # clamped to the frame
        assert (c[:, 0] - torch.tensor([100.0, 598.0])).abs().max() <= 20 + 1e-4  # bound 20 px
    exact = sample_box_with_noise(m, rng, noise=-1)
    assert exact.coords.dtype == torch.int32 and torch.equal(exact.coords, b.coords)
    with pytest.raises(ValueError, match="empty"):
        mask_tight_box(torch.zeros(3, 3, dtype=torch.bool))


def test_uniform_point_inside_mask() -> None:
    m = np.zeros((20, 20), bool)
    m[3:6, 10:12] = True
    rng = np.random.default_rng(1)
    seen = set()
    for _ in range(100):
        p = sample_point_uniform(m, rng)
        x, y = (int(v) for v in p.coords[0, 0])
        assert m[y, x]
        seen.add((x, y))
    assert len(seen) == 6
    q = mask_to_sam_prompt(m, 40, "uniform_point", np.random.default_rng(2))
    assert resize_mask(m, 40)[int(q.coords[0, 0, 1]), int(q.coords[0, 0, 0])]
    nb = mask_to_sam_prompt(m, 40, "noisy_box", rng)
    assert nb.kind == "box"
    with pytest.raises(ValueError, match="unknown prompt kind"):
        mask_to_sam_prompt(m, 40, "circle")  # type: ignore[arg-type]


def test_resize_mask_keeps_thin_objects() -> None:
    m = torch.zeros(2, 100, 100, dtype=torch.bool)
    m[0, 50, 50] = True
    r = resize_mask(m, (10, 20))
    assert r.shape == (2, 10, 20) and r[0].any() and not r[1].any()


# ------------------------------------------------------------------------------------- refer masks / text


def test_build_refer_mask_odd_frames_and_resize() -> None:
    masks = torch.zeros(3, 2, 50, 70, dtype=torch.bool)
    masks[2, 0, 0:5, 0:5] = True  # only on the last (odd) frame -> duplicated into group 1
    masks[0, 1, 45:50, 65:70] = True
    grid = (2, 4, 6)  # LLM frame 56 x 84 -> refer mask 2 x 3
    r = build_refer_mask(masks, grid)
    assert r.shape == (2, 2, 2, 3)
    assert r[1, 0, 0, 0] and r[1, 0].sum() == 1 and not r[0, 0].any()
    assert r[0, 1, 1, 2] and r[0, 1].sum() == 1 and not r[1, 1].any()
    with pytest.raises(ValueError, match="grid_t"):
        build_refer_mask(masks, (3, 4, 6))
    with pytest.raises(ValueError, match=r"\(T, O, H, W\)"):
        build_refer_mask(masks[0], grid)


def test_mem_prompt_text_variants() -> None:
    refer = torch.zeros(2, 3, 2, 2, dtype=torch.bool)
    refer[0, 0, 0, 0] = True
    refer[1, 0, 1, 1] = True
    refer[1, 2, 0, 1] = True
    text = mem_prompt_text(refer, num_frames=3, object_ids=[4, 5, 6])
    assert text == (
        "Here is a video with 3 frames denoted as <1> to <3>. The highlighted regions are as follows:\n"
        "[4]: <1>-<2> <|mem|> <3>-<4> <|mem|>\n[5]:\n[6]: <3>-<4> <|mem|>\n"
    )
    assert mem_prompt_text(refer).startswith("Here is a video with 4 frames denoted as <1> to <4>.")
    image = torch.ones(1, 2, 2, 2, dtype=torch.bool)
    assert mem_prompt_text(image, is_image=True) == (
        "Here is an image with the following highlighted regions:\n[0]: <|mem|>\n[1]: <|mem|>\n"
    )
    with pytest.raises(ValueError, match="one temporal group"):
        mem_prompt_text(refer, is_image=True)
    with pytest.raises(ValueError, match="object ids"):
        mem_prompt_text(refer, object_ids=[1])

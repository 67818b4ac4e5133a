"""The processor reproduces the reference's model inputs (golden input_ids, pixels, SAM 2 frames, refer_mask)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from unipixel.media import load_media
from unipixel.processing import ObjectPrompt


def _case_media(golden_dir, case):
    v = load_file(str(golden_dir / f"inputs_video_{case['video']}.safetensors"))
    frames = v["frames_uint8"].numpy()
    return v, load_media(frames if frames.shape[0] > 1 else frames[0])


def _prepare(proc, golden_manifest, media, prompt, **kw):
    cfg = golden_manifest["config"]
    return proc.prepare(
        media, prompt, min_pixels=cfg["min_pixels"], max_pixels=cfg["max_pixels"], sam2_image_size=128, **kw
    )


@pytest.mark.parametrize(
    "name", ["a_image_seg_generate", "b_video_seg_generate", "f_video_seg_objabsent", "c2_image_ref_box_generate"]
)
def test_text_cases_reproduce_reference_inputs(golden_dir, golden_manifest, golden_processor, name) -> None:
    case = golden_manifest["cases"][name]
    v, media = _case_media(golden_dir, case)
    objects = []
    for vp in case.get("visual_prompts", []):  # c2: a tight box of object 1, given in original pixels
        ys, xs = np.nonzero(v["object_masks"][vp["frame"], vp["obj"]].numpy())
        objects.append(ObjectPrompt(frame=vp["frame"], box=(xs.min(), ys.min(), xs.max(), ys.max())))
    prep = _prepare(
        golden_processor, golden_manifest, media, case["prompt"], objects=objects,
        assistant_prefix=case.get("forced_assistant_prefix") or None,
    )
    kw = prep.model_kwargs
    assert kw["input_ids"][0].tolist() == case["input_ids"]
    assert torch.equal(kw["pixel_values_videos"], v["pixel_values_videos"])
    assert torch.equal(kw["video_grid_thw"], v["video_grid_thw"])
    assert torch.equal(kw["sam2_frames"][0], v["sam2_frames"])
    assert prep.frame_size == tuple(v["frame_size"].tolist())
    if objects:
        d = load_file(str(golden_dir / case["file"]))
        assert kw["ref_prompts"][0][0].coords.tolist() == d["input.point_coords.0"][0].tolist()


def test_ref_case_with_teacher_forced_response(golden_dir, golden_manifest, golden_processor) -> None:
    case = golden_manifest["cases"]["c_video_ref_point_box_forward"]
    _, media = _case_media(golden_dir, case)
    objects = [ObjectPrompt(frame=0, point=(31, 41)), ObjectPrompt(frame=3, box=(50, 70, 90, 110))]
    prep = _prepare(golden_processor, golden_manifest, media, case["prompt"], objects=objects, response=case["response"])
    assert prep.model_kwargs["input_ids"][0].tolist() == case["input_ids"]
    frames = [p.frame for p in prep.model_kwargs["ref_prompts"][0]]
    assert frames == [0, 3]


def test_mask_prompts_build_refer_mask_and_region_prefix(golden_dir, golden_manifest, golden_processor) -> None:
    case = golden_manifest["cases"]["d_video_mem_generate"]
    v, media = _case_media(golden_dir, case)
    masks = v["object_masks"].numpy().astype(bool).copy()
    masks[0:2, 1] = False  # as the fixture notes: object 1 zeroed in frames 0-1
    question = case["prompt"].split("\n", 3)[-1]
    prep = _prepare(
        golden_processor, golden_manifest, media, question,
        objects=[ObjectPrompt(mask=masks[:, 0]), ObjectPrompt(mask=masks[:, 1])],
        assistant_prefix=case["forced_assistant_prefix"],
    )
    d = load_file(str(golden_dir / case["file"]))
    assert prep.model_kwargs["input_ids"][0].tolist() == case["input_ids"]
    assert torch.equal(prep.model_kwargs["refer_mask"][0], d["input.refer_mask"].bool())


def test_bad_prompts_raise_clear_errors(golden_dir, golden_manifest, golden_processor) -> None:
    case = golden_manifest["cases"]["b_video_seg_generate"]
    _, media = _case_media(golden_dir, case)
    with pytest.raises(ValueError, match="<\\|ref\\|> tokens but 1 point/box"):
        _prepare(golden_processor, golden_manifest, media, "What is this?", objects=[ObjectPrompt(point=(3, 4))])
    with pytest.raises(ValueError, match="outside"):
        _prepare(golden_processor, golden_manifest, media, "[0] <|ref|>?", objects=[ObjectPrompt(point=(500, 4))])
    with pytest.raises(ValueError, match="frame 9"):
        _prepare(golden_processor, golden_manifest, media, "[0] <|ref|>?", objects=[ObjectPrompt(frame=9, point=(3, 4))])
    with pytest.raises(ValueError, match="mask has shape"):
        _prepare(golden_processor, golden_manifest, media, "q", objects=[ObjectPrompt(mask=np.ones((5, 5), bool))])
    with pytest.raises(ValueError, match="empty"):
        _prepare(golden_processor, golden_manifest, media, "q", objects=[ObjectPrompt(mask=np.zeros((112, 168), bool))])
    with pytest.raises(ValueError, match="exactly one of point, box or mask"):
        _prepare(golden_processor, golden_manifest, media, "q", objects=[ObjectPrompt(point=(1, 1), box=(0, 0, 2, 2))])

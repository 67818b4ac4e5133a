"""Reference-quirk switches on a real model: default = reference behaviour; switched off = the documented fix."""

from __future__ import annotations

import torch

from unipixel.sam2.tracker import Sam2Tracker


def _case_c_inputs(fixture_set):
    case = fixture_set.cases["c_video_ref_point_box_forward"]
    return fixture_set.model_inputs(case, fixture_set.tensors(case["file"]))


def test_prompt_first_frame_switch(fixture_set, golden_model) -> None:
    inputs = _case_c_inputs(fixture_set)  # object 0: point on frame 0; object 1: box on frame 3
    with torch.inference_mode():
        ref = golden_model(**inputs).tracks[0]
        golden_model.config.quirk_prompt_first_frame = False
        try:
            out = golden_model(**inputs)
        finally:
            golden_model.config.quirk_prompt_first_frame = True
    fixed = out.tracks[0]
    assert fixed.cond_frames[0] == (0,) and fixed.cond_frames[1] == (3,)
    assert torch.allclose(fixed.low_res_logits[0], ref.low_res_logits[0], atol=1e-5)  # frame-0 object unchanged
    tracker = Sam2Tracker(golden_model.sam2)
    with torch.inference_mode():
        feats = tracker.encode_frames(inputs["sam2_frames"][0])
        alone = tracker.track(feats, out.seg_queries[1:2], frame_size=inputs["frame_size"][0], cond_frame=3)
    assert torch.allclose(fixed.low_res_logits[1], alone.low_res_logits[0], atol=1e-5)
    assert not torch.allclose(fixed.low_res_logits[1], ref.low_res_logits[1], atol=1e-3)

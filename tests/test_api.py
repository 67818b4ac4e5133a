"""The Python API on the golden tiny checkpoint: predict, prompts, PixelQA, chat, batch, errors."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.torch import load_file

from unipixel.api import UniPixel, keep_frames_sampling


@pytest.fixture(scope="module")
def api(golden_model, golden_processor, golden_manifest) -> UniPixel:
    cfg = golden_manifest["config"]
    return UniPixel(golden_model, golden_processor, min_pixels=cfg["min_pixels"], max_pixels=cfg["max_pixels"],
                    max_new_tokens=16)


@pytest.fixture(scope="module")
def frames(golden_dir) -> np.ndarray:
    return load_file(str(golden_dir / "inputs_video_T4.safetensors"))["frames_uint8"].numpy()


def test_predict_reproduces_golden_generation_and_mask(api, frames, golden_manifest, golden_dir) -> None:
    case = golden_manifest["cases"]["b_video_seg_generate"]
    res = api.predict(frames, case["prompt"])
    tok = api.processor.tokenizer
    assert res.text == tok.decode(case["generated_ids"], skip_special_tokens=False)
    assert len(res.objects) == 1 and res.objects[0].id == 0
    want = load_file(str(golden_dir / case["file"]))["output.seg.0.binary_mask"].numpy().astype(bool)
    logits = load_file(str(golden_dir / case["file"]))["output.seg.0.video_res_logits"].numpy()
    got = res.objects[0].masks.array()
    confident = np.abs(logits) > 1e-4
    assert (got[confident] == want[confident]).all()
    assert res.frame_indices == [0, 1, 2, 3] and res.llm_frame_indices == [0, 1, 2, 3]
    assert "<|seg|>" not in res.clean_text and "[0]" in res.clean_text
    d = res.to_dict()
    assert d["objects"][0]["masks"][0]["size"] == [112, 168]


def test_teacher_forced_points_and_boxes_give_one_object_each(api, frames) -> None:
    res = api.predict(frames, "What is [0] doing with [1]?", points=[(31, 41, 0)], boxes=[(50, 70, 90, 110, 3)],
                      response="[0] <|seg|> [1] <|seg|>")
    assert [o.id for o in res.objects] == [0, 1]
    assert all(len(o.masks) == 4 for o in res.objects)


def test_pixelqa_two_steps(api, frames) -> None:
    res = api.pixelqa(frames, "What is [0] doing with [1]?", ["Chasing it.", "Ignoring it."],
                      points=[(31, 41, 0)], boxes=[(50, 70, 90, 110, 3)])
    assert res.text.startswith("The best option is (")
    assert [o.id for o in res.objects] == [0, 1]
    assert res.choice is None or res.choice in "AB"
    assert res.to_dict()["choice"] == res.choice and type(res).from_dict(res.to_dict()).choice == res.choice


def test_chat_feeds_objects_back_as_memory(api, frames) -> None:
    session = api.chat(frames)
    first = session.ask("Please segment the moving red object in this video.")
    assert list(session.objects) == [o.id for o in first.objects]
    second = session.ask("What is [0] doing?")
    assert session.history[0][1] == first.clean_text
    assert isinstance(second.text, str)  # the second turn ran with the first object as <|mem|> input
    session.set_mask(0, np.zeros((4, 112, 168), bool) | (np.arange(168) < 20))
    with pytest.raises(ValueError, match="masks must be"):
        session.set_mask(0, np.zeros((2, 2), bool))


def test_a_bare_point_is_one_point_and_prompt_frames_survive_batching(api, frames) -> None:
    one = api.predict(frames, "What is [0]?", points=(31, 41, 2), response="[0] <|seg|>")
    listed = api.predict(frames, "What is [0]?", points=[(31, 41, 2)], response="[0] <|seg|>")
    assert one.objects[0].masks.rle(0) == listed.objects[0].masks.rle(0)
    many = np.concatenate([frames] * 25)  # 100 frames: uniform sampling of 4 would skip frame 5
    assert 5 not in keep_frames_sampling(100, 4, keep=[]).tolist()
    out = api.predict_batch([{"media": many, "prompt": "What is [0]?", "points": [(31, 41, 5)],
                              "options": {"num_frames": 4, "response": "[0] <|seg|>"}}])
    assert 5 in out[0].llm_frame_indices


def test_masks_are_numbered_after_points_and_tensors_are_accepted(api, frames) -> None:
    import torch

    mask = np.zeros(frames.shape[1:3], bool)
    mask[10:30, 20:50] = True
    seen = {}
    real = api.run

    def spy(media, text, objects, **kw):  # noqa: ANN001, ANN003, ANN202
        seen.update(text=text, mem=kw.get("mem_object_ids"))
        return real(media, text, objects, **kw)

    api.run = spy
    try:
        api.predict(frames, "Is [0] touching [1]?", points=[torch.tensor([31.0, 41.0])], masks=[(mask, 0)],
                    response="Yes.")
    finally:
        del api.run
    assert seen["mem"] == [1] and "[0] <|ref|>" in seen["text"]  # the mask is [1], as the prompt says
    with pytest.raises(ValueError, match=r"refers to \[2\]"):
        api.predict(frames, "Is [0] touching [2]?", points=[(31, 41)], masks=[(mask, 0)])


def test_generated_objects_do_not_take_the_ids_of_prompted_ones(api, frames) -> None:
    res = api.predict(frames, "What is near [0]?", points=[(31, 41)], response="The red thing <|seg|> is near [0].")
    assert [o.id for o in res.objects] == [1] and res.clean_text == "The red thing [1] is near [0]."
    named = api.predict(frames, "Segment [0].", points=[(31, 41)], response="[0] <|seg|>")
    assert [o.id for o in named.objects] == [0]  # the model naming the prompted object keeps its id


def test_from_pretrained_checks_device_and_dtype() -> None:
    from unipixel.api import _resolve_device, _resolve_dtype

    with pytest.raises(ValueError, match="unknown device 'bogus'"):
        _resolve_device("bogus")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            _resolve_device("cuda")
    assert _resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    assert _resolve_dtype(None, torch.device("cpu")) == torch.float32
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        _resolve_dtype("float8", torch.device("cpu"))


def test_chat_ids_in_the_text_match_the_objects_across_turns(api, frames) -> None:
    session = api.chat(frames)
    first = session.ask("Please segment the red object.", response="It is <|seg|>.")
    second = session.ask("And the blue one?", response="It is <|seg|>.")
    assert [o.id for o in first.objects] == [0] and first.clean_text == "It is [0]."
    assert [o.id for o in second.objects] == [1] and second.clean_text == "It is [1]."
    assert session.history[1][1] == "It is [1]." and sorted(session.objects) == [0, 1]
    before = session.objects[1].rle(0)
    third = session.ask("Segment [0] again.", response="[0] <|seg|>")
    assert [o.id for o in third.objects] == [0] and sorted(session.objects) == [0, 1]  # re-segmented, not new
    assert session.objects[1].rle(0) == before
    with pytest.raises(ValueError, match=r"refers to \[7\] but the objects are: \[0\], \[1\]"):
        session.ask("What is [7] doing?")


def test_batch_and_frame_keeping(api, frames) -> None:
    out = api.predict_batch([{"media": frames, "prompt": "Please segment the moving red object in this video."}] * 2)
    assert out[0].text == out[1].text
    idx = keep_frames_sampling(100, 8, keep=[37, 38])
    assert 37 in idx and 38 in idx and len(idx) == 8


def test_bad_input_is_explained(api, frames) -> None:
    with pytest.raises(ValueError, match=r"no <\|ref\|> and no '\[0\]'"):
        api.predict(frames, "What is this?", points=[(3, 4)])
    with pytest.raises(ValueError, match=r"frame 99 but the media has 4 frames \(0\.\.3\)"):
        api.predict(frames, "What is [0]?", points=[(3, 4, 99)])
    with pytest.raises(ValueError, match=r"frame 1 but the media is an image \(frame 0 only\)"):
        api.predict(frames[0], "What is [0]?", points=[(3, 4, 1)])
    with pytest.raises(ValueError, match="whole number >= 0"):
        api.predict(frames, "What is [0]?", points=[(3, 4, -1)])
    with pytest.raises(ValueError, match="whole number >= 0"):
        api.predict(frames, "What is [0]?", points=[(3, 4, 2.5)])
    with pytest.raises(ValueError, match="holds numbers, got str"):
        api.predict(frames, "What is [0]?", points=[("3", "4")])
    with pytest.raises(ValueError, match="non-empty string"):
        api.predict(frames, "  ")
    with pytest.raises(ValueError, match="non-empty string"):
        api.predict(frames, None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"refers to \[1\] but the objects are: \[0\]"):
        api.predict(frames, "Is [0] left of [1]?", points=[(3, 4)])
    with pytest.raises(ValueError, match=r"refers to \[0\] but the objects are: none"):
        api.predict(frames, "What is [0]?")
    with pytest.raises(ValueError, match="max_new_tokens must be a whole number >= 1"):
        api.predict(frames, "What is this?", max_new_tokens=0)
    with pytest.raises(ValueError, match="num_frames must be a whole number >= 1"):
        api.predict(frames, "What is this?", num_frames=0)
    with pytest.raises(ValueError, match="options must be a list of 2 to 26"):
        api.pixelqa(frames, "What is [0]?", "AB", points=[(3, 4)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="point is 2 numbers"):
        api.predict(frames, "What is [0]?", points=[(3,)])
    with pytest.raises((ValueError, FileNotFoundError)):
        api.predict("/no/such/file.mp4", "hi")


def test_from_pretrained_names_a_mistyped_keyword(golden_dir) -> None:
    with pytest.raises(ValueError, match=r"unknown keyword arguments \['num_frame'\].*num_frames"):
        UniPixel.from_pretrained(golden_dir / "ckpt_tiny", num_frame=4)

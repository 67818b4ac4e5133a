"""Unit tests of the web demo's callbacks (no server, no browser): prompt bookkeeping, drawing, highlighting,
prediction outputs with the tiny golden model, the CLI entry point.

Why: the browser test (test_demo_browser.py) checks the wiring once; these check the behaviour of every
callback quickly and deterministically, including cases the browser test cannot reach with a random-weight
model (answers with masks, answers without ``<|seg|>``, mixed point/box/mask prompts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

gr = pytest.importorskip("gradio", reason="the web demo needs gradio")

from unipixel import demo  # noqa: E402
from unipixel.api import UniPixel  # noqa: E402
from unipixel.results import UniPixelResult, build_result  # noqa: E402
from unipixel.writers import object_color  # noqa: E402


def _hex(k: int) -> str:
    return "#{:02x}{:02x}{:02x}".format(*object_color(k))


@pytest.fixture(scope="module")
def frames(golden_dir: Path) -> np.ndarray:
    return load_file(str(golden_dir / "inputs_video_T4.safetensors"))["frames_uint8"].numpy()


@pytest.fixture(scope="module")
def frames_dir(frames: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The golden 4-frame clip as a folder of PNGs: lossless, so predictions match the golden ones."""
    d = tmp_path_factory.mktemp("clip")
    for i, f in enumerate(frames):
        Image.fromarray(f).save(d / f"{i:05d}.png")
    return d


@pytest.fixture(scope="module")
def image_path(frames: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("img") / "frame.png"
    Image.fromarray(frames[0]).save(p)
    return p


@pytest.fixture(scope="module")
def api(golden_model: Any, golden_processor: Any, golden_manifest: dict) -> UniPixel:
    cfg = golden_manifest["config"]
    return UniPixel(golden_model, golden_processor, min_pixels=cfg["min_pixels"], max_pixels=cfg["max_pixels"],
                    num_frames=4, max_new_tokens=8)


class FakeAPI:
    """Real media loading, canned answer: drives the no-<|seg|> and error paths without a model."""

    num_frames = 4
    max_new_tokens = 8

    def __init__(self, text: str = "It is moving to the left.") -> None:
        self.text = text
        self.calls: list[dict[str, Any]] = []

    def load(self, media: Any, num_frames: int | None = None, keep: Any = ()) -> Any:
        from unipixel.media import load_media

        return load_media(media, num_frames=num_frames or self.num_frames)

    def predict(self, media: Any, prompt: str, **kw: Any) -> UniPixelResult:
        self.calls.append({"media": media, "prompt": prompt, **kw})
        return build_result(self.text, tracks=[], frame_indices=list(media.frame_indices),
                            frame_size=media.frame_size, prompt=prompt)


# ------------------------------------------------------------------------------------------- media + prompts


def test_load_preview_video_and_image(frames_dir: Path, image_path: Path) -> None:
    st = demo.load_preview(frames_dir)
    assert st.loaded and not st.is_image and st.frames is not None
    assert st.frames.shape == (4, 112, 168, 3) and st.frame_indices.tolist() == [0, 1, 2, 3]
    assert st.frame_at(99)[1] == 3  # slider positions are clamped
    img = demo.load_preview(image_path)
    assert img.is_image and img.frames is not None and img.frames.shape[0] == 1
    assert not demo.DemoState().loaded
    with pytest.raises(ValueError, match="upload"):
        demo.DemoState().frame_at(0)


def test_load_preview_caps_frames_and_keeps_original_indices(tmp_path: Path, frames: np.ndarray) -> None:
    for i in range(10):
        Image.fromarray(frames[i % 4]).save(tmp_path / f"{i:05d}.png")
    st = demo.load_preview(tmp_path, max_frames=4)
    assert st.frames is not None and st.frames.shape[0] == 4 and st.total_frames == 10
    assert st.frame_indices[-1] == 9  # prompts on a preview frame use its original index


def test_points_boxes_numbering_undo_clear(frames_dir: Path) -> None:
    st = demo.load_preview(frames_dir)
    st = demo.add_click(st, 1, 100, 20, "box")  # first corner only
    assert st.pending == (100.0, 20.0, 1) and st.prompts == []
    st = demo.add_click(st, 1, 40, 90, "box")  # opposite corner → normalised box
    assert st.pending is None and st.prompts[0].coords == (40.0, 20.0, 101.0, 91.0) and st.prompts[0].frame == 1
    st = demo.add_click(st, 2, 500, -5, "point")  # clamped into the frame
    assert st.prompts[1].coords == (167.0, 0.0) and st.prompts[1].frame == 2
    # the API numbers points before boxes: the later point is [0], the box [1]
    assert [p.kind for p in demo.ordered_prompts(st)] == ["point", "box"]
    text = demo.describe_prompts(st)
    assert "**[0]** point (167, 0) on frame 2" in text and "**[1]** box (40, 20)" in text
    # a corner on another frame starts a new box there instead of mixing frames
    st = demo.add_click(st, 0, 5, 5, "box")
    st = demo.add_click(st, 3, 9, 9, "box")
    assert st.pending == (9.0, 9.0, 3) and len(st.prompts) == 2
    st = demo.undo_prompt(st)  # drops the pending corner first
    assert st.pending is None and len(st.prompts) == 2
    st = demo.undo_prompt(st)
    assert [p.kind for p in st.prompts] == ["box"]
    assert demo.clear_prompts(st).prompts == []
    with pytest.raises(ValueError, match="mode"):
        demo.add_click(st, 0, 1, 1, "lasso")


def test_degenerate_box_still_covers_the_clicked_pixel(frames_dir: Path) -> None:
    st = demo.load_preview(frames_dir)
    st = demo.add_click(demo.add_click(st, 0, 10, 10, "box"), 0, 10, 10, "box")
    assert st.prompts[0].coords == (10.0, 10.0, 11.0, 11.0)
    st = demo.add_click(demo.add_click(st, 0, 0, 0, "box"), 0, 999, 999, "box")
    assert st.prompts[1].coords == (0.0, 0.0, 168.0, 112.0)  # clamped to the frame


def test_render_frame_draws_prompts_in_object_colours(frames_dir: Path) -> None:
    st = demo.load_preview(frames_dir)
    st = demo.add_click(st, 0, 80, 60, "point")
    s = int(demo.display_scale(st))
    assert s == 4  # a 168x112 frame is shown 4x larger so that it can be clicked precisely
    assert demo.shown_to_original(st, 80 * s + 3, 60 * s) == (80.0, 60.0)
    out = demo.render_frame(st, 0)
    assert out.shape == (112 * s, 168 * s, 3) and out.dtype == np.uint8
    assert tuple(out[60 * s + 2, 80 * s + 2]) == object_color(0)  # the point's dot
    plain = np.repeat(np.repeat(st.frames[1], s, axis=0), s, axis=1)
    assert np.array_equal(demo.render_frame(st, 1), plain)  # other frames are untouched
    st = demo.add_click(st, 1, 30, 30, "box")
    assert not np.array_equal(demo.render_frame(st, 1), plain)  # the pending corner is drawn


def test_large_media_is_previewed_small_but_prompted_in_original_pixels(tmp_path: Path) -> None:
    big = np.zeros((1200, 2400, 3), np.uint8)
    big[:, 1200:] = 255
    Image.fromarray(big).save(tmp_path / "big.png")
    st = demo.load_preview(tmp_path / "big.png")
    assert st.size == (1200, 2400) and st.frames is not None and st.frames.shape[1:3] == (480, 960)
    assert demo.display_scale(st) == pytest.approx(0.4)
    shown, _ = demo.shown_frame(st, 0)
    assert shown.shape == (480, 960, 3)
    x, y = demo.shown_to_original(st, 600, 100)  # a shown pixel → the original pixel under it
    assert (x, y) == (1501.0, 251.0)
    st = demo.add_click(st, 0, x, y, "point")
    assert st.prompts[0].coords == (1501.0, 251.0)
    out = demo.render_frame(st, 0)
    assert out.shape == (480, 960, 3) and tuple(out[100, 600]) == object_color(0)
    layer = np.zeros((480, 960, 4), np.uint8)  # painted on the shown frame
    layer[:, :480, 3] = 255
    st = demo.add_painted_mask(st, 0, {"layers": [layer]})
    m = st.prompts[-1].mask
    assert m is not None and m.shape == (1200, 2400) and m[:, :1200].all() and not m[:, 1200:].any()


def test_suggest_prompt_prefills_references_only_when_empty(frames_dir: Path) -> None:
    st = demo.load_preview(frames_dir)
    assert demo.suggest_prompt(st, "") == ""
    st = demo.add_click(st, 0, 5, 5, "point")
    assert demo.suggest_prompt(st, "") == "What is [0] doing?"
    assert demo.suggest_prompt(st, "Segment it.") == "Segment it."
    st = demo.add_click(st, 0, 9, 9, "point")
    assert demo.suggest_prompt(st, "  ") == "What are [0] and [1] doing?"


def test_editor_mask_and_painted_mask_prompt(frames_dir: Path) -> None:
    st = demo.load_preview(frames_dir)
    layer = np.zeros((112, 168, 4), np.uint8)
    layer[10:20, 30:50, 3] = 255
    value = {"background": st.frames[0], "layers": [layer], "composite": None}
    m = demo.editor_mask(value, (112, 168))
    assert m is not None and m.sum() == 200
    small = np.zeros((56, 84, 4), np.uint8)  # a canvas of another size is scaled to the frame
    small[5:10, 15:25, 3] = 255
    m2 = demo.editor_mask({"layers": [small]}, (112, 168))
    assert m2 is not None and m2.shape == (112, 168) and m2.sum() == 200
    assert demo.editor_mask({"layers": [np.zeros((112, 168, 4), np.uint8)]}, (112, 168)) is None
    assert demo.editor_mask(None, (112, 168)) is None
    with pytest.raises(ValueError, match="paint"):
        demo.add_painted_mask(st, 0, None)
    st = demo.add_painted_mask(st, 2, value)
    assert st.prompts[0].kind == "mask" and st.prompts[0].frame == 2
    assert "painted mask (200 px) on frame 2" in demo.describe_prompts(st)
    s = int(demo.display_scale(st))
    out = demo.render_frame(st, 2)[::s, ::s]
    assert not np.array_equal(out[10:20, 30:50], st.frames[2][10:20, 30:50])  # blended in its colour


# ------------------------------------------------------------------------------------------- answers


def test_highlight_segments_colours_match_overlay() -> None:
    mask = np.zeros((1, 8, 8), bool)
    mask[0, 2:5, 2:5] = True
    res = build_result("The red square <|seg|> is left of [2] <|seg|>.", tracks=[mask, mask])
    segs, cmap = demo.highlight_segments(res)
    assert "".join(t for t, _ in segs) == res.clean_text
    labelled = [(t, lab) for t, lab in segs if lab is not None]
    assert [t for t, _ in labelled] == ["[0]", "[2]"]
    assert cmap[labelled[0][1]] == _hex(0) and cmap[labelled[1][1]] == _hex(2)
    assert labelled[0][1] == "0: The red square"  # the label hint from the answer


def test_highlight_segments_without_seg_marks_prompt_references() -> None:
    res = build_result("[0] is chasing [1]; [7] is unknown.", tracks=[])
    segs, cmap = demo.highlight_segments(res, n_prompts=2)
    assert [t for t, lab in segs if lab] == ["[0]", "[1]"]  # [7] is neither a prompt nor a mask
    assert set(cmap.values()) == {_hex(0), _hex(1)}
    plain, cmap2 = demo.highlight_segments(build_result("Nothing to see.", tracks=[]))
    assert plain == [("Nothing to see.", None)] and cmap2 == {}


def test_run_prediction_without_seg_is_graceful(frames_dir: Path, tmp_path: Path) -> None:
    fake = FakeAPI("It is moving to the left.")
    st = demo.load_preview(frames_dir)
    st = demo.add_click(st, 1, 40, 40, "point")
    out = demo.run_prediction(fake, st, "What is [0] doing?", tmp_path / "req", num_frames=4, max_new_tokens=8)
    assert out.result.objects == [] and out.is_video and out.overlay_path.suffix == ".mp4"
    assert out.overlay_path.stat().st_size > 0
    assert "No masks" in out.details
    call = fake.calls[0]
    assert call["points"] == [(40.0, 40.0, 1)] and call["boxes"] == [] and call["masks"] == []
    assert "mem_object_ids" not in call
    back = UniPixelResult.from_json(out.json_path)
    assert back.clean_text == "It is moving to the left." and back.objects == []


def test_run_prediction_errors(frames_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="upload"):
        demo.run_prediction(FakeAPI(), demo.DemoState(), "hi", tmp_path)
    st = demo.load_preview(frames_dir)
    with pytest.raises(ValueError, match="question"):
        demo.run_prediction(FakeAPI(), st, "   ", tmp_path)


def test_run_prediction_real_model_video_mask(api: UniPixel, frames_dir: Path, golden_dir: Path,
                                              golden_manifest: dict, tmp_path: Path) -> None:
    """Golden case b through the demo: the answer and mask are the golden ones; overlay video and JSON exist."""
    case = golden_manifest["cases"]["b_video_seg_generate"]
    st = demo.load_preview(frames_dir)
    out = demo.run_prediction(api, st, case["prompt"], tmp_path, num_frames=4, max_new_tokens=16)
    assert out.result.text == api.processor.tokenizer.decode(case["generated_ids"], skip_special_tokens=False)
    assert [o.id for o in out.result.objects] == [0]
    golden = load_file(str(golden_dir / case["file"]))
    want = golden["output.seg.0.binary_mask"].numpy().astype(bool)
    confident = np.abs(golden["output.seg.0.video_res_logits"].numpy()) > 1e-4
    got = out.result.objects[0].masks.array()
    assert (got[confident] == want[confident]).all()
    assert [t for t, lab in out.segments if lab] == ["[0]"] and list(out.color_map.values()) == [_hex(0)]
    assert out.is_video and out.overlay_path.suffix == ".mp4" and out.overlay_path.stat().st_size > 0
    assert len(UniPixelResult.from_json(out.json_path).objects) == 1
    assert "**[0]**" in out.details


def test_run_prediction_real_model_image_with_mixed_prompts(api: UniPixel, image_path: Path,
                                                            tmp_path: Path) -> None:
    """Point + box + painted mask on an image: the API accepts the numbering the UI shows ([2] = the mask)."""
    st = demo.load_preview(image_path)
    st = demo.add_click(st, 0, 30, 40, "point")
    st = demo.add_click(demo.add_click(st, 0, 50, 60, "box"), 0, 90, 100, "box")
    layer = np.zeros((112, 168, 4), np.uint8)
    layer[20:60, 100:150, 3] = 255
    st = demo.add_painted_mask(st, 0, {"layers": [layer]})
    out = demo.run_prediction(api, st, "What are [0], [1] and [2] doing?", tmp_path, max_new_tokens=4)
    assert not out.is_video and out.overlay_path.suffix == ".png"
    assert Image.open(out.overlay_path).size == (168 * 4, 112 * 4)  # small media: overlay drawn enlarged
    assert out.json_path.exists()
    with pytest.raises(ValueError, match=r"\[1\]"):  # the API's message names the missing reference
        demo.run_prediction(api, st, "What is [0] doing?", tmp_path)


# ------------------------------------------------------------------------------------------- app + CLI


def test_build_demo_builds_blocks(tmp_path: Path) -> None:
    app = demo.build_demo(FakeAPI(), work_dir=tmp_path, examples=[])
    assert isinstance(app, gr.Blocks)
    ids = {getattr(b, "elem_id", None) for b in app.blocks.values()}
    assert {"media-upload", "prompt-frame", "prompt-text", "submit-btn", "answer", "overlay-video"} <= ids


def test_main_reports_missing_builtin_model(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def missing(*a: Any, **k: Any) -> Any:
        raise FileNotFoundError("the built-in model is not present in this install")

    monkeypatch.setattr(UniPixel, "from_pretrained", classmethod(lambda cls, *a, **k: missing()))
    assert demo.main([]) == 2
    err = capsys.readouterr().err
    assert "built-in model is not present" in err and "--model" in err


def test_main_reports_a_bad_device_in_one_line(capsys: pytest.CaptureFixture) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    assert demo.main(["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "error: cannot load the model: device 'cuda'" in err and "Traceback" not in err and "hint" not in err


def test_cli_delegates_demo_help(capsys: pytest.CaptureFixture) -> None:
    from unipixel.cli import main as cli_main

    with pytest.raises(SystemExit) as exc:
        cli_main(["demo", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--model" in out and "--port" in out and "--max-pixels" in out


def test_new_media_clears_the_previous_results_and_bad_media_drops_the_old_state(
    tmp_path: Path, image_path: Path
) -> None:
    app = demo.build_demo(FakeAPI(), work_dir=tmp_path, examples=[])
    on_media = next(f.fn for f in app.fns.values() if f.fn.__name__ == "on_media")
    good = on_media(str(image_path))
    assert good[0].loaded and len(good) == 11
    assert good[6].value is None and good[9] is None and good[10] == ""  # answer, JSON and details emptied
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    out = on_media(str(bad))  # a warning, not an exception: the state is replaced by an empty one
    assert not out[0].loaded and out[1] is None and out[9] is None


def test_masks_on_every_frame_are_refused_for_a_long_video(frames_dir: Path, tmp_path: Path) -> None:
    st = demo.load_preview(frames_dir)
    with pytest.raises(ValueError, match=r"limited to 2 frames and this video has \d+"):
        demo.run_prediction(FakeAPI(), st, "Segment it.", tmp_path, all_frames=True, max_all_frames=2)

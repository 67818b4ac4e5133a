"""Training pipeline: features (golden parity), labels, sampler, mixture, one real LoRA step, partial/full saves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from test_train_common import (
    CKPT,
    GOLDEN,
    PIXELS,
    build_reference_dirs,
    load_golden_model,
    make_samples,
    training_args,
)
from unipixel.data.masks import encode_mask
from unipixel.data.schema import MediaRef, ObjectAnnotation, Sample, Turn, VisualPrompt
from unipixel.train.collator import UniPixelCollator
from unipixel.train.dataset import (
    IGNORE_INDEX,
    FeatureConfig,
    MixedSamples,
    UniPixelTrainDataset,
    assistant_labels,
    build_features,
    parse_dataset_spec,
    sample_training_frames,
)
from unipixel.train.sampler import TypeGroupedSampler
from unipixel.train.stages import apply_tuning, get_stage


@pytest.fixture(scope="module")
def processor():
    from unipixel.processing import UniPixelProcessor

    return UniPixelProcessor.from_pretrained(CKPT)


# ------------------------------------------------------------------------------------------------ features
def _golden_case_e_sample(tmp: Path) -> tuple[Sample, dict, dict]:
    """The reference's training fixture (case e) written as a Sample: 4 frames, object 0 referred by a point on
    frame 1 and segmented, object 1 segmented in the second turn."""
    v = load_file(str(GOLDEN / "inputs_video_T4.safetensors"))
    d = load_file(str(GOLDEN / "case_e_train_forward.safetensors"))
    case = json.loads((GOLDEN / "golden.json").read_text())["cases"]["e_train_forward"]
    files = []
    for t in range(v["frames_uint8"].shape[0]):
        f = tmp / f"{t:05d}.png"
        Image.fromarray(v["frames_uint8"][t].numpy()).save(f)
        files.append(str(f))
    om = v["object_masks"].numpy().astype(bool)
    # (42, 42) in the 128-px SAM 2 frame = this pixel-centre point of the 112x168 frame.
    point = [(42 + 0.5) * 168 / 128 - 0.5, (42 + 0.5) * 112 / 128 - 0.5]
    objs = [
        ObjectAnnotation(0, {t: encode_mask(om[t, 0]) for t in range(4)}, VisualPrompt("point", frame=1, point=point)),
        ObjectAnnotation(1, {t: encode_mask(om[t, 1]) for t in range(4)}),
    ]
    s = Sample("golden/e", "pixelqa", MediaRef(frames=files), [Turn(r, x) for r, x in case["messages_text"]], objs)
    return s, v, d


def test_features_reproduce_the_reference_training_inputs_and_loss(processor, tmp_path: Path) -> None:
    sample, v, d = _golden_case_e_sample(tmp_path)
    cfg = FeatureConfig(num_frames=4, sampling="uniform", sam2_image_size=128, **PIXELS)
    f = build_features(sample, processor, cfg)
    assert torch.equal(f["input_ids"], d["input.input_ids"])
    assert torch.equal(f["labels"], d["input.labels"])  # every assistant answer + its <|im_end|>, nothing else
    assert torch.equal(f["pixel_values_videos"], v["pixel_values_videos"])
    assert torch.equal(f["sam2_frames"], v["sam2_frames"])
    assert torch.equal(f["label_masks"], d["input.label_mask"].float())
    (ref,) = f["ref_prompts"]
    assert torch.equal(ref.coords, d["input.point_coords.0"][0]) and ref.frame == int(d["input.point_frames"][0])

    model = load_golden_model()
    model.train()
    batch = UniPixelCollator(processor.tokenizer.pad_token_id)([f])
    with torch.no_grad():
        out = model(**batch)
    case = json.loads((GOLDEN / "golden.json").read_text())["cases"]["e_train_forward"]
    assert out.lm_loss.item() == pytest.approx(case["lm_loss"], abs=1e-4)
    assert out.seg_loss.item() == pytest.approx(case["seg_loss"], abs=1e-3)


def test_seg_align_weight_adds_the_alignment_term_to_the_reference_loss(processor, tmp_path: Path) -> None:
    from unipixel.model.seg_align import seg_alignment_loss
    from unipixel.sam2.tracker import encode_frames

    sample, _, _ = _golden_case_e_sample(tmp_path)
    cfg = FeatureConfig(num_frames=4, sampling="uniform", sam2_image_size=128, **PIXELS)
    batch = UniPixelCollator(processor.tokenizer.pad_token_id)([build_features(sample, processor, cfg)])
    model = load_golden_model()
    model.train()
    with torch.no_grad():
        ref = model(**batch)
        model.config.seg_align_weight = 0.5
        out = model(**batch)
        feats = encode_frames(model.sam2, batch["sam2_frames"][0])
        expected = seg_alignment_loss(out.seg_queries, feats.vision[0], batch["label_masks"][0][0])
    assert "align_loss" not in ref.seg_loss_terms
    assert out.seg_loss_terms["align_loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert out.seg_loss.item() == pytest.approx(ref.seg_loss.item() + 0.5 * expected.item(), rel=1e-5)
    assert out.lm_loss.item() == ref.lm_loss.item()


@pytest.mark.parametrize("per_group", [False, True])
def test_clip_per_group_keeps_a_small_group_unclipped(processor, tmp_path: Path, per_group: bool) -> None:
    from unipixel.train.trainer import UniPixelTrainer

    model = load_golden_model()
    preset = get_stage(3).override(lora=False, tuning_modules=("seg", "sam2"), clip_per_group=per_group)
    model = apply_tuning(model, preset)
    trainer = UniPixelTrainer(
        model=model, args=training_args(tmp_path / "out", max_grad_norm=1.0), processing_class=processor, preset=preset
    )
    trainer.create_optimizer()
    groups = {g["name"]: list(g["params"]) for g in trainer.optimizer.param_groups if g["params"]}
    assert {"regular", "sam2_enc", "sam2_dec"} <= set(groups)
    target = {"regular": 0.5, "sam2_enc": 30.0, "sam2_dec": 2.0}  # group norms before clipping
    for name, params in groups.items():
        n = sum(p.numel() for p in params)
        for p in params:
            p.grad = torch.full_like(p, target.get(name, 0.0) / n**0.5)
    norm = trainer._clip_grad_norm(trainer.model)
    assert float(norm) == pytest.approx(sum(v**2 for v in target.values()) ** 0.5, rel=1e-4)
    after = {k: float(torch.cat([p.grad.flatten() for p in v]).norm()) for k, v in groups.items()}
    if per_group:  # each group on its own: the small one untouched, the large ones at the limit
        assert after["regular"] == pytest.approx(0.5, rel=1e-4)
        assert after["sam2_enc"] == pytest.approx(1.0, rel=1e-3) and after["sam2_dec"] == pytest.approx(1.0, rel=1e-3)
    else:  # the reference's global clip shrinks every group by the same factor
        scale = 1.0 / float(norm)
        assert after["regular"] == pytest.approx(0.5 * scale, rel=1e-3)
        assert after["sam2_enc"] == pytest.approx(30.0 * scale, rel=1e-3)


def test_assistant_labels_cover_answers_and_im_end_only() -> None:
    header, end = [7, 8, 9], 5
    ids = torch.tensor([1, 2, 5, 3, 7, 8, 9, 20, 21, 5, 3, 4, 5, 3, 7, 8, 9, 30, 5])
    labels = assistant_labels(ids, header, end)
    keep = labels != IGNORE_INDEX
    assert ids[keep].tolist() == [20, 21, 5, 30, 5]


def test_frame_sampling_keeps_prompt_frames() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        idx = sample_training_frames(100, 8, "random", keep=[3, 97], rng=rng)
        assert len(idx) == 8 and {3, 97} <= set(idx.tolist()) and list(idx) == sorted(idx)
    assert sample_training_frames(5, 8, "random", keep=[4]).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="outside"):
        sample_training_frames(5, 2, keep=[5])


def test_mixture_repeat_factors_and_specs() -> None:
    assert (parse_dataset_spec("revos:5").name, parse_dataset_spec("revos:5").repeat) == ("revos", 5)
    assert parse_dataset_spec("refcoco").repeat == 1
    assert parse_dataset_spec("mevis:3=/d").root == "/d"
    mix = MixedSamples([("a", ["a0", "a1"], 3), ("b", ["b0"], 1)])
    assert len(mix) == 7
    assert [mix[i] for i in range(7)] == ["a0", "a1", "a0", "a1", "a0", "a1", "b0"]
    assert mix.locate(6) == ("b", 0)


def test_samples_file_repeat_factor(tmp_path: Path) -> None:
    """``--samples FILE:N`` repeats a JSONL file in the mixture; a file whose name ends in ``:N`` is still a file."""
    import argparse

    from unipixel.train.cli import _samples, _samples_spec

    assert _samples_spec("a/b.jsonl:3") == ("a/b.jsonl", 3)
    assert _samples_spec("a/b.jsonl") == ("a/b.jsonl", 1)
    with pytest.raises(SystemExit, match="at least 1"):
        _samples_spec("a/b.jsonl:0")
    from unipixel.train.cli import main as train_main

    with pytest.raises(SystemExit, match="--samples file not found: .*nope.jsonl"):  # before any model loads
        train_main(["--model", str(tmp_path / "no-model"), "--samples", str(tmp_path / "nope.jsonl:2"),
                    "--output-dir", str(tmp_path / "out")])
    odd = tmp_path / "odd.jsonl:2"
    odd.write_text("")
    assert _samples_spec(str(odd)) == (str(odd), 1)
    from unipixel.synth.cli import main as synth_main

    synth_main(["--seed", "3", "--split", "train", "--out", str(tmp_path / "d"), "--num-images", "2", "--num-videos",
                "0", "--workers", "1"])  # fmt: skip
    jsonl = tmp_path / "d" / "samples.jsonl"
    n = len(jsonl.read_text().splitlines())
    args = argparse.Namespace(samples=[str(jsonl), f"{jsonl}:2"], data=[], data_root=None, split="train")
    mix = _samples(args, None)
    assert len(mix) == 3 * n and [r for _, _, r in mix.parts] == [1, 2]


def test_type_grouped_sampler_is_homogeneous_and_deterministic() -> None:
    types = ["seg"] * 9 + ["cap"] * 6 + ["mem"] * 3
    s = TypeGroupedSampler(types, batch_size=2, world_size=2, seed=1)
    order = list(s)
    assert len(order) == len(s) == 8 + 4 + 0  # incomplete chunks dropped
    for c in range(0, len(order), 4):
        assert len({types[i] for i in order[c : c + 4]}) == 1
    assert order == list(TypeGroupedSampler(types, 2, 2, seed=1))
    s.set_epoch(1)
    assert list(s) != order and sorted(list(s)) != sorted(range(18))


def test_collator_pads_right_and_keeps_per_sample_lists(processor, tmp_path: Path) -> None:
    samples = make_samples(tmp_path, n=2, frames=2, kinds=("seg", "box"))
    ds = UniPixelTrainDataset(samples, processor, FeatureConfig(num_frames=2, sam2_image_size=128, **PIXELS))
    f0, f1 = ds[0], ds[1]
    batch = UniPixelCollator(processor.tokenizer.pad_token_id)([f0, f1])
    n0, n1 = f0["input_ids"].numel(), f1["input_ids"].numel()
    width = max(n0, n1)
    assert batch["input_ids"].shape == (2, width)
    assert batch["attention_mask"].sum(1).tolist() == [n0, n1]
    short = 0 if n0 < n1 else 1
    assert (batch["labels"][short, min(n0, n1) :] == IGNORE_INDEX).all()
    assert batch["video_grid_thw"].shape == (2, 3)
    assert batch["label_masks"][1] is None and batch["label_masks"][0].shape == (2, 1, 128, 128)
    assert batch["ref_prompts"][0] == [] and len(batch["ref_prompts"][1]) == 1


# ------------------------------------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def lora_run(processor, tmp_path_factory):
    """One real stage-3 step (LoRA r=4 + embeddings + adapters + SAM 2, two point-prompted seg samples per batch)."""
    from unipixel.train.trainer import UniPixelTrainer, enable_gradient_checkpointing

    tmp = tmp_path_factory.mktemp("lora")
    base, pt = build_reference_dirs(tmp)
    model = load_golden_model()
    model.config.base_model_path, model.config.sam2_checkpoint = str(base), str(pt)
    preset = get_stage(3).override(lora_r=4, lora_alpha=8, lora_dropout=0.0, per_device_batch_size=2, sample_objects=-1)
    model = apply_tuning(model, preset)
    enable_gradient_checkpointing(model)
    torch.manual_seed(0)
    for name, p in model.named_parameters():  # non-zero LoRA B so the merge is visible
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    samples = make_samples(tmp / "data", n=2, frames=2, kinds=("ref",))
    ds = UniPixelTrainDataset(samples, processor, FeatureConfig(num_frames=2, sam2_image_size=128, **PIXELS))
    trainer = UniPixelTrainer(
        model=model,
        args=training_args(tmp / "out", per_device_train_batch_size=2, learning_rate=preset.learning_rate),
        train_dataset=ds,
        data_collator=UniPixelCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,
        preset=preset,
    )
    trainer.train()
    return trainer, before, tmp


def test_one_step_updates_tuned_modules_only(lora_run) -> None:
    trainer, before, _ = lora_run
    loss = trainer.state.log_history[0]["loss"]
    assert np.isfinite(loss) and trainer.state.log_history[0]["seg_loss"] > 0
    changed = {
        n.removeprefix("base_model.model.")
        for n, p in trainer.model.named_parameters()
        if not torch.equal(before[n], p)
    }
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)
    for prefix in ("seg_head.", "sam2.vision_encoder.", "sam2.mask_decoder.", "ref_prompt.ref_encoder.",
                   "model.language_model.embed_tokens."):  # fmt: skip
        assert any(n.startswith(prefix) for n in changed), prefix
    for n in changed:
        if "lora_" not in n:
            assert not n.startswith(("model.visual.", "model.language_model.layers.")), f"frozen {n} changed"
    lrs = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert lrs["lora"] == lrs["regular"] == 2e-5 and lrs["sam2_enc"] == lrs["sam2_dec"] == 5e-6


def test_lora_partial_save_loads_back_and_full_save_round_trips(lora_run) -> None:
    from unipixel import UniPixelForConditionalGeneration
    from unipixel.train.trainer import save_full

    trainer, _, tmp = lora_run
    partial = tmp / "partial"
    trainer.save_model(str(partial))
    assert (partial / "adapter_model.safetensors").exists() and (partial / "pytorch_model.safetensors").exists()
    assert all(k.startswith("base_model.model.") for k in load_file(str(partial / "pytorch_model.safetensors")))

    full = tmp / "full"
    merged = save_full(trainer.model, full, trainer.processing_class)
    expected = {k: v.detach().clone() for k, v in merged.state_dict().items()}

    reloaded = UniPixelForConditionalGeneration.from_pretrained(partial)  # base + SAM 2 .pt + adapter + partial
    got = reloaded.state_dict()
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert torch.allclose(got[k], v, atol=1e-6), k

    reloaded_full = UniPixelForConditionalGeneration.from_pretrained(full).state_dict()
    assert set(reloaded_full) == set(expected)
    for k, v in expected.items():
        assert torch.equal(reloaded_full[k], v), k


def test_launch_configs_parse_and_match_their_names() -> None:
    import yaml

    from unipixel.train.cli import CONFIG_DIR, DEEPSPEED_CONFIGS, build_parser, resolve_preset

    for name, file in DEEPSPEED_CONFIGS.items():
        cfg = json.loads((CONFIG_DIR / file).read_text())
        assert cfg["zero_optimization"]["stage"] == (3 if "zero3" in name else 2)
        assert "optimizer" not in cfg  # the Trainer builds the optimizer: its per-module LR groups must survive
    for f in CONFIG_DIR.glob("*.yaml"):
        cfg = yaml.safe_load(f.read_text())
        assert cfg["distributed_type"] in ("FSDP", "DEEPSPEED", "MULTI_GPU")
        if cfg["distributed_type"] == "DEEPSPEED":
            assert (CONFIG_DIR.parents[3] / cfg["deepspeed_config"]["deepspeed_config_file"]).exists()
    args = build_parser().parse_args(["--stage", "3", "--output-dir", "x", "--sam2-lr", "1e-6", "--lora", "off"])
    preset = resolve_preset(args)
    assert preset.lrs == {"regular": 2e-5, "lora": 2e-5, "sam2_enc": 1e-6, "sam2_dec": 1e-6} and not preset.lora
    assert get_stage(3).gradient_accumulation_steps(world_size=8) == 4  # global batch 32 = 1 x 8 GPUs x 4


def test_lora_checkpoint_restores_every_tensor_on_resume(tmp_path: Path) -> None:
    """Stage-3 checkpoint (LoRA adapter + embeddings + adapters + SAM 2 in Meta naming + PE buffers) loaded into a
    freshly built model of the same preset gives back the exact state (what Trainer resume relies on)."""
    from unipixel.train.trainer import load_partial_into, save_partial

    preset = get_stage(3).override(lora_r=4, lora_alpha=8)
    a = apply_tuning(load_golden_model(), preset)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in a.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)
    save_partial(a, tmp_path / "ckpt")
    b = apply_tuning(load_golden_model(), preset)
    load_partial_into(b, tmp_path / "ckpt")
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for k, v in sa.items():
        assert torch.equal(v, sb[k]), k


def test_train_cli_refuses_bad_settings_before_loading_a_model(tmp_path: Path) -> None:
    """Each mistake is a one-line error; the --model path does not exist, so reaching the load would fail
    differently (and only after the check)."""
    from unipixel.train.cli import main as train_main

    good = tmp_path / "s.jsonl"
    good.write_text("")
    base = ["--model", str(tmp_path / "no-model"), "--output-dir", str(tmp_path / "o")]
    with pytest.raises(SystemExit, match="unknown tuning module 'foo'"):
        train_main([*base, "--samples", str(good), "--tuning-modules", "seg,foo"])
    with pytest.raises(SystemExit, match="unknown lora_target 'qkv'"):
        train_main([*base, "--samples", str(good), "--lora", "on", "--lora-target", "qkv"])
    with pytest.raises(SystemExit, match="--deepspeed 'zero5'"):
        train_main([*base, "--samples", str(good), "--deepspeed", "zero5"])
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"id": "x"}\n')
    with pytest.raises(SystemExit, match="error: "):
        train_main([*base, "--samples", str(broken)])
    with pytest.raises(SystemExit, match="--output-dir"):
        train_main(["--model", "m", "--samples", str(good)])
    with pytest.raises(SystemExit, match="no training samples"):
        train_main([*base, "--samples", str(good)])

"""The built-in model ships with the package, is the default, and runs end to end on CPU."""

from __future__ import annotations

import json
from pathlib import Path

from unipixel.api import UniPixel
from unipixel.builtin import BUILTIN_DIR, builtin_model_dir

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ["Please segment the red circle.", "The target is <|seg|>.", "a small dotted green star"] * 30


def test_builtin_model_is_small_and_default() -> None:
    assert builtin_model_dir() == BUILTIN_DIR
    size = sum(f.stat().st_size for f in BUILTIN_DIR.iterdir())
    assert size <= 50 * 2**20
    metrics = json.loads((BUILTIN_DIR.parent / "metrics.json").read_text())
    assert metrics["counts"]["done"] == metrics["counts"]["expected"]  # the card's numbers cover the whole split
    card = (BUILTIN_DIR.parent / "MODEL_CARD.md").read_text()
    assert f"{metrics['metrics']['image_seg cIoU'] / 100:.3f}" in card


def test_builtin_model_segments_an_example() -> None:
    up = UniPixel.from_pretrained(min_pixels=3136, max_pixels=12544, max_new_tokens=24)
    res = up.predict(ROOT / "examples" / "synth_image.png", "Please segment the yellow triangle in this image.")
    assert res.text.strip()
    assert res.frame_size == (112, 112)
    for obj in res.objects:
        assert obj.masks.array().shape == (1, 112, 112)


def test_recipe_variants_build_their_initialisation(tmp_path: Path) -> None:
    """Each recipe variant's init options are accepted and land in the checkpoint (multimask flags, PE tying, mimetic
    decoder attention, decoder heads, vision window), its pixel budget reaches the training command, and its
    training fits the 60-minute budget."""
    import torch

    from unipixel import UniPixelForConditionalGeneration
    from unipixel.builtin.recipe import PIXELS, VARIANTS, budget_minutes, build_init, train_args
    from unipixel.sam2.tracker import _use_multimask

    for name, variant in VARIANTS.items():
        out = build_init(tmp_path / name, CORPUS, name, vocab_size=300, sam2_arch={}, arch={})
        opts = variant["init"]
        model = UniPixelForConditionalGeneration.from_pretrained(str(out))
        assert model.config.vision_config.window_size == opts.get("vision_window", 112), name
        pixels = variant.get("pixels", PIXELS)
        args = train_args(out, tmp_path, tmp_path / "run", 1.0, 1, pixels=pixels)
        assert args[args.index("--min-pixels") + 1] == str(pixels["min_pixels"]), name
        assert args[args.index("--max-pixels") + 1] == str(pixels["max_pixels"]), name
        sam2 = model.sam2
        assert _use_multimask(sam2, 0) is opts["multimask"], name
        tied = torch.equal(sam2.prompt_encoder.shared_embedding.positional_embedding,
                           sam2.shared_image_embedding.positional_embedding)  # fmt: skip
        assert tied is opts["tie_sam2_pe"], name
        attn = sam2.mask_decoder.transformer.layers[0].cross_attn_token_to_image
        assert torch.equal(attn.q_proj.weight, attn.k_proj.weight) is opts.get("sam2_mimetic", False), name
        heads = opts.get("sam2_decoder_heads", 8)
        assert sam2.config.mask_decoder_config.num_attention_heads == heads, name
        assert variant["phases"] and budget_minutes(variant) <= 60  # the training budget


def test_recipe_merges_side_by_side_pretraining(tmp_path: Path) -> None:
    """The SAM 2 job's tensors and the perception job's other tensors end up in one loadable checkpoint."""
    import json

    import torch

    from unipixel import UniPixelForConditionalGeneration
    from unipixel.builtin.recipe import merge_sam2, task_subset
    from unipixel.tiny import build_tiny_checkpoint

    a = build_tiny_checkpoint(tmp_path / "a", CORPUS, vocab_size=300, seed=1)
    b = build_tiny_checkpoint(tmp_path / "b", CORPUS, vocab_size=300, seed=2)
    merged = merge_sam2(a, b, tmp_path / "m")
    sa, sb, sm = (UniPixelForConditionalGeneration.from_pretrained(str(p)).state_dict() for p in (a, b, merged))
    for k, v in sm.items():
        src = sb if k.startswith("sam2.") else sa
        assert torch.equal(v, src[k]), k
    assert any(not torch.equal(sa[k], sb[k]) for k in sa if k.startswith("sam2."))
    jsonl = tmp_path / "samples.jsonl"
    jsonl.write_text("".join(json.dumps({"task": t, "i": i}) + "\n" for i, t in enumerate(["ref_seg", "region_qa"] * 3)))
    name = task_subset(jsonl, ("region_qa",), "sub.jsonl")
    assert [json.loads(x)["i"] for x in (tmp_path / name).read_text().splitlines()] == [1, 3, 5]
    from unipixel.builtin.recipe import phase_samples

    assert phase_samples(tmp_path, {}) == "samples.jsonl"
    files = phase_samples(tmp_path, {"seg_repeat": 3})
    assert files == ("samples.jsonl", "seg.jsonl:2")
    assert [json.loads(x)["i"] for x in (tmp_path / "seg.jsonl").read_text().splitlines()] == [0, 2, 4]


def test_recipe_side_by_side_pretraining_runs_both_jobs(tmp_path: Path) -> None:
    """``pretrain`` launches SAM 2 prompt pre-training and perception pre-training as two processes and merges them."""
    import torch

    from unipixel import UniPixelForConditionalGeneration
    from unipixel.builtin.recipe import corpus, pretrain
    from unipixel.synth.cli import main as synth_main
    from unipixel.tiny import build_tiny_checkpoint

    data = tmp_path / "train"
    synth_main(["--seed", "7", "--split", "train", "--out", str(data), "--num-images", "6", "--num-videos", "0",
                "--workers", "1"])  # fmt: skip
    texts = corpus(data / "samples.jsonl")
    init = build_tiny_checkpoint(tmp_path / "init", texts, vocab_size=300, sam2_mimetic=True)
    spec = {
        "sam2": {"steps": 2, "minutes": 5.0, "lr": 1e-3, "enc_lr": 0.0, "weight_decay": 0.0},
        "perception": {"tasks": ("region_caption", "region_qa", "general_qa"), "steps": 2, "minutes": 5.0, "seed": 0,
                       "lr": 1e-3, "weight_decay": 0.1},
    }  # fmt: skip
    merged = pretrain(init, data, tmp_path, spec)
    s0, sam, per, m = (UniPixelForConditionalGeneration.from_pretrained(str(p)).state_dict()
                       for p in (init, tmp_path / "pre_sam2", tmp_path / "pre_perception", merged))  # fmt: skip
    for k, v in m.items():
        assert torch.equal(v, (sam if k.startswith("sam2.") else per)[k]), k
    changed = {k for k in s0 if not torch.equal(s0[k], m[k])}
    assert any(k.startswith("sam2.mask_decoder.") for k in changed)  # the SAM 2 job trained the decoder
    assert not any(k.startswith("sam2.vision_encoder.") for k in changed)  # enc_lr 0 froze the image encoder
    assert any(k.startswith("model.language_model.") for k in changed)  # the perception job trained the LLM
    assert pretrain(init, data, tmp_path, spec) == merged  # finished work is reused, not redone

"""The built-in model ships with the package, is the default, and runs end to end on CPU."""

from __future__ import annotations

import json
from pathlib import Path

from unipixel.api import UniPixel
from unipixel.builtin import BUILTIN_DIR, builtin_model_dir

ROOT = Path(__file__).resolve().parents[1]


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
    """Each recipe variant's init options are accepted and land in the checkpoint (multimask flags, PE tying)."""
    import torch

    from unipixel import UniPixelForConditionalGeneration
    from unipixel.builtin.recipe import VARIANTS, build_init
    from unipixel.sam2.tracker import _use_multimask

    corpus = ["Please segment the red circle.", "The target is <|seg|>.", "a small dotted green star"] * 30
    for name, variant in VARIANTS.items():
        out = build_init(tmp_path / name, corpus, name, vocab_size=300, sam2_arch={}, arch={})
        opts = variant["init"]
        sam2 = UniPixelForConditionalGeneration.from_pretrained(str(out)).sam2
        assert _use_multimask(sam2, 0) is opts["multimask"], name
        tied = torch.equal(sam2.prompt_encoder.shared_embedding.positional_embedding,
                           sam2.shared_image_embedding.positional_embedding)  # fmt: skip
        assert tied is opts["tie_sam2_pe"], name
        assert variant["phases"] and sum(p["minutes"] for p in variant["phases"]) <= 60  # the training budget

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

"""The built-in model: a small UniPixel trained on the synthetic world, shipped inside the package.

It is the default of the API, the CLI and the demo, so ``pip install`` + one command works without downloading
weights. See ``MODEL_CARD.md`` in this folder for how it was trained and what it scores.
"""

from __future__ import annotations

from pathlib import Path

BUILTIN_DIR = Path(__file__).parent / "model"


def builtin_model_dir() -> Path:
    """Directory of the built-in checkpoint; a clear error when this install does not carry it."""
    if not (BUILTIN_DIR / "config.json").exists():
        raise FileNotFoundError(
            f"the built-in model is not present in this install ({BUILTIN_DIR}); pass a checkpoint with "
            "--model / UniPixel.from_pretrained(path), or rebuild it with `unipixel train builtin`"
        )
    return BUILTIN_DIR

"""``unipixel export CHECKPOINT OUT``: a training output → one standalone model directory.

Training writes partial checkpoints (``checkpoint-N/``: the trained tensors and the LoRA adapter, rebuilt on the
base model they record) and, under ZeRO-3 with LoRA, an adapter-only final save. ``export`` rebuilds such a
directory, merges the LoRA into the weights and writes a full checkpoint (``model.safetensors`` + config +
processor) that loads anywhere with ``from_pretrained``, without the base model or the SAM 2 ``.pt`` — the form to
share, evaluate or serve. A full checkpoint is accepted too (it is re-saved, e.g. in another ``--dtype``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def export_model(
    checkpoint: str | Path,
    out: str | Path,
    *,
    base_model_path: str | Path | None = None,
    sam2_checkpoint: str | Path | None = None,
    dtype: str | None = None,
) -> Path:
    """Load ``checkpoint`` (partial, adapter or full; LoRA merged) and save it whole to ``out``."""
    import torch

    from . import UniPixelForConditionalGeneration
    from .api import _resolve_dtype
    from .processing import UniPixelProcessor

    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; export writes a new directory")
    kwargs = {}
    if base_model_path is not None:
        kwargs["base_model_path"] = base_model_path
    if sam2_checkpoint is not None:
        kwargs["sam2_checkpoint"] = sam2_checkpoint
    if dtype is not None:
        kwargs["dtype"] = _resolve_dtype(dtype, torch.device("cpu"))
    model = UniPixelForConditionalGeneration.from_pretrained(str(checkpoint), **kwargs)
    for key in ("base_model_path", "sam2_checkpoint", "partial_checkpoint"):  # the export stands alone
        if hasattr(model.config, key):
            setattr(model.config, key, None)
    model.save_pretrained(str(out))
    UniPixelProcessor.from_pretrained(str(checkpoint)).save_pretrained(str(out))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="unipixel export", description=__doc__.split("\n\n")[1])
    p.add_argument("checkpoint", help="a training output: checkpoint-N/, an adapter directory or a full model")
    p.add_argument("out", help="new directory for the standalone model")
    p.add_argument("--base-model", help="override the base model the checkpoint records")
    p.add_argument("--sam2-checkpoint", help="override the SAM 2 .pt the checkpoint records")
    p.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), help="save in this dtype (default: as loaded)")
    args = p.parse_args(argv)
    try:
        out = export_model(args.checkpoint, args.out, base_model_path=args.base_model,
                           sam2_checkpoint=args.sam2_checkpoint, dtype=args.dtype)
    except (OSError, ValueError) as err:
        from .api import error_line

        raise SystemExit(f"error: {error_line(err)}") from None
    print(f"saved a standalone model to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

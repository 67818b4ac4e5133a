"""Loading the reference's partial / adapter checkpoints (its ``builder.py`` path, reference §3.3–3.4).

Such a directory holds ``config.json`` (UniPixel fields incl. ``base_model_path`` and ``sam2_checkpoint``) and

* ``pytorch_model.safetensors``: the trainable tensors of a stage (plain module paths, or prefixed
  ``base_model.model.`` when saved from a PEFT-wrapped model), and/or
* ``adapter_model.safetensors`` + ``adapter_config.json``: a PEFT LoRA adapter.

The model is rebuilt as the reference does: the base Qwen2.5-VL checkpoint at ``base_model_path`` → the SAM 2
``.pt`` at ``sam2_checkpoint`` → adapter initialisation → PEFT adapter → partial tensors → merge (unless
``is_trainable``). Relative paths are tried against the current directory, the checkpoint directory and its
parent; ``base_model_path=`` / ``sam2_checkpoint=`` keyword arguments override them.

Known reference limitation (§10.7): the two Gaussian PE buffers are not stored in partial checkpoints, so they are
re-drawn at load; pass ``seed=`` to make that reproducible.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .checkpoint import ensure_sam2_arch
from .configuration import UniPixelConfig

PEFT_PREFIX = "base_model.model."


def _find(path_str: str | None, ckpt_dir: Path, what: str, override: str | Path | None) -> Path:
    if override is not None:
        p = Path(override)
        if not p.exists():
            raise FileNotFoundError(f"{what} {p} (given explicitly) does not exist")
        return p
    if not path_str:
        raise ValueError(f"config has no {what}; pass {what}=... to from_pretrained")
    candidates = [Path(path_str), ckpt_dir / path_str, ckpt_dir.parent / path_str]
    for c in candidates:
        if c.exists():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{what} {path_str!r} not found (tried {tried}); pass {what}=<path> to from_pretrained")


def load_sam2_pt(model: Any, path: Path) -> None:
    """Load a Meta SAM 2 ``.pt`` (``{'model': state_dict}``) into ``model.sam2`` (reference ``load_sam2_weights``)."""
    from .checkpoint import load_sam2_parts

    blob = torch.load(str(path), map_location="cpu", weights_only=True)
    sd = blob["model"] if isinstance(blob, dict) and "model" in blob else blob
    load_sam2_parts(model, {"sam2." + k: v for k, v in sd.items()})


def _partial_state(path: Path) -> dict[str, torch.Tensor]:
    from .checkpoint import KEY_MAPPING

    raw = load_file(str(path))
    out: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if key.startswith(PEFT_PREFIX):
            key = key[len(PEFT_PREFIX) :]
        for pattern, repl in KEY_MAPPING.items():
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def load_partial(
    cls: type,
    ckpt_dir: Path,
    *,
    sam2_config_dirs: Any = (),
    base_model_path: str | Path | None = None,
    sam2_checkpoint: str | Path | None = None,
    is_trainable: bool = False,
    merge_adapter: bool | None = None,
    seed: int | None = None,
    **kwargs: Any,
) -> Any:
    """See the module docstring."""
    from .checkpoint import from_reference_names
    from .model.init import init_unipixel_parameters

    config = kwargs.pop("config", None) or UniPixelConfig.from_pretrained(ckpt_dir)
    ensure_sam2_arch(config, ckpt_dir, sam2_config_dirs)
    base = _find(config.base_model_path, ckpt_dir, "base_model_path", base_model_path)
    if seed is not None:
        torch.manual_seed(seed)
    from .checkpoint import KEY_MAPPING, load_unipixel

    base_type = json.loads((base / "config.json").read_text()).get("model_type") if base.is_dir() else None
    if base_type == UniPixelConfig.model_type:
        # The base is itself a full UniPixel checkpoint (fine-tuning a released model): load it whole, keep its
        # SAM 2 and adapters instead of re-initialising them.
        model = load_unipixel(cls, base, config=config, sam2_config_dirs=sam2_config_dirs, **kwargs)
    else:
        model = cls._from_pretrained_hf(base, config=config, key_mapping=dict(KEY_MAPPING), **kwargs)
        if config.sam2_checkpoint or sam2_checkpoint is not None:
            load_sam2_pt(model, _find(config.sam2_checkpoint, ckpt_dir, "sam2_checkpoint", sam2_checkpoint))
        init_unipixel_parameters(model)

    adapter = ckpt_dir / "adapter_model.safetensors"
    if adapter.exists():
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(ckpt_dir), is_trainable=is_trainable)
    partial = ckpt_dir / "pytorch_model.safetensors"
    if partial.exists():
        target = model.get_base_model() if adapter.exists() else model
        state = _partial_state(partial)
        own = target.state_dict()
        # SAM 2 / prompt-encoder tensors already in our (transformers) naming load as they are; Meta-named ones
        # (the reference's layout) are converted.
        sam_like = {
            k: v for k, v in state.items() if k.startswith(("sam2.", "ref_encoder.")) and k not in own
        }
        converted = from_reference_names(sam_like, target) if sam_like else {}
        state = {k: v for k, v in state.items() if k not in sam_like} | converted
        state = {(k if k in own else _with_base_layer(k)): v for k, v in state.items()}
        unexpected = sorted(k for k in state if k not in own)
        if unexpected:
            raise ValueError(f"{partial} has tensors this model does not have: {unexpected[:8]}")
        target.load_state_dict(state, strict=False)
    if adapter.exists() and (merge_adapter or (merge_adapter is None and not is_trainable)):
        model = model.merge_and_unload()
    if not is_trainable:
        model.eval()
    return model


def _with_base_layer(key: str) -> str:
    """A plain module path → the PEFT-wrapped one (``...q_proj.weight`` → ``...q_proj.base_layer.weight``)."""
    head, _, leaf = key.rpartition(".")
    return f"{head}.base_layer.{leaf}"

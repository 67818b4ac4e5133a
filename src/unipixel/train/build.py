"""Building the model to train (reference ``train.py`` order, §1.10).

Two starting points:

* a UniPixel checkpoint (full, or a partial/adapter directory, LoRA merged): ``from_pretrained(path)``;
* a Qwen2.5-VL base + a SAM 2 ``.pt`` (how the reference starts every stage): UniPixel config from the base config,
  ``<|ref|>``/``<|seg|>``/``<|mem|>`` added to the tokenizer, base weights → SAM 2 weights → adapter
  initialisation (:func:`unipixel.model.init.init_unipixel_parameters`) → the partial checkpoints of earlier stages.

Both record ``base_model_path`` and ``sam2_checkpoint`` (absolute) in the config when known, so the partial
checkpoints of this run reload with ``UniPixelForConditionalGeneration.from_pretrained``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from .. import UniPixelConfig, UniPixelForConditionalGeneration
from ..processing import UniPixelProcessor
from .stages import PEFT_PREFIX

__all__ = ["load_model_for_training", "apply_partial_checkpoint"]


def apply_partial_checkpoint(model: UniPixelForConditionalGeneration, ckpt_dir: str | os.PathLike[str]) -> list[str]:
    """Load ``<ckpt_dir>/pytorch_model.safetensors`` (reference or our names, optionally PEFT-prefixed) on top of
    ``model`` — stage 3 starts from base + the stage-1 and stage-2 partial checkpoints. Returns the loaded names."""
    from ..checkpoint import KEY_MAPPING, from_reference_names

    path = Path(ckpt_dir) / "pytorch_model.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: a partial checkpoint directory holds pytorch_model.safetensors")
    state: dict[str, torch.Tensor] = {}
    for key, value in load_file(str(path)).items():
        key = key[len(PEFT_PREFIX) :] if key.startswith(PEFT_PREFIX) else key
        for pattern, repl in KEY_MAPPING.items():
            key = re.sub(pattern, repl, key)
        state[key] = value
    own = model.state_dict()
    ref_named = {k: v for k, v in state.items() if k not in own and k.startswith(("sam2.", "ref_encoder."))}
    state = {k: v for k, v in state.items() if k not in ref_named} | from_reference_names(ref_named, model)
    unexpected = sorted(k for k in state if k not in own)
    if unexpected:
        raise ValueError(f"{path} has tensors this model does not have: {unexpected[:8]}")
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value.to(own[key].dtype))
    return sorted(state)


def _config_from_base(base: Path, sam2_config: str, sam2_image_size: int, token_ids: dict[str, int]) -> UniPixelConfig:
    raw = json.loads((base / "config.json").read_text())
    for key in ("model_type", "architectures", "auto_map", "transformers_version"):
        raw.pop(key, None)
    config = UniPixelConfig(**raw)
    config.architectures = ["PixelQwen2_5_VLForConditionalGeneration"]
    config.sam2_config = sam2_config
    config.sam2_image_size = sam2_image_size
    for k, v in token_ids.items():
        setattr(config, k, v)
    return config


def _is_partial_dir(path: str | os.PathLike[str]) -> bool:
    """A training output holding only trained tensors / a LoRA adapter (rebuilt on its recorded base)."""
    p = Path(path)
    return (p / "pytorch_model.safetensors").exists() or (p / "adapter_model.safetensors").exists()


def load_model_for_training(
    model_path: str | os.PathLike[str] | None = None,
    *,
    base_model_path: str | os.PathLike[str] | None = None,
    sam2_checkpoint: str | os.PathLike[str] | None = None,
    sam2_config: str = "configs/sam2.1_hiera_b+",
    sam2_image_size: int = 768,
    partial_checkpoints: Sequence[str | os.PathLike[str]] = (),
    sam2_config_dirs: Sequence[str | os.PathLike[str]] = (),
    dtype: torch.dtype | None = None,
    attn_implementation: str = "sdpa",
    seed: int | None = None,
) -> tuple[UniPixelForConditionalGeneration, UniPixelProcessor]:
    """The model (all parameters trainable; :func:`~unipixel.train.stages.apply_tuning` freezes) and processor."""
    kw: dict[str, Any] = {"attn_implementation": attn_implementation, "sam2_config_dirs": list(sam2_config_dirs)}
    if dtype is not None:
        kw["dtype"] = dtype
    if seed is not None:
        torch.manual_seed(seed)
    if model_path is not None:
        # A partial/adapter directory is rebuilt with its LoRA merged; the stage preset adds fresh LoRA layers.
        model = UniPixelForConditionalGeneration.from_pretrained(
            model_path,
            **({"base_model_path": base_model_path} if base_model_path else {}),
            **({"sam2_checkpoint": sam2_checkpoint} if sam2_checkpoint else {}),
            **kw,
        )
        processor = UniPixelProcessor.from_pretrained(model_path)
    else:
        if base_model_path is None or sam2_checkpoint is None:
            raise ValueError("pass a UniPixel checkpoint (model_path) or a Qwen2.5-VL base_model_path + sam2_checkpoint")
        from ..partial import load_partial
        from ..tokenizer import add_unipixel_tokens

        base = Path(base_model_path)
        processor = UniPixelProcessor.from_pretrained(base)
        ids = add_unipixel_tokens(processor.tokenizer)
        config = _config_from_base(base, sam2_config, sam2_image_size, ids)
        model = load_partial(
            UniPixelForConditionalGeneration,
            base,
            config=config,
            base_model_path=base,
            sam2_checkpoint=sam2_checkpoint,
            is_trainable=True,
            sam2_config_dirs=list(sam2_config_dirs),
            **{k: v for k, v in kw.items() if k != "sam2_config_dirs"},
        )
        if len(processor.tokenizer) > model.get_input_embeddings().weight.shape[0]:
            model.resize_token_embeddings(len(processor.tokenizer))
    for ckpt in partial_checkpoints:
        apply_partial_checkpoint(model, ckpt)
    if base_model_path is not None:
        model.config.base_model_path = str(Path(base_model_path).resolve())
    elif model_path is not None and not _is_partial_dir(model_path):
        # Fine-tuning a full UniPixel checkpoint: the partial checkpoints written during training hold only the
        # trained tensors, so they must be rebuilt on *this* checkpoint, not on the Qwen base it recorded.
        local = Path(model_path)
        if not local.is_dir():  # a hub id: record the local snapshot it was loaded from (partial loading needs files)
            try:
                from huggingface_hub import snapshot_download

                local = Path(snapshot_download(str(model_path), local_files_only=True))
            except Exception:  # noqa: BLE001 - not in the cache (e.g. a custom loader): keep the id
                local = Path(str(model_path))
        model.config.base_model_path = str(local.resolve()) if local.is_dir() else str(model_path)
        model.config.sam2_checkpoint = None  # SAM 2 comes with the full checkpoint
    if sam2_checkpoint is not None:
        model.config.sam2_checkpoint = str(Path(sam2_checkpoint).resolve())
    if partial_checkpoints:
        model.config.partial_checkpoint = ",".join(str(p) for p in partial_checkpoints)
    model.train()
    model.requires_grad_(True)
    return model, processor

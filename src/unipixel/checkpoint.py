"""Checkpoint loading: released UniPixel layouts, our own saves, and the reference's partial/adapter directories.

Layouts accepted (reference §3):

* **full, released**: legacy Qwen keys (``model.*`` = language model, ``visual.*``), tied or untied ``lm_head``,
  unprefixed adapters (``seg_head``, ``ref_encoder``, ``ref_proj*``, ``tem_*``, ``msk_proj``), ``sam2.*`` in Meta's
  naming (``memory_encoder.fuser.layers.N.gamma`` or ``.weight``), fp32 or bf16, sharded safetensors;
* **full, ours**: what :meth:`save_pretrained` writes (transformers v5 names, SAM 2 in transformers' naming);
* **partial/adapter** (reference ``builder.py``): ``pytorch_model.safetensors`` with the trainable parameters and/or
  a PEFT ``adapter_model.safetensors`` on top of ``config.base_model_path`` + the SAM 2 ``.pt`` at
  ``config.sam2_checkpoint``.

The Qwen part is loaded by transformers' own ``from_pretrained`` (sharding, dtype, device maps) with a key
mapping for the legacy names; SAM 2 and the reference prompt encoder are then read from the same files and
converted from Meta's naming where needed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open

from .configuration import UniPixelConfig

# Checkpoint key → our module path (regex, applied by transformers' loader).
KEY_MAPPING: dict[str, str] = {
    r"^visual\.": "model.visual.",
    r"^model\.(?!language_model\.|visual\.)": "model.language_model.",
    r"^(ref_proj_single|ref_proj_double|ref_proj|tem_pe|tem_emb|tem_proj)\.": r"ref_prompt.\1.",
    r"^msk_proj\.": "mem_pool.msk_proj.",
}
SAM2_PREFIX = "sam2."
REF_ENCODER_PREFIXES = ("ref_encoder.", "ref_prompt.ref_encoder.")
ENV_SAM2_DIRS = "UNIPIXEL_SAM2_CONFIG_PATH"


def resolve_local_dir(name_or_path: str | os.PathLike[str], **hub_kwargs: Any) -> Path:
    """A local checkpoint directory, or a hub id downloaded into the local cache (no download in tests)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path} is a file; pass the checkpoint directory that holds config.json")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name_or_path), **hub_kwargs))
    except Exception as err:  # noqa: BLE001 - re-raised with a clear message
        raise OSError(
            f"cannot find a local directory {name_or_path!s} and could not fetch it from the Hugging Face hub "
            f"({type(err).__name__}: {err}). Pass a local checkpoint directory."
        ) from err


def sam2_search_dirs(ckpt_dir: Path, extra: Iterable[str | os.PathLike[str]] = ()) -> list[Path]:
    """Where a SAM 2 YAML named by ``config.sam2_config`` may live, in priority order."""
    dirs = [Path(d) for d in extra]
    env = os.environ.get(ENV_SAM2_DIRS)
    if env:
        dirs += [Path(p) for p in env.split(os.pathsep) if p]
    dirs += [ckpt_dir / "sam2_configs", ckpt_dir, ckpt_dir.parent / "sam2_configs"]
    return dirs


def ensure_sam2_arch(config: UniPixelConfig, ckpt_dir: Path | None, extra_dirs: Sequence[Any] = ()) -> None:
    """Resolve ``config.sam2_config`` into ``config.sam2_arch`` (a no-op when already resolved)."""
    if config.sam2_arch is not None or config.sam2_config is None:
        return
    from .sam2.config import resolve_sam2_config

    dirs = sam2_search_dirs(ckpt_dir, extra_dirs) if ckpt_dir is not None else [Path(d) for d in extra_dirs]
    sam2_cfg = resolve_sam2_config(config.sam2_config, config.sam2_image_size, dirs)
    # JSON-normalised (string keys etc.) so the in-memory value equals what a saved config.json reloads as.
    config.sam2_arch = json.loads(sam2_cfg.to_json_string(use_diff=False))


def sam2_config_of(config: UniPixelConfig) -> Any:
    """The transformers SAM 2 video config of a UniPixel config (resolving built-in names if needed)."""
    from transformers import Sam2VideoConfig

    ensure_sam2_arch(config, None)
    return Sam2VideoConfig(**config.sam2_arch)


def checkpoint_files(ckpt_dir: Path) -> list[Path]:
    """The safetensors files of a full checkpoint (single file or an index of shards)."""
    index = ckpt_dir / "model.safetensors.index.json"
    if index.exists():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [ckpt_dir / s for s in shards]
    single = ckpt_dir / "model.safetensors"
    if single.exists():
        return [single]
    raise FileNotFoundError(
        f"no model.safetensors or model.safetensors.index.json in {ckpt_dir}; is this a UniPixel checkpoint?"
    )


def read_tensors(files: Iterable[Path], prefixes: Sequence[str]) -> dict[str, torch.Tensor]:
    """Read only the tensors whose keys start with one of ``prefixes``."""
    out: dict[str, torch.Tensor] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():
                if key.startswith(tuple(prefixes)):
                    out[key] = sf.get_tensor(key)
    return out


def load_sam2_parts(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load SAM 2 and the ``<|ref|>`` prompt encoder from checkpoint tensors in Meta's or transformers' naming."""
    from .sam2.convert import meta_to_hf, prompt_encoder_meta_to_hf

    sam2_sd = {k[len(SAM2_PREFIX) :]: v for k, v in tensors.items() if k.startswith(SAM2_PREFIX)}
    if sam2_sd:
        own = model.sam2.state_dict()
        if not set(sam2_sd) <= set(own):
            sam2_sd = meta_to_hf(sam2_sd, prefix="")
        _strict_load(model.sam2, sam2_sd, "sam2")
    ref_sd: dict[str, torch.Tensor] = {}
    for prefix in REF_ENCODER_PREFIXES:
        ref_sd.update({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
    if ref_sd:
        enc = model.ref_prompt.ref_encoder
        if not set(ref_sd) <= set(enc.state_dict()):
            ref_sd = prompt_encoder_meta_to_hf(ref_sd, prefix="")
        _strict_load(enc, ref_sd, "ref_encoder")


def _strict_load(module: torch.nn.Module, sd: dict[str, torch.Tensor], name: str) -> None:
    result = module.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{name}: checkpoint does not match the architecture; missing {sorted(result.missing_keys)[:8]}, "
            f"unexpected {sorted(result.unexpected_keys)[:8]} (is config.sam2_config the right SAM 2 size?)"
        )


def load_unipixel(cls: type, name_or_path: Any, *args: Any, **kwargs: Any) -> Any:
    """Implementation of ``UniPixelForConditionalGeneration.from_pretrained`` (see the module docstring)."""
    sam2_config_dirs = kwargs.pop("sam2_config_dirs", ())
    hub_kwargs = {k: kwargs[k] for k in ("revision", "cache_dir", "token") if k in kwargs}
    ckpt_dir = resolve_local_dir(name_or_path, **hub_kwargs)
    if (ckpt_dir / "adapter_model.safetensors").exists() or (ckpt_dir / "pytorch_model.safetensors").exists():
        from .partial import load_partial

        return load_partial(cls, ckpt_dir, sam2_config_dirs=sam2_config_dirs, **kwargs)

    config = kwargs.pop("config", None)
    if config is None:
        config = UniPixelConfig.from_pretrained(ckpt_dir)
    ensure_sam2_arch(config, ckpt_dir, sam2_config_dirs)
    key_mapping = {**KEY_MAPPING, **kwargs.pop("key_mapping", {})}
    model = cls._from_pretrained_hf(ckpt_dir, *args, config=config, key_mapping=key_mapping, **kwargs)
    if getattr(model, "has_sam2", False):
        tensors = read_tensors(checkpoint_files(ckpt_dir), (SAM2_PREFIX, *REF_ENCODER_PREFIXES))
        if not any(k.startswith(SAM2_PREFIX) for k in tensors):
            raise ValueError(f"{ckpt_dir} has no sam2.* weights but config.sam2_config is set")
        load_sam2_parts(model, tensors)
    return model


# ---------------------------------------------------------------------------------------------- name mapping
_OUR_TO_REF = [
    (r"^ref_prompt\.(ref_proj_single|ref_proj_double|ref_proj|tem_pe|tem_emb|tem_proj)\.", r"\1."),
    (r"^mem_pool\.msk_proj\.", "msk_proj."),
]


def to_reference_names(tensors: dict[str, torch.Tensor], model: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """Our parameter names → the reference's in-memory names (transformers-4.53 Qwen names, unprefixed adapters,
    Meta SAM 2 names). Used to compare gradients and to write the released layout. SAM 2 and prompt-encoder
    entries must be complete module state dicts (fill absent entries with zeros) because Meta's MLP numbering is
    derived from the full key set.
    """
    import re

    from .sam2.convert import hf_to_meta, prompt_encoder_hf_to_meta

    out: dict[str, torch.Tensor] = {}
    sam2 = {k: v for k, v in tensors.items() if k.startswith(SAM2_PREFIX)}
    ref_enc = {k: v for k, v in tensors.items() if k.startswith("ref_prompt.ref_encoder.")}
    if sam2:
        if model is not None:
            sam2 = _complete(sam2, model.sam2, SAM2_PREFIX)
        out.update(hf_to_meta(sam2, prefix=SAM2_PREFIX, out_prefix=SAM2_PREFIX))
    if ref_enc:
        if model is not None:
            ref_enc = _complete(ref_enc, model.ref_prompt.ref_encoder, "ref_prompt.ref_encoder.")
        out.update(prompt_encoder_hf_to_meta(ref_enc, prefix="ref_prompt.ref_encoder.", out_prefix="ref_encoder."))
    for key, value in tensors.items():
        if key in sam2 or key in ref_enc:
            continue
        for pattern, repl in _OUR_TO_REF:
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out


def _complete(part: dict[str, torch.Tensor], module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    full = {prefix + k: torch.zeros_like(v) for k, v in module.state_dict().items()}
    full.update(part)
    return full


def from_reference_names(tensors: dict[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Reference names (in-memory or released layout) → our parameter names, values unchanged.

    SAM 2 / prompt-encoder entries are mapped through a full state dict of ``model`` so partial inputs (e.g. one
    overridden bias) land on the right parameter.
    """
    import re

    from .sam2.convert import meta_to_hf, prompt_encoder_meta_to_hf

    out: dict[str, torch.Tensor] = {}
    sam2 = {k: v for k, v in tensors.items() if k.startswith(SAM2_PREFIX)}
    ref_enc = {k: v for k, v in tensors.items() if k.startswith("ref_encoder.")}
    if sam2:
        base = to_reference_names({SAM2_PREFIX + k: v for k, v in model.sam2.state_dict().items()})
        base.update(sam2)
        new = meta_to_hf(base, prefix=SAM2_PREFIX, out_prefix=SAM2_PREFIX)
        current = {SAM2_PREFIX + k: v for k, v in model.sam2.state_dict().items()}
        out.update({k: v for k, v in new.items() if not torch.equal(v, current[k])})
    if ref_enc:
        enc = model.ref_prompt.ref_encoder
        base = to_reference_names({"ref_prompt.ref_encoder." + k: v for k, v in enc.state_dict().items()})
        base.update(ref_enc)
        new = prompt_encoder_meta_to_hf(base, prefix="ref_encoder.", out_prefix="ref_prompt.ref_encoder.")
        current = {"ref_prompt.ref_encoder." + k: v for k, v in enc.state_dict().items()}
        out.update({k: v for k, v in new.items() if not torch.equal(v, current[k])})
    for key, value in tensors.items():
        if key in sam2 or key in ref_enc:
            continue
        for pattern, repl in KEY_MAPPING.items():
            key = re.sub(pattern, repl, key)
        out[key] = value
    return out

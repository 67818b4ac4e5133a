"""The three training stages of the reference (§6.1) as overridable presets, and the module freezing they imply.

==========  =====================  =====================  ===========================================================
            stage 1                stage 2                stage 3
==========  =====================  =====================  ===========================================================
tuned       ref adapters           seg head               LoRA (LLM q/k/v/o + ViT qkv/proj, r 128, α 256, dropout 0.1)
                                                          + embeddings + ref + ref_enc + msk + seg + all of SAM 2
lr          1e-3                   1e-3                   2e-5 (LoRA lr = lr), SAM 2 encoder/decoder 5e-6
batch       256                    256                    32
decoder     off                    on                     on, 5 objects sampled per sample
save        partial                partial                full (LoRA merged)
==========  =====================  =====================  ===========================================================

Common: AdamW, weight decay 0, warmup ratio 0.03, cosine schedule, 1 epoch, per-device batch 1, 8 frames sampled
at random, bf16 and gradient checkpointing (where the hardware has them).

Module groups (``tuning_modules``) map to our parameter names: ``embedding`` (input embeddings + lm_head, the same
tensor when tied), ``ref`` (``ref_proj_single/double``, ``ref_proj``, ``tem_emb``, ``tem_proj``), ``ref_enc`` (the
``<|ref|>`` SAM prompt encoder copy), ``msk`` (``msk_proj``), ``seg`` (``seg_head``), ``sam2`` (all of SAM 2), and
beyond the reference ``llm``/``vit`` (full fine-tuning of the language model / vision tower).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

__all__ = [
    "MODULE_GROUPS",
    "LORA_TARGETS",
    "StagePreset",
    "check_preset",
    "STAGES",
    "get_stage",
    "trainable_prefixes",
    "apply_tuning",
    "PEFT_PREFIX",
    "strip_peft_prefix",
]

PEFT_PREFIX = "base_model.model."

# Parameter-name prefixes (our module paths) of each reference tuning group.
MODULE_GROUPS: dict[str, tuple[str, ...]] = {
    "embedding": ("model.language_model.embed_tokens.", "lm_head."),
    "ref": (
        "ref_prompt.ref_proj_single.",
        "ref_prompt.ref_proj_double.",
        "ref_prompt.ref_proj.",
        "ref_prompt.tem_emb.",
        "ref_prompt.tem_proj.",
        "ref_prompt.tem_pe.",
    ),
    "ref_enc": ("ref_prompt.ref_encoder.",),
    "msk": ("mem_pool.msk_proj.",),
    "seg": ("seg_head.",),
    "sam2": ("sam2.",),
    "llm": ("model.language_model.", "lm_head."),
    "vit": ("model.visual.",),
}

# PEFT ``target_modules`` regexes (matched with re.fullmatch against module names); never SAM 2.
LORA_TARGETS: dict[str, str] = {
    "qkvo_all": r"model\.(language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)"
    r"|visual\.blocks\.\d+\.attn\.(qkv|proj))",
    "qkvo_llm": r"model\.language_model\.layers\.\d+\.self_attn\.(q_proj|k_proj|v_proj|o_proj)",
    "linear_llm": r"model\.language_model\.layers\.\d+\.(self_attn\.(q|k|v|o)_proj|mlp\.(gate|up|down)_proj)",
}

STAGE3_DATA = (
    "revos:5", "mevis:5", "lvvis:3", "ref_youtube_vos:5", "ref_davis17:10", "ref_sav:3", "groundmore:3",
    "vicas:3", "reason_seg:10", "ade20k:3", "cocostuff:3", "mapillary:3", "paco_lvis:3", "pascal_part:3",
    "refcoco:10", "refcoco+:10", "refcocog:10", "refclef:10", "videorefer_detailed_caption:5",
    "videorefer_qa:5", "inst_it_video_qa_raw:5", "osprey_conversation:5", "osprey_detail_description:5",
    "osprey_pos_neg:5", "videorefer_qa_mem:3", "inst_it_video_qa_raw_mem:3",
    "llava_instruct_665k_videogpt_plus_576k",
)  # fmt: skip


@dataclass(frozen=True)
class StagePreset:
    """One training stage (reference ``launch_3b.sh``). Every field can be overridden with :meth:`override`.

    ``lora_lr``/``sam2_enc_lr``/``sam2_dec_lr`` of ``None`` mean "same as ``learning_rate``". ``global_batch_size``
    is reached with gradient accumulation: ``accum = global / (per_device * world_size)``.
    """

    name: str
    tuning_modules: tuple[str, ...]
    learning_rate: float
    global_batch_size: int
    sam2_enable_decoder: bool = True
    lora: bool = False
    lora_r: int = 128
    lora_alpha: int = 256
    lora_dropout: float = 0.1
    lora_bias: str = "none"
    lora_target: str = "qkvo_all"
    lora_lr: float | None = None
    sam2_enc_lr: float | None = None
    sam2_dec_lr: float | None = None
    per_device_batch_size: int = 1
    sample_objects: int = -1
    seg_align_weight: float = 0.0
    clip_per_group: bool = False  # clip each optimizer parameter group's gradient norm on its own (see trainer)
    save_full_model: bool = False
    save_steps: int = 500
    datasets: tuple[str, ...] = ()
    num_frames: int = 8
    sampling: str = "random"
    max_num_tokens: int = 0
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    lr_scheduler_type: str = "cosine"
    num_train_epochs: float = 1.0
    dataloader_num_workers: int = 0
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def override(self, **changes: Any) -> StagePreset:
        """A copy with ``changes`` applied (``None`` values are ignored, so CLI defaults don't clobber presets)."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise ValueError(f"unknown stage fields {unknown}; known: {sorted(names)}")
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def gradient_accumulation_steps(self, world_size: int) -> int:
        per_step = self.per_device_batch_size * world_size
        return max(1, self.global_batch_size // per_step)

    @property
    def lrs(self) -> dict[str, float]:
        """The learning rate of each parameter class (regular, LoRA, SAM 2 image encoder, other SAM 2)."""
        lr = self.learning_rate
        return {
            "regular": lr,
            "lora": self.lora_lr if self.lora_lr is not None else lr,
            "sam2_enc": self.sam2_enc_lr if self.sam2_enc_lr is not None else lr,
            "sam2_dec": self.sam2_dec_lr if self.sam2_dec_lr is not None else lr,
        }


STAGES: dict[str, StagePreset] = {
    "1": StagePreset(
        name="stage1",
        tuning_modules=("ref",),
        learning_rate=1e-3,
        global_batch_size=256,
        sam2_enable_decoder=False,
        datasets=("videorefer_short_caption_ref", "inst_it_image_short_caption_raw_ref"),
        save_steps=500,
    ),
    "2": StagePreset(
        name="stage2",
        tuning_modules=("seg",),
        learning_rate=1e-3,
        global_batch_size=256,
        datasets=("refcoco:5", "refcoco+:5", "refcocog:5", "refclef:5", "ref_youtube_vos:3"),
        save_steps=500,
    ),
    "3": StagePreset(
        name="stage3",
        tuning_modules=("embedding", "ref", "ref_enc", "msk", "seg", "sam2"),
        learning_rate=2e-5,
        global_batch_size=32,
        lora=True,
        sam2_enc_lr=5e-6,
        sam2_dec_lr=5e-6,
        sample_objects=5,
        save_full_model=True,
        save_steps=1000,
        max_num_tokens=40960,
        dataloader_num_workers=2,
        datasets=STAGE3_DATA,
    ),
}


def get_stage(name: str | int) -> StagePreset:
    """``"1"``/``"stage1"``/``1`` → the preset."""
    key = str(name).lower().removeprefix("stage")
    if key not in STAGES:
        raise KeyError(f"unknown stage {name!r}; choose one of {sorted(STAGES)}")
    return STAGES[key]


def trainable_prefixes(modules: Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for m in modules:
        if m not in MODULE_GROUPS:
            raise ValueError(f"unknown tuning module {m!r}; choose from {sorted(MODULE_GROUPS)}")
        out += MODULE_GROUPS[m]
    return tuple(out)


def strip_peft_prefix(name: str) -> str:
    return name[len(PEFT_PREFIX) :] if name.startswith(PEFT_PREFIX) else name


def check_preset(preset: StagePreset) -> None:
    """Raise ``ValueError`` on a preset that :func:`apply_tuning` would reject (unknown tuning module or LoRA
    target), so that launchers can refuse it before loading a model."""
    trainable_prefixes(preset.tuning_modules)
    if preset.lora and preset.lora_target not in LORA_TARGETS and not any(c in preset.lora_target for c in "\\.|("):
        raise ValueError(f"unknown lora_target {preset.lora_target!r}; use one of {sorted(LORA_TARGETS)} or a regex")


def apply_tuning(model: nn.Module, preset: StagePreset) -> nn.Module:
    """Freeze everything, add LoRA if the preset asks, unfreeze the preset's modules (reference ``train.py`` order:
    ``requires_grad_(False)`` → LoRA → unfreeze ``tuning_modules``). Returns the (possibly PEFT-wrapped) model.

    Also writes the stage's model switches into the config (``sam2_enable_decoder``, ``sample_objects``,
    ``seg_align_weight``).
    """
    check_preset(preset)
    cfg = model.config
    cfg.sam2_enable_decoder = preset.sam2_enable_decoder
    cfg.sample_objects = preset.sample_objects
    cfg.seg_align_weight = preset.seg_align_weight
    model.requires_grad_(False)
    if preset.lora:
        from peft import LoraConfig, get_peft_model

        target = LORA_TARGETS.get(preset.lora_target, preset.lora_target)
        lora_cfg = LoraConfig(
            r=preset.lora_r,
            lora_alpha=preset.lora_alpha,
            lora_dropout=preset.lora_dropout,
            bias=preset.lora_bias,
            target_modules=target,
        )
        model = get_peft_model(model, lora_cfg)
    prefixes = trainable_prefixes(preset.tuning_modules)
    for name, p in model.named_parameters():
        plain = strip_peft_prefix(name)
        if plain.startswith(prefixes) and "lora_" not in plain:
            p.requires_grad_(True)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"stage {preset.name}: nothing to train (tuning_modules={preset.tuning_modules}, lora off)")
    return model


def param_class(name: str) -> str:
    """Which learning rate a parameter gets: ``lora``, ``sam2_enc`` (SAM 2 image encoder), ``sam2_dec`` (the rest
    of SAM 2) or ``regular`` (reference ``custom_trainer`` parameter groups)."""
    plain = strip_peft_prefix(name)
    if "lora_" in plain:
        return "lora"
    if re.match(r"sam2\.vision_encoder\.", plain):
        return "sam2_enc"
    if plain.startswith("sam2."):
        return "sam2_dec"
    return "regular"

"""``UniPixelTrainer``: transformers' Trainer with UniPixel's parameter groups, sampler and checkpoint layouts.

What differs from the stock Trainer, and why:

* **optimizer groups** (reference §6.2): {decay, no-decay} × {regular, LoRA, SAM 2 image encoder, other SAM 2}, each
  with its own learning rate from the :class:`~unipixel.train.stages.StagePreset` (stage 3 trains SAM 2 at 5e-6
  while everything else gets 2e-5);
* **type-grouped sampler** whenever the dataset exposes ``data_types`` (every micro-step holds one data type on all
  ranks, which the SAM 2 loss's all-reduce requires);
* **checkpoints hold only what is trained** (§3.3): ``pytorch_model.safetensors`` with the trainable tensors (plus
  the two random Gaussian PE buffers, which the reference forgot and which a resumed or reloaded model otherwise
  re-draws), and for LoRA the PEFT ``adapter_model.safetensors`` + ``adapter_config.json``. The directory loads with
  ``UniPixelForConditionalGeneration.from_pretrained(dir)`` when ``config.base_model_path`` (and
  ``sam2_checkpoint``) point at the base, and the Trainer resumes from it (``resume_from_checkpoint``);
* **full save** (:meth:`UniPixelTrainer.save_final` with ``save_full_model``): LoRA merged, then
  ``save_pretrained`` — a self-contained checkpoint (stage 3 of the reference);
* the loss is the model's own (``lm_loss + seg_loss``); ``num_items_in_batch`` is not forwarded (the reference's
  forward takes no loss kwargs), so the Trainer averages micro-batch losses over gradient accumulation;
* :class:`~unipixel.model.ref_prompt.RefPrompt` inputs are moved to the device with the tensors.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer, TrainerCallback

from ..model.ref_prompt import RefPrompt
from .sampler import TypeGroupedSampler
from .stages import PEFT_PREFIX, StagePreset, param_class, strip_peft_prefix

logger = logging.getLogger(__name__)

PARTIAL_WEIGHTS = "pytorch_model.safetensors"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
# Persistent buffers drawn at random at construction and not restored from a base checkpoint (reference §1.10).
RANDOM_BUFFER_PATTERNS = (
    r"ref_prompt\.tem_pe\.positional_encoding_gaussian_matrix$",
    r"ref_prompt\.ref_encoder\.shared_embedding\.positional_embedding$",
)

__all__ = [
    "UniPixelTrainer",
    "PARTIAL_WEIGHTS",
    "ADAPTER_WEIGHTS",
    "is_peft_model",
    "unwrap_base",
    "enable_gradient_checkpointing",
    "optimizer_param_groups",
    "partial_state",
    "save_partial",
    "load_partial_into",
    "save_full",
]


def is_peft_model(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def unwrap_base(model: nn.Module) -> nn.Module:
    """The UniPixel model under a PEFT wrapper (or the model itself)."""
    return model.get_base_model() if is_peft_model(model) else model


def enable_gradient_checkpointing(model: nn.Module) -> None:
    """Non-reentrant activation checkpointing of the LLM/ViT layers. Non-reentrant checkpointing handles frozen
    inputs and unused parameters (DDP ``find_unused_parameters``); ``enable_input_require_grads`` additionally makes
    reentrant setups and frozen-embedding LoRA runs safe."""
    base = unwrap_base(model)
    kwargs = {"use_reentrant": False}
    if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name is deprecated
        base.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    with warnings.catch_warnings():  # enable_input_require_grads queries a deprecated property internally
        warnings.simplefilter("ignore", FutureWarning)
        base.enable_input_require_grads()
    base.config.use_cache = False


def optimizer_param_groups(
    model: nn.Module, preset: StagePreset, decay_names: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """Parameter groups {decay, no-decay} × {regular, lora, sam2_enc, sam2_dec} (empty groups dropped).

    Decay parameters are those outside norm layers and without ``bias`` (``decay_names``, normally
    ``Trainer.get_decay_parameter_names``); the weight decay is the preset's (0 in every reference stage).
    """
    decay = set(decay_names) if decay_names is not None else {n for n, _ in model.named_parameters() if "bias" not in n}
    lrs = preset.lrs
    groups: dict[tuple[str, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            groups.setdefault((param_class(name), name in decay), []).append(p)
    out = []
    for (cls, dec), params in sorted(groups.items()):
        out.append(
            {
                "params": params,
                "lr": lrs[cls],
                "weight_decay": preset.weight_decay if dec else 0.0,
                "name": f"{cls}{'' if dec else '_no_decay'}",
            }
        )
    return out


# ---------------------------------------------------------------------------------------------------- saving
def _random_buffer_names(model: nn.Module) -> list[str]:
    return [
        n for n in model.state_dict() if any(re.search(p, strip_peft_prefix(n)) for p in RANDOM_BUFFER_PATTERNS)
    ]


def partial_state(model: nn.Module, state_dict: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The non-LoRA trainable tensors (plus the random PE buffers) under the model's state-dict names (prefixed
    ``base_model.model.`` for a PEFT model, as the reference writes them). Tied tensors appear once."""
    source = state_dict if state_dict else model.state_dict()
    names = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" not in n]
    names += _random_buffer_names(model)
    missing = [n for n in names if n not in source]
    if missing:
        raise KeyError(f"tensors missing from the state dict to save: {missing[:8]}")
    out = {n: source[n].detach().cpu().clone().contiguous() for n in names}
    sam2 = [n for n in out if strip_peft_prefix(n).startswith("sam2.")]
    if sam2:
        # SAM 2 goes out in Meta's naming (the reference layout), which is what partial-checkpoint loaders
        # convert; the conversion needs the complete SAM 2 state, so all of it (params + buffers) is written.
        from ..checkpoint import to_reference_names

        prefix = sam2[0][: len(sam2[0]) - len(strip_peft_prefix(sam2[0]))]
        full = {
            strip_peft_prefix(k): v.detach().cpu()
            for k, v in source.items()
            if strip_peft_prefix(k).startswith("sam2.")
        }
        for n in sam2:
            del out[n]
        meta = to_reference_names(full, unwrap_base(model))
        out.update({prefix + k: v.clone().contiguous() for k, v in meta.items()})
    return out


def save_partial(
    model: nn.Module,
    output_dir: str | os.PathLike[str],
    state_dict: dict[str, torch.Tensor] | None = None,
    processor: Any = None,
) -> Path:
    """Write a partial checkpoint (see the module docstring) and return its directory."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = partial_state(model, state_dict)
    if tensors:
        save_file(tensors, str(out / PARTIAL_WEIGHTS), metadata={"format": "pt"})
    if is_peft_model(model):
        lora_sd = None
        if state_dict:
            lora_sd = {k: v for k, v in state_dict.items() if "lora_" in k}
        model.save_pretrained(str(out), state_dict=lora_sd, save_embedding_layers=False)
    base = unwrap_base(model)
    base.config.save_pretrained(str(out))
    if getattr(base, "generation_config", None) is not None:
        base.generation_config.save_pretrained(str(out))
    if processor is not None:
        processor.save_pretrained(str(out))
    return out


def load_partial_into(model: nn.Module, ckpt_dir: str | os.PathLike[str]) -> None:
    """Load a partial checkpoint written by :func:`save_partial` into a model built the same way (resume).

    Every trainable tensor must be in the checkpoint and every checkpoint tensor must exist in the model.
    """
    ckpt = Path(ckpt_dir)
    peft = is_peft_model(model)
    adapter = ckpt / ADAPTER_WEIGHTS
    if adapter.exists():
        if not peft:
            raise ValueError(f"{ckpt} holds a LoRA adapter but the model has no LoRA (use the same stage preset)")
        from peft import set_peft_model_state_dict

        result = set_peft_model_state_dict(model, load_file(str(adapter)))
        if getattr(result, "unexpected_keys", None):
            raise ValueError(f"{adapter}: unexpected adapter tensors {result.unexpected_keys[:8]}")
    own = model.state_dict()
    state = {}
    if (ckpt / PARTIAL_WEIGHTS).exists():
        from ..checkpoint import from_reference_names

        plain = {strip_peft_prefix(k): v for k, v in load_file(str(ckpt / PARTIAL_WEIGHTS)).items()}
        sam2 = {k: v for k, v in plain.items() if k.startswith("sam2.")}
        if sam2:  # Meta naming (see partial_state) -> ours; only tensors that differ from the model come back
            plain = {k: v for k, v in plain.items() if k not in sam2} | from_reference_names(sam2, unwrap_base(model))
        state = {(PEFT_PREFIX + k if peft else k): v for k, v in plain.items()}
    unexpected = sorted(k for k in state if k not in own)
    if unexpected:
        raise ValueError(f"{ckpt / PARTIAL_WEIGHTS} has tensors this model does not have: {unexpected[:8]}")
    needed = [
        n
        for n, p in model.named_parameters()
        if p.requires_grad and "lora_" not in n and n not in state and not strip_peft_prefix(n).startswith("sam2.")
    ]  # SAM 2 tensors equal to the model's are (correctly) not returned by the name conversion
    if needed:
        raise ValueError(f"{ckpt} lacks trainable tensors {needed[:8]} (was it saved by another stage preset?)")
    with torch.no_grad():
        for key, value in state.items():
            own[key].copy_(value.to(own[key].dtype))


def save_full(model: nn.Module, output_dir: str | os.PathLike[str], processor: Any = None) -> nn.Module:
    """Merge LoRA (if any) into the weights and ``save_pretrained`` the whole model; returns the merged model.

    The merge happens in place (the LoRA layers are replaced), so call this at the end of training.
    """
    merged = model.merge_and_unload() if is_peft_model(model) else model
    out = Path(output_dir)
    merged.save_pretrained(str(out))
    if processor is not None:
        processor.save_pretrained(str(out))
    return merged


# ---------------------------------------------------------------------------------------------------- trainer
class _EpochSync(TrainerCallback):
    """Tell the type-grouped sampler (and through it the dataset) which epoch starts: accelerate's
    ``BatchSamplerShard`` does not forward ``set_epoch`` to the sampler in multi-process runs."""

    def __init__(self, trainer: UniPixelTrainer) -> None:
        self.trainer = trainer

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        sampler = self.trainer._group_sampler
        if sampler is not None:
            sampler.set_epoch(int((state.epoch or 0) + 1e-6))


class UniPixelTrainer(Trainer):
    """See the module docstring. ``preset`` supplies the learning rates of the parameter groups and the saving
    policy; ``group_by_data_type=False`` falls back to the Trainer's random sampler."""

    def __init__(self, *args: Any, preset: StagePreset, group_by_data_type: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.preset = preset
        self.group_by_data_type = group_by_data_type
        self._group_sampler: TypeGroupedSampler | None = None
        # The reference's forward takes no loss kwargs: per-micro-batch mean loss, averaged over accumulation.
        self.model_accepts_loss_kwargs = False
        self._loss_parts: dict[str, list[float]] = {}
        self._warned_no_grad = False
        self.add_callback(_EpochSync(self))
        if preset.clip_per_group and (self.is_deepspeed_enabled or self.is_fsdp_enabled):
            raise ValueError(
                "clip_per_group needs whole gradients on every rank (plain or DDP training); DeepSpeed and FSDP shard "
                "them — drop --clip-per-group or train without DeepSpeed/FSDP"
            )

    # ------------------------------------------------------------------ optimisation
    def _clip_grad_norm(self, model: nn.Module) -> Any:
        """Global clipping (the reference's) unless ``preset.clip_per_group``: then each optimizer parameter group
        (``regular`` / ``lora`` / ``sam2_enc`` / ``sam2_dec``, each split into weights with and without weight decay,
        see :func:`optimizer_param_groups`) is clipped to ``max_grad_norm`` on its own.

        Why: batches are grouped by data type, and on segmentation batches a SAM 2 trained from scratch can have a
        gradient 30x the LLM's (measured on the built-in model: image-encoder norm 36 vs LLM 1), so a global clip
        scales the LLM's update on every segmentation batch down by that factor while caption/QA batches pass
        nearly unclipped. (On the built-in model's recipe it did not improve validation quality — model card, fifth
        session — but it removes that coupling.) Returns the norm over all groups (before clipping), as logged."""
        if not self.preset.clip_per_group or self.optimizer is None:
            return super()._clip_grad_norm(model)
        norms = []
        for group in self.optimizer.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                norms.append(torch.nn.utils.clip_grad_norm_(params, self.args.max_grad_norm))
        return torch.stack(norms).norm() if norms else torch.zeros(())

    # ------------------------------------------------------------------ data
    def _get_train_sampler(self, train_dataset: Any = None) -> Any:
        ds = train_dataset if train_dataset is not None else self.train_dataset
        types = getattr(ds, "data_types", None)
        if not self.group_by_data_type or types is None:
            return super()._get_train_sampler(train_dataset)
        self._group_sampler = TypeGroupedSampler(
            types,
            batch_size=self.args.per_device_train_batch_size,
            world_size=self.args.world_size,
            seed=self.args.seed,
            dataset=ds,
        )
        if len(self._group_sampler) == 0:
            sizes = {t: len(ix) for t, ix in self._group_sampler.groups.items()}
            raise ValueError(
                f"no data type has a full step of {self._group_sampler.chunk_size} samples (per-device batch x "
                f"world size); group sizes: {sizes}"
            )
        return self._group_sampler

    def _prepare_input(self, data: Any) -> Any:
        if isinstance(data, RefPrompt):
            dev = self.args.device
            return RefPrompt(data.coords.to(dev), data.labels.to(dev), data.frame)
        return super()._prepare_input(data)

    # ------------------------------------------------------------------ optimisation
    def create_optimizer(self, model: nn.Module | None = None) -> torch.optim.Optimizer:
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            groups = optimizer_param_groups(opt_model, self.preset, self.get_decay_parameter_names(opt_model))
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
            for g in groups:
                n = sum(p.numel() for p in g["params"])
                logger.info("param group %s: %d tensors, %d params, lr %g", g["name"], len(g["params"]), n, g["lr"])
        return self.optimizer

    def compute_loss(
        self, model: nn.Module, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
    ) -> Any:
        outputs = model(**inputs)
        loss = outputs.loss
        if loss is None:
            raise ValueError("the model returned no loss: the batch has no labels")
        if not loss.requires_grad:
            # E.g. a caption batch in a seg-head-only stage: nothing trainable was used. A zero-valued term keeps
            # backward (and DDP's gradient all-reduce) well-defined; the step then changes nothing.
            if not self._warned_no_grad:
                logger.warning("a batch's loss does not depend on any trainable parameter; it contributes nothing")
                self._warned_no_grad = True
            loss = loss + sum(p.sum() * 0.0 for p in model.parameters() if p.requires_grad)
        for key in ("lm_loss", "seg_loss"):
            value = getattr(outputs, key, None)
            if value is not None:
                self._loss_parts.setdefault(key, []).append(float(value.detach()))
        align = (getattr(outputs, "seg_loss_terms", None) or {}).get("align_loss")
        if align is not None:  # the optional query-pixel alignment term (already inside seg_loss)
            self._loss_parts.setdefault("align_loss", []).append(float(align))
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:
            for key, values in self._loss_parts.items():
                if values:
                    logs[key] = round(sum(values) / len(values), 4)
            self._loss_parts = {}
        super().log(logs, start_time)

    # ------------------------------------------------------------------ saving / resuming
    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Checkpoints (periodic and ``save_model``) are partial: trainable tensors + LoRA adapter."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        model = self.accelerator.unwrap_model(self.model)
        save_partial(model, output_dir, state_dict=state_dict, processor=self.processing_class)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        ckpt = Path(resume_from_checkpoint)
        if not (ckpt / PARTIAL_WEIGHTS).exists() and not (ckpt / ADAPTER_WEIGHTS).exists():
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        logger.info("loading partial checkpoint %s", ckpt)
        load_partial_into(target, ckpt)

    def save_final(self, output_dir: str | None = None) -> Path:
        """End of training: full merged model when the preset says ``save_full_model``, else a partial checkpoint.

        LoRA + ZeRO-3 cannot be merged (the weights are sharded); the reference falls back to adapters, so do we.
        """
        out = Path(output_dir if output_dir is not None else self.args.output_dir)
        zero3 = self.is_deepspeed_enabled and self.accelerator.deepspeed_plugin.zero_stage == 3
        model = self.accelerator.unwrap_model(self.model)
        if self.preset.save_full_model and not (zero3 and is_peft_model(model)):
            if zero3:
                state = self.accelerator.get_state_dict(self.deepspeed)
                if self.args.should_save:
                    model.save_pretrained(str(out), state_dict=state)
                    if self.processing_class is not None:
                        self.processing_class.save_pretrained(str(out))
            elif self.args.should_save:
                self.model = save_full(model, out, self.processing_class)
            self.accelerator.wait_for_everyone()
            return out
        if self.preset.save_full_model:
            logger.warning("LoRA under ZeRO-3 cannot be merged; saving the adapter (partial checkpoint) instead")
        self.save_model(str(out))
        self.accelerator.wait_for_everyone()
        return out

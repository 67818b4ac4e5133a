"""``unipixel train``: the reference's three-stage recipe (or any override of it) on one or many processes.

Examples::

    # stage 2 on one process, data read through the reader registry (root = DATA_ROOT/<name>)
    unipixel train --stage 2 --base-model model_zoo/Qwen2.5-VL-3B-Instruct \\
        --sam2-checkpoint model_zoo/sam2.1_hiera_base_plus.pt --data-root data --output-dir work/stage2

    # stage 3 on 8 GPUs with DeepSpeed ZeRO-2, starting from the stage 1 and 2 partial checkpoints
    torchrun --nproc_per_node 8 -m unipixel.train.cli --stage 3 --base-model ... --sam2-checkpoint ... \\
        --partial-checkpoint work/stage1 --partial-checkpoint work/stage2 --deepspeed zero2 --output-dir work/stage3

    # fine-tune a released checkpoint on your own samples (JSONL of Sample.to_dict())
    unipixel train --stage 3 --model PolyU-ChenLab/UniPixel-3B --samples my.jsonl --lr 1e-5 --max-steps 200 \\
        --output-dir work/finetune

``--data NAME[:REPEAT][=ROOT]`` (repeatable) replaces the preset's dataset list; ``--deepspeed`` takes
``zero2``/``zero2_offload``/``zero3`` (configs shipped in ``unipixel/train/configs``) or a JSON path. Use
``accelerate launch --config_file <unipixel/train/configs/fsdp.yaml> -m unipixel.train.cli ...`` for FSDP.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).parent / "configs"
DEEPSPEED_CONFIGS = {
    "zero2": "zero2.json",
    "zero2_offload": "zero2_offload.json",
    "zero3": "zero3.json",
}

__all__ = ["build_parser", "main", "CONFIG_DIR"]


def build_parser(prog: str = "unipixel train") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    g = p.add_argument_group("model")
    g.add_argument("--stage", default="3", choices=("1", "2", "3"),
                   help="preset: 1, 2 or 3 (reference §6.1); every field is overridable")
    g.add_argument("--model", help="UniPixel checkpoint to start from (full, or partial with base_model_path)")
    g.add_argument("--base-model", help="Qwen2.5-VL base checkpoint (reference start of every stage)")
    g.add_argument("--sam2-checkpoint", help="SAM 2 .pt (Meta format) loaded on top of the base")
    g.add_argument("--sam2-config", default="configs/sam2.1_hiera_b+", help="SAM 2 architecture name or YAML")
    g.add_argument("--sam2-config-dir", action="append", default=[], help="extra folder to look for SAM 2 YAMLs")
    g.add_argument("--sam2-image-size", type=int, default=768)
    g.add_argument("--partial-checkpoint", action="append", default=[], help="earlier stage dirs to load (in order)")
    g = p.add_argument_group("data")
    g.add_argument("--data", action="append", default=[], help="NAME[:REPEAT][=ROOT]; default: the preset's list")
    g.add_argument("--data-root", help="root of the datasets (NAME's root is DATA_ROOT/NAME unless =ROOT is given)")
    g.add_argument(
        "--samples", action="append", default=[],
        help="JSONL of Sample.to_dict() (repeatable); FILE:N repeats the file's samples N times in the mixture",
    )
    g.add_argument("--split", default="train")
    g.add_argument("--num-frames", type=int)
    g.add_argument("--sampling", choices=("random", "uniform"))
    g.add_argument("--min-pixels", type=int, default=128 * 28 * 28)
    g.add_argument("--max-pixels", type=int, default=256 * 28 * 28)
    g.add_argument("--no-scale-pixels", action="store_true", help="same pixel budget for images and clips")
    g.add_argument("--max-num-tokens", type=int)
    g.add_argument("--max-conv-turns", type=int, default=3,
                   help="random turns kept of a longer multi-turn segmentation sample (reference: 3; 0 keeps all)")
    g.add_argument("--no-group-by-type", action="store_true", help="plain random sampler (single data type only)")
    g = p.add_argument_group("optimisation (defaults: the stage preset)")
    g.add_argument("--lr", type=float, dest="learning_rate")
    g.add_argument("--lora-lr", type=float)
    g.add_argument("--sam2-lr", type=float, help="both SAM 2 groups (reference sam2_lr)")
    g.add_argument("--sam2-enc-lr", type=float)
    g.add_argument("--sam2-dec-lr", type=float)
    g.add_argument("--tuning-modules", help="comma list of embedding,ref,ref_enc,msk,seg,sam2,llm,vit")
    g.add_argument("--lora", choices=("on", "off"))
    g.add_argument("--lora-r", type=int)
    g.add_argument("--lora-alpha", type=int)
    g.add_argument("--lora-dropout", type=float)
    g.add_argument("--lora-target", help="qkvo_all | qkvo_llm | linear_llm | a regex over module names")
    g.add_argument("--global-batch-size", type=int)
    g.add_argument("--per-device-batch-size", type=int)
    g.add_argument("--epochs", type=float, dest="num_train_epochs")
    g.add_argument("--max-steps", type=int, default=-1)
    g.add_argument(
        "--max-minutes", type=float, help="stop (and save) after this much training wall time; with --max-steps "
        "the schedule still follows the step count"
    )
    g.add_argument("--warmup-ratio", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--scheduler", dest="lr_scheduler_type")
    g.add_argument("--sample-objects", type=int)
    g.add_argument(
        "--clip-per-group", action="store_true", default=None,
        help="clip each optimizer parameter group (regular, lora, sam2_enc, sam2_dec; x decay/no-decay) on its own",
    )  # fmt: skip
    g.add_argument(
        "--seg-align-weight", type=float,
        help="weight of the query-pixel alignment loss (unipixel.model.seg_align; 0 = reference loss only)",
    )  # fmt: skip
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--bf16", choices=("auto", "on", "off"), default="auto")
    g.add_argument("--no-gradient-checkpointing", action="store_true")
    g.add_argument("--deepspeed", help="zero2 | zero2_offload | zero3 | path to a DeepSpeed JSON")
    g.add_argument("--num-workers", type=int, dest="dataloader_num_workers")
    g = p.add_argument_group("output")
    g.add_argument("--output-dir", help="where checkpoints and the final model go (required to train)")
    g.add_argument("--save-steps", type=int)
    g.add_argument("--save-total-limit", type=int)
    g.add_argument("--save-full-model", choices=("on", "off"), help="final save: merged full model or partial")
    g.add_argument("--resume", nargs="?", const="auto", help="resume from a checkpoint dir (default: the latest)")
    g.add_argument("--logging-steps", type=int, default=10)
    g.add_argument("--report-to", default="none")
    g.add_argument("--print-config", action="store_true", help="print the resolved preset and exit")
    return p


def _on_off(v: str | None) -> bool | None:
    return None if v is None else v == "on"


def resolve_preset(args: argparse.Namespace) -> Any:
    from .stages import get_stage

    preset = get_stage(args.stage)
    return preset.override(
        learning_rate=args.learning_rate,
        lora_lr=args.lora_lr,
        sam2_enc_lr=args.sam2_enc_lr if args.sam2_enc_lr is not None else args.sam2_lr,
        sam2_dec_lr=args.sam2_dec_lr if args.sam2_dec_lr is not None else args.sam2_lr,
        tuning_modules=tuple(m for m in args.tuning_modules.split(",") if m) if args.tuning_modules else None,
        lora=_on_off(args.lora),
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        lora_target=args.lora_target,
        global_batch_size=args.global_batch_size,
        per_device_batch_size=args.per_device_batch_size,
        num_train_epochs=args.num_train_epochs,
        warmup_ratio=args.warmup_ratio,
        weight_decay=args.weight_decay,
        lr_scheduler_type=args.lr_scheduler_type,
        sample_objects=args.sample_objects,
        seg_align_weight=args.seg_align_weight,
        clip_per_group=args.clip_per_group,
        save_steps=args.save_steps,
        save_full_model=_on_off(args.save_full_model),
        datasets=tuple(args.data) if args.data else None,
        num_frames=args.num_frames,
        sampling=args.sampling,
        max_num_tokens=args.max_num_tokens,
        dataloader_num_workers=args.dataloader_num_workers,
    )


def _deepspeed_config(spec: str | None) -> str | None:
    if spec is None:
        return None
    if spec in DEEPSPEED_CONFIGS:
        path = str(CONFIG_DIR / DEEPSPEED_CONFIGS[spec])
    elif Path(spec).exists():
        path = spec
    else:
        raise SystemExit(f"error: --deepspeed {spec!r}: not one of {sorted(DEEPSPEED_CONFIGS)} and no such file")
    import importlib.util

    if importlib.util.find_spec("deepspeed") is None:
        raise SystemExit("error: --deepspeed needs the deepspeed package: pip install deepspeed")
    return path


def _bf16(mode: str) -> bool:
    import torch

    if mode != "auto":
        return mode == "on"
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def _samples_spec(spec: str) -> tuple[str, int]:
    """``FILE`` or ``FILE:N`` (repeat factor N >= 1, as ``--data NAME:N``); an existing file named so wins."""
    path, sep, rep = spec.rpartition(":")
    if not sep or not rep.isdigit() or Path(spec).exists():
        return spec, 1
    if int(rep) < 1:
        raise SystemExit(f"error: --samples {spec}: the repeat factor must be at least 1")
    return path, int(rep)


def _samples(args: argparse.Namespace, preset: Any) -> Any:
    from .dataset import MixedSamples, load_samples_jsonl, parse_dataset_spec

    parts = []
    for spec in args.samples:
        path, repeat = _samples_spec(spec)
        parts.append((Path(path).stem, load_samples_jsonl(path), repeat))
    if args.data or not args.samples:
        specs = [parse_dataset_spec(s) for s in preset.datasets]
        if specs:
            parts += MixedSamples.from_specs(specs, args.data_root, args.split).parts
    mixed = MixedSamples(parts)
    if len(mixed) == 0:
        raise SystemExit("error: no training samples (give --samples FILE.jsonl or --data NAME with --data-root)")
    return mixed


def time_limit_callback(seconds: float) -> Any:
    """A Trainer callback that stops training (a normal stop: the final save still happens) after ``seconds``."""
    import time

    from transformers import TrainerCallback

    class TimeLimit(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if time.monotonic() - self.start > seconds:
                control.should_training_stop = True
            return control

    return TimeLimit()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``unipixel train`` (and of ``python -m unipixel.train.cli`` under torchrun/accelerate)."""
    args = build_parser().parse_args(argv)
    try:
        preset = resolve_preset(args)
    except (KeyError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    if args.print_config:
        import dataclasses

        print(json.dumps(dataclasses.asdict(preset), indent=2, default=str))
        return 0
    if args.output_dir is None:
        raise SystemExit("error: give --output-dir DIR (checkpoints and the final model are written there)")
    if args.model is None and (args.base_model is None or args.sam2_checkpoint is None):
        raise SystemExit("error: give --model CHECKPOINT, or --base-model QWEN_DIR with --sam2-checkpoint SAM2.pt")
    # Everything that can be checked without the model is checked first: a typo should cost seconds, not a
    # model load on every rank.
    for spec in args.samples:
        path, _ = _samples_spec(spec)
        if not Path(path).is_file():
            raise SystemExit(f"error: --samples file not found: {path}")
    deepspeed = _deepspeed_config(args.deepspeed)
    try:
        from .stages import check_preset

        check_preset(preset)
        samples = _samples(args, preset)
    except (KeyError, ValueError, TypeError, OSError) as err:
        raise SystemExit(f"error: {err}") from None

    logging.basicConfig(level=logging.INFO if int(os.environ.get("RANK", "0")) == 0 else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import torch
    from transformers import TrainingArguments

    from .build import load_model_for_training
    from .collator import UniPixelCollator
    from .dataset import FeatureConfig, UniPixelTrainDataset
    from .stages import apply_tuning
    from .trainer import UniPixelTrainer, enable_gradient_checkpointing

    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = preset.per_device_batch_size * world
    effective = per_step * preset.gradient_accumulation_steps(world)
    if effective != preset.global_batch_size:
        logging.getLogger(__name__).warning(
            "global batch %d is not a multiple of %d (per-device %d x %d processes): training with %d",
            preset.global_batch_size, per_step, preset.per_device_batch_size, world, effective,
        )
    bf16 = _bf16(args.bf16)
    model, processor = load_model_for_training(
        args.model,
        base_model_path=args.base_model,
        sam2_checkpoint=args.sam2_checkpoint,
        sam2_config=args.sam2_config,
        sam2_image_size=args.sam2_image_size,
        partial_checkpoints=args.partial_checkpoint,
        sam2_config_dirs=args.sam2_config_dir,
        dtype=torch.bfloat16 if bf16 and args.deepspeed else None,
        seed=args.seed,
    )
    model = apply_tuning(model, preset)
    if not args.no_gradient_checkpointing:
        enable_gradient_checkpointing(model)
    feat = FeatureConfig(
        num_frames=preset.num_frames,
        sampling=preset.sampling,  # type: ignore[arg-type]
        min_pixels=args.min_pixels,
        max_pixels=args.max_pixels,
        scale_pixels_by_frames=not args.no_scale_pixels,
        sam2_image_size=model.config.sam2_image_size,
        int_box_coords=model.config.quirk_int_box_coords,
        max_num_tokens=preset.max_num_tokens,
        seed=args.seed,
        max_conv_turns=args.max_conv_turns,
    )
    dataset = UniPixelTrainDataset(samples, processor, feat)
    targs = TrainingArguments(
        output_dir=args.output_dir,
        per_device_train_batch_size=preset.per_device_batch_size,
        gradient_accumulation_steps=preset.gradient_accumulation_steps(world),
        learning_rate=preset.learning_rate,
        weight_decay=preset.weight_decay,
        warmup_steps=preset.warmup_ratio,  # a float in [0, 1) is a ratio of the total steps
        lr_scheduler_type=preset.lr_scheduler_type,
        num_train_epochs=preset.num_train_epochs,
        max_steps=args.max_steps,
        optim="adamw_torch",
        bf16=bf16,
        tf32=bool(torch.cuda.is_available()) or None,
        logging_steps=args.logging_steps,
        save_strategy="steps",
        save_steps=preset.save_steps,
        save_total_limit=args.save_total_limit,
        dataloader_num_workers=preset.dataloader_num_workers,
        remove_unused_columns=False,
        report_to=[] if args.report_to == "none" else args.report_to.split(","),
        seed=args.seed,
        data_seed=args.seed,
        deepspeed=deepspeed,
        ddp_find_unused_parameters=True,
        use_cpu=not torch.cuda.is_available(),
    )
    trainer = UniPixelTrainer(
        model=model,
        args=targs,
        train_dataset=dataset,
        data_collator=UniPixelCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,
        preset=preset,
        group_by_data_type=not args.no_group_by_type,
    )
    if args.max_minutes:
        trainer.add_callback(time_limit_callback(args.max_minutes * 60))
    resume: str | bool | None = args.resume
    if resume == "auto":
        from transformers.trainer_utils import get_last_checkpoint

        resume = get_last_checkpoint(args.output_dir) if Path(args.output_dir).is_dir() else None
        if resume is None:
            logging.getLogger(__name__).warning("--resume: no checkpoint in %s, starting from scratch", args.output_dir)
    elif resume is None and Path(args.output_dir).is_dir() and any(Path(args.output_dir).glob("checkpoint-*")):
        logging.getLogger(__name__).warning(
            "%s already holds checkpoints; training starts from scratch and may overwrite them (pass --resume "
            "to continue)", args.output_dir,
        )
    trainer.train(resume_from_checkpoint=resume)
    out = trainer.save_final(args.output_dir)
    if trainer.is_world_process_zero():
        print(f"saved {'full model' if preset.save_full_model else 'partial checkpoint'} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

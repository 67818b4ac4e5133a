"""Resume = uninterrupted run; stage partial checkpoints reload; building from a Qwen base + SAM 2 .pt; the CLI.

Stage 1 (``<|ref|>`` adapters, SAM 2 decoder off) keeps these runs cheap: only the LLM forward/backward.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from test_train_common import (
    CKPT,
    GOLDEN,
    PIXELS,
    build_reference_dirs,
    load_golden_model,
    make_samples,
    training_args,
)
from unipixel.train.collator import UniPixelCollator
from unipixel.train.dataset import FeatureConfig, UniPixelTrainDataset
from unipixel.train.stages import apply_tuning, get_stage
from unipixel.train.trainer import UniPixelTrainer

STEPS = 4


@pytest.fixture(scope="module")
def processor():
    from unipixel.processing import UniPixelProcessor

    return UniPixelProcessor.from_pretrained(CKPT)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    return make_samples(tmp_path_factory.mktemp("data"), n=STEPS, frames=2, kinds=("ref", "box"))


class _StopAt(TrainerCallback):
    """Simulates a killed job: training stops right after the checkpoint of step ``step`` is written."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kwargs):  # noqa: ANN001, ANN201
        if state.global_step >= self.step:
            control.should_training_stop = True
        return control


def _trainer(processor, samples, out: Path, **kw) -> UniPixelTrainer:
    preset = get_stage(1)
    model = apply_tuning(load_golden_model(), preset)
    ds = UniPixelTrainDataset(samples, processor, FeatureConfig(num_frames=2, sam2_image_size=128, **PIXELS))
    args = training_args(
        out, **{"max_steps": STEPS, "learning_rate": 1e-3, "lr_scheduler_type": "cosine", "warmup_steps": 1, **kw}
    )
    return UniPixelTrainer(
        model=model,
        args=args,
        train_dataset=ds,
        data_collator=UniPixelCollator(processor.tokenizer.pad_token_id),
        processing_class=processor,
        preset=preset,
    )


def _trainable(trainer: UniPixelTrainer) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}


def test_resume_from_partial_checkpoint_equals_uninterrupted_run(processor, samples, tmp_path: Path) -> None:
    full = _trainer(processor, samples, tmp_path / "a")
    full.train()
    expected = _trainable(full)
    losses = [h["loss"] for h in full.state.log_history if "loss" in h]
    del full

    first = _trainer(processor, samples, tmp_path / "b", save_strategy="steps", save_steps=2)
    first.add_callback(_StopAt(2))
    first.train()
    ckpt = tmp_path / "b" / "checkpoint-2"
    assert first.state.global_step == 2 and (ckpt / "pytorch_model.safetensors").exists()
    assert not (ckpt / "model.safetensors").exists()  # partial: only the trained tensors
    del first  # "kill"

    resumed = _trainer(processor, samples, tmp_path / "b", save_strategy="steps", save_steps=2)
    resumed.train(resume_from_checkpoint=str(ckpt))
    got = _trainable(resumed)
    assert resumed.state.global_step == STEPS
    resumed_losses = [h["loss"] for h in resumed.state.log_history if "loss" in h]
    assert resumed_losses[-2:] == pytest.approx(losses[-2:], abs=0)
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert torch.equal(got[name], value), name
    assert any(not torch.equal(v, load_golden_model().state_dict()[k]) for k, v in expected.items())


def test_stage_checkpoint_loads_with_from_pretrained(processor, samples, tmp_path: Path) -> None:
    """A stage-1 save (no LoRA) holds the ref adapters + the random PE buffers and rebuilds from base + SAM 2."""
    from unipixel import UniPixelForConditionalGeneration

    base, pt = build_reference_dirs(tmp_path)
    trainer = _trainer(processor, samples, tmp_path / "out", max_steps=1)
    trainer.model.config.base_model_path, trainer.model.config.sam2_checkpoint = str(base), str(pt)
    trainer.train()
    trainer.save_final(str(tmp_path / "stage1"))
    saved = set(json.loads((tmp_path / "stage1" / "config.json").read_text()))
    assert {"base_model_path", "sam2_checkpoint", "sam2_arch"} <= saved
    model = UniPixelForConditionalGeneration.from_pretrained(tmp_path / "stage1")
    got = model.state_dict()
    for name, value in trainer.model.state_dict().items():
        if name.startswith("ref_prompt.") and not name.startswith("ref_prompt.ref_encoder.mask"):
            assert torch.equal(got[name], value), name


def test_build_from_base_and_partial_checkpoint(tmp_path: Path) -> None:
    """Reference start of a stage: Qwen base + SAM 2 .pt + adapter init + an earlier stage's partial tensors."""
    from safetensors.torch import load_file, save_file

    from unipixel.train.build import load_model_for_training

    base, pt = build_reference_dirs(tmp_path)
    sd = load_file(str(CKPT / "model.safetensors"))  # reference names: seg_head.*, ref_proj.*, msk_proj.*
    stage = tmp_path / "stage_prev"
    stage.mkdir()
    save_file({k: v for k, v in sd.items() if k.startswith(("seg_head.", "ref_proj", "tem_", "msk_proj."))},
              str(stage / "pytorch_model.safetensors"))  # fmt: skip
    cfg = json.loads((CKPT / "config.json").read_text())
    model, proc = load_model_for_training(
        base_model_path=base,
        sam2_checkpoint=pt,
        sam2_config=cfg["sam2_config"],
        sam2_image_size=cfg["sam2_image_size"],
        partial_checkpoints=[stage],
        sam2_config_dirs=[GOLDEN / "sam2_configs"],
    )
    golden = load_golden_model().state_dict()
    got = model.state_dict()
    assert model.config.ref_token_id == proc.tokenizer.convert_tokens_to_ids("<|ref|>") == 470
    for name, value in golden.items():
        if "positional" in name:  # random Gaussian buffers: not in partial checkpoints (reference §10.7)
            continue
        assert torch.equal(got[name], value), name


def test_cli_trains_one_step_from_jsonl(samples, tmp_path: Path) -> None:
    from unipixel.train.cli import main

    jsonl = tmp_path / "samples.jsonl"
    jsonl.write_text("".join(json.dumps(s.to_dict()) + "\n" for s in samples))
    out = tmp_path / "run"
    rc = main([
        "--stage", "1", "--model", str(CKPT), "--sam2-config-dir", str(GOLDEN / "sam2_configs"),
        "--samples", str(jsonl), "--output-dir", str(out), "--max-steps", "1", "--global-batch-size", "1",
        "--num-frames", "2", "--min-pixels", str(PIXELS["min_pixels"]), "--max-pixels", str(PIXELS["max_pixels"]),
        "--no-scale-pixels", "--logging-steps", "1", "--bf16", "off",
    ])  # fmt: skip
    assert rc == 0
    tensors = load_file_names(out / "pytorch_model.safetensors")
    assert tensors and all(n.startswith("ref_prompt.") for n in tensors)
    assert (out / "config.json").exists() and (out / "tokenizer_config.json").exists()


def load_file_names(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())

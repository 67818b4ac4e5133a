"""The reference's partial / adapter checkpoints: base Qwen2.5-VL + SAM 2 .pt + partial tensors (+ LoRA)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from unipixel import UniPixelForConditionalGeneration

RANDOM_BUFFERS = ("ref_prompt.tem_pe.positional_encoding_gaussian_matrix",)
STAGE_KEYS = ("seg_head.", "ref_proj_single.", "ref_proj_double.", "ref_proj.", "tem_emb.", "tem_proj.", "msk_proj.")


def _build_reference_dirs(golden_dir: Path, tmp: Path, gamma: bool = True) -> Path:
    """Lay out base model, SAM 2 .pt and a stage checkpoint exactly as the reference's builder expects."""
    sd = load_file(str(golden_dir / "ckpt_tiny" / "model.safetensors"))
    manifest = json.loads((golden_dir / "golden.json").read_text())
    base = tmp / "model_zoo" / "base"
    base.mkdir(parents=True)
    save_file({k: v for k, v in sd.items() if k.startswith(("model.", "visual."))}, str(base / "model.safetensors"))
    (base / "config.json").write_text(json.dumps(manifest["config"]["flat_qwen_config"]))
    sam = {k[len("sam2.") :]: v for k, v in sd.items() if k.startswith("sam2.")}
    if gamma:  # upstream Meta naming of the CXBlock layer scale
        sam = {k.replace("fuser.layers.0.weight", "fuser.layers.0.gamma").replace(
            "fuser.layers.1.weight", "fuser.layers.1.gamma"): v for k, v in sam.items()}
    torch.save({"model": sam}, tmp / "model_zoo" / "sam2.pt")
    stage = tmp / "stage"
    stage.mkdir()
    cfg = json.loads((golden_dir / "ckpt_tiny" / "config.json").read_text())
    cfg.update(base_model_path="model_zoo/base", sam2_checkpoint="model_zoo/sam2.pt")
    (stage / "config.json").write_text(json.dumps(cfg))
    save_file({k: v for k, v in sd.items() if k.startswith(STAGE_KEYS)}, str(stage / "pytorch_model.safetensors"))
    shutil.copytree(golden_dir / "sam2_configs", stage / "sam2_configs")
    return stage


def _same_except_random_buffers(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(sb)
    for k in sa:
        if k.endswith("positional_encoding_gaussian_matrix") or k.endswith("shared_embedding.positional_embedding"):
            continue
        assert torch.equal(sa[k], sb[k]), k


def test_stage_checkpoint_rebuilds_the_model(golden_dir: Path, golden_model, tmp_path: Path) -> None:
    stage = _build_reference_dirs(golden_dir, tmp_path)
    model = UniPixelForConditionalGeneration.from_pretrained(stage)
    _same_except_random_buffers(model, golden_model)


def test_lora_adapter_is_loaded_and_merged(golden_dir: Path, golden_model, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    stage = _build_reference_dirs(golden_dir, tmp_path)
    lora_model = UniPixelForConditionalGeneration.from_pretrained(stage, is_trainable=True)
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=r".*language_model.*\.(q_proj|v_proj)")
    wrapped = peft.get_peft_model(lora_model, cfg)
    torch.manual_seed(0)
    for name, p in wrapped.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    wrapped.save_pretrained(str(stage), save_embedding_layers=False)
    expected = {k: v.clone() for k, v in wrapped.merge_and_unload().state_dict().items()}
    model = UniPixelForConditionalGeneration.from_pretrained(stage)
    got = model.state_dict()
    assert set(got) == set(expected)
    changed = 0
    for k, v in expected.items():
        if "positional" in k:
            continue
        assert torch.allclose(got[k], v, atol=1e-6), k
        changed += not torch.equal(v, golden_model.state_dict()[k])
    assert changed >= 4  # the merged LoRA really moved q_proj/v_proj of both layers


def test_missing_base_model_is_a_clear_error(golden_dir: Path, tmp_path: Path) -> None:
    stage = _build_reference_dirs(golden_dir, tmp_path)
    shutil.rmtree(tmp_path / "model_zoo" / "base")
    with pytest.raises(FileNotFoundError, match="base_model_path"):
        UniPixelForConditionalGeneration.from_pretrained(stage)


def test_partial_checkpoints_of_a_fine_tuned_full_model_rebuild_on_it(golden_dir: Path, tmp_path: Path) -> None:
    """Fine-tuning a full UniPixel checkpoint: its mid-training (partial) checkpoints load back on that
    checkpoint, not on the Qwen base it was once built from."""
    from unipixel.train.build import load_model_for_training
    from unipixel.train.stages import apply_tuning, get_stage
    from unipixel.train.trainer import save_partial

    full = tmp_path / "ckpt"
    shutil.copytree(golden_dir / "ckpt_tiny", full)
    shutil.copytree(golden_dir / "sam2_configs", tmp_path / "sam2_configs")
    model, processor = load_model_for_training(full)
    assert model.config.base_model_path == str(full.resolve())
    model = apply_tuning(model, get_stage(3).override(lora=False, tuning_modules=("seg",)))
    with torch.no_grad():
        model.seg_head[1].weight.add_(1.0)  # "training"
    out = save_partial(model, tmp_path / "checkpoint-1", processor=processor)
    rebuilt = UniPixelForConditionalGeneration.from_pretrained(out)
    want = {k: v for k, v in model.state_dict().items()}
    got = rebuilt.state_dict()
    assert torch.equal(got["seg_head.1.weight"], want["seg_head.1.weight"])
    for key in ("sam2.mask_decoder.iou_token.weight", "model.language_model.layers.0.mlp.up_proj.weight"):
        assert torch.equal(got[key], want[key]), key  # from the fine-tuned checkpoint, not re-initialised


def test_export_merges_a_lora_checkpoint_into_a_standalone_model(golden_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("peft")
    from unipixel.export import main as export_main
    from unipixel.train.build import load_model_for_training
    from unipixel.train.stages import apply_tuning, get_stage
    from unipixel.train.trainer import save_partial

    full = tmp_path / "ckpt"
    shutil.copytree(golden_dir / "ckpt_tiny", full)
    shutil.copytree(golden_dir / "sam2_configs", tmp_path / "sam2_configs")
    model, processor = load_model_for_training(full, seed=0)
    model = apply_tuning(model, get_stage(3).override(lora=True, lora_r=4, tuning_modules=("seg",)))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or name.endswith("seg_head.1.weight"):
                p.add_(0.01)  # "training": LoRA B starts at zero, so move it
    ckpt = save_partial(model, tmp_path / "checkpoint-7", processor=processor)
    assert (ckpt / "adapter_model.safetensors").exists()
    want = {k: v.clone() for k, v in model.merge_and_unload().state_dict().items()}
    assert export_main([str(ckpt), str(tmp_path / "exported")]) == 0
    exported = UniPixelForConditionalGeneration.from_pretrained(tmp_path / "exported")
    assert exported.config.base_model_path is None and (tmp_path / "exported" / "model.safetensors").exists()
    got = exported.state_dict()
    for key in ("seg_head.1.weight", "model.language_model.layers.0.self_attn.q_proj.weight",
                "sam2.mask_decoder.iou_token.weight"):
        assert torch.allclose(got[key], want[key], atol=1e-6), key
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.allclose(UniPixelForConditionalGeneration.from_pretrained(full).state_dict()[q], got[q])  # merged
    with pytest.raises(SystemExit, match="not empty"):
        export_main([str(ckpt), str(tmp_path / "exported")])

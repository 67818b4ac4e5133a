"""Checkpoint loading: Auto classes, released layout, round trips, dtypes, shards, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoProcessor

import unipixel
from unipixel import UniPixelConfig, UniPixelForConditionalGeneration


def _copy_ckpt(golden_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "ckpt"
    shutil.copytree(golden_dir / "ckpt_tiny", dst)
    shutil.copytree(golden_dir / "sam2_configs", tmp_path / "sam2_configs")
    for p in dst.iterdir():
        p.chmod(0o644)
    return dst


def test_auto_classes(golden_dir: Path) -> None:
    ckpt = golden_dir / "ckpt_tiny"
    assert isinstance(AutoConfig.from_pretrained(ckpt), UniPixelConfig)
    model = AutoModel.from_pretrained(ckpt)
    assert isinstance(model, UniPixelForConditionalGeneration)
    proc = AutoProcessor.from_pretrained(ckpt)
    assert isinstance(proc, unipixel.processing.UniPixelProcessor)


def test_config_reads_released_fields(golden_dir: Path, golden_manifest: dict) -> None:
    cfg = UniPixelConfig.from_pretrained(golden_dir / "ckpt_tiny")
    raw = json.loads((golden_dir / "ckpt_tiny" / "config.json").read_text())
    for key in ("sam2_config", "sam2_image_size", "sam2_hidden_tokens", "ref_token_id", "seg_token_id", "mem_token_id"):
        assert getattr(cfg, key) == raw[key]
    assert cfg.text_config.hidden_size == raw["hidden_size"]
    assert cfg.vision_config.fullatt_block_indexes == raw["vision_config"]["fullatt_block_indexes"]
    assert cfg.quirk_window_order_mem_pooling and cfg.quirk_int_box_coords
    assert cfg.quirk_padded_temporal_norm and cfg.quirk_prompt_first_frame


def test_save_pretrained_round_trip_is_bit_exact(golden_model, tmp_path: Path) -> None:
    golden_model.save_pretrained(tmp_path / "saved")
    again = UniPixelForConditionalGeneration.from_pretrained(tmp_path / "saved")
    a, b = golden_model.state_dict(), again.state_dict()
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert again.config.sam2_arch == golden_model.config.sam2_arch


def test_released_layout_variants_load_identically(golden_dir: Path, golden_model, tmp_path: Path) -> None:
    """fuser `gamma` instead of `weight`, an explicit (tied) lm_head, bf16 file, shards: all load the same."""
    ckpt = _copy_ckpt(golden_dir, tmp_path)
    sd = load_file(str(ckpt / "model.safetensors"))
    renamed = {k.replace(".fuser.layers.0.weight", ".fuser.layers.0.gamma"): v for k, v in sd.items()}
    renamed["lm_head.weight"] = sd["model.embed_tokens.weight"].clone()
    keys = sorted(renamed)
    half = len(keys) // 2
    (ckpt / "model.safetensors").unlink()
    shards = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    for name, ks in shards.items():
        save_file({k: renamed[k].contiguous() for k in ks}, str(ckpt / name), metadata={"format": "pt"})
    index = {"metadata": {}, "weight_map": {k: n for n, ks in shards.items() for k in ks}}
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    model = UniPixelForConditionalGeneration.from_pretrained(ckpt)
    ref = golden_model.state_dict()
    for k, v in model.state_dict().items():
        assert torch.equal(v, ref[k]), k


def test_bf16_checkpoint_and_dtype(golden_dir: Path, tmp_path: Path) -> None:
    ckpt = _copy_ckpt(golden_dir, tmp_path)
    sd = load_file(str(ckpt / "model.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in sd.items()}, str(ckpt / "model.safetensors"))
    model = UniPixelForConditionalGeneration.from_pretrained(ckpt, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    assert model.sam2.mask_decoder.iou_prediction_head.proj_in.weight.dtype == torch.bfloat16
    got = model.ref_prompt.ref_encoder.point_embed.weight
    want = torch.cat([sd[f"ref_encoder.point_embeddings.{i}.weight"] for i in range(4)]).to(torch.bfloat16)
    assert torch.equal(got, want)


def test_missing_sam2_yaml_is_a_clear_error(golden_dir: Path, tmp_path: Path) -> None:
    ckpt = tmp_path / "only"
    shutil.copytree(golden_dir / "ckpt_tiny", ckpt)
    with pytest.raises(Exception, match="sam2"):
        UniPixelForConditionalGeneration.from_pretrained(ckpt)


def test_not_a_checkpoint_dir(tmp_path: Path) -> None:
    with pytest.raises((OSError, ValueError)):
        UniPixelForConditionalGeneration.from_pretrained(tmp_path / "does-not-exist")


def test_released_rope_scaling_is_read_as_rope_parameters_without_noise(golden_dir: Path, capfd, recwarn) -> None:
    raw = json.loads((golden_dir / "ckpt_tiny" / "config.json").read_text())
    assert "rope_scaling" in raw and "rope_scaling" in raw["text_config"]  # the released (4.x) layout
    cfg = UniPixelConfig.from_pretrained(golden_dir / "ckpt_tiny")
    want = {**{k: v for k, v in raw["text_config"]["rope_scaling"].items() if k != "type"},
            "rope_theta": raw["text_config"]["rope_theta"]}
    assert cfg.text_config.rope_parameters == want
    assert "rope" not in capfd.readouterr().err
    assert not [w for w in recwarn if "rope" in str(w.message)]
    again = UniPixelConfig.from_dict(cfg.to_dict())  # the modern layout round-trips unchanged
    assert again.text_config.rope_parameters == want


def test_a_flat_qwen_config_keeps_its_rope_settings() -> None:
    """Qwen2.5-VL base configs are flat (text settings at the top level); their M-RoPE must survive."""
    cfg = UniPixelConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, intermediate_size=128,
                         num_hidden_layers=1, rope_theta=1234567.0,
                         rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]})
    assert cfg.text_config.rope_parameters["mrope_section"] == [2, 3, 3]
    assert cfg.text_config.rope_parameters["rope_theta"] == 1234567.0

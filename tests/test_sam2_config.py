"""SAM 2 config resolution: built-in SAM 2.1 table, Meta-style YAML files, resolution override, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from transformers import Sam2VideoConfig

from sam2_golden_utils import GOLDEN, ckpt_config, sam2_config, sam2_search_dirs
from unipixel.sam2 import (
    BUILTIN_SAM2_CONFIGS,
    Sam2ConfigError,
    build_sam2_model,
    encode_frames,
    resolve_sam2_config,
    track,
)


def _backbone(cfg: Sam2VideoConfig):
    return cfg.vision_config.backbone_config


@pytest.mark.parametrize(
    "name",
    [
        "configs/sam2.1_hiera_b+",
        "configs/sam2.1_hiera_b+.yaml",
        "sam2.1_hiera_b+",
        "sam2.1_hiera_b+.yaml",
        "configs/sam2.1/sam2.1_hiera_b+.yaml",
    ],
)
def test_builtin_name_variants(name: str) -> None:
    cfg = resolve_sam2_config(name, 768)
    bb = _backbone(cfg)
    assert bb.hidden_size == 112 and bb.blocks_per_stage == [2, 3, 16, 3]
    assert bb.global_attention_blocks == [12, 16, 20]
    assert bb.window_positional_embedding_background_size == [14, 14]
    assert bb.embed_dim_per_stage == [112, 224, 448, 896] and bb.num_attention_heads_per_stage == [
        2,
        4,
        8,
        16,
    ]
    assert cfg.vision_config.backbone_channel_list == [896, 448, 224, 112]


def test_builtin_tiny_matches_transformers_defaults() -> None:
    """transformers' default SAM 2 config is SAM 2.1 Hiera-T at 1024 px: our table must agree."""
    ours = resolve_sam2_config("configs/sam2.1_hiera_t", 1024)
    ref = Sam2VideoConfig()
    for field in (
        "hidden_size",
        "num_attention_heads",
        "blocks_per_stage",
        "embed_dim_per_stage",
        "num_attention_heads_per_stage",
        "window_size_per_stage",
        "global_attention_blocks",
        "window_positional_embedding_background_size",
        "query_stride",
        "num_query_pool_stages",
    ):
        assert list(map(int, _to_list(getattr(_backbone(ours), field)))) == list(
            map(int, _to_list(getattr(_backbone(ref), field)))
        ), field
    for field in (
        "backbone_channel_list",
        "backbone_feature_sizes",
        "fpn_hidden_size",
        "fpn_top_down_levels",
        "num_feature_levels",
    ):
        assert getattr(ours.vision_config, field) == getattr(ref.vision_config, field), field
    for field in (
        "num_maskmem",
        "image_size",
        "sigmoid_scale_for_mem_enc",
        "sigmoid_bias_for_mem_enc",
        "memory_attention_hidden_size",
        "memory_attention_num_layers",
        "memory_attention_feed_forward_hidden_size",
        "memory_attention_rope_feat_sizes",
        "memory_encoder_output_channels",
        "mask_downsampler_embed_dim",
        "mask_downsampler_kernel_size",
        "mask_downsampler_stride",
        "mask_downsampler_padding",
        "memory_fuser_embed_dim",
        "memory_fuser_intermediate_dim",
        "max_object_pointers_in_encoder",
        "enable_occlusion_spatial_embedding",
        "enable_temporal_pos_encoding_for_object_pointers",
    ):
        assert getattr(ours, field) == getattr(ref, field), field
    assert ours.prompt_encoder_config.image_size == ref.prompt_encoder_config.image_size


def _to_list(x):
    return list(x) if isinstance(x, (list, tuple)) else [x]


def test_other_builtins() -> None:
    s = _backbone(resolve_sam2_config("configs/sam2.1_hiera_s", 1024))
    assert s.blocks_per_stage == [1, 2, 11, 2] and s.global_attention_blocks == [7, 10, 13]
    large = _backbone(resolve_sam2_config("configs/sam2.1_hiera_l", 1024))
    assert large.hidden_size == 144 and large.blocks_per_stage == [2, 6, 36, 4]
    assert large.global_attention_blocks == [23, 33, 43] and large.window_size_per_stage == [8, 4, 16, 8]
    assert set(BUILTIN_SAM2_CONFIGS) == {
        "sam2.1_hiera_t",
        "sam2.1_hiera_s",
        "sam2.1_hiera_b+",
        "sam2.1_hiera_l",
    }


def test_image_size_override_is_consistent() -> None:
    cfg = resolve_sam2_config("configs/sam2.1_hiera_b+", 768)
    assert cfg.image_size == 768
    assert _backbone(cfg).image_size == [768, 768]
    assert cfg.vision_config.backbone_feature_sizes == [[192, 192], [96, 96], [48, 48]]
    assert cfg.prompt_encoder_config.image_size == 768
    assert cfg.prompt_encoder_config.image_size // cfg.prompt_encoder_config.patch_size == 48
    assert cfg.memory_attention_rope_feat_sizes == [48, 48]


def test_golden_yaml_resolves() -> None:
    cfg = sam2_config()
    yml = yaml.safe_load(
        (
            GOLDEN / "sam2_configs" / (ckpt_config()["sam2_config"].removeprefix("configs/") + ".yaml")
        ).read_text()
    )["model"]
    size = ckpt_config()["sam2_image_size"]
    assert cfg.image_size == size
    assert _backbone(cfg).hidden_size == yml["image_encoder"]["trunk"]["embed_dim"]
    assert cfg.memory_encoder_output_channels == yml["memory_encoder"]["out_dim"]
    assert cfg.memory_attention_kv_in_dim == yml["memory_attention"]["layer"]["cross_attention"]["kv_in_dim"]
    assert cfg.memory_fuser_layer_scale_init_value == pytest.approx(1e-6)  # "1e-6" is a string to PyYAML
    assert cfg.vision_config.backbone_feature_sizes[-1] == [size // 16, size // 16]
    assert cfg.memory_attention_rope_feat_sizes == [size // 16, size // 16]


def test_missing_config_lists_searched_paths(tmp_path: Path) -> None:
    with pytest.raises(Sam2ConfigError) as err:
        resolve_sam2_config("configs/nope/unknown_cfg", 128, [tmp_path / "a", tmp_path / "b"])
    msg = str(err.value)
    assert str(tmp_path / "a" / "nope" / "unknown_cfg.yaml") in msg and str(tmp_path / "b") in msg


def _golden_yaml() -> dict:
    name = ckpt_config()["sam2_config"].removeprefix("configs/")
    return yaml.safe_load((GOLDEN / "sam2_configs" / f"{name}.yaml").read_text())


@pytest.mark.parametrize(
    "path, value",
    [
        (("fixed_no_obj_ptr",), False),
        (("use_multimask_token_for_obj_ptr",), False),
        (("binarize_mask_from_pts_for_mem_enc",), True),
        (("image_encoder", "neck", "fpn_interp_model"), "bilinear"),
        (("memory_attention", "layer", "cross_attention", "kv_in_dim"), 24),
    ],
)
def test_unsupported_settings_raise(tmp_path: Path, path: tuple[str, ...], value) -> None:
    doc = _golden_yaml()
    node = doc["model"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(Sam2ConfigError, match=path[-1]):
        resolve_sam2_config("configs/bad", 128, [tmp_path])


def test_bad_image_size_raises() -> None:
    with pytest.raises(Sam2ConfigError, match="multiple of 16"):
        resolve_sam2_config("configs/sam2.1_hiera_t", 100)


def test_yaml_search_order(tmp_path: Path) -> None:
    """`<dir>/<name without configs/>.yaml` is found in any of the search dirs."""
    name = ckpt_config()["sam2_config"]
    cfg = resolve_sam2_config(name + ".yaml", 256, [tmp_path, *sam2_search_dirs(), GOLDEN / "sam2_configs"])
    assert cfg.image_size == 256 and cfg.vision_config.backbone_feature_sizes[-1] == [16, 16]


def test_resized_model_runs() -> None:
    """A built-in architecture at a non-default resolution builds and tracks with consistent shapes."""
    torch.manual_seed(0)
    cfg = resolve_sam2_config("configs/sam2.1_hiera_t", 64)
    model = build_sam2_model(cfg).eval()
    with torch.no_grad():
        feats = encode_frames(model, torch.randn(2, 3, 64, 64))
        res = track(model, feats, torch.randn(2, 2, 256), (30, 50))
    assert feats.vision.shape == (2, 256, 4, 4)
    assert res.low_res_logits.shape == (2, 2, 16, 16)
    assert res.video_res_logits.shape == (2, 2, 30, 50)

"""Resolve a UniPixel ``sam2_config`` name into a transformers :class:`Sam2VideoConfig`.

UniPixel checkpoints name their SAM 2 architecture the way Meta's Hydra configs do
(``configs/sam2.1_hiera_b+``) and override the input resolution (``++model.image_size=S``).
We do not depend on Hydra: the four released SAM 2.1 architectures are a built-in table of
numbers (written in the same nested layout as Meta's YAML files, so one parser handles both),
and any other name is looked up as a Meta-style YAML file in caller-provided directories.

The SAM 2.1 behaviour flags that our tracker implements are fixed (see ``_REQUIRED_FLAGS``);
a YAML that asks for something else is rejected up front instead of silently diverging.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from transformers import Sam2VideoConfig
from transformers.models.sam2.configuration_sam2 import Sam2HieraDetConfig, Sam2VisionConfig

__all__ = [
    "BUILTIN_SAM2_CONFIGS",
    "resolve_sam2_config",
    "sam2_config_from_meta_dict",
    "normalize_config_name",
]


# The SAM 2.1 behaviour flags every released config (and our tiny ones) sets; the tracker implements them (most
# are required as they are, see ``_REQUIRED_FLAGS``; the multimask switches are honoured either way).
SAM21_FLAGS: dict[str, Any] = {
    "sigmoid_scale_for_mem_enc": 20.0,
    "sigmoid_bias_for_mem_enc": -10.0,
    "use_mask_input_as_output_without_sam": True,
    "directly_add_no_mem_embed": True,
    "no_obj_embed_spatial": True,
    "use_high_res_features_in_sam": True,
    "multimask_output_in_sam": True,
    "iou_prediction_use_sigmoid": True,
    "use_obj_ptrs_in_encoder": True,
    "add_tpos_enc_to_obj_ptrs": True,
    "proj_tpos_enc_in_obj_ptrs": True,
    "use_signed_tpos_enc_to_obj_ptrs": True,
    "only_obj_ptrs_in_the_past_for_eval": True,
    "pred_obj_scores": True,
    "pred_obj_scores_mlp": True,
    "fixed_no_obj_ptr": True,
    "multimask_output_for_tracking": True,
    "use_multimask_token_for_obj_ptr": True,
    "multimask_min_pt_num": 0,
    "multimask_max_pt_num": 1,
    "use_mlp_for_obj_ptr_proj": True,
}


def _builtin(
    embed_dim: int,
    num_heads: int,
    stages: list[int],
    global_att_blocks: list[int],
    bkg: list[int],
    window_spec: list[int],
    drop_path_rate: float,
) -> dict[str, Any]:
    """One released SAM 2.1 architecture in Meta's YAML layout (only architecture facts)."""
    channels = [embed_dim * 2**i for i in range(len(stages))][::-1]
    return {
        "image_encoder": {
            "scalp": 1,
            "trunk": {
                "embed_dim": embed_dim,
                "num_heads": num_heads,
                "drop_path_rate": drop_path_rate,
                "stages": stages,
                "global_att_blocks": global_att_blocks,
                "window_spec": window_spec,
                "window_pos_embed_bkg_spatial_size": bkg,
            },
            "neck": {
                "position_encoding": {
                    "num_pos_feats": 256,
                    "normalize": True,
                    "scale": None,
                    "temperature": 10000,
                },
                "d_model": 256,
                "backbone_channel_list": channels,
                "fpn_top_down_levels": [2, 3],
                "fpn_interp_model": "nearest",
            },
        },
        "memory_attention": {
            "d_model": 256,
            "pos_enc_at_input": True,
            "num_layers": 4,
            "layer": {
                "activation": "relu",
                "dim_feedforward": 2048,
                "dropout": 0.1,
                "pos_enc_at_attn": False,
                "pos_enc_at_cross_attn_keys": True,
                "pos_enc_at_cross_attn_queries": False,
                "d_model": 256,
                "self_attention": {
                    "rope_theta": 10000.0,
                    "feat_sizes": [64, 64],
                    "embedding_dim": 256,
                    "num_heads": 1,
                    "downsample_rate": 1,
                    "dropout": 0.1,
                },
                "cross_attention": {
                    "rope_theta": 10000.0,
                    "feat_sizes": [64, 64],
                    "rope_k_repeat": True,
                    "embedding_dim": 256,
                    "num_heads": 1,
                    "downsample_rate": 1,
                    "dropout": 0.1,
                    "kv_in_dim": 64,
                },
            },
        },
        "memory_encoder": {
            "out_dim": 64,
            "position_encoding": {
                "num_pos_feats": 64,
                "normalize": True,
                "scale": None,
                "temperature": 10000,
            },
            "mask_downsampler": {"kernel_size": 3, "stride": 2, "padding": 1},
            "fuser": {
                "layer": {
                    "dim": 256,
                    "kernel_size": 7,
                    "padding": 3,
                    "layer_scale_init_value": 1e-6,
                    "use_dwconv": True,
                },
                "num_layers": 2,
            },
        },
        "num_maskmem": 7,
        "image_size": 1024,
        **SAM21_FLAGS,
    }


# Public SAM 2.1 architecture numbers (Hiera-T/S/B+/L). They agree with the per-size settings used by
# transformers' own SAM 2 conversion (tiny == Sam2HieraDetConfig defaults). drop_path_rate only matters for
# training; the vendored UniPixel b+ config sets 0.1 (transformers' Hiera has no drop path: it is recorded
# as ``config.drop_path_rate`` but not applied).
BUILTIN_SAM2_CONFIGS: dict[str, dict[str, Any]] = {
    "sam2.1_hiera_t": _builtin(96, 1, [1, 2, 7, 2], [5, 7, 9], [7, 7], [8, 4, 14, 7], 0.0),
    "sam2.1_hiera_s": _builtin(96, 1, [1, 2, 11, 2], [7, 10, 13], [7, 7], [8, 4, 14, 7], 0.0),
    "sam2.1_hiera_b+": _builtin(112, 2, [2, 3, 16, 3], [12, 16, 20], [14, 14], [8, 4, 14, 7], 0.1),
    "sam2.1_hiera_l": _builtin(144, 2, [2, 6, 36, 4], [23, 33, 43], [7, 7], [8, 4, 16, 8], 0.0),
}

# Flags whose value is baked into our tracker (value = what the tracker implements).
_REQUIRED_FLAGS: dict[str, Any] = {
    "directly_add_no_mem_embed": True,
    "use_high_res_features_in_sam": True,
    "iou_prediction_use_sigmoid": True,
    "use_obj_ptrs_in_encoder": True,
    "use_signed_tpos_enc_to_obj_ptrs": True,
    "only_obj_ptrs_in_the_past_for_eval": True,
    "pred_obj_scores": True,
    "pred_obj_scores_mlp": True,
    "fixed_no_obj_ptr": True,
    "use_multimask_token_for_obj_ptr": True,
    "use_mlp_for_obj_ptr_proj": True,
    "soft_no_obj_ptr": False,
    "binarize_mask_from_pts_for_mem_enc": False,
    "non_overlap_masks_for_mem_enc": False,
    "memory_temporal_stride_for_eval": 1,
}
# Defaults of Meta's SAM2Base constructor for the flags above and the multimask switches (used when a YAML
# omits them).
_FLAG_DEFAULTS: dict[str, Any] = {
    "directly_add_no_mem_embed": False,
    "use_high_res_features_in_sam": False,
    "multimask_output_in_sam": False,
    "multimask_output_for_tracking": False,
    "iou_prediction_use_sigmoid": False,
    "use_obj_ptrs_in_encoder": False,
    "use_signed_tpos_enc_to_obj_ptrs": False,
    "only_obj_ptrs_in_the_past_for_eval": False,
    "pred_obj_scores": False,
    "pred_obj_scores_mlp": False,
    "fixed_no_obj_ptr": False,
    "use_multimask_token_for_obj_ptr": False,
    "use_mlp_for_obj_ptr_proj": False,
    "soft_no_obj_ptr": False,
    "binarize_mask_from_pts_for_mem_enc": False,
    "non_overlap_masks_for_mem_enc": False,
    "memory_temporal_stride_for_eval": 1,
}


class Sam2ConfigError(ValueError):
    """Raised for SAM 2 configs that cannot be found or that ask for unsupported behaviour."""


def normalize_config_name(name: str) -> str:
    """Canonical form of a config name: no ``.yaml`` suffix, no leading ``configs/``."""
    name = str(name).strip().replace("\\", "/")
    if name.endswith(".yaml"):
        name = name[: -len(".yaml")]
    while name.startswith("./"):
        name = name[2:]
    if name.startswith("configs/"):
        name = name[len("configs/") :]
    return name


def _builtin_lookup(canonical: str) -> dict[str, Any] | None:
    # Also accept the nested upstream spelling "sam2.1/sam2.1_hiera_t" (same architecture numbers).
    for candidate in (canonical, canonical.split("/")[-1] if canonical.startswith("sam2.1/") else None):
        if candidate is not None and candidate in BUILTIN_SAM2_CONFIGS:
            return copy.deepcopy(BUILTIN_SAM2_CONFIGS[candidate])
    return None


def _yaml_candidates(name: str, search_dirs: Sequence[str | Path]) -> list[Path]:
    canonical = normalize_config_name(name)
    raw = str(name).strip()
    raw = raw if raw.endswith(".yaml") else raw + ".yaml"
    out: list[Path] = []
    for d in search_dirs:
        d = Path(d)
        for rel in (canonical + ".yaml", raw):
            p = d / rel
            if p not in out:
                out.append(p)
    return out


def resolve_sam2_config(
    name: str, image_size: int, search_dirs: Sequence[str | Path] = ()
) -> Sam2VideoConfig:
    """Build the :class:`Sam2VideoConfig` for a UniPixel ``sam2_config`` name at resolution ``image_size``.

    Resolution order: the built-in table of released SAM 2.1 architectures (``configs/sam2.1_hiera_{t,s,b+,l}``,
    with or without ``configs/`` and ``.yaml``), then ``<dir>/<name without configs/>.yaml`` for each of
    ``search_dirs`` (for a checkpoint directory ``D`` pass ``[D / "sam2_configs", D]``).

    ``image_size`` replaces the YAML's value, exactly like the reference's ``++model.image_size=S`` override, and
    every resolution-dependent field (backbone feature sizes, prompt-encoder size, RoPE grid) is derived from it.
    """
    canonical = normalize_config_name(name)
    model_cfg = _builtin_lookup(canonical)
    source = f"built-in:{canonical}"
    if model_cfg is None:
        candidates = _yaml_candidates(name, search_dirs)
        for path in candidates:
            if path.is_file():
                with open(path, encoding="utf-8") as fh:
                    doc = yaml.safe_load(fh) or {}
                if not isinstance(doc, Mapping) or not isinstance(doc.get("model"), Mapping):
                    raise Sam2ConfigError(f"SAM 2 config {path} has no top-level 'model' mapping")
                model_cfg = dict(doc["model"])
                source = str(path)
                break
        else:
            searched = "\n  ".join(str(p) for p in candidates) or "(no search directories given)"
            raise Sam2ConfigError(
                f"SAM 2 config {name!r} is not a built-in config ({sorted(BUILTIN_SAM2_CONFIGS)}) and no YAML "
                f"file was found; searched:\n  {searched}"
            )
    return sam2_config_from_meta_dict(model_cfg, image_size=image_size, source=source)


def _get(d: Mapping[str, Any] | None, key: str, default: Any) -> Any:
    if d is None:
        return default
    value = d.get(key, default)
    return default if value is None and default is not None else value


def _as_float(x: Any) -> float:
    # PyYAML reads "1e-6" (no dot) as a string; Hydra/OmegaConf reads it as a float.
    return float(x)


def _check(cond: bool, msg: str, source: str) -> None:
    if not cond:
        raise Sam2ConfigError(f"{source}: unsupported SAM 2 setting: {msg}")


def sam2_config_from_meta_dict(
    model_cfg: Mapping[str, Any], image_size: int | None = None, source: str = "<dict>"
) -> Sam2VideoConfig:
    """Translate Meta's ``model:`` section (YAML layout) into a consistent :class:`Sam2VideoConfig`."""
    m = dict(model_cfg)
    size = int(image_size if image_size is not None else _get(m, "image_size", 1024))
    _check(size > 0 and size % 16 == 0, f"image_size={size} must be a positive multiple of 16", source)

    for flag, required in _REQUIRED_FLAGS.items():
        value = m.get(flag, _FLAG_DEFAULTS[flag])
        _check(value == required, f"{flag}={value!r} (this implementation hard-codes {required!r})", source)
    fill_hole = m.get("fill_hole_area", 0) or 0
    _check(fill_hole == 0, f"fill_hole_area={fill_hole} (SAM 2 post-processing is not implemented)", source)
    add_tpos = bool(m.get("add_tpos_enc_to_obj_ptrs", True))
    proj_tpos = bool(m.get("proj_tpos_enc_in_obj_ptrs", False))
    _check(
        add_tpos == proj_tpos, "add_tpos_enc_to_obj_ptrs and proj_tpos_enc_in_obj_ptrs must be equal", source
    )
    min_pt, max_pt = int(m.get("multimask_min_pt_num", 1)), int(m.get("multimask_max_pt_num", 1))
    multimask = bool(m.get("multimask_output_in_sam", _FLAG_DEFAULTS["multimask_output_in_sam"]))
    multimask_tracking = bool(m.get("multimask_output_for_tracking", _FLAG_DEFAULTS["multimask_output_for_tracking"]))

    # ---- image encoder (Hiera trunk + FPN neck)
    enc = m.get("image_encoder") or {}
    trunk = enc.get("trunk") or {}
    neck = enc.get("neck") or {}
    embed_dim = int(_get(trunk, "embed_dim", 96))
    num_heads = int(_get(trunk, "num_heads", 1))
    stages = [int(s) for s in _get(trunk, "stages", [2, 3, 16, 3])]
    q_pool = int(_get(trunk, "q_pool", 3))
    q_stride = [int(s) for s in _get(trunk, "q_stride", [2, 2])]
    dim_mul = _as_float(_get(trunk, "dim_mul", 2.0))
    head_mul = _as_float(_get(trunk, "head_mul", 2.0))
    window_spec = [int(w) for w in _get(trunk, "window_spec", [8, 4, 14, 7])]
    global_blocks = [int(b) for b in _get(trunk, "global_att_blocks", [12, 16, 20])]
    bkg = [int(b) for b in _get(trunk, "window_pos_embed_bkg_spatial_size", [14, 14])]
    _check(len(window_spec) == len(stages), "window_spec must have one entry per stage", source)
    _check(q_stride[0] == q_stride[1], "non-square q_stride", source)
    dims = [int(embed_dim * dim_mul**i) for i in range(len(stages))]
    heads = [int(num_heads * head_mul**i) for i in range(len(stages))]
    stage_starts = [sum(stages[:i]) for i in range(len(stages))]
    bad = sorted(set(global_blocks) & set(stage_starts[1 : q_pool + 1]))
    _check(not bad, f"global attention block(s) {bad} are the first (pooling) block of a stage", source)

    d_model = int(_get(neck, "d_model", 256))
    channel_list = [int(c) for c in _get(neck, "backbone_channel_list", dims[::-1])]
    _check(
        channel_list == dims[::-1],
        f"neck.backbone_channel_list {channel_list} != trunk dims {dims[::-1]}",
        source,
    )
    top_down = _get(neck, "fpn_top_down_levels", None)
    top_down = list(range(len(channel_list))) if top_down is None else [int(x) for x in top_down]
    _check(
        _get(neck, "fpn_interp_model", "bilinear") == "nearest",
        "neck.fpn_interp_model must be 'nearest'",
        source,
    )
    _check(_get(neck, "fuse_type", "sum") == "sum", "neck.fuse_type must be 'sum'", source)
    for key, want in (("kernel_size", 1), ("stride", 1), ("padding", 0)):
        _check(int(_get(neck, key, want)) == want, f"neck.{key} must be {want}", source)
    neck_pe = neck.get("position_encoding") or {}
    _check(
        int(_get(neck_pe, "num_pos_feats", d_model)) == d_model,
        "neck position_encoding.num_pos_feats != d_model",
        source,
    )
    _check(bool(_get(neck_pe, "normalize", True)), "neck position_encoding.normalize must be true", source)
    _check(_get(neck_pe, "scale", None) is None, "neck position_encoding.scale must be null", source)
    _check(
        int(_get(neck_pe, "temperature", 10000)) == 10000,
        "neck position_encoding.temperature must be 10000",
        source,
    )
    scalp = int(_get(enc, "scalp", 0))
    num_levels = len(channel_list) - scalp
    _check(
        num_levels == 3, f"{num_levels} FPN levels after scalp (the SAM 2 decoder needs exactly 3)", source
    )

    # Spatial sizes of the kept FPN levels: patch embed (k7, s4, p3) then 2x2 max-pools.
    side = (size + 2 * 3 - 7) // 4 + 1
    sides = [side]
    for i in range(1, len(stages)):
        if i <= q_pool:
            side = side // q_stride[0]
        sides.append(side)
    feat_sides = sides[:num_levels]
    _check(
        feat_sides[-1] * 16 == size,
        f"image_size {size} does not give a 1/16 feature map ({feat_sides})",
        source,
    )
    backbone_feature_sizes = [[s, s] for s in feat_sides]
    emb_side = feat_sides[-1]

    # ---- memory attention
    ma = m.get("memory_attention") or {}
    layer = ma.get("layer") or {}
    sa = layer.get("self_attention") or {}
    ca = layer.get("cross_attention") or {}
    ma_d = int(_get(ma, "d_model", d_model))
    _check(ma_d == d_model, "memory_attention.d_model != neck.d_model", source)
    _check(bool(_get(ma, "pos_enc_at_input", True)), "memory_attention.pos_enc_at_input must be true", source)
    _check(
        not bool(_get(layer, "pos_enc_at_attn", False)),
        "memory_attention.layer.pos_enc_at_attn must be false",
        source,
    )
    _check(
        bool(_get(layer, "pos_enc_at_cross_attn_keys", True)),
        "pos_enc_at_cross_attn_keys must be true",
        source,
    )
    _check(
        not bool(_get(layer, "pos_enc_at_cross_attn_queries", False)),
        "pos_enc_at_cross_attn_queries must be false",
        source,
    )
    _check(bool(_get(ca, "rope_k_repeat", False)), "cross_attention.rope_k_repeat must be true", source)
    _check(not bool(_get(sa, "rope_k_repeat", False)), "self_attention.rope_k_repeat must be false", source)
    for key in ("num_heads", "downsample_rate", "rope_theta", "dropout"):
        _check(_get(sa, key, None) == _get(ca, key, None), f"self/cross attention {key} differ", source)
    for att in (sa, ca):
        _check(
            int(_get(att, "embedding_dim", d_model)) == d_model, "attention embedding_dim != d_model", source
        )
    ma_heads = int(_get(sa, "num_heads", 1))
    ma_down = int(_get(sa, "downsample_rate", 1))
    rope_theta = _as_float(_get(sa, "rope_theta", 10000.0))
    attn_dropout = _as_float(_get(sa, "dropout", 0.1))
    layer_dropout = _as_float(_get(layer, "dropout", 0.1))
    activation = str(_get(layer, "activation", "relu")).lower()

    # ---- memory encoder
    me = m.get("memory_encoder") or {}
    mem_dim = int(_get(me, "out_dim", 64))
    in_dim = int(_get(me, "in_dim", 256))
    _check(in_dim == d_model, f"memory_encoder.in_dim {in_dim} != d_model {d_model}", source)
    _check(mem_dim != in_dim, "memory_encoder.out_dim == in_dim (identity out_proj) is not supported", source)
    _check(d_model % mem_dim == 0, "d_model must be a multiple of memory_encoder.out_dim", source)
    kv_in_dim = int(_get(ca, "kv_in_dim", mem_dim))
    _check(
        kv_in_dim == mem_dim,
        f"cross_attention.kv_in_dim {kv_in_dim} != memory_encoder.out_dim {mem_dim}",
        source,
    )
    me_pe = me.get("position_encoding") or {}
    _check(
        int(_get(me_pe, "num_pos_feats", mem_dim)) == mem_dim,
        "memory_encoder pos-enc num_pos_feats != out_dim",
        source,
    )
    md = me.get("mask_downsampler") or {}
    md_embed = int(_get(md, "embed_dim", 256))
    md_k, md_s, md_p = (
        int(_get(md, "kernel_size", 4)),
        int(_get(md, "stride", 4)),
        int(_get(md, "padding", 0)),
    )
    md_total = int(_get(md, "total_stride", 16))
    _check(md_embed == in_dim, "mask_downsampler.embed_dim != memory_encoder.in_dim", source)
    _check(md_total == 16, "mask_downsampler.total_stride must be 16", source)
    _check(
        str(md.get("activation", "gelu")).lower().endswith("gelu"),
        "mask_downsampler activation must be GELU",
        source,
    )
    fuser = me.get("fuser") or {}
    fl = fuser.get("layer") or {}
    fuser_dim = int(_get(fl, "dim", 256))
    _check(fuser_dim == in_dim, "fuser layer dim != memory_encoder.in_dim", source)
    _check(bool(_get(fl, "use_dwconv", True)), "fuser.layer.use_dwconv must be true", source)

    n_stages_pool = min(q_pool, len(stages) - 1)
    backbone = Sam2HieraDetConfig(
        hidden_size=embed_dim,
        num_attention_heads=num_heads,
        image_size=[size, size],
        query_stride=q_stride,
        window_positional_embedding_background_size=bkg,
        num_query_pool_stages=n_stages_pool,
        blocks_per_stage=stages,
        embed_dim_per_stage=dims,
        num_attention_heads_per_stage=heads,
        window_size_per_stage=window_spec,
        global_attention_blocks=global_blocks,
        mlp_ratio=_as_float(_get(trunk, "mlp_ratio", 4.0)),
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone,
        backbone_channel_list=channel_list,
        backbone_feature_sizes=backbone_feature_sizes,
        fpn_hidden_size=d_model,
        fpn_top_down_levels=top_down,
        num_feature_levels=num_levels,
    )
    config = Sam2VideoConfig(
        vision_config=vision,
        prompt_encoder_config={"hidden_size": d_model, "image_size": size, "patch_size": size // emb_side},
        mask_decoder_config={"hidden_size": d_model, "dynamic_multimask_via_stability": False},
        num_maskmem=int(_get(m, "num_maskmem", 7)),
        image_size=size,
        sigmoid_scale_for_mem_enc=_as_float(_get(m, "sigmoid_scale_for_mem_enc", 1.0)),
        sigmoid_bias_for_mem_enc=_as_float(_get(m, "sigmoid_bias_for_mem_enc", 0.0)),
        enable_occlusion_spatial_embedding=bool(m.get("no_obj_embed_spatial", False)),
        multimask_output_in_sam=multimask,
        multimask_min_pt_num=min_pt,
        multimask_max_pt_num=max_pt,
        multimask_output_for_tracking=multimask_tracking,
        max_object_pointers_in_encoder=int(_get(m, "max_obj_ptrs_in_encoder", 16)),
        max_cond_frame_num=int(_get(m, "max_cond_frames_in_attn", -1)),
        enable_temporal_pos_encoding_for_object_pointers=add_tpos,
        memory_attention_hidden_size=d_model,
        memory_attention_num_layers=int(_get(ma, "num_layers", 4)),
        memory_attention_num_attention_heads=ma_heads,
        memory_attention_downsample_rate=ma_down,
        memory_attention_feed_forward_hidden_size=int(_get(layer, "dim_feedforward", 2048)),
        memory_attention_feed_forward_hidden_act=activation,
        memory_attention_dropout=layer_dropout,
        memory_attention_rope_feat_sizes=[emb_side, emb_side],
        memory_attention_rope_dropout=attn_dropout,
        rope_parameters={"rope_type": "axial", "rope_theta": rope_theta},
        memory_encoder_hidden_size=in_dim,
        memory_encoder_output_channels=mem_dim,
        mask_downsampler_embed_dim=md_embed,
        mask_downsampler_kernel_size=md_k,
        mask_downsampler_stride=md_s,
        mask_downsampler_padding=md_p,
        mask_downsampler_total_stride=md_total,
        memory_fuser_num_layers=int(_get(fuser, "num_layers", 2)),
        memory_fuser_embed_dim=fuser_dim,
        memory_fuser_intermediate_dim=4 * fuser_dim,
        memory_fuser_kernel_size=int(_get(fl, "kernel_size", 7)),
        memory_fuser_padding=int(_get(fl, "padding", 3)),
        memory_fuser_layer_scale_init_value=_as_float(_get(fl, "layer_scale_init_value", 1e-6)),
    )
    # Extra fields read by our builder/tracker (transformers hard-codes kv_in_dim=64 and has no drop path).
    config.memory_attention_kv_in_dim = kv_in_dim
    config.drop_path_rate = _as_float(_get(trunk, "drop_path_rate", 0.0))
    config.sam2_config_source = source
    _check(
        math.log2(md_total) % math.log2(md_s) == 0,
        "mask_downsampler total_stride not a power of stride",
        source,
    )
    return config

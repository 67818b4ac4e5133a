"""State-dict conversion between Meta's SAM 2 naming (UniPixel checkpoints) and transformers' ``Sam2VideoModel``.

UniPixel checkpoints store SAM 2 under ``sam2.`` in Meta's original module naming (with the memory-fuser
layer scale called ``weight`` instead of ``gamma``) and a second, standalone SAM prompt encoder under
``ref_encoder.``. We keep those files untouched on disk and rename on load / save, so released checkpoints
load as-is and checkpoints we write stay loadable by the reference implementation.

The renames are plain facts about the two module trees (see the mapping tables below); the only structural
changes are (a) Meta's four ``point_embeddings.{i}`` (1, D) embeddings are rows of transformers' single
``point_embed`` (4, D) table and (b) transformers keeps two copies of the random-Fourier Gaussian matrix
(``shared_image_embedding`` for the dense image PE and ``prompt_encoder.shared_embedding`` for points) where
Meta has one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn
from transformers import Sam2VideoConfig, Sam2VideoModel

__all__ = [
    "meta_to_hf",
    "hf_to_meta",
    "prompt_encoder_meta_to_hf",
    "prompt_encoder_hf_to_meta",
    "build_sam2_model",
    "load_sam2_meta_state_dict",
    "UnknownKeysError",
]


class UnknownKeysError(KeyError):
    """Keys under the converted prefix that have no counterpart in the target naming."""

    def __init__(self, keys: list[str], direction: str) -> None:
        self.keys = sorted(keys)
        shown = "\n  ".join(self.keys[:50]) + ("\n  ..." if len(self.keys) > 50 else "")
        super().__init__(f"{len(self.keys)} unknown SAM 2 key(s) while converting {direction}:\n  {shown}")

    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


# --------------------------------------------------------------------------------------------------------
# Plain (regex) renames. Each rule is (meta_pattern, hf_pattern) with the same capture groups; the reverse
# direction uses the same table. MLP layer renumbering is handled separately (it depends on the MLP depth).

_MLP_PREFIXES_META = (
    r"image_encoder\.trunk\.blocks\.\d+\.mlp",
    r"sam_mask_decoder\.transformer\.layers\.\d+\.mlp",
    r"sam_mask_decoder\.output_hypernetworks_mlps\.\d+",
    r"sam_mask_decoder\.iou_prediction_head",
    r"sam_mask_decoder\.pred_obj_score_head",
    r"obj_ptr_proj",
)

_RULES: list[tuple[str, str]] = [
    # top-level parameters
    (r"no_mem_embed", r"no_memory_embedding"),
    (r"no_mem_pos_enc", r"no_memory_positional_encoding"),
    (r"maskmem_tpos_enc", r"memory_temporal_positional_encoding"),
    (r"no_obj_ptr", r"no_object_pointer"),
    (r"no_obj_embed_spatial", r"occlusion_spatial_embedding_parameter"),
    (r"mask_downsample\.(weight|bias)", r"mask_downsample.\1"),
    (r"obj_ptr_tpos_proj\.(weight|bias)", r"temporal_positional_encoding_projection_layer.\1"),
    (r"obj_ptr_proj\.(.+)", r"object_pointer_proj.\1"),
    # image encoder
    (r"image_encoder\.trunk\.(pos_embed|pos_embed_window)", r"vision_encoder.backbone.\1"),
    (
        r"image_encoder\.trunk\.patch_embed\.proj\.(weight|bias)",
        r"vision_encoder.backbone.patch_embed.projection.\1",
    ),
    (
        r"image_encoder\.trunk\.blocks\.(\d+)\.norm([12])\.(weight|bias)",
        r"vision_encoder.backbone.blocks.\1.layer_norm\2.\3",
    ),
    (
        r"image_encoder\.trunk\.blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)",
        r"vision_encoder.backbone.blocks.\1.attn.\2.\3",
    ),
    (
        r"image_encoder\.trunk\.blocks\.(\d+)\.proj\.(weight|bias)",
        r"vision_encoder.backbone.blocks.\1.proj.\2",
    ),
    (r"image_encoder\.trunk\.blocks\.(\d+)\.mlp\.(.+)", r"vision_encoder.backbone.blocks.\1.mlp.\2"),
    (r"image_encoder\.neck\.convs\.(\d+)\.conv\.(weight|bias)", r"vision_encoder.neck.convs.\1.\2"),
    # memory attention
    (r"memory_attention\.norm\.(weight|bias)", r"memory_attention.layer_norm.\1"),
    (
        r"memory_attention\.layers\.(\d+)\.(self_attn|cross_attn_image)\.(q_proj|k_proj|v_proj)\.(weight|bias)",
        r"memory_attention.layers.\1.\2.\3.\4",
    ),
    (
        r"memory_attention\.layers\.(\d+)\.(self_attn|cross_attn_image)\.out_proj\.(weight|bias)",
        r"memory_attention.layers.\1.\2.o_proj.\3",
    ),
    (r"memory_attention\.layers\.(\d+)\.(linear[12])\.(weight|bias)", r"memory_attention.layers.\1.\2.\3"),
    (
        r"memory_attention\.layers\.(\d+)\.norm([123])\.(weight|bias)",
        r"memory_attention.layers.\1.layer_norm\2.\3",
    ),
    # memory encoder
    (r"memory_encoder\.pix_feat_proj\.(weight|bias)", r"memory_encoder.feature_projection.\1"),
    (r"memory_encoder\.out_proj\.(weight|bias)", r"memory_encoder.projection.\1"),
    (
        r"memory_encoder\.fuser\.layers\.(\d+)\.dwconv\.(weight|bias)",
        r"memory_encoder.memory_fuser.layers.\1.depthwise_conv.\2",
    ),
    (
        r"memory_encoder\.fuser\.layers\.(\d+)\.norm\.(weight|bias)",
        r"memory_encoder.memory_fuser.layers.\1.layer_norm.\2",
    ),
    (
        r"memory_encoder\.fuser\.layers\.(\d+)\.pwconv([12])\.(weight|bias)",
        r"memory_encoder.memory_fuser.layers.\1.pointwise_conv\2.\3",
    ),
    # (fuser layer scale and mask down-sampler are handled in code: gamma/weight alias, index arithmetic)
    # prompt encoder (inside SAM 2)
    (r"sam_prompt_encoder\.not_a_point_embed\.weight", r"prompt_encoder.not_a_point_embed.weight"),
    (r"sam_prompt_encoder\.no_mask_embed\.weight", r"prompt_encoder.no_mask_embed.weight"),
    (r"sam_prompt_encoder\.mask_downscaling\.0\.(weight|bias)", r"prompt_encoder.mask_embed.conv1.\1"),
    (r"sam_prompt_encoder\.mask_downscaling\.1\.(weight|bias)", r"prompt_encoder.mask_embed.layer_norm1.\1"),
    (r"sam_prompt_encoder\.mask_downscaling\.3\.(weight|bias)", r"prompt_encoder.mask_embed.conv2.\1"),
    (r"sam_prompt_encoder\.mask_downscaling\.4\.(weight|bias)", r"prompt_encoder.mask_embed.layer_norm2.\1"),
    (r"sam_prompt_encoder\.mask_downscaling\.6\.(weight|bias)", r"prompt_encoder.mask_embed.conv3.\1"),
    # mask decoder
    (r"sam_mask_decoder\.(iou_token|mask_tokens|obj_score_token)\.weight", r"mask_decoder.\1.weight"),
    (r"sam_mask_decoder\.conv_s([01])\.(weight|bias)", r"mask_decoder.conv_s\1.\2"),
    (r"sam_mask_decoder\.output_upscaling\.0\.(weight|bias)", r"mask_decoder.upscale_conv1.\1"),
    (r"sam_mask_decoder\.output_upscaling\.1\.(weight|bias)", r"mask_decoder.upscale_layer_norm.\1"),
    (r"sam_mask_decoder\.output_upscaling\.3\.(weight|bias)", r"mask_decoder.upscale_conv2.\1"),
    (
        r"sam_mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)\.(.+)",
        r"mask_decoder.\1.\2",
    ),
    (
        r"sam_mask_decoder\.transformer\.layers\.(\d+)\.(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)"
        r"\.(q_proj|k_proj|v_proj)\.(weight|bias)",
        r"mask_decoder.transformer.layers.\1.\2.\3.\4",
    ),
    (
        r"sam_mask_decoder\.transformer\.layers\.(\d+)\.(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)"
        r"\.out_proj\.(weight|bias)",
        r"mask_decoder.transformer.layers.\1.\2.o_proj.\3",
    ),
    (
        r"sam_mask_decoder\.transformer\.layers\.(\d+)\.norm([1234])\.(weight|bias)",
        r"mask_decoder.transformer.layers.\1.layer_norm\2.\3",
    ),
    (
        r"sam_mask_decoder\.transformer\.layers\.(\d+)\.mlp\.(.+)",
        r"mask_decoder.transformer.layers.\1.mlp.\2",
    ),
    (
        r"sam_mask_decoder\.transformer\.final_attn_token_to_image\.(q_proj|k_proj|v_proj)\.(weight|bias)",
        r"mask_decoder.transformer.final_attn_token_to_image.\1.\2",
    ),
    (
        r"sam_mask_decoder\.transformer\.final_attn_token_to_image\.out_proj\.(weight|bias)",
        r"mask_decoder.transformer.final_attn_token_to_image.o_proj.\1",
    ),
    (
        r"sam_mask_decoder\.transformer\.norm_final_attn\.(weight|bias)",
        r"mask_decoder.transformer.layer_norm_final_attn.\1",
    ),
]

_PE_META = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
_PE_HF = (
    "prompt_encoder.shared_embedding.positional_embedding",
    "shared_image_embedding.positional_embedding",
)
_POINT_META = re.compile(r"sam_prompt_encoder\.point_embeddings\.(\d+)\.weight")
_POINT_HF = "prompt_encoder.point_embed.weight"
_FUSER_SCALE_META = re.compile(r"memory_encoder\.fuser\.layers\.(\d+)\.(gamma|weight)")
_FUSER_SCALE_HF = re.compile(r"memory_encoder\.memory_fuser\.layers\.(\d+)\.scale")
_MASKDS_META = re.compile(r"memory_encoder\.mask_downsampler\.encoder\.(\d+)\.(weight|bias)")
_MASKDS_HF = re.compile(
    r"memory_encoder\.mask_downsampler\.(?:layers\.(\d+)\.(conv|layer_norm)|final_conv)\.(weight|bias)"
)


def _meta_groups(meta: str) -> list[str]:
    """The capture-group sub-patterns of a Meta-side rule, in order."""
    return re.findall(r"\([^()]*\)", meta)


def _build_forward() -> list[tuple[re.Pattern[str], str]]:
    rules = []
    for meta, hf in _RULES:
        groups = _meta_groups(meta)
        template = hf
        # hf is written with \1.. back-references and escaped dots are plain text there
        rules.append((re.compile(meta + r"$"), template))
        if len(groups) != len(set(re.findall(r"\\(\d)", hf))):
            raise AssertionError(f"inconsistent conversion rule {meta!r} -> {hf!r}")
    return rules


def _build_reverse() -> list[tuple[re.Pattern[str], str]]:
    rules = []
    for meta, hf in _RULES:
        groups = _meta_groups(meta)
        order = [int(x) for x in re.findall(r"\\(\d)", hf)]
        if order != list(range(1, len(groups) + 1)):
            raise AssertionError(f"conversion rule {meta!r} -> {hf!r} must use its groups in order")
        # regex for the HF side: literal text escaped, each \N replaced by the Meta group's sub-pattern
        regex = "".join(
            groups[int(part[1]) - 1] if re.fullmatch(r"\\\d", part) else re.escape(part)
            for part in re.split(r"(\\\d)", hf)
        )
        # Meta-side template: each group of the Meta pattern becomes its back-reference, dots unescaped
        pieces = re.split(r"\([^()]*\)", meta)
        template = "".join(
            piece + (f"\\{i + 1}" if i < len(groups) else "") for i, piece in enumerate(pieces)
        ).replace("\\.", ".")
        rules.append((re.compile(regex + r"$"), template))
    return rules


_FORWARD = _build_forward()
_REVERSE = _build_reverse()


def _mlp_depths(keys: list[str], prefixes: tuple[str, ...], layer_re: str) -> dict[str, int]:
    """Depth of every MLP found in ``keys`` (keyed by the MLP's own prefix)."""
    depths: dict[str, int] = {}
    for p in prefixes:
        pat = re.compile(rf"^({p})\.{layer_re}")
        for k in keys:
            mm = pat.match(k)
            if mm:
                depths.setdefault(mm.group(1), 0)
                depths[mm.group(1)] = max(depths[mm.group(1)], int(mm.group(2)) + 1)
    return depths


def _renumber_mlp_meta_to_hf(key: str, depths: dict[str, int]) -> str:
    for prefix, depth in depths.items():
        if key.startswith(prefix + ".layers."):
            rest = key[len(prefix) + len(".layers.") :]
            idx_s, tail = rest.split(".", 1)
            idx = int(idx_s)
            if idx == 0:
                new = "proj_in"
            elif idx == depth - 1:
                new = "proj_out"
            else:
                new = f"layers.{idx - 1}"
            return f"{prefix}.{new}.{tail}"
    return key


def _renumber_mlp_hf_to_meta(key: str, hf_depths: dict[str, int]) -> str:
    for prefix, n_hidden in hf_depths.items():
        if key.startswith(prefix + "."):
            rest = key[len(prefix) + 1 :]
            depth = n_hidden + 2
            if rest.startswith("proj_in."):
                return f"{prefix}.layers.0.{rest[len('proj_in.') :]}"
            if rest.startswith("proj_out."):
                return f"{prefix}.layers.{depth - 1}.{rest[len('proj_out.') :]}"
            mm = re.match(r"layers\.(\d+)\.(.+)", rest)
            if mm:
                return f"{prefix}.layers.{int(mm.group(1)) + 1}.{mm.group(2)}"
    return key


def _sub_state(state_dict: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def meta_to_hf(
    state_dict: Mapping[str, torch.Tensor], prefix: str = "sam2.", out_prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Convert the Meta-named SAM 2 tensors under ``prefix`` into :class:`Sam2VideoModel` names.

    Keys outside ``prefix`` are ignored (a UniPixel checkpoint also holds the LLM); keys under it that do not
    belong to SAM 2 raise :class:`UnknownKeysError`. Both ``fuser.layers.N.gamma`` (Meta) and ``.weight``
    (UniPixel) are accepted.
    """
    sd = _sub_state(state_dict, prefix)
    keys = list(sd)
    depths = _mlp_depths(keys, _MLP_PREFIXES_META, r"layers\.(\d+)\.")
    # Mask down-sampler: Sequential of [conv, LN, act] * L + final conv -> layers.{i}.{conv,layer_norm} + final_conv
    ds_idx = [int(m.group(1)) for k in keys if (m := _MASKDS_META.fullmatch(k))]
    ds_last = max(ds_idx) if ds_idx else -1
    hf_depths = _hf_prefixed(depths)

    out: dict[str, torch.Tensor] = {}
    points: dict[int, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        if key == _PE_META:
            for name in _PE_HF:
                out[name] = value
            continue
        if mm := _POINT_META.fullmatch(key):
            points[int(mm.group(1))] = value
            continue
        if mm := _FUSER_SCALE_META.fullmatch(key):
            out[f"memory_encoder.memory_fuser.layers.{mm.group(1)}.scale"] = value
            continue
        if mm := _MASKDS_META.fullmatch(key):
            idx, kind = int(mm.group(1)), mm.group(2)
            if idx == ds_last:
                out[f"memory_encoder.mask_downsampler.final_conv.{kind}"] = value
            elif idx % 3 in (0, 1):
                sub = "conv" if idx % 3 == 0 else "layer_norm"
                out[f"memory_encoder.mask_downsampler.layers.{idx // 3}.{sub}.{kind}"] = value
            else:
                unknown.append(prefix + key)
            continue
        for pat, template in _FORWARD:
            if mm := pat.fullmatch(key):
                new = mm.expand(template)
                break
        else:
            unknown.append(prefix + key)
            continue
        out[_renumber_mlp_meta_to_hf(new, hf_depths)] = value
    if points:
        if sorted(points) != list(range(len(points))):
            unknown.extend(f"{prefix}sam_prompt_encoder.point_embeddings.{i}.weight" for i in sorted(points))
        else:
            out[_POINT_HF] = torch.cat([points[i].reshape(1, -1) for i in range(len(points))], dim=0)
    if unknown:
        raise UnknownKeysError(unknown, "Meta -> transformers")
    return {out_prefix + k: v for k, v in out.items()}


def _hf_prefixed(meta_depths: dict[str, int]) -> dict[str, int]:
    """Translate MLP prefixes found on the Meta side into their HF spelling (depth unchanged)."""
    out = {}
    for prefix, depth in meta_depths.items():
        probe = prefix + ".layers.0.weight"
        for pat, template in _FORWARD:
            if mm := pat.fullmatch(probe):
                hf = mm.expand(template)
                out[hf[: -len(".layers.0.weight")]] = depth
                break
    return out


def hf_to_meta(
    state_dict: Mapping[str, torch.Tensor],
    prefix: str = "",
    out_prefix: str = "sam2.",
    fuser_scale_name: str = "weight",
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`meta_to_hf`: :class:`Sam2VideoModel` names under ``prefix`` -> Meta names.

    ``fuser_scale_name`` is ``"weight"`` (UniPixel's vendored SAM 2) or ``"gamma"`` (upstream Meta). The two
    Gaussian PE copies of transformers collapse into Meta's single ``pe_layer`` matrix (the prompt encoder's
    copy is written; they are identical after :func:`meta_to_hf`).
    """
    if fuser_scale_name not in ("weight", "gamma"):
        raise ValueError("fuser_scale_name must be 'weight' or 'gamma'")
    sd = _sub_state(state_dict, prefix)
    keys = list(sd)
    # MLP depth on the HF side = number of hidden `layers.K` + 2; find every module with proj_in/proj_out.
    hf_depths: dict[str, int] = {}
    for k in keys:
        if mm := re.match(r"^(.+)\.proj_in\.(weight|bias)$", k):
            hf_depths.setdefault(mm.group(1), 0)
    for k in keys:
        for p in hf_depths:
            if mm := re.match(rf"^{re.escape(p)}\.layers\.(\d+)\.", k):
                hf_depths[p] = max(hf_depths[p], int(mm.group(1)) + 1)
    ds_layers = [int(m.group(1)) for k in keys if (m := _MASKDS_HF.fullmatch(k)) and m.group(1) is not None]
    n_ds = max(ds_layers) + 1 if ds_layers else 0

    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        if key in _PE_HF:
            if key == _PE_HF[0] or _PE_HF[0] not in sd:
                out[_PE_META] = value
            continue
        if key == _POINT_HF:
            for i in range(value.shape[0]):
                out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = value[i : i + 1].clone()
            continue
        if mm := _FUSER_SCALE_HF.fullmatch(key):
            out[f"memory_encoder.fuser.layers.{mm.group(1)}.{fuser_scale_name}"] = value
            continue
        if mm := _MASKDS_HF.fullmatch(key):
            layer, sub, kind = mm.group(1), mm.group(2), mm.group(3)
            idx = 3 * n_ds if layer is None else 3 * int(layer) + (0 if sub == "conv" else 1)
            out[f"memory_encoder.mask_downsampler.encoder.{idx}.{kind}"] = value
            continue
        meta_key = _renumber_mlp_hf_to_meta(key, hf_depths)
        for pat, template in _REVERSE:
            if mm := pat.fullmatch(meta_key):
                out[mm.expand(template)] = value
                break
        else:
            unknown.append(prefix + key)
    if unknown:
        raise UnknownKeysError(unknown, "transformers -> Meta")
    return {out_prefix + k: v for k, v in out.items()}


# --------------------------------------------------------------------------------------------------------
# Standalone prompt encoder (UniPixel's `ref_encoder`): Meta PromptEncoder <-> transformers Sam2PromptEncoder

_PE_STANDALONE: list[tuple[str, str]] = [
    ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
    ("not_a_point_embed.weight", "not_a_point_embed.weight"),
    ("no_mask_embed.weight", "no_mask_embed.weight"),
    ("mask_downscaling.0.weight", "mask_embed.conv1.weight"),
    ("mask_downscaling.0.bias", "mask_embed.conv1.bias"),
    ("mask_downscaling.1.weight", "mask_embed.layer_norm1.weight"),
    ("mask_downscaling.1.bias", "mask_embed.layer_norm1.bias"),
    ("mask_downscaling.3.weight", "mask_embed.conv2.weight"),
    ("mask_downscaling.3.bias", "mask_embed.conv2.bias"),
    ("mask_downscaling.4.weight", "mask_embed.layer_norm2.weight"),
    ("mask_downscaling.4.bias", "mask_embed.layer_norm2.bias"),
    ("mask_downscaling.6.weight", "mask_embed.conv3.weight"),
    ("mask_downscaling.6.bias", "mask_embed.conv3.bias"),
]


def prompt_encoder_meta_to_hf(
    state_dict: Mapping[str, torch.Tensor], prefix: str = "ref_encoder.", out_prefix: str = ""
) -> dict[str, torch.Tensor]:
    """Meta ``PromptEncoder`` tensors under ``prefix`` -> ``Sam2PromptEncoder`` names (relative to the module)."""
    sd = _sub_state(state_dict, prefix)
    table = dict(_PE_STANDALONE)
    out: dict[str, torch.Tensor] = {}
    points: dict[int, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        if key in table:
            out[table[key]] = value
        elif mm := re.fullmatch(r"point_embeddings\.(\d+)\.weight", key):
            points[int(mm.group(1))] = value
        else:
            unknown.append(prefix + key)
    if points:
        if sorted(points) != list(range(len(points))):
            unknown.extend(f"{prefix}point_embeddings.{i}.weight" for i in sorted(points))
        else:
            out["point_embed.weight"] = torch.cat(
                [points[i].reshape(1, -1) for i in range(len(points))], dim=0
            )
    if unknown:
        raise UnknownKeysError(unknown, "Meta -> transformers (prompt encoder)")
    return {out_prefix + k: v for k, v in out.items()}


def prompt_encoder_hf_to_meta(
    state_dict: Mapping[str, torch.Tensor], prefix: str = "", out_prefix: str = "ref_encoder."
) -> dict[str, torch.Tensor]:
    """Inverse of :func:`prompt_encoder_meta_to_hf`."""
    sd = _sub_state(state_dict, prefix)
    table = {hf: meta for meta, hf in _PE_STANDALONE}
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in sd.items():
        if key in table:
            out[table[key]] = value
        elif key == "point_embed.weight":
            for i in range(value.shape[0]):
                out[f"point_embeddings.{i}.weight"] = value[i : i + 1].clone()
        else:
            unknown.append(prefix + key)
    if unknown:
        raise UnknownKeysError(unknown, "transformers -> Meta (prompt encoder)")
    return {out_prefix + k: v for k, v in out.items()}


# --------------------------------------------------------------------------------------------------------
# Model construction


def build_sam2_model(config: Sam2VideoConfig) -> Sam2VideoModel:
    """Instantiate the transformers SAM 2 video model used as ``model.sam2``.

    transformers hard-codes the memory cross-attention key/value input width to 64 (the released SAM 2 memory
    dimension). Configs with another memory dimension (e.g. the tiny golden config) get their ``k_proj`` /
    ``v_proj`` replaced by correctly shaped ``nn.Linear`` layers; nothing else is changed.
    """
    model = Sam2VideoModel(config)
    kv_in = int(getattr(config, "memory_attention_kv_in_dim", config.memory_encoder_output_channels))
    for layer in model.memory_attention.layers:
        attn = layer.cross_attn_image
        if attn.k_proj.in_features != kv_in:
            attn.k_proj = nn.Linear(kv_in, attn.internal_dim)
            attn.v_proj = nn.Linear(kv_in, attn.internal_dim)
            attn.kv_in_dim = kv_in
    return model


def load_sam2_meta_state_dict(
    model: Sam2VideoModel, state_dict: Mapping[str, torch.Tensor], prefix: str = "sam2.", strict: bool = True
) -> tuple[list[str], list[str]]:
    """Load Meta-named SAM 2 tensors into ``model``; returns (missing, unexpected) like ``load_state_dict``."""
    converted = meta_to_hf(state_dict, prefix=prefix)
    result = model.load_state_dict(converted, strict=strict)
    return list(result.missing_keys), list(result.unexpected_keys)

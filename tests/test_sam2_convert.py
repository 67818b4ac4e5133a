"""Meta <-> transformers SAM 2 state-dict conversion (UniPixel checkpoint layout)."""

from __future__ import annotations

import pytest
import torch
from transformers.models.sam2.configuration_sam2 import Sam2PromptEncoderConfig
from transformers.models.sam2.modeling_sam2 import Sam2PromptEncoder

from sam2_golden_utils import ckpt_state_dict, sam2_config
from unipixel.sam2 import (
    UnknownKeysError,
    build_sam2_model,
    hf_to_meta,
    load_sam2_meta_state_dict,
    meta_to_hf,
    prompt_encoder_hf_to_meta,
    prompt_encoder_meta_to_hf,
    resolve_sam2_config,
)


def _meta_sam2() -> dict[str, torch.Tensor]:
    return {k: v for k, v in ckpt_state_dict().items() if k.startswith("sam2.")}


def test_checkpoint_loads_strict() -> None:
    model = build_sam2_model(sam2_config())
    missing, unexpected = load_sam2_meta_state_dict(model, ckpt_state_dict(), prefix="sam2.", strict=False)
    assert missing == [] and unexpected == []
    # the two transformers copies of the Fourier matrix both come from Meta's single pe_layer
    pe = ckpt_state_dict()["sam2.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"]
    assert torch.equal(model.shared_image_embedding.positional_embedding, pe)
    assert torch.equal(model.prompt_encoder.shared_embedding.positional_embedding, pe)
    rows = [ckpt_state_dict()[f"sam2.sam_prompt_encoder.point_embeddings.{i}.weight"] for i in range(4)]
    assert torch.equal(model.prompt_encoder.point_embed.weight, torch.cat(rows))


@pytest.mark.parametrize("fuser_name", ["weight", "gamma"])
def test_round_trip_exact(fuser_name: str) -> None:
    meta = _meta_sam2()
    if fuser_name == "gamma":
        meta = {
            k.replace(".weight", ".gamma") if ".fuser.layers." in k and k.count(".") == 5 else k: v
            for k, v in meta.items()
        }
        assert any(k.endswith(".gamma") for k in meta)
    hf = meta_to_hf(meta)
    back = hf_to_meta(hf, fuser_scale_name=fuser_name)
    assert set(back) == set(meta)
    for k, v in meta.items():
        assert torch.equal(back[k], v), k


def test_other_keys_ignored_and_prefixes() -> None:
    sd = dict(ckpt_state_dict())  # includes Qwen, seg_head, ref_encoder, ... keys
    hf = meta_to_hf(sd, prefix="sam2.", out_prefix="sam2.")
    assert all(k.startswith("sam2.") for k in hf)
    assert "sam2.mask_decoder.iou_token.weight" in hf


def test_unknown_keys_raise_with_names() -> None:
    sd = _meta_sam2()
    sd["sam2.some_new_module.weight"] = torch.zeros(1)
    sd["sam2.sam_mask_decoder.mystery.bias"] = torch.zeros(1)
    with pytest.raises(UnknownKeysError) as err:
        meta_to_hf(sd)
    assert "sam2.some_new_module.weight" in str(err.value) and "sam2.sam_mask_decoder.mystery.bias" in str(
        err.value
    )
    model_sd = build_sam2_model(sam2_config()).state_dict()
    model_sd["extra.thing"] = torch.zeros(1)
    with pytest.raises(UnknownKeysError, match="extra.thing"):
        hf_to_meta(model_sd)


def test_released_architecture_names() -> None:
    """On a full-size (Hiera-T) tree the converter produces Meta's names and inverts exactly."""
    torch.manual_seed(0)
    model = build_sam2_model(resolve_sam2_config("configs/sam2.1_hiera_t", 256))
    hf = model.state_dict()
    meta = hf_to_meta(hf)
    for key in (
        "sam2.memory_encoder.mask_downsampler.encoder.12.weight",
        "sam2.memory_encoder.mask_downsampler.encoder.10.bias",
        "sam2.memory_encoder.fuser.layers.1.weight",
        "sam2.image_encoder.trunk.blocks.11.mlp.layers.1.weight",
        "sam2.image_encoder.neck.convs.3.conv.weight",
        "sam2.sam_mask_decoder.output_hypernetworks_mlps.3.layers.2.bias",
        "sam2.sam_mask_decoder.transformer.layers.1.mlp.layers.1.weight",
        "sam2.obj_ptr_proj.layers.2.weight",
        "sam2.memory_attention.layers.3.cross_attn_image.out_proj.weight",
        "sam2.sam_prompt_encoder.point_embeddings.3.weight",
        "sam2.no_obj_embed_spatial",
    ):
        assert key in meta, key
    assert meta["sam2.memory_attention.layers.0.cross_attn_image.k_proj.weight"].shape == (256, 64)
    back = meta_to_hf(meta)
    result = model.load_state_dict(back, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    for k, v in hf.items():
        assert torch.equal(back[k], v), k


def test_ref_encoder_round_trip_and_load() -> None:
    sd = ckpt_state_dict()
    ref = {k: v for k, v in sd.items() if k.startswith("ref_encoder.")}
    hf = prompt_encoder_meta_to_hf(sd, prefix="ref_encoder.")
    dim = hf["no_mask_embed.weight"].shape[-1]
    enc = Sam2PromptEncoder(Sam2PromptEncoderConfig(hidden_size=dim, image_size=sam2_config().image_size))
    result = enc.load_state_dict(hf, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    back = prompt_encoder_hf_to_meta(enc.state_dict(), out_prefix="ref_encoder.")
    assert set(back) == set(ref)
    for k, v in ref.items():
        assert torch.equal(back[k], v), k
    bad = dict(ref)
    bad["ref_encoder.unknown.weight"] = torch.zeros(1)
    with pytest.raises(UnknownKeysError, match="ref_encoder.unknown.weight"):
        prompt_encoder_meta_to_hf(bad)

"""Small UniPixel configurations built offline: for tests, examples and the built-in model.

Same architecture as the released models (Qwen2.5-VL text + vision towers, SAM 2.1 with all its flags, the
UniPixel adapters), only smaller. Together with :func:`unipixel.tokenizer.build_tokenizer` this makes a complete
checkpoint (weights + tokenizer + processor configs) without the Hugging Face hub.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from .configuration import UniPixelConfig


def tiny_sam2_meta(
    embed_dim: int = 16, d_model: int = 32, mem_dim: int = 16, heads: int = 1, multimask: bool = True
) -> dict[str, Any]:
    """A micro SAM 2.1 architecture in Meta's YAML layout (all SAM 2.1 flags of the released b+ config).

    ``multimask=False`` turns SAM 2's three candidate masks off (one mask per prompt, prompted or tracked): for
    models trained from scratch, where the min-over-candidates loss lets the decoder ignore the ``<|seg|>`` query.
    """
    from .sam2.config import SAM21_FLAGS

    channels = [embed_dim * 2**i for i in range(4)][::-1]
    rope = {"rope_theta": 10000.0, "feat_sizes": [8, 8], "embedding_dim": d_model, "num_heads": 1,
            "downsample_rate": 1, "dropout": 0.0}  # fmt: skip
    return {
        "image_encoder": {
            "scalp": 1,
            "trunk": {"embed_dim": embed_dim, "num_heads": heads, "drop_path_rate": 0.0, "stages": [1, 1, 2, 1],
                      "global_att_blocks": [3], "window_spec": [8, 4, 4, 2],
                      "window_pos_embed_bkg_spatial_size": [4, 4]},  # fmt: skip
            "neck": {"position_encoding": {"num_pos_feats": d_model, "normalize": True, "scale": None,
                                           "temperature": 10000},
                     "d_model": d_model, "backbone_channel_list": channels, "fpn_top_down_levels": [2, 3],
                     "fpn_interp_model": "nearest"},  # fmt: skip
        },
        "memory_attention": {
            "d_model": d_model, "pos_enc_at_input": True, "num_layers": 2,
            "layer": {"activation": "relu", "dim_feedforward": 2 * d_model, "dropout": 0.0, "pos_enc_at_attn": False,
                      "self_attention": dict(rope), "d_model": d_model, "pos_enc_at_cross_attn_keys": True,
                      "pos_enc_at_cross_attn_queries": False,
                      "cross_attention": {**rope, "rope_k_repeat": True, "kv_in_dim": mem_dim}},
        },  # fmt: skip
        "memory_encoder": {
            "out_dim": mem_dim, "in_dim": d_model,
            "position_encoding": {"num_pos_feats": mem_dim, "normalize": True, "scale": None, "temperature": 10000},
            "mask_downsampler": {"embed_dim": d_model, "kernel_size": 3, "stride": 2, "padding": 1},
            "fuser": {"layer": {"dim": d_model, "kernel_size": 7, "padding": 3, "layer_scale_init_value": 1e-6,
                                "use_dwconv": True}, "num_layers": 2},
        },  # fmt: skip
        "num_maskmem": 7,
        "image_size": 128,
        **SAM21_FLAGS,
        **({} if multimask else {"multimask_output_in_sam": False, "multimask_output_for_tracking": False}),
    }


def tiny_config(
    tokenizer: Any,
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 256,
    vision_depth: int = 2,
    vision_hidden: int = 64,
    sam2_image_size: int = 128,
    sam2: dict[str, Any] | None = None,
    sam2_hidden_tokens: int = 2,
    sam2_decoder_heads: int | None = None,
    vision_window: int = 112,
    **extra: Any,
) -> UniPixelConfig:
    """A small UniPixel config whose token ids come from ``tokenizer`` (see :func:`~unipixel.tokenizer.build_tokenizer`).

    ``sam2_decoder_heads`` overrides the attention heads of SAM 2's mask decoder (Meta's SAM 2 fixes 8, which at a
    width of 64 leaves 4 dimensions per head in the downsampled cross-attention: too few to match a click's
    position encoding against the image's; transformers' config exposes the number). ``vision_window`` is the
    vision tower's attention window in pixels (Qwen2.5-VL: 112); make it at least the frame size to keep the
    windowed layers global on small frames, which also keeps the reference's window-order ``<|mem|>`` pooling a
    no-op (one window per frame).
    """
    from .sam2.config import sam2_config_from_meta_dict
    from .tokenizer import add_unipixel_tokens

    ids = add_unipixel_tokens(tokenizer)
    tid = tokenizer.convert_tokens_to_ids
    head_dim = hidden_size // num_heads
    t = head_dim // 2
    section = [t - 2 * (t // 3), t // 3, t // 3]  # mrope_section must sum to head_dim / 2
    vocab = len(tokenizer)
    text_config = {
        "vocab_size": vocab, "hidden_size": hidden_size, "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers, "num_attention_heads": num_heads, "num_key_value_heads": num_kv_heads,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": section},
        "bos_token_id": tid("<|endoftext|>"), "eos_token_id": tid("<|im_end|>"), "pad_token_id": tid("<|endoftext|>"),
    }  # fmt: skip
    vision_config = {
        "depth": vision_depth, "hidden_size": vision_hidden, "intermediate_size": 2 * vision_hidden, "num_heads": 4,
        "out_hidden_size": hidden_size, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
        "window_size": vision_window, "fullatt_block_indexes": [vision_depth - 1], "tokens_per_second": 2,
    }  # fmt: skip
    sam2_cfg = sam2_config_from_meta_dict(sam2 or tiny_sam2_meta(), image_size=sam2_image_size, source="tiny")
    if sam2_decoder_heads is not None:
        sam2_cfg.mask_decoder_config.num_attention_heads = sam2_decoder_heads
    import json

    return UniPixelConfig(
        text_config=text_config,
        vision_config=vision_config,
        tie_word_embeddings=True,
        image_token_id=tid("<|image_pad|>"),
        video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"),
        vision_end_token_id=tid("<|vision_end|>"),
        sam2_config="unipixel_tiny",
        sam2_arch=json.loads(sam2_cfg.to_json_string(use_diff=False)),
        sam2_image_size=sam2_image_size,
        sam2_hidden_tokens=sam2_hidden_tokens,
        **ids,
        **extra,
    )


def build_tiny_checkpoint(
    out_dir: str | Path,
    corpus: Iterable[str],
    *,
    vocab_size: int = 448,
    seed: int = 0,
    tie_ref_pe: bool = False,
    sam2_default_init: bool = True,
    tie_sam2_pe: bool = True,
    sam2_mimetic: bool = False,
    **config_kwargs: Any,
) -> Path:
    """Write a complete randomly initialised UniPixel checkpoint (weights, tokenizer, processor) to ``out_dir``.

    SAM 2's layers get PyTorch's default initialisation (``sam2_default_init``, see
    :func:`unipixel.model.init.reset_sam2_parameters`) and its two position-encoding copies are tied
    (``tie_sam2_pe``, :func:`unipixel.model.init.tie_sam2_positional_encoding`); ``tie_ref_pe`` also gives the
    ``<|ref|>`` encoder that matrix (see :func:`unipixel.model.init.init_unipixel_parameters`); ``sam2_mimetic``
    gives the mask decoder's attention a position-matching start (:func:`unipixel.model.init.mimetic_sam2_decoder`).
    ``sam2_default_init=False, tie_sam2_pe=False`` reproduces the initialisation of the first built-in model."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    from .model.init import (
        init_unipixel_parameters,
        mimetic_sam2_decoder,
        reset_sam2_parameters,
        tie_sam2_positional_encoding,
    )
    from .model.modeling import UniPixelForConditionalGeneration
    from .processing import UniPixelProcessor
    from .tokenizer import build_tokenizer

    out = Path(out_dir)
    tok = build_tokenizer(corpus, vocab_size=vocab_size)
    cfg = tiny_config(tok, **config_kwargs)
    torch.manual_seed(seed)
    model = UniPixelForConditionalGeneration(cfg)
    if sam2_default_init:
        reset_sam2_parameters(model.sam2)
    if tie_sam2_pe:
        tie_sam2_positional_encoding(model.sam2)
    if sam2_mimetic:
        mimetic_sam2_decoder(model.sam2, generator=torch.Generator().manual_seed(seed))
    init_unipixel_parameters(model, tie_ref_pe=tie_ref_pe)
    model.save_pretrained(out)
    proc = UniPixelProcessor(
        image_processor=Qwen2VLImageProcessor(), tokenizer=tok, video_processor=Qwen2VLVideoProcessor(),
        chat_template=tok.chat_template,
    )
    proc.save_pretrained(out)
    return out

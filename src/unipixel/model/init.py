"""Initialisation of the UniPixel adapters on top of a Qwen2.5-VL base and a SAM 2 checkpoint (reference §1.10).

Used when building a model for training from a base Qwen2.5-VL checkpoint, and when loading the reference's
partial/adapter checkpoints (which only hold the trained tensors).
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def init_unipixel_parameters(model: nn.Module) -> None:
    """Reference ``init_parameters``: copy SAM 2's prompt-encoder *parameters* into the ``<|ref|>`` encoder, copy the
    vision merger MLP into ``msk_proj``, Xavier-uniform (gain 1, bias 0) every Linear of the seg head and the ref
    projections. RMSNorm/Embedding keep their defaults; the Gaussian PE buffers stay random (as in the reference).
    """
    src = model.sam2.prompt_encoder
    dst = model.ref_prompt.ref_encoder
    for (name_s, p_s), (name_d, p_d) in zip(src.named_parameters(), dst.named_parameters(), strict=True):
        if name_s != name_d or p_s.shape != p_d.shape:
            raise ValueError(f"prompt encoders differ: {name_s} {tuple(p_s.shape)} vs {name_d} {tuple(p_d.shape)}")
        p_d.copy_(p_s)
    merger = model.model.visual.merger.mlp
    for p_s, p_d in zip(merger.parameters(), model.mem_pool.msk_proj.parameters(), strict=True):
        p_d.copy_(p_s)
    rp = model.ref_prompt
    for module in (model.seg_head, rp.ref_proj_single, rp.ref_proj_double, rp.ref_proj, rp.tem_proj):
        for m in module.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

"""Initialisation of the UniPixel adapters on top of a Qwen2.5-VL base and a SAM 2 checkpoint (reference §1.10).

Used when building a model for training from a base Qwen2.5-VL checkpoint, and when loading the reference's
partial/adapter checkpoints (which only hold the trained tensors).
"""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def reset_sam2_parameters(sam2: nn.Module) -> None:
    """Re-draw SAM 2's linear and convolution weights with PyTorch's default initialisation (as Meta's SAM 2 does).

    transformers initialises every layer with N(0, 0.02), which at small widths shrinks each layer's output; the
    mask decoder multiplies two such products (hypernetwork tokens · upscaled features), so a small randomly
    initialised SAM 2 starts with masks of ~1e-4 magnitude, identical for every prompt, and barely learns (we
    measured: 135 steps of over-fitting 8 frames left the dice loss at 0.72). Only for models trained from scratch.
    """
    for m in sam2.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            m.reset_parameters()


@torch.no_grad()
def tie_sam2_positional_encoding(sam2: nn.Module) -> None:
    """Give SAM 2's prompt encoder the image's Gaussian position-encoding matrix.

    Meta's SAM 2 has ONE matrix (``sam_prompt_encoder.pe_layer``) that encodes both the image grid and the click
    coordinates, which is what lets the mask decoder find the pixel a click points at. transformers keeps two copies
    (``shared_image_embedding`` and ``prompt_encoder.shared_embedding``); converted checkpoints fill both from the
    same tensor, but a randomly initialised model would draw them independently. Call this after random
    initialisation of SAM 2 (never needed after loading a checkpoint).
    """
    sam2.prompt_encoder.shared_embedding.positional_embedding.copy_(sam2.shared_image_embedding.positional_embedding)


@torch.no_grad()
def mimetic_sam2_decoder(
    sam2: nn.Module, cross_scale: float = 1.5, self_scale: float = 1.0, generator: torch.Generator | None = None
) -> None:
    """Mimetic initialisation (Trockman & Kolter, 2023) of SAM 2's mask-decoder attention: ``W_q = W_k = s·U``.

    ``U`` has orthonormal rows, so ``W_q^T W_k = s²·UᵀU`` is a scaled projection and a query attends to the keys most
    similar to itself. In SAM's two-way transformer queries and keys carry the Gaussian position encoding (the
    click's on the prompt tokens, the grid's on the image tokens), so from the first step a click attends to the
    image locations around it and those locations to the click — the prompt-following a trained SAM has. From
    random q/k (tied PEs, PyTorch init) a small SAM 2 trained on synthetic clicks stays prompt-blind for hundreds of
    steps (measured: held-out click IoU 0.19-0.25 after 600 steps of 16 frames; 0.65-0.66 with this). Only for
    models trained from scratch; biases of q/k are zeroed, values and outputs keep their initialisation.
    """
    for name, module in sam2.mask_decoder.named_modules():
        if not (hasattr(module, "q_proj") and hasattr(module, "k_proj")):
            continue
        q, k = module.q_proj, module.k_proj
        if q.weight.shape != k.weight.shape:
            raise ValueError(f"{name}: q_proj {tuple(q.weight.shape)} and k_proj {tuple(k.weight.shape)} differ")
        out_dim, in_dim = q.weight.shape
        tall = torch.randn(max(in_dim, out_dim), min(in_dim, out_dim), generator=generator)
        basis = torch.linalg.qr(tall)[0]  # orthonormal columns
        weight = basis.T if out_dim <= in_dim else basis  # (out_dim, in_dim), orthonormal rows or columns
        scale = self_scale if name.endswith("self_attn") else cross_scale
        for layer in (q, k):
            layer.weight.copy_(scale * weight.to(layer.weight.dtype))
            if layer.bias is not None:
                layer.bias.zero_()


@torch.no_grad()
def init_unipixel_parameters(model: nn.Module, tie_ref_pe: bool = False) -> None:
    """Reference ``init_parameters``: copy SAM 2's prompt-encoder *parameters* into the ``<|ref|>`` encoder, copy the
    vision merger MLP into ``msk_proj``, Xavier-uniform (gain 1, bias 0) every Linear of the seg head and the ref
    projections. RMSNorm/Embedding keep their defaults; the Gaussian PE buffers stay random (as in the reference)
    unless ``tie_ref_pe``: then the ``<|ref|>`` encoder also gets SAM 2's Gaussian matrix, so a click reaches the LLM
    encoded exactly as SAM 2 encodes it (used for models trained from scratch, e.g. the built-in model).
    """
    src = model.sam2.prompt_encoder
    dst = model.ref_prompt.ref_encoder
    for (name_s, p_s), (name_d, p_d) in zip(src.named_parameters(), dst.named_parameters(), strict=True):
        if name_s != name_d or p_s.shape != p_d.shape:
            raise ValueError(f"prompt encoders differ: {name_s} {tuple(p_s.shape)} vs {name_d} {tuple(p_d.shape)}")
        p_d.copy_(p_s)
    if tie_ref_pe:
        dst.shared_embedding.positional_embedding.copy_(src.shared_embedding.positional_embedding)
    merger = model.model.visual.merger.mlp
    for p_s, p_d in zip(merger.parameters(), model.mem_pool.msk_proj.parameters(), strict=True):
        p_d.copy_(p_s)
    rp = model.ref_prompt
    for module in (model.seg_head, rp.ref_proj_single, rp.ref_proj_double, rp.ref_proj, rp.tem_proj):
        for m in module.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

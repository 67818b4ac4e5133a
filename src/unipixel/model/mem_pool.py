"""Masks in: per-object masks → ``<|mem|>`` token embeddings pooled from the vision tower (object memory).

For every object and every temporal group (pair of frames) where its merged-token mask is non-empty, the
rows of the merger-MLP input (``ln_q`` of the last ViT block, 2×2 patches concatenated: ``4·vit_dim`` wide)
under the mask are averaged and projected by ``msk_proj`` (same shape as the merger MLP) to the LLM width.

Reference quirk (§1.6): the ViT keeps those rows in its *window* order while the mask is flattened in raster
order. Released weights were trained with the mismatch, so it is reproduced by default
(``window_order=True``); ``window_order=False`` pools the rows the mask really covers.
"""

from __future__ import annotations

import torch
from torch import nn


class MemoryPooling(nn.Module):
    """Holds ``msk_proj`` and turns masks + merger-MLP inputs into ``<|mem|>`` embeddings."""

    def __init__(self, merger_dim: int, llm_dim: int, window_order: bool = True) -> None:
        super().__init__()
        self.window_order = window_order
        self.msk_proj = nn.Sequential(
            nn.Linear(merger_dim, merger_dim), nn.GELU(), nn.Linear(merger_dim, llm_dim)
        )

    def pool(
        self, rows: torch.Tensor, refer_mask: torch.Tensor, window_index: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Pool one video. ``rows``: ``(gt·gh·gw/4, merger_dim)`` in ViT window order; ``refer_mask``:
        ``(gt, n_obj, gh/2, gw/2)`` bool; ``window_index``: the video's window permutation (local indices), needed
        only when ``window_order`` is False. Returns ``(n_mem, merger_dim)`` in object-major, time-ascending order.
        """
        gt, n_obj = refer_mask.shape[:2]
        step = refer_mask.shape[2] * refer_mask.shape[3]
        if rows.shape[0] != gt * step:
            raise ValueError(
                f"refer_mask covers {gt}x{refer_mask.shape[2]}x{refer_mask.shape[3]} merged tokens but the video has "
                f"{rows.shape[0]}; build it with unipixel.visual_prompts.build_refer_mask for this video_grid_thw"
            )
        if not self.window_order:
            if window_index is None:
                raise ValueError("window_index is required to pool in raster order")
            rows = rows[torch.argsort(window_index)]
        pooled = []
        for o in range(n_obj):
            mask = refer_mask[:, o].reshape(gt, step).to(rows.device)
            for i in range(gt):
                if mask[i].any():
                    pooled.append(rows[i * step : (i + 1) * step][mask[i]].mean(0))
        if not pooled:
            return rows.new_zeros(0, rows.shape[1])
        return torch.stack(pooled)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """``(n_mem, merger_dim)`` → ``(n_mem, llm_dim)``."""
        return self.msk_proj(pooled)

"""Seg head: the LLM state in front of a ``<|seg|>`` token → K SAM 2 prompt tokens.

This is where a ``<|seg|>`` becomes a mask query: the hidden state of the token *preceding* ``<|seg|>`` (the
position whose next-token prediction is ``<|seg|>``), taken *before* the LLM's final RMSNorm, goes through
RMSNorm → Linear → GELU → Linear and is reshaped to ``(K, sam_dim)`` tokens that SAM 2's mask decoder reads as
sparse prompts (see :mod:`unipixel.sam2.tracker`).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLRMSNorm


class SegHead(nn.Sequential):
    """``Sequential[RMSNorm, Linear, GELU, Linear]``; indices match the released ``seg_head.{0,1,3}`` keys."""

    def __init__(self, llm_dim: int, sam_dim: int, num_tokens: int) -> None:
        super().__init__(
            Qwen2_5_VLRMSNorm(llm_dim, eps=1e-6),
            nn.Linear(llm_dim, llm_dim),
            nn.GELU(),
            nn.Linear(llm_dim, sam_dim * num_tokens),
        )
        self.sam_dim = sam_dim
        self.num_tokens = num_tokens

    def prompt_tokens(self, prenorm_states: torch.Tensor) -> torch.Tensor:
        """``(..., llm_dim)`` pre-norm states → ``(..., K, sam_dim)`` SAM 2 prompt tokens."""
        out = self(prenorm_states)
        return out.unflatten(-1, (self.num_tokens, self.sam_dim))


def seg_query_positions(input_ids: torch.Tensor, seg_token_id: int) -> torch.Tensor:
    """Positions ``i`` with ``input_ids[..., i + 1] == seg_token_id`` (the states that drive SAM 2).

    Returns an ``(N, 2)`` tensor of ``(batch, position)`` pairs in (batch, position) order, which is the order the
    reference produces masks for ``<|seg|>`` tokens already present in the input.
    """
    nxt = input_ids[..., 1:] == seg_token_id
    return nxt.nonzero()

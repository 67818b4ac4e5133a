"""Visual prompts in: a point or a box on some frame → one ``<|ref|>`` token embedding per object.

Per object (reference §1.5): SAM 2 prompt-encoder tokens of the point/box in the S×S squashed frame
(a point → 2 tokens with the padding point, a box → 3) are flattened and projected to ``3·d``; the prompt frame
index gets a 1-D random-Fourier code projected to ``3·d``; both are concatenated and projected to the LLM width.
Only the frame *index* and the coordinates enter the LLM, never pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from transformers.models.sam2.configuration_sam2 import Sam2PromptEncoderConfig
from transformers.models.sam2.modeling_sam2 import Sam2PromptEncoder


@dataclass
class RefPrompt:
    """One object's visual prompt in SAM 2 space.

    ``coords``: ``(n, 2)`` (x, y) in the S×S frame, n = 1 (point) or 2 (box corners); ``labels``: ``(n,)`` with
    1 = positive point, 2/3 = box top-left/bottom-right; ``frame``: index of the prompt frame among the sampled
    frames.
    """

    coords: torch.Tensor
    labels: torch.Tensor
    frame: int


class TemporalPositionEncoding(nn.Module):
    """1-D random-Fourier code of a normalised frame position: ``[sin(2π(2c−1)G), cos(2π(2c−1)G)]``.

    ``G`` is a fixed Gaussian row (a persistent buffer, so full checkpoints carry it). Computed in float32 and cast
    to the buffer dtype, as the reference does.
    """

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(1, num_pos_feats))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        g = self.positional_encoding_gaussian_matrix
        with torch.autocast(device_type=c.device.type, enabled=False):
            x = 2 * math.pi * ((2 * c.float().unsqueeze(-1) - 1) @ g.float())
            pe = torch.cat([torch.sin(x), torch.cos(x)], dim=-1)
        return pe.to(g.dtype)


class RefPromptEncoder(nn.Module):
    """Points/boxes + frame index → ``<|ref|>`` embeddings (module names match the released checkpoint keys)."""

    def __init__(
        self,
        sam_dim: int,
        llm_dim: int,
        image_size: int,
        padded_temporal_norm: bool = True,
    ) -> None:
        super().__init__()
        pe_cfg = Sam2PromptEncoderConfig(
            hidden_size=sam_dim, image_size=image_size, patch_size=16, mask_input_channels=16
        )
        self.image_size = image_size
        self.padded_temporal_norm = padded_temporal_norm
        self.ref_encoder = Sam2PromptEncoder(pe_cfg)
        self.ref_proj_single = nn.Linear(2 * sam_dim, 3 * sam_dim)
        self.ref_proj_double = nn.Linear(3 * sam_dim, 3 * sam_dim)
        self.ref_proj = nn.Sequential(nn.GELU(), nn.Linear(6 * sam_dim, llm_dim))
        self.tem_pe = TemporalPositionEncoding(sam_dim // 2)
        self.tem_emb = nn.Embedding(1, sam_dim)
        self.tem_proj = nn.Linear(sam_dim, 3 * sam_dim)

    def _point_tokens(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """SAM prompt-encoder point tokens with the trailing padding point; PE math in float32 (reference)."""
        enc = self.ref_encoder
        dtype = enc.point_embed.weight.dtype
        pts = torch.cat([coords.float() + 0.5, coords.new_zeros(1, 2, dtype=torch.float32)], dim=0)
        labels = torch.cat([labels.long(), labels.new_full((1,), -1, dtype=torch.long)])
        g = enc.shared_embedding.positional_embedding
        with torch.autocast(device_type=pts.device.type, enabled=False):
            x = 2 * math.pi * ((2 * (pts / self.image_size) - 1) @ g.float())
            pe = torch.cat([torch.sin(x), torch.cos(x)], dim=-1).to(dtype)
        pe = torch.where((labels == -1)[:, None], enc.not_a_point_embed.weight.to(dtype), pe)
        return pe + enc.point_embed(labels.clamp(min=0)) * (labels >= 0)[:, None].to(dtype)

    def forward(self, prompts: list[RefPrompt], num_frames: int, grid_t: int) -> torch.Tensor:
        """Encode the prompts of one video → ``(n_obj, llm_dim)``.

        ``num_frames`` is the true number of sampled frames, ``grid_t`` the number of temporal groups; with
        ``padded_temporal_norm`` (reference) the frame index is divided by ``2·grid_t − 1``, else by ``T − 1``.
        """
        if not prompts:
            return self.ref_proj[1].weight.new_zeros(0, self.ref_proj[1].out_features)
        spatial = []
        for p in prompts:
            tokens = self._point_tokens(p.coords, p.labels).flatten()
            if p.coords.shape[0] == 1:
                spatial.append(self.ref_proj_single(tokens))
            elif p.coords.shape[0] == 2:
                spatial.append(self.ref_proj_double(tokens))
            else:
                raise ValueError(f"a <|ref|> prompt is one point or one box; got {p.coords.shape[0]} points")
        spatial = torch.stack(spatial)
        denom = 2 * grid_t - 1 if self.padded_temporal_norm else num_frames - 1
        frames = torch.tensor([p.frame for p in prompts], device=spatial.device, dtype=torch.float32)
        pe = self.tem_pe(frames / max(denom, 1))
        tem = self.tem_proj(pe + self.tem_emb.weight)
        return self.ref_proj(torch.cat([spatial, tem], dim=-1))

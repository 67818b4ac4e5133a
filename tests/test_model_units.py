"""Unit tests of UniPixel's own modules: seg positions, <|ref|> encoder, <|mem|> pooling and its quirk switch."""

from __future__ import annotations

import pytest
import torch
from transformers.vision_utils import get_vision_window_index

from unipixel.model.mem_pool import MemoryPooling
from unipixel.model.ref_prompt import RefPrompt, RefPromptEncoder, TemporalPositionEncoding
from unipixel.model.seg_head import SegHead, seg_query_positions


def test_seg_query_positions_are_the_tokens_before_seg() -> None:
    ids = torch.tensor([[5, 9, 7, 9, 9], [9, 1, 2, 3, 9]])
    pos = seg_query_positions(ids, 9)
    assert pos.tolist() == [[0, 0], [0, 2], [0, 3], [1, 3]]  # a <|seg|> at position 0 has no predecessor


def test_seg_head_shapes() -> None:
    head = SegHead(16, 8, 3)
    assert head.prompt_tokens(torch.randn(2, 5, 16)).shape == (2, 5, 3, 8)


def test_temporal_pe_formula() -> None:
    pe = TemporalPositionEncoding(4)
    c = torch.tensor([0.0, 0.5, 1.0])
    g = pe.positional_encoding_gaussian_matrix
    x = 2 * torch.pi * (2 * c[:, None] - 1) * g
    assert torch.allclose(pe(c), torch.cat([x.sin(), x.cos()], -1), atol=1e-6)


def test_ref_encoder_point_box_and_temporal_norm_switch() -> None:
    torch.manual_seed(0)
    enc = RefPromptEncoder(sam_dim=16, llm_dim=12, image_size=64)
    point = RefPrompt(torch.tensor([[10.0, 20.0]]), torch.tensor([1]), frame=3)
    box = RefPrompt(torch.tensor([[1, 2], [30, 40]], dtype=torch.int32), torch.tensor([2, 3]), frame=0)
    out = enc([point, box], num_frames=4, grid_t=2)
    assert out.shape == (2, 12)
    fixed = RefPromptEncoder(sam_dim=16, llm_dim=12, image_size=64, padded_temporal_norm=False)
    fixed.load_state_dict(enc.state_dict())
    # T = 4 frames, gt = 2: the reference divides by 2*gt-1 = 3 = T-1, so both agree ...
    assert torch.allclose(fixed([point], num_frames=4, grid_t=2), enc([point], num_frames=4, grid_t=2))
    # ... but for an odd T = 3 (gt = 2) the reference still divides by 3 while T-1 = 2.
    assert not torch.allclose(fixed([point], num_frames=3, grid_t=2), enc([point], num_frames=3, grid_t=2))
    with pytest.raises(ValueError, match="one point or one box"):
        enc([RefPrompt(torch.zeros(3, 2), torch.ones(3), 0)], num_frames=2, grid_t=1)


def test_mem_pooling_window_order_quirk_and_fix() -> None:
    """With a merged grid wider than one window the reference pools the wrong rows; the switch fixes it."""
    grid = torch.tensor([[1, 8, 16]])  # gt=1, 4x8 merged tokens: two 4x4 windows side by side
    window_index, _ = get_vision_window_index(grid, spatial_merge_size=2, window_size=112, patch_size=14)
    raster_rows = torch.arange(32, dtype=torch.float32)[:, None].repeat(1, 3)  # row r holds value r
    window_rows = raster_rows[window_index]  # what the ViT produces (window order)
    mask = torch.zeros(1, 1, 4, 8, dtype=torch.bool)
    mask[0, 0, 0, 4:] = True  # the first row of the right-hand window: raster indices 4..7
    quirk = MemoryPooling(3, 2, window_order=True).pool(window_rows, mask)
    fixed = MemoryPooling(3, 2, window_order=False).pool(window_rows, mask, window_index)
    assert fixed[0, 0].item() == pytest.approx((4 + 5 + 6 + 7) / 4)
    assert quirk[0, 0].item() == pytest.approx(window_index[4:8].float().mean().item())
    assert quirk[0, 0].item() != fixed[0, 0].item()


def test_mem_pooling_rejects_wrong_grid() -> None:
    with pytest.raises(ValueError, match="merged tokens"):
        MemoryPooling(3, 2).pool(torch.zeros(10, 3), torch.ones(1, 1, 2, 2, dtype=torch.bool))


# ------------------------------------------------------------------------------------------------ seg alignment
def test_seg_alignment_loss_prefers_the_target_and_skips_absent_objects() -> None:
    from unipixel.model.seg_align import seg_alignment_loss

    torch.manual_seed(0)
    vision = torch.randn(16, 4, 4)
    masks = torch.zeros(2, 32, 32)
    masks[0, :8, :8] = 1  # object 0 fills feature cell (0, 0); object 1 fills cell (3, 3)
    masks[1, 24:, 24:] = 1
    on_target = torch.stack([vision[:, 0, 0], vision[:, 3, 3]])[:, None].repeat(1, 2, 1)  # (O, K, D)
    swapped = on_target.flip(0)
    good = seg_alignment_loss(on_target, vision, masks)
    bad = seg_alignment_loss(swapped, vision, masks)
    assert good is not None and bad is not None and good < bad
    assert good < 1.0 < bad  # a query equal to the target's feature puts most of its mass there
    q = swapped.clone().requires_grad_(True)
    seg_alignment_loss(q, vision, masks).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    # an object absent from the frame contributes nothing; all absent -> None
    only0 = masks.clone()
    only0[1] = 0
    assert torch.allclose(seg_alignment_loss(on_target, vision, only0), seg_alignment_loss(on_target[:1], vision, masks[:1]))
    assert seg_alignment_loss(on_target, vision, torch.zeros_like(masks)) is None
    with pytest.raises(ValueError, match="queries"):
        seg_alignment_loss(on_target[0], vision, masks)
    with pytest.raises(ValueError, match="mismatch"):
        seg_alignment_loss(on_target, vision[:8], masks)

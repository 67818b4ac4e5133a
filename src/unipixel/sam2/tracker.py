"""UniPixel's SAM 2 tracking loop, written from transformers' SAM 2 building blocks.

Semantics follow the reference implementation (Meta SAM 2 as vendored by UniPixel):

* the LLM's ``<|seg|>`` state becomes K prompt tokens appended after two "not-a-point" padding tokens in the
  sparse prompt of the conditioning frame only (tracked frames get just the two padding tokens); the dense
  prompt is ``no_mask_embed``;
* three masks are decoded on every frame, the one with the highest predicted IoU is kept, and its mask token
  becomes the object pointer (replaced by ``no_object_pointer`` when the object score is <= 0);
* memories are ``sigmoid(logits) * 20 - 10`` of the chosen high-res mask encoded with the frame's raw
  features, plus the "no object" spatial embedding for absent objects;
* memory attention sees the conditioning frame, up to ``num_maskmem - 1`` previous tracked frames and the
  object pointers (with temporal position encodings).

Differences from the reference that do not change numbers but matter for speed: the image encoder runs once
per request (:func:`encode_frames`) instead of once per object, and all objects are tracked together with the
batch dimension indexing objects (every op in the loop is per-sample, so results equal per-object tracking).

Inference (:func:`track`) reproduces ``SAM2VideoPredictor.add_new_hidden_state`` + ``propagate_in_video``:
low-res masks of absent objects are filled with -1024 and the conditioning frame's memory is encoded from its
stored low-res logits upsampled to the model resolution. Training (:func:`forward_train`) reproduces
``SAM2Train.forward_tracking``: no -1024 fill and the conditioning memory comes straight from the decoder's
high-res logits. Nothing here uses ``torch.no_grad``/``inference_mode``; callers decide.

Interactive correction (:func:`refine`) continues a :func:`track` result the way
``SAM2VideoPredictor.add_new_points_or_box`` + ``propagate_in_video`` continue a SAM 2 session: clicked
frames become conditioning frames of their object and only the corrected objects are re-propagated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers import Sam2VideoModel
from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoRoPEAttention, apply_rotary_pos_emb_2d

__all__ = [
    "NO_OBJ_SCORE",
    "FrameFeatures",
    "FrameOutput",
    "TrackResult",
    "Sam2Tracker",
    "encode_frames",
    "track",
    "forward_train",
    "Correction",
    "refine",
]

# Placeholder logit for low-res masks of objects predicted absent (inference only), as in SAM 2.
NO_OBJ_SCORE = -1024.0


# ------------------------------------------------------------------------------------------------ features


class FrameFeatures:
    """SAM 2 image features of a clip, shared by every object of a request.

    Holds, per frame, the two high-resolution FPN levels already projected by the mask decoder's
    ``conv_s0``/``conv_s1`` and the lowest-resolution level (SAM 2's ``vision_features``, without the
    no-memory embedding), plus the (frame-independent) sine position encoding of that level.

    Built eagerly by :func:`encode_frames` (one batched encoder pass) or lazily (``lazy=True``: each frame is
    encoded on first use and kept on this object, never on the model), which keeps long/streamed videos
    from materialising every frame's features up front.
    """

    def __init__(
        self,
        num_frames: int,
        vision_pos: Tensor,
        high_res: tuple[Tensor, Tensor] | None = None,
        vision: Tensor | None = None,
        encoder: Callable[[int], tuple[Tensor, Tensor, Tensor]] | None = None,
    ) -> None:
        if (vision is None) == (encoder is None):
            raise ValueError("pass either precomputed features or a per-frame encoder")
        self.num_frames = int(num_frames)
        self.vision_pos = vision_pos
        self._high_res = high_res
        self._vision = vision
        self._encoder = encoder
        self._cache: dict[int, tuple[Tensor, Tensor, Tensor]] = {}

    def get(self, t: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(feat_s0, feat_s1, vision)`` of frame ``t``, each with a leading batch dim of 1."""
        if not 0 <= t < self.num_frames:
            raise IndexError(f"frame {t} out of range for {self.num_frames} frames")
        if self._vision is not None:
            assert self._high_res is not None
            return self._high_res[0][t : t + 1], self._high_res[1][t : t + 1], self._vision[t : t + 1]
        if t not in self._cache:
            assert self._encoder is not None
            self._cache[t] = self._encoder(t)
        return self._cache[t]

    @property
    def vision(self) -> Tensor:
        """Lowest-resolution features of all frames (T, D, h, w) (computes missing frames when lazy)."""
        if self._vision is not None:
            return self._vision
        return torch.cat([self.get(t)[2] for t in range(self.num_frames)], dim=0)


def _run_encoder(model: Sam2VideoModel, pixels: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    out = model.vision_encoder(pixels.to(model.dtype), return_dict=True)
    fpn = out.fpn_hidden_states
    pos = out.fpn_position_encoding
    s0 = model.mask_decoder.conv_s0(fpn[0])
    s1 = model.mask_decoder.conv_s1(fpn[1])
    return s0, s1, fpn[-1], pos[-1][:1]


def encode_frames(
    model: Sam2VideoModel, frames: Tensor, chunk_size: int = 16, lazy: bool = False
) -> FrameFeatures:
    """Run the SAM 2 image encoder once for a clip of normalised frames ``(T, 3, S, S)``.

    ``chunk_size`` bounds how many frames go through the encoder at once (as the reference does); with
    ``lazy=True`` nothing is computed until a frame is first needed.
    """
    if frames.dim() != 4:
        raise ValueError(f"frames must be (T, 3, S, S), got {tuple(frames.shape)}")
    num_frames = frames.shape[0]
    if lazy:
        pos_holder: dict[str, Tensor] = {}

        def _encode_one(t: int) -> tuple[Tensor, Tensor, Tensor]:
            s0, s1, vis, pos = _run_encoder(model, frames[t : t + 1])
            pos_holder.setdefault("pos", pos)
            return s0, s1, vis

        first = _encode_one(0)
        feats = FrameFeatures(num_frames, pos_holder["pos"], encoder=_encode_one)
        feats._cache[0] = first
        return feats
    s0s, s1s, viss = [], [], []
    pos = None
    for start in range(0, num_frames, max(1, chunk_size)):
        s0, s1, vis, pos = _run_encoder(model, frames[start : start + chunk_size])
        s0s.append(s0)
        s1s.append(s1)
        viss.append(vis)
    assert pos is not None
    return FrameFeatures(num_frames, pos, high_res=(torch.cat(s0s), torch.cat(s1s)), vision=torch.cat(viss))


# ------------------------------------------------------------------------------------------- per-frame ops


@dataclass
class FrameOutput:
    """Everything SAM 2 keeps about one frame for all objects (batch dim = objects)."""

    low_res_masks: Tensor  # (O, 1, h, w) chosen mask (NO_OBJ-filled in inference)
    obj_ptr: Tensor  # (O, D)
    object_score_logits: Tensor  # (O, 1)
    maskmem_features: Tensor | None = None  # (HW, O, mem_dim)
    maskmem_pos_enc: Tensor | None = None  # (HW, O, mem_dim)
    multimasks: Tensor | None = None  # (O, 3, h, w)
    ious: Tensor | None = None  # (O, 3)
    high_res_masks: Tensor | None = None  # (O, 1, S, S)
    high_res_multimasks: Tensor | None = None  # (O, 3, S, S)
    pix_feat: Tensor | None = None  # (O, D, h, w) memory-conditioned features fed to the decoder


@dataclass
class TrackResult:
    """Output of :func:`track`; all per-object tensors have objects first and frames second."""

    low_res_logits: Tensor  # (O, T, h, w)
    object_score_logits: Tensor  # (O, T)
    obj_ptr: Tensor  # (O, T, D)
    frame_size: tuple[int, int]  # original (H, W)
    features: FrameFeatures
    frame_outputs: dict[int, FrameOutput] = field(default_factory=dict)
    # What :func:`refine` needs to continue the session (SAM 2's inference state, minus the tensors above):
    cond_frames: tuple[tuple[int, ...], ...] = ()  # per object, its conditioning frames (sorted)
    prompt_frame: int | None = None  # the frame the ``<|seg|>`` hidden tokens prompt
    hidden: Tensor | None = None  # (O, K, D) the ``<|seg|>`` hidden tokens

    def video_res(self, frames: slice | list[int] | None = None) -> Tensor:
        """Logits bilinearly resized to the original frame size, (O, T', H, W) for the selected frames."""
        low = self.low_res_logits if frames is None else self.low_res_logits[:, frames]
        out = F.interpolate(low.float(), size=self.frame_size, mode="bilinear", align_corners=False)
        return out.to(low.dtype)

    @property
    def video_res_logits(self) -> Tensor:
        """(O, T, H, W) logits at the original size; computed on access (large for long videos)."""
        return self.video_res()

    def binary_masks_chunked(self, chunk: int = 16) -> Tensor:
        """Final masks ``video_res_logits > 0`` as bool (O, T, H, W), resized ``chunk`` frames at a time."""
        num_frames = self.low_res_logits.shape[1]
        parts = [self.video_res(slice(t, t + chunk)) > 0 for t in range(0, num_frames, chunk)]
        return torch.cat(parts, dim=1)

    @property
    def binary_masks(self) -> Tensor:
        """Final masks (``video_res_logits > 0``), bool (O, T, H, W); never holds all float logits at once."""
        return self.binary_masks_chunked()

    @property
    def vision_features(self) -> Tensor:
        """SAM 2 ``vision_features`` (T, D, h, w) of the frames used (lowest FPN level, no memory)."""
        return self.features.vision


def _prompt_embeddings(
    model: Sam2VideoModel,
    pix_feat: Tensor,
    hidden: Tensor | None,
    points: Tensor | None = None,
    labels: Tensor | None = None,
    mask_inputs: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Sparse and dense decoder prompts, laid out as UniPixel's vendored prompt encoder does.

    Sparse: the click tokens (or one empty point when there are no clicks), SAM's padding "not-a-point"
    token, then the ``<|seg|>`` hidden tokens if any. Dense: ``mask_inputs`` (previous low-res logits, for
    refinement clicks) through the mask downscaler, else ``no_mask_embed``.
    """
    num_obj = pix_feat.shape[0]
    device, dtype = pix_feat.device, pix_feat.dtype
    if points is None:
        # No points: one empty point (label -1) padded by another -> [not_a_point, not_a_point].
        points = torch.zeros(num_obj, 1, 1, 2, device=device, dtype=dtype)
        labels = -torch.ones(num_obj, 1, 1, device=device, dtype=torch.int32)
    sparse, dense = model.prompt_encoder(
        input_points=points,
        input_labels=labels,
        input_boxes=None,
        input_masks=None if mask_inputs is None else mask_inputs.to(dtype),
    )
    if hidden is not None:
        sparse = torch.cat([sparse, hidden.to(sparse.dtype).unsqueeze(1)], dim=2)
    return sparse, dense


def _decode(
    model: Sam2VideoModel,
    pix_feat: Tensor,
    feat_s0: Tensor,
    feat_s1: Tensor,
    hidden: Tensor | None,
    image_pe: Tensor,
    fill_no_obj: bool,
    need_high_res_multimasks: bool,
    points: Tensor | None = None,
    labels: Tensor | None = None,
    mask_inputs: Tensor | None = None,
) -> FrameOutput:
    """SAM heads on one frame for all objects (Meta's ``_forward_sam_heads``).

    Without ``points`` this is UniPixel's prompt (hidden tokens, or nothing on a tracked frame); clicks pass
    ``points`` (O, 1, n, 2) / ``labels`` (O, 1, n; label -1 pads), optionally the previous ``mask_inputs``
    (O, 1, h, w). How many candidate masks come back follows :func:`_use_multimask`: a frame with a prompt
    (hidden tokens or clicks) is a conditioning frame, and the clicks of the first object are counted.
    """
    prompted = hidden is not None or points is not None
    num_points = 0 if labels is None else int((labels[0, 0] >= 0).sum())
    multimask = _use_multimask(model, num_points, init_cond=prompted)
    num_obj = pix_feat.shape[0]
    device = pix_feat.device
    sparse, dense = _prompt_embeddings(model, pix_feat, hidden, points, labels, mask_inputs)
    multimasks, ious, tokens, obj_logits = model.mask_decoder(
        image_embeddings=pix_feat,
        image_positional_embeddings=image_pe.expand(num_obj, -1, -1, -1),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense,
        multimask_output=multimask,
        high_resolution_features=[feat_s0.expand(num_obj, -1, -1, -1), feat_s1.expand(num_obj, -1, -1, -1)],
    )
    multimasks, ious, tokens, obj_logits = multimasks[:, 0], ious[:, 0], tokens[:, 0], obj_logits[:, 0]
    is_obj = obj_logits > 0  # (O, 1)
    if fill_no_obj:
        multimasks = torch.where(is_obj[:, :, None, None], multimasks, NO_OBJ_SCORE)
    best = torch.argmax(ious, dim=-1)
    rows = torch.arange(num_obj, device=device)
    low_res = multimasks[rows, best].unsqueeze(1)
    size = model.config.image_size
    high_res_multi = None
    if need_high_res_multimasks:
        high_res_multi = F.interpolate(
            multimasks.float(), size=(size, size), mode="bilinear", align_corners=False
        )
        high_res_multi = high_res_multi.to(multimasks.dtype)
        high_res = high_res_multi[rows, best].unsqueeze(1)
    else:
        high_res = F.interpolate(low_res.float(), size=(size, size), mode="bilinear", align_corners=False)
        high_res = high_res.to(low_res.dtype)
    obj_ptr = model.object_pointer_proj(tokens[rows, best])
    appearing = is_obj.to(obj_ptr.dtype)
    obj_ptr = appearing * obj_ptr + (1 - appearing) * model.no_object_pointer
    return FrameOutput(
        low_res_masks=low_res,
        obj_ptr=obj_ptr,
        object_score_logits=obj_logits,
        multimasks=multimasks,
        ious=ious,
        high_res_masks=high_res,
        high_res_multimasks=high_res_multi,
        pix_feat=pix_feat,
    )


def _encode_memory(
    model: Sam2VideoModel, vision: Tensor, high_res_masks: Tensor, object_score_logits: Tensor
) -> tuple[Tensor, Tensor]:
    """Memory of one frame for all objects from its raw features and chosen high-res logits."""
    num_obj = high_res_masks.shape[0]
    cfg = model.config
    mask_for_mem = (
        torch.sigmoid(high_res_masks) * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
    )
    feats, pos = model.memory_encoder(vision.expand(num_obj, -1, -1, -1), mask_for_mem.to(vision.dtype))
    if model.occlusion_spatial_embedding_parameter is not None:
        absent = 1 - (object_score_logits > 0).to(feats.dtype)  # (O, 1)
        feats = feats + absent[..., None, None] * model.occlusion_spatial_embedding_parameter[..., None, None]
    # (O, C, h, w) -> (hw, O, C), the sequence-first layout memory attention takes
    return feats.flatten(2).permute(2, 0, 1), pos.to(feats.dtype).flatten(2).permute(2, 0, 1).expand(
        -1, num_obj, -1
    )


def _one_d_sine_pe(pos: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """1-D sine/cosine encoding used for object-pointer temporal positions."""
    half = dim // 2
    dim_t = torch.arange(half, dtype=torch.float32, device=pos.device)
    dim_t = temperature ** (2 * (dim_t // 2) / half)
    emb = pos.unsqueeze(-1) / dim_t
    return torch.cat([emb.sin(), emb.cos()], dim=-1)


def _select_cond(model: Sam2VideoModel, t: int, cond: dict[int, FrameOutput]) -> tuple[dict, dict]:
    max_cond = model.config.max_cond_frame_num
    if max_cond == -1 or len(cond) <= max_cond:
        return cond, {}
    return model._select_closest_cond_frames(t, cond, max_cond)


def _condition_on_memory(
    model: Sam2VideoModel,
    t: int,
    vision: Tensor,
    vision_pos: Tensor,
    num_obj: int,
    cond: dict[int, FrameOutput],
    non_cond: dict[int, FrameOutput],
    num_frames: int,
    reverse: bool,
    training: bool,
    detach_rope: bool = True,
) -> Tensor:
    """Fuse frame ``t``'s features with the memory bank (Meta's ``_prepare_memory_conditioned_features``)."""
    d = model.hidden_dim
    mem_dim = model.mem_dim
    _, _, h, w = vision.shape
    selected, unselected = _select_cond(model, t, cond)

    memories: list[Tensor] = []
    memory_pos: list[Tensor] = []
    entries: list[tuple[int, FrameOutput | None]] = [(0, out) for out in selected.values()]
    for t_rel in range(model.num_maskmem - 1, 0, -1):
        prev = t + t_rel if reverse else t - t_rel
        entries.append((t_rel, non_cond.get(prev, unselected.get(prev))))
    for t_rel, out in entries:
        if out is None:
            continue
        assert out.maskmem_features is not None and out.maskmem_pos_enc is not None
        memories.append(out.maskmem_features)
        # t_rel 0 (conditioning frames) uses the last temporal slot, like SAM 2.
        memory_pos.append(out.maskmem_pos_enc + model.memory_temporal_positional_encoding[t_rel - 1])

    max_ptrs = min(num_frames, model.config.max_object_pointers_in_encoder)
    if training:
        ptr_cond = selected
    else:  # only pointers from the past (in tracking direction) at inference
        ptr_cond = {ti: o for ti, o in selected.items() if (ti >= t if reverse else ti <= t)}
    sign = -1 if reverse else 1
    positions: list[int] = [(t - ti) * sign for ti in ptr_cond]
    pointers: list[Tensor] = [o.obj_ptr for o in ptr_cond.values()]
    for t_diff in range(1, max_ptrs):
        ref = t + t_diff if reverse else t - t_diff
        if ref < 0 or ref >= num_frames:
            break
        out = non_cond.get(ref, unselected.get(ref))
        if out is not None:
            positions.append(t_diff)
            pointers.append(out.obj_ptr)
    num_ptr_tokens = 0
    if pointers:
        ptrs = torch.stack(pointers, dim=0)  # (N, O, D)
        if model.config.enable_temporal_pos_encoding_for_object_pointers:
            proj = model.temporal_positional_encoding_projection_layer
            # positions are cast to the projection's dtype before normalising, as in the reference
            rel = torch.tensor(positions, device=ptrs.device, dtype=proj.weight.dtype) / max(max_ptrs - 1, 1)
            ptr_pos = proj(_one_d_sine_pe(rel, dim=d).to(proj.weight.dtype))
            ptr_pos = ptr_pos.unsqueeze(1).expand(-1, num_obj, mem_dim)
        else:
            ptr_pos = ptrs.new_zeros(len(positions), num_obj, mem_dim)
        if mem_dim < d:  # split each pointer into d / mem_dim tokens
            split = d // mem_dim
            ptrs = ptrs.reshape(-1, num_obj, split, mem_dim).permute(0, 2, 1, 3).flatten(0, 1)
            ptr_pos = ptr_pos.repeat_interleave(split, dim=0)
        memories.append(ptrs)
        memory_pos.append(ptr_pos)
        num_ptr_tokens = ptrs.shape[0]

    memory = torch.cat(memories, dim=0).to(vision.dtype).transpose(0, 1)  # (O, M, mem_dim)
    memory_pos_all = torch.cat(memory_pos, dim=0).to(vision.dtype).transpose(0, 1)
    curr = vision.flatten(2).transpose(1, 2).expand(num_obj, -1, -1)  # (O, hw, D)
    curr_pos = vision_pos.flatten(2).transpose(1, 2).expand(num_obj, -1, -1)
    fused = _memory_attention(model, curr, curr_pos, memory, memory_pos_all, num_ptr_tokens, detach_rope)
    return fused.transpose(1, 2).reshape(num_obj, d, h, w)


def _rope_attention(
    attn: Sam2VideoRoPEAttention,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    cos: Tensor,
    sin: Tensor,
    num_k_exclude_rope: int,
    detach_rope: bool,
) -> Tensor:
    """transformers' RoPE attention on batch-first (B, L, C) inputs, optionally cutting RoPE'd q/k gradients.

    UniPixel's vendored SAM 2 decorates ``apply_rotary_enc`` with ``@torch.no_grad``, so in its training the
    rotated queries and the rotated (spatial-memory) keys carry no gradient; only values and the unrotated
    object-pointer keys do. ``detach_rope=True`` reproduces that; forward values are unaffected.
    """
    batch = query.shape[0]
    heads, head_dim = attn.num_attention_heads, attn.head_dim
    q = attn.q_proj(query).view(batch, -1, heads, head_dim).transpose(1, 2)
    k = attn.k_proj(key).view(batch, -1, heads, head_dim).transpose(1, 2)
    v = attn.v_proj(value).view(batch, -1, heads, head_dim).transpose(1, 2)
    q, k = apply_rotary_pos_emb_2d(
        q, k, cos, sin, num_k_exclude_rope=num_k_exclude_rope, repeat_freqs_k=attn.rope_k_repeat
    )
    if detach_rope:
        n_rope = k.shape[-2] - num_k_exclude_rope
        q = q.detach()
        k = torch.cat([k[..., :n_rope, :].detach(), k[..., n_rope:, :]], dim=-2)
    dropout = attn.dropout_p if attn.training else 0.0
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, scale=attn.scaling)
    return attn.o_proj(out.transpose(1, 2).reshape(batch, -1, heads * head_dim))


def _memory_attention(
    model: Sam2VideoModel,
    curr: Tensor,
    curr_pos: Tensor,
    memory: Tensor,
    memory_pos: Tensor,
    num_ptr_tokens: int,
    detach_rope: bool,
) -> Tensor:
    """Memory attention over all objects at once, using transformers' ``Sam2VideoMemoryAttention`` layers.

    Same computation as ``Sam2VideoMemoryAttention.forward`` (pre-norm self-attention, cross-attention to the
    memory with key position encodings, MLP; final LayerNorm), batch-first (B = objects), with the optional
    reference gradient cut of :func:`_rope_attention`.
    """
    ma = model.memory_attention
    output = curr + 0.1 * curr_pos
    cos, sin = ma.rotary_emb(output, ma.position_ids)
    keys = memory + memory_pos
    for layer in ma.layers:
        q = layer.layer_norm1(output)
        q = _rope_attention(layer.self_attn, q, q, q, cos, sin, 0, detach_rope)
        output = output + layer.dropout1(q)
        q = layer.layer_norm2(output)
        q = _rope_attention(layer.cross_attn_image, q, keys, memory, cos, sin, num_ptr_tokens, detach_rope)
        output = output + layer.dropout2(q)
        q = layer.layer_norm3(output)
        q = layer.linear2(layer.dropout(layer.activation(layer.linear1(q))))
        output = output + layer.dropout3(q)
    return ma.layer_norm(output)


def _check_hidden(model: Sam2VideoModel, hidden: Tensor) -> Tensor:
    if hidden.dim() == 2:
        hidden = hidden.unsqueeze(0)
    if hidden.dim() != 3 or hidden.shape[-1] != model.hidden_dim:
        raise ValueError(f"hidden must be (O, K, {model.hidden_dim}), got {tuple(hidden.shape)}")
    return hidden


# ------------------------------------------------------------------------------------------ public loops


def track(
    model: Sam2VideoModel,
    features: FrameFeatures,
    hidden: Tensor,
    frame_size: tuple[int, int],
    cond_frame: int = 0,
    backward: bool = True,
    keep_frame_outputs: bool = False,
) -> TrackResult:
    """Segment and track all objects of a clip from their ``<|seg|>`` prompt tokens (inference semantics).

    ``hidden`` is (O, K, D): K prompt tokens per object. The objects are prompted on ``cond_frame`` (0 in the
    reference), tracked forward to the last frame and then, if ``backward`` and ``cond_frame > 0``, backward
    to frame 0 (SAM 2's reverse propagation, which also sees the forward-tracked memories). ``frame_size`` is
    the original (H, W) the final logits are resized to. The result can be corrected with clicks/boxes by
    :func:`refine`.
    """
    hidden = _check_hidden(model, hidden)
    num_obj = hidden.shape[0]
    num_frames = features.num_frames
    if not 0 <= cond_frame < num_frames:
        raise ValueError(f"cond_frame {cond_frame} outside [0, {num_frames})")
    image_pe = model.get_image_wide_positional_embeddings().to(features.vision_pos.dtype)

    # 1. prompt frame (add_new_hidden_state): no memory, hidden tokens in the prompt, NO_OBJ fill
    s0, s1, vision = features.get(cond_frame)
    pix = vision + model.no_memory_embedding.reshape(1, -1, 1, 1)
    out = _decode(model, pix.expand(num_obj, -1, -1, -1), s0, s1, hidden, image_pe, True, False)
    # 2. memory of the prompt frame from its stored low-res logits (propagate_in_video_preflight)
    _add_cond_memory(model, vision, out)
    cond: dict[int, FrameOutput] = {cond_frame: out}

    # 3. propagation
    non_cond = _propagate(model, features, image_pe, num_obj, cond, backward, keep_frame_outputs)

    all_out = {**non_cond, **cond}
    result = _collect(all_out, frame_size, features)
    result.cond_frames = tuple((cond_frame,) for _ in range(num_obj))
    result.prompt_frame = cond_frame
    result.hidden = hidden
    if keep_frame_outputs:
        result.frame_outputs = all_out
    return result


def _add_cond_memory(model: Sam2VideoModel, vision: Tensor, out: FrameOutput) -> None:
    """Memory of a conditioning frame from its stored low-res logits upsampled to the model resolution.

    That is what SAM 2's ``propagate_in_video_preflight`` encodes (not the decoder's high-res logits), so a
    conditioning frame's memory only depends on what the user sees for that frame.
    """
    size = model.config.image_size
    high_res = F.interpolate(
        out.low_res_masks.float(), size=(size, size), mode="bilinear", align_corners=False
    )
    out.maskmem_features, out.maskmem_pos_enc = _encode_memory(
        model, vision, high_res.to(out.low_res_masks.dtype), out.object_score_logits
    )


def _propagate(
    model: Sam2VideoModel,
    features: FrameFeatures,
    image_pe: Tensor,
    num_obj: int,
    cond: dict[int, FrameOutput],
    backward: bool,
    keep_frame_outputs: bool,
) -> dict[int, FrameOutput]:
    """Track every non-conditioning frame from the conditioning frames' memories (``propagate_in_video``).

    As SAM 2: forward from the earliest conditioning frame to the last frame, then (if ``backward``) in
    reverse from the frame before it down to frame 0; conditioning frames (which must carry their memory)
    are read, never recomputed, and every tracked frame attends to all of them. Returns the tracked frames.
    """
    num_frames = features.num_frames
    first = min(cond)
    non_cond: dict[int, FrameOutput] = {}
    # Frames a later step can still read: the last num_maskmem-1 tracked frames (memories) and, for the
    # backward pass, the frames just after the first prompt frame. Older memories are released (long videos).
    keep_after_cond = first + model.num_maskmem - 1 if backward and first > 0 else first
    orders = [([t for t in range(first + 1, num_frames) if t not in cond], False)]
    if backward and first > 0:
        orders.append((list(range(first - 1, -1, -1)), True))
    for order, reverse in orders:
        for t in order:
            s0, s1, vision = features.get(t)
            pix = _condition_on_memory(
                model,
                t,
                vision,
                features.vision_pos,
                num_obj,
                cond,
                non_cond,
                num_frames,
                reverse,
                training=False,
            )
            fo = _decode(model, pix, s0, s1, None, image_pe, True, False)
            assert fo.high_res_masks is not None
            fo.maskmem_features, fo.maskmem_pos_enc = _encode_memory(
                model, vision, fo.high_res_masks, fo.object_score_logits
            )
            non_cond[t] = fo if keep_frame_outputs else _slim(fo)
            stale = t + model.num_maskmem - 1 if reverse else t - (model.num_maskmem - 1)
            if not keep_frame_outputs and stale in non_cond and (reverse or stale > keep_after_cond):
                non_cond[stale].maskmem_features = non_cond[stale].maskmem_pos_enc = None
    return non_cond


def _collect(
    all_out: dict[int, FrameOutput], frame_size: tuple[int, int], features: FrameFeatures
) -> TrackResult:
    """Stack per-frame outputs (objects first, frames in increasing order) into a :class:`TrackResult`."""
    visited = sorted(all_out)
    return TrackResult(
        low_res_logits=torch.cat([all_out[t].low_res_masks for t in visited], dim=1),  # (O, T, h, w)
        object_score_logits=torch.cat([all_out[t].object_score_logits for t in visited], dim=1),
        obj_ptr=torch.stack([all_out[t].obj_ptr for t in visited], dim=1),
        frame_size=(int(frame_size[0]), int(frame_size[1])),
        features=features,
    )


def _slim(out: FrameOutput) -> FrameOutput:
    """Drop per-frame tensors later frames never read (keeps memory, pointer, score and low-res mask)."""
    return FrameOutput(
        low_res_masks=out.low_res_masks,
        obj_ptr=out.obj_ptr,
        object_score_logits=out.object_score_logits,
        maskmem_features=out.maskmem_features,
        maskmem_pos_enc=out.maskmem_pos_enc,
    )


def forward_train(
    model: Sam2VideoModel,
    features_or_frames: FrameFeatures | Tensor,
    hidden: Tensor,
    return_high_res: bool = False,
    detach_rope: bool = True,
) -> list[dict[str, Tensor]]:
    """Reference training forward (``SAM2Train.forward_tracking`` as modified by UniPixel).

    Frame 0 is the only conditioning frame and gets the hidden prompt tokens; frames 1..T-1 are tracked with
    memory. Masks of absent objects are *not* filled with -1024 and the conditioning frame's memory comes
    from the decoder's high-res logits. Gradients flow to ``hidden`` and to all SAM 2 parameters used.

    ``detach_rope=True`` (default) reproduces the reference's gradient cut through the RoPE'd queries/keys of
    memory attention (see :func:`_rope_attention`); ``False`` gives the mathematically complete gradient.

    Returns one dict per frame with ``multimasks`` (O, 3, h, w; also as ``low_res_multimasks``), ``ious``
    (O, 3), ``object_score_logits`` (O, 1), ``low_res_masks`` (O, 1, h, w) and, if ``return_high_res``,
    ``multimasks_high_res`` (O, 3, S, S).
    """
    hidden = _check_hidden(model, hidden)
    features = (
        features_or_frames
        if isinstance(features_or_frames, FrameFeatures)
        else encode_frames(model, features_or_frames)
    )
    num_obj = hidden.shape[0]
    num_frames = features.num_frames
    image_pe = model.get_image_wide_positional_embeddings().to(features.vision_pos.dtype)
    cond: dict[int, FrameOutput] = {}
    non_cond: dict[int, FrameOutput] = {}
    outputs: list[dict[str, Tensor]] = []
    for t in range(num_frames):
        s0, s1, vision = features.get(t)
        if t == 0:
            pix = (vision + model.no_memory_embedding.reshape(1, -1, 1, 1)).expand(num_obj, -1, -1, -1)
            fo = _decode(model, pix, s0, s1, hidden, image_pe, False, True)
        else:
            pix = _condition_on_memory(
                model,
                t,
                vision,
                features.vision_pos,
                num_obj,
                cond,
                non_cond,
                num_frames,
                False,
                training=True,
                detach_rope=detach_rope,
            )
            fo = _decode(model, pix, s0, s1, None, image_pe, False, True)
        assert fo.high_res_masks is not None and fo.multimasks is not None and fo.ious is not None
        fo.maskmem_features, fo.maskmem_pos_enc = _encode_memory(
            model, vision, fo.high_res_masks, fo.object_score_logits
        )
        (cond if t == 0 else non_cond)[t] = fo
        item = {
            "multimasks": fo.multimasks,
            "low_res_multimasks": fo.multimasks,  # same tensor, the reference fixtures' name
            "ious": fo.ious,
            "object_score_logits": fo.object_score_logits,
            "low_res_masks": fo.low_res_masks,
        }
        if return_high_res:
            assert fo.high_res_multimasks is not None
            item["multimasks_high_res"] = fo.high_res_multimasks
        outputs.append(item)
    return outputs


# ------------------------------------------------------------------------------ interactive corrections

# SAM 2 clamps the previous logits it feeds back as a mask prompt (``add_new_points_or_box``), so a NO_OBJ
# (-1024) frame becomes a strong but finite "background" prompt.
PREV_MASK_CLAMP = 32.0
POINT_LABELS = (0, 1, 2, 3)  # negative click, positive click, box top-left, box bottom-right


@dataclass(frozen=True, eq=False)
class Correction:
    """User clicks and/or a box for one object on one frame, in SAM 2 input space (``S`` x ``S`` pixels).

    ``points`` is (n, 2) as (x, y); ``labels`` (n,) holds 1 (positive click), 0 (negative click) or, for a
    box, 2 (top-left) and 3 (bottom-right) as the first two entries (SAM 2 turns boxes into these two
    points). A frame's prompt is replaced, not extended: send every click of that frame again, as SAM 2's
    ``add_new_points_or_box(clear_old_points=True)`` expects; the previous mask is fed back anyway.
    """

    object_index: int
    frame: int
    points: Tensor
    labels: Tensor

    @classmethod
    def from_box(
        cls,
        object_index: int,
        frame: int,
        box: Sequence[float],
        points: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> Correction:
        """A box ``(x0, y0, x1, y1)`` plus optional clicks, encoded as SAM 2 does (corners first)."""
        corners = torch.tensor([[box[0], box[1]], [box[2], box[3]]], dtype=torch.float32)
        corner_labels = torch.tensor([2, 3])
        if points is not None and labels is not None:
            corners = torch.cat([corners, torch.as_tensor(points, dtype=torch.float32).reshape(-1, 2)])
            corner_labels = torch.cat([corner_labels, torch.as_tensor(labels).reshape(-1)])
        return cls(object_index, frame, corners, corner_labels)


def _check_correction(c: Correction, num_obj: int, num_frames: int, size: int) -> None:
    """Reject corrections SAM 2 would silently mis-handle (wrong shapes, labels or coordinates)."""
    where = f"correction for object {c.object_index} on frame {c.frame}"
    if not isinstance(c.object_index, int) or not isinstance(c.frame, int):
        raise ValueError(f"{where}: object_index and frame must be ints")
    if not 0 <= c.object_index < num_obj:
        raise ValueError(f"{where}: object_index outside [0, {num_obj})")
    if not 0 <= c.frame < num_frames:
        raise ValueError(f"{where}: frame outside [0, {num_frames})")
    points, labels = torch.as_tensor(c.points), torch.as_tensor(c.labels)
    if points.dim() != 2 or points.shape[-1] != 2 or points.shape[0] == 0:
        raise ValueError(f"{where}: points must be (n, 2) with n >= 1, got {tuple(points.shape)}")
    if labels.shape != (points.shape[0],):
        raise ValueError(f"{where}: labels must be ({points.shape[0]},), got {tuple(labels.shape)}")
    if labels.is_floating_point() or not all(int(v) in POINT_LABELS for v in labels.tolist()):
        raise ValueError(f"{where}: labels must be integers in {POINT_LABELS}, got {labels.tolist()}")
    box_labels = [int(v) for v in labels.tolist() if v >= 2]
    if box_labels and (box_labels != [2, 3] or labels[:2].tolist() != [2, 3]):
        raise ValueError(f"{where}: a box is one (2, 3) corner pair at the start of the points")
    points = points.float()
    if not torch.isfinite(points).all() or (points < 0).any() or (points > size).any():
        raise ValueError(f"{where}: points must lie in the {size}x{size} SAM 2 input, got {points.tolist()}")


def _check_session(previous: TrackResult) -> None:
    """``previous`` must come from :func:`track`/:func:`refine` and hold every frame of the clip."""
    if not previous.cond_frames or previous.prompt_frame is None or previous.hidden is None:
        raise ValueError("previous must be a TrackResult returned by track() or refine()")
    num_frames = previous.features.num_frames
    if previous.low_res_logits.shape[1] != num_frames:
        raise ValueError(
            f"previous covers {previous.low_res_logits.shape[1]} of {num_frames} frames; "
            "track with backward=True (or cond_frame=0) before correcting"
        )


def _use_multimask(model: Sam2VideoModel, num_points: int, init_cond: bool = True) -> bool:
    """SAM 2's ``_use_multimask``: three candidate masks only for ambiguous prompts (e.g. a single click).

    ``multimask_output_in_sam`` switches candidates on at all, ``multimask_output_for_tracking`` also on frames
    without a prompt (``init_cond=False``); the point count (a box counts two; a ``<|seg|>`` prompt zero) must lie
    in ``[multimask_min_pt_num, multimask_max_pt_num]``. UniPixel's released config turns all of it on; a model
    trained from scratch may turn it off (see ``unipixel/builtin/MODEL_CARD.md``).
    """
    cfg = model.config
    if not cfg.multimask_output_in_sam or not (init_cond or cfg.multimask_output_for_tracking):
        return False
    return cfg.multimask_min_pt_num <= num_points <= cfg.multimask_max_pt_num


def _stored_output(
    model: Sam2VideoModel, previous: TrackResult, obj: int, t: int, memory: bool
) -> FrameOutput:
    """Frame ``t`` of object ``obj`` in ``previous`` (batch of one), as SAM 2's inference state stores it.

    Memories are not kept in a :class:`TrackResult`, but they are a function of what is: every inference
    memory is encoded from the frame's low-res logits upsampled to the model resolution (tracked frames'
    high-res masks are exactly that upsampling), so they are recomputed here when ``memory`` is set.
    """
    out = FrameOutput(
        low_res_masks=previous.low_res_logits[obj : obj + 1, t].unsqueeze(1),
        obj_ptr=previous.obj_ptr[obj : obj + 1, t],
        object_score_logits=previous.object_score_logits[obj : obj + 1, t].unsqueeze(1),
    )
    if memory:
        _add_cond_memory(model, previous.features.get(t)[2], out)
    return out


def _click_time_features(model: Sam2VideoModel, previous: TrackResult, obj: int, t: int) -> Tensor:
    """Memory-conditioned features of frame ``t`` as SAM 2 computes them when a tracked frame is clicked.

    A refinement click on an already tracked frame is not an initial conditioning frame in SAM 2, so the
    decoder sees the frame fused with the current memory bank: all conditioning frames and the frames
    before ``t`` in the direction ``t`` was tracked in (backward for frames before the first conditioning
    frame), exactly as stored in ``previous``.
    """
    num_frames = previous.features.num_frames
    cond_frames = previous.cond_frames[obj]
    reverse = t < cond_frames[0]
    sign = -1 if reverse else 1
    cond = {c: _stored_output(model, previous, obj, c, memory=True) for c in cond_frames}
    max_ptrs = min(num_frames, model.config.max_object_pointers_in_encoder)
    non_cond: dict[int, FrameOutput] = {}
    for t_rel in range(1, max(max_ptrs, model.num_maskmem)):
        u = t - sign * t_rel
        if 0 <= u < num_frames and u not in cond:
            non_cond[u] = _stored_output(model, previous, obj, u, memory=t_rel < model.num_maskmem)
    _, _, vision = previous.features.get(t)
    return _condition_on_memory(
        model, t, vision, previous.features.vision_pos, 1, cond, non_cond, num_frames, reverse, training=False
    )


def _decode_correction(model: Sam2VideoModel, previous: TrackResult, c: Correction) -> FrameOutput:
    """New conditioning output of one object on one frame (``add_new_points_or_box`` on a tracked frame).

    Prompt: the clicks (SAM 2's padding token follows), the ``<|seg|>`` hidden tokens when the frame is the
    object's original prompt frame (so the LLM's description still counts there), and the frame's previous
    low-res logits (clamped to +-32) as mask prompt. Masks of an absent object are NO_OBJ-filled as in
    inference. The memory is added later from the low-res logits, like every conditioning frame's.
    """
    s0, s1, _ = previous.features.get(c.frame)
    pix = _click_time_features(model, previous, c.object_index, c.frame)
    device = pix.device
    points = torch.as_tensor(c.points, dtype=torch.float32, device=device).reshape(1, 1, -1, 2)
    labels = torch.as_tensor(c.labels, device=device).to(torch.int32).reshape(1, 1, -1)
    prev_mask = previous.low_res_logits[c.object_index : c.object_index + 1, c.frame].unsqueeze(1)
    prev_mask = prev_mask.clamp(-PREV_MASK_CLAMP, PREV_MASK_CLAMP)
    assert previous.hidden is not None
    hidden = (
        previous.hidden[c.object_index : c.object_index + 1] if c.frame == previous.prompt_frame else None
    )
    image_pe = model.get_image_wide_positional_embeddings().to(previous.features.vision_pos.dtype)
    return _decode(
        model,
        pix,
        s0,
        s1,
        hidden,
        image_pe,
        True,
        False,
        points=points,
        labels=labels,
        mask_inputs=prev_mask,
    )


def _stack_outputs(outputs: Sequence[FrameOutput]) -> FrameOutput:
    """Concatenate single-object frame outputs along the object (batch) dimension."""
    return FrameOutput(
        low_res_masks=torch.cat([o.low_res_masks for o in outputs]),
        obj_ptr=torch.cat([o.obj_ptr for o in outputs]),
        object_score_logits=torch.cat([o.object_score_logits for o in outputs]),
    )


def refine(model: Sam2VideoModel, previous: TrackResult, corrections: Sequence[Correction]) -> TrackResult:
    """Apply user clicks/boxes to a track and re-propagate the corrected objects (SAM 2 interactive mode).

    Follows ``SAM2VideoPredictor.add_new_points_or_box`` then ``propagate_in_video`` (forward and reverse)
    with every corrected frame made a conditioning frame of its object (SAM 2's
    ``add_all_frames_to_correct_as_cond``):

    1. each correction is decoded on its frame's features fused with ``previous``'s memory bank, from the
       clicks plus the frame's previous logits as mask prompt (see :func:`_decode_correction`);
    2. each corrected object is re-tracked from all its conditioning frames (earlier ones keep their
       output): forward from its first conditioning frame, then backward to frame 0. Unlike a long-lived
       SAM 2 state, the re-propagation starts from the conditioning frames' memories only, so the result
       depends on the conditioning frames, not on stale tracked frames of earlier calls;
    3. objects without a correction keep ``previous``'s results unchanged.

    ``previous`` is the result of :func:`track` (covering all frames) or of an earlier :func:`refine`; chain
    calls for further rounds. At most one :class:`Correction` per (object, frame) per call.
    """
    _check_session(previous)
    num_obj, num_frames = previous.low_res_logits.shape[:2]
    seen: set[tuple[int, int]] = set()
    for c in corrections:
        _check_correction(c, num_obj, num_frames, model.config.image_size)
        if (c.object_index, c.frame) in seen:
            raise ValueError(
                f"two corrections for object {c.object_index} on frame {c.frame}; merge their points"
            )
        seen.add((c.object_index, c.frame))

    new_cond: dict[int, dict[int, FrameOutput]] = {}
    for c in corrections:
        new_cond.setdefault(c.object_index, {})[c.frame] = _decode_correction(model, previous, c)
    cond_frames = list(previous.cond_frames)
    for obj, outs in new_cond.items():
        cond_frames[obj] = tuple(sorted(set(cond_frames[obj]) | set(outs)))

    low_res = previous.low_res_logits.clone()
    scores = previous.object_score_logits.clone()
    ptrs = previous.obj_ptr.clone()
    for objs in _group_by_cond_frames(new_cond, cond_frames):
        tracked = _retrack(model, previous, objs, cond_frames[objs[0]], new_cond)
        index = torch.tensor(objs, device=low_res.device)
        low_res[index] = tracked.low_res_logits
        scores[index] = tracked.object_score_logits
        ptrs[index] = tracked.obj_ptr

    return TrackResult(
        low_res_logits=low_res,
        object_score_logits=scores,
        obj_ptr=ptrs,
        frame_size=previous.frame_size,
        features=previous.features,
        cond_frames=tuple(cond_frames),
        prompt_frame=previous.prompt_frame,
        hidden=previous.hidden,
    )


def _group_by_cond_frames(
    new_cond: dict[int, dict[int, FrameOutput]], cond_frames: Sequence[tuple[int, ...]]
) -> list[list[int]]:
    """Corrected objects sharing the same conditioning frames, which can be re-tracked as one batch."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for obj in sorted(new_cond):
        groups.setdefault(cond_frames[obj], []).append(obj)
    return list(groups.values())


def _retrack(
    model: Sam2VideoModel,
    previous: TrackResult,
    objs: list[int],
    cond_frames: tuple[int, ...],
    new_cond: dict[int, dict[int, FrameOutput]],
) -> TrackResult:
    """Propagate objects ``objs`` (same ``cond_frames``) from their new and kept conditioning outputs."""
    features = previous.features
    cond: dict[int, FrameOutput] = {}
    for t in cond_frames:
        cond[t] = _stack_outputs(
            [
                new_cond[o][t] if t in new_cond[o] else _stored_output(model, previous, o, t, False)
                for o in objs
            ]
        )
        _add_cond_memory(model, features.get(t)[2], cond[t])
    image_pe = model.get_image_wide_positional_embeddings().to(features.vision_pos.dtype)
    non_cond = _propagate(model, features, image_pe, len(objs), cond, backward=True, keep_frame_outputs=False)
    return _collect({**non_cond, **cond}, previous.frame_size, features)


class Sam2Tracker:
    """Convenience wrapper binding the loops above to one model (holds no other state)."""

    def __init__(self, model: Sam2VideoModel) -> None:
        self.model = model

    def encode_frames(self, frames: Tensor, chunk_size: int = 16, lazy: bool = False) -> FrameFeatures:
        """See :func:`encode_frames`."""
        return encode_frames(self.model, frames, chunk_size=chunk_size, lazy=lazy)

    def track(
        self,
        features: FrameFeatures,
        hidden: Tensor,
        frame_size: tuple[int, int],
        cond_frame: int = 0,
        backward: bool = True,
    ) -> TrackResult:
        """See :func:`track`."""
        return track(self.model, features, hidden, frame_size, cond_frame=cond_frame, backward=backward)

    def refine(self, previous: TrackResult, corrections: Sequence[Correction]) -> TrackResult:
        """See :func:`refine`."""
        return refine(self.model, previous, corrections)

    def forward_train(
        self,
        features_or_frames: FrameFeatures | Tensor,
        hidden: Tensor,
        return_high_res: bool = False,
        detach_rope: bool = True,
    ) -> list[dict[str, Tensor]]:
        """See :func:`forward_train`."""
        return forward_train(
            self.model, features_or_frames, hidden, return_high_res=return_high_res, detach_rope=detach_rope
        )

"""The UniPixel model: transformers' Qwen2.5-VL + SAM 2 + the pixel adapters.

Data flow of one forward (reference §1):

1. token embeddings; vision tower on the frames → video embeddings scattered into ``<|video_pad|>`` slots;
2. ``<|ref|>`` slots ← :class:`~unipixel.model.ref_prompt.RefPromptEncoder` (points/boxes + frame index);
3. ``<|mem|>`` slots ← :class:`~unipixel.model.mem_pool.MemoryPooling` (masks pooled from the merger-MLP input);
4. the Qwen2.5 language model (M-RoPE) → pre-final-norm states → logits;
5. states in front of ``<|seg|>`` → :class:`~unipixel.model.seg_head.SegHead` → SAM 2 prompt tokens → masks
   (:mod:`unipixel.sam2.tracker`), or the SAM 2 multi-step loss in training.

Nothing is cached on modules: everything a forward produced is in its output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.modeling_outputs import MultimodalCausalLMOutputWithPast
from transformers.vision_utils import get_vision_window_index

from ..configuration import UniPixelConfig
from .mem_pool import MemoryPooling
from .ref_prompt import RefPrompt, RefPromptEncoder
from .seg_head import SegHead, seg_query_positions


@dataclass
class UniPixelOutput(MultimodalCausalLMOutputWithPast):
    """Everything one forward produced.

    Beyond the causal-LM fields: ``prenorm_hidden`` (the state entering the final RMSNorm, what the seg head
    reads), ``position_ids`` (M-RoPE), ``visual_embeds`` (vision tower output, raster order),
    ``merger_mlp_input`` (window order, what ``<|mem|>`` pools), ``seg_positions`` ``(N, 2)`` (batch, position)
    of the states that drive SAM 2, ``seg_queries`` ``(N, K, d)``, ``tracks`` (SAM 2 results when frames were
    given at inference), ``lm_loss``/``seg_loss``/``seg_loss_terms`` in training.
    """

    prenorm_hidden: torch.Tensor | None = None
    position_ids: torch.Tensor | None = None
    visual_embeds: torch.Tensor | None = None
    merger_mlp_input: torch.Tensor | None = None
    seg_positions: torch.Tensor | None = None
    seg_queries: torch.Tensor | None = None
    tracks: Any = None
    lm_loss: torch.Tensor | None = None
    seg_loss: torch.Tensor | None = None
    seg_loss_terms: dict[str, torch.Tensor] | None = None
    sam2_frame_outputs: list[dict[str, torch.Tensor]] | None = None


class UniPixelForConditionalGeneration(Qwen2_5_VLForConditionalGeneration):
    """UniPixel on transformers' Qwen2.5-VL (no remote code). See the module docstring for the data flow."""

    config_class = UniPixelConfig
    config: UniPixelConfig
    _keys_to_ignore_on_load_unexpected = [r"^sam2\.", r"^ref_encoder\.", r"^ref_prompt\.ref_encoder\."]
    _keys_to_ignore_on_load_missing = [r"^sam2\.", r"^ref_prompt\.ref_encoder\."]

    def __init__(self, config: UniPixelConfig) -> None:
        super().__init__(config)
        if config.has_sam2:
            from ..checkpoint import sam2_config_of
            from ..sam2.convert import build_sam2_model

            sam2_cfg = sam2_config_of(config)
            self.sam2 = build_sam2_model(sam2_cfg)
            sam_dim = sam2_cfg.mask_decoder_config.hidden_size
            llm_dim = config.text_config.hidden_size
            vis = config.vision_config
            self.seg_head = SegHead(llm_dim, sam_dim, config.sam2_hidden_tokens)
            self.ref_prompt = RefPromptEncoder(
                sam_dim, llm_dim, config.sam2_image_size, padded_temporal_norm=config.quirk_padded_temporal_norm
            )
            self.mem_pool = MemoryPooling(
                vis.hidden_size * vis.spatial_merge_size**2,
                llm_dim,
                window_order=config.quirk_window_order_mem_pooling,
            )
        self.post_init()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: Any, *args: Any, **kwargs: Any):  # type: ignore[override]
        """Load a UniPixel checkpoint: our own saves, the released full checkpoints (legacy Qwen keys, SAM 2 in
        Meta's naming) and the reference's partial/adapter directories. See :mod:`unipixel.checkpoint`."""
        from ..checkpoint import load_unipixel

        return load_unipixel(cls, pretrained_model_name_or_path, *args, **kwargs)

    @classmethod
    def _from_pretrained_hf(cls, *args: Any, **kwargs: Any):
        """transformers' own ``from_pretrained`` (used by :func:`unipixel.checkpoint.load_unipixel`)."""
        return super().from_pretrained(*args, **kwargs)

    # ------------------------------------------------------------------ helpers
    @property
    def has_sam2(self) -> bool:
        return hasattr(self, "sam2")

    def _special_ids(self) -> dict[str, int]:
        return self.config.special_token_ids()

    def _mm_token_type_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        types = torch.zeros_like(input_ids, dtype=torch.int)
        types[input_ids == self.config.image_token_id] = 1
        types[input_ids == self.config.video_token_id] = 2
        return types

    def _encode_visual(
        self, pixel_values: torch.Tensor, grid_thw: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Vision tower → (merged embeddings in raster order, merger-MLP input in window order)."""
        visual = self.model.visual
        out = visual(pixel_values.type(visual.dtype), grid_thw=grid_thw, return_dict=True)
        merger = visual.merger
        mlp_in = merger.ln_q(out.last_hidden_state).view(-1, merger.hidden_size)
        return out.pooler_output, mlp_in

    def _scatter(self, embeds: torch.Tensor, mask: torch.Tensor, values: torch.Tensor, what: str) -> torch.Tensor:
        n = int(mask.sum())
        if n != values.shape[0]:
            raise ValueError(f"the input has {n} {what} tokens but {values.shape[0]} {what} embeddings were built")
        return embeds.masked_scatter(mask.unsqueeze(-1), values.to(embeds.dtype))

    def _ref_embeddings(
        self, ref_prompts: list[list[RefPrompt]], video_grid_thw: torch.Tensor, num_frames: list[int] | None
    ) -> torch.Tensor:
        out = []
        for b, prompts in enumerate(ref_prompts):
            gt = int(video_grid_thw[b][0])
            t = num_frames[b] if num_frames is not None else 2 * gt
            out.append(self.ref_prompt(prompts, num_frames=t, grid_t=gt))
        return torch.cat(out) if out else video_grid_thw.new_zeros(0)

    def _mem_embeddings(
        self, refer_mask: list[torch.Tensor], mlp_in: torch.Tensor, video_grid_thw: torch.Tensor
    ) -> torch.Tensor:
        merge = self.config.vision_config.spatial_merge_size
        base = 0
        pooled = []
        for b, mask in enumerate(refer_mask):
            gt, gh, gw = (int(x) for x in video_grid_thw[b])
            size = gt * gh * gw // merge**2
            window_index = None
            if not self.mem_pool.window_order:
                vis = self.config.vision_config
                window_index, _ = get_vision_window_index(
                    video_grid_thw[b : b + 1],
                    spatial_merge_size=merge,
                    window_size=vis.window_size,
                    patch_size=vis.patch_size,
                )
            if mask is not None:
                pooled.append(self.mem_pool.pool(mlp_in[base : base + size], mask.bool(), window_index))
            base += size
        rows = torch.cat(pooled) if pooled else mlp_in.new_zeros(0, mlp_in.shape[1])
        return self.mem_pool(rows)

    # ------------------------------------------------------------------ forward
    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache: Any = None,
        inputs_embeds: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        image_grid_thw: torch.LongTensor | None = None,
        video_grid_thw: torch.LongTensor | None = None,
        mm_token_type_ids: torch.IntTensor | None = None,
        second_per_grid_ts: torch.Tensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        ref_prompts: list[list[RefPrompt]] | None = None,
        ref_num_frames: list[int] | None = None,
        refer_mask: list[torch.Tensor] | None = None,
        sam2_frames: list[torch.Tensor] | None = None,
        frame_size: list[tuple[int, int]] | None = None,
        label_masks: list[torch.Tensor] | None = None,
        output_hidden_states: bool | None = None,
        prenorm_only: bool = False,
        past_key_values: Any = None,
        **kwargs: Any,
    ) -> UniPixelOutput:
        """One UniPixel forward. Beyond the Qwen2.5-VL arguments:

        * ``ref_prompts``: per batch element, the visual prompts of its ``<|ref|>`` tokens in order;
        * ``refer_mask``: per batch element, ``(gt, n_obj, gh/2, gw/2)`` bool masks for its ``<|mem|>`` tokens;
        * ``sam2_frames`` / ``frame_size``: per batch element, SAM 2 frames ``(T, 3, S, S)`` and the original
          ``(H, W)``; at inference the ``<|seg|>`` tokens of the input are tracked through them (``tracks``);
        * ``label_masks``: per batch element, ``(T, O, S, S)`` ground-truth masks of its ``<|seg|>`` tokens
          (training; with ``sam2_frames``) → SAM 2 multi-step loss added to the LM loss;
        * ``prenorm_only``: with ``output_hidden_states``, return only the pre-final-norm state (what
          :meth:`generate` collects to find ``<|seg|>`` queries) instead of every layer.
        """
        if cache is None and past_key_values is not None:
            cache = past_key_values
        if input_ids is None and inputs_embeds is None:
            raise ValueError("pass input_ids (the processor's output), not neither")
        prefill = cache is None or cache.get_seq_length() == 0
        if inputs_embeds is None:
            inputs_embeds = self.get_input_embeddings()(input_ids)

        visual_embeds = mlp_in = None
        if pixel_values_videos is not None:
            if video_grid_thw is None:
                raise ValueError("pixel_values_videos needs video_grid_thw")
            visual_embeds, mlp_in = self._encode_visual(pixel_values_videos, video_grid_thw)
            vmask = input_ids == self.config.video_token_id
            inputs_embeds = self._scatter(inputs_embeds, vmask, visual_embeds, "<|video_pad|>")
        if pixel_values is not None:
            if image_grid_thw is None:
                raise ValueError("pixel_values needs image_grid_thw")
            image_embeds, _ = self._encode_visual(pixel_values, image_grid_thw)
            imask = input_ids == self.config.image_token_id
            inputs_embeds = self._scatter(inputs_embeds, imask, image_embeds, "<|image_pad|>")

        if self.has_sam2 and input_ids is not None:
            ids = self._special_ids()
            ref_mask = input_ids == ids["ref"]
            if ref_prompts is not None:
                if video_grid_thw is None:
                    raise ValueError("<|ref|> prompts need a video input (images go in as 1-frame videos)")
                ref_emb = self._ref_embeddings(ref_prompts, video_grid_thw, ref_num_frames)
                inputs_embeds = self._scatter(inputs_embeds, ref_mask, ref_emb, "<|ref|>")
            elif prefill and bool(ref_mask.any()):
                raise ValueError(
                    f"the input has {int(ref_mask.sum())} <|ref|> tokens but no visual prompts; pass a point or box "
                    "per <|ref|> (ref_prompts)"
                )
            mem_mask = input_ids == ids["mem"]
            if refer_mask is not None:
                if mlp_in is None:
                    raise ValueError("refer_mask (<|mem|> prompts) needs the video input in the same call")
                mem_emb = self._mem_embeddings(refer_mask, mlp_in, video_grid_thw)
                inputs_embeds = self._scatter(inputs_embeds, mem_mask, mem_emb, "<|mem|>")
            elif prefill and bool(mem_mask.any()):
                raise ValueError(
                    f"the input has {int(mem_mask.sum())} <|mem|> tokens but no masks; pass refer_mask"
                )

        if position_ids is None:
            if mm_token_type_ids is None and input_ids is not None:
                mm_token_type_ids = self._mm_token_type_ids(input_ids)
            position_ids = self.model.compute_3d_position_ids(
                input_ids=input_ids,
                image_grid_thw=image_grid_thw,
                video_grid_thw=video_grid_thw,
                second_per_grid_ts=second_per_grid_ts,
                inputs_embeds=inputs_embeds,
                attention_mask=attention_mask,
                cache=cache,
                mm_token_type_ids=mm_token_type_ids,
            )

        if use_cache is None:
            use_cache = not self.training
        all_layers = bool(output_hidden_states) and not prenorm_only
        lm_out = self.model.language_model(
            input_ids=None,
            position_ids=position_ids,
            attention_mask=attention_mask,
            cache=cache,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=True if all_layers else -1,
            **kwargs,
        )
        # tie_last_hidden_states=False (see UniPixelConfig): hidden_states[-1] is the last decoder layer's output.
        prenorm = lm_out.hidden_states[-1]
        logits = self.lm_head(_slice_keep(lm_out.last_hidden_state, logits_to_keep))

        out = UniPixelOutput(
            logits=logits,
            cache=lm_out.cache,
            hidden_states=(lm_out.hidden_states if all_layers else (prenorm,)) if output_hidden_states else None,
            prenorm_hidden=prenorm,
            position_ids=position_ids,
            visual_embeds=visual_embeds,
            merger_mlp_input=mlp_in,
        )

        if labels is not None:
            out.lm_loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.text_config.vocab_size)
            out.loss = out.lm_loss

        if self.has_sam2 and self.config.sam2_enable_decoder and input_ids is not None:
            pos = seg_query_positions(input_ids, self._special_ids()["seg"])
            out.seg_positions = pos
            out.seg_queries = self.seg_head.prompt_tokens(prenorm[pos[:, 0], pos[:, 1]])
            if label_masks is not None:
                self._add_seg_loss(out, sam2_frames, label_masks)
            elif sam2_frames is not None and not self.training:
                out.tracks = self._track_batch(out, sam2_frames, frame_size, ref_prompts)
        return out

    def _add_seg_loss(
        self, out: UniPixelOutput, sam2_frames: list[torch.Tensor] | None, label_masks: list[torch.Tensor]
    ) -> None:
        """Reference training path (§1.7): per sample, all its ``<|seg|>`` tokens vs its label masks."""
        from ..sam2.loss import sam2_mask_loss
        from ..sam2.tracker import Sam2Tracker
        from .seg_align import seg_alignment_loss

        if sam2_frames is None:
            raise ValueError("label_masks need sam2_frames (the frames SAM 2 segments)")
        tracker = Sam2Tracker(self.sam2)
        align_weight = self.config.seg_align_weight
        losses, terms_all, frame_outs = [], [], []
        for b, masks in enumerate(label_masks):
            if masks is None:
                continue
            sel = out.seg_positions[:, 0] == b
            hidden = out.seg_queries[sel]
            if hidden.shape[0] != masks.shape[1]:
                raise ValueError(
                    f"sample {b} has {hidden.shape[0]} <|seg|> tokens but {masks.shape[1]} label objects"
                )
            k = self.config.sample_objects
            if k is not None and k > 0 and hidden.shape[0] > k:
                keep = torch.randperm(hidden.shape[0], device=hidden.device)[:k].sort().values
                hidden, masks = hidden[keep], masks[:, keep]
            feats = tracker.encode_frames(sam2_frames[b].to(hidden.dtype))
            preds = tracker.forward_train(feats, hidden)
            terms = sam2_mask_loss(preds, masks.to(hidden.dtype))
            loss = terms["core_loss"] / masks.shape[0]
            if align_weight > 0:  # optional query-pixel alignment on the conditioning frame (model/seg_align.py)
                align = seg_alignment_loss(hidden, feats.vision[0], masks[0])
                if align is not None:
                    terms = {**terms, "align_loss": align.detach()}
                    loss = loss + align_weight * align
            losses.append(loss)
            terms_all.append(terms)
            frame_outs.append(preds)
        if losses:
            out.seg_loss = torch.stack(losses).mean()
            out.seg_loss_terms = terms_all[0] if len(terms_all) == 1 else {
                k: torch.stack([t[k] for t in terms_all if k in t]).mean() for k in dict.fromkeys(k for t in terms_all for k in t)
            }
            out.sam2_frame_outputs = frame_outs[0] if len(frame_outs) == 1 else None
            out.loss = out.seg_loss if out.loss is None else out.loss + out.seg_loss

    def _track_batch(
        self,
        out: UniPixelOutput,
        sam2_frames: list[torch.Tensor],
        frame_size: list[tuple[int, int]] | None,
        ref_prompts: list[list[RefPrompt]] | None = None,
    ) -> list[Any]:
        """Track every ``<|seg|>`` of each sample through its frames: one encoding, one batched propagation.

        SAM 2 is conditioned on frame 0 (reference). With ``config.quirk_prompt_first_frame = False`` the k-th
        ``<|seg|>`` of a sample that also has k-th ``<|ref|>`` prompt is conditioned on that prompt's frame instead
        (PixelQA: the object is known to be there); objects sharing a conditioning frame are tracked together.
        """
        from ..sam2.tracker import Sam2Tracker

        tracker = Sam2Tracker(self.sam2)
        results = []
        for b, frames in enumerate(sam2_frames):
            hidden = out.seg_queries[out.seg_positions[:, 0] == b]
            if hidden.shape[0] == 0:
                results.append(None)
                continue
            size = tuple(int(x) for x in frame_size[b]) if frame_size is not None else tuple(frames.shape[-2:])
            feats = tracker.encode_frames(frames.to(hidden.dtype))
            cond = [0] * hidden.shape[0]
            if not self.config.quirk_prompt_first_frame and ref_prompts is not None and ref_prompts[b]:
                for k, prompt in enumerate(ref_prompts[b][: len(cond)]):
                    cond[k] = min(int(prompt.frame), frames.shape[0] - 1)
            groups = sorted(set(cond))
            if len(groups) == 1:
                results.append(tracker.track(feats, hidden, frame_size=size, cond_frame=groups[0]))
                continue
            parts = {f: [i for i, c in enumerate(cond) if c == f] for f in groups}
            tracked = {f: tracker.track(feats, hidden[idx], frame_size=size, cond_frame=f) for f, idx in parts.items()}
            results.append(_merge_tracks(tracked, parts))
        return results

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(  # type: ignore[override]
        self,
        *args: Any,
        sam2_frames: list[torch.Tensor] | None = None,
        frame_size: list[tuple[int, int]] | None = None,
        **kwargs: Any,
    ) -> Any:
        """transformers' ``generate`` plus masks for every ``<|seg|>``: those already in the input and those generated.

        Without ``sam2_frames`` this is plain Qwen2.5-VL generation. With them, the pre-norm state in front of each
        ``<|seg|>`` (input ones first, then generated ones in order, as the reference) is turned into SAM 2 prompt
        tokens and all objects of a sample are tracked in one batched pass after decoding (SAM 2 never feeds back
        into the text, so this equals the reference's interleaved decoding). Returns a
        :class:`~unipixel.model.generation.UniPixelGenerateOutput` (``sequences``, ``tracks``, ``seg_sources``...).
        A generated token counts as ``<|seg|>`` when it *is* ``<|seg|>`` (the reference tests the argmax, which is
        the same under greedy decoding).
        """
        from .generation import collect_seg_queries

        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None and kwargs.get("mm_token_type_ids") is None:
            # transformers builds M-RoPE positions for generation only when it knows which tokens are visual.
            kwargs["mm_token_type_ids"] = self._mm_token_type_ids(ids)
        if sam2_frames is None or not self.has_sam2:
            return super().generate(*args, **kwargs)
        user_dict = kwargs.pop("return_dict_in_generate", None)
        kwargs.pop("output_hidden_states", None)
        gen = super().generate(
            *args, return_dict_in_generate=True, output_hidden_states=True, prenorm_only=True, **kwargs
        )
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        queries, states, sources = collect_seg_queries(
            self, input_ids, gen, self._special_ids()["seg"], self.generation_config, kwargs
        )
        return self._finish_generate(
            gen, queries, states, sources, sam2_frames, frame_size, user_dict, kwargs.get("ref_prompts")
        )

    def _finish_generate(self, gen, queries, states, sources, sam2_frames, frame_size, user_dict, ref_prompts):  # noqa: ANN001
        from .generation import UniPixelGenerateOutput

        positions = torch.cat(
            [torch.full((q.shape[0],), b, dtype=torch.long) for b, q in enumerate(queries)]
        ) if queries else torch.zeros(0, dtype=torch.long)
        stacked = torch.cat(queries) if queries else None
        tracks = None
        if stacked is not None and stacked.shape[0] > 0:
            tmp = UniPixelOutput(seg_positions=positions[:, None].to(stacked.device), seg_queries=stacked)
            tracks = self._track_batch(tmp, sam2_frames, frame_size, ref_prompts)
        return UniPixelGenerateOutput(
            sequences=gen.sequences,
            logits=getattr(gen, "logits", None),
            scores=getattr(gen, "scores", None),
            prenorm_hidden=[h[-1] for h in gen.hidden_states] if user_dict else None,
            seg_queries=queries,
            seg_states=states,
            seg_sources=sources,
            tracks=tracks,
        )

    def prepare_inputs_for_generation(self, *args: Any, is_first_iteration: bool | None = False, **kwargs: Any):
        inputs = super().prepare_inputs_for_generation(*args, is_first_iteration=is_first_iteration, **kwargs)
        if not is_first_iteration:
            for key in ("ref_prompts", "refer_mask", "ref_num_frames"):
                inputs.pop(key, None)
        return inputs


def _merge_tracks(tracked: dict[int, Any], parts: dict[int, list[int]]) -> Any:
    """Objects tracked in groups (one per conditioning frame) → one result in the original object order."""
    from ..sam2.tracker import TrackResult

    order = [i for f in sorted(parts) for i in parts[f]]
    inverse = torch.argsort(torch.tensor(order))
    first = tracked[min(tracked)]

    def cat(name: str) -> torch.Tensor:
        return torch.cat([getattr(tracked[f], name) for f in sorted(parts)])[inverse]

    cond = [c for f in sorted(parts) for c in tracked[f].cond_frames]
    return TrackResult(
        low_res_logits=cat("low_res_logits"),
        object_score_logits=cat("object_score_logits"),
        obj_ptr=cat("obj_ptr"),
        frame_size=first.frame_size,
        features=first.features,
        cond_frames=tuple(cond[i] for i in inverse.tolist()) if cond else (),
        prompt_frame=None,
        hidden=cat("hidden") if first.hidden is not None else None,
    )


def _slice_keep(hidden: torch.Tensor, logits_to_keep: int | torch.Tensor) -> torch.Tensor:
    if isinstance(logits_to_keep, int):
        return hidden if logits_to_keep == 0 else hidden[:, -logits_to_keep:]
    return hidden[:, logits_to_keep]


__all__ = ["UniPixelForConditionalGeneration", "UniPixelOutput", "nn"]

"""Processor: chat template, frames, visual prompts → the exact model inputs of the reference.

``UniPixelProcessor`` is transformers' Qwen2.5-VL processor (tokenizer + video processor + chat template)
registered for ``pixel_qwen2_5_vl``, plus :meth:`UniPixelProcessor.prepare`, which turns decoded media, a prompt
and visual prompts in *original pixel coordinates* into the model's keyword arguments:

* frames for the LLM: smart resize (factor 28, ``min/max_pixels``), even-frame padding, fps 2
  (``second_per_grid_ts = 1``); images are 1-frame videos, as in the reference;
* the ChatML text, with the ``<|video_pad|>`` expanded to the number of merged visual tokens;
* points/boxes → :class:`~unipixel.model.ref_prompt.RefPrompt` in SAM 2 space (one per ``<|ref|>``);
* masks → ``refer_mask`` at merged-token resolution and the region prefix with one ``<|mem|>`` per object per
  temporal group (reference §4.4);
* SAM 2 frames ``(T, 3, S, S)`` and the original frame size.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import Qwen2_5_VLProcessor

from .media import Media, llm_video_inputs, sam2_transform
from .model.ref_prompt import RefPrompt
from .tokenizer import MEM_TOKEN, REF_TOKEN
from .visual_prompts import box_to_sam, build_refer_mask, mem_prompt_text, point_to_sam

DEFAULT_SYSTEM = None  # the chat template's default ("You are a helpful assistant.")


@dataclass
class ObjectPrompt:
    """A visual prompt for one object on media frame ``frame`` (position among the loaded frames).

    Exactly one of ``point`` (x, y), ``box`` (x1, y1, x2, y2) — original pixel coordinates — or ``mask``
    (bool (H, W) on that frame, or (T, H, W) over all frames). Points and boxes become ``<|ref|>`` tokens,
    masks become ``<|mem|>`` tokens.
    """

    frame: int = 0
    point: Sequence[float] | None = None
    box: Sequence[float] | None = None
    mask: Any = None

    @property
    def kind(self) -> str:
        given = [k for k in ("point", "box", "mask") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"an object prompt needs exactly one of point, box or mask; got {given or 'none'}")
        return given[0]


@dataclass
class PreparedInputs:
    """Model keyword arguments plus what a caller needs to interpret the outputs."""

    model_kwargs: dict[str, Any]
    text: str
    frame_indices: list[int]
    llm_num_frames: int
    frame_size: tuple[int, int]
    mem_objects: list[int] = field(default_factory=list)
    ref_objects: list[int] = field(default_factory=list)


class UniPixelProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor + UniPixel's visual-prompt handling (see the module docstring)."""

    def build_text(
        self,
        user_text: str,
        response: str | None = None,
        assistant_prefix: str | None = None,
        history: Sequence[tuple[str, str]] = (),
        system: str | None = DEFAULT_SYSTEM,
    ) -> str:
        """ChatML text: the first user turn holds the video; ``history`` holds earlier (user, assistant) turns
        *after* the first one... in order; ``response`` closes the last turn (teacher forcing), otherwise the
        assistant turn is opened and ``assistant_prefix`` is appended (forced answer start)."""
        messages: list[dict[str, Any]] = []
        if system is not None:
            messages.append({"role": "system", "content": system})
        turns = [*history, (user_text, response)] if history else [(user_text, response)]
        for i, (user, answer) in enumerate(turns):
            content: Any = [{"type": "video"}, {"type": "text", "text": user}] if i == 0 else user
            messages.append({"role": "user", "content": content})
            if answer is not None:
                messages.append({"role": "assistant", "content": answer})
        text = self.apply_chat_template(messages, tokenize=False, add_generation_prompt=response is None)
        if response is None and assistant_prefix:
            text += assistant_prefix
        return text

    def prepare(
        self,
        media: Media,
        prompt: str,
        *,
        objects: Sequence[ObjectPrompt] = (),
        response: str | None = None,
        assistant_prefix: str | None = None,
        history: Sequence[tuple[str, str]] = (),
        min_pixels: int = 128 * 28 * 28,
        max_pixels: int = 256 * 28 * 28,
        sam2_image_size: int | None = 768,
        sam2_media: Media | None = None,
        int_box_coords: bool = True,
        mem_object_ids: Sequence[int] | None = None,
    ) -> PreparedInputs:
        """Build one sample's model inputs. ``history`` = earlier (user, assistant) turns, the first of which
        carries the video; ``prompt`` is then the newest user turn. ``sam2_media`` (default: ``media``) holds
        the frames SAM 2 segments; ``sam2_image_size=None`` skips SAM 2 inputs (text-only tasks).
        ``mem_object_ids`` names the mask-prompted objects in the region prefix (default 0, 1, ...)."""
        if media.num_frames == 0:
            raise ValueError("the media has no frames")
        frames = media.frames
        llm = llm_video_inputs(frames, self, min_pixels, max_pixels)
        grid = llm["video_grid_thw"][0]
        h, w = media.frame_size

        ref_prompts: list[RefPrompt] = []
        ref_objects, mem_objects, masks = [], [], []
        for i, obj in enumerate(objects):
            kind = obj.kind
            if not 0 <= obj.frame < media.num_frames:
                raise ValueError(
                    f"object {i}: prompt frame {obj.frame} is outside the {media.num_frames} loaded frames"
                )
            if kind == "point":
                sp = point_to_sam(obj.point, (h, w), sam2_image_size or 768)
                ref_prompts.append(RefPrompt(sp.coords[0], sp.labels[0], obj.frame))
                ref_objects.append(i)
            elif kind == "box":
                sp = box_to_sam(obj.box, (h, w), sam2_image_size or 768, int_box_coords=int_box_coords)
                ref_prompts.append(RefPrompt(sp.coords[0], sp.labels[0], obj.frame))
                ref_objects.append(i)
            else:
                masks.append(self._mask_track(obj, media, i))
                mem_objects.append(i)

        user_text = prompt
        refer_mask = None
        if masks:
            refer_mask = build_refer_mask(torch.stack(masks, dim=1), grid)
            prefix = mem_prompt_text(
                refer_mask, num_frames=media.num_frames, is_image=media.is_image, object_ids=mem_object_ids
            )
            user_text = prefix + prompt if not history else prompt
            if history:
                first_user, first_answer = history[0]
                history = [(prefix + first_user, first_answer), *history[1:]]
        text = self.build_text(user_text, response, assistant_prefix, history)
        n_ref = text.count(REF_TOKEN)
        if n_ref != len(ref_prompts):
            raise ValueError(
                f"the prompt has {n_ref} {REF_TOKEN} tokens but {len(ref_prompts)} point/box prompts were given; "
                f"write one {REF_TOKEN} per point/box (e.g. 'What is [0] {REF_TOKEN} doing?')"
            )
        if refer_mask is None and MEM_TOKEN in text:
            raise ValueError(f"the prompt contains {MEM_TOKEN} but no mask prompts were given")

        merge = self.video_processor.merge_size
        n_visual = int(grid.prod()) // merge**2
        video_token = self.tokenizer.convert_ids_to_tokens(self.video_token_id)
        if text.count(video_token) != 1:
            raise ValueError("the text must hold exactly one video placeholder")
        expanded = text.replace(video_token, video_token * n_visual)
        enc = self.tokenizer(expanded, return_tensors="pt", add_special_tokens=False)

        kwargs: dict[str, Any] = {
            "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"],
            **llm,
        }
        if ref_prompts:
            kwargs["ref_prompts"] = [ref_prompts]
            kwargs["ref_num_frames"] = [media.num_frames]
        if refer_mask is not None:
            kwargs["refer_mask"] = [refer_mask]
        seg_media = sam2_media or media
        if sam2_image_size is not None:
            kwargs["sam2_frames"] = [sam2_transform(seg_media.frames, sam2_image_size)]
            kwargs["frame_size"] = [seg_media.frame_size]
        return PreparedInputs(
            model_kwargs=kwargs,
            text=text,
            frame_indices=[int(x) for x in np.asarray(seg_media.frame_indices).tolist()],
            llm_num_frames=media.num_frames,
            frame_size=seg_media.frame_size,
            mem_objects=mem_objects,
            ref_objects=ref_objects,
        )

    @staticmethod
    def _mask_track(obj: ObjectPrompt, media: Media, i: int) -> torch.Tensor:
        """A mask prompt as a (T, H, W) bool track over the loaded frames."""
        m = torch.as_tensor(np.asarray(obj.mask)).bool()
        t, (h, w) = media.num_frames, media.frame_size
        if m.shape == (h, w):
            track = torch.zeros(t, h, w, dtype=torch.bool)
            track[obj.frame] = m
            m = track
        if m.shape != (t, h, w):
            raise ValueError(
                f"object {i}: mask has shape {tuple(m.shape)}; expected ({h}, {w}) for frame {obj.frame} or "
                f"({t}, {h}, {w}) for all loaded frames"
            )
        if not m.any():
            raise ValueError(f"object {i}: the mask prompt is empty")
        return m


class PatchedQwen2_5_VLProcessor(UniPixelProcessor):  # noqa: N801 - the name released checkpoints record
    """Alias: released checkpoints' processor configs name the reference's ``PatchedQwen2_5_VLProcessor``;
    transformers resolves that name to this class, so ``AutoProcessor`` works on them unchanged."""

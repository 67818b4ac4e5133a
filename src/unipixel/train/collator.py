"""Batching training features (reference §4.6 "Collator").

Token tensors are right-padded (``input_ids`` with the pad id, ``labels`` with ``-100``, ``attention_mask`` 0);
the vision-tower inputs of all samples are concatenated (the model splits them again by ``video_grid_thw``);
everything that is per sample and ragged — ``<|ref|>`` prompts, ``refer_mask``, SAM 2 frames, label masks — stays
a Python list with one entry per sample (``None`` where a sample has none), which is what
:meth:`UniPixelForConditionalGeneration.forward` takes. Keys whose entries are all ``None`` are dropped, so a
text-only batch never carries SAM 2 inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from .dataset import IGNORE_INDEX

__all__ = ["UniPixelCollator"]

_LIST_KEYS = ("refer_mask", "sam2_frames", "label_masks")
_DROP_KEYS = ("data_type", "sample_id")
_KNOWN_KEYS = {
    "input_ids", "labels", "attention_mask", "pixel_values_videos", "video_grid_thw", "second_per_grid_ts",
    "ref_prompts", "ref_num_frames", *_LIST_KEYS, *_DROP_KEYS,
}  # fmt: skip


@dataclass
class UniPixelCollator:
    """``collator(features) -> model kwargs``; ``pad_token_id`` is the tokenizer's pad id (``<|endoftext|>``)."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if not features:
            raise ValueError("cannot collate an empty batch")
        lengths = [int(f["input_ids"].shape[-1]) for f in features]
        width = max(lengths)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of
        b = len(features)
        input_ids = torch.full((b, width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((b, width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((b, width), dtype=torch.long)
        for i, (f, n) in enumerate(zip(features, lengths, strict=True)):
            input_ids[i, :n] = f["input_ids"].reshape(-1)
            labels[i, :n] = f["labels"].reshape(-1)
            attention_mask[i, :n] = 1
        batch: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}

        with_video = [f for f in features if f.get("pixel_values_videos") is not None]
        if with_video and len(with_video) != b:
            raise ValueError("every sample of a batch must have media (text-only samples are not supported)")
        if with_video:
            batch["pixel_values_videos"] = torch.cat([f["pixel_values_videos"] for f in features])
            batch["video_grid_thw"] = torch.cat([f["video_grid_thw"].reshape(-1, 3) for f in features])
            batch["second_per_grid_ts"] = torch.cat([f["second_per_grid_ts"].reshape(-1) for f in features])

        if any(f.get("ref_prompts") for f in features):
            batch["ref_prompts"] = [list(f.get("ref_prompts") or []) for f in features]
            batch["ref_num_frames"] = [int(f["ref_num_frames"]) for f in features]
        for key in _LIST_KEYS:
            values = [f.get(key) for f in features]
            if any(v is not None for v in values):
                batch[key] = values
        unknown = set().union(*(f.keys() for f in features)) - _KNOWN_KEYS
        if unknown:
            raise ValueError(f"the collator does not know how to batch {sorted(unknown)}")
        return batch

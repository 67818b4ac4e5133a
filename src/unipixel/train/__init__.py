"""Training UniPixel: samples → features, type-grouped batches, the three-stage presets and the Trainer.

* :mod:`.dataset` — :func:`build_features` (Sample → model inputs + labels + SAM 2 targets), frame sampling that
  keeps prompt frames, :class:`MixedSamples` (``name:repeat`` mixtures), :class:`UniPixelTrainDataset`;
* :mod:`.collator` — :class:`UniPixelCollator` (right padding, per-sample lists);
* :mod:`.sampler` — :class:`TypeGroupedSampler` (one data type per step on all ranks);
* :mod:`.stages` — :data:`STAGES` presets, :func:`apply_tuning` (freezing + LoRA);
* :mod:`.build` — :func:`load_model_for_training` (checkpoint, or Qwen2.5-VL base + SAM 2 .pt + earlier stages);
* :mod:`.trainer` — :class:`UniPixelTrainer` (LR groups, partial checkpoints, merged full save, resume);
* :mod:`.cli` — ``unipixel train``; ``configs/`` — DeepSpeed ZeRO-2/3 JSON, accelerate DDP/DeepSpeed/FSDP YAML.

Attributes are imported lazily so that ``unipixel train --help`` does not import the Trainer stack.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "FeatureConfig": "dataset",
    "build_features": "dataset",
    "sample_training_frames": "dataset",
    "assistant_labels": "dataset",
    "MixedSamples": "dataset",
    "DatasetSpec": "dataset",
    "parse_dataset_spec": "dataset",
    "UniPixelTrainDataset": "dataset",
    "load_samples_jsonl": "dataset",
    "UniPixelCollator": "collator",
    "TypeGroupedSampler": "sampler",
    "StagePreset": "stages",
    "STAGES": "stages",
    "get_stage": "stages",
    "apply_tuning": "stages",
    "load_model_for_training": "build",
    "apply_partial_checkpoint": "build",
    "UniPixelTrainer": "trainer",
    "save_partial": "trainer",
    "save_full": "trainer",
    "load_partial_into": "trainer",
    "enable_gradient_checkpointing": "trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)

"""SAM 2 for UniPixel, built from transformers' SAM 2 video building blocks.

* :mod:`.config` — resolve UniPixel's ``sam2_config`` names (built-in SAM 2.1 t/s/b+/l or Meta-style YAML)
  into a :class:`transformers.Sam2VideoConfig` at the requested resolution;
* :mod:`.convert` — Meta <-> transformers state-dict naming (``sam2.*`` and the standalone ``ref_encoder.*``)
  and :func:`build_sam2_model`;
* :mod:`.tracker` — encode frames once, then segment/track all ``<|seg|>`` objects in one batched pass
  (inference) or run the reference training forward;
* :mod:`.loss` — the SAM 2 multi-step mask loss with UniPixel's weights.
"""

from .config import BUILTIN_SAM2_CONFIGS, Sam2ConfigError, resolve_sam2_config
from .convert import (
    UnknownKeysError,
    build_sam2_model,
    hf_to_meta,
    load_sam2_meta_state_dict,
    meta_to_hf,
    prompt_encoder_hf_to_meta,
    prompt_encoder_meta_to_hf,
)
from .loss import Sam2MultiStepLoss, sam2_mask_loss
from .tracker import (
    NO_OBJ_SCORE,
    Correction,
    FrameFeatures,
    FrameOutput,
    Sam2Tracker,
    TrackResult,
    encode_frames,
    forward_train,
    refine,
    track,
)

__all__ = [
    "BUILTIN_SAM2_CONFIGS",
    "Correction",
    "refine",
    "NO_OBJ_SCORE",
    "FrameFeatures",
    "FrameOutput",
    "Sam2ConfigError",
    "Sam2MultiStepLoss",
    "Sam2Tracker",
    "TrackResult",
    "UnknownKeysError",
    "build_sam2_model",
    "encode_frames",
    "forward_train",
    "hf_to_meta",
    "load_sam2_meta_state_dict",
    "meta_to_hf",
    "prompt_encoder_hf_to_meta",
    "prompt_encoder_meta_to_hf",
    "resolve_sam2_config",
    "sam2_mask_loss",
    "track",
]

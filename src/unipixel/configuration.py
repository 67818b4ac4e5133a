"""UniPixel configuration: a Qwen2.5-VL config plus the SAM 2 and adapter fields of the released checkpoints.

The released UniPixel-3B/7B ``config.json`` files are read as they are (``model_type: pixel_qwen2_5_vl``, flat
or nested text/vision configs, every extra field the reference's ``ModelArguments`` wrote). Reference quirks
that the released weights were trained with are reproduced by default and each can be switched off for newly
trained models (see :class:`UniPixelConfig`).
"""

from __future__ import annotations

from typing import Any

from transformers import Qwen2_5_VLConfig

MODEL_TYPE = "pixel_qwen2_5_vl"

# Fields the reference wrote into config.json (ModelArguments); kept verbatim so a save round-trips.
_REFERENCE_FIELDS: dict[str, Any] = {
    "base_model": "qwen2_5_vl",
    "base_model_path": None,
    "model_name_or_path": None,
    "conv_type": "chatml",
    "partial_checkpoint": None,
    "sam2_config": None,
    "sam2_checkpoint": None,
    "sam2_image_size": 768,
    "sam2_hidden_tokens": 2,
    "sam2_batch_mode": False,
    "sam2_apply_postprocessing": False,
    "sam2_enable_decoder": True,
    "sam2_inference_mode": False,
    "sample_objects": -1,
    "ref_token_id": None,
    "seg_token_id": None,
    "mem_token_id": None,
}

# Training switches of this implementation (not in the reference); their defaults are the reference's behaviour.
_TRAINING_FIELDS: dict[str, Any] = {
    # weight of the query-pixel alignment loss (unipixel.model.seg_align); 0 = the reference's loss only
    "seg_align_weight": 0.0,
}

# Reference behaviours reproduced by default (True = behave like the released checkpoints).
_QUIRK_FIELDS: dict[str, bool] = {
    # §1.6: merger-MLP inputs are in ViT window order but indexed with a raster-order mask.
    "quirk_window_order_mem_pooling": True,
    # Golden/infer path: box corners are cast to int32 in SAM 2 space before encoding.
    "quirk_int_box_coords": True,
    # §10.10: the <|ref|> temporal PE normalises the frame index by the even-padded frame count (2*gt - 1).
    "quirk_padded_temporal_norm": True,
    # §10.3: SAM 2 is prompted on frame 0 whatever frame the object was referred on.
    "quirk_prompt_first_frame": True,
}


def _modernise_rope(kwargs: dict[str, Any]) -> None:
    """Released (transformers 4.x) configs carry M-RoPE as ``rope_scaling`` (+ ``rope_theta``), at the top level and
    in ``text_config``; transformers 5 reads ``text_config.rope_parameters``. Rewrite the legacy form in place (same
    values, the duplicate ``type`` key dropped) so that loading a released checkpoint prints no deprecation noise."""
    text = kwargs.get("text_config")
    if not isinstance(text, dict):
        return  # a flat (Qwen2.5-VL base) config: transformers builds text_config from the top-level keys
    top_scaling, top_theta = kwargs.pop("rope_scaling", None), kwargs.pop("rope_theta", None)
    scaling = text.pop("rope_scaling", None) or top_scaling
    theta = text.pop("rope_theta", None) or top_theta
    if scaling is None or text.get("rope_parameters") is not None:
        if theta is not None and text.get("rope_parameters") is None:
            text["rope_theta"] = theta
        return
    params = {k: v for k, v in scaling.items() if k != "type"}
    params.setdefault("rope_type", scaling.get("type", "default"))
    if theta is not None:
        params.setdefault("rope_theta", theta)
    text["rope_parameters"] = params


class UniPixelConfig(Qwen2_5_VLConfig):
    """Configuration of a UniPixel model (``model_type = "pixel_qwen2_5_vl"``).

    Everything a Qwen2.5-VL config holds, plus:

    * ``sam2_config``: the SAM 2 architecture name as the reference wrote it (``configs/sam2.1_hiera_b+``); resolved
      through a built-in table or a YAML file shipped beside the checkpoint. The resolved architecture is stored
      in ``sam2_arch`` (a plain dict) so a saved model reloads without the YAML.
    * ``sam2_image_size`` (S), ``sam2_hidden_tokens`` (K prompt tokens per ``<|seg|>``), ``ref/seg/mem_token_id``.
    * Reference quirk switches, all ``True`` by default because the released weights were trained with them:

      - ``quirk_window_order_mem_pooling``: pool ``<|mem|>`` features in ViT window order with a raster mask;
      - ``quirk_int_box_coords``: box prompts become int32 pixel coordinates in SAM 2 space;
      - ``quirk_padded_temporal_norm``: normalise the ``<|ref|>`` frame index by ``2*gt-1`` instead of ``T-1``;
      - ``quirk_prompt_first_frame``: condition SAM 2 on frame 0 rather than on the frame an object was referred on.
    * ``seg_align_weight``: weight of this implementation's optional query-pixel alignment loss in training
      (:mod:`unipixel.model.seg_align`); 0 (default) trains with the reference's loss only.
    """

    model_type = MODEL_TYPE

    def __init__(self, sam2_arch: dict[str, Any] | None = None, **kwargs: Any) -> None:
        extras = {k: kwargs.pop(k, v) for k, v in {**_REFERENCE_FIELDS, **_TRAINING_FIELDS, **_QUIRK_FIELDS}.items()}
        _modernise_rope(kwargs)
        super().__init__(**kwargs)
        for key, value in extras.items():
            setattr(self, key, value)
        self.sam2_arch = sam2_arch
        # The seg head reads the state *entering* the final RMSNorm: ask transformers to keep it as hidden_states[-1].
        self.text_config.tie_last_hidden_states = False

    @property
    def has_sam2(self) -> bool:
        """Whether this configuration carries the SAM 2 decoder and the pixel adapters."""
        return self.sam2_config is not None or self.sam2_arch is not None

    def special_token_ids(self) -> dict[str, int]:
        """The ids of ``<|ref|>``, ``<|seg|>`` and ``<|mem|>``; raises if the config lacks them."""
        ids = {"ref": self.ref_token_id, "seg": self.seg_token_id, "mem": self.mem_token_id}
        missing = [k for k, v in ids.items() if v is None]
        if missing:
            raise ValueError(
                f"config has no {', '.join(m + '_token_id' for m in missing)}; set them to the tokenizer ids of "
                "<|ref|>, <|seg|>, <|mem|> (see unipixel.tokenizer.add_unipixel_tokens)."
            )
        return ids

"""Helpers for the SAM 2 golden-parity tests: everything is read from golden.json and the checkpoint."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from unipixel.sam2 import build_sam2_model, meta_to_hf, resolve_sam2_config

GOLDEN = Path(__file__).parent / "data" / "golden"
CKPT = GOLDEN / "ckpt_tiny"
ATOL = RTOL = 1e-4
BINARY_MARGIN = 1e-4


@functools.lru_cache(maxsize=1)
def manifest() -> dict[str, Any]:
    return json.loads((GOLDEN / "golden.json").read_text())


@functools.lru_cache(maxsize=1)
def ckpt_config() -> dict[str, Any]:
    return json.loads((CKPT / "config.json").read_text())


@functools.lru_cache(maxsize=1)
def ckpt_state_dict() -> dict[str, torch.Tensor]:
    return load_file(str(CKPT / "model.safetensors"))


def sam2_search_dirs() -> list[Path]:
    return [CKPT / "sam2_configs", GOLDEN / "sam2_configs", CKPT]


@functools.lru_cache(maxsize=1)
def sam2_config():
    cfg = ckpt_config()
    return resolve_sam2_config(cfg["sam2_config"], cfg["sam2_image_size"], sam2_search_dirs())


def case_names(*, with_seg: bool = False, training: bool = False) -> list[str]:
    out = []
    for name, info in manifest()["cases"].items():
        files = manifest()["files"][info["file"]]
        if with_seg and "output.seg.0.hidden" in files:
            out.append(name)
        if training and "output.sam2.0.low_res_multimasks" in files:
            out.append(name)
    return out


@functools.cache
def case_data(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / manifest()["cases"][name]["file"]))


@functools.cache
def video_inputs(name: str) -> dict[str, torch.Tensor]:
    return load_file(str(GOLDEN / f"inputs_video_{manifest()['cases'][name]['video']}.safetensors"))


def overrides(name: str) -> dict[str, torch.Tensor]:
    return {k[len("override.") :]: v for k, v in case_data(name).items() if k.startswith("override.")}


@functools.cache
def _model_for(override_key: tuple[str, ...], name: str | None) -> torch.nn.Module:
    sd = dict(ckpt_state_dict())
    if name is not None:
        sd.update(overrides(name))
    model = build_sam2_model(sam2_config())
    model.load_state_dict(meta_to_hf(sd, prefix="sam2."), strict=True)
    return model


def model_for_case(name: str) -> torch.nn.Module:
    """SAM 2 model with the checkpoint weights plus the case's ``override.*`` tensors (shared when none)."""
    ov = tuple(sorted(overrides(name)))
    return _model_for(ov, name if ov else None)


def num_segs(name: str) -> int:
    files = manifest()["files"][manifest()["cases"][name]["file"]]
    n = 0
    while f"output.seg.{n}.hidden" in files:
        n += 1
    return n


def training_hidden(name: str) -> torch.Tensor:
    """Hidden prompt tokens (O, K, D) of a training case: seg-head rows preceding each ``<|seg|>``."""
    data = case_data(name)
    seg_id = ckpt_config()["seg_token_id"]
    k = ckpt_config()["sam2_hidden_tokens"]
    ids = data["input.input_ids"]
    pos = (ids[1:] == seg_id).nonzero()[:, 0]
    rows = data["output.seg_head_out"][pos]
    return rows.reshape(len(pos), k, rows.shape[-1] // k)


def assert_close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> float:
    actual = actual.detach().float()
    expected = expected.float()
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    diff = (actual - expected).abs().max().item() if actual.numel() else 0.0
    torch.testing.assert_close(actual, expected, atol=ATOL, rtol=RTOL, msg=lambda m: f"{what}: {m}")
    return diff


def assert_binary_equal(
    logits: torch.Tensor, expected_mask: torch.Tensor, stored_logits: torch.Tensor, what: str
):
    confident = stored_logits.abs() > BINARY_MARGIN
    got = logits > 0
    bad = (got != expected_mask.bool()) & confident
    assert not bad.any(), f"{what}: {int(bad.sum())} confident pixels differ"

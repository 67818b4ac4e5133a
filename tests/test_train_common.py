"""Shared helpers of the training tests (no tests here): tiny synthetic samples and trainer construction.

Also imported by the 2-process DDP script that ``test_train_distributed.py`` launches, so it must not depend on
pytest fixtures.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from unipixel.data.masks import encode_mask
from unipixel.data.schema import MediaRef, ObjectAnnotation, Sample, Turn, VisualPrompt, validate_sample

GOLDEN = Path(__file__).parent / "data" / "golden"
CKPT = GOLDEN / "ckpt_tiny"
H, W = 112, 168
# The golden fixtures' LLM pixel budget: a 112x168 frame becomes an 8x12 patch grid.
PIXELS = {"min_pixels": 3136, "max_pixels": 25088, "scale_pixels_by_frames": False}


def _frames(folder: Path, n: int, seed: int) -> tuple[list[str], np.ndarray]:
    """``n`` frames with a red rectangle moving right; returns the files and the (n, H, W) object masks."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    files, masks = [], np.zeros((n, H, W), dtype=bool)
    x0, y0 = int(rng.integers(10, 60)), int(rng.integers(10, 50))
    for t in range(n):
        img = np.full((H, W, 3), 40, dtype=np.uint8)
        img[:, :, 2] = rng.integers(0, 60, size=(H, W), dtype=np.uint8)
        x = x0 + 8 * t
        img[y0 : y0 + 30, x : x + 40] = (220, 30, 30)
        masks[t, y0 : y0 + 30, x : x + 40] = True
        f = folder / f"{t:05d}.png"
        Image.fromarray(img).save(f)
        files.append(str(f))
    return files, masks


def make_samples(root: Path, n: int = 4, frames: int = 4, kinds: tuple[str, ...] = ("seg", "ref")) -> list[Sample]:
    """Tiny samples cycling through ``kinds``: ``seg`` (text query → ``<|seg|>``), ``ref`` (point ``<|ref|>`` →
    ``[0] <|seg|>``), ``box`` (box ``<|ref|>`` → caption), ``mem`` (mask prompt → caption)."""
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        files, masks = _frames(root / f"s{i}", frames, seed=i)
        rles = {t: encode_mask(masks[t]) for t in range(frames)}
        ys, xs = np.nonzero(masks[1])
        if kind == "seg":
            conv = [("user", "Please segment the red box."), ("assistant", "Sure, it is <|seg|>.")]
            objs = [ObjectAnnotation(0, rles)]
            task = "ref_seg"
        elif kind == "ref":
            conv = [("user", "Find [0] <|ref|> in the video."), ("assistant", "[0] <|seg|>")]
            point = [float(xs.mean()), float(ys.mean())]
            objs = [ObjectAnnotation(0, rles, VisualPrompt("point", frame=1, point=point))]
            task = "pixelqa"
        elif kind == "box":
            conv = [("user", "What is [0] <|ref|>?"), ("assistant", "A red box moving right.")]
            box = [float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
            objs = [ObjectAnnotation(0, {}, VisualPrompt("box", frame=1, box=box))]
            task = "region_caption"
        else:
            conv = [("user", "Describe [0]."), ("assistant", "A red box."), ("user", "Color?"), ("assistant", "Red.")]
            objs = [ObjectAnnotation(0, rles, VisualPrompt("mask", frame=0))]
            task = "region_qa"
        s = Sample(f"synthetic/{i}", task, MediaRef(frames=files), [Turn(r, t) for r, t in conv], objs)
        validate_sample(s)
        out.append(s)
    return out


def load_golden_model(**kwargs: Any) -> Any:
    from unipixel import UniPixelForConditionalGeneration

    torch.manual_seed(0)
    return UniPixelForConditionalGeneration.from_pretrained(
        CKPT, sam2_config_dirs=[GOLDEN / "sam2_configs"], attn_implementation="sdpa", **kwargs
    )


def build_reference_dirs(tmp: Path) -> tuple[Path, Path]:
    """Base Qwen2.5-VL checkpoint + SAM 2 ``.pt`` cut out of the golden checkpoint, the layout partial
    checkpoints point at through ``base_model_path`` / ``sam2_checkpoint``."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(CKPT / "model.safetensors"))
    manifest = json.loads((GOLDEN / "golden.json").read_text())
    base = tmp / "model_zoo" / "base"
    base.mkdir(parents=True)
    save_file({k: v for k, v in sd.items() if k.startswith(("model.", "visual."))}, str(base / "model.safetensors"))
    (base / "config.json").write_text(json.dumps(manifest["config"]["flat_qwen_config"]))
    for f in CKPT.iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy(f, base / f.name)
    sam = {k[len("sam2.") :]: v for k, v in sd.items() if k.startswith("sam2.")}
    pt = tmp / "model_zoo" / "sam2.pt"
    torch.save({"model": sam}, pt)
    return base, pt


def training_args(out: Path, **kw: Any) -> Any:
    from transformers import TrainingArguments

    base = dict(
        output_dir=str(out),
        per_device_train_batch_size=1,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        max_steps=1,
        lr_scheduler_type="constant",
        warmup_steps=0,
        optim="adamw_torch",
        weight_decay=0.0,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        disable_tqdm=True,
        ddp_find_unused_parameters=True,
    )
    base.update(kw)
    return TrainingArguments(**base)

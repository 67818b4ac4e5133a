"""Promptable-segmentation pre-training of SAM 2 (clicks and boxes → masks), as SAM 2 itself is trained.

UniPixel starts from a *pretrained* SAM 2.1, whose image encoder already separates objects and whose mask
decoder already segments "the object the prompt points at". A model trained from random weights (the built-in
model) has neither, and joint training alone gets stuck in a bad optimum: the decoder learns to segment a default
object (or, with three candidate masks and the min-over-masks loss, a different object per candidate) and never
starts to read the ``<|seg|>`` query. This module supplies the missing pretraining on any data with object masks:
for every frame, each object is prompted by a random click inside its mask or by its (jittered) box, and SAM 2
(image encoder, prompt encoder, mask decoder) is trained with its own loss
(:class:`unipixel.sam2.loss.Sam2MultiStepLoss`).

Only SAM 2 is touched; the rest of the checkpoint is saved unchanged, so the result is a complete UniPixel
checkpoint to continue training from (``unipixel train --model OUT``). Entry point:
``python -m unipixel.train.sam2_prompts --model DIR --samples FILE.jsonl --out DIR [--steps N]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["FrameObjects", "collect_frame_objects", "prompt_batch", "sam2_param_groups", "sam2_prompt_loss", "train_sam2_prompts", "main"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FrameObjects:
    """One frame of one media file and the distinct single-object masks annotated on it (COCO RLEs)."""

    source: str | tuple[str, ...]
    is_image: bool
    frame: int  # position in the media's frame list
    rles: tuple[dict[str, Any], ...]


def _single_object(sample: Any, obj: Any) -> bool:
    """False for the union mask of a multi-target expression (one ``<|seg|>`` for several objects)."""
    meta = sample.meta
    targets = meta.get("targets")
    several = isinstance(targets, list) and len(targets) > 1
    union = meta.get("multi") == "union" or (several and meta.get("multi") != "ids")
    return not union and "scene_ids" not in (obj.attributes or {})


def collect_frame_objects(samples: Sequence[Any], max_objects: int = 8) -> list[FrameObjects]:
    """Group the single-object masks of ``samples`` by (media, frame), dropping duplicates and empty masks.

    Many samples share a scene; grouping encodes every frame once per step however many objects it has.
    """
    by_frame: dict[tuple[Any, int], dict[str, dict[str, Any]]] = {}
    kinds: dict[tuple[Any, int], bool] = {}
    for s in samples:
        m = s.media
        source: str | tuple[str, ...] = tuple(m.frames) if m.frames is not None else str(m.path)
        for obj in s.objects:
            if not obj.masks or not _single_object(s, obj):
                continue
            for t, rle in obj.masks.items():
                counts = rle["counts"] if isinstance(rle["counts"], str) else rle["counts"].decode()
                if _rle_area(rle) == 0:
                    continue
                key = (source, int(t))
                by_frame.setdefault(key, {})[counts] = rle
                kinds[key] = bool(m.is_image)
    out = []
    for key in sorted(by_frame, key=str):
        rles = tuple(by_frame[key].values())[:max_objects]
        out.append(FrameObjects(key[0], kinds[key], key[1], rles))
    return out


def _rle_area(rle: dict[str, Any]) -> int:
    import pycocotools.mask as mask_utils

    r = dict(rle)
    if isinstance(r["counts"], str):
        r["counts"] = r["counts"].encode()
    return int(mask_utils.area(r))


def _load_frame(fo: FrameObjects) -> np.ndarray:
    from ..media import load_media

    if fo.is_image:
        return load_media(fo.source if isinstance(fo.source, str) else fo.source[0]).frames[0]
    if isinstance(fo.source, tuple):
        return load_media(fo.source[fo.frame]).frames[0]
    return load_media(fo.source, indices=[fo.frame]).frames[0]


def prompt_batch(
    items: Sequence[FrameObjects], image_size: int, rng: np.random.Generator, box_prob: float = 0.5
) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]]:
    """SAM 2 frames ``(B, 3, S, S)`` and, per frame, ``(points (O, 1, n, 2), labels (O, 1, n), masks (O, S, S))``.

    A click is a uniformly drawn pixel of the mask (label 1); a box is the mask's tight box with each side moved
    by up to 10 % of its length (labels 2, 3) — SAM's prompt sampling in its simplest form. All objects of a frame
    get the same kind of prompt (a coin per frame, ``box_prob``), so a frame's objects are decoded together.
    """
    from ..data.masks import decode_rle
    from ..media import sam2_transform
    from ..visual_prompts import resize_mask

    frames, prompts = [], []
    for fo in items:
        img = _load_frame(fo)
        h, w = img.shape[:2]
        frames.append(sam2_transform(img[None], image_size)[0])
        pts, labs, masks = [], [], []
        use_box = rng.random() < box_prob  # one kind per frame: its objects are decoded in one call
        for rle in fo.rles:
            m = decode_rle(rle).astype(bool)
            ys, xs = np.nonzero(m)
            sx, sy = image_size / w, image_size / h
            if use_box:
                x1, y1, x2, y2 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
                jw, jh = 0.1 * (x2 - x1), 0.1 * (y2 - y1)
                x1, x2 = x1 + rng.uniform(-jw, jw), x2 + rng.uniform(-jw, jw)
                y1, y2 = y1 + rng.uniform(-jh, jh), y2 + rng.uniform(-jh, jh)
                pts.append([[x1 * sx, y1 * sy], [x2 * sx, y2 * sy]])
                labs.append([2, 3])
            else:
                j = int(rng.integers(xs.size))
                pts.append([[xs[j] * sx, ys[j] * sy], [0.0, 0.0]])  # SAM adds the half-pixel shift
                labs.append([1, -1])  # padded to two points with SAM's "not a point"
            masks.append(resize_mask(m, image_size))  # the same label resize as the joint training path
        prompts.append((
            torch.tensor(pts, dtype=torch.float32)[:, None],
            torch.tensor(labs, dtype=torch.int32)[:, None],
            torch.stack(masks),
        ))  # fmt: skip
    return torch.stack(frames), prompts


def sam2_prompt_loss(
    sam2: Any, frames: torch.Tensor, prompts: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    """SAM 2's loss for prompted single-frame segmentation, averaged over the frames of the batch.

    Frames are encoded in one pass; each frame's objects are decoded together, exactly as the tracker decodes
    a prompt frame (no memory, ``no_memory_embedding`` added), with the point/box prompts as clicks.
    """
    from ..sam2.loss import CORE_LOSS_KEY, Sam2MultiStepLoss
    from ..sam2.tracker import _decode, encode_frames

    feats = encode_frames(sam2, frames)
    image_pe = sam2.get_image_wide_positional_embeddings().to(feats.vision_pos.dtype)
    loss_fn = Sam2MultiStepLoss()
    totals: dict[str, torch.Tensor] = {}
    for t, (points, labels, masks) in enumerate(prompts):
        s0, s1, vision = feats.get(t)
        n = points.shape[0]
        pix = (vision + sam2.no_memory_embedding.reshape(1, -1, 1, 1)).expand(n, -1, -1, -1)
        fo = _decode(sam2, pix, s0, s1, None, image_pe, False, True, points.to(pix.dtype), labels)
        out = {"multimasks_high_res": fo.high_res_multimasks, "ious": fo.ious,
               "object_score_logits": fo.object_score_logits}  # fmt: skip
        for k, v in loss_fn([out], masks[None].to(pix.dtype)).items():
            totals[k] = totals[k] + v / len(prompts) if k in totals else v / len(prompts)
    totals["loss"] = totals[CORE_LOSS_KEY]
    return totals


def sam2_param_groups(sam2: torch.nn.Module, lr: float, enc_lr: float, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups of SAM 2's trainable parameters: {image encoder at ``enc_lr``, the rest at ``lr``} × {weights
    with ``weight_decay``, biases and norm layers without} — the joint trainer's rule (transformers' Trainer), so
    that pre-training and joint training regularise the same tensors. Empty groups are dropped."""
    from transformers import Trainer

    decay = set(Trainer.get_decay_parameter_names(None, sam2))  # type: ignore[arg-type]  # the rule reads no state
    enc_ids = {id(p) for p in sam2.vision_encoder.parameters()}
    named = [(n, p) for n, p in sam2.named_parameters() if p.requires_grad]
    groups = [
        {"params": [p for n, p in named if (id(p) in enc_ids) == enc and (n in decay) == dec],
         "lr": enc_lr if enc else lr, "weight_decay": weight_decay if dec else 0.0}
        for enc in (False, True) for dec in (True, False)
    ]  # fmt: skip
    return [g for g in groups if g["params"]]


def train_sam2_prompts(
    model_dir: str | Path,
    samples_jsonl: str | Path | Sequence[str | Path],
    out_dir: str | Path,
    steps: int = 1000,
    batch_size: int = 16,
    lr: float = 1e-3,
    minutes: float | None = None,
    seed: int = 0,
    box_prob: float = 0.5,
    log_every: int = 25,
    weight_decay: float = 0.0,
    enc_lr: float | None = None,
) -> Path:
    """Pre-train the SAM 2 part of the checkpoint in ``model_dir`` and save the whole checkpoint to ``out_dir``.

    AdamW (``weight_decay`` on weights, not on biases and norms), 3 % linear warm-up then cosine decay, gradient clipping at 1.0 (UniPixel's
    trainer settings). ``minutes`` stops early (the schedule is still computed for ``steps``). ``enc_lr`` is the
    image encoder's learning rate (default ``lr``; 0 freezes it), as UniPixel separates ``sam2_enc_lr`` from
    ``sam2_dec_lr``: a randomly initialised encoder trained at the decoder's rate inflates its features until the
    position encoding that locates a click is negligible beside them.
    """
    from transformers import get_cosine_schedule_with_warmup

    from .. import UniPixelForConditionalGeneration
    from ..processing import UniPixelProcessor
    from .dataset import load_samples_jsonl

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    paths = [samples_jsonl] if isinstance(samples_jsonl, (str, Path)) else list(samples_jsonl)
    samples = [s for p in paths for s in load_samples_jsonl(p)]
    items = collect_frame_objects(samples)
    if not items:
        raise ValueError(f"no single-object masks in {paths}: SAM 2 prompt pre-training needs object masks")
    model = UniPixelForConditionalGeneration.from_pretrained(str(model_dir))
    processor = UniPixelProcessor.from_pretrained(str(model_dir))
    sam2 = model.sam2
    sam2.train()
    enc_lr = lr if enc_lr is None else enc_lr
    if enc_lr == 0:
        sam2.vision_encoder.requires_grad_(False)
    groups = sam2_param_groups(sam2, lr, enc_lr, weight_decay)
    opt = torch.optim.AdamW(groups)
    sched = get_cosine_schedule_with_warmup(opt, math.ceil(0.03 * steps), steps)
    logger.info("SAM 2 prompt pre-training: %d frames with objects, %d steps of %d frames", len(items), steps,
                batch_size)  # fmt: skip
    start = time.monotonic()
    running: dict[str, float] = {}
    order = rng.permutation(len(items))
    cursor = 0
    for step in range(steps):
        if cursor + batch_size > len(order):
            order, cursor = rng.permutation(len(items)), 0
        batch = [items[int(i)] for i in order[cursor : cursor + batch_size]]
        cursor += batch_size
        frames, prompts = prompt_batch(batch, sam2.config.image_size, rng, box_prob)
        losses = sam2_prompt_loss(sam2, frames, prompts)
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_([p for g in groups for p in g["params"]], 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        for k, v in losses.items():
            running[k] = running.get(k, 0.0) + float(v.detach())
        if (step + 1) % log_every == 0:
            logger.info("step %d %s (%.0f s)", step + 1,
                        " ".join(f"{k} {v / log_every:.4f}" for k, v in sorted(running.items())),
                        time.monotonic() - start)  # fmt: skip
            running = {}
        if minutes is not None and time.monotonic() - start > minutes * 60:
            logger.info("time limit reached after %d steps", step + 1)
            break
    sam2.eval()
    out = Path(out_dir)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "sam2_prompt_pretraining.json").write_text(json.dumps({
        "steps_done": step + 1, "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
        "box_prob": box_prob, "weight_decay": weight_decay, "enc_lr": enc_lr, "frames": len(items), "minutes": (time.monotonic() - start) / 60,
        "samples": [str(p) for p in paths],
    }, indent=2))  # fmt: skip
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unipixel.train.sam2_prompts", description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, help="UniPixel checkpoint directory to start from")
    ap.add_argument("--samples", required=True, nargs="+", help="samples.jsonl file(s) with object masks")
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch-size", type=int, default=16, help="frames per step (all their objects are used)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--box-prob", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--enc-lr", type=float, default=None, help="image encoder lr (default --lr; 0 freezes it)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    train_sam2_prompts(args.model, args.samples, args.out, args.steps, args.batch_size, args.lr, args.minutes,
                       args.seed, args.box_prob, weight_decay=args.weight_decay, enc_lr=args.enc_lr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

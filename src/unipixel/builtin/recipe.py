"""One command that regenerates the synthetic data and retrains the built-in model from scratch.

    python -m unipixel.builtin.recipe --work work/builtin [--variant shipped|single-mask] [--install]

Steps (each skipped when its output already exists, so an interrupted run continues):

1. ``unipixel synth`` train split (seed 1) — the training data;
2. a randomly initialised small UniPixel (:func:`unipixel.tiny.build_tiny_checkpoint`) whose byte-level BPE
   tokenizer is trained on the training split's text;
3. ``unipixel train`` with every module trainable (no pretrained backbone exists at this size), AdamW, lr 1e-3,
   batch 8, 4 frames per video, in two phases (each a full cosine schedule): 1000 steps from the random
   initialisation (data seed 0), then 2500 steps from phase 1 (data seed 1); wall-time caps of 22 and 36 minutes
   keep the total within the 60-minute budget on a slower machine (``--variant`` selects the other measured recipe);
4. ``unipixel synth`` test split with a fresh seed (3) and ``unipixel eval synthetic`` on it;
5. with ``--install``: copy the weights into ``unipixel/builtin/model`` and the metrics into
   ``unipixel/builtin/metrics.json`` (the model card is written by hand from them).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from . import BUILTIN_DIR

ARCH = {
    "hidden_size": 256, "num_layers": 4, "num_heads": 4, "num_kv_heads": 2, "intermediate_size": 512,
    "vision_depth": 2, "vision_hidden": 128, "sam2_image_size": 128,
}  # fmt: skip
SAM2_ARCH = {"embed_dim": 24, "d_model": 64, "mem_dim": 32, "heads": 1}
TRAIN = {"seed": 1, "num_images": 2000, "num_videos": 1000, "frames": 8}
TEST = {"seed": 3, "num_images": 100, "num_videos": 50, "frames": 8}
PIXELS = {"min_pixels": 3136, "max_pixels": 12544}


def corpus(samples_jsonl: Path) -> list[str]:
    """Every text of the training split (turns, questions, options): what the tokenizer is trained on."""
    texts: list[str] = []
    for line in samples_jsonl.read_text().splitlines():
        d = json.loads(line)
        texts += [t["text"] for t in d["conversation"]]
        for v in d.get("meta", {}).values():
            if isinstance(v, str):
                texts.append(v)
            elif isinstance(v, list):
                texts += [x for x in v if isinstance(x, str)]
    return texts


def synth(split: str, spec: dict[str, int], out: Path) -> None:
    from ..synth.cli import main as synth_main

    if (out / "samples.jsonl").exists():
        return
    synth_main([
        "--seed", str(spec["seed"]), "--split", split, "--out", str(out), "--num-images", str(spec["num_images"]),
        "--num-videos", str(spec["num_videos"]), "--min-frames", str(spec["frames"]), "--max-frames",
        str(spec["frames"]), "--workers", "2",
    ])  # fmt: skip


# ``shipped`` reproduces the model in ``unipixel/builtin/model``: SAM 2.1's three candidate masks, transformers'
# N(0, 0.02) initialisation of the small random SAM 2 with two independently drawn position-encoding matrices (the
# state of ``build_tiny_checkpoint`` when it was trained). ``single-mask`` is the alternative measured afterwards
# (one mask per prompt, PyTorch's default SAM 2 initialisation, one shared position-encoding matrix, also for the
# ``<|ref|>`` encoder, 1200 + 2800 steps): it was worse at this budget on the validation split — see the model
# card — so it is not shipped, but it stays runnable (``--variant single-mask``).
VARIANTS: dict[str, dict[str, Any]] = {
    "shipped": {
        "init": {"multimask": True, "sam2_default_init": False, "tie_sam2_pe": False, "tie_ref_pe": False},
        "phases": (
            {"steps": 1000, "minutes": 22.0, "seed": 0, "lr": 1e-3},
            {"steps": 2500, "minutes": 36.0, "seed": 1, "lr": 1e-3},
        ),
    },
    "single-mask": {
        "init": {"multimask": False, "sam2_default_init": True, "tie_sam2_pe": True, "tie_ref_pe": True},
        "phases": (
            {"steps": 1200, "minutes": 18.0, "seed": 0, "lr": 1e-3},
            {"steps": 2800, "minutes": 40.0, "seed": 1, "lr": 1e-3},
        ),
    },
}


def train_args(
    init: Path, data: Path, out: Path, minutes: float, max_steps: int, seed: int = 0, lr: float = 1e-3
) -> list[str]:
    return [
        "--model", str(init), "--samples", str(data / "samples.jsonl"), "--stage", "3", "--lora", "off",
        "--tuning-modules", "embedding,ref,ref_enc,msk,seg,sam2,llm,vit", "--lr", str(lr), "--sam2-lr", str(lr),
        "--sam2-enc-lr", str(lr), "--sam2-dec-lr", str(lr), "--global-batch-size", "8", "--per-device-batch-size",
        "8", "--num-frames", "4", "--max-steps", str(max_steps), "--max-minutes", str(minutes), "--min-pixels",
        str(PIXELS["min_pixels"]), "--max-pixels", str(PIXELS["max_pixels"]), "--no-scale-pixels", "--bf16", "off",
        "--no-gradient-checkpointing", "--warmup-ratio", "0.03", "--save-steps", "200", "--save-total-limit", "1",
        "--logging-steps", "10", "--output-dir", str(out), "--seed", str(seed),
    ]  # fmt: skip


def build_init(
    out: Path,
    texts: list[str],
    variant: str,
    vocab_size: int = 1024,
    sam2_arch: dict[str, Any] = SAM2_ARCH,
    arch: dict[str, Any] = ARCH,
) -> Path:
    """The randomly initialised checkpoint ``variant`` starts from (tokenizer trained on ``texts``)."""
    from ..tiny import build_tiny_checkpoint, tiny_sam2_meta

    opts = dict(VARIANTS[variant]["init"])
    sam2 = tiny_sam2_meta(**sam2_arch, multimask=opts.pop("multimask"))
    return build_tiny_checkpoint(out, texts, vocab_size=vocab_size, sam2=sam2, **opts, **arch)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m unipixel.builtin.recipe", description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default="work/builtin")
    ap.add_argument("--install", action="store_true", help="copy the trained model into the package")
    ap.add_argument("--skip-train", action="store_true")
    ap.add_argument("--variant", choices=sorted(VARIANTS), default="shipped", help="training variant (see VARIANTS)")
    args = ap.parse_args(argv)
    variant = VARIANTS[args.variant]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    synth("train", TRAIN, work / "train")
    init = work / "init"
    if not (init / "config.json").exists():
        build_init(init, corpus(work / "train" / "samples.jsonl"), args.variant)
    run = init
    for i, phase in enumerate(variant["phases"], start=1):
        out = work / f"run{i}"
        if not args.skip_train and not (out / "config.json").exists():
            from ..train.cli import main as train_main

            train_main(
                train_args(run, work / "train", out, phase["minutes"], phase["steps"], phase["seed"], phase["lr"])
            )
        run = out
    synth("test", TEST, work / "test")
    from ..eval.runner import main as eval_main

    eval_main([
        "synthetic", "--model", str(run), "--data-root", str(work / "test"), "--out", str(work / "eval"),
        "--min-pixels", str(PIXELS["min_pixels"]), "--max-pixels", str(PIXELS["max_pixels"]), "--no-progress",
    ])  # fmt: skip
    if args.install:
        install(run, work)
    return 0


def install(run: Path, work: Path) -> None:
    """Copy the trained checkpoint into the package (weights, tokenizer, processor; no optimizer state)."""
    BUILTIN_DIR.mkdir(parents=True, exist_ok=True)
    for f in run.iterdir():
        if f.is_file() and not f.name.startswith(("training_args", "trainer_state", "optimizer", "scheduler", "rng")):
            shutil.copy2(f, BUILTIN_DIR / f.name)
    metrics: dict[str, Any] = {}
    for m in (work / "eval").rglob("metrics.json"):
        metrics = json.loads(m.read_text())
    (BUILTIN_DIR.parent / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    print(f"installed the built-in model into {BUILTIN_DIR}")


if __name__ == "__main__":
    sys.exit(main())

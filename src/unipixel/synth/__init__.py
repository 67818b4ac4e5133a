"""Synthetic world generator: deterministic images/videos of shapes with exact masks and language for
every UniPixel task, written in the reference's dataset formats plus the project's ``samples.jsonl``.

Why: a fresh, unlimited, exactly-annotated test split (``unipixel synth --seed S --split test --out DIR``)
lets anyone check the whole pipeline — readers, processor, training, evaluation — without downloading a
dataset, and a tiny model can actually learn this world, so "does training work" has a fast answer.

Determinism: scene ``i`` of kind ``k`` is drawn from ``numpy.random.default_rng([base, k, i])`` where
``base`` hashes ``(seed, split)``; so the same seed and options give byte-identical output, splits never
share scenes, and asking for more scenes keeps the first ones unchanged.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.schema import MediaRef
from .tasks import SceneRecord, build_scene_samples
from .world import SceneConfig, make_image_scene, make_video_scene

__all__ = [
    "SynthOptions",
    "DEFAULT_COUNTS",
    "SPLITS",
    "generate_split",
    "build_records",
    "split_seed",
    "GENERATOR_VERSION",
]

GENERATOR_VERSION = "1"
SPLITS = ("train", "val", "test")
DEFAULT_COUNTS = {"train": (2000, 1000), "val": (100, 50), "test": (100, 50)}  # (images, videos)


@dataclass(frozen=True)
class SynthOptions:
    """Everything that determines a split's content (recorded in manifest.json)."""

    seed: int = 0
    split: str = "test"
    num_images: int | None = None  # None: DEFAULT_COUNTS[split]
    num_videos: int | None = None
    width: int = 112
    height: int = 112
    min_objects: int = 1
    max_objects: int = 4
    min_frames: int = 8
    max_frames: int = 16
    frame_format: str = "png"  # "png" (lossless) or "jpg" (the reference's {n}.jpg frame paths)

    def counts(self) -> tuple[int, int]:
        di, dv = DEFAULT_COUNTS.get(self.split, DEFAULT_COUNTS["test"])
        return (
            di if self.num_images is None else self.num_images,
            dv if self.num_videos is None else self.num_videos,
        )

    def scene_config(self) -> SceneConfig:
        return SceneConfig(
            self.width, self.height, self.min_objects, self.max_objects, self.min_frames, self.max_frames
        )


def split_seed(seed: int, split: str) -> int:
    """A 63-bit seed mixing the user seed and the split name (stable across Python versions/platforms)."""
    return (
        int.from_bytes(hashlib.sha256(f"unipixel-synth:{seed}:{split}".encode()).digest()[:8], "little") >> 1
    )


def _build_one(opts: SynthOptions, kind: str, index: int) -> SceneRecord:
    rng = np.random.default_rng([split_seed(opts.seed, opts.split), 0 if kind == "image" else 1, index])
    cfg = opts.scene_config()
    ext = opts.frame_format
    if kind == "image":
        scene = make_image_scene(rng, cfg)
        name = f"img{index:05d}"
        media = MediaRef(path=f"images/{name}.{ext}", is_image=True)
        frame_names = [name]
    else:
        scene = make_video_scene(rng, cfg)
        name = f"vid{index:05d}"
        frame_names = [f"{t:05d}" for t in range(scene.num_frames)]
        media = MediaRef(frames=[f"videos/{name}/{n}.{ext}" for n in frame_names], is_image=False)
    rec = SceneRecord(name=name, scene=scene, media=media, frame_names=frame_names)
    return build_scene_samples(rec, rng, opts.split, f"synth-{opts.split}")


def _build_chunk(args: tuple[SynthOptions, str, list[int]]) -> list[SceneRecord]:
    opts, kind, indices = args
    return [_build_one(opts, kind, i) for i in indices]


def build_records(opts: SynthOptions, workers: int = 1) -> list[SceneRecord]:
    """All scene records of the split (images first, then videos), in index order whatever ``workers``."""
    n_img, n_vid = opts.counts()
    jobs: list[tuple[SynthOptions, str, list[int]]] = []
    for kind, n in (("image", n_img), ("video", n_vid)):
        step = max(1, n // max(1, 4 * workers))
        jobs += [(opts, kind, list(range(s, min(n, s + step)))) for s in range(0, n, step)]
    if workers <= 1:
        return [r for job in jobs for r in _build_chunk(job)]
    # "spawn", not the Linux default "fork": a forked child inherits torch's thread-pool locks (the package
    # imports torch) and can deadlock on them.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as ex:
        return [r for chunk in ex.map(_build_chunk, jobs) for r in chunk]


def generate_split(opts: SynthOptions, out: str | Path, workers: int = 1) -> dict[str, Any]:
    """Write a complete split directory (see :mod:`unipixel.synth.formats`); returns the manifest."""
    from . import formats

    if opts.split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {opts.split!r}")
    if opts.frame_format not in ("png", "jpg"):
        raise ValueError(f"frame_format must be 'png' or 'jpg', got {opts.frame_format!r}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    records = build_records(opts, workers)
    for rec in records:
        formats.write_frames(rec, root, opts.frame_format)
    n = formats.write_samples(records, root / "samples.jsonl")
    files = {
        "revos": formats.write_revos(records, root, opts.split),
        "refcoco": formats.write_refcoco(records, root, opts.split),
        "videorefer": formats.write_videorefer(records, root),
    }
    per_task: Counter[str] = Counter()
    per_media: Counter[str] = Counter()
    for rec in records:
        for s in rec.samples:
            kind = "image" if s.media.is_image else "video"
            per_task[s.task] += 1
            per_media[f"{s.task}/{kind}"] += 1
    manifest = {
        "generator": "unipixel.synth",
        "version": GENERATOR_VERSION,
        "options": asdict(opts),
        "counts": {
            "images": sum(r.scene.is_image for r in records),
            "videos": sum(not r.scene.is_image for r in records),
            "samples": n,
            "per_task": dict(sorted(per_task.items())),
            "per_task_media": dict(sorted(per_media.items())),
        },
        "reference_formats": files,
        "files": {
            "samples": "samples.jsonl",
            "revos_meta": f"videos/meta_expressions_{formats.REVOS_SPLIT[opts.split]}_.json",
            "revos_masks": "videos/mask_dict.json",
            "refcoco_instances": "refer_seg/refcoco/instances.json",
            "refcoco_refs": "refer_seg/refcoco/refs(unc).p",
            "videorefer_bench_q": "videorefer/VideoRefer-Bench-Q.json",
            "videorefer_bench_d": "videorefer/VideoRefer-Bench-D.json",
            "pixelqa": "pixelqa/VideoRefer-Bench-Q.json",
        },
    }
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest

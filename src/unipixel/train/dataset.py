"""Training samples → model features, and the dataset mixture (reference §4.6, §5, §6.1).

One :class:`~unipixel.data.schema.Sample` becomes one feature dict (one batch element of
:meth:`UniPixelForConditionalGeneration.forward`):

* **frames**: ``num_frames`` frames of the media's frame list, ``"random"`` segment sampling in training
  (``"uniform"`` for deterministic runs); the prompt frame of every prompted object is always kept, because a
  ``<|ref|>``/``<|mem|>`` prompt on a frame the model never sees is meaningless;
* **text**: the whole conversation (every turn) in ChatML through :meth:`UniPixelProcessor.prepare`, the trailing
  newline after the last ``<|im_end|>`` stripped (the reference does);
* **labels**: ``-100`` everywhere except the assistant answers and their closing ``<|im_end|>`` (reference
  ``preprocess_chatml``);
* **prompts**: point/box objects → ``<|ref|>`` prompts, mask objects → ``refer_mask`` + ``<|mem|>`` prefix (both by
  the processor, positions among the loaded frames);
* **segmentation targets**: the objects segmented by ``<|seg|>`` (objects with masks, in object order) →
  ``label_masks`` ``(T, O, S, S)`` float, resized like the reference (bilinear + antialias on 0/1, then ``> 0``),
  plus the SAM 2 frames ``(T, 3, S, S)``.

Randomness (frame sampling) comes from a generator seeded by ``(seed, epoch, index, attempt)``, never from a
stateful generator, so a resumed run sees exactly the samples an uninterrupted run would.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data.masks import decode_rle
from ..data.schema import SEG, Sample
from ..media import Media, SamplingMode, llm_pixel_budget, load_media, sample_frame_indices
from ..processing import ObjectPrompt, UniPixelProcessor
from ..visual_prompts import resize_mask

logger = logging.getLogger(__name__)

IGNORE_INDEX = -100

__all__ = [
    "IGNORE_INDEX",
    "FeatureConfig",
    "SampleFeatures",
    "sample_training_frames",
    "assistant_labels",
    "data_type_of",
    "build_features",
    "UniPixelTrainDataset",
    "DatasetSpec",
    "parse_dataset_spec",
    "MixedSamples",
    "load_samples_jsonl",
]


@dataclass
class FeatureConfig:
    """How samples become features (reference §5 "Common mechanics" / §6.1).

    ``min_pixels``/``max_pixels`` are the per-frame LLM budget; with ``scale_pixels_by_frames`` (reference) a clip
    with fewer than ``num_frames`` frames gets ``max_pixels * min(num_frames // T, num_frames)`` per frame, so an
    image (1 frame) gets 8x the per-frame budget of an 8-frame clip. ``sam2_image_size`` is taken from the model
    config when ``None``. ``max_num_tokens > 0`` rejects longer samples (they are replaced by another sample of the
    same data type). ``max_conv_turns`` (reference: 3) keeps that many random turns of a longer multi-turn
    segmentation sample (RefCOCO training groups every sentence of an image into one sample); 0 keeps all.
    """

    num_frames: int | None = 8
    sampling: SamplingMode = "random"
    min_pixels: int = 128 * 28 * 28
    max_pixels: int = 256 * 28 * 28
    scale_pixels_by_frames: bool = True
    sam2_image_size: int | None = None
    int_box_coords: bool = True
    max_num_tokens: int = 0
    seed: int = 0
    max_retries: int = 10
    max_conv_turns: int = 3


SampleFeatures = dict[str, Any]


# ---------------------------------------------------------------------------------------------------- frames
def sample_training_frames(
    num_total: int,
    num_frames: int | None,
    mode: SamplingMode = "random",
    keep: Iterable[int] = (),
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Positions of the frames to load: ``mode`` sampling of ``num_frames`` out of ``num_total``, then every
    ``keep`` position (prompt frames) replaces the nearest sampled position that is not itself kept.

    With ``"random"`` sampling the nearest pick is normally the one of the segment holding the kept frame, so the
    segment structure of the reference's sampling is preserved.
    """
    keep = sorted({int(k) for k in keep})
    for k in keep:
        if not 0 <= k < num_total:
            raise ValueError(f"prompt frame {k} is outside the {num_total} frames of the media")
    idx = [int(i) for i in sample_frame_indices(num_total, num_frames, mode, rng)]
    for k in keep:
        if k in idx:
            continue
        free = [j for j, v in enumerate(idx) if v not in keep]
        if not free:
            raise ValueError(f"{len(keep)} prompt frames do not fit into {num_frames} sampled frames")
        j = min(free, key=lambda j: (abs(idx[j] - k), j))
        idx[j] = k
    return np.array(sorted(set(idx)), dtype=np.int64)


def _num_positions(sample: Sample) -> int | None:
    """Length of the media's frame list (positions masks and prompt frames refer to), if known without decoding."""
    m = sample.media
    if m.frame_indices is not None:
        return len(m.frame_indices)
    if m.is_image:
        return 1
    if m.frames is not None:
        return len(m.frames)
    path = Path(m.path or "")
    if path.is_dir():
        from ..media import _list_frame_files  # the folder ordering load_media uses

        return len(_list_frame_files(path))
    return None


def _load_sample_media(
    sample: Sample, cfg: FeatureConfig, keep: Sequence[int], rng: np.random.Generator
) -> tuple[Media, np.ndarray]:
    """Decode the sampled frames; returns the media and the *positions* (in the media's frame list) loaded."""
    m = sample.media
    source: Any = m.frames if m.frames is not None else m.path
    if m.is_image:
        media = load_media(source[0] if isinstance(source, list) else source)
        return media, np.zeros(1, dtype=np.int64)
    n = _num_positions(sample)
    if n is None and not keep and m.frame_indices is None:
        # A video file without prompt frames: let load_media count and sample (decodes only the sampled frames).
        media = load_media(source, num_frames=cfg.num_frames, sampling=cfg.sampling, rng=rng)
        return media, np.asarray(media.frame_indices, dtype=np.int64)
    if n is None:
        from ..media import _count_video_frames

        n = _count_video_frames(Path(source))
    pos = sample_training_frames(n, cfg.num_frames, cfg.sampling, keep, rng)
    original = pos if m.frame_indices is None else np.asarray(m.frame_indices, dtype=np.int64)[pos]
    media = load_media(source, indices=[int(i) for i in original])
    return media, pos


# ---------------------------------------------------------------------------------------------------- labels
def assistant_labels(input_ids: torch.Tensor, header_ids: Sequence[int], end_id: int) -> torch.Tensor:
    """Labels of a ChatML sequence: every token after an ``<|im_start|>assistant\\n`` header up to and including
    the next ``<|im_end|>`` keeps its id, everything else is ``-100`` (reference ``preprocess_chatml``: the rounds
    are split at ``<|im_end|>`` and everything up to the assistant header is masked)."""
    ids = input_ids.tolist()
    labels = [IGNORE_INDEX] * len(ids)
    h = list(header_ids)
    i = 0
    while i + len(h) <= len(ids):
        if ids[i : i + len(h)] == h:
            j = i + len(h)
            while j < len(ids) and ids[j] != end_id:
                labels[j] = ids[j]
                j += 1
            if j < len(ids):
                labels[j] = ids[j]
            i = j + 1
        else:
            i += 1
    return torch.tensor(labels, dtype=input_ids.dtype)


def _special_ids(processor: UniPixelProcessor) -> dict[str, Any]:
    cached = getattr(processor, "_unipixel_train_ids", None)
    if cached is None:
        tok = processor.tokenizer
        cached = {
            "header": tok("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"],
            "im_end": tok.convert_tokens_to_ids("<|im_end|>"),
            "newline": tok("\n", add_special_tokens=False)["input_ids"],
        }
        processor._unipixel_train_ids = cached
    return cached


# ---------------------------------------------------------------------------------------------------- features
def data_type_of(sample: Sample) -> str:
    """The sampler's group key: ``meta["data_type"]`` when a reader sets it, else task/modality/segmentation.

    Every sample of a group must take the same code path through the model (SAM 2 loss or not), because the seg
    loss all-reduces the object count: ranks must call it equally often (reference §1.9, §6.2).
    """
    if "data_type" in sample.meta:
        return str(sample.meta["data_type"])
    has_seg = any(SEG in t.text for t in sample.conversation)
    modality = "image" if sample.media.is_image else "video"
    return f"{sample.task}/{modality}/{'seg' if has_seg else 'text'}"


def _mask_at(obj_masks: dict[int, dict[str, Any]], pos: int, size: tuple[int, int]) -> np.ndarray:
    rle = obj_masks.get(int(pos))
    if rle is None:
        return np.zeros(size, dtype=bool)
    m = decode_rle(rle).astype(bool)
    if m.shape != size:
        m = resize_mask(m, size).numpy()
    return m


def _keep_turns(sample: Sample, max_turns: int, rng: np.random.Generator) -> Sample:
    """At most ``max_turns`` random (user, assistant) pairs, in random order, of a multi-turn segmentation sample,
    with their objects. Only samples whose every turn segments objects that all have masks and no visual prompt are
    cut (each ``<|seg|>`` then names the next object): general QA and region / prompted samples keep every turn."""
    turns = sample.conversation
    pairs = len(turns) // 2
    if max_turns <= 0 or pairs <= max_turns or len(turns) % 2:
        return sample
    if not sample.objects or any(o.prompt is not None or not o.masks for o in sample.objects):
        return sample  # general QA (no objects) and region / prompted samples keep every turn
    counts = [turns[2 * i].text.count(SEG) + turns[2 * i + 1].text.count(SEG) for i in range(pairs)]
    if sum(counts) != len(sample.objects) or not all(counts):
        return sample  # not one object per <|seg|> in every turn: leave it to the consistency check
    keep = rng.choice(pairs, size=max_turns, replace=False).tolist()  # random order, as the reference samples
    starts = np.concatenate([[0], np.cumsum(counts)]).astype(int)
    objects = [o for i in keep for o in sample.objects[starts[i] : starts[i + 1]]]
    conversation = [t for i in keep for t in turns[2 * i : 2 * i + 2]]
    return dataclasses.replace(sample, conversation=conversation, objects=objects)


def build_features(
    sample: Sample,
    processor: UniPixelProcessor,
    cfg: FeatureConfig,
    rng: np.random.Generator | None = None,
) -> SampleFeatures:
    """One sample → one feature dict (see the module docstring). Raises ``ValueError`` on unusable samples."""
    rng = rng if rng is not None else np.random.default_rng(cfg.seed)
    sample = _keep_turns(sample, cfg.max_conv_turns, rng)
    if cfg.sam2_image_size is None:
        raise ValueError("FeatureConfig.sam2_image_size is not set (take it from model.config.sam2_image_size)")
    turns = sample.conversation
    if len(turns) < 2 or len(turns) % 2 or any(t.role != ("user", "assistant")[i % 2] for i, t in enumerate(turns)):
        raise ValueError(f"sample {sample.id!r}: training needs alternating user/assistant turns ending with an answer")

    prompted = [o for o in sample.objects if o.prompt is not None]
    media, pos = _load_sample_media(sample, cfg, [o.prompt.frame for o in prompted], rng)
    where = {int(p): i for i, p in enumerate(pos.tolist())}
    size = media.frame_size

    objects: list[ObjectPrompt] = []
    mem_ids: list[int] = []
    for o in prompted:
        p = o.prompt
        frame = where[int(p.frame)]
        if p.kind == "point":
            objects.append(ObjectPrompt(frame=frame, point=p.point))
        elif p.kind == "box":
            objects.append(ObjectPrompt(frame=frame, box=p.box))
        elif p.kind == "mask":
            track = np.stack([_mask_at(o.masks, q, size) for q in pos.tolist()])
            objects.append(ObjectPrompt(frame=frame, mask=track))
            mem_ids.append(o.id)
        else:
            raise ValueError(f"sample {sample.id!r}: object {o.id} has an unknown prompt kind {p.kind!r}")

    pairs = [(turns[i].text, turns[i + 1].text) for i in range(0, len(turns), 2)]
    if cfg.scale_pixels_by_frames:
        lo, hi = llm_pixel_budget(media.num_frames, cfg.num_frames or media.num_frames, cfg.min_pixels, cfg.max_pixels)
    else:
        lo, hi = cfg.min_pixels, cfg.max_pixels
    prep = processor.prepare(
        media,
        pairs[-1][0],
        objects=objects,
        response=pairs[-1][1],
        history=pairs[:-1],
        min_pixels=lo,
        max_pixels=hi,
        sam2_image_size=cfg.sam2_image_size,
        int_box_coords=cfg.int_box_coords,
        mem_object_ids=mem_ids or None,
    )
    kw = prep.model_kwargs
    ids = kw["input_ids"][0]
    special = _special_ids(processor)
    nl = special["newline"]
    if len(nl) == 1 and ids.numel() >= 2 and int(ids[-1]) == nl[0] and int(ids[-2]) == special["im_end"]:
        ids = ids[:-1]  # the reference strips the newline after the last <|im_end|>
    if cfg.max_num_tokens > 0 and ids.numel() > cfg.max_num_tokens:
        raise ValueError(f"sample {sample.id!r} has {ids.numel()} tokens > max_num_tokens={cfg.max_num_tokens}")
    labels = assistant_labels(ids, special["header"], special["im_end"])

    n_seg = sum(t.text.count(SEG) for t in turns)
    targets = [o for o in sample.objects if o.masks] if n_seg else []
    if n_seg and len(targets) != n_seg:
        raise ValueError(f"sample {sample.id!r}: {n_seg} {SEG} tokens but {len(targets)} objects with masks")
    label_masks = sam2_frames = None
    if targets:
        s = cfg.sam2_image_size
        per_obj = [np.stack([_mask_at(o.masks, q, size) for q in pos.tolist()]) for o in targets]
        full = torch.from_numpy(np.stack(per_obj, axis=1))  # (T, O, H, W)
        label_masks = resize_mask(full, s).float()
        sam2_frames = kw["sam2_frames"][0]

    return {
        "input_ids": ids,
        "labels": labels,
        "pixel_values_videos": kw["pixel_values_videos"],
        "video_grid_thw": kw["video_grid_thw"],
        "second_per_grid_ts": kw["second_per_grid_ts"],
        "ref_prompts": kw["ref_prompts"][0] if "ref_prompts" in kw else [],
        "ref_num_frames": media.num_frames,
        "refer_mask": kw["refer_mask"][0] if "refer_mask" in kw else None,
        "sam2_frames": sam2_frames,
        "label_masks": label_masks,
        "data_type": data_type_of(sample),
        "sample_id": sample.id,
    }


# ---------------------------------------------------------------------------------------------------- datasets
@dataclass(frozen=True)
class DatasetSpec:
    """``name[:repeat]`` as in the reference's launch scripts; ``repeat`` repeats the sample list."""

    name: str
    repeat: int = 1
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)


def parse_dataset_spec(spec: str) -> DatasetSpec:
    """``"revos:5"`` → ``DatasetSpec("revos", 5)``; ``"refcoco"`` → repeat 1; ``"name:3=/data/x"`` sets the root."""
    spec, _, root = spec.partition("=")
    m = re.fullmatch(r"([^:]+)(?::(\d+))?", spec.strip())
    if not m:
        raise ValueError(f"dataset spec {spec!r}: expected NAME or NAME:REPEAT (e.g. revos:5)")
    repeat = int(m.group(2) or 1)
    if repeat < 1:
        raise ValueError(f"dataset spec {spec!r}: the repeat factor must be >= 1")
    return DatasetSpec(m.group(1), repeat, root or None)


class MixedSamples(Sequence[Sample]):
    """Several sample lists with repeat factors, indexed as their concatenation (no copies).

    ``len = sum(len(samples) * repeat)``, as the reference's ``HybridDataset`` (a repeat factor repeats the list,
    it is not a sampling probability).
    """

    def __init__(self, parts: Sequence[tuple[str, Sequence[Sample], int]]) -> None:
        self.parts = [(name, samples, int(rep)) for name, samples, rep in parts if len(samples) and rep > 0]
        self._offsets = np.cumsum([0] + [len(s) * r for _, s, r in self.parts])

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def locate(self, index: int) -> tuple[str, int]:
        """(dataset name, index within its sample list) of mixture position ``index``."""
        k, i = self._locate(index)
        return self.parts[k][0], i

    def _locate(self, index: int) -> tuple[int, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a mixture of {len(self)} samples")
        k = int(np.searchsorted(self._offsets, index, side="right")) - 1
        return k, (index - int(self._offsets[k])) % len(self.parts[k][1])

    def __getitem__(self, index: int) -> Sample:  # type: ignore[override]
        k, i = self._locate(int(index))
        return self.parts[k][1][i]

    @classmethod
    def from_specs(
        cls, specs: Sequence[DatasetSpec], data_root: str | Path | None = None, split: str = "train"
    ) -> MixedSamples:
        """Read every dataset through the reader registry (root = ``spec.root``, else the dataset's folder in the
        reference's ``data/`` layout below ``data_root``: see :func:`~unipixel.data.registry.dataset_root`)."""
        from ..data.registry import dataset_root, read_dataset

        parts = []
        for spec in specs:
            root = spec.root or (dataset_root(spec.name, data_root, split) if data_root is not None else None)
            if root is None:
                raise ValueError(f"dataset {spec.name!r} has no root; pass --data-root or NAME=ROOT")
            samples = list(read_dataset(spec.name, root, split, **spec.options))
            logger.info("dataset %s: %d samples x %d", spec.name, len(samples), spec.repeat)
            parts.append((spec.name, samples, spec.repeat))
        return cls(parts)


def load_samples_jsonl(path: str | Path, validate: bool = True) -> list[Sample]:
    """Samples dumped one :meth:`Sample.to_dict` JSON per line (relative media paths resolved against the file).

    Every sample is checked with :func:`~unipixel.data.schema.validate_sample` (``validate=False`` skips it):
    a broken sample fails here, naming ``FILE:LINE``, rather than being skipped with a warning mid-training.
    ``unipixel validate FILE`` lists every problem of a file at once.
    """
    from ..data.schema import read_sample_line, resolve_media_paths, validate_sample

    path = Path(path)
    out = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        s = read_sample_line(line, f"{path}:{lineno}")
        if validate:
            try:
                validate_sample(s)
            except ValueError as err:
                raise ValueError(f"{path}:{lineno}: {err}") from None
        out.append(resolve_media_paths(s, path.parent))
    return out


def _item_seed(seed: int, epoch: int, index: int, attempt: int) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}/{epoch}/{index}/{attempt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


class UniPixelTrainDataset(Dataset):
    """A map-style dataset of training features over a sample sequence (e.g. :class:`MixedSamples`).

    On an unusable sample (decode error, too long, inconsistent annotation) it logs a warning and retries with
    another sample *of the same data type* (at most ``cfg.max_retries`` times), as the reference does, so the
    type-homogeneous batches of :class:`~unipixel.train.sampler.TypeGroupedSampler` stay homogeneous.
    """

    def __init__(self, samples: Sequence[Sample], processor: UniPixelProcessor, cfg: FeatureConfig) -> None:
        self.samples = samples
        self.processor = processor
        self.cfg = cfg
        self.epoch = 0
        self._types = [data_type_of(samples[i]) for i in range(len(samples))]
        self._by_type: dict[str, list[int]] = {}
        for i, t in enumerate(self._types):
            self._by_type.setdefault(t, []).append(i)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def data_types(self) -> list[str]:
        """Group key of every index (what the type-grouped sampler groups by)."""
        return self._types

    def set_epoch(self, epoch: int) -> None:
        """Called by the sampler each epoch: the frame sampling of an item depends on (seed, epoch, index)."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> SampleFeatures:
        index = int(index)
        err: Exception | None = None
        candidates = self._by_type[self._types[index]]
        current = index
        for attempt in range(self.cfg.max_retries + 1):
            rng = _item_seed(self.cfg.seed, self.epoch, index, attempt)
            try:
                return build_features(self.samples[current], self.processor, self.cfg, rng)
            except (ValueError, OSError, KeyError, RuntimeError) as e:
                err = e
                logger.warning("skipping sample %s (%s: %s)", self.samples[current].id, type(e).__name__, e)
                current = candidates[int(rng.integers(len(candidates)))]
        raise RuntimeError(
            f"{self.cfg.max_retries + 1} samples of data type {self._types[index]!r} in a row could not be used; "
            f"last error: {err}"
        ) from err

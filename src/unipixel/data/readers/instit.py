"""Inst-IT readers: image short captions by point/box (stage 1), video region QA with masks, and the video
QA as memory segmentation (design doc §4.3-§4.5, §5, §10.11).

Layouts (§5 names the files and fields; the rest follows the public Inst-IT-Dataset release):

* images: ``{root}/inst_it_dataset_image_51k_w_mask.json``, a list of ``{"image_id", "image_path",
  "instance_level_caption": {oid: {"short": str, ...}}, "segmentations": {oid: {"mask": RLE}}}``; image files
  at ``{image_dir}/{image_path}`` (default ``image_dir = root / "images"``).
* videos: ``{root}/inst_it_dataset_video_21k_w_mask.json``, a list of ``{"video_id", "video_path",
  "question_answer_pairs": [{"question", "answer"}...], "segmentations": {frame: {oid: {"mask": RLE}}}}``;
  ``video_path`` is a folder of frames under ``video_dir`` (default ``root / "videos"``).  Frame keys that look
  like file names (``"000003.jpg"``) name frames in that folder; the sample then lists them explicitly
  (``MediaRef.frames``, natural order).  Numeric keys are taken as positions in the folder's sorted frame
  listing minus ``frame_key_base`` (default 0) and go to ``MediaRef.frame_indices``.  [The design doc does not
  say which of the two the release uses; both are accepted.]

Conventions:

* image short caption: one sample per instance with a short caption and a mask; question = one of the
  reference's caption prompts with ``<|ref|>`` (only two of its 24 prompts are quoted in the design doc, so
  only those two are used), answer = the short caption; point/box prompt per ``prompt_type`` (seeded).
* video QA (``inst_it_video_qa_raw``): one sample per QA pair; the text keeps Inst-IT's own ``[N]`` / ``<t>``
  notation; objects = the ``[N]`` mentioned in the pair that have masks, **sorted by id** (the reference
  collects them in a Python set, whose order depends on hashing — §10.11); entries with more than 10 frames,
  no object or more than 5 objects are skipped; with probability ``single_frame_prob`` (0.5, seeded) only
  one random frame where all objects are present keeps its masks, as in the reference.
* memory (``inst_it_video_qa_raw_mem``): ≤ 8 frames, ≤ 5 objects; "{question}\\nOptions:\\n({letter}) {answer}"
  with each object's first mention written "[N] <|ref|>" and wrapped in a seeded template of §4.5; response
  "[N] <|seg|> ..." in the same order.  Objects are ordered by first mention, so ref tokens, prompts and
  seg tokens always line up (the reference's set order does not guarantee this).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..registry import register_reader
from ..schema import REF, SEG, MediaRef, ObjectAnnotation, Sample, Turn, VisualPrompt
from .videorefer import (
    LETTERS,
    MEM_TEMPLATES,
    ReaderFormatError,
    check_no_special_tokens,
    dense_masks,
    entry_rng,
    iter_entries,
    load_json_list,
    media_path,
    rle_area,
    sample_prompt,
    to_rle,
)

# The two Inst-IT short-caption prompts quoted by the design doc (§4.3); the reference samples from 24.
IMAGE_CAPTION_PROMPTS = (
    "Give me a short description of <|ref|>.",
    "Could you describe the region shown as <|ref|> in the picture concisely?",
)
_MENTION = re.compile(r"\[(\d+)\]")
_IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def _natural_key(s: str) -> tuple[Any, ...]:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s))


def _oid(k: Any, where: str) -> int:
    try:
        return int(k)
    except (TypeError, ValueError):
        raise ReaderFormatError(f"{where}: object id {k!r} is not an integer") from None


def _mask_of(v: Any, where: str) -> dict[str, Any] | None:
    if v is None:
        return None
    if isinstance(v, dict) and "mask" in v:
        v = v["mask"]
    return None if v is None else to_rle(v, where=where)


@register_reader(
    "inst_it_image_short_caption_raw_ref",
    splits=("train",),
    description="Inst-IT images: short caption of an instance referred by a point/box <|ref|>",
)
def read_inst_it_image_short_caption_ref(
    root: Path,
    split: str,
    *,
    ann_file: str = "inst_it_dataset_image_51k_w_mask.json",
    image_dir: str | None = None,
    seed: int = 0,
    prompt_type: str = "mix",
    on_error: str = "raise",
    check_media: bool = False,
) -> Iterator[Sample]:
    """One region-caption sample per (image, instance); ``prompt_type`` 'point' | 'box' | 'mix' (seeded)."""
    if prompt_type not in ("point", "box", "mix"):
        raise ValueError(f"prompt_type must be 'point', 'box' or 'mix', got {prompt_type!r}")
    ann_path = root / ann_file
    entries = load_json_list(ann_path, "Inst-IT image annotation file")
    idir = Path(image_dir) if image_dir else root / "images"

    def convert_image(i: int, e: Any) -> list[Sample]:
        where = f"{ann_path.name} entry {i}"
        if not isinstance(e, dict):
            raise ReaderFormatError(f"{where}: expected a JSON object, got {type(e).__name__}")
        for key in ("image_path", "instance_level_caption", "segmentations"):
            if key not in e:
                raise ReaderFormatError(f"{where}: missing field {key!r}")
        caps, segs = e["instance_level_caption"], e["segmentations"]
        if not isinstance(caps, dict) or not isinstance(segs, dict):
            raise ReaderFormatError(f"{where}: 'instance_level_caption' and 'segmentations' must be objects")
        path = media_path(idir, e["image_path"], where, check_media)
        image_id = str(e.get("image_id", i))
        out = []
        for k in sorted(caps, key=lambda k: _oid(k, where)):
            cap = caps[k]
            short = cap.get("short") if isinstance(cap, dict) else None
            if not isinstance(short, str) or not short.strip() or k not in segs:
                continue
            rle = _mask_of(segs[k], f"{where} instance {k}")
            if rle is None or rle_area(rle) == 0:
                continue
            check_no_special_tokens([short], where)
            rng = entry_rng(seed, "inst_it_image", image_id, _oid(k, where))
            kind = prompt_type if prompt_type != "mix" else ("point" if rng.random() < 0.5 else "box")
            prompt = sample_prompt(rle, kind, rng, 0)
            question = IMAGE_CAPTION_PROMPTS[int(rng.integers(len(IMAGE_CAPTION_PROMPTS)))]
            out.append(
                Sample(
                    id=f"inst_it_image_short_caption_raw_ref/{image_id}/{k}",
                    task="region_caption",
                    media=MediaRef(path=path, is_image=True),
                    conversation=[Turn("user", question), Turn("assistant", short.strip())],
                    objects=[ObjectAnnotation(id=_oid(k, where), masks={0: rle}, prompt=prompt)],
                    meta={"dataset": "inst_it_image_short_caption_raw_ref", "source_id": image_id},
                )
            )
        return out

    return iter_entries(entries, convert_image, on_error, "inst_it_image_short_caption_raw_ref")


def _video_frames(
    e: dict[str, Any], where: str, vdir: Path, frame_key_base: int, check_media: bool
) -> tuple[MediaRef, list[str], dict[str, dict[int, dict[str, Any]]]]:
    """Media reference, ordered frame keys and ``{frame key: {oid: RLE}}`` of one video entry."""
    if "video_path" not in e or "segmentations" not in e:
        raise ReaderFormatError(f"{where}: missing field 'video_path' or 'segmentations'")
    segs = e["segmentations"]
    if not isinstance(segs, dict) or not segs:
        raise ReaderFormatError(
            f"{where}: 'segmentations' must be a non-empty {{frame: {{oid: {{mask}}}}}} object"
        )
    folder = media_path(vdir, e["video_path"], where, check_media)
    keys = [str(k) for k in segs]
    named = all(k.lower().endswith(_IMG_EXT) for k in keys)
    if not named and not all(k.lstrip("-").isdigit() for k in keys):
        raise ReaderFormatError(
            f"{where}: frame keys must all be frame file names or all integers, got {keys[:5]}"
        )
    keys.sort(key=_natural_key if named else int)
    masks: dict[str, dict[int, dict[str, Any]]] = {}
    for k in keys:
        per = segs[k]
        if not isinstance(per, dict):
            raise ReaderFormatError(f"{where}: segmentations[{k!r}] must be an {{oid: {{mask}}}} object")
        masks[k] = {}
        for oid, v in per.items():
            rle = _mask_of(v, f"{where} frame {k} object {oid}")
            if rle is not None:
                masks[k][_oid(oid, where)] = rle
    if named:
        media = MediaRef(frames=[str(Path(folder) / k) for k in keys])
    else:
        idx = [int(k) - frame_key_base for k in keys]
        if idx[0] < 0:
            raise ReaderFormatError(f"{where}: frame key {keys[0]} - base {frame_key_base} is negative")
        media = MediaRef(path=folder, frame_indices=idx)
    return media, keys, masks


def _qa_pairs(e: dict[str, Any], where: str) -> list[tuple[str, str]]:
    pairs = e.get("question_answer_pairs")
    if not isinstance(pairs, list):
        raise ReaderFormatError(f"{where}: 'question_answer_pairs' must be a list")
    out = []
    for j, p in enumerate(pairs):
        if (
            not isinstance(p, dict)
            or not isinstance(p.get("question"), str)
            or not isinstance(p.get("answer"), str)
        ):
            raise ReaderFormatError(
                f"{where}: question_answer_pairs[{j}] needs string 'question' and 'answer'"
            )
        check_no_special_tokens([p["question"], p["answer"]], where)
        out.append((p["question"].strip(), p["answer"].strip()))
    return out


def _mentions(text: str) -> list[int]:
    """Object ids mentioned as ``[N]``, in order of first mention."""
    seen: list[int] = []
    for m in _MENTION.finditer(text):
        n = int(m.group(1))
        if n not in seen:
            seen.append(n)
    return seen


def _read_video(
    root: Path,
    mode: str,
    ann_file: str,
    video_dir: str | None,
    seed: int,
    on_error: str,
    check_media: bool,
    frame_key_base: int,
    max_frames: int,
    max_objects: int,
    single_frame_prob: float,
    prompt_type: str,
) -> Iterator[Sample]:
    ann_path = root / ann_file
    entries = load_json_list(ann_path, "Inst-IT video annotation file")
    vdir = Path(video_dir) if video_dir else root / "videos"
    name = "inst_it_video_qa_raw" if mode == "mem" else "inst_it_video_qa_raw_mem"
    if prompt_type not in ("point", "box", "mix"):
        raise ValueError(f"prompt_type must be 'point', 'box' or 'mix', got {prompt_type!r}")

    def convert(i: int, e: Any) -> list[Sample]:
        where = f"{ann_path.name} entry {i}"
        if not isinstance(e, dict):
            raise ReaderFormatError(f"{where}: expected a JSON object, got {type(e).__name__}")
        media, keys, frame_masks = _video_frames(e, where, vdir, frame_key_base, check_media)
        pairs = _qa_pairs(e, where)
        if len(keys) > max_frames:
            return []
        vid = str(e.get("video_id", i))
        out = []
        for j, (q, a) in enumerate(pairs):
            rng = entry_rng(seed, name, vid, j)
            mentioned = _mentions(f"{q}\n{a}")
            ids = sorted(mentioned) if mode == "mem" else mentioned
            per_obj = {
                n: {p: frame_masks[k][n] for p, k in enumerate(keys) if n in frame_masks[k]} for n in ids
            }
            if (
                not ids
                or len(ids) > max_objects
                or any(not any(rle_area(r) for r in per_obj[n].values()) for n in ids)
            ):
                continue  # nothing to point at, too many objects, or a mentioned object without a mask
            if mode == "mem":
                both = [
                    p
                    for p in range(len(keys))
                    if all(p in per_obj[n] and rle_area(per_obj[n][p]) for n in ids)
                ]
                single = bool(both) and rng.random() < single_frame_prob
                if single:
                    keep = both[int(rng.integers(len(both)))]
                    per_obj = {n: {keep: per_obj[n][keep]} for n in ids}
                per_obj = {
                    n: dense_masks(per_obj[n], {p: p for p in range(len(keys))}, len(keys)) for n in ids
                }
                objects = []
                for n in ids:
                    first = next(p for p in sorted(per_obj[n]) if rle_area(per_obj[n][p]))
                    objects.append(
                        ObjectAnnotation(id=n, masks=per_obj[n], prompt=VisualPrompt("mask", frame=first))
                    )
                conv = [Turn("user", q), Turn("assistant", a)]
                task, extra = "region_qa", {"single_frame_masks": single}
            else:
                letter = LETTERS[int(rng.integers(4))]
                text = f"{q}\nOptions:\n({letter}) {a}"
                done: set[int] = set()

                def sub(m: re.Match[str], done: set[int] = done) -> str:
                    n = int(m.group(1))
                    if n in done:
                        return m.group(0)
                    done.add(n)
                    return f"{m.group(0)} {REF}"

                text = MEM_TEMPLATES[int(rng.integers(len(MEM_TEMPLATES)))].format(_MENTION.sub(sub, text))
                objects = []
                for n in ids:
                    kind = prompt_type if prompt_type != "mix" else ("point" if rng.random() < 0.5 else "box")
                    per_obj[n] = dense_masks(per_obj[n], {p: p for p in range(len(keys))}, len(keys))
                    usable = [p for p in sorted(per_obj[n]) if rle_area(per_obj[n][p])]
                    p = usable[int(rng.integers(len(usable)))]
                    objects.append(
                        ObjectAnnotation(
                            id=n, masks=per_obj[n], prompt=sample_prompt(per_obj[n][p], kind, rng, p)
                        )
                    )
                conv = [Turn("user", text), Turn("assistant", " ".join(f"[{n}] {SEG}" for n in ids))]
                task, extra = "pixelqa", {}
            out.append(
                Sample(
                    id=f"{name}/{vid}/{j}",
                    task=task,
                    media=media,
                    conversation=conv,
                    objects=objects,
                    meta={"dataset": name, "source_id": vid, "qa_index": j, **extra},
                )
            )
        return out

    return iter_entries(entries, convert, on_error, name)


@register_reader(
    "inst_it_video_qa_raw",
    splits=("train",),
    description="Inst-IT video region QA ([N] / <t> notation) with <|mem|> masks",
)
def read_inst_it_video_qa(
    root: Path,
    split: str,
    *,
    ann_file: str = "inst_it_dataset_video_21k_w_mask.json",
    video_dir: str | None = None,
    seed: int = 0,
    on_error: str = "raise",
    check_media: bool = False,
    frame_key_base: int = 0,
    max_frames: int = 10,
    max_objects: int = 5,
    single_frame_prob: float = 0.5,
) -> Iterator[Sample]:
    """One region-QA sample per QA pair (objects sorted by id; seeded single-frame masks, see module doc)."""
    return _read_video(
        root,
        "mem",
        ann_file,
        video_dir,
        seed,
        on_error,
        check_media,
        frame_key_base,
        max_frames,
        max_objects,
        single_frame_prob,
        "mix",
    )


@register_reader(
    "inst_it_video_qa_raw_mem",
    splits=("train",),
    description="Inst-IT video QA as memory segmentation: point/box <|ref|> in, '[N] <|seg|>' out",
)
def read_inst_it_video_qa_mem(
    root: Path,
    split: str,
    *,
    ann_file: str = "inst_it_dataset_video_21k_w_mask.json",
    video_dir: str | None = None,
    seed: int = 0,
    on_error: str = "raise",
    check_media: bool = False,
    frame_key_base: int = 0,
    max_frames: int = 8,
    max_objects: int = 5,
    prompt_type: str = "mix",
) -> Iterator[Sample]:
    """One PixelQA-style sample per QA pair; objects in first-mention order (fixes §10.11)."""
    return _read_video(
        root,
        "memseg",
        ann_file,
        video_dir,
        seed,
        on_error,
        check_media,
        frame_key_base,
        max_frames,
        max_objects,
        0.0,
        prompt_type,
    )

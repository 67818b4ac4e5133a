"""VideoRefer-700K (training) and VideoRefer-Bench-Q / -D (evaluation) readers.

Reference behaviour (design doc §4.3-§4.5, §5, §7.4):

* ``videorefer_short_caption_ref`` (stage 1): ``<region>`` -> ``<|ref|>`` in the original question, original
  answer; every object gets a point or a box prompt on a frame where its mask is non-empty.
* ``videorefer_short_caption`` / ``videorefer_detailed_caption`` / ``videorefer_qa`` (mask prompts): captions
  write ``<region>`` -> ``[r]`` with r random in 0..15; QA writes ``<objectK><region>`` -> ``[K]`` in question
  and answer.  The region prefix with ``<|mem|>`` is written by the processor from the object masks, so these
  samples carry mask prompts and ``[K]`` ids only.  Entries with 0 or more than 5 objects, or with a
  ``ratio`` field below 0.3, are skipped as in the reference.
* ``videorefer_qa_mem`` (memory / PixelQA-style training, §4.5): the question plus a single option with a
  random letter, every object mention rewritten to ``[K] <|ref|>`` and wrapped in one of six templates; the
  response is ``[K] <|seg|> ...``.  One-frame entries are skipped.
* ``videorefer_bench_q`` / ``videorefer_bench_d``: region QA / description with GT masks on all annotated
  frames, or on ``frame_idx`` only with ``single_frame=True`` (the reference's ``--single_frame_mode``).

Frames: ``MediaRef.frame_indices`` lists the annotated original frame indices (sorted); masks and prompt
frames are keyed by the *position* in that list.  The reference samples its 8 (training) / 16 (evaluation)
frames among exactly those annotated frames, so a sampler downstream only has to choose positions.  Every object has a mask on every position (an empty RLE where the
annotation has none, as the reference's zero-filled tensors).  Entries with a single annotated frame get
``meta["single_frame_mode"] = True``: the reference then samples frames
from the whole video and forces the annotated one in.

On-disk layout (design doc §5; where it is silent, the public VideoRefer-700K / VideoRefer-Bench releases):

* 700K: ``{root}/videorefer-{short-caption-500k,detailed-caption-125k,qa-75k}-wo-masks.json``, each a list of
  ``{"video", "conversations": [{"from", "value"}...], "annotation": [{frame: ...} per object], "id"}``;
  masks in ``{root}/masks_{short_caption,detailed_caption,qa}/{id}.json`` (the entry's ``id``, or its running
  index when it has none).  A mask file holds one item per object, either ``{frame: RLE}`` (RLE optionally
  wrapped as ``{"segmentation": RLE}``) or a list of RLEs aligned with the annotation's frame keys.  An
  annotation whose frames already carry ``segmentation`` (the "with masks" release) needs no mask file.
* Bench: ``{root}/VideoRefer-Bench-{Q,D}.json`` with ``video, Question, options, Answer, type, frame_idx,
  annotation[{frame: {segmentation}}]`` (D: ``caption``).  ``options`` items may carry their own ``"(A) "``
  prefix (the public file does) and ``Answer`` may be ``"(B) text"``, ``"B"`` or the option text; all are
  normalised to bare option texts and one letter.
* Videos: ``{video_dir}/{video}`` (default ``video_dir = root / "videos"``); the path may be a video file or a
  folder of frames — the media loader handles both.

The module also hosts the small annotation helpers shared by the sibling region readers (JSON loading with
clear errors, RLE normalisation, seeded RNGs, ``<region>`` tag rewriting) until ``unipixel.data.masks`` offers
them; they are plain functions without model dependencies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from ..registry import register_reader
from ..schema import MEM, REF, SEG, MediaRef, ObjectAnnotation, Sample, Turn, VisualPrompt

log = logging.getLogger(__name__)

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
BEST_OPTION = "Please only give the best option."
BENCH_Q_PREFIX = "The best option is ("
BENCH_D_PROMPT = "Please give a detailed description of the highlighted object [0] in the video."
MAX_OBJECTS = 5
MIN_RATIO = 0.3
CAPTION_ID_RANGE = 16  # captions write "[r]" with r random in 0..15

# §4.5: wrappers of the memory (PixelQA-style) question; "{}" = question with "[K] <|ref|>" mentions + option.
MEM_TEMPLATES = (
    "{} Please localize the relevant objects with IDs.",
    "{} Segment all the relevant target(s) with ID(s) in the video.",
    "{} Can you segment the target object(s) with ID(s) in the video?",
    "Please segment the mentioned objects with IDs in the question: {}",
    "Find and track the relevant objects with IDs in the query: {}",
    "Given the query '{}', please provide segmentation masks for the relevant objects with IDs.",
)


# ----------------------------------------------------------------------------------------------------------
# helpers shared by the region readers


class ReaderFormatError(ValueError):
    """An annotation entry that does not follow the dataset's documented layout (names file and entry)."""


def load_json(path: Path, what: str) -> Any:
    """Read a JSON file; a missing or broken file raises an error that names it and says what it is."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ReaderFormatError(f"{what} {path} is not valid JSON: {e}") from e


def load_json_list(path: Path, what: str) -> list[Any]:
    """A JSON file whose top level must be a list of entries (most annotation files here)."""
    data = load_json(path, what)
    if not isinstance(data, list):
        raise ReaderFormatError(f"{what} {path} must hold a JSON list of entries, got {type(data).__name__}")
    return data


def entry_rng(seed: int, *keys: int | str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and the entry's keys, so one entry's random choices do not
    change when other entries are skipped, filtered or sharded.  String keys are hashed (blake2b, stable
    across processes, unlike ``hash``)."""
    parts = [int(seed) & 0xFFFFFFFF]
    for k in keys:
        if isinstance(k, str):
            d = hashlib.blake2b(k.encode("utf-8"), digest_size=8).digest()
            parts.extend(int.from_bytes(d[i : i + 4], "little") for i in (0, 4))
        else:
            parts.append(int(k) & 0xFFFFFFFF)
    return np.random.default_rng(parts)


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Binary (H, W) mask -> compressed COCO RLE with a ``str`` counts (JSON-serialisable)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Compressed COCO RLE (``str`` or ``bytes`` counts) -> bool (H, W) mask."""
    r = {"size": list(rle["size"]), "counts": rle["counts"]}
    if isinstance(r["counts"], str):
        r["counts"] = r["counts"].encode("ascii")
    return mask_utils.decode(r).astype(bool)


def to_rle(seg: Any, height: int | None = None, width: int | None = None, where: str = "") -> dict[str, Any]:
    """Normalise one segmentation to a compressed RLE with ``str`` counts.

    Accepts compressed RLE, uncompressed RLE (``counts`` a list of ints) and COCO polygons (a list of flat
    coordinate lists; needs ``height``/``width``), which together cover every dataset read here.
    """
    if isinstance(seg, dict) and "segmentation" in seg and "counts" not in seg:
        seg = seg["segmentation"]
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        counts = seg["counts"]
        if isinstance(counts, list):
            h, w = seg["size"]
            r = mask_utils.frPyObjects(seg, int(h), int(w))
            return {"size": [int(h), int(w)], "counts": r["counts"].decode("ascii")}
        if isinstance(counts, bytes):
            counts = counts.decode("ascii")
        if not isinstance(counts, str):
            raise ReaderFormatError(
                f"{where}: RLE counts must be a string or a list, got {type(counts).__name__}"
            )
        return {"size": [int(seg["size"][0]), int(seg["size"][1])], "counts": counts}
    if isinstance(seg, list) and seg and all(isinstance(p, list) for p in seg):
        if height is None or width is None:
            raise ReaderFormatError(f"{where}: polygon segmentation needs the image height and width")
        polys = [p for p in seg if len(p) >= 6]
        if not polys:
            raise ReaderFormatError(f"{where}: polygon segmentation has no polygon with >= 3 points")
        r = mask_utils.merge(mask_utils.frPyObjects(polys, int(height), int(width)))
        return {"size": [int(height), int(width)], "counts": r["counts"].decode("ascii")}
    raise ReaderFormatError(
        f"{where}: expected a COCO RLE dict with 'size' and 'counts' or a list of polygons, got {seg!r:.80}"
    )


def union_rles(rles: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Pixel-wise union of RLEs of one frame (a referral that names several tracks is one target)."""
    if len(rles) == 1:
        return dict(rles[0])
    enc = [{"size": list(r["size"]), "counts": r["counts"].encode("ascii")} for r in rles]
    m = mask_utils.merge(enc, intersect=False)
    return {"size": [int(m["size"][0]), int(m["size"][1])], "counts": m["counts"].decode("ascii")}


def rle_area(rle: dict[str, Any]) -> int:
    return int(mask_utils.area({"size": list(rle["size"]), "counts": rle["counts"].encode("ascii")}))


def llava_turns(conversations: Any, where: str) -> list[tuple[str, str]]:
    """LLaVA-style ``[{"from": "human"|"gpt", "value": str}, ...]`` -> ``[(role, text), ...]``.

    ``<image>`` / ``<video>`` placeholders are removed: the processor inserts the vision tokens itself.
    """
    if not isinstance(conversations, list) or not conversations:
        raise ReaderFormatError(f"{where}: 'conversations' must be a non-empty list")
    roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
    out = []
    for i, c in enumerate(conversations):
        if not isinstance(c, dict) or c.get("from") not in roles or not isinstance(c.get("value"), str):
            raise ReaderFormatError(
                f"{where}: conversation turn {i} must be {{'from': 'human'|'gpt', 'value': str}}, got {c!r:.80}"
            )
        out.append((roles[c["from"]], strip_media_tags(c["value"])))
    for i, (role, _) in enumerate(out):
        if role != ("user" if i % 2 == 0 else "assistant"):
            raise ReaderFormatError(
                f"{where}: conversation turns must alternate human/gpt starting with human"
            )
    return out


def strip_media_tags(text: str) -> str:
    """Drop ``<image>``/``<video>`` placeholders (and the newline that usually follows them)."""
    return re.sub(r"<(image|video)>\n?", "", text).strip()


def check_no_special_tokens(texts: Iterable[str], where: str) -> None:
    """Raw annotations must not smuggle in the model's special tokens (they would break token counting)."""
    for t in texts:
        for tok in (REF, SEG, MEM):
            if tok in t:
                raise ReaderFormatError(f"{where}: annotation text contains the special token {tok}")


def format_options(options: Sequence[str]) -> str:
    """``"(A) first\\n(B) second..."`` as the reference's MCQ prompts write them."""
    return "\n".join(f"({LETTERS[i]}) {o}" for i, o in enumerate(options))


def mcq_prompt(question: str, options: Sequence[str]) -> str:
    """``"{question}\\nOptions:\\n(A) ...\\nPlease only give the best option."`` (§7.4 / §7.5)."""
    return f"{question}\nOptions:\n{format_options(options)}\n{BEST_OPTION}"


_OPT_PREFIX = re.compile(r"^\s*\(?([A-Z])[).:]\s*")


def normalise_options(options: Any, answer: Any, where: str) -> tuple[list[str], str]:
    """Bare option texts and the correct letter from the many ways MCQ files write them.

    Options may be ``["(A) x", ...]``, ``["A. x", ...]`` or bare texts; the answer a letter, ``"(B) text"``,
    ``"B. text"`` or the option text itself.
    """
    if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
        raise ReaderFormatError(f"{where}: 'options' must be a non-empty list of strings")
    if len(options) > len(LETTERS):
        raise ReaderFormatError(f"{where}: {len(options)} options is more than the {len(LETTERS)} letters")
    bare = []
    for i, o in enumerate(options):
        m = _OPT_PREFIX.match(o)
        if m and m.group(1) == LETTERS[i]:
            o = o[m.end() :]
        bare.append(o.strip())
    if not isinstance(answer, str) or not answer.strip():
        raise ReaderFormatError(f"{where}: the answer must be a non-empty string, got {answer!r}")
    a = answer.strip()
    letter = None
    if len(a) == 1 and a.upper() in LETTERS[: len(bare)]:
        letter = a.upper()
    else:
        m = _OPT_PREFIX.match(a)
        if m and m.group(1) in LETTERS[: len(bare)]:
            letter = m.group(1)
        elif a in bare:
            letter = LETTERS[bare.index(a)]
    if letter is None:
        raise ReaderFormatError(f"{where}: answer {answer!r} matches none of the options {bare}")
    return bare, letter


_TAG = re.compile(r"(?:<object(\d+)>)?<region>")


def rewrite_region_tags(
    texts: Sequence[str], repl: Callable[[int, bool], str], bare_ids: Callable[[int], int] | None = None
) -> tuple[list[str], list[int]]:
    """Rewrite ``<objectK><region>`` / ``<region>`` tags; return the new texts and the object ids in order of
    first appearance (which is the order of the entry's ``annotation`` list).

    ``repl(oid, first)`` gives the replacement of one mention (``first``: the object's first mention over all
    texts).  A bare ``<region>`` takes id ``bare_ids(i)`` for its i-th distinct bare mention (default i), so
    one caption object stays one object however often it is mentioned.
    """
    order: list[int] = []
    bare_seen = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal bare_seen
        if m.group(1) is not None:
            oid = int(m.group(1))
        else:
            oid = bare_ids(bare_seen) if bare_ids else bare_seen
            bare_seen += 1
            if oid in order:  # the same caption object mentioned again
                return repl(oid, False)
        first = oid not in order
        if first:
            order.append(oid)
        return repl(oid, first)

    out = [_TAG.sub(sub, t) for t in texts]
    return out, order


def frame_key(k: Any, where: str) -> int:
    try:
        v = int(k)
    except (TypeError, ValueError):
        raise ReaderFormatError(f"{where}: frame key {k!r} is not an integer frame index") from None
    if v < 0:
        raise ReaderFormatError(f"{where}: negative frame index {v}")
    return v


def iter_entries(
    entries: Sequence[Any],
    convert: Callable[[int, Any], Sample | Sequence[Sample] | None],
    on_error: str,
    what: str,
) -> Iterator[Sample]:
    """Run ``convert`` on every entry (it returns one sample, several, or None to filter the entry out);
    malformed entries raise (``on_error="raise"``) or are logged and skipped (``"skip"``, for large noisy
    training sets)."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    skipped = 0
    for i, e in enumerate(entries):
        try:
            s = convert(i, e)
        except (ReaderFormatError, FileNotFoundError) as err:
            if on_error == "raise":
                raise
            skipped += 1
            log.warning("%s: skipping entry %d: %s", what, i, err)
            continue
        if isinstance(s, Sample):
            yield s
        elif s is not None:
            yield from s
    if skipped:
        log.warning("%s: skipped %d malformed entries", what, skipped)


def media_path(video_dir: Path, rel: Any, where: str, check: bool) -> str:
    if not isinstance(rel, str) or not rel:
        raise ReaderFormatError(f"{where}: 'video'/'image' must be a non-empty path string, got {rel!r}")
    p = video_dir / rel
    if check and not p.exists():
        raise FileNotFoundError(f"{where}: media file not found: {p}")
    return str(p)


# ----------------------------------------------------------------------------------------------------------
# VideoRefer annotation -> per-object {frame: RLE}


def _object_frames(ann: Any, where: str) -> list[dict[int, Any]]:
    """``annotation`` = one ``{frame: value}`` dict per object -> ``[{frame_index: value}, ...]``."""
    if not isinstance(ann, list):
        raise ReaderFormatError(
            f"{where}: 'annotation' must be a list with one {{frame: ...}} dict per object"
        )
    out = []
    for j, obj in enumerate(ann):
        if not isinstance(obj, dict) or not obj:
            raise ReaderFormatError(f"{where}: annotation[{j}] must be a non-empty {{frame: ...}} dict")
        out.append({frame_key(k, f"{where} annotation[{j}]"): v for k, v in obj.items()})
    return out


def _masks_from_file(path: Path, frames: list[dict[int, Any]], where: str) -> list[dict[int, dict[str, Any]]]:
    data = load_json(path, "VideoRefer mask file")
    if not isinstance(data, list) or len(data) != len(frames):
        n = len(data) if isinstance(data, list) else type(data).__name__
        raise ReaderFormatError(f"{where}: mask file {path} must hold {len(frames)} objects, got {n}")
    out = []
    for j, (item, fr) in enumerate(zip(data, frames, strict=True)):
        w = f"{where} mask file {path.name} object {j}"
        if isinstance(item, dict):
            masks = {frame_key(k, w): to_rle(v, where=w) for k, v in item.items() if v is not None}
        elif isinstance(item, list):
            keys = list(fr)
            if len(item) != len(keys):
                raise ReaderFormatError(f"{w}: {len(item)} masks for {len(keys)} annotated frames")
            masks = {k: to_rle(v, where=w) for k, v in zip(keys, item, strict=True) if v is not None}
        else:
            raise ReaderFormatError(
                f"{w}: expected {{frame: RLE}} or a list of RLEs, got {type(item).__name__}"
            )
        out.append(masks)
    return out


def _inline_masks(frames: list[dict[int, Any]], where: str) -> list[dict[int, dict[str, Any]]] | None:
    """Masks stored in the annotation itself (``{frame: {"segmentation": RLE}}``); None if any is missing."""
    out = []
    for j, fr in enumerate(frames):
        masks = {}
        for t, v in fr.items():
            if not isinstance(v, dict) or "segmentation" not in v:
                return None
            if v["segmentation"] is not None:
                masks[t] = to_rle(v["segmentation"], where=f"{where} annotation[{j}] frame {t}")
        out.append(masks)
    return out


def _frame_layout(
    masks: list[dict[int, dict[str, Any]]], extra: Iterable[int] = ()
) -> tuple[list[int], dict[int, int]]:
    idx = sorted({t for m in masks for t in m} | set(extra))
    return idx, {t: p for p, t in enumerate(idx)}


def dense_masks(
    masks: dict[int, dict[str, Any]], pos: dict[int, int], n_frames: int
) -> dict[int, dict[str, Any]]:
    """``{original frame: RLE}`` -> ``{position: RLE}`` on *every* position of the frame list, an empty RLE where
    the object has no mask (the reference fills zeros there, and the sibling readers' convention — see
    :mod:`unipixel.data.masks` — is that absence is explicit, never a missing key)."""
    out = {pos[t]: r for t, r in masks.items()}
    if not out:
        return out
    h, w = next(iter(out.values()))["size"]
    empty = None
    for p in range(n_frames):
        if p not in out:
            empty = empty or mask_to_rle(np.zeros((h, w), dtype=np.uint8))
            out[p] = empty
    return dict(sorted(out.items()))


def _check_sizes(masks: list[dict[int, dict[str, Any]]], where: str) -> None:
    sizes = {tuple(r["size"]) for m in masks for r in m.values()}
    if len(sizes) > 1:
        raise ReaderFormatError(f"{where}: masks have different sizes {sorted(sizes)}")


def _first_nonempty(masks: dict[int, dict[str, Any]], order: Sequence[int]) -> int | None:
    for t in order:
        if t in masks and rle_area(masks[t]) > 0:
            return t
    return None


def sample_prompt(
    mask_rle: dict[str, Any], kind: str, rng: np.random.Generator, frame: int, box_noise: float = 0.1
) -> VisualPrompt:
    """A training point/box prompt in original pixel coordinates (§4.3): one positive point uniform inside
    the mask, or the tight box jittered like SAM (``U(-1,1)·min(10 % of the side, 20 px)``, clamped)."""
    m = rle_to_mask(mask_rle)
    ys, xs = np.nonzero(m)
    h, w = m.shape
    if kind == "point":
        i = int(rng.integers(len(xs)))
        return VisualPrompt(kind="point", frame=frame, point=[float(xs[i]), float(ys[i])])
    x1, y1, x2, y2 = float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())
    if box_noise > 0:
        nx, ny = min(box_noise * (x2 - x1), 20.0), min(box_noise * (y2 - y1), 20.0)
        d = rng.uniform(-1, 1, size=4) * np.array([nx, ny, nx, ny])
        x1, y1, x2, y2 = (x1 + d[0], y1 + d[1], x2 + d[2], y2 + d[3])
        x1, x2 = sorted((float(np.clip(x1, 0, w - 1)), float(np.clip(x2, 0, w - 1))))
        y1, y2 = sorted((float(np.clip(y1, 0, h - 1)), float(np.clip(y2, 0, h - 1))))
    return VisualPrompt(kind="box", frame=frame, box=[x1, y1, x2, y2])


def mask_center_prompt(mask_rle: dict[str, Any], frame: int) -> VisualPrompt:
    """Evaluation point prompt: the mask pixel farthest from the boundary (PixelQA, §8), original coords."""
    from ...visual_prompts import mask_center_point

    p = mask_center_point(rle_to_mask(mask_rle))
    x, y = (float(v) for v in p.coords.reshape(-1).tolist())
    return VisualPrompt(kind="point", frame=frame, point=[x, y])


def mask_box_prompt(mask_rle: dict[str, Any], frame: int) -> VisualPrompt:
    """Evaluation box prompt: the exact tight box (inclusive pixel indices, no noise), original coords."""
    m = rle_to_mask(mask_rle)
    ys, xs = np.nonzero(m)
    return VisualPrompt(
        kind="box", frame=frame, box=[float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())]
    )


# ----------------------------------------------------------------------------------------------------------
# VideoRefer-700K

_PARTS = {
    "short_caption": ("videorefer-short-caption-500k-wo-masks.json", "masks_short_caption"),
    "detailed_caption": ("videorefer-detailed-caption-125k-wo-masks.json", "masks_detailed_caption"),
    "qa": ("videorefer-qa-75k-wo-masks.json", "masks_qa"),
}


def _load_700k_entry(
    root: Path, part: str, i: int, e: Any, ann_name: str, mask_dir: Path | None
) -> tuple[str, list[tuple[str, str]], list[dict[int, dict[str, Any]]], str]:
    where = f"{ann_name} entry {i}"
    if not isinstance(e, dict):
        raise ReaderFormatError(f"{where}: expected a JSON object, got {type(e).__name__}")
    for key in ("video", "conversations", "annotation"):
        if key not in e:
            raise ReaderFormatError(f"{where}: missing field {key!r}")
    turns = llava_turns(e["conversations"], where)
    check_no_special_tokens((t for _, t in turns), where)
    frames = _object_frames(e["annotation"], where)
    masks = _inline_masks(frames, where)
    eid = str(e.get("id", i))
    if masks is None:
        if mask_dir is None:
            raise ReaderFormatError(f"{where}: annotation has no inline masks and no mask folder was given")
        masks = _masks_from_file(mask_dir / f"{eid}.json", frames, where)
    _check_sizes(masks, where)
    return eid, turns, masks, where


def _read_700k(
    root: Path,
    part: str,
    mode: str,
    ann_file: str | None,
    mask_dir: str | None,
    video_dir: str | None,
    seed: int,
    on_error: str,
    check_media: bool,
    prompt_type: str = "mix",
) -> Iterator[Sample]:
    default_ann, default_masks = _PARTS[part]
    ann_path = root / (ann_file or default_ann)
    masks_path = root / (mask_dir or default_masks)
    vdir = Path(video_dir) if video_dir else root / "videos"
    entries = load_json_list(ann_path, f"VideoRefer-700K {part} annotation file")
    name = {"ref": f"videorefer_{part}_ref", "mem": f"videorefer_{part}", "memseg": "videorefer_qa_mem"}[mode]
    if prompt_type not in ("point", "box", "mix"):
        raise ValueError(f"prompt_type must be 'point', 'box' or 'mix', got {prompt_type!r}")

    def convert(i: int, e: Any) -> Sample | None:
        eid, turns, masks, where = _load_700k_entry(root, part, i, e, ann_path.name, masks_path)
        if not masks or len(masks) > MAX_OBJECTS:
            return None
        ratio = e.get("ratio")
        if isinstance(ratio, (int, float)) and ratio < MIN_RATIO:
            return None
        rng = entry_rng(seed, name, eid)
        frame_idx, pos = _frame_layout(masks)
        if mode == "memseg" and len(frame_idx) < 2:
            return None  # the reference skips one-frame entries for memory training
        texts = [t for _, t in turns]
        if mode == "ref":
            if any("<region>" in t for r, t in turns if r == "assistant"):
                raise ReaderFormatError(
                    f"{where}: an answer mentions <region>; only questions may refer by prompt"
                )
            new, order = rewrite_region_tags(texts, lambda oid, first: REF)
            n_refs = sum(t.count(REF) for r, t in zip([r for r, _ in turns], new, strict=True) if r == "user")
            if n_refs != len(masks) or len(order) != len(masks):
                raise ReaderFormatError(
                    f"{where}: {n_refs} <region> tags in the question(s) for {len(masks)} annotated objects"
                )
            objects = []
            for j, m in enumerate(masks):
                kind = prompt_type if prompt_type != "mix" else ("point" if rng.random() < 0.5 else "box")
                usable = [t for t in frame_idx if t in m and rle_area(m[t]) > 0]
                if not usable:
                    raise ReaderFormatError(f"{where}: object {j} has an empty mask on every annotated frame")
                t = usable[int(rng.integers(len(usable)))]
                prompt = sample_prompt(m[t], kind, rng, pos[t])
                objects.append(
                    ObjectAnnotation(id=j, masks=dense_masks(m, pos, len(frame_idx)), prompt=prompt)
                )
            conv = [Turn(r, t) for (r, _), t in zip(turns, new, strict=True)]
            task = "region_caption"
        else:
            if part == "qa" or mode == "memseg":
                ids_fn = None  # "<objectK><region>" carries K; bare tags are numbered in order
            else:
                pool = [int(x) for x in rng.permutation(CAPTION_ID_RANGE)]
                ids_fn = pool.__getitem__
            if mode == "mem":
                new, order = rewrite_region_tags(texts, lambda oid, first: f"[{oid}]", ids_fn)
                if len(order) != len(masks):
                    raise ReaderFormatError(
                        f"{where}: {len(order)} objects mentioned but {len(masks)} annotated"
                    )
                objects = []
                for oid, m in zip(order, masks, strict=True):
                    t0 = _first_nonempty(m, frame_idx)
                    if t0 is None:
                        raise ReaderFormatError(f"{where}: object [{oid}] has an empty mask on every frame")
                    objects.append(
                        ObjectAnnotation(
                            id=oid,
                            masks=dense_masks(m, pos, len(frame_idx)),
                            prompt=VisualPrompt("mask", frame=pos[t0]),
                        )
                    )
                conv = [Turn(r, t) for (r, _), t in zip(turns, new, strict=True)]
                task = "region_caption" if "caption" in part else "region_qa"
            else:
                if len(turns) < 2:
                    raise ReaderFormatError(f"{where}: a QA entry needs a question and an answer")
                q, a = turns[0][1], turns[1][1]
                letter = LETTERS[int(rng.integers(4))]
                [new_q], order = rewrite_region_tags(
                    [f"{q}\nOptions:\n({letter}) {a}"],
                    lambda oid, first: f"[{oid}] {REF}" if first else f"[{oid}]",
                )
                if len(order) != len(masks):
                    raise ReaderFormatError(
                        f"{where}: {len(order)} objects mentioned but {len(masks)} annotated"
                    )
                text = MEM_TEMPLATES[int(rng.integers(len(MEM_TEMPLATES)))].format(new_q)
                objects = []
                for oid, m in zip(order, masks, strict=True):
                    kind = prompt_type if prompt_type != "mix" else ("point" if rng.random() < 0.5 else "box")
                    usable = [t for t in frame_idx if t in m and rle_area(m[t]) > 0]
                    if not usable:
                        raise ReaderFormatError(f"{where}: object [{oid}] has an empty mask on every frame")
                    t = usable[int(rng.integers(len(usable)))]
                    objects.append(
                        ObjectAnnotation(
                            id=oid,
                            masks=dense_masks(m, pos, len(frame_idx)),
                            prompt=sample_prompt(m[t], kind, rng, pos[t]),
                        )
                    )
                response = " ".join(f"[{o.id}] {SEG}" for o in objects)
                conv = [Turn("user", text), Turn("assistant", response)]
                task = "pixelqa"
        return Sample(
            id=f"{name}/{eid}",
            task=task,
            media=MediaRef(path=media_path(vdir, e["video"], where, check_media), frame_indices=frame_idx),
            conversation=conv,
            objects=objects,
            meta={"dataset": name, "single_frame_mode": len(frame_idx) == 1, "source_id": eid},
        )

    yield from iter_entries(entries, convert, on_error, name)


_700K_DOC = """Options: ``ann_file`` / ``mask_dir`` / ``video_dir`` (relative to ``root`` or absolute), ``seed`` (all
random choices are per-entry seeded), ``on_error`` ('raise' | 'skip'), ``check_media`` (stat every video)."""


@register_reader(
    "videorefer_short_caption_ref",
    splits=("train",),
    description="VideoRefer-700K short captions, objects referred by a point/box <|ref|> (stage 1)",
)
def read_videorefer_short_caption_ref(
    root: Path,
    split: str,
    *,
    ann_file: str | None = None,
    mask_dir: str | None = None,
    video_dir: str | None = None,
    seed: int = 0,
    on_error: str = "raise",
    check_media: bool = False,
    prompt_type: str = "mix",
) -> Iterator[Sample]:
    """Stage-1 referring captions.  ``prompt_type``: 'point', 'box' or 'mix' (seeded 50/50 per object, where the
    reference fixes the choice per annotation with an unseeded draw).  The objects keep their GT masks (keyed by frame
    position) so a trainer can resample the prompt on the frames it actually samples; the prompt kind
    (point/box, not mask) tells the processor to write ``<|ref|>`` and no ``<|mem|>`` for them."""
    return _read_700k(
        root, "short_caption", "ref", ann_file, mask_dir, video_dir, seed, on_error, check_media, prompt_type
    )


@register_reader(
    "videorefer_short_caption",
    splits=("train",),
    description="VideoRefer-700K short captions with <|mem|> region masks",
)
def read_videorefer_short_caption(
    root: Path,
    split: str,
    *,
    ann_file: str | None = None,
    mask_dir: str | None = None,
    video_dir: str | None = None,
    seed: int = 0,
    on_error: str = "raise",
    check_media: bool = False,
) -> Iterator[Sample]:
    """Region captions; ``<region>`` -> ``[r]`` with r a seeded random id in 0..15 (§4.4)."""
    return _read_700k(
        root, "short_caption", "mem", ann_file, mask_dir, video_dir, seed, on_error, check_media
    )


@register_reader(
    "videorefer_detailed_caption",
    splits=("train",),
    description="VideoRefer-700K detailed captions with <|mem|> region masks",
)
def read_videorefer_detailed_caption(
    root: Path,
    split: str,
    *,
    ann_file: str | None = None,
    mask_dir: str | None = None,
    video_dir: str | None = None,
    seed: int = 0,
    on_error: str = "raise",
    check_media: bool = False,
) -> Iterator[Sample]:
    """Detailed region captions; same conventions as ``videorefer_short_caption``."""
    return _read_700k(
        root, "detailed_caption", "mem", ann_file, mask_dir, video_dir, seed, on_error, check_media
    )


@register_reader(
    "videorefer_qa", splits=("train",), description="VideoRefer-700K region QA with <|mem|> region masks"
)
def read_videorefer_qa(
    root: Path,
    split: str,
    *,
    ann_file: str | None = None,
    mask_dir: str | None = None,
    video_dir: str | None = None,
    seed: int = 0,
    on_error: str = "raise",
    check_media: bool = False,
) -> Iterator[Sample]:
    """Region QA; ``<objectK><region>`` -> ``[K]`` in question and answer, all turns kept."""
    return _read_700k(root, "qa", "mem", ann_file, mask_dir, video_dir, seed, on_error, check_media)


@register_reader(
    "videorefer_qa_mem",
    splits=("train",),
    description="VideoRefer-700K QA as memory segmentation: point/box <|ref|> in, '[K] <|seg|>' out",
)
def read_videorefer_qa_mem(
    root: Path,
    split: str,
    *,
    ann_file: str | None = None,
    mask_dir: str | None = None,
    video_dir: str | None = None,
    seed: int = 0,
    on_error: str = "raise",
    check_media: bool = False,
    prompt_type: str = "mix",
) -> Iterator[Sample]:
    """PixelQA-style training (§4.5): the first QA pair becomes "{question}\\nOptions:\\n({letter}) {answer}"
    with each object's first mention "[K] <|ref|>", wrapped in a seeded template; the response segments every
    object ("[K] <|seg|> ...").  The option letter, template and prompts are seeded per entry."""
    return _read_700k(
        root, "qa", "memseg", ann_file, mask_dir, video_dir, seed, on_error, check_media, prompt_type
    )


# ----------------------------------------------------------------------------------------------------------
# VideoRefer-Bench


def parse_bench_entry(
    e: Any, i: int, ann_name: str, single_frame: bool
) -> tuple[str, int, list[int], dict[int, int], list[dict[int, dict[str, Any]]], str]:
    """Shared by Bench-Q/-D and PixelQA: id, prompt frame, frame layout and masks (object order = annotation
    order = order of first mention in the question)."""
    where = f"{ann_name} entry {i}"
    if not isinstance(e, dict):
        raise ReaderFormatError(f"{where}: expected a JSON object, got {type(e).__name__}")
    for key in ("video", "annotation", "frame_idx"):
        if key not in e:
            raise ReaderFormatError(f"{where}: missing field {key!r}")
    frames = _object_frames(e["annotation"], where)
    masks = _inline_masks(frames, where)
    if masks is None:
        raise ReaderFormatError(f"{where}: every annotated frame needs {{'segmentation': RLE}}")
    _check_sizes(masks, where)
    prompt_t = frame_key(e["frame_idx"], where)
    if single_frame:
        masks = [{t: r for t, r in m.items() if t == prompt_t} for m in masks]
    for j, m in enumerate(masks):
        if prompt_t not in m:
            raise ReaderFormatError(f"{where}: object {j} has no mask on the prompt frame {prompt_t}")
    # the reference samples its frames among all annotated frames, also in single-frame mode (where only the
    # prompt frame keeps a mask), so the frame list is always every annotated frame
    frame_idx, pos = _frame_layout([{t: None for t in f} for f in frames], [prompt_t])
    return str(e.get("id", i)), prompt_t, frame_idx, pos, masks, where


def _bench_q_texts(e: dict[str, Any], where: str) -> tuple[str, list[str], str]:
    for key in ("Question", "options", "Answer"):
        if key not in e:
            raise ReaderFormatError(f"{where}: missing field {key!r}")
    if not isinstance(e["Question"], str):
        raise ReaderFormatError(f"{where}: 'Question' must be a string")
    check_no_special_tokens([e["Question"], *map(str, e["options"])], where)
    options, letter = normalise_options(e["options"], e["Answer"], where)
    return e["Question"], options, letter


@register_reader(
    "videorefer_bench_q",
    splits=("test",),
    description="VideoRefer-Bench-Q: region multiple-choice QA with GT masks (<|mem|>)",
)
def read_videorefer_bench_q(
    root: Path,
    split: str,
    *,
    ann_file: str = "VideoRefer-Bench-Q.json",
    video_dir: str | None = None,
    single_frame: bool = False,
    check_media: bool = False,
) -> Iterator[Sample]:
    """One sample per question: user turn = "{Question with [K]}\\nOptions:\\n(A) ...\\nPlease only give the best
    option." (no assistant turn: it is an evaluation sample); ``meta`` holds ``options`` (bare texts),
    ``answer`` (letter), ``assistant_prefix`` ("The best option is (") and ``type``.  ``single_frame`` keeps
    the mask on ``frame_idx`` only (the reference's single-frame mode)."""
    ann_path = root / ann_file
    entries = load_json_list(ann_path, "VideoRefer-Bench-Q annotation file")
    vdir = Path(video_dir) if video_dir else root / "videos"

    def convert(i: int, e: Any) -> Sample:
        eid, prompt_t, frame_idx, pos, masks, where = parse_bench_entry(e, i, ann_path.name, single_frame)
        question, options, letter = _bench_q_texts(e, where)
        [q], order = rewrite_region_tags([question], lambda oid, first: f"[{oid}]")
        if len(order) != len(masks):
            raise ReaderFormatError(f"{where}: {len(order)} objects mentioned but {len(masks)} annotated")
        objects = [
            ObjectAnnotation(
                id=oid,
                masks=dense_masks(m, pos, len(frame_idx)),
                prompt=VisualPrompt("mask", frame=pos[prompt_t]),
            )
            for oid, m in zip(order, masks, strict=True)
        ]
        return Sample(
            id=f"videorefer_bench_q/{eid}",
            task="region_qa",
            media=MediaRef(path=media_path(vdir, e["video"], where, check_media), frame_indices=frame_idx),
            conversation=[Turn("user", mcq_prompt(q, options))],
            objects=objects,
            meta={
                "dataset": "videorefer_bench_q",
                "options": options,
                "answer": letter,
                "assistant_prefix": BENCH_Q_PREFIX,
                "type": e.get("type"),
                "prompt_frame_index": prompt_t,
                "single_frame": single_frame,
                "source_id": eid,
            },
        )

    return iter_entries(entries, convert, "raise", "videorefer_bench_q")


@register_reader(
    "videorefer_bench_d",
    splits=("test",),
    description="VideoRefer-Bench-D: detailed description of the highlighted object [0] (GT masks)",
)
def read_videorefer_bench_d(
    root: Path,
    split: str,
    *,
    ann_file: str = "VideoRefer-Bench-D.json",
    video_dir: str | None = None,
    single_frame: bool = False,
    check_media: bool = False,
) -> Iterator[Sample]:
    """One sample per entry, one object with id 0: user turn "Please give a detailed description of the
    highlighted object [0] in the video."; the reference caption is in ``meta["caption"]`` (for the judge)."""
    ann_path = root / ann_file
    entries = load_json_list(ann_path, "VideoRefer-Bench-D annotation file")
    vdir = Path(video_dir) if video_dir else root / "videos"

    def convert(i: int, e: Any) -> Sample:
        eid, prompt_t, frame_idx, pos, masks, where = parse_bench_entry(e, i, ann_path.name, single_frame)
        if len(masks) != 1:
            raise ReaderFormatError(f"{where}: Bench-D describes one object, got {len(masks)}")
        caption = e.get("caption")
        if not isinstance(caption, str):
            raise ReaderFormatError(f"{where}: missing string field 'caption'")
        obj = ObjectAnnotation(
            id=0,
            masks=dense_masks(masks[0], pos, len(frame_idx)),
            prompt=VisualPrompt("mask", frame=pos[prompt_t]),
        )
        return Sample(
            id=f"videorefer_bench_d/{eid}",
            task="region_caption",
            media=MediaRef(path=media_path(vdir, e["video"], where, check_media), frame_indices=frame_idx),
            conversation=[Turn("user", BENCH_D_PROMPT)],
            objects=[obj],
            meta={
                "dataset": "videorefer_bench_d",
                "caption": caption,
                "prompt_frame_index": prompt_t,
                "single_frame": single_frame,
                "source_id": eid,
            },
        )

    return iter_entries(entries, convert, "raise", "videorefer_bench_d")

"""General instruction-tuning data in LLaVA format (design doc §5): ``llava_instruct_665k`` (LLaVA-1.5
mix665k) and ``llava_instruct_665k_videogpt_plus_576k`` (the reference's merged LLaVA + VideoGPT+ file).

Layout: one JSON list of ``{"id", "image" | "video", "conversations": [{"from": "human"|"gpt", "value"}]}``;
defaults ``{root}/llava_v1_5_mix665k.json`` and ``{root}/llava_v1_5_mix665k_with_videogpt_plus_576k.json``
(§5: ``data/general/...``); ``image`` / ``video`` paths are relative to ``image_dir`` / ``video_dir`` (both
default to ``root``), as in the public LLaVA release (``coco/train2017/...``, ``gqa/images/...``).

Samples are ``general_qa`` with every turn kept; ``<image>`` / ``<video>`` placeholders are removed because the
processor inserts the vision tokens.  Pure-text entries (no image or video; about 40k in mix665k) cannot be
expressed by the sample schema (media is required), so they are skipped and counted by default
(``text_only="skip"``; ``"raise"`` makes them an error).  Images get the image budget downstream; videos are
sampled at 2 fps / ≤ 8 frames by the pipeline (§5), not here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..registry import register_reader
from ..schema import MediaRef, Sample, Turn
from .videorefer import ReaderFormatError, check_no_special_tokens, iter_entries, llava_turns, load_json_list

log = logging.getLogger(__name__)


def read_llava_file(
    ann_path: Path,
    name: str,
    image_dir: Path,
    video_dir: Path,
    text_only: str,
    on_error: str,
    check_media: bool = False,
) -> Iterator[Sample]:
    """Shared by the LLaVA and VideoGPT+ readers: one ``general_qa`` sample per entry."""
    if text_only not in ("skip", "raise"):
        raise ValueError(f"text_only must be 'skip' or 'raise', got {text_only!r}")
    entries = load_json_list(ann_path, f"{name} annotation file")
    n_text = 0

    def convert(i: int, e: Any) -> Sample | None:
        nonlocal n_text
        where = f"{ann_path.name} entry {i}"
        if not isinstance(e, dict):
            raise ReaderFormatError(f"{where}: expected a JSON object, got {type(e).__name__}")
        turns = llava_turns(e.get("conversations"), where)
        check_no_special_tokens((t for _, t in turns), where)
        if "image" in e and "video" in e:
            raise ReaderFormatError(f"{where}: has both 'image' and 'video'")
        if "image" in e:
            rel, base, is_image = e["image"], image_dir, True
        elif "video" in e:
            rel, base, is_image = e["video"], video_dir, False
        else:
            if text_only == "raise":
                raise ReaderFormatError(
                    f"{where}: text-only entry (no 'image' or 'video'); the schema needs media"
                )
            n_text += 1
            return None
        if not isinstance(rel, str) or not rel:
            raise ReaderFormatError(f"{where}: media path must be a non-empty string, got {rel!r}")
        path = base / rel
        if check_media and not path.exists():
            raise FileNotFoundError(f"{where}: media file not found: {path}")
        return Sample(
            id=f"{name}/{e.get('id', i)}",
            task="general_qa",
            media=MediaRef(path=str(path), is_image=is_image),
            conversation=[Turn(r, t) for r, t in turns],
            meta={"dataset": name, "source_id": str(e.get("id", i))},
        )

    yield from iter_entries(entries, convert, on_error, name)
    if n_text:
        log.info("%s: skipped %d text-only entries", name, n_text)


def _dirs(root: Path, image_dir: str | None, video_dir: str | None) -> tuple[Path, Path]:
    return (Path(image_dir) if image_dir else root), (Path(video_dir) if video_dir else root)


@register_reader("llava_instruct_665k", splits=("train",), description="LLaVA-1.5 mix665k instruction data")
def read_llava_instruct_665k(
    root: Path,
    split: str,
    *,
    ann_file: str = "llava_v1_5_mix665k.json",
    image_dir: str | None = None,
    video_dir: str | None = None,
    text_only: str = "skip",
    on_error: str = "raise",
    check_media: bool = False,
) -> Iterator[Sample]:
    """LLaVA-1.5 SFT conversations on images."""
    i_dir, v_dir = _dirs(root, image_dir, video_dir)
    return read_llava_file(
        root / ann_file, "llava_instruct_665k", i_dir, v_dir, text_only, on_error, check_media
    )


@register_reader(
    "llava_instruct_665k_videogpt_plus_576k",
    splits=("train",),
    description="LLaVA-1.5 mix665k merged with VideoGPT+ 576k (the reference's general SFT file)",
)
def read_llava_videogpt_plus(
    root: Path,
    split: str,
    *,
    ann_file: str = "llava_v1_5_mix665k_with_videogpt_plus_576k.json",
    image_dir: str | None = None,
    video_dir: str | None = None,
    text_only: str = "skip",
    on_error: str = "raise",
    check_media: bool = False,
) -> Iterator[Sample]:
    """Image and video SFT conversations from the merged file."""
    i_dir, v_dir = _dirs(root, image_dir, video_dir)
    return read_llava_file(
        root / ann_file,
        "llava_instruct_665k_videogpt_plus_576k",
        i_dir,
        v_dir,
        text_only,
        on_error,
        check_media,
    )

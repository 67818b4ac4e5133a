"""VideoGPT+ instruction-tuning data (the video half of the reference's general SFT mix, design doc §5).

Layout (§5 only names the merged file, see :mod:`.llava`; this follows the public VideoGPT+ training
release): LLaVA-format JSON lists ``{"id", "video", "conversations"}`` under ``{root}/instruction_tuning/``
(``ann_files`` picks files, default every ``*.json`` there, sorted).  ``video`` is resolved against
``video_dirs[file name]`` if given, else ``video_dir`` (default ``root``), because the release keeps each
source's clips in its own folder.  Samples are ``general_qa``; all turns kept; ``<video>`` placeholders removed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from ..registry import register_reader
from ..schema import Sample
from .llava import read_llava_file


@register_reader("videogpt_plus_576k", splits=("train",), description="VideoGPT+ video instruction data")
def read_videogpt_plus(
    root: Path,
    split: str,
    *,
    ann_dir: str = "instruction_tuning",
    ann_files: Sequence[str] | None = None,
    video_dir: str | None = None,
    video_dirs: Mapping[str, str] | None = None,
    text_only: str = "skip",
    on_error: str = "raise",
    check_media: bool = False,
) -> Iterator[Sample]:
    """Every entry of every selected file, file by file."""
    folder = root / ann_dir
    if ann_files is None:
        if not folder.is_dir():
            raise FileNotFoundError(f"VideoGPT+ annotation folder not found: {folder}")
        paths = sorted(folder.glob("*.json"))
        if not paths:
            raise FileNotFoundError(f"no VideoGPT+ annotation files (*.json) in {folder}")
    else:
        paths = [folder / f for f in ann_files]
    base = Path(video_dir) if video_dir else root

    def gen() -> Iterator[Sample]:
        for p in paths:
            vdir = Path(video_dirs[p.name]) if video_dirs and p.name in video_dirs else base
            yield from read_llava_file(
                p, f"videogpt_plus_576k/{p.stem}", vdir, vdir, text_only, on_error, check_media
            )

    return gen()

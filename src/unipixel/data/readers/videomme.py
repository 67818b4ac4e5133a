"""Video-MME multiple-choice video QA (design doc §5, §7.5).

Layout (§5 says "Video-MME parquet"; the rest is the public lmms-lab/Video-MME release):
``{root}/videomme/test-00000-of-00001.parquet`` with columns ``video_id, duration, domain, sub_category,
videoID, question_id, task_type, question, options (["A. ...", ...]), answer ("A")``; videos
``{root}/data/{videoID}.mp4``; subtitles ``{root}/subtitle/{videoID}.srt``.  A ``.json`` (list of rows) or
``.jsonl`` export of the same table is accepted too (``ann_file``), since reading parquet needs ``pyarrow``,
which is not a dependency of this package.

Prompt (§7.5): ``"{question}\\nOptions:\\n(A) ...\\nPlease only give the best option."``, assistant prefix
``"Best Option: ("``.  ``subtitles=True`` puts the first 100 subtitle lines in ``meta["subtitles"]`` (the
design doc does not quote how the reference words them into the prompt, so the text is left to the caller).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..registry import register_reader
from ..schema import MediaRef, Sample, Turn
from .mvbench import GENERAL_PREFIX
from .videorefer import (
    ReaderFormatError,
    check_no_special_tokens,
    iter_entries,
    load_json_list,
    mcq_prompt,
    normalise_options,
)

MAX_SUBTITLES = 100


def _rows(path: Path) -> list[Any]:
    if not path.is_file():
        raise FileNotFoundError(f"Video-MME annotation file not found: {path}")
    if path.suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError as e:
            raise ImportError(
                f"reading {path} needs pyarrow (pip install pyarrow), or pass ann_file= a .json/.jsonl export"
            ) from e
        return pq.read_table(path).to_pylist()
    if path.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ReaderFormatError(f"{path} line {n} is not valid JSON: {e}") from e
        return rows
    return load_json_list(path, "Video-MME annotation file")


def _as_list(v: Any) -> Any:
    """Parquet rows give options as arrays/tuples; JSON as lists.  Anything else is left for validation."""
    return v if v is None or isinstance(v, (list, str, dict)) else list(v)


def read_srt(path: Path, limit: int = MAX_SUBTITLES) -> list[str]:
    """Subtitle texts of an .srt file (index and timing lines dropped, tags removed), at most ``limit``."""
    out: list[str] = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace").strip()):
        lines = [ln.strip() for ln in block.splitlines() if ln.strip()]
        text = [ln for ln in lines if not ln.isdigit() and "-->" not in ln]
        if text:
            out.append(re.sub(r"<[^>]+>", "", " ".join(text)))
        if len(out) >= limit:
            break
    return out


@register_reader("videomme", splits=("test",), description="Video-MME multiple-choice video QA")
def read_videomme(
    root: Path,
    split: str,
    *,
    ann_file: str = "videomme/test-00000-of-00001.parquet",
    video_dir: str = "data",
    subtitles: bool = False,
    subtitle_dir: str = "subtitle",
    check_media: bool = False,
) -> Iterator[Sample]:
    """One ``general_qa`` sample per question; ``meta`` has options, answer letter, duration, domain, task."""
    ann_path = root / ann_file
    rows = _rows(ann_path)

    def convert(i: int, r: Any) -> Sample:
        where = f"{ann_path.name} row {i}"
        need = ("videoID", "question_id", "question", "options", "answer")
        if not isinstance(r, dict) or not all(k in r for k in need):
            raise ReaderFormatError(f"{where}: needs {', '.join(need)}")
        options, letter = normalise_options(_as_list(r["options"]), str(r["answer"]), where)
        check_no_special_tokens([str(r["question"]), *options], where)
        path = root / video_dir / f"{r['videoID']}.mp4"
        if check_media and not path.exists():
            raise FileNotFoundError(f"{where}: video not found: {path}")
        meta: dict[str, Any] = {
            "dataset": "videomme",
            "options": options,
            "answer": letter,
            "assistant_prefix": GENERAL_PREFIX,
            "task": r.get("task_type"),
            "duration": r.get("duration"),
            "domain": r.get("domain"),
            "sub_category": r.get("sub_category"),
            "video_id": r.get("video_id"),
        }
        if subtitles:
            srt = root / subtitle_dir / f"{r['videoID']}.srt"
            meta["subtitles"] = read_srt(srt) if srt.is_file() else []
        return Sample(
            id=f"videomme/{r['question_id']}",
            task="general_qa",
            media=MediaRef(path=str(path)),
            conversation=[Turn("user", mcq_prompt(str(r["question"]).strip(), options))],
            meta=meta,
        )

    return iter_entries(rows, convert, "raise", "videomme")

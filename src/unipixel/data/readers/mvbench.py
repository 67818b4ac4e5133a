"""MVBench multiple-choice video QA (design doc §5, §7.5).

Layout (§5 says "json per task"; the rest is the public OpenGVLab/MVBench release and its evaluation
script's task table): ``{root}/json/{task file}`` with entries ``{"video", "question", "candidates": [...],
"answer": option text, ["start", "end"] seconds}``; media under ``{root}/video/{prefix}/{video}``.  The
"Episodic Reasoning" media are frame folders (TVQA frames at 3 fps); the rest are video files.  ``task_table``
overrides the table below (``{task: (json file, media prefix, is_frame_folder, has_bound)}``) and ``tasks``
selects a subset.

Prompt (§7.5): ``"{question}\\nOptions:\\n(A) ...\\nPlease only give the best option."`` with the candidates in
file order (MVBench does not shuffle), assistant prefix ``"Best Option: ("``.  Samples hold the user turn only;
``meta``: ``task``, ``options``, ``answer`` (letter), ``assistant_prefix`` and, for bounded tasks,
``start`` / ``end`` in seconds (the sampler restricts frames to that window).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ..registry import register_reader
from ..schema import MediaRef, Sample, Turn
from .videorefer import (
    ReaderFormatError,
    check_no_special_tokens,
    iter_entries,
    load_json_list,
    mcq_prompt,
    normalise_options,
)

GENERAL_PREFIX = "Best Option: ("

# task -> (json file, media prefix under video/, media is a frame folder, entries carry start/end)
MVBENCH_TASKS: dict[str, tuple[str, str, bool, bool]] = {
    "Action Sequence": ("action_sequence.json", "star/Charades_v1_480", False, True),
    "Action Prediction": ("action_prediction.json", "star/Charades_v1_480", False, True),
    "Action Antonym": ("action_antonym.json", "ssv2_video", False, False),
    "Fine-grained Action": ("fine_grained_action.json", "Moments_in_Time_Raw/videos", False, False),
    "Unexpected Action": ("unexpected_action.json", "FunQA_test/test", False, False),
    "Object Existence": ("object_existence.json", "clevrer/video_validation", False, False),
    "Object Interaction": ("object_interaction.json", "star/Charades_v1_480", False, True),
    "Object Shuffle": ("object_shuffle.json", "perception/videos", False, False),
    "Moving Direction": ("moving_direction.json", "clevrer/video_validation", False, False),
    "Action Localization": ("action_localization.json", "sta/sta_video", False, True),
    "Scene Transition": ("scene_transition.json", "scene_qa/video", False, False),
    "Action Count": ("action_count.json", "perception/videos", False, False),
    "Moving Count": ("moving_count.json", "clevrer/video_validation", False, False),
    "Moving Attribute": ("moving_attribute.json", "clevrer/video_validation", False, False),
    "State Change": ("state_change.json", "perception/videos", False, False),
    "Fine-grained Pose": ("fine_grained_pose.json", "nturgbd", False, False),
    "Character Order": ("character_order.json", "perception/videos", False, False),
    "Egocentric Navigation": ("egocentric_navigation.json", "vlnqa", False, False),
    "Episodic Reasoning": ("episodic_reasoning.json", "tvqa/frames_fps3_hq", True, True),
    "Counterfactual Inference": ("counterfactual_inference.json", "clevrer/video_validation", False, False),
}


@register_reader("mvbench", splits=("test",), description="MVBench: 20-task multiple-choice video QA")
def read_mvbench(
    root: Path,
    split: str,
    *,
    tasks: Sequence[str] | None = None,
    task_table: Mapping[str, tuple[str, str, bool, bool]] | None = None,
    check_media: bool = False,
) -> Iterator[Sample]:
    """One ``general_qa`` sample per question, task by task in table order."""
    table = dict(task_table) if task_table is not None else MVBENCH_TASKS
    names = list(table) if tasks is None else list(tasks)
    unknown = [t for t in names if t not in table]
    if unknown:
        raise ValueError(f"unknown MVBench task(s) {unknown}; known: {sorted(table)}")

    missing = [str(root / "json" / table[t][0]) for t in names if not (root / "json" / table[t][0]).is_file()]
    if missing:  # fail before yielding anything: a partial benchmark would give a misleading accuracy
        raise FileNotFoundError(f"MVBench annotation file(s) not found: {', '.join(missing)}")

    def gen() -> Iterator[Sample]:
        for task in names:
            fname = table[task][0]
            ann_path = root / "json" / fname
            entries = load_json_list(ann_path, f"MVBench annotation file of task {task!r}")
            convert = partial(_convert, root, task, table[task], ann_path, check_media)
            yield from iter_entries(entries, convert, "raise", f"mvbench {task}")

    return gen()


def _convert(
    root: Path,
    task: str,
    spec: tuple[str, str, bool, bool],
    ann_path: Path,
    check_media: bool,
    i: int,
    e: Any,
) -> Sample:
    fname, prefix, is_frames, bound = spec
    where = f"{ann_path.name} entry {i}"
    if not isinstance(e, dict) or not all(k in e for k in ("video", "question", "candidates", "answer")):
        raise ReaderFormatError(f"{where}: needs 'video', 'question', 'candidates' and 'answer'")
    if not isinstance(e["question"], str) or not isinstance(e["video"], str):
        raise ReaderFormatError(f"{where}: 'question' and 'video' must be strings")
    cands = e["candidates"]
    options, letter = normalise_options(
        [str(c) for c in cands] if isinstance(cands, list) else cands, str(e["answer"]), where
    )
    check_no_special_tokens([e["question"], *options], where)
    path = root / "video" / prefix / e["video"]
    if check_media and not path.exists():
        raise FileNotFoundError(f"{where}: media not found: {path}")
    meta: dict[str, Any] = {
        "dataset": "mvbench",
        "task": task,
        "options": options,
        "answer": letter,
        "assistant_prefix": GENERAL_PREFIX,
        "frame_folder": is_frames,
    }
    if bound and "start" in e and "end" in e:
        meta["start"], meta["end"] = float(e["start"]), float(e["end"])
    return Sample(
        id=f"mvbench/{Path(fname).stem}/{i}",
        task="general_qa",
        media=MediaRef(path=str(path)),
        conversation=[Turn("user", mcq_prompt(e["question"].strip(), options))],
        meta=meta,
    )

"""Benchmark registry of ``unipixel eval``: one small entry per benchmark.

An entry says which dataset reader feeds it (``unipixel.data.registry``), which splits are evaluated by default,
which protocol runs the model (:mod:`unipixel.eval.protocols`), how per-sample records are aggregated into the
dataset numbers, and the paper's numbers (reference-design §7.7) the reproduction report compares against.

Why a registry instead of one script per benchmark (as the reference has): every benchmark then shares the same
sharding, resumption, output layout and report; adding one is a few lines here.

Aggregators take the per-sample records the runner wrote (each holds its own ``scores``) and return
``(headline, details)``: ``headline`` maps metric names (``"J&F"``, ``"cIoU"``, ``"acc"``...) to numbers in the
paper's units (percent, or the judge's 0-5 scale), ``details`` holds breakdowns (subsets, tasks, counts).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import metrics as M

Record = Mapping[str, Any]
Aggregator = Callable[[Sequence[Record]], tuple[dict[str, float | None], dict[str, Any]]]

# ----------------------------------------------------------------------------------------------------------
# aggregators


def _pct(x: float) -> float:
    return float(100.0 * x) if x is not None and not math.isnan(x) else float("nan")


def _scores(records: Sequence[Record], kind: str | None = None) -> list[Mapping[str, Any]]:
    out = [r["scores"] for r in records if r.get("scores")]
    return [s for s in out if kind is None or s.get("kind") == kind]


def aggregate_iou(records: Sequence[Record]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """RefCOCO/+/g and ReasonSeg (``eval_refcoco.py``): cIoU = Σinter/Σunion, gIoU = mean per-sample IoU
    (empty/empty = 1), BBox Acc = mean box hit when GT boxes exist."""
    acc = M.IoUAccumulator()
    for s in _scores(records, "image"):
        acc.add(s["inter"], s["union"])
        if s.get("hit") is not None:
            acc.add_hit(bool(s["hit"]))
    head: dict[str, float | None] = {"cIoU": _pct(acc.ciou), "gIoU": _pct(acc.giou)}
    hits = [s["hit"] for s in _scores(records, "image") if s.get("hit") is not None]
    if hits:
        head["BBox Acc"] = _pct(sum(map(bool, hits)) / len(hits))
    return head, {"n": len(_scores(records, "image"))}


def aggregate_jf(records: Sequence[Record]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """MeViS valid_u / Ref-DAVIS17 / Ref-SAV (``eval_seg.py``): J, F = means over expressions, J&F = (J+F)/2."""
    res = M.aggregate_j_and_f([(s["J"], s["F"]) for s in _scores(records, "video")])
    return {"J": _pct(res["J"]), "F": _pct(res["F"]), "J&F": _pct(res["J&F"])}, {"n": res["n"]}


def aggregate_revos(records: Sequence[Record]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """ReVOS (``eval_revos.py``): per subset (referring / reasoning) means; overall = mean of the two subset
    values (§7.3). "A" is the corrected pixel accuracy; "R" needs ``mask_dict_foreground.json``, which the
    reader does not load, so it is NaN."""
    recs = []
    for r in records:
        s = r.get("scores")
        if s and s.get("kind") == "video":
            recs.append(
                {
                    "type_id": int(r.get("group", {}).get("type_id", 0)),
                    "J": s["J"],
                    "F": s["F"],
                    "A": s.get("A", float("nan")),
                    "R": float("nan"),
                }
            )
    res = M.revos_aggregate(recs)
    head = {"J": _pct(res["overall"]["J"]), "F": _pct(res["overall"]["F"]), "J&F": _pct(res["overall"]["JF"])}
    details = {
        name: {"J": _pct(v["J"]), "F": _pct(v["F"]), "J&F": _pct(v["JF"]), "A": _pct(v["A"]), "n": v["n"]}
        for name, v in res.items()
    }
    return head, details


def aggregate_groundmore(records: Sequence[Record]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """GroundMoRe (``eval_groundmore.py``): J, F, J&F overall and per question type."""
    recs = [
        {
            "q_type": r.get("group", {}).get("q_type") or "unknown",
            "J": r["scores"]["J"],
            "F": r["scores"]["F"],
        }
        for r in records
        if r.get("scores") and r["scores"].get("kind") == "video"
    ]
    res = M.groundmore_aggregate(recs)
    head = {"J": _pct(res["overall"]["J"]), "F": _pct(res["overall"]["F"]), "J&F": _pct(res["overall"]["JF"])}
    details = {
        k: {"J": _pct(v["J"]), "F": _pct(v["F"]), "J&F": _pct(v["JF"]), "n": v["n"]} for k, v in res.items()
    }
    return head, details


def aggregate_mc(records: Sequence[Record]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Multiple choice (``eval_general.py``): accuracy overall and per task; unparsable answers count as wrong."""
    table: dict[str, dict[str, float]] = {}
    for s in _scores(records, "mc"):
        for key in ("all", *([s["task"]] if s.get("task") else [])):
            e = table.setdefault(key, {"n": 0, "failed": 0, "correct": 0})
            e["n"] += 1
            e["failed"] += int(s["choice"] is None)
            e["correct"] += int(bool(s["correct"]))
    for e in table.values():
        e["acc"] = _pct(e["correct"] / e["n"]) if e["n"] else float("nan")
    all_ = table.get("all", {"acc": float("nan")})
    return {"acc": all_["acc"]}, {"tasks": table}


def aggregate_pixelqa(records: Sequence[Record]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """PixelQA (§8): accuracy of step B + volumetric J / F over all objects of all samples (step A)."""
    head, details = aggregate_mc(records)
    ss = _scores(records, "mc")
    js = [j for s in ss for j in s.get("j_values", [])]
    fs = [f for s in ss for f in s.get("f_values", [])]
    res = M.pixelqa_aggregate(js, fs)
    head.update({"J": _pct(res["J"]), "F": _pct(res["F"]), "J&F": _pct(res["J&F"])})
    return head, {**details, "objects": len(js)}


def aggregate_judge(records: Sequence[Record]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """VideoRefer-Bench-D: mean of the four judge dimensions' averages (0-5); ``None`` while pending."""
    from .judge import DIMENSIONS

    judged = [r["judgment"] for r in records if r.get("judgment")]
    if not judged or len(judged) < sum(1 for r in records if r.get("scores")):
        return {"score": None}, {"judged": len(judged), "status": "pending"}
    per_dim = {d: sum(j[d] for j in judged) / len(judged) for d in DIMENSIONS}
    return {"score": sum(per_dim.values()) / len(per_dim)}, {"judged": len(judged), "dimensions": per_dim}


def aggregate_submission(records: Sequence[Record]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """Server-only splits: no local score; the submission archive is the result."""
    return {}, {"written": sum(1 for r in records if r.get("scores", {}).get("kind") == "submission")}


_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, special tokens and punctuation removed, whitespace collapsed (for exact match)."""
    text = re.sub(r"<\|[a-z_]+\|>", " ", text)
    return " ".join(text.lower().translate(_PUNCT).split())


def aggregate_synthetic(records: Sequence[Record]) -> tuple[dict[str, float | None], dict[str, Any]]:
    """The synthetic world: image referring/reasoning seg (cIoU, gIoU), video seg (J, F, J&F), region
    captions and short answers (exact match), video region multiple choice, PixelQA (accuracy, volumetric J&F)."""
    groups: dict[str, list[Record]] = {}
    for r in records:
        groups.setdefault(r.get("group", {}).get("family", "other"), []).append(r)
    head: dict[str, float | None] = {}
    details: dict[str, Any] = {}
    if groups.get("image_seg"):
        h, _ = aggregate_iou(groups["image_seg"])
        head.update({"image_seg cIoU": h["cIoU"], "image_seg gIoU": h["gIoU"]})
    if groups.get("video_seg"):
        h, _ = aggregate_jf(groups["video_seg"])
        head.update({"video_seg J": h["J"], "video_seg F": h["F"], "video_seg J&F": h["J&F"]})
    for fam, name in (("caption", "caption EM"), ("answer", "short answer EM")):
        ss = _scores(groups.get(fam, []), "exact")
        if ss:
            head[name] = _pct(sum(bool(s["correct"]) for s in ss) / len(ss))
    if groups.get("region_mc"):
        head["region_qa acc"] = aggregate_mc(groups["region_mc"])[0]["acc"]
    if groups.get("pixelqa"):
        h, _ = aggregate_pixelqa(groups["pixelqa"])
        head.update({"pixelqa acc": h["acc"], "pixelqa J&F": h["J&F"]})
    details["n_per_family"] = {k: len(v) for k, v in sorted(groups.items())}
    return head, details


AGGREGATORS: dict[str, Aggregator] = {
    "iou": aggregate_iou,
    "jf": aggregate_jf,
    "revos": aggregate_revos,
    "groundmore": aggregate_groundmore,
    "mc": aggregate_mc,
    "pixelqa": aggregate_pixelqa,
    "judge": aggregate_judge,
    "submission": aggregate_submission,
    "synthetic": aggregate_synthetic,
}

# ----------------------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class Benchmark:
    """One benchmark.

    Attributes:
        name: CLI name (``unipixel eval NAME``) and output folder.
        reader: dataset reader name; ``reader_options`` are passed to it.
        splits: splits evaluated by default (``--split`` picks one).
        protocol: default protocol name (:data:`unipixel.eval.protocols.PROTOCOLS`); alternatives of the same
            kind can be chosen with ``--protocol``.
        metric: aggregator name in :data:`AGGREGATORS` (``submission_splits`` use ``"submission"``).
        data_dir: the dataset root below the ``data/`` folder ``unipixel eval all --data-root`` points at
            (the reference's layout); ``{split}`` is substituted.
        paper: ``{split: {metric: (UniPixel-3B, UniPixel-7B)}}`` from the paper's README (§7.7).
        submission_splits: server-only splits (no local score; PNGs + a zip are written).
        in_all: part of ``unipixel eval all`` (the reference's ``auto_eval.sh`` list, §7.6).
    """

    name: str
    reader: str
    splits: tuple[str, ...]
    protocol: str
    metric: str
    data_dir: str
    description: str
    reader_options: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, Mapping[str, tuple[float, float]]] = field(default_factory=dict)
    submission_splits: tuple[str, ...] = ()
    in_all: bool = True

    def metric_for(self, split: str) -> str:
        return "submission" if split in self.submission_splits else self.metric


def _b(*args: Any, **kwargs: Any) -> Benchmark:
    return Benchmark(*args, **kwargs)


_ROWS = [
    # §7.6 order. Region understanding with GT masks.
    _b(
        "videorefer_bench_q_single",
        "videorefer_bench_q",
        ("test",),
        "videorefer_q",
        "mc",
        "videorefer_bench",
        "VideoRefer-Bench-Q, mask on the prompt frame only",
        {"single_frame": True},
        paper={"test": {"acc": (72.2, 73.4)}},
    ),
    _b(
        "videorefer_bench_q",
        "videorefer_bench_q",
        ("test",),
        "videorefer_q",
        "mc",
        "videorefer_bench",
        "VideoRefer-Bench-Q, masks on all annotated frames",
        {},
        paper={"test": {"acc": (72.8, 74.1)}},
    ),
    _b(
        "videorefer_bench_d_single",
        "videorefer_bench_d",
        ("test",),
        "videorefer_d",
        "judge",
        "videorefer_bench",
        "VideoRefer-Bench-D (LLM judge), mask on the prompt frame only",
        {"single_frame": True},
        paper={"test": {"score": (3.42, 3.37)}},
    ),
    _b(
        "videorefer_bench_d",
        "videorefer_bench_d",
        ("test",),
        "videorefer_d",
        "judge",
        "videorefer_bench",
        "VideoRefer-Bench-D (LLM judge), masks on all annotated frames",
        {},
        paper={"test": {"score": (3.44, 3.36)}},
    ),
    # PixelQA (no paper numbers in the README).
    _b(
        "pixelqa_point",
        "pixelqa",
        ("test",),
        "pixelqa",
        "pixelqa",
        "videorefer_bench",
        "PixelQA, objects referred by a point",
        {"prompt_type": "point"},
    ),
    _b(
        "pixelqa_box",
        "pixelqa",
        ("test",),
        "pixelqa",
        "pixelqa",
        "videorefer_bench",
        "PixelQA, objects referred by a box",
        {"prompt_type": "box"},
    ),
    _b(
        "pixelqa_mix",
        "pixelqa",
        ("test",),
        "pixelqa",
        "pixelqa",
        "videorefer_bench",
        "PixelQA, point or box per object (seeded)",
        {"prompt_type": "mix"},
    ),
    # Video segmentation.
    _b(
        "revos",
        "revos",
        ("valid",),
        "infer_seg",
        "revos",
        "revos",
        "ReVOS reasoning VOS",
        paper={"valid": {"J": (59.7, 61.7), "F": (64.4, 65.7), "J&F": (62.1, 63.7)}},
    ),
    _b(
        "mevis",
        "mevis",
        ("valid_u", "valid"),
        "infer_seg",
        "jf",
        "mevis",
        "MeViS (valid_u scored locally; valid = server submission)",
        paper={"valid": {"J&F": (53.1, 55.8)}},
        submission_splits=("valid",),
    ),
    _b(
        "ref_youtube_vos",
        "ref_youtube_vos",
        ("valid",),
        "infer_seg",
        "jf",
        "ref_youtube_vos",
        "Ref-YouTube-VOS (server submission)",
        paper={"valid": {"J&F": (70.5, 71.0)}},
        submission_splits=("valid",),
    ),
    _b(
        "ref_davis17",
        "ref_davis17",
        ("valid",),
        "infer_seg",
        "jf",
        "ref_davis17",
        "Ref-DAVIS17 (all expressions pooled)",
        paper={"valid": {"J&F": (74.2, 76.4)}},
    ),
    _b(
        "ref_sav",
        "ref_sav",
        ("valid",),
        "infer_seg",
        "jf",
        "ref_sav",
        "Ref-SAV long descriptions",
        paper={"valid": {"J&F": (67.2, 69.0)}},
    ),
    _b(
        "groundmore",
        "groundmore",
        ("test",),
        "infer_seg",
        "groundmore",
        "groundmore",
        "GroundMoRe motion-grounded QA + segmentation",
        paper={"test": {"J&F": (37.4, 37.8)}},
    ),
    # Image segmentation.
    _b(
        "reason_seg",
        "reason_seg",
        ("val", "test"),
        "infer_seg",
        "iou",
        "lisa/reason_seg/ReasonSeg",
        "ReasonSeg (LISA)",
        paper={"val": {"gIoU": (64.0, 60.5), "cIoU": (56.2, 58.7)}},
    ),
    _b(
        "refcoco",
        "refcoco",
        ("val", "testA", "testB"),
        "infer_seg",
        "iou",
        "lisa/refer_seg",
        "RefCOCO (unc)",
        paper={
            "val": {"cIoU": (80.5, 80.8)},
            "testA": {"cIoU": (82.6, 83.0)},
            "testB": {"cIoU": (76.9, 77.4)},
        },
    ),
    _b(
        "refcoco+",
        "refcoco+",
        ("val", "testA", "testB"),
        "infer_seg",
        "iou",
        "lisa/refer_seg",
        "RefCOCO+ (unc)",
        paper={
            "val": {"cIoU": (74.3, 75.3)},
            "testA": {"cIoU": (78.9, 80.1)},
            "testB": {"cIoU": (68.4, 70.0)},
        },
    ),
    _b(
        "refcocog",
        "refcocog",
        ("val", "test"),
        "infer_seg",
        "iou",
        "lisa/refer_seg",
        "RefCOCOg (umd)",
        paper={"val": {"cIoU": (76.3, 76.4)}, "test": {"cIoU": (77.0, 77.1)}},
    ),
    # General video QA.
    _b(
        "mvbench",
        "mvbench",
        ("test",),
        "general_mc",
        "mc",
        "mvbench",
        "MVBench (20 tasks)",
        paper={"test": {"acc": (62.5, 64.3)}},
    ),
    _b(
        "videomme",
        "videomme",
        ("test",),
        "general_mc",
        "mc",
        "videomme",
        "Video-MME (no subtitles)",
        in_all=False,
    ),
    # The project's own synthetic world (``unipixel synth --split test --out DATA/synthetic/test``).
    _b(
        "synthetic",
        "synthetic",
        ("test",),
        "synthetic",
        "synthetic",
        "synthetic/{split}",
        "Synthetic pixel world: every task, exact ground truth",
    ),
]

BENCHMARKS: dict[str, Benchmark] = {b.name: b for b in _ROWS}


def get_benchmark(name: str) -> Benchmark:
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise KeyError(f"unknown benchmark {name!r}; available: {', '.join(BENCHMARKS)}") from None


def paper_numbers(benchmark: str, split: str) -> dict[str, tuple[float, float]]:
    """``{metric: (3B, 7B)}`` of the paper for ``benchmark``/``split`` (empty when the paper has none)."""
    b = BENCHMARKS.get(benchmark)
    return dict(b.paper.get(split, {})) if b else {}

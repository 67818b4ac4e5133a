"""The reproduction report: every ``metrics.json`` under an output folder in one markdown table beside the
paper's numbers (reference-design §7.7).

Why a separate step: shards, resumed runs and ``unipixel eval all`` write one ``metrics.json`` per benchmark and
split; the report is regenerated from those files (``unipixel eval report --out DIR``) so it never disagrees
with them.  The paper's numbers are UniPixel-3B and -7B; the Δ column compares with the size named by
``--paper-model`` (default: guessed from the model path, else 3B).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..results import atomic_output
from .benchmarks import BENCHMARKS


def guess_paper_model(model_path: str | None) -> str:
    """``"7B"`` when the model path says 7B, else ``"3B"``."""
    return "7B" if model_path and re.search(r"7b", str(model_path), flags=re.IGNORECASE) else "3B"


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "—"
    if isinstance(v, float) and math.isnan(v):
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, (int, float)) else str(v)


def collect_metrics(out_dir: Path) -> list[dict[str, Any]]:
    """All ``<out>/<benchmark>/<split>/metrics.json`` files, in registry order then name."""
    order = {name: i for i, name in enumerate(BENCHMARKS)}
    found = []
    for p in sorted(Path(out_dir).glob("*/*/metrics.json")):
        try:
            found.append(json.loads(p.read_text()))
        except (OSError, json.JSONDecodeError):
            continue
    return sorted(
        found,
        key=lambda m: (order.get(m.get("benchmark"), 1_000), m.get("benchmark", ""), m.get("split", "")),
    )


def _status(m: Mapping[str, Any]) -> str:
    c = m.get("counts", {})
    parts = []
    if not m.get("complete", False):
        parts.append(f"incomplete ({c.get('done', 0)}/{c.get('expected', 0)})")
    if c.get("failed"):
        parts.append(f"{c['failed']} failed")
    if m.get("status"):
        parts.append(str(m["status"]))
    return "; ".join(parts) or "ok"


def markdown_report(metrics: Sequence[Mapping[str, Any]], paper_model: str = "3B") -> str:
    """The report text: one row per (benchmark, split, metric)."""
    col = 0 if paper_model.upper() == "3B" else 1
    lines = [
        "# UniPixel reproduction report",
        "",
        "Numbers in percent (VideoRefer-Bench-D: judge score 0-5). Paper: UniPixel-3B / UniPixel-7B "
        f"(reference README); Δ = ours − paper {paper_model}.",
        "",
        "| benchmark | split | metric | ours | paper 3B | paper 7B | Δ | protocol | samples | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in metrics:
        ours: Mapping[str, Any] = m.get("metrics", {})
        paper: Mapping[str, Sequence[float]] = m.get("paper", {})
        names = list(dict.fromkeys([*paper.keys(), *ours.keys()]))
        c = m.get("counts", {})
        samples = f"{c.get('done', 0)}/{c.get('expected', 0)}"
        sel = m.get("selection") or {}
        subset = bool(sel) and int(sel.get("samples", 0)) < int(sel.get("of", 0))
        if subset:  # a --limit / --tasks run is not comparable with the paper's full-split numbers
            samples += f" (subset of {sel.get('of', '?')})"
        proto = m.get("protocol", {}).get("name", "?")
        if not names:
            names = ["—"]
        for name in names:
            v = ours.get(name)
            pp = paper.get(name)
            delta = None
            if pp is not None and isinstance(v, (int, float)) and not math.isnan(v) and not subset:
                delta = v - pp[col]
            lines.append(
                f"| {m.get('benchmark')} | {m.get('split')} | {name} | {_fmt(v)} | "
                f"{f'{pp[0]:g}' if pp else '—'} | {f'{pp[1]:g}' if pp else '—'} | "
                f"{'—' if delta is None else f'{delta:+.2f}'} | {proto} | {samples} | {_status(m)} |"
            )
    lines += ["", "Protocols:", ""]
    seen = set()
    for m in metrics:
        p = m.get("protocol", {})
        key = json.dumps(p, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        params = ", ".join(f"{k}={v}" for k, v in sorted(p.get("params", {}).items()))
        lines.append(f"- `{p.get('name')}`: {p.get('description', '')} ({params})")
    models = sorted({str(m.get("model")) for m in metrics})
    lines += ["", f"Model(s): {', '.join(models) or '—'}", ""]
    return "\n".join(lines)


def write_report(out_dir: Path, paper_model: str | None = None) -> Path:
    """(Re)write ``<out>/report.md`` from every ``metrics.json`` below ``out_dir``."""
    metrics = collect_metrics(out_dir)
    if paper_model is None:
        paper_model = guess_paper_model(next((str(m.get("model")) for m in metrics), None))
    path = Path(out_dir) / "report.md"
    with atomic_output(path) as tmp:
        tmp.write_text(markdown_report(metrics, paper_model))
    return path


def summary_lines(m: Mapping[str, Any]) -> list[str]:
    """A short console summary of one ``metrics.json``."""
    ours = m.get("metrics", {})
    paper = m.get("paper", {})
    vals = ", ".join(
        f"{k} {_fmt(v)}" + (f" (paper {paper[k][0]:g}/{paper[k][1]:g})" if k in paper else "")
        for k, v in ours.items()
    )
    return [
        f"{m.get('benchmark')} [{m.get('split')}] {m.get('protocol', {}).get('name')}: {vals or 'no local score'}"
        f" — {_status(m)}"
    ]

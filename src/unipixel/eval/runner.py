"""``unipixel eval``: run a model on a benchmark (or all of them) and write predictions, metrics and a report.

Usage::

    unipixel eval BENCHMARK --model PATH --data-root DIR --out DIR [--split S] [--protocol P] [--param k=v]
                            [--limit N] [--shard i/n] [--merge-only] [--save-png] [--judge-url U --judge-model M]
    unipixel eval all --model PATH --data-root DATA --out DIR      # every benchmark whose data is present
    unipixel eval list                                             # benchmarks and protocols
    unipixel eval report --out DIR                                 # rewrite DIR/report.md

Output layout (one folder per benchmark and split)::

    OUT/report.md                                   all metrics.json below OUT beside the paper's numbers
    OUT/<benchmark>/<split>/run.json                benchmark, reader options, protocol (name + params), model
    OUT/<benchmark>/<split>/expected_ids.json       the sample ids of this run (after --limit)
    OUT/<benchmark>/<split>/predictions.shard{i}of{n}.jsonl   one JSON record per sample (RLE masks, text,
                                                    per-sample scores), appended + fsynced when complete
    OUT/<benchmark>/<split>/metrics.json            dataset numbers, counts, protocol, model, paper numbers
    OUT/<benchmark>/<split>/judgments.jsonl         VideoRefer-Bench-D judge scores (when a judge is set)
    OUT/<benchmark>/<split>/masks/<vid>/<exp>/<frame>.png      with --save-png (video segmentation)
    OUT/<benchmark>/<split>/submission/... + submission.zip    server-only splits (MeViS / Ref-YouTube-VOS valid)

Why records and not one results file: a run may be killed at any time (preemption, OOM) or split across
processes.  Each finished sample is one line written with a single ``write`` + ``fsync``; a restart reads the
ids already present in *every* predictions file of the folder (so it also resumes with a different shard
count) and skips them; a torn last line (killed mid-write) is detected and cut off.  Metrics are always
recomputed from the records (``--merge-only`` does only that), so they never depend on how the run was split.

Sharding: ``--shard i/n`` or, under ``torchrun``, ``RANK``/``WORLD_SIZE``; shard i takes samples i, i+n, ...
(the reference's ``annos[i::n]``).  The last shard to finish merges; a lock keeps two processes off one shard.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..results import atomic_output
from .benchmarks import AGGREGATORS, BENCHMARKS, Benchmark, get_benchmark, paper_numbers
from .protocols import PROTOCOLS, Protocol, failed_record, get_protocol, run_sample

RecordHook = Callable[[int, Mapping[str, Any]], None]


class EvalError(RuntimeError):
    """A problem with the run itself (settings, locks): reported as one line by the CLI."""


class SampleFailed(Exception):
    """A sample failed under ``--fail-fast``; the original exception is the ``__cause__`` (full traceback)."""


# ----------------------------------------------------------------------------------------------------------
# append-only JSONL records


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Complete records of a JSONL file and the byte length they span.

    A line counts only when it ends with a newline and parses; reading stops at the first line that does not
    (a write torn by a kill can only be the last line, since each record is one ``write`` in append mode)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return [], 0
    records: list[dict[str, Any]] = []
    pos = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        line = data[pos:nl].strip()
        if line:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        pos = nl + 1
    return records, pos


def repair_jsonl(path: Path) -> int:
    """Cut a torn tail off ``path`` (only ever done by the file's own writer); returns the bytes dropped."""
    records, good = read_jsonl(path)
    size = path.stat().st_size if path.exists() else 0
    if size > good:
        with open(path, "r+b") as f:
            f.truncate(good)
            f.flush()
            os.fsync(f.fileno())
    return size - good


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def append_record(path: Path, record: Mapping[str, Any]) -> None:
    """Append one record as a single line with one ``write`` (O_APPEND) and ``fsync``: after this returns the
    record survives a kill or a crash, and a kill during the call leaves at most a torn last line."""
    line = (json.dumps(record, default=_json_default, allow_nan=True, separators=(",", ":")) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        view = memoryview(line)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, obj: Any) -> None:
    with atomic_output(path) as tmp:
        tmp.write_text(json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False) + "\n")


def _finite(o: Any) -> Any:
    """NaN/inf → None so metrics.json stays strict JSON."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, Mapping):
        return {str(k): _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


@contextlib.contextmanager
def _file_lock(path: Path, blocking: bool) -> Iterator[bool]:
    """Advisory ``flock`` (POSIX); yields False when ``blocking`` is off and another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no locking
        yield True
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def prediction_files(split_dir: Path) -> list[Path]:
    return sorted(split_dir.glob("predictions.shard*of*.jsonl"))


def collect_records(split_dir: Path) -> dict[str, dict[str, Any]]:
    """Every complete record of every shard file, by sample id: the first occurrence wins, except that a
    successful record replaces an error record (a sample run again with ``--retry-failed``)."""
    out: dict[str, dict[str, Any]] = {}
    for f in prediction_files(split_dir):
        for r in read_jsonl(f)[0]:
            sid = str(r["id"])
            if sid not in out or (out[sid].get("error") and not r.get("error")):
                out[sid] = r
    return out


# ----------------------------------------------------------------------------------------------------------
# settings


def parse_shard(spec: str | None, env: Mapping[str, str] = os.environ) -> tuple[int, int]:
    """``"i/n"`` → (i, n); without a spec, torchrun's ``RANK``/``WORLD_SIZE``; else (0, 1)."""
    if spec:
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
        if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
            raise ValueError(f"--shard must be i/n with 0 <= i < n, got {spec!r}")
        return int(m.group(1)), int(m.group(2))
    if "WORLD_SIZE" in env and "RANK" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    return 0, 1


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_kv(items: Sequence[str], what: str) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, val = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{what} must be KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = _value(val.strip())
    return out


@dataclass
class ModelHolder:
    """Loads the model on first use, once per process (``eval all`` shares it across benchmarks)."""

    path: str | None
    device: str | None = None
    dtype: str | None = None
    attn: str = "sdpa"
    quiet: bool = False
    api: Any = None

    def get(self) -> Any:
        if self.api is None:
            from ..api import UniPixel

            t0 = time.perf_counter()
            _log(self.quiet, f"loading model {self.path or '(built-in)'} ...")
            kw: dict[str, Any] = {"attn_implementation": self.attn}
            if self.device:
                kw["device"] = self.device
            if self.dtype:
                kw["dtype"] = self.dtype
            self.api = UniPixel.from_pretrained(self.path, **kw)
            _log(self.quiet, f"model loaded in {time.perf_counter() - t0:.1f}s on {self.api.model.device}")
        return self.api


@dataclass
class RunOptions:
    out: Path
    data_root: Path | None
    protocol: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    reader_options: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None
    shard: tuple[int, int] = (0, 1)
    merge_only: bool = False
    overwrite: bool = False
    save_png: bool = False
    fail_fast: bool = False
    quiet: bool = False
    progress: bool = True
    judge: Any = None  # judge.JudgeConfig | None
    paper_model: str | None = None
    lenient_overrides: bool = False
    tasks: tuple[str, ...] = ()
    retry_failed: bool = False


def _log(quiet: bool, msg: str) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def resolve_data_root(bench: Benchmark, split: str, root: Path) -> Path:
    """``root`` itself, or ``root/<the benchmark's data_dir>`` when that exists (so both a dataset folder and
    the reference's ``data/`` folder work)."""
    sub = root / bench.data_dir.format(split=split)
    return sub if sub.exists() else root


def _protocol_for(bench: Benchmark, name: str | None) -> Protocol:
    default = get_protocol(bench.protocol)
    if name is None:
        return default
    p = get_protocol(name)
    if p.kind != default.kind:
        same = [q.name for q in PROTOCOLS.values() if q.kind == default.kind]
        raise ValueError(f"protocol {name!r} does not apply to {bench.name} (use one of {same})")
    return p


def _unique_ids(samples: list[Any]) -> list[str]:
    seen: dict[str, int] = {}
    ids = []
    for s in samples:
        k = seen.get(s.id, 0)
        seen[s.id] = k + 1
        ids.append(s.id if k == 0 else f"{s.id}#{k}")
    return ids


# ----------------------------------------------------------------------------------------------------------
# PNG outputs


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "x"


def _write_pngs(root: Path, bench: Benchmark, sample: Any, sid: str, outcome: Any, ytvos: bool) -> None:
    from ..writers import write_mevis_submission, write_ytvos_submission

    pos = outcome.frame_positions
    names = sample.meta.get("frame_names")
    frame_names = [names[p] for p in pos] if names and len(names) > max(pos) else [f"{p:05d}" for p in pos]
    vid = str(sample.meta.get("vid") or _safe(sid))
    exp = str(sample.meta.get("exp_id") or "0")
    writer = write_ytvos_submission if ytvos else write_mevis_submission
    writer(root, vid, exp, outcome.video_mask, frame_names)


# ----------------------------------------------------------------------------------------------------------
# one benchmark split


def _settings(
    bench: Benchmark,
    split: str,
    protocol: Protocol,
    params: Mapping[str, Any],
    reader_options: Mapping[str, Any],
    model: str | None,
) -> dict[str, Any]:
    return {
        "benchmark": bench.name,
        "split": split,
        "reader": bench.reader,
        "reader_options": dict(reader_options),
        "protocol": {
            "name": protocol.name,
            "kind": protocol.kind,
            "description": protocol.description,
            "params": dict(params),
        },
        "model": _model_id(model),
    }


def _fingerprint(settings: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must match for records of an earlier run to be reused (descriptions may change between versions)."""
    p = settings.get("protocol", {})
    return (
        settings.get("benchmark"),
        settings.get("split"),
        settings.get("reader_options"),
        p.get("name"),
        p.get("params"),
        settings.get("model"),
        # numerics: records made in bf16 and fp32 (or with another attention kernel) must not be mixed
        settings.get("runtime", {"dtype": None, "attn": "sdpa"}),
    )


def _model_id(model: str | None) -> str:
    """A local checkpoint as an absolute path (relative and absolute spellings of one run must match)."""
    if model is None:
        return "(built-in)"
    return str(Path(model).resolve()) if Path(model).exists() else model


def run_split(
    bench: Benchmark, split: str, opts: RunOptions, holder: ModelHolder, on_record: RecordHook | None = None
) -> dict[str, Any] | None:
    """Evaluate one split of one benchmark (this process's shard); merge when every sample is done."""
    split_dir = opts.out / bench.name / split
    protocol = _protocol_for(bench, opts.protocol)
    overrides = opts.overrides
    if opts.lenient_overrides:  # eval all: a flag such as --sam2-frames applies where the protocol has it
        overrides = {k: v for k, v in overrides.items() if k in protocol.params}
    params = protocol.with_overrides(overrides)
    reader_options = {**bench.reader_options, **opts.reader_options}
    if opts.merge_only:
        return merge_split(split_dir, opts)
    if opts.data_root is None:
        raise ValueError("--data-root is required (except with --merge-only)")

    from ..data.registry import read_dataset

    i, n = opts.shard
    settings = _settings(bench, split, protocol, params, reader_options, holder.path)
    settings["runtime"] = {"dtype": holder.dtype, "attn": holder.attn}
    run_json = split_dir / "run.json"
    if run_json.exists():
        differs = _fingerprint(json.loads(run_json.read_text())) != _fingerprint(json.loads(json.dumps(settings)))
        if differs and not prediction_files(split_dir):
            pass  # an earlier run stopped before its first record (e.g. a mistyped --model): nothing to protect
        elif differs:
            if not opts.overwrite:
                raise ValueError(
                    f"{split_dir} holds results of different settings ({run_json}); use another --out or "
                    "--overwrite to discard them"
                )
            if n > 1:
                raise ValueError(
                    "--overwrite cannot be combined with sharding (shards would delete each other's "
                    "records); run it once without --shard"
                )
            import shutil

            for f in [
                *prediction_files(split_dir),
                split_dir / "judgments.jsonl",
                split_dir / "metrics.json",
                split_dir / "submission.zip",
            ]:
                f.unlink(missing_ok=True)
            for d in (split_dir / "submission", split_dir / "masks"):
                shutil.rmtree(d, ignore_errors=True)

    root = resolve_data_root(bench, split, opts.data_root)
    t0 = time.perf_counter()
    samples = list(read_dataset(bench.reader, root, split, **reader_options))
    total = len(samples)
    if opts.tasks:
        present = {s.task for s in samples}
        if not set(opts.tasks) & present and not opts.lenient_overrides:
            raise ValueError(
                f"--tasks {','.join(opts.tasks)}: no such task in {bench.name} [{split}]; it has {sorted(present)}"
            )
        samples = [s for s in samples if s.task in opts.tasks]
    if opts.limit is not None:
        samples = samples[: opts.limit]
    if not samples:
        raise ValueError(f"{bench.name} [{split}]: no samples to evaluate in {root}")
    ids = _unique_ids(samples)
    _log(
        opts.quiet,
        f"{bench.name} [{split}]: {len(samples)} samples from {root} "
        f"({time.perf_counter() - t0:.1f}s); protocol {protocol.name} "
        f"{json.dumps(params, sort_keys=True)}; shard {i}/{n}",
    )
    # What part of the split this run covers: recorded (metrics.json, report) but not fingerprinted, so a quick
    # --limit run can be extended to the full split without discarding its records.
    settings["selection"] = {"limit": opts.limit, "tasks": list(opts.tasks), "samples": len(samples), "of": total}
    _write_json(run_json, settings)
    _write_json(split_dir / "expected_ids.json", ids)

    own = split_dir / f"predictions.shard{i}of{n}.jsonl"
    with _file_lock(split_dir / f".shard{i}of{n}.lock", blocking=False) as ok:
        if not ok:
            raise EvalError(f"another process is already running shard {i}/{n} in {split_dir}")
        dropped = repair_jsonl(own)
        if dropped:
            _log(opts.quiet, f"dropped a torn last record ({dropped} bytes) of {own.name}")
        records = collect_records(split_dir)
        done = {sid for sid, r in records.items() if not (opts.retry_failed and r.get("error"))}
        mine = [(k, ids[k], samples[k]) for k in range(i, len(samples), n)]
        todo = [(k, sid, s) for k, sid, s in mine if sid not in done]
        if len(todo) < len(mine):
            _log(
                opts.quiet,
                f"resuming: {len(mine) - len(todo)}/{len(mine)} samples of this shard already done",
            )
        _run_samples(bench, split, protocol, params, todo, len(mine), own, split_dir, opts, holder, on_record)

    if set(ids) <= set(collect_records(split_dir)):
        return merge_split(split_dir, opts)
    _log(
        opts.quiet,
        f"shard {i}/{n} of {bench.name} [{split}] finished; other shards still running — the last "
        "one to finish writes metrics.json (or run again with --merge-only)",
    )
    return None


def _run_samples(
    bench: Benchmark,
    split: str,
    protocol: Protocol,
    params: Mapping[str, Any],
    todo: list[tuple[int, str, Any]],
    total: int,
    own: Path,
    split_dir: Path,
    opts: RunOptions,
    holder: ModelHolder,
    on_record: RecordHook | None,
) -> None:
    if not todo:
        return
    from tqdm.auto import tqdm

    api = holder.get()
    ytvos = bench.name == "ref_youtube_vos"
    bar = tqdm(
        total=total,
        initial=total - len(todo),
        desc=f"{bench.name}/{split} [{opts.shard[0]}/{opts.shard[1]}]",
        unit="sample",
        mininterval=0.5 if sys.stderr.isatty() else 30.0,  # a log file gets a line every 30 s, not a flood
        disable=opts.quiet or not opts.progress,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    failures = 0
    try:
        for count, (k, sid, sample) in enumerate(todo, start=1):
            t0 = time.perf_counter()
            try:
                out = run_sample(api, sample, protocol, params)
                rec = out.record
                has_gt = sample.meta.get("has_gt", True) is not False
                if out.video_mask is not None and (not has_gt or opts.save_png):
                    root = split_dir / ("submission" if not has_gt else "masks")
                    _write_pngs(root, bench, sample, sid, out, ytvos and not has_gt)
            except Exception as err:  # the reference's fallback: score as an empty / failed prediction
                if opts.fail_fast:
                    raise SampleFailed(f"sample {sid} failed: {type(err).__name__}: {err}") from err
                failures += 1
                if failures == 1:
                    _log(
                        opts.quiet,
                        f"sample {sid} failed: {type(err).__name__}: {err} (recorded as a failed "
                        "prediction; --fail-fast stops instead)",
                    )
                rec = failed_record(sample, protocol, f"{type(err).__name__}: {err}")
            record = {
                "id": sid,
                "index": k,
                "task": sample.task,
                **rec,
                "shard": f"{opts.shard[0]}/{opts.shard[1]}",
                "time_s": round(time.perf_counter() - t0, 3),
            }
            append_record(own, record)
            bar.update(1)
            if on_record is not None:
                on_record(count, record)
    finally:
        bar.close()
    if failures:
        _log(opts.quiet, f"{failures} sample(s) failed in this shard (see 'error' in {own.name})")


# ----------------------------------------------------------------------------------------------------------
# merge


def merge_split(split_dir: Path, opts: RunOptions) -> dict[str, Any]:
    """Metrics of one split from every shard's records (+ judge, submission zip, report)."""
    run_json = split_dir / "run.json"
    if not run_json.exists():
        raise FileNotFoundError(f"{run_json} not found: nothing was run in {split_dir}")
    with _file_lock(split_dir / ".merge.lock", blocking=True):
        settings = json.loads(run_json.read_text())
        bench = get_benchmark(settings["benchmark"])
        split = settings["split"]
        expected = json.loads((split_dir / "expected_ids.json").read_text())
        recs = collect_records(split_dir)
        present = [recs[s] for s in expected if s in recs]
        metric = bench.metric_for(split)
        complete = len(present) == len(expected)
        status = None
        judge_info = None
        if metric == "judge":
            status, judge_info = _judge(split_dir, present, complete, opts)
        head, details = AGGREGATORS[metric](present)
        if metric == "submission":
            status = "server-only split: no local score"
            sub = split_dir / "submission"
            if complete and sub.is_dir():
                from ..writers import zip_submission

                zip_submission(sub, split_dir / "submission.zip")
                status += f"; upload {split_dir / 'submission.zip'} to the challenge server"
        result = {
            **{
                k: settings[k]
                for k in ("benchmark", "split", "reader", "reader_options", "protocol", "model")
            },
            "metrics": head,
            "details": details,
            "paper": {k: list(v) for k, v in paper_numbers(bench.name, split).items()},
            "counts": {
                "expected": len(expected),
                "done": len(present),
                "missing": len(expected) - len(present),
                "failed": sum(1 for r in present if r.get("error")),
            },
            "complete": complete,
            "status": status,
            "judge": judge_info,
            "shard_files": [f.name for f in prediction_files(split_dir)],
            "selection": settings.get("selection"),
        }
        _write_json(split_dir / "metrics.json", result)
    from .report import summary_lines, write_report

    write_report(opts.out, opts.paper_model)
    for line in summary_lines(_finite(result)):
        _log(opts.quiet, line)
    return _finite(result)


def _judge(
    split_dir: Path, present: list[dict[str, Any]], complete: bool, opts: RunOptions
) -> tuple[str | None, dict[str, Any] | None]:
    from .judge import JudgeError, OpenAICompatibleJudge, judge_records

    path = split_dir / "judgments.jsonl"
    why = (
        "no judge configured (--judge-url URL --judge-model NAME)" if opts.judge is None else "run incomplete"
    )
    judgments = {j["id"]: j for j in read_jsonl(path)[0]}
    if opts.judge is not None and complete:
        _log(
            opts.quiet,
            f"judging {len(present)} descriptions with {opts.judge.model} at {opts.judge.endpoint}",
        )
        try:
            judgments = judge_records(present, OpenAICompatibleJudge(opts.judge), path)
        except (JudgeError, OSError) as err:  # what was judged is saved; a rerun continues from there
            why = f"judge failed ({err})"
            _log(False, f"warning: {why}")
            judgments = {j["id"]: j for j in read_jsonl(path)[0]}
    for r in present:
        if r["id"] in judgments:
            r["judgment"] = judgments[r["id"]]
    judged = sum(1 for r in present if r.get("judgment"))
    if judged < len(present) or not present:
        return (
            f"score pending: {why}; predictions saved ({judged}/{len(present)} judged)",
            opts.judge.describe() if opts.judge else None,
        )
    return None, (opts.judge.describe() if opts.judge else next(iter(judgments.values())).get("judge"))


# ----------------------------------------------------------------------------------------------------------
# CLI


def build_parser() -> argparse.ArgumentParser:
    bench_names = ", ".join(BENCHMARKS)
    p = argparse.ArgumentParser(
        prog="unipixel eval",
        description="Evaluate UniPixel on a benchmark with the reference's protocols (sharded, resumable).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"benchmarks: {bench_names}\nprotocols: {', '.join(PROTOCOLS)}\n\n"
        + "\n\n".join((__doc__ or "").split("\n\n")[1:5]).replace("::", ":"),
    )
    p.add_argument("benchmark", help="a benchmark name, 'all', 'list' or 'report'")
    p.add_argument("--model", help="checkpoint directory or hub id (default: the built-in model)")
    p.add_argument("--data-root", type=Path, help="the dataset folder (or the reference's data/ folder)")
    p.add_argument(
        "--out", type=Path, default=Path("eval_outputs"), help="output folder (default eval_outputs)"
    )
    p.add_argument("--split", help="one split (default: the benchmark's evaluation splits)")
    p.add_argument("--protocol", help="alternative protocol of the same kind (see 'unipixel eval list')")
    p.add_argument(
        "--param", action="append", default=[], metavar="KEY=VALUE", help="override a protocol parameter"
    )
    p.add_argument("--frames", type=int, help="frames for the LLM (protocol num_frames, default 16)")
    p.add_argument("--min-pixels", type=int, help="per-frame min pixels of the LLM frames")
    p.add_argument(
        "--max-pixels", type=int, help="per-frame max pixels (scaled by num_frames // T as the reference)"
    )
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--sam2-frames", choices=("all", "sampled"), help="frames SAM 2 segments (segmentation)")
    p.add_argument(
        "--reader-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra dataset reader option (e.g. reference_ignore_bug=true)",
    )
    p.add_argument("--limit", type=int, help="only the first N samples (quick runs; N >= 1)")
    p.add_argument(
        "--tasks", help="comma-separated sample tasks to keep (e.g. ref_seg,pixelqa for synthetic)"
    )
    p.add_argument(
        "--shard", help="i/n: this process runs samples i, i+n, ... (default: torchrun RANK/WORLD_SIZE)"
    )
    p.add_argument("--merge-only", action="store_true", help="recompute metrics.json/report from the records")
    p.add_argument(
        "--overwrite", action="store_true", help="discard earlier records made with other settings"
    )
    p.add_argument("--save-png", action="store_true", help="also write PNG masks of scored video samples")
    p.add_argument("--fail-fast", action="store_true", help="stop on the first failing sample")
    p.add_argument(
        "--retry-failed", action="store_true", help="run again the samples whose earlier record is an error"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda:LOCAL_RANK / cuda / cpu)")
    p.add_argument("--dtype", help="bfloat16, float16, float32 (default: bf16 on CUDA, fp32 on CPU)")
    p.add_argument("--attn", default="sdpa", help="attention implementation (sdpa, flash_attention_2, eager)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--judge-url", help="OpenAI-compatible API base for the VideoRefer-Bench-D judge")
    p.add_argument("--judge-model", help="judge model name (e.g. gpt-4o-2024-08-06)")
    p.add_argument(
        "--judge-api-key-env", default="OPENAI_API_KEY", help="environment variable holding the key"
    )
    p.add_argument("--judge-temperature", type=float, default=0.7, help="reference: 0.7")
    p.add_argument(
        "--paper-model", choices=("3B", "7B"), help="paper column the report's Δ uses (default: guessed)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--quiet", action="store_true", help="no messages on stderr")
    return p


def _list() -> str:
    lines = ["benchmarks:"]
    for b in BENCHMARKS.values():
        paper = "; ".join(
            f"{s}: " + ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in m.items()) for s, m in b.paper.items()
        )
        lines.append(
            f"  {b.name:26s} reader={b.reader} splits={','.join(b.splits)} protocol={b.protocol} "
            f"metric={b.metric} data=DATA/{b.data_dir}{' (not in all)' if not b.in_all else ''}"
        )
        lines.append(f"  {'':26s} {b.description}" + (f" — paper 3B/7B: {paper}" if paper else ""))
    lines.append("protocols:")
    for pr in PROTOCOLS.values():
        lines.append(f"  {pr.name:20s} [{pr.kind}] {pr.description}")
        lines.append(f"  {'':20s} {json.dumps(dict(pr.params), sort_keys=True)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, *, on_record: RecordHook | None = None, api: Any = None) -> int:
    """Entry point of ``unipixel eval``.

    Library use: ``api`` evaluates an already loaded :class:`unipixel.api.UniPixel` (``--model`` then only
    names it in the results); ``on_record(count, record)`` is called after each record is written (tests use
    it to simulate a kill)."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if args.benchmark == "list":
        print(_list())
        return 0
    judge = None
    if args.judge_url or args.judge_model:
        if not (args.judge_url and args.judge_model):
            print("error: --judge-url and --judge-model go together", file=sys.stderr)
            return 2
        from .judge import JudgeConfig

        judge = JudgeConfig(args.judge_url, args.judge_model, args.judge_api_key_env, args.judge_temperature)
    try:
        overrides = parse_kv(args.param, "--param")
        for key, val in (
            ("num_frames", args.frames),
            ("min_pixels", args.min_pixels),
            ("max_pixels", args.max_pixels),
            ("max_new_tokens", args.max_new_tokens),
            ("sam2_frames", args.sam2_frames),
        ):
            if val is not None:
                overrides[key] = val
        opts = RunOptions(
            out=args.out,
            data_root=args.data_root,
            protocol=args.protocol,
            overrides=overrides,
            reader_options=parse_kv(args.reader_option, "--reader-option"),
            limit=args.limit,
            shard=parse_shard(args.shard),
            merge_only=args.merge_only,
            overwrite=args.overwrite,
            save_png=args.save_png,
            fail_fast=args.fail_fast,
            quiet=args.quiet,
            progress=not args.no_progress,
            judge=judge,
            paper_model=args.paper_model,
            tasks=tuple(t for t in (args.tasks or "").split(",") if t),
            retry_failed=args.retry_failed,
        )
        if args.limit is not None and args.limit < 1:
            raise ValueError(f"--limit must be >= 1, got {args.limit}")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.benchmark == "report":
        from .report import write_report

        if not any(Path(args.out).glob("*/*/metrics.json")):
            print(f"error: no results under {args.out} (expected {args.out}/<benchmark>/<split>/metrics.json)",
                  file=sys.stderr)
            return 2
        print(write_report(args.out, args.paper_model))
        return 0
    threads = None
    if args.threads:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(args.threads)
    try:
        return _dispatch(args, opts, overrides, on_record, api)
    finally:
        if threads is not None:  # a library caller (or a test session) keeps its own setting
            import torch

            torch.set_num_threads(threads)


def _dispatch(
    args: argparse.Namespace,
    opts: RunOptions,
    overrides: Mapping[str, Any],
    on_record: RecordHook | None,
    api: Any,
) -> int:
    device = args.device
    if device is None and "LOCAL_RANK" in os.environ:
        import torch

        if torch.cuda.is_available():
            device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    path = args.model if args.model or api is None else getattr(api.model, "name_or_path", None)
    if path is None and api is None and args.benchmark != "synthetic" and not args.merge_only:
        _log(False, "warning: no --model given: evaluating the built-in 5.9 M-parameter smoke-test model, not "
                    "UniPixel-3B/7B; pass --model for numbers comparable with the paper")
    holder = ModelHolder(path, device=device, dtype=args.dtype, attn=args.attn, quiet=args.quiet, api=api)

    if args.benchmark == "all":
        return _run_all(args, opts, holder, on_record)
    try:
        bench = get_benchmark(args.benchmark)
        if opts.protocol is not None or overrides:  # fail before loading anything on a bad protocol/param
            _protocol_for(bench, opts.protocol).with_overrides(overrides)
        for split in [args.split] if args.split else list(bench.splits):
            run_split(bench, split, opts, holder, on_record)
    except (KeyError, ValueError, OSError, EvalError) as err:  # OSError: e.g. a checkpoint that does not exist
        print(f"error: {err.args[0] if isinstance(err, KeyError) else err}", file=sys.stderr)
        return 2
    return 0


def _run_all(
    args: argparse.Namespace, opts: RunOptions, holder: ModelHolder, on_record: RecordHook | None
) -> int:
    """Every registered benchmark (``in_all``, reference order) whose data folder exists under --data-root."""
    if opts.data_root is None and not opts.merge_only:
        print(
            "error: eval all needs --data-root (the folder holding revos/, mevis/, lisa/ ...)",
            file=sys.stderr,
        )
        return 2
    known = {k for p in PROTOCOLS.values() for k in p.params}
    unknown = sorted(set(opts.overrides) - known)
    if unknown:  # each benchmark keeps the overrides its protocol has; a key no protocol has is a typo
        print(f"error: no protocol has the parameter(s) {unknown}; parameters: {', '.join(sorted(known))}",
              file=sys.stderr)
        return 2
    if args.split:
        print("error: eval all runs every split of every benchmark; --split selects one with a single benchmark",
              file=sys.stderr)
        return 2
    rc = 0
    ran = []
    for bench in BENCHMARKS.values():
        if not bench.in_all:
            continue
        for split in bench.splits:
            if opts.merge_only:
                if (opts.out / bench.name / split / "run.json").exists():
                    merge_split(opts.out / bench.name / split, opts)
                    ran.append(f"{bench.name}/{split}")
                continue
            assert opts.data_root is not None
            root = opts.data_root / bench.data_dir.format(split=split)
            if not root.exists():
                _log(opts.quiet, f"skip {bench.name} [{split}]: no data at {root}")
                continue
            try:
                sub = RunOptions(**{**opts.__dict__, "data_root": root, "lenient_overrides": True})
                run_split(bench, split, sub, holder, on_record)
                ran.append(f"{bench.name}/{split}")
            except FileNotFoundError as err:  # the dataset folder exists but not this split's files
                _log(opts.quiet, f"skip {bench.name} [{split}]: {err}")
            except (ValueError, EvalError, KeyError) as err:
                rc = 1
                _log(False, f"error in {bench.name} [{split}]: {type(err).__name__}: {err}")
    done = "merged" if opts.merge_only else "evaluated"
    _log(opts.quiet, f"{done}: {', '.join(ran) or 'nothing'}; report: {opts.out / 'report.md'}")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())

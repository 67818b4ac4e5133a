"""``unipixel eval`` end to end on the golden tiny checkpoint (random weights: the numbers are meaningless, but
every metric must be computed) over fixture copies of several benchmarks written in the readers' on-disk formats:
RefCOCO (image seg), ReVOS (video seg, both subsets), MeViS valid (server-only: PNGs + zip), VideoRefer-Bench-Q
(multiple choice with <|mem|> masks), VideoRefer-Bench-D (judge pending, then a fake OpenAI-compatible judge) and
PixelQA; plus a kill-and-resume run and a 2-process sharded run that must reproduce the 1-process metrics.
"""

from __future__ import annotations

import http.server
import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from unipixel.api import UniPixel
from unipixel.eval import runner
from unipixel.eval.benchmarks import AGGREGATORS, BENCHMARKS
from unipixel.eval.judge import parse_scores

CKPT = Path(__file__).parent / "data" / "golden" / "ckpt_tiny"
H, W = 32, 48
# small pixel budgets for the tiny model (golden config: 3136 / 25088) and short answers keep this fast
FAST = [
    "--model",
    str(CKPT),
    "--min-pixels",
    "3136",
    "--max-pixels",
    "6272",
    "--max-new-tokens",
    "6",
    "--no-progress",
    "--quiet",
    "--threads",
    "1",
]


# ----------------------------------------------------------------------------------------------------------
# fixtures in the readers' formats


def _frame(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = np.zeros((H, W, 3), np.uint8) + rng.integers(0, 60, 3, dtype=np.uint8)
    y, x = rng.integers(0, H - 12), rng.integers(0, W - 16)
    img[y : y + 12, x : x + 16] = rng.integers(100, 255, 3, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)


def _rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[y1:y2, x1:x2] = 1
    return m


def _rle(m: np.ndarray) -> dict[str, Any]:
    r = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}


def _dump(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_refcoco(root: Path) -> Path:
    """REFER layout: refcoco/{instances.json, refs(unc).p} + COCO train2014 images; 3 val sentences."""
    images = [{"id": i, "file_name": f"COCO_train2014_{i:012d}.jpg", "height": H, "width": W} for i in (1, 2)]
    polys = {
        10: [4, 4, 20, 4, 20, 18, 4, 18],
        11: [24, 10, 44, 10, 44, 30, 24, 30],
        20: [10, 2, 30, 2, 30, 20, 10, 20],
    }
    anns = [
        {
            "id": a,
            "image_id": a // 10,
            "category_id": 1,
            "iscrowd": 0,
            "segmentation": [p],
            "bbox": [p[0], p[1], p[2] - p[0], p[5] - p[1]],
        }
        for a, p in polys.items()
    ]
    refs = [
        {
            "ref_id": k,
            "ann_id": a,
            "image_id": a // 10,
            "split": "val",
            "category_id": 1,
            "sentences": [{"sent_id": 100 + k, "sent": s, "raw": s, "tokens": []}],
        }
        for k, (a, s) in enumerate([(10, "left box"), (11, "the right box"), (20, "a square")])
    ]
    _dump(
        root / "refcoco" / "instances.json",
        {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "box"}]},
    )
    (root / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    for im in images:
        _frame(root / "images/mscoco/images/train2014" / im["file_name"], im["id"])
    return root


NAMES = ["00000", "00003", "00006", "00009", "00012"]


def make_revos(root: Path) -> Path:
    """ReVOS layout: meta_expressions_valid_.json + mask_dict.json + {vid}/{frame}.jpg; 4 expressions."""
    a1 = [_rect(2 + 4 * t, 4, 18 + 4 * t, 20) for t in range(5)]
    a2 = [_rect(30, 10 + t, 44, 24 + t) if t != 2 else None for t in range(5)]
    _dump(
        root / "mask_dict.json",
        {"1": [_rle(m) for m in a1], "2": [None if m is None else _rle(m) for m in a2]},
    )
    videos = {}
    for v, vid in enumerate(["MeViS/v1", "v2"]):
        videos[vid] = {
            "frames": NAMES,
            "expressions": {
                "0": {"exp": "the moving box", "obj_id": [1], "anno_id": [1], "type_id": 0},
                "1": {"exp": "Which box is hungry?", "obj_id": [2], "anno_id": [2], "type_id": 1},
            },
        }
        for t, n in enumerate(NAMES):
            _frame(root / vid / f"{n}.jpg", 10 * v + t)
    _dump(root / "meta_expressions_valid_.json", {"videos": videos})
    return root


def make_mevis_valid(root: Path) -> Path:
    """MeViS valid (server-only): meta_expressions.json without masks + JPEGImages."""
    _dump(
        root / "valid" / "meta_expressions.json",
        {
            "videos": {
                "vA": {
                    "frames": NAMES[:3],
                    "expressions": {"0": {"exp": "the box"}, "1": {"exp": "the background"}},
                }
            }
        },
    )
    for t, n in enumerate(NAMES[:3]):
        _frame(root / "valid" / "JPEGImages" / "vA" / f"{n}.jpg", 40 + t)
    return root


def make_videorefer_bench(root: Path) -> Path:
    """VideoRefer-Bench-Q / -D layout with frame folders as videos (PixelQA reads the same files)."""
    for v in ("v0", "v1"):
        for t in range(6):
            _frame(root / "videos" / v / f"{t:05d}.jpg", 60 + t + (10 if v == "v1" else 0))
    o0 = {str(t): {"segmentation": _rle(_rect(4 + 2 * t, 4, 20 + 2 * t, 18))} for t in (1, 3, 5)}
    o1 = {str(t): {"segmentation": _rle(_rect(26, 8, 44, 28))} for t in (1, 3, 5)}
    q = [
        {
            "id": 0,
            "video": "v0",
            "Question": "What is <object0><region> doing near <object1><region>?",
            "type": "Basic Questions",
            "options": ["(A) Sleeping", "(B) Eating", "(C) Running"],
            "Answer": "(C) Running",
            "frame_idx": "3",
            "annotation": [o0, o1],
        },
        {
            "id": 1,
            "video": "v1",
            "Question": "What color is <region>?",
            "type": "Sequential Questions",
            "options": ["Red", "Blue"],
            "Answer": "B",
            "frame_idx": 1,
            "annotation": [o0],
        },
    ]
    _dump(root / "VideoRefer-Bench-Q.json", q)
    _dump(
        root / "VideoRefer-Bench-D.json",
        [
            {
                "id": 5,
                "video": "v1",
                "caption": "A red box slides right.",
                "frame_idx": 1,
                "type": "x",
                "annotation": [o0],
            }
        ],
    )
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("eval_data")
    return {
        "refcoco": make_refcoco(base / "lisa" / "refer_seg"),
        "revos": make_revos(base / "revos"),
        "mevis": make_mevis_valid(base / "mevis"),
        "bench": make_videorefer_bench(base / "videorefer_bench"),
        "base": base,
    }


def _metrics(out: Path, bench: str, split: str) -> dict[str, Any]:
    return json.loads((out / bench / split / "metrics.json").read_text())


def _ids(out: Path, bench: str, split: str) -> list[str]:
    ids = []
    for f in sorted((out / bench / split).glob("predictions.*.jsonl")):
        ids += [json.loads(line)["id"] for line in f.read_text().splitlines() if line.strip()]
    return ids


@pytest.fixture(scope="module")
def api() -> UniPixel:
    """The tiny model, loaded once and handed to ``runner.main(api=...)`` (the subprocess tests load their own)."""
    return UniPixel.from_pretrained(CKPT, device="cpu")


# Teacher forcing makes the random model produce masks, so the image/video scores are not trivially zero and
# the resume / shard comparisons check real mask predictions; MeViS valid uses the reference protocol.
TEACHER = ["--protocol", "infer_seg_teacher"]


@pytest.fixture(scope="module")
def full_run(data: dict[str, Path], api: UniPixel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One uninterrupted 1-process run of every fixture benchmark (the reference for the other tests)."""
    out = tmp_path_factory.mktemp("eval_full")
    for bench, root, split, extra in [
        ("refcoco", data["refcoco"], "val", TEACHER),
        ("revos", data["revos"], "valid", TEACHER),
        ("videorefer_bench_q", data["bench"], "test", []),
        ("pixelqa_mix", data["bench"], "test", []),
        ("mevis", data["mevis"], "valid", []),
        ("videorefer_bench_d", data["bench"], "test", []),
    ]:
        rc = runner.main(
            [bench, "--data-root", str(root), "--out", str(out), "--split", split, *FAST, *extra], api=api
        )
        assert rc == 0, bench
    return out


# ----------------------------------------------------------------------------------------------------------
# no-model unit tests


def test_jsonl_torn_tail_shard_spec_and_registry(tmp_path: Path) -> None:
    f = tmp_path / "p.jsonl"
    runner.append_record(f, {"id": "a"})
    runner.append_record(f, {"id": "b", "x": float("nan")})
    with open(f, "ab") as fh:
        fh.write(b'{"id": "c", "te')  # a write torn by a kill
    recs, good = runner.read_jsonl(f)
    assert [r["id"] for r in recs] == ["a", "b"] and good < f.stat().st_size
    assert runner.repair_jsonl(f) > 0 and runner.read_jsonl(f)[1] == f.stat().st_size
    runner.append_record(f, {"id": "c"})
    assert [r["id"] for r in runner.read_jsonl(f)[0]] == ["a", "b", "c"]
    assert runner.parse_shard("1/2") == (1, 2) and runner.parse_shard(None, {}) == (0, 1)
    assert runner.parse_shard(None, {"RANK": "3", "WORLD_SIZE": "4"}) == (3, 4)
    with pytest.raises(ValueError, match="0 <= i < n"):
        runner.parse_shard("2/2")
    for b in BENCHMARKS.values():
        assert b.metric in AGGREGATORS
    assert parse_scores(
        "Subject Correspondence: 4\nAppearance Description: 3.5\nTemporal Description: **2**\n"
        "Hallucination Detection: 5"
    ) == {"subject": 4, "appearance": 3.5, "temporal": 2, "hallucination": 5}


def test_bad_arguments_fail_before_loading_the_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert runner.main(["nope", "--out", str(tmp_path)]) == 2
    assert runner.main(["refcoco", "--protocol", "videorefer_q", "--data-root", str(tmp_path)]) == 2
    assert runner.main(["refcoco", "--param", "no_such=1", "--data-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown benchmark" in err and "does not apply" in err and "no_such" in err
    assert runner.main(["list"]) == 0 and "infer_seg_teacher" in capsys.readouterr().out
    assert runner.main(["refcoco", "--limit", "0", "--data-root", str(tmp_path)]) == 2
    assert "--limit must be >= 1" in capsys.readouterr().err
    assert runner.main(["refcoco", "--param", "mask_select=best", "--data-root", str(tmp_path)]) == 2
    assert "must be one of ('first', 'union')" in capsys.readouterr().err
    assert runner.main(["refcoco", "--param", "num_frames=abc", "--data-root", str(tmp_path)]) == 2
    assert "expected int like the default 16" in capsys.readouterr().err
    assert runner.main(["refcoco", "--param", "teacher_forcing=yes", "--data-root", str(tmp_path)]) == 2
    assert "expected bool" in capsys.readouterr().err
    assert runner.main(["all", "--param", "num_frame=8", "--data-root", str(tmp_path)]) == 2
    assert "no protocol has the parameter(s) ['num_frame']" in capsys.readouterr().err
    assert runner.main(["all", "--split", "val", "--data-root", str(tmp_path)]) == 2
    assert runner.main(["report", "--out", str(tmp_path / "none")]) == 2
    assert "no results under" in capsys.readouterr().err


def test_bad_model_tasks_and_empty_selection_are_one_line_errors(
    data: dict[str, Path], api: UniPixel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = ["refcoco", "--data-root", str(data["refcoco"]), "--split", "val", "--out", str(tmp_path), *FAST]
    assert runner.main([*root, "--model", str(tmp_path / "no-such-model")]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert runner.main(root, api=api) == 0  # the failed attempt left run.json but no records: not blocking
    assert runner.main([*root, "--out", str(tmp_path / "t"), "--tasks", "refseg"], api=api) == 2
    assert "--tasks refseg: no such task" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# end to end


def test_end_to_end_outputs(full_run: Path) -> None:
    out = full_run
    ref = _metrics(out, "refcoco", "val")
    assert ref["complete"] and ref["counts"] == {"expected": 3, "done": 3, "missing": 0, "failed": 0}
    assert set(ref["metrics"]) >= {"cIoU", "gIoU", "BBox Acc"} and ref["paper"]["cIoU"] == [80.5, 80.8]
    assert (
        ref["protocol"]["name"] == "infer_seg_teacher" and ref["protocol"]["params"]["sam2_frames"] == "all"
    )
    assert ref["protocol"]["params"]["max_pixels"] == 6272 and ref["model"] == str(CKPT.resolve())
    rec = json.loads((out / "refcoco/val/predictions.shard0of1.jsonl").read_text().splitlines()[0])
    assert {"id", "text", "objects", "scores"} <= set(rec) and rec["scores"]["kind"] == "image"
    for o in rec["objects"]:  # per-sample predictions are COCO RLE
        assert mask_utils.decode(
            {"size": o["rles"][0]["size"], "counts": o["rles"][0]["counts"].encode()}
        ).shape == (H, W)

    rv = _metrics(out, "revos", "valid")
    assert rv["complete"] and set(rv["metrics"]) == {"J", "F", "J&F"}
    assert rv["details"]["referring"]["n"] == 2 and rv["details"]["reason"]["n"] == 2
    assert all(0 <= v <= 100 for v in rv["metrics"].values()) and rv["metrics"]["J&F"] > 0
    vrec = json.loads((out / "revos/valid/predictions.shard0of1.jsonl").read_text().splitlines()[0])
    assert vrec["group"]["type_id"] == 0 and len(vrec["llm_frames"]) == 5
    assert all(len(o["frames"]) == 5 for o in vrec["objects"])  # SAM 2 segmented every frame

    q = _metrics(out, "videorefer_bench_q", "test")
    assert q["protocol"]["name"] == "videorefer_q" and "acc" in q["metrics"]
    assert set(q["details"]["tasks"]) == {"all", "Basic Questions", "Sequential Questions"}
    pq = _metrics(out, "pixelqa_mix", "test")
    assert {"acc", "J", "F", "J&F"} <= set(pq["metrics"]) and pq["details"]["objects"] == 3

    mv = _metrics(out, "mevis", "valid")
    assert mv["metrics"] == {} and "server" in mv["status"]
    zip_path = out / "mevis/valid/submission.zip"
    import zipfile

    names = sorted(zipfile.ZipFile(zip_path).namelist())
    assert names == [f"vA/{e}/{n}.png" for e in ("0", "1") for n in NAMES[:3]]

    d = _metrics(out, "videorefer_bench_d", "test")
    assert d["metrics"] == {"score": None} and d["status"].startswith("score pending")
    report = (out / "report.md").read_text()
    for row in (
        "| refcoco | val | cIoU |",
        "| revos | valid | J&F |",
        "| videorefer_bench_d | test | score | — |",
    ):
        assert row in report
    assert "infer_seg" in report and "80.5" in report and "pending" in report


class _FakeJudge(http.server.BaseHTTPRequestHandler):
    calls: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append({"path": self.path, "body": body})
        text = "Subject Correspondence: 4\nAppearance Description: 3\nTemporal Description: 2\nHallucination Detection: 5"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_judge_scores_saved_predictions(full_run: Path) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _FakeJudge)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        argv = [
            "videorefer_bench_d",
            "--out",
            str(full_run),
            "--merge-only",
            "--split",
            "test",
            "--quiet",
            "--judge-url",
            url,
            "--judge-model",
            "fake-judge",
        ]
        assert runner.main(argv) == 0
        assert runner.main(argv) == 0  # judgments are resumable: nothing is judged twice
    finally:
        server.shutdown()
    assert len(_FakeJudge.calls) == 1 and _FakeJudge.calls[0]["path"] == "/v1/chat/completions"
    sent = _FakeJudge.calls[0]["body"]
    assert sent["model"] == "fake-judge" and "A red box slides right." in sent["messages"][1]["content"]
    d = _metrics(full_run, "videorefer_bench_d", "test")
    assert d["metrics"]["score"] == pytest.approx(3.5) and d["status"] is None


def test_kill_and_resume_gives_identical_metrics(
    data: dict[str, Path], full_run: Path, api: UniPixel, tmp_path: Path
) -> None:
    class Killed(BaseException):
        pass

    def kill_after_two(count: int, record: Any) -> None:
        if count == 2:
            raise Killed

    argv = ["revos", "--data-root", str(data["revos"]), "--out", str(tmp_path), *FAST, *TEACHER]
    with pytest.raises(Killed):
        runner.main(argv, on_record=kill_after_two, api=api)
    pred = tmp_path / "revos/valid/predictions.shard0of1.jsonl"
    assert len(pred.read_text().splitlines()) == 2 and not (tmp_path / "revos/valid/metrics.json").exists()
    with open(pred, "ab") as fh:  # the kill also tore a third record mid-write
        fh.write(b'{"id": "revos/valid/v2/0", "text": "The tar')
    seen: list[str] = []
    assert runner.main(argv, on_record=lambda c, r: seen.append(r["id"]), api=api) == 0
    assert len(seen) == 2  # only the two missing samples ran
    ids = _ids(tmp_path, "revos", "valid")
    assert sorted(ids) == sorted(set(ids)) == sorted(_ids(full_run, "revos", "valid"))
    got, want = _metrics(tmp_path, "revos", "valid"), _metrics(full_run, "revos", "valid")
    assert got["metrics"] == want["metrics"] and got["details"] == want["details"]
    # a rerun has nothing left to do and recomputes the same numbers
    assert runner.main([*argv, "--merge-only"]) == 0
    assert _metrics(tmp_path, "revos", "valid")["metrics"] == want["metrics"]


def test_two_process_shards_match_one_process(data: dict[str, Path], full_run: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "unipixel.cli",
                "eval",
                "refcoco",
                "--data-root",
                str(data["base"]),
                "--out",
                str(tmp_path),
                "--split",
                "val",
                "--shard",
                f"{i}/2",
                *FAST,
                *TEACHER,
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    for p in procs:
        output, _ = p.communicate(timeout=300)
        assert p.returncode == 0, output
    split_dir = tmp_path / "refcoco/val"
    assert sorted(f.name for f in split_dir.glob("predictions.*")) == [
        "predictions.shard0of2.jsonl",
        "predictions.shard1of2.jsonl",
    ]
    ids = _ids(tmp_path, "refcoco", "val")
    assert len(ids) == 3 and sorted(ids) == sorted(_ids(full_run, "refcoco", "val"))
    got, want = _metrics(tmp_path, "refcoco", "val"), _metrics(full_run, "refcoco", "val")
    assert got["complete"] and got["metrics"] == want["metrics"] and got["details"] == want["details"]
    assert runner.main(["refcoco", "--split", "val", "--out", str(tmp_path), "--merge-only", "--quiet"]) == 0
    assert _metrics(tmp_path, "refcoco", "val")["metrics"] == want["metrics"]


def test_reference_protocol_on_images_and_synthetic_world(
    data: dict[str, Path], api: UniPixel, tmp_path: Path
) -> None:
    from unipixel.synth import SynthOptions, generate_split

    out = tmp_path / "out"
    assert (
        runner.main(
            ["refcoco", "--data-root", str(data["base"]), "--split", "val", "--out", str(out), *FAST], api=api
        )
        == 0
    )
    ref = _metrics(out, "refcoco", "val")
    assert ref["protocol"]["name"] == "infer_seg" and ref["protocol"]["params"]["teacher_forcing"] is False
    assert ref["complete"] and {"cIoU", "gIoU"} <= set(ref["metrics"])

    syn = tmp_path / "synthetic"
    generate_split(
        SynthOptions(
            seed=0,
            split="test",
            num_images=1,
            num_videos=1,
            width=48,
            height=48,
            min_frames=4,
            max_frames=4,
            max_objects=2,
        ),
        syn,
    )
    argv = [
        "synthetic",
        "--data-root",
        str(syn),
        "--out",
        str(out),
        "--tasks",
        "ref_seg,region_caption,pixelqa",
        *FAST,
    ]
    assert runner.main(argv, api=api) == 0
    m = _metrics(out, "synthetic", "test")
    assert m["complete"] and m["counts"]["failed"] == 0
    want = {"image_seg cIoU", "video_seg J&F", "caption EM", "pixelqa acc", "pixelqa J&F"}
    assert want <= set(m["metrics"]), m["metrics"]
    assert "| synthetic | test | video_seg J&F |" in (out / "report.md").read_text()


def test_failing_sample_is_recorded_and_scored_as_empty(
    data: dict[str, Path], api: UniPixel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = runner.run_sample

    def flaky(api_: Any, sample: Any, *args: Any) -> Any:
        if sample.meta["sent_id"] == 101:
            raise RuntimeError("decoder exploded")
        return real(api_, sample, *args)

    monkeypatch.setattr(runner, "run_sample", flaky)
    argv = ["refcoco", "--data-root", str(data["refcoco"]), "--split", "val", "--out", str(tmp_path), *FAST]
    assert runner.main(argv, api=api) == 0
    m = _metrics(tmp_path, "refcoco", "val")
    assert m["counts"]["failed"] == 1 and m["complete"] and "1 failed" in (tmp_path / "report.md").read_text()
    bad = [
        json.loads(x) for x in (tmp_path / "refcoco/val/predictions.shard0of1.jsonl").read_text().splitlines()
    ]
    bad = [r for r in bad if r.get("error")]
    assert bad[0]["error"] == "RuntimeError: decoder exploded"
    assert (
        bad[0]["scores"]["inter"] == 0 and bad[0]["scores"]["union"] > 0 and bad[0]["scores"]["hit"] is False
    )
    with pytest.raises(
        runner.SampleFailed, match="refcoco/unc/val/101 failed: RuntimeError: decoder exploded"
    ):
        runner.main([*argv, "--out", str(tmp_path / "ff"), "--fail-fast"], api=api)
    monkeypatch.setattr(runner, "run_sample", real)  # the transient failure is gone
    assert runner.main(argv, api=api) == 0  # a plain rerun keeps the error record
    assert _metrics(tmp_path, "refcoco", "val")["counts"]["failed"] == 1
    assert runner.main([*argv, "--retry-failed"], api=api) == 0  # the retry's success replaces it
    assert _metrics(tmp_path, "refcoco", "val")["counts"]["failed"] == 0


def test_region_frame_sampling_keeps_prompt_frames(tmp_path: Path) -> None:
    from unipixel.data.schema import MediaRef, ObjectAnnotation, Sample, Turn, VisualPrompt
    from unipixel.eval import protocols as P

    for t in range(10):
        _frame(tmp_path / "v" / f"{t:05d}.jpg", t)
    mask = _rle(_rect(2, 2, 12, 12))
    obj = ObjectAnnotation(0, {0: mask}, VisualPrompt("mask", 0))
    # one annotated frame of a longer video: sampled from the whole video with that frame forced in
    s = Sample(
        "x",
        "region_qa",
        MediaRef(path=str(tmp_path / "v"), frame_indices=[5]),
        [Turn("user", "q")],
        [obj],
        meta={"single_frame_mode": True},
    )
    media, keys = P._region_media(s, {"num_frames": 4})
    assert media.num_frames == 4 and 5 in media.frame_indices.tolist() and sorted(keys) == [-1, -1, -1, 0]
    (track,), ids = P._mem_objects(s, media, keys)
    assert ids == [0] and [bool(m.any()) for m in track.mask] == [k == 0 for k in keys]
    # among annotated frames: uniform positions with the prompt position kept
    assert P.sample_positions(10, 4, [4]) == [0, 4, 6, 9] and P.sample_positions(3, 16) == [0, 1, 2]
    s2 = Sample(
        "y",
        "region_qa",
        MediaRef(path=str(tmp_path / "v"), frame_indices=[1, 3, 5, 7]),
        [Turn("user", "q")],
        [ObjectAnnotation(0, {1: mask}, VisualPrompt("mask", 1))],
    )
    media2, pos2 = P._region_media(s2, {"num_frames": 2})
    assert pos2 == [1, 3] and media2.frame_indices.tolist() == [1, 3]


def test_eval_help_shows_the_usage_lines_and_output_layout() -> None:
    from unipixel.eval.runner import build_parser

    text = build_parser().format_help()
    assert "unipixel eval all --model PATH" in text and "OUT/report.md" in text
    assert "::" not in text  # reST markers of the module docstring are not shown to users


def test_a_subset_run_is_marked_and_not_compared_with_the_paper(
    data: dict[str, Path], api: UniPixel, tmp_path: Path
) -> None:
    argv = ["refcoco", "--data-root", str(data["refcoco"]), "--split", "val", "--out", str(tmp_path), *FAST]
    assert runner.main([*argv, "--limit", "1"], api=api) == 0
    m = _metrics(tmp_path, "refcoco", "val")
    assert m["selection"]["limit"] == 1 and m["selection"]["samples"] == 1 and m["selection"]["of"] > 1
    rows = [r for r in (tmp_path / "report.md").read_text().splitlines() if r.startswith("| refcoco | val |")]
    assert rows and all("(subset of" in r for r in rows)
    assert all(r.split("|")[7].strip() == "—" for r in rows)  # no Δ against the paper's full-split number
    from unipixel.eval.report import markdown_report

    whole = {**m, "selection": {"limit": 10**6, "tasks": [], "samples": 5, "of": 5}}  # a limit above the size
    assert "subset" not in markdown_report([whole])
    assert runner.main(argv, api=api) == 0  # extending to the full split keeps the first record
    full = _metrics(tmp_path, "refcoco", "val")
    assert full["selection"]["limit"] is None and full["counts"]["done"] == full["selection"]["of"]
    assert runner.main([*argv, "--dtype", "bfloat16"], api=api) == 2  # other numerics: not mixed in

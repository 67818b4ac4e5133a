"""Load test for ``unipixel serve``: N requests at concurrency C over loopback HTTP, then a table of errors,
latency percentiles, throughput and the server's peak memory.

Why: the server queues every request onto one model; this shows what a client sees under sustained load
(queueing latency grows with concurrency, nothing fails, memory stays flat) and catches leaks (peak RSS that
keeps growing with request count).  The run is bounded both in requests and in wall time and stops by itself.

    # start a server on the golden tiny checkpoint and load it (the default)
    python benchmarks/load_server.py --requests 500 --concurrency 16
    # or target a running server (pass its pid to read its peak RSS from /proc)
    python benchmarks/load_server.py --url http://127.0.0.1:8000 --server-pid 12345

Peak memory is the server process's ``VmHWM`` (peak resident set) from ``/proc/<pid>/status``, read before
and after the load, plus the highest ``VmRSS`` sampled during it.  Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Sample:
    """One request's outcome."""

    kind: str
    status: int  # HTTP status, 0 for a transport error / timeout
    latency_s: float
    error: str | None = None


@dataclass
class Report:
    samples: list[Sample] = field(default_factory=list)
    wall_s: float = 0.0
    not_sent: int = 0
    hwm_before_kb: int | None = None
    hwm_after_kb: int | None = None
    rss_max_sampled_kb: int | None = None
    health_after: dict[str, Any] | None = None


def proc_status_kb(pid: int, key: str) -> int | None:
    """``VmHWM`` / ``VmRSS`` of a process in KiB (Linux /proc)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method) without needing numpy."""
    if not values:
        return float("nan")
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def default_image() -> bytes:
    """The golden 1-frame input as a PNG (a red rectangle and a blue ellipse, 168x112)."""
    from PIL import Image
    from safetensors.numpy import load_file

    frame = load_file(str(GOLDEN / "inputs_video_T1.safetensors"))["frames_uint8"][0]
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(args: argparse.Namespace, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m unipixel.server`` on loopback (default: the golden tiny checkpoint)."""
    port = args.port or free_port()
    cmd = [sys.executable, "-m", "unipixel.server", "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
           "--log-level", "warning", "--queue-size", str(args.queue_size)]
    if args.model:
        cmd += ["--model", args.model]
    else:
        cmd += ["--model", str(GOLDEN / "ckpt_tiny"), "--sam2-config-dir", str(GOLDEN / "sam2_configs"),
                "--min-pixels", "3136", "--max-pixels", "25088", "--device", "cpu"]
    if args.torch_threads:
        cmd += ["--torch-threads", str(args.torch_threads)]
    for extra in args.server_arg:
        cmd += extra.split()
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    return proc, f"http://127.0.0.1:{port}"


async def wait_healthy(client: Any, proc: subprocess.Popen[bytes] | None, timeout_s: float) -> dict[str, Any]:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode}")
        try:
            r = await client.get("/health", timeout=2)
            if r.status_code == 200:
                return r.json()
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.25)
    raise RuntimeError(f"server not healthy after {timeout_s:.0f} s")


async def run_load(args: argparse.Namespace, url: str, pid: int | None, proc: subprocess.Popen[bytes] | None) -> Report:
    import httpx

    image = Path(args.image).read_bytes() if args.image else default_image()
    video = Path(args.video).read_bytes() if args.video else None
    report = Report()
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=args.timeout, limits=limits) as client:
        await wait_healthy(client, proc, args.startup_timeout)
        if pid is not None:
            report.hwm_before_kb = proc_status_kb(pid, "VmHWM")
        next_index = 0
        deadline = time.monotonic() + args.max_seconds
        stop = asyncio.Event()
        rss_max = 0

        async def sample_rss() -> None:
            nonlocal rss_max
            while not stop.is_set() and pid is not None:
                rss_max = max(rss_max, proc_status_kb(pid, "VmRSS") or 0)
                await asyncio.sleep(0.2)

        def request_for(i: int) -> tuple[str, dict[str, Any], dict[str, Any]]:
            if video is not None and args.video_every and i % args.video_every == args.video_every - 1:
                data = {"prompt": "What is [0] doing?", "points": "[[84, 56, 2]]", "num_frames": str(args.num_frames),
                        "max_new_tokens": str(args.max_new_tokens)}
                return "video", {"file": ("clip.mp4", video, "video/mp4")}, data
            data = {"prompt": args.prompt, "max_new_tokens": str(args.max_new_tokens)}
            if args.response:
                data.update(points="[[40, 50]]", response=args.response)
            return "image", {"file": ("image.png", image, "image/png")}, data

        async def worker() -> None:
            nonlocal next_index
            while next_index < args.requests and time.monotonic() < deadline:
                i = next_index
                next_index += 1
                kind, files, data = request_for(i)
                t0 = time.perf_counter()
                try:
                    remaining = max(1.0, deadline - time.monotonic())
                    r = await asyncio.wait_for(client.post("/v1/predict", files=files, data=data), remaining)
                    dt = time.perf_counter() - t0
                    ok = r.status_code == 200 and "objects" in r.json()
                    err = None if ok else r.text[:200]
                    report.samples.append(Sample(kind, r.status_code, dt, err))
                except (httpx.HTTPError, asyncio.TimeoutError, ValueError) as e:
                    report.samples.append(Sample(kind, 0, time.perf_counter() - t0, f"{type(e).__name__}: {e}"))

        sampler = asyncio.create_task(sample_rss())
        t_start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
        report.wall_s = time.perf_counter() - t_start
        stop.set()
        await sampler
        report.not_sent = args.requests - len(report.samples)
        if pid is not None:
            report.hwm_after_kb = proc_status_kb(pid, "VmHWM")
            report.rss_max_sampled_kb = rss_max or None
        try:
            report.health_after = (await client.get("/health")).json()
        except (httpx.HTTPError, ValueError):
            report.health_after = None
    return report


def summarise(report: Report, args: argparse.Namespace) -> dict[str, Any]:
    ok = [s for s in report.samples if s.status == 200 and s.error is None]
    errors = [s for s in report.samples if not (s.status == 200 and s.error is None)]
    lat = [s.latency_s for s in ok]
    by_status: dict[str, int] = {}
    for s in errors:
        by_status[str(s.status)] = by_status.get(str(s.status), 0) + 1
    mb = (lambda kb: None if kb is None else round(kb / 1024, 1))  # noqa: E731
    return {
        "requests": args.requests, "concurrency": args.concurrency, "completed": len(report.samples),
        "not_sent": report.not_sent, "ok": len(ok), "errors": len(errors), "errors_by_status": by_status,
        "first_error": errors[0].error if errors else None,
        "kinds": {k: sum(1 for s in report.samples if s.kind == k) for k in sorted({s.kind for s in report.samples})},
        "latency_s": {
            "p50": percentile(lat, 50), "p95": percentile(lat, 95), "p99": percentile(lat, 99),
            "mean": statistics.fmean(lat) if lat else float("nan"), "max": max(lat) if lat else float("nan"),
        },
        "wall_s": report.wall_s, "throughput_rps": len(ok) / report.wall_s if report.wall_s else 0.0,
        "server_peak_rss_mb_before": mb(report.hwm_before_kb), "server_peak_rss_mb_after": mb(report.hwm_after_kb),
        "server_rss_max_sampled_mb": mb(report.rss_max_sampled_kb),
        "health_after": report.health_after,
    }


def print_table(s: dict[str, Any]) -> None:
    lat = s["latency_s"]
    rows = [
        ("requests (sent/target)", f"{s['completed']}/{s['requests']} at concurrency {s['concurrency']}"),
        ("request mix", ", ".join(f"{k}: {v}" for k, v in s["kinds"].items())),
        ("ok / errors", f"{s['ok']} / {s['errors']} {s['errors_by_status'] or ''}".rstrip()),
        ("latency p50 / p95 / p99", f"{lat['p50']:.3f} / {lat['p95']:.3f} / {lat['p99']:.3f} s"),
        ("latency mean / max", f"{lat['mean']:.3f} / {lat['max']:.3f} s"),
        ("wall time", f"{s['wall_s']:.1f} s"),
        ("throughput", f"{s['throughput_rps']:.2f} req/s"),
        ("server peak RSS (VmHWM) before load", f"{s['server_peak_rss_mb_before']} MiB"),
        ("server peak RSS (VmHWM) after load", f"{s['server_peak_rss_mb_after']} MiB"),
        ("server max VmRSS sampled during load", f"{s['server_rss_max_sampled_mb']} MiB"),
    ]
    if s["first_error"]:
        rows.append(("first error", s["first_error"]))
    width = max(len(k) for k, _ in rows)
    print(f"| {'metric':<{width}} | value")
    print(f"|{'-' * (width + 2)}|{'-' * 40}")
    for k, v in rows:
        print(f"| {k:<{width}} | {v}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", help="target a running loopback server instead of starting one")
    p.add_argument("--server-pid", type=int, help="pid of the --url server, to read its peak RSS")
    p.add_argument("--model", help="checkpoint for the started server (default: the golden tiny checkpoint)")
    p.add_argument("--port", type=int, default=0, help="port for the started server (default: a free one)")
    p.add_argument("--torch-threads", type=int, default=1, help="--torch-threads for the started server")
    p.add_argument("--queue-size", type=int, default=64)
    p.add_argument("--server-arg", action="append", default=[], help="extra server flags, e.g. '--frames 4'")
    p.add_argument("--requests", type=int, default=500)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--timeout", type=float, default=300.0, help="per-request timeout, seconds")
    p.add_argument("--max-seconds", type=float, default=1800.0, help="stop sending after this long")
    p.add_argument("--startup-timeout", type=float, default=180.0)
    p.add_argument("--image", help="image to upload (default: the golden frame as PNG)")
    p.add_argument("--video", default=str(ROOT / "examples" / "shapes.mp4"), help="video for the mixed requests")
    p.add_argument("--video-every", type=int, default=4, help="every Nth request is a video + point (0: none)")
    p.add_argument("--num-frames", type=int, default=4)
    p.add_argument("--prompt", default="Please segment the red rectangle in this image.")
    p.add_argument("--response", help="teacher-forced answer for image requests (adds a point prompt)")
    p.add_argument("--max-new-tokens", type=int, default=16)
    p.add_argument("--json-out", help="also write the summary as JSON here")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.requests < 1 or args.concurrency < 1:
        raise SystemExit("error: --requests and --concurrency must be >= 1")
    proc = None
    log_dir = Path(tempfile.mkdtemp(prefix="unipixel-load-"))
    log_path = log_dir / "server.log"
    if args.url:
        host = urlparse(args.url).hostname or ""
        if host not in LOOPBACK:
            raise SystemExit(f"error: only loopback servers are allowed, got host {host!r}")
        url, pid = args.url.rstrip("/"), args.server_pid
    else:
        proc, url = start_server(args, log_path)
        pid = proc.pid
    try:
        report = asyncio.run(run_load(args, url, pid, proc))
    except RuntimeError as err:
        tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
        raise SystemExit(f"error: {err}\n{tail}") from None
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    summary = summarise(report, args)
    print_table(summary)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(summary, indent=2))
    if proc is not None and summary["errors"]:
        print(f"server log: {log_path}", file=sys.stderr)
    elif proc is not None:
        log_path.unlink(missing_ok=True)
        os.rmdir(log_dir)
    return 0 if summary["errors"] == 0 and summary["not_sent"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

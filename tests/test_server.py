"""The HTTP server, tested the way clients use it: a real uvicorn process on 127.0.0.1, called over HTTP.

The server runs the golden tiny checkpoint (random weights, so answers are gibberish); tests that need a mask
use the teacher-forced ``response="[0] <|seg|>"`` path, which always produces one object per ``<|seg|>``.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from safetensors.numpy import load_file  # noqa: E402

from unipixel.results import UniPixelResult, decode_rle  # noqa: E402
from unipixel.server import ApiError, ModelQueue, ServerConfig, parse_predict  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden"
VIDEO = ROOT / "examples" / "shapes.mp4"  # 8 frames, 168x112
MAX_FRAMES = 6
MAX_UPLOAD_MB = 0.25


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], tmp: Path, log: Path) -> None:
        self.url, self.proc, self.tmp, self.log = url, proc, tmp, log


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("serve")
    tmp, log = base / "uploads", base / "server.log"
    port = _free_port()
    cmd = [
        sys.executable, "-m", "unipixel.server", "--model", str(GOLDEN / "ckpt_tiny"),
        "--sam2-config-dir", str(GOLDEN / "sam2_configs"), "--min-pixels", "3136", "--max-pixels", "25088",
        "--device", "cpu", "--host", "127.0.0.1", "--port", str(port), "--frames", "4",
        "--max-frames", str(MAX_FRAMES), "--max-new-tokens", "4", "--max-upload-mb", str(MAX_UPLOAD_MB),
        "--queue-size", "32", "--tmp-dir", str(tmp), "--no-access-log", "--log-level", "warning",
        "--torch-threads", "1",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            if proc.poll() is not None:
                pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"server did not become healthy:\n{log.read_text()[-4000:]}")
            time.sleep(0.25)
        yield Server(url, proc, tmp, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=60) as c:
        yield c


@pytest.fixture(scope="module")
def png() -> bytes:
    """The golden 1-frame input (112x168 red rectangle + blue ellipse) as a PNG."""
    from PIL import Image

    frame = load_file(str(GOLDEN / "inputs_video_T1.safetensors"))["frames_uint8"][0]
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def _error(resp: httpx.Response, status: int) -> dict:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["request_id"] == resp.headers["x-request-id"]
    assert body["error"]["status"] == status and body["error"]["message"]
    return body["error"]


# ------------------------------------------------------------------------------------------------ happy paths


def test_health_info_and_docs(client: httpx.Client) -> None:
    h = client.get("/health").json()
    assert h["status"] == "ok" and h["model_loaded"] is True
    assert h["queue_depth"] == 0 and h["uptime_s"] >= 0 and h["peak_rss_mb"] > 0
    info = client.get("/v1/info").json()
    assert info["limits"]["max_frames"] == MAX_FRAMES
    assert info["limits"]["max_upload_bytes"] == int(MAX_UPLOAD_MB * 1024 * 1024)
    assert info["limits"]["server_side_paths"] is False
    assert info["model"]["name"] == "ckpt_tiny" and info["model"]["max_pixels"] == 25088
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert "prompt" in body["multipart/form-data"]["schema"]["properties"]
    assert "/v1/pixelqa" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_image_upload_returns_objects_with_rle(client: httpx.Client, png: bytes) -> None:
    resp = client.post(
        "/v1/predict",
        files={"file": ("golden.png", png, "image/png")},
        data={"prompt": "Please segment [0].", "points": "[[40, 50]]", "response": "[0] <|seg|>"},
        headers={"X-Request-ID": "test-image-1"},
    )
    assert resp.status_code == 200, resp.text
    d = resp.json()
    assert d["request_id"] == "test-image-1" == resp.headers["x-request-id"]
    assert d["model"] == "ckpt_tiny"
    assert d["clean_text"] == "[0]" and d["frame_indices"] == [0] and d["media"]["is_image"] is True
    assert d["media"]["source"] == "upload"  # no server temp path leaks out
    assert {"queue_wait_s", "media_decode_s", "model_s", "total_s"} <= set(d["timings"])
    (obj,) = d["objects"]
    assert obj["id"] == 0 and len(obj["scores"]) == 1 and len(obj["boxes"]) == 1
    rle = obj["masks"][0]
    assert rle["size"] == [112, 168] and isinstance(rle["counts"], str)
    assert decode_rle([rle]).shape == (1, 112, 168)
    res = UniPixelResult.from_dict(d)  # the body is a UniPixelResult
    assert res.object(0).masks.array().sum() == obj["areas"][0]

    gen = client.post("/v1/predict", files={"file": ("x", png)}, data={"prompt": "Please segment the red one.", "max_new_tokens": "2"})
    assert gen.status_code == 200, gen.text  # no extension / no MIME: sniffed from the bytes
    assert isinstance(gen.json()["text"], str) and isinstance(gen.json()["objects"], list)


def test_video_upload_with_point_prompt(client: httpx.Client) -> None:
    data = {"prompt": "What is [0] doing?", "points": "[[84, 56, 5]]", "num_frames": "4"}
    with open(VIDEO, "rb") as fh:
        resp = client.post("/v1/predict", files={"file": ("shapes.mp4", fh, "video/mp4")}, data=data)
    assert resp.status_code == 200, resp.text
    d = resp.json()
    assert 5 in d["llm_frame_indices"] and len(d["llm_frame_indices"]) == 4  # the prompt frame is kept
    assert d["media"]["is_image"] is False and d["media"]["total_frames"] == 8 and d["media"]["fps"] == 4.0

    forced = client.post("/v1/predict", files={"file": ("shapes.mp4", VIDEO.read_bytes())},
                         data={**data, "num_frames": "2", "response": "[0] <|seg|>", "include_masks": "false"})
    assert forced.status_code == 200, forced.text
    (obj,) = forced.json()["objects"]
    assert obj["frame_indices"] == forced.json()["llm_frame_indices"] == [0, 5] and "masks" not in obj


def test_json_variant_and_pixelqa(client: httpx.Client, png: bytes) -> None:
    resp = client.post("/v1/predict", json={
        "prompt": "Please segment [0].", "boxes": [[20, 20, 90, 80]], "response": "[0] <|seg|>",
        "media_base64": "data:image/png;base64," + base64.b64encode(png).decode(),
    })
    assert resp.status_code == 200, resp.text
    rle = resp.json()["objects"][0]["masks"][0]
    assert rle["size"] == [112, 168]
    region = client.post("/v1/predict", json={  # the mask fed back as a region (<|mem|>) prompt
        "prompt": "What is in this region?", "masks": [{**rle, "frame": 0}],
        "media_base64": base64.encodebytes(png).decode(), "media_filename": "a.png",  # wrapped at 76 columns
    })
    assert region.status_code == 200, region.text
    bad = client.post("/v1/predict", json={
        "prompt": "x", "masks": [{"size": [10, 10], "counts": rle["counts"]}], "media_base64": base64.b64encode(png).decode(),
    })
    assert _error(bad, 422)["field"] == "masks"
    qa = client.post("/v1/pixelqa", json={
        "question": "What is [0] doing?", "options": ["Moving right.", "Standing still."],
        "points": [[84, 56, 2]], "num_frames": 4, "media_base64": base64.b64encode(VIDEO.read_bytes()).decode(),
        "media_filename": "shapes.mp4",
    })
    assert qa.status_code == 200, qa.text
    assert qa.json()["text"].startswith("The best option is (") and "choice" in qa.json()
    assert [o["id"] for o in qa.json()["objects"]] == [0]


# ------------------------------------------------------------------------------------------------ errors


def test_413_too_large(client: httpx.Client) -> None:
    big = os.urandom(int(MAX_UPLOAD_MB * 1024 * 1024) + 4096)
    err = _error(client.post("/v1/predict", files={"file": ("big.png", big)}, data={"prompt": "x"}), 413)
    assert err["code"] == "payload_too_large" and "bytes" in err["message"]
    limit = client.get("/v1/info").json()["limits"]["max_upload_bytes"]
    assert f"limit of {limit} bytes" in err["message"] and err["field"] == "file"  # the limit users configure
    huge = os.urandom(int(MAX_UPLOAD_MB * 1024 * 1024 * 2))  # over the body limit: refused from Content-Length
    err = _error(client.post("/v1/predict", files={"file": ("big.png", huge)}, data={"prompt": "x"}), 413)
    assert f"limit of {limit} bytes" in err["message"] and err["field"] == "file"
    b64 = base64.b64encode(big).decode()
    err = _error(client.post("/v1/predict", json={"prompt": "x", "media_base64": b64}), 413)
    assert f"limit of {limit} bytes" in err["message"] and err["field"] == "media_base64"


def test_422_bad_prompt_specs(client: httpx.Client, png: bytes) -> None:
    files = {"file": ("a.png", png)}
    err = _error(client.post("/v1/predict", files=files, data={"prompt": "x", "points": "[[1, 2"}), 422)
    assert err["field"] == "points" and err["code"] == "invalid_json" and "[x, y" in err["hint"]
    err = _error(client.post("/v1/predict", files=files, data={"prompt": "x", "points": "[[1, 2, 3, 4]]"}), 422)
    assert err["field"] == "points"
    err = _error(client.post("/v1/predict", files=files, data={"prompt": "[0]", "points": "[[500, 2]]"}), 422)
    assert err["field"] == "points" and "outside" in err["message"]
    err = _error(client.post("/v1/predict", files=files, data={"prompt": "[0]", "boxes": "[[9, 9, 5, 5]]"}), 422)
    assert err["field"] == "boxes"
    err = _error(client.post("/v1/predict", files=files, data={"prompt": "what?", "points": "[[1, 2]]"}), 422)
    assert err["field"] == "prompt" and "[0]" in err["message"] and err["hint"]  # checked before the queue
    err = _error(client.post("/v1/predict", files=files, data={"prompt": ""}), 422)
    assert err["field"] == "prompt" and err["code"] == "missing_field"
    err = _error(client.post("/v1/predict", files=files, data={"prompt": "x" * 4001}), 422)
    assert err["field"] == "prompt" and err["code"] == "too_long"
    err = _error(client.post("/v1/predict", files=files, data={"prompt": "x", "point": "[[1, 2]]"}), 422)
    assert err["field"] == "point" and "points" in err["hint"]
    err = _error(client.post("/v1/predict", data={"prompt": "x"}, files={"other": ("a.png", png)}), 422)
    assert err["field"] == "other"
    err = _error(client.post("/v1/predict", json={"prompt": "x", "media_path": "/etc/passwd"}), 422)
    assert err["field"] == "media_path" and "disabled" in err["message"]
    err = _error(client.post("/v1/pixelqa", files=files, data={"question": "[0]?", "options": '["a"]'}), 422)
    assert err["field"] == "options"
    from PIL import Image

    w, h = Image.open(io.BytesIO(png)).size
    err = _error(client.post("/v1/predict", files=files, data={"prompt": "[0]", "points": f"[[{w}, 2]]"}), 422)
    assert err["field"] == "points" and "outside" in err["message"]  # a point is a pixel: x < width
    err = _error(client.post("/v1/predict", files=files, data={"prompt": "[0] or [2]?", "points": "[[1, 2]]"}), 422)
    assert err["field"] == "prompt" and "refers to [2]" in err["message"] and err["hint"]  # unknown [k]
    err = _error(client.post("/v1/pixelqa", files=files, data={"question": "Is [0] left of [1]?", "points": "[[1, 2]]",
                                                              "options": '["yes", "no"]'}), 422)
    assert err["field"] == "question" and "refers to [1]" in err["message"]
    err = _error(client.post("/v1/predict", files=files, data={"prompt": "What is [0]?", "masks":
                             json.dumps([{"size": [h, w], "counts": "!!!!garbage"}])}), 422)
    assert err["field"] == "masks" and "do not decode" in err["message"]  # refused before the model runs
    edge = client.post("/v1/predict", files=files, data={"prompt": "What is [0]?", "boxes": f"[[0, 0, {w}, {h}]]"})
    assert edge.status_code == 200, edge.text  # a box's far edge may be the frame's edge


def test_422_too_many_frames(client: httpx.Client) -> None:
    video = VIDEO.read_bytes()
    err = _error(client.post("/v1/predict", files={"file": ("v.mp4", video)},
                             data={"prompt": "x", "num_frames": str(MAX_FRAMES + 1)}), 422)
    assert err["field"] == "num_frames" and err["code"] == "too_many_frames" and str(MAX_FRAMES) in err["message"]
    err = _error(client.post("/v1/predict", files={"file": ("v.mp4", video)},
                             data={"prompt": "x", "sam2_frames": "all"}), 422)  # all 8 frames > 6
    assert err["field"] == "sam2_frames" and err["code"] == "too_many_frames" and "8" in err["message"]
    err = _error(client.post("/v1/predict", files={"file": ("v.mp4", video)},
                             data={"prompt": "[0]", "points": "[[1, 2, 8]]"}), 422)
    assert "0..7" in err["message"]


def test_415_undecodable_media(client: httpx.Client) -> None:
    junk = b"this is not an image or a video" * 20
    for name in ("junk.png", "junk.mp4", "junk"):
        err = _error(client.post("/v1/predict", files={"file": (name, junk)}, data={"prompt": "x"}), 415)
        assert err["code"] == "undecodable_media" and "/" not in err["message"].split("(")[0]
        assert "tmp" not in err["message"]  # server paths are scrubbed
    err = _error(client.post("/v1/predict", files={"file": ("a.txt", b"")}, data={"prompt": "x"}), 415)
    err = _error(client.post("/v1/predict", content=b"hello", headers={"content-type": "text/plain"}), 415)
    assert err["code"] == "unsupported_content_type"


def test_concurrent_requests_all_succeed_and_loop_stays_responsive(server: Server, png: bytes) -> None:
    n = 4

    async def run() -> tuple[list[int], float]:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as ac:
            async def one(i: int) -> int:
                r = await ac.post("/v1/predict", files={"file": (f"{i}.png", png)},
                                  data={"prompt": f"Please segment [0] ({i}).", "points": "[[40, 50]]",
                                        "response": "[0] <|seg|>"})
                return r.status_code if r.json().get("objects") else -1

            tasks = [asyncio.create_task(one(i)) for i in range(n)]
            await asyncio.sleep(0.05)
            t0 = time.perf_counter()
            health = await ac.get("/health")  # answered while the model is busy
            health_s = time.perf_counter() - t0
            assert health.status_code == 200
            return list(await asyncio.gather(*tasks)), health_s

    codes, health_s = asyncio.run(run())
    assert codes == [200] * n
    assert health_s < 2.0


def test_uploads_are_cleaned_up(client: httpx.Client, server: Server) -> None:
    client.get("/health")
    leftovers = [p for p in server.tmp.rglob("*") if p.is_file()]
    assert leftovers == []


# ------------------------------------------------------------------------------------------------ in-process units


def test_queue_full_answers_503_with_retry_after() -> None:
    gate = threading.Event()

    async def run() -> ApiError:
        queue = ModelQueue(queue_size=1)
        first = asyncio.create_task(queue.submit(gate.wait))
        await asyncio.sleep(0.05)
        try:
            await queue.submit(lambda: None)
        except ApiError as err:
            return err
        finally:
            gate.set()
            await first
            queue.shutdown()
        raise AssertionError("the second request was accepted")

    err = asyncio.run(run())
    assert err.status == 503 and int(err.headers["Retry-After"]) >= 1


def test_cancelled_queued_request_never_reaches_the_model() -> None:
    gate, ran = threading.Event(), []

    async def run() -> None:
        queue = ModelQueue(queue_size=4)
        first = asyncio.create_task(queue.submit(gate.wait))
        second = asyncio.create_task(queue.submit(lambda: ran.append(1)))
        await asyncio.sleep(0.05)
        second.cancel()  # what the server does when the client hangs up while queued
        await asyncio.sleep(0.05)
        gate.set()
        await first
        assert second.cancelled() and queue.pending == 0
        assert (queue.served, queue.cancelled, queue.failed) == (1, 1, 0)
        queue.executor.shutdown(wait=True)

    asyncio.run(run())
    assert ran == []


def test_a_request_dropped_while_on_the_model_keeps_its_slot_until_the_model_is_free() -> None:
    gate = threading.Event()

    async def run() -> None:
        queue = ModelQueue(queue_size=1)
        first = asyncio.create_task(queue.submit(gate.wait))
        await asyncio.sleep(0.05)  # now running on the model thread
        first.cancel()  # the client hung up; the job cannot be stopped
        await asyncio.sleep(0.05)
        assert queue.pending == 1 and queue.running == 1  # still occupies the only slot
        with pytest.raises(ApiError, match="busy"):
            await queue.submit(lambda: None)
        gate.set()
        for _ in range(100):
            if queue.pending == 0:
                break
            await asyncio.sleep(0.01)
        assert queue.pending == 0 and queue.served == 1 and queue.cancelled == 0
        queue.executor.shutdown(wait=True)

    asyncio.run(run())


def test_parse_predict_accepts_single_point_and_defaults() -> None:
    spec = parse_predict({"prompt": "What is [0]?", "points": "[3, 4]", "include_masks": "0"}, ServerConfig())
    assert spec.points == [[3.0, 4.0]] and spec.include_masks is False and spec.num_frames == 16
    with pytest.raises(ApiError) as info:
        parse_predict({"prompt": "x", "points": [[1, True]]}, ServerConfig())
    assert info.value.field == "points"
    masks = parse_predict({"prompt": "x", "masks": [{"size": [2, 3], "counts": "06", "frame": 1}]}, ServerConfig())
    assert masks.masks[0][1] == 1
    assert np.asarray(masks.masks[0][0]["size"]).tolist() == [2, 3]


def test_serve_refuses_a_bad_device_or_model_before_starting() -> None:
    import torch

    from unipixel.server import main

    if not torch.cuda.is_available():
        with pytest.raises(SystemExit, match="CUDA is not available"):
            main(["--device", "cuda"])
    with pytest.raises(SystemExit, match="model not found: /nonexistent/x"):
        main(["--model", "/nonexistent/x"])


def test_serve_help_lists_the_limits(capsys: pytest.CaptureFixture[str]) -> None:
    from unipixel.server import main

    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "--max-upload-mb" in capsys.readouterr().out


def test_health_says_loading_while_the_model_loads_and_load_failed_after_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The model loads after the server is up: /health answers 503 "loading", then 200; a load error is a 500."""
    from starlette.testclient import TestClient

    from unipixel.api import UniPixel
    from unipixel.server import create_app

    gate = threading.Event()
    real = UniPixel.from_pretrained.__func__

    def slow(cls, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        assert gate.wait(30)
        return real(cls, str(GOLDEN / "ckpt_tiny"), device="cpu")

    monkeypatch.setattr(UniPixel, "from_pretrained", classmethod(slow))
    with TestClient(create_app(ServerConfig(tmp_dir=str(tmp_path)))) as c:
        first = c.get("/health")
        assert first.status_code == 503 and first.json()["status"] == "loading"
        assert c.post("/v1/predict", data={"prompt": "x"}).status_code == 503
        gate.set()
        deadline = time.monotonic() + 30
        while c.get("/health").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)

    def broken(cls, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        raise OSError("no such checkpoint")

    monkeypatch.setattr(UniPixel, "from_pretrained", classmethod(broken))
    with TestClient(create_app(ServerConfig(tmp_dir=str(tmp_path)))) as c:
        deadline = time.monotonic() + 30
        while (h := c.get("/health")).status_code == 503:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert h.status_code == 500 and h.json()["status"] == "load_failed" and "no such checkpoint" in h.json()["error"]


def test_the_documented_result_example_has_the_keys_of_a_real_result() -> None:
    from unipixel.results import build_result
    from unipixel.server import _RESULT_EXAMPLE

    mask = np.zeros((1, 8, 8), bool)
    mask[0, 2:4, 2:4] = True
    real = build_result("It is <|seg|>.", tracks=[mask], frame_size=(8, 8)).to_dict()
    assert set(_RESULT_EXAMPLE) - {"request_id", "model"} == set(real)
    example = _RESULT_EXAMPLE["objects"][0]
    assert set(example) == set(real["objects"][0])
    assert len(example["masks"]) == len(example["frame_indices"])  # one RLE per frame

"""The web demo in a real headless browser (Debian's chromium driven by Playwright).

Why a browser test: the demo's value is the wiring between Gradio components (upload → frame view → click →
prompt list → submit → answer + overlay), which unit tests of the callbacks cannot see.  The server runs the
real CLI entry point (``python -m unipixel.demo``) in a subprocess on a free loopback port with the tiny golden
checkpoint (random weights, so only the plumbing is checked, not the answer's content).

Playwright's own browser download needs the internet; we point it at the system chromium instead
(``apt-get install chromium``) and skip with a clear reason when it is absent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from unipixel.writers import object_color

pytest.importorskip("gradio", reason="the web demo needs gradio")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs the playwright package")

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "data" / "golden"
CKPT = GOLDEN / "ckpt_tiny"
GOLDEN_PROMPT = "Please segment the moving red object in this video."  # golden case b
VIDEO = ROOT / "examples" / "shapes.mp4"
SERVER_START_TIMEOUT_S = 60.0


def chromium_executable() -> str | None:
    """The Debian chromium binary.  ``/usr/bin/chromium`` is a shell wrapper; the real binary is preferred
    because the wrapper adds its own flags and prints shell warnings, but either works with Playwright."""
    real = Path("/usr/lib/chromium/chromium")
    if real.is_file() and os.access(real, os.X_OK):
        return str(real)
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _golden_clip(path: Path) -> Path:
    """The golden 4-frame clip as PNG-in-MOV: lossless, so the tiny model's answer is the golden one."""
    import av
    from safetensors.torch import load_file

    frames = load_file(str(GOLDEN / "inputs_video_T4.safetensors"))["frames_uint8"].numpy()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=4)
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "rgb24"
        for f in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        container.mux(stream.encode())
    return path


def _css_rgb(color: tuple[int, int, int]) -> str:
    return "rgb({}, {}, {})".format(*color)


def answer_marker(page: Any, text: str) -> str:
    """Colour of the label Gradio draws next to the highlighted answer token ``text`` (or the answer's HTML,
    for the failure message, when there is no such token)."""
    return page.evaluate(
        """(text) => {
            for (const el of document.querySelectorAll('#answer .token.highlighted')) {
                const t = el.querySelector('.text'), label = el.querySelector('.label');
                if (t && label && t.innerText.trim() === text) return getComputedStyle(label).backgroundColor;
            }
            return document.querySelector('#answer').innerHTML;
        }""",
        text,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_for_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"demo server exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 - loopback URL built above
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"demo server did not answer within {timeout:.0f} s:\n{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def demo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Start ``python -m unipixel.demo`` on a free loopback port; stop it after the module's tests."""
    tmp = tmp_path_factory.mktemp("demo-server")
    log = tmp / "server.log"
    port = _free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost",
           "GRADIO_TEMP_DIR": str(tmp / "gradio")}
    cmd = [
        sys.executable, "-m", "unipixel.demo", "--model", str(CKPT), "--host", "127.0.0.1", "--port", str(port),
        "--min-pixels", "3136", "--max-pixels", "25088", "--max-new-tokens", "16", "--frames", "4",
        "--work-dir", str(tmp / "outputs"),
    ]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=tmp, env=env)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for_http(url, proc, log, SERVER_START_TIMEOUT_S)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_upload_click_submit_shows_answer_and_overlay(demo_url: str, tmp_path: Path) -> None:
    exe = chromium_executable()
    if exe is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium); Playwright cannot download one")
    t0 = time.monotonic()
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1300})
            page.set_default_timeout(30_000)
            page.goto(demo_url)

            # upload the example video through the file input of the upload component
            page.locator("#media-upload input[type=file]").set_input_files(str(VIDEO))
            frame_img = page.locator("#prompt-frame img")
            frame_img.wait_for(state="visible")
            sync_api.expect(page.locator("#frame-info")).to_contain_text("of 8")

            # click the red square (left third of the 168x112 frame) → a point prompt [0]
            box = frame_img.bounding_box()
            assert box is not None and box["width"] > 0
            frame_img.click(position={"x": box["width"] * 0.25, "y": box["height"] * 0.35})
            sync_api.expect(page.locator("#prompt-list")).to_contain_text("[0] point")

            prompt = page.locator("#prompt-text textarea")
            sync_api.expect(prompt).to_have_value("What is [0] doing?")  # prefilled reference to the point
            prompt.fill("What is [0] doing?")
            page.locator("#submit-btn").click()

            # the tiny checkpoint has random weights: any non-empty answer proves the round trip
            page.wait_for_function(
                "() => { const el = document.querySelector('#answer');"
                " return el && el.innerText.replace('Answer', '').trim().length > 0; }",
                timeout=60_000,
            )
            video = page.locator("#overlay-video video")
            video.wait_for(state="visible", timeout=30_000)
            assert "overlay" in (video.get_attribute("src") or "")
            sync_api.expect(page.locator("#result-json")).to_contain_text(".json")

            # a lossless copy of the golden clip + the golden prompt: the tiny model answers with a <|seg|>,
            # so the answer must show the id [0] in the object's overlay colour and the details its mask
            clip = _golden_clip(tmp_path / "clip.mov")
            page.locator("#media-upload button[aria-label='Clear']").first.click()
            page.locator("#media-upload input[type=file]").set_input_files(str(clip))
            sync_api.expect(page.locator("#frame-info")).to_contain_text("of 4")
            sync_api.expect(page.locator("#prompt-list")).to_contain_text("No visual prompts")
            prompt.fill(GOLDEN_PROMPT)
            page.locator("#submit-btn").click()
            sync_api.expect(page.locator("#details")).to_contain_text("[0]", timeout=60_000)
            sync_api.expect(page.locator("#details")).to_contain_text("mask on")
            marker = answer_marker(page, "[0]")
            assert marker == _css_rgb(object_color(0)), marker
            video.wait_for(state="visible")

            shot = tmp_path / "demo.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            if os.environ.get("UNIPIXEL_DEMO_SCREENSHOT"):  # keep a copy to look at
                shutil.copy(shot, os.environ["UNIPIXEL_DEMO_SCREENSHOT"])
        finally:
            browser.close()
    assert time.monotonic() - t0 < 90

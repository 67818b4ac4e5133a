"""The CLI as a user runs it (subprocesses), including the README's main-job command."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "unipixel.cli"]
MODEL = ["--model", str(ROOT / "tests/data/golden/ckpt_tiny")]


def run(args: list[str], cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=timeout)


def test_help_lists_commands_and_examples() -> None:
    proc = run([*CLI, "--help"])
    assert proc.returncode == 0
    for word in ("predict", "chat", "synth", "eval", "serve", "demo", "validate", "export", "examples:"):
        assert word in proc.stdout
    proc = run([*CLI, "predict", "--help"])
    assert "--point X,Y[,FRAME]" in proc.stdout and "examples:" in proc.stdout


def test_readme_main_job_command(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("unipixel predict "))
    argv = shlex.split(line)
    out = tmp_path / "out"
    argv[argv.index("--out") + 1] = str(out)
    proc = run([*CLI, *argv[1:], "--max-new-tokens", "8"])
    assert proc.returncode == 0, proc.stderr
    assert (out / "result.json").exists()
    assert (out / "overlay.png").exists() or (out / "overlay.gif").exists()
    result = json.loads((out / "result.json").read_text())
    assert result["frame_size"] == [112, 112] and result["llm_frame_indices"] == [0]
    assert proc.stdout.strip()  # the answer is printed


def test_point_prompt_and_errors(tmp_path: Path) -> None:
    proc = run([*CLI, "predict", "examples/shapes.mp4", "What is [0] doing?", "--point", "30,40,2", *MODEL,
                "--out", str(tmp_path / "p"), "--max-new-tokens", "4", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    bad = run([*CLI, "predict", "examples/shapes.mp4", "What is [0]?", "--point", "30", *MODEL])
    assert bad.returncode != 0 and re.search(r"expected X,Y\[,FRAME\]", bad.stderr)
    missing = run([*CLI, "predict", "nope.mp4", "hi", *MODEL, "--quiet"])
    assert missing.returncode != 0 and "nope.mp4" in missing.stderr


def test_readme_point_prompt_command(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if ln.startswith("unipixel predict ") and "--point" in ln)
    argv = shlex.split(line)
    argv[argv.index("--out") + 1] = str(tmp_path / "point")
    proc = run([*CLI, *argv[1:], "--max-new-tokens", "4", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "point" / "result.json").read_text())["frame_size"] == [112, 168]


def test_bad_inputs_fail_in_one_line_before_the_model_loads(tmp_path: Path, capfd) -> None:
    """In-process (each case would otherwise pay a Python + torch start-up); the real process is checked once."""
    from unipixel.cli import main as cli_main

    def one_line_error(argv: list[str], *words: str) -> None:
        with pytest.raises(SystemExit) as exc:
            cli_main(argv)
        err = capfd.readouterr().err
        message = str(exc.value.code)
        assert message.startswith("error: ") and all(w in message for w in words), message
        assert "Loading weights" not in err, err  # refused before any weights were read

    one_line_error(["predict", "nope.png", "hi", *MODEL], "media not found", "nope.png")
    afile = tmp_path / "afile"
    afile.write_text("x")
    one_line_error(["predict", "examples/shapes.mp4", "hi", *MODEL, "--out", str(afile)], "existing file")
    notimg = tmp_path / "mask.txt"
    notimg.write_text("not an image")
    one_line_error(["predict", "examples/shapes.mp4", "[0]?", "--mask", str(notimg), *MODEL], "is not an image")
    one_line_error(["predict", "examples/shapes.mp4", "hi", "--frames", "0", *MODEL], "--frames")
    one_line_error(["chat", "nope.mp4", *MODEL], "media not found")
    one_line_error(["parity", str(tmp_path / "none")], "fixture directory not found")
    one_line_error(["predict", "examples/shapes.mp4", "hi", "--model", str(tmp_path / "none")], "cannot load model")
    one_line_error(["predict", "examples/shapes.mp4", "hi", *MODEL, "--device", "bogus"], "unknown device 'bogus'")
    proc = run([*CLI, "predict", "nope.png", "hi", *MODEL])  # as a user sees it: one line, no traceback
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: media not found: nope.png"


def test_sam2_frames_all_masks_every_frame_and_quiet_is_quiet(tmp_path: Path) -> None:
    out = tmp_path / "all"
    proc = run([*CLI, "predict", "examples/shapes.mp4", "Segment it.", *MODEL, "--frames", "2", "--sam2-frames",
                "all", "--out", str(out), "--max-new-tokens", "8", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", proc.stderr  # --quiet: no progress messages, no progress bars
    result = json.loads((out / "result.json").read_text())
    assert len(result["llm_frame_indices"]) == 2
    if result["objects"]:  # the random checkpoint may not segment; when it does, every frame gets a mask row
        assert len(result["frame_indices"]) > 2
        assert (out / "overlay.gif").exists()

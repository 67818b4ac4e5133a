"""Parity with the reference implementation: every golden case, through the parity tool."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from unipixel.parity import FixtureSet, run

GOLDEN = Path(__file__).parent / "data" / "golden"
CASES = list(json.loads((GOLDEN / "golden.json").read_text())["cases"])


@pytest.mark.parametrize("case", CASES)
def test_golden_case(fixture_set: FixtureSet, case: str) -> None:
    checks = fixture_set.run_case(case)
    bad = [f"{c.name}: {c.max_abs:.3e} {c.note}" for c in checks if not c.ok]
    assert not bad, "\n".join(bad)
    assert len(checks) >= 6  # the case really compared its outputs


def test_cli_reports_and_exit_code(golden_dir) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "unipixel.parity", str(golden_dir), "--case", "c_video_ref_point_box_forward"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == "1 passed, 0 failed"
    assert any("seg.1.binary_mask" in line for line in lines)


def test_tool_detects_a_wrong_output(golden_dir, tmp_path) -> None:
    """A fixture set whose stored output was altered must fail: the tool is able to say no."""
    dst = tmp_path / "golden"
    shutil.copytree(golden_dir, dst)
    manifest = json.loads((dst / "golden.json").read_text())
    case = manifest["cases"]["a_image_seg_generate"]
    path = dst / case["file"]
    tensors = load_file(str(path))
    tensors["output.seg.0.low_res_logits"] = tensors["output.seg.0.low_res_logits"] + 0.01
    save_file(tensors, str(path))
    passed, failed = run(dst, ["a_image_seg_generate"], verbose=False)
    assert (passed, failed) == (0, 1)

"""``unipixel validate`` and the loader's checks: a broken sample is named by file and line, with the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unipixel.data.validate import main as validate_main
from unipixel.train.dataset import load_samples_jsonl

GOOD = {
    "id": "s0",
    "task": "ref_seg",
    "media": {"path": "img.png", "is_image": True},
    "conversation": [{"role": "user", "text": "Please segment the dog."}, {"role": "assistant", "text": "It is <|seg|>."}],
    "objects": [{"id": 0, "masks": {"0": {"size": [4, 4], "counts": [0, 16]}}}],
}


def _write(tmp_path: Path, lines: list[str]) -> Path:
    f = tmp_path / "samples.jsonl"
    f.write_text("\n".join(lines) + "\n")
    return f


def _variant(**changes: object) -> str:
    d = json.loads(json.dumps(GOOD))
    for key, value in changes.items():
        node, *path = key.split("__")
        target = d
        for p in [node, *path][:-1]:
            target = target[int(p)] if isinstance(target, list) else target[p]
        last = [node, *path][-1]
        target[int(last) if isinstance(target, list) else last] = value
    return json.dumps(d)


def test_validate_names_each_problem_by_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = _write(tmp_path, [
        json.dumps(GOOD),
        '{"id": "s1", "task": ',  # not JSON
        json.dumps({"id": "s2", "task": "ref_seg"}),  # missing fields
        _variant(objects__0__masks={"0": {"size": [4, 4], "counts": "!!garbage"}}),
        _variant(objects__0__masks={"7": {"size": [4, 4], "counts": [0, 16]}}),
        _variant(conversation__0__text="  "),
        _variant(id=""),
        _variant(conversation__1__text="It is <|seg|> and <|seg|>."),
    ])
    assert validate_main([str(f)]) == 1
    out = capsys.readouterr()
    lines = out.out.splitlines()
    assert not any(line.startswith(f"{f}:1:") for line in lines)  # the good sample
    expect = {
        2: "not valid JSON",
        3: "missing field(s) ['media', 'conversation']",
        4: "RLE counts do not decode",
        5: "a mask on frame 7 of an image",
        6: "turn 0 (user) has no text",
        7: "id must be a non-empty string",
        8: "2 <|seg|> tokens but 1 objects with masks",
    }
    for lineno, words in expect.items():
        assert any(line.startswith(f"{f}:{lineno}:") and words in line for line in lines), (lineno, lines)
    assert "8 samples, 7 invalid" in out.err


def test_numeric_ids_are_read_as_strings(tmp_path: Path) -> None:
    (s,) = load_samples_jsonl(_write(tmp_path, [_variant(id=17)]))
    assert s.id == "17"


def test_loader_refuses_a_broken_sample_with_its_line(tmp_path: Path) -> None:
    f = _write(tmp_path, [json.dumps(GOOD), _variant(task="refseg")])
    with pytest.raises(ValueError, match=r"(?s)samples.jsonl:2: .*task 'refseg' is not one of"):
        load_samples_jsonl(f)
    assert len(load_samples_jsonl(f, validate=False)) == 2


def test_validate_command_checks_media(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from unipixel.cli import main as cli_main

    f = _write(tmp_path, [json.dumps(GOOD)])
    assert cli_main(["validate", str(f), "--check-media"]) == 1
    assert "media file not found: img.png" in capsys.readouterr().out
    (tmp_path / "img.png").write_bytes(b"")
    assert cli_main(["validate", str(f), "--check-media"]) == 0
    assert "1 samples, 0 invalid" in capsys.readouterr().err

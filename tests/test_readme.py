"""The README's copy-paste Python example runs as written (on the tiny checkpoint it names)."""

from __future__ import annotations

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_api_block_runs(tmp_path: Path, monkeypatch) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Python API") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(ROOT)
    code = code.replace('"outputs/readme/result.json"', repr(str(tmp_path / "result.json")))
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 - running the documented example is the test
    assert os.path.exists(tmp_path / "result.json")
    assert scope["qa"].text.startswith("The best option is (")
    assert len(scope["chat"].history) == 1 + len(scope["first"].objects)  # one follow-up per segmented object

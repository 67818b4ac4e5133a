"""``unipixel validate FILE.jsonl ...``: check sample files against the schema before training on them.

Prints one line per problem as ``FILE:LINE: sample-id: problem`` and exits with 1 if any sample is invalid, so
that a data-preparation script can stop before a long training run (which would otherwise fail on the first bad
line). ``--check-media`` also checks that each media file or frame file exists.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .schema import SampleError, read_sample_line, resolve_media_paths, validate_sample


def validate_file(path: Path, check_media: bool = False) -> tuple[int, list[str]]:
    """(number of samples read, problem lines) for one JSONL file."""
    problems: list[str] = []
    n = 0
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        n += 1
        where = f"{path}:{lineno}"
        try:
            sample = read_sample_line(line, where)
        except SampleError as err:
            problems.append(str(err))
            continue
        try:
            validate_sample(sample)
        except SampleError as err:
            problems += [f"{where}: {sample.id}: {p}" for p in str(err).split("\n- ")[1:]]
        if check_media:
            shown = [sample.media.path] if sample.media.path else list(sample.media.frames or [])
            m = resolve_media_paths(sample, path.parent).media  # as training will read them
            for f, resolved in zip(shown, [m.path] if m.path else list(m.frames or []), strict=True):
                if not Path(resolved).exists():
                    problems.append(f"{where}: {sample.id}: media file not found: {f}")
    return n, problems


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="unipixel validate", description=__doc__.split("\n\n")[0])
    p.add_argument("files", nargs="+", type=Path, help="JSONL files of samples (Sample.to_dict per line)")
    p.add_argument("--check-media", action="store_true", help="also check that media files exist")
    p.add_argument("--max-problems", type=int, default=50, help="print at most this many problems (default 50)")
    args = p.parse_args(argv)
    total = bad = 0
    shown = 0
    for f in args.files:
        if not f.is_file():
            print(f"error: {f}: no such file", file=sys.stderr)
            return 2
        n, problems = validate_file(f, args.check_media)
        total += n
        bad += len({q.split(": ")[0] for q in problems})
        for q in problems:
            if shown < args.max_problems:
                print(q)
            shown += 1
    if shown > args.max_problems:
        print(f"... and {shown - args.max_problems} more problems")
    print(f"{total} samples, {bad} invalid", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

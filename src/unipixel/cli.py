"""The ``unipixel`` command line: predict, chat, synth, eval, train, demo, serve, parity.

Each sub-command imports what only it needs (PyAV, Gradio, FastAPI, the trainer) when it runs. ``import unipixel``
itself loads torch and transformers, because it registers the Auto classes, so even ``unipixel --help`` takes a few
seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXAMPLES = """examples:
  unipixel predict examples/shapes.mp4 "Please segment the red square."
  unipixel predict photo.jpg "What is [0] holding?" --point 120,88
  unipixel predict clip.mp4 "Describe [0]." --box 10,20,200,180,12 --frames 16 --out outputs/clip
  unipixel predict clip.mp4 "What is this region doing?" --mask region.png,5
  unipixel chat examples/shapes.mp4
  unipixel synth --seed 7 --split test --out data/synth-test
  python -m unipixel.parity ../shared/golden
"""


def _floats(spec: str, n: int, what: str) -> list[float]:
    try:
        vals = [float(v) for v in spec.split(",")]
    except ValueError:
        raise SystemExit(f"error: --{what} {spec!r}: expected comma-separated numbers") from None
    if len(vals) not in (n, n + 1):
        shape = ",".join(["X", "Y"] if n == 2 else ["X1", "Y1", "X2", "Y2"])
        raise SystemExit(f"error: --{what} {spec!r}: expected {shape}[,FRAME]")
    return vals


def _mask_arg(spec: str) -> tuple[Any, int]:
    import numpy as np
    from PIL import Image

    path, _, frame = spec.partition(",")
    if not Path(path).is_file():
        raise SystemExit(f"error: --mask file {path!r} does not exist")
    try:
        frame_index = int(frame or 0)
    except ValueError:
        raise SystemExit(f"error: --mask {spec!r}: the frame after the comma must be an integer") from None
    try:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("L")) > 0
    except (OSError, ValueError) as err:  # PIL.UnidentifiedImageError is an OSError
        raise SystemExit(f"error: --mask file {path!r} is not an image ({err}); give a PNG/JPEG mask") from None
    return arr, frame_index


def _load_api(args: argparse.Namespace) -> Any:
    from .api import UniPixel, error_line

    _log(args, f"loading model {args.model or '(built-in)'} ...")
    kwargs: dict[str, Any] = {"num_frames": args.frames}
    if args.device:
        kwargs["device"] = args.device
    if getattr(args, "quiet", False):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    try:
        return UniPixel.from_pretrained(args.model, **kwargs)
    except (OSError, ValueError) as err:  # a missing checkpoint is an OSError from transformers
        raise SystemExit(f"error: cannot load model {args.model or '(built-in)'}: {error_line(err)}") from None


def _check_inputs(args: argparse.Namespace) -> None:
    """Fail on a missing media file or an unusable --out before the (possibly large) model is loaded."""
    if not Path(str(args.media)).exists():
        raise SystemExit(f"error: media not found: {args.media}")
    if getattr(args, "frames", None) is not None and args.frames < 1:
        raise SystemExit(f"error: --frames must be >= 1, got {args.frames}")
    if getattr(args, "max_new_tokens", None) is not None and args.max_new_tokens < 1:
        raise SystemExit(f"error: --max-new-tokens must be >= 1, got {args.max_new_tokens}")
    out = getattr(args, "out", None)
    if out and Path(out).exists() and not Path(out).is_dir():
        raise SystemExit(f"error: --out {out!r} is an existing file; give a directory")


def _log(args: argparse.Namespace, msg: str) -> None:
    if not getattr(args, "quiet", False):
        print(msg, file=sys.stderr, flush=True)


def _print_result(result: Any) -> None:
    print(result.clean_text)
    for obj in result.objects:
        frames = [int(result.frame_indices[i]) for i in obj.masks.present()] if result.frame_indices else []
        label = f" {obj.label!r}" if obj.label else ""
        score = f" score {obj.mean_score:.2f}" if obj.mean_score is not None else ""
        print(f"  [{obj.id}]{label}: mask on {len(frames)}/{len(obj.masks)} frames{score}")


def _write_outputs(result: Any, media: Any, out: Path, args: argparse.Namespace) -> None:
    from .writers import write_overlay, write_rle_json

    out.mkdir(parents=True, exist_ok=True)
    write_rle_json(out / "result.json", result)
    loaded = [int(i) for i in media.frame_indices]
    wanted = [int(f) for f in result.frame_indices]
    if set(wanted) - set(loaded):
        from .media import load_media  # masks on frames the LLM did not see (--sam2-frames all)

        media = load_media(args.media, indices=wanted)
        loaded = [int(i) for i in media.frame_indices]
    rows = [loaded.index(f) for f in wanted if f in set(loaded)]
    overlay = out / ("overlay.png" if len(rows) <= 1 else "overlay.gif")
    for stale in ("overlay.png", "overlay.gif"):  # one run's outputs only: no overlay left from an earlier run
        if out / stale != overlay and (out / stale).exists():
            (out / stale).unlink()
    if rows:
        write_overlay(overlay, media.frames[rows], result, fps=max(1.0, (media.fps or 4.0) / 2))
        _log(args, f"wrote {out / 'result.json'} and {overlay}")
    else:
        if overlay.exists():
            overlay.unlink()
        _log(args, f"wrote {out / 'result.json'}")


def cmd_predict(args: argparse.Namespace) -> int:
    points = [_floats(p, 2, "point") for p in args.point]
    boxes = [_floats(b, 4, "box") for b in args.box]
    masks = [_mask_arg(m) for m in args.mask]
    _check_inputs(args)
    api = _load_api(args)
    t0 = time.perf_counter()
    _log(args, f"reading {args.media} ...")
    from .api import prompt_frames

    try:
        media = api.load(args.media, args.frames, prompt_frames(points, boxes, masks))
        _log(args, f"{media.num_frames} frames of {media.frame_size[1]}x{media.frame_size[0]} -> running the model ...")
        result = api.predict(
            args.media if args.sam2_frames == "all" else media, args.prompt, points=points, boxes=boxes,
            masks=masks, max_new_tokens=args.max_new_tokens, sam2_frames=args.sam2_frames, num_frames=args.frames,
        )
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"error: {err}") from None
    _print_result(result)
    out = Path(args.out) if args.out else Path("outputs") / Path(str(args.media)).stem
    _write_outputs(result, media, out, args)
    _log(args, f"done in {time.perf_counter() - t0:.1f}s")
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    _check_inputs(args)
    api = _load_api(args)
    try:
        session = api.chat(args.media, args.frames)
    except (ValueError, OSError) as err:
        raise SystemExit(f"error: {err}") from None
    print("Ask about the media; refer to earlier objects as [id]. Empty line or Ctrl-D to quit.", file=sys.stderr)
    turn = 0
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            break
        if not line:
            break
        try:
            result = session.ask(line)
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            continue
        _print_result(result)
        if args.out:
            _write_outputs(result, session.media, Path(args.out) / f"turn{turn}", args)
        turn += 1
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    from .parity import main as parity_main

    if not Path(args.fixture_dir).is_dir():
        raise SystemExit(f"error: fixture directory not found: {args.fixture_dir} (e.g. ../shared/golden)")
    return parity_main([args.fixture_dir, *sum((["--case", c] for c in args.case or []), [])])


def _delegate(module: str, argv: Sequence[str]) -> int:
    import importlib

    mod = importlib.import_module(module)
    return int(mod.main(list(argv)) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="unipixel",
        description="UniPixel: pixel-level vision-language answers (text + object masks) for images and videos.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def model_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="checkpoint directory or hub id (default: the built-in model)")
        p.add_argument("--frames", type=int, default=16, help="frames sampled for the language model (default 16)")
        p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: cuda if available)")
        p.add_argument("--quiet", action="store_true", help="no progress messages on stderr")

    p = sub.add_parser(
        "predict", help="answer a prompt about an image/video and write masks", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("media", help="image, video file or folder of frames")
    p.add_argument("prompt", help="the question; refer to prompted objects as [0], [1], ...")
    p.add_argument("--point", action="append", default=[], metavar="X,Y[,FRAME]", help="point prompt (repeatable)")
    p.add_argument("--box", action="append", default=[], metavar="X1,Y1,X2,Y2[,FRAME]", help="box prompt (repeatable)")
    p.add_argument("--mask", action="append", default=[], metavar="FILE[,FRAME]", help="mask image prompt (repeatable)")
    p.add_argument("--out", help="output directory (default outputs/<media name>)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest answer in tokens (default 256)")
    p.add_argument("--sam2-frames", choices=("sampled", "all"), default="sampled", help="frames that get masks")
    model_args(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("chat", help="multi-turn conversation about one image/video in the terminal")
    p.add_argument("media", help="image, video file or folder of frames")
    p.add_argument("--out", help="write each turn's masks and overlay under this directory")
    model_args(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("parity", help="check a golden fixture set (same as python -m unipixel.parity)")
    p.add_argument("fixture_dir", help="folder of golden fixtures (manifest.json + safetensors), e.g. ../shared/golden")
    p.add_argument("--case", action="append", help="check only this case (repeatable; default: every case)")
    p.set_defaults(func=cmd_parity)

    for name, (_, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)  # listed in --help; arguments parsed by the module
    return parser


# Sub-commands whose arguments belong to another module's own parser.
DELEGATED = {
    "synth": ("unipixel.synth.cli", "generate the synthetic pixel world (a dataset split)"),
    "validate": ("unipixel.data.validate", "check sample JSONL files against the schema (FILE:LINE: problem)"),
    "export": ("unipixel.export", "turn a training checkpoint (partial / LoRA) into a standalone merged model"),
    "eval": ("unipixel.eval.runner", "evaluate a model on a benchmark"),
    "train": ("unipixel.train.cli", "train / fine-tune (the three-stage recipe, LoRA)"),
    "demo": ("unipixel.demo", "start the web demo (Gradio)"),
    "serve": ("unipixel.server", "start the HTTP server (FastAPI)"),
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        module = DELEGATED[argv[0]][0]
        try:
            return _delegate(module, argv[1:])
        except ModuleNotFoundError as err:
            raise SystemExit(f"error: `unipixel {argv[0]}` is not available in this install ({err})") from None
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""Parity tool: run every case of a golden fixture set and compare with the reference implementation's outputs.

``python -m unipixel.parity FIXTURE_DIR`` reads a directory in the ``shared/golden`` format (a checkpoint
directory, ``golden.json``, ``case_*.safetensors``, ``inputs_video_*.safetensors``, ``sam2_configs/``), runs each
case the way ``golden.json`` describes it (generate / forward / training forward + backward), and prints per case
the maximum absolute difference of every output it compares and pass/fail; the last line is
``N passed, M failed``. Exit status 0 only if every case passes.

Tolerances (golden README): floats ``atol = rtol = 1e-4``; ids exactly; binary masks exactly wherever the
stored logit has ``|logit| > 1e-4``. Everything (sizes, token ids, which inputs, how many masks, which call)
comes from the fixture set, never from constants.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

ATOL = RTOL = 1e-4
MASK_LOGIT_MARGIN = 1e-4


@dataclass
class Check:
    """One compared output."""

    name: str
    max_abs: float
    ok: bool
    note: str = ""


def compare_float(name: str, got: torch.Tensor | None, want: torch.Tensor) -> Check:
    """``allclose`` with the golden tolerances; reports the max abs difference."""
    if got is None:
        return Check(name, float("inf"), False, "missing")
    got = got.detach().float().cpu()
    want = want.float()
    if got.shape != want.shape:
        if got.numel() == want.numel():
            got = got.reshape(want.shape)
        else:
            return Check(name, float("inf"), False, f"shape {tuple(got.shape)} != {tuple(want.shape)}")
    diff = (got - want).abs()
    ok = bool((diff <= ATOL + RTOL * want.abs()).all())
    return Check(name, float(diff.max()) if diff.numel() else 0.0, ok)


def compare_exact(name: str, got: torch.Tensor | None, want: torch.Tensor) -> Check:
    if got is None:
        return Check(name, float("inf"), False, "missing")
    got = got.detach().cpu().long().reshape(-1)
    want = want.long().reshape(-1)
    if got.shape != want.shape:
        return Check(name, float("inf"), False, f"length {got.numel()} != {want.numel()}")
    diff = (got != want).sum()
    return Check(name, float(diff), bool(diff == 0), "" if diff == 0 else f"{int(diff)} differ")


def compare_mask(name: str, got: torch.Tensor | None, want: torch.Tensor, want_logits: torch.Tensor) -> Check:
    if got is None:
        return Check(name, float("inf"), False, "missing")
    got = got.detach().cpu().bool().reshape(want.shape)
    confident = want_logits.abs() > MASK_LOGIT_MARGIN
    wrong = ((got != want.bool()) & confident).sum()
    return Check(name, float(wrong), bool(wrong == 0), f"{int(wrong)} confident pixels differ" if wrong else "")


class FixtureSet:
    """A golden fixture directory: manifest, checkpoint, per-case tensors."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        manifest = self.root / "golden.json"
        if not manifest.exists():
            raise FileNotFoundError(f"{manifest} not found: FIXTURE_DIR must hold golden.json and the case files")
        self.manifest = json.loads(manifest.read_text())
        ckpts = sorted(p.parent for p in self.root.glob("*/config.json"))
        if len(ckpts) != 1:
            raise ValueError(f"expected exactly one checkpoint directory (with config.json) in {self.root}, got {ckpts}")
        self.ckpt_dir = ckpts[0]
        self._model: Any = None
        self._pristine: dict[str, torch.Tensor] = {}

    @property
    def cases(self) -> dict[str, dict[str, Any]]:
        return self.manifest["cases"]

    def model(self) -> Any:
        if self._model is None:
            from . import UniPixelForConditionalGeneration

            dtype = getattr(torch, self.manifest.get("environment", {}).get("dtype", "float32"))
            self._model = UniPixelForConditionalGeneration.from_pretrained(
                self.ckpt_dir,
                dtype=dtype,
                attn_implementation=self.manifest.get("environment", {}).get("attn_implementation", "sdpa"),
                sam2_config_dirs=[self.root / "sam2_configs"],
            ).eval()
        return self._model

    def tensors(self, filename: str) -> dict[str, torch.Tensor]:
        return load_file(str(self.root / filename))

    # -------------------------------------------------------------- inputs
    def model_inputs(self, case: dict[str, Any], d: dict[str, torch.Tensor]) -> dict[str, Any]:
        from .model.ref_prompt import RefPrompt

        v = self.tensors(f"inputs_video_{case['video']}.safetensors")
        inputs: dict[str, Any] = {
            "input_ids": d["input.input_ids"][None].long(),
            "attention_mask": d["input.attention_mask"][None].long(),
            "pixel_values_videos": v["pixel_values_videos"],
            "video_grid_thw": v["video_grid_thw"],
            "second_per_grid_ts": v["second_per_grid_ts"],
            "sam2_frames": [v["sam2_frames"]],
            "frame_size": [tuple(int(x) for x in v["frame_size"])],
        }
        if "input.point_frames" in d:
            frames = d["input.point_frames"].tolist()
            inputs["ref_prompts"] = [
                [
                    RefPrompt(d[f"input.point_coords.{o}"][0], d[f"input.point_labels.{o}"][0], int(frames[o]))
                    for o in range(len(frames))
                ]
            ]
        if "input.refer_mask" in d:
            inputs["refer_mask"] = [d["input.refer_mask"].bool()]
        return inputs

    @staticmethod
    def seg_indices(d: dict[str, torch.Tensor]) -> list[int]:
        found = {int(m.group(1)) for k in d for m in [re.match(r"output\.seg\.(\d+)\.", k)] if m}
        return sorted(found)

    # -------------------------------------------------------------- overrides
    def apply_overrides(self, d: dict[str, torch.Tensor]) -> None:
        from .checkpoint import from_reference_names

        overrides = {k[len("override.") :]: v for k, v in d.items() if k.startswith("override.")}
        if not overrides:
            return
        model = self.model()
        params = dict(model.named_parameters()) | dict(model.named_buffers())
        for name, value in from_reference_names(overrides, model).items():
            target = params[name]
            self._pristine.setdefault(name, target.detach().clone())
            with torch.no_grad():
                target.copy_(value.to(target.dtype))

    def restore(self) -> None:
        if not self._pristine:
            return
        params = dict(self.model().named_parameters()) | dict(self.model().named_buffers())
        with torch.no_grad():
            for name, value in self._pristine.items():
                params[name].copy_(value)
        self._pristine.clear()

    # -------------------------------------------------------------- run
    def run_case(self, name: str) -> list[Check]:
        case = self.cases[name]
        d = self.tensors(case["file"])
        self.apply_overrides(d)
        try:
            call = case.get("call", "")
            if "train" in call or "backward" in call:
                return list(self._train_case(case, d))
            return list(self._inference_case(case, d, generate="generate" in call))
        finally:
            self.restore()
            self.model().eval()
            self.model().zero_grad(set_to_none=True)

    def _prefill_checks(self, out: Any, d: dict[str, torch.Tensor], prefix: str) -> Iterator[Check]:
        model = self.model()
        yield compare_float(f"{prefix}logits", out.logits[0], d[f"output.{prefix}logits"])
        if f"output.{prefix}position_ids" in d:
            yield compare_exact(f"{prefix}position_ids", out.position_ids[:, 0], d[f"output.{prefix}position_ids"])
        if "output.visual_embeds" in d:
            yield compare_float("visual_embeds", out.visual_embeds, d["output.visual_embeds"])
        if "output.merger_mlp_input" in d:
            yield compare_float("merger_mlp_input", out.merger_mlp_input, d["output.merger_mlp_input"])
        yield compare_float(f"{prefix}last_hidden_prenorm", out.prenorm_hidden[0], d[f"output.{prefix}last_hidden_prenorm"])
        with torch.no_grad():
            seg_out = model.seg_head(out.prenorm_hidden[0])
        yield compare_float(f"{prefix}seg_head_out", seg_out, d[f"output.{prefix}seg_head_out"])

    def _seg_checks(
        self, d: dict[str, torch.Tensor], queries: torch.Tensor | None, states: torch.Tensor | None, track: Any
    ) -> Iterator[Check]:
        idx = self.seg_indices(d)
        n_got = 0 if queries is None else queries.shape[0]
        yield compare_exact("num_masks", torch.tensor([n_got]), torch.tensor([len(idx)]))
        for i in idx:
            p = f"output.seg.{i}."
            if i >= n_got or track is None:
                yield Check(f"seg.{i}", float("inf"), False, "mask not produced")
                continue
            yield compare_float(f"seg.{i}.hidden", queries[i], d[p + "hidden"])
            if states is not None and p + "llm_hidden_prenorm" in d:
                yield compare_float(f"seg.{i}.llm_hidden_prenorm", states[i], d[p + "llm_hidden_prenorm"])
            yield compare_float(f"seg.{i}.low_res_logits", track.low_res_logits[i], d[p + "low_res_logits"])
            yield compare_float(f"seg.{i}.object_score_logits", track.object_score_logits[i], d[p + "object_score_logits"])
            yield compare_float(f"seg.{i}.obj_ptr", track.obj_ptr[i], d[p + "obj_ptr"])
            yield compare_float(f"seg.{i}.sam2_vision_features", track.vision_features, d[p + "sam2_vision_features"])
            yield compare_float(f"seg.{i}.video_res_logits", track.video_res_logits[i], d[p + "video_res_logits"])
            yield compare_mask(
                f"seg.{i}.binary_mask", track.binary_masks[i], d[p + "binary_mask"], d[p + "video_res_logits"]
            )

    def _inference_case(self, case: dict[str, Any], d: dict[str, torch.Tensor], generate: bool) -> Iterator[Check]:
        model = self.model()
        inputs = self.model_inputs(case, d)
        prefill_inputs = {k: v for k, v in inputs.items() if not generate or k not in ("sam2_frames", "frame_size")}
        with torch.inference_mode():
            out = model(**prefill_inputs)
        yield from self._prefill_checks(out, d, "prefill_" if "output.prefill_logits" in d else "")
        if not generate:
            states = out.prenorm_hidden[out.seg_positions[:, 0], out.seg_positions[:, 1]]
            track = out.tracks[0] if out.tracks else None
            yield from self._seg_checks(d, out.seg_queries, states, track)
            return
        # The reference's call: greedy, every sampling/penalty knob of the checkpoint's generation_config unset.
        greedy = dict(do_sample=False, temperature=None, top_k=None, top_p=None, repetition_penalty=None)
        with torch.inference_mode():
            gen = model.generate(**inputs, **greedy, max_new_tokens=int(case["max_new_tokens"]), output_logits=True)
        prompt_len = inputs["input_ids"].shape[1]
        yield compare_exact("generated_ids", gen.sequences[0, prompt_len:], d["output.generated_ids"])
        if "output.step_logits" in d:
            steps = torch.stack([s[0] for s in gen.logits]) if gen.logits else None
            yield compare_float("step_logits", steps, d["output.step_logits"])
        track = gen.tracks[0] if gen.tracks else None
        yield from self._seg_checks(d, gen.seg_queries[0], gen.seg_states[0], track)

    def _train_case(self, case: dict[str, Any], d: dict[str, torch.Tensor]) -> Iterator[Check]:
        from .checkpoint import to_reference_names

        model = self.model()
        model.train()
        model.zero_grad(set_to_none=True)
        inputs = self.model_inputs(case, d)
        inputs.pop("frame_size")
        masks = d["input.label_mask"]
        out = model(**inputs, labels=d["input.labels"][None].long(), label_masks=[masks.float()])
        out.loss.backward()
        for key in ("loss", "lm_loss", "seg_loss"):
            yield compare_float(key, getattr(out, key), d[f"output.{key}"])
        yield from self._prefill_checks(out, d, "")
        for key in sorted(k for k in d if k.startswith("output.loss_seg_raw.")):
            term = key.rsplit(".", 1)[1]
            yield compare_float(f"loss_seg_raw.{term}", (out.seg_loss_terms or {}).get(term), d[key])
        frames = out.sam2_frame_outputs or []
        for key in sorted(k for k in d if k.startswith("output.sam2.")):
            _, _, t, field = key.split(".", 3)
            got = frames[int(t)].get(field) if int(t) < len(frames) else None
            yield compare_float(f"sam2.{t}.{field}", got, d[key])
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        ref_grads = to_reference_names(grads, model)
        for key in sorted(k for k in d if k.startswith("output.grad.")):
            name = key[len("output.grad.") :]
            yield compare_float(f"grad.{name}", ref_grads.get(name), d[key])
        if "output.grad_norms" in d:
            names = case["grad_norm_param_names"]
            norms = [ref_grads[n].norm() if n in ref_grads else torch.tensor(float("nan")) for n in names]
            yield compare_float("grad_norms", torch.stack(norms), d["output.grad_norms"])


def run(root: str | Path, cases: list[str] | None = None, verbose: bool = True) -> tuple[int, int]:
    """Run the fixture set; returns (passed, failed) case counts."""
    fx = FixtureSet(root)
    passed = failed = 0
    for name in cases or list(fx.cases):
        try:
            checks = fx.run_case(name)
            ok = all(c.ok for c in checks)
        except Exception as err:  # noqa: BLE001 - a crashing case is a failed case, reported with its cause
            checks = [Check("error", float("inf"), False, f"{type(err).__name__}: {err}")]
            ok = False
        passed += ok
        failed += not ok
        if verbose:
            print(f"[{'PASS' if ok else 'FAIL'}] {name}")
            for c in checks:
                flag = "ok " if c.ok else "BAD"
                note = f"  ({c.note})" if c.note else ""
                print(f"    {flag} {c.name:<34} max_abs_diff={c.max_abs:.3e}{note}")
    print(f"{passed} passed, {failed} failed")
    return passed, failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m unipixel.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("fixture_dir", help="directory in the shared/golden format")
    parser.add_argument("--case", action="append", help="run only this case (repeatable)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary line")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    _, failed = run(args.fixture_dir, args.case, verbose=not args.quiet)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

"""The Python API: ``UniPixel.from_pretrained(...)`` then one call per question.

>>> up = UniPixel.from_pretrained()                       # the built-in model, CPU
>>> res = up.predict("clip.mp4", "Please segment the red ball.")
>>> res.clean_text, [o.id for o in res.objects], res.objects[0].masks.rle(0)

Every call takes media (image/video file, frame folder, PIL images, arrays), text, and optional visual prompts
in *original* pixel coordinates with an original frame index, and returns a
:class:`~unipixel.results.UniPixelResult` (answer, objects with stable ids, per-frame RLE masks, boxes, scores,
the text span of each object, and which frames the LLM saw / got masks). Frame sampling is explicit: frames a
prompt refers to are always kept.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import torch

from .media import Media, count_frames, llm_pixel_budget, load_media, sample_frame_indices
from .processing import ObjectPrompt, UniPixelProcessor
from .results import MaskTrack, UniPixelResult, build_result
from .tokenizer import REF_TOKEN, SEG_TOKEN

MediaLike: TypeAlias = "str | Path | Media | np.ndarray | torch.Tensor | Any"
"""An image/video file, a frame folder, a PIL image or list of frames, a uint8 array/tensor, or a loaded Media."""
PointSpec = Sequence[float]  # (x, y) or (x, y, frame)
BoxSpec = Sequence[float]  # (x1, y1, x2, y2) or (x1, y1, x2, y2, frame)
PIXELQA_LOCALIZE = "Please localize the relevant objects with IDs."
MC_SUFFIX = "Please only give the best option."
MC_PREFIX = "The best option is ("


def default_model_path() -> Path:
    """The built-in model shipped with the package (see ``unipixel/builtin``)."""
    from .builtin import builtin_model_dir

    return builtin_model_dir()


@dataclass
class Request:
    """One question for :meth:`UniPixel.predict_batch` (same fields as :meth:`UniPixel.predict`)."""

    media: Any
    prompt: str
    points: Sequence[PointSpec] = ()
    boxes: Sequence[BoxSpec] = ()
    masks: Sequence[Any] = ()
    options: dict[str, Any] = field(default_factory=dict)


def _split_frame(spec: Sequence[float], n: int, what: str) -> tuple[list[float], int]:
    """``(x, y[, frame])`` / ``(x1, y1, x2, y2[, frame])`` → coordinates and a frame index, checked."""
    if isinstance(spec, torch.Tensor):
        spec = spec.tolist()
    if isinstance(spec, (str, bytes)) or not isinstance(spec, Sequence | np.ndarray):
        raise ValueError(f"a {what} is a tuple of {n} numbers (+ an optional frame index), got {spec!r}")
    vals = [v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v for v in spec]
    if len(vals) not in (n, n + 1):
        raise ValueError(f"a {what} is {n} numbers (+ an optional frame index), got {spec!r}")
    for v in vals:
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ValueError(f"a {what} holds numbers, got {type(v).__name__} {v!r} in {spec!r}")
    if len(vals) == n:
        return [float(v) for v in vals[:n]], 0
    frame = vals[n]
    if float(frame) != int(frame) or int(frame) < 0:
        raise ValueError(f"the frame index of {what} {spec!r} must be a whole number >= 0, got {frame!r}")
    return [float(v) for v in vals[:n]], int(frame)


def _as_specs(specs: Any, n: int, what: str) -> list[Sequence[float]]:
    """A list of prompts; a single bare prompt (``(10, 20)`` for a point) is accepted as a list of one."""
    if specs is None:
        return []
    if isinstance(specs, (str, bytes)):
        raise ValueError(f"{what}s must be a list of tuples of numbers, got the string {specs!r}")
    if isinstance(specs, torch.Tensor):
        specs = specs.tolist()
    items = list(specs)
    if items and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in items):
        if len(items) in (n, n + 1):
            return [items]
        raise ValueError(f"{what}s must be a list of ({n} numbers[, frame]) tuples, got the flat sequence {specs!r}")
    return items


def error_line(err: BaseException) -> str:
    """The first line of an exception's message (its type when empty): transformers' load errors span many lines,
    the CLI, demo and export print one."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _check_prompt(prompt: Any) -> str:
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"the prompt must be a non-empty string, got {prompt!r}")
    return prompt


def _check_positive(value: int | None, name: str) -> int | None:
    if value is not None and (isinstance(value, bool) or int(value) != value or int(value) < 1):
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _check_markers(prompt: str, known: Sequence[int], hint: str) -> None:
    """Every ``[k]`` in the prompt must name an object the caller gave (or, in chat, one the session knows).

    A prompt that writes ``<|ref|>`` itself numbers its objects its own way and is not checked."""
    if REF_TOKEN in prompt:
        return
    unknown = sorted({int(k) for k in re.findall(r"\[(\d+)\]", prompt)} - {int(k) for k in known})
    if unknown:
        have = ", ".join(f"[{k}]" for k in sorted(set(known))) or "none"
        raise ValueError(f"the prompt refers to {', '.join(f'[{k}]' for k in unknown)} but the objects are: {have}; {hint}")


def prompt_frames(points: Sequence[PointSpec] = (), boxes: Sequence[BoxSpec] = (), masks: Sequence[Any] = ()) -> list[int]:
    """The original frame indices the prompts refer to (frame sampling must keep them)."""
    keep = [int(_split_frame(p, 2, "point")[1]) for p in _as_specs(points, 2, "point")]
    keep += [int(_split_frame(b, 4, "box")[1]) for b in _as_specs(boxes, 4, "box")]
    return keep + [int(m[1]) for m in masks if isinstance(m, tuple)]


def keep_frames_sampling(num_total: int, num_frames: int, keep: Sequence[int]) -> np.ndarray:
    """Uniform sampling that is guaranteed to contain every frame in ``keep`` (prompt frames): each kept frame
    replaces the nearest uniformly sampled one."""
    for k in keep:
        if not 0 <= k < num_total:
            raise ValueError(f"prompt frame {k} is outside the video's {num_total} frames")
    idx = [int(i) for i in sample_frame_indices(num_total, num_frames, mode="uniform")]
    for k in sorted(set(keep)):
        if k in idx:
            continue
        free = [j for j, v in enumerate(idx) if v not in keep]
        if not free:
            raise ValueError(f"{len(set(keep))} prompt frames do not fit into {num_frames} sampled frames")
        j = min(free, key=lambda j: abs(idx[j] - k))
        idx[j] = k
    return np.array(sorted(set(idx)), dtype=np.int64)


class UniPixel:
    """A loaded UniPixel model + processor with a plain programmatic interface."""

    def __init__(
        self,
        model: Any,
        processor: UniPixelProcessor,
        *,
        num_frames: int = 16,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        max_new_tokens: int = 256,
    ) -> None:
        self.model = model
        self.processor = processor
        self.num_frames = num_frames
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self.max_new_tokens = max_new_tokens

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype | str | None = None,
        attn_implementation: str = "sdpa",
        **kwargs: Any,
    ) -> UniPixel:
        """Load a checkpoint directory or hub id (default: the built-in model).

        ``device`` defaults to CUDA when available, else CPU; ``dtype`` (a ``torch.dtype`` or ``"bf16"``,
        ``"fp16"``, ``"fp32"``...) to bf16 on CUDA, fp32 on CPU. The API's own defaults can be set here too:
        ``num_frames`` (frames the language model sees, 16), ``min_pixels`` / ``max_pixels`` (its pixel budget
        per frame; default: what the checkpoint records, else the reference's) and ``max_new_tokens`` (256). Other
        keyword arguments go to transformers' ``from_pretrained`` (``revision``, ``cache_dir``,
        ``local_files_only``...).
        """
        from . import UniPixelForConditionalGeneration

        path = default_model_path() if name_or_path is None else name_or_path
        dev = _resolve_device(device)
        dtype = _resolve_dtype(dtype, dev)
        api_kwargs = {k: kwargs.pop(k) for k in ("num_frames", "min_pixels", "max_pixels", "max_new_tokens") if k in kwargs}
        try:
            model = UniPixelForConditionalGeneration.from_pretrained(
                path, dtype=dtype, attn_implementation=attn_implementation, **kwargs
            ).to(dev).eval()
        except TypeError as err:
            if kwargs and "unexpected keyword argument" in str(err):
                raise ValueError(
                    f"UniPixel.from_pretrained got unknown keyword arguments {sorted(kwargs)}; the API's own are "
                    "num_frames, min_pixels, max_pixels, max_new_tokens, device, dtype, attn_implementation"
                ) from err
            raise
        processor = UniPixelProcessor.from_pretrained(model.name_or_path or path)
        # A checkpoint may record the pixel budget it was trained with (the built-in model does).
        for key in ("min_pixels", "max_pixels"):
            if api_kwargs.get(key) is None and getattr(model.config, f"preferred_{key}", None):
                api_kwargs[key] = int(getattr(model.config, f"preferred_{key}"))
        return cls(model, processor, **api_kwargs)

    # ------------------------------------------------------------------ media
    def load(self, media: MediaLike, num_frames: int | None = None, keep: Sequence[int] = ()) -> Media:
        """Decode ``media``, sampling ``num_frames`` frames uniformly (videos) while keeping the ``keep`` frames."""
        n = _check_positive(num_frames, "num_frames") or self.num_frames
        if isinstance(media, Media):
            missing = sorted(set(keep) - {int(i) for i in media.frame_indices})
            if missing:
                raise ValueError(f"prompt frame(s) {missing} are not among the loaded frames {media.frame_indices.tolist()}")
            return media
        if not keep:
            return load_media(media, num_frames=n)
        total = count_frames(media)  # no decoding: choose the frames first, then decode only those
        for k in sorted(set(keep)):
            if not 0 <= k < total:
                where = "the media is an image (frame 0 only)" if total == 1 else f"the media has {total} frames (0..{total - 1})"
                raise ValueError(f"a prompt refers to frame {k} but {where}; give a frame index inside it")
        if total <= n:
            return load_media(media)
        try:
            return load_media(media, indices=keep_frames_sampling(total, n, keep))
        except ValueError as err:  # a container that counts more packets than it decodes: decode it all once
            if "decodable" not in str(err):
                raise
            full = load_media(media)
            idx = keep_frames_sampling(full.num_frames, n, keep)
            return Media(frames=full.frames[idx], fps=full.fps, is_image=False, frame_indices=full.frame_indices[idx],
                         source=full.source, total_frames=full.total_frames)

    def _budget(self, media: Media) -> tuple[int, int]:
        lo, hi = llm_pixel_budget(max(media.num_frames, 1))
        return self.min_pixels or lo, self.max_pixels or hi

    def _object_prompts(
        self, media: Media, points: Sequence[PointSpec], boxes: Sequence[BoxSpec], masks: Sequence[Any]
    ) -> list[ObjectPrompt]:
        """User prompts (original frame indices) → processor prompts (positions among the loaded frames)."""
        from .visual_prompts import prompt_frame_position

        objs = []
        for p in _as_specs(points, 2, "point"):
            xy, f = _split_frame(p, 2, "point")
            objs.append(ObjectPrompt(frame=prompt_frame_position(f, media.frame_indices), point=xy))
        for b in _as_specs(boxes, 4, "box"):
            xyxy, f = _split_frame(b, 4, "box")
            objs.append(ObjectPrompt(frame=prompt_frame_position(f, media.frame_indices), box=xyxy))
        for m in masks:
            mask, f = (m if isinstance(m, tuple) else (m, 0))
            arr = np.asarray(mask)
            if arr.ndim == 3:
                objs.append(ObjectPrompt(frame=0, mask=arr))
            else:
                objs.append(ObjectPrompt(frame=prompt_frame_position(int(f), media.frame_indices), mask=arr))
        return objs

    @staticmethod
    def _with_ref_tokens(prompt: str, n_ref: int) -> str:
        """Insert ``<|ref|>`` after ``[k]`` markers when the user wrote ``[0]``.. instead of the token itself."""
        if n_ref == 0 or REF_TOKEN in prompt:
            return prompt
        out = prompt
        for k in range(n_ref):
            marker = f"[{k}]"
            if marker not in out:
                raise ValueError(
                    f"{n_ref} point/box prompts were given but the prompt has no {REF_TOKEN} and no '{marker}'; "
                    f"refer to object k as '[k]' (e.g. 'What is [0] doing?') or write {REF_TOKEN} yourself"
                )
            out = out.replace(marker, f"{marker} {REF_TOKEN}", 1)
        return out

    # ------------------------------------------------------------------ core
    def _decode(self, ids: torch.Tensor) -> str:
        tok = self.processor.tokenizer
        text = tok.decode(ids, skip_special_tokens=False)
        for stop in ("<|im_end|>", "<|endoftext|>"):
            text = text.split(stop)[0]
        return text

    def run(
        self,
        media: Media,
        prompt: str,
        objects: Sequence[ObjectPrompt],
        *,
        response: str | None = None,
        assistant_prefix: str | None = None,
        history: Sequence[tuple[str, str]] = (),
        max_new_tokens: int | None = None,
        do_sample: bool = False,
        mem_object_ids: Sequence[int] | None = None,
        sam2_media: Media | None = None,
        reserved_ids: Sequence[int] = (),
        **gen_kwargs: Any,
    ) -> UniPixelResult:
        """One model call on already decoded ``media`` with the object prompts in exactly the given order.

        The primitive under :meth:`predict`, :meth:`pixelqa`, chat sessions and the evaluation protocols: no file
        loading, no prompt-frame bookkeeping. ``response`` teacher-forces the answer (one forward; masks for its
        ``<|seg|>`` tokens), ``assistant_prefix`` starts the answer, ``history`` holds earlier (user, assistant)
        turns, ``mem_object_ids`` names mask-prompted objects in the region prefix, ``sam2_media`` gives SAM 2
        other frames than the LLM sees and ``reserved_ids`` are ids new unnamed objects must not take.
        """
        _check_positive(max_new_tokens, "max_new_tokens")
        t0 = time.perf_counter()
        lo, hi = self._budget(media)
        cfg = self.model.config
        prep = self.processor.prepare(
            media, prompt, objects=objects, response=response, assistant_prefix=assistant_prefix, history=history,
            min_pixels=lo, max_pixels=hi, sam2_image_size=cfg.sam2_image_size if self.model.has_sam2 else None,
            int_box_coords=cfg.quirk_int_box_coords, mem_object_ids=mem_object_ids, sam2_media=sam2_media,
        )
        kw = _to_device(prep.model_kwargs, self.model.device, self.model.dtype)
        t1 = time.perf_counter()
        with torch.inference_mode():
            if response is not None:  # teacher forcing: one forward, masks for the <|seg|> in the input
                out = self.model(**kw)
                text = response
                tracks = out.tracks[0] if out.tracks else None
                n_obj = 0 if out.seg_queries is None else out.seg_queries.shape[0]
            else:
                greedy = {} if do_sample else dict(temperature=None, top_k=None, top_p=None)
                gen = self.model.generate(
                    **kw, max_new_tokens=self.max_new_tokens if max_new_tokens is None else max_new_tokens,
                    do_sample=do_sample,
                    repetition_penalty=None, **greedy, **gen_kwargs,
                )
                prompt_len = kw["input_ids"].shape[1]
                sequences = gen.sequences if hasattr(gen, "sequences") else gen
                text = (assistant_prefix or "") + self._decode(sequences[0, prompt_len:])
                tracks = gen.tracks[0] if getattr(gen, "tracks", None) else None
                n_obj = 0 if tracks is None else tracks.low_res_logits.shape[0]
        t2 = time.perf_counter()
        per_obj = [] if tracks is None else [tracks.video_res_logits[i].float().cpu() for i in range(n_obj)]
        scores = [] if tracks is None else [tracks.object_score_logits[i].float().cpu() for i in range(n_obj)]
        return build_result(
            text,
            tracks=per_obj,
            object_score_logits=scores or None,
            frame_indices=prep.frame_indices,
            llm_frame_indices=[int(x) for x in media.frame_indices],
            frame_size=prep.frame_size,
            media=media,
            prompt=prompt,
            timings={"preprocess_s": t1 - t0, "model_s": t2 - t1, "postprocess_s": time.perf_counter() - t2},
            reserved_ids=reserved_ids,
        )

    def predict(
        self,
        media: MediaLike,
        prompt: str,
        *,
        points: Sequence[PointSpec] = (),
        boxes: Sequence[BoxSpec] = (),
        masks: Sequence[Any] = (),
        num_frames: int | None = None,
        sam2_frames: Literal["sampled", "all"] = "sampled",
        max_new_tokens: int | None = None,
        do_sample: bool = False,
        assistant_prefix: str | None = None,
        response: str | None = None,
        mem_object_ids: Sequence[int] | None = None,
        **gen_kwargs: Any,
    ) -> UniPixelResult:
        """Answer ``prompt`` about ``media``; masks for every ``<|seg|>`` the model writes.

        ``points`` ``(x, y[, frame])``, ``boxes`` ``(x1, y1, x2, y2[, frame])`` (original pixels and frame
        indices) become ``<|ref|>`` tokens — refer to them as ``[0]``, ``[1]``... in the prompt (or write
        ``<|ref|>`` yourself); ``masks`` (``(H, W)`` bool with a frame, ``(mask, frame)``, or a ``(T, H, W)``
        track over the loaded frames) become ``<|mem|>`` region prompts. ``sam2_frames="all"`` segments every
        frame of the video while the LLM sees ``num_frames`` sampled ones. ``response`` teacher-forces an answer
        (no generation) — its ``<|seg|>`` tokens still produce masks. ``mem_object_ids`` names the mask-prompted
        objects in the region prefix (default 0, 1, ...; pass e.g. ``[2]`` when ``[0]``/``[1]`` are points).
        Objects are numbered points first, then boxes, then masks.
        """
        _check_prompt(prompt)
        points, boxes = _as_specs(points, 2, "point"), _as_specs(boxes, 4, "box")
        masks = [] if masks is None else list(masks)
        if mem_object_ids is not None and len(mem_object_ids) != len(masks):
            raise ValueError(f"mem_object_ids names {len(mem_object_ids)} objects for {len(masks)} masks")
        n_ref = len(points) + len(boxes)
        if masks and mem_object_ids is None:  # masks are numbered after the points and boxes, in the text too
            mem_object_ids = list(range(n_ref, n_ref + len(masks)))
        known = list(range(n_ref)) + list(mem_object_ids or ())
        _check_markers(prompt, known, "give one point, box or mask per object (objects are numbered points "
                       "first, then boxes, then masks)")
        loaded = self.load(media, num_frames, prompt_frames(points, boxes, masks))
        sam2_media = None
        if sam2_frames not in ("sampled", "all"):
            raise ValueError(f"sam2_frames must be 'sampled' or 'all', got {sam2_frames!r}")
        if sam2_frames == "all" and not loaded.is_image:
            if not isinstance(media, Media):
                sam2_media = load_media(media)
            elif media.total_frames is None or media.num_frames == media.total_frames:
                sam2_media = media
            else:
                raise ValueError(
                    f"sam2_frames='all' needs every frame, but the Media holds {media.num_frames} of "
                    f"{media.total_frames}; pass the file / array itself"
                )
        objs = self._object_prompts(loaded, points, boxes, masks)
        text = self._with_ref_tokens(prompt, len(points) + len(boxes))
        return self.run(
            loaded, text, objs, response=response, assistant_prefix=assistant_prefix,
            max_new_tokens=max_new_tokens, do_sample=do_sample, sam2_media=sam2_media,
            mem_object_ids=mem_object_ids, reserved_ids=known, **gen_kwargs,
        )

    def predict_batch(self, requests: Sequence[Request | dict[str, Any]]) -> list[UniPixelResult]:
        """Run many requests; media objects shared between requests are decoded once."""
        cache: dict[tuple[int, int | None, tuple[int, ...]], Media] = {}
        results = []
        for r in requests:
            req = r if isinstance(r, Request) else Request(**r)
            keep = tuple(sorted(set(prompt_frames(req.points, req.boxes, req.masks))))
            key = (id(req.media), req.options.get("num_frames"), keep)
            reusable = not isinstance(req.media, (str, Path)) and req.options.get("sam2_frames", "sampled") != "all"
            if key not in cache and reusable:  # sam2_frames="all" needs the media itself, not sampled frames
                cache[key] = self.load(req.media, req.options.get("num_frames"), keep)
            media = cache.get(key, req.media)
            results.append(
                self.predict(media, req.prompt, points=req.points, boxes=req.boxes, masks=req.masks, **req.options)
            )
        return results

    def pixelqa(
        self,
        media: MediaLike,
        question: str,
        options: Sequence[str],
        *,
        points: Sequence[PointSpec] = (),
        boxes: Sequence[BoxSpec] = (),
        num_frames: int | None = None,
    ) -> UniPixelResult:
        """PixelQA in one call (reference §8): objects referred to as ``[k]`` in ``question`` by a point or box
        → step A segments them with ids (teacher-forced ``[k] <|seg|>``) → step B answers the multiple-choice
        question from the predicted masks (``<|mem|>``). The result holds step B's answer and step A's objects;
        ``result.choice`` is the parsed option letter (None when the answer names none)."""
        from .eval.metrics import parse_choice

        _check_prompt(question)
        if isinstance(options, (str, bytes)) or not 2 <= len(options) <= 26:
            raise ValueError(f"options must be a list of 2 to 26 answer strings, got {options!r}")
        if not all(isinstance(o, str) and o.strip() for o in options):
            raise ValueError(f"every option must be a non-empty string, got {list(options)!r}")
        points, boxes = _as_specs(points, 2, "point"), _as_specs(boxes, 4, "box")
        n = len(points) + len(boxes)
        if n == 0:
            raise ValueError("PixelQA needs at least one point or box prompt")
        _check_markers(question, range(n), "give one point or box per object (points first, then boxes)")
        opts = "".join(f"\n({chr(65 + i)}) {o}" for i, o in enumerate(options))
        loaded = self.load(media, num_frames, prompt_frames(points, boxes))
        objs = self._object_prompts(loaded, points, boxes, ())
        step_a_q = self._with_ref_tokens(question + opts, n) + ". " + PIXELQA_LOCALIZE
        response = " ".join(f"[{k}] {SEG_TOKEN}" for k in range(n))
        seg = self.run(loaded, step_a_q, objs, response=response)
        masks = []
        for obj in seg.objects[:n]:
            arr = obj.masks.array()
            masks.append(arr if arr.any() else np.ones_like(arr))  # reference: empty → all-ones
        if len(masks) < n:
            raise RuntimeError(f"step A produced {len(masks)} masks for {n} objects")
        mem_objs = [ObjectPrompt(frame=0, mask=m) for m in masks]
        answer = self.run(
            loaded, question + opts + "\n" + MC_SUFFIX, mem_objs, assistant_prefix=MC_PREFIX, max_new_tokens=8
        )
        answer.objects = seg.objects
        answer.choice = parse_choice(answer.text)
        answer.media = {**answer.media, "choice": answer.choice}  # deprecated location, kept for older clients
        return answer

    def chat(self, media: MediaLike, num_frames: int | None = None) -> ChatSession:
        """A multi-turn session on one media; objects from earlier answers can be referred to as ``[id]``."""
        return ChatSession(self, self.load(media, num_frames))


class ChatSession:
    """Multi-turn conversation about one media. Objects segmented in earlier turns are fed back as ``<|mem|>``
    object memory (their masks), so later questions can refer to them by id."""

    def __init__(self, api: UniPixel, media: Media) -> None:
        self.api = api
        self.media = media
        self.history: list[tuple[str, str]] = []
        self.objects: dict[int, MaskTrack] = {}

    def ask(
        self, prompt: str, *, points: Sequence[PointSpec] = (), boxes: Sequence[BoxSpec] = (), **kw: Any
    ) -> UniPixelResult:
        """One turn: answer ``prompt`` with the earlier turns as history and every object segmented so far as
        ``<|mem|>`` memory, so ``[id]`` in the prompt refers to it. ``points`` / ``boxes`` add new objects for
        this turn (as in :meth:`UniPixel.predict`); other keyword arguments go to :meth:`UniPixel.run`."""
        _check_prompt(prompt)
        points, boxes = _as_specs(points, 2, "point"), _as_specs(boxes, 4, "box")
        ids = sorted(self.objects)
        _check_markers(prompt, [*ids, *range(len(points) + len(boxes))],
                       "refer to objects of earlier answers by their id, or give a point or box")
        mem = [ObjectPrompt(frame=0, mask=self.objects[i].array()) for i in ids]
        refs = self.api._object_prompts(self.media, points, boxes, ())
        text = self.api._with_ref_tokens(prompt, len(refs))
        # Earlier objects keep their ids: a new unnamed object gets the next free id (in the text as well), an
        # answer that names an existing id ("[0] <|seg|>") re-segments that object and replaces its masks.
        result = self.api.run(
            self.media, text, refs + mem, history=self.history, mem_object_ids=ids or None, reserved_ids=ids, **kw
        )
        for obj in result.objects:
            self.objects[obj.id] = obj.masks
        self.history.append((text, result.clean_text))
        return result

    def set_mask(self, obj_id: int, masks: Any) -> None:
        """Replace (correct) an object's masks: a ``(T, H, W)`` bool track over the session's frames."""
        arr = np.asarray(masks).astype(bool)
        if arr.shape != (self.media.num_frames, *self.media.frame_size):
            raise ValueError(
                f"masks must be (T, H, W) = ({self.media.num_frames}, {self.media.frame_size[0]}, "
                f"{self.media.frame_size[1]}), got {arr.shape}"
            )
        self.objects[obj_id] = MaskTrack.from_array(arr, self.media.frame_indices)


_DTYPES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
    "half": torch.float16, "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}


def _resolve_device(device: str | torch.device | None) -> torch.device:
    """The requested device, checked up front (default: CUDA when available, else CPU)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here; use device='cpu'")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} was asked for but MPS is not available here; use device='cpu'")
    return dev


def _resolve_dtype(dtype: torch.dtype | str | None, dev: torch.device) -> torch.dtype:
    """bf16 on CUDA, fp32 elsewhere by default; strings such as ``"bf16"`` or ``"float32"`` are accepted."""
    if dtype is None:
        return torch.bfloat16 if dev.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _DTYPES:
        return _DTYPES[dtype.lower().removeprefix("torch.")]
    raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(_DTYPES)} or a torch.dtype")


def _to_device(kwargs: dict[str, Any], device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    from .model.ref_prompt import RefPrompt

    def move(v: Any) -> Any:
        if isinstance(v, RefPrompt):
            return RefPrompt(v.coords.to(device), v.labels.to(device), v.frame)
        if isinstance(v, torch.Tensor):
            return v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)
        if isinstance(v, list):
            return [move(x) for x in v]
        return v

    return {k: move(v) for k, v in kwargs.items()}

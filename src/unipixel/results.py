"""Structured results returned by every UniPixel front door (Python API, CLI, HTTP server).

Why this module exists: the reference implementation hands back a raw answer string plus a list of dense
``(1, T, H, W)`` boolean tensors (``model.seg``) and leaves users to work out which mask belongs to which part
of the answer.  Users asked for "one mask per object, with IDs and confidence"; long videos with many objects
also make dense masks expensive to keep around.  This module therefore provides

* :class:`MaskTrack` -- the masks of one object over a set of frames, stored densely *or* as COCO RLE, with
  lazy, cached conversions (RLE is computed once; :meth:`MaskTrack.compact` drops the dense copy);
* :class:`ObjectResult` -- one segmented object: a stable id, its masks, per-frame confidence, where in the
  answer it was produced, and a best-effort label;
* :class:`UniPixelResult` -- the whole answer: raw and clean text, objects, frame bookkeeping, timings, and a
  JSON round trip (``to_dict`` / ``from_dict`` / ``to_json`` written atomically);
* :func:`build_result` -- the single place where model outputs (answer text, per-object masks or logits,
  object-score logits) are turned into a :class:`UniPixelResult`, so that the API, CLI and server agree.

Conventions (documented once here, relied on everywhere):

* Frame bookkeeping: every mask row carries the **original** frame index of the clip it came from
  (``frame_indices``).  Methods that take ``t`` use the *row position* (0..T-1); methods named ``*_at`` take an
  original frame index.
* Boxes are ``(x1, y1, x2, y2)`` in pixel-edge coordinates with **exclusive** ``x2``/``y2`` (a single pixel at
  ``(x, y)`` gives ``(x, y, x + 1, y + 1)``), i.e. COCO's ``[x, y, w, h]`` with ``x2 = x + w``; this is what
  slicing (``mask[y1:y2, x1:x2]``) and drawing expect.  ``boxes(inclusive=True)`` gives the inclusive variant
  used by the reference's box-accuracy metric (see ``unipixel.eval.metrics.mask_to_box``).
* RLE dicts are pycocotools' compressed RLE with ``counts`` as an ASCII ``str`` (JSON-ready):
  ``{"size": [H, W], "counts": "..."}``.
* Object ids: if the answer names an object right before its ``<|seg|>`` (``"[2] <|seg|>"``) that id is used;
  every other object gets the smallest id not named anywhere in the answer, in answer order.  Ids are unique.
* Clean text: special tokens are removed; where a ``<|seg|>`` stood and the text right before it does not already
  carry the object's ``[id]`` marker, ``[id]`` is inserted (``"It is <|seg|>."`` -> ``"It is [0]."``), so the
  clean text still points at the masks.  ``ObjectResult.clean_span`` locates that marker in ``clean_text``.
* Labels are a conservative display hint (:func:`guess_label`: the determiner-led phrase before the
  ``<|seg|>``, else None); callers that know the referring expression should pass ``labels=``.
* Overlaps in id maps / palette PNGs: later objects win by default, or the higher per-frame score
  (:func:`paint_label_map`).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

__all__ = [
    "SEG_TOKEN",
    "REF_TOKEN",
    "MEM_TOKEN",
    "RESULT_FORMAT",
    "RESULT_VERSION",
    "MaskTrack",
    "ObjectResult",
    "UniPixelResult",
    "atomic_output",
    "build_result",
    "clean_answer_text",
    "find_seg_spans",
    "assign_object_ids",
    "guess_label",
    "encode_rle",
    "decode_rle",
    "iter_objects",
    "paint_label_map",
]

# Must match ``unipixel.tokenizer`` (duplicated so that reading results does not import transformers).
REF_TOKEN, SEG_TOKEN, MEM_TOKEN = "<|ref|>", "<|seg|>", "<|mem|>"
# Any Qwen/UniPixel special token that may leak into a decoded answer ("<|im_end|>", "<|endoftext|>", ...).
_SPECIAL_RE = re.compile(r"<\|[A-Za-z0-9_]+\|>|</?tool_call>")
# "[3]" (optionally followed by ":" / whitespace) at the end of the text preceding a <|seg|>.
_MARKER_BEFORE_RE = re.compile(r"\[(\d+)\][\s:]*$")
# Clause boundaries used by the label heuristic.
_CLAUSE_BOUNDARY_RE = re.compile(r"[.!?;:,\n]")
_DETERMINER_RE = re.compile(
    r"\b(?:the|a|an|this|that|these|those|his|her|its|their|my|your|our)\b", re.IGNORECASE
)
_MAX_LABEL_WORDS = 8
# "the target is <|seg|>": the verb is not part of the label, and a phrase that only names the answer itself
# ("the segmentation mask", "the target") labels nothing.
_TRAILING_VERB_RE = re.compile(r"\s+(?:is|are|was|were|be|being|been|shows?|appears?|looks?)$", re.IGNORECASE)
_GENERIC_LABELS = {
    "target", "targets", "object", "objects", "mask", "masks", "segmentation", "segmentation mask",
    "segmentation masks", "result", "answer", "region", "regions", "one", "output",
}

RESULT_FORMAT = "unipixel-result"
RESULT_VERSION = 1

Rle = dict[str, Any]
Span = tuple[int, int]

# Read the process umask once (at import, before any threads): temp files from mkstemp are 0600, and an
# atomically replaced output should get the permissions a plain ``open(path, "w")`` would have given it.
_UMASK = os.umask(0)
os.umask(_UMASK)


# ----------------------------------------------------------------------------------------------------------
# atomic writes


@contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success move it over ``path`` with ``os.replace``.

    Why: a crashed or interrupted writer must never leave a truncated JSON/PNG/MP4 that a later evaluation or
    a web client would read as valid.  The temp file lives in the same directory (same filesystem, so the
    rename is atomic), parent directories are created, and on any exception the temp file is removed and
    the previous content of ``path`` (if any) is left untouched.  No fsync: this guarantees all-or-nothing
    visibility, not durability across power loss.
    """
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {target}: it is a directory")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------------------------------------
# RLE helpers


def _to_numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like or torch tensor (bf16/fp16 tensors are upcast: numpy has no bf16)."""
    if hasattr(x, "detach"):  # torch.Tensor without importing torch here
        x = x.detach()
        if x.is_floating_point() and x.dtype.itemsize < 4:
            x = x.float()
        x = x.cpu().numpy()
    return np.asarray(x)


def _as_bool_masks(x: Any, threshold: float | None = None) -> np.ndarray:
    """(T, H, W) bool array from masks or logits.

    Floating inputs are treated as logits and binarised with ``> threshold`` (default 0, as the reference's
    ``logits > 0``); integer/bool inputs with ``!= 0``.  ``(H, W)`` becomes ``(1, H, W)``; a leading singleton
    axis as in the reference's ``(1, T, H, W)`` is squeezed.
    """
    arr = _to_numpy(x)
    if arr.ndim == 2:
        arr = arr[None]
    while arr.ndim > 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 3:
        raise ValueError(f"masks must have shape (T, H, W), (1, T, H, W) or (H, W); got {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if np.issubdtype(arr.dtype, np.floating):
        return arr > (0.0 if threshold is None else threshold)
    return arr != 0


def encode_rle(masks: np.ndarray, chunk: int = 64) -> list[Rle]:
    """COCO RLE (``counts`` as str) of every frame of a (T, H, W) mask stack.

    pycocotools wants Fortran-ordered uint8 (H, W, N); converting in chunks bounds the temporary copy for long
    videos.
    """
    m = _as_bool_masks(masks)
    out: list[Rle] = []
    for s in range(0, m.shape[0], chunk):
        block = np.asfortranarray(m[s : s + chunk].transpose(1, 2, 0).astype(np.uint8))
        for r in mask_utils.encode(block):
            out.append(
                {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}
            )
    return out


def _normalise_rle(rle: Mapping[str, Any] | None, size: tuple[int, int] | None) -> Rle:
    """Accept compressed RLE (str/bytes counts), uncompressed RLE (list counts) or ``None`` (empty mask)."""
    if rle is None:
        if size is None:
            raise ValueError("an empty (None) RLE entry needs `size`")
        return encode_rle(np.zeros((1, *size), dtype=bool))[0]
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        counts = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    if not isinstance(counts, str):
        raise TypeError(f"RLE counts must be str, bytes or list, got {type(counts).__name__}")
    return {"size": [h, w], "counts": counts}


def decode_rle(rles: Sequence[Rle]) -> np.ndarray:
    """(T, H, W) C-ordered bool array from a list of RLE dicts (all of the same size)."""
    if not rles:
        raise ValueError("decode_rle needs at least one RLE")
    with warnings.catch_warnings():
        # pycocotools' decode triggers a numpy-2 "__array__ copy keyword" DeprecationWarning; harmless here.
        warnings.simplefilter("ignore", DeprecationWarning)
        dec = mask_utils.decode(list(rles))  # (H, W, T) Fortran uint8
    return np.ascontiguousarray(dec.transpose(2, 0, 1)).astype(bool)


# ----------------------------------------------------------------------------------------------------------
# MaskTrack


class MaskTrack:
    """Masks of one object over a set of frames, stored densely, as RLE, or both.

    Build from a (T, H, W) bool array/tensor (or logits via :meth:`from_logits`) plus the original frame index
    of every row, or from RLEs (:meth:`from_rles`), or incrementally with :meth:`append` (encodes each frame on
    arrival, so a streaming tracker never holds the whole dense stack).  Conversions are lazy: RLEs are
    computed once and cached; the dense array is kept until :meth:`compact` drops it (after which
    :meth:`array` decodes on every call).

    Args:
        masks: (T, H, W) / (H, W) bool-like array or tensor; nonzero = foreground.  Floats are thresholded at 0
            (logits); use :meth:`from_logits` for another threshold.
        frame_indices: original frame index of each row (default ``0..T-1``); must be unique.
        rles: alternatively, one RLE dict (or ``None`` = empty) per row.
        size: (H, W); required only for an empty track or when ``rles`` contains ``None`` only.
    """

    __slots__ = ("_dense", "_rles", "_frame_indices", "_size")

    def __init__(
        self,
        masks: Any = None,
        frame_indices: Sequence[int] | np.ndarray | None = None,
        *,
        rles: Sequence[Mapping[str, Any] | None] | None = None,
        size: tuple[int, int] | Sequence[int] | None = None,
    ) -> None:
        if (masks is None) == (rles is None):
            raise ValueError("MaskTrack needs exactly one of `masks` or `rles`")
        self._dense: np.ndarray | None = None
        self._rles: list[Rle] | None = None
        if masks is not None:
            dense = _as_bool_masks(masks)
            self._dense = np.ascontiguousarray(dense)
            n = dense.shape[0]
            hw = (int(dense.shape[1]), int(dense.shape[2]))
            if size is not None and tuple(int(s) for s in size) != hw:
                raise ValueError(f"size {tuple(size)} does not match mask shape {hw}")
        else:
            assert rles is not None
            first = next((r for r in rles if r is not None), None)
            if first is not None:
                hw = (int(first["size"][0]), int(first["size"][1]))
                if size is not None and tuple(int(s) for s in size) != hw:
                    raise ValueError(f"size {tuple(size)} does not match RLE size {hw}")
            elif size is not None:
                hw = (int(size[0]), int(size[1]))
            else:
                raise ValueError("MaskTrack.from_rles needs `size` when there is no non-empty RLE")
            self._rles = [_normalise_rle(r, hw) for r in rles]
            for r in self._rles:
                if tuple(r["size"]) != hw:
                    raise ValueError(f"all RLEs must have size {hw}, got {tuple(r['size'])}")
            n = len(self._rles)
        self._size: tuple[int, int] = hw
        fi = (
            np.arange(n, dtype=np.int64)
            if frame_indices is None
            else np.asarray(frame_indices, dtype=np.int64)
        )
        if fi.ndim != 1 or fi.shape[0] != n:
            raise ValueError(f"frame_indices has {fi.size} entries for {n} mask rows")
        if np.unique(fi).size != n:
            raise ValueError("frame_indices must be unique")
        self._frame_indices = fi

    # -- constructors ------------------------------------------------------------------------------------

    @classmethod
    def from_array(cls, masks: Any, frame_indices: Sequence[int] | np.ndarray | None = None) -> MaskTrack:
        """Track from a (T, H, W) or (H, W) bool-like array/tensor."""
        return cls(masks, frame_indices)

    @classmethod
    def from_logits(
        cls, logits: Any, frame_indices: Sequence[int] | np.ndarray | None = None, threshold: float = 0.0
    ) -> MaskTrack:
        """Track from SAM 2 mask logits (foreground = ``logits > threshold``, the reference uses 0)."""
        return cls(_as_bool_masks(logits, threshold), frame_indices)

    @classmethod
    def from_rles(
        cls,
        rles: Sequence[Mapping[str, Any] | None],
        frame_indices: Sequence[int] | np.ndarray | None = None,
        size: tuple[int, int] | Sequence[int] | None = None,
    ) -> MaskTrack:
        """Track from COCO RLEs (compressed str/bytes or uncompressed list counts; ``None`` = empty frame)."""
        return cls(rles=rles, frame_indices=frame_indices, size=size)

    @classmethod
    def empty(cls, size: tuple[int, int] | Sequence[int]) -> MaskTrack:
        """A track with no frames yet (fill it with :meth:`append`)."""
        return cls(rles=[], size=size)

    # -- basic properties ---------------------------------------------------------------------------------

    @property
    def size(self) -> tuple[int, int]:
        """(H, W) of every mask."""
        return self._size

    @property
    def frame_indices(self) -> np.ndarray:
        """Original frame index of each row (int64 copy)."""
        return self._frame_indices.copy()

    @property
    def is_compact(self) -> bool:
        """True when no dense copy is held (only RLEs)."""
        return self._dense is None

    @property
    def nbytes(self) -> int:
        """Approximate memory held by the masks (dense array + RLE strings)."""
        n = 0 if self._dense is None else int(self._dense.nbytes)
        if self._rles is not None:
            n += sum(len(r["counts"]) for r in self._rles)
        return n

    def __len__(self) -> int:
        return int(self._frame_indices.shape[0])

    def __repr__(self) -> str:
        state = "rle" if self._dense is None else ("dense+rle" if self._rles is not None else "dense")
        return f"MaskTrack(frames={len(self)}, size={self._size}, storage={state})"

    # -- conversions ---------------------------------------------------------------------------------------

    def rles(self) -> list[Rle]:
        """COCO RLE of every row (computed once, then cached; returned dicts are copies)."""
        if self._rles is None:
            assert self._dense is not None
            self._rles = encode_rle(self._dense)
        return [dict(r) for r in self._rles]

    def rle(self, t: int) -> Rle:
        """COCO RLE of row ``t`` (row position, not original frame index)."""
        if self._rles is not None:
            return dict(self._rles[t])
        assert self._dense is not None
        return encode_rle(self._dense[t][None])[0]

    def array(self) -> np.ndarray:
        """(T, H, W) np.bool_ array.  After :meth:`compact` this decodes the RLEs on every call (not cached)."""
        if self._dense is not None:
            return self._dense.copy()
        if len(self) == 0:
            return np.zeros((0, *self._size), dtype=bool)
        assert self._rles is not None
        return decode_rle(self._rles)

    def mask(self, t: int) -> np.ndarray:
        """(H, W) bool mask of row ``t`` (row position)."""
        if self._dense is not None:
            return self._dense[t].copy()
        assert self._rles is not None
        return decode_rle([self._rles[t]])[0]

    def row_of(self, frame_index: int) -> int | None:
        """Row position holding original frame ``frame_index``, or None if the track has no mask there."""
        hits = np.flatnonzero(self._frame_indices == int(frame_index))
        return int(hits[0]) if hits.size else None

    def mask_at(self, frame_index: int) -> np.ndarray | None:
        """(H, W) mask at original frame ``frame_index``, or None if that frame is not in the track."""
        t = self.row_of(frame_index)
        return None if t is None else self.mask(t)

    def rle_at(self, frame_index: int) -> Rle | None:
        """COCO RLE at original frame ``frame_index``, or None if that frame is not in the track."""
        t = self.row_of(frame_index)
        return None if t is None else self.rle(t)

    def first_present(self) -> int | None:
        """The first original frame index with a non-empty mask (None if the object never appears)."""
        present = self.present()
        return int(present[0]) if len(present) else None

    def areas(self) -> np.ndarray:
        """Foreground pixel count per row (int64, (T,))."""
        if self._dense is not None:
            return self._dense.reshape(len(self), -1).sum(axis=1).astype(np.int64)
        if not self._rles:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(mask_utils.area(self._rles), dtype=np.int64).reshape(-1)

    def boxes(self, inclusive: bool = False) -> list[tuple[int, int, int, int] | None]:
        """Per-row tight box ``(x1, y1, x2, y2)``, None for empty rows.

        ``x2``/``y2`` are exclusive by default (COCO-compatible, slice-friendly); ``inclusive=True`` gives the
        last foreground pixel instead.
        """
        if len(self) == 0:
            return []
        if self._rles is None:
            self.rles()
        assert self._rles is not None
        xywh = np.asarray(mask_utils.toBbox(self._rles), dtype=np.float64).reshape(-1, 4)
        areas = self.areas()
        sub = 1 if inclusive else 0
        out: list[tuple[int, int, int, int] | None] = []
        for (x, y, w, h), a in zip(xywh, areas, strict=True):
            if a == 0:
                out.append(None)
            else:
                out.append((int(x), int(y), int(x + w) - sub, int(y + h) - sub))
        return out

    def present(self) -> np.ndarray:
        """Original frame indices (int64) where the mask is non-empty."""
        return self._frame_indices[self.areas() > 0]

    # -- memory management --------------------------------------------------------------------------------

    def compact(self) -> MaskTrack:
        """Encode to RLE (if not done yet) and drop the dense copy; returns ``self``.

        Why: a (T, H, W) bool stack costs T*H*W bytes per object (a 300-frame 1080p clip: 622 MB), while its
        RLE is typically a few hundred bytes per frame.
        """
        if self._dense is not None:
            self.rles()
            self._dense = None
        return self

    def append(self, frame_index: int, mask: Any) -> None:
        """Add one frame (RLE-encoded immediately).  Compacts the track first, so appends stay O(frame)."""
        m = _as_bool_masks(mask)
        if m.shape[0] != 1 or m.shape[1:] != self._size:
            raise ValueError(f"append expects one ({self._size[0]}, {self._size[1]}) mask, got {m.shape}")
        if self.row_of(frame_index) is not None:
            raise ValueError(f"frame {frame_index} is already in the track")
        self.compact()
        if self._rles is None:
            self._rles = []
        self._rles.append(encode_rle(m)[0])
        self._frame_indices = np.append(self._frame_indices, np.int64(frame_index))

    # -- serialisation -------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """``{"size", "frame_indices", "rles"}`` (JSON-serialisable)."""
        return {
            "size": [self._size[0], self._size[1]],
            "frame_indices": [int(i) for i in self._frame_indices],
            "rles": self.rles(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MaskTrack:
        """Inverse of :meth:`to_dict`."""
        return cls.from_rles(d["rles"], d.get("frame_indices"), d.get("size"))


# ----------------------------------------------------------------------------------------------------------
# ObjectResult / UniPixelResult


def _span_or_none(v: Any) -> Span | None:
    return None if v is None else (int(v[0]), int(v[1]))


@dataclass
class ObjectResult:
    """One segmented object.

    Attributes:
        id: stable 0-based id (see module docstring); the palette/PNG value of the object is ``id + 1``.
        masks: its :class:`MaskTrack`.
        scores: per-row confidence, sigmoid of SAM 2's object-score logit (empty when not available).
        label: best-effort human-readable name (caller-supplied, or the phrase before its ``<|seg|>``).
        span: ``(start, end)`` in ``UniPixelResult.text`` of the ``<|seg|>`` that produced the object,
            extended left over an ``[id]`` marker that immediately precedes it; None for objects whose
            ``<|seg|>`` is not in the answer text.
        clean_span: ``(start, end)`` of the object's ``[id]`` marker in ``UniPixelResult.clean_text``.
        source: ``"generated"`` (``<|seg|>`` produced while decoding) or ``"input"`` (``<|seg|>`` present in the
            prompt / a forced assistant prefix).
        token_index: position of the ``<|seg|>`` token in the model's token sequence, when known.
    """

    id: int
    masks: MaskTrack
    scores: list[float] = field(default_factory=list)
    label: str | None = None
    span: Span | None = None
    clean_span: Span | None = None
    source: str = "generated"
    token_index: int | None = None

    @property
    def mean_score(self) -> float | None:
        """Mean per-frame confidence, None when no scores were recorded."""
        return float(np.mean(self.scores)) if self.scores else None

    def to_dict(self, include_masks: bool = True) -> dict[str, Any]:
        """JSON-serialisable dict; boxes/areas are included for clients but ignored by :meth:`from_dict`."""
        d: dict[str, Any] = {
            "id": int(self.id),
            "label": self.label,
            "source": self.source,
            "span": None if self.span is None else list(self.span),
            "clean_span": None if self.clean_span is None else list(self.clean_span),
            "token_index": None if self.token_index is None else int(self.token_index),
            "scores": [float(s) for s in self.scores],
            "size": list(self.masks.size),
            "frame_indices": [int(i) for i in self.masks.frame_indices],
            "boxes": [None if b is None else list(b) for b in self.masks.boxes()],
            "areas": [int(a) for a in self.masks.areas()],
        }
        if include_masks:
            d["masks"] = self.masks.rles()
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ObjectResult:
        """Inverse of :meth:`to_dict` (requires the ``masks`` entry)."""
        if "masks" not in d:
            raise ValueError(f"object {d.get('id')} has no 'masks' (was it saved with include_masks=False?)")
        return cls(
            id=int(d["id"]),
            masks=MaskTrack.from_rles(d["masks"], d.get("frame_indices"), d.get("size")),
            scores=[float(s) for s in d.get("scores", [])],
            label=d.get("label"),
            span=_span_or_none(d.get("span")),
            clean_span=_span_or_none(d.get("clean_span")),
            source=d.get("source", "generated"),
            token_index=None if d.get("token_index") is None else int(d["token_index"]),
        )


OverlapRule = Literal["last", "score"]


@dataclass
class UniPixelResult:
    """Everything one UniPixel call produced.

    Attributes:
        text: decoded answer, special tokens kept (``"It is <|seg|>."``); spans index into it.
        clean_text: answer for display: special tokens removed, ``[id]`` markers where masks were produced.
        objects: one :class:`ObjectResult` per ``<|seg|>``, input ones first, then in answer order.
        frame_indices: original indices of the frames that got masks (SAM 2 frames).
        llm_frame_indices: original indices of the frames the language model saw.
        frame_size: (H, W) of the masks (original resolution); None if unknown and no objects.
        media: description of the input (``source``, ``is_image``, ``fps``, ``total_frames``, ...).
        timings: seconds per stage; the API writes ``preprocess_s``, ``model_s`` (generation + SAM 2) and
            ``postprocess_s``, the server adds ``queue_wait_s``, ``media_decode_s`` and ``total_s``.
        prompt: the user prompt, if the caller recorded it.
        choice: the option letter of a multiple-choice answer (PixelQA), when the call parsed one.
    """

    text: str
    clean_text: str
    objects: list[ObjectResult] = field(default_factory=list)
    frame_indices: list[int] = field(default_factory=list)
    llm_frame_indices: list[int] = field(default_factory=list)
    frame_size: tuple[int, int] | None = None
    media: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    prompt: str | None = None
    choice: str | None = None

    @property
    def ids(self) -> list[int]:
        """Object ids in object order."""
        return [o.id for o in self.objects]

    def object(self, obj_id: int) -> ObjectResult:
        """The object with id ``obj_id`` (KeyError if absent)."""
        for o in self.objects:
            if o.id == obj_id:
                return o
        raise KeyError(f"no object with id {obj_id}; ids are {self.ids}")

    def compact(self) -> UniPixelResult:
        """Drop dense masks of every object (see :meth:`MaskTrack.compact`); returns ``self``."""
        for o in self.objects:
            o.masks.compact()
        return self

    def label_map(self, frame_index: int, overlap: OverlapRule = "last") -> np.ndarray:
        """(H, W) int32 map of ``id + 1`` per pixel (0 = background) at original frame ``frame_index``.

        Overlaps: ``"last"`` -- the later object in ``objects`` wins (deterministic, as when masks are painted
        in order); ``"score"`` -- the object with the higher per-frame score wins (ties and missing scores
        fall back to ``"last"``).
        """
        if self.frame_size is None:
            raise ValueError("label_map needs frame_size (result has no objects and no frame_size)")
        items = [(o.id, o.masks, o.scores) for o in self.objects]
        return paint_label_map(items, frame_index, self.frame_size, overlap)

    # -- serialisation -------------------------------------------------------------------------------------

    def to_dict(self, include_masks: bool = True) -> dict[str, Any]:
        """JSON-serialisable dict with per-object COCO RLE masks (``include_masks=False`` omits them)."""
        return {
            "format": RESULT_FORMAT,
            "version": RESULT_VERSION,
            "text": self.text,
            "clean_text": self.clean_text,
            "prompt": self.prompt,
            "frame_size": None if self.frame_size is None else [int(v) for v in self.frame_size],
            "frame_indices": [int(i) for i in self.frame_indices],
            "llm_frame_indices": [int(i) for i in self.llm_frame_indices],
            "media": _jsonable(self.media),
            "timings": {str(k): float(v) for k, v in self.timings.items()},
            "objects": [o.to_dict(include_masks) for o in self.objects],
            "choice": self.choice,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UniPixelResult:
        """Inverse of :meth:`to_dict` (masks stay as RLE until used)."""
        fmt = d.get("format", RESULT_FORMAT)
        if fmt != RESULT_FORMAT:
            raise ValueError(f"not a UniPixel result (format={fmt!r})")
        version = int(d.get("version", RESULT_VERSION))
        if version > RESULT_VERSION:
            raise ValueError(f"result version {version} is newer than supported ({RESULT_VERSION})")
        fs = d.get("frame_size")
        return cls(
            text=d["text"],
            clean_text=d.get("clean_text", d["text"]),
            objects=[ObjectResult.from_dict(o) for o in d.get("objects", [])],
            frame_indices=[int(i) for i in d.get("frame_indices", [])],
            llm_frame_indices=[int(i) for i in d.get("llm_frame_indices", [])],
            frame_size=None if fs is None else (int(fs[0]), int(fs[1])),
            media=dict(d.get("media") or {}),
            timings={str(k): float(v) for k, v in (d.get("timings") or {}).items()},
            prompt=d.get("prompt"),
            choice=d.get("choice", (d.get("media") or {}).get("choice")),  # older results kept it in media
        )

    def to_json(
        self, path: str | os.PathLike[str], indent: int | None = None, include_masks: bool = True
    ) -> Path:
        """Write :meth:`to_dict` as JSON atomically (temp file + ``os.replace``); returns the path."""
        data = json.dumps(self.to_dict(include_masks), indent=indent, ensure_ascii=False)
        with atomic_output(path) as tmp:
            tmp.write_text(data, encoding="utf-8")
        return Path(path)

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> UniPixelResult:
        """Read a file written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _jsonable(v: Any) -> Any:
    """Best-effort conversion of numpy scalars/arrays, tuples and paths to JSON types."""
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def paint_label_map(
    objects: Iterable[tuple[int, MaskTrack, Sequence[float]]],
    frame_index: int,
    size: tuple[int, int] | Sequence[int],
    overlap: OverlapRule = "last",
) -> np.ndarray:
    """(H, W) int32 map of ``id + 1`` (0 = background) at original frame ``frame_index``.

    ``objects`` are ``(id, track, per-row scores)`` in painting order.  Overlaps: ``"last"`` -- the later object
    wins; ``"score"`` -- the higher per-frame score wins (ties go to the later object; an object without a
    score for that frame loses to any scored one).  Shared by :meth:`UniPixelResult.label_map` and the palette
    PNG writers so both resolve overlaps identically.
    """
    if overlap not in ("last", "score"):
        raise ValueError(f"overlap must be 'last' or 'score', got {overlap!r}")
    hw = (int(size[0]), int(size[1]))
    out = np.zeros(hw, dtype=np.int32)
    best = np.full(hw, -np.inf) if overlap == "score" else None
    for obj_id, track, scores in objects:
        t = track.row_of(frame_index)
        if t is None:
            continue
        if track.size != hw:
            raise ValueError(f"object {obj_id} has masks of size {track.size}, expected {hw}")
        m = track.mask(t)
        if best is not None:
            s = float(scores[t]) if t < len(scores) else -np.inf
            m = m & (s >= best)
            best[m] = s
        out[m] = obj_id + 1
    return out


# ----------------------------------------------------------------------------------------------------------
# answer-text analysis


def find_seg_spans(text: str, token: str = SEG_TOKEN) -> list[Span]:
    """Character spans ``(start, end)`` of every ``<|seg|>`` in ``text``, in order."""
    return [(m.start(), m.end()) for m in re.finditer(re.escape(token), text)]


def _marker_before(text: str, start: int) -> tuple[int, int] | None:
    """``(id, marker_start)`` if ``text[:start]`` ends with an ``[id]`` marker (plus spaces/colon)."""
    m = _MARKER_BEFORE_RE.search(text, 0, start)
    if m is None or m.end() != start:
        return None
    return int(m.group(1)), m.start()


def assign_object_ids(
    text: str, seg_spans: Sequence[Span], num_objects: int | None = None, reserved: Iterable[int] = ()
) -> list[int]:
    """Ids for ``num_objects`` objects whose last ``len(seg_spans)`` ones produced the given ``<|seg|>`` spans.

    An ``[k]`` marker right before a ``<|seg|>`` names its object ``k``; the first object naming ``k`` keeps it
    (a duplicate is treated as unnamed).  Unnamed objects (including input objects without a span) get the
    smallest ids not named anywhere and not ``reserved`` (ids a chat session already gave out), in object order,
    so "[1] <|seg|> and the cat <|seg|>" gives ids 1 and 0, or 1 and 2 with ``reserved={0}``.
    """
    n = len(seg_spans) if num_objects is None else int(num_objects)
    if n < len(seg_spans):
        raise ValueError(f"{len(seg_spans)} <|seg|> spans but only {n} objects")
    offset = n - len(seg_spans)
    named: list[int | None] = [None] * n
    taken: set[int] = set()
    for k, (s, _) in enumerate(seg_spans):
        mk = _marker_before(text, s)
        if mk is not None and mk[0] not in taken:
            named[offset + k] = mk[0]
            taken.add(mk[0])
    ids: list[int] = []
    nxt = 0
    blocked = taken | {int(r) for r in reserved}
    for v in named:
        if v is None:
            while nxt in blocked:
                nxt += 1
            v = nxt
            blocked.add(v)
        ids.append(v)
    return ids


def guess_label(text: str, seg_span: Span) -> str | None:
    """Noun phrase that introduces the object whose ``<|seg|>`` is at ``seg_span`` (a display hint only).

    Takes the clause before the token (back to the previous ``<|seg|>`` or ``.!?;:,``/newline), drops an ``[id]``
    marker, and keeps the part from the first determiner/possessive on ("Sure, the tallest giraffe <|seg|>"
    -> "the tallest giraffe"), at most 8 words, without a trailing verb ("the red car is <|seg|>" -> "the red
    car").  Conservative on purpose: None when there is no such phrase ("It is <|seg|>.", "next to [3] <|seg|>")
    or when it only names the answer ("The target is <|seg|>."), because a wrong label is worse than none.
    """
    start = seg_span[0]
    prev_seg = text.rfind(SEG_TOKEN, 0, start)
    lo = 0 if prev_seg < 0 else prev_seg + len(SEG_TOKEN)
    clause = _SPECIAL_RE.sub(" ", text[lo:start])
    bounds = list(_CLAUSE_BOUNDARY_RE.finditer(clause))
    if bounds:
        clause = clause[bounds[-1].end() :]
    clause = re.sub(r"\[\d+\][\s:]*$", "", clause.rstrip()).strip()
    while (verb := _TRAILING_VERB_RE.search(clause)) is not None:
        clause = clause[: verb.start()]
    m = _DETERMINER_RE.search(clause)
    if m is None:
        return None
    words = clause[m.start() :].split()
    if len(words) < 2 or " ".join(words[1:]).lower() in _GENERIC_LABELS:
        return None
    return " ".join(words[:_MAX_LABEL_WORDS])


def clean_answer_text(
    text: str, seg_spans: Sequence[Span], ids: Sequence[int], insert_ids: bool = True
) -> tuple[str, list[Span | None]]:
    """Remove special tokens, putting ``[id]`` where each ``<|seg|>`` stood unless its marker is already there.

    ``seg_spans``/``ids`` pair up (one id per span).  Returns the clean text and, per span, the ``(start, end)`` of
    the object's marker in it (None if ``insert_ids`` is False and the text had no marker).  Whitespace left
    before a removed token is dropped ("[0] <|seg|>." -> "[0]."), and the result is stripped.
    """
    if len(seg_spans) != len(ids):
        raise ValueError(f"{len(seg_spans)} spans but {len(ids)} ids")
    seg_by_start = {s: (k, e) for k, (s, e) in enumerate(seg_spans)}
    cur = ""
    pos = 0
    clean_spans: list[Span | None] = [None] * len(seg_spans)
    matches: list[tuple[int, int]] = [(m.start(), m.end()) for m in _SPECIAL_RE.finditer(text)]
    # include spans the caller passed that the regex might not cover (custom tokens)
    known = {s for s, _ in matches}
    matches += [(s, e) for s, e in seg_spans if s not in known]
    matches.sort()
    for s, e in matches:
        if s < pos:
            continue
        cur += text[pos:s]
        pos = e
        if s not in seg_by_start:
            continue  # another special token: just drop it
        k, _ = seg_by_start[s]
        obj_id = int(ids[k])
        mk = re.search(r"\[(\d+)\][\s:]*$", cur)
        if mk is not None and int(mk.group(1)) == obj_id:
            cur = cur.rstrip()
            mstart = mk.start()
            clean_spans[k] = (mstart, mstart + len(f"[{obj_id}]"))
        elif insert_ids:
            if cur and not cur[-1].isspace() and cur[-1] not in "([{\"'":
                cur += " "
            marker = f"[{obj_id}]"
            clean_spans[k] = (len(cur), len(cur) + len(marker))
            cur += marker
        else:
            cur = cur.rstrip()
        nxt = text[pos : pos + 1]
        if nxt and (nxt.isalnum() or nxt in "([{"):
            cur += " "
    cur += text[pos:]
    lead = len(cur) - len(cur.lstrip())
    cur = cur.strip()
    spans_out = [None if sp is None else (sp[0] - lead, sp[1] - lead) for sp in clean_spans]
    return cur, spans_out


# ----------------------------------------------------------------------------------------------------------
# build_result


def _sigmoid_list(x: Any) -> list[float]:
    arr = _to_numpy(x).astype(np.float64).reshape(-1)
    return [float(v) for v in 1.0 / (1.0 + np.exp(-arr))]


def _media_info(media: Any) -> dict[str, Any]:
    """Describe a ``unipixel.media.Media`` (duck-typed), a dict, a path or None."""
    if media is None:
        return {}
    if isinstance(media, Mapping):
        return dict(_jsonable(media))
    if isinstance(media, (str, os.PathLike)):
        return {"source": os.fspath(media)}
    info: dict[str, Any] = {}
    for key in ("source", "is_image", "fps", "total_frames", "num_frames"):
        if hasattr(media, key):
            info[key] = _jsonable(getattr(media, key))
    return info


def build_result(
    text: str,
    *,
    tracks: Sequence[Any],
    seg_spans: Sequence[Span] | None = None,
    object_score_logits: Sequence[Any | None] | None = None,
    scores: Sequence[Sequence[float] | None] | None = None,
    frame_indices: Sequence[int] | np.ndarray | None = None,
    llm_frame_indices: Sequence[int] | np.ndarray | None = None,
    frame_size: tuple[int, int] | Sequence[int] | None = None,
    sources: Sequence[str] | None = None,
    token_indices: Sequence[int | None] | None = None,
    labels: Sequence[str | None] | None = None,
    media: Any = None,
    timings: Mapping[str, float] | None = None,
    prompt: str | None = None,
    threshold: float = 0.0,
    insert_ids: bool = True,
    compact: bool = True,
    reserved_ids: Iterable[int] = (),
) -> UniPixelResult:
    """Assemble a :class:`UniPixelResult` from raw model outputs (the one place the API/CLI/server do this).

    Args:
        text: decoded answer with special tokens (``skip_special_tokens=False``).
        tracks: one entry per ``<|seg|>`` hidden state, in the model's order (input ``<|seg|>`` first, then
            generated ones): a :class:`MaskTrack`, a bool mask stack, or float logits (``> threshold``) of shape
            (T, H, W) / (1, T, H, W) / (H, W).
        seg_spans: spans of the ``<|seg|>`` tokens in ``text`` (default :func:`find_seg_spans`).  They belong
            to the **last** ``len(seg_spans)`` tracks; earlier tracks get no span.
        object_score_logits: per object, per-frame SAM 2 object-score logits (sigmoid -> ``scores``).
        scores: alternatively, per-object per-frame probabilities.
        frame_indices: original frame index of each mask row (for array tracks; default ``0..T-1``).
        llm_frame_indices: frames the language model saw.
        frame_size: (H, W); default the masks' size.
        sources: per object ``"input"``/``"generated"``; default ``"generated"`` for objects with a span in
            ``text``, ``"input"`` for the others.
        token_indices, labels: optional per-object values (labels default to :func:`guess_label`).
        media: ``Media`` object, dict or path (stored as a small JSON description).
        timings: seconds per stage.
        threshold: logit threshold for float tracks.
        insert_ids: insert ``[id]`` markers into ``clean_text`` (see :func:`clean_answer_text`).
        compact: RLE-encode masks and drop dense copies right away (keeps results small).
        reserved_ids: ids unnamed objects must not take (a chat session's earlier objects), so that the ids in
            ``clean_text`` and on the objects stay unique across turns.

    Raises:
        ValueError: fewer tracks than ``<|seg|>`` tokens in ``text``, mismatched per-object lists, or masks
            whose size differs from ``frame_size``.
    """
    spans = list(find_seg_spans(text) if seg_spans is None else [(int(s), int(e)) for s, e in seg_spans])
    n = len(tracks)
    if n < len(spans):
        raise ValueError(
            f"the answer has {len(spans)} <|seg|> tokens but only {n} mask tracks were given; every <|seg|> "
            "must have a track (pass seg_spans explicitly to map a subset)"
        )
    if object_score_logits is not None and scores is not None:
        raise ValueError("pass either object_score_logits or scores, not both")
    for name, seq in (
        ("object_score_logits", object_score_logits),
        ("scores", scores),
        ("sources", sources),
        ("token_indices", token_indices),
        ("labels", labels),
    ):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} entries for {n} tracks")

    offset = n - len(spans)
    span_of: list[Span | None] = [None] * offset + list(spans)
    ids = assign_object_ids(text, spans, n, reserved=reserved_ids)
    clean_text, clean_spans = clean_answer_text(text, spans, ids[offset:], insert_ids=insert_ids)
    clean_span_of: list[Span | None] = [None] * offset + clean_spans

    size = None if frame_size is None else (int(frame_size[0]), int(frame_size[1]))
    objects: list[ObjectResult] = []
    all_frames: set[int] = set()
    for i, tr in enumerate(tracks):
        track = tr if isinstance(tr, MaskTrack) else MaskTrack(_as_bool_masks(tr, threshold), frame_indices)
        if size is None:
            size = track.size
        elif track.size != size:
            raise ValueError(f"track {i} has masks of size {track.size}, expected {size}")
        if compact:
            track.compact()
        all_frames.update(int(f) for f in track.frame_indices)
        if object_score_logits is not None and object_score_logits[i] is not None:
            sc = _sigmoid_list(object_score_logits[i])
        elif scores is not None and scores[i] is not None:
            sc = [float(v) for v in scores[i]]  # type: ignore[union-attr]
        else:
            sc = []
        if sc and len(sc) != len(track):
            raise ValueError(f"track {i} has {len(track)} frames but {len(sc)} scores")
        span = span_of[i]
        raw_span = span
        if span is not None:
            mk = _marker_before(text, span[0])
            if mk is not None and mk[0] == ids[i]:
                raw_span = (mk[1], span[1])
        if labels is not None and labels[i] is not None:
            label = labels[i]
        else:
            label = None if span is None else guess_label(text, span)
        objects.append(
            ObjectResult(
                id=ids[i],
                masks=track,
                scores=sc,
                label=label,
                span=raw_span,
                clean_span=clean_span_of[i],
                source=sources[i] if sources is not None else ("generated" if span is not None else "input"),
                token_index=None
                if token_indices is None or token_indices[i] is None
                else int(token_indices[i]),  # type: ignore[arg-type]
            )
        )

    if frame_indices is not None:
        fi = [int(v) for v in np.asarray(frame_indices).reshape(-1)]
        fi = sorted(set(fi) | all_frames)
    else:
        fi = sorted(all_frames)
    return UniPixelResult(
        text=text,
        clean_text=clean_text,
        objects=objects,
        frame_indices=fi,
        llm_frame_indices=[]
        if llm_frame_indices is None
        else [int(v) for v in np.asarray(llm_frame_indices).reshape(-1)],
        frame_size=size,
        media=_media_info(media),
        timings={str(k): float(v) for k, v in (timings or {}).items()},
        prompt=prompt,
    )


def iter_objects(result: UniPixelResult | Iterable[ObjectResult]) -> Iterator[ObjectResult]:
    """Objects of a result or of an iterable of objects (small convenience for writers)."""
    yield from (result.objects if isinstance(result, UniPixelResult) else result)

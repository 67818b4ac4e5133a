"""Language about synthetic scenes: referring expressions, reasoning queries, captions and questions.

Every generator checks its own unambiguity against the scene: an expression is only returned when the set
of objects it denotes is exactly the intended target set, with pixel margins for spatial words (an object
"to the left of" another lies entirely left of it; ordinals need clear gaps), so a model is never trained on
a sentence whose answer depends on a coin flip.  Answers are short and deterministic (e.g. the caption of an
object is always ``"a large striped red circle moving left"``) so they can be scored by exact match.

Texts use ``{0}``, ``{1}``... placeholders where an object given by a visual prompt is mentioned; the task
builders substitute ``[k] <|ref|>``, ``[k]`` or VideoRefer's ``<objectk><region>`` for them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from .world import COLORS, SHAPES, SIZES, TEXTURES, Scene, SceneObject

__all__ = [
    "Expression",
    "Reasoning",
    "QA",
    "ATTR_ORDER",
    "noun_phrase",
    "full_np",
    "motion_phrase",
    "caption",
    "matches",
    "referring_expressions",
    "multi_expressions",
    "reasoning_queries",
    "region_questions",
    "absent_phrase",
    "counting_questions",
    "ordered_left_to_right",
]

ATTR_ORDER = ("size", "texture", "color", "shape")
ORDINALS = {2: "second", 3: "third", 4: "fourth"}
_SIDE_FROM = {
    "right": "left",
    "left": "right",
    "down": "top",
    "up": "bottom",
}  # enter moving right = from left
_EDGE_TO = {"right": "right", "left": "left", "down": "bottom", "up": "top"}


@dataclass(frozen=True)
class Expression:
    """A noun phrase that denotes exactly ``targets`` (scene object ids) in its scene."""

    text: str
    targets: tuple[int, ...]
    kind: str


@dataclass(frozen=True)
class Reasoning:
    """A question whose answer is an object set, plus the one-sentence reason."""

    question: str
    targets: tuple[int, ...]
    explanation: str
    kind: str


@dataclass(frozen=True)
class QA:
    """A question about the objects ``objects`` (placeholders ``{0}``, ``{1}``...) with a short answer.

    ``options`` lists the answer candidates for the multiple-choice form (the answer is one of them).
    """

    question: str
    answer: str
    options: tuple[str, ...]
    objects: tuple[int, ...]
    kind: str


# --------------------------------------------------------------------------------------------- phrases


def _plural(noun: str) -> str:
    return noun + "es" if noun.endswith(("s", "x")) else noun + "s"


def noun_phrase(desc: dict[str, str], plural: bool = False) -> str:
    """``{"color": "red", "shape": "circle"}`` -> ``"red circle"``; no shape -> ``"... object"``."""
    words = [desc[k] for k in ATTR_ORDER[:3] if k in desc]
    noun = desc.get("shape", "object")
    return " ".join([*words, _plural(noun) if plural else noun])


def full_np(o: SceneObject) -> str:
    """All four attributes; unique in every scene because the world never samples twins."""
    return noun_phrase(o.spec.attrs())


def motion_phrase(o: SceneObject) -> str:
    d = o.direction
    if o.motion == "static":
        return "staying still"
    if o.motion == "linear":
        return f"moving {d}"
    if o.motion == "bounce":
        return "bouncing left and right" if d == "horizontally" else "bouncing up and down"
    if o.motion == "enter":
        return f"entering the frame from the {_SIDE_FROM[str(d)]}"
    if o.motion == "exit":
        return f"leaving the frame at the {_EDGE_TO[str(d)]}"
    if o.motion == "leaving":
        return f"about to leave the frame at the {_EDGE_TO[str(d)]}"
    raise ValueError(o.motion)


def caption(o: SceneObject, scene: Scene) -> str:
    """The exact-match caption: ``"a large striped red circle"`` (+ ``" moving left"`` in videos)."""
    np_ = full_np(o)
    article = "an" if np_[0] in "aeiou" else "a"
    text = f"{article} {np_}"
    return text if scene.is_image else f"{text} {motion_phrase(o)}"


def matches(o: SceneObject, desc: dict[str, str]) -> bool:
    a = o.spec.attrs()
    return all(a[k] == v for k, v in desc.items())


def _descs(o: SceneObject) -> list[dict[str, str]]:
    a = o.spec.attrs()
    out = []
    for n in range(1, 5):
        for keys in itertools.combinations(ATTR_ORDER, n):
            out.append({k: a[k] for k in keys})
    return out


def _unique_descs(scene: Scene, o: SceneObject) -> list[dict[str, str]]:
    return [d for d in _descs(o) if [p.id for p in scene.objects if matches(p, d)] == [o.id]]


def _short_unique(rng: np.random.Generator, scene: Scene, o: SceneObject) -> str:
    """A random one of the shortest unique descriptions (always exists: the full one)."""
    ds = _unique_descs(scene, o)
    best = min(len(d) for d in ds)
    ds = [d for d in ds if len(d) == best]
    return noun_phrase(ds[int(rng.integers(len(ds)))])


# ------------------------------------------------------------------------------------ referring (single)


def _center(o: SceneObject, t: int = 0) -> tuple[float, float]:
    return float(o.centers[t, 0]), float(o.centers[t, 1])


def _extreme(
    scene: Scene, group: list[SceneObject], axis: int, reverse: bool, margin: float
) -> SceneObject | None:
    """The group member extreme along ``axis`` if it beats the runner-up by ``margin`` px."""
    if len(group) < 2:
        return None
    ranked = sorted(group, key=lambda o: _center(o)[axis], reverse=reverse)
    gap = abs(_center(ranked[0])[axis] - _center(ranked[1])[axis])
    return ranked[0] if gap >= margin else None


def _box(o: SceneObject) -> tuple[int, int, int, int]:
    b = o.bbox(0)
    assert b is not None
    return b


def _relation_holds(a: SceneObject, b: SceneObject, rel: str) -> bool | None:
    """True: clearly holds (boxes separated); False: clearly does not (centre on the other side); None: unclear."""
    ax1, ay1, ax2, ay2 = _box(a)
    bx1, by1, bx2, by2 = _box(b)
    (acx, acy), (bcx, bcy) = _center(a), _center(b)
    if rel == "left":
        return True if ax2 < bx1 else (False if acx >= bcx else None)
    if rel == "right":
        return True if ax1 > bx2 else (False if acx <= bcx else None)
    if rel == "above":
        return True if ay2 < by1 else (False if acy >= bcy else None)
    if rel == "below":
        return True if ay1 > by2 else (False if acy <= bcy else None)
    raise ValueError(rel)


_REL_TEXT = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}


def _motion_ref(o: SceneObject) -> str:
    """Relative clause for referring: 'moving left', 'that stays still', 'that enters the frame'..."""
    if o.motion == "static":
        return "that stays still"
    if o.motion == "linear":
        return f"moving {o.direction}"
    if o.motion == "bounce":
        return "bouncing left and right" if o.direction == "horizontally" else "bouncing up and down"
    if o.motion == "enter":
        return "that enters the frame"
    if o.motion == "exit":
        return "that leaves the frame"
    return "that is about to leave the frame"


def _moves_dir(o: SceneObject, d: str) -> bool | None:
    """Does ``o`` move in direction ``d`` throughout? None when unclear (a bouncer on that axis)."""
    if o.motion in ("linear", "enter", "exit", "leaving"):
        return o.direction == d
    if o.motion == "bounce":
        axis = "horizontally" if d in ("left", "right") else "vertically"
        return None if o.direction == axis else False
    return False


def referring_expressions(rng: np.random.Generator, scene: Scene) -> list[Expression]:
    """All single-object expressions found for the scene (attribute, spatial, ordinal, relation, motion)."""
    out: list[Expression] = []
    objs = scene.objects
    margin = max(6.0, 0.06 * min(scene.width, scene.height))
    for o in objs:
        out.append(Expression(_short_unique(rng, scene, o), (o.id,), "attribute"))
        ds = _unique_descs(scene, o)
        d = ds[int(rng.integers(len(ds)))]
        out.append(Expression(noun_phrase(d), (o.id,), "attribute"))
    if scene.is_image:
        classes: list[dict[str, str]] = [{}]
        for o in objs:
            classes += [d for d in _descs(o) if len(d) == 1]
        seen: set[str] = set()
        for cls in classes:
            key = noun_phrase(cls)
            if key in seen:
                continue
            seen.add(key)
            group = [o for o in objs if matches(o, cls)]
            noun = noun_phrase(cls)
            for axis, rev, word in (
                (0, False, "leftmost"),
                (0, True, "rightmost"),
                (1, False, "topmost"),
                (1, True, "bottommost"),
            ):
                ext = _extreme(scene, group, axis, rev, margin)
                if ext is not None:
                    out.append(Expression(f"{word} {noun}", (ext.id,), "spatial"))
            if len(group) >= 3:
                for axis, rev, side in (
                    (0, False, "left"),
                    (0, True, "right"),
                    (1, False, "top"),
                    (1, True, "bottom"),
                ):
                    ranked = sorted(group, key=lambda o: _center(o)[axis], reverse=rev)
                    gaps = [abs(_center(a)[axis] - _center(b)[axis]) for a, b in itertools.pairwise(ranked)]
                    if min(gaps) >= margin:
                        k = int(rng.integers(2, len(ranked) + 1))
                        if k in ORDINALS:
                            out.append(
                                Expression(
                                    f"{ORDINALS[k]} {noun} from the {side}", (ranked[k - 1].id,), "ordinal"
                                )
                            )
            # relations: "<noun> to the left of <anchor>"
            for anchor in objs:
                for rel in ("left", "right", "above", "below"):
                    cands = [o for o in group if o.id != anchor.id]
                    verdicts = [_relation_holds(o, anchor, rel) for o in cands]
                    if None in verdicts or verdicts.count(True) != 1:
                        continue
                    target = cands[verdicts.index(True)]
                    out.append(
                        Expression(
                            f"{noun} {_REL_TEXT[rel]} the {_short_unique(rng, scene, anchor)}",
                            (target.id,),
                            "relation",
                        )
                    )
    else:
        for o in objs:
            for cls in [{}] + [d for d in _descs(o) if len(d) == 1]:
                group = [p for p in objs if matches(p, cls)]
                same = [p for p in group if _motion_ref(p) == _motion_ref(o)]
                if same != [o]:
                    continue
                clause = _motion_ref(o)
                if {"exit", "leaving"} == {
                    o.motion,
                    *(p.motion for p in group if p.motion in ("exit", "leaving")),
                }:
                    continue  # "leaves" vs "is about to leave" side by side would be a fine distinction
                if o.motion == "linear":
                    verdicts = [_moves_dir(p, str(o.direction)) for p in group]
                    if None in verdicts or verdicts.count(True) != 1:
                        continue
                out.append(Expression(f"{noun_phrase(cls)} {clause}", (o.id,), "motion"))
                break
    return out


def ordered_left_to_right(scene: Scene, ids: tuple[int, ...] | list[int]) -> list[int]:
    """Object ids sorted by the x of their centre on the first frame where they are visible."""

    def key(i: int) -> tuple[float, float, int]:
        o = scene.objects[i]
        assert o.visible is not None
        t = next(t for t in range(scene.num_frames) if o.visible[t].any())
        return (float(o.centers[t, 0]), float(o.centers[t, 1]), i)

    return sorted(ids, key=key)


def multi_expressions(scene: Scene) -> list[Expression]:
    """Plural expressions denoting >= 2 objects (attribute classes; motion classes in videos)."""
    out: list[Expression] = []
    seen: set[tuple[int, ...]] = set()
    for o in scene.objects:
        for d in _descs(o):
            if len(d) > 2:
                continue
            ids = tuple(p.id for p in scene.objects if matches(p, d))
            if len(ids) >= 2 and ids not in seen:
                seen.add(ids)
                out.append(Expression(noun_phrase(d, plural=True), ids, "multi"))
    if not scene.is_image:
        for d in ("left", "right", "up", "down"):
            verdicts = [_moves_dir(p, d) for p in scene.objects]
            ids = tuple(p.id for p, v in zip(scene.objects, verdicts, strict=True) if v)
            if None not in verdicts and len(ids) >= 2:
                out.append(Expression(f"objects moving {d}", ids, "multi_motion"))
        ids = tuple(p.id for p in scene.objects if p.motion == "static")
        if len(ids) >= 2:
            out.append(Expression("objects that stay still", ids, "multi_motion"))
    return out


# ----------------------------------------------------------------------------------------------- reasoning


def _max_occlusion(o: SceneObject) -> float:
    return max(o.occlusion_ratio(t) for t in range(o.visible.shape[0])) if o.visible is not None else 0.0


def reasoning_queries(scene: Scene) -> list[Reasoning]:
    """Questions that need a small inference step (odd one out, counting, comparison, motion events)."""
    objs = scene.objects
    out: list[Reasoning] = []
    where = "image" if scene.is_image else "video"
    for attr, word in (("color", "colour"), ("shape", "shape")):
        if len(objs) >= 3:
            values = [o.spec.attrs()[attr] for o in objs]
            for o, v in zip(objs, values, strict=True):
                others = [x for x, p in zip(values, objs, strict=True) if p.id != o.id]
                if len(set(others)) == 1 and others[0] != v:
                    only = f"{v} object" if attr == "color" else v
                    shown = others[0] if attr == "color" else _plural(others[0])
                    out.append(
                        Reasoning(
                            f"Which object has a different {word} from all the others?",
                            (o.id,),
                            f"The {full_np(o)} is the only {only}; the others are all {shown}.",
                            f"odd_{attr}",
                        )
                    )
        values = [o.spec.shape for o in objs]
        counts = {s: values.count(s) for s in set(values)}
        top = max(counts.values())
        winners = [s for s, c in counts.items() if c == top]
        if attr == "shape" and top >= 2 and len(winners) == 1 and len(objs) >= 3:
            s = winners[0]
            ids = tuple(o.id for o in objs if o.spec.shape == s)
            out.append(
                Reasoning(
                    f"Which shape appears most often in the {where}? Segment all of those objects.",
                    ids,
                    f"There are {top} {_plural(s)}, more than any other shape.",
                    "count_most",
                )
            )
    larges = [o for o in objs if o.spec.size == "large"]
    smalls = [o for o in objs if o.spec.size == "small"]
    if larges and smalls:
        a, b = larges[0], smalls[-1]
        first, second = (a, b) if (a.id + b.id) % 2 == 0 else (b, a)
        out.append(
            Reasoning(
                f"Which is larger, the {full_np(first)} or the {full_np(second)}?",
                (a.id,),
                f"The {full_np(a)} is larger than the {full_np(b)}.",
                "compare_size",
            )
        )
    if scene.is_image and len(objs) >= 3:
        for anchor in objs:
            others = sorted(
                (p for p in objs if p.id != anchor.id),
                key=lambda p: float(np.hypot(*(p.centers[0] - anchor.centers[0]))),
            )
            d0 = float(np.hypot(*(others[0].centers[0] - anchor.centers[0])))
            d1 = float(np.hypot(*(others[1].centers[0] - anchor.centers[0])))
            if d1 - d0 >= 8:
                out.append(
                    Reasoning(
                        f"Which object is closest to the {full_np(anchor)}?",
                        (others[0].id,),
                        f"The {full_np(others[0])} is the nearest object to the {full_np(anchor)}.",
                        "closest",
                    )
                )
                break
    if not scene.is_image:
        for kind, q, why in (
            (
                "exit",
                "Which object leaves the frame before the video ends?",
                "moves {d} and leaves the frame.",
            ),
            ("enter", "Which object is not visible at the start of the video?", "enters the frame later."),
            (
                "leaving",
                "Which object is about to leave the frame?",
                "is moving {d} and is already partly outside the frame.",
            ),
        ):
            ids = [o for o in objs if o.motion == kind]
            if len(ids) == 1:
                o = ids[0]
                out.append(
                    Reasoning(q, (o.id,), f"The {full_np(o)} {why.format(d=o.direction)}", f"event_{kind}")
                )
        statics = [o for o in objs if o.motion == "static"]
        if len(statics) == 1 and len(objs) >= 2:
            o = statics[0]
            out.append(
                Reasoning(
                    "Which object does not move at all?",
                    (o.id,),
                    f"The {full_np(o)} stays still while the others move.",
                    "still",
                )
            )
        if len(objs) >= 2:
            ranked = sorted(objs, key=lambda o: o.speed, reverse=True)
            if ranked[0].speed >= 1.5 * ranked[1].speed and ranked[0].speed > 0:
                o = ranked[0]
                out.append(
                    Reasoning(
                        "Which object moves the fastest?",
                        (o.id,),
                        f"The {full_np(o)} moves faster than every other object.",
                        "fastest",
                    )
                )
        occ = [(o, _max_occlusion(o)) for o in objs]
        hidden = [o for o, v in occ if v >= 0.5]
        if len(hidden) == 1 and all(v == 0.0 for o, v in occ if o.id != hidden[0].id):
            o = hidden[0]
            assert o.visible is not None
            t = max(range(scene.num_frames), key=o.occlusion_ratio)
            assert o.full is not None
            cover = max(
                (p for p in objs if p.id != o.id and p.depth > o.depth),
                key=lambda p: int((p.full[t] & o.full[t]).sum()) if p.full is not None else 0,
            )
            out.append(
                Reasoning(
                    "Which object gets hidden behind another object?",
                    (o.id,),
                    f"The {full_np(o)} passes behind the {full_np(cover)}.",
                    "occluded",
                )
            )
    return out


# ------------------------------------------------------------------------------------------- region QA


def _others(rng: np.random.Generator, pool: list[str], answer: str, k: int = 3) -> tuple[str, ...]:
    rest = [p for p in pool if p != answer]
    picks = [rest[i] for i in rng.permutation(len(rest))[:k]]
    return tuple([answer, *picks])


_MOTION_POOL = [
    "staying still",
    "moving left",
    "moving right",
    "moving up",
    "moving down",
    "bouncing left and right",
    "bouncing up and down",
    "entering the frame from the left",
    "leaving the frame at the right",
]


def region_questions(rng: np.random.Generator, scene: Scene, ids: tuple[int, ...]) -> list[QA]:
    """Questions about one or two prompted objects; options[0] is the answer (shuffled later)."""
    objs = [scene.objects[i] for i in ids]
    out: list[QA] = []
    if len(objs) == 1:
        o = objs[0]
        out.append(
            QA("What colour is {0}?", o.spec.color, _others(rng, list(COLORS), o.spec.color), ids, "color")
        )
        out.append(
            QA("What shape is {0}?", o.spec.shape, _others(rng, list(SHAPES), o.spec.shape), ids, "shape")
        )
        out.append(
            QA("Is {0} small or large?", o.spec.size, _others(rng, list(SIZES), o.spec.size, 1), ids, "size")
        )
        out.append(
            QA(
                "What is the texture of {0}?",
                o.spec.texture,
                _others(rng, list(TEXTURES), o.spec.texture, 2),
                ids,
                "texture",
            )
        )
        if not scene.is_image:
            m = motion_phrase(o)
            pool = [p for p in _MOTION_POOL if p != m] + [m]
            out.append(QA("How does {0} move in the video?", m, _others(rng, pool, m), ids, "motion"))
    else:
        a, b = objs[:2]
        yn = ("yes", "no")
        same_c = "yes" if a.spec.color == b.spec.color else "no"
        out.append(
            QA(
                "Do {0} and {1} have the same colour?",
                same_c,
                yn if same_c == "yes" else yn[::-1],
                ids,
                "same_color",
            )
        )
        same_s = "yes" if a.spec.shape == b.spec.shape else "no"
        out.append(
            QA(
                "Do {0} and {1} have the same shape?",
                same_s,
                yn if same_s == "yes" else yn[::-1],
                ids,
                "same_shape",
            )
        )
        if a.spec.size != b.spec.size:
            ans = "yes" if a.spec.size == "large" else "no"
            out.append(
                QA("Is {0} larger than {1}?", ans, yn if ans == "yes" else yn[::-1], ids, "compare_size")
            )
        if scene.is_image:
            v = _relation_holds(a, b, "left")
            if v is not None:
                ans = "yes" if v else "no"
                out.append(
                    QA("Is {0} to the left of {1}?", ans, yn if ans == "yes" else yn[::-1], ids, "left_of")
                )
        else:
            same_m = "yes" if motion_phrase(a) == motion_phrase(b) else "no"
            out.append(
                QA(
                    "Do {0} and {1} move in the same way?",
                    same_m,
                    yn if same_m == "yes" else yn[::-1],
                    ids,
                    "same_motion",
                )
            )
    return out


# ---------------------------------------------------------------------------------- absent / counting


def absent_phrase(rng: np.random.Generator, scene: Scene) -> str:
    """A noun phrase denoting nothing in the scene, one attribute away from a present object (hard negative)."""
    objs = scene.objects
    for _ in range(100):
        o = objs[int(rng.integers(len(objs)))]
        keys = ["shape"] + [k for k in ("color", "size", "texture") if rng.random() < 0.5]
        desc = {k: o.spec.attrs()[k] for k in keys}
        change = keys[int(rng.integers(len(keys)))]
        pool = {"shape": SHAPES, "color": tuple(COLORS), "size": SIZES, "texture": TEXTURES}[change]
        desc[change] = pool[int(rng.integers(len(pool)))]
        if not any(matches(p, desc) for p in objs):
            return noun_phrase(desc)
    used = {o.spec.shape for o in objs}
    return next(s for s in SHAPES if s not in used)


def counting_questions(scene: Scene) -> list[QA]:
    """'How many red objects are there?' for classes present at least once; answers are digits."""
    where = "image" if scene.is_image else "video"
    out: list[QA] = []
    seen: set[str] = set()
    for o in scene.objects:
        for key in ("shape", "color"):
            d = {key: o.spec.attrs()[key]}
            text = noun_phrase(d, plural=True)
            if text in seen:
                continue
            seen.add(text)
            n = sum(matches(p, d) for p in scene.objects)
            out.append(QA(f"How many {text} are there in this {where}?", str(n), (str(n),), (), "count"))
    n = len(scene.objects)
    out.append(QA(f"How many objects are there in this {where}?", str(n), (str(n),), (), "count"))
    return out

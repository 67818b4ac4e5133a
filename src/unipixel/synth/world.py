"""Scenes, objects, motion, rendering and exact masks of the synthetic world.

Every object is a polygon (a circle is a 40-gon) rasterised with pycocotools' polygon rasteriser.  The
rasterised polygon *is* the object's ground-truth extent, so a RefCOCO-style ``instances.json`` that stores
the same polygon decodes (through pycocotools, as every COCO reader does) to exactly the mask we render — no
anti-aliasing, no approximation.  Pixels are painted only where the mask is true, back to front, and the
visible mask of an object is its polygon mask minus the masks of the objects in front of it, so occlusion in
the masks always matches the pixels.

Images have non-overlapping objects (so image annotations can stay polygons, as in RefCOCO); videos move
objects (static, linear, bouncing, entering, leaving) and let them overlap, which produces occlusion.
Everything is driven by one ``numpy.random.Generator``: same generator state -> same scene, bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pycocotools.mask as mask_utils

__all__ = [
    "COLORS",
    "SHAPES",
    "SIZES",
    "TEXTURES",
    "MOTIONS",
    "DIRECTIONS",
    "ObjectSpec",
    "SceneObject",
    "Scene",
    "SceneConfig",
    "shape_polygon",
    "rasterize_polygon",
    "encode_rle",
    "decode_rle",
    "mask_center",
    "make_image_scene",
    "make_video_scene",
]

# RGB values far apart in hue/brightness so that a tiny model (and JPEG) keeps them apart; no grey/white/black,
# which are reserved for backgrounds.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 165, 60),
    "blue": (40, 80, 225),
    "yellow": (240, 205, 30),
    "orange": (245, 135, 20),
    "purple": (140, 60, 190),
    "pink": (245, 120, 185),
    "cyan": (30, 195, 205),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "hexagon", "cross")
SIZES: tuple[str, ...] = ("small", "large")
TEXTURES: tuple[str, ...] = ("solid", "striped", "dotted")
MOTIONS: tuple[str, ...] = ("static", "linear", "bounce", "enter", "exit", "leaving")
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
_DIR_VEC = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}

# Radius as a fraction of min(H, W); the gap between the two ranges keeps "small"/"large" unambiguous.
_RADIUS = {"small": (0.07, 0.09), "large": (0.14, 0.18)}


@dataclass(frozen=True)
class ObjectSpec:
    """The appearance of an object: what language may talk about."""

    shape: str
    color: str
    size: str
    texture: str

    def attrs(self) -> dict[str, str]:
        return {"shape": self.shape, "color": self.color, "size": self.size, "texture": self.texture}


@dataclass
class SceneObject:
    """One object of a scene with its trajectory and (filled in by rendering) its masks.

    ``centers``: (T, 2) float (x, y) per frame; ``depth``: larger = nearer the camera (drawn later);
    ``motion`` / ``direction``: how it moves (``direction`` is the axis word for ``bounce``:
    "horizontally"/"vertically", the travel direction for linear/enter/exit, ``None`` for static).
    """

    id: int
    spec: ObjectSpec
    radius: float
    centers: np.ndarray
    depth: int = 0
    motion: str = "static"
    direction: str | None = None
    speed: float = 0.0
    full: np.ndarray | None = field(default=None, repr=False)  # (T, H, W) bool, polygon clipped to frame
    visible: np.ndarray | None = field(default=None, repr=False)  # (T, H, W) bool, after occlusion
    polygons: list[list[float]] = field(default_factory=list, repr=False)  # per frame flat [x0, y0, x1, ...]
    _bbox: dict[int, tuple[int, int, int, int] | None] = field(default_factory=dict, repr=False)

    # --- derived facts used by language and tests
    def visible_area(self, t: int) -> int:
        assert self.visible is not None
        return int(self.visible[t].sum())

    def in_frame(self, t: int) -> bool:
        assert self.full is not None
        return bool(self.full[t].any())

    def occlusion_ratio(self, t: int) -> float:
        """Fraction of the in-frame extent hidden by nearer objects on frame ``t`` (0 when out of frame)."""
        assert self.full is not None and self.visible is not None
        f = int(self.full[t].sum())
        return 0.0 if f == 0 else 1.0 - int(self.visible[t].sum()) / f

    def bbox(self, t: int) -> tuple[int, int, int, int] | None:
        """Inclusive (x1, y1, x2, y2) of the visible mask on frame ``t``."""
        assert self.visible is not None
        if t not in self._bbox:  # language asks for boxes many times (relations): masks never change
            ys, xs = np.nonzero(self.visible[t])
            self._bbox[t] = (
                None if xs.size == 0 else (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
            )
        return self._bbox[t]


@dataclass
class Scene:
    """An image (T = 1) or a video: frames, objects with exact masks, and the background colour."""

    width: int
    height: int
    is_image: bool
    background: tuple[int, int, int]
    objects: list[SceneObject]
    frames: np.ndarray  # (T, H, W, 3) uint8

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass(frozen=True)
class SceneConfig:
    """Size knobs of the world (all in pixels / frames)."""

    width: int = 112
    height: int = 112
    min_objects: int = 1
    max_objects: int = 4
    min_frames: int = 8
    max_frames: int = 16


# ----------------------------------------------------------------------------------------------- geometry


def _regular(n: int, r: float = 1.0, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [
        (r * math.cos(phase + 2 * math.pi * i / n), r * math.sin(phase + 2 * math.pi * i / n))
        for i in range(n)
    ]


def _unit_polygon(shape: str) -> list[tuple[float, float]]:
    """Vertices in a unit box around the origin (y down), scaled so the shapes have comparable areas."""
    if shape == "circle":
        return _regular(40, 0.92)
    if shape == "square":
        return [(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]
    if shape == "triangle":
        return [(0.0, -1.0), (1.0, 0.75), (-1.0, 0.75)]
    if shape == "star":
        outer, inner = _regular(5, 1.05), _regular(5, 0.45, phase=-math.pi / 2 + math.pi / 5)
        return [p for pair in zip(outer, inner, strict=True) for p in pair]
    if shape == "diamond":
        return [(0.0, -1.0), (0.8, 0.0), (0.0, 1.0), (-0.8, 0.0)]
    if shape == "hexagon":
        return _regular(6, 0.95, phase=0.0)
    if shape == "cross":
        a, b = 0.95, 0.33
        return [
            (-b, -a),
            (b, -a),
            (b, -b),
            (a, -b),
            (a, b),
            (b, b),
            (b, a),
            (-b, a),
            (-b, b),
            (-a, b),
            (-a, -b),
            (-b, -b),
        ]
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def shape_polygon(shape: str, cx: float, cy: float, radius: float) -> list[float]:
    """Flat COCO polygon ``[x0, y0, x1, y1, ...]`` rounded to 1/100 px so it round-trips through JSON."""
    out: list[float] = []
    for ux, uy in _unit_polygon(shape):
        out += [round(cx + ux * radius, 2), round(cy + uy * radius, 2)]
    return out


def rasterize_polygon(poly: list[float], height: int, width: int) -> np.ndarray:
    """pycocotools' rasterisation (the one COCO/RefCOCO readers use), clipped to the frame; (H, W) bool."""
    rles = mask_utils.frPyObjects([poly], height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def encode_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE with ``counts`` as str (JSON-friendly), the schema's mask format."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    counts = rle["counts"]
    r = {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return mask_utils.decode(r).astype(bool)


def mask_center(mask: np.ndarray) -> tuple[int, int]:
    """(x, y) of the mask pixel farthest from the background, the frame border counting as background.

    Same answer as :func:`unipixel.visual_prompts.mask_center_point` (SAM 2's 'center' point: exact L2
    distance transform of the zero-padded mask, first maximum in raster order) but numpy-only, so scene
    generation never runs torch (torch thread pools do not survive ``fork`` into worker processes).  Exact
    because the background pixel nearest to a foreground pixel always touches the foreground (a step from
    it towards the foreground pixel would otherwise be a nearer background pixel).
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    if not m.any():
        raise ValueError("mask_center: the mask is empty")
    near = np.zeros_like(m)
    near[1:] |= m[:-1]
    near[:-1] |= m[1:]
    near[:, 1:] |= m[:, :-1]
    near[:, :-1] |= m[:, 1:]
    by, bx = np.nonzero(near & ~m)
    fy, fx = np.nonzero(m)  # raster order, as argmax scans
    d2 = ((fy[:, None] - by[None, :]) ** 2 + (fx[:, None] - bx[None, :]) ** 2).min(axis=1)
    k = int(np.argmax(d2))
    return int(fx[k]) - 1, int(fy[k]) - 1


# ---------------------------------------------------------------------------------------------- rendering


def _texture_alt(texture: str, h: int, w: int, cx: float, cy: float, period: int) -> np.ndarray | None:
    """Pixels painted in the texture's second tone; anchored to the object centre so textures move with it."""
    if texture == "solid":
        return None
    yy, xx = np.mgrid[0:h, 0:w]
    ox, oy = int(round(cx)), int(round(cy))
    if texture == "striped":
        return (((xx - ox) + (yy - oy)) // max(2, period // 2)) % 2 == 1
    if texture == "dotted":
        half = max(1, period // 3)
        return (((xx - ox) % period) < half) & (((yy - oy) % period) < half)
    raise ValueError(f"unknown texture {texture!r}")


def _alt_color(texture: str, rgb: tuple[int, int, int]) -> np.ndarray:
    c = np.asarray(rgb, dtype=np.float64)
    # striped: a darker band; dotted: near-white dots (both keep the base hue dominant)
    alt = c * 0.45 if texture == "striped" else c * 0.3 + 255 * 0.7
    return np.clip(np.round(alt), 0, 255).astype(np.uint8)


def _render(
    scene_objects: list[SceneObject], t_count: int, h: int, w: int, bg: tuple[int, int, int]
) -> np.ndarray:
    """Rasterise every object on every frame, resolve occlusion by depth, paint pixels; returns frames."""
    period = max(4, int(round(min(h, w) / 19)))
    frames = np.empty((t_count, h, w, 3), dtype=np.uint8)
    frames[...] = np.asarray(bg, dtype=np.uint8)
    for o in scene_objects:
        o.full = np.zeros((t_count, h, w), dtype=bool)
        o.polygons = []
        for t in range(t_count):
            cx, cy = float(o.centers[t, 0]), float(o.centers[t, 1])
            poly = shape_polygon(o.spec.shape, cx, cy, o.radius)
            o.polygons.append(poly)
            o.full[t] = rasterize_polygon(poly, h, w)
    order = sorted(scene_objects, key=lambda o: (o.depth, o.id))  # back to front
    for t in range(t_count):
        covered = np.zeros((h, w), dtype=bool)
        for o in reversed(order):  # front to back: visible = full minus what is already covered
            assert o.full is not None
            if o.visible is None:
                o.visible = np.zeros((t_count, h, w), dtype=bool)
            o.visible[t] = o.full[t] & ~covered
            covered |= o.full[t]
        for o in order:  # back to front painting gives the same picture as the visible masks
            assert o.full is not None and o.visible is not None
            m = o.visible[t]
            if not m.any():
                continue
            base = np.asarray(COLORS[o.spec.color], dtype=np.uint8)
            frames[t][m] = base
            alt = _texture_alt(o.spec.texture, h, w, float(o.centers[t, 0]), float(o.centers[t, 1]), period)
            if alt is not None:
                frames[t][m & alt] = _alt_color(o.spec.texture, COLORS[o.spec.color])
    return frames


# --------------------------------------------------------------------------------------------- sampling


def _sample_specs(rng: np.random.Generator, n: int) -> list[ObjectSpec]:
    """Attributes with deliberate overlaps (shared colour/shape), so that referring needs several words."""
    specs: list[ObjectSpec] = []
    for _ in range(n):
        attrs = {
            "shape": SHAPES[rng.integers(len(SHAPES))],
            "color": list(COLORS)[rng.integers(len(COLORS))],
            "size": SIZES[rng.integers(len(SIZES))],
            "texture": TEXTURES[rng.choice(len(TEXTURES), p=[0.5, 0.25, 0.25])],
        }
        if specs and rng.random() < 0.6:
            src = specs[rng.integers(len(specs))]
            for key in ("shape", "color", "size", "texture"):
                if rng.random() < 0.45:
                    attrs[key] = getattr(src, key)
        spec = ObjectSpec(**attrs)
        if spec in specs:  # identical twins can never be told apart by attributes: change the colour
            used = {s.color for s in specs}
            free = [c for c in COLORS if c not in used] or list(COLORS)
            spec = ObjectSpec(spec.shape, free[rng.integers(len(free))], spec.size, spec.texture)
            if spec in specs:
                spec = ObjectSpec(
                    spec.shape, spec.color, "large" if spec.size == "small" else "small", spec.texture
                )
        specs.append(spec)
    return specs


def _radius(rng: np.random.Generator, size: str, h: int, w: int) -> float:
    lo, hi = _RADIUS[size]
    return round(float(rng.uniform(lo, hi)) * min(h, w), 2)


def _num_objects(rng: np.random.Generator, cfg: SceneConfig) -> int:
    return int(rng.integers(cfg.min_objects, cfg.max_objects + 1))


def make_image_scene(rng: np.random.Generator, cfg: SceneConfig) -> Scene:
    """1..max_objects non-overlapping objects (gap >= 3 px between their discs) fully inside the image."""
    h, w = cfg.height, cfg.width
    n = _num_objects(rng, cfg)
    specs = _sample_specs(rng, n)
    placed: list[tuple[float, float, float]] = []
    objects: list[SceneObject] = []
    for spec in specs:
        r = _radius(rng, spec.size, h, w)
        for _ in range(200):
            cx = round(float(rng.uniform(r + 2, w - r - 2)), 2)
            cy = round(float(rng.uniform(r + 2, h - r - 2)), 2)
            if all(math.hypot(cx - x, cy - y) >= r + q + 3 for x, y, q in placed):
                break
        else:
            continue  # no room: drop the object (rare, large objects on a small canvas)
        placed.append((cx, cy, r))
        objects.append(SceneObject(id=len(objects), spec=spec, radius=r, centers=np.array([[cx, cy]])))
    bg = _background(rng)
    frames = _render(objects, 1, h, w, bg)
    return Scene(width=w, height=h, is_image=True, background=bg, objects=objects, frames=frames)


def _background(rng: np.random.Generator) -> tuple[int, int, int]:
    g = int(rng.integers(175, 236))
    tint = rng.integers(-8, 9, size=3)
    return tuple(int(np.clip(g + d, 0, 255)) for d in tint)  # type: ignore[return-value]


def _trajectory(
    rng: np.random.Generator, motion: str, r: float, t_count: int, h: int, w: int
) -> tuple[np.ndarray, str | None, float]:
    """Centres (T, 2) for one motion kind; guarantees the kind's defining property (see module docstring)."""
    scale = min(h, w) / 112.0
    t_last = t_count - 1
    if motion == "static":
        c = np.array([rng.uniform(r + 2, w - r - 2), rng.uniform(r + 2, h - r - 2)])
        return np.repeat(c[None], t_count, axis=0), None, 0.0
    direction = DIRECTIONS[rng.integers(4)]
    dx, dy = _DIR_VEC[direction]
    horizontal = dx != 0
    length = w if horizontal else h  # extent along the motion axis
    across = h if horizontal else w
    perp = float(rng.uniform(r + 2, across - r - 2))
    sign = dx + dy  # +1 towards larger coordinates
    if motion == "linear":
        room = length - 2 * r - 4
        speed = float(rng.uniform(1.5, 3.5)) * scale
        speed = min(speed, room / t_last)
        travel = speed * t_last
        start = float(rng.uniform(r + 2, length - r - 2 - travel))
        if sign < 0:
            start = length - start
        pos = start + sign * speed * np.arange(t_count)
    elif motion == "bounce":
        lo, hi = r + 1, length - r - 1
        speed = float(rng.uniform(3.5, 6.0)) * scale
        speed = max(speed, 1.2 * (hi - lo) / t_last)  # far enough to reach a wall at least once
        raw = float(rng.uniform(lo, hi)) + sign * speed * np.arange(t_count) - lo
        span = hi - lo
        m = np.mod(raw, 2 * span)
        pos = lo + np.where(m <= span, m, 2 * span - m)
        direction = "horizontally" if horizontal else "vertically"
    elif motion == "enter":
        # starts fully outside on the side it comes from, ends fully inside
        start_out = -r - 1 - float(rng.uniform(0, 4))
        end_in = float(rng.uniform(r + 2, max(r + 3, length * 0.6)))
        speed = (end_in - start_out) / t_last
        pos = start_out + speed * np.arange(t_count)
        if sign < 0:
            pos = length - pos
    elif motion == "leaving":
        # starts inside, ends partly outside the frame (centre within one radius of the edge): "about to leave"
        end = length - r * float(rng.uniform(0.1, 0.6))
        speed = float(rng.uniform(1.5, 4.0)) * scale
        speed = min(speed, (end - (r + 2)) / t_last)
        pos = end - speed * (t_last - np.arange(t_count))
        if sign < 0:
            pos = length - pos
    elif motion == "exit":
        # starts fully inside, is fully outside for the last >= 2 frames
        start_in = float(rng.uniform(max(r + 2, length * 0.35), length - r - 2))
        gone_t = max(2, t_last - 1 - int(rng.integers(0, 3)))
        speed = (length + r + 2 - start_in) / gone_t
        pos = start_in + speed * np.arange(t_count)
        if sign < 0:
            pos = length - pos
    else:
        raise ValueError(f"unknown motion {motion!r}")
    xs = pos if horizontal else np.full(t_count, perp)
    ys = np.full(t_count, perp) if horizontal else pos
    centers = np.round(np.stack([xs, ys], axis=1), 2)
    return centers, direction, round(float(speed), 3)


def make_video_scene(rng: np.random.Generator, cfg: SceneConfig) -> Scene:
    """Objects with motion kinds; at most one enters, one exits, one is about to leave; maybe an occlusion.

    A scene is resampled (same generator, so still deterministic) until every object is clearly visible
    (>= 80 % of its extent unoccluded and in frame) on at least one frame, so no object exists only as a
    sliver.
    """
    h, w = cfg.height, cfg.width
    for _attempt in range(50):
        t_count = int(rng.integers(cfg.min_frames, cfg.max_frames + 1))
        n = _num_objects(rng, cfg)
        specs = _sample_specs(rng, n)
        kinds: list[str] = []
        for _ in range(n):
            kind = MOTIONS[rng.choice(len(MOTIONS), p=[0.25, 0.3, 0.1, 0.12, 0.12, 0.11])]
            if kind in ("enter", "exit", "leaving") and kind in kinds:
                kind = "linear"
            kinds.append(kind)
        depths = [int(d) for d in rng.permutation(n)]
        objects: list[SceneObject] = []
        for i, (spec, kind) in enumerate(zip(specs, kinds, strict=True)):
            r = _radius(rng, spec.size, h, w)
            centers, direction, speed = _trajectory(rng, kind, r, t_count, h, w)
            objects.append(SceneObject(i, spec, r, centers, depths[i], kind, direction, speed))
        _plant_occlusion(rng, objects)
        bg = _background(rng)
        frames = _render(objects, t_count, h, w, bg)
        if all(_clearly_visible(o) for o in objects):
            return Scene(width=w, height=h, is_image=False, background=bg, objects=objects, frames=frames)
    raise RuntimeError("could not sample a valid video scene in 50 attempts; frame size too small?")


def _clearly_visible(o: SceneObject) -> bool:
    assert o.full is not None and o.visible is not None
    unclipped = max(
        1, int(rasterize_polygon(shape_polygon(o.spec.shape, 200.0, 200.0, o.radius), 400, 400).sum())
    )
    return int(o.visible.reshape(o.visible.shape[0], -1).sum(1).max()) >= 0.8 * unclipped


def _plant_occlusion(rng: np.random.Generator, objects: list[SceneObject]) -> None:
    """With p=0.35 put a moving object on the track of a static one, behind it: a guaranteed occlusion."""
    statics = [o for o in objects if o.motion == "static"]
    movers = [o for o in objects if o.motion == "linear" and o.direction in ("left", "right", "up", "down")]
    if not statics or not movers or rng.random() >= 0.35:
        return
    s, m = statics[int(rng.integers(len(statics)))], movers[int(rng.integers(len(movers)))]
    axis = 1 if m.direction in ("left", "right") else 0  # the coordinate that stays constant
    m.centers[:, axis] = s.centers[0, axis]
    if m.depth > s.depth:
        m.depth, s.depth = s.depth, m.depth

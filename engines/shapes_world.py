#!/usr/bin/env python3
"""A synthetic shapes world where the answer to every prompt is known.

    python3 engines/shapes_world.py image OUT.png [--seed N] [--size 112]
    python3 engines/shapes_world.py clip OUT_DIR [--seed N] [--size 112] [--frames 48]
    python3 engines/shapes_world.py vocabulary OUT.txt

Images: a textured, noisy background with 1-4 shapes (circle, square,
triangle; red, green, blue, yellow, white) of varied size, rotation and
position, with exact instance masks (pixel centre inside the shape, minus
what a later shape covers) and boxes.  Prompts: "red circle", "circle",
"red shape"; a prompt matches every object with those attributes.

Clips: a hero shape (default the red circle) that bounces around the frame
all along, and other shapes that move in, cross and leave; per-frame truth:
``frame-NNN.png``, ``ids-NNN.png`` (8-bit map: 0 background, k = object k)
and ``truth.json`` (per frame: each object's id, colour, shape, box).

The wide world (``sample_wide_scene``, ``sample_wide_frame``; issue 18): camera-sized
frames stretched to the model's square input as the element does, backgrounds of any
hue (flat, gradients, colour fields, scikit-image photo crops), distractors in colours
outside the vocabulary, outlines, lighting, blur, JPEG, several instances of a kind,
shapes cut by the frame edge.  The functions of the first world draw exactly what they
drew before (the golden fixtures and the recorded test set).

Deterministic for a given seed; needs only numpy and Pillow (the wide world's photo
backgrounds: scikit-image, python3-skimage in scripts/setup.sh).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field

import numpy as np

COLORS = {
    "red": (215, 35, 35),
    "green": (35, 170, 55),
    "blue": (40, 75, 225),
    "yellow": (230, 205, 35),
    "white": (238, 238, 238),
}
SHAPES = ("circle", "square", "triangle")
SUPERSAMPLE = 4
FIRST_WORLD_SIZE = 112  # the first world's images (and its recorded test set) are this size


def vocabulary() -> list[str]:
    """Every phrase the world answers: colour + shape, shape, colour + 'shape'."""
    out = [f"{c} {s}" for c in COLORS for s in SHAPES]
    out += list(SHAPES)
    out += [f"{c} shape" for c in COLORS]
    return out


def parse_phrase(phrase: str) -> tuple[str | None, str | None]:
    words = phrase.split()
    color = next((w for w in words if w in COLORS), None)
    shape = next((w for w in words if w in SHAPES), None)
    return color, shape


@dataclass
class Shape:
    shape: str
    color: str
    cx: float  # centre, in units of the image size (0..1)
    cy: float
    r: float  # circumradius, in units of the image size
    angle: float
    rgb: tuple[int, int, int]
    ident: int = 0

    def matches(self, phrase: str) -> bool:
        color, shape = parse_phrase(phrase)
        return (color is None or color == self.color) and (shape is None or shape == self.shape)


@dataclass
class Scene:
    image: np.ndarray  # H x W x 3 uint8
    shapes: list[Shape]
    masks: list[np.ndarray] = field(default_factory=list)  # H x W bool, visible pixels

    def boxes(self) -> list[tuple[float, float, float, float]]:
        """Pixel boxes (x1, y1, x2, y2) of the visible masks, x2/y2 exclusive."""
        out = []
        for m in self.masks:
            ys, xs = np.nonzero(m)
            out.append((float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)))
        return out

    def truth(self, phrase: str) -> list[int]:
        """Indices of the objects a phrase names."""
        return [i for i, s in enumerate(self.shapes) if s.matches(phrase)]


def _inside(shape: Shape, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Which points (in image-size units) lie inside the shape."""
    dx, dy = xs - shape.cx, ys - shape.cy
    if shape.shape == "circle":
        return dx * dx + dy * dy <= shape.r * shape.r
    c, s = math.cos(shape.angle), math.sin(shape.angle)
    u, v = c * dx + s * dy, -s * dx + c * dy
    if shape.shape == "square":
        h = shape.r / math.sqrt(2.0)
        return (np.abs(u) <= h) & (np.abs(v) <= h)
    # equilateral triangle: inside the three half-planes at distance r/2 from the centre
    inside = np.ones(np.broadcast_shapes(xs.shape, ys.shape), dtype=bool)
    for k in range(3):
        a = shape.angle + math.pi / 2 + k * 2 * math.pi / 3
        inside &= (dx * math.cos(a) + dy * math.sin(a)) >= -shape.r / 2
    return inside


def _pixel_window(shape: Shape, size: int) -> tuple[int, int, int, int]:
    """Pixel rows/columns [y0, y1) x [x0, x1) that can touch the shape."""
    x0 = max(0, int(math.floor((shape.cx - shape.r) * size)) - 1)
    x1 = min(size, int(math.ceil((shape.cx + shape.r) * size)) + 1)
    y0 = max(0, int(math.floor((shape.cy - shape.r) * size)) - 1)
    y1 = min(size, int(math.ceil((shape.cy + shape.r) * size)) + 1)
    return y0, max(y0, y1), x0, max(x0, x1)


def _coverage(shape: Shape, size: int) -> np.ndarray:
    """Fraction of each pixel covered (for anti-aliased drawing), computed only near the shape."""
    out = np.zeros((size, size), dtype=np.float32)
    y0, y1, x0, x1 = _pixel_window(shape, size)
    if y1 > y0 and x1 > x0:
        k = SUPERSAMPLE
        gx = (x0 * k + np.arange((x1 - x0) * k, dtype=np.float32) + 0.5) / (size * k)
        gy = (y0 * k + np.arange((y1 - y0) * k, dtype=np.float32) + 0.5) / (size * k)
        cov = _inside(shape, gx[None, :], gy[:, None]).reshape(y1 - y0, k, x1 - x0, k).mean(axis=(1, 3))
        out[y0:y1, x0:x1] = cov
    return out


def _centre_mask(shape: Shape, size: int) -> np.ndarray:
    g = (np.arange(size, dtype=np.float32) + 0.5) / size
    return _inside(shape, g[None, :], g[:, None])


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1], bilinear from a coarse grid."""
    grid = rng.uniform(-1, 1, size=(cells + 1, cells + 1)).astype(np.float32)
    t = np.linspace(0, cells, size, dtype=np.float32)
    i = np.minimum(t.astype(int), cells - 1)
    f = t - i
    rows = grid[i] * (1 - f)[:, None] + grid[i + 1] * f[:, None]
    return rows[:, i] * (1 - f)[None, :] + rows[:, i + 1] * f[None, :]


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Muted, textured, noisy background that never looks like one of the world's colours.
    Texture is defined relative to the image size, so a larger rendering downscales to
    the same statistics."""
    base = rng.uniform(55, 140)
    tint = rng.uniform(-12, 12, size=3)
    img = np.empty((size, size, 3), dtype=np.float32)
    low = _smooth_field(rng, size, int(rng.integers(2, 6))) * rng.uniform(8, 28)
    kind = rng.integers(0, 3)
    if kind == 1:  # stripes
        g = np.arange(size, dtype=np.float32) / size
        a = rng.uniform(0, math.pi)
        period = rng.uniform(0.05, 0.2)
        tex = np.sin(2 * math.pi * (g[None, :] * math.cos(a) + g[:, None] * math.sin(a)) / period)
        low += tex * rng.uniform(4, 12)
    elif kind == 2:  # blotches
        low += _smooth_field(rng, size, int(rng.integers(8, 16))) * rng.uniform(6, 16)
    for ch in range(3):
        img[:, :, ch] = base + tint[ch] + low
    img += rng.normal(0, rng.uniform(3, 9), size=img.shape).astype(np.float32)
    return img


def random_shape(rng: np.random.Generator, r_min=0.08, r_max=0.22) -> Shape:
    color = list(COLORS)[int(rng.integers(len(COLORS)))]
    rgb = tuple(int(np.clip(v + rng.integers(-18, 19), 0, 255)) for v in COLORS[color])
    return Shape(
        shape=SHAPES[int(rng.integers(len(SHAPES)))], color=color,
        cx=float(rng.uniform(0.05, 0.95)), cy=float(rng.uniform(0.05, 0.95)),
        r=float(rng.uniform(r_min, r_max)), angle=float(rng.uniform(0, 2 * math.pi)), rgb=rgb,
    )


def render(rng: np.random.Generator, shapes: list[Shape], size: int, bg: np.ndarray | None = None) -> Scene:
    """Draw the shapes in order (later ones on top) over a background."""
    img = background(rng, size) if bg is None else bg.copy()
    visible = []
    for sh in shapes:
        cov = _coverage(sh, size)[:, :, None]
        y0, y1, x0, x1 = _pixel_window(sh, size)
        if y1 > y0 and x1 > x0:
            c = cov[y0:y1, x0:x1]
            shade = 1.0 + 0.08 * _smooth_field(rng, max(y1 - y0, x1 - x0), 2)[: y1 - y0, : x1 - x0, None]
            colour = np.asarray(sh.rgb, dtype=np.float32)[None, None, :] * shade
            colour = colour + rng.normal(0, 5, size=colour.shape).astype(np.float32)
            img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - c) + colour * c
        m = _centre_mask(sh, size)
        visible = [v & ~m for v in visible]
        visible.append(m)
    return Scene(image=np.clip(img + 0.5, 0, 255).astype(np.uint8), shapes=shapes, masks=visible)


def sample_scene(rng: np.random.Generator, size: int = 112, max_shapes: int = 4) -> Scene:
    """1..max_shapes shapes that do not overlap, each at least 40% visible."""
    n = int(rng.integers(1, max_shapes + 1))
    shapes: list[Shape] = []
    for _ in range(200):
        if len(shapes) == n:
            break
        s = random_shape(rng)
        if any(math.hypot(s.cx - o.cx, s.cy - o.cy) < s.r + o.r + 0.02 for o in shapes):
            continue
        m = _centre_mask(s, size)
        full = math.pi * (s.r * size) ** 2 * (0.55 if s.shape == "triangle" else 0.7)
        if m.sum() < max(30, 0.4 * full):
            continue
        shapes.append(s)
    return render(rng, shapes, size)


def phrase_form(phrase: str) -> str:
    """'colour shape', 'shape' or 'colour'."""
    color, shape = parse_phrase(phrase)
    return "colour shape" if color and shape else "shape" if shape else "colour"


# distractor colours and the vocabulary colours a model may take them for
NEAR_COLORS = {"orange": ("red", "yellow"), "purple": ("blue",), "brown": ("red",), "grey": ("white",)}


def confusable(phrase: str, scene: Scene) -> bool:
    """An absent phrase a model is likely to answer wrongly: colour + shape whose colour
    and shape are both present but not together, or whose shape is present in a
    distractor colour near the named one; a colour near a distractor's; or any absent
    shape (rare when drawn by phrase)."""
    color, shape = parse_phrase(phrase)
    near = [s for s in scene.shapes if color in NEAR_COLORS.get(s.color, ())]
    if color and shape:
        crossed = any(s.shape == shape for s in scene.shapes) and any(s.color == color for s in scene.shapes)
        return crossed or any(s.shape == shape for s in near)
    return bool(near) if color else True


def sample_prompts(rng: np.random.Generator, scene: Scene, n: int, p_negative: float = 0.4,
                   balanced_negatives: bool = False, uniform_positives: bool = False,
                   hard_negatives: float = 0.0) -> list[str]:
    """n prompts for a scene: positives name a present object (colour + shape, shape,
    or colour + 'shape'); negatives name nothing present, often sharing a colour or a
    shape with something that is.  With ``balanced_negatives`` the negative's form
    (colour + shape, shape, colour) is drawn first, uniformly among the forms that
    have an absent phrase: drawn by phrase, shape-only negatives are rare (3 of 23
    phrases, and often all three shapes are present).  Positives are colour + shape
    half of the time, else shape or colour alone; ``uniform_positives`` draws the
    three forms equally.  ``hard_negatives``: a prompt is first, with chance
    ``p_negative * hard_negatives``, one of the ``confusable`` absent phrases where there
    are any (so negatives become more common too); 0 draws as before, the same random
    stream."""
    vocab = vocabulary()
    absent = [p for p in vocab if not scene.truth(p)]
    hard_pool = [p for p in absent if confusable(p, scene)] if hard_negatives > 0 else []
    out = []
    for _ in range(n):
        if hard_pool and rng.uniform() < p_negative * hard_negatives:
            out.append(hard_pool[int(rng.integers(len(hard_pool)))])
        elif absent and balanced_negatives and rng.uniform() < p_negative:
            forms = sorted({phrase_form(p) for p in absent})
            form = forms[int(rng.integers(len(forms)))]
            pool = [p for p in absent if phrase_form(p) == form]
            hard = [p for p in pool if any(parse_phrase(p)[0] == s.color or parse_phrase(p)[1] == s.shape
                                           for s in scene.shapes)]
            pool = hard if hard and rng.uniform() < 0.7 else pool
            out.append(pool[int(rng.integers(len(pool)))])
        elif absent and not balanced_negatives and rng.uniform() < p_negative:
            hard = [p for p in absent if any(
                (parse_phrase(p)[0] in (None, s.color)) or (parse_phrase(p)[1] in (None, s.shape))
                for s in scene.shapes)]
            pool = hard if hard and rng.uniform() < 0.7 else absent
            out.append(pool[int(rng.integers(len(pool)))])
        else:
            named = [o for o in scene.shapes if o.color in COLORS]  # not the wide world's distractors
            s = named[int(rng.integers(len(named)))]
            form = rng.uniform()
            cut = (1 / 3, 2 / 3) if uniform_positives else (0.5, 0.75)
            out.append(f"{s.color} {s.shape}" if form < cut[0] else s.shape if form < cut[1] else f"{s.color} shape")
    return out


# --- the wide world ------------------------------------------------------------------------
#
# The world above has muted backgrounds and flat shapes: a model trained only on it learns
# colour words against grey.  The wide world (``sample_wide_scene``) draws frames of the
# sizes a camera gives, stretched to the square model input as the element does it
# (src/preprocess.rs: antialiased bilinear, aspect ratio not kept), over backgrounds of
# any hue and saturation (flat, gradients, smooth colour fields, photo crops), with
# distractor shapes in colours outside the vocabulary, outlines or none, lighting across
# the frame and across each shape, several instances of a kind, shapes cut by the frame
# edge, slight blur and JPEG compression.  A shape is always told from what is behind
# it: where the background under it is close to its colour it gets an outline.
# The old functions above draw exactly what they drew before (the golden fixtures).

DISTRACTOR_COLORS = {
    "orange": (240, 135, 30),
    "purple": (135, 55, 175),
    "brown": (125, 80, 45),
    "grey": (128, 128, 128),
}
# frame shapes (width / height) a camera gives, and how often
ASPECTS = ((1.0, 0.35), (16 / 9, 0.35), (4 / 3, 0.2), (3 / 2, 0.05), (9 / 16, 0.05))
# photos whose crops may be backgrounds (scikit-image's bundled samples); the
# independent evaluation set (independent_shapes.py) uses the others
TRAIN_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
                "retina", "brick", "grass", "gravel", "camera", "moon", "page", "text", "clock")
_PHOTO_CACHE: dict[str, np.ndarray] = {}


def photo(name: str) -> np.ndarray:
    """A scikit-image sample as H x W x 3 float32 (grey ones repeated)."""
    if name not in _PHOTO_CACHE:
        from skimage import data

        img = np.asarray(getattr(data, name)())
        if img.ndim == 2:
            img = np.repeat(img[:, :, None], 3, axis=2)
        img = img[:, :, :3]
        if img.dtype != np.uint8:
            img = (255 * (img - img.min()) / max(1e-6, float(img.max() - img.min()))).astype(np.uint8)
        _PHOTO_CACHE[name] = img.astype(np.float32)
    return _PHOTO_CACHE[name]


def available_photos(names=TRAIN_PHOTOS) -> list[str]:
    out = []
    for n in names:
        try:
            photo(n)
            out.append(n)
        except Exception:  # not bundled in this scikit-image, or scikit-image missing
            pass
    return out


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8)).resize(
        (w, h), Image.BILINEAR), dtype=np.float32)


def _random_rgb(rng: np.random.Generator) -> np.ndarray:
    """Any hue, any saturation, any value."""
    import colorsys

    h, s, v = rng.uniform(), rng.uniform() ** 0.7, rng.uniform(0.15, 1.0)
    return np.asarray(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255


def wide_background(rng: np.random.Generator, w: int, h: int, photos: list[str]) -> np.ndarray:
    """Flat, gradient, smooth colour field, photo crop or the old muted texture."""
    kind = rng.choice(["flat", "gradient", "field", "photo", "muted"], p=[0.15, 0.2, 0.25, 0.3, 0.1])
    if kind == "photo" and not photos:
        kind = "field"
    if kind == "flat":
        img = np.broadcast_to(_random_rgb(rng), (h, w, 3)).copy()
    elif kind == "gradient":
        a, b = _random_rgb(rng), _random_rgb(rng)
        ang = rng.uniform(0, 2 * math.pi)
        gx, gy = np.meshgrid(np.linspace(0, 1, w, dtype=np.float32), np.linspace(0, 1, h, dtype=np.float32))
        t = gx * math.cos(ang) + gy * math.sin(ang)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        img = a[None, None] * (1 - t[..., None]) + b[None, None] * t[..., None]
    elif kind == "field":
        cells = int(rng.integers(1, 5))
        n = max(w, h)
        k = int(rng.integers(2, 4))
        cols = [_random_rgb(rng) for _ in range(k)]
        weights = np.stack([_smooth_field(rng, n, cells)[:h, :w] for _ in range(k)])
        weights = np.exp(weights * rng.uniform(1.5, 4.0))
        weights /= weights.sum(0, keepdims=True)
        img = sum(weights[i][..., None] * cols[i][None, None] for i in range(k))
    elif kind == "photo":
        src = photo(photos[int(rng.integers(len(photos)))])
        ph, pw = src.shape[:2]
        scale = rng.uniform(0.25, 1.0)
        cw = max(8, int(min(pw, ph * w / h) * scale))
        ch = max(8, int(cw * h / w))
        x0, y0 = int(rng.integers(0, max(1, pw - cw + 1))), int(rng.integers(0, max(1, ph - ch + 1)))
        img = _resize(src[y0 : y0 + ch, x0 : x0 + cw], w, h)
        if rng.uniform() < 0.3:  # recoloured: hue of any kind over the photo's structure
            lum = img.mean(2, keepdims=True) / 255
            img = lum * _random_rgb(rng)[None, None] * 1.3
    else:
        img = background(rng, max(w, h))[:h, :w]
    img = img.astype(np.float32)
    if rng.uniform() < 0.5:
        img += _smooth_field(rng, max(w, h), int(rng.integers(2, 6)))[:h, :w, None] * rng.uniform(5, 25)
    img += rng.normal(0, rng.uniform(0, 8), size=img.shape).astype(np.float32)
    return img


def _inside_frame(shape: Shape, xs: np.ndarray, ys: np.ndarray, w: int, h: int) -> np.ndarray:
    """As _inside, with xs and ys in units of the frame's width and height and the shape's
    centre likewise, its radius in units of the frame's shorter side."""
    u = min(w, h)
    iso = Shape(**{**shape.__dict__, "cx": shape.cx * w / u, "cy": shape.cy * h / u})
    return _inside(iso, xs * (w / u), ys * (h / u))


def masks_on_grid(shapes: list[Shape], w: int, h: int, gw: int, gh: int) -> list[np.ndarray]:
    """Visible masks (pixel centre inside, minus later shapes) of shapes in a w x h frame,
    on a gw x gh grid over the same frame (the frame itself, or the model's square input)."""
    gx = (np.arange(gw, dtype=np.float32) + 0.5) / gw
    gy = (np.arange(gh, dtype=np.float32) + 0.5) / gh
    visible: list[np.ndarray] = []
    for sh in shapes:
        m = _inside_frame(sh, gx[None, :], gy[:, None], w, h)
        visible = [v & ~m for v in visible]
        visible.append(m)
    return visible


def _coverage_frame(shape: Shape, w: int, h: int, shrink: float = 0.0) -> tuple[np.ndarray, tuple]:
    """Anti-aliased coverage near the shape (window, coverage); ``shrink`` > 0 shrinks the
    shape's edges inwards by that many units of the shorter side (for outlines)."""
    u = min(w, h)
    r = shape.r
    if shrink:
        r = max(0.0, r - shrink * {"circle": 1.0, "square": math.sqrt(2.0), "triangle": 2.0}[shape.shape])
    sh = Shape(**{**shape.__dict__, "r": r})
    x0 = max(0, int(math.floor(shape.cx * w - shape.r * u)) - 1)
    x1 = min(w, int(math.ceil(shape.cx * w + shape.r * u)) + 1)
    y0 = max(0, int(math.floor(shape.cy * h - shape.r * u)) - 1)
    y1 = min(h, int(math.ceil(shape.cy * h + shape.r * u)) + 1)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((0, 0), np.float32), (0, 0, 0, 0)
    k = SUPERSAMPLE
    gx = (x0 * k + np.arange((x1 - x0) * k, dtype=np.float32) + 0.5) / (w * k)
    gy = (y0 * k + np.arange((y1 - y0) * k, dtype=np.float32) + 0.5) / (h * k)
    cov = _inside_frame(sh, gx[None, :], gy[:, None], w, h).reshape(y1 - y0, k, x1 - x0, k).mean(axis=(1, 3))
    return cov.astype(np.float32), (y0, y1, x0, x1)


def wide_shape(rng: np.random.Generator, distractor: bool = False, like: Shape | None = None,
               r_min: float = 0.07, r_max: float = 0.24) -> Shape:
    palette = DISTRACTOR_COLORS if distractor else COLORS
    color = like.color if like is not None else list(palette)[int(rng.integers(len(palette)))]
    base = palette[color] if color in palette else COLORS[color]
    rgb = tuple(int(np.clip(v + rng.integers(-18, 19), 0, 255)) for v in base)
    return Shape(
        shape=like.shape if like is not None else SHAPES[int(rng.integers(len(SHAPES)))], color=color,
        cx=float(rng.uniform(-0.05, 1.05)), cy=float(rng.uniform(-0.05, 1.05)),
        r=float(rng.uniform(r_min, r_max)), angle=float(rng.uniform(0, 2 * math.pi)), rgb=rgb,
    )


def render_wide(rng: np.random.Generator, shapes: list[Shape], w: int, h: int, bg: np.ndarray,
                content: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Draw the shapes (later on top) over bg: lighting across each shape, an outline where
    asked for or where the background is close to the shape's colour.  ``content`` (x0, y0,
    x1, y1): the letterboxed picture's rectangle, outside which bars stay black."""
    img = bg.copy()
    u = min(w, h)
    for sh in shapes:
        cov, (y0, y1, x0, x1) = _coverage_frame(sh, w, h)
        if cov.size == 0:
            continue
        c = cov[..., None]
        colour = np.asarray(sh.rgb, dtype=np.float32)
        under = (img[y0:y1, x0:x1] * c).sum((0, 1)) / max(1e-6, float(c.sum()))
        gx, gy = np.meshgrid(np.linspace(-1, 1, x1 - x0, dtype=np.float32), np.linspace(-1, 1, y1 - y0, dtype=np.float32))
        a = rng.uniform(0, 2 * math.pi)
        light = 1.0 + rng.uniform(0, 0.22) * (gx * math.cos(a) + gy * math.sin(a))
        fill = colour[None, None] * light[..., None] + rng.normal(0, 4, size=(y1 - y0, x1 - x0, 3)).astype(np.float32)
        img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - c) + fill * c
        close = float(np.abs(under - colour).max()) < 70
        if close or rng.uniform() < 0.3:
            width = rng.uniform(1.0, 2.5) / u * (u / 112 if u > 112 else 1.0)
            inner, _ = _coverage_frame(sh, w, h, shrink=width)
            band = np.clip(cov - inner, 0, 1)[..., None]
            lum = float(colour.mean())
            line = np.full(3, rng.uniform(0, 50) if lum > 90 or rng.uniform() < 0.5 else rng.uniform(215, 255),
                           dtype=np.float32)
            img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - band) + line * band
    if content is not None:
        x0, y0, x1, y1 = content
        mask = np.zeros((h, w), bool)
        mask[y0:y1, x0:x1] = True
        img[~mask] = 0
    return img


def _finish_frame(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Lighting across the frame, slight blur, JPEG compression; uint8."""
    import io

    from PIL import Image, ImageFilter

    h, w = img.shape[:2]
    if rng.uniform() < 0.4:
        gx, gy = np.meshgrid(np.linspace(-1, 1, w, dtype=np.float32), np.linspace(-1, 1, h, dtype=np.float32))
        a = rng.uniform(0, 2 * math.pi)
        img = img * (1.0 + rng.uniform(0, 0.2) * (gx * math.cos(a) + gy * math.sin(a)))[..., None]
    out = Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8))
    if rng.uniform() < 0.35:
        out = out.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.2) * max(1.0, min(w, h) / 112)))
    if rng.uniform() < 0.4:
        buf = io.BytesIO()
        out.save(buf, format="JPEG", quality=int(rng.integers(30, 90)))
        out = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
    return np.asarray(out)


def sample_wide_frame(rng: np.random.Generator, w: int, h: int, photos: list[str] | None = None,
                      max_shapes: int = 5, letterbox: bool = False) -> Scene:
    """A w x h frame of the wide world and its truth at frame resolution.  Vocabulary
    objects (1..max_shapes, sometimes several of one kind) and 0-2 distractors in colours
    outside the vocabulary (they match no colour prompt; an orange circle is a circle, so
    they do match shape prompts), non-overlapping, each at least 40% visible; shapes may be
    cut by the frame edge.  ``Scene.shapes``/``masks`` hold every object, distractors too."""
    photos = available_photos() if photos is None else photos
    content = None
    if letterbox:  # a picture of another aspect ratio inside the frame, black bars around it
        if w >= h:
            cw = int(h * rng.uniform(1.0, 4 / 3))
            content = ((w - cw) // 2, 0, (w - cw) // 2 + cw, h) if cw < w else None
        else:
            ch = int(w * rng.uniform(9 / 16, 1.0))
            content = (0, (h - ch) // 2, w, (h - ch) // 2 + ch)
    bx0, by0, bx1, by1 = (0, 0, w, h) if content is None else content
    u = min(w, h)
    n = int(rng.integers(1, max_shapes + 1))
    n_distract = int(rng.choice([0, 0, 1, 1, 2]))
    shapes: list[Shape] = []
    kinds = 0
    for _ in range(300):
        if kinds == n + n_distract:
            break
        distractor = kinds >= n
        like = None
        if not distractor and shapes and rng.uniform() < 0.3:
            like = shapes[int(rng.integers(len(shapes)))]
        s = wide_shape(rng, distractor, like, r_max=0.24 if n < 4 else 0.18)
        # centre within the content rectangle, give or take a little
        s.cx = float((bx0 + (bx1 - bx0) * rng.uniform(-0.05, 1.05)) / w)
        s.cy = float((by0 + (by1 - by0) * rng.uniform(-0.05, 1.05)) / h)
        if any(math.hypot((s.cx - o.cx) * w / u, (s.cy - o.cy) * h / u) < s.r + o.r + 0.02 for o in shapes):
            continue
        m = masks_on_grid([s], w, h, w, h)[0]
        if content is not None:
            m[:, :bx0] = m[:, bx1:] = False
            m[:by0] = m[by1:] = False
        full = math.pi * (s.r * u) ** 2 * (0.55 if s.shape == "triangle" else 0.7)
        if m.sum() < max(30, 0.4 * full):
            continue
        shapes.append(s)
        kinds += 1
    bg = wide_background(rng, bx1 - bx0, by1 - by0, photos)
    full_bg = np.zeros((h, w, 3), np.float32)
    full_bg[by0:by1, bx0:bx1] = bg
    img = render_wide(rng, shapes, w, h, full_bg, content)
    img = _finish_frame(rng, img)
    masks = masks_on_grid(shapes, w, h, w, h)
    if content is not None:
        for m in masks:
            m[:, :bx0] = m[:, bx1:] = False
            m[:by0] = m[by1:] = False
    return Scene(image=img, shapes=shapes, masks=masks)


def frame_size(rng: np.random.Generator, base: int) -> tuple[int, int]:
    """A camera-like frame size whose shorter side is about ``base``."""
    aspects = [a for a, _ in ASPECTS]
    p = np.asarray([q for _, q in ASPECTS])
    a = aspects[int(rng.choice(len(aspects), p=p / p.sum()))]
    return (int(round(base * a)), base) if a >= 1 else (base, int(round(base / a)))


def to_square(scene: Scene, size: int) -> Scene:
    """The model's view of a frame: stretched to size x size (antialiased bilinear, as the
    element's preprocessing), masks computed exactly on the square grid."""
    h, w = scene.image.shape[:2]
    img = scene.image if (w, h) == (size, size) else np.clip(_resize(scene.image.astype(np.float32), size, size) + 0.0, 0, 255).astype(np.uint8)
    masks = masks_on_grid(scene.shapes, w, h, size, size)
    # bars of a letterboxed frame: what the frame-resolution masks cut, cut here too
    for m, fm in zip(masks, scene.masks):
        ys, xs = np.nonzero(fm)
        if len(xs):
            gx = (np.arange(size) + 0.5) / size * w
            gy = (np.arange(size) + 0.5) / size * h
            m &= ((gx >= xs.min()) & (gx <= xs.max() + 1))[None, :] & ((gy >= ys.min()) & (gy <= ys.max() + 1))[:, None]
    keep = [i for i, m in enumerate(masks) if m.sum() >= 6]
    return Scene(image=img, shapes=[scene.shapes[i] for i in keep], masks=[masks[i] for i in keep])


def sample_wide_scene(rng: np.random.Generator, size: int = 112, photos: list[str] | None = None) -> Scene:
    """A wide-world training/evaluation image at the model's square size: a camera-like
    frame (shorter side size to 1.5 x size px, sometimes letterboxed) stretched to size x size.
    Objects that the stretch leaves under 12 pixels are dropped from the truth only if
    they are distractors; a vocabulary object that small is kept (it was 40% visible in
    the frame)."""
    base = int(rng.integers(size, size * 3 // 2 + 1))
    w, h = frame_size(rng, base)
    frame = sample_wide_frame(rng, w, h, photos, letterbox=rng.uniform() < 0.08)
    return to_square(frame, size)


def is_vocabulary_object(s: Shape) -> bool:
    return s.color in COLORS


# --- clips ---------------------------------------------------------------------------------


def clip(seed: int, size: int = 112, frames: int = 48, hero: tuple[str, str] | None = ("red", "circle"),
         wide: bool = False):
    """Yield (frame index, Scene with ids) for a clip of moving shapes over a fixed
    background.  The hero (colour, shape), if given, is id 1: it stays on screen the
    whole clip, bouncing off the edges, drawn on top, and is the only object of
    its colour, so that following it does not hinge on telling "red circle" from
    "red square" (the evaluation measures that).  Other shapes enter from an edge, cross, and leave; ids
    persist while an object is on screen.  ``wide``: over a wide-world background (any
    hue, photo crops; a separate random stream, so the first world's clips are unchanged),
    drawn as the wide world draws shapes (lighting, outlines)."""
    rng = np.random.default_rng(seed)
    bg = background(rng, size)
    if wide:
        wrng = np.random.default_rng([seed, 18])
        bg = wide_background(wrng, size, size, available_photos())
    live: list[list] = []  # [shape, vx, vy, bounces]
    next_id = 1

    def spawn(from_edge: bool) -> list:
        nonlocal next_id
        while True:
            s = random_shape(rng, 0.10, 0.17)
            if hero is None or s.color != hero[0]:
                break
        speed = rng.uniform(0.012, 0.025)
        ang = rng.uniform(0, 2 * math.pi)
        vx, vy = speed * math.cos(ang), speed * math.sin(ang)
        if from_edge:  # start just outside the edge it moves away from
            if abs(vx) > abs(vy):
                s.cx = -s.r if vx > 0 else 1 + s.r
            else:
                s.cy = -s.r if vy > 0 else 1 + s.r
        s.ident = next_id
        next_id += 1
        return [s, vx, vy, False]

    if hero is not None:
        color, shape = hero
        h = random_shape(rng, 0.13, 0.16)
        h = Shape(**{**h.__dict__, "color": color, "shape": shape, "rgb": COLORS[color],
                     "cx": float(rng.uniform(0.3, 0.7)), "cy": float(rng.uniform(0.3, 0.7)), "ident": next_id})
        next_id += 1
        ang = rng.uniform(0, 2 * math.pi)
        live.append([h, 0.022 * math.cos(ang), 0.022 * math.sin(ang), True])
    live.append(spawn(False))
    for f in range(frames):
        # the hero last, so nothing covers it
        order = [o for o in live if not o[3]] + [o for o in live if o[3]]
        if wide:
            shapes = [o[0] for o in order]
            img = render_wide(np.random.default_rng([seed, f, 18]), shapes, size, size, bg)
            scene = Scene(np.clip(img + 0.5, 0, 255).astype(np.uint8), shapes, masks_on_grid(shapes, size, size, size, size))
        else:
            scene = render(np.random.default_rng([seed, f]), [o[0] for o in order], size, bg=bg)
        keep = [i for i, m in enumerate(scene.masks) if m.sum() >= 12]
        yield f, Scene(scene.image, [scene.shapes[i] for i in keep], [scene.masks[i] for i in keep])
        moved = []
        for s, vx, vy, bounces in live:
            s = Shape(**{**s.__dict__, "cx": s.cx + vx, "cy": s.cy + vy})
            if bounces:
                if not s.r <= s.cx <= 1 - s.r:
                    vx = -vx
                    s.cx = min(max(s.cx, s.r), 1 - s.r)
                if not s.r <= s.cy <= 1 - s.r:
                    vy = -vy
                    s.cy = min(max(s.cy, s.r), 1 - s.r)
                moved.append([s, vx, vy, True])
            elif -s.r - 0.01 <= s.cx <= 1 + s.r + 0.01 and -s.r - 0.01 <= s.cy <= 1 + s.r + 0.01:
                moved.append([s, vx, vy, False])
        live = moved
        others = sum(1 for o in live if not o[3])
        if others == 0 or (others < 2 and rng.uniform() < 0.1):
            live.append(spawn(True))


def occlusion_clip(size: int = 168, frames: int = 14, seed: int = 28):
    """The toy tracker's demonstration clip (issue 28, item 5): a red circle (id 1) moves
    left to right and passes fully behind a larger green square (id 2, drawn over it) --
    wholly hidden on frames 6, 7 and 8, a sliver again on frame 9 -- while a blue triangle
    (id 3) drifts below.  Yields (frame index, Scene); the red circle's visible mask
    is scene.masks[shape index of ident 1] (empty while hidden)."""
    rng = np.random.default_rng(seed)
    bg = background(rng, size)
    for f in range(frames):
        red = Shape("circle", "red", 0.12 + 0.055 * f, 0.35, 0.10, 0.0, COLORS["red"], 1)
        square = Shape("square", "green", 0.50, 0.38, 0.27, 0.0, COLORS["green"], 2)
        tri = Shape("triangle", "blue", 0.78 - 0.02 * f, 0.78, 0.13, 0.3, COLORS["blue"], 3)
        yield f, render(np.random.default_rng([seed, f]), [tri, red, square], size, bg=bg)


def write_clip(out_dir: str, seed: int, size: int, frames: int, hero: tuple[str, str] | None = ("red", "circle"),
               wide: bool = False) -> None:
    from PIL import Image

    os.makedirs(out_dir, exist_ok=True)
    truth = {"seed": seed, "size": size, "hero": list(hero) if hero else None, "frames": []}
    if wide:
        truth["wide"] = True
    for f, scene in clip(seed, size, frames, hero, wide):
        Image.fromarray(scene.image).save(os.path.join(out_dir, f"frame-{f:03d}.png"), optimize=True)
        ids = np.zeros((size, size), dtype=np.uint8)
        for s, m in zip(scene.shapes, scene.masks):
            ids[m] = s.ident
        Image.fromarray(ids).save(os.path.join(out_dir, f"ids-{f:03d}.png"), optimize=True)
        truth["frames"].append([
            {"id": s.ident, "color": s.color, "shape": s.shape, "box": list(b)}
            for s, b in zip(scene.shapes, scene.boxes())
        ])
    with open(os.path.join(out_dir, "truth.json"), "w") as fh:
        json.dump(truth, fh, indent=1)
        fh.write("\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("image", help="write one generated image and its truth (JSON next to it)")
    a.add_argument("out")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--size", type=int, default=112)
    c = sub.add_parser("clip", help="write a clip of moving shapes with per-frame truth")
    c.add_argument("out_dir")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--size", type=int, default=112)
    c.add_argument("--frames", type=int, default=48)
    c.add_argument("--hero", default="red circle", help="the object on screen all along ('' for none)")
    c.add_argument("--wide", action="store_true", help="over a wide-world background (any hue, photos)")
    v = sub.add_parser("vocabulary", help="write the world's phrases, one per line")
    v.add_argument("out")
    args = ap.parse_args(argv)

    if args.cmd == "image":
        from PIL import Image

        scene = sample_scene(np.random.default_rng(args.seed), args.size)
        Image.fromarray(scene.image).save(args.out)
        truth = [{"color": s.color, "shape": s.shape, "box": list(b)} for s, b in zip(scene.shapes, scene.boxes())]
        with open(os.path.splitext(args.out)[0] + ".json", "w") as fh:
            json.dump(truth, fh, indent=1)
    elif args.cmd == "clip":
        hero = tuple(args.hero.split()) if args.hero else None
        if hero is not None and (len(hero) != 2 or hero[0] not in COLORS or hero[1] not in SHAPES):
            ap.error(f"--hero: {args.hero!r} is not '<colour> <shape>'")
        write_clip(args.out_dir, args.seed, args.size, args.frames, hero, args.wide)
    else:
        with open(args.out, "w") as fh:
            fh.write("\n".join(vocabulary()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

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

Deterministic for a given seed; needs only numpy and Pillow.
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


def sample_prompts(rng: np.random.Generator, scene: Scene, n: int, p_negative: float = 0.4,
                   balanced_negatives: bool = False, uniform_positives: bool = False) -> list[str]:
    """n prompts for a scene: positives name a present object (colour + shape, shape,
    or colour + 'shape'); negatives name nothing present, often sharing a colour or a
    shape with something that is.  With ``balanced_negatives`` the negative's form
    (colour + shape, shape, colour) is drawn first, uniformly among the forms that
    have an absent phrase: drawn by phrase, shape-only negatives are rare (3 of 23
    phrases, and often all three shapes are present).  Positives are colour + shape
    half of the time, else shape or colour alone; ``uniform_positives`` draws the
    three forms equally."""
    vocab = vocabulary()
    absent = [p for p in vocab if not scene.truth(p)]
    out = []
    for _ in range(n):
        if absent and balanced_negatives and rng.uniform() < p_negative:
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
            s = scene.shapes[int(rng.integers(len(scene.shapes)))]
            form = rng.uniform()
            cut = (1 / 3, 2 / 3) if uniform_positives else (0.5, 0.75)
            out.append(f"{s.color} {s.shape}" if form < cut[0] else s.shape if form < cut[1] else f"{s.color} shape")
    return out


# --- clips ---------------------------------------------------------------------------------


def clip(seed: int, size: int = 112, frames: int = 48, hero: tuple[str, str] | None = ("red", "circle")):
    """Yield (frame index, Scene with ids) for a clip of moving shapes over a fixed
    background.  The hero (colour, shape), if given, is id 1: it stays on screen the
    whole clip, bouncing off the edges, drawn on top, and is the only object of
    its colour, so that following it does not hinge on telling "red circle" from
    "red square" (the evaluation measures that).  Other shapes enter from an edge, cross, and leave; ids
    persist while an object is on screen."""
    rng = np.random.default_rng(seed)
    bg = background(rng, size)
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


def write_clip(out_dir: str, seed: int, size: int, frames: int, hero: tuple[str, str] | None = ("red", "circle")) -> None:
    from PIL import Image

    os.makedirs(out_dir, exist_ok=True)
    truth = {"seed": seed, "size": size, "hero": list(hero) if hero else None, "frames": []}
    for f, scene in clip(seed, size, frames, hero):
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
        write_clip(args.out_dir, args.seed, args.size, args.frames, hero)
    else:
        with open(args.out, "w") as fh:
            fh.write("\n".join(vocabulary()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""An evaluation set of shapes drawn by other code than the training world's.

    python3 engines/independent_shapes.py OUT_DIR [--images 300] [--size 336 | --size 640x360] [--seed 1]

The shapes world (shapes_world.py) generates what the toy model was trained
on; this file does not import it, shares none of its drawing code, and uses
its own palette, its own backgrounds and its own photos, so that the toy model
is measured on pictures nobody trained it for.  It draws what a new user would
try: Pillow ``ImageDraw`` polygons (circles, squares, triangles in red, green,
blue, yellow and white, radius 0.10-0.21 of the frame's shorter side, any
rotation, 1-3 of them, sometimes beside an orange, purple, brown or grey one)
over saturated smooth colour fields (sums of coloured Gaussian blobs, plus
noise), two-colour gradients or crops of scikit-image photos the training
world never uses (coins, colorwheel, motorcycle, logo, cells, horse,
microaneurysms); a shape whose background is near its own colour gets a dark
or light outline.  Drawn at 4x and reduced (anti-aliased edges); the truth is
the same polygon filled at 1x (what Pillow fills), minus later shapes.

Writes ``frame-NNNN.png``, ``ids-NNNN.png`` (0 background, k = object k) and
``truth.json``: per image its objects (colour, shape, box) and three prompts
(two naming something present, one naming nothing present) with the objects
each names.  Deterministic for a given seed; needs numpy and Pillow
(scikit-image for the photo backgrounds; without it, colour fields only).
"""

from __future__ import annotations

import argparse
import colorsys
import json
import math
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

PALETTE = {  # this file's own idea of the five colours (not the training world's values)
    "red": (225, 25, 45),
    "green": (30, 160, 70),
    "blue": (35, 90, 215),
    "yellow": (245, 215, 20),
    "white": (250, 250, 245),
}
OTHERS = {"orange": (250, 140, 20), "purple": (120, 40, 160), "brown": (110, 70, 35), "grey": (140, 140, 140)}
KINDS = ("circle", "square", "triangle")
PHOTOS = ("coins", "colorwheel", "stereo_motorcycle", "logo", "cell", "horse", "microaneurysms")
K = 4  # drawing supersample


def phrases() -> list[str]:
    return [f"{c} {k}" for c in PALETTE for k in KINDS] + list(KINDS) + [f"{c} shape" for c in PALETTE]


def names(obj: dict, phrase: str) -> bool:
    words = phrase.split()
    colour = next((w for w in words if w in PALETTE), None)
    kind = next((w for w in words if w in KINDS), None)
    return (colour is None or obj["color"] == colour) and (kind is None or obj["shape"] == kind)


def form(phrase: str) -> str:
    words = phrase.split()
    c, k = any(w in PALETTE for w in words), any(w in KINDS for w in words)
    return "colour shape" if c and k else "shape" if k else "colour"


_photos: dict[str, np.ndarray] = {}


def load_photo(name: str) -> np.ndarray | None:
    if name not in _photos:
        try:
            from skimage import data

            a = getattr(data, name)()
        except Exception:
            _photos[name] = None
            return None
        if isinstance(a, tuple):
            a = a[0]
        a = np.asarray(a)
        if a.dtype == bool:
            a = np.where(a, 230, 40).astype(np.uint8)
        if a.ndim == 2:
            a = np.stack([a] * 3, axis=2)
        _photos[name] = a[:, :, :3].astype(np.uint8)
    return _photos[name]


def colour_field(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Saturated, smoothly varying colour: a weighted mix of Gaussian blobs of random hues."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    acc = np.zeros((h, w, 3), np.float32)
    wsum = np.full((h, w), 1e-3, np.float32)
    for _ in range(int(rng.integers(3, 8))):
        hue, sat, val = rng.uniform(), rng.uniform(0.55, 1.0), rng.uniform(0.45, 1.0)
        col = np.array(colorsys.hsv_to_rgb(hue, sat, val), np.float32) * 255
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        s = rng.uniform(0.2, 0.6) * max(w, h)
        g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
        acc += g[..., None] * col
        wsum += g
    return acc / wsum[..., None]


def gradient(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    a = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 1), rng.uniform(0.3, 1)), np.float32) * 255
    b = np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.3, 1), rng.uniform(0.3, 1)), np.float32) * 255
    t = np.linspace(0, 1, w if rng.uniform() < 0.5 else h, dtype=np.float32)
    t = t[None, :, None] if t.shape[0] == w else t[:, None, None]
    return np.broadcast_to(a * (1 - t) + b * t, (h, w, 3)).copy()


def photo_crop(rng: np.random.Generator, w: int, h: int) -> np.ndarray | None:
    a = load_photo(PHOTOS[int(rng.integers(len(PHOTOS)))])
    if a is None:
        return None
    ph, pw = a.shape[:2]
    cw = int(min(pw, ph * w / h) * rng.uniform(0.4, 1.0))
    ch = int(cw * h / w)
    x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    return np.asarray(Image.fromarray(a[y0 : y0 + ch, x0 : x0 + cw]).resize((w, h), Image.BICUBIC), np.float32)


def polygon(kind: str, cx: float, cy: float, r: float, angle: float, scale: float = 1.0) -> list[tuple[float, float]]:
    """Vertices in pixels (circle: 96-gon)."""
    n = {"circle": 96, "square": 4, "triangle": 3}[kind]
    start = angle + (math.pi / 4 if kind == "square" else -math.pi / 2 if kind == "triangle" else 0)
    return [((cx + r * math.cos(start + 2 * math.pi * i / n)) * scale, (cy + r * math.sin(start + 2 * math.pi * i / n)) * scale)
            for i in range(n)]


def draw_image(rng: np.random.Generator, w: int, h: int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """(image uint8 HxWx3, ids uint8 HxW, objects)."""
    pick = rng.uniform()
    bg = photo_crop(rng, w, h) if pick < 0.4 else None
    if bg is None:
        bg = colour_field(rng, w, h) if pick < 0.85 else gradient(rng, w, h)
    bg = bg + rng.normal(0, rng.uniform(2, 10), bg.shape)
    big = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8)).resize((w * K, h * K), Image.BILINEAR)
    draw = ImageDraw.Draw(big)
    ids = Image.new("L", (w, h), 0)
    ids_draw = ImageDraw.Draw(ids)
    u = min(w, h)
    objects: list[dict] = []
    placed: list[tuple[float, float, float]] = []
    n = int(rng.integers(1, 4))
    extra = 1 if rng.uniform() < 0.3 else 0
    tries = 0
    while len(objects) < n + extra and tries < 200:
        tries += 1
        r = rng.uniform(0.10, 0.21) * u
        cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
        if any(math.hypot(cx - x, cy - y) < r + q + 4 for x, y, q in placed):
            continue
        placed.append((cx, cy, r))
        other = len(objects) >= n
        colour = list(OTHERS if other else PALETTE)[int(rng.integers(4 if other else 5))]
        base = (OTHERS if other else PALETTE)[colour]
        rgb = tuple(int(np.clip(v + rng.integers(-12, 13), 0, 255)) for v in base)
        kind = KINDS[int(rng.integers(3))]
        angle = rng.uniform(0, 2 * math.pi)
        under = bg[int(max(0, cy - r)) : int(cy + r), int(max(0, cx - r)) : int(cx + r)].reshape(-1, 3).mean(0)
        outline = None
        if np.abs(under - np.array(rgb)).max() < 70 or rng.uniform() < 0.2:
            outline = (20, 20, 20) if np.mean(rgb) > 100 else (235, 235, 235)
        draw.polygon(polygon(kind, cx, cy, r, angle, K), fill=rgb, outline=outline, width=K * 2 if outline else 0)
        ident = len(objects) + 1
        ids_draw.polygon(polygon(kind, cx, cy, r, angle), fill=ident)
        objects.append({"id": ident, "color": colour, "shape": kind})
    img = np.asarray(big.resize((w, h), Image.BOX))
    ids_a = np.asarray(ids)
    for o in objects:
        ys, xs = np.nonzero(ids_a == o["id"])
        o["box"] = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
    return img, ids_a, objects


def prompts_for(rng: np.random.Generator, objects: list[dict]) -> list[str]:
    """Two prompts naming a present object (colour + shape, shape, colour: equally likely),
    one naming nothing present (sharing a colour or a shape with something present when one can)."""
    named = [o for o in objects if o["color"] in PALETTE]
    out = []
    for _ in range(2):
        o = named[int(rng.integers(len(named)))]
        f = int(rng.integers(3))
        out.append(f"{o['color']} {o['shape']}" if f == 0 else o["shape"] if f == 1 else f"{o['color']} shape")
    absent = [p for p in phrases() if not any(names(o, p) for o in objects)]
    near = [p for p in absent if any(w in (o["color"], o["shape"]) for o in named for w in p.split())]
    pool = near if near and rng.uniform() < 0.7 else absent
    out.append(pool[int(rng.integers(len(pool)))])
    return out


def write_set(out_dir: str, images: int, w: int, h: int, seed: int) -> dict:
    os.makedirs(out_dir, exist_ok=True)
    doc = {"seed": seed, "width": w, "height": h, "images": []}
    for i in range(images):
        rng = np.random.default_rng([seed, w, h, i])
        img, ids, objects = draw_image(rng, w, h)
        Image.fromarray(img).save(os.path.join(out_dir, f"frame-{i:04d}.png"))
        Image.fromarray(ids).save(os.path.join(out_dir, f"ids-{i:04d}.png"))
        ps = prompts_for(rng, objects)
        doc["images"].append({"frame": f"frame-{i:04d}.png", "ids": f"ids-{i:04d}.png", "objects": objects,
                              "prompts": [{"prompt": p, "objects": [o["id"] for o in objects if names(o, p)]} for p in ps]})
    with open(os.path.join(out_dir, "truth.json"), "w") as fh:
        json.dump(doc, fh, indent=1)
        fh.write("\n")
    return doc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--size", default="336", help="N (N x N) or WxH")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    w, h = (int(v) for v in a.size.split("x")) if "x" in a.size else (int(a.size),) * 2
    write_set(a.out_dir, a.images, w, h, a.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())

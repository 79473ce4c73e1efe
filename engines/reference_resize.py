#!/usr/bin/env python3
"""Bit-exact NumPy model of the image resize Sam3ImageProcessor does.

Sam3ImageProcessor (transformers 5.x, torchvision backend) resizes the uint8 RGB
image with ``torchvision.transforms.v2.functional.resize(..., BILINEAR,
antialias=True)``, which on a uint8 CPU tensor runs PyTorch's uint8 antialiased
bilinear kernel (a port of Pillow-SIMD's ``ImagingResample``): separable,
fixed-point, uint8 -> uint8.  This file is the reference for the Rust port;
``python engines/reference_resize.py`` checks it against torchvision.

Algorithm, per axis (in_size -> out_size):

    scale   = in_size / out_size
    support = scale if scale >= 1 else 1.0          # bilinear: interp_size/2 = 1, widened when down-scaling
    inv     = 1/scale if scale >= 1 else 1.0
    for each output index i:
        center = scale * (i + 0.5)
        xmin   = max(int(center - support + 0.5), 0)          # int() truncates toward zero
        xmax   = min(int(center + support + 0.5), in_size)
        w_j    = tri((j + xmin - center + 0.5) * inv), j = 0 .. xmax-xmin-1, tri(x) = max(0, 1 - |x|)
        w_j   /= sum(w)                                      # float64
    precision = largest p < 22 with int(0.5 + max_all_w * 2^(p+1)) < 2^15 ... (see _int16_weights)
    w16_j   = int(0.5 + w_j * 2^precision)  (weights are >= 0 here)
    out     = clamp((2^(precision-1) + sum_j w16_j * in[xmin+j]) >> precision, 0, 255)

The horizontal pass (width) runs first, into a uint8 image of out_width x in_height;
then the vertical pass (height).  A pass whose size does not change is skipped.
Normalisation afterwards (float32): pixel = (u8 - 127.5) / 127.5, which equals
(u8 * rescale_factor - mean) / std with mean = std = 0.5 (the processor fuses
the two into mean' = 0.5 * 255 and std' = 0.5 * 255).
"""

from __future__ import annotations

import numpy as np


def _weights(in_size: int, out_size: int):
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    bounds, weights = [], []
    for i in range(out_size):
        center = scale * (i + 0.5)
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size)
        x = (np.arange(xmax - xmin, dtype=np.float64) + xmin - center + 0.5) * inv
        w = np.maximum(0.0, 1.0 - np.abs(x))
        total = w.sum()
        if total != 0.0:
            w = w / total
        bounds.append((xmin, xmax))
        weights.append(w)
    return bounds, weights


def _int16_weights(weights):
    w_max = max(float(w.max()) for w in weights if w.size)
    precision = 0
    while precision < 22:
        if int(0.5 + w_max * (1 << (precision + 1))) >= (1 << 15):
            break
        precision += 1
    out = [np.where(w < 0, np.trunc(-0.5 + w * (1 << precision)), np.trunc(0.5 + w * (1 << precision))).astype(np.int64)
           for w in weights]
    return out, precision


def _pass(img: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """Resize uint8 HxWxC ``img`` along axis 0 (height) or 1 (width)."""
    in_size = img.shape[axis]
    if in_size == out_size:
        return img
    bounds, weights = _weights(in_size, out_size)
    w16, precision = _int16_weights(weights)
    src = np.moveaxis(img, axis, 0).astype(np.int64)
    out = np.empty((out_size,) + src.shape[1:], dtype=np.int64)
    for i, ((lo, hi), w) in enumerate(zip(bounds, w16)):
        acc = (1 << (precision - 1)) + np.tensordot(w, src[lo:hi], axes=(0, 0))
        out[i] = acc >> precision
    out = np.clip(out, 0, 255).astype(np.uint8)
    return np.moveaxis(out, 0, axis)


def resize_uint8(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxWx3 uint8 -> height x width x 3 uint8, as Sam3ImageProcessor resizes."""
    return _pass(_pass(img, width, 1), height, 0)


def preprocess(img: np.ndarray, size: int) -> np.ndarray:
    """HxWx3 uint8 RGB -> [1, 3, size, size] float32 pixel_values."""
    u8 = resize_uint8(img, size, size)
    x = (u8.astype(np.float32) - np.float32(127.5)) / np.float32(127.5)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


if __name__ == "__main__":
    import torch
    import torchvision.transforms.v2.functional as tvF

    rng = np.random.default_rng(0)
    sizes = [(301, 207, 112, 112), (201, 301, 112, 112), (169, 253, 112, 112), (480, 640, 1008, 1008),
             (1080, 1920, 1008, 1008), (97, 1003, 112, 112), (50, 60, 112, 112), (112, 200, 112, 112)]
    sizes += [tuple(int(v) for v in rng.integers(20, 700, 4)) for _ in range(12)]
    bad = 0
    for h, w, oh, ow in sizes:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img[: h // 2] = (np.arange(w)[None, :, None] * 7 % 256).astype(np.uint8)  # some structure
        ref = tvF.resize(torch.from_numpy(img).permute(2, 0, 1).contiguous(), [oh, ow],
                         interpolation=tvF.InterpolationMode.BILINEAR, antialias=True).permute(1, 2, 0).numpy()
        mine = resize_uint8(img, oh, ow)
        n = int((ref != mine).sum())
        bad += n
        print(f"{h}x{w} -> {oh}x{ow}: {n} of {ref.size} values differ (max {int(np.abs(ref.astype(int) - mine).max())})")
    print("OK: bit-exact" if bad == 0 else f"MISMATCH: {bad} values differ")

#!/usr/bin/env python3
"""NumPy model of Sam3Processor.post_process_instance_segmentation (transformers
5.23), the reference for the Rust port, plus a parity check of the tiny fixture.

    python engines/reference_postprocess.py [BUNDLE_DIR]

checks, for every golden case of BUNDLE_DIR (default tests/fixtures/tiny-sam3):
  1. reference_resize.preprocess(png) == golden pixel_values (bit-exact),
  2. the ONNX engines (ONNX Runtime, CPU) on the golden inputs vs the golden
     PyTorch outputs (max abs diff per tensor),
  3. this post-processing on the golden PyTorch outputs == golden results
     (scores, boxes bit-exact up to float32 rounding, masks pixel-exact),
  4. this post-processing on the ONNX outputs vs golden results (what a port
     running the ONNX engines sees: count of differing mask pixels).

Steps of post_process_instance_segmentation(outputs, threshold, mask_threshold,
target_sizes=[(H, W)] * batch), per prompt b, all float32:

  1. scores = sigmoid(pred_logits[b]) * sigmoid(presence_logits[b, 0])          [Q]
  2. probs  = sigmoid(pred_masks[b])                                             [Q, M, M]
  3. boxes  = pred_boxes[b] * [W, H, W, H]   (normalised x1y1x2y2 -> pixels; no clamping)
  4. keep   = scores > threshold              (strict; query order kept: no sort, no top-k, no NMS)
  5. probs[keep] resized M x M -> H x W: bilinear, align_corners=False, NO antialias
     (torch.nn.functional.interpolate(mode="bilinear")), on the probabilities
     (after the sigmoid, not on the logits)
  6. masks  = (resized > mask_threshold)      (strict), as 0/1
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return (np.float32(1.0) / (np.float32(1.0) + np.exp(-x))).astype(np.float32)


def _src_index(out_size: int, in_size: int):
    """torch upsample_bilinear2d, align_corners=False: source index and weights."""
    scale = np.float32(in_size) / np.float32(out_size)
    dst = np.arange(out_size, dtype=np.float32)
    src = scale * (dst + np.float32(0.5)) - np.float32(0.5)
    src = np.maximum(src, np.float32(0.0))
    i0 = src.astype(np.int64)                      # floor, src >= 0
    i1 = np.minimum(i0 + 1, in_size - 1)
    l1 = (src - i0.astype(np.float32)).astype(np.float32)
    l0 = (np.float32(1.0) - l1).astype(np.float32)
    return i0, i1, l0, l1


def resize_bilinear(x: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """[N, h, w] float32 -> [N, out_h, out_w], as F.interpolate(bilinear, align_corners=False)."""
    n, h, w = x.shape
    y0, y1, ly0, ly1 = _src_index(out_h, h)
    x0, x1, lx0, lx1 = _src_index(out_w, w)
    a = x[:, y0][:, :, x0]
    b = x[:, y0][:, :, x1]
    c = x[:, y1][:, :, x0]
    d = x[:, y1][:, :, x1]
    # torch: h0lambda * (w0lambda * a + w1lambda * b) + h1lambda * (w0lambda * c + w1lambda * d)
    top = lx0[None, None, :] * a + lx1[None, None, :] * b
    bot = lx0[None, None, :] * c + lx1[None, None, :] * d
    return (ly0[None, :, None] * top + ly1[None, :, None] * bot).astype(np.float32)


def post_process(pred_logits, pred_boxes, pred_masks, presence_logits, threshold, mask_threshold, height, width):
    results = []
    for b in range(pred_logits.shape[0]):
        scores = sigmoid(pred_logits[b]) * sigmoid(presence_logits[b, 0])
        probs = sigmoid(pred_masks[b])
        boxes = (pred_boxes[b].astype(np.float32) * np.array([width, height, width, height], np.float32)).astype(np.float32)
        keep = scores > np.float32(threshold)
        m = resize_bilinear(probs[keep], height, width) if keep.any() else np.zeros((0, height, width), np.float32)
        results.append({"scores": scores[keep], "boxes": boxes[keep], "masks": (m > np.float32(mask_threshold)).astype(np.uint8)})
    return results


def main() -> int:
    from PIL import Image
    from safetensors.numpy import load_file

    import export_sam3
    import reference_resize

    bundle = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(HERE), "tests", "fixtures", "tiny-sam3")
    golden = os.path.join(bundle, "golden")
    import tomllib

    with open(os.path.join(bundle, "bundle.toml"), "rb") as f:
        size = tomllib.load(f)["preprocess"]["image_size"]
    sessions = export_sam3.ort_sessions(bundle, 2)
    ok = True
    for case in json.load(open(os.path.join(golden, "cases.json"))):
        g = load_file(os.path.join(golden, case["case"] + ".safetensors"))
        img = np.asarray(Image.open(os.path.join(golden, case["image"])).convert("RGB"))
        h, w = case["image_height"], case["image_width"]
        assert img.shape == (h, w, 3)
        pv = reference_resize.preprocess(img, size)
        pv_diff = float(np.abs(pv - g["pixel_values"]).max())
        onnx = export_sam3.run_onnx(sessions, g["pixel_values"], g["input_ids"], g["attention_mask"])
        diffs = {k: float(np.abs(onnx[k] - g[k]).max()) for k in onnx}
        print(f"{case['case']}: pixel_values max|diff| {pv_diff:g}; ONNX vs PyTorch max|diff|: "
              + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()))
        ok &= pv_diff == 0.0 and max(diffs.values()) < 1e-4
        for src_name, src in (("golden PyTorch outputs", g), ("ONNX outputs", onnx)):
            res = post_process(src["pred_logits"], src["pred_boxes"], src["pred_masks"], src["presence_logits"],
                               case["threshold"], case.get("mask_threshold", 0.5), h, w)
            for p, r in enumerate(res):
                gs, gb, gm = g[f"result_{p}_scores"], g[f"result_{p}_boxes"], g[f"result_{p}_masks"]
                if r["scores"].shape != gs.shape:
                    print(f"  prompt {p} from {src_name}: kept {len(r['scores'])}, golden {len(gs)}  MISMATCH")
                    ok = False
                    continue
                ds = float(np.abs(r["scores"] - gs).max()) if gs.size else 0.0
                db = float(np.abs(r["boxes"] - gb).max()) if gb.size else 0.0
                dm = int((r["masks"] != gm).sum())
                print(f"  prompt {p} from {src_name}: kept {len(gs)}, scores max|diff| {ds:.1e}, "
                      f"boxes max|diff| {db:.1e} px, mask pixels differing {dm} of {gm.size}")
                if src is g:
                    ok &= ds <= 1e-6 and db <= 1e-4 and dm == 0
                else:
                    ok &= ds <= 1e-4 and db <= 1e-3
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Build the tiny SAM 3 test fixture: tests/fixtures/tiny-sam3/.

    .venv/bin/python engines/make_tiny_sam3.py [--out tests/fixtures/tiny-sam3]

1. A tiny ``Sam3Config`` (real Sam3Model architecture), fixed seed, random
   weights, with the heads initialised so that on the golden inputs the scores
   spread across (0, 1), threshold 0.5 keeps some queries but not all, and mask
   logits take both signs with spatial structure.  Saved as a transformers
   checkpoint in ``reference/`` (config.json, model.safetensors,
   preprocessor_config.json).
2. ``export_sam3.py reference/ OUT`` -> the three ONNX engines, tokenizer.json,
   bundle.toml (verified against PyTorch).
3. Golden inputs and PyTorch outputs in ``golden/`` (PNG photos, one
   ``<case>.safetensors`` per case, ``cases.json``).

Deterministic: the same versions of torch/transformers on a CPU give the same
files (weights bit-for-bit; golden outputs within 1e-6).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import export_sam3  # noqa: E402

SEED = 0
IMAGE_SIZE = 112
THRESHOLD = 0.5
MASK_THRESHOLD = 0.5

# the photos: skimage.data name, crop (top, bottom, left, right), saved size (width, height)
PHOTOS = {
    "astronaut": ("astronaut", (0, 480, 40, 370), (207, 301)),
    "coffee": ("coffee", (0, 400, 0, 600), (301, 201)),
    "chelsea": ("chelsea", (0, 300, 0, 451), (253, 169)),
}

CASES = [
    {"case": "astronaut_person", "photo": "astronaut", "prompts": ["a person"]},
    {"case": "coffee_cup", "photo": "coffee", "prompts": ["a cup of coffee"]},
    {"case": "chelsea_two_prompts", "photo": "chelsea", "prompts": ["cat", "a red ball"]},
    {"case": "astronaut_absent_first", "photo": "astronaut", "prompts": ["a red ball", "a person"]},
]

# presence logits the calibrated presence head aims at, per prompt (with random
# weights the presence token barely depends on the image, so only on the prompt):
# "a red ball" is absent everywhere, which gives golden cases with no instances
PRESENCE_TARGETS = {"a person": 0.4, "a cup of coffee": 0.2, "cat": 0.8, "a red ball": -2.5}
CALIBRATION_PROMPTS = ["a person", "a cup of coffee", "cat", "a red ball"]


def small_config(*, vit_hidden: int, vit_layers: int, global_attn: list[int], width: int, queries: int,
                 image_size: int = IMAGE_SIZE):
    """A small ``Sam3Config`` following ../shared/SAM3-NOTES.md's rules (ViT head size a
    multiple of 4, FPN width = DETR = mask decoder = geometry width, the 0.5 scale kept,
    32 text positions); CLIP text 32 wide, 2 layers. Used by the tiny fixture and the
    toy shapes-world model."""
    from transformers import Sam3Config

    return Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam3_vit_model", hidden_size=vit_hidden, intermediate_size=4 * vit_hidden,
                num_hidden_layers=vit_layers, num_attention_heads=4, image_size=image_size, patch_size=14,
                window_size=4, global_attn_indexes=global_attn, pretrain_image_size=56,
            ),
            fpn_hidden_size=width,
            scale_factors=[4.0, 2.0, 1.0, 0.5],
            backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
        ),
        text_config=dict(
            model_type="clip_text_model", vocab_size=49408, hidden_size=32, intermediate_size=128,
            projection_dim=32, num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=32,
            hidden_act="gelu",
        ),
        geometry_encoder_config=dict(hidden_size=width, num_layers=1, num_attention_heads=4,
                                     intermediate_size=2 * width),
        detr_encoder_config=dict(hidden_size=width, num_layers=2, num_attention_heads=4, intermediate_size=2 * width),
        detr_decoder_config=dict(hidden_size=width, num_layers=2, num_queries=queries, num_attention_heads=4,
                                 intermediate_size=2 * width),
        mask_decoder_config=dict(hidden_size=width, num_attention_heads=4),
    )


def tiny_config():
    return small_config(vit_hidden=64, vit_layers=2, global_attn=[1], width=32, queries=20)


def shape_heads(model) -> None:
    """Scale the random initialisation so the outputs are not degenerate
    (default init: |pred_logits| ~ 0.02, every score ~0.25, masks ~constant)."""
    import torch

    g = torch.Generator().manual_seed(1234)
    d = model.detr_decoder
    with torch.no_grad():
        # let text and image information dominate the decoder's residual stream
        model.text_projection.weight.mul_(5.0)
        for layer in d.layers:
            for att in (layer.text_cross_attn, layer.vision_cross_attn):
                att.v_proj.weight.mul_(6.0)
                att.o_proj.weight.mul_(6.0)
        for layer in model.detr_encoder.layers:
            layer.cross_attn.v_proj.weight.mul_(4.0)
            layer.cross_attn.o_proj.weight.mul_(4.0)
        # anchors spread over the image, distinct queries, boxes that move with the image
        rp = d.reference_points.weight
        rp[:, 0:2] = torch.randn(rp.shape[0], 2, generator=g) * 1.2
        rp[:, 2:4] = torch.randn(rp.shape[0], 2, generator=g) * 0.5 - 0.8
        d.query_embed.weight.copy_(torch.randn(d.query_embed.weight.shape, generator=g) * 0.5)
        d.box_head.layer3.weight.mul_(10.0)
        # presence MLP: set by calibrate_presence()
        # class scores: dot product of projected queries and pooled text
        model.dot_product_scoring.query_proj.weight.mul_(20.0)
        model.dot_product_scoring.text_proj.weight.mul_(20.0)
        # masks: mask embedding x pixel embedding; semantic head
        md = model.mask_decoder
        md.mask_embedder.layers[-1].weight.mul_(60.0)
        md.instance_projection.weight.mul_(60.0)
        md.semantic_projection.weight.mul_(100.0)


def calibrate_presence(model, processor, photos: dict) -> None:
    """Make the presence head a linear read-out of its (layer-normed) input and fit
    that read-out (ridge regression) so that the presence logit of each prompt is
    about PRESENCE_TARGETS[prompt] on the golden photos.  layer1/layer2 become identity
    maps shifted by +8 (the layer-normed input is bounded by sqrt(hidden) < 8, so
    both ReLUs stay linear), layer3 holds the fitted read-out."""
    import torch
    from PIL import Image

    head = model.detr_decoder.presence_head
    hidden = head.layer1.weight.shape[0]
    shift = 8.0
    assert hidden ** 0.5 < shift
    with torch.no_grad():
        head.layer1.weight.copy_(torch.eye(hidden))
        head.layer1.bias.fill_(shift)
        head.layer2.weight.copy_(torch.eye(hidden))
        head.layer2.bias.zero_()
    acts = []
    hook = model.detr_decoder.presence_layer_norm.register_forward_hook(lambda mod, i, o: acts.append(o.detach()))
    feats, targets = [], []
    with torch.no_grad():
        for name, arr in photos.items():
            enc = processor(images=Image.fromarray(arr), text=CALIBRATION_PROMPTS, return_tensors="pt")
            acts.clear()
            n = len(CALIBRATION_PROMPTS)
            model(pixel_values=enc["pixel_values"].expand(n, -1, -1, -1), input_ids=enc["input_ids"],
                  attention_mask=enc["attention_mask"])
            feats.append(acts[-1][:, 0, :].double() + shift)  # last decoder layer, presence token
            targets += [PRESENCE_TARGETS[p] for p in CALIBRATION_PROMPTS]
    hook.remove()
    x = torch.cat(feats)
    x = torch.cat([x, torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)
    y = torch.tensor(targets, dtype=torch.float64)
    lam = 1e-4
    w = torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1], dtype=x.dtype), x.T @ y)
    fit = x @ w
    print(f"[make_tiny] presence calibration: max |fit - target| = {float((fit - y).abs().max()):.3f}, "
          f"|w| = {float(w.norm()):.1f}", flush=True)
    with torch.no_grad():
        head.layer3.weight.copy_(w[:-1].float().unsqueeze(0))
        head.layer3.bias.copy_(w[-1:].float())


def make_photos(golden_dir: str) -> dict:
    """Crop and resize the skimage photos to small, odd, non-square sizes; save as
    PNG; return the pixels as read back from the PNG files."""
    import skimage.data
    from PIL import Image

    out = {}
    for name, (src, (t, b, l, r), (w, h)) in PHOTOS.items():
        arr = getattr(skimage.data, src)()[t:b, l:r]
        img = Image.fromarray(np.ascontiguousarray(arr)).convert("RGB").resize((w, h), Image.Resampling.LANCZOS)
        path = os.path.join(golden_dir, f"{name}.png")
        img.save(path, optimize=True)
        out[name] = np.asarray(Image.open(path).convert("RGB"))
        assert out[name].shape == (h, w, 3)
    return out


def write_golden(model, processor, photos: dict, golden_dir: str) -> list:
    import torch
    from PIL import Image
    from safetensors.numpy import save_file

    cases_json = []
    for c in CASES:
        arr = photos[c["photo"]]
        h, w = arr.shape[:2]
        prompts = c["prompts"]
        enc = processor(images=Image.fromarray(arr), text=prompts, return_tensors="pt")
        ref, out = export_sam3.torch_reference(model, enc["pixel_values"], enc["input_ids"], enc["attention_mask"])
        results = processor.post_process_instance_segmentation(
            out, threshold=THRESHOLD, mask_threshold=MASK_THRESHOLD, target_sizes=[(h, w)] * len(prompts)
        )
        tensors = {
            "pixel_values": enc["pixel_values"].numpy().astype(np.float32),
            "input_ids": enc["input_ids"].numpy().astype(np.int64),
            "attention_mask": enc["attention_mask"].numpy().astype(np.int64),
        }
        tensors.update({k: v.numpy().astype(np.float32) for k, v in ref.items()})
        scores_all = (out.pred_logits.sigmoid() * out.presence_logits.sigmoid()).numpy()
        summary = []
        for p, r in enumerate(results):
            tensors[f"result_{p}_scores"] = r["scores"].numpy().astype(np.float32)
            tensors[f"result_{p}_boxes"] = r["boxes"].numpy().astype(np.float32).reshape(-1, 4)
            tensors[f"result_{p}_masks"] = r["masks"].numpy().astype(np.uint8).reshape(-1, h, w)
            margin = float(np.min(np.abs(scores_all[p] - THRESHOLD)))
            summary.append({"prompt": prompts[p], "kept": int(r["scores"].numel()),
                            "score_margin_to_threshold": round(margin, 5),
                            "presence_logit": round(float(out.presence_logits[p, 0]), 4)})
        tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        save_file(tensors, os.path.join(golden_dir, f"{c['case']}.safetensors"))
        print(f"[make_tiny] golden {c['case']}: {summary}", flush=True)
        cases_json.append({
            "case": c["case"], "image": f"{c['photo']}.png", "prompts": prompts, "threshold": THRESHOLD,
            "mask_threshold": MASK_THRESHOLD, "image_width": int(w), "image_height": int(h),
            "kept": [s["kept"] for s in summary],
        })
    return cases_json


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="build tests/fixtures/tiny-sam3")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "tiny-sam3"))
    args = ap.parse_args(argv)

    import torch
    from transformers import Sam3ImageProcessor, Sam3Model, Sam3Processor

    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    out = args.out
    ref_dir = os.path.join(out, "reference")
    golden_dir = os.path.join(out, "golden")
    # this script owns the fixture: start clean so the export never sees a stale bundle
    export_sam3.reset_bundle_dir(out, [ref_dir, golden_dir])

    photos = make_photos(golden_dir)

    torch.manual_seed(SEED)
    config = tiny_config()
    config._attn_implementation = "eager"
    model = Sam3Model(config).eval()
    processor = Sam3Processor(
        image_processor=Sam3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=export_sam3.build_clip_tokenizer(),
    )
    shape_heads(model)
    calibrate_presence(model, processor, photos)
    model.save_pretrained(ref_dir)
    processor.image_processor.save_pretrained(ref_dir)
    n = sum(p.numel() for p in model.parameters())
    print(f"[make_tiny] saved the reference checkpoint ({n / 1e6:.2f} M parameters) to {ref_dir}", flush=True)

    rc = export_sam3.main([
        ref_dir, out, "--name", "tiny-sam3", "--licence", "MIT OR Apache-2.0 (random weights, no training data)",
        "--source", "tiny-sam3: random weights from engines/make_tiny_sam3.py (tests/fixtures/tiny-sam3/reference)",
        "--tolerance", "1e-4", "--no-int8",
    ])
    if rc != 0:
        return rc

    # golden outputs from the reloaded checkpoint, exactly as a user would load it
    model = Sam3Model.from_pretrained(ref_dir, attn_implementation="eager").eval()
    cases = write_golden(model, processor, photos, golden_dir)
    with open(os.path.join(golden_dir, "cases.json"), "w") as f:
        json.dump(cases, f, indent=2)
        f.write("\n")
    print(f"[make_tiny] fixture {out}: {export_sam3.tree_bytes(out) / 1e6:.2f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

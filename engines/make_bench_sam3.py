#!/usr/bin/env python3
"""Build the benchmark bundle: a random-weight SAM 3 big enough that the image
encoder dominates a frame, small enough that a frame takes about a second on a
2-core CPU.  Not committed: it lands in engines/work/bench/ (git-ignored).

    .venv/bin/python engines/make_bench_sam3.py [--out engines/work/bench] [--force]

The "medium" preset of SAM3-NOTES.md: the real ``Sam3Model`` architecture with
the full-width ViT (1024 wide, 16 heads, MLP 4736) cut to 8 layers at 504 px
(window 12, global attention in layers 3 and 7, pretrain size 168 so the
position embeddings tile 3x3), the CLIP text tower at full width cut to 4
layers, and the real FPN / DETR encoder / DETR decoder / mask decoder (256
wide, 6 + 6 layers, 200 queries, masks 144x144).  About 191 M parameters.

Random weights give every query the same near-zero score, so nothing would be
kept and post-processing would do no work.  ``shape_heads`` spreads the
queries (larger query embeddings, anchors spread over the image), scales the
score and mask heads, and fixes the presence logit so that on the benchmark
photo a handful of the 200 queries pass threshold 0.5 with masks of real
extent, as a trained model's would on a photo with a few objects.

1. The checkpoint (config.json, model.safetensors, preprocessor_config.json)
   goes to OUT/reference.
2. ``export_sam3.py OUT/reference OUT`` writes the three ONNX engines,
   tokenizer.json and bundle.toml and verifies them against PyTorch.

Idempotent: if OUT/bundle.toml and OUT/reference/model.safetensors exist and
OUT/.preset records this preset, nothing is done (``--force`` rebuilds).
About 3 minutes and 3.6 GB of memory on 2 cores (measured: 2 min 53 s;
the export of the three engines with verification is most of it).

``--tracker`` (default OUT engines/work/bench-video) builds the same detector
as a ``Sam3VideoModel``: SAM 3's full-size tracker (memory attention 4 layers,
7 memory frames, 16 object pointers, the real mask decoder and memory encoder)
at 504 px, the tracker's heads shaped so that objects stay "there" with masks
of real extent (``shape_tracker``), and the streaming loop's detection
thresholds lowered (``VIDEO_LOOP``) so that random-weight detections become
objects: the tracker bench (``samclipseg-bench --video``) then holds exactly N
objects by capping ``max_num_objects`` at N on both sides.  Exported with
``export_sam3.py --tracker`` (the four tracker engines, verified against
PyTorch).  Time and memory: see engines/BENCHMARK.md, "Tracker bench".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import export_sam3  # noqa: E402

SEED = 0
IMAGE_SIZE = 504
NAME = "bench-sam3-medium"
# Everything that decides the weights; a change here makes the script rebuild.
PRESET = {
    "name": NAME,
    "seed": SEED,
    "vit": {"hidden_size": 1024, "intermediate_size": 4736, "num_hidden_layers": 8, "num_attention_heads": 16,
            "image_size": IMAGE_SIZE, "patch_size": 14, "window_size": 12, "global_attn_indexes": [3, 7],
            "pretrain_image_size": 168},
    "text_layers": 4,
    "heads": {"query_embed_std": 3.0, "box_head": 3.0, "score": 4.0, "mask": 6.0, "presence_logit": 0.15},
}


# --tracker: the video preset (the detector above, plus SAM 3's tracker)
VIDEO_NAME = "bench-sam3-medium-video"
# Sam3VideoConfig numbers that differ from SAM 3's: thresholds at which the
# bench frames' detections give 25 to 27 objects after NMS (41 queries of 200
# above 0.65; the bench caps the count at N <= 16 on both sides), NMS at 0.7
# (near-duplicates only). Not lower: both sides' detector work grows with the
# detections (transformers' NMS IoU matrix is quadratic in them: 4.6 s of a
# busy frame with 127). Reconditioning and max_num_objects stay SAM 3's: the
# bench runs fewer than 16 frames and caps objects itself.
VIDEO_LOOP = {"score_threshold_detection": 0.65, "new_det_thresh": 0.65, "det_nms_thresh": 0.7}
VIDEO_PRESET = dict(PRESET, name=VIDEO_NAME,
                    heads=dict(PRESET["heads"], presence_logit=2.0),
                    loop=VIDEO_LOOP,
                    tracker={"object_score_bias": 2.0, "hypernetwork_scale": 20.0})


def video_config():
    """Sam3VideoConfig: bench_config() as the detector, SAM 3's default tracker at 504 px."""
    from transformers import Sam3VideoConfig

    det = bench_config()
    tracker = dict(vision_config=det.vision_config.to_dict(), image_size=IMAGE_SIZE)
    return Sam3VideoConfig(detector_config=det.to_dict(), tracker_config=tracker,
                           low_res_mask_size=4 * IMAGE_SIZE // PRESET["vit"]["patch_size"], **VIDEO_LOOP)


def shape_tracker(model) -> None:
    """Random tracker heads give an object score logit near 0 (a coin flip
    between "there" and "occluded") and mask logits within +-0.1: bias the
    object score to "there" (a constant logit, above high_conf_thresh) and
    scale the mask hypernetworks so that masks have real extent, as a trained
    tracker's would for objects in view."""
    import torch

    t = VIDEO_PRESET["tracker"]
    md = model.tracker_model.mask_decoder
    with torch.no_grad():
        last = md.pred_obj_score_head.proj_out
        last.weight.zero_()
        last.bias.fill_(t["object_score_bias"])
        for mlp in md.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(t["hypernetwork_scale"])


def bench_config():
    """Sam3Config() with the ViT and text tower cut down; the rest at full size."""
    from transformers import Sam3Config

    return Sam3Config(
        vision_config=dict(backbone_config=dict(model_type="sam3_vit_model", **PRESET["vit"])),
        text_config=dict(model_type="clip_text_model", num_hidden_layers=PRESET["text_layers"]),
    )


def shape_heads(model, preset=None) -> None:
    """Make queries distinct and the heads' outputs spread (see the module doc)."""
    import torch

    h = (preset or PRESET)["heads"]
    g = torch.Generator().manual_seed(1234)
    d = model.detr_decoder
    with torch.no_grad():
        rp = d.reference_points.weight
        rp[:, 0:2] = torch.randn(rp.shape[0], 2, generator=g) * 1.2
        rp[:, 2:4] = torch.randn(rp.shape[0], 2, generator=g) * 0.5 - 0.8
        d.query_embed.weight.copy_(torch.randn(d.query_embed.weight.shape, generator=g) * h["query_embed_std"])
        d.box_head.layer3.weight.mul_(h["box_head"])
        model.dot_product_scoring.query_proj.weight.mul_(h["score"])
        model.dot_product_scoring.text_proj.weight.mul_(h["score"])
        md = model.mask_decoder
        md.mask_embedder.layers[-1].weight.mul_(h["mask"])
        md.instance_projection.weight.mul_(h["mask"])
        # a constant presence logit: random weights make presence meaningless anyway
        d.presence_head.layer3.weight.zero_()
        d.presence_head.layer3.bias.fill_(h["presence_logit"])


def bench_photo():
    """The fixture's astronaut photo scaled to 1280x720, as the Rust bench uses it."""
    from PIL import Image

    path = os.path.join(ROOT, "tests", "fixtures", "tiny-sam3", "golden", "astronaut.png")
    return Image.open(path).convert("RGB").resize((1280, 720), Image.Resampling.BILINEAR)


def report_outputs(model, processor, threshold: float = 0.5) -> None:
    """Print how many queries the bench photo keeps at the threshold, so a preset change shows."""
    import torch

    enc = processor(images=bench_photo(), text=["a person", "a cat", "a red car"], return_tensors="pt")
    b = enc["input_ids"].shape[0]
    with torch.inference_mode():
        out = model(pixel_values=enc["pixel_values"].expand(b, -1, -1, -1), input_ids=enc["input_ids"],
                    attention_mask=enc["attention_mask"])
    scores = out.pred_logits.sigmoid() * out.presence_logits.sigmoid()
    kept = [int((s > threshold).sum()) for s in scores]
    m = out.pred_masks
    print(f"[make_bench] bench photo 1280x720: queries kept at {threshold} per prompt {kept} of {scores.shape[1]}; "
          f"max score {float(scores.max()):.3f}; mask logits [{float(m.min()):.1f}, {float(m.max()):.1f}]",
          flush=True)


def already_built(out: str, preset: dict) -> bool:
    stamp = os.path.join(out, ".preset")
    if not (os.path.isfile(os.path.join(out, "bundle.toml"))
            and os.path.isfile(os.path.join(out, "reference", "model.safetensors"))
            and os.path.isfile(stamp)):
        return False
    with open(stamp) as f:
        try:
            return json.load(f) == preset
        except json.JSONDecodeError:
            return False


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="build the benchmark bundle (random-weight medium SAM 3)")
    ap.add_argument("--out", default=None,
                    help="bundle directory (default engines/work/bench, with --tracker engines/work/bench-video)")
    ap.add_argument("--tracker", action="store_true",
                    help="a Sam3VideoModel with SAM 3's tracker, exported with the tracker engines (the tracker bench)")
    ap.add_argument("--force", action="store_true", help="rebuild even if the bundle is there")
    ap.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime threads (default 2)")
    args = ap.parse_args(argv)
    out = args.out or os.path.join(HERE, "work", "bench-video" if args.tracker else "bench")
    preset, name = (VIDEO_PRESET, VIDEO_NAME) if args.tracker else (PRESET, NAME)
    if not args.force and already_built(out, preset):
        print(f"[make_bench] {out} already holds {name}; nothing to do (--force rebuilds)", flush=True)
        return 0

    import torch
    from transformers import Sam3ImageProcessor, Sam3Model, Sam3Processor, Sam3VideoModel

    t0 = time.time()
    torch.set_num_threads(args.threads)
    # this script owns OUT: start clean, so the export never sees a stale bundle
    engines = ["text_encoder", "image_encoder", "decoder"] + list(export_sam3.export_sam3_tracker.TRACKER_ENGINES)
    for f in ["bundle.toml", ".preset", "tokenizer.json"] + [f"{e}.onnx{x}" for e in engines for x in ("", ".data")]:
        if os.path.exists(os.path.join(out, f)):
            os.remove(os.path.join(out, f))
    ref_dir = os.path.join(out, "reference")
    shutil.rmtree(ref_dir, ignore_errors=True)
    os.makedirs(ref_dir)

    torch.manual_seed(SEED)
    if args.tracker:
        config = video_config()
        config._attn_implementation = "eager"
        model = Sam3VideoModel(config).eval()
        shape_heads(model.detector_model, preset)
        shape_tracker(model)
        detector = model.detector_model
    else:
        config = bench_config()
        config._attn_implementation = "eager"
        model = detector = Sam3Model(config).eval()
        shape_heads(model)
    processor = Sam3Processor(
        image_processor=Sam3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}),
        tokenizer=export_sam3.build_clip_tokenizer(),
    )
    report_outputs(detector, processor, VIDEO_LOOP["new_det_thresh"] if args.tracker else 0.5)
    model.save_pretrained(ref_dir)
    processor.image_processor.save_pretrained(ref_dir)
    n = sum(p.numel() for p in model.parameters())
    print(f"[make_bench] saved the reference checkpoint ({n / 1e6:.1f} M parameters) to {ref_dir} "
          f"in {time.time() - t0:.0f} s", flush=True)
    del model

    rc = export_sam3.main([
        ref_dir, out, "--name", name, "--licence", "MIT OR Apache-2.0 (random weights, no training data)",
        "--source", f"{name}: random weights from engines/make_bench_sam3.py", "--threads", str(args.threads),
        "--no-int8",  # `make bench` runs quantize_bundle.py kind by kind
    ] + (["--tracker"] if args.tracker else []))
    if rc != 0:
        return rc
    with open(os.path.join(out, ".preset"), "w") as f:
        json.dump(preset, f, indent=1)
    print(f"[make_bench] bundle {out} built in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""The PyTorch side of the tracker bench (``samclipseg-bench --video``,
``make bench-video``; engines/BENCHMARK.md, "Tracker bench"): transformers'
``Sam3VideoModel`` in streaming mode, timed part by part on the frames the
Rust bench wrote, with exactly N live objects.

    .venv/bin/python engines/bench_video_reference.py BUNDLE_DIR --frames DIR
        [--objects 1,4,16] [--warmup 7] [--threads 2] [--prompt "a person"]
        [--attn sdpa|eager] --json OUT

Loads the bundle's reference checkpoint (BUNDLE_DIR/reference, a
``sam3_video`` checkpoint: engines/make_bench_sam3.py --tracker) in float32,
``torch.set_num_threads(THREADS)``, and for each N: a new
``Sam3VideoInferenceSession`` with the prompt, ``model.max_num_objects = N``
(the bench photo's detections pass the bundle's lowered thresholds, so the
first frame creates N objects and no later frame adds one; the same cap the
Rust side sets through ``VideoLimits::max_objects``), then every frame
``frame-NN.png`` of DIR in order through ``model(inference_session=...,
frame=pixel_values)`` under ``torch.inference_mode()``.  Preprocessing
(Sam3ImageProcessor) is done before the clock starts, as the Rust side times
the model only.  The object count after every frame is checked: not N is an
error (exit 3), never a silent figure.

Parts, by wrapping the model's own methods (each call's wall time added to
its part):

    backbone   detector_model.get_vision_features + get_vision_features_for_tracker
               (ViT, the detector's FPN and the tracker's neck: ours is one engine)
    detector   run_detection (DETR encoder/decoder, mask head, scores, NMS;
               the NMS alone, nms_masks, is in the JSON as "nms")
    propagate  run_tracker_propagation (memory attention + mask decoder per object,
               hole filling)
    tracker    the frame's forward minus backbone and detector: propagation, the
               association and update rules, the memory encoder, the outputs
    total      the whole forward(frame=...)

and the detector-only path on the same frames: get_vision_features, the
detector's forward and post_process_instance_segmentation (threshold 0.5).

NMS and the masks' hole filling use a hub kernel that cannot be fetched here
(transformers silently skips both without it); a CPU stand-in of the same
semantics is installed (vectorised: greedy NMS over the IoU matrix, 8-connected
component sizes), as for the tiny video fixture's goldens, so that PyTorch does
the work ours does.  Its time is inside ``detector`` / ``tracker``.

Writes every frame's parts and object count to OUT (JSON); progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import numpy as np  # noqa: E402

from bench_reference import reference_dir  # noqa: E402
from make_tiny_sam3_video import install_cv_utils  # noqa: E402

PARTS = ["backbone", "detector", "propagate", "tracker", "total"]


def log(msg: str) -> None:
    print(f"[bench_video_reference] {msg}", file=sys.stderr, flush=True)


class Clock:
    """Per-part wall time of the current frame, filled by wrapped methods."""

    def __init__(self):
        self.t = {}

    def wrap(self, obj, name: str, part: str) -> None:
        fn = getattr(obj, name)

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.t[part] = self.t.get(part, 0.0) + (time.perf_counter() - t0) * 1e3

        setattr(obj, name, timed)


def frame_paths(frames_dir: str) -> list[str]:
    names = sorted(f for f in os.listdir(frames_dir) if f.startswith("frame-") and f.endswith(".png"))
    if not names:
        raise SystemExit(f"bench_video_reference: error: {frames_dir!r} holds no frame-NN.png "
                         "(samclipseg-bench --video writes them)")
    return [os.path.join(frames_dir, n) for n in names]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="time transformers' Sam3VideoModel streaming, part by part")
    ap.add_argument("bundle")
    ap.add_argument("--frames", required=True, help="directory of frame-NN.png (the Rust bench's)")
    ap.add_argument("--objects", default="1,4,16", help="object counts N (default 1,4,16)")
    ap.add_argument("--warmup", type=int, default=7, help="frames per run not counted in the medians (default 7)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", default="a person")
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"],
                    help="attention implementation (default sdpa: PyTorch's fastest CPU path)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="the model's weights and arithmetic (default float32; bfloat16 where the CPU has it natively)")
    ap.add_argument("--json", required=True, help="write the timings here")
    a = ap.parse_args(argv)
    counts = [int(n) for n in a.objects.split(",") if n.strip()]
    if not counts or min(counts) < 1:
        raise SystemExit(f"bench_video_reference: error: --objects {a.objects!r}: positive counts expected")

    import torch
    import transformers
    from PIL import Image
    from transformers import Sam3ImageProcessor, Sam3VideoModel
    from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

    import export_sam3

    torch.set_num_threads(a.threads)
    ref = reference_dir(a.bundle)
    with open(os.path.join(ref, "config.json")) as f:
        if json.load(f).get("model_type") != "sam3_video":
            raise SystemExit(f"bench_video_reference: error: {ref} is not a sam3_video checkpoint "
                             "(build the bundle with engines/make_bench_sam3.py --tracker)")
    install_cv_utils()
    t0 = time.time()
    dtype = getattr(torch, a.dtype)
    model = Sam3VideoModel.from_pretrained(ref, attn_implementation=a.attn, dtype=dtype).eval()
    log(f"loaded {ref} ({a.attn}) in {time.time() - t0:.1f} s")
    image_processor = Sam3ImageProcessor.from_pretrained(ref)
    tokenizer = export_sam3.build_clip_tokenizer()
    enc = tokenizer(a.prompt, return_tensors="pt", padding="max_length", max_length=32)
    paths = frame_paths(a.frames)
    images = [np.array(Image.open(p).convert("RGB")) for p in paths]  # writable: torch.from_numpy warns otherwise
    pixels = [image_processor(images=im, return_tensors="pt").pixel_values.to(dtype) for im in images]
    if a.warmup >= len(pixels):
        raise SystemExit(f"bench_video_reference: error: --warmup {a.warmup} leaves none of the "
                         f"{len(pixels)} frames to time")

    clock = Clock()
    clock.wrap(model.detector_model, "get_vision_features", "backbone")
    clock.wrap(model, "get_vision_features_for_tracker", "backbone")
    clock.wrap(model, "run_detection", "detector")
    clock.wrap(model, "run_tracker_propagation", "propagate")
    # inside detector: the masks' IoU matrix and the stand-in's greedy NMS (in
    # the JSON and the progress lines, not in the bench's table)
    from transformers.models.sam3_video import modeling_sam3_video as msv

    clock.wrap(msv, "nms_masks", "nms")

    runs = {}
    with torch.inference_mode():
        # the detector-only path: the image model's frame on the same frames
        det = model.detector_model
        text = det.get_text_features(input_ids=enc.input_ids, attention_mask=enc.attention_mask, return_dict=True)
        frames = []
        for f, pv in enumerate(pixels):
            t = {}
            t0 = time.perf_counter()
            vision = det.get_vision_features(pixel_values=pv)
            t1 = time.perf_counter()
            out = det(vision_embeds=vision, text_embeds=text, attention_mask=enc.attention_mask)
            h, w = images[f].shape[:2]
            kept = image_processor.post_process_instance_segmentation(
                out, threshold=0.5, mask_threshold=0.5, target_sizes=[(h, w)])[0]
            t2 = time.perf_counter()
            t = {"backbone": (t1 - t0) * 1e3, "detector": (t2 - t1) * 1e3, "propagate": 0.0, "tracker": 0.0,
                 "total": (t2 - t0) * 1e3}
            frames.append({"objects": int(len(kept["scores"])), **t})
            log(f"detector-only frame {f}: " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()) + " ms")
        runs["detector-only"] = frames

        for n in counts:
            model.max_num_objects = n
            session = Sam3VideoInferenceSession(inference_device="cpu", dtype=dtype)
            session.add_prompt(a.prompt)
            session.prompt_input_ids[0] = enc.input_ids
            session.prompt_attention_masks[0] = enc.attention_mask
            frames = []
            for f, pv in enumerate(pixels):
                clock.t = {}
                t0 = time.perf_counter()
                out = model(inference_session=session, frame=pv[0])
                total = (time.perf_counter() - t0) * 1e3
                t = {p: clock.t.get(p, 0.0) for p in ("backbone", "detector", "propagate")}
                t["tracker"] = total - t["backbone"] - t["detector"]
                t["total"] = total
                t["nms"] = clock.t.get("nms", 0.0)
                live = len(out.object_ids)
                frames.append({"objects": live, **t})
                log(f"N={n} frame {f}: {live} objects; " + ", ".join(f"{k} {v:.0f}" for k, v in t.items()) + " ms")
                if live != n:
                    print(f"bench_video_reference: error: N={n}: frame {f} holds {live} objects, not {n}: the "
                          f"bundle's detections do not give {n} objects on these frames (lower its thresholds "
                          "in make_bench_sam3.py VIDEO_LOOP, or ask for fewer objects)", file=sys.stderr)
                    return 3
            runs[str(n)] = frames
            del session

    os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
    with open(a.json, "w") as f:
        json.dump({
            "torch": torch.__version__, "transformers": transformers.__version__,
            "python": platform.python_version(), "threads": a.threads, "attn": a.attn, "dtype": a.dtype,
            "checkpoint": ref, "prompt": a.prompt, "warmup": a.warmup, "frames": [os.path.basename(p) for p in paths],
            "runs": runs,
        }, f, indent=1)
    log(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Time the PyTorch reference of a bundle, stage by stage, as the Rust bench
times ours (tools/bench, `make bench`, runs this with --reference).

    .venv/bin/python engines/bench_reference.py BUNDLE_DIR [--threads 2] [--iters 10]
        [--image PHOTO] [--prompt "a person"] [--attn sdpa|eager] [--json OUT] [--serve]

Loads the bundle's reference checkpoint (BUNDLE_DIR/reference, else the
directory bundle.toml records as source_checkpoint) as a transformers
``Sam3Model`` in float32 with the chosen attention implementation (default
``sdpa``, PyTorch's fused attention and its fastest CPU path; ``eager`` is what
the ONNX export traces), sets ``torch.set_num_threads(THREADS)``, and times
under ``torch.inference_mode()`` passes of every stage in turn, after one
warm-up pass:

    tokenise        Sam3Processor(text=[prompt])                  (CLIP BPE, padded to 32)
    text_encoder    model.get_text_features(input_ids, attention_mask)
    preprocess      Sam3Processor(images=photo)                   (resize to S x S, normalise)
    image_encoder   model.get_vision_features(pixel_values)
    decoder         model(vision_embeds=..., text_embeds=..., attention_mask=...)   (one prompt)
    postprocess     processor.post_process_instance_segmentation(threshold=0.5, mask_threshold=0.5)

PHOTO defaults to the fixture's astronaut scaled to 1280x720 (the Rust bench
passes the PNG it uses itself).  Prints median and p90 per stage in ms and
writes them, with every run, to OUT as JSON.

With ``--serve`` it runs one pass per ``pass`` line on stdin and answers each
with a ``PASS {json}`` line: the Rust bench alternates its own passes with
these, so that both sides see the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

STAGES = ["tokenise", "text_encoder", "preprocess", "image_encoder", "decoder", "postprocess"]


def reference_dir(bundle: str) -> str:
    ref = os.path.join(bundle, "reference")
    if os.path.isfile(os.path.join(ref, "config.json")):
        return ref
    manifest = os.path.join(bundle, "bundle.toml")
    if not os.path.isfile(manifest):
        raise SystemExit(f"bench_reference: error: {bundle!r} has no bundle.toml: not a samclipseg bundle")
    with open(manifest, "rb") as f:
        src = tomllib.load(f).get("bundle", {}).get("source_checkpoint", "")
    if src and os.path.isfile(os.path.join(src, "config.json")):
        return src
    raise SystemExit(
        f"bench_reference: error: no reference checkpoint for {bundle!r}: neither {ref!r} nor the recorded "
        f"source_checkpoint {src!r} holds a config.json (build the bench bundle with engines/make_bench_sam3.py)"
    )


def p90(values: list[float]) -> float:
    s = sorted(values)
    return s[max(0, math.ceil(0.9 * len(s)) - 1)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="time the PyTorch reference of a bundle, stage by stage")
    ap.add_argument("bundle")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    ap.add_argument("--iters", type=int, default=10, help="timed runs per stage, after one warm-up (default 10)")
    ap.add_argument("--image", default=None, help="photo (default: the fixture astronaut scaled to 1280x720)")
    ap.add_argument("--prompt", default="a person")
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"], help="attention implementation (default sdpa)")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "autocast"],
                    help="fp32 (default); bf16: the model and its inputs in bfloat16; autocast: fp32 weights "
                         "under torch.autocast('cpu', bfloat16). The strongest CPU peers of samclipseg's "
                         "reduced precisions")
    ap.add_argument("--json", default=None, help="write the timings here")
    ap.add_argument("--serve", action="store_true",
                    help="after the warm-up, run one pass per 'pass' line on stdin and answer 'PASS {json}' "
                         "(the Rust bench interleaves its passes with ours); --iters is then ignored")
    a = ap.parse_args(argv)
    if a.iters < 1:
        raise SystemExit("bench_reference: error: --iters must be at least 1")

    import torch
    import transformers
    from PIL import Image
    from transformers import Sam3Model

    import export_sam3

    torch.set_num_threads(a.threads)
    ref = reference_dir(a.bundle)
    t0 = time.perf_counter()
    dtype = torch.bfloat16 if a.precision == "bf16" else torch.float32
    model = Sam3Model.from_pretrained(ref, attn_implementation=a.attn, dtype=dtype).eval()
    # autocast runs matrix products in bf16 on fp32 weights; "bf16" casts everything.
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if a.precision == "autocast" \
        else contextlib.nullcontext
    size = int(model.config.vision_config.backbone_config.image_size)
    processor = export_sam3.load_processor(ref, size)
    load_s = time.perf_counter() - t0
    if a.image:
        photo = Image.open(a.image).convert("RGB")
    else:
        path = os.path.join(ROOT, "tests", "fixtures", "tiny-sam3", "golden", "astronaut.png")
        photo = Image.open(path).convert("RGB").resize((1280, 720), Image.Resampling.BILINEAR)
    w, h = photo.size
    print(f"[bench_reference] {ref}: {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, image {size}, "
          f"attention {a.attn}, {a.precision}, {a.threads} threads, loaded in {load_s:.1f} s; photo {w}x{h}, "
          f"prompt {a.prompt!r}",
          flush=True)

    def as_float(out):
        # Post-processing takes the outputs as float (a no-op in fp32).
        for k, v in out.items():
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                out[k] = v.float()
        return out

    runs: dict[str, list[float]] = {s: [] for s in STAGES}
    kept = 0

    def one_pass() -> dict[str, float]:
        """Every stage once, on the same photo and prompt; ms per stage."""
        nonlocal kept
        t: dict[str, float] = {}

        def timed(stage, fn):
            t0 = time.perf_counter()
            r = fn()
            t[stage] = (time.perf_counter() - t0) * 1e3
            return r

        with torch.inference_mode(), autocast():
            enc_t = timed("tokenise", lambda: processor(text=[a.prompt], return_tensors="pt"))
            ids, mask = enc_t["input_ids"], enc_t["attention_mask"]
            text = timed("text_encoder", lambda: model.get_text_features(input_ids=ids, attention_mask=mask))
            # The pixels in the model's dtype belong to preprocessing.
            enc_i = timed("preprocess", lambda: processor(images=photo, return_tensors="pt")["pixel_values"].to(dtype))
            vision = timed("image_encoder", lambda: model.get_vision_features(pixel_values=enc_i))
            out = timed("decoder", lambda: model(vision_embeds=vision, text_embeds=text, attention_mask=mask))
            res = timed("postprocess", lambda: processor.post_process_instance_segmentation(
                as_float(out), threshold=a.threshold, mask_threshold=0.5, target_sizes=[(h, w)]))
        kept = int(res[0]["scores"].numel())
        return t

    def show(i, t, note=""):
        print(f"[bench_reference] pass {i}{note}: " + ", ".join(f"{s} {t[s]:.1f} ms" for s in STAGES), flush=True)

    show(0, one_pass(), " (warm-up)")
    if a.serve:
        # Interleaved with the caller's own passes: one pass per "pass" line on
        # stdin, answered by one "PASS {json}" line; "done" or EOF ends it.
        print("READY", flush=True)
        i = 0
        for line in sys.stdin:
            if line.strip() != "pass":
                break
            i += 1
            t = one_pass()
            for s_, v in t.items():
                runs[s_].append(v)
            print("PASS " + json.dumps(t), flush=True)
        if i == 0:
            raise SystemExit("bench_reference: error: --serve got no pass request")
    else:
        for i in range(1, a.iters + 1):
            t = one_pass()
            for s_, v in t.items():
                runs[s_].append(v)
            show(i, t)
    iters = len(runs["tokenise"])

    summary = {s: {"median_ms": statistics.median(v), "p90_ms": p90(v), "runs_ms": v} for s, v in runs.items()}
    print(f"[bench_reference] PyTorch {torch.__version__}, transformers {transformers.__version__}, "
          f"{iters} runs per stage, {kept} instance(s) kept at {a.threshold}:")
    for s in STAGES:
        print(f"  {s:14s} median {summary[s]['median_ms']:9.2f} ms   p90 {summary[s]['p90_ms']:9.2f} ms")
    if a.json:
        os.makedirs(os.path.dirname(os.path.abspath(a.json)), exist_ok=True)
        with open(a.json, "w") as f:
            json.dump({
                "bundle": os.path.abspath(a.bundle), "checkpoint": os.path.abspath(ref), "attention": a.attn,
                "precision": a.precision,
                "threads": a.threads, "iters": iters, "interleaved": a.serve, "torch": torch.__version__,
                "transformers": transformers.__version__, "python": platform.python_version(),
                "image": [w, h], "model_image_size": size, "prompt": a.prompt, "threshold": a.threshold,
                "kept": kept, "load_s": load_s, "stages": summary,
            }, f, indent=1)
            f.write("\n")
        print(f"[bench_reference] wrote {a.json}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

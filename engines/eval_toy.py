#!/usr/bin/env python3
"""Evaluate a shapes-world bundle through the Rust core library (not PyTorch).

    python3 engines/eval_toy.py [--bundle tests/fixtures/toy-shapes-sam3] [--images 500] [--json OUT]

Generates held-out images (seeds never used in training), three prompts per
image (two that name something present, one that names nothing present, often
sharing a colour or a shape with what is), runs them all through
``cargo run --example segment_batch`` at the bundle's default
threshold, and reports:

- mean IoU of each ground-truth object with its best kept mask (0 when none);
- recall at IoU 0.5 (objects with a kept mask of IoU >= 0.5);
- extra instances: kept masks on prompts with a match that overlap no
  ground-truth object (IoU < 0.5), per prompt;
- the share of no-match prompts that keep any instance;
- presence accuracy (presence score > 0.5 exactly when the prompt has a match).

Prints a table; writes the numbers as JSON.  Needs numpy and Pillow only.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import shapes_world as world  # noqa: E402

EVAL_SEED = 2026  # training draws from seeds (7, step); evaluation never does


def decode_rle(runs: list[int], w: int, h: int) -> np.ndarray:
    flat = np.zeros(w * h, dtype=bool)
    pos, value = 0, False
    for n in runs:
        if value:
            flat[pos : pos + n] = True
        pos += n
        value = not value
    return flat.reshape(h, w)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def make_jobs(folder: str, images: int, size: int, seed: int = EVAL_SEED):
    from PIL import Image

    scenes, jobs = [], []
    for i in range(images):
        rng = np.random.default_rng([seed, i])
        scene = world.sample_scene(rng, size)
        positives = world.sample_prompts(rng, scene, 2, p_negative=0.0)
        negative = world.sample_prompts(rng, scene, 1, p_negative=1.0)
        name = f"eval-{i:04d}.png"
        Image.fromarray(scene.image).save(os.path.join(folder, name))
        scenes.append(scene)
        jobs.append({"image": name, "prompts": positives + negative})
    with open(os.path.join(folder, "jobs.json"), "w") as fh:
        json.dump(jobs, fh)
    return scenes, jobs


def score(scenes, jobs, results) -> dict:
    ious, hits, extra, neg, neg_kept, pres_ok, n_prompts, n_pos = [], 0, 0, 0, 0, 0, 0, 0
    by_form: dict[str, dict[str, list]] = {}
    for scene, job, res in zip(scenes, jobs, results):
        w, h = res["width"], res["height"]
        for phrase, r in zip(job["prompts"], res["prompts"]):
            assert r["prompt"] == phrase
            truth = scene.truth(phrase)
            masks = [decode_rle(k["rle"], w, h) for k in r["instances"]]
            form = by_form.setdefault(world.phrase_form(phrase), {"recall": [], "no_match_kept": [], "presence": []})
            n_prompts += 1
            pres_ok += int((r["presence"] > 0.5) == bool(truth))
            form["presence"].append(int((r["presence"] > 0.5) == bool(truth)))
            if not truth:
                neg += 1
                neg_kept += int(bool(masks))
                form["no_match_kept"].append(int(bool(masks)))
                continue
            n_pos += 1
            gts = [scene.masks[o] for o in truth]
            for gt in gts:
                best = max((iou(m, gt) for m in masks), default=0.0)
                ious.append(best)
                hits += int(best >= 0.5)
                form["recall"].append(int(best >= 0.5))
            extra += sum(1 for m in masks if max(iou(m, gt) for gt in gts) < 0.5)
    mean = lambda v: round(float(np.mean(v)), 4) if v else None  # noqa: E731
    return {
        "by_form": {f: {"recall_at_0.5": mean(v["recall"]), "no_match_prompts_keeping_an_instance":
                        mean(v["no_match_kept"]), "presence_accuracy": mean(v["presence"]),
                        "prompts": len(v["presence"])} for f, v in sorted(by_form.items())},
        "images": len(scenes),
        "objects": len(ious),
        "prompts_with_match": n_pos,
        "prompts_without_match": neg,
        "mean_iou": float(np.mean(ious)) if ious else 0.0,
        "recall_at_0.5": hits / max(len(ious), 1),
        "extra_instances_per_prompt": extra / max(n_pos, 1),
        "no_match_prompts_keeping_an_instance": neg_kept / max(neg, 1),
        "presence_accuracy": pres_ok / max(n_prompts, 1),
    }


TARGETS = {"mean_iou": (">=", 0.80), "recall_at_0.5": (">=", 0.90), "no_match_prompts_keeping_an_instance": ("<=", 0.05)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=os.path.join(ROOT, "tests", "fixtures", "toy-shapes-sam3"))
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--json", default=None, help="write the numbers here (default: print only)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=EVAL_SEED,
                    help=f"image seeds (SEED, i); the reported test set is {EVAL_SEED}, use another to compare models")
    ap.add_argument("--release", action="store_true", help="build segment_batch in release mode (default: the dev profile the tests share)")
    args = ap.parse_args(argv)

    with open(os.path.join(args.bundle, "bundle.toml")) as fh:
        size = next(int(line.split("=")[1]) for line in fh if line.strip().startswith("image_size"))
    with tempfile.TemporaryDirectory(prefix="eval-toy-") as tmp:
        scenes, jobs = make_jobs(tmp, args.images, size, args.seed)
        out = os.path.join(tmp, "results.json")
        cmd = ["cargo", "run", "--quiet"] + (["--release"] if args.release else []) + ["--example", "segment_batch", "--",
               "--bundle", os.path.abspath(args.bundle), "--jobs", os.path.join(tmp, "jobs.json"),
               "--out", out, "--threads", str(args.threads)]
        subprocess.run(cmd, cwd=ROOT, check=True)
        with open(out) as fh:
            doc = json.load(fh)
    m = score(scenes, jobs, doc["results"])
    m["threshold"] = doc["threshold"]
    m["seed"] = args.seed
    m["bundle"] = os.path.relpath(os.path.abspath(args.bundle), ROOT)
    print(f"shapes-world evaluation through the Rust core: {m['images']} held-out images, threshold {m['threshold']}")
    print(f"{'metric':40s} {'value':>8s}  target")
    for k in ("mean_iou", "recall_at_0.5", "extra_instances_per_prompt", "no_match_prompts_keeping_an_instance",
              "presence_accuracy"):
        op, t = TARGETS.get(k, ("", None))
        ok = "" if t is None else (f"{op} {t}  " + ("met" if (m[k] >= t if op == ">=" else m[k] <= t) else "MISSED"))
        print(f"{k:40s} {m[k]:8.3f}  {ok}")
    print(f"({m['objects']} objects in {m['prompts_with_match']} prompts with a match, "
          f"{m['prompts_without_match']} prompts without)")
    print(f"{'by prompt form':16s} {'prompts':>8s} {'recall@0.5':>10s} {'no-match kept':>14s} {'presence acc':>13s}")
    for f, v in m["by_form"].items():
        cell = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
        print(f"{f:16s} {v['prompts']:8d} {cell(v['recall_at_0.5']):>10s} "
              f"{cell(v['no_match_prompts_keeping_an_instance']):>14s} {cell(v['presence_accuracy']):>13s}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(m, fh, indent=2)
            fh.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

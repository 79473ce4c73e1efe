#!/usr/bin/env python3
"""Time each engine of a bundle with ONNX Runtime on CPU.

    .venv/bin/python engines/bench_bundle.py BUNDLE_DIR [--threads 2] [--runs 3] [--prompts 1]

Prints the best and median wall time per engine (one image, --prompts prompts)
and the load average before and after, since other work on the machine skews it.
"""

import argparse
import os
import statistics
import sys
import time
import tomllib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_sam3  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--prompts", type=int, default=1)
    a = ap.parse_args()
    with open(os.path.join(a.bundle, "bundle.toml"), "rb") as f:
        s = tomllib.load(f)["preprocess"]["image_size"]
    print(f"load average before: {os.getloadavg()}", flush=True)
    t0 = time.perf_counter()
    sessions = export_sam3.ort_sessions(a.bundle, a.threads)
    print(f"sessions created in {time.perf_counter() - t0:.1f} s", flush=True)
    ids = np.full((a.prompts, 32), 49407, np.int64)
    ids[:, :4] = [49406, 320, 2533, 49407]
    mask = (np.arange(32)[None, :] < 4).astype(np.int64).repeat(a.prompts, 0)
    pv = np.random.default_rng(0).uniform(-1, 1, (1, 3, s, s)).astype(np.float32)
    times: dict = {}
    export_sam3.run_onnx(sessions, pv, ids, mask)  # warm-up
    for _ in range(a.runs):
        export_sam3.run_onnx(sessions, pv, ids, mask, times)
    for k, v in times.items():
        print(f"{k:14s} best {min(v):.3f} s  median {statistics.median(v):.3f} s  ({a.runs} runs, {a.threads} threads, "
              f"{a.prompts} prompt(s))", flush=True)
    print(f"load average after: {os.getloadavg()}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

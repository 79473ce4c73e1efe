#!/usr/bin/env python3
"""Build tests/fixtures/toy-shapes-video/ from the trained toy tracker (issue 28, item 5).

    .venv/bin/python engines/make_toy_video_fixture.py \
        [--checkpoint engines/work/toy-tracker/checkpoint] [--out tests/fixtures/toy-shapes-video]

1. ``export_sam3.py --tracker CHECKPOINT OUT``: the detector's three engines (the
   toy detector's weights: tests/fixtures/toy-shapes-sam3/reference, frozen while
   the tracker trained; the image encoder also gives the tracker's features), the
   four tracker engines, tokenizer.json, bundle.toml with its [tracker] table
   (transformers' Sam3VideoConfig defaults), each engine verified against PyTorch.
2. Every engine's weights stored as float16 where they are float16 values (all
   are: the checkpoint is float16) and verified again.
3. ``reference/``: the float16 Sam3VideoModel checkpoint the engines come from.
4. ``decoder.default_threshold`` and ``vocabulary.txt`` as in the toy image bundle
   (its calibrated threshold: the detector is the same).
5. ``golden/occlusion/``: shapes_world.occlusion_clip's 14 frames, and
   ``golden/occlusion.json``: engines/toy_tracker_demo.py's per-frame result
   (the SAM 3 loop and the overlap tracker on that clip).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import export_sam3  # noqa: E402
import make_tiny_sam3_video  # noqa: E402
import shapes_world as world  # noqa: E402
import toy_tracker_demo  # noqa: E402

TOY = os.path.join(ROOT, "tests", "fixtures", "toy-shapes-sam3")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", default=os.path.join(HERE, "work", "toy-tracker", "checkpoint"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "toy-shapes-video"))
    args = ap.parse_args(argv)
    out = args.out
    ref_dir, golden = os.path.join(out, "reference"), os.path.join(out, "golden")
    os.makedirs(out, exist_ok=True)
    export_sam3.reset_bundle_dir(out, [ref_dir, golden])
    for f in ("config.json", "model.safetensors", "preprocessor_config.json"):
        shutil.copy(os.path.join(args.checkpoint, f), ref_dir)

    rc = export_sam3.main([
        ref_dir, out, "--tracker", "--name", "toy-shapes-video",
        "--licence", "MIT OR Apache-2.0 (trained from scratch on generated shapes, no outside data)",
        "--source", "toy-shapes-video: the toy-shapes-sam3 detector + a tracker trained by "
                    "engines/train_toy_tracker.py on engines/shapes_world.py clips "
                    "(tests/fixtures/toy-shapes-video/reference)",
        "--tolerance", "1e-4",
        "--no-int8",  # the fixture stays small (the int8 variants are 5.3 MB; tests/fixtures/toy-shapes-sam3 has them)
    ])
    if rc != 0:
        return rc
    for f in sorted(os.listdir(out)):
        if f.endswith(".onnx"):
            before, after = make_tiny_sam3_video.store_weights_fp16(os.path.join(out, f))
            print(f"[make_toy_video] {f}: float16 weights, {before / 1e6:.1f} -> {after / 1e6:.1f} MB", flush=True)
    with open(os.path.join(ref_dir, "preprocessor_config.json")) as fh:
        import json

        size = json.load(fh)["size"]["height"]
    if not make_tiny_sam3_video.verify_again(ref_dir, out, size, "make_toy_video"):
        print("make_toy_video_fixture: error: the engines with float16-stored weights fail verification",
              file=sys.stderr)
        return 3

    # the detector is the toy image bundle's: its calibrated threshold and vocabulary
    with open(os.path.join(TOY, "bundle.toml"), "rb") as fh:
        thr = tomllib.load(fh)["decoder"]["default_threshold"]
    toml = os.path.join(out, "bundle.toml")
    lines = open(toml).read().splitlines(keepends=True)
    hits = [i for i, line in enumerate(lines) if line.startswith("default_threshold = ")]
    assert len(hits) == 1, hits
    lines[hits[0]] = f"default_threshold = {thr}\n"
    with open(toml, "w") as fh:
        fh.writelines(lines)
    shutil.copy(os.path.join(TOY, "vocabulary.txt"), out)
    assert world.vocabulary()  # the same world

    rc = toy_tracker_demo.main([out, "--json", os.path.join(golden, "occlusion.json"),
                                "--frames-dir", os.path.join(golden, "occlusion")])
    print(f"[make_toy_video] fixture {out}: {export_sam3.tree_bytes(out) / 1e6:.2f} MB; the demonstration "
          f"{'passes' if rc == 0 else 'FAILS (see golden/occlusion.json)'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

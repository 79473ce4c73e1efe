"""Build tests/fixtures/slow-sam3: a SAM 3 bundle of the real architecture
whose image encoder is slow on purpose (1008 px input, eight global-attention
ViT layers, about 2-4 s a frame on two CPU cores), with random weights.

The element's asynchronous tests need a run that is still going when they
change the prompt, seek or stop; the tiny bundle answers in milliseconds. Its
results mean nothing, so it has no golden outputs and no reference checkpoint
(rebuild it with this script: the seed makes it the same each time).

    .venv/bin/python engines/make_slow_sam3.py [--out tests/fixtures/slow-sam3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

import export_sam3  # noqa: E402
from make_tiny_sam3 import small_config  # noqa: E402

SEED = 0
IMAGE_SIZE = 1008
VIT_LAYERS = 8


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="build tests/fixtures/slow-sam3")
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "slow-sam3"))
    args = ap.parse_args(argv)

    import torch
    from transformers import Sam3ImageProcessor, Sam3Model

    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    export_sam3.reset_bundle_dir(args.out, [])
    config = small_config(vit_hidden=64, vit_layers=VIT_LAYERS, global_attn=list(range(VIT_LAYERS)),
                          width=32, queries=20, image_size=IMAGE_SIZE)
    config._attn_implementation = "eager"
    model = Sam3Model(config).eval()
    with tempfile.TemporaryDirectory() as ref_dir:
        model.save_pretrained(ref_dir)
        Sam3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}).save_pretrained(ref_dir)
        rc = export_sam3.main([
            ref_dir, args.out, "--name", "slow-sam3",
            "--licence", "MIT OR Apache-2.0 (random weights, no training data)",
            "--source", f"slow-sam3: random weights from engines/make_slow_sam3.py (seed {SEED})",
            "--tolerance", "1e-3", "--no-int8",
        ])
    if rc != 0:
        return rc
    print(f"[make_slow] fixture {args.out}: {export_sam3.tree_bytes(args.out) / 1e6:.2f} MB", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

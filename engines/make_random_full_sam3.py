#!/usr/bin/env python3
"""Save a full-size SAM 3 checkpoint with random weights (default Sam3Config):
the size and speed check of the export, no model download needed.

    .venv/bin/python engines/make_random_full_sam3.py engines/work/full-ckpt
    .venv/bin/python engines/export_sam3.py engines/work/full-ckpt engines/work/full \\
        --name sam3-random-full --licence "none (random weights)" --bench 2

About 3.4 GB on disk and ~6 GB of memory; engines/work/ is git-ignored.
"""

import os
import sys
import time

import torch
from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(0)
    t0 = time.time()
    config = Sam3Config()
    model = Sam3Model(config).eval()
    print(f"built Sam3Model(Sam3Config()) with {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters "
          f"in {time.time() - t0:.0f} s", flush=True)
    model.save_pretrained(out)
    Sam3ImageProcessor().save_pretrained(out)  # 1008 x 1008, the facebook/sam3 defaults
    print(f"saved to {out} in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

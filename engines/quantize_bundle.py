#!/usr/bin/env python3
"""int8 variants of a bundle's image encoder and decoder (issues 15 and 29).

    .venv/bin/python engines/quantize_bundle.py BUNDLE [--kinds static,dynamic]
        [--engines image_encoder[,decoder]] [--dynamic-engines image_encoder[,decoder]] [--photos GLOB ...]
        [--encoder-ops MatMul,Gemm] [--decoder-ops MatMul,Gemm,Conv] [--dynamic-ops MatMul,Gemm] [--score-delta 0.05]
        [--calibration N]

``export_sam3.py`` runs it (``main(argv)``) after every export unless
``--no-int8``: static and dynamic, default engines, ``--calibration 8``, in a
process that never loaded the PyTorch model.

Two kinds, for two kinds of CPU (src/model/precision.rs chooses at run time):

- ``static`` (variant ``int8``, ``NAME.int8.onnx``), for OpenVINO on CPUs with
  AMX-INT8 or VNNI: ONNX Runtime's static quantisation (``quantize_static``,
  QDQ format), weights int8 per output channel, activations int8 symmetric
  with ranges calibrated (MinMax) on photos run through the bundle's own fp32
  engines (the decoder on the image encoder's features of those photos and the
  text encoder's features of the bundle's vocabulary, or of a few generic
  phrases). By default only the image encoder, where a frame's time goes: on
  the medium bundle an int8 decoder was no faster than its fp32 file run in
  bf16, and its masks moved (IoU 0.89 with fp32's).
- ``dynamic`` (variant ``int8_dynamic``, ``NAME.int8_dynamic.onnx``), for ONNX
  Runtime's CPU provider on CPUs with AVX2 but no VNNI, where the static files
  through OpenVINO gain nothing: ``quantize_dynamic``, weights int8 per tensor,
  activations quantised to uint8 as each product runs (no calibration). Image
  encoder and decoder by default: on an AVX2-only EPYC both gain (the medium
  encoder 1.7x, the decoder 1.2x; engines/README.md, "int8 on AVX2").

The quantised operators are the weights' matrix products (and the static
decoder's convolutions), where the time goes; the rotary embedding's constant
0/+-1 products, attention's activation-by-activation products, normalisation,
softmax and the rest stay float. A kind not asked for keeps what
``bundle.toml`` records of it.

Each variant is then checked against fp32 on held-out photos with ONNX
Runtime's CPU provider, and recorded in ``bundle.toml`` as
``[engines.NAME.variants.KIND]`` only if it is within the tolerances below;
otherwise the script fails (exit 1) and the manifest is left as it was.

- image encoder: cosine similarity of every output with fp32 >= 0.998;
- decoder (its int8 file if there is one, else fp32) on the int8 encoder's
  features: cosine of ``pred_logits`` and ``pred_masks`` >= 0.99, and the
  score ``sigmoid(logit) * sigmoid(presence)`` of every query within 0.05.

bf16 needs no file: the OpenVINO execution provider runs the fp32 engines with
bf16 arithmetic on CPUs that have it. The static int8 files run there too,
their float parts in bf16 or fp32.

Progress goes to stdout, with the time and the process's peak resident
memory so far after each step; about a minute per kind for the medium
benchmark bundle on 2 cores (static: calibration), seconds for the toy bundle.
Memory: one ONNX Runtime session at a time (the fp32 image encoder's is freed
before the calibration builds its own), and the fp32 features of the
calibration photos are computed only for a static decoder, which calibrates
on them. The static kind's MinMax ranges come from ``calibrate`` (the numbers
``quantize_static``'s own calibrator computes, given to it as its calibration
cache: the toy bundle's static file is byte-identical either way), where ONNX
Runtime's session is the only copy of the weights and runs each reduction as
soon as its tensor exists. ``quantize_static``'s own calibration held two more
copies of the weights in Python and, in ONNX Runtime's default order, kept
every calibrated tensor alive through the run: at full size it went past the
24 GB of the build machine.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import resource
import sys
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import fuse_attention  # noqa: E402

DEFAULT_PHOTOS = [
    "tests/fixtures/tiny-sam3/golden/*.png",
    "tests/fixtures/independent-shapes/frame-*.png",
    "tests/fixtures/toy-shapes-sam3/golden/scene.png",
    "tests/fixtures/toy-shapes-sam3/golden/clip/frame-0[0-9]*.png",
]
GENERIC_PROMPTS = ["a person", "a dog", "a car", "a red ball", "a tree", "a cup", "a building"]
MARKER = "# Reduced-precision variants, written by engines/quantize_bundle.py."
IMAGE_COSINE = 0.998
DECODER_COSINE = 0.99
SCORE_DELTA = 0.05
# The dynamic variant's settings, chosen by measurement on an AVX2-only EPYC
# (engines/README.md, "int8 on AVX2").
DYNAMIC_PER_CHANNEL = False
DYNAMIC_ENGINES = "image_encoder,decoder"


def log(msg: str) -> None:
    print(f"[quantize] {msg}", flush=True)


def peak_gb() -> float:
    """This process's peak resident memory so far (Linux: ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def rss_gb() -> float:
    """This process's resident memory now (Linux), 0 where unknown."""
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 2**20
    except (OSError, StopIteration):
        return 0.0


def release_memory() -> None:
    """Collects what is unreachable and hands the freed heap back to the system
    (glibc keeps freed blocks under its mmap threshold, such as many of a
    session's or a PyTorch model's weights, resident until malloc_trim)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def load_manifest(bundle: str) -> tuple[str, dict]:
    import tomllib

    path = os.path.join(bundle, "bundle.toml")
    with open(path, "rb") as f:
        return path, tomllib.load(f)


def pixel_values(path: str, pre: dict) -> np.ndarray:
    """The photo as the image encoder takes it: stretched to the square input,
    rescaled and normalised as bundle.toml says."""
    size = int(pre["image_size"])
    img = Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR)
    x = np.asarray(img, np.float32) * float(pre["rescale_factor"])
    x = (x - np.array(pre["image_mean"], np.float32)) / np.array(pre["image_std"], np.float32)
    return x.transpose(2, 0, 1)[None].copy()


def session(path: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = os.cpu_count() or 2
    # Without ONNX Runtime's arena, what a run frees goes back to the system:
    # with it, 5.3 GB stayed resident after the full-size fp32 image encoder's
    # session was dropped, under the next session's.
    so.enable_cpu_mem_arena = False
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def prompts_of(bundle: str) -> list[str]:
    vocab = os.path.join(bundle, "vocabulary.txt")
    if os.path.exists(vocab):
        with open(vocab) as f:
            phrases = [l.strip() for l in f if l.strip() and not l.startswith("#")]
        if phrases:
            return phrases[:: max(1, len(phrases) // 12)][:12]
    return GENERIC_PROMPTS


def text_features(bundle: str, manifest: dict, prompts: list[str]) -> list[dict]:
    from tokenizers import Tokenizer

    t = manifest["text"]
    tok = Tokenizer.from_file(os.path.join(bundle, t["tokenizer"]))
    n, pad = int(t["context_length"]), int(t["pad_token_id"])
    enc = session(os.path.join(bundle, manifest["engines"]["text_encoder"]["file"]))
    out = []
    for p in prompts:
        ids = tok.encode(p).ids[:n]
        input_ids = np.full((1, n), pad, np.int64)
        input_ids[0, : len(ids)] = ids
        mask = np.zeros((1, n), np.int64)
        mask[0, : len(ids)] = 1
        feats = enc.run(None, {"input_ids": input_ids, "attention_mask": mask})[0]
        out.append({"text_features": feats, "attention_mask": mask})
    return out


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    d = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / d) if d > 0 else 1.0


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def rotation_matmuls(path: str) -> list[str]:
    """The MatMuls of the rotary embedding (export_sam3.rotate_pairwise_as_matmul):
    a constant square matrix of 0 and +-1. Kept float: they move no weights,
    and int8 there would only add error to the queries and keys."""
    import onnx
    from onnx import numpy_helper

    # The graph without its weights; only the square constants are read.
    m = onnx.load(path, load_external_data=False)
    consts = {i.name: i for i in m.graph.initializer}
    out = []
    for n in m.graph.node:
        if n.op_type != "MatMul" or n.input[1] not in consts:
            continue
        dims = list(consts[n.input[1]].dims)
        if len(dims) != 2 or dims[0] != dims[1]:
            continue
        b = numpy_helper.to_array(consts[n.input[1]], base_dir=os.path.dirname(path))
        if np.isin(b, (-1.0, 0.0, 1.0)).all():
            out.append(n.name)
    return out


def calibrate(src: str, feeds: list[dict], ops: list[str], cache: str) -> None:
    """MinMax ranges of the tensors that ``quantize_static`` calibrates (every
    float input and output of the ``ops`` nodes), written to ``cache`` as its
    calibration cache: the same numbers as its own MinMax calibration, without
    its two extra in-memory copies of the weights (the model it quantises and
    the calibrator's). The graph is read without its weights, a ReduceMin and a
    ReduceMax added per tensor, and saved beside SRC so that ONNX Runtime, the
    only holder of the weights here, finds SRC's external data; each input is
    run once and the ranges kept as running minima and maxima."""
    import onnx
    from onnx import TensorProto, helper
    from onnxruntime.quantization.calibrate import TensorsData, save_tensors_data

    m = onnx.shape_inference.infer_shapes(onnx.load(src, load_external_data=False))
    infos = {vi.name: vi for vi in m.graph.value_info}
    infos.update({o.name: o for o in m.graph.output})
    infos.update({i.name: i for i in m.graph.input})
    consts = {i.name for i in m.graph.initializer}
    tensors = sorted({
        name for n in m.graph.node if n.op_type in ops for name in (*n.input, *n.output)
        if name in infos and name not in consts and infos[name].type.HasField("tensor_type")
        and infos[name].type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16)
    })
    reduce = {}
    for i, name in enumerate(tensors):
        reduce[name] = []
        for op in ("ReduceMin", "ReduceMax"):
            out = f"calib_{i}_{op}"
            reduce[name].append(helper.make_node(op, [name], [out], keepdims=0, name=out))
            m.graph.output.append(helper.make_tensor_value_info(out, infos[name].type.tensor_type.elem_type, []))
    # Each reduction right after the node that makes its tensor (ONNX Runtime's
    # priority-based order, below, keeps to the graph's order among ready nodes).
    nodes = [r for i in m.graph.input if i.name in reduce for r in reduce[i.name]]
    for n in m.graph.node:
        nodes.append(n)
        nodes += [r for o in n.output if o in reduce for r in reduce[o]]
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    augmented = re.sub(r"\.onnx$", ".calibration.onnx", src)
    onnx.save(m, augmented)
    try:
        # Basic optimisations only (constant folding and the like, no fusions),
        # so that each tensor is the one the graph names; and the priority-based
        # order, which runs each reduction as soon as its tensor exists: in the
        # default order ONNX Runtime kept the calibrated tensors alive through
        # the run (past 12 GB on the first full-size input, and 21 GB before
        # the kernel stopped it; 6.3 GB this way, measured).
        so = ort.SessionOptions()
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        so.execution_order = ort.ExecutionOrder.PRIORITY_BASED
        sess = ort.InferenceSession(augmented, so, providers=["CPUExecutionProvider"])
        outputs = [f"calib_{i}_{op}" for i in range(len(tensors)) for op in ("ReduceMin", "ReduceMax")]
        lo = hi = None
        for feed in feeds:
            r = sess.run(outputs, feed)
            mins, maxs = np.array(r[0::2]).reshape(-1), np.array(r[1::2]).reshape(-1)
            lo = mins if lo is None else np.fmin(lo, mins)
            hi = maxs if hi is None else np.fmax(hi, maxs)
        del sess
        release_memory()
    finally:
        os.remove(augmented)
    ranges = {name: (lo[i : i + 1], hi[i : i + 1]) for i, name in enumerate(tensors)}
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, ranges), cache)


def quantize(src: str, dst: str, feeds: list[dict], ops: list[str]) -> None:
    import tempfile

    t = time.time()
    skip = rotation_matmuls(src)
    if skip:
        log(f"{os.path.basename(src)}: {len(skip)} rotary-embedding products stay float")
    with tempfile.TemporaryDirectory(prefix="quantize_bundle.") as tmp:
        cache = os.path.join(tmp, "ranges.json")
        calibrate(src, feeds, ops, cache)
        log(f"{os.path.basename(src)}: calibrated on {len(feeds)} inputs in {time.time() - t:.0f} s "
            f"(peak RSS {peak_gb():.1f} GB)")
        static(src, dst, ops, skip, cache)
    log(f"wrote {os.path.relpath(dst)} ({os.path.getsize(dst) / 1e6:.1f} MB) in {time.time() - t:.0f} s "
        f"({len(feeds)} calibration inputs; peak RSS {peak_gb():.1f} GB)")


def static(src: str, dst: str, ops: list[str], skip: list[str], cache: str) -> None:
    """ONNX Runtime's static quantisation with the ranges of ``calibrate``."""
    quantize_static(
        src,
        dst,
        None,
        calibration_cache_path=cache,
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QInt8,
        op_types_to_quantize=ops,
        nodes_to_exclude=skip,
        calibrate_method=CalibrationMethod.MinMax,
        # Weights' products only: quantising attention's activation-by-activation
        # products makes OpenVINO carry int8 through the rotary position
        # embedding (concat, split, multiply) on slow reference kernels.
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "MatMulConstBOnly": True},
    )


def quantize_dyn(src: str, dst: str, ops: list[str]) -> None:
    """ONNX Runtime's dynamic quantisation: weights int8 (signed, per tensor),
    activations quantised to uint8 as each product runs, so no calibration.
    What ONNX Runtime's CPU provider runs fast without VNNI: its AVX2 u8 x s8
    kernels (engines/README.md, "int8 on AVX2", has the measurements behind
    each setting)."""
    t = time.time()
    skip = rotation_matmuls(src)
    quantize_dynamic(
        src,
        dst,
        op_types_to_quantize=ops,
        nodes_to_exclude=skip,
        per_channel=DYNAMIC_PER_CHANNEL,
        reduce_range=False,
        weight_type=QuantType.QInt8,
        # Weights' products only (also quantize_dynamic's default): attention's
        # activation-by-activation products gained nothing, measured.
        extra_options={"MatMulConstBOnly": True},
    )
    # This variant runs only on ONNX Runtime's CPU provider, so its long
    # attentions can be its fused flash attention (fuse_attention.py: no 1.7 GB
    # score matrix per global layer at full size, and a few percent faster).
    fused = fuse_attention.fuse_file(dst, dst, fuse_attention.MIN_TOKENS)
    log(f"wrote {os.path.relpath(dst)} ({os.path.getsize(dst) / 1e6:.1f} MB, dynamic, {fused} attentions fused) "
        f"in {time.time() - t:.0f} s (peak RSS {peak_gb():.1f} GB)")


# What each variant is, for the comment above its tables in bundle.toml.
KIND_NOTES = {
    "int8": "static QDQ int8 for OpenVINO (weights per channel, activations symmetric, MinMax calibration on {n} photos)",
    "int8_dynamic": "dynamic int8 for ONNX Runtime's CPU provider (weights per tensor, activations quantised at run time)",
}


def record(manifest_path: str, manifest: dict, variants: dict[str, dict[str, str]], ops: dict[str, dict[str, list[str]]],
           n_photos: int) -> None:
    """Writes ``variants`` ({kind: {engine: file}}) into bundle.toml, keeping the
    variants of other kinds that an earlier run recorded."""
    with open(manifest_path) as f:
        text = f.read()
    text = text.split(MARKER)[0].rstrip() + "\n"
    tables: dict[str, dict[str, dict]] = {}
    for engine, spec in manifest["engines"].items():
        for kind, v in spec.get("variants", {}).items():
            if kind not in variants:
                tables.setdefault(kind, {})[engine] = {"file": v["file"], "quantized_ops": v.get("quantized_ops", [])}
    for kind, files in variants.items():
        tables[kind] = {e: {"file": f, "quantized_ops": ops[kind][e]} for e, f in files.items()}
    lines = ["", MARKER, "# Each is checked against fp32 before it is recorded."]
    for kind in sorted(tables):
        lines += ["", f"# {kind}: " + KIND_NOTES.get(kind, kind).format(n=n_photos) + "."]
        for engine, v in tables[kind].items():
            lines += [f"[engines.{engine}.variants.{kind}]", f'file = "{v["file"]}"',
                      f"quantized_ops = {json.dumps(v['quantized_ops'])}"]
    with open(manifest_path, "w") as f:
        f.write(text + "\n".join(lines) + "\n")
    log(f"recorded {', '.join(f'{k} ({chr(44).join(v)})' for k, v in variants.items())} in {os.path.relpath(manifest_path)}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle")
    ap.add_argument("--photos", nargs="*", default=DEFAULT_PHOTOS, help="globs, relative to the repository")
    ap.add_argument("--kinds", default="static,dynamic",
                    help="static (QDQ, calibrated: OpenVINO on VNNI/AMX CPUs) and/or dynamic (ONNX Runtime's "
                         "CPU provider on AVX2 CPUs); a kind not asked keeps what bundle.toml records of it")
    # Measured on the medium bundle (engines/README.md): an int8 decoder is no
    # faster than the fp32 one run in bf16, and its masks move (IoU 0.89 with
    # fp32's), so by default only the image encoder is quantised.
    ap.add_argument("--engines", default="image_encoder", help="static: image_encoder[,decoder]")
    ap.add_argument("--dynamic-engines", default=DYNAMIC_ENGINES, help="dynamic: image_encoder[,decoder]")
    ap.add_argument("--encoder-ops", default="MatMul,Gemm")
    ap.add_argument("--decoder-ops", default="MatMul,Gemm,Conv")
    ap.add_argument("--dynamic-ops", default="MatMul,Gemm", help="dynamic: the operator types quantised")
    ap.add_argument("--held-out", type=int, default=3, help="photos kept for the check, not calibration")
    ap.add_argument("--calibration", type=int, default=0,
                    help="static: calibrate on at most N of the other photos, evenly spread (default 0: all); "
                         "each costs one run of the image encoder")
    ap.add_argument(
        "--score-delta",
        type=float,
        default=SCORE_DELTA,
        help="largest change of a query's score allowed (a small model's quantised scores move more; "
        "judge it by its own evaluation, e.g. engines/eval_toy.py --precision int8)",
    )
    a = ap.parse_args(argv)

    manifest_path, m = load_manifest(a.bundle)
    pre, engines = m["preprocess"], m["engines"]
    kinds = a.kinds.split(",")
    if not kinds or not set(kinds) <= {"static", "dynamic"}:
        log(f"--kinds {a.kinds}: expected static, dynamic or static,dynamic")
        return 1
    chosen = {"int8": a.engines.split(","), "int8_dynamic": a.dynamic_engines.split(",")}
    for kind, engs in chosen.items():
        if "image_encoder" not in engs or not set(engs) <= {"image_encoder", "decoder"}:
            log(f"{kind} engines {','.join(engs)}: expected image_encoder or image_encoder,decoder")
            return 1
    ops = {
        "int8": {"image_encoder": a.encoder_ops.split(","), "decoder": a.decoder_ops.split(",")},
        "int8_dynamic": {e: a.dynamic_ops.split(",") for e in ("image_encoder", "decoder")},
    }
    photos = sorted({p for g in a.photos for p in glob.glob(os.path.join(ROOT, g))})
    if len(photos) < a.held_out + 2:
        log(f"only {len(photos)} photos found for {a.photos}: need at least {a.held_out + 2}")
        return 1
    # Held out: every k-th photo, so that both kinds of picture are checked.
    step = max(1, len(photos) // a.held_out)
    check = photos[::step][: a.held_out]
    calib = [p for p in photos if p not in check]
    if 0 < a.calibration < len(calib):
        calib = [calib[round(i * (len(calib) - 1) / max(1, a.calibration - 1))] for i in range(a.calibration)]
    log(f"{m['bundle']['name']}: {len(calib)} calibration photos, {len(check)} held out; kinds {kinds}")

    dec_file = engines["decoder"]["file"]
    enc_path = os.path.join(a.bundle, engines["image_encoder"]["file"])
    dec_path = os.path.join(a.bundle, dec_file)
    variants: dict[str, dict[str, str]] = {}
    if "static" in kinds:
        variants["int8"] = {k: re.sub(r"\.onnx$", ".int8.onnx", engines[k]["file"]) for k in chosen["int8"]}
    if "dynamic" in kinds:
        variants["int8_dynamic"] = {
            k: re.sub(r"\.onnx$", ".int8_dynamic.onnx", engines[k]["file"]) for k in chosen["int8_dynamic"]
        }

    names = [o["name"] for o in engines["image_encoder"]["outputs"]]
    texts = None  # the text encoder's features of the prompts, when first needed
    dec_inputs = [i["name"] for i in engines["decoder"]["inputs"]]

    def dec_feed(feats: dict, text: dict) -> dict:
        f = {**feats, **text}
        return {k: f[k] for k in dec_inputs}

    # The variants first, while the process holds no session (what ONNX Runtime
    # leaves allocated after one adds up: at full size 5.6 GB stayed resident
    # after the fp32 image encoder's session was dropped), then the checks.
    if "int8" in variants:
        files = variants["int8"]
        calib_x = [pixel_values(p, pre) for p in calib]
        if "decoder" in files:
            # The decoder calibrates on the fp32 image encoder's features of the same photos.
            t = time.time()
            enc = session(enc_path)
            calib_feats = [dict(zip(names, enc.run(names, {"pixel_values": x}))) for x in calib_x]
            del enc
            release_memory()
            log(f"fp32 image features of {len(calib)} calibration photos in {time.time() - t:.0f} s")
        quantize(enc_path, os.path.join(a.bundle, files["image_encoder"]), [{"pixel_values": x} for x in calib_x],
                 ops["int8"]["image_encoder"])
        if "decoder" in files:
            texts = text_features(a.bundle, m, prompts_of(a.bundle))
            calib_dec = [dec_feed(f, texts[i % len(texts)]) for i, f in enumerate(calib_feats)]
            calib_dec += [dec_feed(calib_feats[0], t) for t in texts]
            del calib_feats
            quantize(dec_path, os.path.join(a.bundle, files["decoder"]), calib_dec, ops["int8"]["decoder"])
            del calib_dec
        release_memory()
    if "int8_dynamic" in variants:
        for engine, file in variants["int8_dynamic"].items():
            src = enc_path if engine == "image_encoder" else dec_path
            quantize_dyn(src, os.path.join(a.bundle, file), ops["int8_dynamic"][engine])
        release_memory()

    t = time.time()
    if texts is None:
        texts = text_features(a.bundle, m, prompts_of(a.bundle))
    enc = session(enc_path)
    check_x = [pixel_values(p, pre) for p in check]
    check_feats = [dict(zip(names, enc.run(names, {"pixel_values": x}))) for x in check_x]
    del enc
    release_memory()
    log(f"fp32 image features of {len(check)} held-out photos, text features of {len(texts)} prompts in {time.time() - t:.0f} s "
        f"(peak RSS {peak_gb():.1f} GB, resident now {rss_gb():.1f} GB)")

    # fp32's decoder outputs on fp32's features: the reference every kind is held to.
    t = time.time()
    dec = session(dec_path)
    out_names = [o.name for o in dec.get_outputs()]
    dec_refs = [[dict(zip(out_names, dec.run(None, dec_feed(feats, text)))) for text in texts[:4]] for feats in check_feats]
    del dec
    release_memory()
    log(f"fp32 decoder references in {time.time() - t:.0f} s (peak RSS {peak_gb():.1f} GB)")

    ok = True
    for kind, files in variants.items():
        t = time.time()
        q_enc = session(os.path.join(a.bundle, files["image_encoder"]))
        worst = 1.0
        q_feats_of = []
        for x, ref in zip(check_x, check_feats):
            got = dict(zip(names, q_enc.run(names, {"pixel_values": x})))
            worst = min(worst, *(cosine(got[k], ref[k]) for k in names))
            q_feats_of.append(got)
        del q_enc
        release_memory()
        log(f"{kind}: image encoder vs fp32 on {len(check)} held-out photos: worst cosine {worst:.5f} "
            f"(needs >= {IMAGE_COSINE})")
        ok &= worst >= IMAGE_COSINE

        # The decoder as this int8 route runs it: its own int8 file, or fp32.
        q_dec = session(os.path.join(a.bundle, files.get("decoder", dec_file)))
        worst_cos, worst_score = 1.0, 0.0
        for q_feats, refs in zip(q_feats_of, dec_refs):
            # The decoder on the int8 encoder's features: the whole int8 path.
            for text, ref in zip(texts[:4], refs):
                got = dict(zip(out_names, q_dec.run(None, dec_feed(q_feats, text))))
                worst_cos = min(worst_cos, cosine(got["pred_logits"], ref["pred_logits"]),
                                cosine(got["pred_masks"], ref["pred_masks"]))
                score = lambda o: sigmoid(o["pred_logits"]) * sigmoid(o["presence_logits"])
                worst_score = max(worst_score, float(np.abs(score(got) - score(ref)).max()))
        log(
            f"{kind}: decoder ({'int8' if 'decoder' in files else 'fp32'}) on the int8 features vs fp32: worst cosine "
            f"{worst_cos:.5f} (needs >= {DECODER_COSINE}), largest score change {worst_score:.4f} (needs <= {a.score_delta})"
        )
        ok &= worst_cos >= DECODER_COSINE and worst_score <= a.score_delta
        del q_dec, q_feats_of
        release_memory()
        log(f"{kind}: checked in {time.time() - t:.0f} s (peak RSS {peak_gb():.1f} GB)")
    if not ok:
        log("FAILED: a variant is outside its tolerance; bundle.toml is unchanged")
        return 1
    record(manifest_path, m, variants, ops, len(calib))
    return 0


if __name__ == "__main__":
    sys.exit(main())

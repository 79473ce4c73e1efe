#!/usr/bin/env python3
"""Writes a Triton Inference Server model repository for a samclipseg bundle.

    engines/triton_repo.py BUNDLE OUT [--python-backend] [--prefix NAME]
                           [--instances N] [--max-batch N] [--no-verify]

Five models (prefix: the bundle's `bundle.name` unless given, so several
bundles live in one repository):

    <prefix>-text_encoder   the bundle's text encoder
    <prefix>-image_encoder  the bundle's image encoder, uint8 pixels in
    <prefix>-decoder        the bundle's decoder
    <prefix>-select         a small generated ONNX graph: the kept queries
    <prefix>-segment        an ensemble image_encoder -> decoder -> select

One model per engine for the first three. Tensor names, shapes and dtypes come
from bundle.toml; a model whose inputs and outputs all start with the same
symbolic dimension gets `max_batch_size` and dynamic batching (the text
encoder's prompt batch, the image encoder's image batch), the others
`max_batch_size: 0` with that dimension as -1 (the decoder: its image features
are [1, ...] and its prompt batch belongs to one image, so requests of
different pictures cannot be merged).

Small on the wire: the image encoder model takes 8-bit RGB pixels, `pixels`
uint8 [image_batch, 3, S, S] (NCHW, planar R, G, B, values 0..255, already
resized to S x S) instead of float32 `pixel_values`; the normalisation
`(x * rescale_factor - image_mean) / image_std` of bundle.toml's [preprocess]
runs in the graph (Cast, Mul, Sub, Div prepended to the bundle's ONNX graph,
checked against the original with ONNX Runtime). What a client must send is in
each config's `parameters` and in `<prefix>.samclipseg.json` at the top of the
repository.

Image features stay on the server: `<prefix>-segment` (platform "ensemble",
max_batch_size 0) takes one frame and the prompts' text features and answers
only the scores, the boxes and the masks of the kept queries:

    inputs   pixels           UINT8 [1, 3, S, S]   as the image encoder's, one frame
             text_features    FP32  [-1, ctx, D]   <prefix>-text_encoder's output, P prompts
             attention_mask   INT64 [-1, ctx]      the prompts' attention mask
             score_threshold  FP32  [1]
    outputs  pred_logits      FP32  [-1, Q]        every query's score logit
             pred_boxes       FP32  [-1, Q, 4]     every query's box (as the decoder's)
             presence_logits  FP32  [-1, 1]
             kept_index       INT64 [-1, 2]        rows (prompt p, query q) with
                                                   sigmoid(pred_logits[p, q]) *
                                                   sigmoid(presence_logits[p, 0]) > score_threshold,
                                                   p then q ascending (row-major)
             kept_masks       FP16  [-1, H, W]     pred_masks[p, q] of those rows, in kept_index
                                                   order: mask LOGITS (not probabilities), float16

(The decoder's other outputs, the image features and the masks of the queries
not kept never leave the server.) Steps: image_encoder (pixels -> the image
features), decoder (features + text_features + attention_mask), select
(`<prefix>-select`, Sigmoid, Mul, Greater, NonZero, Transpose, GatherND, Cast to
float16; pred_logits, pred_boxes, presence_logits through Identity nodes as
`pass_pred_logits`, `pass_pred_boxes`, `pass_presence_logits`, which the
ensemble maps back to their own names: ONNX forbids an Identity whose output
has its input's name, and a graph input listed as a graph output, the other way
to keep the name, is mishandled by some ONNX Runtime versions). The image
encoder keeps max_batch_size and dynamic batching, and the segment ensemble's
one-frame requests (pixels [1, 3, S, S]: an ensemble with max_batch_size 0 may
call a batching model, the first dimension being that model's batch dimension)
are merged by its dynamic batcher when several streams send frames at once.
The client calls `<prefix>-text_encoder` itself, once per prompt set.

Default (GPU deployment): `platform: "onnxruntime_onnx"`, the ONNX files copied
to `<model>/1/model.onnx`, KIND_GPU instance groups. With --python-backend: the
same models as python-backend models (`backend: "python"`, a generated
`model.py` running the same `model.onnx` with ONNX Runtime on the CPU,
KIND_CPU): what the PyPI Triton build (nvidia-pytriton) can serve, and what
engines/triton_check.py tests. The segment ensemble is the same in both.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tomllib
from pathlib import Path

import numpy as np

ENGINES = ("text_encoder", "image_encoder", "decoder")
SELECT = "select"  # the generated ONNX graph that keeps the queries over the threshold
SEGMENT = "segment"  # the ensemble image_encoder -> decoder -> select
MODELS = ENGINES + (SELECT, SEGMENT)
TRITON_DTYPE = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "bfloat16": "TYPE_BF16",
    "int64": "TYPE_INT64",
    "int32": "TYPE_INT32",
    "uint8": "TYPE_UINT8",
    "bool": "TYPE_BOOL",
}
# The KServe v2 datatype names that model metadata reports.
KSERVE_DTYPE = {k: v.removeprefix("TYPE_") for k, v in TRITON_DTYPE.items()}
PIXELS = "pixels"  # the uint8 input that replaces the bundle's pixel_values
PIXEL_VALUES = "pixel_values"
# 1008 px is SAM 3's image size (facebook/sam3).
FULL_SIZE = 1008
# facebook/sam3 at 1008 px, for the wire figures: text context, text feature
# width, queries, mask side.
SAM3 = {"image_size": FULL_SIZE, "ctx": 32, "dim": 256, "queries": 200, "mask_h": 288, "mask_w": 288}

SCORE_THRESHOLD = "score_threshold"
KEPT_INDEX = "kept_index"
KEPT_MASKS = "kept_masks"
# Decoder outputs the segment ensemble answers whole (every query), and the
# select model's names for them: ONNX forbids an Identity node whose output
# has its input's name.
PASSED = ("pred_logits", "pred_boxes", "presence_logits")
PASS_PREFIX = "pass_"
SELECT_OPSET = 17
SELECT_IR_VERSION = 8  # opset 17's IR version, loadable by older ONNX Runtime builds too
KEPT_MASKS_DOC = ("float16 mask logits of the queries whose score sigmoid(logit)*sigmoid(presence) "
                  "> score_threshold, in kept_index order")
KEPT_INDEX_DOC = ("rows (prompt p, query q) whose sigmoid(pred_logits[p, q]) * sigmoid(presence_logits[p, 0]) "
                  "> score_threshold, p then q ascending (row-major)")


class RepoError(Exception):
    pass


def load_bundle(bundle: Path) -> dict:
    manifest = bundle / "bundle.toml"
    if not manifest.is_file():
        raise RepoError(f"{bundle}: no bundle.toml")
    with manifest.open("rb") as f:
        m = tomllib.load(f)
    for e in ENGINES:
        if e not in m.get("engines", {}):
            raise RepoError(f"{manifest}: no [engines.{e}]")
    return m


def model_names(manifest: dict, prefix: str | None = None) -> dict[str, str]:
    p = prefix or manifest["bundle"]["name"]
    return {e: f"{p}-{e}" for e in MODELS}


def wire_spec(manifest: dict) -> dict[str, dict]:
    """Each engine's tensors as the repository serves them: name -> (dtype, shape).

    Shapes keep symbolic dimensions as strings; the image encoder's float32
    pixel_values is replaced by uint8 pixels of the same shape."""
    out = {}
    for e in ENGINES:
        spec = manifest["engines"][e]
        ins = [(t["name"], t["dtype"], list(t["shape"])) for t in spec["inputs"]]
        if e == "image_encoder":
            names = [n for n, _, _ in ins]
            if names != [PIXEL_VALUES]:
                raise RepoError(f"image encoder inputs {names}, expected [{PIXEL_VALUES!r}]")
            ins = [(PIXELS, "uint8", ins[0][2])]
        outs = [(t["name"], t["dtype"], list(t["shape"])) for t in spec["outputs"]]
        for n, d, _ in ins + outs:
            if d not in TRITON_DTYPE:
                raise RepoError(f"{e}: tensor {n}: dtype {d} has no Triton type")
        out[e] = {"inputs": ins, "outputs": outs, "batch": batch_dim(ins + outs)}
    return out


def batch_dim(tensors) -> str | None:
    """The symbolic first dimension shared by every tensor, if there is one."""
    firsts = {tuple(s[:1]) for _, _, s in tensors}
    if len(firsts) == 1:
        (first,) = firsts
        if first and isinstance(first[0], str):
            return first[0]
    return None


def metadata_shape(shape, batched: bool) -> list[int]:
    """The shape Triton's model metadata reports: -1 for every symbolic dimension."""
    return [-1 if isinstance(d, str) else int(d) for d in shape]


def pbtxt_tensor(name, dtype, shape, batched: bool) -> str:
    dims = shape[1:] if batched else shape
    dims = [-1 if isinstance(d, str) else int(d) for d in dims]
    return (
        f'  {{\n    name: "{name}"\n    data_type: {TRITON_DTYPE[dtype]}\n'
        f"    dims: [ {', '.join(str(d) for d in dims)} ]\n  }}"
    )


def pbtxt_parameters(params: dict[str, str]) -> str:
    return "".join(
        f'parameters: {{\n  key: "{k}"\n  value: {{ string_value: {json.dumps(v)} }}\n}}\n'
        for k, v in params.items()
    )


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pixel_contract(manifest: dict) -> dict:
    pre = manifest["preprocess"]
    s = int(pre["image_size"])
    return {
        "input": PIXELS,
        "dtype": "uint8",
        "layout": "NCHW",
        "shape": ["image_batch", 3, s, s],
        "channels": "RGB",
        "range": "0..255, resized to image_size x image_size by the client",
        "normalisation": "in the graph: (x * rescale_factor - image_mean) / image_std",
        "rescale_factor": float(pre["rescale_factor"]),
        "image_mean": [float(v) for v in pre["image_mean"]],
        "image_std": [float(v) for v in pre["image_std"]],
        "replaces": f"{PIXEL_VALUES} float32 of the bundle's image_encoder.onnx",
    }


def normalise(pixels_u8: np.ndarray, manifest: dict) -> np.ndarray:
    """What the wrapped graph computes, in NumPy (the reference for the check)."""
    pre = manifest["preprocess"]
    mean = np.asarray(pre["image_mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(pre["image_std"], np.float32).reshape(1, 3, 1, 1)
    x = pixels_u8.astype(np.float32) * np.float32(pre["rescale_factor"])
    return ((x - mean) / std).astype(np.float32)


def wrap_image_encoder(src: Path, dst: Path, manifest: dict) -> None:
    """Writes the image encoder with a uint8 `pixels` input and the normalisation in the graph."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(src), load_external_data=True)
    g = model.graph
    inputs = [i for i in g.input if i.name == PIXEL_VALUES]
    if len(inputs) != 1:
        raise RepoError(f"{src}: no graph input {PIXEL_VALUES}")
    old = inputs[0]
    new = helper.make_tensor_value_info(PIXELS, TensorProto.UINT8, None)
    new.type.tensor_type.shape.CopyFrom(old.type.tensor_type.shape)
    pre = manifest["preprocess"]
    consts = {
        "samclipseg_rescale": np.asarray(pre["rescale_factor"], np.float32),
        "samclipseg_mean": np.asarray(pre["image_mean"], np.float32).reshape(1, 3, 1, 1),
        "samclipseg_std": np.asarray(pre["image_std"], np.float32).reshape(1, 3, 1, 1),
    }
    nodes = [
        helper.make_node("Cast", [PIXELS], ["samclipseg_pixels_f32"], to=TensorProto.FLOAT, name="samclipseg_cast"),
        helper.make_node("Mul", ["samclipseg_pixels_f32", "samclipseg_rescale"], ["samclipseg_rescaled"], name="samclipseg_rescale"),
        helper.make_node("Sub", ["samclipseg_rescaled", "samclipseg_mean"], ["samclipseg_centred"], name="samclipseg_sub_mean"),
        # The last node writes the original input's name, so the graph below is unchanged.
        helper.make_node("Div", ["samclipseg_centred", "samclipseg_std"], [PIXEL_VALUES], name="samclipseg_div_std"),
    ]
    index = list(g.input).index(old)
    g.input.remove(old)
    g.input.insert(index, new)
    for k, v in consts.items():
        g.initializer.append(numpy_helper.from_array(v, k))
    for n in reversed(nodes):
        g.node.insert(0, n)
    dst.parent.mkdir(parents=True, exist_ok=True)
    big = model.ByteSize() > 1_800_000_000 if _fits_protobuf(model) else True
    if big:
        onnx.save_model(model, str(dst), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=dst.name + ".data")
        onnx.checker.check_model(str(dst))
    else:
        onnx.checker.check_model(model)
        onnx.save_model(model, str(dst))


def _fits_protobuf(model) -> bool:
    try:
        model.ByteSize()
        return True
    except Exception:  # protobuf refuses to size messages over 2 GB
        return False


def verify_wrapped(original: Path, wrapped: Path, manifest: dict, seed: int = 0) -> float:
    """max |wrapped(pixels) - original(normalise(pixels))| over every output, random pixels."""
    import onnxruntime as ort

    s = int(manifest["preprocess"]["image_size"])
    px = np.random.default_rng(seed).integers(0, 256, size=(1, 3, s, s), dtype=np.uint8)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    a = ort.InferenceSession(str(original), so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(str(wrapped), so, providers=["CPUExecutionProvider"])
    ra = a.run(None, {PIXEL_VALUES: normalise(px, manifest)})
    rb = b.run(None, {PIXELS: px})
    return max(float(np.max(np.abs(x - y))) for x, y in zip(ra, rb))


def _decoder_output(spec: dict, name: str) -> tuple[str, str, list]:
    for t in spec["decoder"]["outputs"]:
        if t[0] == name:
            return t
    raise RepoError(f"decoder has no output {name!r} (the select model needs it)")


def select_spec(spec: dict) -> dict:
    """The select model's tensors, from the decoder's outputs: name -> (dtype, shape)."""
    logits = _decoder_output(spec, "pred_logits")
    boxes = _decoder_output(spec, "pred_boxes")
    masks = _decoder_output(spec, "pred_masks")
    presence = _decoder_output(spec, "presence_logits")
    for n, d, _ in (logits, boxes, masks, presence):
        if d != "float32":
            raise RepoError(f"decoder output {n} is {d}, the select model wants float32")
    p, q = logits[2]
    if len(masks[2]) != 4 or masks[2][:2] != [p, q] or boxes[2] != [p, q, 4] or presence[2] != [p, 1]:
        raise RepoError(f"decoder outputs do not share [prompts, queries]: pred_logits {logits[2]}, "
                        f"pred_boxes {boxes[2]}, pred_masks {masks[2]}, presence_logits {presence[2]}")
    h, w = masks[2][2:]
    ins = [logits, boxes, masks, presence, (SCORE_THRESHOLD, "float32", [1])]
    passed = {n: t for n, t in zip(("pred_logits", "pred_boxes", "presence_logits"), (logits, boxes, presence))}
    outs = [(PASS_PREFIX + n, passed[n][1], list(passed[n][2])) for n in PASSED]
    outs += [(KEPT_INDEX, "int64", ["kept", 2]), (KEPT_MASKS, "float16", ["kept", h, w])]
    return {"inputs": ins, "outputs": outs, "batch": None,
            "queries": q, "mask_size": [h, w]}


def segment_spec(spec: dict) -> dict:
    """The segment ensemble's tensors, and where each decoder input comes from.

    Decoder inputs that the image encoder produces (same name) are taken from
    it inside the ensemble; the others (the text features and their attention
    mask) are ensemble inputs."""
    enc, dec = spec["image_encoder"], spec["decoder"]
    (pix_name, pix_dtype, pix_shape), = enc["inputs"]
    enc_out = {n: (d, sh) for n, d, sh in enc["outputs"]}
    from_encoder, from_client = [], []
    for n, d, sh in dec["inputs"]:
        if n in enc_out:
            ed, esh = enc_out[n]
            if ed != d or esh[1:] != sh[1:] or sh[0] not in (1, esh[0]):
                raise RepoError(f"decoder input {n} {d} {sh} does not take image encoder output {n} {ed} {esh}")
            from_encoder.append(n)
        else:
            from_client.append((n, d, list(sh)))
    sel = select_spec(spec)
    ins = [(pix_name, pix_dtype, [1] + list(pix_shape[1:]))] + from_client + [(SCORE_THRESHOLD, "float32", [1])]
    outs = [(n, d, list(sh)) for n, d, sh in sel["outputs"]]
    outs = [((n.removeprefix(PASS_PREFIX)), d, sh) for n, d, sh in outs]
    return {"inputs": ins, "outputs": outs, "batch": None, "from_encoder": from_encoder,
            "from_client": [n for n, _, _ in from_client]}


def _value_info(name: str, dtype: str, shape: list):
    from onnx import helper

    elem = {"float32": 1, "uint8": 2, "int64": 7, "bool": 9, "float16": 10}[dtype]
    return helper.make_tensor_value_info(name, elem, [d if isinstance(d, str) else int(d) for d in shape])


def make_select_onnx(sel: dict, dst: Path) -> None:
    """Writes the select graph (opset 17, no weights) to dst."""
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Sigmoid", ["pred_logits"], ["select_query_prob"], name="select_query_sigmoid"),
        helper.make_node("Sigmoid", ["presence_logits"], ["select_presence_prob"], name="select_presence_sigmoid"),
        helper.make_node("Mul", ["select_query_prob", "select_presence_prob"], ["select_score"], name="select_score"),
        helper.make_node("Greater", ["select_score", SCORE_THRESHOLD], ["select_keep"], name="select_keep"),
        # NonZero lists the coordinates [2, K] in row-major order: prompt, then query, ascending.
        helper.make_node("NonZero", ["select_keep"], ["select_nonzero"], name="select_nonzero"),
        helper.make_node("Transpose", ["select_nonzero"], [KEPT_INDEX], perm=[1, 0], name="select_kept_index"),
        helper.make_node("GatherND", ["pred_masks", KEPT_INDEX], ["select_kept_masks_f32"], batch_dims=0,
                         name="select_gather_masks"),
        helper.make_node("Cast", ["select_kept_masks_f32"], [KEPT_MASKS], to=TensorProto.FLOAT16,
                         name="select_masks_fp16"),
    ]
    nodes += [helper.make_node("Identity", [n], [PASS_PREFIX + n], name=f"select_pass_{n}") for n in PASSED]
    graph = helper.make_graph(
        nodes, "samclipseg_select",
        [_value_info(*t) for t in sel["inputs"]],
        [_value_info(*t) for t in sel["outputs"]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", SELECT_OPSET)],
                              ir_version=SELECT_IR_VERSION, producer_name="samclipseg engines/triton_repo.py")
    onnx.checker.check_model(model, full_check=True)
    dst.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(model, str(dst))


def sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(np.float32)


def select_scores(pred_logits: np.ndarray, presence_logits: np.ndarray) -> np.ndarray:
    """sigmoid(pred_logits) * sigmoid(presence_logits), [P, Q], what select compares to the threshold."""
    return sigmoid(pred_logits) * sigmoid(presence_logits)


def select_reference(pred_logits, pred_masks, presence_logits, threshold: float):
    """What the select graph computes, in NumPy: (kept_index int64 [K, 2], kept_masks float16 [K, H, W])."""
    keep = select_scores(pred_logits, presence_logits) > np.float32(threshold)
    index = np.argwhere(keep).astype(np.int64).reshape(-1, 2)  # row-major, as NonZero
    masks = pred_masks[index[:, 0], index[:, 1]].astype(np.float16)
    return index, masks


def safe_threshold(scores: np.ndarray, target: float, margin: float = 1e-4) -> float:
    """A threshold near target that no score comes within margin of (float rounding
    of the sigmoid cannot move a query across it)."""
    s = np.unique(scores.astype(np.float64).ravel())
    if not np.any(np.abs(s - target) < margin):
        return float(target)
    cands = [s[0] - 2 * margin, s[-1] + 2 * margin]
    cands += [(a + b) / 2 for a, b in zip(s[:-1], s[1:]) if b - a > 2 * margin]
    return float(min(cands, key=lambda c: abs(c - target)))


def fp16_rounding(reference: np.ndarray) -> np.ndarray:
    """Half a float16 unit in the last place at each value of reference (the
    most that rounding float32 to float16 moves it), at least half the smallest subnormal."""
    a = np.abs(reference.astype(np.float64))
    return np.maximum(a * 2.0**-11, 2.0**-25)


def verify_select(path: Path, sel: dict, seed: int = 0) -> str:
    """Runs the select graph with ONNX Runtime on random decoder outputs against
    select_reference; raises RepoError on a mismatch, returns a one-line summary."""
    import onnxruntime as ort

    rng = np.random.default_rng(seed)
    q = int(sel["queries"])
    h, w = (int(d) for d in sel["mask_size"])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    kept = []
    for p, target in ((3, 0.3), (2, 2.0), (1, 0.0)):  # some kept, none kept, all kept
        logits = rng.normal(0, 2, (p, q)).astype(np.float32)
        presence = rng.normal(0, 2, (p, 1)).astype(np.float32)
        boxes = rng.random((p, q, 4), dtype=np.float32)
        masks = rng.normal(0, 8, (p, q, h, w)).astype(np.float32)
        thr = safe_threshold(select_scores(logits, presence), target)
        feeds = {"pred_logits": logits, "pred_boxes": boxes, "pred_masks": masks,
                 "presence_logits": presence, SCORE_THRESHOLD: np.asarray([thr], np.float32)}
        got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
        index, kmasks = select_reference(logits, masks, presence, thr)
        for n in PASSED:
            if not np.array_equal(got[PASS_PREFIX + n], feeds[n]):
                raise RepoError(f"select: {PASS_PREFIX}{n} is not {n}")
        if got[KEPT_INDEX].dtype != np.int64 or not np.array_equal(got[KEPT_INDEX], index):
            raise RepoError(f"select: kept_index {got[KEPT_INDEX].tolist()} != reference {index.tolist()}")
        gm = got[KEPT_MASKS]
        if gm.dtype != np.float16 or gm.shape != kmasks.shape:
            raise RepoError(f"select: kept_masks {gm.dtype} {gm.shape}, reference float16 {kmasks.shape}")
        ref32 = masks[index[:, 0], index[:, 1]]
        if np.any(np.abs(gm.astype(np.float64) - ref32) > fp16_rounding(ref32)):
            raise RepoError("select: kept_masks differ from the gathered masks by more than float16 rounding")
        kept.append(f"{len(index)}/{p * q}")
    return "kept " + ", ".join(kept) + " as NumPy"


MODEL_PY = '''\
"""Triton python-backend model written by samclipseg engines/triton_repo.py.

Runs model.onnx (beside this file) with ONNX Runtime on the CPU. Tensor names
come from config.pbtxt. In a batching model the requests that Triton's dynamic
batcher hands over together are concatenated along the batch dimension, run
once and split again.
"""

import ctypes
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# Tensors cross the stub through DLPack, not through Tensor.as_numpy() and
# Tensor(name, array): the stub's NumPy interface is compiled with a pybind11
# that predates NumPy 2 and reads NumPy 2's dtype structure at NumPy 1's
# offsets (item size 0), so under NumPy 2 (Python 3.13, Debian 13) inputs came
# in with every element equal to the first and outputs went out empty.
# DLPack needs no dtype structure and works with NumPy 1 as well.
#
# The stub marks a consumed capsule "used_dlpack" where the DLPack protocol
# says "used_dltensor", so NumPy's capsule destructor does not see it as
# consumed and prints a ValueError for every output; the stub owns the tensor
# by then (it calls the tensor's deleter itself), so the name is corrected.
_USED = b"used_dltensor"  # kept alive: the capsule keeps a pointer to it
_set_capsule_name = ctypes.pythonapi.PyCapsule_SetName
_set_capsule_name.argtypes = [ctypes.py_object, ctypes.c_char_p]
_set_capsule_name.restype = ctypes.c_int


def to_numpy(tensor):
    return np.from_dlpack(tensor)


def to_tensor(name, array):
    array = np.ascontiguousarray(array)
    if array.size == 0:
        # Nothing to carry (the byte size is 0 whatever the item size), and the
        # stub refuses some empty DLPack tensors as non-contiguous.
        return pb_utils.Tensor(name, array)
    if array.strides != np.empty(array.shape, array.dtype).strides:
        # C-contiguous with a length-1 axis of another stride: the stub checks every stride.
        array = array.copy()
    capsule = array.__dlpack__()
    tensor = pb_utils.Tensor.from_dlpack(name, capsule)
    _set_capsule_name(capsule, _USED)
    return tensor


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        self.batched = int(config.get("max_batch_size", 0)) > 0
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        so = ort.SessionOptions()
        threads = int(params.get("samclipseg_cpu_threads", "0"))
        if threads > 0:
            so.intra_op_num_threads = threads
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])

    def _feeds(self, request):
        return {n: to_numpy(pb_utils.get_input_tensor_by_name(request, n)) for n in self.inputs}

    def execute(self, requests):
        feeds = [self._feeds(r) for r in requests]
        if self.batched and len(feeds) > 1:
            sizes = [f[self.inputs[0]].shape[0] for f in feeds]
            merged = {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs}
            outs = self.session.run(self.outputs, merged)
            bounds = np.cumsum(sizes)[:-1]
            per_request = list(zip(*[np.split(o, bounds) for o in outs]))
        else:
            per_request = [self.session.run(self.outputs, f) for f in feeds]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[to_tensor(n, o) for n, o in zip(self.outputs, outs)]
            )
            for outs in per_request
        ]
'''


def contract_tensors(tensors) -> list[dict]:
    return [{"name": n, "datatype": KSERVE_DTYPE[d], "shape": metadata_shape(sh, False)} for n, d, sh in tensors]


def pbtxt_model(name: str, head: list[str], max_batch: int, s: dict, batched: bool, tail: list[str],
                params: dict[str, str]) -> str:
    lines = [f'name: "{name}"'] + head
    lines.append(f"max_batch_size: {max_batch}")
    lines.append("input [\n" + ",\n".join(pbtxt_tensor(*t, batched) for t in s["inputs"]) + "\n]")
    lines.append("output [\n" + ",\n".join(pbtxt_tensor(*t, batched) for t in s["outputs"]) + "\n]")
    return "\n".join(lines + tail) + "\n" + pbtxt_parameters(params)


def pbtxt_map(kind: str, pairs) -> str:
    return "".join(f'      {kind} {{ key: "{k}" value: "{v}" }}\n' for k, v in pairs)


def pbtxt_ensemble_steps(names: dict, spec: dict, seg: dict) -> str:
    """The segment ensemble's steps. Tensors inside the ensemble are named
    `<engine>.<tensor>`, the ensemble's own inputs and outputs by themselves."""
    enc, dec, sel = spec["image_encoder"], spec["decoder"], select_spec(spec)
    (pix, _, _), = enc["inputs"]
    steps = [
        (names["image_encoder"],
         [(pix, pix)],
         [(n, f"image_encoder.{n}") for n, _, _ in enc["outputs"] if n in seg["from_encoder"]]),
        (names["decoder"],
         [(n, f"image_encoder.{n}" if n in seg["from_encoder"] else n) for n, _, _ in dec["inputs"]],
         [(n, f"decoder.{n}") for n, _, _ in sel["inputs"] if n != SCORE_THRESHOLD]),
        (names[SELECT],
         [(n, SCORE_THRESHOLD if n == SCORE_THRESHOLD else f"decoder.{n}") for n, _, _ in sel["inputs"]],
         [(n, n.removeprefix(PASS_PREFIX)) for n, _, _ in sel["outputs"]]),
    ]
    body = ",\n".join(
        f'    {{\n      model_name: "{m}"\n      model_version: -1\n' + pbtxt_map("input_map", i)
        + pbtxt_map("output_map", o) + "    }"
        for m, i, o in steps
    )
    return "ensemble_scheduling {\n  step [\n" + body + "\n  ]\n}"


def write_repository(
    bundle: Path,
    out: Path,
    python_backend: bool = False,
    prefix: str | None = None,
    instances: int = 1,
    max_batch: int = 16,
    verify: bool = True,
    log=print,
) -> dict:
    """Writes the five models under `out`; returns the contract that is also written as JSON."""
    manifest = load_bundle(bundle)
    names = model_names(manifest, prefix)
    spec = wire_spec(manifest)
    sel = select_spec(spec)
    seg = segment_spec(spec)
    bname = manifest["bundle"]["name"]
    out.mkdir(parents=True, exist_ok=True)
    contract = {
        "bundle": bname,
        "bundle_source_sha256": manifest["bundle"].get("source_sha256", ""),
        "deployment": "python backend (ONNX Runtime, CPU)" if python_backend else "onnxruntime_onnx (GPU)",
        "models": {},
        "image_input": pixel_contract(manifest),
    }
    kind = "KIND_CPU" if python_backend else "KIND_GPU"
    runtime = ['backend: "python"'] if python_backend else ['platform: "onnxruntime_onnx"']
    groups = [f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]"]

    def fresh(name: str) -> Path:
        mdir = out / name
        if mdir.exists():
            shutil.rmtree(mdir)
        vdir = mdir / "1"
        vdir.mkdir(parents=True)
        return vdir

    for e in ENGINES:
        name = names[e]
        src = bundle / manifest["engines"][e]["file"]
        if not src.is_file():
            raise RepoError(f"{bundle}: engine file {src.name} missing")
        vdir = fresh(name)
        mdir = vdir.parent
        if e == "image_encoder":
            wrap_image_encoder(src, vdir / "model.onnx", manifest)
            if verify:
                diff = verify_wrapped(src, vdir / "model.onnx", manifest)
                log(f"{name}: uint8 wrapper vs original on normalised pixels: max abs diff {diff:.3g}")
                if not diff < 1e-5:
                    raise RepoError(f"{name}: the uint8 wrapper differs from {src.name} by {diff:.3g} (limit 1e-5)")
        else:
            shutil.copy2(src, vdir / "model.onnx")
            # Weights kept outside the graph are found by the relative name the graph records.
            for data in bundle.glob(src.name + ".data"):
                shutil.copy2(data, vdir / data.name)
        if python_backend:
            (vdir / "model.py").write_text(MODEL_PY)
        s = spec[e]
        batched = s["batch"] is not None
        params = {
            "samclipseg_bundle": bname,
            "samclipseg_engine": e,
            "samclipseg_engine_sha256": sha256(src),
        }
        if e == "image_encoder":
            pc = contract["image_input"]
            params.update({
                "samclipseg_image_input": PIXELS,
                "samclipseg_image_dtype": "uint8",
                "samclipseg_image_layout": "NCHW",
                "samclipseg_image_size": str(manifest["preprocess"]["image_size"]),
                "samclipseg_normalisation": "in_graph",
                "samclipseg_rescale_factor": repr(pc["rescale_factor"]),
                "samclipseg_image_mean": json.dumps(pc["image_mean"]),
                "samclipseg_image_std": json.dumps(pc["image_std"]),
            })
        if python_backend:
            params["samclipseg_cpu_threads"] = "0"
        tail = list(groups)
        if batched:
            # The segment ensemble's one-frame image encoder requests are merged here too.
            tail.append("dynamic_batching {\n  max_queue_delay_microseconds: 2000\n}")
        mb = max_batch if batched else 0
        (mdir / "config.pbtxt").write_text(pbtxt_model(name, runtime, mb, s, batched, tail, params))
        contract["models"][e] = {
            "name": name,
            "max_batch_size": mb,
            "batch_dimension": s["batch"],
            "inputs": contract_tensors(s["inputs"]),
            "outputs": contract_tensors(s["outputs"]),
        }
        log(f"{name}: {'python backend' if python_backend else 'onnxruntime_onnx'}, "
            f"max_batch_size {mb}" + (f" (dynamic batching over {s['batch']})" if batched else ""))

    # The select graph: generated, no weights, the same runner as the engines.
    name = names[SELECT]
    vdir = fresh(name)
    make_select_onnx(sel, vdir / "model.onnx")
    if verify:
        log(f"{name}: ONNX Runtime vs NumPy on random decoder outputs: {verify_select(vdir / 'model.onnx', sel)}")
    if python_backend:
        (vdir / "model.py").write_text(MODEL_PY)
    params = {"samclipseg_bundle": bname, "samclipseg_engine": SELECT,
              "samclipseg_engine_sha256": sha256(vdir / "model.onnx")}
    if python_backend:
        params["samclipseg_cpu_threads"] = "1"
    (vdir.parent / "config.pbtxt").write_text(pbtxt_model(name, runtime, 0, sel, False, list(groups), params))
    contract["models"][SELECT] = {
        "name": name,
        "max_batch_size": 0,
        "batch_dimension": None,
        "inputs": contract_tensors(sel["inputs"]),
        "outputs": contract_tensors(sel["outputs"]),
        "kept_index": KEPT_INDEX_DOC,
        "kept_masks": KEPT_MASKS_DOC,
    }
    log(f"{name}: {'python backend' if python_backend else 'onnxruntime_onnx'}, max_batch_size 0 "
        f"(generated: Sigmoid, Mul, Greater, NonZero, Transpose, GatherND, Cast to float16)")

    # The segment ensemble. Its max_batch_size is 0 (a request is one frame and
    # its P prompts), and it calls the image encoder, max_batch_size > 0 with
    # dynamic batching, with pixels [1, 3, S, S]: Triton accepts a tensor whose
    # full shape in the non-batching ensemble, [1, 3, S, S], matches the
    # batching model's [-1] + dims, and takes its first dimension as that
    # request's batch size, so the image encoder's dynamic batcher merges the
    # frames of several streams (engines/triton_check.py shows it in the
    # image encoder's statistics: fewer executions than inferences).
    name = names[SEGMENT]
    vdir = fresh(name)  # an ensemble has an empty version directory
    params = {"samclipseg_bundle": bname, "samclipseg_engine": SEGMENT,
              "samclipseg_steps": json.dumps([names["image_encoder"], names["decoder"], names[SELECT]]),
              "samclipseg_kept_index": KEPT_INDEX_DOC, "samclipseg_kept_masks": KEPT_MASKS_DOC}
    (vdir.parent / "config.pbtxt").write_text(
        pbtxt_model(name, ['platform: "ensemble"'], 0, seg, False, [pbtxt_ensemble_steps(names, spec, seg)], params))
    contract["models"][SEGMENT] = {
        "name": name,
        "max_batch_size": 0,
        "batch_dimension": None,
        "inputs": contract_tensors(seg["inputs"]),
        "outputs": contract_tensors(seg["outputs"]),
        "steps": [names["image_encoder"], names["decoder"], names[SELECT]],
        "pixels": f"as {names['image_encoder']}'s {PIXELS}, one frame: [1, 3, S, S]",
        "text_features": f"{names['text_encoder']}'s output for the P prompts",
        "kept_index": KEPT_INDEX_DOC,
        "kept_masks": KEPT_MASKS_DOC,
    }
    log(f"{name}: ensemble {' -> '.join(contract['models'][SEGMENT]['steps'])}, max_batch_size 0")
    (out / f"{prefix or bname}.samclipseg.json").write_text(json.dumps(contract, indent=2) + "\n")
    return contract


def wire_bytes(image_size: int) -> tuple[int, int]:
    """Bytes of one fresh frame's image tensor: uint8 pixels, float32 pixel_values."""
    n = 3 * image_size * image_size
    return n, 4 * n


def per_kept_bytes(mask_h: int, mask_w: int) -> int:
    """Down per kept instance: its kept_index row (2 int64) and its float16 mask."""
    return 2 * 8 + mask_h * mask_w * 2


def segment_wire_bytes(image_size: int, ctx: int, dim: int, queries: int, mask_h: int, mask_w: int,
                       prompts: int, kept: int) -> tuple[int, int]:
    """Tensor bytes (up, down) of one segment request: a fresh frame, P prompts, K kept."""
    up = 3 * image_size * image_size + prompts * ctx * dim * 4 + prompts * ctx * 8 + 4
    down = prompts * queries * 4 + prompts * queries * 4 * 4 + prompts * 4 + kept * per_kept_bytes(mask_h, mask_w)
    return up, down


def segment_dims(manifest: dict) -> dict:
    """This bundle's figures for segment_wire_bytes."""
    spec = wire_spec(manifest)
    text = {n: sh for n, _, sh in spec["text_encoder"]["outputs"]}["text_features"]
    sel = select_spec(spec)
    h, w = sel["mask_size"]
    return {"image_size": int(manifest["preprocess"]["image_size"]), "ctx": int(text[1]), "dim": int(text[2]),
            "queries": int(sel["queries"]), "mask_h": int(h), "mask_w": int(w)}


def print_segment_wire(dims: dict, what: str, prompts=(1, 4), kept=(0, 1, 10)) -> None:
    d = dims
    per = per_kept_bytes(d["mask_h"], d["mask_w"])
    print(f"segment request at {d['image_size']} px ({what}: ctx {d['ctx']}, D {d['dim']}, Q {d['queries']}, "
          f"masks {d['mask_h']}x{d['mask_w']}); per kept instance {per:,} bytes "
          f"(kept_index 16 + kept_masks {d['mask_h']}*{d['mask_w']}*2):")
    for p in prompts:
        up, down0 = segment_wire_bytes(**d, prompts=p, kept=0)
        downs = ", ".join(f"K={k}: {down0 + k * per:,}" for k in kept)
        print(f"  P={p}: up {up:,} bytes per fresh frame (pixels {3 * d['image_size'] ** 2:,} + text_features "
              f"{p * d['ctx'] * d['dim'] * 4:,} + attention_mask {p * d['ctx'] * 8:,} + score_threshold 4); "
              f"down {down0:,} + K*{per:,} ({downs})")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--python-backend", action="store_true", help="python-backend models (ONNX Runtime on the CPU)")
    ap.add_argument("--prefix", help="model name prefix (default: bundle.name)")
    ap.add_argument("--instances", type=int, default=1, help="instances per model (default 1)")
    ap.add_argument("--max-batch", type=int, default=16, help="max_batch_size of the batching models (default 16)")
    ap.add_argument("--no-verify", action="store_true", help="skip the ONNX Runtime check of the uint8 wrapper")
    a = ap.parse_args(argv)
    if a.instances < 1 or a.max_batch < 1:
        ap.error("--instances and --max-batch must be at least 1")
    try:
        manifest = load_bundle(a.bundle)
        write_repository(a.bundle, a.out, a.python_backend, a.prefix, a.instances, a.max_batch, not a.no_verify)
    except RepoError as err:
        print(f"triton_repo: {err}", file=sys.stderr)
        return 2
    s = int(manifest["preprocess"]["image_size"])
    for size, what in ((s, "this bundle"), (FULL_SIZE, "SAM 3")):
        u8, f32 = wire_bytes(size)
        print(f"image tensor up per fresh frame at {size} px ({what}): {u8:,} bytes uint8 (float32 would be {f32:,})")
    print_segment_wire(segment_dims(manifest), "this bundle")
    print_segment_wire(SAM3, "SAM 3, facebook/sam3")
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

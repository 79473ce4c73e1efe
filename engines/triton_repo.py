#!/usr/bin/env python3
"""Writes a Triton Inference Server model repository for a samclipseg bundle.

    engines/triton_repo.py BUNDLE OUT [--python-backend] [--prefix NAME]
                           [--instances N] [--max-batch N] [--no-verify]

One model per engine, named `<prefix>-text_encoder`, `<prefix>-image_encoder`,
`<prefix>-decoder` (prefix: the bundle's `bundle.name` unless given), so several
bundles live in one repository. Tensor names, shapes and dtypes come from
bundle.toml; a model whose inputs and outputs all start with the same symbolic
dimension gets `max_batch_size` and dynamic batching (the text encoder's prompt
batch, the image encoder's image batch), the others `max_batch_size: 0` with
that dimension as -1 (the decoder: its image features are [1, ...] and its
prompt batch belongs to one image, so requests of different pictures cannot be
merged).

Small on the wire: the image encoder model takes 8-bit RGB pixels, `pixels`
uint8 [image_batch, 3, S, S] (NCHW, planar R, G, B, values 0..255, already
resized to S x S) instead of float32 `pixel_values`; the normalisation
`(x * rescale_factor - image_mean) / image_std` of bundle.toml's [preprocess]
runs in the graph (Cast, Mul, Sub, Div prepended to the bundle's ONNX graph,
checked against the original with ONNX Runtime). What a client must send is in
each config's `parameters` and in `<prefix>.samclipseg.json` at the top of the
repository.

Default (GPU deployment): `platform: "onnxruntime_onnx"`, the ONNX files copied
to `<model>/1/model.onnx`, KIND_GPU instance groups. With --python-backend: the
same models as python-backend models (`backend: "python"`, a generated
`model.py` running the same `model.onnx` with ONNX Runtime on the CPU,
KIND_CPU): what the PyPI Triton build (nvidia-pytriton) can serve, and what
engines/triton_check.py tests.
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
    return {e: f"{p}-{e}" for e in ENGINES}


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


MODEL_PY = '''\
"""Triton python-backend model written by samclipseg engines/triton_repo.py.

Runs model.onnx (beside this file) with ONNX Runtime on the CPU. Tensor names
come from config.pbtxt. In a batching model the requests that Triton's dynamic
batcher hands over together are concatenated along the batch dimension, run
once and split again.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


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
        return {n: pb_utils.get_input_tensor_by_name(request, n).as_numpy() for n in self.inputs}

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
                output_tensors=[pb_utils.Tensor(n, np.ascontiguousarray(o)) for n, o in zip(self.outputs, outs)]
            )
            for outs in per_request
        ]
'''


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
    """Writes the three models under `out`; returns the contract that is also written as JSON."""
    manifest = load_bundle(bundle)
    names = model_names(manifest, prefix)
    spec = wire_spec(manifest)
    bname = manifest["bundle"]["name"]
    out.mkdir(parents=True, exist_ok=True)
    contract = {
        "bundle": bname,
        "bundle_source_sha256": manifest["bundle"].get("source_sha256", ""),
        "deployment": "python backend (ONNX Runtime, CPU)" if python_backend else "onnxruntime_onnx (GPU)",
        "models": {},
        "image_input": pixel_contract(manifest),
    }
    for e in ENGINES:
        name = names[e]
        src = bundle / manifest["engines"][e]["file"]
        if not src.is_file():
            raise RepoError(f"{bundle}: engine file {src.name} missing")
        mdir = out / name
        if mdir.exists():
            shutil.rmtree(mdir)
        vdir = mdir / "1"
        vdir.mkdir(parents=True)
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
        lines = [f'name: "{name}"']
        lines.append('backend: "python"' if python_backend else 'platform: "onnxruntime_onnx"')
        lines.append(f"max_batch_size: {max_batch if batched else 0}")
        lines.append("input [\n" + ",\n".join(pbtxt_tensor(*t, batched) for t in s["inputs"]) + "\n]")
        lines.append("output [\n" + ",\n".join(pbtxt_tensor(*t, batched) for t in s["outputs"]) + "\n]")
        kind = "KIND_CPU" if python_backend else "KIND_GPU"
        lines.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]")
        if batched:
            lines.append("dynamic_batching {\n  max_queue_delay_microseconds: 2000\n}")
        (mdir / "config.pbtxt").write_text("\n".join(lines) + "\n" + pbtxt_parameters(params))
        contract["models"][e] = {
            "name": name,
            "max_batch_size": max_batch if batched else 0,
            "batch_dimension": s["batch"],
            "inputs": [{"name": n, "datatype": KSERVE_DTYPE[d], "shape": metadata_shape(sh, batched)} for n, d, sh in s["inputs"]],
            "outputs": [{"name": n, "datatype": KSERVE_DTYPE[d], "shape": metadata_shape(sh, batched)} for n, d, sh in s["outputs"]],
        }
        log(f"{name}: {'python backend' if python_backend else 'onnxruntime_onnx'}, "
            f"max_batch_size {max_batch if batched else 0}" + (f" (dynamic batching over {s['batch']})" if batched else ""))
    (out / f"{prefix or bname}.samclipseg.json").write_text(json.dumps(contract, indent=2) + "\n")
    return contract


def wire_bytes(image_size: int) -> tuple[int, int]:
    """Bytes of one fresh frame's image tensor: uint8 pixels, float32 pixel_values."""
    n = 3 * image_size * image_size
    return n, 4 * n


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
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Serves a bundle from a real Triton server and checks it against ONNX Runtime.

    .venv-triton/bin/python engines/triton_check.py BUNDLE [--keep DIR] [--timeout S]

(`make triton-check` runs it on tests/fixtures/tiny-sam3 after
`scripts/setup.sh triton`.) Steps:

1. writes a --python-backend repository for BUNDLE (engines/triton_repo.py) in
   a temporary directory: the five models text_encoder, image_encoder,
   decoder, select and the segment ensemble;
2. starts the tritonserver binary of the nvidia-pytriton wheel on 127.0.0.1
   on a free port (gRPC only), waits for readiness (and says how long that
   took), and stops it by its PID at the end;
3. checks each model's metadata (tensor names, datatypes, shapes) against
   bundle.toml and against the repository's <prefix>.samclipseg.json, and the
   image encoder's config parameters (uint8 pixels);
4. runs the three engine models over gRPC on a golden photo of the bundle
   resized to the image size (uint8 pixels up) and two prompts, and the
   bundle's own ONNX files locally with ONNX Runtime (float32 normalised
   pixels): every output within --tolerance (1e-4);
5. runs the segment ensemble (image_encoder -> decoder -> select on the
   server) on the same photo with both prompts, one prompt, and a threshold
   that keeps nothing: pred_logits, pred_boxes, presence_logits within the
   tolerance of the local image_encoder + decoder run, kept_index equal to
   the local NumPy selection sigmoid(logit) * sigmoid(presence) > threshold
   (a threshold no score comes within 1e-4 of), kept_masks within the
   tolerance plus float16 rounding of the local mask logits;
6. sends segment requests from 4 threads at once (4 frames, 1 or 2 prompts,
   6 rounds), checks every answer against its own frame's local run, and
   reads the image encoder's statistics: fewer executions than inferences
   (the dynamic batcher merged the ensemble's one-frame requests), and the
   executions per batch size; then concurrent one-prompt text-encoder
   requests, and the server's statistics count each model;
7. prints the bytes up and down of each call (tensor contents and the whole
   gRPC message); a segment request's tensors must be what
   triton_repo.segment_wire_bytes says, whose figures it prints for this
   bundle and for SAM 3 at 1008 px.

Exits 1 on any mismatch, 2 when the server cannot be started.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import tomllib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import triton_repo  # noqa: E402

PROMPTS = ["a person", "a red ball"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def backend_dir(work: Path) -> tuple[Path, Path, Path]:
    """(tritonserver binary, its libraries, a backend directory with the python backend + this Python's stub)."""
    import pytriton

    root = Path(pytriton.__file__).resolve().parent / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise RuntimeError(f"nvidia-pytriton has no python backend stub for Python {version} ({stub})")
    backends = work / "backends"
    py = backends / "python"
    shutil.copytree(root / "backends" / "python", py, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, py / "triton_python_backend_stub")
    link_system_libpython(py / "triton_python_backend_stub")
    libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
    return root / "bin" / "tritonserver", libs, backends


def link_system_libpython(stub: Path) -> None:
    """Points the stub at this Python's own libpython when it links another one.

    The wheel's stubs for Python 3.8-3.12 link `libpython3.X.so.1.0`, which is
    Debian's (package libpython3.X). The 3.13 stub links a libpython bundled in
    the wheel (auditwheel-renamed `libpython3-<hash>.13.so.1.0`, a pyenv 3.13.0
    build) whose extension modules live in its own lib-dynload, absent here.
    Debian builds `math`, `_struct`, `_datetime`, `_json`, `select`, `zlib` and
    more into its libpython instead, so under the bundled one `import math`
    fails, and numpy fails with `PyCapsule_Import could not import module
    "datetime"`, which numpy reports as "you should not try to import numpy
    from its source directory". Debian's libpython3.13 has the same ABI (the
    stub is a pybind11 program built against 3.13 headers), so the copy's
    DT_NEEDED entry is replaced with it (patchelf, installed by
    scripts/setup.sh).
    """
    soname = sysconfig.get_config_var("INSTSONAME")  # libpython3.13.so.1.0
    if not soname or not soname.startswith("libpython"):
        return  # a Python without a shared libpython: keep the stub as it is
    # readelf (binutils, from build-essential) lists the DT_NEEDED entries.
    dynamic = subprocess.run(["readelf", "-d", str(stub)], check=True, capture_output=True, text=True).stdout
    other = [lib for lib in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic)
             if lib.startswith("libpython") and lib != soname]
    if not other:
        return
    patchelf = shutil.which("patchelf")
    if patchelf is None:
        raise RuntimeError(
            f"the python backend stub links {other[0]} (the nvidia-pytriton wheel's own libpython, which cannot "
            f"import numpy with this system's standard library); patchelf (Debian package patchelf) is needed "
            f"to point it at {soname}: run `bash scripts/setup.sh test`"
        )
    for lib in other:
        subprocess.run([patchelf, "--replace-needed", lib, soname, str(stub)], check=True)


def server_env(libs: Path) -> dict:
    env = os.environ.copy()
    # The stub embeds the interpreter that runs this script: its libpython, and
    # this venv's bin first on PATH so the stub's Python finds the venv's packages.
    ld = [sysconfig.get_config_var("LIBDIR"), str(libs)]
    if env.get("LD_LIBRARY_PATH"):
        ld.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(ld)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    # Two cores are plenty for the tiny bundle; do not let ONNX Runtime take them all.
    env.setdefault("OMP_NUM_THREADS", "2")
    return env


def server_command(binary: Path, repo: Path, backends: Path, host: str, port: int) -> list[str]:
    """The tritonserver command line: gRPC only, no GPU memory pools, ready only with every model loaded."""
    return [
        str(binary),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        f"--grpc-address={host}",
        f"--grpc-port={port}",
        "--allow-http=false",
        "--allow-metrics=false",
        "--pinned-memory-pool-byte-size=0",
        "--cuda-memory-pool-byte-size=0:0",
        "--exit-on-error=true",
        "--strict-readiness=true",
    ]


class Server:
    def __init__(self, repo: Path, work: Path, timeout: float):
        binary, libs, backends = backend_dir(work)
        self.port = free_port()
        self.url = f"127.0.0.1:{self.port}"
        self.log_path = work / "tritonserver.log"
        self.log = self.log_path.open("wb")
        cmd = server_command(binary, repo, backends, "127.0.0.1", self.port)
        t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=server_env(libs))
        print(f"tritonserver pid {self.proc.pid} on 127.0.0.1:{self.port} (log {self.log_path})")
        import tritonclient.grpc as grpcclient

        self.client = grpcclient.InferenceServerClient(f"127.0.0.1:{self.port}")
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tritonserver exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                if self.client.is_server_live() and self.client.is_server_ready():
                    break
            except Exception:
                pass
            if time.monotonic() - t0 > timeout:
                raise RuntimeError(f"tritonserver not ready after {timeout:.0f} s:\n{self.tail()}")
            time.sleep(0.1)
        self.ready_s = time.monotonic() - t0
        models = [m.name for m in self.client.get_model_repository_index().models]
        print(f"tritonserver ready after {self.ready_s:.1f} s with {len(models)} models: {', '.join(models)}")

    def tail(self, n: int = 30) -> str:
        self.log.flush()
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        try:
            self.client.close()
        except Exception:
            pass
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        print(f"tritonserver pid {self.proc.pid} stopped (exit {self.proc.returncode})")


def expected_metadata(manifest: dict) -> dict[str, tuple[list, list]]:
    """What each model's metadata must say, from bundle.toml alone: (inputs, outputs) of (name, datatype, shape)."""
    kserve = {"float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32", "uint8": "UINT8", "bool": "BOOL"}
    out = {}
    for e, spec in manifest["engines"].items():
        def conv(ts):
            return [(t["name"], kserve[t["dtype"]], [-1 if isinstance(d, str) else d for d in t["shape"]]) for t in ts]
        ins = conv(spec["inputs"])
        if e == "image_encoder":
            # The repository serves 8-bit pixels of the same shape in place of float32 pixel_values.
            assert [n for n, _, _ in ins] == ["pixel_values"], ins
            ins = [("pixels", "UINT8", ins[0][2])]
        out[e] = (ins, conv(spec["outputs"]))
    return out


def check_metadata(client, names: dict, manifest: dict, contract: dict) -> list[str]:
    """Each model's metadata against bundle.toml, and against the contract JSON the repository carries."""
    errors = []
    expected = expected_metadata(manifest) | expected_segment_metadata(manifest)
    for e, (ins, outs) in expected.items():
        c = contract["models"].get(e)
        cins = [(t["name"], t["datatype"], t["shape"]) for t in c["inputs"]] if c else None
        couts = [(t["name"], t["datatype"], t["shape"]) for t in c["outputs"]] if c else None
        if (cins, couts) != (ins, outs):
            errors.append(f"{names[e]}: the contract JSON says inputs {cins} outputs {couts}, expected {ins} {outs}")
        name = names[e]
        if not client.is_model_ready(name):
            errors.append(f"{name}: not ready")
            continue
        md = client.get_model_metadata(name)
        for what, want, got in (("input", ins, md.inputs), ("output", outs, md.outputs)):
            found = [(t.name, t.datatype, list(t.shape)) for t in got]
            if found != want:
                errors.append(f"{name}: {what}s expected {want}, found {found}")
        print(f"  {name}: metadata ({md.platform}) matches bundle.toml and the contract JSON "
              f"({len(ins)} inputs, {len(outs)} outputs)")
    cfg = client.get_model_config(names["image_encoder"]).config
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    s = str(manifest["preprocess"]["image_size"])
    want = {"samclipseg_image_input": "pixels", "samclipseg_image_dtype": "uint8",
            "samclipseg_image_layout": "NCHW", "samclipseg_image_size": s, "samclipseg_normalisation": "in_graph",
            "samclipseg_bundle": manifest["bundle"]["name"]}
    for k, v in want.items():
        if params.get(k) != v:
            errors.append(f"{names['image_encoder']}: config parameter {k} expected {v!r}, found {params.get(k)!r}")
    return errors


def infer(client, model: str, feeds: dict[str, np.ndarray], outputs: list[str]):
    """Runs one request; returns (outputs, tensor bytes up, tensor bytes down, message bytes up, message bytes down)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for n, a in feeds.items():
        t = grpcclient.InferInput(n, list(a.shape), np_to_triton_dtype(a.dtype))
        t.set_data_from_numpy(a)
        inputs.append(t)
    req_out = [grpcclient.InferRequestedOutput(n) for n in outputs]
    msg_up = None
    try:  # the same request message tritonclient sends, to count what crosses the wire
        from tritonclient.grpc._utils import _get_inference_request

        msg_up = _get_inference_request(model_name=model, inputs=inputs, model_version="", request_id="",
                                        outputs=req_out, sequence_id=0, sequence_start=False,
                                        sequence_end=False, priority=0, timeout=None, parameters=None).ByteSize()
    except Exception:
        pass
    res = client.infer(model, inputs, outputs=req_out)
    got = {n: res.as_numpy(n) for n in outputs}
    up = sum(a.nbytes for a in feeds.values())
    down = sum(a.nbytes for a in got.values())
    return got, up, down, msg_up, res.get_response().ByteSize()


def compare(label: str, got: dict, ref: dict, tol: float) -> list[str]:
    errors = []
    for n, r in ref.items():
        g = got[n]
        if g.shape != r.shape or g.dtype != r.dtype:
            errors.append(f"{label} {n}: shape/dtype {g.shape} {g.dtype}, local {r.shape} {r.dtype}")
            continue
        d = float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64)))) if r.size else 0.0
        ok = d < tol
        print(f"  {label} {n} {list(r.shape)}: max abs diff {d:.3g} {'ok' if ok else f'>= {tol}'}")
        if not ok:
            errors.append(f"{label} {n}: max abs diff {d:.3g} >= {tol}")
    return errors


def concurrent_text(client, model: str, ids, mask, ref: dict, tol: float, rounds: int = 4) -> list[str]:
    import queue

    import tritonclient.grpc as grpcclient

    before = {m.name: m for m in client.get_inference_statistics(model).model_stats}[model]
    done: queue.Queue = queue.Queue()
    n = 0
    for _ in range(rounds):
        for i in range(ids.shape[0]):
            t_ids = grpcclient.InferInput("input_ids", [1, ids.shape[1]], "INT64")
            t_ids.set_data_from_numpy(ids[i : i + 1])
            t_mask = grpcclient.InferInput("attention_mask", [1, mask.shape[1]], "INT64")
            t_mask.set_data_from_numpy(mask[i : i + 1])
            client.async_infer(model, [t_ids, t_mask], callback=lambda result, error, i=i: done.put((i, result, error)))
            n += 1
    errors = []
    worst = 0.0
    for _ in range(n):
        i, r, e = done.get(timeout=60)  # a callback that raises is dropped by tritonclient
        if e is not None:
            errors.append(f"{model}: concurrent request failed: {e}")
            continue
        d = float(np.max(np.abs(r.as_numpy("text_features") - ref["text_features"][i : i + 1])))
        worst = max(worst, d)
    after = {m.name: m for m in client.get_inference_statistics(model).model_stats}[model]
    reqs = after.inference_count - before.inference_count
    execs = after.execution_count - before.execution_count
    ok = worst < tol
    print(f"  {model}: {n} concurrent one-prompt requests, max abs diff {worst:.3g} {'ok' if ok else f'>= {tol}'}; "
          f"the server ran {reqs} inferences in {execs} executions (dynamic batching merges when executions < inferences)")
    if not ok:
        errors.append(f"{model}: concurrent requests: max abs diff {worst:.3g} >= {tol}")
    return errors


KSERVE = {"float32": "FP32", "float16": "FP16", "int64": "INT64", "int32": "INT32", "uint8": "UINT8", "bool": "BOOL"}


def expected_segment_metadata(manifest: dict) -> dict[str, tuple[list, list]]:
    """The select model's and the segment ensemble's metadata, from bundle.toml alone."""
    dec = {t["name"]: t for t in manifest["engines"]["decoder"]["outputs"]}
    enc_out = {t["name"] for t in manifest["engines"]["image_encoder"]["outputs"]}
    q = dec["pred_logits"]["shape"][1]
    h, w = dec["pred_masks"]["shape"][2:]
    s = manifest["engines"]["image_encoder"]["inputs"][0]["shape"]

    def md(t):
        return (t["name"], KSERVE[t["dtype"]], [-1 if isinstance(d, str) else d for d in t["shape"]])

    kept = [("kept_index", "INT64", [-1, 2]), ("kept_masks", "FP16", [-1, h, w])]
    scores = [("pred_logits", "FP32", [-1, q]), ("pred_boxes", "FP32", [-1, q, 4]), ("presence_logits", "FP32", [-1, 1])]
    threshold = ("score_threshold", "FP32", [1])
    select_in = [md(dec[n]) for n in ("pred_logits", "pred_boxes", "pred_masks", "presence_logits")] + [threshold]
    select_out = [("pass_" + n, d, sh) for n, d, sh in scores] + kept
    client_in = [md(t) for t in manifest["engines"]["decoder"]["inputs"] if t["name"] not in enc_out]
    segment_in = [("pixels", "UINT8", [1] + list(s[1:]))] + client_in + [threshold]
    return {"select": (select_in, select_out), "segment": (segment_in, scores + kept)}


def local_select(logits, presence, masks, threshold: float):
    """kept_index and the float32 masks of the kept queries, by NumPy: the reference for the segment ensemble."""
    score = (1 / (1 + np.exp(-logits.astype(np.float64)))) * (1 / (1 + np.exp(-presence.astype(np.float64))))
    index = np.argwhere(score > threshold).astype(np.int64).reshape(-1, 2)
    return index, masks[index[:, 0], index[:, 1]]


def check_segment(label: str, got: dict, ref_d: dict, threshold: float, tol: float) -> tuple[list[str], int]:
    """The segment ensemble's answer against the local decoder run and the NumPy selection."""
    errors = compare(label, {n: got[n] for n in ("pred_logits", "pred_boxes", "presence_logits")},
                     {n: ref_d[n] for n in ("pred_logits", "pred_boxes", "presence_logits")}, tol)
    index, masks = local_select(ref_d["pred_logits"], ref_d["presence_logits"], ref_d["pred_masks"], threshold)
    gi, gm = got["kept_index"], got["kept_masks"]
    if gi.dtype != np.int64 or not np.array_equal(gi, index):
        errors.append(f"{label} kept_index {gi.tolist()} ({gi.dtype}), local selection {index.tolist()}")
        return errors, len(index)
    if gm.dtype != np.float16 or gm.shape != masks.shape:
        errors.append(f"{label} kept_masks {gm.dtype} {list(gm.shape)}, local float16 {list(masks.shape)}")
        return errors, len(index)
    # float16 rounding of the local float32 mask logits (half a unit in the last place) plus the tolerance.
    err = np.abs(gm.astype(np.float64) - masks.astype(np.float64))
    allowed = tol + triton_repo.fp16_rounding(masks)
    ok = bool(np.all(err <= allowed))
    worst = float(np.max(err / allowed)) if err.size else 0.0
    print(f"  {label} kept_index {list(gi.shape)} equals the local selection; kept_masks {list(gm.shape)} float16: "
          f"max abs diff {float(err.max()) if err.size else 0.0:.3g}, {worst:.2f} of the allowed "
          f"(tolerance + float16 rounding) {'ok' if ok else 'too far'}")
    if not ok:
        errors.append(f"{label} kept_masks: off by up to {worst:.2f} x (tolerance + float16 rounding)")
    return errors, len(index)


def segment_feeds(pixels, features, mask, threshold: float) -> dict[str, np.ndarray]:
    return {"pixels": pixels, "text_features": features, "attention_mask": mask,
            "score_threshold": np.asarray([threshold], np.float32)}


SEGMENT_OUTPUTS = ["pred_logits", "pred_boxes", "presence_logits", "kept_index", "kept_masks"]


def model_stats(client, model: str):
    return {m.name: m for m in client.get_inference_statistics(model).model_stats}[model]


def concurrent_segment(url: str, client, names: dict, cases: list, tol: float, rounds: int = 6) -> list[str]:
    """len(cases) client threads (one gRPC channel each, like that many streams) send a segment
    request each at the same moment, `rounds` times; every answer is checked against its own
    local reference, and the image encoder's statistics show how Triton batched the frames."""
    import threading

    import tritonclient.grpc as grpcclient

    enc = names["image_encoder"]
    before = model_stats(client, enc)
    barrier = threading.Barrier(len(cases))
    results: list = [None] * len(cases)

    def worker(i):
        c = grpcclient.InferenceServerClient(url)
        label, feeds, ref_d, threshold = cases[i]
        errs, times = [], []
        try:
            for _ in range(rounds):
                barrier.wait(timeout=60)
                t0 = time.monotonic()
                got, *_ = infer(c, names["segment"], feeds, SEGMENT_OUTPUTS)
                times.append(time.monotonic() - t0)
                e, _ = check_segment(label, got, ref_d, threshold, tol) if not errs else ([], 0)
                errs += e
        except Exception as err:  # noqa: BLE001 - reported as a mismatch
            errs.append(f"{label}: {err}")
            barrier.abort()
        finally:
            c.close()
        results[i] = (errs, times)

    import contextlib
    import io

    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):  # one line per request would drown the report
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(cases))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    after = model_stats(client, enc)
    errors = [e for r in results if r for e in r[0]]
    times = [t for r in results if r for t in r[1]]
    infs = after.inference_count - before.inference_count
    execs = after.execution_count - before.execution_count
    hist_before = {b.batch_size: b.compute_infer.count for b in before.batch_stats}
    hist = {b.batch_size: b.compute_infer.count - hist_before.get(b.batch_size, 0) for b in after.batch_stats}
    hist = {k: v for k, v in sorted(hist.items()) if v}
    n = len(cases) * rounds
    print(f"  {names['segment']}: {len(cases)} threads x {rounds} rounds = {n} concurrent requests "
          f"({', '.join(c[0] for c in cases)}), every answer its own frame's: {'ok' if not errors else 'NO'}; "
          f"latency mean {1e3 * np.mean(times):.0f} ms, max {1e3 * np.max(times):.0f} ms" if times else "")
    print(f"  {enc} statistics over them: {infs} inferences in {execs} executions, "
          f"executions per batch size {hist}")
    if infs != n:
        errors.append(f"{enc}: {infs} inferences for {n} segment requests")
    if not execs < infs:
        errors.append(f"{enc}: {infs} inferences in {execs} executions: the dynamic batcher merged no frames")
    return errors


def load_pixels(image: Path, s: int) -> np.ndarray:
    """The photo resized to S x S (Pillow, bilinear), uint8 NCHW [1, 3, S, S]."""
    from PIL import Image

    rgb = np.asarray(Image.open(image).convert("RGB").resize((s, s), Image.BILINEAR), dtype=np.uint8)
    return np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])


def pick_threshold(ref_d: dict, target: float) -> float:
    """A threshold near target that keeps some but not all queries, with no score within
    1e-4 of it (the server's float32 sigmoid cannot flip a query)."""
    scores = triton_repo.select_scores(ref_d["pred_logits"], ref_d["presence_logits"])
    thr = triton_repo.safe_threshold(scores, target)
    kept = int(np.sum(scores > thr))
    if kept == 0 or kept == scores.size:
        thr = triton_repo.safe_threshold(scores, float(np.quantile(scores, 0.9)))
    return thr


def run_segment(server, names: dict, manifest: dict, bundle: Path, pixels, ref_t: dict, ref_d: dict, mask,
                run_local, traffic: list, tol: float) -> list[str]:
    """The segment ensemble on the golden photo (both prompts, one prompt, nothing kept), then
    4 streams at once."""
    seg = names["segment"]
    s = int(manifest["preprocess"]["image_size"])
    enc_out = {t["name"] for t in manifest["engines"]["image_encoder"]["outputs"]}
    feats = ref_t["text_features"]

    def local_decoder(px, f, m):
        ref_i = run_local("image_encoder", {"pixel_values": triton_repo.normalise(px, manifest)})
        feeds = {}
        for t in manifest["engines"]["decoder"]["inputs"]:
            n = t["name"]
            feeds[n] = ref_i[n] if n in enc_out else {"text_features": f, "attention_mask": m}[n]
        return run_local("decoder", feeds)

    errors = []
    default = float(manifest["decoder"]["default_threshold"])
    print(f"segment ensemble {seg} (image_encoder -> decoder -> select on the server), "
          f"local reference: image_encoder + decoder with ONNX Runtime, selection with NumPy:")
    runs = [("2 prompts", ref_d, feats, mask, None),
            ("1 prompt", None, feats[:1], mask[:1], None),
            ("2 prompts, threshold 1", ref_d, feats, mask, 1.0)]
    for what, ref, f, m, thr in runs:
        ref = ref if ref is not None else local_decoder(pixels, f, m)
        thr = pick_threshold(ref, default) if thr is None else thr
        print(f"  {what}, score_threshold {thr:.6g}:")
        try:
            got, *b = infer(server.client, seg, segment_feeds(pixels, f, m, thr), SEGMENT_OUTPUTS)
        except Exception as err:  # noqa: BLE001 - the server's refusal is a mismatch, not a crash
            errors.append(f"{seg} ({what}): {err}")
            print(f"    failed: {err}")
            continue
        e, k = check_segment(f"  segment ({what})", got, ref, thr, tol)
        errors += e
        traffic.append((seg, f"1 fresh frame, {what}, {k} kept", *b, f.shape[0], k))

    # Four streams at once: different frames and prompt counts, so an answer given to the
    # wrong request (a batching mix-up) shows.
    photos = sorted((bundle / "golden").glob("*.png"))
    frames = [(p.stem, load_pixels(p, s)) for p in photos[:3]]
    frames.append((f"{photos[0].stem} mirrored", np.ascontiguousarray(frames[0][1][..., ::-1])))
    while len(frames) < 4:
        frames.append((f"{frames[-1][0]} flipped", np.ascontiguousarray(frames[-1][1][:, :, ::-1])))
    cases = []
    for i, (label, px) in enumerate(frames[:4]):
        p = 2 if i % 2 == 0 else 1
        ref = local_decoder(px, feats[:p], mask[:p])
        thr = pick_threshold(ref, default)
        cases.append((f"{label} ({p} prompt{'s' if p > 1 else ''})",
                      segment_feeds(px, feats[:p], mask[:p], thr), ref, thr))
    errors += concurrent_segment(server.url, server.client, names, cases, tol)
    return errors


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--image", type=Path, help="photo to run (default: the first of BUNDLE/golden/*.png)")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--timeout", type=float, default=120, help="seconds to wait for readiness")
    ap.add_argument("--keep", type=Path, help="write the repository and server log here and keep them")
    a = ap.parse_args(argv)

    import onnxruntime as ort
    from PIL import Image
    from tokenizers import Tokenizer

    bundle = a.bundle.resolve()
    with (bundle / "bundle.toml").open("rb") as f:
        manifest = tomllib.load(f)
    s = int(manifest["preprocess"]["image_size"])
    image = a.image or next(iter(sorted((bundle / "golden").glob("*.png"))), None)
    if image is None:
        print(f"triton_check: {bundle} has no golden/*.png; pass --image", file=sys.stderr)
        return 2

    work = Path(tempfile.mkdtemp(prefix="samclipseg-triton-")) if a.keep is None else a.keep.resolve()
    work.mkdir(parents=True, exist_ok=True)
    repo = work / "repository"
    names = triton_repo.model_names(manifest)
    print(f"repository {repo} (--python-backend)")
    contract = triton_repo.write_repository(bundle, repo, python_backend=True, log=lambda m: print("  " + m))

    # Inputs: the photo resized to S x S, 8-bit NCHW up; two prompts through the bundle's tokenizer.
    rgb = np.asarray(Image.open(image).convert("RGB").resize((s, s), Image.BILINEAR), dtype=np.uint8)
    pixels = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None])
    tok = Tokenizer.from_file(str(bundle / manifest["text"]["tokenizer"]))
    ctx, pad = int(manifest["text"]["context_length"]), int(manifest["text"]["pad_token_id"])
    ids = np.full((len(PROMPTS), ctx), pad, np.int64)
    mask = np.zeros((len(PROMPTS), ctx), np.int64)
    for i, p in enumerate(PROMPTS):
        t = tok.encode(p).ids[:ctx]
        ids[i, : len(t)] = t
        mask[i, : len(t)] = 1

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    local = {e: ort.InferenceSession(str(bundle / manifest["engines"][e]["file"]), so,
                                     providers=["CPUExecutionProvider"]) for e in triton_repo.ENGINES}

    def run_local(e, feeds):
        sess = local[e]
        return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))

    errors: list[str] = []
    traffic = []
    try:
        server = Server(repo, work, a.timeout)
    except Exception as err:
        print(f"triton_check: {err}", file=sys.stderr)
        return 2
    try:
        print("model metadata:")
        errors += check_metadata(server.client, names, manifest, contract)
        print(f"inference on {image.name} at {s} px, prompts {PROMPTS}:")
        outs = {e: [t["name"] for t in manifest["engines"][e]["outputs"]] for e in triton_repo.ENGINES}

        ref_t = run_local("text_encoder", {"input_ids": ids, "attention_mask": mask})
        got_t, *b = infer(server.client, names["text_encoder"], {"input_ids": ids, "attention_mask": mask}, outs["text_encoder"])
        traffic.append((names["text_encoder"], f"{len(PROMPTS)} prompts", *b))
        errors += compare("text_encoder", got_t, ref_t, a.tolerance)

        ref_i = run_local("image_encoder", {"pixel_values": triton_repo.normalise(pixels, manifest)})
        got_i, *b = infer(server.client, names["image_encoder"], {"pixels": pixels}, outs["image_encoder"])
        traffic.append((names["image_encoder"], "1 fresh frame", *b))
        errors += compare("image_encoder", got_i, ref_i, a.tolerance)

        # The decoder on the local features, so each model is compared on its own.
        dec_in = {t["name"]: (ref_i.get(t["name"]) if t["name"] in ref_i else ref_t.get(t["name"]))
                  for t in manifest["engines"]["decoder"]["inputs"]}
        dec_in["attention_mask"] = mask
        missing = [n for n, v in dec_in.items() if v is None]
        if missing:
            errors.append(f"decoder inputs {missing} come from neither encoder")
        else:
            ref_d = run_local("decoder", dec_in)
            got_d, *b = infer(server.client, names["decoder"], dec_in, outs["decoder"])
            traffic.append((names["decoder"], f"{len(PROMPTS)} prompts", *b))
            errors += compare("decoder", got_d, ref_d, a.tolerance)
            errors += run_segment(server, names, manifest, bundle, pixels, ref_t, ref_d, mask, run_local,
                                  traffic, a.tolerance)
        # Concurrent one-prompt requests to the batching text encoder: each answer must be its own
        # prompt's (model.py concatenates what the dynamic batcher merges and splits it again).
        errors += concurrent_text(server.client, names["text_encoder"], ids, mask, ref_t, a.tolerance)

        # The server's own statistics: each model ran (the results above came from it).
        stats = server.client.get_inference_statistics().model_stats
        counts = {m.name: m.inference_count for m in stats}
        for e, name in names.items():
            print(f"  server statistics: {name} inference_count {counts.get(name, 0)}")
            if counts.get(name, 0) < 1:
                errors.append(f"{name}: the server counted no inference")
    finally:
        server.stop()

    print(f"tritonserver was ready after {server.ready_s:.1f} s with the {len(names)} models")
    print("bytes per model call (tensor contents / whole gRPC message):")
    dims = triton_repo.segment_dims(manifest)
    for name, what, up, down, msg_up, msg_down, *formula in traffic:
        mu = f"{msg_up:,}" if msg_up is not None else "?"
        print(f"  {name} ({what}): up {up:,} / {mu}, down {down:,} / {msg_down:,}")
        if formula:  # a segment request: its tensors must be what segment_wire_bytes says
            p, k = formula
            want = triton_repo.segment_wire_bytes(**dims, prompts=p, kept=k)
            if (up, down) != want:
                errors.append(f"{name} ({what}): tensors up {up}, down {down}; segment_wire_bytes says {want}")
    for size in (s, triton_repo.FULL_SIZE):
        u8, f32 = triton_repo.wire_bytes(size)
        print(f"image tensor up per fresh frame at {size} px: {u8:,} bytes (uint8; float32 would be {f32:,})")
    triton_repo.print_segment_wire(dims, "this bundle, the formula the requests above matched")
    triton_repo.print_segment_wire(triton_repo.SAM3, "SAM 3, facebook/sam3")
    if a.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    if errors:
        print(f"triton_check: FAILED, {len(errors)} mismatch(es):", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1
    print("triton_check: all models match the local ONNX Runtime run")
    return 0


if __name__ == "__main__":
    sys.exit(main())

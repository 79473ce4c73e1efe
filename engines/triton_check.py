#!/usr/bin/env python3
"""Serves a bundle from a real Triton server and checks it against ONNX Runtime.

    .venv-triton/bin/python engines/triton_check.py BUNDLE [--keep DIR] [--timeout S]

(`make triton-check` runs it on tests/fixtures/tiny-sam3 after
`scripts/setup.sh triton`.) Steps:

1. writes a --python-backend repository for BUNDLE (engines/triton_repo.py) in
   a temporary directory;
2. starts the tritonserver binary of the nvidia-pytriton wheel on 127.0.0.1
   on a free port (gRPC only), waits for readiness, and stops it by its PID
   at the end;
3. checks each model's metadata (tensor names, datatypes, shapes) against
   bundle.toml, and the image encoder's config parameters (uint8 pixels);
4. runs the three models over gRPC on a golden photo of the bundle resized to
   the image size (uint8 pixels up) and two prompts, and the bundle's own ONNX
   files locally with ONNX Runtime (float32 normalised pixels): every output
   within --tolerance (1e-4), and the server's statistics count each run;
5. prints the bytes up and down of each model call (tensor contents and the
   whole gRPC message).

Exits 1 on any mismatch, 2 when the server cannot be started.
"""

from __future__ import annotations

import argparse
import os
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
    libs = Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"
    return root / "bin" / "tritonserver", libs, backends


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


class Server:
    def __init__(self, repo: Path, work: Path, timeout: float):
        binary, libs, backends = backend_dir(work)
        self.port = free_port()
        self.log_path = work / "tritonserver.log"
        self.log = self.log_path.open("wb")
        cmd = [
            str(binary),
            f"--model-repository={repo}",
            f"--backend-directory={backends}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.port}",
            "--allow-http=false",
            "--allow-metrics=false",
            "--pinned-memory-pool-byte-size=0",
            "--cuda-memory-pool-byte-size=0:0",
            "--exit-on-error=true",
            "--strict-readiness=true",
        ]
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
            time.sleep(0.2)
        print(f"tritonserver ready after {time.monotonic() - t0:.1f} s")

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


def check_metadata(client, names: dict, manifest: dict) -> list[str]:
    errors = []
    for e, (ins, outs) in expected_metadata(manifest).items():
        name = names[e]
        if not client.is_model_ready(name):
            errors.append(f"{name}: not ready")
            continue
        md = client.get_model_metadata(name)
        for what, want, got in (("input", ins, md.inputs), ("output", outs, md.outputs)):
            found = [(t.name, t.datatype, list(t.shape)) for t in got]
            if found != want:
                errors.append(f"{name}: {what}s expected {want}, found {found}")
        print(f"  {name}: metadata matches bundle.toml ({len(ins)} inputs, {len(outs)} outputs)")
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
    triton_repo.write_repository(bundle, repo, python_backend=True, log=lambda m: print("  " + m))

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
        errors += check_metadata(server.client, names, manifest)
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

    print("bytes per model call (tensor contents / whole gRPC message):")
    for name, what, up, down, msg_up, msg_down in traffic:
        mu = f"{msg_up:,}" if msg_up is not None else "?"
        print(f"  {name} ({what}): up {up:,} / {mu}, down {down:,} / {msg_down:,}")
    for size in (s, triton_repo.FULL_SIZE):
        u8, f32 = triton_repo.wire_bytes(size)
        print(f"image tensor up per fresh frame at {size} px: {u8:,} bytes (uint8; float32 would be {f32:,})")
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

#!/usr/bin/env python3
"""Runs the tritonserver of the nvidia-pytriton wheel on a model repository.

    .venv-triton/bin/python engines/triton_serve.py REPO --port P --work DIR
                            [--tls-cert PEM --tls-key PEM] [--host 127.0.0.1]
                            [--model-control-mode explicit]

Assembles the python backend directory (the wheel's backend plus the stub for
this Python) under --work, sets the library path the stub needs, and then
*becomes* tritonserver (exec): the caller's child PID is the server's, so a
test stops it by that PID. The Rust tests (tests/common/triton.rs) start their
servers through this script; it prints nothing of its own once exec'd.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from triton_check import backend_dir, server_command, server_env  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("repo", type=Path)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--work", type=Path, required=True, help="directory for the backend files")
    ap.add_argument("--tls-cert", type=Path)
    ap.add_argument("--tls-key", type=Path)
    ap.add_argument(
        "--model-control-mode",
        choices=["none", "explicit"],
        default="none",
        help="explicit: every model loaded at start, then loaded and unloaded through the repository API",
    )
    a = ap.parse_args(argv)
    a.work.mkdir(parents=True, exist_ok=True)
    if (a.work / "backends").exists():
        import shutil

        shutil.rmtree(a.work / "backends")
    binary, libs, backends = backend_dir(a.work)
    cmd = server_command(binary, a.repo, backends, a.host, a.port)
    if a.model_control_mode == "explicit":
        cmd += ["--model-control-mode=explicit", "--load-model=*"]
    if a.tls_cert:
        cmd += ["--grpc-use-ssl=true", f"--grpc-server-cert={a.tls_cert}", f"--grpc-server-key={a.tls_key}"]
    sys.stdout.flush()
    os.execve(cmd[0], cmd, server_env(libs))
    return 1


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# GPU check for samclipseg, for a machine with an NVIDIA GPU; under 8 minutes.
#
#   tests/gpu-check.sh [BUNDLE] [--no-build] [--strict-gpu]
#
# Shows nvidia-smi, builds in release, runs the kernel-vs-CPU tests
# (tests/gpu_kernels.rs) and the gpu_check example (kernel comparisons and
# timings at 640x360, 1080p and 4K for every input layout, then the CUDA and
# TensorRT backends on BUNDLE, default tests/fixtures/tiny-sam3), and ends with
# a short report. --no-build uses binaries already in target/release (for a
# machine without cargo or crates.io: build elsewhere, copy target/release).
# --strict-gpu loads the GPU backends in strict mode (no node on the CPU).
#
# pip-installed NVIDIA libraries (nvidia-*-cu12, tensorrt) in the project's
# .venv or python3 are put on LD_LIBRARY_PATH, and ORT_DYLIB_PATH is pointed at
# an installed onnxruntime-gpu when it is not set.
#
# Exit status: 0 everything that could run passed: the kernels match their CPU
# twins, and each GPU backend loaded, ran and matched the CPU backend (scores,
# kept instances, masks); a backend or the kernels whose libraries are absent
# are reported as skipped ("result: PASS, with skips"), and only that: a
# backend that fails to load or to run with its libraries present is a
# failure (the example skips only on the error variant Error::MissingLibrary).
# 1 a check failed or timed out; 77 no NVIDIA driver (libcuda.so.1) here:
# nothing checked.
# CARGO overrides the cargo command (e.g. CARGO="nice -n 19 cargo");
# GPU_CHECK_FORCE=1 builds and runs even without a driver (to test this script).

set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

BUNDLE=tests/fixtures/tiny-sam3
BUILD=1
STRICT=()
for arg in "$@"; do
    case "$arg" in
        --no-build) BUILD=0 ;;
        --strict-gpu) STRICT=(--strict-gpu) ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        -*) echo "unknown option $arg" >&2; exit 1 ;;
        *) BUNDLE=$arg ;;
    esac
done
CARGO=${CARGO:-cargo}
START=$SECONDS
BUDGET=465 # seconds for everything, so that the whole run stays under 8 minutes
left() { echo $((BUDGET - (SECONDS - START))); }
# Timeout for a step: its own cap, or what is left minus a reserve for later steps.
step_limit() {
    local cap=$1 reserve=$2 l
    l=$(( $(left) - reserve ))
    (( l < cap )) && cap=$l
    (( cap < 10 )) && cap=10
    echo "$cap"
}
REPORT=()
note() { REPORT+=("$1"); }
FAILED=0

# The release binaries run here directly, not through cargo: let them find the
# copy from `make deps` for the CPU backend when ORT_DYLIB_PATH is not set.
export SAMCLIPSEG_DEV_ORT=${SAMCLIPSEG_DEV_ORT:-1}

# Libraries from pip wheels (nvidia-cudnn-cu12, nvidia-cuda-nvrtc-cu12, tensorrt, ...).
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if command -v "$PY" >/dev/null 2>&1; then
    extra=$("$PY" - <<'EOF' 2>/dev/null
import glob, importlib, os
dirs = []
for pkg in ("nvidia", "tensorrt_libs"):
    try:
        m = importlib.import_module(pkg)
    except Exception:
        continue
    for p in m.__path__:
        dirs += sorted(glob.glob(os.path.join(p, "*", "lib"))) + [p]
print(":".join(d for d in dirs if glob.glob(os.path.join(d, "*.so*"))))
EOF
)
    [ -n "$extra" ] && export LD_LIBRARY_PATH="$extra${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    if [ -z "${ORT_DYLIB_PATH:-}" ]; then
        ort=$("$PY" -c 'import onnxruntime, glob, os; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi/libonnxruntime.so.*")))[-1])' 2>/dev/null)
        [ -n "$ort" ] && export ORT_DYLIB_PATH=$ort
    fi
fi

# Whether a shared library can be found by the dynamic linker.
have_lib() {
    local d
    ldconfig -p 2>/dev/null | grep -q "[[:space:]]$1 " && return 0
    IFS=: read -ra dirs <<< "${LD_LIBRARY_PATH:-}"
    for d in "${dirs[@]}" /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/lib64 \
        /usr/local/nvidia/lib64 /usr/lib/wsl/lib; do
        [ -n "$d" ] && [ -e "$d/$1" ] && return 0
    done
    return 1
}
missing() {
    local out=() l
    for l in "$@"; do have_lib "$l" || out+=("$l"); done
    echo "${out[*]}"
}

echo "== samclipseg GPU check ($(date -u +%Y-%m-%dT%H:%M:%SZ)) =="
if command -v nvidia-smi >/dev/null 2>&1; then
    timeout 20 nvidia-smi
    gpu=$(timeout 10 nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n1)
    note "GPU: ${gpu:-nvidia-smi gave no GPU}"
else
    echo "nvidia-smi: not found"
    note "GPU: nvidia-smi not found"
fi

if ! have_lib libcuda.so.1 && [ -z "${GPU_CHECK_FORCE:-}" ]; then
    echo "no GPU: skipped: no NVIDIA driver (libcuda.so.1 is not on the library path); install the driver to run this check"
    echo "no GPU: skipped: kernel tests, kernel timings, CUDA and TensorRT backends"
    exit 77
fi

if have_lib libnvrtc.so.12 || have_lib libnvrtc.so; then
    note "NVRTC: present"
else
    note "NVRTC: missing (libnvrtc.so.12): the kernels cannot compile; pip install nvidia-cuda-nvrtc-cu12"
fi
m=$(missing libcudart.so.12 libcublas.so.12 libcublasLt.so.12 libcudnn.so.9 libcufft.so.11)
if [ -n "$m" ]; then note "CUDA backend libraries: not present: $m"; else note "CUDA backend libraries: present"; fi
m=$(missing libnvinfer.so.10 libnvinfer_plugin.so.10 libnvonnxparser.so.10)
if [ -n "$m" ]; then note "TensorRT libraries: not present: $m"; else note "TensorRT libraries: present"; fi
note "ONNX Runtime: ${ORT_DYLIB_PATH:-ORT_DYLIB_PATH not set, so the copy from make deps or the system one}"

# 1. Build.
if (( BUILD )); then
    t=$SECONDS
    echo "== build (release) =="
    if timeout "$(step_limit 240 150)" $CARGO build --release --example gpu_check --test gpu_kernels; then
        note "build: ok ($((SECONDS - t)) s)"
    else
        rc=$?
        note "build: FAILED (exit $rc$([ $rc = 124 ] && echo ', timed out'))"
        FAILED=1
    fi
fi
EXAMPLE_BIN=target/release/examples/gpu_check

# 2. Kernel-vs-CPU tests.
echo "== kernel tests (tests/gpu_kernels.rs) =="
t=$SECONDS
limit=$(step_limit 120 100)
if (( BUILD )); then
    out=$(timeout "$limit" $CARGO test --release --test gpu_kernels -- --nocapture 2>&1)
    rc=$?
else
    TEST_BIN=$(ls -t target/release/deps/gpu_kernels-* 2>/dev/null | grep -v '\.d$' | head -n1)
    if [ -n "$TEST_BIN" ] && [ -x "$TEST_BIN" ]; then
        out=$(timeout "$limit" "$TEST_BIN" --nocapture 2>&1)
        rc=$?
    else
        out="no test binary target/release/deps/gpu_kernels-*"
        rc=1
    fi
fi
echo "$out"
summary=$(echo "$out" | grep -E '^test result:' | tail -n1)
if [ $rc = 0 ]; then
    if echo "$out" | grep -q 'skipped: no CUDA driver'; then
        note "kernel tests: skipped: no CUDA driver ($summary)"
    else
        note "kernel tests: ok ($((SECONDS - t)) s): $summary"
    fi
else
    note "kernel tests: FAILED (exit $rc$([ $rc = 124 ] && echo ', timed out')): ${summary:-$(echo "$out" | tail -n1)}"
    FAILED=1
fi

# 3. Comparisons with timings, then the backends.
echo "== gpu_check example =="
if [ ! -x "$EXAMPLE_BIN" ]; then
    note "gpu_check: not run: $EXAMPLE_BIN is missing"
    FAILED=1
else
    out=$(timeout "$(step_limit 200 5)" "$EXAMPLE_BIN" "$BUNDLE" "${STRICT[@]}" 2>&1)
    rc=$?
    echo "$out"
    while IFS= read -r line; do note "$line"; done < <(echo "$out" | grep -E '^(kernels|backend |no GPU)')
    case $rc in
        0|77) ;;
        124) note "gpu_check: FAILED: timed out"; FAILED=1 ;;
        *) note "gpu_check: FAILED (exit $rc)"; FAILED=1 ;;
    esac
fi

echo
echo "== report ($((SECONDS - START)) s) =="
for line in "${REPORT[@]}"; do echo "  $line"; done
if (( FAILED )); then
    echo "result: FAIL"
    exit 1
fi
if [ "${rc:-}" = 77 ]; then
    echo "result: SKIPPED (no CUDA driver)"
    exit 77
fi
skips=$(printf '%s\n' "${REPORT[@]}" | grep -c 'skipped')
if (( skips > 0 )); then
    echo "result: PASS, with skips ($skips: a library is missing, see above)"
else
    echo "result: PASS"
fi

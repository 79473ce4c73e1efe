#!/usr/bin/env bash
# Installs what building, testing and the demo need on Debian 12 or 13, and nothing
# twice: apt packages, a Rust toolchain check, and the ONNX Runtime library
# with OpenVINO (from the `onnxruntime-openvino` wheel on PyPI) into
# .deps/onnxruntime.
# `setup.sh engines` also installs the PyTorch tooling for engines/ into .venv.
# `setup.sh test` also installs Debian's chromium and chromium-driver (the
# studio's browser tests).
# `setup.sh triton` also installs the Triton server (the nvidia-pytriton wheel)
# and client into .venv-triton (engines/requirements-triton.txt).
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.24.1
APT_PACKAGES=(
  build-essential pkg-config python3 python3-venv python3-pip python3-numpy python3-pil python3-skimage
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-libav
  # x264enc, for the README's file-to-file example (plugins/samclipseg/tests/doc_pipelines.rs runs it)
  gstreamer1.0-plugins-ugly
)

if [ "${1:-}" = "test" ]; then
  APT_PACKAGES+=(chromium chromium-driver)
fi

# Installs the packages of "$@" that are missing.
apt_install() {
  local need_apt=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$p")
  done
  if [ ${#need_apt[@]} -gt 0 ]; then
    echo "setup: installing ${need_apt[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
  fi
}
apt_install "${APT_PACKAGES[@]}"
# GStreamer 1.26 or newer (Debian 13): the analytics library's development
# files, for the plugin's `analytics` feature (scripts/cargo-features.sh), and
# its Python bindings (gi.repository.GstAnalytics, read by the tests).
if pkg-config --atleast-version=1.26 gstreamer-1.0; then
  apt_install libgstreamer-plugins-bad1.0-dev gir1.2-gst-plugins-bad-1.0 python3-gst-1.0
fi

if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no Rust toolchain; installing one with rustup (Rust 1.92 or newer is needed)"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi

# ONNX Runtime: the libraries inside the official onnxruntime-openvino wheel
# (ONNX Runtime with its CPU provider and the OpenVINO execution provider, and
# the OpenVINO CPU runtime it needs), kept in their own venv. The CPU provider
# runs fp32 (exact parity with PyTorch); OpenVINO runs the bf16 and int8
# precisions (src/precision.rs). GPU and NPU plugins are left out.
ort_dir=.deps/onnxruntime
if ! ls "$ort_dir"/libonnxruntime_providers_openvino.so >/dev/null 2>&1; then
  echo "setup: fetching ONNX Runtime $ORT_VERSION with OpenVINO (the onnxruntime-openvino wheel from PyPI)"
  mkdir -p .deps
  python3 -m venv .deps/ort-venv
  .deps/ort-venv/bin/pip install -q --no-deps "onnxruntime-openvino==$ORT_VERSION"
  capi=$(ls -d .deps/ort-venv/lib/python3*/site-packages/onnxruntime/capi | head -n 1)
  rm -rf "$ort_dir"
  mkdir -p "$ort_dir"
  for lib in "libonnxruntime.so.$ORT_VERSION" libonnxruntime_providers_shared.so \
    libonnxruntime_providers_openvino.so libopenvino.so.2541 libopenvino_onnx_frontend.so.2541 \
    libopenvino_intel_cpu_plugin.so libopenvino_auto_plugin.so libopenvino_hetero_plugin.so \
    libtbb.so.12 libtbbmalloc.so; do
    cp -L "$capi/$lib" "$ort_dir/"
  done
fi

if [ "${1:-}" = "engines" ] && ! .venv/bin/python -c "import transformers, torch, onnxscript" 2>/dev/null; then
  echo "setup: installing the PyTorch reference tooling for engines/ into .venv (several GB)"
  python3 -m venv .venv
  .venv/bin/pip install -q -r engines/requirements.txt
fi

if { [ "${1:-}" = "triton" ] || [ "${1:-}" = "test" ]; } && python3 -c 'import sys; sys.exit(sys.version_info < (3, 13))'; then
  # The wheel's python-backend stub for 3.13 links a libpython bundled in the
  # wheel that lacks the modules Debian builds into its own (math, _datetime:
  # numpy cannot be imported under it); engines/triton_check.py points each
  # copy of the stub at Debian's libpython3.13 with patchelf.
  apt_install patchelf "libpython$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
fi
if { [ "${1:-}" = "triton" ] || [ "${1:-}" = "test" ]; } && ! .venv-triton/bin/python -c "import pytriton, tritonclient.grpc, onnx, onnxruntime, PIL, tokenizers" 2>/dev/null; then
  echo "setup: installing the Triton server and client (nvidia-pytriton, tritonclient) into .venv-triton (~1 GB)"
  python3 -m venv .venv-triton
  if python3 -c 'import sys; sys.exit(sys.version_info < (3, 13))'; then
    # nvidia-pytriton's numpy<2 has no wheels for Python 3.13: its own
    # dependencies are listed in this file instead (numpy 2).
    .venv-triton/bin/pip install -q --no-deps nvidia-pytriton==0.7.0
    .venv-triton/bin/pip install -q -r engines/requirements-triton-py313.txt
  else
    .venv-triton/bin/pip install -q -r engines/requirements-triton.txt
  fi
fi

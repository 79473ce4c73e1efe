#!/usr/bin/env bash
# Builds and caches the TensorRT engines of a bundle ahead of time, so that the
# first frame of a pipeline does not wait minutes for them.
#
#   engines/build_trt.sh BUNDLE_DIR [CACHE_DIR]
#
# It loads the bundle once with backend=tensorrt (ONNX Runtime's TensorRT
# execution provider builds an engine per ONNX graph and stores it, with the
# timing cache, in CACHE_DIR/<bundle name>-<hash of the engine files>: the
# provider's own key covers the graph but not the weights, so each bundle keeps
# its own engines) and segments one photo with two phrases so that every engine
# runs. The engines are built with optimisation profiles for the prompt batch
# from 1 to the phrase cap (src/prompt.rs MAX_PHRASES, 16; tuned for 4): a prompt
# with any number of phrases then runs on them, and a phrase-count change never
# rebuilds an engine on the streaming thread (src/model/backend/providers.rs
# trt_profile_shapes). Point the element at the same CACHE_DIR
# (tensorrt-cache-dir, default $XDG_CACHE_HOME/samclipseg/tensorrt) and it
# reuses the engines. Engines are specific to the GPU, TensorRT version and
# options (FP16): rebuild after changing any of them.
#
# Needs the GPU build of ONNX Runtime: ORT_DYLIB_PATH=.../libonnxruntime.so.* from
# `pip install onnxruntime-gpu`, plus CUDA 12, cuDNN 9 and TensorRT 10 libraries.
#
# The trtexec route (TensorRT's own tool) also works for a bundle's graphs, e.g.
#   trtexec --onnx=BUNDLE/image_encoder.onnx --fp16 --saveEngine=image_encoder.plan
# but ONNX Runtime does not load such .plan files from this cache: use it to
# check that a graph converts and how fast it runs, not to fill the cache.
set -euo pipefail
cd "$(dirname "$0")/.."

bundle=${1:?usage: engines/build_trt.sh BUNDLE_DIR [CACHE_DIR]}
cache=${2:-${XDG_CACHE_HOME:-$HOME/.cache}/samclipseg/tensorrt}
photo=tests/fixtures/tiny-sam3/golden/astronaut.png
mkdir -p "$cache"

echo "build_trt: building TensorRT engines for $bundle into $cache (minutes for the full model)"
start=$(date +%s)
cargo run --release --example segment_image -- --bundle "$bundle" --backend tensorrt \
  --trt-cache "$cache" --prompt "a person" --prompt "a helmet" --out-dir "$(mktemp -d)" "$photo"
echo "build_trt: done in $(( $(date +%s) - start )) s; cache (one directory per bundle):"
ls -laR "$cache"

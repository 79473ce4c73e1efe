# The two commands of README.md are `make demo` and `make test`; each installs
# what it needs through scripts/setup.sh first.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
TINY := tests/fixtures/tiny-sam3
OUT ?= out
# Where cargo puts release builds (CARGO_TARGET_DIR moves it).
RELEASE_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)/release
PLUGIN_DIR := $(RELEASE_DIR)
# What make runs from this tree (gst-launch-1.0 in the demo, cargo) loads ONNX
# Runtime from .deps/onnxruntime; an installed plugin does not look there
# unless asked (src/runtime.rs). A value already in the environment wins.
export SAMCLIPSEG_DEV_ORT ?= 1
# GStreamer >= 1.26 (Debian 13): the plugin also attaches GstAnalytics Mtds
# (feature `analytics`). Asked when a recipe runs, after setup.sh installed
# the development packages; ANALYTICS=0 / ANALYTICS=1 overrides.
FEATURES = $$(bash scripts/cargo-features.sh)

.PHONY: deps engines-deps build release install uninstall deb test test-analytics debian-ci lint demo studio fixtures video-fixture video-reference bench bench-bundle bench-avx2 bench-video toy eval-toy toy-tracker

deps:
	bash scripts/setup.sh

engines-deps:
	bash scripts/setup.sh engines

build: deps
	cargo build --release -p gst-plugin-samclipseg $(FEATURES)

# Installing (docs/install.md): `make release`, then `sudo make install`,
# which does not build. The plugin goes into GStreamer's plugin directory
# with PREFIX as its prefix (`pkg-config --variable=pluginsdir gstreamer-1.0`
# for PREFIX=/usr: GStreamer finds it with no variable set), its own ONNX
# Runtime into ../samclipseg beside it, the studio into PREFIX/bin and the toy
# bundle into PREFIX/share/samclipseg; DESTDIR stages the lot (no root
# needed). `make deb` packages the same for PREFIX=/usr: out/deb/*.deb.
PREFIX ?= /usr
INSTALL_VARS = PREFIX='$(PREFIX)' DESTDIR='$(DESTDIR)' RELEASE_DIR='$(RELEASE_DIR)' \
	$(if $(PLUGINSDIR),PLUGINSDIR='$(PLUGINSDIR)') $(if $(PLUGIN_SO),PLUGIN_SO='$(PLUGIN_SO)') \
	$(if $(STUDIO_BIN),STUDIO_BIN='$(STUDIO_BIN)')

release: deps
	cargo build --release -p gst-plugin-samclipseg -p samclipseg-studio $(FEATURES)

install:
	$(INSTALL_VARS) bash scripts/install.sh

uninstall:
	$(INSTALL_VARS) bash scripts/install.sh --uninstall

deb: release
	OUT='$(OUT)' RELEASE_DIR='$(RELEASE_DIR)' bash scripts/deb.sh

# The studio's browser tests need Debian's chromium and chromium-driver.
test:
	bash scripts/setup.sh test
	cargo test --workspace --all-targets $(FEATURES)
	cargo test --workspace --doc $(FEATURES)

# The GstAnalytics tests (GStreamer >= 1.26: Debian 13 and newer), in the
# release profile that `make demo` built.
test-analytics: deps
	cargo test --release -p gst-plugin-samclipseg --features analytics --lib --test analytics

# Debian 13 (trixie) in CI: a fresh root made with mmdebstrap from Debian's
# packages under build/debian (needs root), a clone of HEAD in it, and there
# `make demo`, `make test-analytics` and tests/debian/*.sh
# (scripts/debian-ci.sh, scripts/debian-check.sh). DEBIAN_SUITE=forky for the
# next release.
DEBIAN_SUITE ?= trixie
debian-ci:
	bash scripts/debian-ci.sh $(DEBIAN_SUITE)

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets $(FEATURES) -- -D warnings

demo: build
	OUT=$(OUT) GST_PLUGIN_PATH=$(PLUGIN_DIR) bash examples/demo.sh

# samclipseg studio (studio/, docs/studio.md): the page on
# http://127.0.0.1:7860 over a looping shapes-world clip and the toy bundle.
# STUDIO_ARGS="--port 0 --source /dev/video0 ..." passes more options.
STUDIO_CLIP := $(OUT)/studio-clip
studio: deps
	cargo build --release -p samclipseg-studio
	[ -f $(STUDIO_CLIP)/frame-095.png ] || /usr/bin/python3 engines/shapes_world.py clip $(STUDIO_CLIP) \
		--seed 5 --size 336 --frames 96 --wide
	target/release/samclipseg-studio --source '$(STUDIO_CLIP)/frame-%03d.png' $(STUDIO_ARGS)

# Regenerates the tiny bundle and its golden outputs with the PyTorch reference.
fixtures: engines-deps
	.venv/bin/python engines/make_tiny_sam3.py
	# tests/fused_attention.rs: the tiny engines with every attention fused
	for e in image_encoder decoder; do .venv/bin/python engines/fuse_attention.py \
		tests/fixtures/tiny-sam3/$$e.onnx tests/fixtures/fused-attention/$$e.onnx --min-tokens 0; done

# The tiny video bundle (SAM 3's tracker engines) and its golden clip from
# transformers' streaming Sam3VideoModel (issue 28; docs/video-tracker.md),
# then the ONNX-only reference loop checked against those goldens.
video-fixture: engines-deps
	.venv/bin/python engines/make_tiny_sam3_video.py
	.venv/bin/python engines/reference_video.py

video-reference: engines-deps
	.venv/bin/python engines/reference_video.py

# The toy model trained on the shapes world (engines/README.md, "The toy
# shapes-world model"): the recorded run, one phase of 19,271 steps (two hours
# on 2 cores; resumable: an interrupted `make toy` continues from
# engines/work/toy-train/state.pt), then exported into
# tests/fixtures/toy-shapes-sam3, its default threshold calibrated on
# validation images and the test set evaluated through the Rust core.
# Then (issue 18) that model fine-tuned on the wide world (three images in four
# from shapes_world.sample_wide_scene): 8,000 steps, 59 minutes of 1 core in the
# recorded run (the cosine LR schedule follows steps or 66 minutes of wall time,
# whichever is further along: --schedule-minutes). Then fine-tuned again at a
# 168 px input (the weights carry over: positions are tiled and rotary) for
# 9,000 steps on 2 cores, then once more with hard negatives (confusable absent
# prompts: shapes_world.confusable) for 72 minutes, and exported (with its int8 image encoder),
# calibrated on validation images of both worlds and evaluated on the first
# world's test set, the wide world's and the independent set (336 and 640x360).
TOY_WORK := engines/work/toy-train
TOY_WIDE_WORK := engines/work/toy-wide
TOY_168_WORK := engines/work/toy-168
TOY_HARD_WORK := engines/work/toy-hard
TOY_TRAIN := .venv/bin/python engines/train_toy_sam3.py --work $(TOY_WORK) --eval-every 1000
TOY_LOSS := --images 8 --prompts 4 --p-negative 0.5 --weights presence=10,cls=5 \
	--balanced-negatives --uniform-positives --aux-loss
toy: engines-deps
	$(TOY_TRAIN) --steps 20000 --stop-at 19271 $(TOY_LOSS)
	$(TOY_TRAIN) --finish
	nice -n 19 .venv/bin/python engines/train_toy_sam3.py --work $(TOY_WIDE_WORK) --eval-every 1000 \
		--init $(TOY_WORK)/checkpoint --wide 0.75 --steps 8000 --schedule-minutes 66 \
		--lr 2.5e-4 --warmup 200 --threads 1 $(TOY_LOSS)
	nice -n 19 .venv/bin/python engines/train_toy_sam3.py --work $(TOY_168_WORK) --eval-every 1000 \
		--init $(TOY_WIDE_WORK)/checkpoint --image-size 168 --wide 0.75 --steps 9000 --schedule-minutes 100 \
		--lr 2.5e-4 --warmup 200 --threads 2 $(TOY_LOSS)
	# the later --p-negative overrides TOY_LOSS's (argparse keeps the last)
	nice -n 19 .venv/bin/python engines/train_toy_sam3.py --work $(TOY_HARD_WORK) --eval-every 1000 \
		--init $(TOY_168_WORK)/checkpoint --image-size 168 --wide 0.8 --steps 9000 --schedule-minutes 72 \
		--lr 2e-4 --warmup 200 --threads 2 $(TOY_LOSS) --p-negative 0.45 --hard-negatives 0.5
	.venv/bin/python engines/make_toy_shapes_fixture.py --checkpoint $(TOY_HARD_WORK)/checkpoint

# The toy video bundle (issue 28, item 5; engines/README.md, "The toy tracker"):
# the toy detector (frozen) with a small SAM 3 tracker trained on shapes-world
# clips with occlusions, hides with a return elsewhere and jumps (resumable from
# engines/work/toy-tracker/state.pt; the cosine LR follows steps or 35 minutes
# of wall time, whichever is further along), exported into
# tests/fixtures/toy-shapes-video with its occlusion clip and the demonstration
# (engines/toy_tracker_demo.py: the SAM 3 loop vs the overlap tracker on that clip).
TOY_TRACKER_WORK := engines/work/toy-tracker
toy-tracker: engines-deps
	nice -n 5 .venv/bin/python engines/train_toy_tracker.py --work $(TOY_TRACKER_WORK) --steps 4000 \
		--clips 3 --frames 8 --schedule-minutes 35 --eval-every 100 --eval-clips 16 --deadline-minutes 25
	# the fine-tune that re-finds (engines/README.md, "The third attempt"): 500 steps
	nice -n 5 .venv/bin/python engines/train_toy_tracker.py --work $(TOY_TRACKER_WORK)-e \
		--init $(TOY_TRACKER_WORK)/state.pt --steps 4000 --clips 3 --frames 8 --lr 5e-4 \
		--reacq-weight 8 --smooth-steps 0 --threads 2 --schedule-minutes 28 --deadline-minutes 19 \
		--eval-every 100 --eval-clips 16
	.venv/bin/python engines/train_toy_tracker.py --work $(TOY_TRACKER_WORK)-e --finish
	.venv/bin/python engines/make_toy_video_fixture.py --checkpoint $(TOY_TRACKER_WORK)-e/checkpoint

# Evaluates the committed toy bundle through the Rust core (numpy, Pillow and
# scikit-image's photos: python3-skimage) on the first world's test set, the
# wide world's and the independent set (engines/independent_shapes.py).
eval-toy: deps
	mkdir -p $(OUT)
	/usr/bin/python3 engines/eval_toy.py --json $(OUT)/eval-toy.json
	/usr/bin/python3 engines/eval_toy.py --set wide --json $(OUT)/eval-toy-wide.json
	/usr/bin/python3 engines/eval_toy.py --set independent --size 336 --images 300 --json $(OUT)/eval-toy-independent-336.json
	/usr/bin/python3 engines/eval_toy.py --set independent --size 640x360 --images 300 \
		--json $(OUT)/eval-toy-independent-640x360.json

# Per-stage times, pipeline frames/s and the PyTorch reference side by side
# (engines/BENCHMARK.md). Builds the bench bundle (engines/work/bench, ~3 min)
# and its int8 variants (static ~3 min, dynamic ~1 min) once; BENCH_BUNDLE=DIR
# runs another bundle; the run takes about 10 minutes on 2
# cores, and should start on an idle machine (it warns above load 0.5).
# Extra options: BENCH_ARGS=...
BENCH_BUNDLE ?= engines/work/bench
bench: bench-bundle
	bash scripts/setup.sh triton
	mkdir -p $(OUT)
	set -o pipefail; cargo run --release -p samclipseg-bench -- \
		--bundle $(BENCH_BUNDLE) --reference --remote --work $(OUT)/bench $(BENCH_ARGS) | tee $(OUT)/bench.txt

bench-bundle: engines-deps
	.venv/bin/python engines/make_bench_sam3.py --out $(BENCH_BUNDLE)
	grep -q "variants.int8]" $(BENCH_BUNDLE)/bundle.toml || \
		.venv/bin/python engines/quantize_bundle.py $(BENCH_BUNDLE) --kinds static
	grep -q "variants.int8_dynamic]" $(BENCH_BUNDLE)/bundle.toml || \
		.venv/bin/python engines/quantize_bundle.py $(BENCH_BUNDLE) --kinds dynamic

# The AVX2 route on a CPU that has more (engines/BENCHMARK.md, "AVX2 kernels
# on an AMX machine"): tools/cpuid-mask hides AVX-512, VNNI, BF16 and AMX from
# CPUID, so ONNX Runtime, OpenVINO and PyTorch pick an AVX2-only CPU's
# kernels, and SAMCLIPSEG_CPU_FLAGS gives the element's `auto` the same view.
# A proxy (this machine's memory and clocks); the report says so. Needs CPUID
# faulting (cpuid_fault in /proc/cpuinfo); on an AVX2-only CPU run `make
# bench` instead. Default: part A on the bench bundle, fp32 and int8 against
# PyTorch; AVX2_BUNDLE=engines/work/full BENCH_AVX2_ARGS="--iters 2" for the
# full-size model without the reference (a fresh frame takes tens of seconds;
# the bench bundle is built only when it is the one measured).
AVX2_CPU_FLAGS = avx avx2 fma f16c
AVX2_BUNDLE ?= $(BENCH_BUNDLE)
BENCH_AVX2_ARGS ?= --reference
bench-avx2: engines-deps $(if $(filter $(abspath $(BENCH_BUNDLE)),$(abspath $(AVX2_BUNDLE))),bench-bundle)
	mkdir -p $(OUT)
	cc -O2 -Wall -shared -fPIC -o $(OUT)/avx2_only.so tools/cpuid-mask/avx2_only.c
	cargo build --release -p samclipseg-bench
	set -o pipefail; LD_PRELOAD=$(abspath $(OUT))/avx2_only.so SAMCLIPSEG_CPU_FLAGS="$(AVX2_CPU_FLAGS)" \
		$${CARGO_TARGET_DIR:-target}/release/samclipseg-bench --bundle $(AVX2_BUNDLE) --precisions fp32,int8 \
		--skip-pipelines --skip-live --work $(OUT)/bench-avx2 $(BENCH_AVX2_ARGS) | tee $(OUT)/bench-avx2.txt

# The tracker bench (engines/BENCHMARK.md, "Tracker bench"): a frame's parts
# with 1, 4 and 16 objects through SAM 3's video loop, beside the
# detector-only path, and transformers' Sam3VideoModel streaming on the same
# frames for the ratio. Builds engines/work/bench-video once (~4-5 min, 4.4 GB
# peak); the run takes about 6-8 minutes on 2 idle cores (estimated). Start it
# on an idle machine: it warns at load 0.5 and above. Extra options:
# BENCH_VIDEO_ARGS=... (e.g. --video-objects 1,4 --video-frames 3; --video-precision bf16
# runs ours in bf16, the tracker too, and PyTorch in bfloat16 where the CPU has it)
BENCH_VIDEO_BUNDLE ?= engines/work/bench-video
bench-video: engines-deps
	.venv/bin/python engines/make_bench_sam3.py --tracker --out $(BENCH_VIDEO_BUNDLE)
	mkdir -p $(OUT)
	set -o pipefail; cargo run --release -p samclipseg-bench -- --video --reference \
		--bundle $(BENCH_VIDEO_BUNDLE) --work $(OUT)/bench-video $(BENCH_VIDEO_ARGS) | tee $(OUT)/bench-video.txt

.PHONY: soak fuzz

# Long run (not part of `make test`): SOAK_FRAMES frames (default 20000) of
# Two long runs (SOAK_FRAMES each, default 20,000): videotestsrc through
# samclipseg with the tiny model and a prompt change every 100 frames; then
# SAM 3's video tracker (tracker=sam3) over the tiny video bundle's clip,
# looped, objects created and dropped all along. Each prints resident memory
# after 1,000 frames and at the end and fails if the end is more than 5% above
# the first value.
soak: deps
	cargo test --release -p gst-plugin-samclipseg $(FEATURES) --test streams -- \
		--ignored --exact soak_memory_stays_flat --nocapture
	cargo test --release -p gst-plugin-samclipseg $(FEATURES) --test streams -- \
		--ignored --exact soak_tracker_memory_stays_flat --nocapture

# Fuzzes the manifest parser and prompt handling (fuzz/, its own workspace) for
# FUZZ_SECONDS each. cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP=1 lets the
# stable toolchain take them. New inputs go to fuzz/corpus/<target>/.
FUZZ_SECONDS ?= 600
FUZZ_TARGETS := manifest prompt
fuzz: deps
	command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz
	cd fuzz && for t in $(FUZZ_TARGETS); do \
		RUSTC_BOOTSTRAP=1 cargo fuzz run -O $$t corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) -max_len=4096 || exit 1; \
	done

.PHONY: triton-check

# Not part of `make test`: writes a python-backend Triton repository for the
# tiny bundle, serves it with the tritonserver of the nvidia-pytriton wheel on
# 127.0.0.1 and compares each model over gRPC with ONNX Runtime run locally;
# prints the bytes per call (engines/README.md, "Triton model repository").
triton-check:
	bash scripts/setup.sh triton
	.venv-triton/bin/python engines/triton_check.py $(TINY)

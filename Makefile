# The two commands of README.md are `make demo` and `make test`; each installs
# what it needs through scripts/setup.sh first.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
TINY := tests/fixtures/tiny-sam3
OUT ?= out
PLUGIN_DIR := $(CURDIR)/target/release

.PHONY: deps engines-deps build test lint demo fixtures bench

deps:
	bash scripts/setup.sh

engines-deps:
	bash scripts/setup.sh engines

build: deps
	cargo build --release -p gst-plugin-samclipseg

test: deps
	cargo test --workspace --all-targets
	cargo test --workspace --doc

lint: deps
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

demo: build
	OUT=$(OUT) GST_PLUGIN_PATH=$(PLUGIN_DIR) bash examples/demo.sh

# Regenerates the tiny bundle and its golden outputs with the PyTorch reference.
fixtures: engines-deps
	.venv/bin/python engines/make_tiny_sam3.py

# Per-stage times, pipeline frames/s and the PyTorch reference side by side
# (engines/BENCHMARK.md). Builds the bench bundle (engines/work/bench, ~3 min)
# once; the run takes about 5 minutes on 2 cores. Extra options: BENCH_ARGS=...
BENCH_BUNDLE := engines/work/bench
bench: engines-deps
	.venv/bin/python engines/make_bench_sam3.py --out $(BENCH_BUNDLE)
	mkdir -p $(OUT)
	set -o pipefail; cargo run --release -p gst-plugin-samclipseg --example bench -- \
		--bundle $(BENCH_BUNDLE) --reference --work $(OUT)/bench $(BENCH_ARGS) | tee $(OUT)/bench.txt

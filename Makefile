# The two commands of README.md are `make demo` and `make test`; each installs
# what it needs through scripts/setup.sh first.

SHELL := /bin/bash
export PATH := $(HOME)/.cargo/bin:$(PATH)
TINY := tests/fixtures/tiny-sam3
OUT ?= out
PLUGIN_DIR := $(CURDIR)/target/release

.PHONY: deps engines-deps build test lint demo fixtures

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

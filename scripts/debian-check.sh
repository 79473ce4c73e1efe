#!/usr/bin/env bash
# What runs inside a Debian 13 (or newer) root, from a fresh clone
# (scripts/debian-ci.sh): README's `make demo` as a newcomer runs it, the
# GstAnalytics tests (the plugin built with its `analytics` feature against
# the release's GStreamer) and the Python reader of docs/metadata.md
# (examples/read_analytics.py), then every tests/debian/*.sh (the package).
# DEBIAN_CHECK=ci (what .ci/run asks, to stay within CI's time) runs the
# analytics part only: the plugin's release build, its tests, gst-inspect and
# the Python reader.
set -euo pipefail
cd "$(dirname "$0")/.."
# The plugin is run from this tree: it loads .deps/onnxruntime (make deps), not
# an ONNX Runtime the system may have (Debian 13 packages 1.21, too old).
export SAMCLIPSEG_DEV_ORT=${SAMCLIPSEG_DEV_ORT:-1}
step() { echo "debian-check: $* ($(date +%T))"; }

full=1; [ "${DEBIAN_CHECK:-full}" = ci ] && full=0
if [ $full = 1 ]; then
  step "make demo"
  make demo
  for f in out/sample.mkv out/overlay.mkv out/overlay-000.png out/alpha-000.png out/tracker-00.png; do
    [ -s "$f" ] || { echo "debian-check: make demo did not write $f" >&2; exit 1; }
  done
else
  step "make build"
  make build
fi

step "GstAnalytics tests"
make test-analytics
# Read whole first: grep -q would stop gst-inspect with SIGPIPE (pipefail).
inspect=$(GST_PLUGIN_PATH=$PWD/target/release gst-inspect-1.0 samclipseg)
grep -q "GstAnalytics Mtds" <<<"$inspect" || {
  echo "debian-check: gst-inspect-1.0 samclipseg does not say it attaches GstAnalytics Mtds" >&2
  exit 1
}

step "the Python reader (examples/read_analytics.py)"
GST_PLUGIN_PATH=$PWD/target/release python3 examples/read_analytics.py

[ $full = 1 ] || { step "done (DEBIAN_CHECK=ci: make demo and tests/debian/*.sh left out)"; exit 0; }
for s in tests/debian/*.sh; do
  [ -e "$s" ] || continue
  step "$s"
  bash "$s"
done
step "done"

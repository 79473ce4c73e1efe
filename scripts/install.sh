#!/usr/bin/env bash
# `make install` and `make uninstall` (docs/install.md, "Installing"). Lays out,
# under DESTDIR (empty: the system itself):
#
#   PLUGINSDIR/libgstsamclipseg.so             the plugin, where GStreamer looks
#   PLUGINSDIR/../samclipseg/                  its private ONNX Runtime (.deps/onnxruntime)
#   PREFIX/bin/samclipseg-studio               the studio
#   PREFIX/share/samclipseg/toy-shapes-sam3/   the toy bundle, the default bundle
#   PREFIX/share/doc/samclipseg/               the licences
#
# PLUGINSDIR defaults to GStreamer's own plugin directory with PREFIX in place
# of its prefix (`pkg-config --variable=pluginsdir gstreamer-1.0`; for
# PREFIX=/usr on Debian /usr/lib/<multiarch>/gstreamer-1.0). The plugin and the
# studio find the rest relative to where they are (src/installed.rs), so
# nothing here is compiled in and a staged tree works where it is unpacked.
#
#   scripts/install.sh [--uninstall]
#   env: PREFIX (/usr), DESTDIR, PLUGINSDIR, RELEASE_DIR (target/release),
#        PLUGIN_SO and STUDIO_BIN (default: in RELEASE_DIR)
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "install: $*" >&2
  exit 1
}

PREFIX=${PREFIX:-/usr}
DESTDIR=${DESTDIR:-}
RELEASE_DIR=${RELEASE_DIR:-${CARGO_TARGET_DIR:-target}/release}
PLUGIN_SO=${PLUGIN_SO:-$RELEASE_DIR/libgstsamclipseg.so}
STUDIO_BIN=${STUDIO_BIN:-$RELEASE_DIR/samclipseg-studio}
ORT_DIR=.deps/onnxruntime
BUNDLE=tests/fixtures/toy-shapes-sam3

case "$PREFIX" in
  /*) ;;
  *) die "PREFIX must be an absolute path, not '$PREFIX'" ;;
esac
PREFIX=${PREFIX%/}
if [ -z "${PLUGINSDIR:-}" ]; then
  PLUGINSDIR=$(pkg-config --define-variable=prefix="$PREFIX" --variable=pluginsdir gstreamer-1.0) ||
    die "pkg-config does not know gstreamer-1.0: install libgstreamer1.0-dev (make deps), or set PLUGINSDIR"
fi
PLUGINSDIR=${PLUGINSDIR%/}
[ "$(basename "$PLUGINSDIR")" = gstreamer-1.0 ] ||
  die "PLUGINSDIR must end in /gstreamer-1.0 (the plugin finds its ONNX Runtime in ../samclipseg), not '$PLUGINSDIR'"
PRIVATE_DIR=$(dirname "$PLUGINSDIR")/samclipseg
BINDIR=$PREFIX/bin
DATA_DIR=$PREFIX/share/samclipseg
DOC_DIR=$PREFIX/share/doc/samclipseg

# What gets installed: "mode source destination" (destination without DESTDIR).
# The bundle's reference/ (the PyTorch weights for the parity tests) stays behind.
files() {
  echo "644 $PLUGIN_SO $PLUGINSDIR/libgstsamclipseg.so"
  for f in "$ORT_DIR"/*; do
    echo "644 $f $PRIVATE_DIR/$(basename "$f")"
  done
  echo "755 $STUDIO_BIN $BINDIR/samclipseg-studio"
  (cd "$BUNDLE" && find . -path ./reference -prune -o -type f -print | LC_ALL=C sort) | while read -r f; do
    echo "644 $BUNDLE/${f#./} $DATA_DIR/toy-shapes-sam3/${f#./}"
  done
  for f in LICENSE-MIT LICENSE-APACHE; do
    echo "644 $f $DOC_DIR/$f"
  done
}

if [ "${1:-}" = --uninstall ]; then
  # Whole directories only where they are ours alone: a SAM 3 bundle the user
  # put in $DATA_DIR/sam3 stays.
  rm -f "$DESTDIR$PLUGINSDIR/libgstsamclipseg.so" "$DESTDIR$BINDIR/samclipseg-studio"
  rm -rf "$DESTDIR$PRIVATE_DIR" "$DESTDIR$DATA_DIR/toy-shapes-sam3" "$DESTDIR$DOC_DIR"
  rmdir "$DESTDIR$DATA_DIR" 2>/dev/null || true
  echo "uninstall: removed samclipseg from $DESTDIR$PLUGINSDIR, $DESTDIR$PRIVATE_DIR, $DESTDIR$BINDIR and $DESTDIR$DATA_DIR"
  exit 0
fi

[ -f "$PLUGIN_SO" ] || die "no plugin at $PLUGIN_SO: build it first with \`make release\` (as yourself, not root)"
[ -f "$STUDIO_BIN" ] || die "no studio at $STUDIO_BIN: build it first with \`make release\` (as yourself, not root)"
ls "$ORT_DIR"/libonnxruntime.so.* >/dev/null 2>&1 ||
  die "no ONNX Runtime in $ORT_DIR: \`make deps\` fetches it"
[ -f "$BUNDLE/bundle.toml" ] || die "no toy bundle at $BUNDLE"

files | while read -r mode src dest; do
  install -D -m "$mode" "$src" "$DESTDIR$dest"
done
echo "install: plugin in $DESTDIR$PLUGINSDIR, ONNX Runtime in $DESTDIR$PRIVATE_DIR,"
echo "install: studio in $DESTDIR$BINDIR, toy bundle in $DESTDIR$DATA_DIR/toy-shapes-sam3"
if [ -z "$DESTDIR" ] && [ "$PLUGINSDIR" != "$(pkg-config --variable=pluginsdir gstreamer-1.0)" ]; then
  echo "install: GStreamer does not look in $PLUGINSDIR by itself: export GST_PLUGIN_PATH=$PLUGINSDIR"
fi

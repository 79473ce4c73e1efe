#!/usr/bin/env bash
# The demo behind `make demo`: a generated clip of moving shapes (a red circle
# bouncing among shapes that come and go, engines/shapes_world.py, over a
# wide-world background: a photo crop or colour field; WIDE=0 for the first
# world's muted texture), run through
# samclipseg with the bundled toy model trained on that world
# (tests/fixtures/toy-shapes-sam3), once as an overlay preview and once with
# the masks in the alpha channel. Needs GST_PLUGIN_PATH to hold the plugin.
#
# The toy model knows only its world: three shapes in five colours ("red
# circle", "square", "yellow shape", ...). The random tiny-sam3 bundle serves
# the parity tests; BUNDLE=tests/fixtures/tiny-sam3 PROMPT="a person" runs it here.
set -euo pipefail
cd "$(dirname "$0")/.."

# The plugin is run from this tree: let it load .deps/onnxruntime (make deps).
export SAMCLIPSEG_DEV_ORT=${SAMCLIPSEG_DEV_ORT:-1}
OUT=${OUT:-out}
BUNDLE=${BUNDLE:-tests/fixtures/toy-shapes-sam3}
PROMPT=${PROMPT:-red circle}
FRAMES=${FRAMES:-72}
SIZE=${SIZE:-336}
SEED=${SEED:-5}
WIDE=${WIDE:-1}
mkdir -p "$OUT"

gst-inspect-1.0 samclipseg >/dev/null || {
  echo "demo: element samclipseg not found; GST_PLUGIN_PATH=${GST_PLUGIN_PATH:-<unset>}" >&2
  exit 1
}

echo "demo: generating $OUT/clip/ ($FRAMES frames, ${SIZE}x${SIZE}, seed $SEED) and $OUT/sample.mkv"
rm -rf "$OUT/clip"
# Debian's python3 with python3-numpy and python3-pil (scripts/setup.sh installs them)
PY=${PYTHON:-python3}
$PY -c "import numpy, PIL" 2>/dev/null || PY=/usr/bin/python3
$PY engines/shapes_world.py clip "$OUT/clip" --seed "$SEED" --size "$SIZE" --frames "$FRAMES" \
  $([ "$WIDE" = 1 ] && echo --wide)
gst-launch-1.0 -q multifilesrc location="$OUT/clip/frame-%03d.png" index=0 stop-index=$((FRAMES - 1)) \
  caps="image/png,framerate=24/1" ! pngdec ! videoconvert ! video/x-raw,format=I420 \
  ! vp8enc deadline=1 target-bitrate=2000000 ! matroskamux ! filesink location="$OUT/sample.mkv"

echo "demo: overlay preview -> $OUT/overlay.mkv and $OUT/overlay-NNN.png"
gst-launch-1.0 -e filesrc location="$OUT/sample.mkv" ! decodebin ! videoconvert \
  ! samclipseg bundle="$BUNDLE" prompt="$PROMPT" output-mode=overlay ! tee name=t \
  t. ! queue ! videoconvert ! vp8enc deadline=1 ! matroskamux ! filesink location="$OUT/overlay.mkv" \
  t. ! queue ! videorate drop-only=true ! video/x-raw,framerate=1/1 ! videoconvert ! pngenc ! multifilesink location="$OUT/overlay-%03d.png"

echo "demo: masks in the alpha channel -> $OUT/alpha-NNN.png (RGBA)"
gst-launch-1.0 -e filesrc location="$OUT/sample.mkv" ! decodebin ! videoconvert \
  ! video/x-raw,format=RGBA ! samclipseg bundle="$BUNDLE" prompt="$PROMPT" output-mode=alpha \
  ! videorate drop-only=true ! video/x-raw,framerate=1/1 ! pngenc ! multifilesink location="$OUT/alpha-%03d.png"

# SAM 3's video tracker (tracker=sam3): the tiny video bundle has random
# weights, so its masks show what the tracker carries from frame to frame
# (each object's id and mask through crossings and a hidden stretch), not
# recognition; its golden clip is the one transformers' run was recorded on.
VIDEO_BUNDLE=tests/fixtures/tiny-sam3-video
echo "demo: SAM 3's video tracker on $VIDEO_BUNDLE (random weights) -> $OUT/tracker-NN.png"
gst-launch-1.0 -q multifilesrc location="$VIDEO_BUNDLE/golden/frame-%02d.png" index=0 stop-index=15 \
  caps="image/png,framerate=8/1" ! pngdec ! videoconvert ! video/x-raw,format=RGB \
  ! samclipseg bundle="$VIDEO_BUNDLE" tracker=sam3 prompt=circle threshold=0 output-mode=overlay \
  ! videoconvert ! pngenc ! multifilesink location="$OUT/tracker-%02d.png"

echo "demo: done. Results in $OUT/: overlay.mkv, overlay-000.png.., alpha-000.png.., tracker-00.png.."
ls -1 "$OUT"

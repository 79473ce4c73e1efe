#!/usr/bin/env bash
# The demo behind `make demo`: a short clip made from a real photo, run through
# samclipseg with the bundled tiny model, once as an overlay preview and once
# with the masks in the alpha channel. Needs GST_PLUGIN_PATH to hold the plugin.
#
# The tiny model has RANDOM weights: its masks show the plumbing (caps, timing,
# metadata, alpha, overlay), not real segmentation.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-out}
BUNDLE=${BUNDLE:-tests/fixtures/tiny-sam3}
PHOTO=${PHOTO:-$BUNDLE/golden/astronaut.png}
PROMPT=${PROMPT:-a person}
FRAMES=${FRAMES:-48}
mkdir -p "$OUT"

gst-inspect-1.0 samclipseg >/dev/null || {
  echo "demo: element samclipseg not found; GST_PLUGIN_PATH=${GST_PLUGIN_PATH:-<unset>}" >&2
  exit 1
}

echo "demo: making $OUT/sample.mkv ($FRAMES frames, 640x360) from $PHOTO"
gst-launch-1.0 -q filesrc location="$PHOTO" ! pngdec ! videoconvert ! imagefreeze num-buffers="$FRAMES" \
  ! videoscale add-borders=true ! video/x-raw,width=640,height=360,pixel-aspect-ratio=1/1,framerate=24/1 ! videoconvert \
  ! vp8enc deadline=1 ! matroskamux ! filesink location="$OUT/sample.mkv"

echo "demo: overlay preview -> $OUT/overlay.mkv and $OUT/overlay-NNN.png"
gst-launch-1.0 -e filesrc location="$OUT/sample.mkv" ! decodebin ! videoconvert \
  ! samclipseg bundle="$BUNDLE" prompt="$PROMPT" output-mode=overlay ! tee name=t \
  t. ! queue ! videoconvert ! vp8enc deadline=1 ! matroskamux ! filesink location="$OUT/overlay.mkv" \
  t. ! queue ! videorate drop-only=true ! video/x-raw,framerate=1/1 ! videoconvert ! pngenc ! multifilesink location="$OUT/overlay-%03d.png"

echo "demo: masks in the alpha channel -> $OUT/alpha-NNN.png (RGBA)"
gst-launch-1.0 -e filesrc location="$OUT/sample.mkv" ! decodebin ! videoconvert \
  ! video/x-raw,format=RGBA ! samclipseg bundle="$BUNDLE" prompt="$PROMPT" output-mode=alpha \
  ! videorate drop-only=true ! video/x-raw,framerate=1/1 ! pngenc ! multifilesink location="$OUT/alpha-%03d.png"

echo "demo: done. Results in $OUT/: overlay.mkv, overlay-000.png.., alpha-000.png.."
ls -1 "$OUT"

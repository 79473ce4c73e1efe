#!/usr/bin/env bash
# The Debian package, installed and removed for real: run as root in a
# throwaway Debian system (the Debian 13 root of CI), from the tree's root,
# after `make build`-like set-up there. Takes the package `make deb` left in
# out/deb/, or builds it. Then:
#   apt-get install ./samclipseg_*.deb;
#   with no environment variable but PATH and HOME: gst-inspect-1.0 lists samclipseg
#   with the installed toy bundle as its default, and gst-launch-1.0 masks the
#   toy scene's red circle (alpha channel, IoU >= 0.8 with the truth) with
#   the package's own ONNX Runtime;
#   apt-get remove (and dpkg --purge) leaves none of the package's files behind.
# Exits non-zero with a message on the first failure; removes the package and
# its scratch directory on any exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

fail() {
  echo "package.sh: FAIL: $*" >&2
  exit 1
}
say() { echo "package.sh: $*"; }

[ "$(id -u)" = 0 ] || fail "needs root (apt-get install); run it inside a throwaway Debian root"
if dpkg-query -W -f='${Status}' samclipseg 2>/dev/null | grep -q "install ok installed"; then
  fail "samclipseg is already installed here; this test installs and removes it itself"
fi
for tool in gst-inspect-1.0 gst-launch-1.0; do
  command -v "$tool" >/dev/null || fail "$tool not found: apt-get install gstreamer1.0-tools"
done
/usr/bin/python3 -c "import numpy, PIL" 2>/dev/null ||
  fail "python3-numpy and python3-pil are needed to check the mask (scripts/setup.sh installs them)"

work=$(mktemp -d)
installed=0
cleanup() {
  if [ "$installed" = 1 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq samclipseg >/dev/null 2>&1 || true
    dpkg --purge samclipseg >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

shopt -s nullglob
debs=(out/deb/samclipseg_*.deb)
if [ ${#debs[@]} -eq 0 ]; then
  say "no out/deb/samclipseg_*.deb: building it (make deb)"
  make deb || fail "make deb failed"
  debs=(out/deb/samclipseg_*.deb)
fi
[ ${#debs[@]} -eq 1 ] || fail "expected one package in out/deb/, found: ${debs[*]:-none}"
deb=${debs[0]}
say "installing $deb ($(dpkg-deb -f "$deb" Version), Depends: $(dpkg-deb -f "$deb" Depends))"

installed=1
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "./$deb" >"$work/apt.log" 2>&1 ||
  fail "apt-get install ./$deb failed: $(tail -n 20 "$work/apt.log")"
dpkg -L samclipseg >"$work/files"
grep -q '/gstreamer-1.0/libgstsamclipseg.so$' "$work/files" || fail "the package has no plugin: $(cat "$work/files")"

# Nothing set but PATH and HOME: a home of its own, so that no SAM 3 bundle
# of root's is the default and GStreamer's registry is written there, not in
# root's. The plugin finds everything from where it is installed.
bare() { env -i PATH=/usr/bin:/bin HOME="$work/home" "$@"; }

toy=/usr/share/samclipseg/toy-shapes-sam3
bare gst-inspect-1.0 samclipseg >"$work/inspect" 2>&1 ||
  fail "gst-inspect-1.0 samclipseg does not find the installed plugin: $(cat "$work/inspect")"
grep -q "Default: \"$toy\"" "$work/inspect" ||
  fail "the default bundle is not the installed toy bundle $toy: $(grep -A3 '^  bundle' "$work/inspect")"
say "gst-inspect-1.0 samclipseg: found, default bundle $toy"

bare gst-launch-1.0 -q \
  filesrc location="$toy/golden/scene.png" ! pngdec ! videoconvert ! video/x-raw,format=RGBA \
  ! samclipseg prompt="red circle" output-mode=alpha \
  ! pngenc ! filesink location="$work/alpha.png" >"$work/launch.log" 2>&1 ||
  fail "the pipeline failed: $(tail -n 20 "$work/launch.log")"
# Once more with the element's log, for where ONNX Runtime came from.
bare GST_DEBUG=samclipseg:4 GST_DEBUG_NO_COLOR=1 gst-launch-1.0 -q \
  filesrc location="$toy/golden/scene.png" ! pngdec ! videoconvert \
  ! samclipseg prompt="red circle" ! fakesink >"$work/launch.log" 2>&1 ||
  fail "the pipeline with GST_DEBUG failed: $(grep -v ' INFO ' "$work/launch.log" | tail -n 20)"
ort=$(sed -n 's/.*ONNX Runtime loaded from //p' "$work/launch.log" | head -n 1)
case "$ort" in
  /usr/lib/*/samclipseg/libonnxruntime.so.*) ;;
  *) fail "ONNX Runtime did not come from the package's private directory: '${ort:-not loaded}'" ;;
esac
grep -qxF "$ort" "$work/files" || fail "$ort is not the package's"

/usr/bin/python3 - "$work/alpha.png" "$toy/golden/scene-ids.png" <<'PY' || fail "the red circle is not masked"
import sys
import numpy as np
from PIL import Image
alpha = np.asarray(Image.open(sys.argv[1]).convert("RGBA"))[..., 3] > 127
circle = np.asarray(Image.open(sys.argv[2]).convert("L")) == 1  # object 1: the red circle
iou = (alpha & circle).sum() / max((alpha | circle).sum(), 1)
inside, outside = alpha[circle].mean(), alpha[~circle].mean()
print(f"package.sh: alpha IoU with the red circle {iou:.3f} "
      f"(masked: {inside:.1%} inside, {outside:.1%} outside)")
sys.exit(0 if iou >= 0.8 else 1)
PY
say "gst-launch-1.0: the red circle is masked, ONNX Runtime from $ort"

DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq samclipseg >"$work/apt.log" 2>&1 ||
  fail "apt-get remove failed: $(tail -n 20 "$work/apt.log")"
# A package without configuration files is gone after remove; apt cannot
# name a local package to purge then, dpkg can (a no-op when it is gone).
dpkg --purge samclipseg >"$work/apt.log" 2>&1 || fail "dpkg --purge failed: $(cat "$work/apt.log")"
installed=0
left=()
while IFS= read -r f; do
  # Directories other packages share (/usr, /usr/bin, ...) stay; ours must go.
  if [ -d "$f" ]; then
    case "$f" in
      */samclipseg | */samclipseg/*) left+=("$f") ;;
    esac
  elif [ -e "$f" ] || [ -L "$f" ]; then
    left+=("$f")
  fi
done <"$work/files"
[ ${#left[@]} -eq 0 ] || fail "apt-get remove left: ${left[*]}"
! dpkg-query -W samclipseg >/dev/null 2>&1 || fail "dpkg still knows samclipseg after the purge"
say "apt-get remove and dpkg --purge: none of the package's $(wc -l <"$work/files") paths left"
say "PASS"

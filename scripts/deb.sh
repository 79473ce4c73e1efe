#!/usr/bin/env bash
# `make deb` (docs/install.md, "The Debian package"): the Debian package of
# what `make install PREFIX=/usr` lays out, built with plain dpkg-deb from a
# staged install. Version from Cargo.toml, Architecture from dpkg, Depends
# computed by dpkg-shlibdeps from the plugin's, the studio's and ONNX
# Runtime's own libraries (libc6, libgstreamer1.0-0, ... at the versions of
# the Debian release it is built on: build it on the release it is for).
# Writes OUT/deb/samclipseg_<version>_<arch>.deb (OUT defaults to out).
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
  echo "deb: $*" >&2
  exit 1
}
for tool in dpkg-deb dpkg-shlibdeps dpkg-architecture; do
  command -v "$tool" >/dev/null || die "$tool not found: apt-get install dpkg-dev"
done

OUT=${OUT:-out}
version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml)
[ -n "$version" ] || die "no version in Cargo.toml's [workspace.package]"
arch=$(dpkg --print-architecture)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# dpkg-shlibdeps takes libraries under debian/<package>/ as the package's own
# (ONNX Runtime's private copies) and wants debian/control.
pkg=$stage/debian/samclipseg
mkdir -p "$pkg"
printf 'Source: samclipseg\n\nPackage: samclipseg\nArchitecture: any\n' >"$stage/debian/control"

PREFIX=/usr PLUGINSDIR=/usr/lib/$multiarch/gstreamer-1.0 DESTDIR=$pkg bash scripts/install.sh >/dev/null

install -d "$pkg/usr/share/doc/samclipseg"
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: samclipseg"
  echo
  echo "Files: *"
  echo "License: MIT or Apache-2.0"
  echo " The licence texts are in /usr/share/doc/samclipseg/LICENSE-MIT and LICENSE-APACHE."
  echo
  echo "Files: usr/lib/$multiarch/samclipseg/*"
  echo "Comment: ONNX Runtime $(basename "$(ls .deps/onnxruntime/libonnxruntime.so.*)" | sed 's/libonnxruntime.so.//')"
  echo " with the OpenVINO execution provider and runtime and oneTBB, from the"
  echo " onnxruntime-openvino wheel on PyPI."
  echo "License: MIT (ONNX Runtime) and Apache-2.0 (OpenVINO, oneTBB)"
} >"$pkg/usr/share/doc/samclipseg/copyright"

elves=()
while IFS= read -r f; do
  [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ] && elves+=("${f#"$stage"/}")
done < <(find "$pkg" -type f)
depends=$(cd "$stage" && dpkg-shlibdeps -O -l"debian/samclipseg/usr/lib/$multiarch/samclipseg" \
  "${elves[@]}" 2>"$stage/shlibdeps.err" | sed -n 's/^shlibs:Depends=//p') ||
  die "dpkg-shlibdeps failed: $(cat "$stage/shlibdeps.err")"
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependency: $(cat "$stage/shlibdeps.err")"

mkdir -p "$pkg/DEBIAN"
(cd "$pkg" && find usr -type f -print0 | LC_ALL=C sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: samclipseg
Version: $version
Architecture: $arch
Maintainer: samclipseg developers <dev@samclipseg.invalid>
Installed-Size: $(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
Depends: $depends
Recommends: gstreamer1.0-tools, gstreamer1.0-plugins-base, gstreamer1.0-plugins-good
Section: video
Priority: optional
Description: GStreamer element that segments what you name in words (SAM 3)
 samclipseg finds the objects a plain-English prompt names ("red car") in
 every video frame with SAM 3 through ONNX Runtime, and attaches their masks
 as metadata, writes them into the alpha channel, or draws them.
 .
 The package holds the plugin, its own ONNX Runtime (with OpenVINO) in
 /usr/lib/$multiarch/samclipseg, the samclipseg-studio web page, and a toy
 bundle trained on generated shapes (/usr/share/samclipseg/toy-shapes-sam3),
 the default bundle until a SAM 3 bundle is installed in
 /usr/share/samclipseg/sam3.
CONTROL

mkdir -p "$OUT/deb"
rm -f "$OUT"/deb/samclipseg_*.deb
deb=$OUT/deb/samclipseg_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
echo "deb: $deb ($(du -h "$deb" | cut -f1)); Depends: $depends"

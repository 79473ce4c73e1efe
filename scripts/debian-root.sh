#!/usr/bin/env bash
# Runs a command inside a Debian root made from Debian's own packages
# (mmdebstrap), as a newcomer on that release would run it.
#
#   scripts/debian-root.sh [--fresh] [--bind HOST:ROOT[:ro]]... SUITE COMMAND...
#
# SUITE is a Debian suite (trixie, forky). The root lives in
# $DEBIAN_ROOT_DIR/SUITE/root (default build/debian, ignored by git), made
# once from a cached tarball ($DEBIAN_ROOT_DIR/SUITE.tar; mmdebstrap makes it
# when missing); --fresh throws the old root away and unpacks a new one.
# Downloaded .deb files are kept in $DEBIAN_ROOT_DIR/SUITE-apt.
#
# Inside: /proc, /sys and /dev; the host's certificate authorities, DNS, pip
# and apt proxy settings; the host's ~/.cargo and ~/.rustup (the toolchain
# rustup would have installed: Debian 13's rustc 1.85 is too old for
# gstreamer-rs 0.25); the --bind folders. Every mount is undone on exit, even
# on failure or Ctrl-C, and nothing is ever deleted while something is
# mounted under the root.
set -euo pipefail
cd "$(dirname "$0")/.."

fresh=0
binds=()
while [ $# -gt 0 ]; do
  case "$1" in
    --fresh) fresh=1; shift ;;
    --bind) binds+=("$2"); shift 2 ;;
    *) break ;;
  esac
done
if [ $# -lt 2 ]; then
  echo "usage: $0 [--fresh] [--bind HOST:ROOT]... SUITE COMMAND..." >&2
  exit 2
fi
suite=$1
shift
if [ "$(id -u)" -ne 0 ]; then
  echo "debian-root: needs root (mmdebstrap, mount and chroot); run it with sudo" >&2
  exit 1
fi
command -v mmdebstrap >/dev/null || {
  echo "debian-root: mmdebstrap is missing: apt-get install mmdebstrap" >&2
  exit 1
}

base=$(realpath -m "${DEBIAN_ROOT_DIR:-build/debian}")
root=$base/$suite/root
tarball=$base/$suite.tar
apt_cache=$base/$suite-apt
mkdir -p "$base" "$apt_cache"

# One run per root at a time: a second one's mounts (and its clean-up on
# exit) would pull the first one's from under it.
exec 9>"$base/$suite.lock"
if ! flock -n 9; then
  echo "debian-root: $root is in use by another run; waiting for it"
  flock 9
fi

# Mount points under the root, deepest first.
mounts_under() {
  awk -v r="$1" '$5 == r || index($5, r "/") == 1 { print $5 }' /proc/self/mountinfo | sort -r
}

cleanup() {
  local m
  for m in $(mounts_under "$root"); do
    umount -R "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done
  if [ -n "$(mounts_under "$root")" ]; then
    echo "debian-root: could not unmount: $(mounts_under "$root" | tr '\n' ' ')" >&2
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The first deb line of the host's apt sources: the same mirror (or proxy).
mirror() {
  local m
  m=$(grep -rhoE '^(deb|URIs:)[[:space:]]+(\[[^]]*\][[:space:]]+)?https?://[^[:space:]]*debian/?' \
    /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | grep -v security | head -n 1 |
    grep -oE 'https?://[^[:space:]]*' || true)
  echo "${m:-http://deb.debian.org/debian}"
}

if [ ! -f "$tarball" ]; then
  echo "debian-root: making a Debian $suite root with mmdebstrap (about a minute)"
  mmdebstrap --format=tar --variant=important --include=git,make,ca-certificates,sudo \
    "$suite" "$tarball.part" "deb $(mirror) $suite main"
  mv "$tarball.part" "$tarball"
fi

if [ "$fresh" = 1 ] && [ -d "$root" ]; then
  cleanup
  if [ -n "$(mounts_under "$root")" ]; then
    echo "debian-root: $root still has mounts; not deleting it" >&2
    exit 1
  fi
  rm -rf --one-file-system "$root"
fi
if [ ! -d "$root/etc" ]; then
  mkdir -p "$root"
  tar -C "$root" -xf "$tarball"
fi

# What the host knows about reaching the package registries.
cp /etc/resolv.conf "$root/etc/resolv.conf"
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
for f in /etc/apt/apt.conf.d/*proxy* /etc/apt/apt.conf.d/99artifact-registry; do
  [ -f "$f" ] && cp "$f" "$root/etc/apt/apt.conf.d/"
done
# Keep downloaded packages (mmdebstrap's root cleans them after each install).
rm -f "$root/etc/apt/apt.conf.d/docker-clean"
echo 'APT::Keep-Downloaded-Packages "true";' >"$root/etc/apt/apt.conf.d/90keep-debs"

bind() {
  mkdir -p "$2"
  mount --bind "$1" "$2"
  [ "${3:-}" = ro ] && mount -o remount,bind,ro "$2"
  return 0
}
mount -t proc proc "$root/proc"
mount -t sysfs sysfs "$root/sys"
mount --rbind /dev "$root/dev"
mount --make-rslave "$root/dev"
bind "$apt_cache" "$root/var/cache/apt/archives"
[ -d "$HOME/.cargo" ] && bind "$HOME/.cargo" "$root/root/.cargo"
[ -d "$HOME/.rustup" ] && bind "$HOME/.rustup" "$root/root/.rustup"
for b in "${binds[@]}"; do
  IFS=: read -r src dst mode <<<"$b"
  mkdir -p "$src"
  bind "$(realpath "$src")" "$root/${dst#/}" "$mode"
done

chroot "$root" update-ca-certificates >/dev/null 2>&1 || true

env_in=(HOME=/root USER=root LANG=C.UTF-8 TERM="${TERM:-dumb}"
  PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY \
  PIP_INDEX_URL PIP_EXTRA_INDEX_URL PIP_DEFAULT_TIMEOUT PIP_DISABLE_PIP_VERSION_CHECK \
  CARGO_TARGET_DIR CARGO_INCREMENTAL CARGO_BUILD_JOBS; do
  [ -n "${!v:-}" ] && env_in+=("$v=${!v}")
done
set +e
chroot "$root" /usr/bin/env -i "${env_in[@]}" bash -c "$*"
rc=$?
set -e
exit $rc

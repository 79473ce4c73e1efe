#!/usr/bin/env bash
# CI on a newer Debian than the host (default trixie, Debian 13, GStreamer
# 1.26): a fresh root made from Debian's packages (scripts/debian-root.sh), a
# clone of this tree's HEAD in it, and there, as a newcomer would:
# scripts/debian-check.sh (README's `make demo`, then the GstAnalytics tests,
# then every tests/debian/*.sh). Needs root, as mmdebstrap and chroot do.
#
#   scripts/debian-ci.sh [SUITE]
set -euo pipefail
cd "$(dirname "$0")/.."
suite=${1:-trixie}

if ! command -v mmdebstrap >/dev/null; then
  echo "debian-ci: installing mmdebstrap"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq mmdebstrap
fi

start=$(date +%s)
# A fresh root (from the cached tarball when there is one), then the clone.
scripts/debian-root.sh --fresh "$suite" true
root=$(realpath -m "${DEBIAN_ROOT_DIR:-build/debian}")/$suite/root
git clone -q --no-local "$PWD" "$root/work/samclipseg"
git -C "$root/work/samclipseg" log --oneline -1
scripts/debian-root.sh "$suite" "cd /work/samclipseg && DEBIAN_CHECK=${DEBIAN_CHECK:-full} bash scripts/debian-check.sh"
echo "debian-ci: Debian $suite passed in $(($(date +%s) - start)) s"

#!/usr/bin/env bash
# The cargo feature flags this machine's GStreamer supports, for the Makefile:
# GstAnalytics Mtds (plugin feature `analytics`) need gstreamer-analytics-1.0
# 1.26 or newer (Debian 13); Debian 12's GStreamer 1.22 has none.
# ANALYTICS=0 or ANALYTICS=1 overrides the check.
set -euo pipefail
want=${ANALYTICS:-}
if [ -z "$want" ]; then
  want=0
  pkg-config --atleast-version=1.26 gstreamer-analytics-1.0 2>/dev/null && want=1
fi
if [ "$want" = 1 ]; then
  echo "--features gst-plugin-samclipseg/analytics"
fi

#!/usr/bin/env python3
"""Reads samclipseg's GstAnalytics Mtds (GStreamer 1.26 and newer, Debian's
python3-gst-1.0 and gir1.2-gst-plugins-bad-1.0) from a pad probe, the way any
analytics consumer would: each object-detection Mtd, and the tracking,
classification and segmentation Mtds related to it.

    GST_PLUGIN_PATH=target/release python3 examples/read_analytics.py [PICTURE.png] [PROMPT] [BUNDLE]

Prints one line per object per frame; exits 1 when no frame had an object.
"""
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstAnalytics", "1.0")
gi.require_version("GstVideo", "1.0")
from gi.repository import GLib, Gst, GstAnalytics, GstVideo  # noqa: E402

toy = "tests/fixtures/toy-shapes-sam3"
picture = sys.argv[1] if len(sys.argv) > 1 else f"{toy}/golden/scene.png"
prompt = sys.argv[2] if len(sys.argv) > 2 else "red circle"
bundle = sys.argv[3] if len(sys.argv) > 3 else toy
Gst.init(None)
pipeline = Gst.parse_launch(
    f'filesrc location="{picture}" ! pngdec ! imagefreeze num-buffers=3'
    f' ! videoconvert ! samclipseg name=seg bundle="{bundle}" prompt="{prompt}" ! fakesink'
)
found = 0


def on_buffer(pad, info):
    global found
    buf = info.get_buffer()
    rmeta = GstAnalytics.buffer_get_analytics_relation_meta(buf)
    if rmeta is None:
        return Gst.PadProbeReturn.OK
    # GStreamer 1.26's Python overrides iterate over every Mtd, each as its
    # own class; relations are flags per pair of Mtd ids.
    mtds = list(rmeta)
    for od in (m for m in mtds if isinstance(m, GstAnalytics.ODMtd)):
        _, x, y, w, h, score = od.get_location()
        phrase = GLib.quark_to_string(od.get_obj_type())
        line = f"pts {buf.pts / Gst.MSECOND:.0f} ms: {phrase!r} {score:.2f} at {x},{y} {w}x{h}"
        for m in mtds:
            rel = rmeta.get_relation(od.id, m.id)
            if isinstance(m, GstAnalytics.TrackingMtd) and rel & GstAnalytics.RelTypes.RELATE_TO:
                _, track_id, first, last, lost = m.get_info()
                line += f", id {track_id} (seen since {first / Gst.MSECOND:.0f} ms)"
            if isinstance(m, GstAnalytics.SegmentationMtd) and rel & GstAnalytics.RelTypes.CONTAIN:
                mask, mx, my, mw, mh = m.get_mask()
                region = m.get_region_id(0)
                ok, info = mask.map(Gst.MapFlags.READ)
                inside = sum(1 for v in info.data if v == region)
                mask.unmap(info)
                line += f", mask {mw}x{mh} at {mx},{my}: {inside} px of region {region}"
        print(line)
        found += 1
    return Gst.PadProbeReturn.OK


pipeline.get_by_name("seg").get_static_pad("src").add_probe(
    Gst.PadProbeType.BUFFER, on_buffer
)
pipeline.set_state(Gst.State.PLAYING)
msg = pipeline.get_bus().timed_pop_filtered(
    60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR
)
pipeline.set_state(Gst.State.NULL)
if msg is None or msg.type == Gst.MessageType.ERROR:
    print("read_analytics: the pipeline failed:", msg.parse_error() if msg else "timeout")
    sys.exit(1)
sys.exit(0 if found else 1)

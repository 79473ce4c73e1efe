//! GstAnalytics Mtds (feature `analytics`, GStreamer >= 1.26) on the toy
//! bundle, read back the way other elements read them: four Mtds per
//! instance with their relations, agreeing with the custom meta and the
//! tracker; then what stock elements downstream make of them (videoscale,
//! tee, a second samclipseg, objectdetectionoverlay).
#![cfg(feature = "analytics")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use common::{Photo, harness_on, init, load_rgba, toy_bundle};
use gst::prelude::*;
use gst_analytics::{
    AnalyticsClassificationMtd, AnalyticsMetaRefExt, AnalyticsODMtd, AnalyticsRelationMeta,
    AnalyticsTrackingMtd, RelTypes,
};
use gstsamclipseg::analytics::{AnalyticsSegmentationMtd, MaskLocation, segmentation_mask};
use gstsamclipseg::{ROI_PARAM_NAME, SamClipSegMeta, SegmentedInstance};

fn scene() -> Photo {
    load_rgba(&toy_bundle().join("golden/scene.png"))
}

fn clip_frame(f: usize) -> Photo {
    load_rgba(&toy_bundle().join(format!("golden/clip/frame-{f:03}.png")))
}

/// One instance as its Mtds say it.
#[derive(Debug)]
struct Read {
    od: u32,
    phrase: String,
    location: (i32, i32, i32, i32),
    confidence: f32,
    tracking: (u64, gst::ClockTime, gst::ClockTime, bool),
    class: (String, f32),
    seg: Option<ReadSeg>,
}

/// A segmentation Mtd as read.
#[derive(Debug)]
struct ReadSeg {
    loc: MaskLocation,
    regions: Vec<u32>,
    /// The mask buffer's width and height (its stride checked = width).
    size: (u32, u32),
    mask: Vec<u8>,
}

/// The buffer's OD Mtds with what is related to them, checking the
/// relations on the way.
fn read(buf: &gst::BufferRef) -> Vec<Read> {
    let rmeta = buf
        .meta::<AnalyticsRelationMeta>()
        .expect("a GstAnalyticsRelationMeta");
    rmeta
        .iter::<AnalyticsODMtd>()
        .map(|od| {
            let id = od.id();
            let loc = od.location().unwrap();
            let trackings: Vec<_> = rmeta
                .iter_direct_related::<AnalyticsTrackingMtd>(id, RelTypes::RELATE_TO)
                .map(|t| t.info())
                .collect();
            assert_eq!(trackings.len(), 1, "OD {id}: one tracking Mtd");
            let classes: Vec<_> = rmeta
                .iter_direct_related::<AnalyticsClassificationMtd>(id, RelTypes::RELATE_TO)
                .map(|c| (c.quark(0).as_str().to_string(), c.level(0)))
                .collect();
            assert_eq!(classes.len(), 1, "OD {id}: one classification Mtd");
            let segs: Vec<_> = rmeta
                .iter_direct_related::<AnalyticsSegmentationMtd>(id, RelTypes::CONTAIN)
                .map(|s| {
                    let rel = rmeta.relation(id, s.id());
                    assert!(
                        rel.contains(RelTypes::RELATE_TO | RelTypes::CONTAIN),
                        "{rel:?}"
                    );
                    assert!(rmeta.relation(s.id(), id).contains(RelTypes::RELATE_TO));
                    let m = segmentation_mask(&s);
                    let vmeta = m.buffer.meta::<gst_video::VideoMeta>().unwrap();
                    assert_eq!(vmeta.format(), gst_video::VideoFormat::Gray8);
                    assert_eq!(vmeta.stride()[0] as u32, vmeta.width(), "stride = width");
                    let size = (vmeta.width(), vmeta.height());
                    let data = m.buffer.map_readable().unwrap().as_slice().to_vec();
                    assert_eq!(data.len(), (size.0 * size.1) as usize);
                    ReadSeg {
                        loc: m.location,
                        regions: m.region_ids,
                        size,
                        mask: data,
                    }
                })
                .collect();
            assert!(segs.len() <= 1, "OD {id}: at most one segmentation Mtd");
            Read {
                od: id,
                phrase: od.obj_type().unwrap().as_str().to_string(),
                location: (loc.x, loc.y, loc.w, loc.h),
                confidence: loc.loc_conf_lvl,
                tracking: trackings[0],
                class: classes[0].clone(),
                seg: segs.into_iter().next(),
            }
        })
        .collect()
}

fn roi_ids(buf: &gst::BufferRef) -> Vec<(i32, u64)> {
    buf.iter_meta::<gst_video::VideoRegionOfInterestMeta>()
        .filter_map(|roi| {
            let p = roi.param(ROI_PARAM_NAME)?;
            Some((roi.id(), p.get::<u64>("id").unwrap()))
        })
        .collect()
}

/// The Mtds of `r` say what the custom meta's `inst` says.
fn assert_same(r: &Read, inst: &SegmentedInstance) {
    assert_eq!(r.phrase, inst.label);
    assert_eq!(
        r.location,
        (
            inst.x as i32,
            inst.y as i32,
            inst.width as i32,
            inst.height as i32
        )
    );
    assert_eq!(r.confidence, inst.score);
    assert_eq!(r.tracking.0, inst.id, "the tracker's id");
    assert_eq!(r.class, (inst.label.clone(), inst.score));
    let ReadSeg {
        loc,
        regions,
        size,
        mask,
    } = r.seg.as_ref().expect("a segmentation Mtd");
    assert_eq!(
        *loc,
        (inst.x as i32, inst.y as i32, inst.width, inst.height)
    );
    assert_eq!(*size, (inst.width, inst.height), "the mask covers the box");
    let region = (inst.id % 255) as u32 + 1;
    assert_eq!(regions, &[region]);
    let expected: Vec<u8> = inst
        .mask
        .iter()
        .map(|&m| if m != 0 { region as u8 } else { 0 })
        .collect();
    assert_eq!(mask, &expected, "the mask is the custom meta's");
}

#[test]
fn each_instance_has_four_related_mtds_that_agree_with_the_custom_meta() {
    let mut h = harness_on(&toy_bundle(), &[("prompt", &"red circle; blue square")]);
    let p = scene();
    h.set_src_caps(p.caps("RGBA"));
    let out = h.push_and_pull(p.rgba_buffer(0)).unwrap();
    let meta = SamClipSegMeta::from_buffer(&out).unwrap();
    let instances = meta.instances();
    let labels: Vec<&str> = instances.iter().map(|i| i.label.as_str()).collect();
    assert!(
        labels.contains(&"red circle") && labels.contains(&"blue square"),
        "{labels:?}"
    );
    let read = read(&out);
    assert_eq!(read.len(), instances.len());
    let rmeta = out.meta::<AnalyticsRelationMeta>().unwrap();
    assert_eq!(rmeta.len(), 4 * instances.len(), "nothing else in the meta");
    let rois = roi_ids(&out);
    for inst in instances {
        // The ROI meta of the instance names its OD Mtd.
        let (roi_id, _) = rois.iter().find(|(_, id)| *id == inst.id).unwrap();
        let r = read.iter().find(|r| r.od as i32 == *roi_id).unwrap();
        assert_same(r, inst);
        assert_eq!(r.tracking.1, gst::ClockTime::ZERO);
        assert!(!r.tracking.3, "not lost");
    }
}

#[test]
fn tracking_mtds_carry_first_and_last_sightings_and_mark_released_ids_lost() {
    let mut h = harness_on(
        &toy_bundle(),
        &[("prompt", &"red circle"), ("track-patience", &1u32)],
    );
    h.set_src_caps(clip_frame(0).caps("RGBA"));
    let mut circle = None;
    for f in 0..4 {
        let out = h
            .push_and_pull(clip_frame(f).rgba_buffer(f as u64))
            .unwrap();
        let read = read(&out);
        assert_eq!(read.len(), 1, "frame {f}: the red circle");
        let (id, first, last, lost) = read[0].tracking;
        assert_eq!(*circle.get_or_insert(id), id, "frame {f}: the same id");
        assert_eq!(first, gst::ClockTime::ZERO);
        assert_eq!(last, out.pts().unwrap(), "frame {f}: last seen now");
        assert!(!lost);
    }
    // Asked for something else, the circle goes unmatched: after
    // track-patience results its id is let go, and marked lost once.
    h.element().unwrap().set_property("prompt", "blue square");
    let mut lost = Vec::new();
    for f in 4..10 {
        let out = h
            .push_and_pull(clip_frame(f).rgba_buffer(f as u64))
            .unwrap();
        let rmeta = out.meta::<AnalyticsRelationMeta>().unwrap();
        for t in rmeta.iter::<AnalyticsTrackingMtd>() {
            let info = t.info();
            if info.3 {
                lost.push((f, info));
            }
        }
    }
    let circle = circle.unwrap();
    assert_eq!(lost.len(), 1, "{lost:?}");
    let (_, (id, first, last, _)) = lost[0];
    assert_eq!(id, circle);
    assert_eq!(first, gst::ClockTime::ZERO);
    // Frame 3, 40 ms per frame: the last sighting.
    assert_eq!(last, gst::ClockTime::from_mseconds(120));
}

/// Runs `n` frames of the clip through `launch` (with `appsrc name=src`)
/// and returns the buffers reaching each sink of `sinks`.
fn run(launch: &str, n: usize, sinks: &[&str]) -> Vec<Vec<gst::Buffer>> {
    run_on(launch, n, sinks, clip_frame)
}

/// `run` on the pictures `frame` gives.
fn run_on(
    launch: &str,
    n: usize,
    sinks: &[&str],
    frame: fn(usize) -> Photo,
) -> Vec<Vec<gst::Buffer>> {
    init();
    let p = gst::parse::launch(launch)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let got: Vec<Arc<Mutex<Vec<gst::Buffer>>>> = sinks
        .iter()
        .map(|name| {
            let store = Arc::new(Mutex::new(Vec::new()));
            let s = store.clone();
            p.by_name(name)
                .unwrap()
                .static_pad("sink")
                .unwrap()
                .add_probe(gst::PadProbeType::BUFFER, move |_, info| {
                    if let Some(b) = info.buffer() {
                        s.lock().unwrap().push(b.clone());
                    }
                    gst::PadProbeReturn::Ok
                })
                .unwrap();
            store
        })
        .collect();
    let src = p.by_name("src").unwrap();
    p.set_state(gst::State::Playing).unwrap();
    for f in 0..n {
        let ph = frame(f);
        let sample = gst::Sample::builder()
            .buffer(&ph.rgba_buffer(f as u64))
            .caps(&ph.caps("RGBA"))
            .build();
        let ret = src.emit_by_name::<gst::FlowReturn>("push-sample", &[&sample]);
        assert_eq!(ret, gst::FlowReturn::Ok);
    }
    let _ = src.emit_by_name::<gst::FlowReturn>("end-of-stream", &[]);
    let bus = p.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS within 2 minutes");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("{launch}: {} ({:?})", e.error(), e.debug());
    }
    p.set_state(gst::State::Null).unwrap();
    got.into_iter()
        .map(|s| std::mem::take(&mut *s.lock().unwrap()))
        .collect()
}

fn seg(name: &str, prompt: &str) -> String {
    format!(
        "samclipseg name={name} bundle=\"{}\" precision=fp32 prompt=\"{prompt}\"",
        toy_bundle().display()
    )
}

#[test]
fn videoscale_to_half_size_halves_boxes_and_masks_loc() {
    let w = clip_frame(0).width / 2;
    let h = clip_frame(0).height / 2;
    let bufs = run(
        &format!(
            "appsrc name=src format=time ! {} ! tee name=t \
             t. ! queue ! fakesink name=full \
             t. ! queue ! videoscale ! video/x-raw,width={w},height={h} ! fakesink name=half",
            seg("seg", "red circle")
        ),
        3,
        &["full", "half"],
    );
    assert_eq!(bufs[0].len(), 3);
    assert_eq!(bufs[1].len(), 3);
    for (full, half) in bufs[0].iter().zip(&bufs[1]) {
        let (a, b) = (read(full), read(half));
        assert_eq!(a.len(), 1);
        assert_eq!(b.len(), 1, "the Mtds survive videoscale");
        let (x, y, bw, bh) = a[0].location;
        let (hx, hy, hw, hh) = b[0].location;
        // Halved, to the pixel (GStreamer rounds each coordinate).
        for (full, half) in [(x, hx), (y, hy), (bw, hw), (bh, hh)] {
            assert!(
                (full - 2 * half).abs() <= 1,
                "{:?} -> {:?}",
                a[0].location,
                b[0].location
            );
        }
        let (sa, sb) = (a[0].seg.as_ref().unwrap(), b[0].seg.as_ref().unwrap());
        let (la, lb) = (&sa.loc, &sb.loc);
        // GStreamer 1.26 moves and scales masks_loc; the mask keeps its
        // pixels (a reader stretches it over masks_loc).
        assert_eq!((sa.size, &sa.mask), (sb.size, &sb.mask));
        for (full, half) in [
            (la.0, lb.0),
            (la.1, lb.1),
            (la.2 as i32, lb.2 as i32),
            (la.3 as i32, lb.3 as i32),
        ] {
            assert!((full - 2 * half).abs() <= 1, "masks_loc {la:?} -> {lb:?}");
        }
        // The tracking id and class do not change.
        assert_eq!(a[0].tracking, b[0].tracking);
        assert_eq!(a[0].class, b[0].class);
    }
}

#[test]
fn tee_and_queue_keep_the_mtds_and_a_second_samclipseg_adds_its_own_beside() {
    let bufs = run_on(
        &format!(
            "appsrc name=src format=time ! {} ! {} ! tee name=t \
             t. ! queue ! fakesink name=a t. ! queue ! fakesink name=b",
            seg("first", "red circle"),
            seg("second", "blue square")
        ),
        2,
        &["a", "b"],
        |_| scene(),
    );
    for (a, b) in bufs[0].iter().zip(&bufs[1]) {
        let (ra, rb) = (read(a), read(b));
        // The first element's Mtds, then the second's beside them.
        let phrases: Vec<&str> = ra.iter().map(|r| r.phrase.as_str()).collect();
        let firsts = phrases.iter().take_while(|p| **p == "red circle").count();
        assert!(firsts >= 1, "{phrases:?}");
        assert!(
            phrases.len() > firsts && phrases[firsts..].iter().all(|p| *p == "blue square"),
            "{phrases:?}"
        );
        // The custom meta is the second element's: its instances are the last Mtds.
        let meta = SamClipSegMeta::from_buffer(a).unwrap();
        assert_eq!(meta.instances().len(), phrases.len() - firsts);
        for (r, inst) in ra[firsts..].iter().zip(meta.instances()) {
            assert_same(r, inst);
        }
        assert_eq!(
            rb.iter().map(|r| (r.od, r.location)).collect::<Vec<_>>(),
            ra.iter().map(|r| (r.od, r.location)).collect::<Vec<_>>(),
            "both branches of the tee"
        );
        let rmeta = a.meta::<AnalyticsRelationMeta>().unwrap();
        assert_eq!(
            rmeta.len(),
            4 * ra.len(),
            "one relation meta, four Mtds per instance"
        );
        assert_eq!(a.iter_meta::<AnalyticsRelationMeta>().count(), 1);
    }
}

#[test]
fn a_second_pass_through_the_same_element_replaces_its_mtds() {
    let mut h = harness_on(&toy_bundle(), &[("prompt", &"red circle")]);
    let p = scene();
    h.set_src_caps(p.caps("RGBA"));
    let once = h.push_and_pull(p.rgba_buffer(0)).unwrap();
    let twice = h.push_and_pull(once.copy()).unwrap();
    assert_eq!(read(&once).len(), 1);
    let again = read(&twice);
    assert_eq!(again.len(), 1, "{again:?}");
    assert_eq!(twice.meta::<AnalyticsRelationMeta>().unwrap().len(), 4);
}

#[test]
fn objectdetectionoverlay_draws_the_red_circles_box() {
    if gst::ElementFactory::find("objectdetectionoverlay").is_none() {
        panic!(
            "objectdetectionoverlay is missing: install gstreamer1.0-plugins-bad (GStreamer >= 1.24)"
        );
    }
    let bufs = run(
        &format!(
            "appsrc name=src format=time ! {} ! tee name=t \
             t. ! queue ! fakesink name=plain \
             t. ! queue ! videoconvert ! objectdetectionoverlay draw-labels=false \
             ! videoconvert ! video/x-raw,format=RGBA ! fakesink name=drawn",
            seg("seg", "red circle")
        ),
        1,
        &["plain", "drawn"],
    );
    let (plain, drawn) = (&bufs[0][0], &bufs[1][0]);
    let r = &read(plain)[0];
    let (x, y, w, h) = r.location;
    let width = clip_frame(0).width;
    let (a, b) = (plain.map_readable().unwrap(), drawn.map_readable().unwrap());
    let px = |m: &[u8], x: i32, y: i32| {
        let i = (y as usize * width + x as usize) * 4;
        [m[i], m[i + 1], m[i + 2]]
    };
    let changed = |x: i32, y: i32| px(&a, x, y) != px(&b, x, y);
    // The box's edge: most of its pixels are drawn over.
    let edge: Vec<(i32, i32)> = (x..x + w)
        .flat_map(|i| [(i, y), (i, y + h - 1)])
        .chain((y..y + h).flat_map(|j| [(x, j), (x + w - 1, j)]))
        .collect();
    let drawn_edge = edge.iter().filter(|(i, j)| changed(*i, *j)).count();
    assert!(
        drawn_edge * 10 >= edge.len() * 8,
        "{drawn_edge} of {} edge pixels changed",
        edge.len()
    );
    // Inside (3 px in from the edge): untouched.
    for j in y + 3..y + h - 3 {
        for i in x + 3..x + w - 3 {
            assert!(!changed(i, j), "pixel ({i}, {j}) inside the box changed");
        }
    }
}
